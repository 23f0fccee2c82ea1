"""Issue 20 items 2 and 3: the lossless space-to-depth autoencoder, and a model that starts where
harmonize ends (harmonize's comp as input, RGB as a residual on it: untrained, it returns harmonize)."""

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cinecomp.diffusion.errors import DiffusionInputError  # noqa: E402
from cinecomp.io import exr as exrio  # noqa: E402
from helpers import REPO  # noqa: E402

T, H, W = 5, 32, 48
CS = "sRGB Encoded Rec.709 (sRGB)"


# ------------------------------------------------------------------------------------ autoencoder
def test_space_to_depth_vae_is_exactly_invertible_and_saves_like_a_diffusers_model(tmp_path):
    from cinecomp.diffusion.autoencoder import SpaceToDepthVAE

    vae = SpaceToDepthVAE()
    assert (vae.config.z_dim, vae.config.scale_factor_temporal, vae.config.scale_factor_spatial) == (768, 4, 8)
    x = torch.rand(2, 3, 9, 32, 48) * 2 - 1
    dist = vae.encode(x).latent_dist
    assert tuple(dist.mode().shape) == (2, 768, 3, 4, 6)
    assert torch.equal(dist.sample(), dist.mode())  # deterministic: no noise
    assert torch.equal(vae.decode(dist.mode()).sample, x)  # bit for bit
    assert torch.equal(vae.decode(vae.encode(x[:, :, :1]).latent_dist.mode(), return_dict=False)[0], x[:, :, :1])
    vae.save_pretrained(str(tmp_path / "vae"))
    again = SpaceToDepthVAE.from_pretrained(str(tmp_path / "vae"))
    assert torch.equal(again.decode(again.encode(x).latent_dist.mode()).sample, x)
    assert again.config.latents_std == [1.0] * 768


@pytest.mark.parametrize("shape, says", [
    ((1, 3, 6, 32, 48), "needs 4n+1 frames and width/height multiples of 8 (fix: trim to 5 or pad to 9 frames"),
    ((1, 3, 5, 30, 44), "crop to 40x24 or pad to 48x32"),
    ((1, 4, 5, 32, 48), "encodes (B, 3, T, H, W) video"),
])
def test_space_to_depth_vae_refuses_what_it_cannot_encode_losslessly(shape, says):
    from cinecomp.diffusion.autoencoder import SpaceToDepthVAE

    with pytest.raises(DiffusionInputError) as err:
        SpaceToDepthVAE().encode(torch.zeros(shape))
    assert says in str(err.value)
    with pytest.raises(ValueError, match="z_dim=16 does not match"):
        SpaceToDepthVAE(z_dim=16)


# ------------------------------------------------------------------------------- harmonize base
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from cinecomp.diffusion.tiny_models import make_tiny_models

    root = tmp_path_factory.mktemp("hb")
    return {vae: make_tiny_models(root / vae, seed=0, vae=vae, harmonize_base=True)["pipeline"]
            for vae in ("space_to_depth", "wan")}


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    tri = np.zeros((T, H, W, 3), np.float32)
    tri[:, 8:24, 16:28, 0] = 1
    tri[..., 2] = 1 - tri[..., 0]
    char = rng.uniform(0.2, 0.8, (T, H, W, 3)).astype(np.float32) * tri[..., :1]
    env = rng.uniform(0.1, 0.9, (T, H, W, 3)).astype(np.float32)
    harm = rng.uniform(0.05, 0.95, (T, H, W, 3)).astype(np.float32)
    return dict(character_rgb=char, tri_mask=tri, environment_rgb=env, harmonize_rgb=harm,
                prompt_embeds=torch.ones(1, 4, 32), negative_prompt_embeds=torch.zeros(1, 4, 32))


def test_model_dirs_with_the_space_to_depth_vae_check_and_load_by_class(models, tmp_path):
    """The ranks load the VAE of the class its config names (a Wan-only loader broke on it); the plan-time
    check accepts both classes and names any other with the fix."""
    import json
    import shutil

    from cinecomp.diffusion.autoencoder import SpaceToDepthVAE, load_vae
    from cinecomp.diffusion.checks import check_pipeline_dir, takes_harmonize

    root = models["space_to_depth"]
    assert check_pipeline_dir(root) == [] and takes_harmonize(root)
    assert isinstance(load_vae(root / "vae"), SpaceToDepthVAE)
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    cfg = bad / "vae" / "config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "_class_name": "AutoencoderKL"}))
    assert any("VAE 'AutoencoderKL' is not one cinecomp runs with (fix: use one of AutoencoderKLWan, "
               "SpaceToDepthVAE)" in p for p in check_pipeline_dir(bad))
    with pytest.raises(ValueError, match="not one cinecomp runs with"):
        load_vae(bad / "vae")


def test_untrained_harmonize_base_model_returns_harmonize_and_a_residual_changes_it(models):
    """Euler sampling lands on harmonize's latent: with the lossless VAE the frames are harmonize's to
    float rounding (< 1e-6), with guidance too; the Wan VAE gives its own reconstruction of harmonize
    (what layers mode divides by: ratio 1). A non-zero RGB head moves them; absent, nothing is pinned."""
    from cinecomp.diffusion.pipeline import CinecompPipeline

    inputs = _inputs()
    s2d = CinecompPipeline.from_pretrained(str(models["space_to_depth"]))
    out = s2d(**inputs, num_inference_steps=3, guidance_scale=3.0, seed=1, reconstruct_over=True)
    np.testing.assert_allclose(out.frames, inputs["harmonize_rgb"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(out.over_reconstruction, inputs["harmonize_rgb"], atol=1e-6, rtol=0)
    wan = CinecompPipeline.from_pretrained(str(models["wan"]))
    out = wan(**inputs, num_inference_steps=3, guidance_scale=1.0, seed=1, reconstruct_over=True)
    np.testing.assert_allclose(out.frames, out.over_reconstruction, atol=1e-5, rtol=0)
    assert np.abs(out.frames - inputs["harmonize_rgb"]).max() > 0.05  # the tiny random VAE is lossy
    prop = inputs["tri_mask"].copy()
    prop[:, 0:8, 0:16, 1], prop[:, 0:8, 0:16, 2] = 1.0, 0.0  # a prop to replace: it leaves harmonize's comp too
    c = s2d.prepare_conditioning(inputs["character_rgb"], prop, None, inputs["environment_rgb"], replace_prop=True,
                                 harmonize_rgb=inputs["harmonize_rgb"])
    base = ((s2d.decode_latents(c.base[:, :-1])[0] + 1) / 2).permute(1, 2, 3, 0).numpy()
    assert np.abs(base[:, 0:8, 0:16]).max() < 1e-6 and np.abs(base[:, 8:] - inputs["harmonize_rgb"][:, 8:]).max() < 1e-6
    with torch.no_grad():
        s2d.transformer.proj_out.bias.fill_(0.05)  # a residual: x0 = harmonize + r
    moved = s2d(**inputs, num_inference_steps=3, guidance_scale=1.0, seed=1).frames
    assert np.abs(moved - inputs["harmonize_rgb"]).mean() > 0.005
    s2d.transformer.zero_harmonize_base()
    absent = s2d(**{**inputs, "harmonize_rgb": None}, num_inference_steps=3, guidance_scale=1.0, seed=1).frames
    assert np.abs(absent - inputs["harmonize_rgb"]).mean() > 0.1  # flag 0: the base is not used


def test_residual_velocity_holds_clean_tokens_and_the_base_flag_switches_it(models):
    """Per-token timesteps (context / references at 0): velocity 0 there; elsewhere x_t - sigma v = base."""
    from cinecomp.diffusion.transformer import CinecompTransformer3DModel

    tr = CinecompTransformer3DModel.from_pretrained(str(models["space_to_depth"] / "transformer"))
    z, f, h, w = tr.config.rgb_channels, 3, 2, 4
    noisy = torch.randn(1, 2 * z, f, h, w)
    base = torch.randn(1, z, f, h, w)
    flags = torch.ones(1, 1, f, h, w)
    x = tr.pack_inputs(noisy, torch.zeros(1, 3 * z, f, h, w), torch.zeros(1, tr.config.mask_channels, f, h, w),
                       base=torch.cat([base, flags], 1))
    tokens = f * (h // 2) * (w // 2)
    ts = torch.full((1, tokens), 400.0)
    ts[:, : tokens // f] = 0.0  # the first latent frame is clean
    with torch.no_grad():
        v = tr(x, ts, torch.zeros(1, 4, 32), return_dict=False)[0][:, :z]
    assert float(v[:, :, 0].detach().abs().max()) == 0.0
    torch.testing.assert_close(noisy[:, :z, 1:] - 0.4 * v[:, :, 1:], base[:, :, 1:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="harmonize base \\+ flag have 3 channels"):
        tr.pack_inputs(noisy, torch.zeros(1, 3 * z, f, h, w), torch.zeros(1, tr.config.mask_channels, f, h, w),
                       base=torch.zeros(1, 3, f, h, w))


def test_older_model_dirs_have_no_harmonize_input_and_refuse_one_by_name():
    """The shipped proof model predates the field: it loads as before (no new channels), the rules
    give it no harmonize comp, and passing one names the model directory and the fix."""
    from cinecomp.diffusion.checks import takes_harmonize
    from cinecomp.diffusion.pipeline import CinecompPipeline

    proof = REPO / "models" / "proof" / "pipeline"
    assert not takes_harmonize(proof)
    pipe = CinecompPipeline.from_pretrained(str(proof))
    assert pipe.transformer.config.harmonize_base is False
    assert pipe.transformer.base_channel == pipe.transformer.config.in_channels
    inputs = _inputs()
    with pytest.raises(DiffusionInputError) as err:
        pipe(**inputs, num_inference_steps=1, guidance_scale=1.0, seed=0)
    assert f"transformer at {proof}" in str(err.value) and "harmonize_base: true" in str(err.value)


def _shot_files(tmp_path, inputs) -> tuple[list, list, list]:
    """(frame, path) lists of the key (character + its alpha), environment and harmonize EXRs of ``inputs``,
    scene-linear as the shot stage reads them."""
    from cinecomp.diffusion import shot as D

    alpha = inputs["tri_mask"][..., 0]
    keys, envs, harms = [], [], []
    for i in range(T):
        f = 1001 + i
        keys.append((f, tmp_path / f"k.{f}.exr"))
        envs.append((f, tmp_path / f"e.{f}.exr"))
        harms.append((f, tmp_path / f"h.{f}.exr"))
        char = D.from_model_space(inputs["character_rgb"][i], CS)
        exrio.write_rgba(keys[-1][1], np.concatenate([char, alpha[i][..., None]], -1), dtype=np.float32)
        exrio.write_rgba(envs[-1][1], D.from_model_space(inputs["environment_rgb"][i], CS), dtype=np.float32)
        exrio.write_rgba(harms[-1][1], D.from_model_space(inputs["harmonize_rgb"][i], CS), dtype=np.float32)
    return keys, envs, harms


@pytest.mark.parametrize("output, vae", [("frames", "space_to_depth"), ("layers", "wan")])
def test_the_shot_stage_returns_harmonizes_frames_from_an_untrained_model(models, tmp_path, monkeypatch, output, vae):
    """The diffusion backend's shot stage with harmonize's comp EXRs: the shot directory gets them as
    harmonize_rgb, the real pipeline renders the windows (in process, as the launcher's ranks would),
    and the composite EXRs are harmonize's (half-float EXRs: 1e-3). `layers`: harmonize's comp times
    the model's change of light, which is 1 for an untrained model even through a lossy VAE."""
    from cinecomp.diffusion import shot as D
    from cinecomp.diffusion.distributed import _load_shot
    from cinecomp.diffusion.pipeline import CinecompPipeline
    from cinecomp.diffusion.windows import render_windows

    inputs = _inputs(3)
    keys, envs, harms = _shot_files(tmp_path, inputs)
    pipe = CinecompPipeline.from_pretrained(str(models[vae]))

    def launcher(work, settings, ranks, threads, log_file):  # distributed.main's window loop, one rank
        shot = _load_shot(work / "shot")
        assert "harmonize_rgb" in shot
        call = dict(shot, num_inference_steps=2, guidance_scale=1.0, seed=0,
                    reconstruct_over=settings["output"] == "layers")
        render_windows(pipe, call, work / "windows", settings["window"], settings["overlap"], blend=False)
        return work / "windows"

    monkeypatch.setattr(D, "launch", launcher)
    monkeypatch.setattr(D, "prompt_arrays", lambda *a: {"prompt_embeds": np.ones((1, 4, 32), np.float32)})
    settings = {"attrs": {"shot": "hb"}, "output": output, "model_colourspace": CS, "window": 5, "overlap": 1,
                "steps": 2, "prompt": "", "negative_prompt": "", "layers_blur": 2.0}
    D.composite_shot(keys, envs, None, tmp_path / "out", tmp_path / "work", settings, logging.getLogger("t"),
                     harmonize_files=harms)
    outs = sorted((tmp_path / "out").glob("*.exr"))
    assert len(outs) == T
    for f, (_, h) in zip(outs, harms):
        np.testing.assert_allclose(exrio.read_rgba(f)[..., :3], exrio.read_rgba(h)[..., :3], atol=1e-3, rtol=1e-3)


def _render_zone(models, tmp_path, monkeypatch, zone: str, shot: str, keys, envs, harms, **more) -> list:
    """The shot stage with the real pipeline rendering the windows (1 step, in process) and a stand-in
    model whose light changes every pixel (``2 base + 0.1``), kept only where ``residual_zone`` says:
    the composite EXRs, one a frame."""
    from cinecomp.diffusion import light_ratio
    from cinecomp.diffusion import shot as D
    from cinecomp.diffusion.distributed import _load_shot
    from cinecomp.diffusion.pipeline import CinecompPipeline
    from cinecomp.diffusion.windows import render_windows

    pipe = CinecompPipeline.from_pretrained(str(models["space_to_depth"]))

    def launcher(work, settings, ranks, threads, log_file):
        call = dict(_load_shot(work / "shot"), num_inference_steps=1, guidance_scale=1.0, seed=0, reconstruct_over=True)
        render_windows(pipe, call, work / "windows", settings["window"], settings["overlap"], blend=False)
        return work / "windows"

    monkeypatch.setattr(D, "launch", launcher)
    monkeypatch.setattr(D, "prompt_arrays", lambda *a: {"prompt_embeds": np.ones((1, 4, 32), np.float32)})
    monkeypatch.setattr(light_ratio, "apply_layers", lambda plain, *a: plain * 2.0 + 0.1)
    settings = {"attrs": {"shot": shot}, "output": "layers", "model_colourspace": CS, "window": 5, "overlap": 1,
                "steps": 1, "prompt": "", "negative_prompt": "", "layers_blur": 2.0, "residual_zone": zone, **more}
    D.composite_shot(keys, envs, None, tmp_path / "out", tmp_path / "work", settings, logging.getLogger("t"),
                     harmonize_files=harms)
    outs = sorted((tmp_path / "out").glob("*.exr"))
    assert len(outs) == T
    return outs


def test_residual_zone_objects_keeps_the_base_comp_off_the_actors(models, tmp_path, monkeypatch):
    """diffusion.residual_zone objects: whatever the model changed, the composite is harmonize's comp
    where the key's alpha is 0 (the environment: its shadows and contact stay harmonize's) and the
    model's on the actors, blended by the alpha; with no base comp to keep (frames at the plate's own
    size) it is refused with the fix, before the model runs."""
    from cinecomp.diffusion import shot as D

    inputs = _inputs(4)
    alpha = inputs["tri_mask"][..., 0]
    keys, envs, harms = _shot_files(tmp_path, inputs)
    outs = _render_zone(models, tmp_path, monkeypatch, "objects", "rz", keys, envs, harms)
    settings = {"attrs": {"shot": "rz"}, "model_colourspace": CS, "window": 5, "overlap": 1, "steps": 1,
                "prompt": "", "negative_prompt": "", "residual_zone": "objects"}
    for f, (_, h), a in zip(outs, harms, alpha):
        got, base = exrio.read_rgba(f)[..., :3], exrio.read_rgba(h)[..., :3]
        expected = base + a[..., None] * (base + 0.1)  # base + alpha (model - base)
        np.testing.assert_allclose(got, expected, atol=2e-3, rtol=2e-3)
        assert (a == 0).any() and (a > 0.5).any()
        np.testing.assert_allclose(got[a == 0], base[a == 0], atol=1e-3, rtol=1e-3)
    with pytest.raises(DiffusionInputError, match="residual_zone 'objects'.*fix"):  # frames at the plate's size
        D.composite_shot(keys, envs, None, tmp_path / "out2", tmp_path / "work2", {**settings, "output": "frames"},
                         logging.getLogger("t"), harmonize_files=harms)


@pytest.mark.parametrize("zone", ["shadows", "shadows_only"])
def test_residual_zone_shadows_keeps_the_change_on_the_shadows_the_base_drew(models, tmp_path, monkeypatch, zone):
    """diffusion.residual_zone shadows: the model's change is kept on the actors (alpha) and where
    harmonize's comp is darker than the plain over comp (the shadow it drew), grown by 2% of the height
    (1 px here); everywhere else the composite is harmonize's, however much the model changed.
    shadows_only: the same shadows, and the solid actors harmonize's too."""
    from cinecomp.composite.over import over
    from cinecomp.diffusion import light_ratio

    inputs = _inputs(5)
    alpha = inputs["tri_mask"][..., 0]
    keys, envs, harms = _shot_files(tmp_path, inputs)
    for (_, k), (_, e), (_, h) in zip(keys, envs, harms):  # harmonize = over with a shadow at rows 26-29, cols 2-9
        key = exrio.read_rgba(k)
        base = over(key[..., :3], key[..., 3], exrio.read_rgba(e)[..., :3])
        base[26:30, 2:10] *= 0.5
        exrio.write_rgba(h, base, dtype=np.float32)
    outs = _render_zone(models, tmp_path, monkeypatch, zone, "rs", keys, envs, harms)
    for f, (_, h), a in zip(outs, harms, alpha):
        got, base = exrio.read_rgba(f)[..., :3], exrio.read_rgba(h)[..., :3]
        changed = base * 2.0 + 0.1
        for y, x in ((27, 5), (27, 10), (25, 2)):  # in the shadow, 1 px right of it, 1 px above it
            np.testing.assert_allclose(got[y, x], changed[y, x], atol=2e-3, rtol=2e-3)
        for y, x in ((27, 12), (2, 40), (30, 44)):  # farther: harmonize's
            np.testing.assert_allclose(got[y, x], base[y, x], atol=1e-3, rtol=1e-3)
        if zone == "shadows":  # the character: base + alpha (model - base)
            on = a > 0.5
            np.testing.assert_allclose(got[on], (base + a[..., None] * (base + 0.1))[on], atol=2e-3, rtol=2e-3)
        else:  # the solid character: harmonize's
            on = a > 0.999
            np.testing.assert_allclose(got[on], base[on], atol=1e-3, rtol=1e-3)
        assert on.sum() > 10
    with pytest.raises(ValueError, match="one of all, objects, shadows, shadows_only"):
        light_ratio.residual_zone("shadow", base, alpha[0], base)


def test_the_workflow_gives_a_harmonize_base_model_harmonizes_comp(models, tmp_path):
    """Dry run: with a harmonize-base model the diffusion shot with an environment plans harmonize's
    comp (rule harmonize_base, and the light it needs) before its composite; the shot without an
    environment (synthesised) and the `over` shot do not; an older model plans none."""
    import yaml
    from cinecomp.synth.renderer import make_demo_shot
    from helpers import SHEET_COLUMNS, planned_jobs

    make_demo_shot(tmp_path / "demo", "sd", 48, 28, 1001, 1005, plate_format="exr", env_kind="sequence")
    (tmp_path / "shots.csv").write_text("\n".join([
        SHEET_COLUMNS + ",prompt,composite_backend",
        "sd,demo/sd/plate/sd_plate.####.exr,ACEScg,1001,1005,24,demo/sd/env/sd_env.####.exr,ACEScg,1,a man,diffusion",
        "so,demo/sd/plate/sd_plate.####.exr,ACEScg,1001,1005,24,demo/sd/env/sd_env.####.exr,ACEScg,1,,over",
        "sr,demo/sd/plate/sd_plate.####.exr,ACEScg,1001,1005,24,,,1,a beach,diffusion",
    ]) + "\n")
    root = models["space_to_depth"]
    for name, pipeline in (("hb.yaml", root), ("old.yaml", REPO / "models" / "proof" / "pipeline")):
        (tmp_path / name).write_text(yaml.safe_dump({"diffusion": {
            "pipeline": str(pipeline), "text_encoder": str(root / "text_encoder"), "max_sequence_length": 16}}))
    jobs = planned_jobs(tmp_path, configs=("hb.yaml",))
    assert {("harmonize_base", "sd"), ("light", "sd"), ("composite", "sd")} <= jobs
    assert not {("harmonize_base", "so"), ("harmonize_base", "sr")} & jobs and ("composite", "sr") in jobs
    assert not any(rule == "harmonize_base" for rule, _ in planned_jobs(tmp_path, configs=("old.yaml",)))


def test_training_feeds_harmonize_as_the_shot_stage_does(models):
    """make_example gives a harmonize-base model the sample's harmonize comp with the environment (flag 1)
    and none without it (flag 0, as the shot stage without an environment); where harmonize is already
    the truth the untrained model's velocity is the training target (loss 0): training and sampling use
    one parameterisation. A sample without harmonize_rgb is refused with the fix."""
    from cinecomp.diffusion.pipeline import CinecompPipeline
    from cinecomp.io.dataset import DatasetError
    from cinecomp.train.loop import make_example, trained_modules, weighted_loss

    pipe = CinecompPipeline.from_pretrained(str(models["space_to_depth"]))
    assert "proj_out" in trained_modules(pipe.transformer)  # the zero RGB head is trained beside a LoRA
    x = _inputs(5)
    sample = dict(target_rgb=x["harmonize_rgb"], target_depth=np.full((T, H, W), 3.0, np.float32),
                  character_rgb=x["character_rgb"], environment_rgb=x["environment_rgb"], tri_mask=x["tri_mask"],
                  effect_mask=np.zeros((T, H, W), np.float32), harmonize_rgb=x["harmonize_rgb"],
                  meta={"prompt": "", "id": "s0"})
    cfg = {"dropout": {"text": 0.0, "environment": 0.0, "character_depth": 1.0, "context_prob": 0.0},
           "loss": {"character": 2.0, "prop": 2.0, "effect": 3.0, "environment": 1.0, "depth_weight": 0.5,
                    "shift": 0.0},
           "model": {"pipeline": models["space_to_depth"]}}
    embeds = {"": torch.zeros(1, 4, 32)}
    z = pipe.transformer.config.rgb_channels
    ex = make_example(pipe, sample, np.random.default_rng(0), cfg, embeds, "cpu")
    assert float(ex["input"][:, -1].min()) == 1.0  # the base flag: the last input channel
    with torch.no_grad():
        pred = pipe.transformer(ex["input"], ex["timestep"], ex["text"], return_dict=False)[0]
    assert float(weighted_loss(pred, ex, z, 0.0)[1]) < 1e-8
    cfg["dropout"]["environment"] = 1.0
    ex = make_example(pipe, sample, np.random.default_rng(0), cfg, embeds, "cpu")
    assert float(ex["input"][:, -(z + 1):].abs().max()) == 0.0  # no environment: no harmonize, flag 0
    cfg["dropout"]["environment"] = 0.0
    with pytest.raises(DatasetError, match="has no harmonize_rgb.*fix: curate the data again"):
        make_example(pipe, {k: v for k, v in sample.items() if k != "harmonize_rgb"}, np.random.default_rng(0),
                     cfg, embeds, "cpu")


def test_a_wan_checkpoint_widens_into_a_harmonize_base_model(tmp_path):
    """from-wan --harmonize-base: Wan's weights copied, harmonize's channels and the RGB head zero."""
    from cinecomp.diffusion.init_from_wan import init_from_wan
    from cinecomp.diffusion.tiny_models import TINY_LATENT_CHANNELS, make_tiny_wan
    from diffusers import WanTransformer3DModel

    wan_dir = make_tiny_wan(tmp_path / "wan")
    wan = WanTransformer3DModel.from_pretrained(str(wan_dir))
    plain, based = init_from_wan(wan_dir), init_from_wan(wan_dir, harmonize_base=True)
    z = TINY_LATENT_CHANNELS
    assert based.config.in_channels == plain.config.in_channels + z + 1 and based.config.harmonize_base
    assert float(based.patch_embedding.weight[:, plain.config.in_channels:].abs().max()) == 0.0
    assert float(based.proj_out.weight.abs().max()) == 0.0 and float(based.proj_out.bias.abs().max()) == 0.0
    torch.testing.assert_close(based.depth_proj_out.weight, wan.proj_out.weight)  # depth head: Wan's, as before
    torch.testing.assert_close(based.patch_embedding.weight[:, :z], wan.patch_embedding.weight)


def test_training_samples_references_and_a_prop_reference_changes_the_inputs_only_over_the_prop(models):
    """dropout.reference (issue 20 item 4): with the environment plate dropped an environment still is the
    reference; else the prop, cut from the target, is a prop reference. Its latent frame leads the example
    clean (timestep 0 per token, loss weight 0) as the sampler gives it, and prop replacement changes the
    model's inputs only over the prop (the lossless autoencoder keeps cells apart): nowhere else."""
    from cinecomp.diffusion.pipeline import CinecompPipeline
    from cinecomp.train.loop import draw_references, make_example

    pipe = CinecompPipeline.from_pretrained(str(models["space_to_depth"]))
    x = _inputs(7)
    tri = x["tri_mask"].copy()
    tri[:, 8:16, 16:24, 1], tri[:, 8:16, 16:24, 0] = 1, 0  # a prop on the 8x8 latent cell (1, 2)
    sample = dict(target_rgb=x["harmonize_rgb"], target_depth=np.full((T, H, W), 3.0, np.float32),
                  character_rgb=x["character_rgb"], environment_rgb=x["environment_rgb"], tri_mask=tri,
                  effect_mask=np.zeros((T, H, W), np.float32), harmonize_rgb=x["harmonize_rgb"], meta={"prompt": ""})
    rng = np.random.default_rng(0)
    (prop,) = draw_references(sample, False, rng, 1.0)
    assert prop.role == "prop" and prop.mask.sum() == 64 and float(np.abs(prop.image[0, 0]).max()) == 0.0
    (still,) = draw_references(sample, True, rng, 1.0)
    assert still.role == "environment" and any(np.array_equal(still.image, e) for e in x["environment_rgb"])
    assert draw_references(sample, False, rng, 0.0) == []
    no_prop = {**sample, "tri_mask": x["tri_mask"]}
    assert draw_references(no_prop, False, rng, 1.0) == []

    cfg = {"dropout": {"text": 0.0, "environment": 0.0, "character_depth": 1.0, "context_prob": 0.0, "reference": 1.0},
           "loss": {"character": 2.0, "prop": 2.0, "effect": 3.0, "environment": 1.0, "depth_weight": 0.5, "shift": 0.0},
           "model": {"pipeline": models["space_to_depth"]}}
    embeds = {"": torch.zeros(1, 4, 32)}
    ref = make_example(pipe, sample, np.random.default_rng(3), cfg, embeds, "cpu")
    plain = make_example(pipe, sample, np.random.default_rng(3), {**cfg, "dropout": {**cfg["dropout"], "reference": 0.0}},
                         embeds, "cpu")
    assert ref["input"].shape[2] == plain["input"].shape[2] + 1  # the reference's latent frame leads
    assert float(ref["weights"][:, :, 0].abs().max()) == 0.0 and ref["timestep"].ndim == 2
    tokens_per_frame = ref["timestep"].shape[1] // ref["input"].shape[2]
    assert float(ref["timestep"][0, :tokens_per_frame].max()) == 0.0 and float(ref["timestep"][0, tokens_per_frame:].min()) > 0
    z = pipe.transformer.config.rgb_channels
    cond_ref, cond_plain = ref["input"][:, 2 * z:, 1:], plain["input"][:, 2 * z:]  # conditioning of the shot's frames
    changed = (cond_ref - cond_plain).abs().amax(dim=(0, 1, 2))  # (h, w) latent cells
    assert float(changed[1, 2]) > 0.01  # the old prop left the plate, environment and harmonize inputs
    changed[1, 2] = 0
    assert float(changed.max()) == 0.0  # and nothing else changed


def test_a_harmonize_base_model_is_trained_on_its_clean_frame_error_at_every_noise_level(models):
    """loss.rgb_error auto is x0 for a harmonize-base model: the untrained model (its clean frames =
    harmonize's comp) has one RGB loss, the squared distance of harmonize to the truth, at every sigma,
    where the velocity loss grows as 1 / sigma^2 (the nearly clean samples would rule training and teach
    the residual to copy its noisy input). A model without harmonize keeps the velocity loss."""
    from cinecomp.diffusion.pipeline import CinecompPipeline
    from cinecomp.train.loop import make_example, rgb_error_is_x0, weighted_loss

    pipe = CinecompPipeline.from_pretrained(str(models["space_to_depth"]))
    x = _inputs(5)
    truth = np.clip(x["harmonize_rgb"] * 0.8 + 0.1, 0, 1).astype(np.float32)  # harmonize is off by a grade
    sample = dict(target_rgb=truth, target_depth=np.full((T, H, W), 3.0, np.float32),
                  character_rgb=x["character_rgb"], environment_rgb=x["environment_rgb"], tri_mask=x["tri_mask"],
                  effect_mask=np.zeros((T, H, W), np.float32), harmonize_rgb=x["harmonize_rgb"],
                  meta={"prompt": "", "id": "s0"})
    cfg = {"dropout": {"text": 0.0, "environment": 0.0, "character_depth": 1.0, "context_prob": 0.0},
           "loss": {"character": 1.0, "prop": 1.0, "effect": 1.0, "environment": 1.0, "depth_weight": 0.0,
                    "shift": 1.0, "rgb_error": "auto"},
           "model": {"pipeline": models["space_to_depth"]}}
    assert rgb_error_is_x0(cfg, pipe.transformer)
    z = pipe.transformer.config.rgb_channels
    x0_losses, v_losses, sigmas = [], [], []
    for seed in range(6):
        ex = make_example(pipe, sample, np.random.default_rng(seed), cfg, {"": torch.zeros(1, 4, 32)}, "cpu")
        with torch.no_grad():
            pred = pipe.transformer(ex["input"], ex["timestep"], ex["text"], return_dict=False)[0]
        x0_losses.append(float(weighted_loss(pred, ex, z, 0.0, rgb_x0=True)[1]))
        v_losses.append(float(weighted_loss(pred, ex, z, 0.0, rgb_x0=False)[1]))
        sigmas.append(ex["sigma"])
    assert max(sigmas) > 2 * min(sigmas) and x0_losses[0] > 1e-6
    np.testing.assert_allclose(x0_losses, x0_losses[0], rtol=1e-4)  # one loss, whatever the noise level
    np.testing.assert_allclose(np.array(v_losses) * np.array(sigmas) ** 2, x0_losses, rtol=1e-4)
    assert not rgb_error_is_x0({"loss": {"rgb_error": "auto"}}, type("T", (), {"config": {}})())
    assert rgb_error_is_x0({"loss": {"rgb_error": "x0"}}, type("T", (), {"config": {}})())


def test_train_hflip_mirrors_every_picture_of_a_sample_alike(models):
    """train.hflip: a mirrored sample is the example of the mirror image of every picture of it (plate,
    masks, environment, harmonize's comp, target) drawn with the same noise; hflip 0 draws as before."""
    from cinecomp.diffusion.pipeline import CinecompPipeline
    from cinecomp.train.loop import make_example, mirror

    pipe = CinecompPipeline.from_pretrained(str(models["space_to_depth"]))
    x = _inputs(7)
    sample = dict(target_rgb=x["harmonize_rgb"][:, :, ::-1] * 0.5 + 0.2, target_depth=np.full((T, H, W), 3.0, np.float32),
                  character_rgb=x["character_rgb"], environment_rgb=x["environment_rgb"], tri_mask=x["tri_mask"],
                  effect_mask=np.zeros((T, H, W), np.float32), harmonize_rgb=x["harmonize_rgb"],
                  meta={"prompt": "", "id": "s0"})
    m = mirror(sample)
    assert m["meta"] is sample["meta"] and np.array_equal(m["tri_mask"], sample["tri_mask"][:, :, ::-1])
    assert np.array_equal(m["character_rgb"][:, :, 0], sample["character_rgb"][:, :, -1])
    cfg = {"dropout": {"text": 0.0, "environment": 0.0, "character_depth": 1.0, "context_prob": 0.0},
           "loss": {"character": 2.0, "prop": 2.0, "effect": 3.0, "environment": 1.0, "depth_weight": 0.5,
                    "shift": 0.0}, "model": {"pipeline": models["space_to_depth"]}, "train": {"hflip": 1.0}}
    embeds = {"": torch.zeros(1, 4, 32)}
    flipped = make_example(pipe, sample, np.random.default_rng(3), cfg, embeds, "cpu")
    rng = np.random.default_rng(3)
    rng.random()  # the flip's draw
    plain = {**cfg, "train": {"hflip": 0.0}}
    ref = make_example(pipe, m, rng, plain, embeds, "cpu")
    for k in ("input", "target", "weights"):
        assert torch.equal(flipped[k], ref[k]), k
    unflipped = make_example(pipe, sample, np.random.default_rng(3), plain, embeds, "cpu")
    assert not torch.equal(unflipped["input"], flipped["input"])


def test_exposure_invariant_training_moves_the_targets_objects_to_harmonizes_exposure(models, tmp_path):
    """train.exposure_invariant: the target's character and prop take harmonize's exposure (one linear gain
    over the window's solid object pixels), keeping their texture within and the environment exactly;
    with exposure_scope data, the data's mean gain instead; the example is the one of that target; a
    sample without harmonize's comp is refused with the fix."""
    from cinecomp.diffusion.pipeline import CinecompPipeline
    from cinecomp.io.dataset import DatasetError
    from cinecomp.train.loop import linear_to_sample as _linear_to_srgb, make_example, match_exposure, sample_to_linear as _srgb_to_linear

    rng = np.random.default_rng(5)
    tri = np.zeros((T, H, W, 3), np.float32)
    tri[..., 2] = 1.0
    tri[:, 4:12, 4:10] = [1.0, 0.0, 0.0]  # a solid character
    tri[:, 6:12, 10:14] = [0.0, 1.0, 0.0]  # and a prop beside it
    base_lin = rng.uniform(0.05, 0.3, (T, H, W, 3)).astype(np.float32)
    texture = rng.uniform(0.5, 1.5, (T, H, W, 1)).astype(np.float32)
    target_lin = base_lin * 1.3  # the environment: brighter than harmonize's (its own shadows etc.)
    objects = tri[..., :2].sum(-1) > 0.5
    target_lin[objects] = (base_lin * texture * 4.0)[objects]  # the source exposes its actors 2 stops over
    sample = dict(target_rgb=_linear_to_srgb(target_lin), target_depth=np.full((T, H, W), 3.0, np.float32),
                  character_rgb=_linear_to_srgb(base_lin) * tri[..., :1], environment_rgb=_linear_to_srgb(base_lin),
                  tri_mask=tri, effect_mask=np.zeros((T, H, W), np.float32), harmonize_rgb=_linear_to_srgb(base_lin),
                  meta={"prompt": "", "id": "s0"})
    moved = match_exposure(sample)
    out = _srgb_to_linear(moved["target_rgb"])
    luma = np.array([0.2126, 0.7152, 0.0722], np.float32)
    assert (out[objects] @ luma).sum() == pytest.approx((base_lin[objects] @ luma).sum(), rel=1e-3)
    ratio = out[objects] / target_lin[objects]  # one gain: the texture within the objects is kept
    assert ratio.std() < 1e-3 * ratio.mean() and ratio.mean() < 0.5
    np.testing.assert_array_equal(moved["target_rgb"][~objects], sample["target_rgb"][~objects])
    for k in ("harmonize_rgb", "character_rgb", "environment_rgb", "tri_mask"):
        assert moved[k] is sample[k]
    bare = {k: v for k, v in sample.items() if k != "harmonize_rgb"}
    assert match_exposure(bare) is bare
    # exposure_scope data: every target moved by the data's geometric mean gain, so a sample keeps how far
    # its exposure strays from it (here the data: this sample, 2 stops over, and one at harmonize's)
    from cinecomp.io.dataset import ShardWriter, read_index
    from cinecomp.train.loop import data_exposure_gain

    level = {**sample, "target_rgb": np.where(objects[..., None], sample["harmonize_rgb"], sample["target_rgb"]),
             "meta": {"prompt": "", "id": "s1"}}
    with ShardWriter(tmp_path / "data", samples_per_shard=1) as writer:
        writer.write("s0", sample)
        writer.write("s1", level)
    gain = data_exposure_gain(read_index(tmp_path / "data"))
    own = (base_lin[objects] @ luma).sum() / (target_lin[objects] @ luma).sum()  # ~1/4
    assert gain == pytest.approx(own ** 0.5, rel=1e-3)  # the geometric mean of 1/4 and 1: 1 stop
    half = _srgb_to_linear(match_exposure(sample, gain)["target_rgb"])
    assert (half[objects] @ luma).sum() == pytest.approx((base_lin[objects] @ luma).sum() * 2.0, rel=1e-2)
    with ShardWriter(tmp_path / "bare", samples_per_shard=1) as writer:
        writer.write("s0", bare)
    with pytest.raises(DatasetError, match="exposure_scope data.*fix"):
        data_exposure_gain(read_index(tmp_path / "bare"))

    pipe = CinecompPipeline.from_pretrained(str(models["space_to_depth"]))
    cfg = {"dropout": {"text": 0.0, "environment": 0.0, "character_depth": 1.0, "context_prob": 0.0},
           "loss": {"character": 2.0, "prop": 2.0, "effect": 3.0, "environment": 1.0, "depth_weight": 0.5,
                    "shift": 0.0}, "model": {"pipeline": models["space_to_depth"]}, "train": {"exposure_invariant": True}}
    embeds = {"": torch.zeros(1, 4, 32)}
    got = make_example(pipe, sample, np.random.default_rng(3), cfg, embeds, "cpu")
    ref = make_example(pipe, moved, np.random.default_rng(3), {**cfg, "train": {}}, embeds, "cpu")
    plain = make_example(pipe, sample, np.random.default_rng(3), {**cfg, "train": {}}, embeds, "cpu")
    assert torch.equal(got["target"], ref["target"]) and not torch.equal(got["target"], plain["target"])
    with pytest.raises(DatasetError, match="no harmonize_rgb.*exposure_invariant.*fix"):
        make_example(pipe, bare, np.random.default_rng(3), cfg, embeds, "cpu")


def test_a_residual_radius_keeps_harmonize_exactly_away_from_the_actors():
    """residual_radius: however the RGB head has moved, the clean estimate (x_t - sigma v) is harmonize's
    latent exactly on cells farther than the radius from every character / prop pixel, and the model's
    own near them; a radius without harmonize_base is refused."""
    from cinecomp.diffusion.conditioning import fold_masks
    from cinecomp.diffusion.tiny_models import tiny_transformer_config
    from cinecomp.diffusion.transformer import CinecompTransformer3DModel

    torch.manual_seed(0)
    model = CinecompTransformer3DModel(**tiny_transformer_config(harmonize_base=True), residual_radius=1).eval()
    with torch.no_grad():
        model.proj_out.bias.normal_()  # a head that has learned something
    cfg = model.config
    z, f, h, w = cfg.rgb_channels, 2, 6, 8  # latent frames and cells
    masks = torch.zeros(1, 3, 4 * (f - 1) + 1, 8 * h, 8 * w)
    masks[:, 0, :, 8 * 2 + 3, 8 * 1 + 4] = 1.0  # one character pixel in latent cell (row 2, col 1)
    masks[:, 2] = 1.0 - masks[:, 0]
    base = torch.randn(1, z, f, h, w)
    noisy = torch.randn(1, z + cfg.depth_channels, f, h, w)
    inputs = model.pack_inputs(noisy, torch.randn(1, cfg.cond_channels, f, h, w), fold_masks(masks),
                               base=torch.cat([base, torch.ones(1, 1, f, h, w)], dim=1))
    sigma = 0.6
    with torch.no_grad():
        v = model(inputs, torch.tensor([sigma * 1000.0]), torch.zeros(1, 4, cfg.text_dim), return_dict=False)[0]
    x0 = noisy[:, :z] - sigma * v[:, :z]
    near = torch.zeros(h, w, dtype=torch.bool)
    near[1:4, 0:3] = True
    assert torch.allclose(x0[..., ~near], base[..., ~near], atol=1e-5)
    assert (x0[..., near] - base[..., near]).abs().amin() > 1e-3
    with pytest.raises(ValueError, match="only with harmonize_base"):
        CinecompTransformer3DModel(**tiny_transformer_config(harmonize_base=False), residual_radius=2)


def test_object_exposure_base_keeps_the_base_comps_exposure_of_the_actors_and_the_models_shading(models, tmp_path,
                                                                                                  monkeypatch):
    """diffusion.object_exposure base: the stand-in model brightens every pixel (``2 base + 0.1``); on
    the actors the composite is that change moved back by one gain a frame, so their solid pixels sum to
    harmonize's luminance while their shading stays the model's; the environment is untouched by it
    (zone objects: harmonize's). Without a base comp to measure against it is refused with the fix."""
    from cinecomp.colour import luminance
    from cinecomp.diffusion import shot as D

    inputs = _inputs(6)
    alpha = inputs["tri_mask"][..., 0]
    keys, envs, harms = _shot_files(tmp_path, inputs)
    outs = _render_zone(models, tmp_path, monkeypatch, "objects", "ox", keys, envs, harms, object_exposure="base")
    for f, (_, h), a in zip(outs, harms, alpha):
        got, base = exrio.read_rgba(f)[..., :3], exrio.read_rgba(h)[..., :3]
        solid = a > 0.95
        assert solid.sum() > 10
        model = base + a[..., None] * (base + 0.1)  # the zone's composite before the exposure is kept
        gain = luminance(base)[solid].sum() / luminance(model)[solid].sum()
        assert 0.3 < gain < 0.9  # the model brightened them: the gain takes it back
        np.testing.assert_allclose(luminance(got)[solid].sum(), luminance(base)[solid].sum(), rtol=5e-3)
        np.testing.assert_allclose(got[solid], model[solid] * gain, atol=3e-3, rtol=3e-3)  # the model's shading
        np.testing.assert_allclose(got[a == 0], base[a == 0], atol=1e-3, rtol=1e-3)
    settings = {"attrs": {"shot": "ox"}, "model_colourspace": CS, "window": 5, "overlap": 1, "steps": 1,
                "prompt": "", "negative_prompt": "", "object_exposure": "base", "output": "frames"}
    with pytest.raises(DiffusionInputError, match="shot ox: diffusion.object_exposure 'base'.*fix"):
        D.composite_shot(keys, envs, None, tmp_path / "out2", tmp_path / "work2", settings, logging.getLogger("t"),
                         harmonize_files=harms)
