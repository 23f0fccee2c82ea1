"""`cinecomp` command line: what a TD does by hand.

  cinecomp validate [--sheet shots/shots.csv]   check a shot sheet, list every problem
  cinecomp demo [--out demo]                     render the project's demo plates
  cinecomp render [--profile default|slurm] [--sheet S] [--configfile F] [--shots SH010,SH020] [-- SNAKEMAKE ARGS]
  cinecomp submit [--begin 22:00] [--time 10:00:00] [--shots ...]   the controller as a SLURM job (overnight)
  cinecomp status [--json] [--shots ...]         per shot done/failed/running/pending/stale, and its cost
  cinecomp colourspaces                          list the OCIO colourspaces a sheet may name
  cinecomp curate --clips clips.csv --out DIR    training pairs from clips (README "Curation")
  cinecomp eval [--backends over,harmonize] [--split report] [--light given|auto|both] [--real]   score backends on the ground-truth eval set
  cinecomp train --config train.yaml [--ranks N] [--resume]   train the compositing model on curated shards
  cinecomp models tiny --out DIR                 write tiny random diffusion models (plumbing tests)
  cinecomp models from-wan --wan DIR --out DIR   build the diffusion pipeline from a Wan 2.1 diffusers dir
  cinecomp models check [--pipeline DIR]         check model directories as the workflow will
  cinecomp models check --perception [--configfile F]   check the learned perception backends' files
  cinecomp models tiny-perception --out DIR      random SAM 2 / MatAnyone / depth models (plumbing tests)
  cinecomp models bake-lora --pipeline DIR --lora FILE --out DIR   merge a LoRA fine-tune for the workflow
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


SHOT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # as schemas/shots.schema.yaml


class UsageError(Exception):
    """A one-line error of the command line itself (exit 2, no traceback)."""


def shot_targets(results: str, shot: str, version: int) -> list[str]:
    """The files and directories `render --shots` asks Snakemake for, for one shot at its version."""
    from .layout import cost_report, published_targets

    return [*published_targets(results, shot, version), cost_report(results, shot, version)]


def split_config_args(extra: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Snakemake args after `--` without their --configfile(s) and --config/-C options:
    (the other args, config files, KEY=VALUE entries). Snakemake keeps only the last of each option,
    so cinecomp merges them with its own into one of each."""
    rest, files, entries = [], [], []
    i = 0
    while i < len(extra):
        name, eq, value = extra[i].partition("=")
        i += 1
        if name not in ("--configfile", "--configfiles", "--config", "-C"):
            rest.append(extra[i - 1])
            continue
        dest = entries if name in ("--config", "-C") else files
        if eq:  # --config=KEY=VALUE takes that one value
            dest.append(value)
            continue
        while i < len(extra) and not extra[i].startswith("-"):  # like snakemake's nargs
            dest.append(extra[i])
            i += 1
    return rest, files, entries


def _merge(base: dict, over: dict) -> dict:
    """Nested dicts merged the way snakemake merges config files."""
    for k, v in over.items():
        base[k] = _merge(dict(base[k]), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def load_config(files: list[str], entries=()) -> dict:
    """The config snakemake will see: the files in order, then KEY=VALUE entries (values as text,
    YAML for {...}/[...]). UsageError names a missing or unreadable file."""
    import yaml

    cfg: dict = {}
    for f in files:
        if not Path(f).is_file():
            raise UsageError(f"config file {f} does not exist (fix: check the --configfile path)")
        try:
            data = yaml.safe_load(Path(f).read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise UsageError(f"config file {f} cannot be read: {' '.join(str(exc).split())}") from None
        if not isinstance(data, dict):
            raise UsageError(f"config file {f} is not a YAML mapping of keys (fix: see config.yaml)")
        _merge(cfg, data)
    for e in entries:
        key, _, value = e.partition("=")
        try:
            value = yaml.safe_load(value) if value.startswith(("{", "[")) else value
        except yaml.YAMLError:
            pass
        _merge(cfg, {key: value})
    return cfg


def _composite_default(cfg: dict) -> str:
    backends = cfg.get("backends")
    return backends.get("composite", "over") if isinstance(backends, dict) else "over"


def _validate(args) -> int:
    from .errors import SheetError
    from .sheet import load_sheet

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
        df = load_sheet(sheet, movie_start=movie_start, composite_default=_composite_default(cfg))
    except SheetError as exc:
        print(exc, file=sys.stderr)
        return 1
    from .perception import LEARNED, check_shots

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


def _demo(args) -> int:
    from .demo import make_demo

    for info in make_demo(args.out):
        print(f"{info.get('shot')}: {info.get('plate')}")
    return 0


def _shot_targets(ids: str, cfg: dict) -> list[str]:
    """Targets of `--shots a,b`: ids checked against the sheet, under the configured results."""
    from .sheet import load_sheet

    shots = [s.strip() for s in ids.split(",") if s.strip()]
    if not shots:
        raise UsageError(f"--shots {ids!r} names no shot (fix: e.g. --shots sh010,sh020)")
    unsafe = [s for s in shots if not SHOT_ID.fullmatch(s)]
    if unsafe:
        raise UsageError(f"{unsafe[0]!r} is not a valid shot id "
                         "(fix: shot ids are letters, digits, '_' and '-', as in the sheet)")
    sheet = str(cfg.get("shots", "shots/shots.csv"))
    df = load_sheet(sheet, check_files=False, composite_default=_composite_default(cfg))  # SheetError: all problems
    unknown = [s for s in shots if s not in df.index]
    if unknown:
        known = ", ".join(list(df.index)[:20]) + (", ..." if len(df) > 20 else "")
        raise UsageError("; ".join(f"unknown shot {s!r}" for s in unknown) + f" in {sheet} (known: {known})")
    from .layout import is_published

    results = str(cfg.get("results", "results"))
    done = [s for s in shots if is_published(results, s, int(df.loc[s, "version"]))]
    if done:  # never rendered again (layout.py): asking Snakemake for them could overwrite them
        print("cinecomp render: already published, not rendered again (raise `version` in the sheet to render "
              "changes): " + ", ".join(f"{s} v{int(df.loc[s, 'version']):03d}" for s in done), file=sys.stderr)
    return [t for s in shots if s not in done for t in shot_targets(results, s, int(df.loc[s, "version"]))]


def render_command(args, extra: list[str], profile: str) -> tuple[list[str] | None, dict]:
    """The snakemake command of `render`/`submit` (None: every shot asked for is published) and the
    config it will see. UsageError/SheetError on bad input."""
    rest, files, entries = split_config_args(extra)
    files = [str(args.configfile or REPO / "config.yaml"), *files]
    config = {e.partition("=")[0]: e for e in entries}  # one entry per key, the last wins
    if args.sheet:
        config["shots"] = f"shots={args.sheet}"
    cfg = load_config(files, config.values())
    sheet = str(cfg.get("shots", "shots/shots.csv"))
    if not Path(sheet).is_file():
        raise UsageError(f"shot sheet {sheet} does not exist (fix: --sheet PATH or --config shots=PATH)")
    targets = _shot_targets(args.shots, cfg) if args.shots else []
    if args.shots and not targets:
        return None, cfg  # every shot asked for is published
    # Targets before options (--config would swallow them); one --configfile and one --config.
    cmd = [sys.executable, "-m", "snakemake", *targets, "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(Path.cwd()), "--configfile", *files, "--profile", str(REPO / "profiles" / profile),
           *rest]
    if config:
        cmd += ["--config", *config.values()]
    return cmd, cfg


def _render(args, extra: list[str]) -> int:
    from .errors import SheetError

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


def _train(args) -> int:
    from .train import TrainConfigError, launch

    if args.ranks < 1:
        print("error: --ranks must be at least 1", file=sys.stderr)
        return 2
    try:
        return launch(args.config, ranks=args.ranks, resume=args.resume)
    except TrainConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


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
    if args.action == "tiny-perception":
        import yaml

        from .perception_tiny import make_all

        perception = make_all(args.out, sam2_image_size=args.sam2_image_size, seed=args.seed)
        cfg = Path(args.out) / "perception.yaml"
        cfg.write_text("# random-weight perception models: tests the plumbing, not pictures\n"
                       + yaml.safe_dump({"perception": perception}))
        print(f"random perception models in {args.out}; select them with:\n"
              f"  cinecomp render -- --configfile {REPO / 'config.yaml'} {cfg}")
        return 0
    if args.perception:
        return _check_perception(args.configfile)
    problems = check_pipeline_dir(args.pipeline, args.ranks)
    if args.text_encoder:
        problems += check_text_encoder_dir(args.text_encoder, None, transformer_text_dim(args.pipeline))
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    if not problems:
        print(f"{args.pipeline}: OK for {args.ranks} rank(s)")
    return 1 if problems else 0


def _check_perception(configfile: str) -> int:
    """Every learned perception backend's files of ``configfile`` (with config.yaml's defaults)."""
    from .perception import LEARNED, check_backend

    try:
        cfg = load_config([str(REPO / "config.yaml"), configfile] if configfile else [str(REPO / "config.yaml")])
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problems = []
    for stage, learned in LEARNED.items():
        for b in learned:
            found = check_backend(stage, b, cfg.get("perception") or {})
            problems += [f"{stage} backend {b}: {p}" for p in found]
            if not found:
                print(f"{stage} backend {b}: OK")
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
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
    v.add_argument("--sheet", default=None, help="default: the config's shots (shots/shots.csv)")
    v.add_argument("--movie-start", type=int, default=None, help="default: the config's movie_start_frame")
    v.add_argument("--configfile", default=str(REPO / "config.yaml"),
                   help="for shots, movie_start_frame and the default composite backend")
    d = sub.add_parser("demo", help="render the demo plates (sh010, sh020, sh030)")
    d.add_argument("--out", default="demo")
    r = sub.add_parser("render", help="run the workflow (extra snakemake args after --)")
    r.add_argument("--profile", default="default", choices=sorted(x.name for x in (REPO / "profiles").iterdir()))
    r.add_argument("--sheet", default=None)
    r.add_argument("--configfile", default=None, help="config file (default: the repository config.yaml)")
    r.add_argument("--shots", default=None, help="comma-separated shot ids to (re)render; default: all")
    sb = sub.add_parser("submit", help="submit the Snakemake controller itself as a SLURM job (overnight)")
    sb.add_argument("--begin", default=None, help="start time: 22:00 (the next), 2026-12-24T22:00, now+30m")
    sb.add_argument("--time", default="12:00:00", help="the controller's time limit (SLURM format, e.g. 10:00:00)")
    sb.add_argument("--shots", default=None, help="comma-separated shot ids; default: all")
    sb.add_argument("--sheet", default=None)
    sb.add_argument("--configfile", default=None, help="config file (default: the repository config.yaml)")
    sb.add_argument("--log-dir", default=None, help="controller log directory (default: <results>/logs/controller)")
    sb.add_argument("--partition", default=None, help="partition of the controller job (default: the cluster's)")
    sb.add_argument("--mem-mb", type=int, default=4000, help="memory of the controller job")
    st = sub.add_parser("status", help="per shot: done / failed / running / pending / stale, and its cost")
    st.add_argument("--json", action="store_true", help="print JSON (states, failures, per-rule cost)")
    st.add_argument("--shots", default=None, help="comma-separated shot ids; default: all")
    st.add_argument("--sheet", default=None)
    st.add_argument("--configfile", default=None, help="config file (default: the repository config.yaml)")
    st.add_argument("--no-sacct", action="store_true", help="do not ask SLURM's accounting even where it exists")
    sub.add_parser("colourspaces", help="list colourspace names and aliases a sheet may use")
    tr = sub.add_parser("train", help="train the compositing model on curated shards (DeepSpeed; README 'Training')")
    tr.add_argument("--config", required=True, help="train.yaml: data.shards, model.pipeline/text_encoder, out.dir, ...")
    tr.add_argument("--ranks", type=int, default=1, help="DeepSpeed ranks (GPUs; CPU processes without CUDA)")
    tr.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in out.dir")
    cu = sub.add_parser("curate", help="curate training pairs (shards, manifest, contact sheets) from a clips sheet")
    cu.add_argument("--clips", required=True, help="clips sheet CSV: clip[,id,prompt,fps,first,last,camera,light,box]")
    cu.add_argument("--out", required=True, help="dataset directory: index.json, shards, manifest.csv, clips/<id>/")
    cu.add_argument("--configfile", default=None, help="config merged over config.yaml (curate:, perception:)")
    cu.add_argument("--settings", default=None, help='curate settings as JSON, e.g. \'{"window": 17, "width": 320}\'')
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
    e.add_argument("--configfile", action="append", default=[],
                   help="extra config file after config.yaml (repeatable), e.g. a trained model's diffusion section")
    m = sub.add_parser("models", help="make or check the model files (diffusion, perception backends)")
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
    tp = msub.add_parser("tiny-perception", help="random SAM 2, MatAnyone and depth models (tests; not for pictures)")
    tp.add_argument("--out", required=True)
    tp.add_argument("--seed", type=int, default=0)
    tp.add_argument("--sam2-image-size", type=int, default=256, help="SAM 2 input size (1024: the real one)")
    c = msub.add_parser("check", help="check a pipeline (and text encoder) directory")
    c.add_argument("--perception", action="store_true",
                   help="check the learned perception backends' files (SAM 2, MatAnyone, depth model) instead")
    c.add_argument("--configfile", default=None, help="with --perception: a config merged over config.yaml")
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
    if args.cmd == "submit":
        from .slurm import submit

        return submit(args, extra)
    if args.cmd == "status":
        from .status import cli as status_cli

        return status_cli(args, extra)
    if args.cmd == "models":
        return _models(args)
    if args.cmd == "eval":
        return _eval(args)
    if args.cmd == "curate":
        from .curate import cli as curate_cli

        return curate_cli(args)
    if args.cmd == "train":
        return _train(args)
    return _colourspaces(args)


if __name__ == "__main__":
    sys.exit(main())
