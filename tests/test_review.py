"""Review stage: MP4 daily with burn-ins and PNG contact sheet (uses imageio-ffmpeg's ffmpeg only)."""

import re
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from cinecomp.io import exr as exrio
from cinecomp.review import media as review
from cinecomp.errors import PlateError

H, W = 72, 128


def make_frames(directory, n, h=H, w=W, first=1001, shot="sh010", version=3, pixel_aspect=None):
    """Tiny comp frames: smooth colour gradients (scene-linear, kept below display white) that move."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    files = []
    for i in range(n):
        r = 0.03 + 0.12 * (1 + np.sin(xx / 9 + i / 2))
        g = 0.05 + 0.2 * yy / h
        b = 0.04 + 0.15 * xx / w
        ch = {"R": r, "G": g, "B": b, "A": np.ones((h, w))}
        ch = {k: v.astype(np.float16) for k, v in ch.items()}
        path = directory / f"{shot}_comp_v{version:03d}.{first + i:04d}.exr"
        exrio.write_exr(path, ch, compression="zip", pixel_aspect=pixel_aspect)
        files.append(path)
    return files


def probe(path):
    """ffprobe-equivalent with the imageio-ffmpeg binary: parse `ffmpeg -i` stderr."""
    r = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True,
                       text=True)
    m = re.search(r"Stream #\S+.*?: Video: (\w+).*?, (\w+)\(([^)]*)\).*?, (\d+)x(\d+)", r.stderr)
    assert m, r.stderr
    title = re.search(r"^\s+title\s+: (.*)$", r.stderr, re.M)
    nframes, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    return {"codec": m.group(1), "pix_fmt": m.group(2), "colour": m.group(3), "size": (int(m.group(4)),
            int(m.group(5))), "frames": nframes, "title": title.group(1) if title else None}


def first_frame_rgb(path, size):
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    next(gen)  # metadata
    frame = np.frombuffer(next(gen), np.uint8).reshape(size[1], size[0], 3).copy()
    gen.close()
    return frame


def leftovers(directory):
    if not directory.is_dir():
        return []
    return [p.name for p in directory.iterdir() if p.name.startswith(".") and ".tmp" in p.name]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return make_frames(tmp_path_factory.mktemp("comp"), 8)


@pytest.fixture(scope="module")
def daily(frames, tmp_path_factory):
    out = tmp_path_factory.mktemp("review") / "sh010_daily.mp4"
    info = review.make_daily(frames, out, shot="sh010", version=3, first_frame=1001, fps=24)
    return out, info


def test_daily_stream(daily):
    out, info = daily
    assert out.is_file() and not leftovers(out.parent)
    p = probe(out)
    # 128x72 is scaled up x5 (integer, nearest) to reach the 360 px minimum height.
    assert (p["codec"], p["pix_fmt"], p["size"], p["frames"]) == ("h264", "yuv420p", (640, 360), 8)
    assert "bt709" in p["colour"] and "iec61966-2-1" in p["colour"]  # matrix/primaries and sRGB transfer tagged
    assert p["title"] == "sh010 v003"
    assert info["frames"] == 8 and info["size"] == (640, 360) and info["scale"] == 5
    assert (info["first_frame"], info["last_frame"]) == (1001, 1008)


def test_daily_burn_in_visible_and_picture_faithful(daily, frames):
    out, info = daily
    got = first_frame_rgb(out, info["size"]).astype(int)
    ref = review.upscale(review.read_display(frames[0]), info["scale"]).astype(int)  # un-burnt display image
    assert ref.max() < 200  # the test picture has no bright pixels of its own
    outside = np.ones(got.shape[:2], bool)
    for corner in ("top_left", "bottom_right"):
        x0, y0, x1, y1 = info["burn_in"][corner]
        assert x1 - x0 > 20 and y1 - y0 > 10
        outside[y0:y1, x0:x1] = False
        region, before = got[y0:y1, x0:x1], ref[y0:y1, x0:x1]
        assert np.abs(region - before).mean() > 15  # the burn-in changed the picture there
        bright = (region.min(axis=-1) > 200).sum()
        dark = (region.max(axis=-1) < before.max(axis=-1) * 0.6).sum()
        assert bright > 15, f"{corner}: no bright text pixels"
        assert dark > region.shape[0] * region.shape[1] * 0.3, f"{corner}: no dark bar behind the text"
    assert info["burn_in"]["top_left"][:2] < (40, 40)
    assert info["burn_in"]["bottom_right"][2:] > (600, 330)
    # Elsewhere the daily matches the display-transformed frame (BT.709 matrix, no colour shift).
    diff = np.abs(got - ref)[outside]
    assert diff.mean() < 3 and np.percentile(diff, 99) <= 10


def test_daily_frame_numbers_burnt_in_differ(frames):
    img = review.read_display(frames[0])
    a, boxes_a = review.daily_frame(img, shot="sh010", version=3, frame=1001)
    b, _ = review.daily_frame(img, shot="sh010", version=3, frame=1002)
    x0, y0, x1, y1 = boxes_a["bottom_right"]
    assert not np.array_equal(a[y0:y1, x0:x1], b[y0:y1, x0:x1])
    assert np.array_equal(a[: y0 - 1], b[: y0 - 1])  # only the frame number changes


def test_daily_is_deterministic_and_odd_size_padded(tmp_path):
    files = make_frames(tmp_path, 3, h=41, w=61)
    a = review.make_daily(files, tmp_path / "a.mp4", shot="sh020", version="v012", first_frame=1001,
                          fps=23.976, min_height=None)
    review.make_daily(files, tmp_path / "b.mp4", shot="sh020", version="v012", first_frame=1001, fps=23.976,
                      min_height=None)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    assert a["size"] == (62, 42) and a["scale"] == 1
    p = probe(tmp_path / "a.mp4")
    assert p["size"] == (62, 42) and p["frames"] == 3 and p["title"] == "sh020 v012"
    assert "24000/1001" in " ".join(a["command"])


def test_contact_sheet_grid(tmp_path):
    files = make_frames(tmp_path, 30)
    out = tmp_path / "review" / "sh010_contact.png"
    info = review.make_contact_sheet(files, out, shot="sh010", version=3, columns=3, max_frames=8, thumb_width=160)
    im = Image.open(out)
    assert im.format == "PNG" and im.size == info["size"] and im.mode == "RGB"
    assert "sh010" in im.text["Title"] and "v003" in im.text["Title"]
    assert len(info["frames"]) == 8 and info["frames"][0] == 1001 and info["frames"][-1] == 1030
    assert info["frames"] == sorted(set(info["frames"]))
    assert (info["columns"], info["rows"], info["thumb_size"]) == (3, 3, (160, 90))
    sheet = np.asarray(im).astype(int)
    xs = sorted({box[0] for _, box in info["cells"]})
    ys = sorted({box[1] for _, box in info["cells"]})
    assert len(xs) == 3 and len(ys) == 3 and all(box[2] <= im.size[0] for _, box in info["cells"])
    for frame, (x0, y0, x1, y1) in info["cells"]:
        thumb = sheet[y0:y1, x0:x1]
        ref = np.asarray(Image.fromarray(review.read_display(files[frame - 1001])).resize((160, 90), Image.LANCZOS))
        assert np.abs(thumb - ref.astype(int)).mean() < 2  # the right frame, display-transformed
        label = sheet[y1 : y1 + 20, x0:x1]
        assert (label.min(axis=-1) > 150).sum() > 10  # a frame-number label under each thumbnail
    assert (sheet[: ys[0], :].min(axis=-1) > 150).sum() > 50  # the title line
    assert not leftovers(out.parent)


def test_contact_sheet_defaults_all_frames(tmp_path):
    files = make_frames(tmp_path, 5)
    info = review.make_contact_sheet(files, tmp_path / "c.png", shot="sh010", version=3)
    assert info["frames"] == [1001, 1002, 1003, 1004, 1005] and (info["columns"], info["rows"]) == (5, 1)


def test_sample_indices_even_with_ends():
    assert review.sample_indices(5, 24) == [0, 1, 2, 3, 4]
    idx = review.sample_indices(100, 6)
    assert idx[0] == 0 and idx[-1] == 99 and len(idx) == 6
    assert max(np.diff(idx)) - min(np.diff(idx)) <= 1


@pytest.mark.parametrize("kind", ["daily", "contact"])
def test_missing_frame_names_the_file(tmp_path, kind):
    files = make_frames(tmp_path, 4)
    files[2].unlink()
    out = tmp_path / "out" / ("d.mp4" if kind == "daily" else "c.png")
    with pytest.raises(PlateError, match=re.escape(files[2].name) + ".*missing"):
        if kind == "daily":
            review.make_daily(files, out, shot="sh010", version=3, first_frame=1001)
        else:
            review.make_contact_sheet(files, out, shot="sh010", version=3)
    assert not out.exists()


@pytest.mark.parametrize("kind", ["daily", "contact"])
def test_unreadable_frame_names_the_file(tmp_path, kind):
    files = make_frames(tmp_path, 4)
    files[3].write_bytes(b"this is not an EXR file" * 10)  # the last frame: ffmpeg is already running
    out = tmp_path / "out" / ("d.mp4" if kind == "daily" else "c.png")
    with pytest.raises(PlateError, match=re.escape(files[3].name)):
        if kind == "daily":
            review.make_daily(files, out, shot="sh010", version=3, first_frame=1001)
        else:
            review.make_contact_sheet(files, out, shot="sh010", version=3)
    assert not out.exists() and not leftovers(out.parent)


def test_frame_without_rgb_layers(tmp_path):
    path = tmp_path / "sh010_comp_v003.1001.exr"
    exrio.write_exr(path, {"depth.Z": np.ones((4, 4), np.float32)})
    with pytest.raises(PlateError, match="sh010_comp_v003.1001.exr.*no R/G/B layer"):
        review.read_display(path)


def test_first_frame_must_match_file_names(frames, tmp_path):
    with pytest.raises(ValueError, match="1002.*gap"):
        review.make_daily([frames[0], frames[2]], tmp_path / "d.mp4", shot="sh010", version=3, first_frame=1001)
    assert review.frame_numbers(frames[:3]) == [1001, 1002, 1003]


def test_unknown_view_is_a_clear_error(frames, tmp_path):
    with pytest.raises(ValueError, match="unknown view 'Filmic'.*sRGB - Display"):
        review.make_daily(frames, tmp_path / "d.mp4", shot="sh010", version=3, first_frame=1001, view="Filmic")


def test_daily_and_contact_sheet_desqueeze_anamorphic_frames(tmp_path):
    files = make_frames(tmp_path / "comp", 2, h=72, w=32, pixel_aspect=2.0)
    for f in files:  # a dark left quarter: after desqueezing it is 16 of 64 columns
        ch = exrio.read_layers(f)
        for c in "RGB":
            ch[c][:, :8] = 0.0
        exrio.write_exr(f, ch, pixel_aspect=2.0)
    info = review.make_daily(files, tmp_path / "d.mp4", shot="sh010", version=1, first_frame=1001, min_height=None)
    assert info["pixel_aspect"] == 2.0 and info["size"] == (64, 72) and probe(tmp_path / "d.mp4")["size"] == (64, 72)
    row = first_frame_rgb(tmp_path / "d.mp4", (64, 72))[36].astype(int).sum(-1)  # between the burn-ins
    assert row[:14].max() < 30 and row[18:].min() > 60
    sheet = review.make_contact_sheet(files, tmp_path / "c.png", shot="sh010", version=1, thumb_width=64)
    assert sheet["pixel_aspect"] == 2.0 and sheet["thumb_size"] == (64, 72)  # 32x72 shown 64x72
    square = review.make_daily(files, tmp_path / "s.mp4", shot="sh010", version=1, first_frame=1001,
                               min_height=None, pixel_aspect=1.0)
    assert square["size"] == (32, 72)
