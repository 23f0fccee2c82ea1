"""The evaluation harness: metric maths, the eval set and its camera/light survey, one workflow run."""

import dataclasses
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cinecomp import metrics
from cinecomp.camera import Camera, light_direction
from cinecomp.synth.renderer import pose, render_frame, scene_camera, scene_light, to_camera_world
from cinecomp.evaluate.suite import (PSNR_CAP, display, eval_shots, frame_metrics, make_eval_set, sheet_rows)
from helpers import SHARED_DATA


def _spec(name):
    return next(s for s in eval_shots() if s.name == name)


# ---------------------------------------------------------------- metrics
def test_identical_images_score_perfectly():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (24, 32, 3))
    assert metrics.psnr_from_mse(metrics.region_mse(a, a)) == float("inf")
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    assert metrics.region_mae(a, a) == 0.0
    lin = rng.uniform(0.05, 0.8, (24, 32, 3)).astype(np.float32)
    alpha = np.zeros((24, 32), np.float32)
    alpha[5:15, 5:15] = 1
    m = frame_metrics(lin, lin, lin * 1.5, alpha)  # env brighter everywhere: all of the outside is "shadow"
    assert m["psnr_full"] == m["psnr_char"] == m["psnr_shadow"] == PSNR_CAP
    assert m["ssim_full"] == pytest.approx(1.0) and m["ssim_char"] == pytest.approx(1.0)
    assert m["char_err"] == 0 and m["shadow_err"] == 0


def test_psnr_and_ssim_of_known_errors():
    a = np.full((16, 16, 3), 0.5)
    assert metrics.psnr_from_mse(metrics.region_mse(a + 0.1, a)) == pytest.approx(20.0)
    noisy = a + np.random.default_rng(1).normal(0, 0.1, a.shape)
    assert metrics.ssim(noisy, a) < 0.5
    assert np.isnan(metrics.region_mse(a, a, np.zeros((16, 16), bool)))  # empty region: no value


def test_shadow_region_and_known_shadow_error():
    env = np.full((20, 30, 3), 0.4, np.float32)
    gt = env.copy()
    gt[12:18, 3:10] *= 0.5  # the true shadow
    gt[2:6, 20:25] *= 0.95  # slightly darker: under the 0.9 threshold, not a shadow
    alpha = np.zeros((20, 30), np.float32)
    alpha[0:10, 0:4] = 1  # the character (darker truth there does not count)
    gt[0:10, 0:4] = 0.01
    region = metrics.shadow_region(gt, env, alpha)
    expected = np.zeros((20, 30), bool)
    expected[12:18, 3:10] = True
    np.testing.assert_array_equal(region, expected)
    m = frame_metrics(env, gt, env, alpha)  # a comp without the shadow
    want = float(np.abs(display(env) - display(gt))[expected].mean())
    assert m["shadow_err"] == pytest.approx(want, rel=1e-6)
    assert want > 0.1


def test_flicker():
    rng = np.random.default_rng(2)
    gts = [rng.uniform(0, 1, (8, 8, 3)) for _ in range(5)]
    assert metrics.flicker([g + 0.2 for g in gts], gts) == pytest.approx(0.0, abs=1e-12)
    noise = [g + (0.1 if t % 2 else -0.1) * rng.uniform(0.5, 1, g.shape) for t, g in enumerate(gts)]
    assert metrics.flicker(noise, gts) > 0.1


# ---------------------------------------------------------------- eval set
def test_eval_set_manifest_split_is_fixed_and_balanced(tmp_path):
    entries = make_eval_set(tmp_path, frames=2, size=(32, 18))
    manifest = json.loads((tmp_path / "manifest.json").read_text())["shots"]
    assert len(manifest) >= 12 and [e["shot"] for e in entries] == list(manifest)
    splits = Counter(e["split"] for e in entries)
    assert splits["tune"] == splits["report"] == len(entries) // 2
    for cond in ("key", "direction", "camera", "plate"):  # every condition class appears in both splits
        by_split = {sp: {e["conditions"][cond] for e in entries if e["split"] == sp} for sp in ("tune", "report")}
        for value in {"sun", "lamp", "overcast", "front", "side", "back"} & by_split["tune"]:
            assert value in by_split["report"], f"{cond}={value} only in tune"
    assert {e["split"] for e in entries if e["plate_gain"] != [1.0, 1.0, 1.0]} == {"tune", "report"}
    for e in entries:
        assert set(e["camera"]) == {"focal_mm", "sensor_width_mm", "height_m", "tilt_deg", "roll_deg"}
        assert (tmp_path / e["truth"].replace("####", f"{e['last']:04d}")).is_file()
        if e["prop_hint"]:
            frame, box = e["prop_hint"].split(":")
            x0, y0, x1, y1 = map(int, box.split(","))
            assert int(frame) == e["prop_frame"] and 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 18
    assert make_eval_set(tmp_path, ["ev01"], frames=2, size=(32, 18))[0] == manifest["ev01"]  # cached
    rows = sheet_rows(entries[:1], ["over", "harmonize"], "auto", "set")
    assert [r["shot"] for r in rows] == [f"{entries[0]['shot']}_over", f"{entries[0]['shot']}_harmonize"]
    assert not any(r.get("light") or r.get("camera") for r in rows)


@pytest.mark.parametrize("name", ["ev02", "ev06", "ev13"])  # tilted high camera, turned camera, telephoto
def test_scene_camera_matches_the_renderer(name):
    scene = dataclasses.replace(_spec(name).scene, contact_at=6)
    w, h = 96, 54
    cam = Camera.from_params(scene_camera(scene))
    r = render_frame(6, w, h, scene, ss=1)
    # the box's corners projected with camera.py land on the box's pixels
    p = pose(6, scene)
    c = np.array([[p["bx"] + sx * p["half"], p["half"] + sy * p["half"], sz * p["half"]]
                  for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    x, y, _ = cam.project(to_camera_world(c, scene), w, h)
    ys, xs = np.nonzero(r["prop_mask"] > 0.5)
    assert abs(x.min() - xs.min()) < 1.0 and abs(x.max() - (xs.max() + 1)) < 1.0
    assert abs(y.min() - ys.min()) < 1.0 and abs(y.max() - (ys.max() + 1)) < 1.0
    # the renderer's depth, unprojected with camera.py, puts ground pixels on the ground (y = 0)
    ground = (r["alpha"] == 0) & (r["depth"] < 30)
    yy, xx = np.nonzero(ground)
    pts = cam.unproject(xx + 0.5, yy + 0.5, r["depth"][ground], w, h)
    if scene.backdrop != "photo":
        np.testing.assert_allclose(pts[:, 1], 0.0, atol=2e-3)
    else:  # some pixels are on the backdrop plane
        assert np.median(np.abs(pts[:, 1])) < 2e-3


@pytest.mark.parametrize("name", ["ev02", "ev03", "ev06"])
def test_scene_light_is_the_sun_direction_relative_to_the_camera(name):
    scene = _spec(name).scene
    light = scene_light(scene)
    fwd = np.subtract(scene.cam_target, scene.cam_pos)
    fwd_h = np.array([fwd[0], 0.0, fwd[2]]) / np.hypot(fwd[0], fwd[2])
    right_h = np.cross([0.0, 1.0, 0.0], fwd_h)
    sun = np.asarray(scene.sun_dir) / np.linalg.norm(scene.sun_dir)
    expected = np.array([sun @ right_h, sun[1], sun @ fwd_h])
    np.testing.assert_allclose(light_direction(light["azimuth_deg"], light["elevation_deg"]), expected, atol=1e-4)


def test_shadow_falls_away_from_a_light_at_camera_right():
    scene = dataclasses.replace(_spec("ev02").scene, contact_at=6)  # sun azimuth 90: camera right
    assert scene_light(scene)["azimuth_deg"] == pytest.approx(90.0, abs=1e-3)
    r = render_frame(6, 96, 54, scene)
    shadow = metrics.shadow_region(r["gt_rgb"], r["env_rgb"], r["alpha"], darker=0.6)
    assert shadow.sum() > 20
    xs_shadow = np.nonzero(shadow)[1].mean()
    xs_objects = np.nonzero(r["alpha"] > 0.5)[1].mean()
    assert xs_shadow < xs_objects - 3, "a light at camera right casts shadows to the left"
    # key_to_fill as light.py reads it: the ground in shadow keeps 1 / (1 + key_to_fill) of the light
    ratio = (r["gt_rgb"] @ [0.2722, 0.6741, 0.0537])[shadow] / (r["env_rgb"] @ [0.2722, 0.6741, 0.0537])[shadow]
    assert np.median(ratio) == pytest.approx(1 / (1 + scene_light(scene)["key_to_fill"]), abs=0.03)


def test_lamp_light_points_from_the_character_to_the_lamp():
    scene = dataclasses.replace(_spec("ev09").scene, contact_at=6)
    light = scene_light(scene, frames=10)
    mid = np.array([np.mean([pose(i, scene)["cx"] for i in range(10)]), 1.0, 0.0])
    d = to_camera_world(np.subtract(scene.lamp_pos, mid), scene, point=False)
    np.testing.assert_allclose(light_direction(light["azimuth_deg"], light["elevation_deg"]), d / np.linalg.norm(d),
                               atol=1e-4)
    assert light["key_to_fill"] > 1 and light["intensity"] > 0
    assert scene_light(_spec("ev07").scene) == {"key_to_fill": 0.0}  # overcast: no key


# ---------------------------------------------------------------- end to end
@pytest.mark.slow
def test_cli_eval_runs_the_workflow_and_scores(tmp_path):
    cli = Path(sys.executable).with_name("cinecomp")
    r = subprocess.run([str(cli), "eval", "--out", str(tmp_path), "--backends", "over", "--shots", "ev01",
                        "--frames", "3", "--size", "48x28", "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    scores = json.loads(r.stdout)
    assert set(scores) == {"over"}
    assert set(scores["over"]) == {"psnr_full", "ssim_full", "psnr_char", "ssim_char", "char_err", "fmse", "psnr_shadow",
                                   "shadow_err", "shadow_ber", "flicker"}
    assert all(v is not None and np.isfinite(v) for v in scores["over"].values()), scores
    assert 5 < scores["over"]["psnr_full"] < 60 and 0 < scores["over"]["ssim_full"] <= 1
    from PIL import Image

    with Image.open(tmp_path / "strips" / "ev01_given.png") as im:
        assert im.width > 3 * 48 and im.height > 3 * 28  # plate | over | truth, three frames
    sheet = (tmp_path / "eval_given.csv").read_text()
    assert "ev01_over" in sheet and "azimuth_deg" in sheet


def test_cli_eval_unknown_backend_is_a_clear_error(tmp_path):
    cli = Path(sys.executable).with_name("cinecomp")
    r = subprocess.run([str(cli), "eval", "--out", str(tmp_path), "--backends", "over,magic"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 2
    assert "unknown composite backend(s) magic" in r.stderr and "over" in r.stderr
    assert not (tmp_path / "set").exists()


# ---------------------------------------------------------------- the path-traced judge
def test_shadow_ber_counts_shadows_drawn_where_there_are_none():
    env = np.full((20, 20, 3), 0.5, np.float32)
    alpha = np.zeros((20, 20), np.float32)
    truth = env.copy()
    truth[10:, :10] *= 0.4  # a shadow in the lower left
    assert metrics.shadow_ber(truth, truth, env, alpha) == 0.0
    assert metrics.shadow_ber(env, truth, env, alpha) == pytest.approx(0.5)  # nothing drawn: all missed
    everywhere = env * 0.4
    assert metrics.shadow_ber(everywhere, truth, env, alpha) == pytest.approx(0.5)  # all drawn: half wrong
    assert metrics.shadow_ber(everywhere, env, env, alpha) == pytest.approx(1.0)  # the truth has none
    assert metrics.shadow_ber(env, env, env, alpha) == pytest.approx(0.0)


def test_worse_than_over_flag():
    from cinecomp.evaluate.suite import worse_than_over

    assert worse_than_over({"psnr_full": 25.0}, {"psnr_full": 26.0})
    assert not worse_than_over({"psnr_full": 25.97}, {"psnr_full": 26.0})  # inside the noise margin
    assert worse_than_over({"psnr_full": float("nan")}, {"psnr_full": 26.0})  # no frame at all
    assert not worse_than_over({"psnr_full": 20.0}, None)


def _blender_camera(height, tilt_deg, roll_deg=0.0, yaw_deg=30.0):
    """A Blender camera matrix (Z up, looking along its local -Z) at ``height``, pitched and rolled."""
    from scipy.spatial.transform import Rotation

    r = Rotation.from_euler("xyz", [90.0 + tilt_deg, roll_deg, yaw_deg], degrees=True)  # Blender's XYZ euler
    m = np.eye(4)
    m[:3, :3] = r.as_matrix()
    m[:3, 3] = [1.0, -2.0, height]
    return m


@pytest.mark.parametrize("tilt", [-12.0, 0.0, 5.0])
def test_blender_camera_to_the_sheets_camera(tilt):
    from cinecomp.evaluate.pathtraced import camera_of, key_of

    m = _blender_camera(1.55, tilt)
    meta = {"camera": {"matrix_world": m.tolist(), "focal_length_mm": 30.0, "sensor_width_mm": 36.0}}
    cam = camera_of(meta)
    assert cam["height_m"] == pytest.approx(1.55) and cam["tilt_deg"] == pytest.approx(tilt, abs=1e-3)
    assert cam["roll_deg"] == pytest.approx(0.0, abs=1e-3) and cam["focal_mm"] == 30.0
    fwd, right = -m[:3, 2], m[:3, 0]
    for d, az in ((right, 90.0), (-right, 270.0), (np.array([fwd[0], fwd[1], 0.0]), 0.0)):
        up = d / np.linalg.norm(d) * np.cos(np.radians(40)) + np.array([0, 0, np.sin(np.radians(40))])
        light = key_of({**meta, "sun": {"direction_to_sun": up.tolist(), "angular_diameter_deg": 1.0}})
        assert light["azimuth_deg"] % 360 == pytest.approx(az, abs=1e-3)
        assert light["elevation_deg"] == pytest.approx(40.0, abs=1e-3) and light["softness_deg"] == 0.5


def test_blender_camera_roll_turns_the_horizon_counter_clockwise():
    from cinecomp.evaluate.pathtraced import camera_of

    cam = camera_of({"camera": {"matrix_world": _blender_camera(1.6, -5.0, roll_deg=-8.0).tolist(),
                                "focal_length_mm": 35.0}})
    # the sheet's camera, rolled as given, puts a world-horizontal direction on the same image slope
    c = Camera.from_params(cam)
    right, up, _ = c.basis()
    assert abs(cam["roll_deg"]) == pytest.approx(8.0, abs=0.2)
    assert np.sign(cam["roll_deg"]) == np.sign(-(right @ np.array([0.0, 1.0, 0.0])))


PATHTRACED = SHARED_DATA / "pathtraced"


@pytest.mark.skipif(not (PATHTRACED / "shot09_empty_warehouse_01" / "shot.json").is_file(),
                    reason="../shared/data/pathtraced is absent (the path-traced judge set)")
def test_pathtraced_shot_becomes_an_eval_entry(tmp_path):
    from cinecomp.evaluate import pathtraced as pt
    from cinecomp.io import exr

    shots = {p.name for p in pt.find_shots()}
    assert set(pt.TUNE) | set(pt.REPORT) <= shots and not set(pt.TUNE) & set(pt.REPORT)
    e = pt.convert_shot(PATHTRACED / "shot09_empty_warehouse_01", tmp_path)
    assert e["split"] == "tune" and (e["first"], e["last"]) == (1001, 1012)
    meta = json.loads((PATHTRACED / "shot09_empty_warehouse_01" / "shot.json").read_text())
    assert e["camera"]["height_m"] == pytest.approx(meta["camera"]["location"][2], abs=1e-3)
    truth = exr.read_layers(tmp_path / e["truth"].replace("####", "1006"))
    env = exr.read_layers(tmp_path / e["environment"].replace("####", "1006"))
    assert {"R", "G", "B", "alpha.A", "mask.character", "mask.prop"} <= set(truth) and "depth.Z" in env
    assert 0 < truth["alpha.A"].mean() < 0.5 and np.isfinite(env["depth.Z"]).all()
    frame, box = e["prop_hint"].split(":")
    x0, y0, x1, y1 = map(int, box.split(","))
    assert int(frame) == 1006 and 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 180
    stamp = (tmp_path / e["shot"] / "converted.json").stat().st_mtime_ns
    pt.convert_shot(PATHTRACED / "shot09_empty_warehouse_01", tmp_path)  # converted once
    assert (tmp_path / e["shot"] / "converted.json").stat().st_mtime_ns == stamp


def test_pathtraced_set_bad_folder_and_knobs(tmp_path):
    from cinecomp.evaluate.suite import EvalError, run_eval

    with pytest.raises(EvalError, match="no path-traced shots under"):
        run_eval(tmp_path / "out", ["over"], eval_set="pathtraced", pathtraced_root=tmp_path / "nothing")
    with pytest.raises(EvalError, match="--set must be"):
        run_eval(tmp_path / "out", ["over"], eval_set="cycles")


# ---------------------------------------------------------------- issue 19: a failed or hostile eval run
def _eval(capsys, *args) -> tuple[int, str, str]:
    from cinecomp.cli import main as cli

    rc = cli.main(["eval", *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("args, says", [
    (["--cores", "0"], "--cores 0 is outside 1..1024"),  # hung
    (["--frames", "100000000"], "--frames 100000000 is outside 2..1000"),  # hung
    (["--size", "200000x200000"], "must be even and 16..8192"),  # a 1.16 TiB allocation
    (["--size", "9" * 5000 + "x16"], "must be WIDTHxHEIGHT"),
    (["--configfile", "nope.yaml"], "config file nope.yaml does not exist"),  # Snakemake's traceback, exit 0
])
def test_eval_bad_numbers_and_files_are_one_line_errors(tmp_path, monkeypatch, capsys, args, says):
    monkeypatch.chdir(tmp_path)
    rc, out, err = _eval(capsys, "--out", str(tmp_path / "ev"), "--shots", "ev01", "--backends", "over", *args)
    assert rc == 2 and says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "ev" / "set").exists()


def test_eval_unwritable_out_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    rc, _, err = _eval(capsys, "--out", str(tmp_path / "afile" / "ev"), "--shots", "ev01", "--backends", "over")
    assert rc == 2 and "cannot be written" in err and "Traceback" not in err, err


def test_failed_eval_rows_exit_non_zero_naming_them(monkeypatch, capsys):
    """Rows the workflow did not finish: the tables still print, the exit code says it failed."""
    from cinecomp.evaluate import suite

    done = {m: 20.0 for m in suite.METRICS} | {"frames": 3, "expected": 3}
    lost = {m: float("nan") for m in suite.METRICS} | {"frames": 0, "expected": 3}
    monkeypatch.setattr(suite, "run_eval", lambda *a, **k: {"given": {"over": {"ev01": done},
                                                                      "diffusion": {"ev01": lost}}})
    import cinecomp.cli.eval as cli_eval

    monkeypatch.setattr(cli_eval, "run_eval", suite.run_eval)
    rc, out, err = _eval(capsys, "--backends", "over,diffusion", "--shots", "ev01", "--json")
    assert rc == 1 and json.loads(out)["diffusion"]["psnr_full"] is None
    assert "the workflow failed for 1 eval row(s): ev01_diffusion (light given): 0 of 3 frames" in err, err


def test_an_earlier_runs_frames_are_never_scored(tmp_path, monkeypatch):
    """Another --size (or a failed run) must not score the comps an earlier run left in --out."""
    from cinecomp.evaluate import suite

    old = tmp_path / "results_given" / "ev01_over" / "v001" / "comp" / "ev01_over_comp_v001.1001.exr"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"an earlier run's frame")
    monkeypatch.setattr(suite.subprocess, "call", lambda *a, **k: 1)  # this run's workflow fails
    assert suite.run_workflow(tmp_path, "s.csv", "results_given", ["ev01_over"], 1, tmp_path / "log") == 1
    assert suite.comp_frames(tmp_path / "results_given", "ev01_over") == {}
    # and a comp that is not its truth's size is a one-line reason, not a numpy broadcast error
    set_dir = tmp_path / "set"
    entry = make_eval_set(set_dir, ["ev01"], frames=2, size=(32, 18))[0]
    comp = tmp_path / "c.exr"
    from cinecomp.io import exr as exrio

    exrio.write_rgba(comp, np.zeros((36, 64, 4), np.float32))
    with pytest.raises(suite.EvalError, match=r"is 64x36 but the truth of ev01 is 32x18"):
        suite.score_shot({1001: comp}, entry, set_dir)


def test_a_path_traced_depth_loses_its_actors_but_keeps_the_set_in_front_of_them(tmp_path):
    """depth/ of a path-traced shot is the truth render's: the actor (Z 4) stands on a ground whose Z
    falls row by row, under a sky (1e10), behind a post (Z 1.5) that is part of the set. The
    environment's Z has the ground and the sky where the actor was, and keeps the post."""
    import cv2

    from cinecomp.io import exr as exrio
    from cinecomp.io.pathtraced import environment_depth

    h, w, name = 18, 32, "bl_tiny_s0"
    y, x = np.mgrid[:h, :w]
    ground = np.where(y >= 6, 2.0 + 30.0 / np.maximum(y - 5, 1), 1e10).astype(np.float32)
    actor = (x >= 10) & (x < 16) & (y >= 2) & (y < 15)
    post = (x >= 12) & (x < 14)
    z = np.where(post, 1.5, np.where(actor, 4.0, ground)).astype(np.float32)
    seen = actor & ~post  # masks/: what of the actor the camera sees
    (tmp_path / name / "depth").mkdir(parents=True)
    (tmp_path / name / "masks").mkdir()
    exrio.write_exr(tmp_path / name / "depth" / f"{name}.1001.exr", {"Y": z})
    cv2.imwrite(str(tmp_path / name / "masks" / f"{name}.1001.png"),
                (np.stack([seen, seen, np.zeros_like(seen)], -1) * 255).astype(np.uint8))
    env = environment_depth(tmp_path / name, 1001)
    np.testing.assert_allclose(env[seen], ground[seen], rtol=1e-6)  # ground and sky behind the actor
    np.testing.assert_array_equal(env[post], 1.5)  # the set's post in front of it stays
    np.testing.assert_array_equal(env[~actor], z[~actor])
