"""Two DeepSpeed ranks on CPU (gloo) in bfloat16: ZeRO-3 + Ulysses give about the frames one float32
process gives, with the float32 modules kept.

Launched with the real ``deepspeed`` launcher (DS_ACCELERATOR=cpu, LOCAL_SIZE=2).  Two float32 ranks
against one process (within 1e-4) are checked on the diffusion workflow's own 2-rank composite job
(test_diffusion_workflow.py::test_two_ranks_shard_the_model_and_give_the_frames_one_process_gives).
"""

import json
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("deepspeed")

from cinecomp.diffusion import distributed as D  # noqa: E402
from cinecomp.diffusion.tiny_models import make_tiny_models  # noqa: E402
from cinecomp.diffusion.pipeline import CinecompPipeline  # noqa: E402
from cinecomp.diffusion.transformer import CinecompTransformer3DModel  # noqa: E402
from cinecomp.diffusion.windows import plan_windows, render_windows  # noqa: E402

ATOL_BF16 = 0.05  # bfloat16 keeps 8 bits of mantissa; observed ~0.014 max on these frames


@pytest.mark.slow
def test_two_ranks_in_bf16_match_one_fp32_process(tmp_path):
    tiny = make_tiny_models(tmp_path / "tiny", seed=0)
    n, h, w = 9, 32, 32  # two windows of 5 frames overlapping by 1: 2 latent frames x 2 x 2 tokens each
    rng = np.random.default_rng(0)
    mask = np.zeros((n, h, w, 3), np.float32)
    mask[:, 8:24, 8:24, 0] = 1
    mask[..., 2] = 1 - mask[..., 0]
    shot = dict(
        character_rgb=rng.random((n, h, w, 3), dtype=np.float32) * mask[..., :1],
        tri_mask=mask,
        character_depth=np.where(mask[..., 0] > 0, 3.0, np.inf).astype(np.float32),
        environment_rgb=rng.random((n, h, w, 3), dtype=np.float32),
        prompt_embeds=rng.standard_normal((1, 16, 32)).astype(np.float32),
        negative_prompt_embeds=rng.standard_normal((1, 16, 32)).astype(np.float32),
    )
    np.savez(tmp_path / "shot.npz", **shot)

    # the ranks render a fine-tune as training saves it: an adapter directory on the base (never baked);
    # one process renders its bake
    from cinecomp.diffusion import lora

    base = CinecompPipeline.from_pretrained(tiny["pipeline"])
    torch.manual_seed(3)
    lora.add_lora(base.transformer, "cinecomp", rank=4, init_lora_weights=False)
    with torch.no_grad():
        for name, prm in base.transformer.named_parameters():
            if "lora_B" in name:
                prm.mul_(2.0)
        base.transformer.patch_embedding.bias.add_(1.0)
    adapter = lora.save_adapter_dir(base.transformer, tmp_path / "adapter", tiny["pipeline"],
                                    ("patch_embedding", "depth_proj_out"))
    pipe = CinecompPipeline.from_pretrained(lora.bake_lora(tiny["pipeline"], adapter, tmp_path / "baked"))
    pipe.set_progress_bar_config(disable=True)
    call = dict(shot, num_inference_steps=2, guidance_scale=4.0, seed=1)
    for k in ("prompt_embeds", "negative_prompt_embeds"):
        call[k] = torch.from_numpy(shot[k])
    frames1, depth1 = render_windows(pipe, call, tmp_path / "one", window=5, overlap=1)
    assert len(plan_windows(n, 5, 1)) == 2
    plain = CinecompPipeline.from_pretrained(tiny["pipeline"])
    plain.set_progress_bar_config(disable=True)
    frames_plain = render_windows(plain, call, tmp_path / "plain", window=5, overlap=1)[0]
    # the adapter changes the frames by far more than bfloat16's tolerance, so the ranks' match says it was merged
    assert np.abs(frames_plain - frames1).max() > 4 * ATOL_BF16

    # the GPU precision (bfloat16 transformer, float32 VAE and scheduler) on two CPU ranks through the
    # deepspeed launcher, the adapter streamed into the ZeRO-3 partitions (2 float32 ranks against one
    # process: the diffusion workflow's tests)
    out_dir = tmp_path / "bf16"
    args = ["--pipeline", str(adapter), "--shot", str(tmp_path / "shot.npz"), "--out", str(out_dir),
            "--steps", "2", "--guidance", "4", "--seed", "1", "--window", "5", "--overlap", "1", "--dtype", "bfloat16"]
    proc = subprocess.run(
        D.launch_command(2, args), env=D.launch_env(2, cpu=True), capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with np.load(out_dir / "shot.npz") as out:
        frames2, depth2, meta = out["frames"], out["depth"], json.loads(str(out["meta"]))

    assert meta["world_size"] == 2 and meta["zero_stage"] == 3
    # ZeRO-3: rank 0 holds half of the transformer's parameters (plus padding)
    assert meta["local_param_numel"] <= meta["total_param_numel"] // 2 + 64
    # Ulysses: each rank carried half of the 8 tokens of a window
    assert meta["tokens_per_rank"] == 4
    assert frames2.shape == frames1.shape and depth2.shape == depth1.shape
    np.testing.assert_allclose(frames2, frames1, atol=ATOL_BF16, rtol=0)
    assert sorted(p.name for p in out_dir.iterdir()) == ["shot.npz", "window_0000.npz", "window_0001.npz",
                                                         "windows.json"]
    # the workflow's way: stream the blend from the window files, frame by frame
    from cinecomp.diffusion.windows import iter_blended

    streamed = np.stack([f for _, f, _ in iter_blended(out_dir)])
    np.testing.assert_allclose(streamed, frames2, atol=1e-6)
    # ZeRO-3 as the ranks build it: every partition and buffer on the device the engine reports, the
    # _keep_in_fp32_modules (RoPE's tables too) in float32 as diffusers keeps them, the rest bf16
    assert meta["device"] == "cpu" and meta["misplaced"] == []
    check_precision(meta["placement"], "bfloat16")


def check_precision(placement: dict, low: str) -> None:
    keep = CinecompTransformer3DModel._keep_in_fp32_modules
    kept = {n: d for n, (_, d) in placement.items() if D.keeps_fp32(n, keep)}
    rest = {n: d for n, (_, d) in placement.items() if not D.keeps_fp32(n, keep)}
    assert kept and set(kept.values()) == {"float32"}, kept
    assert {"rope.freqs_cos", "rope.freqs_sin", "condition_embedder.time_embedder.linear_1.weight", "scale_shift_table",
            "blocks.0.scale_shift_table", "blocks.0.norm2.weight"} <= set(kept)
    assert set(rest.values()) == {low}, {n: d for n, d in rest.items() if d != low}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_one_rank_loading_keeps_fp32_modules_and_moves_every_table(tmp_path, dtype):
    """The 1-rank path loads with torch_dtype the way diffusers does (not ``.to(device, dtype)``, which
    cast RoPE, the time embedding, norms and modulation tables to bf16), and every tensor the forward touches --
    RoPE's tables included -- moves to the device (the meta device stands in for a GPU here)."""
    tiny = make_tiny_models(tmp_path / "tiny", seed=0)
    model = D.load_transformer(tiny["pipeline"] / "transformer", getattr(torch, dtype), "cpu")
    check_precision(D.tensor_placement(model), dtype)
    assert D.misplaced(model, torch.device("cpu")) == []
    moved = D.load_transformer(tiny["pipeline"] / "transformer", getattr(torch, dtype), "meta")
    assert D.misplaced(moved, torch.device("meta")) == []
    assert D.misplaced(model, torch.device("meta"))  # the check does see a tensor on another device
