"""The shot camera from the pictures, when the sheet leaves it empty (docs/depth.md, "Camera from the
pictures"). camera.py's conventions; every estimate says where it came from (``source``) and how far
to trust it (``confidence`` 0..1), and a missing cue falls back, never fails.

Cues, best first:
- ``plate_z``: the environment's own Z. On a ground plane seen by a pinhole, 1/Z is linear in the pixel
  coordinates: 1/Z = (sin r cos t * xn + cos r cos t * yn - sin t) / h (xn, yn = pixel offsets from the
  centre over the focal length in pixels). A robust plane fit of 1/Z gives the roll r exactly, and the
  tilt t and height h once the focal length is known.
- ``actors``: the actors' contacts and size (a standing person is ACTOR_HEIGHT_M tall). With the plate's
  Z the actor's image height at its contact gives the focal length; without it, actors seen at several
  distances give the horizon (hence the tilt, at the default focal length) and the camera height, from
  the contact row against the head row (roll taken as level).
- ``default``: camera.py's defaults (a level 35 mm camera at 1.6 m), confidence DEFAULT_CONFIDENCE.
"""

from __future__ import annotations

import math

import numpy as np

from ..camera import FAR, Camera
from .light import DEFAULT_CAMERA_CONFIDENCE as DEFAULT_CONFIDENCE  # the default camera: right only by luck

ACTOR_HEIGHT_M = 1.7  # a standing adult, crown to sole
ACTOR_HEIGHT_SPREAD = 0.08  # relative spread of adult heights (and of posture): the focal's error floor
MIN_GROUND_FRACTION = 0.05  # plate Z: at least this share of the frame must be ground ...
MIN_GROUND_SHARE = 0.3  # ... and at least this share of the pixels with a depth,
MAX_RELATIVE_RESIDUAL = 0.01  # ... fitting a plane in 1/Z to this (RMS over the mean 1/Z of its inliers)
MIN_ACTOR_FRAMES = 3  # frames with a whole actor (contact in frame, head below the top edge)
MIN_ACTOR_PX = 8  # an actor's image height below this says too little
MIN_DEPTH_RANGE = 1.3  # actors only: the nearest and farthest actor's image heights differ by this ratio
FOCAL_RANGE_MM = (8.0, 300.0)  # on the default 36 mm back; outside it an actor-size focal is refused


def _default(notes: list[str]) -> dict:
    return {"params": {}, "source": {k: "default" for k in ("tilt_deg", "roll_deg", "height_m", "focal_mm")},
            "confidence": DEFAULT_CONFIDENCE, "notes": notes + ["camera: the default one (level, 1.6 m, 35 mm): a guess"]}


RANSAC_TRIES = 300  # plane hypotheses from 3 random depth pixels
RANSAC_TOLERANCE = 0.02  # an inlier's 1/Z is within this fraction of the plane's


def fit_ground_inverse_depth(z: np.ndarray, tries: int = RANSAC_TRIES) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The ground in a depth map: the plane 1/Z = A (x - W/2) + B (y - H/2) + C (pixel centres at .5)
    that most pixels lie on (RANSAC, then least squares on its inliers), among the planes a ground can
    be (1/Z grows downwards, B > 0, and the horizon rolled at most 45 degrees, |A| <= B): a wall or
    the sky never wins. Returns ((A, B, C), inlier mask, RMS residual over mean 1/Z of the inliers);
    None when too few pixels carry depth or none lie on a ground plane."""
    z = np.asarray(z, np.float64)
    h, w = z.shape
    valid = np.isfinite(z) & (z > 0) & (z < FAR * 0.5)
    if valid.mean() < MIN_GROUND_FRACTION:
        return None
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    design = np.stack([xs + 0.5 - w / 2, ys + 0.5 - h / 2, np.ones_like(xs)], axis=-1)
    inv = np.where(valid, 1.0 / np.where(valid, z, 1.0), 0.0)
    rng = np.random.default_rng(0)  # the same fit every run
    idx = np.flatnonzero(valid)
    sample = idx if idx.size <= 4000 else rng.choice(idx, 4000, replace=False)
    d_s, i_s = design.reshape(-1, 3)[sample], inv.ravel()[sample]

    def inliers(coef, d, i):
        return np.abs(d @ coef - i) <= RANSAC_TOLERANCE * i

    def ground_like(coef):
        return coef[1] > 0 and abs(coef[0]) <= coef[1]

    best, best_n = None, 0
    for _ in range(tries):
        pick = rng.choice(len(sample), 3, replace=False)
        try:
            coef = np.linalg.solve(d_s[pick], i_s[pick])
        except np.linalg.LinAlgError:
            continue
        if not ground_like(coef):
            continue
        n = int(inliers(coef, d_s, i_s).sum())
        if n > best_n:
            best, best_n = coef, n
    if best is None:
        return None
    coef = best
    for _ in range(3):  # refine on the inliers of the whole frame
        keep = valid & inliers(coef, design, inv)
        if keep.mean() < MIN_GROUND_FRACTION:
            return None
        coef, *_ = np.linalg.lstsq(design[keep], inv[keep], rcond=None)
    keep = valid & inliers(coef, design, inv)
    if keep.mean() < MIN_GROUND_FRACTION or keep.sum() < MIN_GROUND_SHARE * valid.sum() or not ground_like(coef):
        return None
    res = design[keep] @ coef - inv[keep]
    return coef, keep, float(np.sqrt(np.mean(res ** 2)) / max(float(np.mean(inv[keep])), 1e-12))


def camera_from_plane(coef, focal_px: float, width: int, sensor_width_mm: float = 36.0) -> Camera:
    """The camera whose ground plane has the inverse-depth plane ``coef`` (A, B, C) at ``focal_px``."""
    a, b, c = coef[0] * focal_px, coef[1] * focal_px, coef[2]
    roll = math.degrees(math.atan2(a, b))
    tilt = math.degrees(math.atan2(-c, math.hypot(a, b)))
    height = 1.0 / math.sqrt(a * a + b * b + c * c)
    return Camera(focal_mm=focal_px * sensor_width_mm / width, sensor_width_mm=sensor_width_mm, height_m=height,
                  tilt_deg=tilt, roll_deg=roll)


def actor_spans(masks_per_frame, key: str = "character") -> list[tuple[float, float, float]]:
    """Per frame with a whole actor: (contact x, contact y, head y) in pixels (the mask's lowest solid
    row's bottom edge, its top row's top edge). Frames whose actor touches the top or bottom edge of
    the frame, or is smaller than MIN_ACTOR_PX, are left out."""
    from .depth import SOLID, contact_pixel

    spans = []
    for masks in masks_per_frame:
        m = np.asarray(masks[key])
        px = contact_pixel(m)
        if px is None:
            continue
        rows = np.flatnonzero((m > SOLID).any(axis=1))
        if rows[0] <= 0 or px[1] - rows[0] < MIN_ACTOR_PX:
            continue
        spans.append((px[0], px[1], float(rows[0])))
    return spans


def _actor_height_px(camera: Camera, contact_xy, width: int, height: int) -> float | None:
    """Image height (pixels) of a standing ACTOR_HEIGHT_M person whose contact is at pixel ``contact_xy``."""
    ray = camera.unproject(contact_xy[0], contact_xy[1], 1.0, width, height) - camera.position
    if ray[1] >= -1e-6:
        return None
    foot = camera.position + ray * (camera.height_m / -ray[1])
    _, y, z = camera.project(np.stack([foot, foot + [0.0, ACTOR_HEIGHT_M, 0.0]]), width, height)
    return float(y[0] - y[1]) if min(z) > 0 else None


def focal_from_actors(coef, spans, width: int, height: int, sensor_width_mm: float = 36.0) -> tuple[float, float] | None:
    """(focal_px, spread) at which a standing ACTOR_HEIGHT_M person at each span's contact has the
    span's image height (median over the spans; spread = relative MAD); None without spans."""
    if len(spans) < MIN_ACTOR_FRAMES:
        return None
    lo, hi = (m / sensor_width_mm * width for m in FOCAL_RANGE_MM)
    grid = np.geomspace(lo, hi, 160)
    found = []
    for cx, cy, top in spans:
        seen = cy - top
        errs = []
        for f in grid:
            cam = camera_from_plane(coef, f, width, sensor_width_mm)
            hp = _actor_height_px(cam, (cx, cy), width, height)
            errs.append(np.inf if hp is None else abs(math.log(max(hp, 1e-6) / seen)))
        i = int(np.argmin(errs))
        if np.isfinite(errs[i]) and 0 < i < len(grid) - 1:
            found.append(grid[i])
    if len(found) < MIN_ACTOR_FRAMES:
        return None
    f = float(np.median(found))
    return f, float(np.median(np.abs(np.asarray(found) / f - 1.0)))


def camera_from_actors(spans, width: int, height: int, sensor_width_mm: float = 36.0,
                       focal_mm: float | None = None) -> tuple[Camera, float] | None:
    """(camera, confidence) from actors at several distances on a level-rolled camera: for a standing
    person, contact row - horizon row = (h / ACTOR_HEIGHT_M) * (contact row - head row), so a line
    through (image height, contact row) over the frames gives the horizon row (intercept) and the
    camera height (slope). None when the actors' image heights vary too little to separate them."""
    if len(spans) < MIN_ACTOR_FRAMES:
        return None
    size = np.array([cy - top for _, cy, top in spans])
    feet = np.array([cy for _, cy, _ in spans])
    if size.max() / max(size.min(), 1e-6) < MIN_DEPTH_RANGE:
        return None
    slope, horizon = np.polyfit(size, feet, 1)
    if slope <= 0:
        return None
    resid = feet - (slope * size + horizon)
    focal_mm = Camera().focal_mm if focal_mm is None else focal_mm
    cam = Camera(focal_mm=focal_mm, sensor_width_mm=sensor_width_mm)
    tilt = math.degrees(math.atan((horizon - height / 2) / cam.focal_px(width)))
    hgt = slope * ACTOR_HEIGHT_M
    if not (-89 < tilt < 89 and 0.05 <= hgt <= 1000):
        return None
    # trust grows with the range of sizes seen and falls with the scatter about the line
    spread = float(np.sqrt(np.mean(resid ** 2))) / max(float(np.ptp(feet)), 1.0)
    conf = float(np.clip(0.6 * (1.0 - 4.0 * spread) * min((size.max() / size.min() - 1.0) / 1.0, 1.0), 0.0, 0.6))
    return Camera(focal_mm=focal_mm, sensor_width_mm=sensor_width_mm, height_m=float(hgt), tilt_deg=float(tilt)), conf


def estimate_camera(sheet_camera: dict | None, width: int, height: int, env_z: np.ndarray | None = None,
                    masks_per_frame=None) -> dict:
    """The shot camera: the sheet's where it gives one (source ``sheet``, confidence 1), else estimated
    from the environment's Z (``env_z``, (H, W) camera-space depth or None) and the tri-masks
    (``masks_per_frame``: {"character": (H, W)} per frame or None). Returns a JSON-able dict:
    ``params`` (camera.py's CAMERA_SPEC keys; ``Camera.from_params`` fills the rest), ``source`` per
    parameter, ``confidence`` and ``notes``."""
    if sheet_camera:
        return {"params": dict(sheet_camera), "source": {k: "sheet" for k in sheet_camera}, "confidence": 1.0,
                "notes": ["camera: the sheet's"]}
    notes: list[str] = []
    spans = actor_spans(masks_per_frame) if masks_per_frame is not None else []
    sensor = Camera().sensor_width_mm
    fit = None
    if env_z is not None:
        fit = fit_ground_inverse_depth(env_z)
        if fit is None:
            notes.append("camera: the environment's Z shows no ground plane (too few pixels on one)")
        elif fit[2] > MAX_RELATIVE_RESIDUAL:
            notes.append(f"camera: the environment's Z is no plane (residual {fit[2]:.3f}); not used")
            fit = None
    else:
        notes.append("camera: no environment Z (depth backend plate gives it)")
    if fit is not None:
        coef, keep, rms = fit
        focal = focal_from_actors(coef, spans, width, height, sensor)
        if focal is not None:
            f_px, spread = focal
            f_source = "actors"
            conf = float(np.clip(0.9 - 2.0 * max(spread - ACTOR_HEIGHT_SPREAD / 2, 0.0), 0.5, 0.9))
            notes.append(f"camera: focal length from {len(spans)} frame(s) of an actor {ACTOR_HEIGHT_M} m tall "
                         f"(spread {spread:.0%})")
        else:
            f_px, f_source, conf = Camera().focal_px(width), "default", 0.6
            notes.append("camera: no whole actor in enough frames to measure the focal length; the default one")
        cam = camera_from_plane(coef, f_px, width, sensor)
        conf *= float(np.clip(1.0 - rms / MAX_RELATIVE_RESIDUAL * 0.5, 0.5, 1.0))
        notes.append(f"camera: ground plane fitted to the environment's Z over {keep.mean():.0%} of the frame "
                     f"(residual {rms:.4f}): roll {cam.roll_deg:.1f}, tilt {cam.tilt_deg:.1f}, height {cam.height_m:.2f} m")
        if not (-89 < cam.tilt_deg < 89 and -45 <= cam.roll_deg <= 45 and 0.05 <= cam.height_m <= 1000
                and 1.0 <= cam.focal_mm <= 2000):
            return _default(notes + ["camera: the fitted plane gives a camera out of range; not used"])
        params = {"focal_mm": cam.focal_mm, "sensor_width_mm": sensor, "height_m": cam.height_m,
                  "tilt_deg": cam.tilt_deg, "roll_deg": cam.roll_deg}
        source = {"tilt_deg": "plate_z", "roll_deg": "plate_z", "height_m": "plate_z", "focal_mm": f_source}
        return {"params": _rounded(params), "source": source, "confidence": round(conf, 3), "notes": notes}
    from_actors = camera_from_actors(spans, width, height, sensor)
    if from_actors is None:
        return _default(notes + [f"camera: the actors ({len(spans)} whole frame(s)) are not seen at distances "
                                 "different enough to find the horizon"])
    cam, conf = from_actors
    notes.append(f"camera: horizon and height from the actors' contacts and size over {len(spans)} frame(s) "
                 f"(a person {ACTOR_HEIGHT_M} m tall; roll and focal length not measured)")
    params = {"focal_mm": cam.focal_mm, "sensor_width_mm": sensor, "height_m": cam.height_m,
              "tilt_deg": cam.tilt_deg, "roll_deg": 0.0}
    source = {"tilt_deg": "actors", "roll_deg": "default", "height_m": "actors", "focal_mm": "default"}
    return {"params": _rounded(params), "source": source, "confidence": round(conf, 3), "notes": notes}


def _rounded(params: dict) -> dict:
    return {k: round(float(v), 4) for k, v in params.items()}
