"""`cinecomp train`: train the compositing model on curated shards."""

from __future__ import annotations

import sys


def run(args) -> int:
    from ..train.loop import TrainConfigError, launch

    if args.ranks < 1:
        print("error: --ranks must be at least 1", file=sys.stderr)
        return 2
    try:
        if args.encode_latents:
            from ..io.dataset import DatasetError
            from ..train.latents import encode_shards
            from ..train.loop import load_config

            try:  # the config's shards, its pipeline's VAE
                cfg = load_config(args.config, check_latents=False)
                counts = encode_shards(cfg["data"]["shards"], cfg["model"]["pipeline"])
                print(f"latents: {counts['encoded']} sample(s) encoded, {counts['kept']} already held this VAE's, "
                      f"{counts['samples']} in all")
            except DatasetError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            return 0
        return launch(args.config, ranks=args.ranks, resume=args.resume)
    except TrainConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
