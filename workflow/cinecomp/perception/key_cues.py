"""Cues for the key light's direction from the pictures, when the sheet, a probe or an HDRI gives none
(docs/light.md): ``shading_cue``, the shading of the environment's own geometry, which the light stage
uses; ``ground_shadow_cue`` and ``sky_side_cue``, measured by bench/key_from_pictures.py and not used.

The shading cue: where the environment plate comes with a Z (a CG set, a scanned set, a depth model),
its faces have normals. Two faces that meet in a crease (the depth continuous across it) are most
likely the same object and paint, so their brightness ratio is a ratio of irradiances, which depends on
the light and not on the albedo: (q + max(n1 . l, 0)) / (q + max(n2 . l, 0)), with q the fill over the
key. A grid search over the key's azimuth, elevation and q fits every crease's log ratio (an L1 cost
clipped at 1 log unit, so a cast shadow or a paint change on one face is an outlier, not a pull); the
azimuth is the circular mean of the azimuths weighted by how well each fits, and the cue's strength the
length of that mean times the support (creases found); perception.light turns it into the direction's
confidence. Measured against the renders' sun on generated shots with buildings, occluders or set
pieces: median 15-19 degrees off where creases are found, 36 of 56 within 30 degrees. A ground plane
alone (an HDRI projected onto the ground, a depth backend that knows only the ground) has no crease,
and the cue says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..camera import Camera
from ..colour import luminance

WORK_WIDTH = 480  # the frame and its Z are read at most this wide (every n-th pixel)
MAX_DEPTH = 1e4  # metres; farther is sky
VERTICAL_MAX_NY = 0.25  # a face is vertical when its normal's up component is below this
HIST_BIN_DEG = 3.0  # faces are grouped around the peaks of the normals' azimuth histogram ...
HIST_BINS = int(360 / HIST_BIN_DEG)
FACET_SPREAD_DEG = 10.0  # ... taking the pixels within this many degrees of a peak ...
FACET_MIN_PIXELS = 12  # ... into connected regions of at least this many pixels (at WORK_WIDTH)
SMOOTH_STEP = 0.03  # a normal is read where the neighbours' depths differ by less than this share ...
DEPTH_STEP = 0.015  # ... and two faces meet where every step between them is below this share
CREASE_REACH = 4  # two faces meet when their pixels lie within this many pixels, the depth continuous
CREASE_MIN_CONTACTS = 3
CREASE_MIN_ANGLE_DEG = 30.0
OUTLIER_LOG = 1.0  # a crease's misfit counts at most this much (a cast shadow, a paint change)
POSTERIOR_SCALE = 0.05  # cost difference over which an azimuth's weight falls by e
FULL_SUPPORT_CREASES = 4  # creases for full strength
AZIMUTHS = np.arange(0.0, 360.0, 3.0)
ELEVATIONS = np.arange(5.0, 86.0, 5.0)
FILL_OVER_KEY = np.array([0.03, 0.07, 0.15, 0.3, 0.6, 1.2])


@dataclass
class ShadingCue:
    azimuth_deg: float | None  # towards the key (camera.py's convention); None: no crease found
    elevation_deg: float | None
    strength: float  # 0 (nothing found, or every azimuth fits alike) .. 1 (one clear azimuth, enough creases)
    creases: int
    note: str


def _world_normals(z: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) world normals facing the camera, and where they are valid (the depth finite and
    continuous around the pixel)."""
    h, w = z.shape
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    zz = np.where(np.isfinite(z) & (z > 0) & (z < MAX_DEPTH), z, np.nan)
    p = camera.unproject(xs, ys, np.nan_to_num(zz, nan=1.0), w, h)
    dx, dy = np.zeros_like(p), np.zeros_like(p)
    dx[:, 1:-1] = p[:, 2:] - p[:, :-2]
    dy[1:-1] = p[2:] - p[:-2]
    n = np.cross(dy, dx)
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    n *= np.where((n * (camera.position - p)).sum(-1, keepdims=True) < 0, -1.0, 1.0)
    ok = np.isfinite(zz)
    with np.errstate(invalid="ignore"):
        for shift in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            zn = np.roll(zz, shift, axis=(0, 1))
            ok &= np.isfinite(zn) & (np.abs(zn - zz) < SMOOTH_STEP * zz + 0.02)
    ok[[0, -1]] = False
    ok[:, [0, -1]] = False
    return n, ok


def _facets(n: np.ndarray, ok: np.ndarray, log_lum: np.ndarray) -> tuple[list[tuple], np.ndarray]:
    """Vertical faces: connected regions of pixels whose normal azimuth lies within FACET_SPREAD_DEG of
    one of the peaks of their histogram (peaks, not fixed bins, so no face is cut along a bin edge).
    ([(normal, median log luminance, pixels)], (H, W) labels, 0 none, i for facets[i - 1])."""
    vertical = ok & (np.abs(n[..., 1]) < VERTICAL_MAX_NY)
    az = np.degrees(np.arctan2(n[..., 0], n[..., 2])) % 360.0
    hist = np.bincount((az[vertical] / HIST_BIN_DEG).astype(int) % HIST_BINS, minlength=HIST_BINS).astype(np.float64)
    smooth = sum(np.roll(hist, k) for k in (-1, 0, 1))
    peaks = [i for i in range(HIST_BINS) if smooth[i] >= FACET_MIN_PIXELS
             and smooth[i] >= smooth[i - 1] and smooth[i] > smooth[(i + 1) % HIST_BINS]]
    labels = np.zeros(n.shape[:2], np.int32)
    found = []
    if not peaks:
        return found, labels
    centres = (np.array(peaks) + 0.5) * HIST_BIN_DEG
    off = np.abs((az[..., None] - centres + 180.0) % 360.0 - 180.0)
    nearest, gap = off.argmin(-1), off.min(-1)
    kernel = np.ones((3, 3), np.uint8)
    for k in range(len(peaks)):
        m = vertical & (nearest == k) & (gap < FACET_SPREAD_DEG)
        count, lab = cv2.connectedComponents(m.astype(np.uint8), connectivity=4)
        for i in range(1, count):
            region = lab == i
            size = int(region.sum())
            if size < FACET_MIN_PIXELS:
                continue
            core = cv2.erode(region.astype(np.uint8), kernel) > 0  # away from its edges
            core = core if core.sum() >= FACET_MIN_PIXELS // 2 else region
            normal = n[core].mean(0)
            found.append((normal / np.linalg.norm(normal), float(np.median(log_lum[core])), size))
            labels[region] = len(found)
    return found, labels


def _creases(labels: np.ndarray, z: np.ndarray) -> dict[tuple[int, int], int]:
    """Pairs of facet labels whose pixels lie within CREASE_REACH pixels along a row or a column with the
    depth continuous between them: {(a, b): contacts}."""
    zz = np.where(np.isfinite(z) & (z < MAX_DEPTH), z, np.nan)
    contacts: dict[tuple[int, int], int] = {}
    with np.errstate(invalid="ignore"):
        for lab, depth in ((labels, zz), (labels.T, zz.T)):
            step_ok = np.abs(np.diff(depth, axis=1)) < DEPTH_STEP * depth[:, :-1]
            run = step_ok
            for k in range(1, CREASE_REACH + 1):
                if k > 1:
                    run = run[:, :-1] & step_ok[:, k - 1:]
                a, b = lab[:, :-k], lab[:, k:]
                m = (a > 0) & (b > 0) & (a != b) & run
                if not m.any():
                    continue
                lo, hi = np.minimum(a[m], b[m]), np.maximum(a[m], b[m])
                pairs, counts = np.unique(lo.astype(np.int64) * 1_000_003 + hi, return_counts=True)
                for code, c in zip(pairs.tolist(), counts.tolist()):
                    key = (code // 1_000_003, code % 1_000_003)
                    contacts[key] = contacts.get(key, 0) + c
    return contacts


def shading_cue(frame, env_z, camera: Camera) -> ShadingCue:
    """The key's direction from the brightness ratios across the creases of the environment's geometry.
    ``frame`` (H, W, 3+) scene-linear, ``env_z`` (H, W) camera-space depth of the same view, ``camera``
    the shot's (given or estimated)."""
    if env_z is None:
        return ShadingCue(None, None, 0.0, 0, "environment shading: no depth")
    rgb = np.asarray(frame, np.float32)[..., :3]
    z = np.asarray(env_z, np.float64)
    if z.shape != rgb.shape[:2]:
        return ShadingCue(None, None, 0.0, 0, f"environment shading: depth {z.shape} and frame {rgb.shape[:2]} differ")
    step = max(1, int(math.ceil(rgb.shape[1] / WORK_WIDTH)))
    if step > 1:  # every step-th pixel, the camera's pixel grid scaled with it
        rgb = cv2.resize(rgb, (rgb.shape[1] // step, rgb.shape[0] // step), interpolation=cv2.INTER_AREA)
        z = z[step // 2::step, step // 2::step][: rgb.shape[0], : rgb.shape[1]]
    log_lum = np.log(np.maximum(luminance(rgb), 1e-5))
    n, ok = _world_normals(z, camera)
    facets, labels = _facets(n, ok, log_lum)
    obs = []
    for (a, b), contacts in _creases(labels, z).items():
        (na, la, pa), (nb, lb, pb) = facets[a - 1], facets[b - 1]
        if contacts >= CREASE_MIN_CONTACTS and float(na @ nb) < math.cos(math.radians(CREASE_MIN_ANGLE_DEG)):
            obs.append((na, nb, la - lb, min(pa, pb)))
    if not obs:
        return ShadingCue(None, None, 0.0, 0, f"environment shading: no crease between faces ({len(facets)} vertical faces)")
    n1 = np.array([o[0] for o in obs])
    n2 = np.array([o[1] for o in obs])
    d = np.array([o[2] for o in obs])
    w = np.sqrt(np.array([o[3] for o in obs], np.float64))
    az, el = np.meshgrid(np.radians(AZIMUTHS), np.radians(ELEVATIONS), indexing="ij")
    toward = np.stack([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)], -1)
    c1, c2 = np.maximum(toward @ n1.T, 0.0), np.maximum(toward @ n2.T, 0.0)
    cost = np.stack([(w * np.minimum(np.abs(np.log((q + c1) / (q + c2)) - d), OUTLIER_LOG)).sum(-1) / w.sum()
                     for q in FILL_OVER_KEY], -1)
    per_az = cost.min(axis=(1, 2))
    weight = np.exp(-(per_az - per_az.min()) / POSTERIOR_SCALE)
    mean = (weight * np.exp(1j * np.radians(AZIMUTHS))).sum() / weight.sum()
    azimuth = float(np.degrees(np.angle(mean)) % 360.0)
    nearest = int(np.argmin(np.abs((AZIMUTHS - azimuth + 180.0) % 360.0 - 180.0)))
    elevation = float(ELEVATIONS[np.unravel_index(np.argmin(cost[nearest]), cost[nearest].shape)[0]])
    support = min(len(obs) / FULL_SUPPORT_CREASES, 1.0)
    strength = float(abs(mean) * support)
    return ShadingCue(azimuth, elevation, strength, len(obs),
                      f"environment shading: key at azimuth {azimuth:.0f}, elevation {elevation:.0f} from {len(obs)} "
                      f"crease(s) of {len(facets)} vertical faces (agreement {abs(mean):.2f}, strength {strength:.2f})")


# ------------------------------------------------------------------------------------------------
# the key from shadows already cast on the environment plate's ground: seen from above, the ground's
# shadow edges run along the key's azimuth (a vertical object's shadow points away from the key), and
# lit over shadowed ground is 1 + key_to_fill. Texture edges (planks, tiles, kerbs) look the same, so
# this is a measured cue only (bench/key_from_pictures.py), not used by estimate_light.
# ------------------------------------------------------------------------------------------------

GROUND_CELL_M = 0.05  # top-down resampling of the ground (metres a cell)
GROUND_EXTENT_M = (6.0, 1.0, 15.0)  # |x| <= 6 m, 1 m <= forward <= 15 m


@dataclass
class GroundShadowCue:
    axis_deg: float | None  # azimuth of the shadow edges' axis, in [0, 180) (towards or away from the key)
    coherence: float  # 0 (no preferred direction) .. 1 (all edges parallel)
    key_to_fill: float | None  # lit (90th percentile) over shadowed (10th) ground luminance, minus 1
    cells: int  # ground cells seen
    note: str


def ground_shadow_cue(frame, env_z, camera: Camera) -> GroundShadowCue:
    """The shadow cue of one environment-plate ``frame`` (H, W, 3) whose ground has camera-space depth
    ``env_z`` (H, W; the ground plane of ``camera`` where None): the ground resampled top-down, the
    dominant orientation of its log-luminance edges (structure tensor) and its luminance spread."""
    rgb = np.asarray(frame, np.float32)[..., :3]
    h, w = rgb.shape[:2]
    z = camera.ground_depth(w, h) if env_z is None else np.asarray(env_z, np.float32)
    half, near, far = GROUND_EXTENT_M
    gx, gz = np.meshgrid(np.arange(-half, half, GROUND_CELL_M), np.arange(near, far, GROUND_CELL_M))
    pts = np.stack([gx, np.zeros_like(gx), gz], axis=-1)
    px, py, depth = camera.project(pts, w, h)
    inside = (depth > 0) & (px >= 0) & (px < w - 1) & (py >= 0) & (py < h - 1)
    # a cell counts where the picture's depth there is the ground's (not a wall or object in front)
    zi = np.where(inside, z[np.clip(py, 0, h - 1).astype(int), np.clip(px, 0, w - 1).astype(int)], 0.0)
    seen = inside & (np.abs(zi - depth) <= 0.05 * depth)
    cells = int(seen.sum())
    if cells < 400:
        return GroundShadowCue(None, 0.0, None, cells, f"ground shadows: only {cells} ground cells seen")
    lum = np.log(np.maximum(luminance(rgb), 1e-4)).astype(np.float32)
    top = cv2.remap(lum, px.astype(np.float32), py.astype(np.float32), cv2.INTER_LINEAR)
    top = cv2.GaussianBlur(np.where(seen, top, float(np.median(top[seen]))).astype(np.float32), (0, 0), 2.0)
    dx, dz = cv2.Sobel(top, cv2.CV_32F, 1, 0), cv2.Sobel(top, cv2.CV_32F, 0, 1)
    inner = cv2.erode(seen.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    jxx, jzz, jxz = (float((a * b)[inner].sum()) for a, b in ((dx, dx), (dz, dz), (dx, dz)))
    vals, vecs = np.linalg.eigh(np.array([[jxx, jxz], [jxz, jzz]]))
    coherence = float((vals[1] - vals[0]) / max(vals[1] + vals[0], 1e-12))
    edge = vecs[:, 0]  # least change: along the edges
    axis = float(np.degrees(np.arctan2(edge[0], edge[1])) % 180.0)
    y = np.exp(top[inner])
    lo, hi = np.percentile(y, [10, 90])
    k2f = float(hi / max(lo, 1e-6) - 1.0)
    return GroundShadowCue(axis, coherence, k2f, cells,
                           f"ground shadows: edges along azimuth {axis:.0f} (or {axis + 180:.0f}), coherence {coherence:.2f}, "
                           f"lit/shadowed ground {k2f + 1:.2f} over {cells} cells")


# the sky's brightness across the frame: a clear sky is brighter towards the sun (circumsolar glow),
# so its log luminance rises across the view towards the sun's side. Across a view centred on azimuth
# 0, log L ~ a + kappa cos(azimuth - sun) has the slope kappa sin(sun): the sign says left or right of
# the camera's axis, nothing about ahead or behind. A measured cue only (bench/key_from_pictures.py):
# on the 8 path-traced and 14 generated shots it named the key's side on 9 of 22 (no better than a
# coin: what is far and above the horizon there is often a wall of the panorama, and a lit wall or a
# window outshines the sky's glow), so estimate_light does not use it.

SKY_MIN_FRACTION = 0.02  # sky pixels (far and above the horizon) needed, of the frame
SKY_MIN_SPAN_DEG = 10.0  # ... spanning at least this many degrees of azimuth
SKY_FULL_SLOPE = 1.0  # log-luminance slope (per radian of azimuth) at which the side counts as certain


@dataclass
class SkySideCue:
    slope: float | None  # d log L / d azimuth (per radian) of the seen sky; > 0: brighter to camera right
    confidence: float  # 0 (no sky, or flat) .. 1
    pixels: int
    note: str


def sky_side_cue(frame, env_z, camera: Camera) -> SkySideCue:
    """Which side of the camera the key is on, from the slope of the seen sky's log luminance across
    the view (least squares on azimuth and elevation). ``env_z`` (H, W): the environment's depth, the
    sky where it is far (None: above the camera's horizon). Confidence: the slope over SKY_FULL_SLOPE
    times its t-statistic's weight (a slope lost in the noise counts 0)."""
    rgb = np.asarray(frame, np.float32)[..., :3]
    h, w = rgb.shape[:2]
    rays = camera.rays(w, h)
    sky = rays[..., 1] > 0.02
    if env_z is not None:
        z = np.asarray(env_z, np.float32)
        sky &= ~np.isfinite(z) | (z > 1e3)
    n = int(sky.sum())
    if n < max(SKY_MIN_FRACTION * h * w, 16):
        return SkySideCue(None, 0.0, n, f"sky side: only {n} sky pixels seen")
    az = np.arctan2(rays[..., 0], rays[..., 2])[sky]
    el = np.arcsin(np.clip(rays[..., 1], -1, 1))[sky]
    if np.degrees(az.max() - az.min()) < SKY_MIN_SPAN_DEG:
        return SkySideCue(None, 0.0, n, "sky side: the seen sky spans too few degrees of azimuth")
    y = np.log(np.maximum(luminance(rgb[sky]), 1e-4))
    a = np.c_[np.ones(n), az, el]
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    resid = y - a @ coef
    cov = np.linalg.pinv(a.T @ a) * float(resid @ resid) / max(n - 3, 1)
    t = abs(coef[1]) / max(float(np.sqrt(cov[1, 1])), 1e-12)
    conf = float(min(abs(coef[1]) / SKY_FULL_SLOPE, 1.0) * np.clip((t - 2.0) / 8.0, 0.0, 1.0))
    side = "right" if coef[1] > 0 else "left"
    return SkySideCue(float(coef[1]), conf, n, f"sky side: brighter to camera {side} (slope {coef[1]:.2f}/rad, "
                                               f"t {t:.1f}, {n} pixels; confidence {conf:.2f})")
