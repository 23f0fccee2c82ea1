"""Assemble: one multi-layer EXR per frame, `<shot>_comp_v<NNN>.<FFFF>.exr`.

Layers: R,G,B,A (beauty, half), mask.character, mask.prop, mask.environment (float32), depth.Z
(float32, the depth stage) and what the composite backend adds (harmonize.*, diffusion.Z). One compression per file (single part); metadata as in docs/outputs.md.
"""

from __future__ import annotations

import numpy as np

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
    write_exr(path, chans, compression=compression, attrs={**attrs, "frame": int(frame)})
