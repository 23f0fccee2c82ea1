"""`cinecomp` command line: what a TD does by hand.

  cinecomp validate [--sheet shots/shots.csv]   check a shot sheet, list every problem
  cinecomp demo [--out demo]                     render the project's demo plates
  cinecomp render [--profile default|slurm] [--shots SH010,SH020] [-- SNAKEMAKE ARGS]
  cinecomp colourspaces                          list the OCIO colourspaces a sheet may name
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _validate(args) -> int:
    from .errors import SheetError
    from .sheet import load_sheet

    try:
        df = load_sheet(args.sheet, movie_start=args.movie_start)
    except SheetError as exc:
        print(exc, file=sys.stderr)
        return 1
    for shot, row in df.iterrows():
        print(f"{shot}: {row['plate']} [{row['plate_colourspace']}] {row['first_frame']}-{row['last_frame']} "
              f"@ {row['fps']:g} fps -> {row['width']}x{row['height']}, env {row['environment']}, v{row['version']:03d}")
    print(f"{args.sheet}: {len(df)} shot(s) OK")
    return 0


def _demo(args) -> int:
    from .demo import make_demo

    for info in make_demo(args.out):
        print(f"{info.get('shot')}: {info.get('plate')}")
    return 0


def _render(args, extra: list[str]) -> int:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(Path.cwd()), "--configfile", str(args.configfile or REPO / "config.yaml"), "--profile", str(REPO / "profiles" / args.profile)]
    if args.shots:  # targets before options: --config would swallow them
        cmd[3:3] = [f"results/{s}/{t}" for s in args.shots.split(",")
                    for t in ("comp", f"review/{s}_daily.mp4", f"review/{s}_contact.png")]
    cmd += extra
    if args.sheet:
        cmd += ["--config", f"shots={args.sheet}"]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def _colourspaces(args) -> int:
    from .colour import config

    for cs in config().getColorSpaces():
        aliases = ", ".join(cs.getAliases())
        print(f"{cs.getName()}" + (f"  (aliases: {aliases})" if aliases else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="cinecomp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="check a shot sheet and list every problem")
    v.add_argument("--sheet", default="shots/shots.csv")
    v.add_argument("--movie-start", type=int, default=1001)
    d = sub.add_parser("demo", help="render the demo plates (sh010, sh020, sh030)")
    d.add_argument("--out", default="demo")
    r = sub.add_parser("render", help="run the workflow (extra snakemake args after --)")
    r.add_argument("--profile", default="default", choices=sorted(x.name for x in (REPO / "profiles").iterdir()))
    r.add_argument("--sheet", default=None)
    r.add_argument("--configfile", default=None, help="config file (default: the repository config.yaml)")
    r.add_argument("--shots", default=None, help="comma-separated shot ids to (re)render; default: all")
    sub.add_parser("colourspaces", help="list colourspace names and aliases a sheet may use")
    args = p.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if args.cmd == "validate":
        return _validate(args)
    if args.cmd == "demo":
        return _demo(args)
    if args.cmd == "render":
        return _render(args, extra)
    return _colourspaces(args)


if __name__ == "__main__":
    sys.exit(main())
