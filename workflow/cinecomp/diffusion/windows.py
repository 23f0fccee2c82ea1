"""Long shots: overlapping temporal windows of 4n+1 frames, blended in the overlap, resumable.

A shot longer than one window (81 frames for Wan 2.1) is cut into windows of exactly ``window``
frames that overlap by at least ``overlap`` frames; the last window is aligned to the shot's end (so
it may overlap its neighbour by more).  A shot shorter than a window is one window of the smallest
4n+1 length that holds it, padded by holding its last frame (the padding is dropped afterwards).

Each window is rendered on its own and written as one checkpoint file (``window_0003.npz``: frames,
depth, and a key naming the window, the inputs and the settings).  A rerun skips every window whose
file exists with the same key, so an interrupted shot resumes at its first unfinished window; a
changed input or setting invalidates just the windows it touches.

Blending: inside an overlap the earlier window's weight falls linearly while the later one's rises
(the two sum to one), RGB is blended linearly and depth in log space (a cross-fade between two depth
estimates of the same surface should be a geometric, not arithmetic, mean).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..atomic import atomic_path
from .errors import DiffusionInputError

PER_FRAME_INPUTS = ("character_rgb", "tri_mask", "character_depth", "environment_rgb")


@dataclass(frozen=True)
class Window:
    """Frames ``start:stop`` of the shot, rendered as ``length`` (4n+1) frames (the tail held)."""

    index: int
    start: int
    stop: int
    length: int

    @property
    def pad(self) -> int:
        return self.length - (self.stop - self.start)


def _check_4n1(n: int, what: str, temporal: int = 4) -> None:
    if n < 1 or (n - 1) % temporal:
        raise DiffusionInputError(f"{what}={n} must be {temporal}n+1 (e.g. 81, 41, 21)")


def plan_windows(num_frames: int, window: int = 81, overlap: int = 16, temporal: int = 4) -> list[Window]:
    """Windows of ``window`` frames covering ``num_frames``, consecutive ones sharing >= ``overlap`` frames."""
    _check_4n1(window, "window", temporal)
    if num_frames < 1:
        raise DiffusionInputError(f"a shot needs at least one frame, got {num_frames}")
    if not 0 <= overlap < window:
        raise DiffusionInputError(f"overlap={overlap} must be at least 0 and less than window={window}")
    if num_frames <= window:
        length = (num_frames - 1 + temporal - 1) // temporal * temporal + 1
        return [Window(0, 0, num_frames, length)]
    stride = window - overlap
    starts = list(range(0, num_frames - window, stride))
    starts.append(num_frames - window)
    return [Window(i, s, s + window, window) for i, s in enumerate(starts)]


def blend_weights(plan: list[Window], index: int) -> np.ndarray:
    """Per-frame weights of window ``index`` over its ``stop - start`` real frames."""
    win = plan[index]
    n = win.stop - win.start
    w = np.ones(n, np.float64)
    if index > 0:
        ov = plan[index - 1].stop - win.start
        if ov > 0:
            w[:ov] *= np.arange(1, ov + 1) / (ov + 1)
    if index + 1 < len(plan):
        ov = win.stop - plan[index + 1].start
        if ov > 0:
            w[n - ov :] *= np.arange(ov, 0, -1) / (ov + 1)
    return w


def blend_windows(plan: list[Window], outputs: dict[int, np.ndarray], num_frames: int, log: bool = False) -> np.ndarray:
    """Blend per-window arrays ``(length, ...)`` into ``(num_frames, ...)``; ``log`` blends in log space."""
    missing = [w.index for w in plan if w.index not in outputs]
    if missing:
        raise DiffusionInputError(f"windows {missing} have no output yet")
    first = np.asarray(outputs[plan[0].index])
    acc = np.zeros((num_frames, *first.shape[1:]), np.float64)
    wsum = np.zeros(num_frames, np.float64)
    for win in plan:
        data = np.asarray(outputs[win.index], np.float64)[: win.stop - win.start]
        if log:
            data = np.log(np.maximum(data, 1e-12))
        w = blend_weights(plan, win.index)
        acc[win.start : win.stop] += data * w.reshape(-1, *([1] * (data.ndim - 1)))
        wsum[win.start : win.stop] += w
    out = acc / wsum.reshape(-1, *([1] * (acc.ndim - 1)))
    return (np.exp(out) if log else out).astype(first.dtype if first.dtype.kind == "f" else np.float32)


def slice_window(inputs: dict, win: Window) -> dict:
    """The per-frame inputs of one window (stills and other arguments pass through), tail held."""
    out = {}
    for key, value in inputs.items():
        if key in PER_FRAME_INPUTS and value is not None and np.ndim(value) >= (3 if key == "character_depth" else 4):
            part = np.asarray(value)[win.start : win.stop]
            if win.pad:
                part = np.concatenate([part, np.repeat(part[-1:], win.pad, axis=0)], axis=0)
            out[key] = part
        else:
            out[key] = value
    return out


def _digest(value, h) -> None:
    if value is None:
        h.update(b"None")
    elif hasattr(value, "detach"):  # torch tensor
        _digest(value.detach().cpu().float().numpy(), h)
    elif isinstance(value, np.ndarray):
        h.update(f"{value.shape}{value.dtype}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for v in value:
            _digest(v, h)
        h.update(b"]")
    elif isinstance(value, dict):
        for k in sorted(value):
            h.update(str(k).encode())
            _digest(value[k], h)
    elif hasattr(value, "__dataclass_fields__"):
        _digest({k: getattr(value, k) for k in value.__dataclass_fields__}, h)
    elif isinstance(value, (str, int, float, bool)):
        h.update(repr(value).encode())
    else:  # generators etc. cannot be reproduced from a checkpoint key
        raise DiffusionInputError(f"cannot key a window on a {type(value).__name__}; pass a seed instead")


def window_key(win: Window, window_inputs: dict) -> str:
    h = hashlib.sha256(json.dumps([win.start, win.stop, win.length]).encode())
    _digest(window_inputs, h)
    return h.hexdigest()


def window_path(out_dir: str | os.PathLike, win: Window) -> Path:
    return Path(out_dir) / f"window_{win.index:04d}.npz"


def load_finished(path: Path, key: str) -> dict | None:
    """A window checkpoint's arrays if it exists, is readable and has the expected key."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            return {"frames": data["frames"], "depth": data["depth"]}
    except (OSError, ValueError, KeyError):
        return None  # damaged: render again


def render_windows(
    render: Callable[..., object],
    inputs: dict,
    out_dir: str | os.PathLike,
    window: int = 81,
    overlap: int = 16,
    on_window: Callable[[Window, bool], None] | None = None,
    write: bool = True,
    key_extra: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Render a shot of any length through ``render(**window_inputs)`` (e.g. a CinecompPipeline).

    ``inputs`` are the pipeline's keyword arguments; the per-frame ones (``character_rgb``,
    ``tri_mask``, ``character_depth``, ``environment_rgb`` with a time axis) are cut per window, the
    rest (prompt embeddings, references, seed, steps...) are passed to every window.  ``render`` must
    return an object with ``.frames`` (T, H, W, 3) and ``.depth`` (T, H, W).  Finished windows found
    in ``out_dir`` with a matching key are reused; ``on_window(window, reused)`` is called for each.
    ``write=False`` renders without writing checkpoints (other ranks of a distributed run);
    ``key_extra`` (e.g. the model's fingerprint) is part of every window's key.
    Returns the blended ``(frames, depth)`` of the whole shot.
    """
    num_frames = len(inputs["character_rgb"])
    plan = plan_windows(num_frames, window, overlap)
    # Decide what is finished before rendering anything: in a distributed run every rank must make
    # the same decisions, and nothing is written until all ranks have made them.
    todo = []
    frames, depth = {}, {}
    for win in plan:
        win_inputs = slice_window(inputs, win)
        key = window_key(win, {"inputs": win_inputs, "extra": key_extra})
        done = load_finished(window_path(out_dir, win), key)
        if done is None:
            todo.append((win, win_inputs, key))
        else:
            frames[win.index], depth[win.index] = done["frames"], done["depth"]
            if on_window is not None:
                on_window(win, True)
    for win, win_inputs, key in todo:
        result = render(**win_inputs)
        frames[win.index] = np.asarray(result.frames, np.float32)
        depth[win.index] = np.asarray(result.depth, np.float32)
        if write:
            with atomic_path(window_path(out_dir, win)) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, frames=frames[win.index], depth=depth[win.index], key=np.array(key))
        if on_window is not None:
            on_window(win, False)
    return blend_windows(plan, frames, num_frames), blend_windows(plan, depth, num_frames, log=True)
