"""`cinecomp` command line: what a TD does by hand.

  cinecomp validate [--sheet shots/shots.csv]   check a shot sheet, list every problem
  cinecomp demo [--out demo]                     render the project's demo plates
  cinecomp render [--profile default|slurm] [--sheet S] [--configfile F] [--shots SH010,SH020] [-- SNAKEMAKE ARGS]
  cinecomp submit [--begin 22:00] [--time 10:00:00] [--shots ...]   the controller as a SLURM job (overnight)
  cinecomp status [--json] [--shots ...]         per shot done/failed/running/pending/stale, and its cost
  cinecomp colourspaces                          list the OCIO colourspaces a sheet may name
  cinecomp curate --clips clips.csv --out DIR    training pairs from clips (docs/curation.md)
  cinecomp eval [--backends over,harmonize] [--split report] [--light given|auto|probe|both] [--real]   score backends on the ground-truth eval set
  cinecomp train --config train.yaml [--ranks N] [--resume]   train the compositing model on curated shards
  cinecomp train --config train.yaml --encode-latents   store the VAE latents in the shards (once, before training)
  cinecomp models tiny --out DIR                 write tiny random diffusion models (plumbing tests)
  cinecomp models from-wan --wan DIR --out DIR   build the diffusion pipeline from a Wan 2.1 diffusers dir
  cinecomp models check [--pipeline DIR]         check model directories as the workflow will
  cinecomp models check --perception [--configfile F]   check the learned perception backends' files
  cinecomp models tiny-perception --out DIR      random SAM 2 / MatAnyone / depth models (plumbing tests)
  cinecomp models bake-lora --pipeline DIR --lora FILE --out DIR   merge a LoRA fine-tune for the workflow
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..layout import REPO
from .common import shot_targets, split_config_args  # noqa: F401 (the dispatcher's public helpers)


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
    tr = sub.add_parser("train", help="train the compositing model on curated shards (DeepSpeed; docs/training.md)")
    tr.add_argument("--config", required=True, help="train.yaml: data.shards, model.pipeline/text_encoder, out.dir, ...")
    tr.add_argument("--ranks", type=int, default=1, help="DeepSpeed ranks (GPUs; CPU processes without CUDA)")
    tr.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in out.dir")
    tr.add_argument("--encode-latents", action="store_true",
                    help="only write the VAE latents of data.shards' videos into the shards (once; training then "
                    "reads them instead of encoding every step)")
    cu = sub.add_parser("curate", help="curate training pairs (shards, manifest, contact sheets) from a clips sheet")
    cu.add_argument("--clips", required=True, help="clips sheet CSV: clip[,id,prompt,fps,first,last,camera,light,box]")
    cu.add_argument("--out", required=True, help="dataset directory: index.json, shards, manifest.csv, clips/<id>/")
    cu.add_argument("--configfile", default=None, help="config merged over config.yaml (curate:, perception:)")
    cu.add_argument("--settings", default=None, help='curate settings as JSON, e.g. \'{"window": 17, "width": 320}\'')
    e = sub.add_parser("eval", help="render the ground-truth eval set, composite it per backend, print metrics")
    e.add_argument("--out", default="eval", help="eval directory: set/, sheets, results_<light>/, strips/")
    e.add_argument("--backends", default="over,harmonize", help="comma-separated composite backends")
    e.add_argument("--split", default="report", choices=["report", "tune", "all"])
    e.add_argument("--light", default="given", choices=["given", "auto", "probe", "both"],
                   help="given: the sheet's camera, light and prop_hint from the set's survey; auto: estimated; "
                        "probe: auto plus the HDRI the shot was lit by, unregistered (path-traced set)")
    e.add_argument("--shots", default=None, help="comma-separated eval shots (default: those of --split)")
    e.add_argument("--json", action="store_true", help="print only {backend: {metric: value}} as JSON")
    e.add_argument("--set", default="auto", choices=["auto", "pathtraced", "sdf"], dest="eval_set",
                   help="pathtraced: the Cycles shots (../shared/data/pathtraced, the judge); sdf: the project's "
                        "renderer (a fast fixture); auto: pathtraced where present unless --shots/--size/--frames")
    e.add_argument("--pathtraced", default=None, help="folder of path-traced shots (default ../shared/data/pathtraced)")
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
    t.add_argument("--vae", choices=("wan", "space_to_depth"), default="wan",
                   help="wan: a tiny random AutoencoderKLWan; space_to_depth: the lossless SpaceToDepthVAE")
    t.add_argument("--harmonize-base", action="store_true",
                   help="the transformer takes harmonize's comp and returns it while untrained")
    w = msub.add_parser("from-wan", help="widen a local Wan 2.1 diffusers pipeline into a CinecompPipeline")
    w.add_argument("--wan", required=True, help="Wan 2.1 diffusers pipeline directory (transformer/, vae/...)")
    w.add_argument("--out", required=True)
    w.add_argument("--harmonize-base", action="store_true",
                   help="take harmonize's comp as an input, RGB head at zero: returns harmonize's comp untrained")
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
    takes_extra = {"render", "submit", "status"}  # Snakemake args after `--`
    module = importlib.import_module(f".{args.cmd}", __package__)  # one module per subcommand
    return module.run(args, extra) if args.cmd in takes_extra else module.run(args)


if __name__ == "__main__":
    sys.exit(main())
