"""ingest: sources -> ACEScg half EXR frames of a shot, with NaN repair, conform, HDRI projection,
and every input problem reported (naming shot, file and fix) before anything is written."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from cinecomp import SOFTWARE
from cinecomp.io import exr as exrio, plates
from cinecomp.io import ingest as ingest_mod
from cinecomp.colour import convert
from cinecomp.errors import PlateError
from cinecomp.frames import frame_path
from cinecomp.io.ingest import conform, equirect_to_pinhole, ingest, repair_nonfinite

W, H = 16, 12
SRGB = "sRGB - Texture"
LIN709 = "Linear Rec.709 (sRGB)"


def exr_seq(d: Path, frames=(1001, 1002, 1003), size=(W, H), fill=0.25, dtype=np.float32, **attrs):
    d.mkdir(parents=True, exist_ok=True)
    for f in frames:
        img = np.full((size[1], size[0], 4), fill, np.float32)
        img[..., 3] = 1
        img[0, 0, 0] = f - 1000  # tells frames apart
        exrio.write_rgba(d / f"p.{f:04d}.exr", img, dtype=dtype, attrs=attrs or None)
    return d / "p.####.exr"


def run(source, out_dir, **kw):
    args = dict(shot="sh010", element="plate", version=2, first=1001, last=1003, colourspace="ACEScg",
                out_dir=out_dir)
    args.update(kw)
    return ingest(source, **args)


def written(out_dir) -> list[Path]:
    return sorted(Path(out_dir).glob("*.exr"))


# ---------------------------------------------------------------------------------------------
# pixel helpers
# ---------------------------------------------------------------------------------------------


def test_repair_nonfinite_uses_finite_neighbours():
    img = np.arange(25, dtype=np.float32).reshape(5, 5, 1).repeat(2, axis=-1)
    img[2, 2, 0] = np.nan
    img[0, 0, 1] = np.inf
    fixed, n = repair_nonfinite(img)
    assert n == 2 and np.isfinite(fixed).all()
    assert fixed[2, 2, 0] == pytest.approx(np.mean([6, 7, 8, 11, 13, 16, 17, 18]))
    assert fixed[0, 0, 1] == pytest.approx(np.mean([1, 5, 6]))
    lonely = np.full((3, 3, 1), np.nan, np.float32)
    fixed, n = repair_nonfinite(lonely)
    assert n == 9 and not fixed.any()
    clean = np.ones((2, 2, 3), np.float32)
    assert repair_nonfinite(clean) == (clean, 0)


def test_conform_shrinks_with_area_and_grows_linearly():
    checker = (np.indices((8, 8)).sum(axis=0) % 2).astype(np.float32)[..., None].repeat(4, axis=-1)
    small, how = conform(checker, (4, 4))
    assert how == "area" and small.shape == (4, 4, 4) and np.allclose(small, 0.5)
    ramp = np.linspace(0, 1, 4, dtype=np.float32)[None, :, None].repeat(2, axis=0).repeat(4, axis=-1)
    big, how = conform(ramp, (8, 4))
    assert how == "linear" and big.shape == (4, 8, 4) and np.all(np.diff(big[0, :, 0]) >= 0)
    same, how = conform(ramp, (4, 2))
    assert how == "none" and same is ramp
    wide = np.zeros((10, 40, 4), np.float32)
    wide[:, 15:25] = 1  # centre band survives a centre crop
    filled, _ = conform(wide, (10, 10), fit="fill")
    assert filled.shape == (10, 10, 4) and filled[5, 5, 0] == 1


# ---------------------------------------------------------------------------------------------
# sequences
# ---------------------------------------------------------------------------------------------


def test_exr_sequence_nan_repair_attrs_and_report(tmp_path):
    src = exr_seq(tmp_path / "src", fill=0.5)
    bad = exrio.read_rgba(tmp_path / "src" / "p.1002.exr")
    bad[5, 6, 0], bad[7, 3, 1], bad[7, 3, 2] = np.nan, np.inf, -np.inf
    exrio.write_rgba(tmp_path / "src" / "p.1002.exr", bad, dtype=np.float32)
    out = tmp_path / "out"
    report = run(src, out, fps=23.976, report_path=out / "ingest_report.json")
    files = written(out)
    assert [f.name for f in files] == [f"sh010_plate_v002.{f}.exr" for f in (1001, 1002, 1003)]
    assert [fr["repaired"] for fr in report["frames"]] == [0, 2, 0] and report["repaired_total"] == 2
    img = exrio.read_rgba(frame_path(out, "sh010", "plate", 2, 1002))
    assert np.isfinite(img).all() and img[5, 6, 0] == pytest.approx(0.5, abs=1e-3)
    assert img[0, 0, 0] == 2  # frame 1002's own marker
    ch, header = exrio.read_exr(files[1])
    assert all(ch[c].dtype == np.float32 for c in "RGBA")
    assert exrio.select_part(files[1])[0].channels[0].pixel_type == "half"
    assert header["shot"] == "sh010" and header["frame"] == 1002 and header["shotVersion"] == 2
    assert header["framesPerSecond"] == Fraction(24000, 1001) and header["software"] == SOFTWARE
    assert header["sourcePlate"].endswith("p.1002.exr")
    saved = json.loads((out / "ingest_report.json").read_text())
    assert saved["frames"][1]["repaired"] == 2 and saved["source_resolution"] == [W, H]
    assert saved["colourspace"] == "ACEScg" and saved == json.loads(json.dumps(report, default=str))
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temp files


def test_png_sequence_converted_to_acescg_alpha_untouched(tmp_path):
    d = tmp_path / "png"
    d.mkdir()
    bgra = np.zeros((H, W, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 30, 180, 250, 128
    for f in (1, 2):
        cv2.imwrite(str(d / f"fg_{f:03d}.png"), bgra)
    report = run(d / "fg_%03d.png", tmp_path / "out", first=1, last=2, colourspace=SRGB, compression="piz")
    src = plates.read_frame(d / "fg_%03d.png", 1)
    want = convert(src[..., :3], SRGB, "ACEScg")
    got = exrio.read_rgba(frame_path(tmp_path / "out", "sh010", "plate", 2, 1))
    assert np.allclose(got[..., :3], want, rtol=2e-3, atol=1e-4)
    assert np.allclose(got[..., 3], 128 / 255, atol=1e-3)
    assert report["source_kind"] == "image_sequence" and report["compression"] == "piz"


def test_conform_to_shot_resolution(tmp_path):
    src = exr_seq(tmp_path / "src", size=(32, 24))
    small = run(src, tmp_path / "small", resolution=(16, 12))
    big = run(src, tmp_path / "big", resolution=(64, 48), first=1002, last=1002)
    assert small["resize"] == "area" and big["resize"] == "linear"
    assert exrio.read_rgba(written(tmp_path / "small")[0]).shape == (12, 16, 4)
    assert exrio.read_rgba(written(tmp_path / "big")[0]).shape == (48, 64, 4)
    assert small["resolution"] == [16, 12] and small["source_resolution"] == [32, 24]


def test_values_beyond_half_are_clamped_and_counted(tmp_path):
    src = exr_seq(tmp_path / "src", frames=(1001,), fill=1e6)
    report = run(src, tmp_path / "out", last=1001)
    img = exrio.read_rgba(written(tmp_path / "out")[0])
    assert np.isfinite(img).all() and img[..., :3].max() == 65504
    assert report["frames"][0]["clamped"] == W * H


# ---------------------------------------------------------------------------------------------
# movies, stills, HDRIs
# ---------------------------------------------------------------------------------------------


def _ffmpeg(*args):
    r = subprocess.run([plates.ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", *map(str, args)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr


def test_movie_is_decoded_once_for_the_whole_range(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for k in range(10):
        cv2.imwrite(str(src / f"f{k:02d}.png"), np.full((H, W, 3), 20 + 20 * k, np.uint8))
    movie = tmp_path / "plate.mp4"
    _ffmpeg("-framerate", 24, "-i", src / "f%02d.png", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", 1, movie)

    def no_per_frame_reads(*a, **kw):
        raise AssertionError("ingest must not decode a movie frame by frame")

    monkeypatch.setattr(ingest_mod, "read_frame", no_per_frame_reads)
    decodes = []
    real = subprocess.Popen
    monkeypatch.setattr(plates.subprocess, "Popen",
                        lambda *a, **kw: decodes.append(a[0]) or real(*a, **kw))
    report = run(movie, tmp_path / "out", first=1003, last=1006, colourspace=SRGB)
    assert len([c for c in decodes if "pam" in c]) == 1
    files = written(tmp_path / "out")
    assert [f.name.split(".")[1] for f in files] == ["1003", "1004", "1005", "1006"]
    srgb = [float(np.mean(convert(exrio.read_rgba(f)[..., :3], "ACEScg", SRGB))) * 255 for f in files]
    assert srgb == pytest.approx([60, 80, 100, 120], abs=3)
    assert exrio.read_exr(files[0])[1]["sourceFrameIndex"] == 2
    assert report["source_kind"] == "movie" and report["movie_start"] == 1001


def test_still_environment_is_read_once_and_repeated(tmp_path, monkeypatch):
    cv2.imwrite(str(tmp_path / "bg.jpg"), np.full((24, 32, 3), (40, 160, 220), np.uint8))
    calls = []
    real = ingest_mod.read_frame
    monkeypatch.setattr(ingest_mod, "read_frame", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    report = run(tmp_path / "bg.jpg", tmp_path / "env", element="env", kind="environment", colourspace=SRGB,
                 first=1001, last=1004, resolution=(W, H))
    assert len(calls) == 1 and report["source_kind"] == "still"
    imgs = [exrio.read_rgba(f) for f in written(tmp_path / "env")]
    assert len(imgs) == 4 and all(np.array_equal(imgs[0], i) for i in imgs[1:])
    assert imgs[0].shape == (H, W, 4) and [fr["frame"] for fr in report["frames"]] == [1001, 1002, 1003, 1004]


def _quadrant_pano(w=128, h=64) -> np.ndarray:
    """Equirect RGB: front (lon 0) red, right (+90) green, left (-90) blue, back yellow, sky (lat>60) white."""
    lon = ((np.arange(w) + 0.5) / w * 2 - 1) * 180
    lat = 90 - (np.arange(h) + 0.5) / h * 180
    img = np.zeros((h, w, 3), np.float32)
    for lo, hi, c in ((-45, 45, (1, 0, 0)), (45, 135, (0, 1, 0)), (-135, -45, (0, 0, 1))):
        img[:, (lon >= lo) & (lon < hi)] = c
    img[:, (lon >= 135) | (lon < -135)] = (1, 1, 0)
    img[lat > 60] = (1, 1, 1)
    return img


def test_equirect_to_pinhole_directions():
    pano = _quadrant_pano()
    for yaw, colour in ((0, (1, 0, 0)), (90, (0, 1, 0)), (-90, (0, 0, 1)), (180, (1, 1, 0))):
        view = equirect_to_pinhole(pano, (32, 18), yaw=yaw, fov=40)
        assert view.shape == (18, 32, 3)
        assert np.allclose(view[9, 16], colour, atol=1e-3), yaw
        assert np.allclose(view[4:14, 10:22], colour, atol=1e-3), yaw  # no seam artefacts at yaw 180
    up = equirect_to_pinhole(pano, (32, 18), pitch=80, fov=40)
    assert np.allclose(up[9, 16], 1)


def test_hdri_environment_is_projected_at_shot_resolution(tmp_path):
    pano = _quadrant_pano()
    assert cv2.imwrite(str(tmp_path / "sky.hdr"), np.ascontiguousarray(pano[..., ::-1]) * 4)
    out = tmp_path / "env"
    report = run(tmp_path / "sky.hdr", out, element="env", kind="environment", first=1001, last=1002,
                 resolution=(32, 18), hdri_yaw=90, hdri_fov=50)
    assert report["source_kind"] == "hdri" and report["hdri"]["yaw"] == 90 and report["resize"] == "hdri_projection"
    img = exrio.read_rgba(written(out)[0])
    assert img.shape == (18, 32, 4) and np.allclose(img[9, 16, :3], (0, 4, 0), rtol=0.02)
    default = run(tmp_path / "sky.hdr", tmp_path / "env2", kind="environment", first=1001, last=1001)
    assert default["resolution"][0] >= 16 and exrio.read_rgba(written(tmp_path / "env2")[0]).shape[1] == \
        default["resolution"][0]


def test_kind_hdri_forces_projection_of_an_untagged_still(tmp_path):
    pano = _quadrant_pano()
    cv2.imwrite(str(tmp_path / "pano.png"), (pano[..., ::-1] * 255).astype(np.uint8))
    report = run(tmp_path / "pano.png", tmp_path / "env", kind="hdri", first=1001, last=1001, resolution=(24, 12),
                 colourspace=SRGB, hdri_yaw=-90)
    img = exrio.read_rgba(written(tmp_path / "env")[0])
    blue = convert(np.array([[[0, 0, 1]]], np.float32), SRGB, "ACEScg")[0, 0]
    assert report["hdri"]["yaw"] == -90 and np.allclose(img[6, 12, :3], blue, atol=2e-3)


# ---------------------------------------------------------------------------------------------
# bad input: PlateError naming shot, file and fix, and nothing written
# ---------------------------------------------------------------------------------------------


def _refused(tmp_path, source, match, **kw) -> PlateError:
    out = tmp_path / "refused"
    with pytest.raises(PlateError, match=match) as e:
        run(source, out, **kw)
    assert e.value.shot == "sh010" and "sh010" in str(e.value) and e.value.fix
    assert not written(out)
    return e.value


def test_missing_frames_in_range(tmp_path):
    src = exr_seq(tmp_path / "src")
    err = _refused(tmp_path, src, r"frames 1004-1005 of 1001-1005 are missing \(source has 1001-1003\)", last=1005)
    assert "p.####.exr" in err.path


def test_damaged_frame_in_the_middle_is_found_before_writing(tmp_path):
    src = exr_seq(tmp_path / "src")
    data = (tmp_path / "src" / "p.1002.exr").read_bytes()
    (tmp_path / "src" / "p.1002.exr").write_bytes(data[: len(data) - 30])
    err = _refused(tmp_path, src, "truncated")
    assert err.path.endswith("p.1002.exr")


def test_frames_of_different_sizes(tmp_path):
    src = exr_seq(tmp_path / "src", frames=(1001, 1002))
    exr_seq(tmp_path / "src", frames=(1003,), size=(W + 2, H))
    err = _refused(tmp_path, src, "frame 1003 is 18x12 but the sequence's first frame is 16x12")
    assert err.path.endswith("p.1003.exr")


def test_unknown_colourspace(tmp_path):
    _refused(tmp_path, exr_seq(tmp_path / "src"), "unknown colourspace 'sRGB'.*did you mean", colourspace="sRGB")


def test_single_image_as_a_plate(tmp_path):
    cv2.imwrite(str(tmp_path / "one.png"), np.zeros((H, W, 3), np.uint8))
    _refused(tmp_path, tmp_path / "one.png", "single image", colourspace=SRGB)


def test_missing_source_and_bad_part(tmp_path):
    _refused(tmp_path, tmp_path / "nowhere" / "p.####.exr", "no frames of this sequence")
    _refused(tmp_path, tmp_path / "gone.mov", "does not exist")
    _refused(tmp_path, exr_seq(tmp_path / "src"), "no part named 'fg'", part="fg")


def test_movie_shorter_than_the_range(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for k in range(4):
        cv2.imwrite(str(src / f"f{k}.png"), np.full((H, W, 3), 50, np.uint8))
    _ffmpeg("-framerate", 24, "-i", src / "f%d.png", "-c:v", "libx264", "-pix_fmt", "yuv420p", tmp_path / "m.mp4")
    _refused(tmp_path, tmp_path / "m.mp4", r"movie frames \(numbered from movie_start\) 1005-1006", last=1006,
             colourspace=SRGB)


def test_empty_range(tmp_path):
    _refused(tmp_path, exr_seq(tmp_path / "src"), "frame range 1003-1001 is empty", first=1003, last=1001)


def test_anamorphic_plate_keeps_its_pixel_aspect(tmp_path):
    src = exr_seq(tmp_path / "src", pixelAspectRatio=1.5)
    report = run(src, tmp_path / "out")
    assert report["source_pixel_aspect"] == report["pixel_aspect"] == 1.5
    assert all(exrio.pixel_aspect(f) == 1.5 for f in written(tmp_path / "out"))
    # conforming to W x 1.5 wide desqueezes at ingest (square pixels); 'fill' scales uniformly (kept)
    wide = run(src, tmp_path / "wide", resolution=(W * 3 // 2, H))
    assert wide["pixel_aspect"] == 1.0 and exrio.pixel_aspect(written(tmp_path / "wide")[0]) == 1.0
    assert run(src, tmp_path / "fill", resolution=(2 * W, H), fit="fill")["pixel_aspect"] == 1.5
    assert ingest_mod.conformed_aspect(2.0, (1920, 1080), (1920, 540)) == 1.0


def test_shared_display_window_samples_keep_their_pixel_aspect(shared_data, tmp_path):
    files = sorted((shared_data / "exr" / "openexr-images" / "DisplayWindow").glob("t*.exr"))
    odd = [f for f in files if exrio.pixel_aspect(f) != 1.0]
    if not odd:
        pytest.skip("no DisplayWindow sample with non-square pixels in the shared data (t09-t12 are absent)")
    for f in odd:
        (tmp_path / f.stem).mkdir()
        (tmp_path / f.stem / "p.0001.exr").symlink_to(f)
        report = run(tmp_path / f.stem / "p.####.exr", tmp_path / f.stem / "out", first=1, last=1)
        assert report["pixel_aspect"] == exrio.pixel_aspect(f) != 1.0
        assert exrio.pixel_aspect(written(tmp_path / f.stem / "out")[0]) == exrio.pixel_aspect(f)


# ---------------------------------------------------------------------------------------------
# environment_fit: an environment of another shape (pixel aspect included) onto the plate's frame
# ---------------------------------------------------------------------------------------------


def _ramps(w, h):
    """(h, w, 4): R the column's x in 0..1, G the row's y in 0..1, B 0.5, A 1."""
    img = np.ones((h, w, 4), np.float32)
    img[..., 0] = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    img[..., 1] = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    img[..., 2] = 0.5
    return img


def test_environment_fit_modes_account_for_pixel_aspect():
    """A 16:9 square-pixel picture (16x9) onto a 2.0 anamorphic frame of 16x9 pixels (display 32x9)."""
    env = _ramps(16, 9)
    stretched, _ = conform(env, (16, 9), "stretch", 1.0, 2.0)
    assert stretched is env  # pixel for pixel: twice as wide on display (the old behaviour, now asked for)
    filled, _ = conform(env, (16, 9), "fill", 1.0, 2.0)
    assert filled.shape == (9, 16, 4) and filled[..., 3].min() == 1  # covers the frame ...
    assert filled[0, 0, 0] < 0.05 and filled[0, -1, 0] > 0.95  # ... keeps its full width ...
    assert 0.2 < filled[0, 0, 1] < 0.3 and 0.7 < filled[-1, 0, 1] < 0.8  # ... and the middle half of its height
    fitted, _ = conform(env, (16, 9), "fit", 1.0, 2.0)
    assert (fitted[:, :4] == 0).all() and (fitted[:, 12:] == 0).all()  # black bars, alpha 0, either side
    inside = fitted[:, 4:12]
    assert inside[..., 3].min() == 1 and inside[0, 0, 0] < 0.1 and inside[0, -1, 0] > 0.9
    assert inside[0, 0, 1] == 0 and inside[-1, 0, 1] == 1  # the whole height
    small = _ramps(8, 4)
    kept, _ = conform(small, (16, 9), "none", 1.0, 2.0)  # no scaling: 8x4 square = 4x4 frame pixels, centred
    assert (kept[..., 3] > 0).sum() == 16 and kept[2:6, 6:10, 3].min() == 1
    np.testing.assert_allclose(kept[2:6, 6:10, 1], small[:, :4, 1], atol=1e-6)  # rows untouched
    big = _ramps(64, 36)
    cropped, how = conform(big, (16, 9), "none")  # larger than the frame: its centre, pixel for pixel
    assert how == "none" and np.array_equal(cropped, big[13:22, 24:40])


@pytest.mark.parametrize("fit", ["fill", "fit"])
def test_environment_fit_of_the_same_shape_is_a_plain_resize(fit):
    """Same display aspect (within rounding of the sizes): every mode but none resizes like stretch,
    so a shot whose environment matches its plate renders as it always did."""
    env = _ramps(30, 17)  # 1.765 against 1.778: the rounding of 1920x1080 to a small size
    np.testing.assert_array_equal(conform(env, (16, 9), fit)[0], conform(env, (16, 9), "stretch")[0])
    anamorphic = _ramps(32, 9)
    np.testing.assert_array_equal(conform(anamorphic, (16, 9), fit, 1.0, 2.0)[0],
                                  conform(anamorphic, (16, 9), "stretch")[0])


def test_environment_takes_the_plates_pixel_aspect_and_warns(tmp_path, caplog):
    """The ingested environment carries the plate's pixelAspectRatio (the comp's), and a picture of
    another shape is logged with both shapes and what environment_fit does (also in the report)."""
    import logging

    cv2.imwrite(str(tmp_path / "bg.png"), np.full((9, 16, 3), 128, np.uint8))
    with caplog.at_level(logging.WARNING):
        report = run(tmp_path / "bg.png", tmp_path / "env", element="env", kind="environment", colourspace=SRGB,
                     first=1001, last=1001, resolution=(16, 9), fit="fill", pixel_aspect=2.0,
                     log=logging.getLogger("t"))
    assert exrio.pixel_aspect(written(tmp_path / "env")[0]) == 2.0 and report["pixel_aspect"] == 2.0
    assert "environment_fit fill" in report["aspect_note"] and "pixel aspect 2" in report["aspect_note"]
    assert any("shot sh010" in r.getMessage() and "differs from the frame" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="fit must be one of"):
        conform(np.zeros((2, 2, 4), np.float32), (4, 4), "squash")
