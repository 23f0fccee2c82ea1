"""plates.probe / read_frame / read_movie on tiny sources the tests make (PNG/TIFF/JPG/HDR/DPX/EXR
sequences and stills, MP4/MOV movies encoded with imageio-ffmpeg's ffmpeg)."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import OpenEXR
import pytest

from cinecomp.io import exr as exrio, plates
from cinecomp.errors import PlateError
from cinecomp.io.plates import probe, read_frame, read_movie
from helpers import SHARED_DATA
W, H = 64, 48


def ffmpeg(*args):
    r = subprocess.run([plates.ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", *map(str, args)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr


def grey_png_frames(d: Path, n: int, step=15, base=20, size=(W, H)) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        cv2.imwrite(str(d / f"f{k:03d}.png"), np.full((size[1], size[0], 3), base + step * k, np.uint8))
    return d / "f%03d.png"


@pytest.fixture(scope="module")
def movie(tmp_path_factory) -> Path:
    """12 frames, 24 fps, H.264 with B-frames; frame k is grey (20 + 15 k)/255."""
    d = tmp_path_factory.mktemp("movie")
    pattern = grey_png_frames(d / "src", 12)
    out = d / "ramp.mp4"
    ffmpeg("-framerate", 24, "-i", pattern, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", 1, "-g", 6, "-bf", 2,
           out)
    return out


def _mean_grey(img):
    return float(img[..., :3].mean() * 255)


# ---------------------------------------------------------------------------------------------
# image sequences and stills
# ---------------------------------------------------------------------------------------------


def test_png_sequence_8bit_rgb_order_and_alpha(tmp_path):
    for k, f in enumerate((1001, 1002, 1003)):
        bgra = np.zeros((H, W, 4), np.uint8)
        bgra[..., 2] = 200  # red (OpenCV writes BGR(A))
        bgra[..., 1] = 10 * k
        bgra[..., 3] = 128
        cv2.imwrite(str(tmp_path / f"plate.{f:04d}.png"), bgra)
    info = probe(tmp_path / "plate.####.png")
    assert (info.kind, info.width, info.height, info.fps) == ("image_sequence", W, H, None)
    assert info.frames == [1001, 1002, 1003]
    img = read_frame(tmp_path / "plate.%04d.png", 1002)
    assert img.shape == (H, W, 4) and img.dtype == np.float32
    assert np.allclose(img[0, 0], [200 / 255, 10 / 255, 0, 128 / 255])
    assert np.allclose(read_frame(str(tmp_path / "plate.@@@@.png"), 1003)[0, 0, 1], 20 / 255)


def test_png_16bit_grey_and_tiff_16bit_rgba(tmp_path):
    rgb16 = np.zeros((H, W, 3), np.uint16)
    rgb16[..., 2], rgb16[..., 0] = 1234, 65535  # R=1234, B=65535
    cv2.imwrite(str(tmp_path / "a.0001.png"), rgb16)
    img = read_frame(tmp_path / "a.####.png", 1)
    assert np.allclose(img[0, 0], [1234 / 65535, 0, 1, 1], atol=1e-7)
    cv2.imwrite(str(tmp_path / "g.png"), np.full((H, W), 40000, np.uint16))
    g = read_frame(tmp_path / "g.png", 0)
    assert np.allclose(g[0, 0], [40000 / 65535] * 3 + [1])
    bgra16 = np.zeros((H, W, 4), np.uint16)
    bgra16[..., 2], bgra16[..., 3] = 30000, 65535 // 2
    cv2.imwrite(str(tmp_path / "t.tif"), bgra16)
    t = read_frame(tmp_path / "t.tif", 0)
    assert np.allclose(t[0, 0], [30000 / 65535, 0, 0, (65535 // 2) / 65535])
    assert probe(tmp_path / "t.tif").kind == "still"


def test_jpg_still(tmp_path):
    cv2.imwrite(str(tmp_path / "env.jpg"), np.full((30, 40, 3), (10, 120, 240), np.uint8))
    info = probe(tmp_path / "env.jpg")
    assert (info.kind, info.width, info.height, info.frames) == ("still", 40, 30, [])
    img = read_frame(tmp_path / "env.jpg", 1001)
    assert np.allclose(img[5, 5, :3], [240 / 255, 120 / 255, 10 / 255], atol=0.03) and np.all(img[..., 3] == 1)


def test_radiance_hdr_is_an_hdri_in_rgb_order(tmp_path):
    bgr = np.zeros((16, 32, 3), np.float32)
    bgr[..., 2], bgr[..., 0] = 40.0, 0.25  # R=40 (above 1: scene-linear), B=0.25
    assert cv2.imwrite(str(tmp_path / "sky.hdr"), bgr)
    info = probe(tmp_path / "sky.hdr")
    assert (info.kind, info.width, info.height, info.frames) == ("hdri", 32, 16, [])
    img = read_frame(tmp_path / "sky.hdr", 0)
    assert np.allclose(img[3, 3], [40.0, 0, 0.25, 1], rtol=0.02)


def test_dpx_sequence_via_ffmpeg(tmp_path):
    rgb16 = np.zeros((H, W, 3), np.uint16)
    rgb16[..., 2], rgb16[..., 1] = 50000, 1000
    cv2.imwrite(str(tmp_path / "src.png"), rgb16)
    ffmpeg("-i", tmp_path / "src.png", "-c:v", "dpx", "-pix_fmt", "rgb48be", tmp_path / "scan.1001.dpx")
    info = probe(tmp_path / "scan.####.dpx")
    assert (info.kind, info.width, info.height, info.frames) == ("image_sequence", W, H, [1001])
    img = read_frame(tmp_path / "scan.####.dpx", 1001)
    assert np.allclose(img[1, 1], [50000 / 65535, 1000 / 65535, 0, 1], atol=1e-4)


def test_exr_sequence_probe_reads_header_only(tmp_path):
    for f in (1001, 1002):
        exrio.write_rgba(tmp_path / f"p.{f:04d}.exr", np.full((H, W, 4), 0.5, np.float32),
                         attrs={"framesPerSecond": 23.976})
    info = probe(tmp_path / "p.####.exr")
    assert (info.kind, info.width, info.height, info.frames) == ("exr_sequence", W, H, [1001, 1002])
    assert info.fps == pytest.approx(float(Fraction(24000, 1001)))
    assert info.details["part"] == 0 and info.details["first_file"].endswith("p.1001.exr")
    with pytest.raises(PlateError, match="no part named 'fg'"):
        probe(tmp_path / "p.####.exr", part="fg")
    with pytest.raises(PlateError, match="no view 'left'"):
        probe(tmp_path / "p.####.exr", view="left")
    assert np.allclose(read_frame(tmp_path / "p.####.exr", 1002), 0.5)


def test_exr_probe_reports_the_display_window_and_the_chosen_part(tmp_path):
    r = np.ones((4, 6), np.float32)
    hdr = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage,
           "dataWindow": ((2, 2), (7, 5)), "displayWindow": ((0, 0), (19, 9))}
    p0 = OpenEXR.Part(dict(hdr), {"Z": r}, name="depth")
    p1 = OpenEXR.Part(dict(hdr), {"R": r, "G": r, "B": r}, name="beauty")
    OpenEXR.File([p0, p1]).write(str(tmp_path / "mp.0001.exr"))
    info = probe(tmp_path / "mp.####.exr", part="beauty")
    assert (info.width, info.height, info.details["part"], info.details["part_name"]) == (20, 10, 1, "beauty")
    img = read_frame(tmp_path / "mp.####.exr", 1, part="beauty")
    assert img.shape == (10, 20, 4) and img[3, 3, 0] == 1 and img[0, 0, 0] == 0


def test_latlong_exr_is_an_hdri(tmp_path):
    hdr = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, "envmap": OpenEXR.ENVMAP_LATLONG}
    OpenEXR.File(hdr, {c: np.ones((8, 16), np.float32) for c in "RGB"}).write(str(tmp_path / "env.exr"))
    assert probe(tmp_path / "env.exr").kind == "hdri"


# ---------------------------------------------------------------------------------------------
# movies
# ---------------------------------------------------------------------------------------------


def test_movie_probe_counts_frames_exactly(movie):
    info = probe(movie)
    assert (info.kind, info.width, info.height) == ("movie", W, H)
    assert info.frames == list(range(1001, 1013)) and info.fps == pytest.approx(24)
    assert probe(movie, movie_start=1).frames == list(range(1, 13))


def test_movie_frames_are_numbered_from_movie_start(movie):
    greys = [_mean_grey(read_frame(movie, f)) for f in (1001, 1004, 1012)]
    assert greys == pytest.approx([20, 65, 185], abs=2.5)
    assert _mean_grey(read_frame(movie, 5, movie_start=1)) == pytest.approx(80, abs=2.5)


def test_read_movie_decodes_a_range_in_one_call(movie, monkeypatch):
    calls = []
    real = subprocess.Popen

    def counting(*a, **kw):
        calls.append(a[0])
        return real(*a, **kw)

    monkeypatch.setattr(plates.subprocess, "Popen", counting)
    frames = read_movie(movie, 3, 5)
    decodes = [c for c in calls if "pam" in c]  # ffmpeg processes that decode pixels
    assert frames.shape == (5, H, W, 4) and len(decodes) == 1
    assert [_mean_grey(f) for f in frames] == pytest.approx([20 + 15 * k for k in range(3, 8)], abs=2.5)
    assert np.all(frames[..., 3] == 1)
    monkeypatch.undo()
    assert np.array_equal(read_frame(movie, 1001 + 4), frames[1])


def test_movie_range_errors(movie):
    with pytest.raises(PlateError, match="only 12 frames") as e:
        read_movie(movie, 10, 5)
    assert str(movie) in str(e.value)
    with pytest.raises(PlateError, match="no frame at decode index 40"):
        read_frame(movie, 1041)
    with pytest.raises(PlateError, match="before the movie's first frame"):
        read_frame(movie, 1000)


def test_movie_with_alpha_and_16bit_movie(tmp_path):
    bgra = np.zeros((H, W, 4), np.uint8)
    bgra[..., 1], bgra[..., 3] = 77, 200
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    ffmpeg("-i", tmp_path / "a.png", "-c:v", "png", "-pix_fmt", "rgba", tmp_path / "alpha.mov")
    img = read_frame(tmp_path / "alpha.mov", 1001)
    assert np.allclose(img[2, 2], [0, 77 / 255, 0, 200 / 255], atol=1e-6)
    rgb16 = np.full((H, W, 3), 4321, np.uint16)
    cv2.imwrite(str(tmp_path / "b.png"), rgb16)
    ffmpeg("-i", tmp_path / "b.png", "-c:v", "png", "-pix_fmt", "rgb48be", tmp_path / "deep.mov")
    assert np.allclose(read_frame(tmp_path / "deep.mov", 1001)[0, 0, :3], 4321 / 65535, atol=1e-7)


def test_shared_real_movie_probe_and_decode():
    mp4 = SHARED_DATA / "greenscreen" / "aframe_chromakey" / "example.mp4"
    if not mp4.is_file():
        pytest.skip(f"shared sample data absent: {mp4}")
    info = probe(mp4)
    assert (info.width, info.height) == (360, 640) and len(info.frames) > 100
    last = read_frame(mp4, info.frames[-1])
    assert last.shape == (640, 360, 4) and 0 <= last.min() and last.max() <= 1


# ---------------------------------------------------------------------------------------------
# errors name the file and the fix
# ---------------------------------------------------------------------------------------------


def test_missing_and_unreadable_sources(tmp_path):
    cases = [
        (tmp_path / "nope.mov", "does not exist"),
        (tmp_path / "nodir" / "p.####.exr", "directory does not exist"),
        (tmp_path / "p.####.png", "no file matches"),
        (tmp_path / "still.png", "does not exist"),
        (tmp_path, "is a directory"),
    ]
    for src, msg in cases:
        with pytest.raises(PlateError, match=msg) as e:
            probe(src)
        assert str(src) in str(e.value) and e.value.fix
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(PlateError, match="unsupported file type"):
        probe(tmp_path / "notes.txt")
    (tmp_path / "garbage.mp4").write_bytes(b"\0" * 1000)
    with pytest.raises(PlateError, match="not a readable movie") as e:
        probe(tmp_path / "garbage.mp4")
    assert "garbage.mp4" in str(e.value)


def test_damaged_images(tmp_path):
    cv2.imwrite(str(tmp_path / "ok.png"), np.zeros((H, W, 3), np.uint8))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    for name in ("cut.png", "junk.png"):
        with pytest.raises(PlateError) as e:
            read_frame(tmp_path / name, 0)
        assert name in str(e.value)
    (tmp_path / "bad.exr").write_bytes(b"v/1\x01" + b"\0" * 100)
    with pytest.raises(PlateError, match="bad.exr"):
        probe(tmp_path / "bad.exr")


def test_probe_refuses_a_view_or_part_without_colour(tmp_path):
    """Validation probes the plate: a view (or part) with no colour image fails there, not in the render."""
    r = np.ones((6, 8), np.float32)
    hdr = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File([OpenEXR.Part({**hdr, "view": "left"}, {"Z": r}, name="depth.left"),
                  OpenEXR.Part({**hdr, "view": "left"}, {"R": r, "G": r, "B": r}, name="rgba.left"),
                  OpenEXR.Part({**hdr, "view": "right"}, {"Z": r}, name="depth.right")]).write(
        str(tmp_path / "st.0001.exr"))
    assert probe(tmp_path / "st.####.exr", view="left").details["part_name"] == "rgba.left"
    with pytest.raises(PlateError, match="no part of view 'right' has colour channels") as e:
        probe(tmp_path / "st.####.exr", view="right")
    assert "st.0001.exr" in str(e.value) and "plate_view" in e.value.fix
    with pytest.raises(PlateError, match=r"part 0 \('depth.left'\) has no R, G, B or Y channel of view 'left'"):
        probe(tmp_path / "st.####.exr", part="depth.left")


def test_probe_reports_the_pixel_aspect(tmp_path):
    exrio.write_rgba(tmp_path / "ana.1001.exr", np.ones((H, W, 4), np.float32), pixel_aspect=1.5)
    assert probe(tmp_path / "ana.####.exr").pixel_aspect == 1.5
    src = ("-f", "lavfi", "-i", f"color=c=green:s={W}x{H}:r=24", "-vf", "setsar=3/2")
    ffmpeg(*src, "-frames:v", 1, "-c:v", "dpx", tmp_path / "scan.1001.dpx")
    assert probe(tmp_path / "scan.####.dpx").pixel_aspect == 1.5
    ffmpeg(*src, "-frames:v", 3, "-c:v", "libx264", "-pix_fmt", "yuv420p", tmp_path / "ana.mp4")
    assert probe(tmp_path / "ana.mp4").pixel_aspect == 1.5
    cv2.imwrite(str(tmp_path / "sq.png"), np.zeros((H, W, 3), np.uint8))
    assert probe(tmp_path / "sq.png").pixel_aspect == 1.0
