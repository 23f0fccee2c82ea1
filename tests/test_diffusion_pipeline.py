"""CinecompPipeline on tiny random models: 5 frames of 32x32, 2 steps."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from cinecomp.diffusion.conditioning import Reference  # noqa: E402
from cinecomp.diffusion.tiny_models import TINY_LATENT_CHANNELS, make_tiny_models  # noqa: E402
from cinecomp.diffusion.errors import DiffusionInputError  # noqa: E402
from cinecomp.diffusion.pipeline import CinecompPipeline  # noqa: E402

T, H, W = 5, 32, 32
Z = TINY_LATENT_CHANNELS


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_models(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def pipe(tiny):
    p = CinecompPipeline.from_pretrained(tiny["pipeline"])
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def shot():
    rng = np.random.default_rng(0)
    mask = np.zeros((T, H, W, 3), np.float32)
    mask[:, 8:28, 10:22, 0] = 1.0  # character
    mask[:, 20:28, 22:28, 1] = 1.0  # prop
    mask[..., 2] = 1.0 - np.clip(mask[..., 0] + mask[..., 1], 0, 1)  # environment
    char = rng.random((T, H, W, 3), dtype=np.float32) * mask[..., :1]
    depth = np.where(mask[..., 0] > 0, 2.5, np.inf).astype(np.float32)
    env = rng.random((T, H, W, 3), dtype=np.float32)
    g = torch.Generator().manual_seed(7)
    return {
        "character_rgb": char,
        "tri_mask": mask,
        "character_depth": depth,
        "environment_rgb": env,
        "prompt_embeds": torch.randn(1, 16, 32, generator=g),
        "negative_prompt_embeds": torch.randn(1, 16, 32, generator=g),
    }


def run(pipe, shot, **kw):
    args = dict(shot, num_inference_steps=2, guidance_scale=4.0, seed=3)
    args.update(kw)
    return pipe(**args)


def test_pipeline_shapes_finite_and_seeded(pipe, shot):
    out = run(pipe, shot)
    assert out.frames.shape == (T, H, W, 3) and out.frames.dtype == np.float32
    assert out.depth.shape == (T, H, W)
    assert np.isfinite(out.frames).all() and np.isfinite(out.depth).all()
    assert out.frames.min() >= 0.0 and out.frames.max() <= 1.0
    assert out.depth.min() >= 0.1 - 1e-6 and out.depth.max() <= 1000.0 * (1 + 1e-5)
    assert out.latents.shape == (1, 2 * Z, 2, H // 8, W // 8)
    again = run(pipe, shot)
    assert np.array_equal(out.frames, again.frames) and np.array_equal(out.depth, again.depth)
    other_seed = run(pipe, shot, seed=4)
    assert not np.allclose(out.frames, other_seed.frames)
    gen = run(pipe, shot, seed=None, generator=torch.Generator().manual_seed(3))
    gen_again = run(pipe, shot, seed=None, generator=torch.Generator().manual_seed(3))
    assert np.array_equal(gen.frames, gen_again.frames)


def test_noise_is_indexed_by_absolute_frame(pipe):
    """A window's noise does not depend on where it starts: the noise of shot latent frame k is the same
    whether a window starting at frame 0 or at frame 8 (latent frame 2) draws it."""
    whole = pipe.initial_noise((1, 2 * Z, 6, 4, 4), seed=5)
    later = pipe.initial_noise((1, 2 * Z, 3, 4, 4), seed=5, frame_offset=8)
    assert torch.equal(whole[:, :, 2:5], later)
    assert not torch.equal(whole[:, :, :3], later)
    with pytest.raises(DiffusionInputError, match="multiple of 4"):
        pipe.initial_noise((1, 2 * Z, 3, 4, 4), seed=5, frame_offset=6)


def test_classifier_free_guidance_changes_output(pipe, shot):
    on = run(pipe, shot, guidance_scale=4.0)
    off = run(pipe, shot, guidance_scale=1.0)
    assert not np.allclose(on.frames, off.frames, atol=1e-4)
    zero_neg = run(pipe, shot, negative_prompt_embeds=None)  # zeros as the unconditional context
    assert np.isfinite(zero_neg.frames).all() and not np.allclose(zero_neg.frames, on.frames)


def test_conditioning_inputs_matter(pipe, shot):
    base = run(pipe, shot, guidance_scale=1.0)
    no_depth = run(pipe, shot, guidance_scale=1.0, character_depth=None)
    no_env = run(pipe, shot, guidance_scale=1.0, environment_rgb=None)
    assert not np.allclose(base.latents, no_depth.latents)
    assert not np.allclose(base.latents, no_env.latents)
    # a still environment plate is the same as that frame held for the whole shot
    still = run(pipe, shot, guidance_scale=1.0, environment_rgb=shot["environment_rgb"][0])
    held = run(pipe, shot, guidance_scale=1.0, environment_rgb=np.repeat(shot["environment_rgb"][:1], T, axis=0))
    assert np.array_equal(still.frames, held.frames)


def test_reference_frames_are_trimmed(pipe, shot):
    ref = np.full((24, 40, 3), 0.8, np.float32)  # any size: resized to the shot's
    plain = run(pipe, shot, environment_rgb=None)
    env_ref = run(pipe, shot, environment_rgb=None, reference_images=[ref])
    two = run(pipe, shot, environment_rgb=None, reference_images=[Reference(ref, "environment"), (ref * 0.5, "prop")])
    for out in (env_ref, two):
        assert out.frames.shape == (T, H, W, 3) and out.depth.shape == (T, H, W)
        assert out.latents.shape == plain.latents.shape
    assert not np.allclose(plain.frames, env_ref.frames)
    # the same image as a prop reference means something else than as an environment reference
    prop_ref = run(pipe, shot, environment_rgb=None, reference_images=[(ref, "prop")], replace_prop=False)
    assert not np.allclose(prop_ref.latents, env_ref.latents)


def test_prop_replacement_ignores_the_old_prop(pipe, shot):
    ref = [Reference(np.full((H, W, 3), 0.3, np.float32), "prop")]
    changed = dict(shot)
    changed["character_rgb"] = shot["character_rgb"].copy()
    changed["environment_rgb"] = shot["environment_rgb"].copy()
    prop = shot["tri_mask"][..., 1] > 0
    changed["character_rgb"][prop] = 1.0
    changed["environment_rgb"][prop] = 0.0
    a = run(pipe, shot, reference_images=ref)
    b = run(pipe, changed, reference_images=ref)
    assert np.array_equal(a.frames, b.frames)
    c = run(pipe, changed, reference_images=ref, replace_prop=False)
    assert not np.array_equal(a.frames, c.frames)


def test_bad_inputs_have_clear_errors(pipe, shot):
    with pytest.raises(DiffusionInputError, match=r"got 6 frames.*4n\+1.*trim to 5 or pad to 9"):
        run(pipe, {**shot, "character_rgb": np.zeros((6, H, W, 3), np.float32)})
    with pytest.raises(DiffusionInputError, match="multiples of 16"):
        run(pipe, {**shot, "character_rgb": np.zeros((T, 24, W, 3), np.float32)})
    with pytest.raises(DiffusionInputError, match="tri_mask has shape"):
        run(pipe, {**shot, "tri_mask": shot["tri_mask"][:1]})
    with pytest.raises(DiffusionInputError, match="prompt_embeds are required"):
        run(pipe, {**shot, "prompt_embeds": None})
    with pytest.raises(DiffusionInputError, match="text_dim"):
        run(pipe, {**shot, "prompt_embeds": torch.zeros(1, 16, 8)})
    with pytest.raises(DiffusionInputError, match="NaN"):
        run(pipe, {**shot, "environment_rgb": np.full((T, H, W, 3), np.nan, np.float32)})
    with pytest.raises(DiffusionInputError, match="role"):
        Reference(np.zeros((H, W, 3)), "sky")


def test_pipeline_save_load_round_trip(pipe, shot, tmp_path):
    pipe.save_pretrained(tmp_path / "p")
    loaded = CinecompPipeline.from_pretrained(tmp_path / "p")
    loaded.set_progress_bar_config(disable=True)
    assert np.array_equal(run(pipe, shot).frames, run(loaded, shot).frames)


def test_unipc_scheduler_works(pipe, shot):
    from diffusers import UniPCMultistepScheduler

    unipc = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    p = CinecompPipeline(transformer=pipe.transformer, vae=pipe.vae, scheduler=unipc)
    p.set_progress_bar_config(disable=True)
    out = run(p, shot, num_inference_steps=3)
    assert out.frames.shape == (T, H, W, 3) and np.isfinite(out.frames).all()


@pytest.mark.parametrize("scheduler", ["euler", "unipc"])
@pytest.mark.parametrize("refs", [0, 1])
def test_sampler_reaches_the_clean_latents_given_the_exact_velocity(tiny, shot, scheduler, refs):
    """With an oracle transformer that returns the exact flow-matching velocity (x_t - x0) / sigma for a
    known x0, sampling must land on x0: checks the timestep convention (t = 1000 sigma), the CFG sum,
    the scheduler stepping, reference frames and their trimming -- what training will rely on."""
    from diffusers.schedulers import UniPCMultistepScheduler

    p = CinecompPipeline.from_pretrained(tiny["pipeline"])
    p.set_progress_bar_config(disable=True)
    if scheduler == "unipc":
        p.scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                              flow_shift=3.0, num_train_timesteps=1000)
    x0 = torch.randn(1, 2 * Z, (T - 1) // 4 + 1, H // 8, W // 8, generator=torch.Generator().manual_seed(11))
    seen = []

    def oracle(hidden_states, timestep, encoder_hidden_states, attention_kwargs=None, return_dict=True):
        xt = hidden_states[:, : 2 * Z].float()
        t = timestep.float() if timestep.ndim == 1 else timestep.float().amax(dim=1)  # per token: refs at 0
        if timestep.ndim == 2:  # reference frames' tokens at timestep 0, the shot's at t
            assert (timestep[:, : timestep.shape[1] // xt.shape[2]] == 0).all()
        sigma = (t / 1000.0).view(-1, 1, 1, 1, 1)
        seen.append(float(sigma[0]))
        target = torch.cat([torch.zeros_like(xt[:1, :, : xt.shape[2] - x0.shape[2]]), x0], dim=2)
        v = (xt - target) / sigma
        v[:, :, : xt.shape[2] - x0.shape[2]] = 0.0  # reference frames: held clean by the pipeline
        return (v,)

    p.transformer.forward = oracle
    extra = {"reference_images": [np.full((H, W, 3), 0.5, np.float32)]} if refs else {}
    out = p(**shot, num_inference_steps=6, guidance_scale=4.0, seed=1, output_type="latent", **extra).latents
    assert out.shape == x0.shape  # reference frames trimmed
    # Euler is exact; UniPC hands the model whole-number timesteps (1000 sigma rounded), so the oracle's
    # sigma is off by up to 5e-4 and its velocity slightly wrong
    np.testing.assert_allclose(out.numpy(), x0.numpy(), atol=2e-4 if scheduler == "euler" else 1e-2)
    assert seen[0] > seen[-1] > 0  # from noise towards data


def test_absent_inputs_are_flagged_not_zero_latents(pipe, shot):
    """A missing character depth or environment is marked absent by its presence flag (a zero latent
    alone would look like a grey plate to the model); reference frames flag all three absent."""
    full = pipe.prepare_conditioning(shot["character_rgb"], shot["tri_mask"], shot["character_depth"],
                                     shot["environment_rgb"])
    assert full.presence.shape == (1, 3, 2, H // 8, W // 8) and bool((full.presence == 1).all())
    bare = pipe.prepare_conditioning(shot["character_rgb"], shot["tri_mask"])
    assert bare.presence[0, :, 0, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert float(bare.cond[:, Z:].abs().max()) == 0.0  # the absent slots hold zeros...
    # ...and the model sees the difference: the flags are input channels of the patch embedding
    with_ref = pipe.prepare_conditioning(shot["character_rgb"], shot["tri_mask"],
                                         reference_images=[np.full((H, W, 3), 0.5, np.float32)])
    assert with_ref.presence.shape[2] == 3 and with_ref.presence[0, :, 0].abs().max() == 0
    x = torch.zeros(1, 2 * Z, 2, H // 8, W // 8)
    packed = pipe.transformer.pack_inputs(x, bare.cond, bare.masks, bare.presence)
    assert packed.shape[1] == pipe.transformer.config.in_channels
    assert packed[0, -3:, 0, 0, 0].tolist() == [1.0, 0.0, 0.0]
    t = torch.tensor([500.0])
    out_absent = pipe.transformer(packed, t, shot["prompt_embeds"]).sample
    present = pipe.transformer.pack_inputs(x, bare.cond, bare.masks, torch.ones_like(bare.presence))
    assert not torch.allclose(out_absent, pipe.transformer(present, t, shot["prompt_embeds"]).sample)


def test_batched_guidance_equals_two_passes(pipe, shot):
    """CFG as one batch of two (one parameter gather per step under ZeRO-3) gives the frames of the
    conditional and unconditional passes run one after the other."""
    calls = []
    forward = pipe.transformer.forward

    def counting(*a, **k):
        calls.append(k["hidden_states"].shape[0])
        return forward(*a, **k)

    pipe.transformer.forward = counting
    try:
        batched = run(pipe, shot)
        n_batched = list(calls)
        calls.clear()
        sequential = run(pipe, shot, batch_guidance=False)
    finally:
        pipe.transformer.forward = forward
    assert n_batched == [2, 2] and calls == [1, 1, 1, 1]  # 2 steps
    np.testing.assert_allclose(batched.frames, sequential.frames, atol=1e-5)


def test_over_reconstruction_is_the_vae_round_trip_of_the_plain_comp(pipe, shot):
    out = run(pipe, shot, reconstruct_over=True)
    assert out.over_reconstruction.shape == (T, H, W, 3)
    over = shot["character_rgb"] + shot["tri_mask"][..., 2:3] * shot["environment_rgb"]
    want = pipe.decode_latents(pipe.encode_video(torch.from_numpy(over * 2 - 1).permute(3, 0, 1, 2)[None]))
    want = ((want[0] + 1) / 2).clamp(0, 1).permute(1, 2, 3, 0).numpy()
    np.testing.assert_allclose(out.over_reconstruction, want, atol=1e-5)
    assert run(pipe, shot).over_reconstruction is None  # only when asked


def test_over_reconstruction_without_an_environment_fails_before_any_step(pipe, shot, monkeypatch):
    calls = []
    monkeypatch.setattr(pipe.transformer, "forward", lambda *a, **k: calls.append(1))
    with pytest.raises(DiffusionInputError, match="needs an environment plate.*render frames instead of layers"):
        run(pipe, {**shot, "environment_rgb": None}, reconstruct_over=True)
    assert calls == []
