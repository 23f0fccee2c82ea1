"""`cinecomp curate`: curate training pairs from a clips sheet."""

from __future__ import annotations

import sys
from pathlib import Path

import json

from ..curate.pipeline import CURATE_FIX, MANIFEST, CurateError, load_settings
from ..curate.runner import run as curate_clips


def run(args) -> int:
    """``cinecomp curate``: exit 2 with every problem for a bad sheet or setting, 1 when nothing was accepted."""
    overrides = {}
    try:
        if args.settings:
            overrides = json.loads(args.settings)
            if not isinstance(overrides, dict):
                raise ValueError("not a JSON object")
    except ValueError as exc:
        print(f"cinecomp curate: --settings {args.settings!r}: {exc} (fix: {CURATE_FIX})", file=sys.stderr)
        return 2
    except RecursionError:
        print(f"cinecomp curate: --settings {args.settings[:40]!r}... is nested too deeply "
              f"(fix: a flat JSON object; {CURATE_FIX})", file=sys.stderr)
        return 2
    try:
        settings, perception = load_settings(args.configfile, overrides)
        counts = curate_clips(args.clips, args.out, settings, perception)
    except (CurateError, ValueError) as exc:
        print(f"cinecomp curate: {exc}", file=sys.stderr)
        return 2
    if counts["samples"] == 0:
        print(f"cinecomp curate: no window was accepted; see {Path(args.out) / MANIFEST} for the reasons",
              file=sys.stderr)
        return 1
    return 0
