"""The shot's light: one estimate per shot, from the sheet, a light probe, an HDRI environment or the
environment plate (docs/light.md). Directions follow camera.py's conventions.

``estimate_light`` gives a key light (direction, colour, intensity, softness) and the ambient light of
everything else as order-2 spherical harmonics of irradiance; ``irradiance`` shades world normals with
both. Units: images are scene-linear ACEScg and every irradiance is physical (radiance integrated over
solid angle): a uniform environment of radiance L gives E = pi * L on any surface, and a Lambertian
surface of albedo rho under irradiance E has radiance rho * E / pi.

Equirectangular images (HDRI environments, light probes): row 0 is straight up; the centre of column u
has azimuth ((u + 0.5) / W - 0.5) * 360 + rotation (0 = camera forward, increasing to camera right),
the centre of row v elevation 90 - (v + 0.5) / H * 180.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..camera import Camera, azimuth_elevation, light_direction
from ..colour import luminance
from ..params import Num, Rgb, check_params, parse_json_object

LIGHT_SPEC = {
    "azimuth_deg": Num(None, -360.0, 360.0, doc="towards the key: 0 ahead of the camera (backlight), 90 camera right, 180 behind the camera"),
    "elevation_deg": Num(None, 1.0, 90.0, doc="key height above the horizon"),
    "colour": Rgb(None, 0.0, 1e6, doc="key colour, scene-linear ACEScg (normalised to luminance 1)"),
    "intensity": Num(None, 0.0, 1e4, doc="key irradiance on a surface facing it, in the environment's scene-linear units (empty: estimated; grey world puts about 3 on an upward surface)"),
    "softness_deg": Num(None, 0.0, 45.0, doc="angular radius of the key (penumbra): 0.27 the sun, 5-20 a window or softbox"),
    "key_to_fill": Num(None, 0.0, 1000.0, doc="key over ambient irradiance on an upward-facing surface (a shadow on the ground keeps 1/(1+ratio) of the light); 0 = no key (overcast)"),
}
LIGHT_EXAMPLE = '{"azimuth_deg": 300, "elevation_deg": 35}'


def parse_light(text: str) -> dict | None:
    """The sheet's ``light`` cell checked. None: estimate it (empty or "auto")."""
    if not text or not text.strip() or text.strip().strip('"').lower() == "auto":
        return None
    obj = parse_json_object(text, example=LIGHT_EXAMPLE)
    given = check_params(obj, LIGHT_SPEC, what="light")
    if (given["azimuth_deg"] is None) != (given["elevation_deg"] is None):
        raise ValueError(f"light {text!r} gives only one of azimuth_deg and elevation_deg (fix: give both, e.g. {LIGHT_EXAMPLE})")
    return {k: v for k, v in given.items() if v is not None}


# ------------------------------------------------------------------------------------------------
# constants (the documented defaults and thresholds)
# ------------------------------------------------------------------------------------------------

UP = np.array([0.0, 1.0, 0.0])
ANALYSIS_SIZE = (128, 256)  # (H, W) of equirect analysis, ~1.4 degrees a pixel
FRAME_WIDTH = 128  # environment-plate frames are analysed at this width
ALBEDO = 0.18  # grey world: the mean reflectance of a scene (a grey card)
DEFAULT_AZIMUTH, DEFAULT_ELEVATION = 150.0, 45.0  # behind-right of the camera: a common exterior setup
DEFAULT_KEY_TO_FILL = 3.0  # a sunny exterior, when nothing measures the ratio
DEFAULT_SOFTNESS_DEG = 1.0  # a sun through some haze
DEFAULT_UP_IRRADIANCE = np.pi  # nothing known: an 18% grey card facing up reads 0.18
DEFAULT_CONFIDENCE = 0.2
DEFAULT_CAMERA_CONFIDENCE = 0.3  # the default camera (1.6 m, level): right only by luck
# key/fill split measured on an HDRI or probe (the key and its surroundings are seen whole)
FILL_CONFIDENCE = {"light_probe": 0.9, "environment_hdri": 0.8}
MIN_SOFTNESS_DEG = 0.25  # below the analysis resolution: about the sun's radius
MIN_SPLIT_ELEVATION = 5.0  # degrees; a grazing key would need an unbounded intensity to light the ground
KEY_PERCENTILE = 99.5  # bright regions: luminance above this percentile ...
KEY_MIN_CONTRAST = 2.0  # ... and above this many times the median luminance
KEY_MAX_BLOBS = 16  # bright regions analysed (those with the most power in their bright pixels)
KEY_MIN_PEAK_CONTRAST = 8.0  # a light source's peak is this many times brighter than its surroundings
KEY_FULL_CONTRAST = 100.0  # contrast at which a source is certainly one (a clear sun: thousands)
KEY_CORE_FRACTION = 0.05  # a source: the pixels of a bright region above this fraction of its peak excess
# a light source visible in the plate (could be a lamp or a reflection, or the glow of a sky whose sun is
# out of frame), scaled like a probe's by its contrast (1 at KEY_FULL_CONTRAST): a display-referred
# plate clips a sun, so a source that stands out only 10-20x is more likely a glow or a practical
# (path-traced shots and bench/blender_shots.py renders: 3 found in 22 shots, all 64-99 degrees off)
FRAME_KEY_CONFIDENCE = 0.6
FRAME_KEY_MAX_AREA = 0.02  # ... covering at most this fraction of the frame
# the key's direction from the shading of the environment's geometry (perception.key_cues): from the
# default's confidence at strength 0 to this at strength 1 (generated sky shots with buildings: median
# 15-19 degrees off where creases are found, bench/key_from_pictures.py, but 58 off at strength 0.92 on
# one; on the tune half of those shots 0.6 and 0.8 gained more on average and put one shot below
# `over`, 0.45 none)
SHADING_KEY_CONFIDENCE = 0.45

PROBE_MAX = 1e10  # brighter than the sun in absolute units (~1.6e9 cd/m2): a corrupt probe, or wrong units
PROBE_MIN_PEAK = 1e-6  # a panorama whose brightest pixel's luminance is below this shows no light

_log = logging.getLogger(__name__)

# cosine-lobe convolution of the SH bands 0, 1, 2 (Ramamoorthi & Hanrahan 2001)
SH_COSINE = np.array([np.pi] + [2.0 * np.pi / 3.0] * 3 + [np.pi / 4.0] * 5)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def probe_problem(img) -> tuple[str, str] | None:
    """(problem, fix) when a light probe's pixels cannot light a shot: NaN/Inf values, values beyond
    PROBE_MAX, or no light at all (an all-black probe would light the character with nothing); None
    when it can."""
    rgb = np.asarray(img)[..., :3]
    bad = int((~np.isfinite(rgb)).any(axis=-1).sum())
    if bad:
        return f"has {bad} pixel(s) that are NaN or Inf", "repair the probe or re-export it"
    peak = float(np.abs(rgb).max()) if rgb.size else 0.0
    if peak > PROBE_MAX:
        return (f"has values up to {peak:.3g}, beyond {PROBE_MAX:.0e} (corrupt, or not scene-linear)",
                "re-export it in scene-linear units (a sunlit sky near 1)")
    if not rgb.size or float(luminance(np.maximum(rgb, 0.0)).max()) <= PROBE_MIN_PEAK:
        return ("shows no light (every pixel black)",
                "give a probe that shows the set's light, or clear light_probe to estimate the light from the environment")
    return None


# ------------------------------------------------------------------------------------------------
# spherical harmonics
# ------------------------------------------------------------------------------------------------


def sh_basis(directions) -> np.ndarray:
    """(..., 9) real SH basis Y_00, Y_1-1, Y_10, Y_11, Y_2-2 .. Y_22 of world unit directions (..., 3),
    with the world axes taken as (x, y, z); float32 in, float32 out (else float64)."""
    d = np.asarray(directions)
    d = d if d.dtype == np.float32 else d.astype(np.float64)
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    return np.stack([np.full_like(x, 0.282095), 0.488603 * y, 0.488603 * z, 0.488603 * x,
                     1.092548 * x * y, 1.092548 * y * z, 0.315392 * (3.0 * z * z - 1.0),
                     1.092548 * x * z, 0.546274 * (x * x - y * y)], axis=-1)


def sh_irradiance(directions, radiance, solid_angles) -> np.ndarray:
    """(9, 3) irradiance SH of radiance samples (..., 3) at directions (..., 3) with solid angles (...)."""
    weighted = np.asarray(radiance, np.float64).reshape(-1, 3) * np.asarray(solid_angles, np.float64).reshape(-1, 1)
    return (sh_basis(directions).reshape(-1, 9).T @ weighted) * SH_COSINE[:, None]


def sh_eval(coeffs, normals) -> np.ndarray:
    """(..., 3) irradiance of SH coefficients (9, 3) at world unit normals (..., 3), unclamped."""
    basis = sh_basis(normals)
    return basis @ np.asarray(coeffs, basis.dtype)


def sh_irradiance_from_equirect(img, rotation_deg: float = 0.0) -> np.ndarray:
    """(9, 3) irradiance SH of an equirect radiance image (H, W, 3+) (module doc), analysed at
    ANALYSIS_SIZE at most."""
    rgb = _prepare(img, _fit(np.shape(img)[:2], ANALYSIS_SIZE))
    h, w = rgb.shape[:2]
    return sh_irradiance(equirect_directions(h, w, rotation_deg), rgb, equirect_solid_angles(h, w))


# ------------------------------------------------------------------------------------------------
# equirectangular geometry and image preparation
# ------------------------------------------------------------------------------------------------


def equirect_directions(h: int, w: int, rotation_deg: float = 0.0) -> np.ndarray:
    """(H, W, 3) world unit directions of the pixel centres of an equirect image (module doc)."""
    az = np.radians(((np.arange(w) + 0.5) / w - 0.5) * 360.0 + rotation_deg)[None, :]
    el = np.radians(90.0 - (np.arange(h) + 0.5) / h * 180.0)[:, None]
    return np.stack(np.broadcast_arrays(np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)), axis=-1)


def equirect_solid_angles(h: int, w: int) -> np.ndarray:
    """(H, W) solid angle of each pixel of an equirect image (they sum to 4 pi)."""
    top = np.sin(np.radians(90.0 - np.arange(h) / h * 180.0))
    bottom = np.sin(np.radians(90.0 - (np.arange(h) + 1) / h * 180.0))
    return np.repeat(((top - bottom) * 2.0 * np.pi / w)[:, None], w, axis=1)


def _fit(shape, size) -> tuple[int, int]:
    """(H, W) of an image of ``shape`` scaled down (never up) to fit ``size`` (H, W)."""
    h, w = shape[:2]
    scale = min(size[0] / h, size[1] / w, 1.0)
    return max(round(h * scale), 1), max(round(w * scale), 1)


def _prepare(img, size: tuple[int, int]) -> np.ndarray:
    """RGB resized to ``size`` (H, W) (area average when shrinking: energy-preserving), float64, finite
    and >= 0."""
    rgb = np.ascontiguousarray(np.asarray(img)[..., :3], np.float32)
    if rgb.shape[:2] != tuple(size):
        shrink = size[0] <= rgb.shape[0] and size[1] <= rgb.shape[1]
        rgb = cv2.resize(rgb, size[::-1], interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.maximum(np.nan_to_num(rgb.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0), 0.0)


# ------------------------------------------------------------------------------------------------
# the key: the brightest compact region of an image whose pixels have known directions
# ------------------------------------------------------------------------------------------------


def _dilate(mask: np.ndarray, r: int, wrap: bool) -> np.ndarray:
    """8-connected dilation by r pixels; ``wrap``: columns wrap around (equirect)."""
    from scipy import ndimage  # lazily: the workflow imports this module to plan, and scipy.ndimage costs 0.3 s

    st = np.ones((3, 3), bool)
    if not wrap:
        return ndimage.binary_dilation(mask, st, iterations=r)
    padded = np.concatenate([mask[:, -r:], mask, mask[:, :r]], axis=1)
    return ndimage.binary_dilation(padded, st, iterations=r)[:, r:-r]


def _label(mask: np.ndarray, wrap: bool) -> tuple[np.ndarray, int]:
    """8-connected components; ``wrap``: regions touching across the left/right edge are one."""
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if not wrap or n < 2:
        return labels, n
    parent = np.arange(n + 1)

    def root(a):
        while parent[a] != a:
            a = parent[a]
        return a

    h = mask.shape[0]
    for i in np.flatnonzero(labels[:, 0]):
        for j in range(max(i - 1, 0), min(i + 2, h)):
            if labels[j, -1]:
                parent[root(labels[j, -1])] = root(labels[i, 0])
    _, relabel = np.unique([root(a) for a in range(n + 1)], return_inverse=True)
    return relabel[labels], int(relabel.max())


@dataclass
class _Blob:
    direction: np.ndarray  # luminance-weighted centroid (world unit vector)
    rgb: np.ndarray  # irradiance above its surroundings on a surface facing it
    softness_deg: float  # angular radius
    contrast: float  # peak luminance over its surroundings'
    region: np.ndarray  # (H, W) bool: the pixels of the source (its core)
    fill: np.ndarray  # RGB of its surroundings (replaces it in the ambient)

    @property
    def power(self) -> float:
        return float(luminance(self.rgb))


def _blob(rgb, dirs, omega, mask, wrap) -> _Blob:
    """Measure one bright region over its surroundings (the median of a ring around it). The source
    is its core, the pixels above KEY_CORE_FRACTION of its peak excess (a sun, not its glow; the glow
    stays ambient): direction = their luminance-weighted centroid, spread = their RMS angle."""
    grown = _dilate(mask, 1, wrap)
    ring = _dilate(mask, 4, wrap) & ~_dilate(mask, 2, wrap)
    fill = np.median(rgb[ring], axis=0) if ring.any() else np.zeros(3)
    lum = luminance(np.maximum(rgb - fill, 0.0)) * grown
    core = lum >= max(KEY_CORE_FRACTION * lum.max(), 1e-12)
    if not core.any():
        core = grown
    excess, w = np.maximum(rgb[core] - fill, 0.0), lum[core] * omega[core]
    if w.sum() <= 0:
        w = omega[core]
    d = _unit((w[:, None] * dirs[core]).sum(0))
    cos = np.clip(dirs[core] @ d, -1.0, 1.0)
    key_rgb = (excess * (omega[core] * np.maximum(cos, 0.0))[:, None]).sum(0)
    # a uniform disk of radius r has an RMS angle of r / sqrt(2) from its centre
    radius = np.degrees(np.sqrt(2.0 * (w * np.arccos(cos) ** 2).sum() / w.sum()))
    peak = float(luminance(rgb[core]).max())
    return _Blob(d, key_rgb, max(float(radius), MIN_SOFTNESS_DEG), peak / max(float(luminance(fill)), 1e-9),
                 core, fill)


def _find_key(rgb, dirs, omega, wrap: bool) -> tuple[_Blob | None, float]:
    """The bright region giving the most irradiance above its surroundings, preferring those that
    stand out (peak >= KEY_MIN_PEAK_CONTRAST x surroundings), and its fraction of the power of all
    those (its dominance; 0 when none stands out). None when nothing is brighter than the rest."""
    y = luminance(rgb)
    mask = y > max(float(np.percentile(y, KEY_PERCENTILE)), KEY_MIN_CONTRAST * float(np.median(y)))
    labels, n = _label(_dilate(mask, 1, wrap), wrap)  # fragments (a sun through leaves) 2 px apart merge
    if n == 0:
        return None, 0.0
    from scipy import ndimage

    strength = ndimage.sum_labels(y * omega * mask, labels, index=np.arange(1, n + 1))
    blobs = [_blob(rgb, dirs, omega, mask & (labels == i + 1), wrap)
             for i in np.argsort(strength)[::-1][:KEY_MAX_BLOBS]]
    sources = [b for b in blobs if b.contrast >= KEY_MIN_PEAK_CONTRAST]
    if not sources:
        return max(blobs, key=lambda b: b.power), 0.0
    best = max(sources, key=lambda b: b.power)
    total = sum(b.power for b in sources)
    return best, (best.power / total if total > 0 else 0.0)


# ------------------------------------------------------------------------------------------------
# measurements: what one source says about the light
# ------------------------------------------------------------------------------------------------


@dataclass
class _Measure:
    kind: str  # light_probe | environment_hdri | environment_plate | default
    ambient_sh: np.ndarray  # (9, 3) irradiance SH of everything but the key
    colour: np.ndarray  # best guess of the key colour (luminance 1)
    key: _Blob | None = None  # a key seen in the source (its rgb is zero when it does not stand out)
    key_confidence: float = 0.0
    up_irradiance: float | None = None  # grey world: total irradiance of an upward surface (plate, default)
    notes: list = field(default_factory=list)


def _measure_equirect(img, rotation_deg: float, kind: str) -> _Measure:
    """Key and ambient of a full panorama: the key is the brightest compact region that stands out, the
    ambient the panorama with it replaced by its surroundings. Direction confidence grows with the
    key's contrast (log scale, 1 at KEY_FULL_CONTRAST) and its dominance over the other sources."""
    rgb = _prepare(img, _fit(np.shape(img), ANALYSIS_SIZE))
    h, w = rgb.shape[:2]
    dirs, omega = equirect_directions(h, w, rotation_deg), equirect_solid_angles(h, w)
    blob, dominance = _find_key(rgb, dirs, omega, wrap=True)
    if blob is None:
        return _Measure(kind, sh_irradiance(dirs, rgb, omega), np.ones(3),
                        notes=[f"{kind}: no bright region; ambient only"])
    colour = blob.rgb / blob.power if blob.power > 0 else np.ones(3)
    az, el = azimuth_elevation(blob.direction)
    where = f"{kind}: brightest region at azimuth {az:.1f}, elevation {el:.1f}, {blob.contrast:.0f}x its surroundings"
    if blob.contrast < KEY_MIN_PEAK_CONTRAST:  # overcast, or lit evenly: all ambient, no key
        weak = _Blob(blob.direction, np.zeros(3), blob.softness_deg, blob.contrast, blob.region, blob.fill)
        return _Measure(kind, sh_irradiance(dirs, rgb, omega), colour, weak, 0.1, notes=[
            where + ": no compact source stands out, so no key (all ambient; its direction is a hint)"])
    without = rgb.copy()
    without[blob.region] = blob.fill
    ambient = sh_irradiance(dirs, without, omega)
    share = blob.power / max(blob.power + float(luminance(sh_eval(ambient, blob.direction))), 1e-12)
    conf = min(np.log(blob.contrast) / np.log(KEY_FULL_CONTRAST), 1.0) * dominance
    notes = [f"{where}, {share:.0%} of the irradiance facing it: the key"]
    if dominance < 0.5:
        notes.append(f"{kind}: no single dominant source (the key gives {dominance:.0%} of the bright sources' light)")
    return _Measure(kind, ambient, colour, blob, float(conf), notes=notes)


def _measure_frames(frames, camera: Camera, key_to_fill: float) -> _Measure:
    """Ambient and (if a source is in frame) key direction of environment-plate frames: the frames
    (averaged) are a partial view of the environment; the unseen sky is the mean of the seen sky, the
    unseen ground the mean of the seen ground; grey world gives the total irradiance."""
    size = _fit(np.shape(frames[0]), (10**6, FRAME_WIDTH))
    rgb = np.mean([_prepare(f, size) for f in frames], axis=0)
    h, w = rgb.shape[:2]
    rays = camera.rays(w, h)
    omega = (rays @ camera.basis()[2]) ** 3 / camera.focal_px(w) ** 2  # pinhole pixel solid angle
    notes = [f"environment_plate: {len(frames)} frame(s) averaged at {w}x{h}"]
    blob, _ = _find_key(rgb, rays, omega, wrap=False)
    key = None
    if (blob is not None and blob.contrast >= KEY_MIN_PEAK_CONTRAST and blob.direction[1] > 0
            and blob.region.mean() <= FRAME_KEY_MAX_AREA):
        key = blob
        rgb = rgb.copy()
        rgb[blob.region] = blob.fill
        az, el = azimuth_elevation(blob.direction)
        notes.append(f"environment_plate: a light source is in frame at azimuth {az:.1f}, elevation {el:.1f}")
    below = rays[..., 1] < 0
    scene = rgb[below] if below.mean() >= 0.1 else rgb.reshape(-1, 3)
    scene_mean = scene.mean(0)
    scene_lum = float(luminance(scene_mean))
    up_irradiance = np.pi * scene_lum / ALBEDO
    ground = rgb[below].mean(0) if below.mean() >= 0.01 else scene_mean
    # unseen sky: at least the radiance whose hemisphere gives the fill share of the grey-world
    # irradiance (a dim strip of seen sky or horizon must not make the ground the main light)
    needed = up_irradiance / (1.0 + key_to_fill) / np.pi
    seen_sky = rgb[~below].mean(0) if (~below).mean() >= 0.01 else scene_mean
    sky_lum = float(luminance(seen_sky))
    sky = seen_sky * (max(sky_lum, needed) / sky_lum) if sky_lum > 0 else np.full(3, needed)
    ambient = sh_irradiance_from_equirect(_frames_environment(rgb, camera, sky, ground))
    notes.append(f"environment_plate: grey world (albedo {ALBEDO}) gives {up_irradiance:.3g} on an upward surface")
    colour = scene_mean / scene_lum if scene_lum > 0 else np.ones(3)
    conf = FRAME_KEY_CONFIDENCE * min(np.log(key.contrast) / np.log(KEY_FULL_CONTRAST), 1.0) if key else 0.0
    return _Measure("environment_plate", ambient, colour, key, float(conf),
                    up_irradiance, notes)


# ------------------------------------------------------------------------------------------------
# a probe registered to the plate: the yaw at which the panorama, seen through the camera, looks most
# like the environment plate (log luminance, normalised cross-correlation)
# ------------------------------------------------------------------------------------------------

YAW_STEP_DEG = 2.0  # candidate rotations; refined to a fraction of a step by a parabola
YAW_TILTS_DEG = (-20.0, -12.0, -6.0, 0.0, 6.0)  # searched with the yaw when the camera is a guess
YAW_WIDTH = 96  # plate analysis width (pixels)
YAW_MIN_SCORE = 0.5  # correlation below this: the panorama is not of this place (no registration)
YAW_RIVAL_DEG = 30.0  # a rival peak further than this from the best one makes the yaw ambiguous


@dataclass
class YawRegistration:
    rotation_deg: float  # light_probe_rotation_deg: azimuth of the probe's centre column
    score: float  # correlation at the best yaw (1: the plate is the panorama seen through the camera)
    rival: float  # best correlation further than YAW_RIVAL_DEG from it
    tilt_deg: float  # camera tilt it was found at
    confidence: float

    def note(self) -> str:
        return (f"light_probe registered to the environment plate: rotation {self.rotation_deg:.1f} deg "
                f"(correlation {self.score:.2f}, next best {self.rival:.2f} elsewhere, tilt {self.tilt_deg:.0f}; "
                f"confidence {self.confidence:.2f})")


def register_probe_yaw(probe, frame, camera: Camera, search_tilt: bool = False) -> YawRegistration:
    """The probe rotation that lines the panorama ``probe`` up with the environment-plate ``frame``
    seen through ``camera`` (also over YAW_TILTS_DEG when ``search_tilt``: a guessed camera)."""
    size = _fit(np.shape(frame), (10**6, YAW_WIDTH))
    target = np.log(luminance(_prepare(frame, size)) + 1e-4).astype(np.float32)
    h, w = target.shape
    pano = np.log(luminance(_prepare(probe, _fit(np.shape(probe), ANALYSIS_SIZE))) + 1e-4).astype(np.float32)
    ph, pw = pano.shape
    # the plate blurred to the panorama's resolution (its pixels are finer)
    target = cv2.GaussianBlur(target, (0, 0), max(0.5 * (360.0 / pw) / (camera_fov_deg(camera) / w), 0.3))
    t = (target - target.mean()).ravel()
    t /= max(float(np.linalg.norm(t)), 1e-9)
    steps = np.arange(0.0, 360.0, YAW_STEP_DEG)
    best = None
    for tilt in (YAW_TILTS_DEG if search_tilt else (camera.tilt_deg,)):
        rays = dataclasses.replace(camera, tilt_deg=tilt).rays(w, h)
        az = np.degrees(np.arctan2(rays[..., 0], rays[..., 2]))
        el = np.degrees(np.arcsin(np.clip(rays[..., 1], -1, 1)))
        v = ((90.0 - el) / 180.0 * ph - 0.5).astype(np.float32)
        scores = np.empty(len(steps))
        for i, rot in enumerate(steps):
            u = ((((az - rot) / 360.0 + 0.5) % 1.0) * pw - 0.5).astype(np.float32)
            seen = cv2.remap(pano, u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP).ravel()
            seen = seen - seen.mean()
            scores[i] = float(seen @ t) / max(float(np.linalg.norm(seen)), 1e-9)
        i = int(np.argmax(scores))
        if best is None or scores[i] > best[0]:
            best = (float(scores[i]), i, scores, tilt)
    score, i, scores, tilt = best
    a, b, c = scores[i - 1], scores[i], scores[(i + 1) % len(scores)]
    shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) < 0 else 0.0
    rotation = (steps[i] + shift * YAW_STEP_DEG) % 360.0
    far = np.abs((steps - rotation + 180.0) % 360.0 - 180.0) > YAW_RIVAL_DEG
    rival = float(scores[far].max()) if far.any() else -1.0
    # confident when the plate matches well and no other yaw comes close
    confidence = float(np.clip((score - YAW_MIN_SCORE) / (1.0 - YAW_MIN_SCORE), 0, 1)
                       * np.clip((score - rival) / 0.2, 0, 1))
    return YawRegistration(float(rotation), score, rival, float(tilt), confidence)


def camera_fov_deg(camera: Camera) -> float:
    """Horizontal field of view."""
    return float(np.degrees(2.0 * np.arctan(camera.sensor_width_mm / (2.0 * camera.focal_mm))))


def _frames_environment(rgb, camera: Camera, sky, ground) -> np.ndarray:
    """(H, W, 3) equirect environment: the frame where the camera sees, sky above / ground below elsewhere."""
    h, w = rgb.shape[:2]
    dirs = equirect_directions(*ANALYSIS_SIZE)
    x, y, z = camera.project(camera.position + dirs, w, h)
    seen = (z > 1e-6) & (x >= 0) & (x < w) & (y >= 0) & (y < h)
    env = np.where(dirs[..., 1:2] > 0, np.asarray(sky, np.float64), np.asarray(ground, np.float64))
    env[seen] = rgb[y[seen].astype(int), x[seen].astype(int)]
    return env


def _measure_nothing(key_to_fill: float) -> _Measure:
    """No environment: a grey-card-exposed world, sky above and ground of albedo ALBEDO below."""
    dirs = equirect_directions(16, 32)
    env = np.where(dirs[..., 1:2] > 0, 1.0 / (1.0 + key_to_fill), ALBEDO) * np.ones(3)
    return _Measure("default", sh_irradiance(dirs, env, equirect_solid_angles(16, 32)), np.ones(3),
                    up_irradiance=DEFAULT_UP_IRRADIANCE, notes=["default: no environment given"])


# ------------------------------------------------------------------------------------------------
# the estimate
# ------------------------------------------------------------------------------------------------


def estimate_light(*, sheet_light: dict | None, camera: Camera, env_frames: list[np.ndarray] | None = None,
                   env_hdri: np.ndarray | None = None, probe: np.ndarray | None = None,
                   probe_rotation_deg: float | None = 0.0, env_z: np.ndarray | None = None) -> dict:
    """One light estimate for a shot (JSON-serialisable).

    Each quantity comes from the sheet if it gives it, else from the probe, else the HDRI environment,
    else the environment plate frames, else the defaults above; ``source`` says which. A probe whose
    ``probe_rotation_deg`` is None is registered to the environment plate (``register_probe_yaw``; 0
    without frames), and its key direction's confidence scales with the registration's. Where neither a
    probe nor an HDRI gives the key, ``env_z`` (the middle frame's camera-space depth, None: unknown) lets
    the environment's geometry give its direction (perception.key_cues), before a source seen in the
    plate when it is the clearer. Keys:
    - ``azimuth_deg``, ``elevation_deg``, ``direction`` (world unit vector towards the key);
    - ``colour`` (ACEScg, luminance 1), ``intensity``: key irradiance on a surface facing the key;
    - ``softness_deg``: angular radius of the key;
    - ``key_to_fill``: on an upward-facing surface, key irradiance (intensity * sin(elevation)) over
      ambient irradiance (the SH at +y): a shadow on the ground gets 1 / (1 + key_to_fill) of the lit
      ground's light. 0: no key. A key given by ``key_to_fill`` alone gets the intensity that makes this
      true (elevations below MIN_SPLIT_ELEVATION count as that, to bound it);
    - ``ambient_sh``: 9 x [r, g, b] irradiance SH of everything but the key (``sh_basis`` order);
    - ``confidence`` (0..1) in the direction, ``notes``.
    Probe / HDRI: the key is the brightest compact region, measured above its surroundings. Plate
    frames: the seen environment plus filled-in unseen directions give the ambient's shape; grey world
    (mean radiance of the scene below the horizon = ALBEDO * E / pi) gives the total upward irradiance,
    split between key and ambient by key_to_fill (the sheet's, else DEFAULT_KEY_TO_FILL).
    """
    sheet = dict(sheet_light or {})
    k_sheet = sheet.get("key_to_fill")
    k_guess = DEFAULT_KEY_TO_FILL if k_sheet is None else k_sheet
    m, dark = None, []
    for kind, img in (("light_probe", probe), ("environment_hdri", env_hdri)):
        if img is None or m is not None:
            continue
        registration, rotation = None, 0.0
        if kind == "light_probe":
            rotation = probe_rotation_deg
            if rotation is None and env_frames is not None and len(env_frames):
                # the search tilts the camera too when it is the default one (a guess)
                registration = register_probe_yaw(img, env_frames[len(env_frames) // 2], camera,
                                                  search_tilt=camera == Camera())
                rotation = registration.rotation_deg if registration.score >= YAW_MIN_SCORE else 0.0
        m = _measure_equirect(img, rotation or 0.0, kind)
        if luminance(m.ambient_sh[0]) <= 0 and (m.key is None or m.key.power <= 0):  # black: no light at all
            dark.append(f"{kind}: shows no light (every pixel black), ignored")
            _log.warning("the %s shows no light (every pixel black); the light is estimated without it", kind)
            m = None
        elif registration is not None:
            m.notes.insert(0, registration.note() if registration.score >= YAW_MIN_SCORE else
                           f"light_probe: does not match the environment plate (correlation {registration.score:.2f}); "
                           "rotation 0 assumed (fix: give light_probe_rotation_deg)")
            m.key_confidence *= registration.confidence
        elif kind == "light_probe" and rotation is None:
            m.notes.insert(0, "light_probe: no environment plate to register it to; rotation 0 assumed")
    if m is None:
        m = (_measure_frames(env_frames, camera, k_guess) if env_frames is not None and len(env_frames)
             else _measure_nothing(k_guess))
    notes = dark + list(m.notes)
    source = {}
    # the environment's geometry shaded by the key, where its Z is known and no panorama gives the key:
    # taken before a source seen in the plate when it is the clearer
    shade, shading_confidence = None, 0.0
    if ("azimuth_deg" not in sheet and (m.key is None or m.kind == "environment_plate") and env_z is not None
            and env_frames is not None and len(env_frames)):
        from .key_cues import shading_cue

        shade = shading_cue(env_frames[len(env_frames) // 2], env_z, camera)
        notes.append(shade.note)
        if shade.azimuth_deg is not None:
            shading_confidence = DEFAULT_CONFIDENCE + (SHADING_KEY_CONFIDENCE - DEFAULT_CONFIDENCE) * shade.strength
    shade_wins = shading_confidence > max(DEFAULT_CONFIDENCE, m.key_confidence if m.key is not None else 0.0)

    # direction, confidence, softness
    if "azimuth_deg" in sheet:
        az, el = sheet["azimuth_deg"] % 360.0, sheet["elevation_deg"]
        direction, confidence, source["direction"] = light_direction(az, el), 1.0, "sheet"
        if m.key is not None and m.key_confidence >= 0.5:
            off = np.degrees(np.arccos(np.clip(direction @ m.key.direction, -1, 1)))
            if off > 20:
                notes.append(f"the sheet's key is {off:.0f} degrees from the {m.kind}'s brightest source")
    elif shade_wins:
        az, el = shade.azimuth_deg, shade.elevation_deg
        direction, confidence, source["direction"] = light_direction(az, el), shading_confidence, "environment_shading"
    elif m.key is not None:
        direction, confidence, source["direction"] = m.key.direction, m.key_confidence, m.kind
        az, el = azimuth_elevation(direction)
    else:
        az, el = DEFAULT_AZIMUTH, DEFAULT_ELEVATION
        direction, confidence, source["direction"] = light_direction(az, el), DEFAULT_CONFIDENCE, "default"
        notes.append(f"key direction: default azimuth {az}, elevation {el} (a guess)")
    softness, source["softness"] = ((sheet["softness_deg"], "sheet") if "softness_deg" in sheet else
                                    (m.key.softness_deg, m.kind) if m.key is not None else
                                    (DEFAULT_SOFTNESS_DEG, "default"))
    if "colour" in sheet:
        colour, source["colour"] = _unit_luminance(sheet["colour"]), "sheet"
    else:
        colour, source["colour"] = m.colour, m.kind

    # ambient level (grey world: the fill share of the total) and key intensity
    ambient, source["ambient"] = m.ambient_sh.copy(), m.kind
    sin_el = max(float(direction[1]), 0.0)
    sin_split = max(sin_el, np.sin(np.radians(MIN_SPLIT_ELEVATION)))
    if m.up_irradiance is not None:
        ambient *= m.up_irradiance / (1.0 + k_guess) / max(_up(ambient), 1e-12)
    if "intensity" in sheet:
        intensity, source["intensity"] = sheet["intensity"], "sheet"
        if k_sheet and sin_el > 0:
            ambient *= intensity * sin_el / k_sheet / max(_up(ambient), 1e-12)
            source["ambient"] = "sheet"
            notes.append("ambient scaled to the sheet's intensity and key_to_fill")
    elif k_sheet is not None:
        intensity, source["intensity"] = k_sheet * _up(ambient) / sin_split, "sheet"
    elif m.up_irradiance is None:  # probe / HDRI: the measured key (0: none stands out)
        intensity, source["intensity"] = (m.key.power if m.key is not None else 0.0), m.kind
    else:  # plate / nothing: the grey-world split by the default ratio
        intensity, source["intensity"] = k_guess * _up(ambient) / sin_split, m.kind
        notes.append(f"key_to_fill: default {k_guess} (not measured)")
    key_to_fill = min(intensity * sin_el / max(_up(ambient), 1e-12), 1000.0) if intensity > 0 else 0.0
    fill_confidence = (1.0 if source["intensity"] == "sheet" else
                       FILL_CONFIDENCE.get(m.kind, DEFAULT_CONFIDENCE) if m.up_irradiance is None else DEFAULT_CONFIDENCE)
    colour_confidence = 1.0 if source["colour"] == "sheet" else PLATE_COLOUR_TRUST if m.kind == "environment_plate" else 1.0
    if "azimuth_deg" in sheet and intensity == 0:
        notes.append("the sheet gives a key direction but the environment shows no key: give key_to_fill to force one")

    return {
        "source": source,
        "azimuth_deg": float(az), "elevation_deg": float(el),
        "direction": [float(v) for v in direction],
        "colour": [float(v) for v in colour],
        "intensity": float(intensity),
        "softness_deg": float(softness),
        "key_to_fill": float(key_to_fill),
        "ambient_sh": [[float(v) for v in row] for row in ambient],
        "confidence": float(confidence),
        # each estimate's confidence (0..1); harmonize scales each effect by what it rests on
        "confidences": {"direction": float(confidence), "key_to_fill": float(fill_confidence),
                        "colour": float(colour_confidence)},
        "notes": notes,
    }


def direction_weight(confidence: float) -> float:
    """How much of an effect that rests on the key direction is applied: none for the default guess
    (DEFAULT_CONFIDENCE), all for a given one, linear between."""
    return float(np.clip((confidence - DEFAULT_CONFIDENCE) / (1.0 - DEFAULT_CONFIDENCE), 0.0, 1.0))


def _up(ambient_sh) -> float:
    """Ambient luminance irradiance of an upward-facing surface."""
    return float(luminance(sh_eval(ambient_sh, UP)))


def _unit_luminance(rgb) -> np.ndarray:
    rgb = np.asarray(rgb, np.float64)
    lum = float(luminance(rgb))
    return rgb / lum if lum > 0 else np.ones(3)


# ------------------------------------------------------------------------------------------------
# shading
# ------------------------------------------------------------------------------------------------


def irradiance(light: dict, normals: np.ndarray, visibility: np.ndarray | None = None) -> np.ndarray:
    """(..., 3) float32 irradiance at world unit normals (..., 3): the key (intensity * colour *
    max(n . d, 0), times ``visibility`` (...) in [0, 1] if given: its shadowing) plus the SH ambient
    (clamped >= 0)."""
    n = np.asarray(normals, np.float32)
    e = np.maximum(sh_eval(np.asarray(light["ambient_sh"], np.float32), n), 0.0)
    key = np.float32(light["intensity"]) * np.asarray(light["colour"], np.float32)
    lit = np.maximum(n @ np.asarray(light["direction"], np.float32), 0.0)
    if visibility is not None:
        lit *= np.asarray(visibility, np.float32)
    e += lit[..., None] * key
    return e.astype(np.float32, copy=False)


# ------------------------------------------------------------------------------------------ the stage's type
# A plate's mean colour is its light's colour times its surfaces' (green grass, red brick), and grey
# world cannot tell them apart: a colour estimated from the environment plate is not taken as the
# light's (path-traced shots: at 0.5 the character took the forest's green; at 0.25 four of the 14
# generated shots ended below `over`). The sheet's colour, a probe's or an HDRI's is.
PLATE_COLOUR_TRUST = 0.0


@dataclass
class ShotLight:
    """The light stage's JSON in the form the maths needs."""

    direction: np.ndarray  # (3,) towards the key
    key_rgb: np.ndarray  # (3,) key irradiance on a surface facing it
    ambient_sh: np.ndarray  # (9, 3) irradiance SH of everything else
    softness_deg: float
    confidence: float = 1.0  # in the direction: 1 given or measured, ~0.2 a guess
    colour_trust: float = 1.0  # how much of the ambient's colour is the light's (not the scene's paint)
    fill_confidence: float = 1.0  # in the key/fill split and so the light's shape on the character
    camera_confidence: float = 1.0  # in the camera (where the ground is): 1 given, lower estimated
    exposure_confidence: float | None = None  # in the light's shape on the character (None: the direction weight)

    @classmethod
    def from_json(cls, light: dict) -> "ShotLight":
        d = np.asarray(light["direction"], np.float32)
        conf = light.get("confidences") or {}
        colour_trust = PLATE_COLOUR_TRUST if light.get("source", {}).get("ambient") == "environment_plate" else 1.0
        return cls(d / np.linalg.norm(d), float(light["intensity"]) * np.asarray(light["colour"], np.float32),
                   np.asarray(light["ambient_sh"], np.float32).reshape(9, 3), float(light.get("softness_deg") or 0.0),
                   float(light.get("confidence", 1.0)), float(conf.get("colour", colour_trust)),
                   float(conf.get("key_to_fill", 1.0)), float(conf.get("camera", 1.0)),
                   None if conf.get("exposure") is None else float(conf["exposure"]))

    @property
    def direction_weight(self) -> float:
        """How much of an effect that rests on the key direction is applied (:func:`direction_weight`)."""
        return direction_weight(self.confidence)

    @property
    def exposure_weight(self) -> float:
        """Confidence in the environment's light on the character relative to its light on the ground
        (light.json's ``confidences.exposure``; older files: the direction weight)."""
        c = self.direction_weight if self.exposure_confidence is None else self.exposure_confidence
        return float(np.clip(c, 0.0, 1.0))

    @property
    def shadow_trust(self) -> float:
        """How dense a cast shadow may be: a shadow along a guessed direction, or on a ground from a
        guessed camera, is more likely wrong than right, so it is drawn fainter (none with no trust)."""
        return float(self.direction_weight * np.clip(self.camera_confidence, 0.0, 1.0))

    def trusted(self) -> "ShotLight":
        """The light as far as it is known: the key/fill split pulled towards an even one (key = fill on
        an upward surface) as its confidence drops (geometric mean, weight = ``fill_confidence``), the
        light on an upward surface kept. A guessed ratio then casts moderate shadows and shades gently."""
        up = np.array([0.0, 1.0, 0.0], np.float32)
        k, a = float(luminance(self.key(up))), float(luminance(self.ambient(up)))
        c = float(np.clip(self.fill_confidence, 0.0, 1.0))
        if k <= 0 or a <= 0 or c >= 1:
            return self
        ratio = k / a
        trusted_ratio = ratio ** c
        key_scale = trusted_ratio / ratio * (k + a) / (k * trusted_ratio / ratio + a)
        amb_scale = (k + a) / (k * trusted_ratio / ratio + a)
        return dataclasses.replace(self, key_rgb=(self.key_rgb * key_scale).astype(np.float32),
                                   ambient_sh=(self.ambient_sh * amb_scale).astype(np.float32), fill_confidence=1.0)

    def key(self, n: np.ndarray) -> np.ndarray:
        return np.clip(n @ self.direction, 0.0, None)[..., None] * self.key_rgb

    def ambient(self, n: np.ndarray) -> np.ndarray:
        return np.clip(sh_eval(self.ambient_sh, n), 0.0, None)


def up_shares(light: ShotLight) -> tuple[np.ndarray, np.ndarray]:
    """The key's and the ambient's share (3,) of the light on an upward surface."""
    up = np.array([0.0, 1.0, 0.0], np.float32)
    k, a = light.key(up), light.ambient(up)
    total = np.maximum(k + a, 1e-6)
    return (k / total).astype(np.float32), (a / total).astype(np.float32)


def shot_light_json(estimate: dict, camera_params: dict | None, camera_confidence: float | None = None) -> dict:
    """The light stage's ``light.json`` from :func:`estimate_light`'s ``estimate``: with the shot's camera,
    its confidence (``camera_confidence`` when the camera was estimated from the pictures,
    perception.camera_estimate; else 1 when the sheet gives one, measured on set, and
    :data:`DEFAULT_CAMERA_CONFIDENCE` for the default guess), the exposure's confidence and the key /
    ambient up shares. Curation makes harmonize's comp with it too."""
    est = {**estimate, "confidences": dict(estimate["confidences"]), "camera": camera_params}
    est["confidences"]["camera"] = camera = (float(camera_confidence) if camera_confidence is not None else
                                             1.0 if camera_params else DEFAULT_CAMERA_CONFIDENCE)
    # harmonize's exposure: the environment's light on the character's normals over its light on the
    # ground rests on the key's direction and on the camera that places the normals, the ground and a
    # key seen in the plate, each weighted 0 for its default guess and 1 given (path-traced shots,
    # nothing given: a bright spot taken for the key at confidence 0.6 with the default camera moved
    # venice the wrong way, below `over`); the key/fill split is pulled towards even as far as it is
    # unknown (ShotLight.trusted), so it does not count here
    camera_weight = float(np.clip((camera - DEFAULT_CAMERA_CONFIDENCE) / (1.0 - DEFAULT_CAMERA_CONFIDENCE), 0.0, 1.0))
    # a key found as a bright spot in the environment plate does not count: it fired on 3 of 22 path-traced
    # and generated shots, all 64-99 deg off (bench/key_from_pictures.py; two are report shots), and moving
    # the exposure along it put venice below `over` once the camera came from the pictures; nor does one
    # from the environment's shading (generated sky shots, tune half: -0.05 dB and character error +3%
    # with it, the shadows and shading along it kept)
    src = estimate.get("source", {})
    frame_key = src.get("direction") in ("environment_plate", "environment_shading")
    est["confidences"]["exposure"] = 0.0 if frame_key else direction_weight(float(estimate["confidence"])) * camera_weight
    camera_source = ("sheet" if camera_confidence is None else "estimated") if camera_params else "default"
    est["source"] = {**src, "exposure": f"ratio of lights (direction: {src.get('direction')}, key/fill: "
                                        f"{src.get('intensity')}, camera: {camera_source})"}
    est["up_shares"] = dict(zip(("key", "ambient"), (v.tolist() for v in up_shares(ShotLight.from_json(est)))))
    return est
