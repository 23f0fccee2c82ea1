"""Composite `over` and the assemble stage's EXR layout."""

from fractions import Fraction

import numpy as np
import OpenEXR

from cinecomp.io import exr as exrio
from cinecomp.composite.assemble import MASK_LAYERS, write_comp_frame
from cinecomp.perception.masks import key_only_trimask
from cinecomp.composite.over import over


def test_over_premultiplied():
    fg = np.array([[[0.25, 0.0, 0.0]]], np.float32)  # red at alpha 0.5, premultiplied
    a = np.array([[0.5]], np.float32)
    bg = np.array([[[0.0, 0.0, 1.0]]], np.float32)
    np.testing.assert_allclose(over(fg, a, bg), [[[0.25, 0.0, 0.5]]])
    np.testing.assert_allclose(over(fg * 0, a * 0, bg), bg)  # alpha 0: background untouched


def test_key_only_trimask_sums_to_one():
    a = np.random.default_rng(0).random((4, 5)).astype(np.float32)
    m = key_only_trimask(a)
    np.testing.assert_allclose(m["mask.character"] + m["mask.prop"] + m["mask.environment"], 1.0, atol=1e-6)
    assert (m["mask.prop"] == 0).all()


def test_comp_frame_layout_and_metadata(tmp_path):
    rng = np.random.default_rng(1)
    beauty = rng.random((6, 8, 4)).astype(np.float32)
    masks = key_only_trimask(rng.random((6, 8)).astype(np.float32))
    depth = rng.random((6, 8)).astype(np.float32) * 10
    path = tmp_path / "sh010_comp_v003.1001.exr"
    attrs = {"shot": "sh010", "version": 3, "framesPerSecond": 23.976, "owner": "td", "software": "cinecomp 0.1.0",
             "sourcePlate": "plate.####.exr", "backend": "over"}
    write_comp_frame(path, beauty, masks, depth, frame=1001, compression="dwaa", attrs=attrs)
    with OpenEXR.File(str(path), separate_channels=True) as f:
        h = dict(f.header())
        ch = {k: np.array(v.pixels) for k, v in f.channels().items()}
    assert set(ch) == {"R", "G", "B", "A", *MASK_LAYERS, "depth.Z"}
    assert ch["R"].dtype == np.float16 and ch["depth.Z"].dtype == np.float32
    assert h["framesPerSecond"] == Fraction(24000, 1001) and h["frame"] == 1001 and h["shotVersion"] == 3
    assert h["compression"] == OpenEXR.DWAA_COMPRESSION
    np.testing.assert_array_equal(ch["depth.Z"], depth)  # data layers are lossless float
    assert not list(tmp_path.glob(".*tmp*")), "no temp files left behind"


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "x.exr"
    try:
        exrio.write_exr(path, {"R": np.zeros((2, 2), np.float16), "G": np.zeros((3, 3), np.float16)})
    except ValueError:
        pass
    assert list(tmp_path.iterdir()) == []
