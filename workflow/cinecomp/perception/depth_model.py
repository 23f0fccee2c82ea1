"""Depth stage, learned backend ``model``: the environment's depth from a monocular depth model.

A transformers depth-estimation model (Depth Anything V2 or another ``AutoModelForDepthEstimation``)
from a local directory (config.yaml ``perception.depth_model.path``; ``from_pretrained`` with
``local_files_only``, nothing is downloaded) predicts each environment frame's relative depth. It
is aligned in scale and shift to the ``ground`` backend's depth of the shot camera so the layers agree
(the character cards, contacts and shadows are placed in the same metres): a least-squares fit,
iteratively reweighted so objects standing on the ground do not pull it, over the pixels below the
horizon where the ground plane is seen. Relative models predict disparity (Depth Anything's
``relative``), so the fit is in inverse depth; ``metric`` models are fitted in depth. The fit is per
frame (it absorbs the model's own drift of scale from frame to frame); temporally smoothed after it:
where a pixel's aligned inverse depth changed less than 5% since the previous frame it is blended with
the previous frame's (weight ``temporal``), so a static environment does not flicker while moving
parts are left alone. A frame whose fit has a scale <= 0 (the prediction is nearer where the ground is
farther: no usable ground) keeps the ground depth. Frames stream; an environment that repeats the
previous frame (a still) is predicted once.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..camera import FAR

DEFAULT_MEAN, DEFAULT_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
STATIC = 0.05  # relative change of inverse depth counted as static


class DepthModel:
    """A local transformers depth model: ``predict(rgb_display (H, W, 3)) -> (H, W)`` raw output."""

    def __init__(self, path, device="auto", input_size: int = 518):
        import torch  # noqa: F401
        from transformers import AutoModelForDepthEstimation

        from .models import resolve_device

        self.device = resolve_device(device)
        self.model = AutoModelForDepthEstimation.from_pretrained(str(path), local_files_only=True).to(self.device)
        self.model.eval()
        cfg = self.model.config
        backbone = getattr(cfg, "backbone_config", None)
        self.patch = int(getattr(cfg, "patch_size", None) or getattr(backbone, "patch_size", 14) or 14)
        self.kind = getattr(cfg, "depth_estimation_type", "relative") or "relative"  # relative: disparity
        pre = Path(path) / "preprocessor_config.json"
        p = json.loads(pre.read_text()) if pre.is_file() else {}
        self.mean = np.array(p.get("image_mean", DEFAULT_MEAN), np.float32)
        self.std = np.array(p.get("image_std", DEFAULT_STD), np.float32)
        self.input_size = int(input_size)

    def _size(self, w: int, h: int) -> tuple[int, int]:
        s = self.input_size / min(w, h)
        return (max(self.patch, round(w * s / self.patch) * self.patch),
                max(self.patch, round(h * s / self.patch) * self.patch))

    def predict(self, rgb_display: np.ndarray) -> np.ndarray:
        import cv2
        import torch

        h, w = rgb_display.shape[:2]
        size = self._size(w, h)
        img = cv2.resize(rgb_display.astype(np.float32), size, interpolation=cv2.INTER_CUBIC)
        x = torch.from_numpy(np.ascontiguousarray(((img - self.mean) / self.std).transpose(2, 0, 1)))[None]
        with torch.inference_mode():
            out = self.model(pixel_values=x.to(self.device)).predicted_depth
            out = torch.nn.functional.interpolate(out[:, None].float(), size=(h, w), mode="bilinear",
                                                  align_corners=False)[0, 0]
        return out.cpu().numpy().astype(np.float32)


def fit_scale_shift(pred: np.ndarray, target: np.ndarray, weight: np.ndarray, iterations: int = 15):
    """(s, t) minimising sum weight * (s pred + t - target)^2, iteratively reweighted (Cauchy) so
    outliers (objects on the ground) count less. None when fewer than 16 pixels carry weight."""
    m = weight > 0
    if m.sum() < 16:
        return None
    x, y, w = pred[m].astype(np.float64), target[m].astype(np.float64), weight[m].astype(np.float64)
    s, t = 1.0, 0.0
    for _ in range(iterations):
        a = np.stack([x, np.ones_like(x)], 1) * np.sqrt(w)[:, None]
        sol, *_ = np.linalg.lstsq(a, y * np.sqrt(w), rcond=None)
        s, t = float(sol[0]), float(sol[1])
        r = s * x + t - y
        scale = max(1.4826 * float(np.median(np.abs(r))), 1e-9)
        w = weight[m] / (1.0 + (r / (2.0 * scale)) ** 2)
    return s, t


class DepthAligner:
    """Aligns each frame's prediction to the ground depth and smooths it over time (module doc)."""

    def __init__(self, ground: np.ndarray, kind: str = "relative", temporal: float = 0.5):
        self.ground, self.kind, self.temporal = ground.astype(np.float32), kind, float(temporal)
        self.weight = (ground < FAR * 0.5).astype(np.float32)  # the ground plane: below the horizon
        self.target = 1.0 / ground if kind != "metric" else ground
        self.prev_fit, self.prev_inv = None, None
        self.fits: list[tuple[float, float]] = []
        self.rejected = 0  # frames whose fit had a scale <= 0

    def __call__(self, pred: np.ndarray) -> np.ndarray:
        fit = fit_scale_shift(pred, self.target, self.weight)
        if fit is not None and fit[0] <= 0:  # nearer where the ground is farther: the frame keeps the ground
            self.rejected += 1
            self.prev_inv = (1.0 / self.ground).astype(np.float32)
            return self.ground.copy()
        if fit is None:  # no usable ground in view: keep the last fit, or the prediction's own range
            fit = self.prev_fit or (1.0 / max(float(np.percentile(pred, 99)), 1e-6), 0.0)
        self.prev_fit = fit
        self.fits.append(fit)
        aligned = fit[0] * pred + fit[1]
        inv = aligned if self.kind != "metric" else 1.0 / np.maximum(aligned, 1e-3)
        inv = np.maximum(inv, 1.0 / FAR).astype(np.float32)
        if self.prev_inv is not None and self.temporal > 0:
            static = np.abs(inv - self.prev_inv) < STATIC * np.maximum(inv, self.prev_inv)
            inv = np.where(static, (1 - self.temporal) * inv + self.temporal * self.prev_inv, inv)
        self.prev_inv = inv
        return np.minimum(1.0 / inv, FAR).astype(np.float32)


class DepthRun:
    """Per shot: model + aligner; ``depth(rgb)`` gives the aligned, smoothed environment depth."""

    def __init__(self, ground: np.ndarray, settings: dict, model: DepthModel | None = None):
        self.model = model or DepthModel(settings["path"], settings.get("device", "auto"),
                                         int(settings.get("input_size", 518)))
        self.aligner = DepthAligner(ground, self.model.kind, float(settings.get("temporal", 0.5)))
        self._last = None

    def depth(self, rgb: np.ndarray) -> np.ndarray:
        rgb = np.nan_to_num(np.asarray(rgb[..., :3], np.float32))
        if self._last is None or not np.array_equal(rgb, self._last[0]):
            self._last = (rgb, self.model.predict(np.clip(rgb, 0.0, 1.0) ** (1 / 2.2)))
        return self.aligner(self._last[1])

    def report(self) -> dict:
        s = np.array(self.aligner.fits) if self.aligner.fits else np.zeros((0, 2))
        return {"model": type(self.model.model).__name__, "kind": self.model.kind, "device": self.model.device.type,
                "frames_without_ground_fit": self.aligner.rejected,
                "scale": [float(s[:, 0].min()), float(s[:, 0].max())] if len(s) else None,
                "shift": [float(s[:, 1].min()), float(s[:, 1].max())] if len(s) else None}
