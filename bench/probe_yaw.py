"""How well a light probe registers to the environment plate (perception.light.register_probe_yaw), and
the key direction it then gives, on the path-traced shots (their HDRI is the probe; shot.json the truth).

    .venv/bin/python bench/probe_yaw.py [--pathtraced DIR]

Per shot: the rotation found against the true one, with the sheet's camera (given) and with the default
camera (auto: tilt searched too), and the key direction error in degrees against rotation 0 (an
unregistered probe). No timing; prints a table.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from cinecomp import colour  # noqa: E402
from cinecomp.camera import Camera, light_direction  # noqa: E402
from cinecomp.evaluate.pathtraced import _frame, _read_png, _srgb_to_working, camera_of, key_of  # noqa: E402
from cinecomp.io.plates import read_image  # noqa: E402
from cinecomp.layout import SHARED_DATA  # noqa: E402
from cinecomp.perception.light import estimate_light, register_probe_yaw  # noqa: E402


def angle(a, b) -> float:
    return math.degrees(math.acos(float(np.clip(np.dot(a, b), -1, 1))))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pathtraced", type=Path, default=SHARED_DATA / "pathtraced")
    args = ap.parse_args()
    shots = sorted(p for p in args.pathtraced.glob("shot*") if (p / "shot.json").is_file())
    if not shots:
        print(f"no path-traced shots in {args.pathtraced}")
        return 1
    print("shot | camera | rotation found | corr (rival) | conf | key error: registered | rotation 0")
    rows = []
    for shot in shots:
        meta = json.loads((shot / "shot.json").read_text())
        hdri = (shot / meta["hdri"]["file"]).resolve() if not Path(meta["hdri"]["file"]).is_absolute() else Path(meta["hdri"]["file"])
        if not hdri.is_file():
            hdri = args.pathtraced.parent / "backgrounds" / "hdri_equirect" / Path(meta["hdri"]["file"]).name
        probe = colour.convert(np.ascontiguousarray(read_image(hdri)[..., :3], np.float32), "Linear Rec.709 (sRGB)",
                               colour.WORKING_SPACE)
        mid = (int(meta["frame_start"]) + int(meta["frame_end"])) // 2
        frame = _srgb_to_working(_read_png(_frame(shot, "environment", mid)))
        key = key_of(meta)
        truth = light_direction(key["azimuth_deg"], key["elevation_deg"])
        for mode, cam in (("given", Camera.from_params(camera_of(meta))), ("auto", Camera())):
            reg = register_probe_yaw(probe, frame, cam, search_tilt=mode == "auto")
            errs = []
            for rot in (reg.rotation_deg, 0.0):
                est = estimate_light(sheet_light=None, camera=cam, probe=probe, probe_rotation_deg=rot)
                errs.append(angle(est["direction"], truth))
            rows.append((shot.name, mode, reg, errs))
            print(f"{shot.name} | {mode} | {reg.rotation_deg:6.1f} (tilt {reg.tilt_deg:+.0f}) | {reg.score:.2f} ({reg.rival:.2f}) | "
                  f"{reg.confidence:.2f} | {errs[0]:6.1f} | {errs[1]:6.1f}", flush=True)
    for mode in ("given", "auto"):
        e = [r[3][0] for r in rows if r[1] == mode]
        e0 = [r[3][1] for r in rows if r[1] == mode]
        print(f"{mode}: median key error registered {np.median(e):.1f} deg (max {max(e):.1f}); rotation 0: "
              f"median {np.median(e0):.1f} deg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
