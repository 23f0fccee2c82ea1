"""`cinecomp eval`: score composite backends on the ground-truth eval sets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import CinecompError
from ..evaluate.suite import failed_rows, parse_size, markdown_table, run_eval, run_real, summary


def run(args) -> int:
    """``cinecomp eval``: see the module doc; returns the exit code."""
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    shots = [s.strip() for s in args.shots.split(",") if s.strip()] if args.shots else None
    try:
        if args.real:
            strips = run_real(args.out, backends, frames=args.frames, cores=args.cores)
            print(json.dumps({"strips": [str(p) for p in strips]}) if args.json
                  else "\n".join(f"strip: {p}" for p in strips))
            return 0
        by_mode = run_eval(args.out, backends, split=args.split, light=args.light, shots=shots,
                           frames=args.frames, size=parse_size(args.size), cores=args.cores,
                           configfiles=tuple(getattr(args, "configfile", None) or ()),
                           eval_set=getattr(args, "eval_set", "sdf"), pathtraced_root=getattr(args, "pathtraced", None))
    except CinecompError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tables = "\n".join(markdown_table(s, f"light {m}, split {args.split if not shots else ','.join(shots)}")
                       for m, s in by_mode.items())
    print(f"strips: {Path(args.out).resolve() / 'strips'}", file=sys.stderr)
    if args.json:
        print(tables, file=sys.stderr)
        res = {m: summary(s) for m, s in by_mode.items()}
        print(json.dumps(res if args.light == "both" else res[args.light], allow_nan=False))
    else:
        print(tables)
    failed = failed_rows(by_mode)
    if failed:  # scores of what was made are printed above; the run itself failed
        logs = ", ".join(str(Path(args.out).resolve() / "logs" / f"eval_{m}.log") for m in by_mode)
        print(f"error: the workflow failed for {len(failed)} eval row(s): {'; '.join(failed)} (see {logs})",
              file=sys.stderr)
        return 1
    return 0
