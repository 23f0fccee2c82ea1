"""Ingest: plates and environments -> scene-linear ACEScg half EXR frames of the shot.

For each frame ``first..last``: read the source frame (``plates.read_frame``), repair non-finite
pixels, convert RGB from the sheet's colourspace to ACEScg (alpha untouched), conform to the shot
resolution, clamp to the half range, and write ``<shot>_<element>_v<NNN>.<FFFF>.exr`` (half RGBA,
atomic). Everything that can be checked is checked before the first file is written: colourspace,
that the source exists and is readable, that every frame of the range exists (and every EXR frame is
structurally sound), that all frames share one size.

Pixel aspect: the source's (EXR ``pixelAspectRatio``, DPX header, movie SAR) is carried through, not
resampled: the written frames' ``pixelAspectRatio`` is the source's, adjusted for a conform that changes
the frame's shape (``conformed_aspect``: stretching 1920x1080 at 2.0 to 3840x1080 gives square pixels,
which is how to desqueeze at ingest); the report records both. HDRI projections are square.
An environment is conformed onto the plate's pixel grid instead (``pixel_aspect`` = the plate's, the
shot's ``environment_fit`` says how a picture of another display shape meets it: ``conform``), so its
frames carry the plate's pixel aspect like every other EXR of the shot.

Environments may be a single image: a still is converted once and written for every frame; an HDRI
(equirectangular ``.hdr``, an EXR tagged latlong, or any still with ``kind='hdri'``) is projected to a
pinhole camera (``hdri_yaw``/``hdri_pitch``/``hdri_fov``) at the shot resolution.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .. import SOFTWARE
from ..atomic import write_text
from ..colour import WORKING_SPACE, check_colourspace, convert
from ..errors import PlateError
from .exr import COMPRESSIONS, check_pixel_aspect, clamp_half, select_part, write_rgba
from ..frames import frame_path, frame_ranges
from .plates import PlateInfo, _image_size, frame_file, iter_movie, probe, read_frame

ROLES = ("plate", "environment", "hdri")
FITS = ("stretch", "fit", "fill", "none")  # environment_fit: docs/shot-sheet.md

ENVIRONMENT_FIT = "fill"  # config environment_fit's default (schemas/config.schema.yaml)


def environment_fit_settings(fit: str, pixel_aspect: float) -> dict:
    """A stage's settings for conforming the environment: ``fit`` and the plate's ``pixel_aspect``, each
    left out when it is the default (ENVIRONMENT_FIT, 1.0); ``environment_fit_of`` reads them back."""
    return {**({} if fit == ENVIRONMENT_FIT else {"fit": fit}),
            **({} if pixel_aspect == 1.0 else {"pixel_aspect": float(pixel_aspect)})}


def environment_fit_of(settings: dict) -> tuple[str, float]:
    """(fit, the plate's pixel aspect) of settings made by ``environment_fit_settings``."""
    return settings.get("fit", ENVIRONMENT_FIT), float(settings.get("pixel_aspect", 1.0))


# Documented HDRI projection defaults: look at the centre of the equirect image (yaw 0 = longitude 0,
# positive yaw turns right), level (pitch 0, positive looks up), 60 degree horizontal field of view.
HDRI_YAW, HDRI_PITCH, HDRI_FOV = 0.0, 0.0, 60.0


# ------------------------------------------------------------------------------------------------
# pixel operations
# ------------------------------------------------------------------------------------------------


def repair_nonfinite(img: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace NaN/Inf values by the mean of the finite values among their 8 neighbours (same channel),
    0 when none is finite. Returns (image, number of pixels that had any non-finite channel)."""
    bad = ~np.isfinite(img)
    if not bad.any():
        return img, 0
    img = np.array(img, dtype=np.float32, copy=True)
    count = int(bad.any(axis=-1).sum()) if img.ndim == 3 else int(bad.sum())
    good = (~bad).astype(np.float64)
    vals = np.where(bad, 0.0, img).astype(np.float64)
    pad = [(1, 1), (1, 1)] + [(0, 0)] * (img.ndim - 2)
    gv, gm = np.pad(vals, pad), np.pad(good, pad)
    h, w = img.shape[:2]
    s = np.zeros_like(vals)
    n = np.zeros_like(good)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            s += gv[dy : dy + h, dx : dx + w]
            n += gm[dy : dy + h, dx : dx + w]
    with np.errstate(invalid="ignore", over="ignore"):
        mean = np.where(n > 0, s / np.maximum(n, 1), 0.0)
    mean = np.clip(mean, -np.finfo(np.float32).max, np.finfo(np.float32).max)
    img[bad] = mean[bad].astype(np.float32)
    return img, count


def conform(img: np.ndarray, size: tuple[int, int], fit: str = "stretch", src_aspect: float = 1.0,
            dst_aspect: float = 1.0, *, nearest: bool = False, pad: float = 0.0) -> tuple[np.ndarray, str]:
    """Resize (H, W, C) to ``size`` = (width, height): INTER_AREA when shrinking, INTER_LINEAR when
    growing. ``src_aspect``/``dst_aspect``: the pixel aspect ratios of the image and of the target; the
    picture's shape is judged on display (width x pixel aspect by height). ``fit`` (FITS):
    'stretch' resizes to the frame whatever the shapes; 'fill' scales uniformly to cover it and crops
    the centre; 'fit' scales uniformly to fit inside and pads with black (alpha 0); 'none' keeps the
    picture's display size (pixels resampled only for a pixel-aspect change), centred, cropped or padded.
    Shapes equal up to a pixel (``same_shape``): 'fill' and 'fit' resize like 'stretch'. ``nearest``:
    nearest-sample resampling (depth: never a blend of two surfaces); ``pad``: the value of padding."""
    import cv2

    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    w, h = int(size[0]), int(size[1])
    sh, sw = img.shape[:2]
    src_w, dst_w = sw * src_aspect, w * dst_aspect  # display widths, heights are the pixel heights
    if fit == "stretch" or (fit != "none" and same_shape((sw, sh), src_aspect, (w, h), dst_aspect)):
        tw, th = w, h
    else:
        scale = {"fill": max(dst_w / src_w, h / sh), "fit": min(dst_w / src_w, h / sh), "none": 1.0}[fit]
        tw, th = src_w * scale / dst_aspect, sh * scale  # the scaled picture, in target pixels
        if fit == "fill":  # cover: never a row or column short
            tw, th = max(w, math.ceil(tw - 1e-6)), max(h, math.ceil(th - 1e-6))
        else:
            tw, th = max(1, round(tw)), max(1, round(th))
            if fit == "fit":
                tw, th = min(w, tw), min(h, th)
    if (sw, sh) == (w, h) and (tw, th) == (w, h):
        return img, "none"
    how = "none"
    if (tw, th) != (sw, sh):
        shrink = tw <= sw and th <= sh
        how = "nearest" if nearest else "area" if shrink else "linear"
        interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        img = cv2.resize(np.ascontiguousarray(img, dtype=np.float32), (tw, th), interpolation=interp)
        if img.ndim == 2:
            img = img[..., None]
    if (tw, th) != (w, h):  # centre: crop what is larger than the frame, pad what is smaller
        out = np.full((h, w, img.shape[2]), pad, np.float32)
        sx, dx = ((tw - w) // 2, 0) if tw >= w else (0, (w - tw) // 2)
        sy, dy = ((th - h) // 2, 0) if th >= h else (0, (h - th) // 2)
        cw, ch = min(w, tw), min(h, th)
        out[dy:dy + ch, dx:dx + cw] = img[sy:sy + ch, sx:sx + cw]
        img = out
    return np.ascontiguousarray(img), how


def same_shape(src_size, src_aspect: float, dst_size, dst_aspect: float) -> bool:
    """Whether a picture of ``src_size`` (w, h) at ``src_aspect`` has the display shape of the frame
    ``dst_size`` at ``dst_aspect``, up to the rounding of sizes: scaled to cover the frame, it overhangs
    by less than a pixel either way."""
    src_w, dst_w = src_size[0] * src_aspect, dst_size[0] * dst_aspect
    scale = max(dst_w / src_w, dst_size[1] / src_size[1])
    return src_w * scale - dst_w < dst_aspect and src_size[1] * scale - dst_size[1] < 1.0


def aspect_note(src_size, src_aspect: float, dst_size, dst_aspect: float, fit: str) -> str | None:
    """What a TD should know when an image's display aspect differs from the frame's (None when it does
    not, see ``same_shape``): both shapes and what ``fit`` does about it."""
    if same_shape(src_size, src_aspect, dst_size, dst_aspect):
        return None
    a = src_size[0] * src_aspect / src_size[1]
    b = dst_size[0] * dst_aspect / dst_size[1]
    what = {"stretch": "stretched to the frame (its picture is distorted)",
            "fill": "scaled to cover the frame, the centre kept (edges cropped)",
            "fit": "scaled to fit inside the frame, black bars around it",
            "none": "not scaled, centred (cropped or padded)"}[fit]
    return (f"display aspect {a:.3f} ({src_size[0]}x{src_size[1]}, pixel aspect {src_aspect:g}) differs from "
            f"the frame's {b:.3f} ({dst_size[0]}x{dst_size[1]}, pixel aspect {dst_aspect:g}); environment_fit "
            f"{fit}: {what} (fix: set environment_fit to stretch, fit, fill or none, or give an environment "
            "of the plate's shape)")


def equirect_to_pinhole(img: np.ndarray, size: tuple[int, int], *, yaw: float = HDRI_YAW,
                        pitch: float = HDRI_PITCH, fov: float = HDRI_FOV) -> np.ndarray:
    """Project an equirectangular (latitude-longitude) image to a pinhole view of ``size`` = (w, h).

    ``yaw``/``pitch`` in degrees: yaw 0 looks at the centre column (longitude 0), positive yaw turns
    right (towards larger x in the panorama); pitch 0 is level, positive looks up. ``fov`` is the
    horizontal field of view in degrees (0 < fov < 180); square pixels. The panorama is prefiltered
    (INTER_AREA) when the view samples it more coarsely than its own resolution, then sampled
    bilinearly, wrapping around in longitude."""
    import cv2

    if not 0 < fov < 180:
        raise ValueError(f"hdri fov must be in (0, 180) degrees, got {fov}")
    w, h = int(size[0]), int(size[1])
    src = np.ascontiguousarray(img, dtype=np.float32)
    sh, sw = src.shape[:2]
    # Prefilter: an output pixel spans fov/w degrees at the centre; a source pixel 360/sw.
    want_w = int(round(360.0 / (fov / w)))
    if want_w < sw * 0.75:
        want_w = max(want_w, 8)
        src = cv2.resize(src, (want_w, max(4, int(round(want_w * sh / sw)))), interpolation=cv2.INTER_AREA)
        if src.ndim == 2:
            src = src[..., None]
        sh, sw = src.shape[:2]
    tx = math.tan(math.radians(fov) / 2)
    ty = tx * h / w
    xs = ((np.arange(w, dtype=np.float64) + 0.5) / w * 2 - 1) * tx
    ys = (1 - (np.arange(h, dtype=np.float64) + 0.5) / h * 2) * ty
    x, y = np.meshgrid(xs, ys)
    z = np.ones_like(x)
    p, q = math.radians(pitch), math.radians(yaw)
    y1 = y * math.cos(p) + z * math.sin(p)
    z1 = -y * math.sin(p) + z * math.cos(p)
    x2 = x * math.cos(q) + z1 * math.sin(q)
    z2 = -x * math.sin(q) + z1 * math.cos(q)
    lon = np.arctan2(x2, z2)
    lat = np.arctan2(y1, np.hypot(x2, z2))
    map_x = ((lon / (2 * math.pi) + 0.5) * sw - 0.5).astype(np.float32)
    map_y = np.clip((0.5 - lat / math.pi) * sh - 0.5, 0, sh - 1).astype(np.float32)
    # Wrap in longitude: pad one column on each side so bilinear sampling crosses the seam.
    padded = np.concatenate([src[:, -1:], src, src[:, :1]], axis=1)
    map_x = np.mod(map_x, sw) + 1
    out = cv2.remap(padded, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if out.ndim == 2:
        out = out[..., None]
    return out


def conformed_aspect(aspect: float, src_size, dst_size, fit: str = "stretch") -> float:
    """Pixel aspect ratio after conforming ``src_size`` (w, h) to ``dst_size``: 'stretch' keeps the
    picture's shape (the pixels change shape), 'fill' scales uniformly (they keep it)."""
    if fit == "stretch":
        aspect = aspect * (src_size[0] / src_size[1]) / (dst_size[0] / dst_size[1])
    return 1.0 if abs(aspect - 1.0) < 1e-4 else round(float(aspect), 6)


# ------------------------------------------------------------------------------------------------
# checks done before anything is written
# ------------------------------------------------------------------------------------------------


def _with_shot(exc: PlateError, shot: str) -> PlateError:
    return PlateError(exc.path, exc.problem, exc.fix, shot=shot)


def _check_frames(source, info: PlateInfo, first: int, last: int, shot: str, part, view) -> None:
    want = range(first, last + 1)
    have = set(info.frames)
    lacking = [f for f in want if f not in have]
    if lacking:
        span = f"{info.frames[0]}-{info.frames[-1]}" if info.frames else "none"
        what = "movie frames (numbered from movie_start)" if info.kind == "movie" else "frames"
        raise PlateError(source, f"{what} {frame_ranges(lacking)} of {first}-{last} are missing (source has {span})",
                         "correct first_frame/last_frame, movie_start_frame, or render the missing frames", shot=shot)
    if info.kind not in ("exr_sequence", "image_sequence"):
        return
    for f in want:  # every frame readable (EXR: structure and chunk tables) and of one size
        path = frame_file(source, f)
        try:
            if info.kind == "exr_sequence":
                p, _ = select_part(path, part, view, check_chunks=True)
                size = (p.width, p.height)
            else:
                size = _image_size(path)[:2]
        except PlateError as exc:
            raise _with_shot(exc, shot) from None
        if size != (info.width, info.height):
            raise PlateError(path, f"frame {f} is {size[0]}x{size[1]} but the sequence's first frame is "
                                   f"{info.width}x{info.height}",
                             "re-render the sequence at one resolution", shot=shot)


# ------------------------------------------------------------------------------------------------
# ingest
# ------------------------------------------------------------------------------------------------


def ingest(source, *, shot: str, element: str, version: int, first: int, last: int, colourspace: str, out_dir,
           resolution=None, part=None, view=None, movie_start: int = 1001, compression: str = "zip", fps=24,
           kind: str = "plate", report_path=None, hdri_yaw: float = HDRI_YAW, hdri_pitch: float = HDRI_PITCH,
           hdri_fov: float = HDRI_FOV, fit: str = "stretch", pixel_aspect: float | None = None, log=None) -> dict:
    """Ingest frames ``first..last`` of ``source`` into ``out_dir`` as ACEScg half EXR; returns the report.

    ``kind``: 'plate' (must be a sequence or movie), 'environment' (sequence, movie, or a single image
    repeated for every frame; a single equirect image is projected), 'hdri' (treat a single image as an
    equirect panorama even if it is not tagged as one). ``resolution`` = (width, height) or None to keep
    the source size (for an HDRI, None gives width = panorama width * fov / 360 and a 16:9 frame).
    ``fit`` (FITS, see ``conform``): how the picture meets a frame of another shape. ``pixel_aspect``:
    the frame's pixel aspect (an environment: the plate's), written to every frame and used to judge
    shapes; None: the source's, changed only by a 'stretch' that changes the frame's shape
    (``conformed_aspect``). A display aspect that differs from the frame's is logged on ``log`` (a
    logger) and recorded in the report (``aspect_note``).
    Raises PlateError naming the shot, the file and a fix before writing anything on bad input.
    """
    if kind not in ROLES:
        raise ValueError(f"kind must be one of {ROLES}, got {kind!r}")
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown EXR compression {compression!r}; use one of {sorted(COMPRESSIONS)}")
    first, last = int(first), int(last)
    version = None if version is None else int(version)  # None: a work file (no version in its name)
    problem = check_colourspace(colourspace)
    if problem:
        raise PlateError(source, problem, "tag the source with a colourspace of the OCIO config", shot=shot)
    if first > last:
        raise PlateError(source, f"frame range {first}-{last} is empty", "set first_frame <= last_frame", shot=shot)
    if resolution is not None:
        resolution = (int(resolution[0]), int(resolution[1]))
        if resolution[0] < 1 or resolution[1] < 1:
            raise PlateError(source, f"resolution {resolution} is not positive", "give WIDTHxHEIGHT", shot=shot)

    try:
        info = probe(source, part=part, view=view, movie_start=movie_start)
    except PlateError as exc:
        raise _with_shot(exc, shot) from None
    single = info.kind in ("still", "hdri")
    if single and kind == "plate":
        raise PlateError(source, f"is a single image ({info.kind}), not a sequence or movie",
                         "give a pattern like plate.####.exr or a movie file", shot=shot)
    hdri = single and (info.kind == "hdri" or kind == "hdri")
    if not single:
        _check_frames(source, info, first, last, shot, part, view)
    if resolution is None:
        if hdri:
            ow = max(16, int(round(info.width * hdri_fov / 360.0 / 2)) * 2)
            resolution = (ow, max(8, int(round(ow * 9 / 16 / 2)) * 2))
        else:
            resolution = (info.width, info.height)

    if pixel_aspect is None:
        aspect = 1.0 if hdri else conformed_aspect(info.pixel_aspect, (info.width, info.height), resolution, fit)
    else:
        aspect = check_pixel_aspect(pixel_aspect)
    note = None if hdri else aspect_note((info.width, info.height), info.pixel_aspect, resolution, aspect, fit)
    if note and log is not None:
        log.warning("shot %s: %s %s: %s", shot, element, source, note)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "shot": shot, "element": element, "version": version, "role": kind, "source": str(source),
        "source_kind": info.kind, "source_resolution": [info.width, info.height], "source_fps": info.fps,
        "colourspace": colourspace, "working_colourspace": WORKING_SPACE, "resolution": list(resolution),
        "source_pixel_aspect": info.pixel_aspect, "pixel_aspect": aspect,
        "fit": fit, "aspect_note": note, "first": first, "last": last, "fps": float(fps), "compression": compression,
        "software": SOFTWARE, "frames": [],
    }
    if info.kind == "movie":
        report["movie_start"] = int(movie_start)
    if info.kind == "exr_sequence" or (single and str(source).lower().endswith(".exr")):
        report["exr_part"], report["exr_view"] = info.details.get("part"), info.details.get("view")
    if hdri:
        report["hdri"] = {"yaw": hdri_yaw, "pitch": hdri_pitch, "fov": hdri_fov, "projection": "pinhole"}

    def prepare(rgba: np.ndarray) -> tuple[np.ndarray, dict]:
        rgba, n_src = repair_nonfinite(rgba)
        rgb = convert(rgba[..., :3], colourspace, WORKING_SPACE)
        rgb, n_conv = repair_nonfinite(rgb)
        img = np.concatenate([rgb, rgba[..., 3:4]], axis=-1)
        if hdri:  # projected with square pixels at the frame's display width, then squeezed to its pixels
            display = (max(1, round(resolution[0] * aspect)), resolution[1])
            img = equirect_to_pinhole(img, display, yaw=hdri_yaw, pitch=hdri_pitch, fov=hdri_fov)
            img = conform(img, resolution)[0]
            how = "hdri_projection"
        else:
            img, how = conform(img, resolution, fit, info.pixel_aspect, aspect)
        img, n_clamp = clamp_half(img)
        return img, {"repaired": n_src + n_conv, "nonfinite_source": n_src, "nonfinite_converted": n_conv,
                     "clamped": n_clamp, "resize": how}

    def write(frame: int, img: np.ndarray, stats: dict, src_desc: str, extra_attrs: dict) -> None:
        path = frame_path(out_dir, shot, element, version, frame)
        attrs = {"shot": shot, "frame": int(frame), **({} if version is None else {"version": version}),
                 "framesPerSecond": fps,
                 "software": SOFTWARE, "sourcePlate": src_desc, "sourceColourspace": colourspace,
                 **extra_attrs}
        write_rgba(path, img, compression=compression, attrs=attrs, pixel_aspect=aspect)
        report["frames"].append({"frame": int(frame), "source": src_desc, "file": str(path), **stats})

    try:
        if single:
            img, stats = prepare(read_frame(source, first, part=part, view=view))
            for f in range(first, last + 1):
                write(f, img, stats, str(source), {})
        elif info.kind == "movie":
            frames = range(first, last + 1)
            for f, rgba in zip(frames, iter_movie(source, first - int(movie_start), len(frames))):
                img, stats = prepare(rgba)
                write(f, img, stats, str(source), {"sourceFrameIndex": f - int(movie_start)})
        else:
            for f in range(first, last + 1):
                img, stats = prepare(read_frame(source, f, part=part, view=view))
                write(f, img, stats, str(frame_file(source, f)), {})
    except PlateError as exc:
        raise _with_shot(exc, shot) from None

    report["repaired_total"] = sum(fr["repaired"] for fr in report["frames"])
    report["clamped_total"] = sum(fr["clamped"] for fr in report["frames"])
    report["resize"] = report["frames"][0]["resize"] if report["frames"] else "none"
    if report_path is not None:
        write_text(report_path, json.dumps(report, indent=2, default=str) + "\n")
    return report
