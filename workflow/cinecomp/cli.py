"""`cinecomp` command line: what a TD does by hand.

  cinecomp validate [--sheet shots/shots.csv]   check a shot sheet, list every problem
  cinecomp demo [--out demo]                     render the project's demo plates
  cinecomp render [--profile default|slurm] [--shots SH010,SH020] [-- SNAKEMAKE ARGS]
  cinecomp colourspaces                          list the OCIO colourspaces a sheet may name
  cinecomp eval [--backends over,harmonize] [--split report] [--light given|auto|both] [--real]   score backends on the ground-truth eval set
  cinecomp models tiny --out DIR                 write tiny random diffusion models (plumbing tests)
  cinecomp models from-wan --wan DIR --out DIR   build the diffusion pipeline from a Wan 2.1 diffusers dir
  cinecomp models check [--pipeline DIR]         check model directories as the workflow will
  cinecomp models bake-lora --pipeline DIR --lora FILE --out DIR   merge a LoRA fine-tune for the workflow
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
        import yaml

        cfg = yaml.safe_load(Path(args.configfile).read_text()) if Path(args.configfile).is_file() else {}
        df = load_sheet(args.sheet, movie_start=args.movie_start,
                        composite_default=(cfg.get("backends") or {}).get("composite", "over"))
    except SheetError as exc:
        print(exc, file=sys.stderr)
        return 1
    for shot, row in df.iterrows():
        env = row["environment"] or f"synthesised ({row['reference'] or 'prompt only'})"
        print(f"{shot}: {row['plate']} [{row['plate_colourspace']}] {row['first_frame']}-{row['last_frame']} "
              f"@ {row['fps']:g} fps -> {row['width']}x{row['height']}, env {env}, v{row['version']:03d}")
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


def _eval(args) -> int:
    from .evaluate import cli

    return cli(args)


def _colourspaces(args) -> int:
    from .colour import config

    for cs in config().getColorSpaces():
        aliases = ", ".join(cs.getAliases())
        print(f"{cs.getName()}" + (f"  (aliases: {aliases})" if aliases else ""))
    return 0


def _models(args) -> int:
    from .diffusion.checks import check_pipeline_dir, check_text_encoder_dir, transformer_text_dim
    from .errors import CinecompError

    try:
        if args.action == "tiny":
            from .diffusion.configs import make_tiny_models

            import yaml

            paths = make_tiny_models(args.out, seed=args.seed)
            overrides = {"backends": {"composite": "diffusion"},
                         "diffusion": {"pipeline": str(Path(paths["pipeline"]).resolve()),
                                       "text_encoder": str(Path(paths["text_encoder"]).resolve()),
                                       "max_sequence_length": 16, "steps": 2, "window": 5, "overlap": 1}}
            cfg = Path(args.out) / "cinecomp.yaml"
            cfg.write_text("# tiny random models: tests the plumbing, renders noise\n" + yaml.safe_dump(overrides))
            print(f"tiny random models (seed {args.seed}) in {args.out}; render with them:\n"
                  f"  cinecomp render -- --configfile {REPO / 'config.yaml'} {cfg}")
            return 0
        if args.action == "from-wan":
            from .diffusion.init_from_wan import build_pipeline_from_wan

            build_pipeline_from_wan(args.wan, args.out)
            print(f"{args.out}: CinecompPipeline widened from {args.wan}; text encoder: {args.wan}/text_encoder")
            return 0
        if args.action == "bake-lora":
            from .diffusion.lora import bake_lora

            bake_lora(args.pipeline, args.lora, args.out, scale=args.scale)
            print(f"{args.out}: {args.pipeline} with {args.lora} (scale {args.scale}) merged; "
                  f"set diffusion.pipeline: {args.out}")
            return 0
    except CinecompError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    problems = check_pipeline_dir(args.pipeline, args.ranks)
    if args.text_encoder:
        problems += check_text_encoder_dir(args.text_encoder, None, transformer_text_dim(args.pipeline))
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    if not problems:
        print(f"{args.pipeline}: OK for {args.ranks} rank(s)")
    return 1 if problems else 0


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
    v.add_argument("--configfile", default=str(REPO / "config.yaml"), help="for the default composite backend")
    d = sub.add_parser("demo", help="render the demo plates (sh010, sh020, sh030)")
    d.add_argument("--out", default="demo")
    r = sub.add_parser("render", help="run the workflow (extra snakemake args after --)")
    r.add_argument("--profile", default="default", choices=sorted(x.name for x in (REPO / "profiles").iterdir()))
    r.add_argument("--sheet", default=None)
    r.add_argument("--configfile", default=None, help="config file (default: the repository config.yaml)")
    r.add_argument("--shots", default=None, help="comma-separated shot ids to (re)render; default: all")
    sub.add_parser("colourspaces", help="list colourspace names and aliases a sheet may use")
    e = sub.add_parser("eval", help="render the ground-truth eval set, composite it per backend, print metrics")
    e.add_argument("--out", default="eval", help="eval directory: set/, sheets, results_<light>/, strips/")
    e.add_argument("--backends", default="over,harmonize", help="comma-separated composite backends")
    e.add_argument("--split", default="report", choices=["report", "tune", "all"])
    e.add_argument("--light", default="given", choices=["given", "auto", "both"],
                   help="given: the sheet's camera, light and prop_hint from the set's survey; auto: estimated")
    e.add_argument("--shots", default=None, help="comma-separated eval shots (default: those of --split)")
    e.add_argument("--json", action="store_true", help="print only {backend: {metric: value}} as JSON")
    e.add_argument("--real", action="store_true", help="real green-screen plates over real backgrounds: strips only")
    e.add_argument("--frames", type=int, default=None, help="frames per shot (default 12)")
    e.add_argument("--size", default=None, help="eval frame size WIDTHxHEIGHT (default 160x90)")
    e.add_argument("--cores", type=int, default=2)
    m = sub.add_parser("models", help="make or check the diffusion backend's model directories")
    msub = m.add_subparsers(dest="action", required=True)
    t = msub.add_parser("tiny", help="tiny random pipeline + text encoder (tests; not for pictures)")
    t.add_argument("--out", required=True)
    t.add_argument("--seed", type=int, default=0)
    w = msub.add_parser("from-wan", help="widen a local Wan 2.1 diffusers pipeline into a CinecompPipeline")
    w.add_argument("--wan", required=True, help="Wan 2.1 diffusers pipeline directory (transformer/, vae/...)")
    w.add_argument("--out", required=True)
    b = msub.add_parser("bake-lora", help="merge a LoRA fine-tune into a copy of a pipeline (for the workflow)")
    b.add_argument("--pipeline", required=True)
    b.add_argument("--lora", required=True, help="LoRA .safetensors file or its directory")
    b.add_argument("--scale", type=float, default=1.0)
    b.add_argument("--out", required=True)
    c = msub.add_parser("check", help="check a pipeline (and text encoder) directory")
    c.add_argument("--pipeline", default="models/cinecomp")
    c.add_argument("--text-encoder", default=None)
    c.add_argument("--ranks", type=int, default=1)
    args = p.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if args.cmd == "validate":
        return _validate(args)
    if args.cmd == "demo":
        return _demo(args)
    if args.cmd == "render":
        return _render(args, extra)
    if args.cmd == "models":
        return _models(args)
    if args.cmd == "eval":
        return _eval(args)
    return _colourspaces(args)


if __name__ == "__main__":
    sys.exit(main())
