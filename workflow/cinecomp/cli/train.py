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
            from ..train.latents import encode_for_config

            try:
                encode_for_config(args.config)
            except DatasetError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            return 0
        return launch(args.config, ranks=args.ranks, resume=args.resume)
    except TrainConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
