"""Multi-rank diffusion cost: ZeRO-3 parameter memory, Ulysses throughput, long-shot memory, overlap cost.

Builds a "bench" CinecompPipeline in a temp dir (random weights, seeded): the tiny VAE and scheduler with
a transformer of 12 layers x 8 heads x 64 dims, ffn 2048, text_dim 256 -- about 54 M parameters (208 MB
fp32), so parameter memory shows in a process's RSS.  Every measured run is a fresh process started by
the DeepSpeed launcher (``cinecomp.diffusion.distributed``, DS_ACCELERATOR=cpu, gloo), so its peak RSS
is honest; the runs write ``meta`` with ``render_seconds`` (the windowed render only, no model load) and
every rank's ``peak_rss_mb``.  Runs (64x64 frames, windows of 9 frames, 2 steps, guidance 4, ZeRO-3):

  A  1 rank x 2 threads, the 1x shot, overlap k      B  2 ranks x 1 thread, the same shot and seed
  Am, Bm  as A, B with MALLOC_MMAP_THRESHOLD_=1 MiB (glibc returns freed buffers to the system)
  A1 as A, run the workflow's way: the shot as .npy files read a window at a time, --no-blend
  C  as A1 on the 4x shot                            D  as C with overlap 0

and reports ratios measured within this one command (never absolute pass/fail):
  param_mem_ratio_2v1    B/A per-rank transformer parameter bytes (meta local_param_numel x 4 B)
  frames_maxdiff_2v1     max |frames_B - frames_A|
  model_mem_ratio_2v1    B/A per-rank peak RSS minus the runtime's RSS (torch, DeepSpeed, diffusers,
                         gloo, measured before the model is built): parameters + activations + buffers
  peak_mem_ratio_4x_len  C/A1 peak RSS of rank 0 (4x the frames, same window size => 4x the windows)
  throughput_ratio_2v1   B/A frames per render-second
  window_overlap_cost    C/D render seconds, next to the arithmetic ratio of rendered frames
                         (windows x window / shot frames)
At this size the bench measures the machinery (sharding, gathers, all-to-alls, windows), not GPU-scale
speed: 48 tokens per window, so ZeRO-3's per-call parameter gather and the replicated VAE dominate.
Timings are wall-clock on a shared machine: each run also reports its CPU seconds, the share of its
ranks x threads it got over the whole launch (load and import are single-threaded, so ~60-80% is
normal) and the 1-min load average before it; runs started above 2.5 are listed as disturbed.

Reading the RSS figures.  param_mem_ratio_2v1 counts only the ZeRO-3 partition (0.5 + padding).  A
rank's RSS is a ~830 MB runtime (torch, DeepSpeed, diffusers, gloo) plus what the model adds; the
model part is reported separately (model_mem_ratio_2v1).  During a forward ZeRO-3 gathers each block's
parameters (zero3_config: at most ~2 blocks live) and frees them after; with glibc's default
allocator the freed gather buffers mostly stay in the process heap (the mmap threshold rises after the
first large frees), so on CPU the 2-rank model part is not smaller than the 1-rank one.  With
MALLOC_MMAP_THRESHOLD_=1048576 (runs Am/Bm) they are returned and the 2-rank model part drops below
the 1-rank one (rank 0 also maps the safetensors file while it streams the weights in), at a
throughput cost from page faults.  On GPUs the gathers live in CUDA memory and this does not apply.
The 4x-length runs use the workflow's path (shot .npy files read a window at a time, windows blended
from their files frame by frame), which holds no whole-shot array: peak memory is flat in length.

Estimate, 14B Wan 2.1 base, one 81-frame 1280x720 window (bf16, ZeRO-3 + Ulysses on N GPUs)
------------------------------------------------------------------------------------------
An estimate from layer shapes, not a measurement.  Wan 2.1 14B: 40 layers, 40 heads x 128 = d 5120,
ffn 13824, text_dim 4096.  Per block: self-attn 4d^2 = 104.9 M, cross-attn 4d^2 = 104.9 M, FFN
2 d ffn = 141.6 M => 351.4 M/block x 40 = 14.06 B (+ embeddings; our wider patch embedding adds
(851-16) x 5120 x 4 = 17 M and the depth head 0.3 M: ~14.1 B).  Parameters: 14.1e9 x 2 B = 28.2 GB.

Tokens: 81 frames -> 21 latent frames; 720/8/2 = 45, 1280/8/2 = 80 => 21 x 45 x 80 = 75,600.
FLOPs per transformer call (2 FLOPs per multiply-add):
  linear    2 x P x T           = 2 x 14e9 x 75,600            = 2.12e15  (upper bound: cross-attn K/V
                                                                          act on the 512 text tokens)
  attention 4 x L x T^2 x d     = 4 x 40 x 75,600^2 x 5120      = 4.68e15  (QK^T + AV)
  total                                                          ~ 6.8e15
x 2 (CFG: cond + uncond calls) x 50 steps (Wan default) = 100 calls => 6.8e17 FLOPs = 680 PFLOP/window.
Time at an assumed 400 TFLOP/s sustained (H100/H800 SXM, 989 dense bf16 peak, ~40% MFU):
  1 GPU 6.8e17 / 4e14 = 1700 s (28 min);  4 GPUs 425 s (7.1 min);  8 GPUs 213 s (3.5 min)
plus communication per rank and window (100 calls), at an assumed ~200 GB/s effective link bandwidth:
  ZeRO-3 all-gather of the params each call: 28.2 GB x (N-1)/N x 100 = 2.1 TB (N=4), 2.5 TB (N=8)
  Ulysses: 4 all-to-alls per block of (T/N) x d x 2 B, (N-1)/N of it leaves the rank:
           N=4: 194 MB x 3/4 x 4 x 40 x 100 = 2.3 TB;  N=8: 97 MB x 7/8 x 16,000 = 1.4 TB
  => ~22 s (N=4, +5%), ~19 s (N=8, +9%) if not overlapped with compute; PCIe-only cards are ~10x worse.
  Not counted: VAE encode (3 conditioning videos) + decode (RGB + depth), replicated on every rank, so
  it does not shrink with N; the text encoder (we take prompt_embeds).
Memory per rank:
  params     N=1: 28.2 GB (ZeRO-3 on one rank shards nothing);  N=4: 7.05 + 0.7 (one gathered block,
             351 M x 2 B) = 7.8 GB;  N=8: 3.5 + 0.7 = 4.2 GB.  zero3_config lets up to 2 blocks be live
             (prefetch 1 block, live limit 2 blocks): + another 0.7 GB at most.
  activations of one block at T/N tokens (no autograd, so one block's tensors at a time; needs a
             flash / memory-efficient attention -- a materialised T x T score matrix would be
             75,600^2 x 40/N heads x 2 B = 457/N GB): FFN peak per token ~ x and its fp32 norm (3d) +
             hidden + GELU output (2 ffn) = 43,008 elements x 2 B = 86 KB => 6.5 GB (N=1), 1.6 GB
             (N=4), 0.8 GB (N=8); attention (x, norm, q, k, v, out ~ 6d = 61 KB/token) is below that.
  total      N=1 ~35 GB, N=4 ~9.5 GB, N=8 ~5 GB, + VAE decode workspace + CUDA context (not estimated).
Check with the same formula on Wan 2.1 T2V-1.3B (30 layers, 12 x 128 = d 1536, ffn 8960), 832x480,
81 frames, 50 steps, CFG: T = 21 x 30 x 52 = 32,760;  linear 2 x 1.3e9 x 32,760 = 8.5e13;  attention
4 x 30 x 32,760^2 x 1536 = 1.98e14;  2.83e14 x 100 calls = 2.83e16 FLOPs.  RTX 4090 165 TFLOP/s bf16
dense x 40% = 66 TFLOP/s => 429 s = 7.1 min.  Wan's README: "about 4 minutes" (240 s) on an RTX 4090
=> our 40% assumption is ~1.8x pessimistic there; matching it takes ~118 TFLOP/s = ~72% of dense peak.
Scaled by the same factor the 14B window is ~16 min on 1 H100 (~690 TFLOP/s), so read the 14B times
above as an upper-side estimate, range ~0.55x-1x.  Memory: 1.3e9 x 2 B = 2.6 GB params + 22,528 el./token
x 2 B x 32,760 = 1.5 GB activations = 4.1 GB vs the README's "8.19 GB VRAM" (which is with
--offload_model True --t5_cpu): the remaining ~4 GB would be VAE decode, CUDA context and allocator
slack, which this formula does not model -- so it explains about half the published peak.  The
README's multi-GPU timing table is an image that we cannot read here, so the N-GPU times are unchecked.

Usage: python bench/diffusion.py [--json] [--quick] [--repeat N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))  # this checkout's cinecomp

from cinecomp.layout import REPO  # noqa: E402

SIZE = 64  # frames are SIZE x SIZE: 8x8 latents, 4x4 tokens per latent frame
WINDOW = 17  # 5 latent frames => 80 tokens per window (divisible by 2 ranks)
OVERLAP = 5  # the "k" of the overlap runs (4m+1: the context a window takes from the one before)
MIN_OVERLAP = 1  # the smallest overlap (one latent frame of context): the baseline of the overlap cost
STEPS = 2
GUIDANCE = 4.0
SEED = 1
TEXT_TOKENS = 16

BENCH_TRANSFORMER_OVERRIDES = dict(
    num_layers=12, num_attention_heads=8, attention_head_dim=64, ffn_dim=2048, text_dim=256, freq_dim=256
)


def bench_transformer_config() -> dict:
    from cinecomp.diffusion.tiny_models import TINY_TRANSFORMER

    return {**TINY_TRANSFORMER, **BENCH_TRANSFORMER_OVERRIDES}


def build_bench_pipeline(out_dir: Path, seed: int = 0) -> int:
    """Write the bench CinecompPipeline to ``out_dir``; returns the transformer's parameter count."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler

    from cinecomp.diffusion.tiny_models import TINY_SCHEDULER, TINY_VAE
    from cinecomp.diffusion.pipeline import CinecompPipeline
    from cinecomp.diffusion.transformer import CinecompTransformer3DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = CinecompTransformer3DModel(**bench_transformer_config()).eval()
        torch.manual_seed(seed + 1)
        vae = AutoencoderKLWan(**TINY_VAE).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(**TINY_SCHEDULER)
    CinecompPipeline(transformer=transformer, vae=vae, scheduler=scheduler).save_pretrained(str(out_dir))
    return sum(p.numel() for p in transformer.parameters())


def write_shot(path: Path, frames: int, size: int, text_dim: int, seed: int = 0, as_dir: bool = False) -> None:
    """A shot as tests/test_diffusion_distributed.py builds it (a square character in the middle): an .npz,
    or with ``as_dir`` a directory of .npy files as the workflow writes it (ranks read a window at a time)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    mask = np.zeros((frames, size, size, 3), np.float32)
    q = size // 4
    mask[:, q : 3 * q, q : 3 * q, 0] = 1
    mask[..., 2] = 1 - mask[..., 0]
    arrays = dict(
        character_rgb=rng.random((frames, size, size, 3), dtype=np.float32) * mask[..., :1],
        tri_mask=mask,
        character_depth=np.where(mask[..., 0] > 0, 3.0, np.inf).astype(np.float32),
        environment_rgb=rng.random((frames, size, size, 3), dtype=np.float32),
        prompt_embeds=rng.standard_normal((1, TEXT_TOKENS, text_dim)).astype(np.float32),
        negative_prompt_embeds=rng.standard_normal((1, TEXT_TOKENS, text_dim)).astype(np.float32),
    )
    if as_dir:
        path.mkdir(parents=True, exist_ok=True)
        for name, a in arrays.items():
            np.save(path / f"{name}.npy", a)
    else:
        np.savez(path, **arrays)


def run_ranks(
    ranks: int, threads: int, pipeline: Path, shot: Path, out: Path, overlap: int, timeout: float = 600,
    stream: bool = False, extra_env: dict | None = None, extra_args: list[str] | None = None,
) -> dict:
    """One launcher run; returns rank 0's meta plus frames (unless ``stream``: the workflow's --no-blend
    path, which leaves the frames in the window files), wall seconds."""
    import numpy as np

    from cinecomp.diffusion import distributed as D

    args = [
        "--pipeline", str(pipeline), "--shot", str(shot), "--out", str(out),
        "--steps", str(STEPS), "--guidance", str(GUIDANCE), "--seed", str(SEED),
        "--window", str(WINDOW), "--overlap", str(overlap), "--zero-stage", "3",
    ] + (["--no-blend"] if stream else []) + list(extra_args or [])  # fmt: skip
    env = {**D.launch_env(ranks, cpu=True, threads_per_rank=threads), **(extra_env or {})}
    load = os.getloadavg()[0]
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(D.launch_command(ranks, args), env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{ranks}-rank run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if stream:
        meta = json.loads((out / "run.json").read_text())
    else:
        with np.load(out / "shot.npz") as data:
            meta = json.loads(str(data["meta"]))
            meta["frames"] = data["frames"]
    meta["wall_seconds"] = wall
    # CPU seconds of the launcher and its ranks, and the 1-min load average before the run: on a shared
    # 2-core machine, cpu/wall well below the thread count or a high load means the timings are disturbed
    meta["cpu_seconds"] = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    meta["load_before"] = load
    meta["num_windows"] = len(list(out.glob("window_*.npz")))
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    ap.add_argument("--quick", action="store_true", help="shorter shots (17 and 68 frames instead of 33 and 132)")
    ap.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    ap.add_argument("--repeat", type=int, default=1, help="launch each run this many times, keep the fastest render")
    ap.add_argument("--only", choices=("all", "cfg", "seams"), default="all",
                    help="cfg: only the guidance-batching runs; seams: only the window-seam measurement")
    args = ap.parse_args()
    if args.only == "seams":
        print_seams(measure_seams(), args.json)
        return
    if args.only == "cfg":
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = args.keep or Path(tmp_name)
            tmp.mkdir(parents=True, exist_ok=True)
            build_bench_pipeline(tmp / "bench_pipeline", seed=0)
            write_shot(tmp / "shot.npz", 17 if args.quick else 33, SIZE, bench_transformer_config()["text_dim"])
            print_cfg(measure_cfg(tmp, tmp / "bench_pipeline", tmp / "shot.npz", args.repeat), args.json)
        return

    frames_1x = 17 if args.quick else 33
    frames_4x = 4 * frames_1x
    cfg = bench_transformer_config()
    t_start = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = args.keep or Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        pipeline = tmp / "bench_pipeline"
        n_params = build_bench_pipeline(pipeline, seed=0)
        shot_1x, shot_1x_dir, shot_4x_dir = tmp / "shot_1x.npz", tmp / "shot_1x", tmp / "shot_4x"
        write_shot(shot_1x, frames_1x, SIZE, cfg["text_dim"], seed=0)
        write_shot(shot_1x_dir, frames_1x, SIZE, cfg["text_dim"], seed=0, as_dir=True)
        write_shot(shot_4x_dir, frames_4x, SIZE, cfg["text_dim"], seed=1, as_dir=True)

        runs = {}
        trim = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}  # glibc hands freed gather buffers back
        plan = [  # name, ranks, threads, shot, overlap, frames, stream (the workflow's path), extra env
            ("A", 1, 2, shot_1x, OVERLAP, frames_1x, False, None),
            ("B", 2, 1, shot_1x, OVERLAP, frames_1x, False, None),
            ("Am", 1, 2, shot_1x, OVERLAP, frames_1x, False, trim),
            ("Bm", 2, 1, shot_1x, OVERLAP, frames_1x, False, trim),
            ("A1", 1, 2, shot_1x_dir, OVERLAP, frames_1x, True, None),
            ("C", 1, 2, shot_4x_dir, OVERLAP, frames_4x, True, None),
            ("D", 1, 2, shot_4x_dir, MIN_OVERLAP, frames_4x, True, None),
        ]
        for name, ranks, threads, shot, overlap, n, stream, extra_env in plan:
            print(f"run {name}: {ranks} rank(s) x {threads} thread(s), {n} frames, overlap {overlap} ...", flush=True)
            tries = []
            for i in range(max(1, args.repeat)):
                tries.append(run_ranks(ranks, threads, pipeline, shot, tmp / f"out_{name}_{i}", overlap, stream=stream,
                                       extra_env=extra_env))
            r = min(tries, key=lambda t: t["render_seconds"])
            r.update(ranks=ranks, threads=threads, num_frames=n, overlap=overlap)
            # share of the CPUs the run asked for (ranks x threads) that it got over its wall time
            r["cpu_share"] = r["cpu_seconds"] / (r["wall_seconds"] * ranks * threads)
            runs[name] = r

    import numpy as np

    A, B, Am, Bm, A1, C, D = (runs[k] for k in ("A", "B", "Am", "Bm", "A1", "C", "D"))
    param_mb = {k: r["local_param_numel"] * 4 / 2**20 for k, r in runs.items()}  # fp32 params
    fps = {k: r["num_frames"] / r["render_seconds"] for k, r in runs.items()}
    rendered = {k: r["num_windows"] * WINDOW / r["num_frames"] for k, r in runs.items()}
    tokens_per_window = ((WINDOW - 1) // 4 + 1) * (SIZE // 16) ** 2
    figures = {
        "param_mem_ratio_2v1": B["local_param_numel"] / A["local_param_numel"],
        "frames_maxdiff_2v1": float(np.abs(B["frames"] - A["frames"]).max()),
        "peak_mem_ratio_4x_len": C["peak_rss_mb"] / A1["peak_rss_mb"],
        "throughput_ratio_2v1": fps["B"] / fps["A"],
        "window_overlap_cost": C["render_seconds"] / D["render_seconds"],
        "window_overlap_frames_ratio": rendered["C"] / rendered["D"],
        "rendered_frames_ratio_overlap_k": rendered["C"],
        "rendered_frames_ratio_overlap_0": rendered["D"],
        "overlap_k": OVERLAP,
        "peak_rss_ratio_2v1": max(B["peak_rss_mb_per_rank"]) / A["peak_rss_mb"],
        # per-rank peak memory of parameters + activations (+ comm buffers): peak RSS minus the runtime's
        "model_mem_ratio_2v1": max(B["model_peak_mb_per_rank"]) / A["model_peak_mb_per_rank"][0],
        "model_peak_mb_1rank": A["model_peak_mb_per_rank"][0],
        "model_peak_mb_2rank_per_rank": B["model_peak_mb_per_rank"],
        "model_mem_ratio_2v1_mmap1m": max(Bm["model_peak_mb_per_rank"]) / Am["model_peak_mb_per_rank"][0],
        "model_peak_mb_2rank_per_rank_mmap1m": Bm["model_peak_mb_per_rank"],
        "throughput_ratio_2v1_mmap1m": (Bm["num_frames"] / Bm["render_seconds"]) / (Am["num_frames"] / Am["render_seconds"]),
        "peak_rss_mb_1rank": A["peak_rss_mb"],
        "peak_rss_mb_2rank_per_rank": B["peak_rss_mb_per_rank"],
        "peak_rss_mb_1rank_4x_len": C["peak_rss_mb"],
        "peak_rss_mb_1rank_4x_len_overlap0": D["peak_rss_mb"],
        "param_mb_1rank": param_mb["A"],
        "param_mb_2rank_per_rank": param_mb["B"],
        "transformer_params": n_params,
        "render_seconds": {k: r["render_seconds"] for k, r in runs.items()},
        "wall_seconds": {k: r["wall_seconds"] for k, r in runs.items()},
        "cpu_seconds": {k: r["cpu_seconds"] for k, r in runs.items()},
        "load_before": {k: r["load_before"] for k, r in runs.items()},
        "cpu_share": {k: r["cpu_share"] for k, r in runs.items()},
        "disturbed_runs": [k for k, r in runs.items() if r["load_before"] > 2.5],
        "fps": fps,
        "num_windows": {k: r["num_windows"] for k, r in runs.items()},
        "num_frames": {k: r["num_frames"] for k, r in runs.items()},
        "tokens_per_rank": {k: r["tokens_per_rank"] for k, r in runs.items()},
        "shot": {"size": SIZE, "window": WINDOW, "steps": STEPS, "guidance": GUIDANCE,
                 "tokens_per_window": tokens_per_window, "quick": args.quick},
        "bench_seconds": time.perf_counter() - t_start,
    }  # fmt: skip

    print()
    print(f"bench transformer: {n_params / 1e6:.1f} M params ({n_params * 4 / 2**20:.0f} MB fp32), "
          f"{cfg['num_layers']} layers x {cfg['num_attention_heads']} heads x {cfg['attention_head_dim']}; "
          f"{SIZE}x{SIZE} frames, window {WINDOW} ({tokens_per_window} tokens), "
          f"{STEPS} steps, CFG {GUIDANCE}")  # fmt: skip
    print()
    print(f"{'run':>3} {'ranks':>5} {'thr':>3} {'frames':>6} {'ovl':>3} {'win':>3} {'render s':>8} {'wall s':>7} "
          f"{'fps':>6} {'param MB/rank':>13} {'peak RSS MB/rank':>17} "
          f"{'cpu s':>6} {'cpu%':>4} {'load':>5}")  # fmt: skip
    for k, r in runs.items():
        rss = "/".join(f"{v:.0f}" for v in r["peak_rss_mb_per_rank"])
        print(f"{k:>3} {r['ranks']:5d} {r['threads']:3d} {r['num_frames']:6d} {r['overlap']:3d} {r['num_windows']:3d} "
              f"{r['render_seconds']:8.2f} {r['wall_seconds']:7.1f} {fps[k]:6.2f} {param_mb[k]:13.1f} {rss:>17} "
              f"{r['cpu_seconds']:6.1f} {100 * r['cpu_share']:4.0f} {r['load_before']:5.2f}")  # fmt: skip
    print()
    print("ratios (measured in this command):")
    print(f"  param_mem_ratio_2v1   {figures['param_mem_ratio_2v1']:.3f}   B/A per-rank parameter bytes (goal <= 0.6)")
    rss_b = max(B["peak_rss_mb_per_rank"])
    print(f"  peak RSS 2v1          {rss_b / A['peak_rss_mb']:.3f}   max rank of B / A (whole process: runtime + "
          f"VAE + gathered params, not only the shard)")
    print(f"  model_mem_ratio_2v1   {figures['model_mem_ratio_2v1']:.3f}   B/A per-rank peak RSS above the runtime's "
          f"(parameters + activations + buffers): "
          f"{'/'.join(f'{v:.0f}' for v in B['model_peak_mb_per_rank'])} MB vs {A['model_peak_mb_per_rank'][0]:.0f} MB")
    print(f"  ... with MALLOC_MMAP_THRESHOLD_=1MiB {figures['model_mem_ratio_2v1_mmap1m']:.3f}   Bm/Am: "
          f"{'/'.join(f'{v:.0f}' for v in Bm['model_peak_mb_per_rank'])} MB vs {Am['model_peak_mb_per_rank'][0]:.0f} MB "
          f"(glibc returns freed gather buffers; throughput 2v1 then {figures['throughput_ratio_2v1_mmap1m']:.3f})")
    print(f"  frames_maxdiff_2v1    {figures['frames_maxdiff_2v1']:.2e}")
    print(f"  throughput_ratio_2v1  {figures['throughput_ratio_2v1']:.3f}   B/A frames per render-second "
          f"(2 ranks x 1 thread vs 1 rank x 2 threads)")
    print(f"  peak_mem_ratio_4x_len {figures['peak_mem_ratio_4x_len']:.3f}   C/A1 peak RSS (goal <= 1.2), the "
          f"workflow's streaming path ({frames_4x} vs {frames_1x} frames)")
    print(f"  window_overlap_cost   {figures['window_overlap_cost']:.3f}   C/D render seconds "
          f"(overlap {OVERLAP} vs {MIN_OVERLAP}); "
          f"rendered frames windows x window / frames: {rendered['C']:.2f} vs {rendered['D']:.2f} "
          f"=> arithmetic {figures['window_overlap_frames_ratio']:.3f}")  # fmt: skip
    cfg_runs = measure_cfg(tmp_cfg := Path(tempfile.mkdtemp()), None, None, args.repeat, frames=frames_1x)
    shutil.rmtree(tmp_cfg, ignore_errors=True)
    figures["cfg"] = print_cfg(cfg_runs, False)
    figures["seams"] = print_seams(measure_seams(), False)
    print()
    print(ESTIMATE)
    if figures["disturbed_runs"]:
        print(f"WARNING: runs {', '.join(figures['disturbed_runs'])} started at a 1-min load average > 2.5 on 2 cores: "
              f"the time ratios (throughput, overlap cost) are not trustworthy; rerun on a quiet machine")  # fmt: skip
    print(f"bench took {figures['bench_seconds']:.0f} s")
    if args.json:
        print(json.dumps(figures))


# ------------------------------------------------------------------------------------- CFG batching

CFG_RUNS = [  # name, what, launcher arguments (2 ranks x 1 thread, ZeRO-3 + Ulysses, the 1x shot)
    ("old", "sequential CFG, every parameter partitioned (before)", ["--sequential-cfg", "--persistence-threshold", "0"]),
    ("seq", "sequential CFG, vectors kept whole", ["--sequential-cfg"]),
    ("p0", "batched CFG, every parameter partitioned", ["--persistence-threshold", "0"]),
    ("new", "batched CFG, vectors kept whole (now)", []),
]


def measure_cfg(tmp: Path, pipeline: Path | None, shot: Path | None, repeat: int = 1, frames: int = 33) -> dict:
    """The four CFG / persistence variants on 2 ranks: gathers, gathered elements, render seconds."""
    if pipeline is None:
        pipeline = tmp / "bench_pipeline"
        build_bench_pipeline(pipeline, seed=0)
    if shot is None:
        shot = tmp / "shot.npz"
        write_shot(shot, frames, SIZE, bench_transformer_config()["text_dim"])
    runs = {}
    for name, what, extra in CFG_RUNS:
        print(f"run cfg/{name}: {what} ...", flush=True)
        tries = [run_ranks(2, 1, pipeline, shot, tmp / f"cfg_{name}_{i}", OVERLAP, extra_args=extra)
                 for i in range(max(1, repeat))]
        runs[name] = min(tries, key=lambda t: t["render_seconds"])
        runs[name]["what"] = what
    return runs


def print_cfg(runs: dict, as_json: bool) -> dict:
    import numpy as np

    old, new = runs["old"], runs["new"]
    figures = {
        "gathers_ratio_new_vs_old": new["param_gathers"] / old["param_gathers"],
        "gathered_numel_ratio_new_vs_old": new["gathered_numel"] / old["gathered_numel"],
        "render_seconds_ratio_new_vs_old": new["render_seconds"] / old["render_seconds"],
        "gathers": {k: r["param_gathers"] for k, r in runs.items()},
        "gathered_numel": {k: r["gathered_numel"] for k, r in runs.items()},
        "render_seconds": {k: r["render_seconds"] for k, r in runs.items()},
        "frames_maxdiff_new_vs_old": float(np.abs(new["frames"] - old["frames"]).max()),
    }
    print()
    print("CFG batching and parameter persistence (2 ranks x 1 thread, ZeRO-3 + Ulysses; rank 0's all-gathers):")
    print(f"{'run':>4} {'gathers':>8} {'gathered M elem':>15} {'render s':>9}  what")
    for k, r in runs.items():
        print(f"{k:>4} {r['param_gathers']:8d} {r['gathered_numel'] / 1e6:15.1f} {r['render_seconds']:9.2f}  {r['what']}")
    print(f"  gathers new/old {figures['gathers_ratio_new_vs_old']:.3f}, gathered elements new/old "
          f"{figures['gathered_numel_ratio_new_vs_old']:.3f}, render seconds new/old "
          f"{figures['render_seconds_ratio_new_vs_old']:.3f}; frames max |new - old| "
          f"{figures['frames_maxdiff_new_vs_old']:.1e}")
    if as_json:
        print(json.dumps(figures))
    return figures


# ----------------------------------------------------------------------------------------- seams


def measure_seams(frames: int = 41, window: int = 17, overlap: int = 5, size: int = 32) -> dict:
    """A shot three windows long through the colour-holding oracle (cinecomp.diffusion.oracle): the
    largest frame-to-frame change across window boundaries vs inside windows, with context (now) and
    with independent windows (before)."""
    import numpy as np
    import torch

    from cinecomp.diffusion.tiny_models import TINY_LATENT_CHANNELS, make_tiny_models
    from cinecomp.diffusion.oracle import PoolVAE, colour_oracle
    from cinecomp.diffusion.pipeline import CinecompPipeline
    from cinecomp.diffusion.windows import plan_windows, render_windows

    out = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        make_tiny_models(tmp / "tiny", seed=0)
        tiny = CinecompPipeline.from_pretrained(tmp / "tiny")
        transformer = tiny.transformer
        transformer.forward = colour_oracle(2 * TINY_LATENT_CHANNELS)
        pipe = CinecompPipeline(transformer=transformer, vae=PoolVAE(TINY_LATENT_CHANNELS), scheduler=tiny.scheduler)
        pipe.set_progress_bar_config(disable=True)
        plan = plan_windows(frames, window, overlap)
        mask = np.zeros((frames, size, size, 3), np.float32)
        mask[..., 2] = 1.0
        for seed in range(5):
            inputs = dict(character_rgb=np.zeros((frames, size, size, 3), np.float32), tri_mask=mask,
                          prompt_embeds=torch.zeros(1, 4, 32), num_inference_steps=4, guidance_scale=1.0, seed=seed)
            for context in (True, False):
                f, _ = render_windows(pipe, inputs, tmp / f"w_{seed}_{context}", window, overlap, context=context)
                step = np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3))
                boundary = np.zeros(len(step), bool)
                for a, b in zip(plan, plan[1:]):
                    boundary[b.start - 1 : a.stop] = True
                key = "context" if context else "independent"
                out.setdefault(key, []).append((float(step[boundary].max()), float(step[~boundary].max())))
    out["windows"] = len(plan)
    return out


def print_seams(out: dict, as_json: bool) -> dict:
    figures = {"windows": out["windows"]}
    print()
    print(f"window seams: {out['windows']} windows, colour-holding oracle + exact PoolVAE, 5 seeds; largest mean "
          "|frame i+1 - frame i| across boundaries vs inside windows:")
    for key in ("context", "independent"):
        seam = max(s for s, _ in out[key])
        inside = max(i for _, i in out[key])
        figures[key] = {"seam": seam, "inside": inside}
        print(f"  {key:12s} seam {seam:.2e}  inside {inside:.2e}")
    if as_json:
        print(json.dumps(figures))
    return figures


ESTIMATE = """estimate: 14B Wan 2.1 base, one 81-frame 1280x720 window, bf16, ZeRO-3 + Ulysses (see the docstring)
  params 14.1e9 (351 M/block x 40) -> 28.2 GB; tokens 21 x 45 x 80 = 75,600
  FLOPs/call: linear 2 x 14e9 x 75,600 = 2.12e15 + attention 4 x 40 x 75,600^2 x 5120 = 4.68e15 = 6.8e15
  x 2 CFG x 50 steps = 6.8e17 FLOPs/window; at 400 TFLOP/s (H100/H800, ~40% of 989 dense bf16):
    GPUs  params/rank           activations/rank   compute   + comm (ZeRO gather + Ulysses a2a @ ~200 GB/s)
      1   28.2 GB               ~6.5 GB            1700 s    -
      4   7.05 + 0.7 = 7.8 GB   ~1.6 GB             425 s    + ~22 s
      8   3.5 + 0.7 = 4.2 GB    ~0.8 GB             213 s    + ~19 s
  (+ VAE encode/decode replicated per rank, CUDA context; not estimated)
  check, same formula, Wan 2.1 T2V-1.3B 832x480 81 frames 50 steps CFG on an RTX 4090:
    T = 32,760; (8.5e13 + 1.98e14) x 100 = 2.83e16 FLOPs; at 165 TFLOP/s x 40% = 66 -> 429 s (7.1 min)
    README: "about 4 minutes" -> formula 1.8x slow; the published figure implies ~72% of dense peak
    memory: 2.6 GB params + 1.5 GB activations = 4.1 GB vs README "8.19 GB VRAM" (VAE, CUDA context not modelled)
  the README's multi-GPU table is an image we cannot read here: the 4/8-GPU times are unchecked"""


if __name__ == "__main__":
    main()
