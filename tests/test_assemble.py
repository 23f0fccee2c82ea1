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


def test_half_casts_clamp_to_the_half_range_and_say_so(tmp_path, caplog):
    """Beauty values past the half range (1e6, +Inf, -1e9) are written as +-65504, never Inf, by the
    comp frame and by write_rgba (the over backend's, the key's); the warning names shot, frame, layer, count."""
    import logging

    beauty = np.full((6, 8, 4), 0.5, np.float32)
    beauty[0, :3, 0] = 1e6
    beauty[1, 0, 1] = np.inf
    beauty[2, 0, 2] = -1e9
    masks = key_only_trimask(np.ones((6, 8), np.float32))
    with caplog.at_level(logging.WARNING):
        write_comp_frame(tmp_path / "s_comp_v001.1001.exr", beauty, masks, None, frame=1001, compression="zip",
                         attrs={"shot": "s"})
        exrio.write_rgba(tmp_path / "s_over.1002.exr", beauty, attrs={"shot": "s", "frame": 1002})
    for name in ("s_comp_v001.1001.exr", "s_over.1002.exr"):
        rgba = exrio.read_rgba(tmp_path / name)
        assert np.isfinite(rgba).all()
        assert rgba[0, 0, 0] == rgba[1, 0, 1] == exrio.HALF_MAX and rgba[2, 0, 2] == -exrio.HALF_MAX
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("shot s frame 1001" in m and "R 3 px, G 1 px, B 1 px" in m for m in said), said
    assert any("shot s frame 1002" in m for m in said), said
