"""Learned perception backends (sam2 masks, matanyone key, model depth) with random-weight models
built from the packages' own configs and loaded from local files, as real weights would be."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from cinecomp.io import exr as exrio
from cinecomp.perception import models as perception
from cinecomp.camera import FAR, Camera
from cinecomp.frames import frame_path
from helpers import HAS_MATANYONE, NO_MATANYONE, check_trimask, keyed_push_shot, prop_box

W, H, FIRST, LAST = 64, 36, 1001, 1005
HINT = 1003


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    """A demo shot whose character pushes a box, keyed by the chroma keyer."""
    return keyed_push_shot(tmp_path_factory.mktemp("shot"), W, H, FIRST, LAST, version=None)


# ------------------------------------------------------------------------------------------------
# SAM 2
# ------------------------------------------------------------------------------------------------


def run_sam2(shot, models, out_dir, hint):
    from cinecomp.perception.sam2_masks import sam2_masks

    outs = [frame_path(out_dir, "sh", "masks", None, f) for f in shot["frames"]]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    report = sam2_masks(shot["keys"], outs, hint=hint, plate_size=(W, H), settings={**models["sam2"], "device": "cpu"},
                        base_dir=shot["root"], attrs={"shot": "sh"}, log=logging.getLogger("test"))
    return report, {f: exrio.read_layers(o) for f, o in zip(shot["frames"], outs)}


def test_sam2_box_prompt_gives_one_trimask_per_frame_inside_the_key(shot, perception_models, tmp_path, monkeypatch):
    from cinecomp.perception import sam2_masks

    seen = []  # the predictor reads frames on demand, one at a time (streamed)
    get = sam2_masks.KeyFrames.__getitem__
    monkeypatch.setattr(sam2_masks.KeyFrames, "__getitem__", lambda self, i: seen.append(i) or get(self, i))
    box = prop_box(shot["truth"][HINT]["mask.prop"], margin=2)
    report, layers = run_sam2(shot, perception_models, tmp_path, {"frame": HINT, "box": box})
    assert sorted(layers) == shot["frames"]
    check_trimask(shot["keys"], layers)
    assert report["backend"] == "sam2" and report["frames"] == len(shot["frames"])
    p = report["prompts"]
    assert p["prop_frame_index"] == HINT - FIRST and p["character_frame_indices"] == [HINT - FIRST]
    assert "forwards and backwards" in report["tracking"]
    assert set(seen) == set(range(len(shot["frames"])))
    hdr = exrio.read_exr_header(frame_path(tmp_path, "sh", "masks", None, FIRST))
    assert hdr["shot"] == "sh" and hdr["frame"] == FIRST


def test_sam2_clicks_and_mask_prompts(shot, perception_models, tmp_path):
    from PIL import Image

    box = prop_box(shot["truth"][HINT]["mask.prop"])
    centre = [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]
    report, layers = run_sam2(shot, perception_models, tmp_path / "points",
                              {"frame": HINT, "points": [centre, [2, 2]], "labels": [1, 0]})
    check_trimask(shot["keys"], layers)
    assert report["prompts"]["prop"] == "2 click(s)"
    Image.fromarray(((shot["truth"][HINT]["mask.prop"] > 0.5) * 255).astype(np.uint8)).save(shot["root"] / "hint.png")
    report, layers = run_sam2(shot, perception_models, tmp_path / "mask", {"frame": HINT, "mask": "hint.png"})
    check_trimask(shot["keys"], layers)
    assert report["prompts"]["prop"].startswith("mask")


def test_sam2_memory_is_trimmed_behind_the_current_frame():
    from cinecomp.perception.sam2_masks import _trim_memory

    state = {"output_dict_per_obj": {0: {"non_cond_frame_outputs": {t: {} for t in range(40)}}}}
    _trim_memory(None, state, current=39, anchor=0, reverse=False, keep=8)
    assert sorted(state["output_dict_per_obj"][0]["non_cond_frame_outputs"]) == list(range(0, 9)) + list(range(31, 40))


# ------------------------------------------------------------------------------------------------
# Depth model
# ------------------------------------------------------------------------------------------------


def test_fit_scale_shift_ignores_objects_on_the_ground():
    from cinecomp.perception.depth_model import fit_scale_shift

    rng = np.random.default_rng(0)
    target = rng.uniform(0.05, 1.0, (40, 60)).astype(np.float32)
    pred = (target - 0.1) / 3.0
    pred[10:20, 10:30] += 0.5  # a standing object: outliers
    s, t = fit_scale_shift(pred, target, np.ones_like(pred))
    assert s == pytest.approx(3.0, rel=1e-3) and t == pytest.approx(0.1, abs=1e-3)


def test_aligner_matches_the_ground_and_smooths_over_time():
    from cinecomp.perception.depth_model import DepthAligner

    cam = Camera.from_params({"height_m": 1.6, "tilt_deg": -10})
    ground = cam.ground_depth(W, H)
    disparity = 1.0 / ground
    aligner = DepthAligner(ground, "relative", temporal=0.0)
    z = aligner(disparity * 7.0 + 0.3)  # a relative model: any scale and shift
    on = ground < FAR / 2
    np.testing.assert_allclose(z[on], ground[on], rtol=1e-3)
    # a prediction farther where the ground is nearer is no fit: the frame keeps the ground depth
    np.testing.assert_array_equal(aligner(-disparity), ground)
    assert aligner.rejected == 1
    # the model's own scale drifting +-20% from frame to frame is absorbed by the per-frame fit
    smooth = DepthAligner(ground, "relative", temporal=0.6)
    for s in [1.0, 1.2, 0.8, 1.2]:
        np.testing.assert_allclose(smooth(disparity * s)[on], ground[on], rtol=1e-3)
    # per-pixel noise the fit cannot absorb flickers less once smoothed
    rng = np.random.default_rng(1)
    noise = [1 + 0.012 * rng.standard_normal(ground.shape) for _ in range(6)]
    raw = DepthAligner(ground, "relative", temporal=0.0)
    smooth = DepthAligner(ground, "relative", temporal=0.6)

    def flicker(aligner):
        zs = [aligner(disparity * n)[on] for n in noise]
        return float(np.mean([np.abs(np.log(zs[i + 1] / zs[i])).mean() for i in range(len(zs) - 1)]))

    assert flicker(smooth) < 0.6 * flicker(raw)


def test_depth_model_loads_from_a_local_directory_and_aligns(shot, perception_models):
    from cinecomp.perception.depth_model import DepthRun

    cam = Camera.from_params({})
    ground = cam.ground_depth(W, H)
    run = DepthRun(ground, {**perception_models["depth_model"], "device": "cpu"})
    envs = [exrio.read_rgba(shot["root"] / "sh" / "env" / f"sh_env.{f:04d}.exr") for f in shot["frames"]]
    zs = [run.depth(e) for e in envs]
    rep = run.report()
    assert rep["model"] == "DepthAnythingForDepthEstimation" and rep["kind"] == "relative"
    for z in zs:
        assert z.shape == (H, W) and z.dtype == np.float32 and np.isfinite(z).all()
        assert 0 < z.min() and z.max() <= FAR
    assert len(run.aligner.fits) == len(zs)


# ------------------------------------------------------------------------------------------------
# MatAnyone
# ------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_MATANYONE, reason=NO_MATANYONE)
def test_matanyone_network_from_the_package_config_keys_like_the_chroma_backend(shot, perception_models, tmp_path):
    from cinecomp.perception.matanyone import matanyone_key_shot

    frames = shot["frames"][:3]
    outs = [frame_path(tmp_path, "sh", "key", None, f) for f in frames]
    report = matanyone_key_shot(shot["plates"][:3], outs, {"matanyone_warmup": 1},
                                settings={**perception_models["matanyone"], "device": "cpu"}, attrs={"shot": "sh"})
    assert report["backend"] == "matanyone" and report["frames"] == 3
    for f, out in zip(frames, outs):
        chroma = exrio.read_layers(dict(shot["keys"])[f])
        ch = exrio.read_layers(out)
        assert set(ch) == set(chroma) == {"R", "G", "B", "A"}
        a = ch["A"].astype(np.float32)
        assert 0 <= a.min() and a.max() <= 1
        assert np.isfinite(np.stack([ch[c] for c in "RGB"])).all()
    hdr = exrio.read_exr_header(outs[0])
    assert hdr["frame"] == FIRST and "keyScreen" in hdr
    # matted at a 24-pixel shorter side by the package's own resizing, alpha back at the plate's size
    small = matanyone_key_shot(shot["plates"][:2], outs[:2], {"matanyone_warmup": 0, "matanyone_max_size": 24},
                               settings={**perception_models["matanyone"], "device": "cpu"}, attrs={"shot": "sh"})
    assert small["frames"] == 2 and exrio.read_layers(outs[1])["A"].shape == (H, W)


def test_edge_combination_keeps_the_chroma_key_away_from_edges():
    from cinecomp.perception.key import KeyParams
    from cinecomp.perception.matanyone import combine

    alpha_c = np.zeros((40, 60), np.float32)
    alpha_c[10:30, 20:40] = 1.0
    alpha_m = np.full_like(alpha_c, 0.1)  # MatAnyone's errors away from the edges are not taken...
    alpha_m[10:30, 20:40] = 0.9
    alpha_m[9, 20:40] = 0.5  # ...its softer edge is
    out = combine(alpha_m, alpha_c, KeyParams.from_dict({"matanyone_edge": 3}))
    assert out[20, 30] == 1.0 and out[0, 0] == 0.0  # interior and far screen: chroma
    assert out[9, 30] == pytest.approx(0.5, abs=0.05)  # at the edge: MatAnyone's
    everywhere = combine(alpha_m, alpha_c, KeyParams.from_dict({"matanyone_combine": "matanyone"}))
    assert (everywhere == alpha_m).all()


# ------------------------------------------------------------------------------------------------
# Checks before any job
# ------------------------------------------------------------------------------------------------


def test_checks_accept_the_models_and_name_bad_paths(perception_models, tmp_path):
    p = {k: perception_models.get(k, {}) for k in ("sam2", "depth_model", "matanyone")}
    assert perception.check_backend("masks", "sam2", p) == []
    assert perception.check_backend("depth", "model", p) == []
    assert perception.check_backend("masks", "track", p) == []
    missing = perception.check_backend("masks", "sam2", {"sam2": {"config": perception_models["sam2"]["config"],
                                                                   "checkpoint": str(tmp_path / "nope.pt")}})
    assert len(missing) == 1 and "nope.pt" in missing[0] and "does not exist" in missing[0]
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    bad = perception.check_backend("masks", "sam2", {"sam2": {**perception_models["sam2"], "checkpoint": str(junk)}})
    assert "junk.pt" in bad[0] and "weights_only" in bad[0]
    # the checkpoint of the tiny model with the package's small (hiera-s) config: not that model
    wrong = perception.check_backend("masks", "sam2", {"sam2": {**perception_models["sam2"],
                                                                "config": "configs/sam2.1/sam2.1_hiera_s.yaml"}})
    assert "not a checkpoint of the SAM 2 model" in wrong[0] and perception_models["sam2"]["checkpoint"] in wrong[0]
    # a depth directory whose weights belong to another config
    other = tmp_path / "other_depth"
    shutil.copytree(perception_models["depth_model"]["path"], other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["fusion_hidden_size"] = 24
    (other / "config.json").write_text(json.dumps(cfg))
    bad = perception.check_backend("depth", "model", {"depth_model": {"path": str(other)}})
    assert len(bad) == 1 and str(other) in bad[0]
    nodir = perception.check_backend("depth", "model", {"depth_model": {"path": str(tmp_path / "none")}})
    assert "does not exist" in nodir[0]
    if HAS_MATANYONE:
        assert perception.check_backend("key", "matanyone", p) == []
        bad = perception.check_backend("key", "matanyone",
                                       {"matanyone": {"checkpoint": perception_models["sam2"]["checkpoint"]}})
        assert "not a checkpoint of the" in bad[0] and perception_models["sam2"]["checkpoint"] in bad[0]


def test_cli_models_check_perception(perception_models, tmp_path):
    import yaml

    from cinecomp.cli.main import main

    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump({"perception": {"sam2": perception_models["sam2"],
                                                  "depth_model": perception_models["depth_model"],
                                                  "matanyone": {"checkpoint": str(tmp_path / "m.pth")}}}))
    assert main(["models", "check", "--perception", "--configfile", str(cfg)]) == 1  # matanyone path missing


def test_cli_validate_names_shot_backend_and_path(shot, perception_models, tmp_path, capsys):
    import yaml

    from cinecomp.cli.main import REPO, main

    plate = shot["root"] / "sh" / "plate" / "sh_plate.####.exr"
    env = shot["root"] / "sh" / "env" / "sh_env.####.exr"
    sheet = tmp_path / "shots.csv"
    sheet.write_text("shot,plate,plate_colourspace,first_frame,last_frame,fps,environment,env_colourspace,version,"
                     f"masks_backend,depth_backend\nsx,{plate},ACEScg,{FIRST},{LAST},24,{env},ACEScg,1,sam2,model\n"
                     f"sy,{plate},ACEScg,{FIRST},{LAST},24,{env},ACEScg,1,,model\n")
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["perception"]["sam2"] = perception_models["sam2"]
    cfg["perception"]["depth_model"]["path"] = str(tmp_path / "no_depth_model")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["validate", "--sheet", str(sheet), "--configfile", str(tmp_path / "c.yaml")]) == 1
    err = capsys.readouterr().err
    assert f"shot(s) sx, sy: depth backend model: {tmp_path / 'no_depth_model'}: depth model directory does not exist" in err
    assert "masks backend sam2" not in err  # that one is fine
    cfg["perception"]["depth_model"] = perception_models["depth_model"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["validate", "--sheet", str(sheet), "--configfile", str(tmp_path / "c.yaml")]) == 0


@pytest.mark.skipif(not HAS_MATANYONE, reason=NO_MATANYONE)
def test_matanyone_first_mask_from_sam2(shot, perception_models):
    from cinecomp.perception.key import KeyParams
    from cinecomp.perception.matanyone import first_mask

    rgb = exrio.read_rgba(shot["plates"][0])[..., :3]
    alpha = exrio.read_layers(shot["keys"][0][1])["A"].astype(np.float32)
    params = KeyParams.from_dict({"matanyone_first_mask": "sam2"})
    m = first_mask(rgb, alpha, params, {**perception_models["sam2"], "device": "cpu"})
    assert m.shape == (H, W) and set(np.unique(m)) <= {0.0, 1.0}
    assert (first_mask(rgb, alpha, KeyParams(), None) == (alpha > 0.5)).all()
