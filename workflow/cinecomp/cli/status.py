"""`cinecomp status`: per shot done / failed / running / pending / stale, and its cost."""

from __future__ import annotations

import sys
from pathlib import Path

import json

from ..errors import SheetError
from ..farm.status import STATE_ORDER, collect, format_table
from ..layout import REPO
from ..sheet import load_sheet
from .common import UsageError, composite_default, sheet_config, split_config_args


def run(args, extra: list[str]) -> int:
    try:
        cfg, files, config, sheet = sheet_config(args, extra)
        df = load_sheet(sheet, check_files=False, composite_default=composite_default(cfg))
        shots = list(df.index)
        if args.shots:
            asked = [s.strip() for s in args.shots.split(",") if s.strip()]
            unknown = [s for s in asked if s not in df.index]
            if unknown:
                raise UsageError(f"unknown shot(s) {', '.join(unknown)} in {sheet}")
            shots = asked
    except UsageError as exc:
        print(f"cinecomp status: {exc}", file=sys.stderr)
        return 2
    except SheetError as exc:  # as `render`: a bad sheet is the data's fault, exit 1
        print(exc, file=sys.stderr)
        return 1
    rest = split_config_args(extra)[0]
    workdir = Path.cwd().resolve()
    base = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", *files, *rest]
    if config:
        base += ["--config", *config.values()]
    try:
        states = collect(cfg, base, shots, df.to_dict("index"), workdir, use_sacct=not args.no_sacct)
    except RuntimeError as exc:
        print(f"cinecomp status: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"shots": states, "counts": {k: sum(1 for s in states if s["state"] == k)
                                                       for k in STATE_ORDER}}, indent=1))
    else:
        print(format_table(states))
    return 1 if any(s["state"] == "failed" for s in states) else 0
