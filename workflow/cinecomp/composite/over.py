"""Composite backends. `over`: premultiplied foreground over the environment, the baseline."""

from __future__ import annotations

import numpy as np


def over(fg_premult: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """fg + (1 - alpha) * bg for (..., 3) premultiplied fg, (...) alpha and (..., 3) bg."""
    a = np.clip(alpha, 0.0, 1.0)[..., None]
    return fg_premult[..., :3] + (1.0 - a) * background[..., :3]
