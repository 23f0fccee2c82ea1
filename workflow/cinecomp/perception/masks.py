"""Tri-mask stage, weight-free backend ``track``: character / prop / environment per frame.

From the key (premultiplied foreground + alpha) of each frame:
  environment = 1 - alpha,  prop = alpha * p,  character = alpha * (1 - p),
so the three sum to one and the soft edges of the key are kept. ``p`` (0..1) is the probability that
a foreground pixel belongs to the prop, something the character touches, holds or pushes. Without a
sheet hint there is no prop (p = 0).

With a hint (``prop_hint`` sheet cell: a box or a mask image on one frame) the prop is
  1. seeded on the hint frame: for a box, a colour model separates the prop from the character pixels
     that also fall in the box (EM on colour histograms; the pixels outside the box are character);
     a mask image is taken as it is;
  2. followed frame to frame, forwards then backwards from the hint frame: dense optical flow (OpenCV
     DIS) on the log-encoded foreground; a similarity transform fitted to the flow of the previous prop
     (RANSAC, so a character moving next to a still prop does not drag it) or, for a prop that deforms,
     the flow itself warps the prop's memory (p of recent frames, fading, so parts the character
     hides come back when uncovered); that is a spatial prior which the colour model (prop vs
     character histograms, slowly adapted) refines inside a narrow band around it;
  3. a prop pixel that, with its neighbourhood, looks as it did in the previous frame in the same place
     (a prop standing still) stays prop: decided again every frame, a colour the character shares
     (skin, shade) would erode a still prop frame after frame.
Work is done at a reduced resolution (at most ``WORK_WIDTH`` wide), p is upsampled to the key's.
Frames are streamed: only the hint frame's and the previous frame's state are held.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import cv2
import numpy as np

from ..io import exr as exrio
from ..colour import LUMA_ACESCG
from ..frames import frame_ranges
from ..io.plates import read_image

MASK_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".dpx", ".hdr")
EXAMPLE = "1010:40,50,90,100"
HINT_FIX = (f"use frame:x0,y0,x1,y1 (a box in plate pixels, x right, y down) like {EXAMPLE}, "
            "a mask image path, optionally frame:path like 1010:masks/box.png, or (masks backend sam2) "
            "clicks frame:points:x,y;x,y with ! before a click on what is not the prop, like 1010:points:60,80;!20,30")
POINTS_NEED_SAM2 = ("prop_hint clicks (frame:points:...) prompt the sam2 masks backend; the track backend "
                    "needs a box or a mask image (fix: set masks_backend to sam2, or give a box)")
WORK_WIDTH = 960  # tracking resolution cap (pixels); the masks are written at the key's resolution
LUMA = LUMA_ACESCG.round(4).astype(np.float32)  # ACEScg luminance, to 4 places as the tracker was tuned


# ------------------------------------------------------------------------------------------------
# The sheet cell
# ------------------------------------------------------------------------------------------------


def _number(s: str) -> int | float:
    try:
        v = float(s)
    except ValueError:
        raise ValueError(f"{s.strip()!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{s.strip()!r} is not a finite number")
    return int(v) if v == int(v) and re.fullmatch(r"\s*[+-]?\d+\s*", s) else v


def parse_prop_hint(text: str) -> dict | None:
    """The ``prop_hint`` cell: '' -> None; 'frame:x0,y0,x1,y1' -> {'frame', 'box'};
    '[frame:]path' -> {'frame' (None: the shot's first frame), 'mask'}. ValueError saying the fix."""
    text = (text or "").strip()
    if not text:
        return None
    frame, rest = None, text
    if ":" in text:
        head, rest = (s.strip() for s in text.split(":", 1))
        if not re.fullmatch(r"\d+", head):
            raise ValueError(f"prop_hint {text!r}: the frame {head!r} before ':' must be a whole number "
                             f"(fix: {HINT_FIX})")
        frame = int(head)
    if rest.lower().endswith(MASK_EXTENSIONS):
        return {"frame": frame, "mask": rest}
    if frame is not None and rest.lower().startswith("points:"):
        return {"frame": frame, **_parse_points(text, rest[len("points:"):])}
    parts = rest.split(",")
    if frame is None or len(parts) != 4:
        raise ValueError(f"prop_hint {text!r} is neither a box nor a mask image "
                         f"({', '.join(MASK_EXTENSIONS)}) (fix: {HINT_FIX})")
    try:
        x0, y0, x1, y1 = (_number(p) for p in parts)
    except ValueError as exc:
        raise ValueError(f"prop_hint {text!r}: {exc} (fix: {HINT_FIX})") from None
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"prop_hint {text!r}: the box needs x1 > x0 and y1 > y0 (left, top, right, bottom) "
                         f"(fix: {HINT_FIX})")
    return {"frame": frame, "box": [x0, y0, x1, y1]}


def _parse_points(text: str, spec: str) -> dict:
    """'x,y;!x,y' -> {'points': [[x, y], ...], 'labels': [1, 0, ...]} (1: on the prop, 0: not)."""
    points, labels = [], []
    for click in (c.strip() for c in spec.split(";")):
        if not click:
            continue
        neg = click.startswith("!")
        xy = click[1:].split(",") if neg else click.split(",")
        if len(xy) != 2:
            raise ValueError(f"prop_hint {text!r}: click {click!r} is not x,y (fix: {HINT_FIX})")
        try:
            points.append([_number(v) for v in xy])
        except ValueError as exc:
            raise ValueError(f"prop_hint {text!r}: {exc} (fix: {HINT_FIX})") from None
        labels.append(0 if neg else 1)
    if 1 not in labels:
        raise ValueError(f"prop_hint {text!r} has no click on the prop (fix: {HINT_FIX})")
    return {"points": points, "labels": labels}


def _mask_file(hint: dict, base_dir) -> Path:
    p = Path(hint["mask"])
    return p if p.is_absolute() else Path(base_dir or ".") / p


def _size_problem(path, mask: np.ndarray, width: int, height: int) -> str | None:
    if mask.shape == (height, width):
        return None
    return (f"prop_hint mask {path} is {mask.shape[1]}x{mask.shape[0]}, the plate is {width}x{height} "
            "(fix: paint the mask at the plate's resolution)")


def read_hint_mask(path) -> np.ndarray:
    """(H, W) bool prop mask of an image: its alpha if it has one (not all 1), else its first channel."""
    img = read_image(path)
    m = img[..., 3] if float(img[..., 3].min()) < 0.5 else img[..., 0]
    return np.nan_to_num(m) > 0.5


def check_prop_hint(hint: dict, *, first: int, last: int, plate_width: int, plate_height: int,
                    base_dir: Path) -> list[str]:
    """Problems of a parsed hint for sheet validation (frame range, box on the plate, mask image)."""
    problems = []
    frame = hint.get("frame")
    if frame is not None and not first <= frame <= last:
        problems.append(f"prop_hint frame {frame} is outside the shot's frames {first}-{last} "
                        "(fix: give a frame of the shot)")
    if "points" in hint:
        outside = [p for p in hint["points"] if not (0 <= p[0] <= plate_width and 0 <= p[1] <= plate_height)]
        if outside:
            problems.append(f"prop_hint clicks {outside} lie outside the {plate_width}x{plate_height} plate "
                            f"(fix: clicks in plate pixels within 0,0,{plate_width},{plate_height})")
        return problems
    if "box" in hint:
        x0, y0, x1, y1 = hint["box"]
        if min(x1, plate_width) <= max(x0, 0) or min(y1, plate_height) <= max(y0, 0):
            problems.append(f"prop_hint box {hint['box']} lies outside the {plate_width}x{plate_height} plate "
                            f"(fix: a box in plate pixels within 0,0,{plate_width},{plate_height})")
        return problems
    path = _mask_file(hint, base_dir)
    if path.is_dir():
        return problems + [f"prop_hint mask {path} is a directory, not an image (fix: name the mask file in it, "
                           "e.g. masks/prop.1001.png)"]
    if not path.is_file():
        return problems + [f"prop_hint mask {path} does not exist (fix: check the path; relative paths are "
                           f"relative to {base_dir})"]
    try:
        mask = read_hint_mask(path)
    except Exception as exc:  # PlateError or a decoder error: unreadable either way
        return problems + [f"prop_hint mask {path} cannot be read ({exc}) (fix: save it as PNG, TIFF or EXR)"]
    wrong_size = _size_problem(path, mask, plate_width, plate_height)
    if wrong_size:
        problems.append(wrong_size)
    elif not mask.any():
        problems.append(f"prop_hint mask {path} has no prop pixels (fix: paint the prop white, > 0.5)")
    return problems


# ------------------------------------------------------------------------------------------------
# Per-frame images at the working resolution
# ------------------------------------------------------------------------------------------------


def _read_key(path) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) alpha in [0, 1] and (H, W, 3) premultiplied foreground of a key EXR."""
    ch = exrio.read_layers(path)
    alpha = np.clip(np.nan_to_num(ch["A"].astype(np.float32)), 0.0, 1.0)
    fg = np.stack([np.nan_to_num(ch.get(c, np.zeros_like(alpha)).astype(np.float32)) for c in "RGB"], -1)
    return alpha, np.maximum(fg, 0.0)


def _work_size(w: int, h: int) -> tuple[int, int]:
    s = min(1.0, WORK_WIDTH / w)
    return max(8, round(w * s)), max(8, round(h * s))


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if a.shape[1] == size[0] and a.shape[0] == size[1]:
        return a
    shrink = size[0] < a.shape[1]
    return cv2.resize(a, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _flow_image(fg: np.ndarray) -> np.ndarray:
    """8-bit log-encoded luminance of the premultiplied foreground (environment black) for the flow."""
    y = np.maximum(fg @ LUMA, 2.0**-10)
    return (np.clip((np.log2(y) + 10.0) / 13.0, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# Colour model: prop vs character histograms of chromaticity and log luminance
# ------------------------------------------------------------------------------------------------

CHROMA_BINS, LUMA_BINS = 20, 8


def colour_bins(fg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Histogram bin of every pixel's unpremultiplied colour: (r, g) chromaticity x log luminance.
    Chromaticity does not change with shading, so lit and shadowed sides of a prop share bins."""
    c = fg / np.maximum(alpha, 1e-3)[..., None]
    s = c.sum(-1) + 1e-6
    r = np.minimum((c[..., 0] / s * CHROMA_BINS).astype(np.int32), CHROMA_BINS - 1)
    g = np.minimum((c[..., 1] / s * CHROMA_BINS).astype(np.int32), CHROMA_BINS - 1)
    lum = np.clip((np.log2(np.maximum(c @ LUMA, 2.0**-10)) + 10.0) / 13.0, 0.0, 0.999)
    return (r * CHROMA_BINS + g) * LUMA_BINS + (lum * LUMA_BINS).astype(np.int32)


def colour_hist(bins: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Smoothed, normalised histogram (a floor keeps unseen colours possible)."""
    from scipy.ndimage import gaussian_filter  # lazily: planning imports this module

    h = np.bincount(bins.ravel(), weights.ravel().astype(np.float64), CHROMA_BINS * CHROMA_BINS * LUMA_BINS)
    h = gaussian_filter(h.reshape(CHROMA_BINS, CHROMA_BINS, LUMA_BINS), 1.0, mode="nearest").ravel()
    total = h.sum()
    h = h / total if total > 0 else np.full_like(h, 1.0 / h.size)
    return 0.98 * h + 0.02 / h.size


def log_ratio(h_prop: np.ndarray, h_char: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Log-likelihood ratio prop : character of every pixel's colour, clipped to [-4, 4]."""
    return np.clip(np.log(h_prop[bins]) - np.log(h_char[bins]), -4.0, 4.0).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Seeding on the hint frame
# ------------------------------------------------------------------------------------------------


def _sigmoid(z):
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def _solidity(alpha: np.ndarray) -> np.ndarray:
    """0 in the environment and thin edges, 1 in the solid foreground, where colours can be trusted."""
    return np.clip((alpha - 0.3) / 0.6, 0.0, 1.0).astype(np.float32)


def _fg_blur(x: np.ndarray, alpha: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``x`` over the solid foreground only (normalised convolution): values spread
    from solid pixels into soft edges, and the environment (alpha 0) does not dilute them."""
    wt = _solidity(alpha)
    num = cv2.GaussianBlur((x * wt).astype(np.float32), (0, 0), sigma)
    den = cv2.GaussianBlur(wt, (0, 0), sigma)
    return np.where(den > 1e-4, num / np.maximum(den, 1e-4), 0.0).astype(np.float32)


def _fill_edges(p: np.ndarray, alpha: np.ndarray, sigma: float) -> np.ndarray:
    """p in the key's soft edges taken from the solid pixels next to them: an edge between prop and
    environment is all prop, one between prop and character a mix (alpha carries the softness)."""
    wt = _solidity(alpha)
    return (wt * p + (1.0 - wt) * _fg_blur(p, alpha, sigma)) * (alpha > 0)


def _keep_components(p: np.ndarray, alpha: np.ndarray, anchor: np.ndarray, min_share: float) -> np.ndarray:
    """p limited to the connected prop regions that overlap ``anchor`` by at least ``min_share`` of
    their area (stray character pixels of a prop-like colour are dropped); a 1 px margin keeps edges."""
    hard = ((p > 0.5) & (alpha > 0.3)).astype(np.uint8)
    n, labels = cv2.connectedComponents(hard, connectivity=8)
    if n <= 1:
        return p * 0.0
    area = np.bincount(labels.ravel(), minlength=n)
    hit = np.bincount(labels.ravel(), anchor.ravel().astype(np.float64), minlength=n)
    ok = hit >= min_share * np.maximum(area, 1)
    ok[0] = False
    keep = cv2.dilate(ok[labels].astype(np.uint8), np.ones((3, 3), np.uint8))
    return p * keep


def seed_from_box(box_w: list[float], fg: np.ndarray, alpha: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """p on the hint frame from a box (working pixels): the foreground in the box is a mixture of prop
    and character, the foreground outside it is character; EM on the colour histograms finds the prop."""
    h, w = alpha.shape
    x0, y0 = max(0, int(math.floor(box_w[0]))), max(0, int(math.floor(box_w[1])))
    x1, y1 = min(w, int(math.ceil(box_w[2]))), min(h, int(math.ceil(box_w[3])))
    inside = np.zeros((h, w), bool)
    inside[y0:y1, x0:x1] = True
    solid = alpha > 0.5
    fin, fout = inside & solid, ~inside & solid
    if not fin.any():
        return np.zeros((h, w), np.float32)
    h_char = colour_hist(bins[fout], alpha[fout]) if fout.sum() >= 16 else None
    if h_char is None:  # no character outside the box: everything in it is prop
        return inside.astype(np.float32)
    b_in = bins[fin]
    h_prop, share = colour_hist(b_in, np.ones(b_in.size)), 0.5
    for _ in range(10):  # EM: box colours = share * prop + (1 - share) * character
        lp, lc = share * h_prop[b_in], (1.0 - share) * h_char[b_in]
        post = lp / (lp + lc)
        h_prop, share = colour_hist(b_in, post), float(np.clip(post.mean(), 0.05, 0.95))
    z = np.where(inside, log_ratio(h_prop, h_char, bins) + math.log(share / (1 - share)), -4.0)
    p = _sigmoid(cv2.GaussianBlur(z.astype(np.float32), (0, 0), 1.0)) * inside * (alpha > 0.02)
    return _fill_edges(_keep_components(p, alpha, _main_regions(p > 0.5), 0.5), alpha, 1.0)


def _main_regions(mask: np.ndarray, share: float = 0.2) -> np.ndarray:
    """The connected regions of ``mask`` at least ``share`` the area of its largest one."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, bool)
    areas = stats[:, cv2.CC_STAT_AREA].copy()
    areas[0] = 0
    return (areas >= share * areas.max())[labels]


# ------------------------------------------------------------------------------------------------
# Following the prop from frame to frame
# ------------------------------------------------------------------------------------------------


class PropTracker:
    """State of one tracking direction: the previous frame's flow image, its p (the visible prop) and
    the prop's memory ``shape`` (p of recent frames moved along with the prop, fading by ``MEMORY`` per
    frame), which keeps the prop's parts that the character hides so they come back when uncovered."""

    MEMORY = 0.9
    STILL = 6  # flow-image levels (~0.3 stop): a prop pixel that changed less (same colour bin) stays prop

    def __init__(self, flow_img: np.ndarray, p: np.ndarray, alpha: np.ndarray, bins: np.ndarray):
        self.flow_img, self.p, self.shape, self.bins = flow_img, p, p, bins
        self.h_prop = colour_hist(bins, alpha * (p > 0.5))
        self.h_char = colour_hist(bins, alpha * ((alpha > 0.5) & (p < 0.5)))
        self.scale = max(1.0, alpha.shape[1] / 200.0)  # pixel scale of the spatial parameters
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self.motion = {"similarity": 0, "flow": 0, "hold": 0, "lost": 0}

    def copy(self) -> "PropTracker":
        """A fresh tracker from the same state (the backward pass restarts from the hint frame)."""
        t = PropTracker.__new__(PropTracker)
        t.__dict__.update(self.__dict__)
        t.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        t.motion = dict.fromkeys(self.motion, 0)
        return t

    def _move(self, flow_img: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """The prop's memory moved to this frame: by a similarity transform fitted to the flow of the
        visible prop (RANSAC: a character moving beside or over it does not drag it along), by the dense
        flow itself where no such transform fits (a prop that deforms), unmoved when nothing is visible."""
        h, w = alpha.shape
        flow = self.dis.calc(flow_img, self.flow_img, None)  # this frame -> previous frame
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        mx, my = gx + flow[..., 0], gy + flow[..., 1]
        seen = cv2.remap(self.p, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        sel = (seen > 0.5) & (alpha > 0.5)
        if sel.sum() < 12:
            self.motion["hold"] += 1
            return self.shape
        src, dst = np.stack([mx[sel], my[sel]], -1), np.stack([gx[sel], gy[sel]], -1)
        m, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                             ransacReprojThreshold=max(1.0, 0.5 * self.scale))
        if m is not None and inl is not None and inl.mean() >= 0.5:
            self.motion["similarity"] += 1
            return cv2.warpAffine(self.shape, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        self.motion["flow"] += 1
        return cv2.remap(self.shape, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def step(self, flow_img: np.ndarray, alpha: np.ndarray, bins: np.ndarray) -> np.ndarray:
        """p of the next frame (same direction), and the state moved on to it."""
        shape = self._move(flow_img, alpha)
        if float(shape.max()) < 0.2:  # the prop left the frame or stayed hidden too long: it stays gone
            self.motion["lost"] += 1
            p = shape = np.zeros_like(alpha)
        else:
            s = self.scale
            band_r = int(round(3 * s))
            band = cv2.dilate((shape > 0.1).astype(np.uint8), np.ones((2 * band_r + 1,) * 2, np.uint8))
            prior = np.clip(_fg_blur(shape, alpha, s), 1e-3, 1 - 1e-3)
            z = np.clip(np.log(prior / (1 - prior)), -3.0, 3.0)
            z = z + _solidity(alpha) * log_ratio(self.h_prop, self.h_char, bins)  # colour: solid pixels only
            p = _sigmoid(cv2.GaussianBlur(z.astype(np.float32), (0, 0), 0.7 * s)) * band * (alpha > 0.02)
            p = _fill_edges(_keep_components(p, alpha, shape > 0.2, 0.3), alpha, s)
            self._adapt(p, alpha, bins)
            shape = np.maximum(p, self.MEMORY * shape)  # the memory follows this frame's own decision
            # prop pixels that look as they did in the previous frame, in the same place, and so does their
            # neighbourhood (same colour bin, nearly the same luminance: a prop standing still, not a
            # character's edge passing by) stay prop; decided again, a colour the character shares (skin,
            # shade) would erode the prop a little more every frame
            still = (bins == self.bins) & (np.abs(flow_img.astype(np.int16) - self.flow_img) <= self.STILL)
            r = max(2, int(round(2 * s)))
            still = cv2.erode(still.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0
            p = np.where(still & (self.p > 0.5), np.maximum(p, self.p), p) * (alpha > 0.02)
        self.flow_img, self.p, self.shape = flow_img, p.astype(np.float32), shape.astype(np.float32)
        self.bins = bins
        return self.p

    def _adapt(self, p: np.ndarray, alpha: np.ndarray, bins: np.ndarray, rate: float = 0.1) -> None:
        """Follow slow lighting changes: blend in the histograms of confidently labelled solid pixels."""
        solid = alpha > 0.9
        prop, char = solid & (p > 0.9), solid & (p < 0.1)
        if prop.sum() >= 8:
            self.h_prop = (1 - rate) * self.h_prop + rate * colour_hist(bins[prop], np.ones(int(prop.sum())))
        if char.sum() >= 8:
            self.h_char = (1 - rate) * self.h_char + rate * colour_hist(bins[char], np.ones(int(char.sum())))


# ------------------------------------------------------------------------------------------------
# The stage
# ------------------------------------------------------------------------------------------------


def trimask(alpha: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """character = alpha (1 - p), prop = alpha p, environment = 1 - alpha (float32, summing to 1)."""
    prop = (alpha * np.clip(p, 0.0, 1.0)).astype(np.float32)
    return {"mask.character": alpha - prop, "mask.prop": prop, "mask.environment": (1.0 - alpha).astype(np.float32)}


NO_HINT = "no prop_hint: character = alpha, prop = 0"


def key_only_trimask(alpha: np.ndarray) -> dict[str, np.ndarray]:
    """The tri-mask without a prop hint (every backend's, and the diffusion stage's before the mask stage
    exists): character = alpha, prop = 0, environment = 1 - alpha (float32, alpha clipped to [0, 1])."""
    a = np.clip(alpha.astype(np.float32), 0.0, 1.0)
    return {"mask.character": a, "mask.prop": np.zeros_like(a), "mask.environment": 1.0 - a}


class TrimaskFiles:
    """The tri-mask EXRs of one shot, one per key frame, as every masks backend writes them, and the
    prop's area per frame for the stage's report."""

    def __init__(self, key_frames: list[tuple[int, Path]], out_files: list[Path], attrs: dict):
        if not key_frames or len(key_frames) != len(out_files):
            raise ValueError(f"{len(key_frames)} key frames and {len(out_files)} output files "
                             "(fix: rerun the key rule; one output per key frame)")
        self.key_files = [Path(p) for _, p in key_frames]
        self.out_files, self.attrs = list(out_files), attrs
        self.frames = [int(f) for f, _ in key_frames]
        self.area: dict[int, float] = {}

    def write(self, i: int, masks: dict[str, np.ndarray]) -> None:
        exrio.write_exr(self.out_files[i], masks, compression="zip", attrs={**self.attrs, "frame": self.frames[i]})
        self.area[self.frames[i]] = round(float(masks["mask.prop"].mean()), 6)

    def write_key_only(self) -> None:
        """No hint: every frame's tri-mask is its key's alpha (key_only_trimask)."""
        for i, path in enumerate(self.key_files):
            self.write(i, key_only_trimask(_read_key(path)[0]))

    def hint_index(self, hint: dict) -> int:
        """The index of the hint's frame (the shot's first when the hint names none)."""
        frames = self.frames
        start = frames[0] if hint.get("frame") is None else int(hint["frame"])
        if start not in frames:
            raise ValueError(f"prop_hint frame {start} is not among the key frames {frames[0]}-{frames[-1]} "
                             "(fix: give a frame of the shot)")
        return frames.index(start)

    def area_report(self, hint: dict | None) -> dict:
        """The prop's area (fraction of the frame: min, mean, max and their frames) and the frames without any prop."""
        frames, area = self.frames, self.area
        lo, hi = min(frames, key=area.get), max(frames, key=area.get)
        return {"prop_area": {"min": area[lo], "min_frame": lo, "mean": round(float(np.mean(list(area.values()))), 6),
                              "max": area[hi], "max_frame": hi},
                "frames_without_prop": frame_ranges([f for f in frames if area[f] == 0.0]) if hint else ""}


def _seed(hint: dict, plate_size, fg, alpha, bins, base_dir) -> np.ndarray:
    """p on the hint frame at the working resolution of ``alpha``."""
    h, w = alpha.shape
    sx, sy = w / plate_size[0], h / plate_size[1]
    if "points" in hint:
        raise ValueError(POINTS_NEED_SAM2)
    if "box" in hint:
        x0, y0, x1, y1 = hint["box"]
        return seed_from_box([x0 * sx, y0 * sy, x1 * sx, y1 * sy], fg, alpha, bins)
    path = _mask_file(hint, base_dir)
    mask = read_hint_mask(path)
    wrong_size = _size_problem(path, mask, *plate_size)
    if wrong_size:
        raise ValueError(wrong_size)
    return _fill_edges(_resize(mask.astype(np.float32), (w, h)) * (alpha > 0.02), alpha, 1.0)


def track_masks(key_frames: list[tuple[int, Path]], out_files: list[Path], *, hint: dict | None,
                plate_size: tuple[int, int], base_dir: Path | None = None, attrs: dict, log=None) -> dict:
    """Write one tri-mask EXR per key frame (see the module doc). The report: frames, the hint, how the
    prop was tracked, how often each motion model served (similarity / flow / hold / lost), the prop's
    area (fraction of the frame: min, mean, max and their frames) and the frames without any prop."""
    files = TrimaskFiles(key_frames, out_files, attrs)
    frames = files.frames

    def load(i):
        alpha, fg = _read_key(key_frames[i][1])
        size = _work_size(alpha.shape[1], alpha.shape[0])
        a_w, fg_w = _resize(alpha, size), _resize(fg, size)
        return alpha, a_w, fg_w, _flow_image(fg_w), colour_bins(fg_w, a_w)

    def write(i, alpha, p_work):
        files.write(i, trimask(alpha, _resize(p_work, (alpha.shape[1], alpha.shape[0]))))

    if hint is None:
        files.write_key_only()
        how = NO_HINT
        motion = {}
    else:
        h0 = files.hint_index(hint)
        start = frames[h0]
        alpha, a_w, fg_w, img, bins = load(h0)
        p0 = _seed(hint, plate_size, fg_w, a_w, bins, base_dir)
        if log is not None and not (p0 > 0.5).any():
            log.warning("prop_hint selects no keyed foreground on frame %d: no prop will be tracked", start)
        write(h0, alpha, p0)
        seed = PropTracker(img, p0, a_w, bins)
        motion = {}
        for order in (range(h0 + 1, len(frames)), range(h0 - 1, -1, -1)):  # forwards, then backwards
            tracker = seed.copy()
            for i in order:
                alpha, a_w, fg_w, img, bins = load(i)
                write(i, alpha, tracker.step(img, a_w, bins))
            for k, v in tracker.motion.items():
                motion[k] = motion.get(k, 0) + v
        how = (f"seeded by the {'box' if 'box' in hint else 'mask'} on frame {start}, followed forwards and "
               "backwards with DIS optical flow (similarity fit, else dense warp) and a prop/character colour model")
    return {"backend": "track", "frames": len(frames), "hint": hint, "tracking": how, "motion": motion,
            **files.area_report(hint)}
