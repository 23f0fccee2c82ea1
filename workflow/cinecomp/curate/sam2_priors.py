"""Curation masks from SAM 2 (when ``perception.sam2`` is configured): the character prompted by a box on
the clip's first frame (the clips sheet's ``box``, else the background model's character there),
propagated through the clip with SAM 2's video predictor (sam2_masks.load_predictor: local files
only). Works for a moving camera, where the background model cannot; the clean plate is then
inpainted per frame. The prop stays empty (no prompt for it in a clips sheet yet)."""

from __future__ import annotations

import contextlib

import numpy as np


class _Frames:
    """Scene-linear sample frames as the predictor's input: frame i -> (3, S, S) normalised tensor."""

    def __init__(self, frames: np.ndarray, size: int):
        self.frames, self.size = frames, int(size)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i):
        import cv2
        import torch

        from ..perception.sam2_masks import MEAN, STD

        img = np.clip(self.frames[int(i)], 0.0, 1.0) ** (1 / 2.2)
        img = (cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA) - MEAN) / STD
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), np.float32))


def sam2_clip_masks(frames: np.ndarray, box, settings: dict, device: str = "auto", predictor=None):
    """(character, prop) bool (T, H, W) masks of the clip's frames, the character prompted by ``box``
    (x0, y0, x1, y1 in sample pixels) on frame 0."""
    import torch
    import sam2.sam2_video_predictor as svp
    from unittest import mock

    from ..perception.sam2_masks import load_predictor

    if predictor is None:
        predictor = load_predictor(settings["config"], settings["checkpoint"], device)
    t, h, w = frames.shape[:3]
    char = np.zeros((t, h, w), bool)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if predictor.device.type == "cuda"
                else contextlib.nullcontext())
    src = _Frames(frames, predictor.image_size)
    with torch.inference_mode(), autocast:
        with mock.patch.object(svp, "load_video_frames", lambda **_: (src, h, w)):
            state = predictor.init_state(video_path="<curation frames>")
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=[float(v) for v in box])
        for i, _, logits in predictor.propagate_in_video(state):
            char[i] = (logits[0, 0] > 0).cpu().numpy()
    return char, np.zeros_like(char)
