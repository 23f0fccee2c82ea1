"""OpenEXR reading and writing (OpenEXR 3.x Python binding).

Writing: ``write_exr(path, {"R": half, ..., "depth.Z": float32}, compression=..., attrs=...)``;
each channel's numpy dtype chooses its pixel type (float16 -> HALF, float32 -> FLOAT, uint32 -> UINT).
Writes are atomic. ``framesPerSecond`` given as a number is stored as a Rational.
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
        header[key] = value
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
