"""`cinecomp validate`: check a shot sheet (and the learned backends it names), list every problem."""

from __future__ import annotations

import sys

from .common import UsageError, composite_default, depth_default, load_config


def run(args) -> int:
    from ..errors import SheetError
    from ..sheet import load_sheet

    try:
        cfg = load_config([args.configfile])
        movie_start = args.movie_start if args.movie_start is not None else cfg.get("movie_start_frame", 1001)
        if not isinstance(movie_start, int):
            raise UsageError(f"movie_start_frame {movie_start!r} in {args.configfile} is not a whole number")
    except UsageError as exc:
        print(f"cinecomp validate: {exc}", file=sys.stderr)
        return 2
    sheet = args.sheet or str(cfg.get("shots", "shots/shots.csv"))
    try:
        df = load_sheet(sheet, movie_start=movie_start, composite_default=composite_default(cfg),
                        depth_default=depth_default(cfg))
    except SheetError as exc:
        print(exc, file=sys.stderr)
        return 1
    from ..perception.models import LEARNED, check_shots

    backends = cfg.get("backends") if isinstance(cfg.get("backends"), dict) else {}
    rows = df.to_dict("index")
    if any(row.get(f"{st}_backend") in LEARNED[st] or backends.get(st) in LEARNED[st]
           for row in rows.values() for st in LEARNED):
        problems = check_shots(rows, backends, cfg.get("perception") or {})
        if problems:
            print(f"{sheet}: the learned perception backends cannot run:\n"
                  + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
            return 1
    for shot, row in df.iterrows():
        env = row["environment"] or f"synthesised ({row['reference'] or 'prompt only'})"
        print(f"{shot}: {row['plate']} [{row['plate_colourspace']}] {row['first_frame']}-{row['last_frame']} "
              f"@ {row['fps']:g} fps -> {row['width']}x{row['height']}, env {env}, v{row['version']:03d}")
    print(f"{sheet}: {len(df)} shot(s) OK")
    return 0
