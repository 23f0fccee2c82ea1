"""Keyer cost per 2048x1080 frame as a multiple of reading + writing that frame (EXR half ZIP).

All measured in this process on the same synthetic green-screen frame (best of N). Usage:
python bench/keyer.py [--size 2048x1080] [--repeat 3] [--json]   (--json: one JSON dict, no table)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))  # this checkout's cinecomp

from cinecomp.layout import REPO  # noqa: E402

from cinecomp.io import exr as exrio  # noqa: E402
from cinecomp.perception.key import ChromaKeyer, KeyParams, estimate_screen  # noqa: E402


def plate(w: int, h: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    screen = np.array([0.05, 0.32, 0.06], np.float32) * (0.8 + 0.3 * xx / w)[..., None]
    r = np.hypot(xx - w * 0.45, (yy - h * 0.5) * 0.6)
    alpha = np.clip((h * 0.3 - r) / 4, 0, 1)[..., None]
    fg = np.array([0.55, 0.35, 0.25], np.float32) * (0.7 + 0.3 * np.sin(xx / 9)[..., None])
    img = fg * alpha + screen * (1 - alpha) + rng.normal(0, 0.004, (h, w, 3)).astype(np.float32)
    return np.concatenate([img, np.ones((h, w, 1), np.float32)], -1)


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", default="2048x1080")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    rgba = plate(w, h)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "p.1001.exr", Path(tmp) / "k.1001.exr"
        exrio.write_rgba(src, rgba)
        io_read = best(lambda: exrio.read_rgba(src), args.repeat)
        io_write = best(lambda: exrio.write_rgba(dst, rgba), args.repeat)
        screen = estimate_screen([rgba[..., :3]])
        rows = {}
        for name, params in (("default", KeyParams()), ("refine on", KeyParams(refine=True)),
                             ("temporal off", KeyParams(temporal=0.0))):
            keyer = ChromaKeyer(params, screen)
            keyer.key(rgba[..., :3])  # a previous frame, so the temporal path runs
            rows[name] = best(lambda: keyer.key(rgba[..., :3]), args.repeat)
    io = io_read + io_write
    if args.json:  # machine-readable only
        print(json.dumps({"size": [w, h], "io_seconds": io, "read_seconds": io_read, "write_seconds": io_write,
                          "keyer_seconds": rows, "ratio": {k: v / io for k, v in rows.items()}}))
        return
    print(f"keyer cost per {w}x{h} frame vs EXR read + write (half ZIP) = {io:.3f} s "
          f"(read {io_read:.3f} s, write {io_write:.3f} s)")
    print(f"{'keyer':14} {'seconds':>8} {'x (read+write)':>15}")
    for name, t in rows.items():
        print(f"{name:14} {t:8.3f} {t / io:15.2f}")


if __name__ == "__main__":
    main()
