"""Path-traced eval shots (Blender/Cycles, a renderer that shares none of harmonize's assumptions):
the judge of picture quality. Reads a folder of shots in the format of ``../shared/data/pathtraced``
(per shot ``greenscreen/ alpha/ groundtruth/ environment/ depth/ masks/`` and ``shot.json``; its
README) and lays them out as eval-set entries like the SDF set's (plate/, env/, truth/ EXRs in
ACEScg), so the same sheet, workflow run and scoring serve both.

Split (fixed, by shot id; tune only on ``tune``): the eight shared shots pair up by HDRI; the
first of each pair and potsdamer are ``tune``, the rest (with venice, an HDRI no tune shot uses)
are ``report``. Shots of other folders (bench/blender_shots.py) carry ``split`` in their
``shot.json``; without one a stable hash of the id decides.

``given`` light: the sheet's camera (height, tilt, roll, focal length) from the Blender camera, and
the key direction and softness from the sun/lamp; nothing else (intensity, colour, fill are left to
the light stage, as a TD with a survey of the set would know only where the sun is).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from .. import colour
from ..errors import CinecompError
from ..io import exr as exrio
from ..layout import SHARED_DATA

PATHTRACED = SHARED_DATA / "pathtraced"
SRGB = "sRGB Encoded Rec.709 (sRGB)"
TUNE = ("shot09_empty_warehouse_01", "shot10_st_fagans_interior", "shot11_forest_slope", "shot12_potsdamer_platz")
REPORT = ("shot13_venice_sunset", "shot14_empty_warehouse_01", "shot15_st_fagans_interior", "shot16_forest_slope")
CONVERT_VERSION = 1  # bump when the conversion changes: converted shots are made again


class PathtracedError(CinecompError):
    """A path-traced shot folder that cannot be read."""


def split_of(shot: str, meta: dict) -> str:
    if shot in TUNE:
        return "tune"
    if shot in REPORT:
        return "report"
    if meta.get("split") in ("tune", "report"):
        return meta["split"]
    return "tune" if int(hashlib.sha1(shot.encode()).hexdigest(), 16) % 2 == 0 else "report"


def find_shots(root=None) -> list[Path]:
    """Shot folders (with a shot.json) under ``root`` (default ../shared/data/pathtraced); [] if absent."""
    root = Path(root or PATHTRACED)
    return sorted(p.parent for p in root.glob("*/shot.json")) if root.is_dir() else []


def _read_png(path: Path) -> np.ndarray:
    """A 8- or 16-bit PNG as float in 0..1 (H, W[, C])."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise PathtracedError(f"{path}: cannot be read as an image (fix: check the shot folder)")
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    img = img.astype(np.float32) / scale
    if img.ndim == 3:
        img = img[..., 2::-1] if img.shape[2] >= 3 else img
    return img


def _srgb_to_working(rgb: np.ndarray) -> np.ndarray:
    return colour.convert(np.ascontiguousarray(rgb[..., :3], np.float32), SRGB, colour.WORKING_SPACE)


def camera_of(meta: dict) -> dict:
    """The sheet's camera JSON (camera.py conventions) of a Blender camera over the ground z = 0."""
    cam = meta["camera"]
    m = np.asarray(cam["matrix_world"], np.float64)
    right, up, back = m[:3, 0], m[:3, 1], m[:3, 2]
    fwd = -back / np.linalg.norm(back)
    ground_z = float(meta.get("ground", {}).get("z", 0.0) or 0.0)
    tilt = math.degrees(math.asin(np.clip(fwd[2], -1, 1)))
    # roll: the camera's right vector against the horizontal right (positive turns the horizon counter-clockwise)
    right_h = np.cross(fwd, [0.0, 0.0, 1.0])
    right_h /= max(np.linalg.norm(right_h), 1e-9)
    up_h = np.cross(right_h, fwd)
    r = right / np.linalg.norm(right)
    roll = math.degrees(math.atan2(-(r @ up_h), r @ right_h))
    return {"focal_mm": round(float(cam["focal_length_mm"]), 4), "sensor_width_mm": round(float(cam.get("sensor_width_mm", 36.0)), 4),
            "height_m": round(float(m[2, 3]) - ground_z, 4), "tilt_deg": round(tilt, 4), "roll_deg": round(roll, 4)}


def key_of(meta: dict) -> dict:
    """The sheet's light JSON of the shot's key: direction (towards it, relative to the camera) and softness."""
    cam = np.asarray(meta["camera"]["matrix_world"], np.float64)
    fwd = -cam[:3, 2]
    fwd_g = np.array([fwd[0], fwd[1], 0.0])
    fwd_g /= np.linalg.norm(fwd_g)
    right_g = np.array([fwd_g[1], -fwd_g[0], 0.0])  # fwd x up: to the camera's right on the ground
    sun = meta.get("sun") or meta.get("lamp") or {}
    d = np.asarray(sun["direction_to_sun"], np.float64)
    d /= np.linalg.norm(d)
    az = math.degrees(math.atan2(d @ right_g, d @ fwd_g)) % 360.0
    el = math.degrees(math.asin(np.clip(d[2], -1, 1)))
    light = {"azimuth_deg": round(az, 3), "elevation_deg": round(el, 3)}
    if sun.get("angular_diameter_deg"):
        light["softness_deg"] = round(float(sun["angular_diameter_deg"]) / 2.0, 3)
    return light


def _frame(shot: Path, element: str, f: int) -> Path:
    return shot / element / f"{shot.name}.{f:04d}.{'exr' if element == 'depth' else 'png'}"


def convert_shot(shot: Path, set_dir: Path) -> dict:
    """Write plate/, env/ (with depth.Z), truth/ (with alpha.A and the masks) EXRs of one shot under
    ``set_dir/<shot>`` (kept when already converted) and return its eval-set entry."""
    meta = json.loads((shot / "shot.json").read_text())
    name = shot.name
    first, last = int(meta["frame_start"]), int(meta["frame_end"])
    out = set_dir / name
    stamp = out / "converted.json"
    want = {"version": CONVERT_VERSION, "source": str(shot.resolve()),
            "mtime": max(p.stat().st_mtime for p in shot.rglob("*") if p.is_file())}
    if not (stamp.is_file() and json.loads(stamp.read_text()) == want):
        for f in range(first, last + 1):
            plate = _read_png(_frame(shot, "greenscreen", f))
            alpha = _read_png(_frame(shot, "alpha", f))
            alpha = alpha[..., 0] if alpha.ndim == 3 else alpha
            exrio.write_rgba(out / "plate" / f"{name}_plate.{f:04d}.exr",
                             np.dstack([_srgb_to_working(plate), np.ones_like(alpha)]))
            env = _srgb_to_working(_read_png(_frame(shot, "environment", f)))
            channels = {"R": env[..., 0], "G": env[..., 1], "B": env[..., 2], "A": np.ones_like(alpha)}
            depth_file = _frame(shot, "depth", f)
            if depth_file.is_file():
                z = exrio.read_layers(depth_file)
                z = next(iter(z.values())) if "Y" not in z else z["Y"]
                channels["depth.Z"] = np.minimum(np.asarray(z, np.float32), 1.0e4)
            exrio.write_exr(out / "env" / f"{name}_env.{f:04d}.exr",
                            {**exrio.half_channels({k: v for k, v in channels.items() if len(k) == 1}, {"shot": name, "frame": f}),
                             **{k: v.astype(np.float32) for k, v in channels.items() if len(k) != 1}})
            truth = _srgb_to_working(_read_png(_frame(shot, "groundtruth", f)))
            masks = _read_png(_frame(shot, "masks", f))
            exrio.write_exr(out / "truth" / f"{name}_truth.{f:04d}.exr",
                            {"R": truth[..., 0], "G": truth[..., 1], "B": truth[..., 2], "alpha.A": alpha.astype(np.float32),
                             "mask.character": (masks[..., 0] > 0.5).astype(np.float32),
                             "mask.prop": (masks[..., 1] > 0.5).astype(np.float32)})
        stamp.write_text(json.dumps(want))
    w, h = meta["resolution"]
    return {
        "shot": name, "split": split_of(name, meta), "description": f"path-traced: {meta.get('hdri', {}).get('file', '')}",
        "conditions": {"renderer": "cycles"}, "width": int(w), "height": int(h), "first": first, "last": last,
        "fps": float(meta.get("fps", 24)),
        "plate": f"{name}/plate/{name}_plate.####.exr", "plate_colourspace": "ACEScg",
        "environment": f"{name}/env/{name}_env.####.exr", "env_colourspace": "ACEScg",
        "truth": f"{name}/truth/{name}_truth.####.exr",
        "camera": camera_of(meta), "light": key_of(meta), "prop_hint": prop_hint(out, name, first, last),
        "source": "pathtraced", "probe": hdri_of(shot, meta),
    }


def hdri_of(shot: Path, meta: dict) -> str:
    """The HDRI the shot was lit by (shot.json's ``hdri.file``, relative to the shot; else by name under
    the shared backgrounds), as an absolute path: the `probe` light mode's light_probe. '' if absent."""
    name = (meta.get("hdri") or {}).get("file") or ""
    if not name:
        return ""
    for p in (shot / name, SHARED_DATA / "backgrounds" / "hdri_equirect" / Path(name).name):
        if p.is_file():
            return str(p.resolve())
    return ""


def prop_hint(out: Path, name: str, first: int, last: int) -> str:
    """The sheet's prop_hint (frame:x0,y0,x1,y1) of the prop's box on the middle frame, as a TD would
    draw it ('' when no prop is in view there)."""
    mid = first + (last - first) // 2
    m = exrio.read_layers(out / "truth" / f"{name}_truth.{mid:04d}.exr")["mask.prop"] > 0.5
    if not m.any():
        return ""
    ys, xs = np.nonzero(m)
    return f"{mid}:{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}"


def make_pathtraced_set(out_dir, root=None, split: str = "report", shots=None) -> list[dict]:
    """Entries of the path-traced shots of ``split`` (or the named ``shots``), converted under ``out_dir``."""
    found = find_shots(root)
    if not found:
        raise PathtracedError(f"no path-traced shots under {root or PATHTRACED} (fix: give --pathtraced DIR, "
                              "or make some with bench/blender_shots.py)")
    out_dir = Path(out_dir)
    entries = []
    for shot in found:
        meta = json.loads((shot / "shot.json").read_text())
        if shots and shot.name not in shots:
            continue
        if not shots and split != "all" and split_of(shot.name, meta) != split:
            continue
        entries.append(convert_shot(shot, out_dir))
    if shots:
        unknown = set(shots) - {e["shot"] for e in entries}
        if unknown:
            raise PathtracedError(f"unknown path-traced shot(s) {', '.join(sorted(unknown))} under {root or PATHTRACED}")
    return entries
