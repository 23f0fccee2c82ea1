"""exrio.read_exr / read_exr_rgba / exr_info: robust reading of EXR plates made by others.

Core paths use tiny files written here (OpenEXR binding, or raw bytes for what the binding cannot
write: subsampled luminance/chroma, corrupt chunk tables). The shared-data tests cover every file in
../shared/data/exr and skip when that folder is absent.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import OpenEXR
import pytest

from cinecomp.io import exr as exrio
from cinecomp.errors import PlateError
from cinecomp.io.exr import exr_info, luminance_weights, read_exr, read_exr_rgba, select_part, yc_to_rgb
from helpers import REPO, SHARED_DATA

EXR_DIR = SHARED_DATA / "exr"


def _hdr(**kw):
    h = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    h.update(kw)
    return h


def ramp(h=6, w=8, offset=1.0):
    return (np.arange(h * w, dtype=np.float32).reshape(h, w) + offset).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# raw EXR writer (NONE compression, scanline, single part): lets tests write subsampled channels
# and damage chunk tables at known byte positions.
# ---------------------------------------------------------------------------------------------


def _attr(name, typ, value: bytes) -> bytes:
    return name.encode() + b"\0" + typ.encode() + b"\0" + struct.pack("<i", len(value)) + value


def raw_exr(path, channels: dict, data_window, display_window=None, extra=b"", version_flags=0):
    """channels: name -> (array, xs, ys); arrays float16/float32/uint32 at subsampled size.
    Returns (offset_table_position, number_of_chunks)."""
    x0, y0, x1, y1 = data_window
    display_window = display_window or data_window
    ptype = {np.dtype(np.uint32): 0, np.dtype(np.float16): 1, np.dtype(np.float32): 2}
    names = sorted(channels)
    chl = b""
    for n in names:
        a, xs, ys = channels[n]
        chl += n.encode() + b"\0" + struct.pack("<iB3xii", ptype[a.dtype], 0, xs, ys)
    chl += b"\0"
    head = struct.pack("<iI", 20000630, 2 | version_flags)
    head += _attr("channels", "chlist", chl)
    head += _attr("compression", "compression", b"\0")
    head += _attr("dataWindow", "box2i", struct.pack("<4i", *data_window))
    head += _attr("displayWindow", "box2i", struct.pack("<4i", *display_window))
    head += _attr("lineOrder", "lineOrder", b"\0")
    head += _attr("pixelAspectRatio", "float", struct.pack("<f", 1.0))
    head += _attr("screenWindowCenter", "v2f", struct.pack("<2f", 0, 0))
    head += _attr("screenWindowWidth", "float", struct.pack("<f", 1.0))
    head += extra + b"\0"
    nlines = y1 - y0 + 1
    table_pos = len(head)
    pos = table_pos + 8 * nlines
    chunks, offsets = [], []
    for y in range(y0, y1 + 1):
        data = b""
        for n in names:
            a, xs, ys = channels[n]
            if y % ys == 0:
                data += np.ascontiguousarray(a[(y - y0) // ys]).astype(a.dtype.newbyteorder("<")).tobytes()
        chunk = struct.pack("<ii", y, len(data)) + data
        offsets.append(pos)
        chunks.append(chunk)
        pos += len(chunk)
    Path(path).write_bytes(head + struct.pack(f"<{nlines}Q", *offsets) + b"".join(chunks))
    return table_pos, nlines


# ---------------------------------------------------------------------------------------------
# tiny files written here
# ---------------------------------------------------------------------------------------------


def test_existing_api_still_round_trips(tmp_path):
    rgba = np.random.default_rng(0).random((5, 7, 4)).astype(np.float32)
    exrio.write_rgba(tmp_path / "a.exr", rgba, attrs={"shot": "sh010", "version": 3, "framesPerSecond": 24})
    back = exrio.read_rgba(tmp_path / "a.exr")
    assert np.allclose(back, rgba, atol=1e-3)
    ch, header = read_exr(tmp_path / "a.exr")
    assert set(ch) == {"R", "G", "B", "A"} and all(a.dtype == np.float32 for a in ch.values())
    assert header["shot"] == "sh010" and header["shotVersion"] == 3 and header["partIndex"] == 0
    assert np.allclose(read_exr_rgba(tmp_path / "a.exr"), back)


def test_data_window_inside_display_window_is_placed_with_zeros_outside(tmp_path):
    r = ramp(6, 8)
    OpenEXR.File(_hdr(dataWindow=((2, 1), (9, 6)), displayWindow=((0, 0), (11, 9))), {"R": r, "A": r * 0 + 1}).write(
        str(tmp_path / "dw.exr"))
    ch, _ = read_exr(tmp_path / "dw.exr")
    assert ch["R"].shape == (10, 12)
    assert np.array_equal(ch["R"][1:7, 2:10], r)
    mask = np.ones((10, 12), bool)
    mask[1:7, 2:10] = False
    assert not ch["R"][mask].any() and not ch["A"][mask].any()  # zeros (transparent) outside the data


def test_data_window_overhanging_display_window_is_cropped(tmp_path):
    r = ramp(6, 8)
    # data (-2,-1)..(5,4); display (0,0)..(3,2): keep data columns 2..5, rows 1..3
    OpenEXR.File(_hdr(dataWindow=((-2, -1), (5, 4)), displayWindow=((0, 0), (3, 2))), {"R": r}).write(
        str(tmp_path / "over.exr"))
    rgba = read_exr_rgba(tmp_path / "over.exr")
    assert rgba.shape == (3, 4, 4)
    assert np.array_equal(rgba[..., 0], r[1:4, 2:6])
    assert np.all(rgba[..., 3] == 1) and not rgba[..., 1].any()  # no A -> 1; missing G/B -> 0


def test_disjoint_windows_give_an_empty_display(tmp_path):
    OpenEXR.File(_hdr(dataWindow=((100, 100), (107, 105)), displayWindow=((0, 0), (3, 2))), {"R": ramp()}).write(
        str(tmp_path / "far.exr"))
    assert not read_exr(tmp_path / "far.exr")[0]["R"].any()


def test_decreasing_y_line_order(tmp_path):
    r = ramp(9, 5)
    OpenEXR.File(_hdr(lineOrder=OpenEXR.DECREASING_Y, compression=OpenEXR.PIZ_COMPRESSION), {"R": r}).write(
        str(tmp_path / "dec.exr"))
    assert exr_info(tmp_path / "dec.exr").parts[0].line_order == 1
    assert np.array_equal(read_exr(tmp_path / "dec.exr")[0]["R"], r)


def test_tiled_single_level(tmp_path):
    td = OpenEXR.TileDescription()
    td.xSize, td.ySize, td.mode, td.roundingMode = 4, 4, OpenEXR.ONE_LEVEL, OpenEXR.ROUND_DOWN
    r = ramp(7, 9)
    OpenEXR.File(_hdr(type=OpenEXR.tiledimage, tiles=td), {"R": r, "G": r * 2}).write(str(tmp_path / "t.exr"))
    info = exr_info(tmp_path / "t.exr")
    assert info.parts[0].storage == "tiledimage" and info.parts[0].chunk_count == 6
    assert np.array_equal(read_exr(tmp_path / "t.exr")[0]["G"], r * 2)


@pytest.mark.parametrize("comp", ["none", "rle", "zips", "zip", "piz", "pxr24", "b44", "dwaa"])
def test_every_compression_reads_back(tmp_path, comp):
    yy, xx = np.mgrid[0:40, 0:33].astype(np.float32)
    rgba = np.stack([xx / 33, yy / 40, (xx + yy) / 73, np.ones_like(xx)], axis=-1)  # smooth: lossy codecs stay close
    exrio.write_rgba(tmp_path / "c.exr", rgba, compression=comp)
    tol = 0.02 if comp in ("b44", "dwaa") else 1e-3
    assert np.allclose(read_exr_rgba(tmp_path / "c.exr"), rgba, atol=tol)


def test_multipart_selection_by_default_name_and_index(tmp_path):
    r = ramp()
    p0 = OpenEXR.Part(_hdr(), {"R": r, "G": r, "B": r}, name="beauty")
    p1 = OpenEXR.Part(_hdr(), {"R": r + 100, "G": r, "B": r, "A": r * 0 + 0.5}, name="fg")
    p2 = OpenEXR.Part(_hdr(), {"id": np.arange(48, dtype=np.uint32).reshape(6, 8)}, name="ids")
    OpenEXR.File([p0, p1, p2]).write(str(tmp_path / "mp.exr"))
    assert read_exr_rgba(tmp_path / "mp.exr")[0, 0, 0] == r[0, 0]  # default: first part
    assert read_exr_rgba(tmp_path / "mp.exr", part="fg")[0, 0, 0] == r[0, 0] + 100
    assert read_exr_rgba(tmp_path / "mp.exr", part=1)[0, 0, 3] == 0.5
    assert read_exr_rgba(tmp_path / "mp.exr", part="1")[0, 0, 3] == 0.5  # sheet gives strings
    ch, header = read_exr(tmp_path / "mp.exr", part="ids")
    assert ch["id"].dtype == np.float32 and ch["id"][5, 7] == 47 and header["partIndex"] == 2
    with pytest.raises(PlateError, match="no R, G, B or Y channel"):
        read_exr_rgba(tmp_path / "mp.exr", part="ids")
    with pytest.raises(PlateError, match=r"no part named 'nope'.*beauty") as e:
        read_exr(tmp_path / "mp.exr", part="nope")
    assert "mp.exr" in str(e.value)
    with pytest.raises(PlateError, match="no part 7"):
        read_exr(tmp_path / "mp.exr", part=7)
    assert select_part(tmp_path / "mp.exr", "fg")[0].index == 1


def test_multiview_default_view_is_first_and_unprefixed(tmp_path):
    r = ramp()
    chans = {"R": r, "G": r, "B": r, "right.R": r + 10, "right.G": r, "right.B": r, "depth.left.Z": r * 0 + 1,
             "depth.right.Z": r * 0 + 2, "disparity.x": r * 0 + 7}
    OpenEXR.File(_hdr(multiView=["left", "right"]), chans).write(str(tmp_path / "mv.exr"))
    left, hl = read_exr(tmp_path / "mv.exr")
    assert hl["view"] == "left" and left["R"][0, 0] == r[0, 0]
    assert set(left) == {"R", "G", "B", "depth.Z", "disparity.x"} and left["depth.Z"][0, 0] == 1
    right, hr = read_exr(tmp_path / "mv.exr", view="right")
    assert hr["view"] == "right" and right["R"][0, 0] == r[0, 0] + 10 and right["depth.Z"][0, 0] == 2
    assert right["disparity.x"][0, 0] == 7  # belongs to no view: shared
    assert read_exr_rgba(tmp_path / "mv.exr", view="right")[0, 0, 0] == r[0, 0] + 10
    with pytest.raises(PlateError, match="no view 'centre'.*left, right"):
        read_exr(tmp_path / "mv.exr", view="centre")


def test_view_of_a_multipart_stereo_file_picks_the_tagged_part(tmp_path):
    r = ramp()
    pl = OpenEXR.Part(_hdr(view="left"), {"R": r, "G": r, "B": r}, name="rgba.left")
    pr = OpenEXR.Part(_hdr(view="right"), {"R": r + 5, "G": r, "B": r}, name="rgba.right")
    OpenEXR.File([pl, pr]).write(str(tmp_path / "stereo.exr"))
    assert read_exr_rgba(tmp_path / "stereo.exr", view="right")[0, 0, 0] == r[0, 0] + 5
    assert read_exr(tmp_path / "stereo.exr", view="right")[1]["view"] == "right"
    with pytest.raises(PlateError, match="no view"):
        read_exr(tmp_path / "stereo.exr", part=0, view="right")


def test_nan_and_inf_pixels_are_returned_as_stored(tmp_path):
    rgba = np.ones((4, 5, 4), np.float32)
    rgba[1, 2, 0], rgba[3, 4, 1] = np.nan, np.inf
    exrio.write_rgba(tmp_path / "n.exr", rgba, dtype=np.float32)
    back = read_exr_rgba(tmp_path / "n.exr")
    assert np.isnan(back[1, 2, 0]) and np.isinf(back[3, 4, 1]) and np.isfinite(back).sum() == rgba.size - 2


def test_luminance_weights_follow_the_chromaticities():
    assert np.allclose(luminance_weights(), [0.2126, 0.7152, 0.0722], atol=2e-4)
    xyz = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1 / 3, 1 / 3)
    assert np.allclose(luminance_weights(xyz), [0, 1, 0], atol=1e-6)


def test_yc_to_rgb_round_trips_a_constant_colour():
    rgb = np.array([0.6, 0.3, 0.1], np.float32)
    yw = luminance_weights()
    y = float(rgb @ yw)
    h, w = 12, 16
    out = yc_to_rgb(np.full((h, w), y, np.float32), np.full((6, 8), rgb[0] / y - 1, np.float32),
                    np.full((6, 8), rgb[2] / y - 1, np.float32))
    assert out.shape == (h, w, 3)
    assert np.allclose(out, rgb, atol=1e-4)
    grey = yc_to_rgb(np.full((4, 4), 0.25, np.float32), np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32))
    assert np.all(grey == 0.25)  # RgbaYca's exact grey special case


def test_luminance_chroma_file_with_subsampled_channels(tmp_path):
    rgb = np.array([0.2, 0.5, 0.9], np.float32)
    y = float(rgb @ luminance_weights())
    h, w = 8, 10
    chans = {"Y": (np.full((h, w), y, np.float16), 1, 1),
             "RY": (np.full((h // 2, w // 2), rgb[0] / y - 1, np.float16), 2, 2),
             "BY": (np.full((h // 2, w // 2), rgb[2] / y - 1, np.float16), 2, 2)}
    raw_exr(tmp_path / "yc.exr", chans, (0, 0, w - 1, h - 1))
    ch, header = read_exr(tmp_path / "yc.exr")
    assert set(ch) == {"R", "G", "B"} and header["cinecomp:luminanceChroma"]
    assert np.allclose(read_exr_rgba(tmp_path / "yc.exr")[..., :3], rgb, atol=5e-3)
    raw_exr(tmp_path / "y.exr", {"Y": (np.full((h, w), 0.3, np.float16), 1, 1)}, (0, 0, w - 1, h - 1))
    grey = read_exr_rgba(tmp_path / "y.exr")
    assert np.allclose(grey[..., :3], np.float16(0.3)) and np.all(grey[..., 3] == 1)


def test_generic_subsampled_channel_is_upsampled(tmp_path):
    h, w = 4, 6
    chans = {"R": (np.ones((h, w), np.float32), 1, 1),
             "motion": (np.arange(6, dtype=np.float32).reshape(2, 3), 2, 2)}
    raw_exr(tmp_path / "sub.exr", chans, (0, 0, w - 1, h - 1))
    ch, _ = read_exr(tmp_path / "sub.exr")
    assert ch["motion"].shape == (h, w) and ch["motion"][3, 5] == 5 and ch["motion"][0, 1] == 0


# ---------------------------------------------------------------------------------------------
# damage: caught by exr_info before the OpenEXR library decodes anything
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def good_raw(tmp_path):
    path = tmp_path / "good.exr"
    table, n = raw_exr(path, {"R": (ramp(6, 8).astype(np.float16), 1, 1)}, (0, 0, 7, 5))
    assert read_exr(path)[0]["R"].shape == (6, 8)
    return path, table, n


def _patch(path, pos, data: bytes, out):
    b = bytearray(Path(path).read_bytes())
    b[pos : pos + len(data)] = data
    Path(out).write_bytes(bytes(b))
    return out


def test_truncated_file(good_raw, tmp_path):
    path, _, _ = good_raw
    (tmp_path / "trunc.exr").write_bytes(path.read_bytes()[:-20])
    with pytest.raises(PlateError, match="truncated") as e:
        read_exr(tmp_path / "trunc.exr")
    assert "trunc.exr" in str(e.value) and e.value.fix


def test_incomplete_file_with_zero_offsets(good_raw, tmp_path):
    path, table, n = good_raw
    bad = _patch(path, table + 8 * 3, struct.pack("<Q", 0), tmp_path / "zero.exr")
    with pytest.raises(PlateError, match="chunk 3 of 6 has offset 0"):
        read_exr(bad)


def test_chunk_table_pointing_past_the_end(good_raw, tmp_path):
    path, table, _ = good_raw
    bad = _patch(path, table, struct.pack("<Q", 10**9), tmp_path / "past.exr")
    with pytest.raises(PlateError, match="past the end"):
        read_exr_rgba(bad)


def test_chunk_naming_a_scanline_outside_the_image(good_raw, tmp_path):
    path, table, _ = good_raw
    first = struct.unpack_from("<Q", path.read_bytes(), table)[0]
    bad = _patch(path, first, struct.pack("<i", 999), tmp_path / "y.exr")
    with pytest.raises(PlateError, match="scanline 999"):
        read_exr(bad)


def test_not_an_exr_and_tiny_files(tmp_path):
    (tmp_path / "text.exr").write_text("hello, this is not an image at all")
    (tmp_path / "tiny.exr").write_bytes(b"v/1\x01")
    with pytest.raises(PlateError, match="wrong magic"):
        read_exr(tmp_path / "text.exr")
    with pytest.raises(PlateError, match="only 4 bytes"):
        read_exr(tmp_path / "tiny.exr")
    with pytest.raises(PlateError, match="does not exist"):
        read_exr(tmp_path / "missing.exr")


def test_contradictory_type_attribute(tmp_path):
    extra = _attr("type", "string", b"deepscanline")
    raw_exr(tmp_path / "c.exr", {"R": (ramp(2, 2).astype(np.float16), 1, 1)}, (0, 0, 1, 1), extra=extra)
    with pytest.raises(PlateError, match="contradictory"):
        read_exr(tmp_path / "c.exr")


def test_corrupt_files_never_crash_the_interpreter(tmp_path):
    """Random byte damage and truncations of ZIP/PIZ/B44/tiled files, read in a child process: every
    one either decodes or raises PlateError; none crashes or hangs."""
    rng = random.Random(7)
    base = np.random.default_rng(3).random((37, 29, 4)).astype(np.float32)
    sources = []
    for comp in ("zip", "piz", "b44", "pxr24", "dwaa"):
        exrio.write_rgba(tmp_path / f"src_{comp}.exr", base, compression=comp)
        sources.append(tmp_path / f"src_{comp}.exr")
    td = OpenEXR.TileDescription()
    td.xSize, td.ySize, td.mode, td.roundingMode = 8, 8, OpenEXR.ONE_LEVEL, OpenEXR.ROUND_DOWN
    OpenEXR.File(_hdr(type=OpenEXR.tiledimage, tiles=td), {"R": base[..., 0]}).write(str(tmp_path / "src_tiled.exr"))
    sources.append(tmp_path / "src_tiled.exr")
    files = []
    for src in sources:
        data = src.read_bytes()
        for k in range(8):
            d = bytearray(data)
            if k % 2:
                d = d[: rng.randrange(8, len(d))]
            else:
                for _ in range(rng.randint(1, 12)):
                    d[rng.randrange(8, len(d))] = rng.randrange(256)
            out = tmp_path / f"bad_{src.stem}_{k}.exr"
            out.write_bytes(bytes(d))
            files.append(str(out))
    code = textwrap.dedent("""
        import json, sys
        from cinecomp.io.exr import read_exr_rgba
        from cinecomp.errors import PlateError
        for f in json.loads(sys.argv[1]):
            try:
                read_exr_rgba(f)
                print("READ", f, flush=True)
            except PlateError as e:
                assert f in str(e), (f, str(e))
                print("PLATEERROR", f, flush=True)
    """)
    r = subprocess.run([sys.executable, "-c", code, json.dumps(files)], capture_output=True, text=True, timeout=600,
                       cwd=REPO)
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    tags = [ln.split()[0] for ln in r.stdout.splitlines() if ln.startswith(("READ", "PLATEERROR"))]
    assert len(tags) == len(files) and tags.count("PLATEERROR") > len(files) // 3


# ---------------------------------------------------------------------------------------------
# shared data: every readable file loads, every damaged/deep file is a PlateError in a child process
# ---------------------------------------------------------------------------------------------


def _shared_files():
    if not EXR_DIR.is_dir():
        return [], []
    files = sorted(EXR_DIR.rglob("*.exr"))
    bad = [f for f in files if "damaged" in f.parts or f.name == "11.deep.exr" or
           (f.parent.name == "LowResLeftView" and f.name in ("Balls.exr", "Trunks.exr"))]
    return [f for f in files if f not in bad], bad


READABLE, UNREADABLE = _shared_files()
_NO_DATA = f"shared sample data absent: {EXR_DIR} (see shared/data/MANIFEST.md)"


def _rel(p: Path) -> str:
    return str(p.relative_to(EXR_DIR))


def _need_shared():
    if not EXR_DIR.is_dir():
        pytest.skip(_NO_DATA)


@pytest.mark.parametrize("path", READABLE or [None], ids=[_rel(p) for p in READABLE] or ["absent"])
def test_shared_file_loads(path):
    _need_shared()
    p, view = select_part(path)
    rgba = read_exr_rgba(path)
    assert rgba.shape == (p.height, p.width, 4) and rgba.dtype == np.float32
    finite = np.isfinite(rgba)
    assert finite.mean() > 0.5
    assert np.abs(np.where(finite, rgba, 0)[..., :3]).max() > 0  # not an empty picture
    channels, header = read_exr(path)
    assert all(a.shape == (p.height, p.width) and a.dtype == np.float32 for a in channels.values())
    assert header["partIndex"] == 0


def test_shared_lossless_codecs_decode_identically_and_lossy_within_bounds():
    _need_shared()
    d = EXR_DIR / "openexr-core" / "compression"
    ref = read_exr_rgba(d / "comp_none.exr")
    for name in ("rle", "zips", "zip", "piz"):
        assert np.array_equal(read_exr_rgba(d / f"comp_{name}.exr"), ref), name
    for name in ("dwaa_v1", "dwaa_v2", "dwab_v1", "dwab_v2"):
        diff = np.abs(read_exr_rgba(d / f"comp_{name}.exr") - ref)
        assert diff.max() <= 13.0 + 1e-3 and diff.mean() < 0.05, name


def test_shared_b44_luminance_chroma_matches_its_reference():
    _need_shared()
    d = EXR_DIR / "openexr-core" / "compression"
    yc = read_exr_rgba(d / "comp_b44.exr")[..., :3]
    ref = read_exr_rgba(d / "comp_b44_piz.exr")[..., :3]
    rel = np.abs(yc - ref) / np.maximum(np.abs(ref), 1e-2)
    assert np.median(rel) < 1e-3 and np.percentile(rel, 99) < 5e-3


def test_shared_display_windows_place_the_same_pixels():
    _need_shared()
    d = EXR_DIR / "openexr-images" / "DisplayWindow"
    ref = read_exr_rgba(d / "t01.exr")
    for f in sorted(d.glob("t0*.exr")):
        p, _ = select_part(f)
        x0, y0 = p.data_window[:2]
        d0, e0 = p.display_window[:2]
        img = read_exr_rgba(f)
        assert img.shape[:2] == (p.height, p.width)
        for yy in (0, p.height // 2, p.height - 1):
            for xx in (0, p.width // 2, p.width - 1):
                sx, sy = xx + d0 - x0, yy + e0 - y0  # display pixel -> t01 pixel
                want = ref[sy, sx, :3] if (0 <= sx < 400 and 0 <= sy < 300) else np.zeros(3)
                assert np.array_equal(img[yy, xx, :3], want), (f.name, xx, yy)


def test_shared_multiview_mipmap_and_luminance_files():
    _need_shared()
    im = EXR_DIR / "openexr-images"
    left = read_exr_rgba(im / "MultiView" / "Fog.exr")
    right = read_exr_rgba(im / "MultiView" / "Fog.exr", view="right")
    assert not np.array_equal(left, right)
    assert np.allclose(left[..., 0], left[..., 1])  # Y only -> grey
    assert read_exr(im / "Beachball" / "singlepart.0001.exr", view="left")[1]["view"] == "left"
    assert read_exr_rgba(im / "MultiResolution" / "ColorCodedLevels.exr").shape == (512, 512, 4)  # level 0
    flowers = read_exr_rgba(im / "LuminanceChroma" / "Flowers.exr")
    assert flowers.shape == (734, 784, 4) and np.isfinite(flowers).all()
    assert np.abs(flowers[..., 0] - flowers[..., 2]).mean() > 0.01  # colour was reconstructed
    ids = read_exr(EXR_DIR / "openexr-core" / "misc" / "manifest_id.exr")[0]["id"]
    assert ids.dtype == np.float32 and ids.max() > 0


_CHILD = textwrap.dedent("""
    import sys
    from cinecomp.io.exr import read_exr, read_exr_rgba
    from cinecomp.errors import PlateError
    try:
        read_exr_rgba(sys.argv[1])
    except PlateError as e:
        print("PLATEERROR", e)
        sys.exit(3)
    print("READ")
""")


@pytest.mark.parametrize("path", UNREADABLE or [None], ids=[_rel(p) for p in UNREADABLE] or ["absent"])
def test_shared_damaged_or_deep_file_is_a_plate_error_in_a_child_process(path):
    _need_shared()
    r = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=300,
                       cwd=REPO)
    assert r.returncode == 3, f"rc={r.returncode} (negative = killed by a signal)\n{r.stdout}\n{r.stderr[-2000:]}"
    assert "PLATEERROR" in r.stdout and str(path) in r.stdout
    assert "fix:" in r.stdout


def test_pixel_aspect_is_written_and_read_back(tmp_path):
    exrio.write_rgba(tmp_path / "a.exr", np.ones((4, 6, 4), np.float32), pixel_aspect=1.5)
    assert exrio.pixel_aspect(tmp_path / "a.exr") == 1.5 and read_exr(tmp_path / "a.exr")[1]["pixelAspectRatio"] == 1.5
    exrio.write_exr(tmp_path / "b.exr", {"R": np.ones((4, 6), np.float16)}, attrs={"pixelAspectRatio": 2})
    assert exrio.pixel_aspect(tmp_path / "b.exr") == 2.0  # an int attribute is stored as the float it must be
    exrio.write_rgba(tmp_path / "c.exr", np.ones((4, 6, 4), np.float32))
    assert exrio.pixel_aspect(tmp_path / "c.exr") == 1.0
    for bad in (0, -1, float("nan"), float("inf"), "wide"):
        with pytest.raises(ValueError, match="pixel aspect ratio must be a finite number"):
            exrio.write_rgba(tmp_path / "d.exr", np.ones((4, 6, 4), np.float32), pixel_aspect=bad)


def stereo_with_depth_parts(path):
    """Multi-part stereo file whose first part of each view is depth only; only 'left' has colour."""
    r = ramp()
    OpenEXR.File([OpenEXR.Part(_hdr(view="left"), {"Z": r * 0 + 9}, name="depth.left"),
                  OpenEXR.Part(_hdr(view="left"), {"R": r, "G": r, "B": r}, name="rgba.left"),
                  OpenEXR.Part(_hdr(view="right"), {"Z": r * 0 + 9}, name="depth.right")]).write(str(path))
    return r


def test_view_picks_its_colour_part_not_a_depth_part_that_comes_first(tmp_path):
    r = stereo_with_depth_parts(tmp_path / "st.exr")
    assert read_exr_rgba(tmp_path / "st.exr", view="left")[0, 0, 0] == r[0, 0]
    assert select_part(tmp_path / "st.exr", view="left")[0].name == "rgba.left"
    with pytest.raises(PlateError, match=r"no part of view 'right' has colour channels .*2='depth.right' \(Z\)") as e:
        read_exr_rgba(tmp_path / "st.exr", view="right")
    assert "st.exr" in str(e.value) and "plate_part" in e.value.fix
