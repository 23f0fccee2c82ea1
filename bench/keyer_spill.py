"""How much green the keyer leaves on the actor and the prop: the keyed foreground's colour against the
same studio render with the green floor and backdrop turned off (no spill), per shot and region.

Shots from `bench/blender_shots.py --nospill` (greenscreen_nospill/ beside greenscreen/). Each plate is
keyed as the key stage keys it (`perception.key.key_frames`, default params); over solid pixels (alpha
>= 0.99, eroded, by the shot's masks) the measure is the green share of each pixel, G / (R + G + B),
keyed minus spill-free: > 0 means green left on. The bounced light the screen adds is real light too,
so only the colour is compared, not the brightness. `--percentiles` re-keys with other
`SPILL_PERCENTILE`s (which of the spilled neutrals' ratios sets the shot's spill gain) in the same run.

    python bench/keyer_spill.py --shots /tmp/bl_ns [--percentiles 50,75,90]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))  # this checkout's cinecomp

from cinecomp.io.pathtraced import find_shots, frame_path, read_png, srgb_to_working  # noqa: E402
from cinecomp.perception import key as K  # noqa: E402


def green_share(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 1] / np.maximum(rgb.sum(-1), 1e-6)


def shot_error(shot: Path) -> dict:
    """{region: (mean, mean |.|) of the keyed minus spill-free green share over solid pixels}, spill gain."""
    meta = json.loads((shot / "shot.json").read_text())
    frames = range(int(meta["frame_start"]), int(meta["frame_end"]) + 1)
    plate = np.stack([srgb_to_working(read_png(frame_path(shot, "greenscreen", f))) for f in frames])
    clean = np.stack([srgb_to_working(read_png(frame_path(shot, "greenscreen_nospill", f))) for f in frames])
    alpha, fg, info = K.key_frames(plate)
    out = {"spill": float(info.get("spill", 1.0))}
    for region, channel in (("character", 0), ("prop", 1)):
        diffs = []
        for i, f in enumerate(frames):
            mask = read_png(frame_path(shot, "masks", f))[..., channel] > 0.5
            solid = cv2.erode(((alpha[i] >= 0.99) & mask).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            if solid.any():
                keyed = fg[i][solid] / alpha[i][solid, None]
                diffs.append(green_share(keyed) - green_share(clean[i][solid]))
        d = np.concatenate(diffs) if diffs else np.zeros(0)
        out[region] = (float(d.mean()), float(np.abs(d).mean())) if d.size else (float("nan"), float("nan"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=Path, required=True, help="a folder of bench/blender_shots.py --nospill shots")
    ap.add_argument("--percentiles", default=str(K.SPILL_PERCENTILE), help="SPILL_PERCENTILE values to compare")
    args = ap.parse_args()
    shots = [s for s in find_shots(args.shots) if (s / "greenscreen_nospill").is_dir()]
    if not shots:
        raise SystemExit(f"{args.shots}: no shot has greenscreen_nospill/ (fix: render with bench/blender_shots.py --nospill)")
    default = K.SPILL_PERCENTILE
    for pct in (float(p) for p in args.percentiles.split(",")):
        K.SPILL_PERCENTILE = pct
        rows = {s.name: shot_error(s) for s in shots}
        print(f"\nSPILL_PERCENTILE {pct:g}{' (the default)' if pct == default else ''}: green share keyed - spill-free "
              "(mean, mean |.|) over solid pixels")
        for name, r in rows.items():
            print(f"  {name[:40]:40} spill {r['spill']:.3f}  character {r['character'][0]:+.4f} ({r['character'][1]:.4f})"
                  f"  prop {r['prop'][0]:+.4f} ({r['prop'][1]:.4f})")
        for region in ("character", "prop"):
            m = np.array([r[region] for r in rows.values()], float)
            m = m[np.isfinite(m[:, 0])]
            print(f"  mean over {len(m)} shots, {region}: {m[:, 0].mean():+.4f} (|.| {m[:, 1].mean():.4f}); "
                  f"green left on {int((m[:, 0] > 0.005).sum())}, too little on {int((m[:, 0] < -0.005).sum())}")
    K.SPILL_PERCENTILE = default
    return 0


if __name__ == "__main__":
    sys.exit(main())
