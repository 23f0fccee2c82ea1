"""`cinecomp render`: run the workflow on the sheet's shots (locally or with a profile)."""

from __future__ import annotations

import sys

import subprocess

from .common import UsageError, render_command


def run(args, extra: list[str]) -> int:
    from ..errors import SheetError

    try:
        cmd, _ = render_command(args, extra, args.profile)
        if cmd is None:
            return 0  # every shot asked for is published
    except UsageError as exc:
        print(f"cinecomp render: {exc}", file=sys.stderr)
        return 2
    except SheetError as exc:
        print(exc, file=sys.stderr)
        return 1
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd)
