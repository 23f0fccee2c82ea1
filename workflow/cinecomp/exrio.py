"""OpenEXR reading and writing (OpenEXR 3.x Python binding).

Writing: ``write_exr(path, {"R": half, ..., "depth.Z": float32}, compression=..., attrs=...)``;
each channel's numpy dtype chooses its pixel type (float16 -> HALF, float32 -> FLOAT, uint32 -> UINT).
Writes are atomic. ``framesPerSecond`` given as a number is stored as a Rational. Attribute names the
OpenEXR library reserves are renamed (``version`` -> ``shotVersion``, see RESERVED_RENAMES).
"""

from __future__ import annotations

import fractions
from pathlib import Path

import numpy as np
import OpenEXR

from .atomic import atomic_path
from .errors import PlateError

COMPRESSIONS = {
    "none": OpenEXR.NO_COMPRESSION,
    "rle": OpenEXR.RLE_COMPRESSION,
    "zips": OpenEXR.ZIPS_COMPRESSION,
    "zip": OpenEXR.ZIP_COMPRESSION,
    "piz": OpenEXR.PIZ_COMPRESSION,
    "pxr24": OpenEXR.PXR24_COMPRESSION,
    "b44": OpenEXR.B44_COMPRESSION,
    "b44a": OpenEXR.B44A_COMPRESSION,
    "dwaa": OpenEXR.DWAA_COMPRESSION,
    "dwab": OpenEXR.DWAB_COMPRESSION,
}


# Header names the OpenEXR library owns (it refuses to write them as user attributes).
RESERVED_RENAMES = {"version": "shotVersion", "type": "imageType", "name": "partName", "chunkCount": "chunks"}


def fps_rational(fps) -> fractions.Fraction:
    """24 -> 24/1, 23.976 -> 24000/1001, 29.97 -> 30000/1001."""
    fps = float(fps)
    for base in (24, 30, 48, 60, 120):
        if abs(fps - base * 1000 / 1001) < 1e-3:
            return fractions.Fraction(base * 1000, 1001)
    return fractions.Fraction(fps).limit_denominator(1001)


def write_exr(path, channels: dict[str, np.ndarray], *, compression: str = "zip", attrs: dict | None = None) -> None:
    """Write one scanline EXR atomically. All channels share one (H, W) shape."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown EXR compression {compression!r}; use one of {sorted(COMPRESSIONS)}")
    shapes = {np.asarray(a).shape for a in channels.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"{path}: channels must all be 2-D arrays of one shape, got {shapes}")
    pix = {}
    for name, a in channels.items():
        a = np.ascontiguousarray(a)
        if a.dtype not in (np.float16, np.float32, np.uint32):
            a = a.astype(np.float32)
        pix[name] = a
    header = {"compression": COMPRESSIONS[compression], "type": OpenEXR.scanlineimage}
    for key, value in (attrs or {}).items():
        if key == "framesPerSecond" and not isinstance(value, fractions.Fraction):
            value = fps_rational(value)
        header[RESERVED_RENAMES.get(key, key)] = value
    with atomic_path(path, suffix=".exr") as tmp:
        with OpenEXR.File(header, pix) as f:
            f.write(str(tmp))


def read_exr_header(path) -> dict:
    """Header of the first part (cheap: no pixels are decoded)."""
    path = Path(path)
    try:
        with OpenEXR.File(str(path), header_only=True) as f:
            return dict(f.header())
    except Exception as exc:  # the binding raises plain RuntimeError/ValueError on damage
        raise PlateError(path, f"not a readable OpenEXR file ({exc})", "re-export or replace the file") from exc


def read_layers(path) -> dict[str, np.ndarray]:
    """All channels of a single-part EXR written by cinecomp (data window == display window)."""
    path = Path(path)
    try:
        with OpenEXR.File(str(path), separate_channels=True) as f:
            return {name: np.array(ch.pixels) for name, ch in f.channels().items()}
    except Exception as exc:
        raise PlateError(path, f"not a readable OpenEXR file ({exc})", "delete it and rerun the rule that made it") from exc


def read_rgba(path) -> np.ndarray:
    """(H, W, 4) float32 RGBA of a cinecomp-written frame; A = 1 where absent."""
    ch = read_layers(path)
    h, w = next(iter(ch.values())).shape
    out = np.ones((h, w, 4), np.float32)
    for i, c in enumerate("RGBA"):
        if c in ch:
            out[..., i] = ch[c]
    return out


def write_rgba(path, rgba: np.ndarray, *, compression: str = "zip", attrs: dict | None = None, dtype=np.float16) -> None:
    """Write an (H, W, 3|4) image as R,G,B[,A] in ``dtype`` (half by default)."""
    chans = {c: rgba[..., i].astype(dtype) for i, c in enumerate("RGBA"[: rgba.shape[-1]])}
    write_exr(path, chans, compression=compression, attrs=attrs)
