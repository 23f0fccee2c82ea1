"""The `harmonize` composite backend: what a compositor does by hand, with no weights (docs/harmonize.md).

Per shot (constants, so nothing flickers): the light (light stage), the camera, and an exposure and
colour gain that moves the character from the studio's light to the environment's.
Per frame:
  E2C  the keyed character and prop are relit as a *ratio* on the plate (texture survives): exposure
       and white balance matched in scene-linear, directional shading from the key with normals from
       the matte's shape, and light wrap of the environment at the edges;
  C2E  every object casts a shadow along the key onto the environment (ground plane or the plate's
       own depth): each object is its matte on cards turned to face the light, sliced along the light
       through its footprint (which stands behind the contact point, the matte's nearest), and each
       environment point looks towards the light through them (a shadow map gathered per pixel);
       the penumbra widens with the distance from the occluder. Contact darkening is the same look-up
       averaged over the sky dome, so it is strong where feet and prop meet the ground and fades away.
Everything applied is returned as layers (``harmonize.*``) for a compositor to dial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..camera import FAR, Camera, light_direction
from ..colour import LUMA_ACESCG, luminance
from ..perception.depth import character_parts
from ..perception.light import ALBEDO, PLATE_COLOUR_TRUST, ShotLight, sh_eval, up_shares  # noqa: F401
from ..params import Num, check_params, parse_json_object

LUMA = LUMA_ACESCG.astype(np.float32)  # ACEScg luminance

HARMONIZE_SPEC = {
    "exposure_match": Num(0.7, 0.0, 1.0, doc="how far the character's exposure follows the ratio of lights (times the estimate's confidence): the environment's light on the character over its light on the ground, against the studio's light on the character over its light on an upward surface (shading fitted on the plate); 0: keep the plate's exposure"),
    "light_colour": Num(1.0, 0.0, 1.0, doc="how far the character takes the colour of the environment's light (times the light estimate's confidence in it)"),
    "colour_match": Num(0.0, 0.0, 1.0, doc="how far the plate's own colour cast is removed (grey-world on the character)"),
    "albedo": Num(None, 0.02, 0.95, doc="empty (default): the plate's exposure is evidence, kept up to the ratio of lights; a number forces the old grey-world grade (character and prop pushed to this mean reflectance under the environment's light)"),
    "studio_stops": Num(0.0, -10.0, 10.0, doc="how much brighter (stops) the green-screen plate was exposed than the environment plate, for the same light (known from the camera reports: > 0 darkens the character)"),
    "exposure_stops": Num(0.0, -10.0, 10.0, doc="extra exposure on the character, in stops"),
    "relight": Num(0.6, 0.0, 2.0, doc="strength of the directional shading from the key (0: exposure/colour only)"),
    "shadow_density": Num(1.0, 0.0, 1.0, doc="1 blocks all key light in the cast shadow"),
    "shadow_softness_deg": Num(None, 0.0, 45.0, doc="angular size of the key for the penumbra (empty: the light's softness)"),
    "shadow_spread": Num(0.75, 0.0, 1.0, doc="a key whose direction is a guess casts, as far as it is a guess, its shadow spread over every azimuth and elevation (the expected shadow of an unknown direction; rests on the camera only): 0 none"),
    "contact": Num(1.0, 0.0, 2.0, doc="strength of contact darkening (occlusion of the sky near the objects)"),
    "contact_radius": Num(0.3, 0.01, 10.0, doc="distance (m) over which contact darkening fades"),
    "light_wrap": Num(0.0, 0.0, 2.0, doc="environment light wrapped onto the character's edges"),
    "light_wrap_size": Num(0.01, 0.0, 0.2, doc="width of the light wrap, as a fraction of the frame width"),
    "holdout": Num(None, 0.0, 1.0, doc="the environment nearer than an object (by the environment's Z and the object's contact) covers it, as a post in front of the actor; empty: 1 on the plate depth backend (a given Z), 0 on the others (a ground plane has nothing nearer; a depth model's guess could hide the actor)"),
}
HARMONIZE_EXAMPLE = '{"shadow_density": 0.8, "light_wrap": 0.5}'
LAYERS = ("harmonize.shadow", "harmonize.contact", "harmonize.holdout", "harmonize.relight.R", "harmonize.relight.G",
          "harmonize.relight.B", "harmonize.wrap.R", "harmonize.wrap.G", "harmonize.wrap.B")
RELIGHT_WIDTH = 512  # shading is smooth: normals and shading are worked out at this width at most
SHADOW_WIDTH = 1024  # cast shadows at this width at most (a 2K frame's shadow at half resolution)
# Shading from normals guessed off a matte is trusted within this range of the graded plate (a flat
# prop seen edge-on gets normals that face away from every light and would go black).
SHADE_RANGE = (0.4, 2.5)
# The ratio of lights moves the exposure by at most this many stops (a character in deep shade of a
# sunlit set is about 2 stops under the ground the plate was exposed for).
EXPOSURE_RANGE_STOPS = (-2.0, 1.0)
# The studio's shading fitted on the plate is trusted from this many solid pixels (all sampled frames,
# at RELIGHT_WIDTH at most), not at all below the minimum (a few pixels of a distant actor).
PLATE_FIT_MIN_PIXELS, PLATE_FIT_FULL_PIXELS = 64, 1024
PENUMBRA = 0.5  # Gaussian sigma of the penumbra per (distance x tan(angular radius))
MIN_SOFTNESS_DEG = 0.5  # even the sun's penumbra is ~0.5 degree wide
MAX_SHADOW_ELEVATION = 87.0  # an overhead key casts its shadow straight down; keep the maths finite
CONTACT_DIRS = [(az, el) for el in (25.0, 55.0) for az in range(0, 360, 45)]  # the sky dome, sampled
CONTACT_SOFTNESS_DEG = 15.0


def parse_harmonize_params(text: str) -> dict:
    if not text or not text.strip():
        return check_params({}, HARMONIZE_SPEC, what="harmonize_params")
    return check_params(parse_json_object(text, example=HARMONIZE_EXAMPLE), HARMONIZE_SPEC, what="harmonize_params")


# ------------------------------------------------------------------------------------------ light
# ------------------------------------------------------------------------------------------ E2C
def matte_normals(alpha: np.ndarray, camera: Camera) -> np.ndarray:
    """World normals (H, W, 3) of a matte's shape: the silhouette inflated like a soft blob (bent
    outwards at the edges, facing the camera in the middle), scaled by the matte's thickness."""
    solid = (alpha > 0.5).astype(np.uint8)
    if not solid.any() or solid.all():  # nothing keyed, or no edge anywhere (an opaque frame): facing the camera
        return np.broadcast_to(-camera.basis()[2], alpha.shape + (3,)).astype(np.float32, copy=False)
    dist = cv2.distanceTransform(solid, cv2.DIST_L2, 3)
    sigma = float(max(1.0, 0.7 * np.percentile(dist[solid > 0], 90)))  # about a limb's half-width
    soft = cv2.GaussianBlur(alpha.astype(np.float32, copy=False), (0, 0), sigma)
    gy, gx = np.gradient(soft)
    k = sigma * math.sqrt(2 * math.pi)  # a blurred step's slope peaks at 1 / (sigma sqrt(2 pi))
    nx, ny = -gx * k, gy * k  # right and up (image rows grow downwards)
    m = np.sqrt(nx * nx + ny * ny)
    scale = np.where(m > 0.95, 0.95 / np.maximum(m, 1e-6), 1.0)
    nx, ny = nx * scale, np.maximum(ny * scale, -0.3)  # things stand on the ground: lower edges are walls, not floors
    nz = np.sqrt(np.clip(1.0 - nx * nx - ny * ny, 0.0, 1.0))
    right, up, fwd = camera.basis()
    n = nx[..., None] * right + ny[..., None] * up - nz[..., None] * fwd
    return n.astype(np.float32, copy=False)


def object_normals(masks: dict, camera: Camera) -> np.ndarray:
    """Normals of the character and the prop, each inflated at its own thickness."""
    n = None
    for o in ("character", "prop"):
        m = masks.get(o)
        if m is None or not (m > 0.5).any():
            continue
        part = matte_normals(m, camera) * np.clip(m, 0, 1)[..., None]
        n = part if n is None else n + part
    if n is None:
        return matte_normals(np.zeros_like(masks["character"]), camera)
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    facing = -camera.basis()[2].astype(np.float32, copy=False)
    return np.where(length > 1e-3, n / np.maximum(length, 1e-3), facing).astype(np.float32, copy=False)


def light_wrap(env: np.ndarray, alpha: np.ndarray, size_px: float, strength: float) -> np.ndarray:
    """Premultiplied light wrap: the blurred environment spilling over the matte's inner edge."""
    if strength <= 0 or size_px <= 0:
        return np.zeros_like(env)
    a = np.clip(alpha, 0, 1).astype(np.float32, copy=False)
    h, w = a.shape
    f = max(1, int(size_px // 4))  # blur at a resolution where the wrap spans ~4 pixels, then scale back
    small = (max(1, w // f), max(1, h // f))

    def blur(img):
        if f == 1:
            return cv2.GaussianBlur(img, (0, 0), size_px)
        b = cv2.GaussianBlur(cv2.resize(img, small, interpolation=cv2.INTER_AREA), (0, 0), size_px / f)
        return cv2.resize(b, (w, h), interpolation=cv2.INTER_LINEAR)

    edge = a * (1.0 - blur(a))
    return strength * edge[..., None] * blur(np.ascontiguousarray(env, np.float32))


@dataclass
class ShotGrade:
    """Per-shot E2C constants: gain (exposure + colour) and the mean key+ambient on the objects."""

    gain: np.ndarray  # (3,)
    mean_irradiance: np.ndarray  # (3,) mean irradiance on the objects' normals in the environment
    plate_shading: np.ndarray  # (4,) the studio light on the plate: luminance ~ c0 + c . n, mean 1
    exposure: dict = field(default_factory=dict)  # the exposure estimate (exposure_estimate), as applied


def shot_grade(samples: list[tuple[np.ndarray, dict]], light: ShotLight, camera: Camera, params: dict) -> ShotGrade:
    """From a few (key RGBA premultiplied, masks {character, prop}) frames of the shot: the gain that moves
    the plate's character from the studio's light to the environment's, as a ratio of lights.

    The plate shows rho x E_studio / pi, the comp needs rho x E_env / pi: the gain is E_env / E_studio and
    the plate's own exposure and the actors' relative albedos are kept (a white shirt stays whiter than
    a black coat): one gain for the whole shot (``exposure_estimate``). Its exposure part scales with
    ``exposure_match`` and the estimate's confidence, the colour part with the confidence in the
    light's colour. ``albedo`` set: the old grey-world grade (mean radiance albedo x E / pi), for shots
    that want it."""
    fg_sum, a_sum, e_sum = np.zeros(3), 0.0, np.zeros(3)
    normals, lum, seen, weights = [], [], [], []
    for key, masks in samples:
        small = _shrink({"key": key, **masks}, RELIGHT_WIDTH)
        key, masks = small.pop("key"), small
        alpha = np.clip(key[..., 3], 0, 1)
        w = alpha
        if w.sum() < 1:
            continue
        fg_sum += key[..., :3].reshape(-1, 3).sum(0)
        a_sum += float(w.sum())
        n = object_normals(masks, camera)
        e = light.key(n) + light.ambient(n)
        e_sum += (e * w[..., None]).reshape(-1, 3).sum(0)
        solid = alpha > 0.9
        normals.append(n[solid])
        lum.append(luminance(key[..., :3][solid] / alpha[solid, None]))
        some = w > 0.02
        seen.append(n[some])
        weights.append(w[some])
    if a_sum < 1:
        return ShotGrade(np.ones(3, np.float32), np.ones(3, np.float32), np.array([1, 0, 0, 0], np.float32),
                         {"stops": 0.0, "confidence": 0.0, "source": "nothing keyed"})
    fg_mean = np.maximum(fg_sum / a_sum, 1e-6)
    e_mean = np.maximum(e_sum / a_sum, 1e-6)
    fg_l, e_l = float(fg_mean @ LUMA), float(e_mean @ LUMA)
    solid_normals, solid_lum = np.concatenate(normals), np.concatenate(lum)
    shading = fit_plate_shading(solid_normals, solid_lum)
    colour = params["light_colour"] * light.colour_trust * np.log2(e_mean / e_l) - params["colour_match"] * np.log2(fg_mean / fg_l)
    if params["albedo"] is not None:  # grey world: exposure to albedo x light (radiance rho E / pi)
        est = {"stops": params["exposure_match"] * math.log2(params["albedo"] * e_l / math.pi / fg_l),
               "confidence": 1.0, "source": f"grey world (albedo {params['albedo']})"}
        exposure = est["stops"]
    else:  # ratio of lights, each against the light its plate was exposed for
        est = exposure_estimate(e_l, light, shading, np.concatenate(seen), np.concatenate(weights), len(solid_lum))
        exposure = params["exposure_match"] * est["confidence"] * est["estimate"] - params["studio_stops"]
        est["stops"] = exposure
    log_gain = exposure + colour + params["exposure_stops"]
    return ShotGrade((2.0 ** log_gain).astype(np.float32), e_mean.astype(np.float32), shading, est)


def exposure_estimate(e_env: float, light: ShotLight, shading: np.ndarray, normals: np.ndarray, weights: np.ndarray,
                      fitted_pixels: int) -> dict:
    """The ratio of lights in stops, with its confidence and cues (stops).

    Each plate was exposed for its own light, and both the same way: the environment plate for the
    light on its ground (an upward surface), the green-screen plate for the studio's light on an
    upward surface. So E_env / E_studio on the character is (``env``) the environment's light on the
    character's normals (``e_env``, luminance) over its light on an upward surface, both from the
    light estimate (its level cancels), over (``studio``) the studio's light on the same normals over
    its light on an upward surface, both from the shading fitted on the plate (``fit_plate_shading``:
    its level cancels too, and the actors' albedos only blur it). Neither plate's absolute level is
    used: grey world (the scene reflects 18%) and the screen's brightness (screens are lit on their
    own, to the key's level or brighter) miss by stops on the path-traced set (bench/exposure_cues.py).
    Confidence: the light's in its shape on the character (``ShotLight.exposure_weight``: 0 for a
    guessed key direction) times the fit's (0 under PLATE_FIT_MIN_PIXELS solid pixels, 1 from
    PLATE_FIT_FULL_PIXELS)."""
    up = np.array([0.0, 1.0, 0.0], np.float32)
    e_up = max(float((light.key(up) + light.ambient(up)) @ LUMA), 1e-6)
    studio = np.clip(shading[0] + normals @ shading[1:], 0.2, None)
    s_mean = float((studio * weights).sum() / max(float(weights.sum()), 1e-6))
    s_up = max(float(shading[0] + shading[2]), 0.2)
    env_stops, studio_stops = math.log2(max(e_env, 1e-6) / e_up), math.log2(s_mean / s_up)
    estimate = float(np.clip(env_stops - studio_stops, *EXPOSURE_RANGE_STOPS))
    fit_conf = float(np.clip((fitted_pixels - PLATE_FIT_MIN_PIXELS) / (PLATE_FIT_FULL_PIXELS - PLATE_FIT_MIN_PIXELS), 0.0, 1.0))
    if np.array_equal(shading, [1, 0, 0, 0]):  # the fit failed (too few pixels, or no level): the studio's shape is unknown
        fit_conf = 0.0
    confidence = light.exposure_weight * fit_conf
    return {"estimate": estimate, "confidence": float(confidence),
            "source": "ratio of lights: environment light estimate / studio shading fitted on the plate",
            "cues": {"env": float(env_stops), "studio": float(studio_stops)},
            "confidences": {"light": float(light.exposure_weight), "plate_fit": fit_conf}}


def fit_plate_shading(normals: np.ndarray, lum: np.ndarray) -> np.ndarray:
    """Least-squares studio light on the plate, luminance ~ c0 + c . n over the solid matte (albedo
    varies, so this is only the low-order trend), normalised to c0 = 1 and |c| <= 0.8 so removing
    it never more than doubles or halves a pixel."""
    if len(lum) < 16:
        return np.array([1, 0, 0, 0], np.float32)
    a = np.c_[np.ones(len(lum)), normals]
    coef = np.linalg.lstsq(a, lum, rcond=None)[0]
    if coef[0] <= 1e-6:
        return np.array([1, 0, 0, 0], np.float32)
    c = coef[1:] / coef[0]
    norm = float(np.linalg.norm(c))
    if norm > 0.8:
        c *= 0.8 / norm
    return np.r_[1.0, c].astype(np.float32)


def relight_ratio(masks: dict, light: ShotLight, grade: ShotGrade, camera: Camera, strength: float) -> np.ndarray:
    """(H, W, 3) factor on the premultiplied foreground: the shot's gain times directional shading
    relative to the mean shading, so the exposure is the grade's and the key adds shape, divided
    by the studio's shading fitted on the plate (de-lighting)."""
    h, w = masks["character"].shape
    small = _shrink(masks, RELIGHT_WIDTH)
    n = object_normals(small, camera)
    studio = np.clip(grade.plate_shading[0] + n @ grade.plate_shading[1:], 0.2, None)[..., None]
    shade = (light.key(n) + light.ambient(n)) / grade.mean_irradiance / studio
    # the shape of the change of light only: its mean over the objects is 1, so the level stays the
    # grade's (dividing out the studio's shading must not move the exposure)
    weight = np.clip(small["character"] + small.get("prop", 0.0), 0.0, 1.0)
    if weight.sum() > 1e-6:
        shade = shade / np.maximum((shade * weight[..., None]).reshape(-1, 3).sum(0) / weight.sum(), 1e-6)
    shade = np.clip(1.0 + strength * (shade - 1.0), SHADE_RANGE[0], SHADE_RANGE[1]).astype(np.float32, copy=False)
    if shade.shape[:2] != (h, w):
        shade = cv2.resize(shade, (w, h), interpolation=cv2.INTER_LINEAR)
    return (grade.gain * shade).astype(np.float32, copy=False)


def _shrink(images: dict, max_width: int) -> dict:
    """Images (H, W[, C]) scaled down (area) so the width is at most ``max_width``; the camera's focal
    length in pixels scales with the width, so the same Camera describes the smaller frame."""
    h, w = next(iter(images.values())).shape[:2]
    if w <= max_width:
        return images
    size = (max_width, max(1, int(round(h * max_width / w))))
    return {k: cv2.resize(np.ascontiguousarray(v, np.float32), size, interpolation=cv2.INTER_AREA)
            for k, v in images.items()}


# ------------------------------------------------------------------------------------------ C2E
def _blur_levels(mask: np.ndarray, max_sigma: float) -> list[tuple[float, float, np.ndarray]]:
    """(sigma in full-res pixels, scale, image) of a matte blurred at doubling sigmas; the wide
    ones at reduced resolution (cheap at 2K)."""
    out = [(0.0, 1.0, mask.astype(np.float32, copy=False))]
    img, scale, sigma = mask.astype(np.float32, copy=False), 1.0, 1.0
    while sigma <= max_sigma * 2 and min(img.shape) > 4:
        if sigma >= 4 * (1.0 / scale):  # blur at half resolution once sigma spans 4 of its pixels
            img = cv2.resize(img, (max(1, img.shape[1] // 2), max(1, img.shape[0] // 2)), interpolation=cv2.INTER_AREA)
            scale *= 0.5
        out.append((sigma, scale, cv2.GaussianBlur(img, (0, 0), max(0.3, sigma * scale))))
        sigma *= 2
    return out


def world_points(depth: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World x, y, z planes (H, W) float32 of a depth map (camera-space z)."""
    h, w = depth.shape
    right, up, fwd = (v.astype(np.float32) for v in camera.basis())
    f = np.float32(camera.focal_px(w))
    xs = (np.arange(w, dtype=np.float32) + 0.5 - w / 2) / f
    ys = (np.arange(h, dtype=np.float32) + 0.5 - h / 2) / f
    z = depth.astype(np.float32)
    pos = camera.position.astype(np.float32)
    # ray (z-normalised, so depth scales it) = fwd + x right - y up
    return tuple(pos[i] + z * (fwd[i] + xs[None, :] * right[i] - ys[:, None] * up[i]) for i in range(3))


def cast_occlusion(points: np.ndarray, valid: np.ndarray, levels, contact: np.ndarray, direction: np.ndarray,
                   camera: Camera, size: tuple[int, int], softness_deg: float, offset: np.ndarray | None = None,
                   falloff_m: float | None = None, lateral_scale: float = 1.0) -> np.ndarray:
    """How much of a light from ``direction`` one object blocks at each world point (H, W).

    The object is its camera matte on a vertical card through ``contact``, turned about the vertical
    to face the light (the silhouette of a roughly round body changes little with the angle); a point
    is shadowed where its ray towards the light crosses the card on the matte. The matte is read
    blurred by the penumbra: the distance to the card times the light's angular size. ``offset`` (a
    horizontal world vector, m) moves the card from the contact (a slice of a thick object) while it
    still reads the matte as seen on the contact's card; ``lateral_scale``
    widens (> 1) or narrows the card across the light (the object's width seen from the light over its
    width seen from the camera). ``falloff_m``: occlusion fades as exp(-distance / falloff) (contact
    darkening is an occluder's effect at close range)."""
    w, h = size
    az, el = math.atan2(direction[0], direction[2]), math.asin(float(np.clip(direction[1], -1, 1)))
    el = min(el, math.radians(MAX_SHADOW_ELEVATION))
    d = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)], np.float32)
    n_card = np.array([math.sin(az), 0.0, math.cos(az)], np.float32)
    phi = (az + math.pi / 2) % math.pi - math.pi / 2  # the card's turn from camera-facing, in (-90, 90]
    lateral = np.array([math.cos(phi), 0.0, -math.sin(phi)], np.float32)
    c = np.asarray(contact, np.float32)
    slice_c = c if offset is None else c + np.asarray(offset, np.float32)
    px, py, pz = points
    # per pixel, in (H, W) planes: distance s along the ray to the card, the hit's height on it
    s = ((slice_c[0] - px) * n_card[0] + (slice_c[2] - pz) * n_card[2]) / float(d @ n_card)
    height = py + s * d[1]
    ok = valid & (s > 0) & (height > 0)
    out = np.zeros((h, w), np.float32)
    rows, cols = np.flatnonzero(ok.any(axis=1)), np.flatnonzero(ok.any(axis=0))
    if rows.size == 0:
        return out
    win = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # only where a shadow can fall
    s, height, ok = s[win], height[win], ok[win]
    lat = ((px[win] - slice_c[0]) * lateral[0] + (pz[win] - slice_c[2]) * lateral[2] + s * float(d @ lateral)) / np.float32(lateral_scale)
    # the hit's place on the camera-facing card through the contact (where the matte is), projected
    right, up, fwd = (v.astype(np.float32) for v in camera.basis())
    rel0 = (c - camera.position).astype(np.float32)
    x_c = rel0 @ right + lat * right[0] + height * right[1]
    y_c = rel0 @ up + lat * up[0] + height * up[1]
    z_c = np.maximum(rel0 @ fwd + lat * fwd[0] + height * fwd[1], 1e-3)
    f = np.float32(camera.focal_px(w))
    u = np.where(ok, x_c / z_c * f + np.float32(w / 2 - 0.5), np.float32(-1e4))
    v = np.where(ok, -y_c / z_c * f + np.float32(h / 2 - 0.5), np.float32(-1e4))
    card_z = max(float((c - camera.position) @ camera.basis()[2]), 1e-3)
    # a disc source of angular radius r blurs by +-s tan(r); a Gaussian of half that sigma matches it
    px_per_m = np.float32(PENUMBRA * math.tan(math.radians(max(softness_deg, MIN_SOFTNESS_DEG))) * f / card_z)
    sigma = np.where(ok, s * px_per_m, np.float32(0.0))
    occ = _sample_levels(levels, u, v, sigma)
    if falloff_m is not None:
        occ *= np.exp(-np.maximum(s, 0.0) / np.float32(falloff_m))
    out[win] = occ
    return out


def _sample_levels(levels, u, v, sigma) -> np.ndarray:
    """The blurred matte at (u, v) (full-res pixel coordinates), interpolating between the two blur
    levels around each pixel's sigma (only the levels some pixel needs are read)."""
    sig = np.log2(np.maximum([lv[0] for lv in levels], 0.5))
    k = np.interp(np.log2(np.maximum(sigma, 0.5)), sig, np.arange(len(sig))).astype(np.float32)
    out = np.zeros(u.shape, np.float32)
    for i in range(int(np.floor(k.min())), int(np.ceil(k.max())) + 1):
        _, scale, img = levels[i]
        weight = np.clip(1.0 - np.abs(k - i), 0.0, 1.0)
        su = (u + 0.5) * np.float32(scale) - 0.5
        sv = (v + 0.5) * np.float32(scale) - 0.5
        sample = cv2.remap(img, su.astype(np.float32, copy=False), sv.astype(np.float32, copy=False), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        out += weight * sample
    return np.clip(out, 0.0, 1.0)


def object_width(mask: np.ndarray, contact: np.ndarray, camera: Camera) -> float:
    """How wide (m) an object's matte is at its contact's distance (5th to 95th percentile columns)."""
    cols = np.nonzero((mask > 0.5).any(axis=0))[0]
    if cols.size < 2:
        return 0.0
    z = max(float((np.asarray(contact) - camera.position) @ camera.basis()[2]), 1e-3)
    return float((np.percentile(cols, 95) - np.percentile(cols, 5) + 1) * z / camera.focal_px(mask.shape[1]))


MAX_PROP_M, MAX_BODY_DEPTH_M = 1.5, 0.3  # a prop's footprint, a person's depth (front to back) at most
# a person seen from the side is at least this fraction of their width seen from the front
MIN_SIDE_WIDTH = 0.5


@dataclass
class Footprint:
    """An object's footprint as the key sees it (``footprint``)."""

    centre: np.ndarray  # (3,) world point on the ground
    across: float  # its width across the light over its matte's width
    along: float  # its extent (m) along the light
    away: np.ndarray  # (3,) the light's horizontal unit direction, away from the light


def footprint(mask: np.ndarray, contact: np.ndarray, camera: Camera, solid: bool, direction) -> Footprint:
    """Where an object stands and how wide it is as the key sees it. The matte's lowest point (the
    contact) is its nearest, so the footprint stands behind it. A prop's orientation is unknown: its
    footprint is a square as wide as its matte, which from any side is (on average) as wide and as
    long. A person is as wide as the matte across the view and at most MAX_BODY_DEPTH_M deep along it,
    so narrower seen from the side."""
    w = object_width(mask, contact, camera)
    depth = min(w, MAX_PROP_M if solid else MAX_BODY_DEPTH_M)
    az = math.atan2(float(direction[0]), float(direction[2]))
    away = np.array([-math.sin(az), 0.0, -math.cos(az)])
    centre = np.asarray(contact, np.float64) + [0.0, 0.0, depth / 2]
    if solid or w <= 0:
        return Footprint(centre, 1.0, depth, away)
    side, front = abs(math.sin(az)), abs(math.cos(az))  # the light's turn from the view axis
    across = float(np.clip((w * front + depth * side) / w, MIN_SIDE_WIDTH, 1.0))
    return Footprint(centre, across, w * side + depth * front, away)


def _solid_shadow(points, valid, mask, contact, solid: bool, direction, camera: Camera, size, softness_deg: float,
                  max_sigma: float) -> np.ndarray:
    """The shadow of an object with depth: its matte on cards across the light (``footprint``) at slices
    0.1 m apart for a character, 0.2 m for a prop (at most four) along the light through its
    footprint; the slices move along the shadow's own length, so thin parts cast no stripes."""
    levels = _blur_levels(mask, max_sigma)
    fp = footprint(mask, contact, camera, solid, direction)
    n = int(min(4, 1 + math.ceil(fp.along / (0.2 if solid else 0.1)))) if fp.along > 0 else 1
    offsets = np.linspace(-fp.along / 2, fp.along / 2, n) if n > 1 else [0.0]
    base = fp.centre - np.asarray(contact, np.float64)
    return _combine(cast_occlusion(points, valid, levels, contact, direction, camera, size, softness_deg,
                                   base + t * fp.away, lateral_scale=fp.across) for t in offsets)


def _combine(occlusions) -> np.ndarray:
    free = None
    for o in occlusions:
        free = (1.0 - o) if free is None else free * (1.0 - o)
    return 1.0 - free


def environment_occlusion(depth: np.ndarray, objects: list[tuple[np.ndarray, np.ndarray, bool]], light: ShotLight,
                          camera: Camera, softness_deg: float, contact_radius: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """(key shadow, contact) occlusion of the environment (H, W) by the objects [(matte, contact,
    solid)]; each object's cards are sliced through its footprint (``footprint``)."""
    full_h, full_w = depth.shape
    objects = [(m, c, solid) for m, c, solid in objects if c is not None and (m > 0.02).any()]
    if not objects or not (depth < 0.5 * FAR).any():
        zeros = np.zeros((full_h, full_w), np.float32)
        return zeros, zeros
    if full_w > SHADOW_WIDTH:
        size = (SHADOW_WIDTH, max(1, int(round(full_h * SHADOW_WIDTH / full_w))))
        depth = cv2.resize(depth, size, interpolation=cv2.INTER_NEAREST)
        objects = [(cv2.resize(np.ascontiguousarray(m, np.float32), size, interpolation=cv2.INTER_AREA), c, solid)
                   for m, c, solid in objects]
    h, w = depth.shape
    valid = depth < 0.5 * FAR
    points = world_points(depth, camera)
    max_sigma = 0.25 * w
    shadow = _combine(_solid_shadow(points, valid, m, c, solid, light.direction, camera, (w, h), softness_deg, max_sigma)
                      for m, c, solid in objects)
    # contact: the same look-up averaged over the sky dome (cosine-weighted), at quarter resolution
    contact = _dome_occlusion(depth, objects, camera, [(light_direction(az, el), math.sin(math.radians(el)))
                                                       for az, el in CONTACT_DIRS],
                              CONTACT_SOFTNESS_DEG, falloff_m=contact_radius)
    contact = np.where(valid, contact, 0.0).astype(np.float32, copy=False)
    shadow = shadow.astype(np.float32, copy=False)
    if (h, w) != (full_h, full_w):
        shadow = cv2.resize(shadow, (full_w, full_h), interpolation=cv2.INTER_LINEAR)
        contact = cv2.resize(contact, (full_w, full_h), interpolation=cv2.INTER_LINEAR)
    return shadow, contact


SPREAD_AZIMUTHS = 8  # an unknown key's azimuths, sampled ...
# ... and elevations: spread at the default's 45 degrees alone, the expected shadow put a shot of the
# tune half (shot09) and 4 of the 14 generated shots below `over` at shadow_spread 1, and one (motion
# blur) at 0.75; over these three none at 0.75, with +0.25 dB on the tune half (bench/tune_harmonize.py)
SPREAD_ELEVATIONS = (20.0, 45.0, 70.0)


def _dome_occlusion(depth: np.ndarray, objects, camera: Camera, directions, softness_deg: float,
                    falloff_m: float | None = None) -> np.ndarray:
    """(H, W) occlusion by the objects [(matte, contact, ...)] averaged over ``directions`` [(unit
    vector towards the light, weight)]: the look-up of contact darkening and of a spread shadow, at
    quarter resolution (both are soft; the camera's focal length in pixels scales with the width, so
    the same Camera serves), 0 where the environment is far."""
    h, w = depth.shape
    f = 4 if min(h, w) >= 64 else 1
    sw, sh = max(1, w // f), max(1, h // f)
    small = cv2.resize(depth, (sw, sh), interpolation=cv2.INTER_NEAREST)
    ok = small < 0.5 * FAR
    pts = world_points(small, camera)
    levels = [(_blur_levels(cv2.resize(np.ascontiguousarray(m, np.float32), (sw, sh), interpolation=cv2.INTER_AREA),
                            0.25 * sw), c) for m, c, *_ in objects]
    occ, total = np.zeros((sh, sw), np.float32), 0.0
    for d, wgt in directions:
        d = np.asarray(d, np.float32)
        occ += np.float32(wgt) * _combine(cast_occlusion(pts, ok, lv, c, d, camera, (sw, sh), softness_deg, falloff_m=falloff_m)
                                          for lv, c in levels)
        total += wgt
    occ = np.where(ok, occ / max(total, 1e-12), 0.0).astype(np.float32)
    return cv2.resize(occ, (w, h), interpolation=cv2.INTER_LINEAR) if f > 1 else occ


def spread_shadow(depth: np.ndarray, objects: list[tuple[np.ndarray, np.ndarray, bool]], camera: Camera,
                  softness_deg: float) -> np.ndarray:
    """(H, W) the expected shadow of a key whose direction is unknown: the objects' shadow averaged over
    SPREAD_AZIMUTHS azimuths at each of SPREAD_ELEVATIONS (a guessed elevation is as unknown as the
    azimuth)."""
    objects = [(m, c) for m, c, _ in objects if c is not None and (m > 0.02).any()]
    if not objects or not (depth < 0.5 * FAR).any():
        return np.zeros(depth.shape, np.float32)
    dirs = [(light_direction(float(az), el), 1.0) for el in SPREAD_ELEVATIONS
            for az in np.arange(SPREAD_AZIMUTHS) * 360.0 / SPREAD_AZIMUTHS]
    return _dome_occlusion(depth, objects, camera, dirs, softness_deg)


HOLDOUT_MARGIN_M = 0.3  # an object's front may stand this far (+ 5% of its distance) before its contact ...
HOLDOUT_RAMP_M = 0.2  # ... and the environment covers it fully this much nearer still


def holdout(env_depth: np.ndarray, objects: list[tuple[np.ndarray, np.ndarray | None, bool]], camera: Camera) -> np.ndarray:
    """(H, W) 0..1: where the environment is nearer than an object (its distance at its contact, less a
    margin for a body that leans or a box's near face), the environment covers it; only inside the
    object's matte, so the ground below a contact (nearer, but never covered by the matte) stays out."""
    out = np.zeros(env_depth.shape, np.float32)
    near_env = env_depth < 0.5 * FAR
    for mask, contact, _ in objects:
        inside = mask > 0.02
        if contact is None or not inside.any():
            continue
        z = float((np.asarray(contact, np.float64) - camera.position) @ camera.basis()[2])
        front = z - HOLDOUT_MARGIN_M - 0.05 * z
        if front <= 0:
            continue
        cover = np.clip((front - env_depth) / HOLDOUT_RAMP_M, 0.0, 1.0)
        out = np.maximum(out, np.where(inside & near_env, cover, 0.0).astype(np.float32))
    if out.any():  # the environment's depth is one sample a pixel: soften its aliased edge by a pixel
        out = cv2.GaussianBlur(out, (0, 0), 0.7)
    return out


def environment_ratio(shadow: np.ndarray, contact: np.ndarray, light: ShotLight) -> np.ndarray:
    """(H, W, 3) factor on the environment from the applied shadow and contact (0..1): in shadow
    only the ambient remains (so shadows take the sky's colour); contact removes ambient."""
    key_share, amb_share = up_shares(light)
    ratio = 1.0 - shadow[..., None] * key_share - contact[..., None] * amb_share
    return np.clip(ratio, 0.0, 1.0).astype(np.float32, copy=False)


# ------------------------------------------------------------------------------------------ frame
def harmonize_frame(key: np.ndarray, env: np.ndarray, masks: dict, env_depth: np.ndarray, contacts: dict,
                    light: ShotLight, grade: ShotGrade, camera: Camera, params: dict) -> tuple[np.ndarray, dict]:
    """One frame: key (H, W, 4) premultiplied, env (H, W, 3), masks {character, prop}, the
    environment's depth, contacts {object: world point or None; ``actors``: this frame's contact per actor
    of the character mask, or None}. Returns (beauty RGBA, layers)."""
    h, w = env_depth.shape
    alpha = np.clip(key[..., 3], 0.0, 1.0).astype(np.float32, copy=False)
    objects = [(m.astype(np.float32, copy=False), c, False)  # one per actor (depth.character_parts)
               for m, c in character_parts(masks["character"], contacts.get("character"), contacts.get("actors"))]
    objects.append((masks["prop"].astype(np.float32, copy=False),
                    None if contacts.get("prop") is None else np.asarray(contacts["prop"], np.float32), True))
    softness = params["shadow_softness_deg"] if params["shadow_softness_deg"] is not None else light.softness_deg
    shadow, contact = environment_occlusion(env_depth, objects, light, camera, softness, params["contact_radius"])
    shadow = params["shadow_density"] * light.shadow_trust * shadow
    guess = params["shadow_spread"] * (1.0 - light.direction_weight) * float(np.clip(light.camera_confidence, 0.0, 1.0))
    if guess > 0:  # the part of the key whose direction is a guess: its expected shadow
        shadow = _combine([shadow, params["shadow_density"] * guess * spread_shadow(env_depth, objects, camera, softness)])
    contact = np.clip(params["contact"] * light.camera_confidence * contact, 0.0, 1.0)
    env_ratio = environment_ratio(shadow, contact, light)
    env_out = env[..., :3] * env_ratio
    relit = relight_ratio(masks, light, grade, camera, params["relight"] * light.direction_weight)
    fg = key[..., :3] * relit
    wrap = light_wrap(env_out, alpha, params["light_wrap_size"] * w, params["light_wrap"])
    held = (params["holdout"] or 0.0) * float(np.clip(light.camera_confidence, 0.0, 1.0))  # None: the stage decides
    held = held * holdout(env_depth, objects, camera) if held > 0 else np.zeros_like(alpha)
    shown = (1.0 - held)[..., None]  # what of the key the nearer environment leaves
    rgb = (fg + wrap) * shown + (1.0 - alpha[..., None] * shown) * env_out
    beauty = np.concatenate([rgb, np.ones_like(alpha)[..., None]], axis=-1)
    relit_layer = np.where(alpha[..., None] > 0, relit, 1.0)
    layers = {"harmonize.shadow": shadow, "harmonize.contact": contact, "harmonize.holdout": held}
    for i, c in enumerate("RGB"):
        layers[f"harmonize.relight.{c}"] = relit_layer[..., i]
        layers[f"harmonize.wrap.{c}"] = wrap[..., i]
    return beauty.astype(np.float32, copy=False), {k: v.astype(np.float32, copy=False) for k, v in layers.items()}


def harmonize_frames(keys, envs, masks, env_depths, contacts: dict, light_json: dict, camera: Camera,
                     params: dict) -> list[np.ndarray]:
    """Harmonize's beauty RGB of frames held in memory, as the composite stage makes it from files (one
    grade from 6 frames, then frame by frame): ``keys`` premultiplied RGBA, ``envs`` RGB, ``masks``
    {character, prop}, ``env_depths`` the environment's depth, ``contacts`` {object: [point or None per
    frame]}, ``light_json`` the light stage's light.json. Curation gives its samples this comp."""
    from ..frames import sample_indices

    light = ShotLight.from_json(light_json).trusted()
    picks = sample_indices(len(keys), 6)
    grade = shot_grade([(keys[i], masks[i]) for i in picks], light, camera, params)
    return [harmonize_frame(keys[i], envs[i], masks[i], env_depths[i], {**{o: contacts[o][i] for o in ("character", "prop")},
                                                                  "actors": contacts["actors"][i] if "actors" in contacts else None},
                            light, grade, camera, params)[0][..., :3] for i in range(len(keys))]
