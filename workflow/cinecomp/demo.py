"""Deterministic demo shots: a numpy SDF ray-marcher draws a little character that walks up to a
box and pushes it.

Per frame it renders (a) the PLATE: character + box lit by a soft studio key/fill in front of an
uneven chroma-green backdrop (with a little green spill on grazing edges), and (b) the GROUND TRUTH:
the same character + box on a tiled ground under a sky and a sun, lit by them and casting soft
shadows, plus the environment alone, the true alpha, character/prop masks and depth. Everything is
scene-linear ACEScg. Geometry is supersampled 2x2, so alpha and masks are fractional at edges.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import colour, exrio
from .atomic import atomic_path

SRGB = "sRGB Encoded Rec.709 (sRGB)"
SKIN, SHIRT, TROUSERS, BOX = 1, 2, 3, 4
ALBEDO = {SKIN: (0.62, 0.38, 0.26), SHIRT: (0.12, 0.16, 0.55), TROUSERS: (0.22, 0.17, 0.12), BOX: (0.62, 0.30, 0.08)}
FAR = 1.0e4


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


def _norm(v):
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


def _soft_shadow(ro, rd, p, k=10.0, steps=40):
    res = np.ones(ro.shape[0])
    t = np.full(ro.shape[0], 0.02)
    for _ in range(steps):
        d, _ = scene_sdf(ro + t[:, None] * rd, p)
        res = np.minimum(res, np.clip(k * d / t, 0.0, 1.0))
        t += np.clip(d, 0.01, 0.3)
        if (t > 8).all():
            break
    return np.clip(res, 0.0, 1.0)


# ---------------------------------------------------------------- render
def _camera_rays(width, height, scene, ss=2):
    w, h = width * ss, height * ss
    fwd = _norm(np.subtract(scene.cam_target, scene.cam_pos))
    right = _norm(np.cross([0.0, 1.0, 0.0], fwd))
    up = np.cross(fwd, right)
    tan = np.tan(np.radians(scene.fov_deg) / 2)
    xs = ((np.arange(w) + 0.5) / w * 2 - 1) * tan
    ys = (1 - (np.arange(h) + 0.5) / h * 2) * tan * h / w
    X, Y = np.meshgrid(xs, ys)
    rd = fwd[None] + X.reshape(-1, 1) * right[None] + Y.reshape(-1, 1) * up[None]
    rd /= np.linalg.norm(rd, axis=1, keepdims=True)
    ro = np.broadcast_to(np.asarray(scene.cam_pos, np.float64), rd.shape).copy()
    return ro, rd, fwd, (h, w)


def _sky(rd, scene):
    t = np.clip(rd[:, 1], 0.0, 1.0)[:, None] ** 0.6
    return (1 - t) * np.asarray(scene.sky_horizon) + t * np.asarray(scene.sky_zenith)


def _ground_albedo(q, scene):
    check = (np.floor(q[:, 0] / 0.5) + np.floor(q[:, 2] / 0.5)) % 2
    noise = 0.04 * np.sin(q[:, 0] * 7.3 + np.sin(q[:, 2] * 5.1))
    return np.where(check[:, None] > 0, np.asarray(scene.ground_a), np.asarray(scene.ground_b)) * (1 + noise[:, None])


def _down(img, ss, hw):
    h, w = hw
    a = img.reshape(h // ss, ss, w // ss, ss, -1).mean(axis=(1, 3))
    return a[..., 0] if a.shape[-1] == 1 else a


def render_frame(i: int, width: int, height: int, scene: DemoScene | None = None, ss: int = 2) -> dict:
    """All layers of frame index ``i``: float32 arrays plate_rgb, gt_rgb, env_rgb (H,W,3), alpha,
    char_mask, prop_mask (H,W) and depth (H,W, camera-space z; FAR for sky)."""
    scene = scene or DemoScene()
    p = pose(i, scene)
    ro, rd, fwd, hw = _camera_rays(width, height, scene, ss)
    n = rd.shape[0]
    t, hit, mats = _march(ro, rd, p)
    q = ro + t[:, None] * rd
    sun = _norm(scene.sun_dir)
    sun_rgb = np.asarray(scene.sun_rgb)

    # environment: ground plane y=0 and sky
    tg = np.where(rd[:, 1] < -1e-6, -ro[:, 1] / np.minimum(rd[:, 1], -1e-6), np.inf)
    on_ground = np.isfinite(tg)
    qg = ro + np.where(on_ground, tg, 0.0)[:, None] * rd
    env = _sky(rd, scene)
    g_alb = _ground_albedo(qg[on_ground], scene)
    sky_amb = 0.5 * (np.asarray(scene.sky_zenith) + np.asarray(scene.sky_horizon))
    g_direct = sun_rgb * sun[1]
    env[on_ground] = g_alb * (g_direct + sky_amb)
    gt = env.copy()
    # shadows of the character + box on the ground (only where the ground is visible)
    vis_g = on_ground & ~hit
    if vis_g.any():
        sh = _soft_shadow(qg[vis_g] + np.array([0, 1e-3, 0]), np.broadcast_to(sun, (int(vis_g.sum()), 3)), p)
        # contact darkening (ambient occlusion) near the objects
        d_near, _ = scene_sdf(qg[vis_g], p)
        ao = 1.0 - 0.5 * np.exp(-np.maximum(d_near, 0) / 0.08)
        gt[vis_g] = g_alb[vis_g[on_ground]] * (g_direct * sh[:, None] + sky_amb * ao[:, None])

    # plate backdrop: uneven green screen
    sx = (np.arange(hw[1]) + 0.5) / hw[1] - 0.5
    sy = (np.arange(hw[0]) + 0.5) / hw[0] - 0.5
    X, Y = np.meshgrid(sx, sy)
    falloff = (1.0 - 0.45 * (X**2 + Y**2) - 0.10 * Y + 0.05 * X).reshape(-1)
    plate = np.asarray(scene.screen_rgb)[None] * falloff[:, None]

    depth = np.full(n, FAR)
    depth[on_ground] = (tg[on_ground, None] * rd[on_ground] @ fwd)
    if hit.any():
        nrm = _normal(q[hit], p)
        alb = np.array([ALBEDO.get(m, (0.5, 0.5, 0.5)) for m in range(5)])[mats[hit]]
        view = -rd[hit]
        # studio: key from front-left-above, fill from front-right, rim of green spill at grazing angles
        key_l, fill_l = _norm((-0.5, 0.6, -0.8)), _norm((0.7, 0.2, -0.6))
        studio = 1.1 * np.clip(nrm @ key_l, 0, 1) + 0.35 * np.clip(nrm @ fill_l, 0, 1) + 0.12
        grazing = (1.0 - np.clip(np.sum(nrm * view, axis=1), 0, 1)) ** 3
        plate[hit] = alb * studio[:, None] + grazing[:, None] * np.asarray(scene.screen_rgb) * 0.8
        # environment lighting: sun with cast shadows + sky hemisphere
        sh = _soft_shadow(q[hit] + nrm * 2e-3, np.broadcast_to(sun, (int(hit.sum()), 3)), p)
        hemi = 0.5 + 0.5 * nrm[:, 1]
        bounce = np.asarray(scene.ground_b) * 0.5 * (1 - hemi)[:, None]
        gt[hit] = alb * (sun_rgb * (np.clip(nrm @ sun, 0, 1) * sh)[:, None] + sky_amb * hemi[:, None] + bounce)
        depth[hit] = (t[hit, None] * rd[hit]) @ fwd
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
        layers = {c: gt[..., k].astype(np.float16) for k, c in enumerate("RGBA")}
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
