"""The key light from the pictures, per path-traced shot, against shot.json's sun/lamp: direction error
(degrees) of each cue the light stage can have when the sheet gives nothing, with the camera estimated
from the pictures (perception.camera_estimate: the environment's Z and the actors' size).

- in frame: a light source seen in the environment plate (perception.light, environment_plate);
- sky side: the slope of the seen sky's brightness across the view (perception.key_cues.sky_side_cue): left or
  right of the camera, scored as right or WRONG against the sine of the true azimuth;
- ground shadows: the axis of the shadow edges on the plate's ground seen from above
  (perception.key_cues.ground_shadow_cue; an axis, so its error is taken modulo 180), and lit over
  shadowed ground against the true key_to_fill;
- environment shading: the brightness ratios across the creases of the environment's geometry, its
  normals from the environment's Z (perception.key_cues.shading_cue), the cue the light stage uses;
- probe: the shot's HDRI registered to the plate by a yaw search (perception.light.register_probe_yaw)
  through the estimated camera, and through the default camera with the tilt searched (today's auto).

    PYTHONPATH=workflow python bench/key_from_pictures.py [--pathtraced DIR]
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from cinecomp import colour  # noqa: E402
from cinecomp.camera import Camera, light_direction  # noqa: E402
from cinecomp.io.pathtraced import frame_path, hdri_of, key_of, read_png, split_of, srgb_to_working  # noqa: E402
from cinecomp.io.plates import read_image  # noqa: E402
from cinecomp.perception.camera_estimate import estimate_camera  # noqa: E402
from cinecomp.perception.key_cues import ground_shadow_cue, shading_cue, sky_side_cue  # noqa: E402
from cinecomp.perception.light import estimate_light  # noqa: E402
from camera_from_pictures import pathtraced_shots, shot_inputs  # noqa: E402  (this folder)


def angle(a, b) -> float:
    return math.degrees(math.acos(float(np.clip(np.dot(a, b), -1, 1))))


def axis_error(axis: float, azimuth: float) -> float:
    d = abs((axis - azimuth) % 180.0)
    return min(d, 180.0 - d)


def main(argv=None) -> int:
    shots = pathtraced_shots(__doc__, argv)
    print("| shot | split | true az/el | in frame: err (conf) | ground shadows: axis err (coherence) | "
          "key_to_fill ground vs true | sky side (conf) | environment shading: err (strength, creases) | probe, estimated camera: err (conf) | probe, default camera: err (conf) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    errs = {"frame": [], "ground": [], "sky": [], "shading": [], "probe_est": [], "probe_default": []}
    confident = []  # (error, strength) of the shading cue
    for shot in shots:
        meta, masks, z = shot_inputs(shot)  # z: the middle frame's
        first, last = int(meta["frame_start"]), int(meta["frame_end"])
        mid = first + (last - first) // 2
        frames = [srgb_to_working(read_png(frame_path(shot, "environment", f))) for f in (first, mid, last)]
        h, w = z.shape
        cam = Camera.from_params(estimate_camera(None, w, h, env_z=z, masks_per_frame=masks)["params"])
        key = key_of(meta)
        truth = light_direction(key["azimuth_deg"], key["elevation_deg"])
        sun = meta.get("sun") or meta.get("lamp") or {}

        plate = estimate_light(sheet_light=None, camera=cam, env_frames=frames)
        if plate["source"]["direction"] == "environment_plate":
            e = angle(plate["direction"], truth)
            errs["frame"].append(e)
            in_frame = f"{e:.1f} ({plate['confidence']:.2f})"
        else:
            in_frame = "none found"
        cue = ground_shadow_cue(frames[1], z, cam)
        if cue.axis_deg is None:
            ground, k2f = "no ground", "-"
        else:
            e = axis_error(cue.axis_deg, key["azimuth_deg"])
            errs["ground"].append(e)
            ground, k2f = f"{e:.1f} ({cue.coherence:.2f})", f"{cue.key_to_fill:.2f} vs {sun.get('key_to_fill_ratio', float('nan')):.2f}"
        sky = sky_side_cue(frames[1], z, cam)
        if sky.slope is None:
            sky_cell = "no sky"
        else:
            right = math.sin(math.radians(key["azimuth_deg"])) > 0
            ok = (sky.slope > 0) == right
            errs["sky"].append(ok)
            sky_cell = f"{'right' if ok else 'WRONG'} ({sky.confidence:.2f}, |sin az| {abs(math.sin(math.radians(key['azimuth_deg']))):.2f})"
        shade = shading_cue(frames[1], z, cam)
        if shade.azimuth_deg is None:
            shade_cell = "no crease"
        else:
            e = abs((shade.azimuth_deg - key["azimuth_deg"] + 180.0) % 360.0 - 180.0)
            errs["shading"].append(e)
            confident.append((e, shade.strength))
            shade_cell = f"{e:.1f} ({shade.strength:.2f}, {shade.creases})"
        probe_cells = []
        hdri = hdri_of(shot, meta)
        for name, c in (("probe_est", cam), ("probe_default", Camera())):
            if not hdri:
                probe_cells.append("no HDRI")
                continue
            probe = colour.convert(np.ascontiguousarray(read_image(hdri)[..., :3], np.float32), "Linear Rec.709 (sRGB)",
                                   colour.WORKING_SPACE)
            est = estimate_light(sheet_light=None, camera=c, env_frames=frames, probe=probe, probe_rotation_deg=None)
            e = angle(est["direction"], truth)
            errs[name].append(e)
            probe_cells.append(f"{e:.1f} ({est['confidence']:.2f})")
        print(f"| {shot.name} | {split_of(shot.name, meta)} | {key['azimuth_deg']:.0f}/{key['elevation_deg']:.0f} | "
              f"{in_frame} | {ground} | {k2f} | {sky_cell} | {shade_cell} | {probe_cells[0]} | {probe_cells[1]} |", flush=True)
    print()
    for k, v in errs.items():
        if k == "sky":
            print(f"sky side: {len(v)} shot(s) with sky, side right on {sum(v)}")
        elif v:
            print(f"{k}: {len(v)} shot(s), median error {np.median(v):.1f} deg, max {max(v):.1f}")
        else:
            print(f"{k}: found on no shot")
    if confident:
        print(f"shading: within 30 deg on {sum(e < 30 for e, _ in confident)} of {len(confident)}")
    for least in (0.5, 0.75):
        sure = [e for e, c in confident if c >= least]
        if sure:
            print(f"shading at strength >= {least}: {len(sure)} shot(s), median azimuth error {np.median(sure):.1f} deg, "
                  f"within 30 deg on {sum(e < 30 for e in sure)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
