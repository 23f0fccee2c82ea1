"""Atomic writes: write to a temp file beside the target, fsync, then rename.

An interrupted job never leaves a file that looks finished; a rename within one directory is atomic.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from pathlib import Path


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    The temp name keeps the target's extension (``suffix``) so writers that pick a format from
    the extension (ffmpeg, PIL) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; finished files get the usual permissions
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


def _swap_in(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` onto ``path``; an existing ``path`` is moved aside first and removed after."""
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.replace(path, old / path.name)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` in one rename.

    An interrupted write never leaves a directory that looks finished.  An existing ``path`` is moved
    aside first and removed after the new one is in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def writable_dir_problem(path: str | os.PathLike) -> str | None:
    """None if ``path`` is (or can be made) a directory a file can be written in, tried with a real
    file (root ignores permission bits); else why not."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


@contextlib.contextmanager
def publish_dir(path: str | os.PathLike, verify=None):
    """Like :func:`atomic_dir`, for a job's output directory: the directory written has ``path``'s own
    name (inside a hidden ``.<name>.*.publish.tmp`` directory beside it: a writer may read its output's
    name), and ``verify(written_dir)`` runs before the rename, so a directory that fails it (say, a frame
    missing) is never published. Left-overs of a killed earlier job for ``path`` are removed first (one
    job per output at a time: Snakemake's lock, and the SLURM controller's cleanup waits for the jobs of
    a dead controller to end).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.publish.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    holder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".publish.tmp", dir=path.parent))
    try:
        tmp = holder / path.name
        tmp.mkdir()
        yield tmp
        if verify is not None:
            verify(tmp)
        _swap_in(tmp, path)
    finally:
        shutil.rmtree(holder, ignore_errors=True)
