"""Diffusion engine cost on the tiny random models: one pipeline call vs frames and resolution.

Builds the tiny CinecompPipeline (cinecomp.diffusion.configs.make_tiny_models) in a temp dir and times
one call (2 steps, CFG on) for several (frames, size) shots, best of ``--repeat``.  Prints seconds, the
ratio to the smallest shot measured in the same command, and the pixel and token ratios (tokens =
latent frames x latent pixels / 2x2 patch).  At these sizes the time grows about linearly with tokens
(attention's quadratic term is negligible below ~10^3 tokens); on real shots (32760 tokens for 81 frames
at 832x480) attention is a large share of the FLOPs, so cost grows faster than linearly there.
Usage: python bench/diffusion.py [--shots 5x32,9x32,17x32,5x64] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))


def make_shot(frames: int, size: int, seed: int = 0) -> dict:
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    mask = np.zeros((frames, size, size, 3), np.float32)
    q = size // 4
    mask[:, q : 3 * q, q : 3 * q, 0] = 1
    mask[..., 2] = 1 - mask[..., 0]
    return dict(
        character_rgb=rng.random((frames, size, size, 3), dtype=np.float32) * mask[..., :1],
        tri_mask=mask,
        character_depth=np.full((frames, size, size), 3.0, np.float32),
        environment_rgb=rng.random((frames, size, size, 3), dtype=np.float32),
        prompt_embeds=torch.from_numpy(rng.standard_normal((1, 16, 32)).astype(np.float32)),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shots", default="5x32,9x32,17x32,5x64")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import torch

    from cinecomp.diffusion.configs import make_tiny_models
    from cinecomp.diffusion.pipeline import CinecompPipeline

    torch.set_num_threads(max(1, torch.get_num_threads()))
    shots = [tuple(int(v) for v in s.split("x")) for s in args.shots.split(",")]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        make_tiny_models(tmp, seed=0)
        pipe = CinecompPipeline.from_pretrained(tmp)
        pipe.set_progress_bar_config(disable=True)
        pipe(**make_shot(5, 32), num_inference_steps=1, seed=0)  # warm-up
        for frames, size in shots:
            shot = make_shot(frames, size)
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                pipe(**shot, num_inference_steps=args.steps, guidance_scale=4.0, seed=0)
                best = min(best, time.perf_counter() - t0)
            tokens = ((frames - 1) // 4 + 1) * (size // 16) ** 2
            rows[f"{frames}x{size}"] = {"seconds": best, "tokens": tokens, "pixels": frames * size * size}
    base = next(iter(rows.values()))
    print(f"{'shot':>8} {'tokens':>7} {'seconds':>8} {'ratio':>6} {'pixel ratio':>12} {'token ratio':>12}")
    for name, r in rows.items():
        print(
            f"{name:>8} {r['tokens']:7d} {r['seconds']:8.3f} {r['seconds'] / base['seconds']:6.2f} "
            f"{r['pixels'] / base['pixels']:12.1f} {r['tokens'] / base['tokens']:12.1f}"
        )
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
