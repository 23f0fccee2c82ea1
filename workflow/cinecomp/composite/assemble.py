"""Assemble: one multi-layer EXR per frame, `<shot>_comp_v<NNN>.<FFFF>.exr`.

Layers: R,G,B,A (beauty, half), mask.character, mask.prop, mask.environment (float32), depth.Z
(float32, the depth stage) and what the composite backend adds (harmonize.*, diffusion.Z). One compression per file (single part); metadata as in docs/outputs.md.
"""

from __future__ import annotations

import numpy as np

from ..errors import FileError
from ..io.exr import half_channels, write_exr

MASK_LAYERS = ("mask.character", "mask.prop", "mask.environment")


def write_comp_frame(path, beauty_rgba: np.ndarray, masks: dict[str, np.ndarray], depth: np.ndarray | None,
                     *, frame: int, compression: str, attrs: dict, extra: dict | None = None) -> None:
    """``extra``: more layers kept in their own pixel type (e.g. harmonize.*, diffusion.Z)."""
    chans = half_channels({c: beauty_rgba[..., i] for i, c in enumerate("RGBA")}, {**attrs, "frame": int(frame)})
    chans.update(extra or {})
    for name in MASK_LAYERS:
        chans[name] = masks[name].astype(np.float32)
    if depth is not None:
        chans["depth.Z"] = depth.astype(np.float32)
    check_finite(path, chans, shot=attrs.get("shot"), frame=frame)
    write_exr(path, chans, compression=compression, attrs={**attrs, "frame": int(frame)})


def check_finite(path, chans: dict[str, np.ndarray], *, shot: str | None, frame: int) -> None:
    """FileError naming the frame and every channel holding a NaN or Inf (as it would be written): no
    published frame holds a non-finite pixel."""
    bad = {name: int(np.size(a) - np.count_nonzero(np.isfinite(a))) for name, a in chans.items()}
    bad = {name: n for name, n in bad.items() if n}
    if bad:
        counts = ", ".join(f"{name} {n}" for name, n in bad.items())
        raise FileError(path, f"frame {int(frame)} has non-finite (NaN/Inf) pixels in channel(s) {counts}; "
                        "the version is not published", "find the stage that made them in the composite, key, "
                        "masks and depth logs (an extreme light intensity or light probe, a damaged plate) "
                        "and rerun", shot=shot)
