"""Peak host RSS per rank of ZeRO-3 training with and without ``deepspeed.zero.Init`` (issue 20, defect 6).

    .venv/bin/python bench/zero_init_rss.py [--layers 12] [--dim 1024] [--ranks 2]

Writes a tiny pipeline whose transformer is replaced by a medium one (``--layers`` Wan blocks at width
``--dim``, fp32), then runs 1 LoRA training step (bf16, ZeRO stage 3) on ``--ranks`` CPU ranks twice:

* ``zero.Init``: what `cinecomp train` does (cinecomp.train.loop.load_pipeline);
* ``whole``: the same run with the transformer loaded whole on every rank (``from_pretrained``),
  as training did before, then partitioned by ``deepspeed.initialize``.

Each rank reports getrusage's peak RSS (the whole process: Python, torch, DeepSpeed, the text encoder)
just before the pipeline is built, just after (the construction's peak), and after the step (whose
forward gathers the blocks' weights in bf16 under DeepSpeed's default live-parameter budget).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rank_main(mode: str, config: str, out: str) -> None:
    import deepspeed.comm as dist

    from cinecomp.train import loop

    build = loop.load_pipeline
    if mode == "whole":  # the pre-fix construction: every rank loads the whole fp32 transformer
        from cinecomp.diffusion.pipeline import CinecompPipeline

        build = lambda cfg, dtype: CinecompPipeline.from_pretrained(str(cfg["model"]["pipeline"]))  # noqa: E731
    seen = {}

    def load_pipeline(cfg, dtype):
        seen["before_mib"] = peak_mib()
        pipe = build(cfg, dtype)
        seen["build_mib"] = peak_mib()
        return pipe

    loop.load_pipeline = load_pipeline
    loop.main(["--config", config])
    rank = dist.get_rank()
    Path(out, f"rss_{mode}_{rank}.json").write_text(json.dumps({"rank": rank, **seen, "run_mib": peak_mib()}))


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--rank-mode", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--config", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank_mode:
        return rank_main(args.rank_mode, args.config, args.out)

    import subprocess

    import yaml

    sys.path.insert(0, str(HERE.parent / "tests"))
    from test_train import write_config, write_dataset  # the tests' synthetic samples and config

    from cinecomp.diffusion.distributed import free_port, launch_env
    from cinecomp.diffusion.tiny_models import TINY_TRANSFORMER, make_tiny_models
    from cinecomp.diffusion.transformer import CinecompTransformer3DModel

    root = Path(tempfile.mkdtemp(prefix="zero_rss_"))
    tiny = make_tiny_models(root / "tiny")
    heads = args.dim // 64
    medium = CinecompTransformer3DModel(**{**TINY_TRANSFORMER, "num_attention_heads": heads, "attention_head_dim": 64,
                                           "ffn_dim": 4 * args.dim, "num_layers": args.layers})
    n = sum(p.numel() for p in medium.parameters())
    medium.save_pretrained(str(tiny["pipeline"] / "transformer"))
    del medium
    write_dataset(root / "data", 2)
    rows = {}
    for mode in ("whole", "zero.Init"):
        cfg = write_config(root / f"{mode}.yaml", root, tiny, root / f"out_{mode}", steps=1, batch=1,
                           precision="bfloat16", zero_stage=3, lora_rank=4)
        cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(args.ranks), "--master_port",
               str(free_port()), str(Path(__file__).resolve()), "--rank-mode", mode, "--config", str(cfg),
               "--out", str(root)]
        proc = subprocess.run(cmd, env=launch_env(args.ranks, cpu=True), capture_output=True, text=True)
        if proc.returncode:
            sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])
        rows[mode] = [json.loads((root / f"rss_{mode}_{r}.json").read_text()) for r in range(args.ranks)]
    print(f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', 'unset')}")
    print(f"transformer: {args.layers} blocks, width {args.dim}, {n / 1e6:.0f}M parameters "
          f"({n * 4 / 2**20:.0f} MiB fp32); {args.ranks} CPU ranks, ZeRO-3, bf16, LoRA rank 4, 1 step")
    for mode, ranks in rows.items():
        print(f"{mode:>10}: peak RSS per rank before the model / after building it / after the step: " + "; ".join(
            f"rank {r['rank']} {r['before_mib']:.0f} / {r['build_mib']:.0f} / {r['run_mib']:.0f} MiB" for r in ranks))
    print(json.dumps({"params": n, "ranks": args.ranks, "peak_rss_mib": rows}))


if __name__ == "__main__":
    main()
