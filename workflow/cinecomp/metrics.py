"""Matte and image quality metrics (alphamatting.com definitions for mattes)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def sad(alpha: np.ndarray, true: np.ndarray) -> float:
    """Sum of absolute differences, in thousands (alphamatting.com units)."""
    return float(np.abs(alpha.astype(np.float64) - true).sum() / 1000.0)


def mse(alpha: np.ndarray, true: np.ndarray) -> float:
    """Mean squared error per pixel (alpha in [0, 1])."""
    return float(np.mean((alpha.astype(np.float64) - true) ** 2))


def gradient_error(alpha: np.ndarray, true: np.ndarray, sigma: float = 1.4) -> float:
    """Sum of squared differences of Gaussian-derivative gradient magnitudes, in thousands."""
    def grad(a):
        a = a.astype(np.float64)  # (H, W) or a stack (..., H, W): gradients over the last two axes
        lead = (0,) * (a.ndim - 2)
        s = lead + (sigma, sigma)
        gx = ndimage.gaussian_filter(a, s, order=lead + (0, 1))
        gy = ndimage.gaussian_filter(a, s, order=lead + (1, 0))
        return np.hypot(gx, gy)

    return float(((grad(alpha) - grad(true)) ** 2).sum() / 1000.0)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    m = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if m == 0 else float(10 * np.log10(peak * peak / m))
