"""OpenEXR reading and writing (OpenEXR 3.x Python binding).

Reading plates made by others: ``read_exr(path, part, view)`` / ``read_exr_rgba`` handle every flat
EXR flavour (tiled, mipmapped, any line order and compression, data window != display window,
multi-part, multi-view, luminance/chroma, uint); ``exr_info`` validates a file's structure in pure
Python first, so damaged or deep files raise PlateError instead of reaching the decoder.

Writing: ``write_exr(path, {"R": half, ..., "depth.Z": float32}, compression=..., attrs=...)``;
each channel's numpy dtype chooses its pixel type (float16 -> HALF, float32 -> FLOAT, uint32 -> UINT).
Writes are atomic. ``framesPerSecond`` given as a number is stored as a Rational. Attribute names the
OpenEXR library reserves are renamed (``version`` -> ``shotVersion``, see RESERVED_RENAMES).
``pixel_aspect=`` writes ``pixelAspectRatio`` (anamorphic plates keep their aspect through the stages;
``pixel_aspect(path)`` reads it back, 1.0 when absent).
Half channels are made with ``half_channels``: values beyond the half range (|x| > 65504, +-Inf) are
clamped to +-65504 (a plain cast makes them Inf) and a warning names the shot, frame, layer and count.
"""

from __future__ import annotations

import fractions
import logging
import math
import mmap as _mmap
import os
import struct as _struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import OpenEXR

from ..atomic import atomic_path
from ..errors import PlateError

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


HALF_MAX = 65504.0  # the largest finite half float
_log = logging.getLogger(__name__)


def clamp_half(img: np.ndarray) -> tuple[np.ndarray, int]:
    """``img`` clamped to the half range [-HALF_MAX, HALF_MAX] (+-Inf too; NaN stays NaN) and the number of
    pixels clamped (an (H, W, C) pixel counts once, whatever its channels)."""
    over = np.abs(img) > HALF_MAX
    if not over.any():
        return img, 0
    n = int(over.any(axis=-1).sum()) if img.ndim == 3 else int(over.sum())
    return np.clip(img, -HALF_MAX, HALF_MAX), n


def half_channels(channels: dict[str, np.ndarray], attrs: dict | None = None) -> dict[str, np.ndarray]:
    """Channels cast to float16 for ``write_exr``, clamped to the half range first; one warning per call
    (i.e. per frame) names the shot and frame (from ``attrs``), each clamped layer and its pixel count."""
    out, clamped = {}, {}
    for name, a in channels.items():
        a, n = clamp_half(np.asarray(a))
        out[name] = a.astype(np.float16)
        if n:
            clamped[name] = n
    if clamped:
        a = attrs or {}
        _log.warning("shot %s frame %s: %s clamped to the half-float range (+-%g); values that large mean a "
                     "light or exposure setting is wrong (fix: check the sheet's light, light_probe and "
                     "harmonize_params)", a.get("shot", "?"), a.get("frame", "?"),
                     ", ".join(f"{k} {v} px" for k, v in clamped.items()), HALF_MAX)
    return out


# Header names the OpenEXR library owns (it refuses to write them as user attributes).
RESERVED_RENAMES = {"version": "shotVersion", "type": "imageType", "name": "partName", "chunkCount": "chunks"}


def fps_rational(fps) -> fractions.Fraction:
    """24 -> 24/1, 23.976 -> 24000/1001, 29.97 -> 30000/1001."""
    fps = float(fps)
    for base in (24, 30, 48, 60, 120):
        if abs(fps - base * 1000 / 1001) < 1e-3:
            return fractions.Fraction(base * 1000, 1001)
    return fractions.Fraction(fps).limit_denominator(1001)


def check_pixel_aspect(value) -> float:
    """A pixel aspect ratio (width / height of a pixel) as a float; ValueError unless in [0.001, 1000]."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not (math.isfinite(v) and 1e-3 <= v <= 1e3):
        raise ValueError(f"pixel aspect ratio must be a finite number in [0.001, 1000], got {value!r}")
    return v


def write_exr(path, channels: dict[str, np.ndarray], *, compression: str = "zip", attrs: dict | None = None,
              pixel_aspect: float | None = None) -> None:
    """Write one scanline EXR atomically. All channels share one (H, W) shape. ``pixel_aspect``:
    the header's pixelAspectRatio (None: 1.0, the OpenEXR default)."""
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
        elif key == "pixelAspectRatio":
            value = check_pixel_aspect(value)
        header[RESERVED_RENAMES.get(key, key)] = value
    if pixel_aspect is not None:
        header["pixelAspectRatio"] = check_pixel_aspect(pixel_aspect)
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
    return rgba_from_layers(read_layers(path))


def rgba_from_layers(ch: dict[str, np.ndarray]) -> np.ndarray:
    """(H, W, 4) float32 RGBA from :func:`read_layers` channels; A = 1 where absent."""
    h, w = next(iter(ch.values())).shape
    out = np.ones((h, w, 4), np.float32)
    for i, c in enumerate("RGBA"):
        if c in ch:
            out[..., i] = ch[c]
    return out


def write_rgba(path, rgba: np.ndarray, *, compression: str = "zip", attrs: dict | None = None, dtype=np.float16,
               pixel_aspect: float | None = None) -> None:
    """Write an (H, W, 3|4) image as R,G,B[,A] in ``dtype`` (half by default, clamped: ``half_channels``)."""
    chans = {c: rgba[..., i] for i, c in enumerate("RGBA"[: rgba.shape[-1]])}
    chans = half_channels(chans, attrs) if np.dtype(dtype) == np.float16 else {k: v.astype(dtype) for k, v in chans.items()}
    write_exr(path, chans, compression=compression, attrs=attrs, pixel_aspect=pixel_aspect)


def pixel_aspect(path, part=None, view=None) -> float:
    """pixelAspectRatio of the part ``read_exr`` would read (header only); 1.0 when absent or invalid."""
    return part_aspect(select_part(path, part, view)[0])


def part_aspect(p: "ExrPart") -> float:
    try:
        return check_pixel_aspect(p.attrs.get("pixelAspectRatio", 1.0))
    except ValueError:
        return 1.0


# ---------------------------------------------------------------------------------------------------
# Robust reading of EXR files made by others (plates).
#
# ``read_exr`` never hands a file to the OpenEXR binding before the file has passed ``exr_info``:
# a pure-Python parse of the header(s) and of every chunk-offset table entry (each offset must lie
# inside the file and point at a chunk leader that names the right part, a scanline/tile of the data
# window and a size that fits). That rejects truncated, incomplete and corrupt files with a precise
# message instead of letting the binding print warnings, silently drop parts, or crash. Deep images
# are refused (cinecomp reads flat images), as are files whose ``type`` attribute contradicts their
# version flags.
# ---------------------------------------------------------------------------------------------------

_MAGIC = 20000630
_TILED_FLAG, _LONG_NAMES_FLAG, _NON_IMAGE_FLAG, _MULTIPART_FLAG = 0x200, 0x400, 0x800, 0x1000
_KNOWN_FLAGS = _TILED_FLAG | _LONG_NAMES_FLAG | _NON_IMAGE_FLAG | _MULTIPART_FLAG
# compression id -> (name, scanlines per chunk)
_CODECS = {0: ("none", 1), 1: ("rle", 1), 2: ("zips", 1), 3: ("zip", 16), 4: ("piz", 32), 5: ("pxr24", 16),
           6: ("b44", 32), 7: ("b44a", 32), 8: ("dwaa", 32), 9: ("dwab", 256), 10: ("htj2k256", 256),
           11: ("htj2k32", 32), 12: ("lj2k", 256), 13: ("zstd", 1)}
# Codecs whose scanlines per chunk differ between OpenEXR versions: every candidate is tried.
_LINES_CANDIDATES = {13: (1, 32)}
_SUPPORTED_CODECS = {i for i, (name, _) in _CODECS.items()
                     if hasattr(OpenEXR, f"{'NO' if name == 'none' else name.upper()}_COMPRESSION")}
_PIXEL_BYTES = {0: 4, 1: 2, 2: 4}  # UINT, HALF, FLOAT
_PIXEL_NAMES = {0: "uint", 1: "half", 2: "float"}
_PTYPE = {v: k for k, v in _PIXEL_NAMES.items()}
_STORAGE = ("scanlineimage", "tiledimage", "deepscanline", "deeptile")
MAX_PIXELS = 1 << 30  # refuse data windows beyond a gigapixel (a damaged header, not a plate)
REC709_CHROMATICITIES = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)

_DAMAGED_FIX = "the file is damaged or incomplete: re-export it, or copy it again from its source"


@dataclass
class ExrChannel:
    name: str
    pixel_type: str  # 'uint' | 'half' | 'float'
    x_sampling: int = 1
    y_sampling: int = 1


@dataclass
class ExrPart:
    """Header facts of one part, parsed without the OpenEXR library."""

    index: int
    name: str | None
    storage: str  # 'scanlineimage' | 'tiledimage' | 'deepscanline' | 'deeptile'
    compression: str
    data_window: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax (inclusive)
    display_window: tuple[int, int, int, int]
    line_order: int
    channels: list[ExrChannel]
    tiles: tuple[int, int, int, int] | None = None  # xsize, ysize, level mode, rounding mode
    multi_view: list[str] | None = None
    view: str | None = None
    chromaticities: tuple[float, ...] | None = None
    fps: float | None = None
    envmap: int | None = None
    chunk_count: int = 0
    lines_per_chunk: int = 1
    attrs: dict = field(default_factory=dict)  # the remaining simple attributes (int/float/string)

    @property
    def width(self) -> int:
        return self.display_window[2] - self.display_window[0] + 1

    @property
    def height(self) -> int:
        return self.display_window[3] - self.display_window[1] + 1

    @property
    def views(self) -> list[str]:
        return list(self.multi_view) if self.multi_view else ([self.view] if self.view else [])


@dataclass
class ExrInfo:
    path: str
    version_flags: int
    parts: list[ExrPart]

    @property
    def multipart(self) -> bool:
        return bool(self.version_flags & _MULTIPART_FLAG)


class _Damaged(Exception):
    """Internal: a structural problem found while parsing (turned into PlateError)."""


def _level_count(size: int, rounding: int) -> int:
    n = 0
    if rounding == 0:  # ROUND_DOWN: floor(log2(size))
        while size > 1:
            size >>= 1
            n += 1
    else:  # ROUND_UP: ceil(log2(size))
        r = 0
        while size > 1:
            if size & 1:
                r = 1
            size >>= 1
            n += 1
        n += r
    return n + 1


def _level_size(size: int, level: int, rounding: int) -> int:
    if rounding == 0:
        return max(size >> level, 1)
    return max((size + (1 << level) - 1) >> level, 1)


def _tile_levels(part: ExrPart) -> list[tuple[int, int, int, int]]:
    """(lx, ly, tiles_x, tiles_y) of every level of a tiled part."""
    xs, ys, mode, rounding = part.tiles
    x0, y0, x1, y1 = part.data_window
    w, h = x1 - x0 + 1, y1 - y0 + 1
    if mode == 0:
        pairs = [(0, 0)]
    elif mode == 1:
        n = _level_count(max(w, h), rounding)
        pairs = [(i, i) for i in range(n)]
    else:
        nx, ny = _level_count(w, rounding), _level_count(h, rounding)
        pairs = [(lx, ly) for ly in range(ny) for lx in range(nx)]
    out = []
    for lx, ly in pairs:
        lw, lh = _level_size(w, lx, rounding), _level_size(h, ly, rounding)
        out.append((lx, ly, -(-lw // xs), -(-lh // ys)))
    return out


def _chunk_count(part: ExrPart) -> int:
    x0, y0, x1, y1 = part.data_window
    if part.storage in ("tiledimage", "deeptile"):
        return sum(tx * ty for _, _, tx, ty in _tile_levels(part))
    return -(-(y1 - y0 + 1) // part.lines_per_chunk)


def _codec_id(name: str) -> int:
    for i, (n, _) in _CODECS.items():
        if n == name:
            return i
    raise KeyError(name)


class _Reader:
    def __init__(self, buf, pos: int = 0):
        self.buf, self.pos, self.end = buf, pos, len(buf)

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise _Damaged(f"file ends inside the header ({what} at byte {self.pos} needs {n} bytes, "
                           f"file has {self.end})")
        b = self.buf[self.pos : self.pos + n]
        self.pos += n
        return b

    def cstr(self, limit: int, what: str) -> str:
        stop = self.buf.find(b"\0", self.pos, min(self.end, self.pos + limit + 1))
        if stop < 0:
            if self.pos + limit + 1 > self.end:
                raise _Damaged(f"file ends inside the header (unterminated {what} at byte {self.pos})")
            raise _Damaged(f"{what} at byte {self.pos} is longer than {limit} characters")
        s = bytes(self.buf[self.pos : stop])
        self.pos = stop + 1
        try:
            return s.decode("utf-8")
        except UnicodeDecodeError:
            return s.decode("latin-1")


def _parse_channels(value: bytes, maxlen: int) -> list[ExrChannel]:
    r = _Reader(value)
    out = []
    while True:
        if r.pos >= r.end:
            raise _Damaged("channel list is not terminated")
        if value[r.pos] == 0:
            break
        name = r.cstr(maxlen, "channel name")
        ptype, _plinear, xs, ys = _struct.unpack("<iB3xii", r.take(16, "channel description"))
        if ptype not in _PIXEL_NAMES:
            raise _Damaged(f"channel {name!r} has unknown pixel type {ptype}")
        if xs < 1 or ys < 1:
            raise _Damaged(f"channel {name!r} has invalid sampling {xs}x{ys}")
        out.append(ExrChannel(name, _PIXEL_NAMES[ptype], xs, ys))
    return out


def _parse_header(r: _Reader, index: int, flags: int) -> ExrPart | None:
    """Parse one header; None at the empty header that ends a multi-part header list."""
    maxlen = 255 if flags & _LONG_NAMES_FLAG else 31
    if r.pos < r.end and r.buf[r.pos] == 0:
        r.pos += 1
        return None
    a: dict = {}
    while True:
        if r.pos >= r.end:
            raise _Damaged("file ends inside the header")
        if r.buf[r.pos] == 0:
            r.pos += 1
            break
        name = r.cstr(maxlen, "attribute name")
        typ = r.cstr(maxlen, f"type of attribute {name!r}")
        (size,) = _struct.unpack("<i", r.take(4, f"size of attribute {name!r}"))
        if size < 0:
            raise _Damaged(f"attribute {name!r} has a negative size ({size})")
        value = r.take(size, f"value of attribute {name!r}")
        a[name] = (typ, bytes(value))

    def need(key, typ, n=None):
        if key not in a:
            raise _Damaged(f"header {index} lacks the required attribute {key!r}")
        t, v = a[key]
        if t != typ or (n is not None and len(v) != n):
            raise _Damaged(f"attribute {key!r} has type {t!r} ({len(v)} bytes), expected {typ!r}")
        return v

    channels = _parse_channels(need("channels", "chlist"), maxlen)
    comp = need("compression", "compression", 1)[0]
    if comp not in _CODECS:
        raise _Damaged(f"unknown compression method {comp}")
    dw = _struct.unpack("<4i", need("dataWindow", "box2i", 16))
    disp = _struct.unpack("<4i", need("displayWindow", "box2i", 16))
    line_order = need("lineOrder", "lineOrder", 1)[0]
    if line_order > 2:
        raise _Damaged(f"unknown line order {line_order}")
    part = ExrPart(index=index, name=None, storage="scanlineimage", compression=_CODECS[comp][0],
                   data_window=dw, display_window=disp, line_order=line_order, channels=channels,
                   lines_per_chunk=_CODECS[comp][1])
    if "type" in a:
        part.storage = a["type"][1].rstrip(b"\0").decode("latin-1")
        if part.storage not in _STORAGE:
            raise _Damaged(f"unknown part type {part.storage!r} (valid: {', '.join(_STORAGE)})")
    elif flags & _TILED_FLAG:
        part.storage = "tiledimage"
    if "name" in a:
        part.name = a["name"][1].decode("utf-8", "replace")
    if "view" in a and a["view"][0] == "string":
        part.view = a["view"][1].decode("utf-8", "replace")
    if "multiView" in a and a["multiView"][0] == "stringvector":
        v, views = a["multiView"][1], []
        p = 0
        while p + 4 <= len(v):
            (n,) = _struct.unpack_from("<i", v, p)
            if n < 0 or p + 4 + n > len(v):
                raise _Damaged("multiView attribute is malformed")
            views.append(v[p + 4 : p + 4 + n].decode("utf-8", "replace"))
            p += 4 + n
        part.multi_view = views or None
    if "tiles" in a:
        xs, ys, mode = _struct.unpack("<IIB", need("tiles", "tiledesc", 9))
        part.tiles = (xs, ys, mode & 0x0F, mode >> 4)
    if "chromaticities" in a and len(a["chromaticities"][1]) == 32:
        part.chromaticities = _struct.unpack("<8f", a["chromaticities"][1])
    if "framesPerSecond" in a and a["framesPerSecond"][0] == "rational" and len(a["framesPerSecond"][1]) == 8:
        num, den = _struct.unpack("<iI", a["framesPerSecond"][1])
        part.fps = num / den if den else None
    if "envmap" in a and len(a["envmap"][1]) == 1:
        part.envmap = a["envmap"][1][0]
    if "chunkCount" in a:
        (part.chunk_count,) = _struct.unpack("<i", need("chunkCount", "int", 4))
    for k, (t, v) in a.items():
        if t == "int" and len(v) == 4:
            part.attrs[k] = _struct.unpack("<i", v)[0]
        elif t == "float" and len(v) == 4:
            part.attrs[k] = _struct.unpack("<f", v)[0]
        elif t == "string":
            part.attrs[k] = v.decode("utf-8", "replace")
    return part


def _check_part(part: ExrPart, flags: int, multipart: bool) -> None:
    where = f"part {part.index}" + (f" ({part.name!r})" if part.name else "")
    tiled_flag = bool(flags & _TILED_FLAG)
    deep_flag = bool(flags & _NON_IMAGE_FLAG)
    if not multipart:
        # A single-part file's storage is stated by its version flags; a `type` attribute must agree.
        flag_storage = ("deeptile" if tiled_flag else "deepscanline") if deep_flag else (
            "tiledimage" if tiled_flag else "scanlineimage")
        if part.storage != flag_storage:
            raise _Damaged(f"{where}: the 'type' attribute says {part.storage!r} but the file's version flags "
                           f"say {flag_storage!r} (contradictory header)")
    elif part.storage.startswith("deep") and not deep_flag:
        raise _Damaged(f"{where}: the 'type' attribute says {part.storage!r} but the version flags say "
                       "the file has no deep data (contradictory header)")
    x0, y0, x1, y1 = part.data_window
    if x1 < x0 or y1 < y0:
        raise _Damaged(f"{where}: empty or inverted data window {part.data_window}")
    d0, e0, d1, e1 = part.display_window
    if d1 < d0 or e1 < e0:
        raise _Damaged(f"{where}: empty or inverted display window {part.display_window}")
    lim = 1 << 30
    if any(abs(v) >= lim for v in (*part.data_window, *part.display_window)):
        raise _Damaged(f"{where}: window coordinates out of range ({part.data_window}, {part.display_window})")
    w, h = x1 - x0 + 1, y1 - y0 + 1
    if w * h > MAX_PIXELS or part.width * part.height > MAX_PIXELS:
        raise _Damaged(f"{where}: image of {w}x{h} (display {part.width}x{part.height}) pixels is implausibly large")
    if not part.channels:
        raise _Damaged(f"{where}: no channels")
    if part.storage.startswith("deep"):
        return  # refused by the caller with its own message
    for c in part.channels:
        if part.storage == "tiledimage" and (c.x_sampling != 1 or c.y_sampling != 1):
            raise _Damaged(f"{where}: tiled channel {c.name!r} is subsampled")
        if x0 % c.x_sampling or y0 % c.y_sampling or w % c.x_sampling or h % c.y_sampling:
            raise _Damaged(f"{where}: data window {part.data_window} does not fit channel {c.name!r} "
                           f"sampling {c.x_sampling}x{c.y_sampling}")
    if part.storage == "tiledimage":
        if part.tiles is None:
            raise _Damaged(f"{where}: tiled part without a 'tiles' attribute")
        xs, ys, mode, rounding = part.tiles
        if not (1 <= xs <= 1 << 16 and 1 <= ys <= 1 << 16) or mode > 2 or rounding > 1:
            raise _Damaged(f"{where}: invalid tile description {part.tiles}")
    if _codec_id(part.compression) not in _SUPPORTED_CODECS:
        raise _Damaged(f"{where}: compression {part.compression!r} is not supported by this OpenEXR build")
    expected = _chunk_count(part)
    if multipart and part.chunk_count != expected and part.storage == "scanlineimage":
        for lines in _LINES_CANDIDATES.get(_codec_id(part.compression), ()):
            part.lines_per_chunk = lines
            if _chunk_count(part) == part.chunk_count:
                expected = part.chunk_count
                break
    if multipart and part.chunk_count != expected:
        raise _Damaged(f"{where}: chunkCount attribute is {part.chunk_count}, its windows need {expected}")
    part.chunk_count = expected


def _chunk_bytes(part: ExrPart, y: int, nlines: int, width: int) -> int:
    """Uncompressed bytes of a scanline chunk starting at y."""
    total = 0
    for c in part.channels:
        rows = sum(1 for yy in range(y, y + nlines) if yy % c.y_sampling == 0)
        total += rows * (width // c.x_sampling) * _PIXEL_BYTES[_PTYPE[c.pixel_type]]
    return total


def _check_chunks(buf, part: ExrPart, offsets, multipart: bool, table_end: int) -> None:
    where = f"part {part.index}" + (f" ({part.name!r})" if part.name else "")
    size = len(buf)
    x0, y0, x1, y1 = part.data_window
    width = x1 - x0 + 1
    seen = set()
    if part.storage == "tiledimage":
        levels = {(lx, ly): (tx, ty) for lx, ly, tx, ty in _tile_levels(part)}
    else:
        lines = part.lines_per_chunk
    lead = 4 if multipart else 0
    for i, off in enumerate(offsets):
        if off < table_end:
            raise _Damaged(f"{where}: chunk {i} of {len(offsets)} has offset {off}, inside the header "
                           "(file incomplete or chunk table corrupt)")
        if off + lead + 8 > size:
            raise _Damaged(f"{where}: chunk {i} of {len(offsets)} has offset {off}, past the end of the "
                           f"{size}-byte file (file truncated or chunk table corrupt)")
        if multipart:
            (pn,) = _struct.unpack_from("<i", buf, off)
            if pn != part.index:
                raise _Damaged(f"{where}: chunk {i} at byte {off} belongs to part {pn} (chunk table corrupt)")
        p = off + lead
        if part.storage == "tiledimage":
            if p + 20 > size:
                raise _Damaged(f"{where}: tile chunk {i} at byte {off} runs past the end of the file")
            dx, dy, lx, ly, n = _struct.unpack_from("<5i", buf, p)
            key = (dx, dy, lx, ly)
            t = levels.get((lx, ly))
            if t is None or not (0 <= dx < t[0] and 0 <= dy < t[1]):
                raise _Damaged(f"{where}: chunk {i} at byte {off} names tile {key}, not in the image")
            xs, ys, _, rounding = part.tiles
            tw = min(xs, _level_size(width, lx, rounding) - dx * xs)
            th = min(ys, _level_size(y1 - y0 + 1, ly, rounding) - dy * ys)
            raw = tw * th * sum(_PIXEL_BYTES[_PTYPE[c.pixel_type]] for c in part.channels)
            data = p + 20
        else:
            y, n = _struct.unpack_from("<2i", buf, p)
            key = y
            if not (y0 <= y <= y1) or (y - y0) % lines:
                raise _Damaged(f"{where}: chunk {i} at byte {off} names scanline {y}, outside data window "
                               f"rows {y0}..{y1} (chunk table corrupt)")
            raw = _chunk_bytes(part, y, min(lines, y1 - y + 1), width)
            data = p + 8
        if n <= 0 or data + n > size:
            raise _Damaged(f"{where}: chunk {i} at byte {off} claims {n} bytes of pixel data but the file "
                           f"has {max(size - data, 0)} left (file truncated)")
        if n > raw + 65536 and part.compression != "none" or (part.compression == "none" and n != raw):
            raise _Damaged(f"{where}: chunk {i} at byte {off} claims {n} bytes for {raw} bytes of pixels")
        if key in seen:
            raise _Damaged(f"{where}: chunk {i} repeats chunk {key} (chunk table corrupt)")
        seen.add(key)


def exr_info(path, *, check_chunks: bool = True) -> ExrInfo:
    """Parse an EXR file's header(s) without the OpenEXR library and validate its structure.

    With ``check_chunks`` every chunk-offset table entry is followed and its chunk leader checked, so a
    truncated, incomplete or corrupt file is caught before any decoder sees it. Raises PlateError
    naming the file on anything damaged; deep parts parse (storage 'deep*') but are not chunk-checked.
    """
    path = Path(path)
    try:
        fh = open(path, "rb")
    except FileNotFoundError as exc:
        raise PlateError(path, "file does not exist", "check the path and the frame range") from exc
    except OSError as exc:
        raise PlateError(path, f"cannot be opened ({exc.strerror})", "check the file's permissions") from exc
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 8:
            raise PlateError(path, f"not an OpenEXR file (only {size} bytes)", _DAMAGED_FIX)
        buf = _mmap.mmap(fh.fileno(), 0, access=_mmap.ACCESS_READ)
        try:
            return _exr_info(path, buf, check_chunks)
        except _Damaged as exc:
            raise PlateError(path, f"damaged OpenEXR file: {exc}", _DAMAGED_FIX) from None
        finally:
            buf.close()


def _exr_info(path, buf, check_chunks: bool) -> ExrInfo:
    magic, version = _struct.unpack_from("<iI", buf, 0)
    if magic != _MAGIC:
        raise PlateError(path, "not an OpenEXR file (wrong magic number)", "check the file type and extension")
    if version & 0xFF != 2 or version & ~(0xFF | _KNOWN_FLAGS):
        raise _Damaged(f"unsupported file version/flags 0x{version:08x}")
    flags = version & _KNOWN_FLAGS
    multipart = bool(flags & _MULTIPART_FLAG)
    r = _Reader(buf, 8)
    parts: list[ExrPart] = []
    while True:
        part = _parse_header(r, len(parts), flags)
        if part is None:
            if not multipart:
                raise _Damaged("empty header")
            break
        parts.append(part)
        if not multipart:
            break
        if len(parts) > 10000:
            raise _Damaged("more than 10000 parts")
    if not parts:
        raise _Damaged("no parts")
    if multipart:
        names = [p.name for p in parts]
        if None in names:
            raise _Damaged("a part of a multi-part file has no 'name' attribute")
        if len(set(names)) != len(names):
            raise _Damaged(f"multi-part file repeats a part name ({names})")
        if any("type" not in p.attrs for p in parts):
            raise _Damaged("a part of a multi-part file has no 'type' attribute")
    for part in parts:
        _check_part(part, flags, multipart)
    info = ExrInfo(str(path), flags, parts)
    if any(p.storage.startswith("deep") for p in parts):
        return info
    table_start = r.pos
    candidates = _LINES_CANDIDATES.get(_codec_id(parts[0].compression), ())
    if multipart or parts[0].storage != "scanlineimage" or len(candidates) < 2:
        _check_tables(buf, r, parts, multipart, check_chunks)
        return info
    first_error = None
    for lines in candidates:  # single part, codec with version-dependent chunk height
        parts[0].lines_per_chunk = lines
        parts[0].chunk_count = _chunk_count(parts[0])
        r.pos = table_start
        try:
            _check_tables(buf, r, parts, multipart, True)
            return info
        except _Damaged as exc:
            first_error = first_error or exc
    raise first_error


def _check_tables(buf, r: _Reader, parts: list[ExrPart], multipart: bool, check_chunks: bool) -> None:
    tables = []
    for part in parts:
        n = part.chunk_count
        raw = r.take(8 * n, f"chunk offset table of part {part.index} ({n} entries)")
        tables.append(_struct.unpack(f"<{n}Q", raw))
    if check_chunks:
        for part, offsets in zip(parts, tables):
            _check_chunks(buf, part, offsets, multipart, r.pos)


def _deep_error(path, info: ExrInfo) -> PlateError:
    deep = [p for p in info.parts if p.storage.startswith("deep")]
    which = ", ".join(f"part {p.index}" + (f" ({p.name!r})" if p.name else "") for p in deep)
    return PlateError(path, f"deep OpenEXR image ({deep[0].storage}, {which}); cinecomp reads flat images only",
                      "flatten it first (e.g. `oiiotool in.exr --flatten -o out.exr` or Nuke DeepToImage) and "
                      "point the shot sheet at the flat file")


def _select_part(path, info: ExrInfo, part, view) -> ExrPart:
    parts = info.parts
    names = [p.name for p in parts]
    listing = ", ".join(f"{p.index}" + (f"={p.name!r}" if p.name else "") for p in parts)
    if part is None or part == "":
        # multi-part stereo: one or more parts per view, tagged with the `view` attribute; the view's
        # colour part (R/G/B or Y of that view), not e.g. a depth-only part that comes first
        tagged = [p for p in parts if view and (p.view == view or (p.multi_view and view in p.multi_view))]
        for p in tagged:
            if has_colour(path, p, view):
                return p
        if tagged:
            which = ", ".join(f"{p.index}" + (f"={p.name!r}" if p.name else "")
                              + f" ({', '.join(c.name for c in p.channels)})" for p in tagged)
            raise PlateError(path, f"no part of view {view!r} has colour channels (R, G, B or Y); its parts: {which}",
                             "set plate_part to the part holding that view's colour image, or pick another plate_view")
        return parts[0]
    if isinstance(part, str) and part in names:
        return parts[names.index(part)]
    try:
        idx = int(part)
    except (TypeError, ValueError):
        raise PlateError(path, f"has no part named {part!r} (parts: {listing})",
                         "set plate_part to one of the listed names or indices") from None
    if not 0 <= idx < len(parts):
        raise PlateError(path, f"has no part {idx} (parts: {listing})",
                         "set plate_part to one of the listed names or indices")
    return parts[idx]


def has_colour(path, p: ExrPart, view=None) -> bool:
    """Whether part ``p`` has an R, G, B or Y channel for ``view`` (False when it lacks the view)."""
    try:
        names, _ = _view_channels(path, p, view)
    except PlateError:
        return False
    return any(n in names for n in ("R", "G", "B", "Y"))


def _view_of_channel(name: str, views: list[str]) -> str | None:
    """OpenEXR's multi-view rule: the view is the second-to-last '.' component; no '.' = default view.

    Returns '' for channels that belong to no particular view (e.g. 'disparityL.x')."""
    comps = name.split(".")
    if len(comps) == 1:
        return views[0]
    return comps[-2] if comps[-2] in views else ""


def _view_channels(path, p: ExrPart, view) -> tuple[dict[str, str], str | None]:
    """{output channel name: file channel name} for the chosen view, and the view's name."""
    names = [c.name for c in p.channels]
    if p.multi_view:
        views = p.multi_view
        chosen = views[0] if not view else view
        if chosen not in views:
            raise PlateError(path, f"part {p.index} has no view {view!r} (views: {', '.join(views)})",
                             "set plate_view to one of the listed views")
        out = {}
        for n in names:
            v = _view_of_channel(n, views)
            if v == chosen:
                comps = n.split(".")
                out[".".join(comps[:-2] + comps[-1:]) if len(comps) > 1 else n] = n
        for n in names:  # channels of no particular view are shared by every view
            if _view_of_channel(n, views) == "":
                out.setdefault(n, n)
        return out, chosen
    if view and view != p.view:
        have = f"its only view is {p.view!r}" if p.view else "it is not a multi-view image"
        raise PlateError(path, f"part {p.index} has no view {view!r} ({have})",
                         "leave plate_view empty or pick the part holding that view")
    return {n: n for n in names}, p.view


_YC_TAPS = (0.627123, -0.186077, 0.087929, -0.043159, 0.019597, -0.007540, 0.002128)


def _reconstruct_chroma(c: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Fill in the odd positions of chroma sampled at even positions along ``axis`` with OpenEXR's
    27-tap half-band filter (RgbaYca::reconstructChromaHoriz/Vert), replicating the edge samples."""
    c = np.moveaxis(c, axis, 0)
    n_odd = n_out // 2
    pad = np.pad(c, [(7, 7)] + [(0, 0)] * (c.ndim - 1), mode="edge")
    t = np.arange(n_odd)
    acc = np.zeros((n_odd,) + c.shape[1:], np.float32)
    for m, k in enumerate(_YC_TAPS):
        acc += np.float32(k) * (pad[t - m + 7] + pad[t + 1 + m + 7])
    out = np.empty((n_out,) + c.shape[1:], np.float32)
    out[0::2] = c[: (n_out + 1) // 2]
    out[1::2] = acc
    return np.moveaxis(out, 0, axis)


def luminance_weights(chromaticities=None) -> np.ndarray:
    """OpenEXR's RgbaYca::computeYw: the Y row of RGB->XYZ for the chromaticities, summing to 1."""
    rx, ry, gx, gy, bx, by, wx, wy = chromaticities or REC709_CHROMATICITIES
    cols = np.array([[rx, gx, bx], [ry, gy, by], [1 - rx - ry, 1 - gx - gy, 1 - bx - by]], np.float64)
    white = np.array([wx / wy, 1.0, (1 - wx - wy) / wy])
    scale = np.linalg.solve(cols, white)
    yrow = cols[1] * scale
    return (yrow / yrow.sum()).astype(np.float32)


def _saturation(r, g, b):
    mx = np.maximum(r, np.maximum(g, b))
    mn = np.minimum(r, np.minimum(g, b))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mx > 0, 1 - mn / np.where(mx > 0, mx, 1), 0).astype(np.float32)


def yc_to_rgb(y: np.ndarray, ry: np.ndarray, by: np.ndarray, chromaticities=None) -> np.ndarray:
    """Luminance/chroma (Y full-res, RY/BY 2x2 subsampled) -> (H, W, 3) RGB, as OpenEXR's RgbaInputFile
    does: reconstruct chroma (27-tap filter, horizontally then vertically), YCAtoRGBA, fixSaturation."""
    h, w = y.shape
    y = y.astype(np.float32)
    ryf = _reconstruct_chroma(_reconstruct_chroma(ry.astype(np.float32), w, 1), h, 0)
    byf = _reconstruct_chroma(_reconstruct_chroma(by.astype(np.float32), w, 1), h, 0)
    yw = luminance_weights(chromaticities)
    r = (ryf + 1) * y
    b = (byf + 1) * y
    g = (y - r * yw[0] - b * yw[2]) / yw[1]
    grey = (ryf == 0) & (byf == 0)
    r, g, b = np.where(grey, y, r), np.where(grey, y, g), np.where(grey, y, b)
    # fixSaturation: a pixel far more saturated than its diagonal neighbours is pulled back.
    s = _saturation(r, g, b)
    sp = np.pad(s, 1, mode="edge")
    s_mean = np.minimum(1.0, 0.25 * (sp[:-2, :-2] + sp[:-2, 2:] + sp[2:, :-2] + sp[2:, 2:]))
    s_max = np.minimum(1.0, 1 - (1 - s_mean) * 0.25)
    fix = (s > s_mean) & (s > s_max)
    if fix.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(fix, s_max / np.where(s > 0, s, 1), 1).astype(np.float32)
        mx = np.maximum(r, np.maximum(g, b))
        ro, go, bo = (np.maximum(mx - (mx - c) * f, 0) for c in (r, g, b))
        y_in = r * yw[0] + g * yw[1] + b * yw[2]
        y_out = ro * yw[0] + go * yw[1] + bo * yw[2]
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.where(y_out > 0, y_in / np.where(y_out > 0, y_out, 1), 1)
        ro, go, bo = ro * k, go * k, bo * k
        r, g, b = np.where(fix, ro, r), np.where(fix, go, g), np.where(fix, bo, b)
    return np.stack([r, g, b], axis=-1).astype(np.float32)


def _load_part(path, info: ExrInfo, p: ExrPart) -> tuple[dict[str, np.ndarray], dict]:
    """Decode with the binding (the file has passed exr_info) and return the chosen part's pixels."""
    try:
        with OpenEXR.File(str(path), separate_channels=True) as f:
            parts = f.parts
            if len(parts) != len(info.parts):
                raise PlateError(path, f"the pixel data of {len(info.parts) - len(parts)} of {len(info.parts)} "
                                       "part(s) could not be decoded (corrupt compressed data)", _DAMAGED_FIX)
            bp = parts[p.index]
            header = dict(bp.header)
            chans = {}
            for name, ch in bp.channels.items():
                px = ch.pixels
                if px is None or px.dtype == object:
                    raise PlateError(path, f"part {p.index} channel {name!r} could not be decoded", _DAMAGED_FIX)
                chans[name] = np.asarray(px)
    except PlateError:
        raise
    except Exception as exc:  # the binding raises RuntimeError/ValueError/TypeError on what it cannot read
        raise PlateError(path, f"OpenEXR could not decode the file ({exc})", _DAMAGED_FIX) from exc
    return chans, header


def _read_exr(path, part=None, view=None, want=None):
    path = Path(path)
    info = exr_info(path, check_chunks=True)
    if any(q.storage.startswith("deep") for q in info.parts):
        raise _deep_error(path, info)
    p = _select_part(path, info, part, view)
    mapping, chosen_view = _view_channels(path, p, view)
    x0, y0, x1, y1 = p.data_window
    w, h = x1 - x0 + 1, y1 - y0 + 1
    sampling = {c.name: (c.x_sampling, c.y_sampling) for c in p.channels}
    raw, header = _load_part(path, info, p)
    missing = [n for n in mapping.values() if n not in raw]
    if missing:
        raise PlateError(path, f"part {p.index} channels {missing} could not be decoded", _DAMAGED_FIX)

    # Luminance/chroma layers (prefix + Y[, RY, BY]) become R, G, B like OpenEXR's RgbaInputFile.
    out_names = set(mapping)
    prefixes = {n[: n.rfind(".") + 1] for n in out_names if n.split(".")[-1] == "Y"}
    data: dict[str, np.ndarray] = {}
    consumed = set()
    for pre in sorted(prefixes):
        if any(pre + c in out_names for c in "RGB"):
            continue
        if want is not None and pre != "":
            continue
        yarr = raw[mapping[pre + "Y"]].astype(np.float32)
        if pre + "RY" in out_names and pre + "BY" in out_names:
            rgb = yc_to_rgb(yarr, raw[mapping[pre + "RY"]], raw[mapping[pre + "BY"]], p.chromaticities)
            consumed |= {pre + "Y", pre + "RY", pre + "BY"}
        else:
            rgb = np.repeat(yarr[..., None], 3, axis=-1)
            consumed.add(pre + "Y")
        for i, c in enumerate("RGB"):
            data[pre + c] = rgb[..., i]
    if consumed:
        header["cinecomp:luminanceChroma"] = True
    for out, src in mapping.items():
        if out in consumed or (want is not None and out not in want):
            continue
        a = raw[src]
        xs, ys = sampling.get(src, (1, 1))
        if (xs, ys) != (1, 1):  # generic subsampled channel: nearest-neighbour up to full resolution
            a = np.repeat(np.repeat(a, ys, axis=0), xs, axis=1)[:h, :w]
        data[out] = a.astype(np.float32, copy=False)

    # Place the data window into the display window (zeros where there is no data; crop overhang).
    d0, e0, d1, e1 = p.display_window
    W, H = d1 - d0 + 1, e1 - e0 + 1
    ix0, iy0, ix1, iy1 = max(x0, d0), max(y0, e0), min(x1, d1), min(y1, e1)
    channels = {}
    for name, a in data.items():
        if a.shape != (h, w):
            raise PlateError(path, f"channel {name!r} decoded to {a.shape}, expected {(h, w)}", _DAMAGED_FIX)
        if (x0, y0, x1, y1) == (d0, e0, d1, e1):
            channels[name] = np.ascontiguousarray(a, dtype=np.float32)
            continue
        o = np.zeros((H, W), np.float32)
        if ix0 <= ix1 and iy0 <= iy1:
            o[iy0 - e0 : iy1 - e0 + 1, ix0 - d0 : ix1 - d0 + 1] = a[iy0 - y0 : iy1 - y0 + 1, ix0 - x0 : ix1 - x0 + 1]
        channels[name] = o
    header["partIndex"] = p.index
    if p.name is not None:
        header["name"] = p.name
    if chosen_view is not None:
        header["view"] = chosen_view
    if p.multi_view:
        header["multiView"] = list(p.multi_view)
    return channels, header


def read_exr(path, part=None, view=None) -> tuple[dict[str, np.ndarray], dict]:
    """Read one part/view of any flat OpenEXR file: channels as float32 (H, W) in the DISPLAY window.

    - ``part``: part name or index (a digit string counts as an index when no part has that name);
      default: the first part. With only ``view`` given, the first part tagged with that view (or whose
      ``multiView`` lists it) is chosen.
    - ``view``: a view of a multi-view part (``multiView`` attribute); default: the first view listed,
      whose channels are stored unprefixed. Channels of the chosen view are returned without their view
      component (``left.R`` -> ``R``, ``forward.left.u`` -> ``forward.u``); channels that belong to no
      view (``disparityL.x``) are returned as they are, whatever the view.
    - Scanline, tiled, mipmapped/ripmapped (level 0), any line order, every compression the binding
      decodes. The data window is placed in the display window, zeros outside, cropped where it
      overhangs. Pixel aspect ratio is not resampled.
    - Luminance/chroma layers become R, G, B (Y only: grey; Y+RY+BY: OpenEXR's RgbaYca reconstruction
      with the file's chromaticities, Rec.709 when absent); the header then has
      ``cinecomp:luminanceChroma`` = True. Other subsampled channels are repeated up to full size.
      UINT channels are converted to float32 (exact up to 2**24).
    - The header is the binding's header of the part, plus ``partIndex``, ``view`` (chosen view, if any).
    Damaged, truncated or deep files raise PlateError naming the file; the file is validated by
    ``exr_info`` before the OpenEXR library decodes anything.
    """
    return _read_exr(path, part, view)


def read_exr_rgba(path, part=None, view=None) -> np.ndarray:
    """(H, W, 4) float32 RGBA of one part/view (display window). Y/YC images give grey/RGB; missing
    R, G or B are 0 and a missing A is 1 (as OpenEXR's RgbaInputFile). PlateError if no colour channel."""
    channels, header = _read_exr(path, part, view, want={"R", "G", "B", "A"})
    if not any(c in channels for c in "RGB"):
        allc, _ = _read_exr_names(path, part, view)
        raise PlateError(path, f"part {header.get('partIndex', 0)} has no R, G, B or Y channel "
                               f"(channels: {', '.join(allc) or 'none'})",
                         "pick the part/view holding the colour image (plate_part / plate_view)")
    h, w = next(iter(channels.values())).shape
    out = np.zeros((h, w, 4), np.float32)
    out[..., 3] = 1.0
    for i, c in enumerate("RGBA"):
        if c in channels:
            out[..., i] = channels[c]
    return out


def _read_exr_names(path, part, view):
    info = exr_info(path, check_chunks=False)
    p = _select_part(path, info, part, view)
    mapping, chosen = _view_channels(path, p, view)
    return sorted(mapping), chosen


def select_part(path, part=None, view=None, *, check_chunks: bool = False) -> tuple[ExrPart, str | None]:
    """Header facts of the part ``read_exr`` would read and the view it would pick (no pixels decoded).
    PlateError for damaged or deep files and for a part/view the file does not have."""
    info = exr_info(path, check_chunks=check_chunks)
    if any(q.storage.startswith("deep") for q in info.parts):
        raise _deep_error(path, info)
    p = _select_part(path, info, part, view)
    _, chosen = _view_channels(path, p, view)
    return p, chosen
