"""Tri-mask stage, learned backend ``sam2``: SAM 2's video predictor separates prop and character.

Prompts (in the predictor's two objects), both on the hint frame (the shot's first frame when the
hint names none), so they exclude each other:
  prop       the sheet's ``prop_hint``: a box, clicks (``frame:points:x,y;!x,y``) or a mask image, in
             plate pixels (scaled to the key's resolution);
  character  the key's solid foreground (alpha > 0.5) there, minus the prop as SAM 2 segments it from
             that prompt (on the first keyed frame instead when nothing of the key is left).
Propagation runs forwards from the prop's prompt frame to the end, then backwards to the start. A
pixel's prop share is p = s_prop / max(s_prop + s_char, 1) (s: the predictor's sigmoid scores), and
the tri-mask is made inside the key as in the ``track`` backend (masks.trimask: character + prop =
alpha), so masks and alpha agree.

Frames are streamed: the predictor reads each frame from its key EXR when it needs it (never the whole
shot at its 1024x1024 input), each frame's masks are written as soon as they are predicted, and the
predictor's per-frame memory older than its memory window (``num_maskmem`` frames, object pointers
over ``max_obj_ptrs_in_encoder``) is dropped, so memory does not grow with the shot's length.
CUDA (bfloat16 autocast) when present, CPU (float32) otherwise. Model files come from config.yaml
(``perception.sam2``): a model config YAML and a checkpoint ({"model": state_dict}, read with
``torch.load(weights_only=True)``), nothing is downloaded.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from unittest import mock

import numpy as np

from .masks import NO_HINT, TrimaskFiles, _mask_file, _read_key, read_hint_mask, trimask

MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # the predictor's input normalisation (ImageNet)
STD = np.array([0.229, 0.224, 0.225], np.float32)
CHARACTER, PROP = 1, 2  # object ids


def load_predictor(config, checkpoint, device="auto"):
    """SAM 2 video predictor from a local model config YAML (or a config name of the sam2 package)
    and a local checkpoint, with the package's own builder (build_sam2_video_predictor)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sam2.build_sam import build_sam2_video_predictor

    from .models import resolve_device, sam2_config_file

    cfg_file = sam2_config_file(str(config)).resolve()
    dev = resolve_device(device)
    was_set = GlobalHydra.instance().is_initialized()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(cfg_file.parent), version_base="1.2"):
            predictor = build_sam2_video_predictor(cfg_file.name, str(checkpoint), device=dev)
    finally:
        GlobalHydra.instance().clear()
        if was_set:  # the sam2 package's own config search path, as its import left it
            from hydra import initialize_config_module

            initialize_config_module("sam2", version_base="1.2")
    return predictor


class KeyFrames:
    """The key EXRs as the predictor's input, read on demand: frame i -> (3, S, S) float32 tensor of
    the premultiplied foreground (environment black), display-encoded and normalised."""

    def __init__(self, files: list[Path], image_size: int):
        self.files, self.size = list(files), int(image_size)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.files)

    def key(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(alpha, premultiplied fg) of frame i (the last two frames read are kept)."""
        if i not in self._cache:
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[i] = _read_key(self.files[i])
        return self._cache[i]

    def __getitem__(self, i: int):
        import cv2
        import torch

        fg = self.key(int(i))[1]
        img = np.clip(fg, 0.0, 1.0) ** (1 / 2.2)  # scene-linear -> a display-like encoding
        img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA)
        img = (img - MEAN) / STD
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), np.float32))


def init_streaming_state(predictor, frames: KeyFrames, width: int, height: int) -> dict:
    """The predictor's own init_state, with its frames read on demand from ``frames`` instead of a
    folder of JPEGs loaded whole (the only piece that differs; the rest of the state is its own)."""
    import sam2.sam2_video_predictor as svp

    with mock.patch.object(svp, "load_video_frames", lambda **_: (frames, height, width)):
        return predictor.init_state(video_path="<streamed key frames>")


def _scaled_box(box, sx, sy):
    x0, y0, x1, y1 = box
    return [x0 * sx, y0 * sy, x1 * sx, y1 * sy]


def prompt(predictor, state, frames: KeyFrames, hint: dict, h0: int, plate_size, base_dir) -> dict:
    """Adds the prop and character prompts; returns what was prompted (for the report)."""
    import cv2

    alpha0 = frames.key(h0)[0]
    h, w = alpha0.shape
    sx, sy = w / plate_size[0], h / plate_size[1]
    if "box" in hint:
        _, ids, logits = predictor.add_new_points_or_box(state, frame_idx=h0, obj_id=PROP,
                                                         box=_scaled_box(hint["box"], sx, sy))
        what = f"box {hint['box']}"
    elif "points" in hint:
        pts = [[x * sx, y * sy] for x, y in hint["points"]]
        _, ids, logits = predictor.add_new_points_or_box(state, frame_idx=h0, obj_id=PROP, points=pts,
                                                         labels=hint["labels"])
        what = f"{len(pts)} click(s)"
    else:
        path = _mask_file(hint, base_dir)
        mask = read_hint_mask(path).astype(np.uint8)
        if mask.shape != (plate_size[1], plate_size[0]):
            raise ValueError(f"prop_hint mask {path} is {mask.shape[1]}x{mask.shape[0]}, the plate is "
                             f"{plate_size[0]}x{plate_size[1]} (fix: paint the mask at the plate's resolution)")
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST) > 0
        _, ids, logits = predictor.add_new_mask(state, frame_idx=h0, obj_id=PROP, mask=mask)
        what = f"mask {path}"
    # the prop as SAM 2 sees it on its frame: the character is the rest of the key there, so the two
    # prompts exclude each other
    prop_region = (logits[list(ids).index(PROP), 0] > 0).cpu().numpy()
    if "box" in hint:  # the prop is inside its box (a margin of 10% for a loose box)
        x0, y0, x1, y1 = _scaled_box(hint["box"], sx, sy)
        mx, my = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
        inside = np.zeros_like(prop_region)
        inside[max(int(y0 - my), 0):max(int(np.ceil(y1 + my)), 0), max(int(x0 - mx), 0):max(int(np.ceil(x1 + mx)), 0)] = True
        prop_region &= inside
    if "mask" in hint:
        prop_region |= mask
    prop_region = cv2.dilate(prop_region.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    char_frame, solid = h0, (alpha0 > 0.5) & ~prop_region
    if not solid.any():  # no character beside the prop there: its first keyed frame (may hold the prop)
        char_frame = next((i for i in range(len(frames)) if (frames.key(i)[0] > 0.5).any()), None)
        solid = frames.key(char_frame)[0] > 0.5 if char_frame is not None else None
    if char_frame is not None:
        predictor.add_new_mask(state, frame_idx=char_frame, obj_id=CHARACTER, mask=solid)
    return {"prop": what, "prop_frame_index": h0,
            "character_frame_indices": [] if char_frame is None else [char_frame],
            "prop_prompt_area": round(float(prop_region.mean()), 6)}


def prop_share(logits) -> np.ndarray:
    """(H, W) prop share p from the (objects, 1, H, W) logits [character, prop]."""
    import torch

    s = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
    s_char, s_prop = s[0], s[1]
    return (s_prop / np.maximum(s_prop + s_char, 1.0)).astype(np.float32)


def _trim_memory(predictor, state, current: int, anchor: int, reverse: bool, keep: int) -> None:
    """Drops the per-frame outputs the predictor no longer reads: more than ``keep`` frames behind the
    current frame in the direction of travel, and not within ``keep`` frames of the prompt frame
    (the backward pass starts from there and reads its neighbours)."""
    behind = current + keep if reverse else current - keep
    for out in state["output_dict_per_obj"].values():
        non_cond = out["non_cond_frame_outputs"]
        for t in [t for t in non_cond if (t > behind if reverse else t < behind) and abs(t - anchor) > keep]:
            del non_cond[t]


def sam2_masks(key_frames: list[tuple[int, Path]], out_files: list[Path], *, hint: dict | None,
               plate_size: tuple[int, int], settings: dict, base_dir: Path | None = None, attrs: dict,
               log=None, predictor=None) -> dict:
    """Write one tri-mask EXR per key frame with SAM 2 (see the module doc); the report as
    masks.track_masks'. ``settings``: config.yaml's perception.sam2 plus ``device``."""
    files = TrimaskFiles(key_frames, out_files, attrs)
    report = {"backend": "sam2", "frames": len(files.frames), "hint": hint}
    if hint is None:  # nothing to separate: character = alpha
        files.write_key_only()
        report["tracking"] = f"{NO_HINT} (SAM 2 not run)"
    else:
        import torch

        h0 = files.hint_index(hint)
        start = files.frames[h0]
        if predictor is None:
            predictor = load_predictor(settings["config"], settings["checkpoint"], settings.get("device", "auto"))
        device = predictor.device
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                    else contextlib.nullcontext())
        frames = KeyFrames([p for _, p in key_frames], predictor.image_size)
        h, w = frames.key(0)[0].shape
        keep = max(int(predictor.num_maskmem), int(predictor.max_obj_ptrs_in_encoder)) + 1
        with torch.inference_mode(), autocast:
            state = init_streaming_state(predictor, frames, w, h)
            prompted = prompt(predictor, state, frames, hint, h0, plate_size, base_dir)
            for reverse in (False, True):
                for i, obj_ids, logits in predictor.propagate_in_video(state, start_frame_idx=h0, reverse=reverse):
                    if reverse and i == h0:
                        continue  # written by the forward pass
                    order = [list(obj_ids).index(o) for o in (CHARACTER, PROP)] if CHARACTER in obj_ids else None
                    if order is None:  # no character prompt (an empty key): all foreground is prop-or-not
                        p = torch.sigmoid(logits[0, 0].float()).cpu().numpy()
                    else:
                        p = prop_share(logits[order])
                    files.write(i, trimask(frames.key(i)[0], p))
                    _trim_memory(predictor, state, i, h0, reverse, keep)
        if log is not None and files.area.get(start, 0.0) == 0.0:
            log.warning("SAM 2 finds no prop inside the key on the hint frame %d", start)
        report.update(tracking=f"SAM 2 ({Path(settings['config']).name}) on {device.type}: prop prompted by the "
                               f"{prompted['prop']} on frame {start}, propagated forwards and backwards, "
                               "intersected with the key", prompts=prompted)
    report.update(files.area_report(hint))
    return report
