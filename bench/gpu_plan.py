"""The GPU plan, measured: one Wan 2.1 transformer block at full width on the CPU, its peak working
memory per token for inference (no autograd) and for LoRA-style training (forward + backward), fitted
at two token counts, then the expected memory per GPU for Wan 2.1 1.3B and 14B at 480p/720p, 81 frames,
on 1-8 GPUs with ZeRO-3 + Ulysses (the launch recipes in docs/gpu-plan.md).

    .venv/bin/python bench/gpu_plan.py [--tokens 512,1024] [--models 1.3B,14B]

Each measurement is a fresh process: peak RSS (getrusage) minus the RSS after the block and its
inputs exist, i.e. the forward's (and backward's) working set. CPU float32; bf16 on GPUs halves every
activation and parameter byte (the table says so). Attention is PyTorch's SDPA (memory-efficient on
CPU and GPU: no T x T matrix), as diffusers runs it. No timing is reported.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

MODELS = {  # Wan 2.1 (diffusers configs): width, heads, feed-forward width, blocks, parameters
    "1.3B": dict(dim=1536, heads=12, ffn=8960, blocks=30, params=1.42e9),
    "14B": dict(dim=5120, heads=40, ffn=13824, blocks=40, params=14.1e9),
}
TEXT_TOKENS = 512
RESOLUTIONS = {"480p": (480, 832), "720p": (720, 1280)}
FRAMES = 81


def tokens(h: int, w: int, frames: int = FRAMES) -> int:
    """Wan's tokens of a window: VAE 4x temporal, 8x spatial; patch 1x2x2."""
    return ((frames - 1) // 4 + 1) * (h // 16) * (w // 16)


def rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(model: str, n: int, train: bool) -> dict:
    """In this process: one block of ``model`` at ``n`` tokens; peak working set in bytes."""
    import torch
    from diffusers.models.transformers.transformer_wan import WanTransformerBlock

    torch.manual_seed(0)
    m = MODELS[model]
    block = WanTransformerBlock(m["dim"], m["ffn"], m["heads"], cross_attn_norm=True)
    head = m["dim"] // m["heads"]
    x = torch.randn(1, n, m["dim"], requires_grad=train)
    text = torch.randn(1, TEXT_TOKENS, m["dim"])
    temb = torch.randn(1, 6, m["dim"])
    rope = (torch.ones(1, n, 1, head), torch.zeros(1, n, 1, head))
    if train:  # LoRA: the base weights are frozen; the gradient flows through every activation
        for p in block.parameters():
            p.requires_grad_(False)
    base = rss_bytes()
    with torch.set_grad_enabled(train):
        out = block(x, text, temb, rope)
        if train:
            out.float().pow(2).mean().backward()
    return {"model": model, "tokens": n, "train": train, "peak_bytes": rss_bytes() - base,
            "param_bytes": sum(p.numel() for p in block.parameters()) * 4}


def run_child(model: str, n: int, train: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps([model, n, train])]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def per_token(points: list[dict]) -> tuple[float, float]:
    """(bytes per token, fixed bytes) through two measurements."""
    (a, b) = sorted(points, key=lambda p: p["tokens"])
    slope = (b["peak_bytes"] - a["peak_bytes"]) / (b["tokens"] - a["tokens"])
    return slope, a["peak_bytes"] - slope * a["tokens"]


def plan(model: str, slope_inf: float, slope_train: float, ranks: int, t: int) -> tuple[float, float]:
    """(inference, LoRA training) GB per GPU, bf16: params / ranks + one gathered block (ZeRO-3), plus
    one block's working set at t / ranks tokens (Ulysses); training adds the block inputs kept for
    gradient checkpointing (every block, t / ranks tokens x dim x 2 B)."""
    m = MODELS[model]
    gb = 1e9
    params = m["params"] * 2 / ranks + m["params"] / m["blocks"] * 2
    local = t / ranks
    inference = params + slope_inf / 2 * local
    training = params + slope_train / 2 * local + m["blocks"] * local * m["dim"] * 2
    return inference / gb, training / gb


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", default="512,1024")
    ap.add_argument("--models", default="1.3B,14B")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(*json.loads(args.child))))
        return 0
    counts = [int(v) for v in args.tokens.split(",")]
    print("measured: one block at full width, CPU float32 (working set = peak RSS - RSS before the forward)")
    print("model | tokens | inference MB | training MB | MB/token inference | MB/token training")
    fits = {}
    for model in args.models.split(","):
        pts = {train: [run_child(model, n, train) for n in counts] for train in (False, True)}
        for i, n in enumerate(counts):
            print(f"{model} | {n} | {pts[False][i]['peak_bytes'] / 1e6:.0f} | {pts[True][i]['peak_bytes'] / 1e6:.0f} |",
                  flush=True)
        fits[model] = (per_token(pts[False])[0], per_token(pts[True])[0])
        print(f"{model}: {fits[model][0] / 1e6:.3f} MB/token inference, {fits[model][1] / 1e6:.3f} MB/token "
              f"training (fp32; x 0.5 in bf16)", flush=True)
    print("\nexpected GB per GPU (bf16, ZeRO-3 + Ulysses; VAE, text encoder and CUDA context not included)")
    print("model | resolution | tokens | GPUs | inference GB | LoRA training GB")
    for model, (si, st) in fits.items():
        for res, (h, w) in RESOLUTIONS.items():
            t = tokens(h, w)
            for ranks in (1, 2, 4, 8):
                if MODELS[model]["heads"] % ranks:
                    continue
                inf, tr = plan(model, si, st, ranks, t)
                print(f"{model} | {res} | {t} | {ranks} | {inf:.1f} | {tr:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
