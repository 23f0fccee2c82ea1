"""Long shots: overlapping temporal windows of 4n+1 frames, each continuing the one before, resumable.

A shot longer than one window (81 frames for Wan 2.1) is cut into windows of ``window`` frames that
start on latent-frame boundaries (multiples of 4) and overlap by ``overlap`` = 4m+1 frames (the last
window is as long as the rest of the shot needs, rounded up to 4n+1, its tail held).  A shot shorter
than a window is one window of the smallest 4n+1 length that holds it, padded by holding its last
frame (the padding is dropped afterwards).

Windows are rendered in order; each one after the first gets the previous window's output for the
frames they share as *context* (``context_frames`` / ``context_depth``: held clean at timestep 0, see
:mod:`cinecomp.diffusion.conditioning`), so an environment the model synthesised, a shadow or a relit
colour carries across the boundary instead of being sampled afresh.  The noise is drawn per absolute
latent frame (``frame_offset``), so a frame's noise does not depend on which window renders it.

Each window is written as one checkpoint file (``window_0003.npz``: frames, depth, and a key naming the
window, its inputs, the settings and the key of the window before it, whose output is its context).  A
rerun skips every window whose file exists with the same key, so an interrupted shot resumes at its
first unfinished window; a changed input or setting invalidates the windows it touches and every
window after them.  In a distributed run rank 0 decides which windows are finished and tells the others
(``agree``), so all ranks render the same windows.

Blending: inside an overlap the earlier window's weight falls linearly while the later one's rises (the
two sum to one; a frame is in at most two windows), RGB is blended linearly and depth in log space (a
cross-fade between two depth estimates of the same surface should be a geometric, not arithmetic, mean).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..atomic import atomic_path
from .errors import DiffusionInputError

PER_FRAME_INPUTS = ("character_rgb", "tri_mask", "character_depth", "environment_rgb", "harmonize_rgb")


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


def _round_up_4n1(n: int, temporal: int = 4) -> int:
    return (max(n, 1) - 1 + temporal - 1) // temporal * temporal + 1


def check_overlap(window: int, overlap: int, temporal: int = 4) -> None:
    """``overlap`` must be 4m+1 (a whole number of latent frames of context) and leave each frame in at
    most two windows (``overlap <= window - overlap``)."""
    _check_4n1(window, "window", temporal)
    if overlap < 1 or (overlap - 1) % temporal:
        lo = max(1, (overlap - 1) // temporal * temporal + 1)
        raise DiffusionInputError(
            f"overlap={overlap} must be {temporal}m+1 (1, 5, 9, 13, 17, ...): the frames a window shares with "
            f"the one before are its context, a whole number of latent frames (fix: use {lo} or {lo + temporal})")
    if overlap > window - overlap:
        most = ((window - 1) // 2 - 1) // temporal * temporal + 1
        raise DiffusionInputError(
            f"overlap={overlap} is more than half of window={window}: a frame would be in three windows "
            f"(fix: overlap at most {most})")


def plan_windows(num_frames: int, window: int = 81, overlap: int = 17, temporal: int = 4) -> list[Window]:
    """Windows of ``window`` frames starting at multiples of ``temporal``, consecutive ones sharing
    ``overlap`` frames; the last one only as long (4n+1) as the rest of the shot needs."""
    check_overlap(window, overlap, temporal)
    if num_frames < 1:
        raise DiffusionInputError(f"a shot needs at least one frame, got {num_frames}")
    stride = window - overlap  # a multiple of temporal: window and overlap are both 4k+1
    plan, start = [], 0
    while True:
        length = min(window, _round_up_4n1(num_frames - start, temporal))
        plan.append(Window(len(plan), start, min(num_frames, start + length), length))
        if start + window >= num_frames:
            return plan
        start += stride


def blend_weights(plan: list[Window], index: int) -> np.ndarray:
    """Per-frame weights of window ``index`` over its ``stop - start`` real frames: a linear ramp over
    each overlap with a neighbour (the two ramps sum to one), one elsewhere."""
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


def _into_blend_space(data, log: bool) -> np.ndarray:
    """Windows are averaged in float64, depth (``log``) in log space: a cross-fade of two depth
    estimates of one surface is a geometric mean."""
    data = np.asarray(data, np.float64)
    return np.log(np.maximum(data, 1e-12)) if log else data


def _out_of_blend_space(mean: np.ndarray, log: bool) -> np.ndarray:
    return np.exp(mean) if log else mean


def blend_windows(plan: list[Window], outputs: dict[int, np.ndarray], num_frames: int, log: bool = False) -> np.ndarray:
    """Blend per-window arrays ``(length, ...)`` into ``(num_frames, ...)``; ``log`` blends in log space."""
    missing = [w.index for w in plan if w.index not in outputs]
    if missing:
        raise DiffusionInputError(f"windows {missing} have no output yet")
    first = np.asarray(outputs[plan[0].index])
    acc = np.zeros((num_frames, *first.shape[1:]), np.float64)
    wsum = np.zeros(num_frames, np.float64)
    for win in plan:
        data = _into_blend_space(np.asarray(outputs[win.index])[: win.stop - win.start], log)
        w = blend_weights(plan, win.index)
        acc[win.start : win.stop] += data * w.reshape(-1, *([1] * (data.ndim - 1)))
        wsum[win.start : win.stop] += w
    out = acc / wsum.reshape(-1, *([1] * (acc.ndim - 1)))
    return _out_of_blend_space(out, log).astype(first.dtype if first.dtype.kind == "f" else np.float32)


def slice_window(inputs: dict, win: Window) -> dict:
    """The per-frame inputs of one window (stills and other arguments pass through), tail held."""
    out = {}
    for key, value in inputs.items():
        if key in PER_FRAME_INPUTS and value is not None and np.ndim(value) >= (3 if key == "character_depth" else 4):
            part = np.asarray(value[win.start : win.stop])  # an ndarray or NpyFrames (reads just these frames)
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


def window_key(win: Window, window_inputs: dict, previous_key: str = "") -> str:
    """The identity of a window's output: its place, its inputs and settings, and the key of the window
    whose output is its context (so a change upstream invalidates every later window)."""
    h = hashlib.sha256(json.dumps([win.start, win.stop, win.length, previous_key]).encode())
    _digest(window_inputs, h)
    return h.hexdigest()


def window_path(out_dir: str | os.PathLike, win: Window) -> Path:
    return Path(out_dir) / f"window_{win.index:04d}.npz"


def load_finished(path: Path, key: str, arrays: bool = True) -> dict | None:
    """A window checkpoint's arrays (``{}`` with ``arrays=False``) if it exists, is readable and has
    the expected key; else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            if not arrays:
                return {}
            return {name: data[name] for name in ("frames", "depth", "over_reconstruction") if name in data}
    except (OSError, ValueError, KeyError, EOFError):
        return None  # damaged: render again


MANIFEST = "windows.json"


def write_manifest(out_dir, plan: list[Window], keys: dict[int, str], num_frames: int, meta: dict | None = None):
    """``windows.json``: the plan and each window's key, written once every window is finished."""
    data = {
        "num_frames": num_frames,
        "windows": [dict(index=w.index, start=w.start, stop=w.stop, length=w.length, key=keys[w.index],
                         file=window_path(out_dir, w).name) for w in plan],
        "meta": meta or {},
    }
    with atomic_path(Path(out_dir) / MANIFEST) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1))


def read_manifest(out_dir) -> dict:
    path = Path(out_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DiffusionInputError(f"{path}: no readable window manifest ({exc}) (fix: rerun the shot)") from None


def iter_blended(out_dir, with_over: bool = False) -> Iterator[tuple]:
    """``(frame_index, rgb (H, W, 3), depth (H, W))`` of the whole shot, blended from the window files one
    frame at a time: at most the windows overlapping the current frame are in memory, so writing a shot
    costs the same memory whatever its length.  Same result as :func:`blend_windows`.  ``with_over``
    adds the blended ``over_reconstruction`` (H, W, 3) (windows rendered with ``reconstruct_over``)."""
    manifest = read_manifest(out_dir)
    plan = [Window(w["index"], w["start"], w["stop"], w["length"]) for w in manifest["windows"]]
    keys = {w["index"]: w["key"] for w in manifest["windows"]}
    weights = {w.index: blend_weights(plan, w.index) for w in plan}
    loaded: dict[int, dict] = {}
    for i in range(manifest["num_frames"]):
        covering = [w for w in plan if w.start <= i < w.stop]
        for idx in [k for k in loaded if plan[k].stop <= i]:
            del loaded[idx]  # windows behind the current frame are done with
        for w in covering:
            if w.index not in loaded:
                data = load_finished(window_path(out_dir, w), keys[w.index])
                if data is None or (with_over and "over_reconstruction" not in data):
                    raise DiffusionInputError(f"{window_path(out_dir, w)}: missing, damaged or from other inputs "
                                              "than windows.json says (fix: rerun the shot)")
                loaded[w.index] = data
        wsum = sum(float(weights[w.index][i - w.start]) for w in covering)

        def blend(name, log):
            acc = sum(float(weights[w.index][i - w.start]) * _into_blend_space(loaded[w.index][name][i - w.start], log)
                      for w in covering)
            return _out_of_blend_space(acc / wsum, log).astype(np.float32)

        if with_over:
            yield i, blend("frames", False), blend("depth", True), blend("over_reconstruction", False)
        else:
            yield i, blend("frames", False), blend("depth", True)


def render_windows(
    render: Callable[..., object],
    inputs: dict,
    out_dir: str | os.PathLike,
    window: int = 81,
    overlap: int = 17,
    on_window: Callable[[Window, bool], None] | None = None,
    write: bool = True,
    key_extra: str = "",
    blend: bool = True,
    meta: dict | None = None,
    context: bool = True,
    agree: Callable[[list[int] | None], list[int]] | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Render a shot of any length through ``render(**window_inputs)`` (e.g. a CinecompPipeline).

    ``inputs`` are the pipeline's keyword arguments; the per-frame ones (``character_rgb``,
    ``tri_mask``, ``character_depth``, ``environment_rgb`` with a time axis) are cut per window, the
    rest (prompt embeddings, references, seed, steps...) are passed to every window, with
    ``frame_offset`` (the window's first frame) and, from the second window on with ``context``,
    ``context_frames`` / ``context_depth`` (the previous window's output for the shared frames).
    ``render`` must return an object with ``.frames`` (T, H, W, 3) and ``.depth`` (T, H, W).  Finished
    windows found in ``out_dir`` with a matching key are reused; ``on_window(window, reused)`` is
    called for each.  ``write=False`` renders without writing checkpoints (other ranks of a
    distributed run); ``agree(todo)`` makes the ranks agree on the windows to render (rank 0 passes
    its list and gets it back, the others pass None and get rank 0's).  ``key_extra`` (model
    fingerprint, precision, code version) is part of every window's key.  Once every window is finished,
    ``windows.json`` (plan, keys, ``meta``) is written beside them.  ``blend=False`` keeps no whole
    window in memory and returns None: read the result with :func:`iter_blended`.
    Returns the blended ``(frames, depth)`` of the whole shot.
    """
    num_frames = len(inputs["character_rgb"])
    plan = plan_windows(num_frames, window, overlap)
    keys, previous = {}, ""
    for win in plan:
        keys[win.index] = previous = window_key(win, {"inputs": slice_window(inputs, win), "extra": key_extra,
                                                       "context": context}, previous if context else "")
    # What is finished is decided before rendering anything: in a distributed run every rank must make
    # the same decisions (rank 0's, through ``agree``), and nothing is written until all ranks have them.
    todo = None
    if write or agree is None:
        todo = [w.index for w in plan if load_finished(window_path(out_dir, w), keys[w.index], arrays=False) is None]
    if agree is not None:
        todo = list(agree(todo if write else None))
    frames, depth = {}, {}
    tail = None  # (index, frames, depth) of the last window rendered or read: the next one's context
    for win in plan:
        if win.index not in todo:
            if blend or (context and win.index + 1 in todo):
                done = load_finished(window_path(out_dir, win), keys[win.index])
                if done is None:
                    raise DiffusionInputError(f"{window_path(out_dir, win)}: finished window vanished or "
                                              "changed during the run (fix: rerun the shot)")
                tail = (win.index, done["frames"], done["depth"])
                if blend:
                    frames[win.index], depth[win.index] = done["frames"], done["depth"]
            if on_window is not None:
                on_window(win, True)
            continue
        args = slice_window(inputs, win)  # only one window's inputs in memory
        args["frame_offset"] = win.start
        if context and win.index > 0:
            prev = plan[win.index - 1]
            if tail is None or tail[0] != prev.index:
                raise DiffusionInputError(f"window {win.index} needs window {prev.index}'s output as context")
            a = win.start - prev.start
            args["context_frames"] = tail[1][a : a + overlap]
            args["context_depth"] = tail[2][a : a + overlap]
        result = render(**args)
        f, d = np.asarray(result.frames, np.float32), np.asarray(result.depth, np.float32)
        extra = {}
        if getattr(result, "over_reconstruction", None) is not None:
            extra["over_reconstruction"] = np.asarray(result.over_reconstruction, np.float32)
        del result, args
        if write:
            with atomic_path(window_path(out_dir, win)) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, frames=f, depth=d, key=np.array(keys[win.index]), **extra)
        if blend:
            frames[win.index], depth[win.index] = f, d
        tail = (win.index, f, d)
        if on_window is not None:
            on_window(win, False)
    if write:
        write_manifest(out_dir, plan, keys, num_frames, meta)
    if not blend:
        return None
    return blend_windows(plan, frames, num_frames), blend_windows(plan, depth, num_frames, log=True)
