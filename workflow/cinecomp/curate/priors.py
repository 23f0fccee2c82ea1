"""Curation priors: what turns a clip of a person in a real scene into a training pair (docs/curation.md).

Weight-free, per clip at the training resolution (frames scene-linear ACEScg, (T, H, W, 3)):

- :func:`camera_motion` — global image motion (phase correlation against the clip's first frame and
  frame to frame): a still camera allows the background model;
- :func:`background_masks` — the background model of a still camera: the clean plate is the
  per-pixel temporal median, a pixel is foreground where it differs from it in colour (not only in
  brightness: a darker pixel of the same chromaticity is the character's shadow, i.e. an effect on the
  environment), cleaned with morphology; the largest region is the character, small separate regions
  near it (a ball in the air) are the prop; a second, masked median (foreground and shadows left out)
  gives the clean plate, OpenCV inpainting where no frame saw the environment;
- :func:`inpaint_plate` — the clean plate of a moving camera: per frame, the character and its shadow
  inpainted;
- :func:`soft_alpha` — the binary masks feathered with the keyer's guided filter;
- :func:`deharmonize` — the harmonize relighting run backwards: the character's light in the shot
  (the light stage's estimate, at normals from the character's depth: the matte inflated as
  harmonize shapes it) is divided out and a random studio light (key direction, colour, intensity,
  flat fill) is applied, as one smooth ratio, then the character is put on an uneven chroma-green
  screen with spill at its edges, ready for the project's keyer;
- :func:`effect_mask` — where the character changes the environment: the frame differs from the
  clean plate outside the character (shadow, contact, moved things), near the character.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..camera import Camera, light_direction
from ..colour import LUMA_ACESCG
from ..composite.harmonize import object_normals
from ..perception.light import ShotLight

LUMA = LUMA_ACESCG.astype(np.float32)
SCREEN_RGB = np.array([0.045, 0.30, 0.055], np.float32)  # ACEScg chroma green (the demo's studio screen)
EPS = 1e-4


def _grey(rgb: np.ndarray) -> np.ndarray:
    """A display-like grey image (float32) for motion and edge measures."""
    return np.clip(rgb @ LUMA, 0.0, None).astype(np.float32) ** (1 / 2.2)


# ------------------------------------------------------------------------------------------ motion
def camera_motion(frames: np.ndarray, samples: int = 12) -> dict:
    """Global motion in pixels: ``drift`` (largest median optical flow of a sampled frame against the
    first) and ``per_frame`` (median frame-to-frame one). The median over the frame ignores a person
    covering less than half of it; a flat region reads as still."""
    t = len(frames)
    idx = np.unique(np.linspace(0, t - 1, min(samples, t)).round().astype(int))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)

    def u8(i):
        return (np.clip(_grey(frames[i]), 0, 1) * 255).astype(np.uint8)

    def shift(a, b):
        flow = dis.calc(u8(a), u8(b), None)
        return float(np.hypot(*np.median(flow.reshape(-1, 2), axis=0)))

    drift = [shift(idx[0], i) for i in idx[1:]]
    steps = [shift(i, i + 1) for i in idx[:-1] if i + 1 < t]
    return {"drift": max(drift, default=0.0), "per_frame": float(np.median(steps)) if steps else 0.0}


def stabilise(frames: np.ndarray, max_zoom: float = 1.25) -> tuple[np.ndarray, float] | None:
    """A hand-held clip aligned to its middle frame: per frame a similarity (rotation, scale, shift) fitted
    with RANSAC to ORB feature matches, then all frames zoomed about the centre by the least factor that
    keeps every warped frame's border outside the picture. Returns (aligned frames, zoom), or None when
    a frame cannot be matched or the zoom would exceed ``max_zoom`` (the camera moves too far)."""
    t, h, w = frames.shape[:3]
    ref = t // 2
    orb = cv2.ORB_create(2000, fastThreshold=5, edgeThreshold=8, patchSize=15)
    bf = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)

    def feats(i):
        return orb.detectAndCompute((np.clip(_grey(frames[i]), 0, 1) * 255).astype(np.uint8), None)

    kr, dr = feats(ref)
    if dr is None or len(kr) < 20:
        return None
    mats = []
    for i in range(t):
        if i == ref:
            mats.append(np.float64([[1, 0, 0], [0, 1, 0]]))
            continue
        k, d = feats(i)
        if d is None or len(k) < 20:
            return None
        m = bf.match(d, dr)
        if len(m) < 20:
            return None
        src = np.float32([k[x.queryIdx].pt for x in m])
        dst = np.float32([kr[x.trainIdx].pt for x in m])
        a, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1.5)
        if a is None or inl is None or inl.sum() < 12:
            return None
        mats.append(a)
    corners = lambda z: np.float64([[w / 2 + sx * w / (2 * z), h / 2 + sy * h / (2 * z)]  # noqa: E731
                                    for sx in (-1, 1) for sy in (-1, 1)])
    zoom = None
    for z in np.arange(1.0, max_zoom + 1e-9, 0.01):
        ok = True
        for a in mats:
            inv = cv2.invertAffineTransform(a)
            pts = corners(z) @ inv[:, :2].T + inv[:, 2]
            if (pts[:, 0] < 0).any() or (pts[:, 0] > w).any() or (pts[:, 1] < 0).any() or (pts[:, 1] > h).any():
                ok = False
                break
        if ok:
            zoom = float(z)
            break
    if zoom is None:
        return None
    zm = np.float64([[zoom, 0, w / 2 * (1 - zoom)], [0, zoom, h / 2 * (1 - zoom)], [0, 0, 1]])
    out = np.stack([cv2.warpAffine(frames[i], (zm @ np.vstack([mats[i], [0, 0, 1]]))[:2], (w, h),
                                   flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT) for i in range(t)])
    return out.astype(np.float32), zoom


def flow_motion(frames: np.ndarray, mask: np.ndarray) -> float:
    """Mean optical-flow speed (pixels / frame) inside the masks (the character's own motion)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    speeds = []
    prev = (_grey(frames[0]) * 255).astype(np.uint8)
    for i in range(1, len(frames)):
        cur = (_grey(frames[i]) * 255).astype(np.uint8)
        m = mask[i] > 0.5
        if m.sum() >= 8:
            flow = dis.calc(prev, cur, None)
            speeds.append(float(np.linalg.norm(flow[m], axis=-1).mean()))
        prev = cur
    return float(np.mean(speeds)) if speeds else 0.0


def sharpness(frames: np.ndarray, mask: np.ndarray, plate: np.ndarray) -> float:
    """Blur measure: variance of the Laplacian on the character (dilated masks) over that of the clean
    plate in the same region, averaged over frames (< ~0.3: the character is motion-blurred or soft)."""
    ratios = []
    ref_lap = cv2.Laplacian(_grey(plate), cv2.CV_32F)
    k = np.ones((5, 5), np.uint8)
    for f, m in zip(frames, mask):
        region = cv2.dilate((m > 0.5).astype(np.uint8), k) > 0
        inner = cv2.erode((m > 0.5).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        if inner.sum() < 16:
            continue
        lap = cv2.Laplacian(_grey(f), cv2.CV_32F)
        ref = float(ref_lap[~region].var()) if (~region).sum() > 16 else float(ref_lap.var())
        ratios.append(float(lap[inner].var()) / max(ref, 1e-8))
    return float(np.median(ratios)) if ratios else 0.0


# ------------------------------------------------------------------------------------------ masks
def _median(frames: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel median over frames, of the frames where ``weights`` (T, H, W) is true (all when None);
    returns (median, how many frames counted)."""
    if weights is None:
        return np.median(frames, axis=0).astype(np.float32), np.full(frames.shape[1:3], len(frames))
    data = np.where(weights[..., None], frames, np.nan)
    count = weights.sum(axis=0)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(data, axis=0)
    return np.nan_to_num(med).astype(np.float32), count


def _changes(frame: np.ndarray, plate: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(changed in colour: the character, darker with the same chromaticity: a shadow) of one frame."""
    f, p = np.clip(frame, 0, None) ** (1 / 2.2), np.clip(plate, 0, None) ** (1 / 2.2)
    lf, lp = f @ LUMA + EPS, p @ LUMA + EPS
    chroma = np.abs(f / lf[..., None] - p / lp[..., None]).max(-1) * np.minimum(lf, lp)
    ratio = lf / lp
    diff = np.abs(f - p).max(-1)
    shadow = (diff > threshold) & (ratio < 0.92) & (ratio > 0.25) & (chroma < 0.6 * threshold)
    return (diff > threshold) & ~shadow, shadow


def _clean(binary: np.ndarray, size: int) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    m = cv2.morphologyEx(binary.astype(np.uint8), cv2.MORPH_OPEN, k)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * size + 1,) * 2))
    # fill holes: what the border cannot reach through the background
    inv = (1 - m).astype(np.uint8)
    n, lab = cv2.connectedComponents(inv, connectivity=4)
    border = set(np.unique(np.r_[lab[0], lab[-1], lab[:, 0], lab[:, -1]]).tolist())
    holes = ~np.isin(lab, list(border)) & (inv > 0)
    return (m > 0) | holes


def split_objects(fg: np.ndarray, min_area: float = 0.002) -> tuple[np.ndarray, np.ndarray]:
    """(character, prop) of a foreground mask: the largest region is the character (with the regions
    touching it); separate regions below a third of its size within half its height of it are the
    prop; anything else (motion elsewhere in the scene) is dropped."""
    h, w = fg.shape
    n, lab, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(fg, bool), np.zeros_like(fg, bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    main = 1 + int(np.argmax(areas))
    char = lab == main
    x, y, bw, bh = stats[main, :4]
    prop = np.zeros_like(fg, bool)
    reach = 0.5 * bh
    for i in range(1, n):
        if i == main or areas[i - 1] < min_area * h * w:
            continue
        cx, cy, cw, ch = stats[i, :4]
        near = (cx < x + bw + reach and cx + cw > x - reach and cy < y + bh + reach and cy + ch > y - reach)
        if near and areas[i - 1] < areas[main - 1] / 3:
            prop |= lab == i
        elif near:
            char |= lab == i
    return char, prop


def background_masks(frames: np.ndarray, threshold: float = 0.1, samples: int = 48) -> dict:
    """The background model of a still camera (module doc): per frame ``character``, ``prop``,
    ``shadow`` (bool (T, H, W)), the clean ``plate`` (H, W, 3) and ``unseen`` (the share of the plate
    no frame showed, inpainted)."""
    t, h, w = frames.shape[:3]
    idx = np.unique(np.linspace(0, t - 1, min(samples, t)).round().astype(int))
    plate, _ = _median(frames[idx])
    size = max(3, int(round(min(h, w) / 60)) | 1)
    char, prop, shadow = (np.zeros((t, h, w), bool) for _ in range(3))
    for i in range(t):
        changed, sh = _changes(frames[i], plate, threshold)
        c, p = split_objects(_clean(changed, size))
        # darker-only pixels with the character's colour-changed part above them in their column are
        # the character (dark trousers on a light floor); the rest of them, beside it, its shadow
        legs = sh & (np.maximum.accumulate(c, axis=0) > 0)
        char[i], prop[i] = split_objects(_clean(c | p | legs, size))
        shadow[i] = sh & ~char[i] & ~prop[i]
    # second pass: the median of what each sampled frame shows of the environment
    k = np.ones((2 * size + 1,) * 2, np.uint8)
    seen = np.stack([cv2.dilate((char[i] | prop[i] | shadow[i]).astype(np.uint8), k) == 0 for i in idx])
    plate2, count = _median(frames[idx], seen)
    unseen = count == 0
    if unseen.any():
        plate2 = inpaint(plate2, unseen)
    return {"character": char, "prop": prop, "shadow": shadow, "plate": plate2, "unseen": float(unseen.mean())}


def inpaint(rgb: np.ndarray, hole: np.ndarray, radius: int = 5) -> np.ndarray:
    """OpenCV Telea inpainting of a scene-linear image, in an 8-bit gamma encoding scaled to the image's
    range (only the hole takes the 8-bit values; the rest is kept as it was)."""
    if not hole.any():
        return rgb
    enc = np.clip(rgb, 0, None) ** (1 / 2.2)
    top = max(float(np.percentile(enc[~hole], 99.5)) if (~hole).any() else 1.0, 1e-4) * 1.1
    u8 = (np.clip(enc / top, 0, 1) * 255 + 0.5).astype(np.uint8)
    out = cv2.inpaint(u8, hole.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    back = (out.astype(np.float32) / 255 * top) ** 2.2
    return np.where(hole[..., None], back, rgb).astype(np.float32)


def inpaint_plate(frame: np.ndarray, remove: np.ndarray, grow: int = 2) -> np.ndarray:
    """Clean plate of one frame of a moving camera: ``remove`` (character, prop, shadow) grown and inpainted."""
    k = np.ones((2 * grow + 1,) * 2, np.uint8)
    return inpaint(frame, cv2.dilate(remove.astype(np.uint8), k) > 0, radius=max(3, 2 * grow))


def soft_alpha(mask: np.ndarray, frame: np.ndarray, radius: int = 2) -> np.ndarray:
    """A binary mask feathered along the frame's edges (guided filter with the frame's grey as guide)."""
    from ..perception.key import guided_filter

    guide = _grey(frame)
    a = guided_filter(guide, mask.astype(np.float32), radius, 1e-3)
    a = np.clip(a, 0.0, 1.0)
    solid = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    outside = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) == 0
    return np.where(solid, 1.0, np.where(outside, 0.0, a)).astype(np.float32)


# ------------------------------------------------------------------------------------------ pair
def random_studio(rng: np.random.Generator) -> dict:
    """A random flat studio light in camera.py's world frame: key from the camera's side (azimuth
    180 +- 70, elevation 10..60), colour within a white balance's drift, key:fill 1..4, and the
    character's mean luminance it gives (exposure) 0.10..0.30."""
    az, el = 180.0 + rng.uniform(-70, 70), rng.uniform(10, 60)
    tint = np.array([1 + rng.uniform(-0.12, 0.12), 1.0, 1 + rng.uniform(-0.12, 0.12)])
    tint /= float(tint @ LUMA)
    return {"direction": light_direction(az, el).tolist(), "azimuth_deg": round(az, 2), "elevation_deg": round(el, 2),
            "key_rgb": (tint * rng.uniform(1.0, 4.0)).tolist(), "fill_rgb": [1.0, 1.0, 1.0],
            "exposure": float(rng.uniform(0.10, 0.30))}


def studio_irradiance(studio: dict, normals: np.ndarray) -> np.ndarray:
    d = np.asarray(studio["direction"], np.float32)
    e = np.clip(normals @ d, 0, None)[..., None] * np.asarray(studio["key_rgb"], np.float32)
    if "fill_direction" in studio:  # a directional fill (the demo's studio)
        e = e + np.clip(normals @ np.asarray(studio["fill_direction"], np.float32), 0, None)[..., None] \
            * np.asarray(studio["fill_dir_rgb"], np.float32)
    return e + np.asarray(studio["fill_rgb"], np.float32)


def deharmonize(frame: np.ndarray, alpha: np.ndarray, masks: dict, plate: np.ndarray, light: dict,
                camera: Camera, studio: dict, gain: float | None = None, ratio_range=(0.4, 2.5)) -> tuple:
    """One frame's character relit from the shot's light to ``studio`` as a ratio (module doc).

    ``alpha`` (H, W) soft cut-out (character + prop), ``masks`` {character, prop} (H, W) for the normals,
    ``plate`` the clean plate (unmixes the environment out of soft edges). Returns (fg straight colour
    relit (H, W, 3), the ratio (H, W, 3), gain): ``gain`` (exposure) is worked out on the first frame
    when None and passed back in for the next ones, so the window does not flicker."""
    shot = ShotLight.from_json(light)
    n = object_normals({k: masks[k].astype(np.float32) for k in ("character", "prop")}, camera)
    e_shot = np.clip(shot.key(n) + shot.ambient(n), 1e-3, None)
    e_studio = studio_irradiance(studio, n)
    ratio = e_studio / e_shot
    a = np.clip(alpha, 0, 1)[..., None]
    # unmix the environment out of soft edges only where the matte is mostly solid (dividing by a small
    # alpha amplifies any plate error into a bright fringe), and never above twice the frame's value
    straight = np.where(a > 0.6, (frame - (1 - a) * plate) / np.maximum(a, 0.6), frame)
    straight = np.clip(straight, 0, 2 * np.maximum(frame, 0) + 1e-4)
    if gain is None:
        solid = alpha > 0.5
        lum = float(((straight * ratio) @ LUMA)[solid].mean()) if solid.any() else 1.0
        gain = studio.get("exposure", 0.18) / max(lum, 1e-4) if studio.get("exposure") else 1.0
    r = ratio * gain
    # the ratio is a light, smooth over the character: bounded relative to its median as harmonize bounds
    # its shading (a dark shadow wrongly inside the matte is not blown up to white)
    med = np.median(r[alpha > 0.5], axis=0) if (alpha > 0.5).any() else np.ones(3, np.float32)
    r = np.clip(r, med * ratio_range[0], med * ratio_range[1]).astype(np.float32)
    return (straight * r).astype(np.float32), r, gain


def green_plate(fg: np.ndarray, alpha: np.ndarray, rng: np.random.Generator | None, screen_gain: float = 1.0,
                spill: float = 0.3, noise: float = 0.004) -> np.ndarray:
    """The relit character over an uneven chroma-green screen (falloff like the demo's studio), with
    green spill at its soft edges and a little sensor noise."""
    h, w = alpha.shape
    sx, sy = np.meshgrid((np.arange(w) + 0.5) / w - 0.5, (np.arange(h) + 0.5) / h - 0.5)
    falloff = (1.0 - 0.45 * (sx ** 2 + sy ** 2) - 0.10 * sy + 0.05 * sx).astype(np.float32)
    screen = SCREEN_RGB * screen_gain * falloff[..., None]
    a = np.clip(alpha, 0, 1)[..., None]
    edge = 4 * a * (1 - a)
    out = fg * a + (1 - a) * screen + spill * edge * screen
    if rng is not None and noise > 0:
        out = out + rng.normal(0, noise, out.shape).astype(np.float32) * np.sqrt(np.clip(out, 0, None) + 0.01)
    return np.clip(out, 0, None).astype(np.float32)


def effect_mask(target: np.ndarray, env: np.ndarray, alpha: np.ndarray, threshold: float = 0.04,
                reach: float = 0.6, cutout: np.ndarray | None = None) -> np.ndarray:
    """(H, W) 0..1: where the frame differs from the clean plate outside the character (its shadow,
    contact, things it moves), within ``reach`` x the character's height of it. ``cutout`` (the
    character's own mask, when it is wider than ``alpha``) is left out too."""
    t = np.clip(target, 0, None) ** (1 / 2.2)
    e = np.clip(env, 0, None) ** (1 / 2.2)
    diff = np.abs(t - e).max(-1)
    inside = np.clip(alpha, 0, 1)
    if cutout is not None:
        grown = cv2.dilate(cutout.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
        inside = np.maximum(inside, grown)
    m = np.clip((diff - threshold) / (2 * threshold), 0, 1) * (1 - inside)
    solid = (alpha > 0.5).astype(np.uint8)
    if solid.any():
        rows = np.flatnonzero(solid.any(1))
        r = max(2, int(reach * (rows[-1] - rows[0] + 1)))
        dist = cv2.distanceTransform(1 - solid, cv2.DIST_L2, 3)
        m = m * np.clip(1.5 - dist / r, 0, 1)
    else:
        m = m * 0
    return cv2.GaussianBlur(m.astype(np.float32), (0, 0), 0.7)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks after moving ``a`` onto ``b``'s centroid (a walking character is not unstable)."""
    if a.any() and b.any():
        ya, xa = np.nonzero(a)
        yb, xb = np.nonzero(b)
        m = np.float32([[1, 0, xb.mean() - xa.mean()], [0, 1, yb.mean() - ya.mean()]])
        a = cv2.warpAffine(a.astype(np.uint8), m, a.shape[::-1], flags=cv2.INTER_NEAREST) > 0
    u = (a | b).sum()
    return float((a & b).sum() / u) if u else 1.0


def finite_depth(z: np.ndarray, far: float) -> np.ndarray:
    """Depth for a sample: ``inf`` where unknown (sky at the camera's FAR)."""
    z = np.asarray(z, np.float32)
    return np.where(z >= far * 0.999, np.inf, z).astype(np.float32)


__all__ = ["camera_motion", "flow_motion", "sharpness", "background_masks", "inpaint", "inpaint_plate",
           "soft_alpha", "random_studio", "deharmonize", "green_plate", "effect_mask", "mask_iou", "finite_depth"]
