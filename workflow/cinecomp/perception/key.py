"""The `chroma` keyer: colour-difference keying of green or blue screens in scene-linear ACEScg.

Per shot: the screen is found in a few frames (or its colour given): a backdrop, a large smooth region
of one green (or blue) chroma touching the frame edge and reaching below the frame's middle, covering
at least ``min_screen`` of the pixels (``find_backdrops``; grass is textured, a sky covers only the
top); its median is the screen colour, whatever its saturation. No backdrop: the key stops before
writing anything, saying what was measured (the shot sheet's validation runs the same test). The
levels are raised for a screen whose noise is large against its colour difference (``adapt_levels``).
Per frame:
  1. colour difference d = S - max(other two) of each pixel (S: the screen's dominant channel);
  2. an uneven screen (vignetting, falloff) is modelled by a smooth map of d over the pixels that are
     screen-coloured: a quadratic fitted over the frame plus a smoothed residual (``fit``), or a
     smoothing only (``smooth``, the previous model), so a darker corner still keys to alpha 0;
  3. alpha = 1 - d / d_map. That is the most opaque alpha the pixel allows (it assumes a foreground
     with no colour difference); a foreground whose own d is negative (skin, blonde hair) is keyed
     too opaque in soft edges by the factor k = 1 - d_fg / d_map. ``fg_model`` divides soft alpha by
     k estimated from the nearby solid foreground (smoothed local minimum; 0: off), and keeps solid
     interiors (alpha >= 0.8 with all 8 neighbours too) at 1 so a greener costume gets no holes;
  4. levels (clip_black, clip_white); near-black lines along the frame edge (a scan's border) to 0;
     optional guided-filter edge refinement and erosion;
  5. temporal stabilisation: where the plate did not change since the previous frame, alpha is
     blended with the previous alpha (moving edges are left alone);
  6. unmix + despill: fg_premult = plate - (1 - alpha) * local screen colour; the dominant channel is
     divided by the shot's spill gain (``estimate_spill``: the screen's light bounced onto the actor
     raises that channel of every colour by about the same factor, so a brown crate turns olive where
     a channel limit alone never reaches) but never below both others where it was not (no magenta),
     then limited to the max of the others, clamped >= 0.
Writes alpha and a despilled premultiplied foreground.

Defaults were tuned with ``bench/key_quality.py`` on a synthetic soft-hair plate (vignetted screen)
and the demo shots; ``BEFORE`` there is the previous default set.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..io import exr as exrio
from ..colour import LUMA_ACESCG
from ..errors import PlateError
from ..params import Choice, Flag, Num, Rgb, check_params

# A pixel is screen-coloured when its colour difference is at least SCREEN_HUE x the screen's share of
# its dominant channel (its hue matches the screen's at any brightness) and at least SCREEN_LEVEL x the
# screen's colour difference (not a dark shadow or noise). Used by the screen model and min_screen.
SCREEN_HUE, SCREEN_LEVEL = 0.85, 0.2
# Spill gain: the median of the dominant channel over the larger other one, over solid foreground
# pixels where it is the larger (spilled neutrals and greys; skin, wood, denim never reach 1), those
# above SPILL_MAX left out (a genuinely green costume); fewer than SPILL_MIN_SHARE of the solid
# pixels, or fewer than SPILL_MIN_PIXELS: no gain (1).
SPILL_MAX, SPILL_MIN_SHARE, SPILL_MIN_PIXELS, SPILL_PERCENTILE = 1.5, 0.02, 50, 50.0
CORE_LEVEL, CORE_SIZE = 0.8, 3  # fg_model: solid interiors (alpha >= 0.8, eroded 3x3) stay opaque
FG_BLUR, FG_MAX = 0.05, 2.0  # fg_model: smoothing (fraction of the width) and largest correction
SCREEN_MODELS = ("fit", "smooth", "off")
REFINE_LUMA = LUMA_ACESCG.round(4).astype(np.float32)  # refine: the guide's luminance, to 4 places as the keyer was tuned


@dataclass(frozen=True)
class _Screen:
    """`screen`: auto | green | blue, or [r, g, b] (ACEScg) with a green or blue excess."""

    default: object = "auto"
    doc: str = ("auto (the green or blue backdrop found in the plate), green, blue (that colour's backdrop) "
                "or [r, g, b] in ACEScg")

    def check(self, name, v):
        if v in ("auto", "green", "blue"):
            return v, None
        rgb, err = Rgb(None).check(name, v)
        if err is None and max(rgb[1:]) <= max(rgb[0], min(rgb[1:])):
            err = f"{name} {list(rgb)} has no green or blue excess (its green or blue must exceed the other two)"
        return (None, f"{name} must be auto, green, blue or [r, g, b]: {err}") if err else (list(rgb), None)

    def describe(self):
        return "auto\\|green\\|blue\\|[r, g, b]"


@dataclass(frozen=True)
class _Model:
    """`screen_model`: fit | smooth | off (true = fit, false = off)."""

    default: str = "fit"
    doc: str = ("uneven screen: fit (quadratic + smoothed residual), smooth (smoothing only, the old model), "
                "off (one colour)")

    def check(self, name, v):
        v = {True: "fit", False: "off"}.get(v, v) if isinstance(v, bool) else v
        if v not in SCREEN_MODELS:
            return None, f"{name} must be one of {', '.join(SCREEN_MODELS)} (or true/false), got {v!r}"
        return v, None

    def describe(self):
        return "\\|".join(SCREEN_MODELS)


# Every key parameter: default, range (checked before any job runs), meaning. docs/key.md lists them.
KEY_SPEC = {
    "screen": _Screen(),
    "clip_black": Num(0.05, 0.0, 1.0, doc="alpha at or below this becomes 0 (cleans screen noise); "
                                          "unset, raised for a noisy muted screen"),
    "clip_white": Num(1.0, 0.0, 1.0, doc="alpha at or above this becomes 1; unset, lowered for a noisy muted screen"),
    "despill": Num(1.0, 0.0, 1.0, doc="strength of spill suppression (the shot's spill gain and the channel limit)"),
    "screen_model": _Model(),
    "screen_blur": Num(0.08, 0.0, 0.5, doc="smoothness of the screen map, as a fraction of the frame width"),
    "fg_model": Num(0.5, 0.0, 1.0, doc="how far soft alpha is corrected for the foreground's own colour "
                                       "(1: fully, as the nearby solid foreground; 0: off)"),
    # Guided-filter edge refinement. Off by default: on the demo shots it raised SAD from 0.047 to
    # 0.089 per frame (bench/key_quality.py); it helps noisy real edges more than clean CG ones.
    "refine": Flag(False, doc="guided-filter edge refinement"),
    "refine_radius": Num(1, 1, 50, integer=True, doc="refinement radius, pixels"),
    "refine_eps": Num(1e-5, 1e-8, 1.0, doc="refinement regularisation"),
    "temporal": Num(0.5, 0.0, 1.0, doc="weight of the previous frame's alpha where the plate is static"),
    "temporal_threshold": Num(0.01, 0.0, 1.0, doc="largest plate change (linear) counted as static"),
    "erode": Num(0, 0, 100, integer=True, doc="shrink the matte by this many pixels (a disc min filter)"),
    "min_screen": Num(0.05, 0.0, 1.0, doc="least fraction of the sampled frames' pixels in the screen backdrop "
                                          "(for a given [r, g, b]: screen-coloured); 0: no check"),
    # key backend `matanyone` only (matanyone_key.py)
    "matanyone_combine": Choice("edges", ("edges", "matanyone"),
                                doc="matanyone: MatAnyone's alpha in a band around the edges (hair), the chroma "
                                    "key's elsewhere (edges), or MatAnyone's everywhere"),
    "matanyone_edge": Num(8, 0, 200, integer=True, doc="matanyone: width of that edge band, pixels"),
    "matanyone_first_mask": Choice("chroma", ("chroma", "sam2"),
                                   doc="matanyone: the first frame's mask from the chroma key, or SAM 2 prompted "
                                       "with the chroma key's box"),
    "matanyone_warmup": Num(10, 0, 100, integer=True, doc="matanyone: repeats of the first frame before the shot"),
    "matanyone_max_size": Num(0, 0, 16384, integer=True,
                              doc="matanyone: shorter side it mattes at, the alpha scaled back (0: the plate's)"),
}
KEY_FIX = "docs/key.md lists every key parameter with its range, e.g. {\"clip_black\": 0.05}"


def _d(name):
    return field(default=KEY_SPEC[name].default)


@dataclass
class KeyParams:
    screen: object = _d("screen")
    clip_black: float = _d("clip_black")
    clip_white: float = _d("clip_white")
    despill: float = _d("despill")
    screen_model: str = _d("screen_model")
    screen_blur: float = _d("screen_blur")
    fg_model: float = _d("fg_model")
    refine: bool = _d("refine")
    refine_radius: int = _d("refine_radius")
    refine_eps: float = _d("refine_eps")
    temporal: float = _d("temporal")
    temporal_threshold: float = _d("temporal_threshold")
    erode: int = _d("erode")
    min_screen: float = _d("min_screen")
    matanyone_combine: str = _d("matanyone_combine")
    matanyone_edge: int = _d("matanyone_edge")
    matanyone_first_mask: str = _d("matanyone_first_mask")
    matanyone_warmup: int = _d("matanyone_warmup")
    matanyone_max_size: int = _d("matanyone_max_size")
    extra: dict = field(default_factory=dict, repr=False)
    given: frozenset = field(default=frozenset(), repr=False)  # the keys the TD set (adapt_levels keeps them)

    def __post_init__(self):
        if isinstance(self.screen_model, bool):  # true/false, as before the screen models had names
            self.screen_model = "fit" if self.screen_model else "off"

    @classmethod
    def from_dict(cls, d: dict | None) -> "KeyParams":
        """Checked parameters: ValueError naming each bad one, its range and the fix."""
        if d is not None and not isinstance(d, dict):
            raise ValueError(f"key parameters must be a JSON object, got {d!r} (fix: {KEY_FIX})")
        given = frozenset(k for k, v in (d or {}).items() if v is not None)
        out = cls(**check_params(dict(d or {}), KEY_SPEC, what="key parameter", fix=KEY_FIX), given=given)
        if not out.clip_black < out.clip_white:
            raise ValueError(f"key parameters need clip_black < clip_white, got {out.clip_black}, {out.clip_white} "
                             f"(fix: {KEY_FIX})")
        return out


def _dominant(screen: np.ndarray) -> tuple[int, tuple[int, int]]:
    main = int(np.argmax(screen[1:])) + 1  # green (1) or blue (2)
    return main, tuple(c for c in range(3) if c != main)


# Screen detection (``find_backdrop``): a backdrop is a large, smooth region of one green (or blue)
# chroma, connected, touching the frame edge and reaching below the frame's middle. Green things in a
# scene (grass, foliage) are textured; a sky is smooth but only covers the top of the frame.
BACKDROP_WIDTH = 192  # detection works on the frames scaled to at most this width
BACKDROP_CHROMA = 0.08  # least (S - max(others)) / S of a backdrop pixel (a muted screen is ~0.18)
BACKDROP_TEXTURE = 0.06  # most local (5x5) std of log S plus that of the chroma (3x3 means), at that width
BACKDROP_EDGE = 0.02  # the backdrop touches the frame edge: within this fraction of the width
BACKDROP_REACH = 0.6  # the backdrop reaches below this fraction of the height (a sky does not)
BACKDROP_PART = 0.25  # edge-touching regions at least this share of the largest belong to the backdrop
# Edge lines (a scan's black frame border): rows/columns at the frame edge whose pixels are nearly all
# (EDGE_LINE_SHARE) darker than EDGE_LINE_DARK x the screen's dominant channel, at most EDGE_LINE_MAX
# of the frame deep. They key to 0 (garbage), not to an opaque dark line.
EDGE_LINE_DARK, EDGE_LINE_SHARE, EDGE_LINE_MAX = 0.15, 0.9, 0.05
# Levels adapted to the screen's noise (when key_params sets neither clip): noise is the robust std of
# alpha over the screen. Above LEVEL_START (the soft-hair bench plate, 0.027, keys best with the tuned
# defaults) each unit of it raises clip_black by LEVEL_BLACK and lowers clip_white by LEVEL_WHITE
# (a muted screen at 0.11 gets ~0.33 / 0.52; the hand-set 0.3 / 0.5 gave IoU 0.98).
LEVEL_START, LEVEL_BLACK, LEVEL_WHITE, LEVEL_MAX_BLACK, LEVEL_GAP = 0.03, 3.5, 6.0, 0.4, 0.2


def edge_lines(rgb: np.ndarray, level: float) -> np.ndarray:
    """(H, W) bool: near-black rows and columns running along the frame edge (a scanned frame's
    border), ``level`` the screen's dominant channel (a pixel is dark below EDGE_LINE_DARK x it)."""
    h, w = rgb.shape[:2]
    dark = np.nan_to_num(rgb[..., :3], nan=0.0).max(-1) < EDGE_LINE_DARK * level
    out = np.zeros((h, w), bool)
    rows, cols = dark.mean(1) >= EDGE_LINE_SHARE, dark.mean(0) >= EDGE_LINE_SHARE
    for line, n, put in ((rows, h, lambda a, b: out.__setitem__((slice(a, b), slice(None)), True)),
                         (cols, w, lambda a, b: out.__setitem__((slice(None), slice(a, b)), True))):
        deep = max(1, int(EDGE_LINE_MAX * n))
        k = 0
        while k < deep and line[k]:
            k += 1
        put(0, k)
        k = 0
        while k < deep and line[n - 1 - k]:
            k += 1
        put(n - k, n)
    return out


def _local_std(x: np.ndarray) -> np.ndarray:
    m = cv2.blur(x, (5, 5))
    return np.sqrt(np.maximum(cv2.blur(x * x, (5, 5)) - m * m, 0.0))


def _backdrop(small: np.ndarray, main: int) -> tuple[np.ndarray, np.ndarray]:
    """Backdrop pixels of one small frame for screen channel ``main``, and its smooth-and-coloured
    candidates (bool maps)."""
    h, w = small.shape[:2]
    others = [c for c in range(3) if c != main]
    s = small[..., main]
    chroma = (s - small[..., others].max(-1)) / s
    sm = cv2.blur(s, (3, 3))  # pixel noise is no texture
    texture = _local_std(np.log(sm)) + _local_std(cv2.blur(chroma, (3, 3)))
    cand = (chroma > BACKDROP_CHROMA) & (texture < BACKDROP_TEXTURE)
    m = max(1, int(round(BACKDROP_EDGE * w)))
    edge = edge_lines(small, float(np.quantile(small.max(-1), 0.9)))
    edge = cv2.dilate(edge.astype(np.uint8), np.ones((2 * m + 1, 2 * m + 1), np.uint8)) > 0
    edge[:m], edge[-m:], edge[:, :m], edge[:, -m:] = True, True, True, True
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cand.astype(np.uint8), connectivity=4)
    touch = np.bincount(labels[edge], minlength=n) > 0
    area = stats[:, cv2.CC_STAT_AREA] * touch
    area[0] = 0
    if area.max() == 0:
        return np.zeros((h, w), bool), cand
    return (area >= BACKDROP_PART * area.max())[labels] & (area > 0)[labels], cand


@dataclass
class Backdrop:
    """What screen detection measured for one screen channel over the sampled frames."""

    channel: str  # green | blue
    colour: np.ndarray | None  # median ACEScg colour of the backdrop pixels (None: none found)
    fraction: float  # share of the sampled pixels in the backdrop
    reach: float  # how far down the frame the backdrop reaches (0 top .. 1 bottom)
    coloured: float  # share of the pixels of that chroma at all (smooth or not, anywhere)

    def ok(self, min_screen: float) -> bool:
        return self.colour is not None and self.fraction >= max(min_screen, 1e-9) and self.reach >= BACKDROP_REACH

    def describe(self) -> str:
        return (f"{self.channel}: backdrop {self.fraction:.1%} of the pixels reaching {self.reach:.0%} down the "
                f"frame, {self.coloured:.1%} {self.channel}-coloured in all")


def find_backdrops(frames: list[np.ndarray], channel: str = "auto") -> list[Backdrop]:
    """The green and/or blue (``channel``) backdrop of ``frames`` (ACEScg), measured (see BACKDROP_*)."""
    smalls = []
    for f in frames:
        f = np.nan_to_num(np.asarray(f, np.float32)[..., :3], nan=0.0, posinf=0.0, neginf=0.0)
        h, w = f.shape[:2]
        if w > BACKDROP_WIDTH:
            f = cv2.resize(f, (BACKDROP_WIDTH, max(1, round(h * BACKDROP_WIDTH / w))), interpolation=cv2.INTER_AREA)
        smalls.append(np.maximum(f, 1e-4))
    out = []
    for main in {"auto": (1, 2), "green": (1,), "blue": (2,)}[channel]:
        masks = [_backdrop(s, main) for s in smalls]
        px = np.concatenate([s[m] for s, (m, _) in zip(smalls, masks)])
        rows = [np.nonzero(m.any(1))[0] for m, _ in masks]
        reach = max(((r[-1] + 1) / m.shape[0] for r, (m, _) in zip(rows, masks) if r.size), default=0.0)
        others = [c for c in range(3) if c != main]
        coloured = np.mean([((s[..., main] - s[..., others].max(-1)) > BACKDROP_CHROMA * s[..., main]).mean()
                            for s in smalls])
        out.append(Backdrop("green" if main == 1 else "blue", np.median(px, 0).astype(np.float32) if len(px) else None,
                            float(np.mean([m.mean() for m, _ in masks])), float(reach), float(coloured)))
    return out


def _strongest(frames: list[np.ndarray], channel: str) -> np.ndarray | None:
    """Median colour of the cleanest strongly green (or blue) pixels (green or blue exceeding the other
    two by half its value), whatever their place: the estimate when the screen check is off."""
    px = np.concatenate([f[..., :3].reshape(-1, 3) for f in frames])
    px = px[np.isfinite(px).all(1)]
    best = None
    for main in {"auto": (1, 2), "green": (1,), "blue": (2,)}[channel]:
        others = [c for c in range(3) if c != main]
        excess = px[:, main] - px[:, others].max(1)
        sel = excess > 0.5 * np.maximum(px[:, main], 1e-6)
        if best is None or sel.sum() > best[0]:
            best = (sel.sum(), main, sel)
    n, main, sel = best
    if n < 16:
        return None
    cand = px[sel]
    excess = cand[:, main] - np.delete(cand, main, axis=1).max(1)
    return np.median(cand[excess >= np.quantile(excess, 0.5)], axis=0).astype(np.float32)


def no_screen_message(backdrops: list[Backdrop], min_screen: float, channel: str = "auto") -> str:
    """Why no screen was found: what was measured, and the fix."""
    which = "green or blue" if channel == "auto" else channel
    return (f"no {which} screen found in the plate: a screen is a smooth backdrop of one colour touching the frame "
            f"edge, covering at least {min_screen:.0%} of the pixels (key_params min_screen) and reaching below "
            f"the middle of the frame; measured {'; '.join(b.describe() for b in backdrops)} "
            "(fix: check the plate is the green-screen plate (grass, foliage or a sky is not a screen); "
            "give key_params screen=[r,g,b] if the plate is a screen that is not found, or lower key_params "
            "min_screen for a shot that is mostly foreground)")


def estimate_screen(frames: list[np.ndarray], channel: str = "auto",
                    min_screen: float = KEY_SPEC["min_screen"].default) -> np.ndarray:
    """The screen colour of ``frames`` (ACEScg): the median of the backdrop (``find_backdrops``) of the
    channel with the largest one (``channel`` green/blue: that one). ValueError saying what was measured
    when there is none (or it covers less than ``min_screen``)."""
    return _detect(frames, channel, min_screen)[0]


def _detect(frames, channel: str, min_screen: float) -> tuple[np.ndarray, Backdrop]:
    backdrops = find_backdrops(frames, channel)
    good = [b for b in backdrops if b.ok(min_screen)]
    if not good:
        raise ValueError(no_screen_message(backdrops, min_screen, channel))
    best = max(good, key=lambda b: b.fraction)
    return best.colour, best


def screen_mask(rgb: np.ndarray, screen) -> np.ndarray:
    """(H, W) bool: screen-coloured pixels (hue of the screen's, not too dark; see SCREEN_HUE)."""
    screen = np.asarray(screen, np.float32)
    main, others = _dominant(screen)
    rgb = np.nan_to_num(rgb[..., :3].astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return _is_screen(rgb[..., main], rgb[..., main] - rgb[..., list(others)].max(-1), screen, main)


def _is_screen(s: np.ndarray, d: np.ndarray, screen: np.ndarray, main: int) -> np.ndarray:
    """Screen pixels from the dominant channel ``s`` and the colour difference ``d`` of every pixel."""
    d_screen = float(screen[main] - np.delete(screen, main).max())
    return (d >= (SCREEN_HUE * d_screen / max(float(screen[main]), 1e-6)) * s) & (d >= SCREEN_LEVEL * d_screen)


def shot_screen(frames: list[np.ndarray], params: KeyParams) -> tuple[np.ndarray, float]:
    """The shot's screen colour and its coverage of ``frames`` (fraction of the pixels that are
    screen-coloured). Estimated (``params.screen`` auto/green/blue): ValueError when no backdrop of at
    least ``params.min_screen`` is found (``estimate_screen``); given as [r, g, b]: ValueError when
    fewer than ``min_screen`` of the pixels are of that colour."""
    if isinstance(params.screen, str):
        if params.min_screen > 0:
            screen = estimate_screen(frames, params.screen, params.min_screen)
        else:  # no check asked for: the backdrop if there is one, else the strongest green/blue pixels
            try:
                screen = estimate_screen(frames, params.screen)
            except ValueError:
                screen = _strongest(frames, params.screen)
                if screen is None:
                    raise
    else:
        screen = np.asarray(params.screen, np.float32)
    coverage = float(np.mean([screen_mask(f, screen).mean() for f in frames]))
    if coverage < params.min_screen:
        raise ValueError(
            f"only {coverage:.1%} of the sampled plate pixels are screen-coloured (screen "
            f"{[round(float(c), 4) for c in screen]}, key_params min_screen {params.min_screen:.0%}): this does "
            "not look like a green- or blue-screen plate (fix: check the plate is the green-screen plate; give "
            "key_params screen=[r,g,b] if the estimate is wrong; lower key_params min_screen for a shot that "
            "is mostly foreground)")
    return screen, coverage


def screen_noise(frames: list[np.ndarray], screen) -> float:
    """Pixel noise of the screen relative to its colour difference: the robust std of alpha over the
    screen's interior (0 when too little screen is seen)."""
    screen = np.asarray(screen, np.float32)
    main, others = _dominant(screen)
    ds = float(screen[main] - screen[list(others)].max())
    vals = []
    for f in frames:
        rgb = np.nan_to_num(np.asarray(f, np.float32)[..., :3], nan=0.0, posinf=0.0, neginf=0.0)
        d = rgb[..., main] - rgb[..., list(others)].max(-1)
        sure = cv2.erode(screen_mask(cv2.blur(rgb, (5, 5)), screen).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        vals.append((d - cv2.blur(d, (5, 5)))[sure])
    v = np.concatenate(vals) if vals else np.zeros(0)
    if v.size < 64 or ds <= 1e-6:
        return 0.0
    return float(1.4826 * np.median(np.abs(v - np.median(v))) / ds)


def adapt_levels(params: KeyParams, noise: float) -> tuple[KeyParams, dict]:
    """Levels for a screen whose noise (``screen_noise``) is large against its colour difference (a
    muted, low-saturation screen; see LEVEL_*), never for a clip the TD set in key_params. Returns the
    params and a report (the noise, the clips adapted)."""
    report = {"screen_noise": round(noise, 4), "adapted": []}
    excess = noise - LEVEL_START
    if excess <= 0:
        return params, report
    changes = {}
    if "clip_black" not in params.given:
        changes["clip_black"] = round(min(params.clip_black + LEVEL_BLACK * excess, LEVEL_MAX_BLACK), 3)
    lo = changes.get("clip_black", params.clip_black)
    if "clip_white" not in params.given:
        changes["clip_white"] = round(min(1.0, max(params.clip_white - LEVEL_WHITE * excess, lo + LEVEL_GAP)), 3)
    out = dataclasses.replace(params, **changes)
    if not out.clip_black < out.clip_white:  # the TD set one clip only, too close: keep the defaults
        return params, report
    report["adapted"] = sorted(changes)
    return out, report


def _sample(n: int) -> list[int]:
    """Indices of up to 5 evenly spaced frames of n."""
    return sorted(set(np.linspace(0, n - 1, min(5, n)).astype(int).tolist()))


def _box(x, r):
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter (grey guide), box filters only."""
    mi, ms = _box(guide, r), _box(src, r)
    cov = _box(guide * src, r) - mi * ms
    var = _box(guide * guide, r) - mi * mi
    a = cov / (var + eps)
    b = ms - a * mi
    return _box(a, r) * guide + _box(b, r)


def _lowres(w: int, h: int, blur: float) -> tuple[tuple[int, int], float]:
    """Size of a low-resolution grid for a smooth map of the frame, and the Gaussian sigma on it."""
    f = max(1, int(blur * w / 4))
    return (max(1, w // f), max(1, h // f)), max(0.5, blur * w / f)


def _smooth_fill(val: np.ndarray, weight: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised Gaussian blur: the weighted local mean of ``val`` and the local weight."""
    num = cv2.GaussianBlur(val * weight, (0, 0), sigma)
    den = cv2.GaussianBlur(weight, (0, 0), sigma)
    return num / np.maximum(den, 1e-6), den


def _quadratic_fit(val: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Weighted least-squares quadratic surface in x, y through ``val`` (lightly damped: never wild),
    fitted on at most ~64 x 64 samples, evaluated on the whole grid."""
    h, w = val.shape
    x, y = (np.arange(w) + 0.5) / w - 0.5, ((np.arange(h) + 0.5) / h - 0.5)[:, None]
    sy, sx = max(1, h // 64), max(1, w // 64)
    xs, ys = np.broadcast_arrays(x[::sx][None, :], y[::sy])
    terms = np.stack([np.ones_like(xs), xs, ys, xs * xs, xs * ys, ys * ys], -1).reshape(-1, 6)
    sw = np.sqrt(weight[::sy, ::sx].reshape(-1))
    a, b = terms * sw[:, None], val[::sy, ::sx].reshape(-1) * sw
    damp = np.diag([1e-9] + [1e-3 * max(float(sw @ sw), 1.0)] * 5)
    c = np.linalg.solve(a.T @ a + damp, a.T @ b)
    return (c[0] + c[1] * x + c[2] * y + c[3] * x * x + c[4] * x * y + c[5] * y * y).astype(np.float32)


class ChromaKeyer:
    """Keys frames one after the other (keeps the previous frame for temporal stabilisation)."""

    def __init__(self, params: KeyParams, screen: np.ndarray, levels: dict | None = None, spill: float = 1.0):
        self.p, self.screen = params, np.asarray(screen, np.float32)
        self.spill = float(spill)  # the shot's spill gain on the dominant channel (estimate_spill)
        self.levels = levels or {}  # adapt_levels' report (the stage reports it)
        self.main, self.others = _dominant(self.screen)
        self.d_screen = float(self.screen[self.main] - self.screen[list(self.others)].max())
        if self.d_screen <= 1e-6:
            raise ValueError(f"screen colour {self.screen.tolist()} has no green/blue excess (fix: set key_params screen)")
        self.prev = None

    def screen_map(self, rgb: np.ndarray, d: np.ndarray) -> np.ndarray:
        """(H, W) colour difference of the (uneven) screen behind every pixel."""
        p, ds = self.p, self.d_screen
        h, w = d.shape
        if p.screen_model == "smooth":  # the previous model: bright screen pixels, smoothing only
            sure = (d > 0.6 * ds).astype(np.float32)
        else:
            sure = _is_screen(rgb[..., self.main], d, self.screen, self.main).astype(np.float32)
        if p.screen_model == "off" or sure.mean() <= 0.01:
            return np.full((h, w), ds, np.float32)
        # at low resolution (the screen varies slowly), then back up: cheap at 2K
        small, sigma = _lowres(w, h, p.screen_blur)
        mean = cv2.resize(d * sure, small, interpolation=cv2.INTER_AREA)
        cover = cv2.resize(sure, small, interpolation=cv2.INTER_AREA)
        if p.screen_model == "smooth":
            ratio, den = _smooth_fill(mean / np.maximum(cover, 1e-6), cover, sigma)
            ratio = np.where(den > 1e-3, ratio, ds).astype(np.float32)
            ok = cv2.resize((den > 1e-3).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0.5
            d_map = np.where(ok, cv2.resize(ratio, (w, h), interpolation=cv2.INTER_LINEAR), ds)
        else:  # a quadratic (vignetting, falloff) plus the smoothed residual where there is screen
            mean = mean / np.maximum(cover, 1e-6)
            base = _quadratic_fit(mean, cover * (cover > 0.5))
            resid, den = _smooth_fill(mean - base, cover, sigma)
            d_map = cv2.resize(base + np.where(den > 1e-3, resid, 0.0), (w, h), interpolation=cv2.INTER_LINEAR)
        return np.clip(d_map, 0.3 * ds, 2.0 * ds).astype(np.float32)

    def fg_correct(self, a: np.ndarray) -> np.ndarray:
        """Soft alpha divided by the nearby solid foreground's overshoot k (see module docstring).
        ``a`` is the unclipped 1 - d / d_map: > 1 on foreground with a negative colour difference."""
        h, w = a.shape
        solid = cv2.erode((a > 1.0).astype(np.uint8), np.ones((3, 3), np.uint8))
        # lower envelope of k over solid pixels (a greener costume next to skin is not overcorrected)
        k = cv2.erode(np.where(solid > 0, np.minimum(a, FG_MAX), FG_MAX).astype(np.float32), np.ones((7, 7), np.uint8))
        small, sigma = _lowres(w, h, FG_BLUR)
        solid = solid.astype(np.float32)
        cover = cv2.resize(solid, small, interpolation=cv2.INTER_AREA)
        ks, den = _smooth_fill(cv2.resize(k * solid, small, interpolation=cv2.INTER_AREA) / np.maximum(cover, 1e-6),
                               cover, sigma)
        ks = cv2.resize(np.where(den > 1e-3, ks, 1.0).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        k = 1.0 + self.p.fg_model * (np.clip(ks, 1.0, FG_MAX) - 1.0)
        core = cv2.erode((a >= CORE_LEVEL).astype(np.uint8), np.ones((CORE_SIZE, CORE_SIZE), np.uint8))
        return np.where(core > 0, 1.0, np.clip(a / k, 0.0, 1.0)).astype(np.float32)

    def key(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.p
        rgb = np.nan_to_num(rgb[..., :3].astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        d = rgb[..., self.main] - rgb[..., list(self.others)].max(-1)
        d_map = self.screen_map(rgb, d)
        alpha = 1.0 - d / d_map
        alpha = self.fg_correct(alpha) if p.fg_model > 0 else np.clip(alpha, 0.0, 1.0)
        alpha = np.clip((alpha - p.clip_black) / (p.clip_white - p.clip_black), 0.0, 1.0)
        alpha[edge_lines(rgb, float(self.screen[self.main]))] = 0.0  # a scan's black border: garbage
        if p.refine:
            lum = rgb @ REFINE_LUMA
            lum = lum / max(float(lum.max()), 1e-6)
            band = cv2.dilate(((alpha > 0.02) & (alpha < 0.98)).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            refined = np.clip(guided_filter(lum, alpha, p.refine_radius, p.refine_eps), 0.0, 1.0)
            alpha = np.where(band, refined, alpha)
        if p.erode > 0:
            k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * p.erode + 1, 2 * p.erode + 1))
            alpha = cv2.erode(alpha.astype(np.float32), k, borderType=cv2.BORDER_REPLICATE)
        raw = alpha
        if p.temporal > 0 and self.prev is not None and self.prev[0].shape == rgb.shape:
            # blend with the previous frame's *unstabilised* alpha, only where the plate is static
            # and the two mattes nearly agree: noise is averaged, motion never leaves trails
            static = (np.abs(rgb - self.prev[0]).max(-1) < p.temporal_threshold) & (np.abs(alpha - self.prev[1]) < 0.1)
            alpha = np.where(static, (1 - p.temporal) * alpha + p.temporal * self.prev[1], alpha)
        self.prev = (rgb, raw)
        self.d_map = d_map
        return alpha.astype(np.float32), self.unmix(rgb, alpha)

    def unmix(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Premultiplied despilled foreground of ``rgb`` for ``alpha``, with the screen map of the frame
        last keyed (another backend's alpha gets the same unmix as the chroma key's)."""
        p, d_map = self.p, self.d_map
        rgb = np.nan_to_num(rgb[..., :3].astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        # unmix the local screen colour, then despill
        local_screen = self.screen[None, None, :] * (d_map / self.d_screen)[..., None]
        fg = rgb - (1.0 - alpha)[..., None] * local_screen
        # the spill gain never takes the dominant channel below both others where it was not (bounced
        # screen light is not the same on every surface: a shiny prop near the floor shows more of it
        # than the actor's clothes, and its gain alone turned grey trousers magenta)
        spilled, others = fg[..., self.main].copy(), fg[..., list(self.others)]
        fg[..., self.main] = np.maximum(spilled / (1.0 + p.despill * (self.spill - 1.0)),
                                        np.minimum(spilled, others.min(-1)))
        limit = others.max(-1)
        excess = np.maximum(fg[..., self.main] - limit, 0.0)
        fg[..., self.main] -= p.despill * excess
        fg = np.clip(fg, 0.0, None) * (alpha > 0)[..., None]
        return fg.astype(np.float32)


def estimate_spill(frames: list[np.ndarray], keyer: "ChromaKeyer") -> float:
    """The shot's spill gain (>= 1) on the screen's dominant channel, from a few plate frames keyed by a
    fresh ``keyer``: the screen's light bounced onto the actor multiplies that channel of every colour by
    about the same factor; spilled neutral and grey pixels show it as the ratio of that channel to the
    larger other one (module docstring). 1 when too few solid pixels show it."""
    ratios, solid_n = [], 0
    for f in frames:
        rgb = np.nan_to_num(f[..., :3].astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        keyer.prev = None  # sample frames are far apart: no temporal blending between them
        alpha, _ = keyer.key(rgb)
        solid = cv2.erode((alpha >= 0.999).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        px = rgb[solid]
        other = px[:, list(keyer.others)].max(-1)
        ok = other > 1e-4
        r = px[ok, keyer.main] / other[ok]
        solid_n += int(solid.sum())
        ratios.append(r[(r > 1.0) & (r <= SPILL_MAX)])
    keyer.prev = None
    r = np.concatenate(ratios) if ratios else np.zeros(0, np.float32)
    if len(r) < max(SPILL_MIN_PIXELS, SPILL_MIN_SHARE * solid_n):
        return 1.0
    return float(np.percentile(r, SPILL_PERCENTILE))


def key_frames(rgb: np.ndarray, params: KeyParams | dict | None = None):
    """Key (T, H, W, 3) frames -> alpha (T, H, W), fg_premult (T, H, W, 3), info."""
    params = params if isinstance(params, KeyParams) else KeyParams.from_dict(params)
    rgb = np.asarray(rgb, np.float32)
    sample = [rgb[i] for i in _sample(len(rgb))]
    screen, coverage = shot_screen(sample, params)
    params, levels = adapt_levels(params, screen_noise(sample, screen))
    keyer = ChromaKeyer(params, screen)
    keyer.spill = estimate_spill(sample, keyer)
    out = [keyer.key(f) for f in rgb]
    return (np.stack([a for a, _ in out]), np.stack([f for _, f in out]),
            {"screen": screen.tolist(), "screen_coverage": coverage, "levels": levels,
             "clip_black": params.clip_black, "clip_white": params.clip_white, "spill": keyer.spill})


def prepare_key_shot(plate_files, out_files, params, attrs):
    """What every keying backend needs first: checked params, the shot's screen (PlateError naming the
    shot when the plate is no green/blue screen), the plate's pixel aspect and a ChromaKeyer."""
    params = params if isinstance(params, KeyParams) else KeyParams.from_dict(params)
    plate_files, out_files = list(plate_files), list(out_files)
    shot = (attrs or {}).get("shot")
    sample = [exrio.read_rgba(plate_files[i])[..., :3] for i in _sample(len(plate_files))]
    try:
        screen, coverage = shot_screen(sample, params)
    except ValueError as exc:
        problem, _, fix = str(exc).partition(" (fix: ")
        raise PlateError(Path(plate_files[0]).parent, problem, fix.rstrip(")"), shot=shot) from None
    params, levels = adapt_levels(params, screen_noise(sample, screen))
    aspect = exrio.pixel_aspect(plate_files[0])
    keyer = ChromaKeyer(params, screen, levels)
    keyer.spill = estimate_spill(sample, keyer)
    return params, plate_files, out_files, shot, screen, coverage, aspect, keyer


def key_shot(plate_files, out_files, params, attrs: dict | None = None, compression: str = "zip") -> dict:
    """Key ingested plate frames (EXR) into R,G,B (premultiplied despilled fg) + A files, streaming.
    The plate's pixel aspect ratio is carried over. A plate that is not a green/blue screen (see
    ``shot_screen``) raises PlateError naming the shot before any file is written."""
    params, plate_files, out_files, shot, screen, coverage, aspect, keyer = prepare_key_shot(
        plate_files, out_files, params, attrs)
    means = []
    for src, dst in zip(plate_files, out_files):
        alpha, fg = keyer.key(exrio.read_rgba(src)[..., :3])
        write_key_frame(dst, fg, alpha, screen, attrs, aspect, compression)
        means.append(float(alpha.mean()))
    return {"screen": screen.tolist(), "screen_coverage": coverage, "frames": len(out_files),
            "mean_alpha": float(np.mean(means)) if means else 0.0, "pixel_aspect": aspect,
            "levels": keyer.levels, "spill": keyer.spill, "params": params_summary(params)}


def write_key_frame(dst, fg: np.ndarray, alpha: np.ndarray, screen, attrs: dict | None, aspect: float,
                    compression: str = "zip") -> None:
    """One key frame file, every key backend's: R,G,B (premultiplied, despilled fg) + A as half, the
    shot's attrs plus ``frame`` (from the file name's ``.NNNN.exr``) and ``keyScreen``, the plate's pixel aspect."""
    a = dict(attrs or {})
    m = re.search(r"\.(\d+)\.exr$", Path(dst).name)
    if m:
        a["frame"] = int(m.group(1))
    a["keyScreen"] = ",".join(f"{c:.5f}" for c in screen)
    chans = exrio.half_channels({**{c: fg[..., i] for i, c in enumerate("RGB")}, "A": alpha}, a)
    exrio.write_exr(dst, chans, compression=compression, attrs=a, pixel_aspect=aspect)


def params_summary(params: KeyParams) -> dict:
    """The key parameters as a stage reports them (without ``extra``)."""
    return {k: v for k, v in dataclasses.asdict(params).items() if k not in ("extra", "given")}
