"""Frame naming and image-sequence patterns.

Published files follow ``<shot>_<element>_v<NNN>.<FFFF>.exr``, work files ``<shot>_<element>.<FFFF>.exr``. Plate sequences in a shot sheet may be
written ``plate.####.exr`` (one ``#`` per digit), ``plate.%04d.exr`` or ``plate.@@@@.exr``.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import FileError

MOVIE_EXTENSIONS = {".mov", ".mp4", ".m4v", ".mkv", ".avi", ".webm", ".mxf"}
STILL_EXTENSIONS = {".exr", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".hdr", ".dpx"}

# a project frame file: <shot>_<element>[_v<NNN>].<FFFF>.exr
FRAME_FILE = re.compile(r"^(?P<shot>.+)_(?P<element>[A-Za-z0-9]+)(?:_v(?P<version>\d{3}))?\.(?P<frame>\d+)\.exr$")
_HASHES = re.compile(r"(#+|@+)")
_PRINTF = re.compile(r"%0?(\d*)d")


def frame_name(shot: str, element: str, version: int | None, frame: int, ext: str = "exr") -> str:
    """``<shot>_<element>_v<NNN>.<FFFF>.<ext>``; work files (version None) have no version."""
    v = "" if version is None else f"_v{int(version):03d}"
    return f"{shot}_{element}{v}.{int(frame):04d}.{ext}"


def frame_path(directory, shot: str, element: str, version: int | None, frame: int, ext: str = "exr") -> Path:
    return Path(directory) / frame_name(shot, element, version, frame, ext)


def is_movie(path) -> bool:
    return Path(str(path)).suffix.lower() in MOVIE_EXTENSIONS


def is_sequence(pattern) -> bool:
    name = Path(str(pattern)).name
    return bool(_HASHES.search(name) or _PRINTF.search(name))


def expand(pattern, frame: int) -> Path:
    """The file of ``frame`` in a sequence pattern (``####``, ``@@@@`` or ``%04d``)."""
    s = str(pattern)
    m = _HASHES.search(Path(s).name)
    if m:
        width = len(m.group(1))
        head, tail = s.rsplit(m.group(1), 1)
        return Path(f"{head}{int(frame):0{width}d}{tail}")
    m = _PRINTF.search(Path(s).name)
    if m:
        return Path(s[: s.rfind(m.group(0))] + (m.group(0) % int(frame)) + s[s.rfind(m.group(0)) + len(m.group(0)) :])
    return Path(s)


def sequence_files(pattern, first: int, last: int) -> list[Path]:
    return [Path(s) for s in sequence_names(pattern, first, last)]


def sequence_names(pattern, first: int, last: int) -> list[str]:
    """The files of frames first..last of a sequence pattern, as strings, as ``expand`` names them
    (the pattern parsed once: planning a 1000-shot sheet lists every plate frame)."""
    s, frames = str(pattern), range(int(first), int(last) + 1)
    name = Path(s).name
    m = _HASHES.search(name)
    if m:
        width = len(m.group(1))
        head, tail = s.rsplit(m.group(1), 1)
        return [f"{head}{f:0{width}d}{tail}" for f in frames]
    m = _PRINTF.search(name)
    if m:
        token, at = m.group(0), s.rfind(m.group(0))
        head, tail = s[:at], s[at + len(token):]
        return [head + (token % f) + tail for f in frames]
    return [str(Path(s)) for _ in frames]


def sequence_glob(pattern) -> str:
    """Glob matching every frame of a sequence pattern (for finding the frames on disk)."""
    s = str(pattern)
    s = _HASHES.sub(lambda m: "[0-9]" * len(m.group(1)), s)
    return _PRINTF.sub(lambda m: "[0-9]" * int(m.group(1) or 1) + ("*" if not m.group(1) else ""), s)


def frames_on_disk(pattern) -> list[int]:
    """Frame numbers of a sequence pattern that exist, sorted."""
    p = Path(str(pattern))
    g = sequence_glob(p.name)
    rx = re.compile("^" + re.escape(g).replace(re.escape("[0-9]"), "([0-9])") + "$")
    out = []
    if not p.parent.is_dir():
        return out
    for f in p.parent.glob(g):
        m = rx.match(f.name)
        if m:
            out.append(int("".join(m.groups())))
    return sorted(out)


def broken_frames(pattern, nums) -> list[Path]:
    """Files of ``nums`` that are listed on disk but cannot be opened as files: a dangling or looping
    symlink (globbing lists it, so frames_on_disk counts it)."""
    return [f for f in (expand(pattern, n) for n in nums) if not f.is_file()]


def frame_ranges(nums: list[int]) -> str:
    """[1001, 1002, 1003, 1007] -> '1001-1003,1007'."""
    parts, start, prev = [], None, None
    for n in nums:
        if start is None:
            start = prev = n
        elif n == prev + 1:
            prev = n
        else:
            parts.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = n
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else str(start))
    s = ",".join(parts)
    return s if len(s) < 80 else s[:77] + "..."


def sample_indices(n: int, max_frames: int) -> list[int]:
    """Up to ``max_frames`` evenly spaced indices of range(n), first and last included."""
    if n <= max_frames:
        return list(range(n))
    if max_frames == 1:
        return [0]
    return sorted({round(i * (n - 1) / (max_frames - 1)) for i in range(max_frames)})


def frames_in_dir(directory) -> list[int]:
    """Frame numbers of the project frame files (:data:`FRAME_FILE`) in ``directory``, sorted."""
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted(int(m.group("frame")) for m in map(FRAME_FILE.match, (p.name for p in d.iterdir())) if m)


def check_frames(directory, frames, *, shot: str | None, name=None) -> None:
    """FileError naming the missing frames unless ``directory`` holds a frame file of every frame in
    ``frames`` (a job's output before it is published; ``name``: the path the error names)."""
    want = sorted(set(frames))
    if not want:
        return
    have = set(frames_in_dir(directory))
    missing = [f for f in want if f not in have]
    if missing:
        what = "frame" if len(missing) == 1 else f"{len(missing)} frames"
        raise FileError(name or directory, f"{what} {frame_ranges(missing)} of {want[0]}-{want[-1]} missing, "
                        "so it is not published", "rerun the shot; if a frame is missing again, its job log "
                        "says why", shot=shot)
