"""Training step time with and without latents stored in the shards, and the size of a periodic eval
checkpoint baked vs as an adapter directory (issue 20, defects 6 and 7).

    .venv/bin/python bench/train_latents.py [--steps 6] [--sizes 5x32x32,17x64x64] [--wan-vae 9x64x64]

In one process, on the tiny models (``cinecomp models tiny``, seed 0):

* per sample size (frames x height x width), a 4-sample dataset is written, then the training step
  body -- :func:`cinecomp.train.loop.make_example` (every dropout and reference draw), the transformer's
  forward and backward, an AdamW step on the LoRA + trained modules -- runs ``--steps`` times on the
  shards as curated, then on the same shards after ``cinecomp train --encode-latents``
  (:func:`cinecomp.train.latents.encode_shards`); the median step time of each and the ratio.  (The
  DeepSpeed engine and the launcher are left out: they are the same in both.)
* ``--wan-vae``: the time to encode one step's five videos of that size through a Wan 2.1-sized
  ``AutoencoderKLWan`` (its default config, random weights, fp32) -- what stored latents save per step
  on a real run, measured, not estimated;
* the periodic eval checkpoint in LoRA mode: before, adapter + trained modules + the baked pipeline;
  now, the adapter directory (adapter + trained modules + base_model.json); bytes on disk for the tiny
  model, and for Wan 2.1 1.3B / 14B counted from the parameter counts (fp32, LoRA rank 16, transformers
  built on the meta device).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "workflow"))


def dataset(path: Path, t: int, h: int, w: int, n: int = 4):
    import numpy as np

    from cinecomp.io.dataset import ShardWriter

    rng = np.random.default_rng(0)
    with ShardWriter(path, samples_per_shard=2) as writer:
        for i in range(n):
            env = np.ones((t, h, w, 3), np.float32) * rng.uniform(0.3, 0.7, 3).astype(np.float32)
            mask = np.zeros((t, h, w, 3), np.float32)
            mask[:, h // 4 : h // 4 * 3, w // 3 : w // 2, 0] = 1
            mask[:, h // 8 : h // 4, w // 8 * 6 :, 1] = 1  # a prop: prop replacement is drawn too
            mask[..., 2] = 1 - mask[..., 0] - mask[..., 1]
            char = mask[..., :1] * rng.uniform(0.2, 0.9, 3).astype(np.float32)
            target = env * (1 - mask[..., :1]) + char
            depth = np.where(mask[..., 0] > 0, 3.0, np.inf).astype(np.float32)
            writer.write(f"s{i:03d}", dict(target_rgb=target, target_depth=depth, character_rgb=char,
                                           environment_rgb=env, tri_mask=mask, effect_mask=mask[..., 0] * 0,
                                           character_depth=depth, meta={"prompt": "a person stands in a room"}))


def step_times(tiny: dict, data: Path, cfg_path: Path, steps: int) -> list[float]:
    import numpy as np
    import torch
    import yaml

    from cinecomp.diffusion.pipeline import CinecompPipeline
    from cinecomp.io.dataset import iter_samples, read_index
    from cinecomp.train.loop import load_config, make_example, trainable_transformer, weighted_loss

    cfg_path.write_text(yaml.safe_dump({
        "data": {"shards": str(data)}, "out": {"dir": str(cfg_path.parent / "out")},
        "model": {"pipeline": str(tiny["pipeline"]), "text_encoder": str(tiny["text_encoder"])},
        "train": {"steps": steps, "max_sequence_length": 16, "gradient_checkpointing": False}}))
    cfg = load_config(cfg_path)
    torch.manual_seed(0)
    pipe = CinecompPipeline.from_pretrained(str(tiny["pipeline"]))
    params = trainable_transformer(pipe, cfg)
    opt = torch.optim.AdamW(params, lr=1e-4)
    samples = [s for _, s in iter_samples(read_index(data))]
    embeds = {"": torch.zeros(1, 16, 32), "a person stands in a room": torch.ones(1, 16, 32)}
    z = pipe.transformer.config.rgb_channels
    times = []
    for step in range(steps):
        t0 = time.perf_counter()
        ex = make_example(pipe, samples[step % len(samples)], np.random.default_rng([0, step]), cfg, embeds, "cpu")
        pred = pipe.transformer(hidden_states=ex["input"], timestep=ex["timestep"], encoder_hidden_states=ex["text"],
                                return_dict=False)[0]
        loss = weighted_loss(pred, ex, z, cfg["loss"]["depth_weight"])[0]
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return times


def wan_vae_seconds(t: int, h: int, w: int) -> float:
    import torch
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan().eval()  # Wan 2.1's config (z_dim 16, base_dim 96): random weights
    videos = torch.rand(5, 3, t, h, w) * 2 - 1  # target RGB, target depth, plate, character depth, environment
    with torch.no_grad():
        vae.encode(videos[:1])  # warm-up
        t0 = time.perf_counter()
        vae.encode(videos)
        return time.perf_counter() - t0


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def wan_sizes(rank: int = 16) -> dict:
    """{model: (baked pipeline bytes, adapter directory bytes)} in fp32, counted on the meta device."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan

    from cinecomp.diffusion.lora import DEFAULT_TARGET_MODULES
    from cinecomp.diffusion.tiny_models import WAN21_1_3B_TRANSFORMER
    from cinecomp.diffusion.transformer import CinecompTransformer3DModel
    from cinecomp.train.loop import TRAINED_MODULES

    with init_empty_weights():
        vae = sum(p.numel() for p in AutoencoderKLWan().parameters())
    base = {k: v for k, v in WAN21_1_3B_TRANSFORMER.items() if k not in ("in_channels", "out_channels")}
    configs = {"1.3B": base, "14B": {**base, "num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 40}}
    out = {}
    for name, c in configs.items():
        with init_empty_weights():
            m = CinecompTransformer3DModel(**c, rgb_channels=16, depth_channels=16, cond_channels=48,
                                           harmonize_base=True)
        total = sum(p.numel() for p in m.parameters())
        lora = sum(rank * (mod.in_features + mod.out_features) for n, mod in m.named_modules()
                   if isinstance(mod, __import__("torch").nn.Linear) and n.endswith(DEFAULT_TARGET_MODULES))
        trained = sum(p.numel() for n, p in m.named_parameters()
                      if n.split(".")[0] in (*TRAINED_MODULES, "proj_out"))
        out[name] = (4 * (total + vae), 4 * (lora + trained))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--sizes", default="5x32x32,17x64x64", help="sample sizes, frames x height x width")
    ap.add_argument("--wan-vae", default="", help="also time a Wan 2.1-sized VAE on one step's videos of this size")
    args = ap.parse_args()

    import torch

    from cinecomp.diffusion import lora
    from cinecomp.diffusion.pipeline import CinecompPipeline
    from cinecomp.diffusion.tiny_models import make_tiny_models
    from cinecomp.train.latents import encode_shards
    from cinecomp.train.loop import TRAINED_MODULES

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="train_latents_"))
    tiny = make_tiny_models(root / "tiny", seed=0)
    print(f"training step (make_example + forward + backward + AdamW), tiny models, median of {args.steps} steps")
    print(f"{'sample':>10} {'encode (ms)':>12} {'stored (ms)':>12} {'ratio':>6}")
    for spec in args.sizes.split(","):
        t, h, w = (int(v) for v in spec.split("x"))
        data = root / f"data_{spec}"
        dataset(data, t, h, w)
        before = statistics.median(step_times(tiny, data, root / f"a_{spec}.yaml", args.steps))
        encode_shards(data, tiny["pipeline"], log=lambda *_: None)
        after = statistics.median(step_times(tiny, data, root / f"b_{spec}.yaml", args.steps))
        print(f"{spec:>10} {1000 * before:12.1f} {1000 * after:12.1f} {before / after:6.2f}")
    if args.wan_vae:
        t, h, w = (int(v) for v in args.wan_vae.split("x"))
        print(f"Wan 2.1-sized VAE (fp32, CPU): one step's 5 videos of {args.wan_vae} encode in "
              f"{wan_vae_seconds(t, h, w):.2f} s (saved per step by stored latents)")

    pipe = CinecompPipeline.from_pretrained(str(tiny["pipeline"]))
    lora.add_lora(pipe.transformer, "cinecomp", rank=16)
    modules = TRAINED_MODULES
    old = root / "eval_old"
    lora.save_lora(pipe.transformer, old / "lora", "cinecomp")
    lora.save_trained_modules(pipe.transformer, old / "lora", modules)
    lora.bake_lora(tiny["pipeline"], old / "lora", old / "pipeline")
    new = lora.save_adapter_dir(pipe.transformer, root / "eval_new" / "lora", tiny["pipeline"], modules)
    print("periodic eval checkpoint (LoRA mode), bytes on disk")
    print(f"{'model':>6} {'baked (before)':>16} {'adapter dir (now)':>18} {'ratio':>8}")
    print(f"{'tiny':>6} {size(old):16,d} {size(new):18,d} {size(old) / size(new):8.1f}")
    for name, (baked, adapter) in wan_sizes().items():
        print(f"{name:>6} {baked + adapter:16,d} {adapter:18,d} {(baked + adapter) / adapter:8.1f}  (counted, fp32, rank 16)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
