"""Plate and environment sources: what they are (``probe``) and their pixels (``read_frame``).

A source is one of
- an image sequence pattern (``plate.####.exr``, ``plate.%04d.png``, ``plate.@@@@.dpx``): kind
  ``exr_sequence`` or ``image_sequence``; its frames are the frame numbers found on disk;
- a movie (MOV/MP4/MKV/...): kind ``movie``; decoded with the ffmpeg binary of imageio-ffmpeg; its
  frames are numbered ``movie_start .. movie_start + count - 1`` (``movie_start`` = 1001 by default,
  the first decoded frame of the first video stream);
- a single image: kind ``still`` (EXR/PNG/JPG/TIFF/DPX) or ``hdri`` (a Radiance ``.hdr``, or an EXR
  whose ``envmap`` attribute says latitude-longitude); ``frames`` is empty.

Pixels come back as (H, W, 4) float32 RGBA in the file's own encoding (no colour conversion):
integer formats divided by their maximum (8-bit /255, 16-bit /65535), float formats as stored,
alpha 1 where the file has none.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import exr as exrio
from ..errors import PlateError
from ..frames import expand, frames_on_disk, is_movie, is_sequence

KINDS = ("exr_sequence", "image_sequence", "movie", "still", "hdri")
IMAGE_EXTENSIONS = {".exr", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".hdr", ".dpx"}
FFMPEG_TIMEOUT = 600  # seconds for one ffmpeg call (probe or decode); a hung decoder becomes a PlateError


@dataclass
class PlateInfo:
    kind: str  # one of KINDS
    width: int
    height: int
    frames: list[int]  # available frame numbers ([] for a single image)
    fps: float | None = None
    path: str = ""  # the source as given (pattern, movie or image)
    details: dict = field(default_factory=dict)  # codec, pixel format, EXR part/view, files...

    @property
    def pixel_aspect(self) -> float:
        """Width / height of a pixel (EXR pixelAspectRatio, DPX header, movie SAR); 1.0 when unknown."""
        return float(self.details.get("pixel_aspect", 1.0))

    @property
    def is_single_image(self) -> bool:
        return self.kind in ("still", "hdri")


# ------------------------------------------------------------------------------------------------
# ffmpeg helpers
# ------------------------------------------------------------------------------------------------


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: (?P<rest>.*)")
_DIMS = re.compile(r"(?<![0-9x])(\d{1,5})x(\d{1,5})(?![0-9x])")


def _parse_video_stream(line: str) -> dict:
    rest = line.split(": Video: ", 1)[1]
    out = {"codec": rest.split(",")[0].split()[0]}
    # pixel format: first token after the codec that looks like one (may be followed by "(tv, ...)")
    m = re.search(r",\s*([a-z0-9_]+)(?:\([^)]*\))?,", rest)
    if m:
        out["pix_fmt"] = m.group(1)
    dm = _DIMS.search(rest)
    if dm:
        out["width"], out["height"] = int(dm.group(1)), int(dm.group(2))
    sar = re.search(r"\[SAR (\d+):(\d+)", rest)
    if sar and int(sar.group(1)) > 0 and int(sar.group(2)) > 0:  # 0:1 = unknown
        out["sar"] = int(sar.group(1)) / int(sar.group(2))
    for key, rx in (("fps", r"([\d.]+)k? fps"), ("tbr", r"([\d.]+)k? tbr")):
        fm = re.search(rx, rest)
        if fm:
            v = float(fm.group(1)) * (1000 if "k " + key in rest else 1)
            out[key] = v
    return out


def _run_ffmpeg(args: list[str], path, what: str, timeout: float = FFMPEG_TIMEOUT) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *args], capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PlateError(path, f"ffmpeg took longer than {timeout:.0f} s to {what}",
                         "check the file plays in a player; re-encode it (e.g. to ProRes or an image sequence)",
                         ) from None
    except OSError as exc:
        raise PlateError(path, f"cannot run ffmpeg to {what} ({exc})",
                         "reinstall imageio-ffmpeg in the workflow environment") from exc


def _ffmpeg_error(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def probe_movie(path, movie_start: int = 1001) -> PlateInfo:
    """Movie facts from one ffmpeg pass that decodes the first video stream to a null sink: the exact
    number of decoded frames, the decoded (auto-rotated) size, the frame rate and pixel format."""
    path = Path(path)
    r = _run_ffmpeg(["-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "null", "-"],
                    path, "count the movie's frames")
    err = r.stderr.decode(errors="replace")
    if r.returncode != 0:
        raise PlateError(path, f"not a readable movie ({_ffmpeg_error(r.stderr)})",
                         "check the file plays in a player; re-encode or re-export it")
    section_in, section_out = err, ""
    if "\nOutput #0" in err:
        section_in, section_out = err.split("\nOutput #0", 1)
    streams_in = [ln for ln in section_in.splitlines() if _STREAM.search(ln)]
    streams_out = [ln for ln in section_out.splitlines() if _STREAM.search(ln)]
    if not streams_in:
        raise PlateError(path, "has no video stream", "give a movie with a picture (not audio only)")
    src = _parse_video_stream(streams_in[0])
    dec = _parse_video_stream(streams_out[0]) if streams_out else src
    counts = re.findall(r"frame=\s*(\d+)", err)
    count = int(counts[-1]) if counts else 0
    if count <= 0 or "width" not in dec:
        raise PlateError(path, "ffmpeg decoded no frames from it", "check the file plays; re-encode it")
    fps = src.get("fps") or src.get("tbr")
    if src.get("fps") and src.get("tbr") and abs(src["tbr"] - src["fps"]) <= 0.05 * src["fps"]:
        fps = src["tbr"]  # nominal rate (29.97) rather than a variable-rate average (30.12)
    details = {"codec": src.get("codec"), "pix_fmt": src.get("pix_fmt"), "frame_count": count,
               "stored_size": [src.get("width"), src.get("height")], "pixel_aspect": src.get("sar", 1.0)}
    return PlateInfo("movie", dec["width"], dec["height"], list(range(movie_start, movie_start + count)),
                     fps, str(path), details)


@lru_cache(maxsize=1)
def _pix_fmt_table() -> dict[str, tuple[int, int]]:
    """{pixel format: (components, deepest component bits)} from ``ffmpeg -pix_fmts``."""
    try:
        r = subprocess.run([ffmpeg_exe(), "-hide_banner", "-pix_fmts"], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    table = {}
    for line in r.stdout.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[2].isdigit():
            try:
                table[parts[1]] = (int(parts[2]), max(int(b) for b in parts[4].split("-")))
            except ValueError:
                continue
    return table


def decode_pix_fmt(pix_fmt: str | None) -> str:
    """The PAM pixel format to decode a source pixel format to without losing bits: 8-bit sources
    to rgb24/rgba (exact /255), deeper ones to rgb48be/rgba64be (/65535); alpha kept when present."""
    fmt = (pix_fmt or "").lower()
    ncomp, bits = _pix_fmt_table().get(fmt, (3, 8))
    alpha = ncomp in (2, 4) or fmt.startswith(("pal8", "yuva", "rgba", "bgra", "argb", "abgr", "gbrap", "ya"))
    if bits > 8:
        return "rgba64be" if alpha else "rgb48be"
    return "rgba" if alpha else "rgb24"


def _stream_info(path) -> dict:
    """First video stream of a media file from ``ffmpeg -i`` (header only, nothing decoded); cached
    per file state."""
    try:
        st = Path(path).stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    return dict(_stream_info_cached(str(path), stamp))


@lru_cache(maxsize=256)
def _stream_info_cached(path: str, stamp) -> dict:
    r = _run_ffmpeg(["-i", str(path)], path, "read the file's header", timeout=120)
    lines = [ln for ln in r.stderr.decode(errors="replace").splitlines() if _STREAM.search(ln)]
    if not lines:
        raise PlateError(path, f"has no readable video stream ({_ffmpeg_error(r.stderr)})",
                         "check the file plays in a player; re-encode or re-export it")
    return _parse_video_stream(lines[0])


def _read_pam_stream(stream, path, expect: int | None):
    """Yield (H, W, 4) float32 frames from a stream of PAM images (RGB_ALPHA, 16-bit)."""
    n = 0
    while expect is None or n < expect:
        head = b""
        while not head.endswith(b"ENDHDR\n"):
            c = stream.read(1)
            if not c:
                if head.strip():
                    raise PlateError(path, "ffmpeg output ended inside a frame header", "re-encode the file")
                return
            head += c
            if len(head) > 512:
                raise PlateError(path, "unexpected ffmpeg output (not a PAM header)", "re-encode the file")
        fields = dict(ln.split(" ", 1) for ln in head.decode().splitlines() if " " in ln)
        w, h, d, maxval = (int(fields[k]) for k in ("WIDTH", "HEIGHT", "DEPTH", "MAXVAL"))
        bpc = 2 if maxval > 255 else 1
        nbytes = w * h * d * bpc
        buf = stream.read(nbytes)
        if len(buf) != nbytes:
            raise PlateError(path, f"frame data truncated ({len(buf)} of {nbytes} bytes)", "re-encode the file")
        a = np.frombuffer(buf, dtype=">u2" if bpc == 2 else np.uint8).reshape(h, w, d)
        img = a.astype(np.float32) / np.float32(maxval)
        if d == 4:
            yield img
        else:
            out = np.ones((h, w, 4), np.float32)
            out[..., :3] = img[..., :3] if d >= 3 else img[..., :1]
            yield out
        n += 1


def iter_movie(path, first_index: int, count: int):
    """Decode frames ``first_index .. first_index + count - 1`` (0-based decode order) of a movie's
    first video stream in ONE ffmpeg process, yielding (H, W, 4) float32 RGBA (8-bit sources decoded
    as rgb24/rgba, deeper ones as rgb48/rgba64; alpha 1 when the movie has none). Streams: one frame
    is held in memory at a time."""
    path = Path(path)
    if count <= 0:
        return
    if first_index < 0:
        raise PlateError(path, f"frame index {first_index} is before the movie's first frame",
                         "check first_frame against the movie start frame (movie_start_frame)")
    last = first_index + count - 1
    out_fmt = decode_pix_fmt(_stream_info(path).get("pix_fmt"))
    vf = f"select=between(n\\,{first_index}\\,{last})"
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0",
           "-vf", vf, "-fps_mode", "passthrough", "-frames:v", str(count), "-pix_fmt", out_fmt,
           "-c:v", "pam", "-f", "image2pipe", "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = 0
    try:
        for img in _read_pam_stream(proc.stdout, path, count):
            got += 1
            yield img
        try:
            _, stderr = proc.communicate(timeout=FFMPEG_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        if got < count:
            if proc.returncode not in (0, None) and got == 0:
                raise PlateError(path, f"ffmpeg could not decode it ({_ffmpeg_error(stderr)})",
                                 "check the file plays in a player; re-encode it")
            have = (f"movie has only {first_index + got} frames" if got else
                    f"movie has no frame at decode index {first_index} (it is shorter)")
            raise PlateError(path, f"{have}; asked for decode indices {first_index}..{last}",
                             "check the frame range against the movie's length and movie_start_frame")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def read_movie(path, first_index: int, count: int) -> np.ndarray:
    """(count, H, W, 4) float32 RGBA of consecutive movie frames, decoded in one ffmpeg call."""
    frames = list(iter_movie(path, first_index, count))
    if not frames:
        raise PlateError(path, "no frames requested", "pass count >= 1")
    return np.stack(frames)


# ------------------------------------------------------------------------------------------------
# single images
# ------------------------------------------------------------------------------------------------


def _hdr_size(path) -> tuple[int, int]:
    with open(path, "rb") as fh:
        head = fh.read(65536)
    if not (head.startswith(b"#?RADIANCE") or head.startswith(b"#?RGBE")):
        raise PlateError(path, "not a Radiance HDR file (no #?RADIANCE signature)", "re-export it as .hdr or .exr")
    end = head.find(b"\n\n")
    if end < 0:
        raise PlateError(path, "Radiance header is not terminated", "re-export the file")
    line = head[end + 2 :].split(b"\n", 1)[0].decode(errors="replace").split()
    if len(line) != 4:
        raise PlateError(path, f"bad Radiance resolution line {' '.join(line)!r}", "re-export the file")
    a, b = int(line[1]), int(line[3])
    return (b, a) if line[0] in ("-Y", "+Y") else (a, b)


def _dpx_header(path) -> dict:
    import struct

    with open(path, "rb") as fh:
        head = fh.read(2048)
    if len(head) < 2048 or head[:4] not in (b"SDPX", b"XPDS"):
        raise PlateError(path, "not a DPX file (bad magic or short header)", "re-export the file")
    e = ">" if head[:4] == b"SDPX" else "<"
    w, h = struct.unpack_from(e + "II", head, 772)
    fps = struct.unpack_from(e + "f", head, 1724)[0]
    if not (np.isfinite(fps) and 0 < fps < 1000):
        fps = struct.unpack_from(e + "f", head, 1940)[0]
    ph, pv = struct.unpack_from(e + "II", head, 1628)  # pixel aspect ratio, horizontal : vertical
    aspect = ph / pv if 0 < ph < 0xFFFFFFFF and 0 < pv < 0xFFFFFFFF else 1.0
    return {"width": w, "height": h, "fps": float(fps) if np.isfinite(fps) and 0 < fps < 1000 else None,
            "descriptor": head[800], "bit_depth": head[803], "pixel_aspect": aspect if 1e-3 <= aspect <= 1e3 else 1.0}


def _image_size(path) -> tuple[int, int, float | None]:
    """(width, height, fps or None) of one image file, from its header."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".hdr":
        w, h = _hdr_size(path)
        return w, h, None
    if ext == ".dpx":
        d = _dpx_header(path)
        return d["width"], d["height"], d["fps"]
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            if ext in (".jpg", ".jpeg"):
                orientation = im.getexif().get(274, 1)
                if orientation in (5, 6, 7, 8):  # decoded upright by read_image
                    w, h = h, w
            return w, h, None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PlateError(path, f"not a readable image ({exc})", "re-export the file") from exc


def _normalise(a: np.ndarray, path) -> np.ndarray:
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255)
    if a.dtype == np.uint16:
        return a.astype(np.float32) / np.float32(65535)
    if a.dtype in (np.float32, np.float64, np.float16):
        return a.astype(np.float32)
    raise PlateError(path, f"unsupported pixel type {a.dtype}", "export 8/16-bit integer or float images")


def _to_rgba(img: np.ndarray, bgr: bool) -> np.ndarray:
    if img.ndim == 2:
        img = img[..., None]
    h, w, c = img.shape
    out = np.ones((h, w, 4), np.float32)
    if c in (1, 2):
        out[..., :3] = img[..., :1]
        if c == 2:
            out[..., 3] = img[..., 1]
    else:
        rgb = img[..., :3][..., ::-1] if bgr else img[..., :3]
        out[..., :3] = rgb
        if c >= 4:
            out[..., 3] = img[..., 3]
    return out


def _read_with_pil(path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
            im = im.convert("RGBA" if ("transparency" in im.info or im.mode == "PA") else "RGB")
        if im.mode in ("I;16", "I;16B", "I;16L"):
            a = np.asarray(im, dtype=np.uint16)
        elif im.mode == "I":
            a = np.asarray(im, dtype=np.int64).clip(0, 65535).astype(np.uint16)
        else:
            a = np.asarray(im)
    return _to_rgba(_normalise(a, path), bgr=False)


def _ffmpeg_image(path) -> np.ndarray:
    out_fmt = decode_pix_fmt(_stream_info(path).get("pix_fmt"))
    r = _run_ffmpeg(["-v", "error", "-i", str(path), "-frames:v", "1", "-pix_fmt", out_fmt, "-c:v", "pam",
                     "-f", "image2pipe", "-"], path, "decode the image")
    if r.returncode != 0 or not r.stdout:
        raise PlateError(path, f"cannot be decoded ({_ffmpeg_error(r.stderr)})", "re-export the file")
    import io

    frames = list(_read_pam_stream(io.BytesIO(r.stdout), path, 1))
    if not frames:
        raise PlateError(path, "decoded to nothing", "re-export the file")
    return frames[0]


def read_image(path, *, part=None, view=None) -> np.ndarray:
    """(H, W, 4) float32 RGBA of one image file in its own encoding (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise PlateError(path, "file does not exist", "check the path and the frame range")
    ext = path.suffix.lower()
    if ext == ".exr":
        return exrio.read_exr_rgba(path, part=part, view=view)
    if ext == ".dpx":
        return _ffmpeg_image(path)
    import cv2

    if ext == ".hdr":
        img = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR)
        if img is None:
            raise PlateError(path, "not a readable Radiance HDR file", "re-export it as .hdr or .exr")
        return _to_rgba(img.astype(np.float32), bgr=True)
    if ext in (".jpg", ".jpeg"):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)  # applies the EXIF orientation
    else:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # keeps 16-bit, float and alpha
    if img is None:
        try:
            return _read_with_pil(path)
        except PlateError:
            raise
        except Exception as exc:
            raise PlateError(path, f"not a readable image ({exc})", "re-export the file") from exc
    return _to_rgba(_normalise(img, path), bgr=True)


# ------------------------------------------------------------------------------------------------
# probe / read_frame
# ------------------------------------------------------------------------------------------------


def _exr_facts(path, part, view) -> dict:
    p, chosen = exrio.select_part(path, part, view)
    if not exrio.has_colour(path, p, view):  # caught by validation, not by the render
        raise PlateError(path, f"part {p.index}" + (f" ({p.name!r})" if p.name else "") + " has no R, G, B or Y "
                               f"channel{f' of view {chosen!r}' if chosen else ''} "
                               f"(channels: {', '.join(c.name for c in p.channels)})",
                         "pick the part/view holding the colour image (plate_part / plate_view)")
    return {"width": p.width, "height": p.height, "fps": p.fps, "part": p.index, "part_name": p.name,
            "view": chosen, "views": p.views, "channels": [c.name for c in p.channels],
            "compression": p.compression, "latlong": p.envmap == 0,
            "pixel_aspect": exrio.part_aspect(p)}


def _check_ext(path, ext: str) -> None:
    if ext not in IMAGE_EXTENSIONS:
        raise PlateError(path, f"unsupported file type {ext or '(none)'!r}",
                         f"use one of {', '.join(sorted(IMAGE_EXTENSIONS))} or a movie file")


def probe(source, *, part=None, view=None, movie_start: int = 1001) -> PlateInfo:
    """What a source is, its size and its frames (cheap: headers only for images, one ffmpeg pass for
    movies). Raises PlateError naming the file and the fix when it is missing or unreadable."""
    src = str(source)
    path = Path(src)
    if is_movie(src):
        if not path.is_file():
            raise PlateError(path, "movie file does not exist", "check the path in the shot sheet")
        return probe_movie(path, movie_start)
    ext = path.suffix.lower()
    if is_sequence(src):
        _check_ext(path, ext)
        frames = frames_on_disk(src)
        if not frames:
            where = "its directory does not exist" if not path.parent.is_dir() else "no file matches it"
            raise PlateError(path, f"no frames of this sequence on disk ({where})",
                             "check the path and the frame-number pattern (#### / %04d / @@@@)")
        first = expand(src, frames[0])
        if ext == ".exr":
            f = _exr_facts(first, part, view)
            details = {k: v for k, v in f.items() if k not in ("width", "height", "fps", "latlong")}
            return PlateInfo("exr_sequence", f["width"], f["height"], frames, f["fps"], src,
                             {**details, "first_file": str(first)})
        w, h, fps = _image_size(first)
        return PlateInfo("image_sequence", w, h, frames, fps, src, {"first_file": str(first), "format": ext[1:],
                                                                     **_aspect(first, ext)})
    if path.is_dir():
        raise PlateError(path, "is a directory, not an image, sequence pattern or movie",
                         "give a pattern such as plate.####.exr or a movie file")
    if not path.is_file():
        raise PlateError(path, "file does not exist", "check the path in the shot sheet")
    _check_ext(path, ext)
    if ext == ".exr":
        f = _exr_facts(path, part, view)
        kind = "hdri" if f.pop("latlong") else "still"
        details = {k: v for k, v in f.items() if k not in ("width", "height", "fps")}
        return PlateInfo(kind, f["width"], f["height"], [], f["fps"], src, details)
    w, h, fps = _image_size(path)
    details = {"format": ext[1:], **_aspect(path, ext)}
    return PlateInfo("hdri" if ext == ".hdr" else "still", w, h, [], fps, src, details)


def _aspect(path, ext: str) -> dict:
    """{'pixel_aspect': ...} of a non-EXR image whose header states it (DPX), else {} (square)."""
    return {"pixel_aspect": _dpx_header(path)["pixel_aspect"]} if ext == ".dpx" else {}


def frame_file(source, frame: int) -> Path:
    """The file holding ``frame`` of an image sequence (the source itself for a single image)."""
    return expand(source, frame) if is_sequence(str(source)) else Path(str(source))


def read_frame(source, frame: int, *, part=None, view=None, movie_start: int = 1001) -> np.ndarray:
    """(H, W, 4) float32 RGBA of one frame of a source, in the file's own encoding. For a movie,
    ``frame`` is numbered from ``movie_start``; for a single image ``frame`` is ignored."""
    src = str(source)
    if is_movie(src):
        path = Path(src)
        if not path.is_file():
            raise PlateError(path, "movie file does not exist", "check the path in the shot sheet")
        index = int(frame) - int(movie_start)
        if index < 0:
            raise PlateError(path, f"frame {frame} is before the movie's first frame {movie_start}",
                             "check first_frame and movie_start_frame")
        return read_movie(path, index, 1)[0]
    path = frame_file(src, frame)
    _check_ext(path, path.suffix.lower())
    return read_image(path, part=part, view=view)
