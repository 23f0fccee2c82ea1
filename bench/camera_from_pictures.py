"""Camera from the pictures (perception.camera_estimate) against each path-traced shot's shot.json:
tilt and roll error (degrees), height error (metres), focal length error (%), per shot, for the cues
the eval's auto mode can have: the environment's Z with the actors' size (depth backend plate), and
the actors alone (depth backend ground: no Z).

    PYTHONPATH=workflow python bench/camera_from_pictures.py [--pathtraced DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from cinecomp.io.pathtraced import camera_of, environment_depth, find_shots, frame_path, read_png, split_of  # noqa: E402
from cinecomp.perception.camera_estimate import estimate_camera  # noqa: E402


def shot_inputs(shot: Path):
    meta = json.loads((shot / "shot.json").read_text())
    first, last = int(meta["frame_start"]), int(meta["frame_end"])
    masks = [{"character": read_png(frame_path(shot, "masks", f))[..., 0]} for f in range(first, last + 1)]
    z = environment_depth(shot, first + (last - first) // 2)  # the environment's Z: no actors in it
    return meta, masks, z


def errors(est: dict, truth: dict) -> dict:
    p = {"focal_mm": 35.0, "height_m": 1.6, "tilt_deg": 0.0, "roll_deg": 0.0, **est["params"]}
    return {"tilt": p["tilt_deg"] - truth["tilt_deg"], "roll": p["roll_deg"] - truth["roll_deg"],
            "height": p["height_m"] - truth["height_m"], "focal": 100.0 * (p["focal_mm"] / truth["focal_mm"] - 1.0)}


def pathtraced_shots(doc: str, argv=None) -> list[Path]:
    """The shot folders of ``--pathtraced`` (default ../shared/data/pathtraced); exits when there are none."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--pathtraced", default=None, help="folder of path-traced shots (default ../shared/data/pathtraced)")
    shots = find_shots(ap.parse_args(argv).pathtraced)
    if not shots:
        sys.exit("no path-traced shots found")
    return shots


def main(argv=None) -> int:
    shots = pathtraced_shots(__doc__, argv)
    cues = {"plate Z + actors": lambda m, z: (z, m), "actors only": lambda m, z: (None, m)}
    summary = {c: [] for c in cues}
    print("| shot | split | cues | tilt err (deg) | roll err (deg) | height err (m) | focal err (%) | confidence | sources |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shot in shots:
        meta, masks, z = shot_inputs(shot)
        truth = camera_of(meta)
        h, w = z.shape
        for cue, pick in cues.items():
            env_z, m = pick(masks, z)
            est = estimate_camera(None, w, h, env_z=env_z, masks_per_frame=m)
            e = errors(est, truth)
            summary[cue].append(e)
            src = ",".join(sorted(set(est["source"].values())))
            print(f"| {shot.name} | {split_of(shot.name, meta)} | {cue} | {e['tilt']:+.2f} | {e['roll']:+.2f} | "
                  f"{e['height']:+.3f} | {e['focal']:+.1f} | {est['confidence']:.2f} | {src} |")
    print()
    print("| cues | median abs tilt (deg) | roll (deg) | height (m) | focal (%) |")
    print("|---|---|---|---|---|")
    for cue, rows in summary.items():
        med = {k: float(np.median([abs(r[k]) for r in rows])) for k in ("tilt", "roll", "height", "focal")}
        print(f"| {cue} | {med['tilt']:.2f} | {med['roll']:.2f} | {med['height']:.3f} | {med['focal']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
