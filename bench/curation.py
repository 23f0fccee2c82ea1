"""Pair fidelity of the curation (README "Curation"): demo-renderer shots curated as if they were real
footage (only the comp frames given; with --given also the survey's camera and light), each window's
curated pair compared with the renderer's truth in the samples' display encoding.

    .venv/bin/python bench/curation.py                      # the eval set's report shots, 128x80, 27 frames
    .venv/bin/python bench/curation.py --shots ev01,ev02 --json

Columns (means over windows, then shots): env_psnr (curated environment vs the true one) against
env_frames (the comp frames used as the environment: what the clean plate improves on); input_psnr
(keyed character where either alpha > 0.05, relit to the renderer's own studio light so the two are
comparable) and input_overlap (where both alphas > 0.9: the de-lighting alone) against the raw cut-out
of the comp (no de-harmonization); mask_iou (alpha > 0.5); seconds of curation per shot.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

import numpy as np  # noqa: E402

from cinecomp.curate.pipeline import check_settings  # noqa: E402
from cinecomp.curate.synthetic import pair_fidelity, scene_of  # noqa: E402
from cinecomp.evaluate.suite import eval_shots  # noqa: E402

COLS = [("env_psnr", "env"), ("env_psnr_frames", "env_frames"), ("input_psnr", "input"),
        ("input_psnr_cutout", "input_cutout"), ("input_psnr_overlap", "input_overlap"),
        ("input_psnr_overlap_cutout", "overlap_cutout"), ("mask_iou", "mask_iou"), ("seconds", "seconds")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shots", default=None, help="eval shots (default: the report split)")
    p.add_argument("--frames", type=int, default=27)
    p.add_argument("--size", default="128x80")
    p.add_argument("--window", type=int, default=9)
    p.add_argument("--given", action="store_true", help="give the survey's camera and light (else estimated)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    w, h = (int(v) for v in a.size.split("x"))
    settings = check_settings({"window": a.window, "width": w, "height": h})
    names = a.shots.split(",") if a.shots else [s.name for s in eval_shots() if s.split == "report"]
    rows = {}
    for name in names:
        t0 = time.time()
        _, scene = scene_of(f"synthetic:{name}")
        r = pair_fidelity(scene, a.frames, (w, h), settings, given=a.given)
        r["render_and_curate_s"] = round(time.time() - t0, 1)
        rows[name] = r
    mean = {k: float(np.nanmean([r[k] for r in rows.values()])) for k, _ in COLS}
    if a.json:
        print(json.dumps({"shots": rows, "mean": mean}, indent=1))
        return 0
    print(f"pair fidelity, {len(names)} shots, {a.frames} frames of {w}x{h}, windows of {a.window}, "
          f"light {'given' if a.given else 'estimated'} (PSNR dB, display encoding)")
    print("| shot | " + " | ".join(n for _, n in COLS) + " |")
    print("|---" * (len(COLS) + 1) + "|")
    for name, r in list(rows.items()) + [("mean", mean)]:
        print(f"| {name} | " + " | ".join(f"{r[k]:.3f}" if k == "mask_iou" else f"{r[k]:.2f}" for k, _ in COLS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
