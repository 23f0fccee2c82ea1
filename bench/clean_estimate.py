"""Does a trained harmonize-base model keep harmonize's comp where its own training data says to?

For samples of one clip of the run's training data, every input the workflow gives (no dropout, no
mirror), the sample's noise at fixed noise levels: the transformer's clean estimate ``x_t - sigma v``
against the target and against harmonize's base, in the model's latent space (the space-to-depth AE's
latents are the pixels rearranged). A model that learned its data has an error at most the base's and
a mean offset from the base near the target's; docs/training.md ("The environment dropout hazed the
model") shows one that did not.

Usage: python bench/clean_estimate.py RUN_DIR --clip shot09 [--samples 2]
       (RUN_DIR: a `cinecomp train` output with pipeline/ and prompt_embeds.safetensors, beside its
       RUN_DIR.yaml config, as bench/train_proof_harmonize.py writes them)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))  # this checkout's cinecomp

SIGMAS = (0.9, 0.6, 0.3, 0.1, 0.02)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--clip", required=True, help="a clip id (or part of it) of the run's training data")
    ap.add_argument("--samples", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    import torch

    from cinecomp.diffusion.pipeline import CinecompPipeline
    from cinecomp.diffusion.prompts import load_prompt_embeds
    from cinecomp.io.dataset import iter_samples, read_index
    from cinecomp.train import loop

    config = args.run.parent / f"{args.run.name}.yaml"
    if not config.is_file() or not (args.run / "pipeline").is_dir():
        sys.exit(f"error: {args.run} needs pipeline/ and the config {config} (a bench/train_proof_harmonize.py run)")
    cfg = loop.load_config(config, check_latents=False)
    pipe = CinecompPipeline.from_pretrained(str(args.run / "pipeline"))
    tr = pipe.transformer.eval()
    if not tr.config.harmonize_base:
        sys.exit(f"error: {args.run} is not a harmonize-base model")
    embeds = load_prompt_embeds(args.run / "prompt_embeds.safetensors")
    fixed = {**cfg, "dropout": loop.WORKFLOW_INPUTS, "train": {**cfg["train"], "hflip": 0.0}}
    samples = [s for _, s in iter_samples(read_index(cfg["data"]["shards"]))
               if args.clip in str(s.get("meta", {}).get("clip", ""))][: args.samples]
    if not samples:
        sys.exit(f"error: no sample of a clip matching {args.clip!r} in {cfg['data']['shards']}")
    z, c0 = tr.config.rgb_channels, tr.base_channel
    print("sigma | mean(estimate - base) | mean(target - base) | error of the estimate | error of the base")
    for sample in samples:
        ex = loop.make_example(pipe, sample, np.random.default_rng(0), fixed, embeds, "cpu")
        zc = ex["target"].shape[1]
        xt, cond = ex["input"][:, :zc], ex["input"][:, zc:]
        x0 = xt - ex["sigma"] * ex["target"]  # x_t = x0 + sigma (noise - x0)
        noise = ex["target"] + x0
        base = ex["input"][:, c0: c0 + z]
        for sigma in SIGMAS:
            x_s = (1.0 - sigma) * x0 + sigma * noise
            with torch.no_grad():
                v = tr(hidden_states=torch.cat([x_s, cond], 1), timestep=torch.full((1,), sigma * 1000.0),
                       encoder_hidden_states=ex["text"], return_dict=False)[0]
            est = x_s[:, :z] - sigma * v[:, :z]
            print(f"{sigma:.2f} | {float((est - base).mean()):+.4f} | {float((x0[:, :z] - base).mean()):+.4f} | "
                  f"{float(((est - x0[:, :z]) ** 2).mean()):.5f} | {float(((base - x0[:, :z]) ** 2).mean()):.5f}")


if __name__ == "__main__":
    main()
