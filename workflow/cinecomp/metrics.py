"""Matte and image quality metrics (alphamatting.com definitions for mattes; SSIM, region errors,
shadow region and flicker for the evaluation harness)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .colour import LUMA_ACESCG


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


# ------------------------------------------------------------------------------------------------
# Image metrics for the evaluation harness (evaluate.py): images are display-encoded [0, 1] (H, W, 3).
# ------------------------------------------------------------------------------------------------


def psnr_from_mse(m: float, peak: float = 1.0) -> float:
    """PSNR in dB of a mean squared error (inf for 0, nan for nan: an empty region)."""
    if not np.isfinite(m):
        return float("nan")
    return float("inf") if m == 0 else float(10 * np.log10(peak * peak / m))


def ssim_map(a: np.ndarray, b: np.ndarray, sigma: float = 1.5, data_range: float = 1.0) -> np.ndarray:
    """(H, W) SSIM map of Wang et al. 2004 (Gaussian window sigma 1.5, K1 0.01, K2 0.03), averaged over
    channels; 1 where the images agree."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    s = (sigma, sigma, 0)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = ndimage.gaussian_filter(a, s), ndimage.gaussian_filter(b, s)
    var_a = ndimage.gaussian_filter(a * a, s) - mu_a**2
    var_b = ndimage.gaussian_filter(b * b, s) - mu_b**2
    cov = ndimage.gaussian_filter(a * b, s) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den).mean(axis=-1)


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM over the image, or over ``mask`` (nan if the mask is empty)."""
    m = ssim_map(a, b)
    if mask is None:
        return float(m.mean())
    return float(m[mask].mean()) if mask.any() else float("nan")


def region_mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error over the pixels of ``mask`` (all channels); nan if the mask is empty."""
    d = (np.asarray(a, np.float64) - b) ** 2
    d = d if mask is None else d[mask]
    return float(d.mean()) if d.size else float("nan")


def region_mae(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute error over the pixels of ``mask`` (all channels); nan if the mask is empty."""
    d = np.abs(np.asarray(a, np.float64) - b)
    d = d if mask is None else d[mask]
    return float(d.mean()) if d.size else float("nan")


def shadow_region(gt_linear: np.ndarray, env_linear: np.ndarray, alpha: np.ndarray, darker: float = 0.9,
                  outside: float = 0.05) -> np.ndarray:
    """(H, W) bool: where the character and props cast shadow or occlusion on the environment: outside
    them (alpha < ``outside``) and the truth darker than the environment alone (luminance of scene-linear
    ACEScg < ``darker`` x the environment's)."""
    lum_gt = np.asarray(gt_linear, np.float64)[..., :3] @ LUMA_ACESCG
    lum_env = np.asarray(env_linear, np.float64)[..., :3] @ LUMA_ACESCG
    return (np.asarray(alpha) < outside) & (lum_gt < darker * lum_env)


def shadow_ber(out_linear: np.ndarray, gt_linear: np.ndarray, env_linear: np.ndarray, alpha: np.ndarray,
               darker: float = 0.9, outside: float = 0.05) -> float:
    """Balanced error rate of the cast shadow, outside the objects: a pixel is in shadow where it is darker
    than the environment alone (as :func:`shadow_region`), in the output and in the truth;
    BER = 1 - (true-positive rate + true-negative rate) / 2, so shadows drawn where the truth has none
    count as much as shadows missed. With no truth shadow it is the false-positive rate; nan if no pixel."""
    env_l = np.asarray(env_linear, np.float64)[..., :3] @ LUMA_ACESCG
    region = np.asarray(alpha) < outside
    truth = shadow_region(gt_linear, env_linear, alpha, darker, outside)
    pred = region & ((np.asarray(out_linear, np.float64)[..., :3] @ LUMA_ACESCG) < darker * env_l)
    pos, neg = truth.sum(), (region & ~truth).sum()
    tpr = (pred & truth).sum() / pos if pos else None
    tnr = (~pred & region & ~truth).sum() / neg if neg else None
    if tpr is None and tnr is None:
        return float("nan")
    if tpr is None:
        return float(1.0 - tnr)
    if tnr is None:
        return float(1.0 - tpr)
    return float(1.0 - 0.5 * (tpr + tnr))


def flicker(outputs, truths) -> float:
    """Temporal change not in the truth: mean over t >= 1 of mean |(out_t - out_t-1) - (gt_t - gt_t-1)|.
    A constant offset from the truth gives 0; noise that changes from frame to frame does not."""
    outputs, truths = list(outputs), list(truths)
    if len(outputs) != len(truths):
        raise ValueError(f"flicker: {len(outputs)} output frames but {len(truths)} truth frames")
    if len(outputs) < 2:
        return float("nan")
    out = [np.asarray(o, np.float64) for o in outputs]
    gt = [np.asarray(g, np.float64) for g in truths]
    diffs = [np.abs((out[t] - out[t - 1]) - (gt[t] - gt[t - 1])).mean() for t in range(1, len(out))]
    return float(np.mean(diffs))
