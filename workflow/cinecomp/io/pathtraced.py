"""Path-traced shot folders: the format of ``../shared/data/pathtraced`` and of bench/blender_shots.py
(per shot ``greenscreen/ alpha/ groundtruth/ environment/ depth/ masks/`` and ``shot.json``; the README
there), read for evaluation (evaluate.pathtraced) and for training data (curate.pathtraced).

Split (fixed, by shot id; tune only on ``tune``): the eight shared shots pair up by HDRI; the
first of each pair and potsdamer are ``tune``, the rest (with venice, an HDRI no tune shot uses)
are ``report``. Shots of other folders (bench/blender_shots.py) carry ``split`` in their
``shot.json``; without one a stable hash of the id decides. Nothing is ever trained on ``report``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from .. import colour
from . import exr as exrio
from ..errors import CinecompError
from ..layout import SHARED_DATA

PATHTRACED = SHARED_DATA / "pathtraced"
SRGB = "sRGB Encoded Rec.709 (sRGB)"
TUNE = ("shot09_empty_warehouse_01", "shot10_st_fagans_interior", "shot11_forest_slope", "shot12_potsdamer_platz")
REPORT = ("shot13_venice_sunset", "shot14_empty_warehouse_01", "shot15_st_fagans_interior", "shot16_forest_slope")


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


def read_png(path: Path) -> np.ndarray:
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


def srgb_to_working(rgb: np.ndarray) -> np.ndarray:
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


def frame_path(shot: Path, element: str, f: int) -> Path:
    return shot / element / f"{shot.name}.{f:04d}.{'exr' if element == 'depth' else 'png'}"


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


ELEMENTS = ("greenscreen", "groundtruth", "environment", "depth", "masks")


def check_shot_folder(folder: Path, first: int | None, last: int | None, window: int) -> tuple[list[str], dict]:
    """Problems of a shot folder as training data (each naming the file and the fix; a report-split shot is
    one) and its shot.json; nothing is read beyond the file names and shot.json."""
    meta_file = folder / "shot.json"
    if not meta_file.is_file():
        return [f"{meta_file}: no shot.json, so {folder} is not a path-traced shot folder (fix: a folder "
                "made by bench/blender_shots.py, or one of ../shared/data/pathtraced)"], {}
    try:
        meta = json.loads(meta_file.read_text())
        f0, f1 = int(meta["frame_start"]), int(meta["frame_end"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{meta_file}: cannot be read ({exc}) (fix: render the shot again with bench/blender_shots.py)"], {}
    problems = []
    if split_of(folder.name, meta) == "report":
        problems.append(f"{folder.name} is in the report split of the path-traced judge set; a model trained on it "
                        "could not be judged there (fix: train on tune shots or on bench/blender_shots.py "
                        "--split tune renders)")
    first = f0 if first is None else first
    last = f1 if last is None else last
    if first < f0 or last > f1:
        problems.append(f"frames {first}-{last} are outside the shot's {f0}-{f1} (fix: correct first/last or leave "
                        "them empty)")
    elif last - first + 1 < window:
        problems.append(f"{last - first + 1} frame(s) are fewer than one window of {window} (fix: a smaller "
                        "window setting)")
    else:
        missing = [str(frame_path(folder, e, f)) for e in ELEMENTS for f in range(first, last + 1)
                   if not frame_path(folder, e, f).is_file()]
        if missing:
            problems.append(f"{len(missing)} frame file(s) missing, first {missing[0]} (fix: render the shot "
                            "again with bench/blender_shots.py)")
    return problems, meta


def environment_depth(shot: Path, f: int) -> np.ndarray:
    """(H, W) the ENVIRONMENT's planar Z of frame ``f``, as a TD's CG set would give it. The folder's
    ``depth/`` is the depth of the ground-truth render, so it holds the actors and the prop where they
    stand (their ``masks/`` pixels, grown a pixel for the antialiased edge where nothing nearer is); those pixels take, row by
    row, what lies behind them: the Z between the nearest unmasked pixels to their left and right,
    interpolated when the two agree within 20% (ground, a wall), else the farther (a background seen
    past an edge). A row with nothing unmasked keeps its Z. What occludes the actors (a post of the set) is not in their masks and stays."""
    layers = exrio.read_layers(frame_path(shot, "depth", f))
    z = np.array(layers["Y"] if "Y" in layers else next(iter(layers.values())), np.float32)
    masks = read_png(frame_path(shot, "masks", f))
    covered = (masks[..., :2] > 0.5).any(-1) if masks.ndim == 3 else masks > 0.5
    if covered.any():  # grown by a pixel for the antialiased edge, but never onto the set in front
        covered |= _grow(covered) & (z >= 0.9 * float(z[covered].min()))
    out = z.copy()
    cols = np.arange(z.shape[1])
    for y in np.nonzero(covered.any(1))[0]:
        free = ~covered[y]
        if not free.any():
            continue
        xs = cols[free]
        left = np.searchsorted(xs, cols, side="right") - 1  # nearest free column at or left of each
        right = np.minimum(left + 1, len(xs) - 1)
        left = np.maximum(left, 0)
        zl, zr = z[y, xs[left]], z[y, xs[right]]
        zl = np.where(cols < xs[0], zr, zl)  # nothing free on one side: the other side's
        zr = np.where(cols > xs[-1], zl, zr)
        agree = np.abs(zl - zr) <= 0.2 * np.minimum(zl, zr)
        t = np.where(xs[right] > xs[left], (cols - xs[left]) / np.maximum(xs[right] - xs[left], 1), 0.0)
        fill = np.where(agree, zl + (zr - zl) * np.clip(t, 0, 1), np.maximum(zl, zr))
        out[y, ~free] = fill[~free]
    return out


def _grow(mask: np.ndarray) -> np.ndarray:
    g = mask.copy()
    g[1:] |= mask[:-1]
    g[:-1] |= mask[1:]
    g[:, 1:] |= mask[:, :-1]
    g[:, :-1] |= mask[:, 1:]
    return g

