"""What predicts the character's exposure in the truth: per path-traced shot, the measured truth / plate
brightness ratio on the character (luminance, scene-linear) beside harmonize's estimate and the cues
it could rest on. Tune on the tune half only (the default split).

Reads a finished `cinecomp eval --set pathtraced --backends over,harmonize` directory (key, masks, light
of every shot). Columns (stops, log2):
  meas     the truth over the keyed plate on the solid character (every frame)
  now      the exposure part of harmonize's gain with the current parameters (`--params` to change)
  est      the estimate at full confidence (env - studio, clipped)
  env      the environment's light on the character's normals over its light on the ground (light.json)
  studio   the studio's light on the same normals over its light on an upward surface (shading fitted on
           the plate)
  screen   an absolute cue, rejected: the environment's light on the character (grey world on the
           environment plate: the ground reflects 18%) over the studio's light on the screen (its
           brightness / SCREEN_REFLECTANCE, chroma-key paint is about an 18% grey)
  conf     the confidence the estimate carries

Usage: python bench/exposure_cues.py EVAL_DIR [--light given|auto|probe] [--split tune|report|all] [--params JSON]
       [--pathtraced DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))  # this checkout's cinecomp

from cinecomp.camera import Camera  # noqa: E402
from cinecomp.composite import harmonize as hz  # noqa: E402
from cinecomp.evaluate import suite as evaluate  # noqa: E402
from cinecomp.evaluate.pathtraced import make_pathtraced_set  # noqa: E402
from cinecomp.frames import sample_indices  # noqa: E402
from cinecomp.io import exr as exrio  # noqa: E402
from cinecomp.stages import element_frames, read_trimask  # noqa: E402

LUMA = hz.LUMA
SCREEN_REFLECTANCE = 0.18  # chroma-key green paint reads about as bright as an 18% grey card


def screen_cue(key_file: Path, light: hz.ShotLight, env_stops: float) -> float:
    """Stops: E_env on the character (grey world) over E_studio at the screen (keyScreen / paint)."""
    attr = exrio.read_exr_header(key_file).get("keyScreen")
    if not attr:
        return float("nan")
    screen = np.array([float(v) for v in str(attr).split(",")])
    up = np.array([0.0, 1.0, 0.0], np.float32)
    e_up = float((light.key(up) + light.ambient(up)) @ LUMA)  # grey world's light on the ground (plate mode)
    e_screen = math.pi * float(screen @ LUMA) / SCREEN_REFLECTANCE
    return env_stops + math.log2(max(e_up, 1e-9) / max(e_screen, 1e-9))


def measured(entry: dict, set_dir: Path, keys: list[tuple[int, Path]]) -> float:
    """log2 of sum(truth) / sum(plate) luminance over the solid character of every frame."""
    t_sum = p_sum = 0.0
    for f, path in keys:
        truth = exrio.read_layers(set_dir / entry["truth"].replace("####", f"{f:04d}"))
        key = exrio.read_rgba(path)
        a = key[..., 3]
        solid = (a > 0.95) & (truth["mask.character"] > 0.5) & (truth["alpha.A"] > 0.95)
        if solid.sum() < 16:
            continue
        gt = np.stack([truth[c] for c in "RGB"], -1)
        t_sum += float((gt[solid] @ LUMA).sum())
        p_sum += float((key[..., :3][solid] / a[solid, None] @ LUMA).sum())
    return math.log2(t_sum / p_sum) if p_sum > 0 and t_sum > 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval_dir")
    ap.add_argument("--light", default="given", choices=evaluate.LIGHT_MODES)
    ap.add_argument("--split", default="tune", choices=["tune", "report", "all"])
    ap.add_argument("--params", default="", help="harmonize_params JSON for the 'now' column")
    ap.add_argument("--pathtraced", type=Path, default=None, help="the shots' folder (as cinecomp eval --pathtraced)")
    args = ap.parse_args()
    out = Path(args.eval_dir).resolve()
    set_dir, results = out / "set", out / f"results_{args.light}"
    params = hz.parse_harmonize_params(args.params)
    entries = make_pathtraced_set(set_dir, root=args.pathtraced, split=args.split)
    print(f"light {args.light}, split {args.split}, params {args.params or 'defaults'}; stops (log2)")
    print(f"{'shot':30} {'meas':>6} {'now':>6} {'err':>6} {'est':>6} {'env':>6} {'studio':>6} {'screen':>6} {'conf':>5}  source")
    errs = []
    for e in entries:
        r = results / evaluate.shot_id(e["shot"], "harmonize")
        if not (r / "key").is_dir():
            continue
        light_json = json.loads((r / "light" / "light.json").read_text())
        light = hz.ShotLight.from_json(light_json).trusted()
        camera = Camera.from_params(json.loads((r / "depth" / "contacts.json").read_text())["camera"])
        keys = element_frames(r / "key")
        masks = dict(element_frames(r / "masks"))
        picks = [keys[i] for i in sample_indices(len(keys), 6)]
        samples = [(exrio.read_rgba(p), read_trimask(masks[f])) for f, p in picks]
        grade = hz.shot_grade(samples, light, camera, params)
        meas = measured(e, set_dir, keys)
        now = math.log2(float(grade.gain @ LUMA))
        ex = grade.exposure
        cues = ex.get("cues", {})
        errs.append(now - meas)
        nan = float("nan")
        print(f"{e['shot'][:30]:30} {meas:+6.2f} {now:+6.2f} {now - meas:+6.2f} {ex.get('estimate', nan):+6.2f} "
              f"{cues.get('env', nan):+6.2f} {cues.get('studio', nan):+6.2f} "
              f"{screen_cue(keys[0][1], hz.ShotLight.from_json(light_json), cues.get('env', nan)):+6.2f} "
              f"{ex.get('confidence', nan):5.2f}  {ex.get('source', '')}")
    if errs:
        errs = np.asarray(errs)
        print(f"{'mean |err|':30} {'':6} {'':6} {np.abs(errs).mean():6.2f}   rms {math.sqrt((errs ** 2).mean()):.2f}")


if __name__ == "__main__":
    main()
