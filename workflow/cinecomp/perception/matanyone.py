"""Key stage, learned backend ``matanyone``: MatAnyone's video matting, seeded by a first-frame mask.

Optional extra, imported lazily (perception.matanyone_package): the ``matanyone2`` package of
matanyone2-runtime (``pip install --no-deps matanyone2-runtime==0.2.0``, `make venv` does) or the
``matanyone`` package of its repository. Its licence (S-Lab 1.0) is non-commercial.

Per shot: the network is built from the package's own config and the checkpoint of config.yaml
(``perception.matanyone.checkpoint``). The first frame's mask comes from the chroma keyer
(``matanyone_first_mask: chroma``, its alpha > 0.5) or from SAM 2 prompted with the chroma key's box
(``sam2``, the SAM 2 model of perception.sam2). Like the package's own video loop, the first frame is
memorised, then repeated ``matanyone_warmup`` times so the memory settles, then every frame is
matted in order, one at a time (frames stream). The chroma keyer runs alongside: with
``matanyone_combine: edges`` (the default) the matte is MatAnyone's in a band of
``matanyone_edge`` pixels around the edge, where hair and motion blur are, and the chroma key's
elsewhere (solid interiors and clean screen), feathered; ``matanyone`` takes MatAnyone's alpha
everywhere. The foreground is the keyer's unmix + despill for that alpha, so the files and layers
(R, G, B premultiplied, A) are the chroma backend's and every later stage works unchanged.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..io import exr as exrio
from ..errors import PlateError
from .key import ChromaKeyer, KeyParams, params_summary, prepare_key_shot, write_key_frame


def _display(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(rgb), 0.0, 1.0) ** (1 / 2.2)


class Matter:
    """MatAnyone's inference core over a stream of frames (3, H, W) in [0, 1]."""

    def __init__(self, checkpoint, device="auto", network=None):
        import importlib

        from .models import build_matanyone, matanyone_package, resolve_device

        self.device = resolve_device(device)
        if network is None:
            package, network, cfg = build_matanyone(checkpoint)
        else:
            package = matanyone_package()[0]
            cfg = network.cfg
        self.core_cls = importlib.import_module(f"{package}.inference.inference_core").InferenceCore
        self.network, self.cfg, self.package, self.core = network.to(self.device), cfg, package, None

    def _tensor(self, rgb_display: np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(rgb_display.transpose(2, 0, 1), np.float32)).to(self.device)

    def start(self, rgb_display: np.ndarray, mask: np.ndarray, warmup: int, max_size: int = 0) -> np.ndarray:
        """Memorise the first frame with its mask (H, W, 0..1), settle the memory; its alpha.
        ``max_size`` > 0: matte at that shorter side (the package's own resizing), alpha scaled back."""
        import math

        import torch
        from omegaconf import open_dict

        # memory read-out keeps the top_k best matches of a frame's 1/16-resolution tokens: no more
        # than one frame has (small plates)
        h, w = mask.shape
        cfg = self.cfg.copy()
        with open_dict(cfg):
            if 0 < max_size < min(h, w):
                cfg.max_internal_size = int(max_size)
                h, w = int(h * max_size / min(h, w)), int(w * max_size / min(h, w))
            cfg.top_k = min(int(cfg.top_k), math.ceil(h / 16) * math.ceil(w / 16))
        self.core = self.core_cls(self.network, cfg=cfg, device=self.device)
        img = self._tensor(rgb_display)
        m = torch.from_numpy((mask > 0.5).astype(np.float32) * 255.0).to(self.device)
        with torch.inference_mode():
            self.core.step(img, m, objects=[1])
            prob = self.core.step(img, first_frame_pred=True)
            for _ in range(warmup):
                prob = self.core.step(img, first_frame_pred=True)
        return self._alpha(prob)

    def step(self, rgb_display: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._alpha(self.core.step(self._tensor(rgb_display)))

    def _alpha(self, prob) -> np.ndarray:
        return np.clip(self.core.output_prob_to_mask(prob).float().cpu().numpy(), 0.0, 1.0).astype(np.float32)


def edge_weight(alpha_m: np.ndarray, alpha_c: np.ndarray, edge_px: int) -> np.ndarray:
    """Weight of MatAnyone's alpha: 1 within ``edge_px`` of either matte's edge or of the chroma key's
    soft pixels (hair, motion blur), fading to 0 away from them (the chroma key keeps solid interiors
    and clean screen)."""
    if edge_px <= 0:
        return np.zeros_like(alpha_m)
    inside = ((alpha_m > 0.5) | (alpha_c > 0.5)).astype(np.uint8)
    soft = (alpha_c > 0.02) & (alpha_c < 0.98)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * edge_px + 1, 2 * edge_px + 1))
    band = (cv2.dilate(inside, k) > 0) & (cv2.erode(inside, k) == 0)
    band = band | (cv2.dilate(soft.astype(np.uint8), k) > 0)
    return np.clip(cv2.GaussianBlur(band.astype(np.float32), (0, 0), max(edge_px / 3.0, 0.5)) * 1.5, 0.0, 1.0)


def combine(alpha_m: np.ndarray, alpha_c: np.ndarray, params: KeyParams) -> np.ndarray:
    if params.matanyone_combine == "matanyone":
        return alpha_m
    w = edge_weight(alpha_m, alpha_c, params.matanyone_edge)
    return (w * alpha_m + (1.0 - w) * alpha_c).astype(np.float32)


def first_mask(rgb: np.ndarray, alpha_c: np.ndarray, params: KeyParams, sam2_settings: dict | None) -> np.ndarray:
    """The first frame's mask: the chroma key's solid foreground, or SAM 2 prompted with its box."""
    solid = alpha_c > 0.5
    if params.matanyone_first_mask != "sam2" or not solid.any():
        return solid.astype(np.float32)
    import torch

    from .sam2_masks import load_predictor

    ys, xs = np.nonzero(solid)
    box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    predictor = load_predictor(sam2_settings["config"], sam2_settings["checkpoint"], sam2_settings.get("device", "auto"))
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    image = SAM2ImagePredictor(predictor)
    s = int(predictor.image_size)  # the backbone's feature sizes (the class assumes a 1024 input)
    image._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
    with torch.inference_mode():
        image.set_image((_display(rgb) * 255).astype(np.uint8))
        m, _, _ = image.predict(box=np.array(box), multimask_output=False)
    return (np.asarray(m[0]) > 0.5).astype(np.float32)


def matanyone_key_shot(plate_files, out_files, params, *, settings: dict, attrs: dict | None = None,
                       compression: str = "zip", network=None, log=None) -> dict:
    """Key ingested plate frames (EXR) with MatAnyone into the chroma backend's R,G,B,A files, streaming.
    ``settings``: perception.matanyone + ``device`` (+ ``sam2`` for matanyone_first_mask sam2)."""
    params, plate_files, out_files, shot, screen, coverage, aspect, keyer = prepare_key_shot(
        plate_files, out_files, params, attrs)
    matter = Matter(settings.get("checkpoint"), settings.get("device", "auto"), network=network)
    means, agreement = [], []
    for i, (src, dst) in enumerate(zip(plate_files, out_files)):
        rgb = exrio.read_rgba(src)[..., :3]
        alpha_c, _ = keyer.key(rgb)
        if i == 0:
            alpha_m = matter.start(_display(rgb), first_mask(rgb, alpha_c, params, settings.get("sam2")),
                                   params.matanyone_warmup, params.matanyone_max_size)
        else:
            alpha_m = matter.step(_display(rgb))
        alpha = combine(alpha_m, alpha_c, params)
        fg = keyer.unmix(rgb, alpha)
        write_key_frame(dst, fg, alpha, screen, attrs, aspect, compression)
        means.append(float(alpha.mean()))
        agreement.append(float(np.abs(alpha_m - alpha_c).mean()))
    return {"backend": "matanyone", "package": matter.package, "device": matter.device.type,
            "screen": screen.tolist(), "screen_coverage": coverage, "frames": len(out_files),
            "mean_alpha": float(np.mean(means)) if means else 0.0,
            "mean_abs_diff_to_chroma": float(np.mean(agreement)) if agreement else 0.0, "pixel_aspect": aspect,
            "levels": keyer.levels, "spill": keyer.spill, "params": params_summary(params)}
