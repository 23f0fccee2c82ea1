"""Review stage: an H.264 daily with burn-ins and a PNG contact sheet from the final comp EXRs.

Both read the R, G, B layers of the assembled frames (scene-linear ACEScg; alpha, masks and depth are
ignored) and show them through an OCIO display/view (``colour.to_display_8bit``; default
``sRGB - Display`` / ``ACES 2.0 - SDR 100 nits (Rec.709)``).

Daily (``make_daily``)
    * Non-square pixels (the comp's ``pixelAspectRatio``, e.g. 2.0 anamorphic) are desqueezed first:
      the width is scaled by the aspect (linear filter; area when narrowing), the height is kept.
    * Frames shorter than ``min_height`` (default 360 px) are scaled up by the smallest *integer*
      factor that reaches it, nearest neighbour (128x72 -> 640x360, x5): every comp pixel becomes a
      clean k x k block, nothing is interpolated or invented, and the burn-ins get enough pixels to be
      legible. Frames already ``min_height`` or taller are not resized. An odd width/height (H.264
      4:2:0 needs even sizes) is padded by one replicated edge row/column.
    * Burn-ins, drawn after the display transform on the 8-bit image: top-left ``<shot>  v<NNN>``,
      bottom-right the frame number, white text on a translucent dark bar. Pillow's built-in font
      (``ImageFont.load_default(size=...)``), size ~3% of the daily's height (at least 16 px).
    * Encoded with the ffmpeg binary that ships with imageio-ffmpeg (no system ffmpeg needed):
      rgb24 piped in, libx264 CRF 18, yuv420p, BT.709 matrix (converted explicitly by the scale
      filter, swscale's default would be BT.601) and tags, transfer tagged to match the display
      (sRGB -> iec61966-2-1, Rec.1886/Rec.709 -> bt709), +faststart, bitexact, a fixed thread count
      (same inputs -> same bytes), 1 s keyframe interval for scrubbing; written atomically.
Contact sheet (``make_contact_sheet``)
    * Up to ``max_frames`` frames sampled evenly (always the first and last), in a grid of
      ``columns``, each thumbnail ``thumb_width`` wide and labelled with its frame number under it,
      a title line on top; written atomically as PNG. Thumbnails are desqueezed like the daily.

A missing or unreadable input frame raises ``PlateError`` naming the file (before ffmpeg starts when
a file is missing).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .. import colour
from ..io import exr as exrio
from ..atomic import atomic_path
from ..errors import PlateError
from ..frames import sample_indices
from ..io.images import save_png, scale_to, tile_rows, upscale

DEFAULT_MIN_HEIGHT = 360
FFMPEG_THREADS = 2
CRF = 18
_FIX = "rerun the assemble rule for this shot (snakemake --forcerun assemble)"
_FRAME_IN_NAME = re.compile(r"\.(\d+)\.[A-Za-z0-9]+$")


# ----------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------


def version_label(version) -> str:
    """3, '3', '003' or 'v003' -> 'v003'."""
    s = str(version).strip()
    s = s[1:] if s[:1] in ("v", "V") else s
    return f"v{int(s):03d}"


def frame_numbers(frame_files, first_frame: int | None = None) -> list[int]:
    """Frame number of every file: ``first_frame + i`` when given, else the number in the file name
    (``<shot>_comp_v003.1001.exr`` -> 1001), else ``1 + i``.

    With ``first_frame`` given and every file name carrying a number, the two must agree (a burn-in
    that disagrees with its file would send review notes to the wrong frame): ValueError otherwise.
    """
    files = [Path(f) for f in frame_files]
    named = [_FRAME_IN_NAME.search(f.name) for f in files]
    if first_frame is None:
        if all(named):
            return [int(m.group(1)) for m in named]
        return list(range(1, len(files) + 1))
    nums = [int(first_frame) + i for i in range(len(files))]
    if all(named):
        for f, m, n in zip(files, named, nums):
            if int(m.group(1)) != n:
                raise ValueError(f"{f}: file name says frame {int(m.group(1))}, but first_frame={first_frame} "
                                 f"makes it frame {n} (a gap or unsorted list?); pass the frames in order "
                                 "without gaps, or first_frame=None to use the numbers in the file names")
    return nums


def check_inputs(frame_files) -> list[Path]:
    """Paths of the frames; PlateError naming the first missing file (and how many are missing)."""
    files = [Path(f) for f in frame_files]
    if not files:
        raise ValueError("no frames given to the review stage")
    missing = [f for f in files if not f.is_file()]
    if missing:
        more = f" ({len(missing)} of {len(files)} frames missing)" if len(missing) > 1 else ""
        raise PlateError(missing[0], f"comp frame is missing{more}", _FIX)
    return files


def check_display_view(display: str, view: str | None) -> tuple[str, str]:
    view = colour.DEFAULT_VIEW if view is None else view
    cfg = colour.config()
    displays = list(cfg.getDisplays())
    if display not in displays:
        raise ValueError(f"unknown OCIO display {display!r}; the config has: {', '.join(displays)}")
    views = list(cfg.getViews(display))
    if view not in views:
        raise ValueError(f"unknown view {view!r} for display {display!r}; it has: {', '.join(views)}")
    return display, view


def read_display(path, *, display: str = colour.DEFAULT_DISPLAY, view: str | None = None) -> np.ndarray:
    """(H, W, 3) uint8 display image of one comp frame's R, G, B layers (non-finite values -> 0/max)."""
    path = Path(path)
    if not path.is_file():
        raise PlateError(path, "comp frame is missing", _FIX)
    layers = exrio.read_layers(path)  # PlateError naming the file when it is unreadable
    absent = [c for c in "RGB" if c not in layers]
    if absent:
        raise PlateError(path, f"comp frame has no {'/'.join(absent)} layer (layers: {', '.join(sorted(layers))})",
                         _FIX)
    rgb = np.stack([layers[c] for c in "RGB"], axis=-1).astype(np.float32)
    rgb = np.nan_to_num(rgb, nan=0.0, posinf=65504.0, neginf=0.0)
    return display_8bit(rgb, display=display, view=colour.DEFAULT_VIEW if view is None else view)


_STRIP_PIXELS = 1 << 18


def display_8bit(rgb: np.ndarray, *, display: str, view: str) -> np.ndarray:
    """``colour.to_display_8bit`` on horizontal strips in threads (OCIO releases the GIL; the ACES 2.0
    view costs ~1 s per HD frame on one core). Per-pixel transform: the result is identical."""
    workers = min(4, os.cpu_count() or 1)
    if workers == 1 or rgb.shape[0] * rgb.shape[1] < _STRIP_PIXELS:
        return colour.to_display_8bit(rgb, display=display, view=view)
    strips = np.array_split(rgb, workers, axis=0)
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(lambda a: colour.to_display_8bit(a, display=display, view=view), strips))
    return np.concatenate(parts, axis=0)


# ----------------------------------------------------------------------------------------------------
# Burn-ins
# ----------------------------------------------------------------------------------------------------


def pad_even(img: np.ndarray) -> np.ndarray:
    """Pad an odd height/width by one replicated edge row/column (4:2:0 needs even sizes)."""
    h, w = img.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return img
    return np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def font_size_for(height: int) -> int:
    return max(16, round(height * 0.03))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _text_box(draw: ImageDraw.ImageDraw, font, text: str) -> tuple[int, int, int, int]:
    return tuple(int(v) for v in draw.textbbox((0, 0), text, font=font))


def burn_in(img: np.ndarray, *, top_left: str = "", top_right: str = "", bottom_left: str = "",
            bottom_right: str = "", font_size: int | None = None, bar_opacity: float = 0.6) -> tuple[np.ndarray, dict]:
    """Draw texts in the corners of an (H, W, 3) uint8 image: white on a translucent dark bar.

    Returns the new image and ``{corner: (x0, y0, x1, y1)}``, the bar of every text drawn (x1/y1
    exclusive), so callers and tests know where the burn-ins are.
    """
    h, w = img.shape[:2]
    size = font_size or font_size_for(h)
    font = _font(size)
    pad = max(3, round(size * 0.35))
    margin = max(2, round(size * 0.4))
    out = img.copy()
    pil = Image.fromarray(out)
    draw = ImageDraw.Draw(pil)
    boxes, placed = {}, []
    for corner, text in (("top_left", top_left), ("top_right", top_right), ("bottom_left", bottom_left),
                         ("bottom_right", bottom_right)):
        if not text:
            continue
        bx0, by0, bx1, by1 = _text_box(draw, font, text)
        bw, bh = bx1 - bx0 + 2 * pad, by1 - by0 + 2 * pad
        x0 = margin if corner.endswith("left") else w - margin - bw
        y0 = margin if corner.startswith("top") else h - margin - bh
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(w, x0 + bw), min(h, y0 + bh)
        boxes[corner] = (x0, y0, x1, y1)
        placed.append((text, x0 + pad - bx0, y0 + pad - by0))
    arr = np.asarray(pil).copy()
    for x0, y0, x1, y1 in boxes.values():  # the translucent bars, then the text on top
        arr[y0:y1, x0:x1] = (arr[y0:y1, x0:x1].astype(np.float32) * (1.0 - bar_opacity) + 0.5).astype(np.uint8)
    pil = Image.fromarray(arr)
    draw = ImageDraw.Draw(pil)
    for text, x, y in placed:
        draw.text((x, y), text, font=font, fill=(255, 255, 255))
    return np.asarray(pil).copy(), boxes


def desqueeze(img: np.ndarray, pixel_aspect: float) -> np.ndarray:
    """Scale the width of an (H, W, 3) image by the pixel aspect ratio (1.0: unchanged)."""
    h, w = img.shape[:2]
    new_w = max(1, round(w * pixel_aspect))
    if new_w == w:
        return img
    return cv2.resize(img, (new_w, h), interpolation=cv2.INTER_AREA if new_w < w else cv2.INTER_LINEAR)


def daily_frame(display_img: np.ndarray, *, shot: str, version, frame: int,
                min_height: int | None = DEFAULT_MIN_HEIGHT, pixel_aspect: float = 1.0) -> tuple[np.ndarray, dict]:
    """One daily frame: desqueeze, upscale (integer, nearest), pad to even, burn in. Returns (image, boxes)."""
    k = scale_to(display_img.shape[0], min_height)
    img = pad_even(upscale(desqueeze(display_img, pixel_aspect), k))
    return burn_in(img, top_left=f"{shot}  {version_label(version)}", bottom_right=f"{int(frame):04d}")


# ----------------------------------------------------------------------------------------------------
# Daily
# ----------------------------------------------------------------------------------------------------


def _transfer_tag(display: str) -> str | None:
    d = display.lower()
    if "srgb" in d:
        return "iec61966-2-1"
    if "1886" in d or "rec.709" in d or "bt.709" in d:
        return "bt709"
    return None  # other displays (P3, HDR...): leave the transfer untagged rather than lie


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_command(out_path, width: int, height: int, *, fps, title: str, comment: str, display: str) -> list[str]:
    rate = exrio.fps_rational(fps)
    rate_s = f"{rate.numerator}/{rate.denominator}"
    gop = str(max(1, round(float(rate))))
    # Frame colour properties are set on the frames (setparams) as well as on the encoder: recent
    # ffmpeg takes them from the frames and would otherwise write primaries/transfer "unknown".
    trc = _transfer_tag(display)
    params = "color_primaries=bt709:colorspace=bt709:range=tv" + (f":color_trc={trc}" if trc else "")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", rate_s, "-i", "pipe:0",
           "-an", "-vf", f"scale=in_range=full:out_color_matrix=bt709:out_range=tv,format=yuv420p,setparams={params}",
           "-c:v", "libx264", "-preset", "medium", "-crf", str(CRF), "-pix_fmt", "yuv420p", "-g", gop,
           "-threads", str(FFMPEG_THREADS), "-r", rate_s,
           "-color_primaries", "bt709", "-colorspace", "bt709", "-color_range", "tv"]
    if trc:
        cmd += ["-color_trc", trc]
    cmd += ["-movflags", "+faststart", "-fflags", "+bitexact", "-flags:v", "+bitexact",
            "-metadata", f"title={title}", "-metadata", f"comment={comment}", "-f", "mp4", str(out_path)]
    return cmd


def make_daily(frame_files, out_mp4, *, shot: str, version, first_frame: int | None, fps=24,
               display: str = colour.DEFAULT_DISPLAY, view: str | None = None,
               min_height: int | None = DEFAULT_MIN_HEIGHT, pixel_aspect: float | None = None) -> dict:
    """Encode the comp frames into an H.264 MP4 daily with burn-ins (see the module docstring).

    ``first_frame``: number of the first file's frame (None: take the numbers from the file names).
    ``pixel_aspect``: desqueeze factor (None: the first frame's pixelAspectRatio).
    Returns a summary: path, frames, first/last frame, source and daily size, pixel aspect, scale, fps,
    codec, display/view, burn-in boxes of the first frame, ffmpeg command.
    """
    files = check_inputs(frame_files)
    numbers = frame_numbers(files, first_frame)
    display, view = check_display_view(display, view)
    vlabel = version_label(version)
    out_mp4 = Path(out_mp4)
    aspect = exrio.check_pixel_aspect(exrio.pixel_aspect(files[0]) if pixel_aspect is None else pixel_aspect)

    first = read_display(files[0], display=display, view=view)
    src_h, src_w = first.shape[:2]
    img0, boxes0 = daily_frame(first, shot=shot, version=vlabel, frame=numbers[0], min_height=min_height,
                               pixel_aspect=aspect)
    out_h, out_w = img0.shape[:2]
    title = f"{shot} {vlabel}"
    comment = (f"cinecomp daily: frames {numbers[0]}-{numbers[-1]}, {display} / {view}, "
               + (f"desqueezed x{aspect:g}, " if aspect != 1.0 else "")
               + f"x{scale_to(src_h, min_height)} nearest upscale")

    with atomic_path(out_mp4, suffix=".mp4") as tmp, tempfile.TemporaryFile() as errlog:
        cmd = ffmpeg_command(tmp, out_w, out_h, fps=fps, title=title, comment=comment, display=display)
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errlog)
        try:
            for i, (path, frame) in enumerate(zip(files, numbers)):
                if i == 0:
                    img = img0
                else:
                    disp = read_display(path, display=display, view=view)
                    if disp.shape[:2] != (src_h, src_w):
                        raise PlateError(path, f"frame is {disp.shape[1]}x{disp.shape[0]}, the first frame "
                                               f"({files[0].name}) is {src_w}x{src_h}", _FIX)
                    img, _ = daily_frame(disp, shot=shot, version=vlabel, frame=frame, min_height=min_height,
                                         pixel_aspect=aspect)
                try:
                    proc.stdin.write(np.ascontiguousarray(img).tobytes())
                except BrokenPipeError:
                    break  # ffmpeg died: its exit status and stderr are reported below
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if rc != 0:
            errlog.seek(0)
            tail = errlog.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{out_mp4}: ffmpeg failed (exit {rc}): {tail.strip()}\ncommand: {' '.join(cmd)}")
    return {
        "path": str(out_mp4), "frames": len(files), "first_frame": numbers[0], "last_frame": numbers[-1],
        "source_size": (src_w, src_h), "size": (out_w, out_h), "pixel_aspect": aspect,
        "scale": scale_to(src_h, min_height),
        "fps": float(fps), "codec": "h264", "pix_fmt": "yuv420p", "crf": CRF, "display": display, "view": view,
        "title": title, "burn_in": boxes0, "command": [*cmd[:-1], str(out_mp4)],
    }


# ----------------------------------------------------------------------------------------------------
# Contact sheet
# ----------------------------------------------------------------------------------------------------


def make_contact_sheet(frame_files, out_png, *, shot: str, version, columns: int = 6, max_frames: int = 24,
                       thumb_width: int = 320, first_frame: int | None = None,
                       display: str = colour.DEFAULT_DISPLAY, view: str | None = None,
                       pixel_aspect: float | None = None) -> dict:
    """A PNG grid of evenly sampled frames (display-transformed), each labelled with its frame number
    under it, and a title line. Frame numbers: ``first_frame + i`` or, when None, from the file names.
    Thumbnails are desqueezed by ``pixel_aspect`` (None: the first frame's pixelAspectRatio).

    Returns path, size, the frames shown, columns/rows, thumbnail size and every thumbnail's box
    (``cells``: [(frame, (x0, y0, x1, y1))], x1/y1 exclusive).
    """
    if columns < 1 or max_frames < 1 or thumb_width < 8:
        raise ValueError("columns and max_frames must be >= 1, thumb_width >= 8")
    files = check_inputs(frame_files)
    numbers = frame_numbers(files, first_frame)
    display, view = check_display_view(display, view)
    vlabel = version_label(version)
    picks = sample_indices(len(files), max_frames)
    aspect = exrio.check_pixel_aspect(exrio.pixel_aspect(files[0]) if pixel_aspect is None else pixel_aspect)

    thumbs, src_size = [], None
    for i in picks:
        img = read_display(files[i], display=display, view=view)
        h, w = img.shape[:2]
        if src_size is None:
            src_size = (w, h)
        elif (w, h) != src_size:
            raise PlateError(files[i], f"frame is {w}x{h}, the first frame ({files[picks[0]].name}) is "
                                       f"{src_size[0]}x{src_size[1]}", _FIX)
        thumbs.append(img)
    tw = int(thumb_width)
    th = max(1, round(tw * src_size[1] / (src_size[0] * aspect)))

    label_size = max(12, tw // 16)
    title_size = max(14, round(label_size * 1.3))
    gap = max(4, tw // 40)
    label_h = round(label_size * 1.6)
    title_h = round(title_size * 2.0)
    cols = min(columns, len(picks))
    rows = math.ceil(len(picks) / cols)
    title = (f"{shot}  {vlabel}    frames {numbers[0]}-{numbers[-1]}  ({len(picks)} of {len(files)} shown)"
             f"    {view}")
    title_font, label_font = _font(title_size), _font(label_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    tx0, ty0, tx1, ty1 = _text_box(probe, title_font, title)
    pils = [Image.fromarray(img) for img in thumbs]
    pils = [p if p.size == (tw, th) else p.resize((tw, th), Image.Resampling.LANCZOS) for p in pils]
    sheet, boxes = tile_rows([pils[r * cols:(r + 1) * cols] for r in range(rows)], gap=gap, top=title_h,
                             row_foot=label_h, bottom=gap, min_width=(tx1 - tx0) + 2 * gap, background=(28, 28, 28))
    width, height = sheet.size

    draw = ImageDraw.Draw(sheet)
    draw.text((gap - tx0, (title_h - (ty1 - ty0)) // 2 - ty0), title, font=title_font, fill=(240, 240, 240))
    cells = []
    for i, (x0, y0, x1, y1) in zip(picks, (box for row in boxes for box in row)):
        label = f"{numbers[i]:04d}"
        lx0, ly0, lx1, ly1 = _text_box(draw, label_font, label)
        draw.text((x0 + (tw - (lx1 - lx0)) // 2 - lx0, y1 + (label_h - (ly1 - ly0)) // 2 - ly0), label,
                  font=label_font, fill=(220, 220, 220))
        cells.append((numbers[i], (x0, y0, x1, y1)))

    save_png(sheet, out_png, {"Title": title, "Software": "cinecomp", "Comment": f"{display} / {view}"})
    return {
        "path": str(out_png), "size": (width, height), "frames": [numbers[i] for i in picks],
        "total_frames": len(files), "columns": cols, "rows": rows, "thumb_size": (tw, th),
        "source_size": src_size, "pixel_aspect": aspect, "display": display, "view": view, "title": title,
        "cells": cells,
    }


__all__ = ["make_daily", "make_contact_sheet", "read_display", "burn_in", "daily_frame", "frame_numbers",
           "sample_indices", "ffmpeg_command", "version_label", "DEFAULT_MIN_HEIGHT"]
