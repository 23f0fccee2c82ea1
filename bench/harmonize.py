"""Harmonize cost per 2048x1080 frame as a multiple of reading + writing that frame (EXR half ZIP).

A demo frame (character pushing a box, sun from camera right) rendered small and scaled to the bench
size gives realistic mattes; the light and camera are sh010's. All timings in this process, best of N.
Usage: python bench/harmonize.py [--size 2048x1080] [--repeat 3] [--json]
Goal (issue "Harmonize"): at most 3x the frame's own read + write.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))  # this checkout's cinecomp

from cinecomp.layout import REPO  # noqa: E402

from cinecomp.synth import renderer as demo  # noqa: E402
from cinecomp.io import exr as exrio
from cinecomp.composite import harmonize as hz
from cinecomp.camera import Camera, light_direction  # noqa: E402
from cinecomp.perception.depth import object_contacts  # noqa: E402


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def frame(w: int, h: int) -> dict:
    r = demo.render_frame(8, 256, int(round(256 * h / w / 2)) * 2, demo.DemoScene(contact_at=10))
    up = {k: cv2.resize(v, (w, h), interpolation=cv2.INTER_LINEAR) for k, v in r.items() if k != "depth"}
    up["key"] = np.concatenate([up["plate_rgb"] * up["alpha"][..., None], up["alpha"][..., None]], -1)
    return up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", default="2048x1080")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    f = frame(w, h)
    camera = Camera(focal_mm=49.45, height_m=1.25, tilt_deg=-3.81)
    sh = np.zeros((9, 3))
    sh[0], sh[2] = 1.5, 0.9
    light = hz.ShotLight.from_json({"direction": light_direction(122.5, 49).tolist(), "intensity": 3.0,
                                    "colour": [1.05, 1.0, 0.9], "ambient_sh": sh.tolist(), "softness_deg": 2.0})
    params = hz.parse_harmonize_params("")
    masks = {"character": f["char_mask"], "prop": f["prop_mask"]}
    contacts = {o: c[0] for o, c in object_contacts(camera, [masks], w, h).items()}
    depth = camera.ground_depth(w, h)
    grade = hz.shot_grade([(f["key"], masks)], light, camera, params)
    rgba = np.concatenate([f["env_rgb"], np.ones((h, w, 1), np.float32)], -1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.1001.exr"
        exrio.write_rgba(path, rgba)
        io = best(lambda: exrio.read_rgba(path), args.repeat) + best(lambda: exrio.write_rgba(path, rgba), args.repeat)
    t = {"harmonize_frame": best(lambda: hz.harmonize_frame(f["key"], f["env_rgb"], masks, depth, contacts, light,
                                                             grade, camera, params), args.repeat),
         "environment_occlusion": best(lambda: hz.environment_occlusion(depth, [(masks[o], contacts[o], o == "prop") for o in masks],
                                                                         light, camera, 2.0), args.repeat),
         "relight_ratio": best(lambda: hz.relight_ratio(masks, light, grade, camera, 1.0), args.repeat)}
    if args.json:
        print(json.dumps({"size": [w, h], "io_seconds": io, "seconds": t, "ratio": {k: v / io for k, v in t.items()}}))
        return
    print(f"harmonize cost per {w}x{h} frame vs EXR read + write (RGBA half ZIP) = {io:.3f} s")
    print(f"{'part':22} {'seconds':>8} {'x (read+write)':>15}")
    for name, v in t.items():
        print(f"{name:22} {v:8.3f} {v / io:15.2f}")


if __name__ == "__main__":
    main()
