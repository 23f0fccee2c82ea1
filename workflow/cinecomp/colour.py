"""Colour management with OpenColorIO's built-in studio config.

Everything inside cinecomp is scene-linear ACEScg; plates are converted from the colourspace the shot
sheet tags them with, previews go through a display/view transform.
"""

from __future__ import annotations

import difflib
from functools import lru_cache

import numpy as np
import PyOpenColorIO as ocio

CONFIG = "ocio://studio-config-latest"
WORKING_SPACE = "ACEScg"
DEFAULT_DISPLAY = "sRGB - Display"
DEFAULT_VIEW = "ACES 2.0 - SDR 100 nits (Rec.709)"
LUMA_ACESCG = np.array([0.2722287, 0.6740818, 0.0536895])  # luminance (Y) weights of scene-linear ACEScg (AP1)


def luminance(rgb) -> np.ndarray:
    """(...) luminance of scene-linear ACEScg (..., 3); float32 in, float32 out."""
    rgb = np.asarray(rgb)
    return rgb @ (LUMA_ACESCG.astype(np.float32) if rgb.dtype == np.float32 else LUMA_ACESCG)


@lru_cache(maxsize=4)
def config(name: str = CONFIG) -> ocio.Config:
    return ocio.Config.CreateFromFile(name)


@lru_cache(maxsize=4)
def colourspace_names(cfg_name: str = CONFIG) -> frozenset[str]:
    cfg = config(cfg_name)
    names = set()
    for cs in cfg.getColorSpaces():
        names.add(cs.getName())
        names.update(cs.getAliases())
    return frozenset(names)


def check_colourspace(name: str, cfg_name: str = CONFIG) -> str | None:
    """None if ``name`` is a colourspace (or alias) of the config, else a message with suggestions."""
    names = colourspace_names(cfg_name)
    if name in names:
        return None
    near = difflib.get_close_matches(name, sorted(names), n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(repr(n) for n in near)}?" if near else "see `cinecomp colourspaces`"
    return f"unknown colourspace {name!r} in OCIO config {cfg_name}; {hint}"


@lru_cache(maxsize=64)
def _cpu(src: str, dst: str, cfg_name: str):
    return config(cfg_name).getProcessor(src, dst).getDefaultCPUProcessor()


@lru_cache(maxsize=16)
def _display_cpu(src: str, display: str, view: str, cfg_name: str):
    cfg = config(cfg_name)
    t = ocio.DisplayViewTransform(src=src, display=display, view=view)
    return cfg.getProcessor(t).getDefaultCPUProcessor()


def _apply(cpu, rgb: np.ndarray) -> np.ndarray:
    out = np.ascontiguousarray(rgb[..., :3], dtype=np.float32).copy()
    h, w = out.shape[:2]
    desc = ocio.PackedImageDesc(out, w, h, 3)
    cpu.apply(desc)
    return out


def convert(rgb: np.ndarray, src: str, dst: str = WORKING_SPACE, cfg_name: str = CONFIG) -> np.ndarray:
    """Convert an (H, W, 3+) float image's RGB between colourspaces; extra channels are dropped."""
    if src == dst:
        return np.ascontiguousarray(rgb[..., :3], dtype=np.float32)
    return _apply(_cpu(src, dst, cfg_name), rgb)


def to_display(rgb: np.ndarray, src: str = WORKING_SPACE, display: str = DEFAULT_DISPLAY, view: str = DEFAULT_VIEW,
               cfg_name: str = CONFIG) -> np.ndarray:
    """Scene-linear -> display-referred [0, 1] RGB through the config's display/view."""
    return np.clip(_apply(_display_cpu(src, display, view, cfg_name), rgb), 0.0, 1.0)


def to_display_8bit(rgb: np.ndarray, **kw) -> np.ndarray:
    return (to_display(rgb, **kw) * 255.0 + 0.5).astype(np.uint8)
