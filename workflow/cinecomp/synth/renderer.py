"""Deterministic demo shots: a numpy SDF ray-marcher draws a little character that walks up to a
box and pushes it.

Per frame it renders (a) the PLATE: character + box lit by a soft studio key/fill in front of an
uneven chroma-green backdrop (with a little green spill on grazing edges), and (b) the GROUND TRUTH:
the same character + box on a tiled ground under a sky and a sun, lit by them and casting soft
shadows, plus the environment alone, the true alpha, character/prop masks and depth. Everything is
scene-linear ACEScg. Geometry is supersampled 2x2, so alpha and masks are fractional at edges.

Scenes vary (all optional ``DemoScene`` fields; the defaults are the original sun-and-sky look): the
camera (position, target, field of view), the key (``sun``, an interior ``lamp`` with inverse-square
falloff, or ``none`` = overcast: sky fill and soft contact occlusion only), an environment from the
real backgrounds in ``../shared/data/backgrounds`` (an HDRI as sky radiance and fill colour, a photo
as an emissive backdrop; procedural sky when the folder is absent), a lit wall behind the ground, and
a per-channel gain on the whole plate (its exposure and white balance, independent of the
environment's). ``scene_camera`` / ``scene_light`` give the sheet's ``camera`` and ``light`` JSON of a
scene in camera.py's conventions.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import colour
from ..colour import LUMA_ACESCG
from ..io import exr as exrio
from ..atomic import atomic_path
from ..camera import azimuth_elevation
from ..layout import SHARED_DATA

SRGB = "sRGB Encoded Rec.709 (sRGB)"
SKIN, SHIRT, TROUSERS, BOX = 1, 2, 3, 4
ALBEDO = {SKIN: (0.62, 0.38, 0.26), SHIRT: (0.12, 0.16, 0.55), TROUSERS: (0.22, 0.17, 0.12), BOX: (0.62, 0.30, 0.08)}
FAR = 1.0e4
# Real environments (read-only shared data); absent -> procedural sky, no photo backdrop.
BACKGROUNDS = Path(os.environ.get("CINECOMP_BACKGROUNDS", SHARED_DATA / "backgrounds"))
AMBIENT_TARGET = 0.5  # luminance of the fill an HDRI or photo gives at env_gain 1
PHOTO_TARGET = 0.5  # mean luminance of a photo backdrop at env_gain 1
HDRI_CLIP = 8.0  # HDRI radiance above this x the upper-hemisphere median is the sun: not fill


@dataclass
class DemoScene:
    cam_pos: tuple = (0.0, 1.25, -6.0)
    cam_target: tuple = (0.0, 0.85, 0.0)
    fov_deg: float = 40.0
    sun_dir: tuple = (0.55, 0.75, -0.35)  # towards the sun
    sun_rgb: tuple = (3.2, 2.9, 2.5)
    sky_zenith: tuple = (0.18, 0.30, 0.65)
    sky_horizon: tuple = (0.65, 0.72, 0.80)
    ground_a: tuple = (0.30, 0.26, 0.21)
    ground_b: tuple = (0.42, 0.37, 0.30)
    screen_rgb: tuple = (0.045, 0.30, 0.055)
    contact_at: float = 14.0  # frame index at which the hands reach the box
    box_x: float = 0.9
    speed: float = 0.12  # scene units per frame while walking
    push_speed: float = 0.05
    extra: dict = field(default_factory=dict)
    # --- optional variations; the defaults reproduce the original look exactly
    key: str = "sun"  # sun | lamp | none (overcast: sky fill and contact occlusion only)
    shadow_k: float = 10.0  # soft-shadow sharpness: penumbra half-angle ~ atan(1 / k)
    lamp_pos: tuple = (-1.4, 2.3, -1.2)
    lamp_rgb: tuple = (5.0, 3.4, 1.8)  # lamp irradiance at 1 m on a surface facing it
    ambient_rgb: tuple | None = None  # fill irradiance; None: from the sky / HDRI / photo
    bounce: float = 0.5  # ground bounce on the character, x ground_b
    ao_radius: float = 0.08  # contact occlusion on the ground: 1 - ao_strength * exp(-d / ao_radius)
    ao_strength: float = 0.5
    backdrop: str = ""  # "" sky down to the horizon | wall (lit, diffuse) | photo (emissive)
    backdrop_z: float = 3.0  # the backdrop plane z = backdrop_z, facing the camera
    wall_rgb: tuple = (0.55, 0.45, 0.36)
    photo: str = ""  # file in BACKGROUNDS/photos
    photo_width_m: float = 28.0  # the photo spans x in +-width/2 from y = 0 up
    hdri: str = ""  # file in BACKGROUNDS/hdri_equirect: sky radiance and fill colour
    hdri_yaw_deg: float = 0.0  # demo-world azimuth (atan2(x, z)) of the HDRI's centre column
    env_gain: float = 1.0  # HDRI / photo radiance scale after normalisation
    plate_gain: tuple = (1.0, 1.0, 1.0)  # the plate camera's exposure x white balance (whole plate)


def unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


# ---------------------------------------------------------------- animation
def pose(i: int, scene: DemoScene) -> dict:
    """Character root x, box x and limb endpoints at frame index ``i`` (0-based)."""
    half = 0.32
    reach = 0.55  # hands this far ahead of the root when pushing
    contact_x = scene.box_x - half - reach
    if i < scene.contact_at:
        cx, bx, pushing = contact_x - scene.speed * (scene.contact_at - i), scene.box_x, False
    else:
        dx = scene.push_speed * (i - scene.contact_at)
        cx, bx, pushing = contact_x + dx, scene.box_x + dx, True
    phase = 2.0 * np.pi * cx / 0.9
    swing = 0.22 * np.sin(phase)
    hip, shoulder = 0.88, 1.38
    lean = 0.12 if pushing else 0.0
    p = {"cx": cx, "bx": bx, "half": half, "pushing": pushing}
    p["torso"] = ((cx, hip + 0.05, 0.0), (cx + lean, shoulder, 0.0), 0.17)
    p["head"] = ((cx + lean * 1.3, 1.66, 0.0), 0.13)
    p["legs"] = [((cx, hip, s * 0.1), (cx + s * swing, 0.07, s * 0.1), 0.075) for s in (1, -1)]
    arms = []
    for s in (1, -1):
        sh = (cx + lean, shoulder - 0.03, s * 0.24)
        if pushing:
            hand = (bx - half - 0.02, 1.0, s * 0.17)
        else:
            hand = (cx - s * swing * 0.8, shoulder - 0.55, s * 0.27)
        arms.append((sh, hand, 0.055))
    p["arms"] = arms
    return p


# ---------------------------------------------------------------- SDF
def _capsule(q, a, b, r):
    a, b = np.asarray(a), np.asarray(b)
    pa, ba = q - a, b - a
    h = np.clip((pa @ ba) / (ba @ ba), 0.0, 1.0)
    return np.linalg.norm(pa - h[:, None] * ba, axis=1) - r


def _sphere(q, c, r):
    return np.linalg.norm(q - np.asarray(c), axis=1) - r


def _box(q, c, half, round_r=0.02):
    d = np.abs(q - np.asarray(c)) - (half - round_r)
    return np.linalg.norm(np.maximum(d, 0.0), axis=1) + np.minimum(d.max(axis=1), 0.0) - round_r


def scene_sdf(q, p):
    """(distance, material id) of the character + box at points q (N, 3)."""
    parts = [(_capsule(q, *p["torso"]), SHIRT), (_sphere(q, *p["head"]), SKIN)]
    parts += [(_capsule(q, *leg), TROUSERS) for leg in p["legs"]]
    parts += [(_capsule(q, *arm), SKIN) for arm in p["arms"]]
    h = p["half"]
    parts.append((_box(q, (p["bx"], h, 0.0), np.array([h, h, h])), BOX))
    d = np.stack([x for x, _ in parts])
    idx = d.argmin(axis=0)
    mats = np.array([m for _, m in parts])[idx]
    return d[idx, np.arange(q.shape[0])], mats


def _march(ro, rd, p, steps=72, eps=1e-3, tmax=12.0):
    n = ro.shape[0]
    t = np.zeros(n)
    hit = np.zeros(n, bool)
    active = np.ones(n, bool)
    for _ in range(steps):
        idx = np.nonzero(active)[0]
        if idx.size == 0:
            break
        d, _ = scene_sdf(ro[idx] + t[idx, None] * rd[idx], p)
        t[idx] += d
        done = d < eps
        hit[idx[done]] = True
        gone = t[idx] > tmax
        active[idx[done | gone]] = False
    mats = np.zeros(n, int)
    if hit.any():
        _, mats[hit] = scene_sdf(ro[hit] + t[hit, None] * rd[hit], p)
    return t, hit, mats


def _normal(q, p, e=1e-3):
    k = np.array([[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]], np.float64)
    n = sum(k_[None, :] * scene_sdf(q + e * k_[None, :], p)[0][:, None] for k_ in k)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)


def _soft_shadow(ro, rd, p, k=10.0, steps=40, tmax=None):
    """Soft visibility (0..1) from ro along rd; ``tmax`` (per ray): stop at the light (a lamp)."""
    res = np.ones(ro.shape[0])
    t = np.full(ro.shape[0], 0.02)
    stop = 8 if tmax is None else np.minimum(tmax, 8)
    for _ in range(steps):
        d, _ = scene_sdf(ro + t[:, None] * rd, p)
        r = np.clip(k * d / t, 0.0, 1.0)
        res = np.minimum(res, r if tmax is None else np.where(t < tmax, r, 1.0))
        t += np.clip(d, 0.01, 0.3)
        if (t > stop).all():
            break
    return np.clip(res, 0.0, 1.0)


# ---------------------------------------------------------------- camera
def _camera_rays(width, height, scene, ss=2):
    w, h = width * ss, height * ss
    fwd = unit(np.subtract(scene.cam_target, scene.cam_pos))
    right = unit(np.cross([0.0, 1.0, 0.0], fwd))
    up = np.cross(fwd, right)
    tan = np.tan(np.radians(scene.fov_deg) / 2)
    xs = ((np.arange(w) + 0.5) / w * 2 - 1) * tan
    ys = (1 - (np.arange(h) + 0.5) / h * 2) * tan * h / w
    X, Y = np.meshgrid(xs, ys)
    rd = fwd[None] + X.reshape(-1, 1) * right[None] + Y.reshape(-1, 1) * up[None]
    rd /= np.linalg.norm(rd, axis=1, keepdims=True)
    ro = np.broadcast_to(np.asarray(scene.cam_pos, np.float64), rd.shape).copy()
    return ro, rd, fwd, (h, w)


def heading(scene) -> float:
    """Demo-world azimuth (radians, atan2(x, z)) of the camera's forward axis on the ground."""
    fwd = np.subtract(scene.cam_target, scene.cam_pos)
    return float(np.arctan2(fwd[0], fwd[2]))


def to_camera_world(v, scene, point: bool = True) -> np.ndarray:
    """Demo-world points (or directions, point=False) (..., 3) -> camera.py's world frame: origin on
    the ground under the camera, +z the camera's forward axis on the ground, +x camera right."""
    v = np.asarray(v, np.float64)
    if point:
        v = v - np.array([scene.cam_pos[0], 0.0, scene.cam_pos[2]])
    h = heading(scene)
    c, s = np.cos(h), np.sin(h)
    return np.stack([v[..., 0] * c - v[..., 2] * s, v[..., 1], v[..., 0] * s + v[..., 2] * c], axis=-1)


def from_camera_world(v, scene) -> np.ndarray:
    """Camera-frame directions (..., 3) -> demo-world directions (inverse of to_camera_world)."""
    v = np.asarray(v, np.float64)
    h = heading(scene)
    c, s = np.cos(h), np.sin(h)
    return np.stack([v[..., 0] * c + v[..., 2] * s, v[..., 1], -v[..., 0] * s + v[..., 2] * c], axis=-1)


def scene_camera(scene: DemoScene) -> dict:
    """The sheet's ``camera`` JSON of a scene (camera.py conventions; 36 mm film back, no roll)."""
    fwd = unit(np.subtract(scene.cam_target, scene.cam_pos))
    focal = 36.0 / 2.0 / np.tan(np.radians(scene.fov_deg) / 2)
    return {"focal_mm": round(float(focal), 6), "sensor_width_mm": 36.0, "height_m": float(scene.cam_pos[1]),
            "tilt_deg": round(float(np.degrees(np.arcsin(fwd[1]))), 6), "roll_deg": 0.0}


# ---------------------------------------------------------------- environments
def background_file(kind: str, name: str) -> Path | None:
    """A real background (kind 'hdri' or 'photo') by file name; None when absent."""
    if not name:
        return None
    path = BACKGROUNDS / {"hdri": "hdri_equirect", "photo": "photos"}[kind] / name
    return path if path.is_file() else None


@lru_cache(maxsize=8)
def _load_hdri(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(256, 512, 3) ACEScg equirect radiance of an HDRI scaled so its fill has luminance
    AMBIENT_TARGET, and that fill (sun clipped out) as a (3,) colour."""
    import cv2

    from ..io.plates import read_image

    img = cv2.resize(read_image(path)[..., :3], (512, 256), interpolation=cv2.INTER_AREA)
    img = colour.convert(img, "Linear Rec.709 (sRGB)", colour.WORKING_SPACE).astype(np.float64)
    h, w = img.shape[:2]
    lat = (0.5 - (np.arange(h) + 0.5) / h) * np.pi
    lum = img @ LUMA_ACESCG
    up = lat > 0
    clip = HDRI_CLIP * np.median(lum[up])
    fill = img * np.minimum(1.0, clip / np.maximum(lum, 1e-9))[..., None]
    # cosine-weighted upper hemisphere / pi: the irradiance of a surface facing up, as a radiance
    weight = np.where(up, np.sin(lat) * np.cos(lat), 0.0) * (2 * np.pi / w) * (np.pi / h) / np.pi
    ambient = (fill * weight[:, None, None]).sum(axis=(0, 1))
    gain = AMBIENT_TARGET / float(ambient @ LUMA_ACESCG)
    return (img * gain).astype(np.float32), ambient * gain


def hdri_sun(name: str) -> tuple[float, float] | None:
    """(longitude, latitude) in degrees of an HDRI's brightest spot (its sun); None when absent."""
    import cv2

    path = background_file("hdri", name)
    if path is None:
        return None
    img, _ = _load_hdri(str(path))
    lum = cv2.GaussianBlur((img @ LUMA_ACESCG.astype(np.float32)), (0, 0), 2)
    y, x = np.unravel_index(int(np.argmax(lum)), lum.shape)
    h, w = lum.shape
    return float(((x + 0.5) / w - 0.5) * 360.0), float((0.5 - (y + 0.5) / h) * 180.0)


def _sample_equirect(img, rd, yaw_deg):
    """Bilinear lookup of equirect ``img`` along demo-world directions rd (N, 3)."""
    h, w = img.shape[:2]
    lon = np.arctan2(rd[:, 0], rd[:, 2]) - np.radians(yaw_deg)
    lat = np.arcsin(np.clip(rd[:, 1], -1, 1))
    u = (lon / (2 * np.pi) + 0.5) * w - 0.5
    v = np.clip((0.5 - lat / np.pi) * h - 0.5, 0, h - 1.001)
    u0, v0 = np.floor(u), np.floor(v)
    fu, fv = (u - u0)[:, None], (v - v0)[:, None]
    u0, v0 = u0.astype(int) % w, v0.astype(int)
    u1, v1 = (u0 + 1) % w, v0 + 1
    top = img[v0, u0] * (1 - fu) + img[v0, u1] * fu
    bottom = img[v1, u0] * (1 - fu) + img[v1, u1] * fu
    return top * (1 - fv) + bottom * fv


@lru_cache(maxsize=8)
def _load_photo(path: str) -> np.ndarray:
    """A photo as ACEScg radiance (at most 640 wide), mean luminance PHOTO_TARGET."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((640, 640))
        rgb = np.asarray(im, np.float32) / 255.0
    lin = colour.convert(rgb, SRGB, colour.WORKING_SPACE).astype(np.float64)
    return (lin * PHOTO_TARGET / float(lin.reshape(-1, 3).mean(0) @ LUMA_ACESCG)).astype(np.float32)


def _hdri(scene):
    path = background_file("hdri", scene.hdri)
    return _load_hdri(str(path)) if path else None


def _photo(scene):
    path = background_file("photo", scene.photo) if scene.backdrop == "photo" else None
    return _load_photo(str(path)) if path else None


def _sky(rd, scene):
    hdri = _hdri(scene)
    if hdri is not None:
        return _sample_equirect(hdri[0], rd, scene.hdri_yaw_deg) * scene.env_gain
    t = np.clip(rd[:, 1], 0.0, 1.0)[:, None] ** 0.6
    return (1 - t) * np.asarray(scene.sky_horizon) + t * np.asarray(scene.sky_zenith)


def scene_ambient(scene) -> np.ndarray:
    """Fill irradiance (as a radiance: a white surface facing up reflects this) of the scene."""
    if scene.ambient_rgb is not None:
        return np.asarray(scene.ambient_rgb, np.float64)
    hdri, photo = _hdri(scene), _photo(scene)
    if hdri is not None:
        return hdri[1] * scene.env_gain
    if photo is not None:
        mean = photo.reshape(-1, 3).mean(0).astype(np.float64)
        return mean / float(mean @ LUMA_ACESCG) * AMBIENT_TARGET * scene.env_gain
    return 0.5 * (np.asarray(scene.sky_zenith) + np.asarray(scene.sky_horizon))


def _backdrop(ro, rd, scene):
    """Ray distance to the backdrop plane z = backdrop_z (inf where there is none)."""
    if scene.backdrop not in ("wall", "photo") or (scene.backdrop == "photo" and _photo(scene) is None):
        return np.full(rd.shape[0], np.inf)
    ahead = rd[:, 2] > 1e-6
    return np.where(ahead, (scene.backdrop_z - ro[:, 2]) / np.where(ahead, rd[:, 2], 1.0), np.inf)


def _photo_radiance(q, scene):
    """Emissive photo backdrop at points q on its plane (clamped at its sides, sky above)."""
    img = _photo(scene)
    h, w = img.shape[:2]
    width = scene.photo_width_m
    x = np.clip((q[:, 0] / width + 0.5) * w, 0, w - 1).astype(int)
    y = np.clip((1 - q[:, 1] / (width * h / w)) * h, 0, h - 1).astype(int)
    return img[y, x].astype(np.float64) * scene.env_gain


def _ground_albedo(q, scene):
    check = (np.floor(q[:, 0] / 0.5) + np.floor(q[:, 2] / 0.5)) % 2
    noise = 0.04 * np.sin(q[:, 0] * 7.3 + np.sin(q[:, 2] * 5.1))
    return np.where(check[:, None] > 0, np.asarray(scene.ground_a), np.asarray(scene.ground_b)) * (1 + noise[:, None])


# ---------------------------------------------------------------- light
def _key_light(q, scene):
    """The key at points q (N, 3): (direction towards it: (3,) for the sun, else (N, 3); its
    irradiance on a surface facing it: (3,) or (N, 3); distance to it per point or None)."""
    if scene.key == "lamp":
        d = np.asarray(scene.lamp_pos, np.float64)[None] - q
        r = np.linalg.norm(d, axis=1)
        return d / r[:, None], np.asarray(scene.lamp_rgb)[None] / (r * r)[:, None], r
    if scene.key == "none":
        return np.array([0.0, 1.0, 0.0]), np.zeros(3), None
    if scene.key != "sun":
        raise ValueError(f"DemoScene.key must be sun, lamp or none, got {scene.key!r}")
    return unit(scene.sun_dir), np.asarray(scene.sun_rgb), None


def _cos(nrm, to_light):
    if to_light.ndim == 1:
        return np.clip(nrm @ to_light, 0, 1)
    return np.clip(np.einsum("ij,ij->i", nrm, to_light), 0, 1)


def _shadow(q, to_light, dist, p, scene):
    """Soft shadow of the key at points q (already offset off their surface); 1 = lit."""
    if scene.key == "none":
        return np.ones(q.shape[0])
    rd = np.broadcast_to(to_light, q.shape) if to_light.ndim == 1 else to_light
    return _soft_shadow(q, rd, p, k=scene.shadow_k, tmax=dist)


# ---------------------------------------------------------------- render
def _down(img, ss, hw):
    h, w = hw
    a = img.reshape(h // ss, ss, w // ss, ss, -1).mean(axis=(1, 3))
    return a[..., 0] if a.shape[-1] == 1 else a


def _plate_backdrop(hw, scene):
    """The uneven green screen behind the character."""
    sx = (np.arange(hw[1]) + 0.5) / hw[1] - 0.5
    sy = (np.arange(hw[0]) + 0.5) / hw[0] - 0.5
    X, Y = np.meshgrid(sx, sy)
    falloff = (1.0 - 0.45 * (X**2 + Y**2) - 0.10 * Y + 0.05 * X).reshape(-1)
    return np.asarray(scene.screen_rgb)[None] * falloff[:, None]


def _environment(ro, rd, hit, p, scene, fwd):
    """(env, gt, depth) of the environment: sky / HDRI, the ground y = 0 and the backdrop, lit by
    the key and the fill; gt adds the character's and box's shadows and contact occlusion."""
    amb = scene_ambient(scene)
    env = _sky(rd, scene)
    tg = np.where(rd[:, 1] < -1e-6, -ro[:, 1] / np.minimum(rd[:, 1], -1e-6), np.inf)
    tb = _backdrop(ro, rd, scene)
    on_ground = np.isfinite(tg) & (tg < tb)
    on_back = np.isfinite(tb) & ~on_ground
    depth = np.full(rd.shape[0], FAR)
    depth[on_ground] = (tg[on_ground, None] * rd[on_ground] @ fwd)
    depth[on_back] = (tb[on_back, None] * rd[on_back] @ fwd)
    if scene.backdrop == "photo" and on_back.any():
        env[on_back] = _photo_radiance(ro[on_back] + tb[on_back, None] * rd[on_back], scene)
    lit = on_ground | (on_back if scene.backdrop == "wall" else False)
    ts = np.where(on_ground, tg, tb)
    qs = ro + np.where(lit, ts, 0.0)[:, None] * rd
    nrm = np.where(on_ground[:, None], np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0]))[lit]
    alb = np.broadcast_to(np.asarray(scene.wall_rgb, np.float64), (int(lit.sum()), 3)).copy()
    alb[on_ground[lit]] = _ground_albedo(qs[on_ground], scene)
    to_light, rgb, dist = _key_light(qs[lit], scene)
    direct = rgb * _cos(nrm, to_light)[:, None]
    env[lit] = alb * (direct + amb)
    gt = env.copy()
    vis = ~hit[lit]  # lit environment points the character / box does not hide
    if vis.any():
        sh = _shadow(qs[lit][vis] + nrm[vis] * 1e-3, to_light if to_light.ndim == 1 else to_light[vis],
                     None if dist is None else dist[vis], p, scene)
        d_near, _ = scene_sdf(qs[lit][vis], p)
        ao = 1.0 - scene.ao_strength * np.exp(-np.maximum(d_near, 0) / scene.ao_radius)
        gt[np.flatnonzero(lit)[vis]] = alb[vis] * (direct[vis] * sh[:, None] + amb * ao[:, None])
    return env, gt, depth


def render_frame(i: int, width: int, height: int, scene: DemoScene | None = None, ss: int = 2) -> dict:
    """All layers of frame index ``i``: float32 arrays plate_rgb, gt_rgb, env_rgb (H,W,3), alpha,
    char_mask, prop_mask (H,W) and depth (H,W, camera-space z; FAR for sky)."""
    scene = scene or DemoScene()
    p = pose(i, scene)
    ro, rd, fwd, hw = _camera_rays(width, height, scene, ss)
    t, hit, mats = _march(ro, rd, p)
    q = ro + t[:, None] * rd
    env, gt, depth = _environment(ro, rd, hit, p, scene, fwd)
    plate = _plate_backdrop(hw, scene)
    if hit.any():
        nrm = _normal(q[hit], p)
        alb = np.array([ALBEDO.get(m, (0.5, 0.5, 0.5)) for m in range(5)])[mats[hit]]
        view = -rd[hit]
        # studio: key from front-left-above, fill from front-right, rim of green spill at grazing angles
        key_l, fill_l = unit((-0.5, 0.6, -0.8)), unit((0.7, 0.2, -0.6))
        studio = 1.1 * np.clip(nrm @ key_l, 0, 1) + 0.35 * np.clip(nrm @ fill_l, 0, 1) + 0.12
        grazing = (1.0 - np.clip(np.sum(nrm * view, axis=1), 0, 1)) ** 3
        plate[hit] = alb * studio[:, None] + grazing[:, None] * np.asarray(scene.screen_rgb) * 0.8
        # environment lighting: key with cast shadows + sky hemisphere + ground bounce
        to_light, rgb, dist = _key_light(q[hit], scene)
        sh = _shadow(q[hit] + nrm * 2e-3, to_light, dist, p, scene)
        hemi = 0.5 + 0.5 * nrm[:, 1]
        bounce = np.asarray(scene.ground_b) * scene.bounce * (1 - hemi)[:, None]
        gt[hit] = alb * (rgb * (_cos(nrm, to_light) * sh)[:, None] + scene_ambient(scene) * hemi[:, None] + bounce)
        depth[hit] = (t[hit, None] * rd[hit]) @ fwd
    if tuple(scene.plate_gain) != (1.0, 1.0, 1.0):
        plate = plate * np.asarray(scene.plate_gain, np.float64)
    char = (hit & (mats != BOX)).astype(np.float64)
    prop = (hit & (mats == BOX)).astype(np.float64)
    out = {
        "plate_rgb": _down(plate, ss, hw), "gt_rgb": _down(gt, ss, hw), "env_rgb": _down(env, ss, hw),
        "char_mask": _down(char[:, None], ss, hw), "prop_mask": _down(prop[:, None], ss, hw),
        # depth: nearest sample of each pixel (no averaging across an edge)
        "depth": depth.reshape(hw[0] // ss, ss, hw[1] // ss, ss).min(axis=(1, 3)),
    }
    out["alpha"] = out["char_mask"] + out["prop_mask"]
    return {k: v.astype(np.float32) for k, v in out.items()}


def scene_light(scene: DemoScene, frames: int | None = None) -> dict:
    """The sheet's ``light`` JSON of a scene, as a set survey would give it (camera.py conventions):
    direction towards the sun, or from the character's mean position (torso height) over ``frames``
    frames (default: at contact) towards a lamp; colour normalised to luminance 1; intensity = key
    irradiance on a surface facing it there; softness; key_to_fill = key irradiance on the ground
    (intensity x sin(elevation)) over the fill's, so a ground shadow keeps 1 / (1 + key_to_fill) of the
    lit ground's light (as in light.LIGHT_SPEC). Overcast (no key): only ``key_to_fill`` 0."""
    amb = scene_ambient(scene)
    if scene.key == "none":
        return {"key_to_fill": 0.0}
    if scene.key == "lamp":
        idx = range(frames) if frames else [int(round(scene.contact_at))]
        mid = np.array([np.mean([pose(i, scene)["cx"] for i in idx]), 1.0, 0.0])
        d = np.asarray(scene.lamp_pos, np.float64) - mid
        direction, rgb = d, np.asarray(scene.lamp_rgb, np.float64) / float(d @ d)
    else:
        direction, rgb = np.asarray(scene.sun_dir, np.float64), np.asarray(scene.sun_rgb, np.float64)
    az, el = azimuth_elevation(to_camera_world(direction, scene, point=False))
    lum = float(rgb @ LUMA_ACESCG)
    return {"azimuth_deg": round(az, 3), "elevation_deg": round(el, 3),
            # the renderer's surfaces reflect albedo x irradiance; physically (light.py) radiance is
            # albedo x E / pi, so the irradiance a survey would measure is pi times the renderer's
            "colour": [round(float(c), 4) for c in rgb / lum], "intensity": round(np.pi * lum, 4),
            "softness_deg": round(float(np.degrees(np.arctan(1.0 / scene.shadow_k))), 3),
            "key_to_fill": round(lum * np.sin(np.radians(el)) / float(amb @ LUMA_ACESCG), 4)}


# ---------------------------------------------------------------- files
SHOT_SCENES = {
    "sh010": DemoScene(),
    "sh020": DemoScene(sun_dir=(-0.6, 0.55, -0.3), sun_rgb=(3.0, 2.3, 1.6), sky_zenith=(0.20, 0.22, 0.45),
                       sky_horizon=(0.80, 0.55, 0.40), ground_a=(0.35, 0.35, 0.33), ground_b=(0.25, 0.25, 0.24)),
    "sh030": DemoScene(cam_pos=(0.6, 1.6, -5.5), sun_dir=(0.2, 0.9, 0.4), speed=0.11),
}


def _srgb8(rgb):
    enc = colour.convert(np.ascontiguousarray(rgb, np.float32), colour.WORKING_SPACE, SRGB)
    return (np.clip(enc, 0, 1) * 255 + 0.5).astype(np.uint8)


def _write_png(path, rgb):
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(_srgb8(rgb)).save(tmp, format="PNG")


def _write_jpg(path, rgb):
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(_srgb8(rgb)).save(tmp, format="JPEG", quality=95)


def _write_mp4(path, frames_rgb, fps):
    import imageio_ffmpeg

    h, w = frames_rgb[0].shape[:2]
    with atomic_path(path) as tmp:
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "12",
               "-threads", "1", str(tmp)]
        proc = subprocess.run(cmd, input=b"".join(_srgb8(f).tobytes() for f in frames_rgb), capture_output=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg failed writing {path}: {proc.stderr.decode()[-2000:]}")


def make_demo_shot(out_root, shot: str, width: int, height: int, first: int, last: int, plate_format: str = "exr",
                   env_kind: str = "sequence", fps: float = 24, seed: int = 0, scene: DemoScene | None = None) -> dict:
    """Render one demo shot under out_root/shot/{plate,env,truth}/ (see module doc); returns paths."""
    if width % 2 or height % 2:
        raise ValueError(f"demo shot {shot}: width and height must be even, got {width}x{height}")
    scene = dataclasses.replace(scene or SHOT_SCENES.get(shot, DemoScene()), contact_at=0.6 * (last - first))
    root = Path(out_root) / shot
    frames = range(first, last + 1)
    plates = []
    env_still = None
    for i, f in enumerate(frames):
        r = render_frame(i, width, height, scene)
        attrs = {"shot": shot, "frame": f, "framesPerSecond": fps, "software": "cinecomp demo"}
        if plate_format == "exr":
            rgba = np.concatenate([r["plate_rgb"], np.ones_like(r["alpha"])[..., None]], -1)
            exrio.write_rgba(root / "plate" / f"{shot}_plate.{f:04d}.exr", rgba, attrs=attrs)
        elif plate_format == "png":
            _write_png(root / "plate" / f"{shot}_plate.{f:04d}.png", r["plate_rgb"])
        elif plate_format == "mp4":
            plates.append(r["plate_rgb"])
        else:
            raise ValueError(f"unknown plate_format {plate_format!r} (exr, png, mp4)")
        if env_kind == "sequence":
            exrio.write_rgba(root / "env" / f"{shot}_env.{f:04d}.exr", r["env_rgb"], attrs=attrs)
        elif env_still is None:
            env_still = r["env_rgb"]
        gt = np.concatenate([r["gt_rgb"], np.ones_like(r["alpha"])[..., None]], -1)
        layers = exrio.half_channels({c: gt[..., k] for k, c in enumerate("RGBA")}, attrs)
        layers.update({"alpha.A": r["alpha"], "mask.character": r["char_mask"], "mask.prop": r["prop_mask"],
                       "depth.Z": r["depth"]})
        exrio.write_exr(root / "truth" / f"{shot}_truth.{f:04d}.exr", layers, attrs=attrs)
    if plate_format == "mp4":
        _write_mp4(root / "plate" / f"{shot}_plate.mp4", plates, fps)
    if env_kind == "image":
        _write_jpg(root / "env" / f"{shot}_env.jpg", env_still)
    plate = {"exr": f"plate/{shot}_plate.####.exr", "png": f"plate/{shot}_plate.####.png",
             "mp4": f"plate/{shot}_plate.mp4"}[plate_format]
    env = f"env/{shot}_env.####.exr" if env_kind == "sequence" else f"env/{shot}_env.jpg"
    return {"shot": shot, "plate": str(root / plate), "environment": str(root / env),
            "truth": str(root / "truth" / f"{shot}_truth.####.exr"), "first": first, "last": last}


DEMO_SHOTS = [  # shot, width, height, first, last, plate format, environment kind, fps
    ("sh010", 192, 108, 1001, 1024, "exr", "sequence", 24),
    ("sh020", 160, 96, 1001, 1016, "png", "image", 24),
    ("sh030", 128, 72, 1001, 1020, "mp4", "sequence", 25),
]


def _make_one(args):
    out_root, (s, w, h, a, b, fmt, env, fps) = args
    return make_demo_shot(out_root, s, w, h, a, b, plate_format=fmt, env_kind=env, fps=fps)


def make_demo(out_root="demo", workers: int | None = None) -> list[dict]:
    """The three demo shots of shots/shots.csv, rendered in parallel (one process per shot)."""
    from concurrent.futures import ProcessPoolExecutor

    workers = workers or min(len(DEMO_SHOTS), os.cpu_count() or 1)
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_make_one, [(out_root, spec) for spec in DEMO_SHOTS]))
