"""The diffusion backend's shot preparation (EXRs -> model arrays) and its model-directory checks."""

import json
import shutil

import numpy as np
import pytest

from cinecomp.io import exr as exrio
from cinecomp.diffusion.checks import (
    check_pipeline_dir,
    check_text_encoder_dir,
    model_fingerprint,
)
from cinecomp.diffusion.shot import from_model_space, padded_size, prepare_inputs, to_model_space
from helpers import REPO

pytest.importorskip("torch")


@pytest.mark.parametrize(
    "size, ranks, want",
    [
        ((28, 48), 1, (32, 48)),
        ((28, 48), 2, (32, 48)),  # 2 x 3 tokens per latent frame split evenly: no extra padding
        ((16, 48), 2, (16, 64)),  # 1 x 3 tokens: widen to 4 so two ranks can split them
        ((720, 1280), 8, (720, 1280)),  # 45 x 80 tokens
        ((1080, 1920), 8, (1088, 1920)),
    ],
)
def test_padded_size(size, ranks, want):
    assert padded_size(*size, ranks) == want


def test_model_space_round_trip():
    rng = np.random.default_rng(0)
    srgb = rng.random((2, 4, 4, 3), dtype=np.float32)
    lin = from_model_space(srgb, "sRGB Encoded Rec.709 (sRGB)")  # in-gamut ACEScg colours
    np.testing.assert_allclose(to_model_space(lin, "sRGB Encoded Rec.709 (sRGB)"), srgb, atol=1e-4)
    # ACEScg colours outside Rec.709 clip (the model sees display-referred frames)
    assert to_model_space(np.array([[[[0.0, 0.0, 1.0]]]], np.float32), "sRGB Encoded Rec.709 (sRGB)").min() == 0.0
    # highlights above display white clip (the model sees display-referred frames)
    assert to_model_space(np.full((1, 1, 1, 3), 8.0, np.float32), "sRGB Encoded Rec.709 (sRGB)").max() == 1.0


def test_prepare_inputs_unpremultiplies_masks_and_pads(tmp_path):
    t, h, w = 3, 20, 24
    alpha = np.zeros((h, w), np.float32)
    alpha[5:15, 6:18] = 1.0
    alpha[5:15, 6] = 0.5  # a soft edge
    colour = np.array([0.2, 0.1, 0.05], np.float32)
    keys, envs = [], []
    for i in range(t):
        key = np.concatenate([colour * alpha[..., None], alpha[..., None]], axis=-1)
        env = np.full((h, w, 3), 0.18, np.float32)
        keys.append(tmp_path / f"k.{i}.exr")
        envs.append(tmp_path / f"e.{i}.exr")
        exrio.write_rgba(keys[-1], key, dtype=np.float32)
        exrio.write_rgba(envs[-1], env, dtype=np.float32)
    arrays, size = prepare_inputs(keys, envs, "sRGB Encoded Rec.709 (sRGB)", ranks=1)
    assert size == (h, w)
    assert arrays["character_rgb"].shape == (t, 32, 32, 3)
    tri = arrays["tri_mask"]
    np.testing.assert_allclose(tri.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(tri[0, :h, :w, 0], alpha)
    assert (tri[..., 1] == 0).all()
    # inside the character: the straight colour, encoded; at the soft edge: the same colour x 0.5
    enc = to_model_space(colour.reshape(1, 1, 1, 3), "sRGB Encoded Rec.709 (sRGB)")[0, 0, 0]
    np.testing.assert_allclose(arrays["character_rgb"][0, 10, 10], enc, atol=1e-4)
    np.testing.assert_allclose(arrays["character_rgb"][0, 10, 6], enc * 0.5, atol=1e-4)
    assert (arrays["character_rgb"][0, :h, :w][alpha == 0] == 0).all()
    # written as .npy files frame by frame: the same arrays
    mapped, _ = prepare_inputs(keys, envs, "sRGB Encoded Rec.709 (sRGB)", ranks=1, out_dir=tmp_path)
    for name, a in arrays.items():
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.npy"), a)
    # padding repeats the edge
    np.testing.assert_array_equal(arrays["environment_rgb"][:, h:], arrays["environment_rgb"][:, h - 1 : h].repeat(32 - h, 1))
    # with the mask stage's files, the tri-mask is theirs: the prop (to be replaced) is conditioning
    masks = []
    for i in range(t):
        prop = np.zeros_like(alpha)
        prop[5:15, 12:18] = alpha[5:15, 12:18]
        masks.append(tmp_path / f"m.{i}.exr")
        exrio.write_exr(masks[-1], {"mask.character": alpha - prop, "mask.prop": prop, "mask.environment": 1 - alpha})
    tracked, _ = prepare_inputs(keys, envs, "sRGB Encoded Rec.709 (sRGB)", ranks=1, mask_files=masks)
    np.testing.assert_array_equal(tracked["tri_mask"][0, :h, :w, 1], prop)
    np.testing.assert_allclose(tracked["tri_mask"].sum(-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(tracked["character_rgb"], arrays["character_rgb"])


def test_prepare_inputs_rejects_mismatched_elements(tmp_path):
    exrio.write_rgba(tmp_path / "k.exr", np.ones((8, 8, 4), np.float32))
    exrio.write_rgba(tmp_path / "e.exr", np.ones((8, 10, 3), np.float32))
    with pytest.raises(ValueError, match="environment frames"):
        prepare_inputs([tmp_path / "k.exr"], [tmp_path / "e.exr"], "sRGB Encoded Rec.709 (sRGB)")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from cinecomp.diffusion.tiny_models import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("tiny"), seed=0)


def _edit_json(path, **changes):
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def test_check_pipeline_dir(tiny, tmp_path):
    assert check_pipeline_dir(tiny["pipeline"], ranks=2) == []
    [p] = check_pipeline_dir(tmp_path / "missing")
    assert str(tmp_path / "missing") in p and "does not exist" in p and "cinecomp models tiny" in p

    bad = tmp_path / "bad"
    shutil.copytree(tiny["pipeline"], bad)
    (bad / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    _edit_json(bad / "vae" / "config.json", z_dim=8)
    problems = "\n".join(check_pipeline_dir(bad, ranks=3))
    assert f"{bad / 'vae'}: no weights" in problems
    assert "do not fit the VAE's z_dim=8" in problems
    assert "2 attention heads cannot be split over 3 ranks" in problems

    (bad / "model_index.json").unlink()
    assert any(f"{bad / 'model_index.json'}: model_index.json" in p for p in check_pipeline_dir(bad))


def test_unknown_scheduler_is_an_error_not_euler(tiny, tmp_path):
    """A scheduler cinecomp does not sample with stops the plan (and the loaders) naming the file."""
    from cinecomp.diffusion.tiny_models import scheduler_class
    from cinecomp.diffusion.errors import CheckpointError

    bad = tmp_path / "sched"
    shutil.copytree(tiny["pipeline"], bad)
    assert scheduler_class(bad / "scheduler").__name__ == "FlowMatchEulerDiscreteScheduler"
    _edit_json(bad / "scheduler" / "scheduler_config.json", _class_name="DDIMScheduler")
    assert any("scheduler 'DDIMScheduler' is not one cinecomp samples with" in p for p in check_pipeline_dir(bad))
    with pytest.raises(CheckpointError, match="scheduler_config.json.*DDIMScheduler"):
        scheduler_class(bad / "scheduler")


def test_check_text_encoder_dir(tiny, tmp_path):
    assert check_text_encoder_dir(tiny["text_encoder"], None, text_dim=32) == []
    [p] = check_text_encoder_dir(tiny["text_encoder"], None, text_dim=4096)
    assert "d_model=32" in p and "text_dim=4096" in p
    te = tmp_path / "te"
    shutil.copytree(tiny["text_encoder"], te)
    [p] = check_text_encoder_dir(te, None, text_dim=32)
    assert "no tokenizer" in p


def test_model_fingerprint_follows_weights(tiny, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny["pipeline"], copy)
    assert model_fingerprint(copy) == model_fingerprint(tiny["pipeline"])
    weights = copy / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes())  # retrained weights: same size, written later
    assert model_fingerprint(copy) != model_fingerprint(tiny["pipeline"])


def test_check_diffusion_config_lists_every_problem(tiny):
    from cinecomp.diffusion.checks import check_diffusion_config

    good = dict(pipeline=str(tiny["pipeline"]), text_encoder=str(tiny["text_encoder"]), tokenizer="", ranks=2,
                window=5, overlap=1, model_colourspace="sRGB Encoded Rec.709 (sRGB)")
    assert check_diffusion_config(good) == []
    problems = "\n".join(check_diffusion_config(dict(good, window=6, overlap=6, model_colourspace="sRGB-ish")))
    assert "diffusion.window=6 must be 4n+1" in problems
    problems += "\n".join(check_diffusion_config(dict(good, window=9, overlap=3)))
    assert "diffusion.overlap=3 must be 4m+1" in problems and "fix: use 1 or 5" in problems
    problems += "\n".join(check_diffusion_config(dict(good, window=9, overlap=5)))
    assert "diffusion.overlap=5 is more than half of window=9" in problems
    assert "diffusion.model_colourspace: unknown colourspace 'sRGB-ish'" in problems


def test_the_shipped_proof_model_is_complete_small_and_selected_by_its_overlay():
    """models/proof (bench/train_proof.py --ship): what `make demo-diffusion` renders with."""
    import yaml

    from cinecomp.diffusion.checks import check_diffusion_config

    root = REPO / "models" / "proof"
    from cinecomp.configfile import load_config

    overlay = yaml.safe_load((root / "cinecomp.yaml").read_text())
    d = load_config([REPO / "config.yaml", root / "cinecomp.yaml"])["diffusion"]  # its paths: beside the file
    assert d["pipeline"] == str(root / "pipeline") and d["text_encoder"] == str(root / "text_encoder")
    assert check_diffusion_config(d) == []
    assert overlay["backends"]["composite"] == "diffusion" and d["output"] == "layers"
    assert sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) < 20e6
    card = (root / "MODEL_CARD.md").read_text()
    assert "Data:" in card and "steps" in card and "shadow_err" in card


def test_frames_at_a_model_height_come_back_to_the_plate_with_its_detail(tmp_path, monkeypatch):
    """output: frames with diffusion.model_height: the shot goes to the model at that height, the launcher
    is asked for the over reconstruction, and a model that changes nothing gives back the full-size over
    comp, detail included (here the launcher is a stand-in that returns the over comp it was given)."""
    import logging

    from cinecomp.composite.over import over
    from cinecomp.diffusion import shot as D
    from cinecomp.diffusion.windows import Window, window_path, write_manifest

    t, h, w = 2, 40, 64
    rng = np.random.default_rng(0)
    alpha = np.zeros((h, w), np.float32)
    alpha[8:32, 20:40] = 1.0
    keys, envs, plates = [], [], []
    for i in range(t):
        char = rng.uniform(0.1, 0.6, (h, w, 3)).astype(np.float32) * alpha[..., None]
        env = rng.uniform(0.05, 0.9, (h, w, 3)).astype(np.float32)  # fine detail a small model cannot carry
        keys.append((1001 + i, tmp_path / f"k.{i}.exr"))
        envs.append((1001 + i, tmp_path / f"e.{i}.exr"))
        exrio.write_rgba(keys[-1][1], np.concatenate([char, alpha[..., None]], -1), dtype=np.float32)
        exrio.write_rgba(envs[-1][1], env, dtype=np.float32)
        plates.append(over(char, alpha, env))
    asked = {}

    def launcher(work, settings, ranks, threads, log_file):  # a model that keeps the over comp it is given
        asked.update(settings)
        arr = {n: np.load(work / "shot" / f"{n}.npy") for n in ("character_rgb", "tri_mask", "environment_rgb")}
        a = arr["tri_mask"][..., :1] + arr["tri_mask"][..., 1:2]
        comp = arr["character_rgb"] + (1 - a) * arr["environment_rgb"]  # premultiplied over, model space
        out = work / "windows"
        out.mkdir(exist_ok=True)
        win = Window(0, 0, t, t)
        np.savez(window_path(out, win), frames=comp, depth=np.ones(comp.shape[:3], np.float32),
                 over_reconstruction=comp, key=np.array("k"))
        write_manifest(out, [win], {0: "k"}, t)
        return out

    monkeypatch.setattr(D, "launch", launcher)
    monkeypatch.setattr(D, "prompt_arrays", lambda *a: {})
    settings = {"attrs": {"shot": "mh"}, "output": "frames", "model_height": 16,
                "model_colourspace": "sRGB Encoded Rec.709 (sRGB)", "window": 5, "overlap": 1, "steps": 1,
                "prompt": "", "negative_prompt": ""}
    D.composite_shot(keys, envs, None, tmp_path / "out", tmp_path / "work", settings, logging.getLogger("t"))
    assert asked["output"] == "layers"  # the over reconstruction is what tells kept content from new
    assert np.load(tmp_path / "work" / "shot" / "character_rgb.npy").shape[1:3] == (16, 32)  # the model's size
    outs = sorted((tmp_path / "out").glob("*.exr"))
    assert len(outs) == t
    for f, plate in zip(outs, plates):
        rgb = exrio.read_rgba(f)[..., :3]
        assert rgb.shape == plate.shape
        np.testing.assert_allclose(rgb, plate, atol=0.01)  # the plate's detail, not a 16-px picture upsampled


@pytest.mark.parametrize("alpha", [1.0, 0.0], ids=["opaque", "empty"])
@pytest.mark.parametrize("layers_height", [None, 16], ids=["frames", "layers"])
def test_prepare_inputs_takes_an_opaque_or_empty_key(tmp_path, alpha, layers_height):
    """A key with no background anywhere (alpha 1) or no foreground (alpha 0): the model's inputs are
    finite and the tri-mask is all character / all environment, in both output modes."""
    h, w = 18, 32
    key = np.concatenate([np.full((h, w, 3), 0.3 * alpha, np.float32), np.full((h, w, 1), alpha, np.float32)], -1)
    exrio.write_rgba(tmp_path / "k.exr", key, dtype=np.float32)
    exrio.write_rgba(tmp_path / "e.exr", np.full((h, w, 4), 0.18, np.float32), dtype=np.float32)
    arrays, size = prepare_inputs([tmp_path / "k.exr"], [tmp_path / "e.exr"], "sRGB Encoded Rec.709 (sRGB)",
                                  layers_height=layers_height)
    assert size == (h, w) and all(np.isfinite(a).all() for a in arrays.values())
    np.testing.assert_allclose(arrays["tri_mask"][..., 0], alpha)
    np.testing.assert_allclose(arrays["tri_mask"][..., 2], 1.0 - alpha)
