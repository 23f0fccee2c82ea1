"""`cinecomp train`: train the compositing model on curated shards."""

from __future__ import annotations

import sys


def run(args) -> int:
    from ..train.loop import TrainConfigError, launch

    if args.ranks < 1:
        print("error: --ranks must be at least 1", file=sys.stderr)
        return 2
    try:
        return launch(args.config, ranks=args.ranks, resume=args.resume)
    except TrainConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
