"""`cinecomp models`: make or check model files (diffusion, learned perception)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..layout import REPO
from .common import load_config


def run(args) -> int:
    from ..diffusion.checks import check_pipeline_dir, check_text_encoder_dir, transformer_text_dim
    from ..errors import CinecompError

    try:
        if args.action == "tiny":
            from ..diffusion.tiny_models import make_tiny_models

            import yaml

            paths = make_tiny_models(args.out, seed=args.seed, vae=args.vae, harmonize_base=args.harmonize_base)
            overrides = {"backends": {"composite": "diffusion"},
                         "diffusion": {"pipeline": str(Path(paths["pipeline"]).resolve()),
                                       "text_encoder": str(Path(paths["text_encoder"]).resolve()),
                                       "max_sequence_length": 16, "steps": 2, "window": 5, "overlap": 1}}
            cfg = Path(args.out) / "cinecomp.yaml"
            cfg.write_text("# tiny random models: tests the plumbing, renders noise\n" + yaml.safe_dump(overrides))
            print(f"tiny random models (seed {args.seed}, VAE {args.vae}"
                  f"{', harmonize base' if args.harmonize_base else ''}) in {args.out}; render with them:\n"
                  f"  cinecomp render -- --configfile {REPO / 'config.yaml'} {cfg}")
            return 0
        if args.action == "from-wan":
            from ..diffusion.init_from_wan import build_pipeline_from_wan

            build_pipeline_from_wan(args.wan, args.out, harmonize_base=args.harmonize_base)
            print(f"{args.out}: CinecompPipeline widened from {args.wan}; text encoder: {args.wan}/text_encoder")
            return 0
        if args.action == "bake-lora":
            from ..diffusion.lora import bake_lora

            bake_lora(args.pipeline, args.lora, args.out, scale=args.scale)
            print(f"{args.out}: {args.pipeline} with {args.lora} (scale {args.scale}) merged; "
                  f"set diffusion.pipeline: {args.out}")
            return 0
    except CinecompError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.action == "tiny-perception":
        import yaml

        from ..perception.tiny_models import make_all

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
    from ..perception.models import LEARNED, check_backend

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
