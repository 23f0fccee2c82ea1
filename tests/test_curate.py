"""Curation (issue 12, README "Curation"): clips -> priors -> pairs -> filters -> manifest + shards."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from cinecomp.curate import pipeline as curate
from cinecomp.curate import runner
from cinecomp.curate.pipeline import CurateError, check_settings, read_clips
from cinecomp.io.dataset import DatasetError, check_sample, iter_samples, read_index
from helpers import REPO, cinecomp
TINY = {"window": 5, "width": 64, "height": 48, "max_windows": 2}


def _samples(out):
    got = list(iter_samples(read_index(out)))
    for key, s in got:
        check_sample(s, key)
    return got


def _sheet(path, rows, header="clip,prompt,id"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def png_clip(tmp_path_factory):
    """A demo-renderer shot's comp frames as a PNG sequence: footage with nothing but pixels."""
    from cinecomp.curate.synthetic import render_scene, scene_of
    from cinecomp.synth.renderer import _write_png

    root = tmp_path_factory.mktemp("pngclip")
    _, scene = scene_of("synthetic:ev01")
    r, _ = render_scene(scene, 15, (64, 48))
    for i, f in enumerate(r["gt_rgb"]):
        _write_png(root / "walk" / f"walk.{1001 + i:04d}.png", f)
        _write_png(root / "empty" / f"empty.{1001 + i:04d}.png", r["env_rgb"][0])  # nobody in it
    return root


def test_synthetic_shot_curated_into_valid_shards(tmp_path):
    sheet = _sheet(tmp_path / "clips.csv", ["synthetic:ev01,a person pushes a box,demo01"])
    counts = runner.run(sheet, tmp_path / "out", TINY, log=lambda *_: None)
    assert counts["samples"] == 2 and counts["accepted"] == 2
    got = _samples(tmp_path / "out")
    key, s = got[0]
    assert key == "demo01_w000" and s["target_rgb"].shape == (5, 48, 64, 3)
    assert s["meta"]["prompt"] == "a person pushes a box" and s["meta"]["source"] == "synthetic"
    assert 0.0 <= s["character_rgb"].min() and s["character_rgb"].max() <= 1.0
    np.testing.assert_allclose(s["tri_mask"].sum(-1), 1.0, atol=2e-3)
    assert np.isinf(s["target_depth"]).any() and np.isfinite(s["target_depth"]).any()  # sky and ground
    assert s["effect_mask"].max() > 0.3  # the character's shadow
    # harmonize's comp, the input the shot stage gives a harmonize-base model: darker than the plain
    # over comp where the character's shadow falls
    over = s["character_rgb"] + s["tri_mask"][..., 2:] * s["environment_rgb"]
    shadow = s["effect_mask"] > 0.3
    assert s["harmonize_rgb"].shape == s["target_rgb"].shape and 0.0 <= s["harmonize_rgb"].min()
    assert (over - s["harmonize_rgb"]).mean(-1)[shadow].mean() > 0.02
    assert (tmp_path / "out" / "clips" / "demo01" / "contact.png").is_file()
    m = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert list(m["status"]) == ["accepted", "accepted"]


def test_pair_fidelity_against_the_renderer():
    """A renderer shot curated as if it were real footage, against its truth (bench/curation.py at a
    tiny size; thresholds about 2 dB / 0.1 under what this size measured)."""
    from cinecomp.curate.synthetic import pair_fidelity, scene_of

    _, scene = scene_of("synthetic:ev01")
    r = pair_fidelity(scene, 19, (64, 48), check_settings({"window": 5, "width": 64, "height": 48}))
    assert r["windows"] == 3
    assert r["env_psnr"] > r["env_psnr_frames"] + 2.0  # the clean plate removes the character
    assert r["env_psnr"] > 20.0
    assert r["mask_iou"] > 0.25  # 0.31 measured: the box stands still most of the shot, so the
    # background model sees it as environment (the truth has it as the prop)


def test_png_sequence_curated_as_real_footage(tmp_path, png_clip):
    sheet = _sheet(tmp_path / "clips.csv", [f"{png_clip}/walk/walk.####.png,a person walks,walk"])
    counts = runner.run(sheet, tmp_path / "out", TINY, log=lambda *_: None)
    assert counts["samples"] >= 1
    got = _samples(tmp_path / "out")
    assert got[0][1]["meta"]["source"] == "real" and got[0][1]["meta"]["first_frame"] == 1001
    assert got[0][1]["harmonize_rgb"].shape == got[0][1]["target_rgb"].shape  # harmonize's comp of the sample
    m = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert {"char_area", "mask_iou", "char_motion", "sharpness", "light_confidence", "travel"} <= set(m.columns)


def test_clip_rejected_by_filters_with_its_reason(tmp_path, png_clip):
    sheet = _sheet(tmp_path / "clips.csv", [f"{png_clip}/empty/empty.####.png,,empty",
                                             f"{png_clip}/walk/walk.####.png,,walk"])
    settings = {**TINY, "min_area": 0.2}  # the walker is smaller than that
    counts = runner.run(sheet, tmp_path / "out", settings, log=lambda *_: None)
    assert counts["samples"] == 0 and counts["rejected"] >= 3
    m = pd.read_csv(tmp_path / "out" / "manifest.csv", keep_default_na=False)
    empty = m[m["clip"] == "empty"]
    assert (empty["status"] == "rejected").all()
    assert empty["reasons"].str.contains("no character on 5 frame").all()
    walk = m[m["clip"] == "walk"]
    assert walk["reasons"].str.contains(r"character too small \(").all()
    # a dataset with no accepted samples is a clear error for the training side
    with pytest.raises(DatasetError, match="no accepted samples"):
        read_index(tmp_path / "out")
    # and the command says so (exit 1), naming the manifest
    r = cinecomp(REPO, "curate", "--clips", str(sheet), "--out", str(tmp_path / "out2"), "--settings", json.dumps(settings))
    assert r.returncode == 1, r.stderr
    assert "no window was accepted" in r.stderr and "manifest.csv" in r.stderr


def test_bad_clips_rows_are_named_before_any_work(tmp_path, png_clip):
    sheet = _sheet(tmp_path / "clips.csv", [
        f"{png_clip}/walk/walk.####.png,ok,walk",
        "missing.mp4,,m",
        f"{png_clip}/walk/walk.####.png,,walk",  # the same id again
        f"{png_clip}/walk/walk.####.png,,w3,abc,,",
        f"{png_clip}/walk/walk.####.png,,w4,,1010,1002",
        f"{png_clip}/walk/walk.####.png,,w5,,1001,1003",
        "synthetic:nope,,s1",
    ], header="clip,prompt,id,fps,first,last")
    with pytest.raises(CurateError) as exc:
        read_clips(sheet, TINY)
    text = str(exc.value)
    assert "row 3 (missing.mp4)" in text and "missing.mp4" in text and "fix:" in text
    assert "row 4" in text and "also row 2's" in text
    assert "row 5" in text and "fps 'abc'" in text
    assert "row 6" in text and "first 1010 is after last 1002" in text
    assert "row 7" in text and "fewer than one window of 5" in text
    assert "row 8" in text and "unknown synthetic scene" in text
    assert "row 2 " not in text.replace("row 2's", "")
    bad = _sheet(tmp_path / "cols.csv", ["x.mp4,1"], header="clip,shutter")
    with pytest.raises(CurateError, match="unknown column.*shutter"):
        read_clips(bad, TINY)
    with pytest.raises(ValueError, match="4n\\+1"):
        check_settings({"window": 8})
    with pytest.raises(ValueError, match="multiple of 16"):
        check_settings({"width": 100})
    # the command: exit 2 and every problem, nothing written
    r = cinecomp(REPO, "curate", "--clips", str(sheet), "--out", str(tmp_path / "never"))
    assert r.returncode == 2 and "row 3 (missing.mp4)" in r.stderr
    assert not (tmp_path / "never").exists()


def test_real_clip_curated_into_valid_shards(tmp_path, shared_data):
    clip = shared_data / "people_video" / "sam2_gallery_05_default_juggle.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} absent (see shared/data/MANIFEST.md)")
    sheet = _sheet(tmp_path / "clips.csv", [f"{clip},a man juggles a football,juggle,12,1001,1060"],
                   header="clip,prompt,id,fps,first,last")
    # the weight-free background model cannot see behind a person who stays in place: with the default
    # filters every window is rejected for it, with the reason
    out = tmp_path / "default"
    counts = runner.run(sheet, out, {"window": 9, "width": 96}, log=lambda *_: None)
    m = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert counts["samples"] == 0 and m["reasons"].str.contains("stays in place").all()
    # with that filter off the same clip becomes valid shards
    counts = runner.run(sheet, tmp_path / "open", {"window": 9, "width": 96, "min_travel": 0, "min_iou": 0,
                                                   "max_area_change": 100}, log=lambda *_: None)
    assert counts["samples"] >= 1
    key, s = _samples(tmp_path / "open")[0]
    assert s["target_rgb"].shape == (9, 48, 96, 3) and s["meta"]["source"] == "real"
    assert s["meta"]["prompt"] == "a man juggles a football"


def test_curate_target_is_not_in_the_render_dag(tmp_path):
    sheet = _sheet(tmp_path / "clips.csv", ["synthetic:random:1,,r1", "synthetic:ev02,,e2"])
    cfg = f"curate={{clips: {sheet}, out: {tmp_path / 'cur'}, settings: {{window: 5, width: 64, height: 48}}}}"
    # planned in an empty directory: the curate target reads no shot sheet
    (tmp_path / "empty").mkdir()
    r = subprocess.run([sys.executable, "-m", "snakemake", "curate", "-n", "--snakefile", str(REPO / "Snakefile"),
                        "--configfile", str(REPO / "config.yaml"), "--directory", str(tmp_path / "empty"),
                        "--config", cfg, "shots=/nonexistent/shots.csv"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "curate_clip" in r.stdout and "clips/r1" in r.stdout and "clips/e2" in r.stdout
    # the render DAG of a sheet of its own (a clean checkout has no demo/ to plan the repo's sheet)
    from cinecomp.synth.renderer import make_demo_shot

    make_demo_shot(tmp_path / "demo", "sa", 48, 28, 1001, 1005)
    (tmp_path / "shots.csv").write_text(
        "shot,plate,plate_colourspace,first_frame,last_frame,fps,environment,env_colourspace,version\n"
        "sa,demo/sa/plate/sa_plate.####.exr,ACEScg,1001,1005,24,demo/sa/env/sa_env.####.exr,ACEScg,1\n")
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
                        "--configfile", str(REPO / "config.yaml"), "--directory", str(tmp_path),
                        "--config", cfg, "shots=shots.csv"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "rule ingest" in r.stdout or "localrule ingest" in r.stdout  # the render DAG was planned
    assert "curate_clip" not in r.stdout and "rule curate" not in r.stdout


def test_hostile_curate_arguments_are_refused_before_any_work(tmp_path, capsys):
    """Deep --settings, --out naming a file, a clips row with extra cells (issue 19)."""
    from cinecomp.cli import main as cli

    sheet = _sheet(tmp_path / "clips.csv", ["synthetic:ev01,a prompt,extra"], header="clip,prompt")
    with pytest.raises(CurateError, match="row 2: 3 cells but the header has 2 columns"):
        read_clips(sheet, TINY)
    assert cli.main(["curate", "--clips", str(sheet), "--out", str(tmp_path / "o"),
                     "--settings", "[" * 60_000]) == 2
    assert "nested too deeply" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    good = _sheet(tmp_path / "good.csv", ["synthetic:ev01,a prompt"], header="clip,prompt")
    assert cli.main(["curate", "--clips", str(good), "--out", str(tmp_path / "afile")]) == 2
    err = capsys.readouterr().err
    assert "afile is a file, not a directory" in err and "fix" in err
    assert (tmp_path / "afile").read_text() == "" and not (tmp_path / "clips").exists()


def _pathtraced_shot(root, name="bl_tiny_s0", split="tune", frames=6, w=32, h=18):
    """A path-traced shot folder in the format of ../shared/data/pathtraced (io.pathtraced), tiny: a grey
    actor column and a red box on a green screen; the truth puts them on a ramp with a shadow."""
    import cv2

    from cinecomp.io import exr as exrio

    shot = root / name
    y, x = np.mgrid[:h, :w]
    env = np.stack([0.3 + 0.4 * y / h, 0.35 + 0.2 * x / w, 0.4 + 0 * x], -1)
    for i in range(frames):
        f = 1001 + i
        actor = (abs(x - 8 - i) <= 2) & (y >= 3) & (y < 15)
        box = (x >= 14 + i) & (x < 20 + i) & (y >= 10) & (y < 15)
        shadow = (y >= 15) & (x >= 8 + i) & (x < 20 + i)
        green = np.where(actor[..., None], 0.6, np.where(box[..., None], [0.7, 0.1, 0.1], [0.1, 0.75, 0.2]))
        truth = np.where(actor[..., None], 0.5, np.where(box[..., None], [0.6, 0.1, 0.1], env * np.where(shadow, 0.4, 1.0)[..., None]))
        masks = np.stack([actor, box, actor | box], -1).astype(np.uint8) * 255
        for element, img in (("greenscreen", green), ("groundtruth", truth), ("environment", env)):
            (shot / element).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(shot / element / f"{name}.{f:04d}.png"), (np.clip(img, 0, 1)[..., ::-1] * 65535).astype(np.uint16))
        (shot / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(shot / "masks" / f"{name}.{f:04d}.png"), masks[..., ::-1])
        z = np.where(actor | box, 4.0, np.where(y >= 9, 2.0 + 30.0 / np.maximum(y - 8, 1), 1e10)).astype(np.float32)
        exrio.write_exr(shot / "depth" / f"{name}.{f:04d}.exr", {"Y": z})
    (shot / "shot.json").write_text(json.dumps({
        "shot_id": name, "frame_start": 1001, "frame_end": 1000 + frames, "resolution": [w, h], "split": split,
        "camera": {"matrix_world": [[1, 0, 0, 0], [0, 0, -1, -5], [0, 1, 0, 1.6], [0, 0, 0, 1]], "focal_length_mm": 35.0,
                   "sensor_width_mm": 36.0},
        "sun": {"direction_to_sun": [0.5, 0.5, 0.7], "angular_diameter_deg": 2.0}}))
    return shot


def test_pathtraced_shots_curated_into_exact_pairs_and_the_report_split_refused(tmp_path):
    """A ``pathtraced:<folder>`` row (bench/blender_shots.py renders them): the target is the render's truth,
    the input is its green screen through the project's keyer, the prop from the render's mask; a shot of
    the report split, a missing frame and a folder that is no shot are named before any work."""
    from cinecomp.curate.pipeline import to_model
    from cinecomp.io.pathtraced import read_png, srgb_to_working

    shot = _pathtraced_shot(tmp_path)
    sheet = _sheet(tmp_path / "clips.csv", [f"pathtraced:{shot.name},a man pushes a box,"])
    counts = runner.run(sheet, tmp_path / "out", {"window": 5, "width": 32, "height": 16, "max_windows": 2},
                        log=lambda *_: None)
    assert counts["samples"] == 1  # 6 frames: one window of 5
    key, s = _samples(tmp_path / "out")[0]
    assert key == "bl_tiny_s0_w000" and s["meta"]["source"] == "pathtraced" and s["meta"]["split"] == "tune"
    truth = srgb_to_working(read_png(shot / "groundtruth" / "bl_tiny_s0.1001.png"))[1:17]  # centre crop 18 -> 16
    np.testing.assert_allclose(s["target_rgb"][0], to_model(truth), atol=2e-3)
    box = s["tri_mask"][0, 11:13, 15:18]  # the red box of frame 1001 (rows 10-14, crop offset 1)
    assert (box[..., 1] > 0.9).all() and (s["tri_mask"][0, 5:10, 7:10, 0] > 0.9).all()  # prop / character
    assert s["effect_mask"][0, 14:16, 9:19].mean() > 0.3 > 0.02 > s["effect_mask"][0, :3, 24:].max()  # the shadow
    assert np.isinf(s["target_depth"][0, 0]).all() and np.isfinite(s["character_depth"][0, 8, 8])
    assert s["harmonize_rgb"].shape == s["target_rgb"].shape  # harmonize's comp: a harmonize-base model's input

    _pathtraced_shot(tmp_path, "shot13_venice_sunset", split="tune")  # the report half, whatever it claims
    _pathtraced_shot(tmp_path, "bl_report_s1", split="report")
    holed = _pathtraced_shot(tmp_path, "bl_holed_s2")
    (holed / "depth" / "bl_holed_s2.1003.exr").unlink()
    bad = _sheet(tmp_path / "bad.csv", ["pathtraced:shot13_venice_sunset,x,a", "pathtraced:bl_report_s1,x,b",
                                        "pathtraced:bl_holed_s2,x,c", "pathtraced:nowhere,x,d"])
    with pytest.raises(CurateError) as e:
        runner.run(bad, tmp_path / "out2", {"window": 5, "width": 32, "height": 16}, log=lambda *_: None)
    msg = str(e.value)
    assert "shot13_venice_sunset is in the report split" in msg and "bl_report_s1 is in the report split" in msg
    assert "bl_holed_s2.1003.exr" in msg and "nowhere/shot.json: no shot.json" in msg
    assert not (tmp_path / "out2").exists()
