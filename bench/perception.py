"""Cost of the learned perception backends on CPU, next to the classical backend of the same rule.

Per backend and resolution: seconds per frame (model loading excluded, reported apart) and the peak
resident memory while the frames run (the process's high-water mark, reset after the model loads), and
the ratio to the classical backend of the same rule, all measured by this command:

  key    chroma  vs matanyone  (MatAnyone's own base config: ResNet-50 encoder; random weights)
  masks  track   vs sam2       (SAM 2.1 hiera-t, the package's config at its 1024 input; random weights)
  depth  ground  vs model      (Depth Anything V2 Small's architecture at a 518 input; random weights)

Random weights cost what the real ones cost (same networks, same shapes). Each backend runs in its own
process, on the demo resolution (192x108) and on 1080p (1920x1080) frames of a demo shot (a character
pushing a box). Usage:
  python bench/perception.py [--frames 6] [--sizes 192x108,1920x1080] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))  # this checkout's cinecomp

from cinecomp.layout import REPO  # noqa: E402

RULES = {"key": ("chroma", "matanyone"), "masks": ("track", "sam2"), "depth": ("ground", "model")}
FIRST = 1001


def _mem(field: str) -> float:
    """MiB of /proc/self/status's ``field`` (VmHWM: peak resident, VmRSS: resident now)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


# ------------------------------------------------------------------------------------------------
# The shot (made once per resolution by the parent)
# ------------------------------------------------------------------------------------------------


def make_shot(root: Path, width: int, height: int, frames: int) -> None:
    """Demo plates, environments and chroma keys at ``width`` x ``height``; big sizes are rendered at
    384 wide and scaled up (the demo ray-marcher is slow at 1080p; the backends' cost is the same)."""
    import cv2

    from cinecomp.synth import renderer as demo
    from cinecomp.io import exr as exrio
    from cinecomp.frames import frame_path
    from cinecomp.perception.key import key_shot

    rw, rh = (width, height) if width <= 384 else (384, round(384 * height / width / 2) * 2)
    import dataclasses

    scene = dataclasses.replace(demo.SHOT_SCENES["sh010"], push_speed=0.12)
    demo.make_demo_shot(root / "src", "sh", rw, rh, FIRST, FIRST + frames - 1, scene=scene)
    for element in ("plate", "env", "truth"):
        (root / element).mkdir(parents=True, exist_ok=True)
        for f in range(FIRST, FIRST + frames):
            layers = exrio.read_layers(root / "src" / "sh" / element / f"sh_{element}.{f:04d}.exr")
            if (rw, rh) != (width, height):
                layers = {k: cv2.resize(v.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
                          for k, v in layers.items()}
            exrio.write_exr(root / element / f"sh_{element}.{f:04d}.exr", layers, compression="zip",
                            attrs={"shot": "sh", "frame": f})
    plates = [root / "plate" / f"sh_plate.{f:04d}.exr" for f in range(FIRST, FIRST + frames)]
    key_shot(plates, [frame_path(root / "key", "sh", "key", None, f) for f in range(FIRST, FIRST + frames)], {},
             attrs={"shot": "sh"})
    truth = exrio.read_layers(root / "truth" / f"sh_truth.{FIRST + frames // 2:04d}.exr")["mask.prop"]
    ys, xs = np.nonzero(truth > 0.5)
    hint = {"frame": FIRST + frames // 2, "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]}
    (root / "hint.json").write_text(json.dumps(hint))


# ------------------------------------------------------------------------------------------------
# One backend in this process
# ------------------------------------------------------------------------------------------------


def worker(backend: str, shot: Path, out: Path) -> dict:
    import logging

    import torch

    from cinecomp import stages
    from cinecomp.frames import frame_path

    torch.manual_seed(0)
    files = sorted((shot / "plate").glob("*.exr"))
    n = len(files)
    frames = list(range(FIRST, FIRST + n))
    keys = [(f, frame_path(shot / "key", "sh", "key", None, f)) for f in frames]
    hint = json.loads((shot / "hint.json").read_text())
    from cinecomp.io import exr as exrio

    h, w = exrio.read_layers(files[0])["R"].shape
    attrs = {"shot": "sh"}
    log = logging.getLogger("bench")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if backend == "chroma":
        from cinecomp.perception.key import key_shot

        run = lambda: key_shot(files, [frame_path(out, "sh", "key", None, f) for f in frames], {}, attrs=attrs)  # noqa: E731
    elif backend == "matanyone":
        from cinecomp.perception.matanyone import matanyone_key_shot
        from cinecomp.perception.models import build_matanyone

        _, net, _ = build_matanyone()
        run = lambda: matanyone_key_shot(files, [frame_path(out, "sh", "key", None, f) for f in frames],  # noqa: E731
                                         {"matanyone_warmup": 0}, settings={"device": "cpu"}, attrs=attrs,
                                         network=net)
    elif backend == "track":
        from cinecomp.perception.masks import track_masks

        run = lambda: track_masks(keys, [frame_path(out, "sh", "masks", None, f) for f in frames], hint=hint,  # noqa: E731
                                  plate_size=(w, h), attrs=attrs)
    elif backend == "sam2":
        from cinecomp.perception.tiny_models import make_sam2
        from cinecomp.perception.sam2_masks import load_predictor, sam2_masks

        m = make_sam2(out / "model", image_size=1024)
        predictor = load_predictor(m["config"], m["checkpoint"], "cpu")
        run = lambda: sam2_masks(keys, [frame_path(out, "sh", "masks", None, f) for f in frames], hint=hint,  # noqa: E731
                                 plate_size=(w, h), settings={**m, "device": "cpu"}, attrs=attrs, log=log,
                                 predictor=predictor)
    else:  # ground | model: the depth stage as the rule runs it, on the track backend's masks
        from cinecomp.perception.masks import track_masks

        masks_dir = out / "masks"
        masks_dir.mkdir(parents=True, exist_ok=True)
        track_masks(keys, [frame_path(masks_dir, "sh", "masks", None, f) for f in frames], hint=hint,
                    plate_size=(w, h), attrs=attrs)
        settings = {"backend": backend, "camera": {}, "env_source": "", "attrs": attrs, "model": None}
        if backend == "model":
            from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

            bb = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                              image_size=518, patch_size=14, reshape_hidden_states=False,
                              out_features=["stage3", "stage6", "stage9", "stage12"])
            cfg = DepthAnythingConfig(backbone_config=bb, reassemble_hidden_size=384,
                                      neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64)
            DepthAnythingForDepthEstimation(cfg).save_pretrained(out / "depth_model")
            settings["model"] = {"path": str(out / "depth_model"), "device": "cpu", "input_size": 518,
                                 "temporal": 0.5}
        inputs = SimpleNamespace(masks=str(masks_dir), env=str(shot / "env"))
        run = lambda: stages.depth(inputs, [str(out / "depth")], settings, log)  # noqa: E731
    load = time.perf_counter() - t0
    rss_loaded = _mem("VmRSS")
    _reset_peak()
    t1 = time.perf_counter()
    run()
    total = time.perf_counter() - t1
    return {"backend": backend, "size": f"{w}x{h}", "frames": n, "load_s": round(load, 3),
            "s_per_frame": total / n, "peak_mib": _mem("VmHWM"), "rss_after_load_mib": rss_loaded}


# ------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--sizes", default="192x108,1920x1080")
    ap.add_argument("--backends", default="chroma,matanyone,track,sam2,ground,model")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--shot", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.shot), Path(args.out))))
        return 0
    backends = args.backends.split(",")
    if "matanyone" in backends:
        try:
            from cinecomp.perception.models import matanyone_package

            matanyone_package()
        except ImportError as exc:
            print(f"skipping matanyone: {exc}", file=sys.stderr)
            backends.remove("matanyone")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            shot = Path(tmp) / size
            make_shot(shot, w, h, args.frames)
            for b in backends:
                r = subprocess.run([sys.executable, __file__, "--worker", b, "--shot", str(shot),
                                    "--out", str(Path(tmp) / f"{size}_{b}")], capture_output=True, text=True,
                                   env={**os.environ, "PYTHONWARNINGS": "ignore"})
                if r.returncode:
                    print(r.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"{b} at {size} failed")
                results.append(json.loads(r.stdout.strip().splitlines()[-1]))
                if not args.json:
                    print(f"  measured {b} at {size}", file=sys.stderr)
    by = {(r["backend"], r["size"]): r for r in results}
    for r in results:
        for rule, (classical, learned) in RULES.items():
            if r["backend"] == learned and (classical, r["size"]) in by:
                c = by[(classical, r["size"])]
                r["rule"], r["vs"] = rule, classical
                r["time_ratio"] = r["s_per_frame"] / max(c["s_per_frame"], 1e-9)
                r["peak_ratio"] = r["peak_mib"] / max(c["peak_mib"], 1e-9)
            elif r["backend"] == classical:
                r["rule"] = rule
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"CPU, {os.cpu_count()} cores, torch threads {__import__('torch').get_num_threads()}, "
          f"{args.frames} frames per run; model load excluded (load_s)\n")
    print("| rule | backend | size | s/frame | peak MiB | load s | x classical time | x classical peak |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        ratio = (f"{r['time_ratio']:.1f} | {r['peak_ratio']:.2f}" if "time_ratio" in r else "1 | 1")
        print(f"| {r.get('rule', '')} | {r['backend']} | {r['size']} | {r['s_per_frame']:.3f} | "
              f"{r['peak_mib']:.0f} | {r['load_s']:.1f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
