"""Key quality on the demo shots against their true alpha: SAD, MSE, gradient error per shot.

Run after `make demo` (reads results/<shot>/key and demo/<shot>/truth). The `over` composite is also
compared with the ground-truth render (PSNR), the baseline later composite backends must beat.
Usage: python bench/key_quality.py [--results results] [--demo demo] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from cinecomp import exrio, metrics  # noqa: E402


def frames(directory: Path) -> dict[int, Path]:
    out = {}
    for p in directory.glob("*.exr"):
        m = re.search(r"\.(\d+)\.exr$", p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", default="results")
    ap.add_argument("--demo", default="demo")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    table = {}
    for truth_dir in sorted(Path(args.demo).glob("*/truth")):
        shot = truth_dir.parent.name
        key_dir = Path(args.results) / shot / "key"
        comp_dir = Path(args.results) / shot / "comp"
        if not key_dir.is_dir():
            continue
        truth, keys, comps = frames(truth_dir), frames(key_dir), frames(comp_dir)
        rows = []
        for f in sorted(set(truth) & set(keys)):
            t = exrio.read_layers(truth[f])
            true_a = t["alpha.A"]
            h, w = true_a.shape
            a = exrio.read_layers(keys[f])["A"].astype(np.float32)
            if a.shape != true_a.shape:
                a = cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)
            row = [metrics.sad(a, true_a), metrics.mse(a, true_a), metrics.gradient_error(a, true_a)]
            if f in comps:
                c = exrio.read_rgba(comps[f])[..., :3]
                if c.shape[:2] != (h, w):
                    c = cv2.resize(c, (w, h), interpolation=cv2.INTER_AREA)
                gt = np.stack([t["R"], t["G"], t["B"]], -1).astype(np.float32)
                row.append(metrics.psnr(np.clip(c, 0, 1), np.clip(gt, 0, 1)))
            rows.append(row)
        if rows:
            table[shot] = dict(zip(["sad", "mse", "grad", "psnr_over_vs_truth"], np.mean(rows, axis=0).tolist()))
    print(f"{'shot':8} {'SAD':>8} {'MSE':>10} {'grad':>8} {'PSNR over vs truth':>20}")
    for shot, m in table.items():
        print(f"{shot:8} {m['sad']:8.3f} {m['mse']:10.5f} {m['grad']:8.3f} {m.get('psnr_over_vs_truth', float('nan')):20.2f}")
    if args.json:
        print(json.dumps(table))


if __name__ == "__main__":
    main()
