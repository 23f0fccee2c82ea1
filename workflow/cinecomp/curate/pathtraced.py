"""Path-traced shots as training data: a clips-sheet row ``pathtraced:<shot folder>`` (the format of
``../shared/data/pathtraced`` and of bench/blender_shots.py; io.pathtraced) becomes exact pairs.

The input is what inference sees: the green-screen render keyed by the project's chroma keyer, the
clean environment plate, the tri-mask from the key's alpha and the render's prop mask; the target is
the path-traced comp (the actor lit by the environment's light, its shadows and contact) and its depth.
Unlike the ``synthetic:`` rows, truth and input come from a renderer that shares none of harmonize's
assumptions. Shots of the ``report`` split are refused at validation: the proof is measured on them.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..io.pathtraced import camera_of, check_shot_folder, frame_path, key_of, read_png, split_of, srgb_to_working

PREFIX = "pathtraced:"  # as pipeline.PATHTRACED
def read_shot(folder: Path, first: int, last: int, size: tuple[int, int]) -> dict:
    """Every element of frames first..last at the sample ``size`` (scaled to cover, centre-cropped):
    green screen, truth and environment scene-linear ACEScg; depth in metres (far capped at the
    camera's FAR); character and prop masks (bool)."""
    from ..camera import FAR
    from ..io import exr as exrio
    from .pipeline import fit_frame

    out = {k: [] for k in ("plate", "truth", "env", "depth", "character", "prop")}
    for f in range(first, last + 1):
        for key, element in (("plate", "greenscreen"), ("truth", "groundtruth"), ("env", "environment")):
            out[key].append(fit_frame(srgb_to_working(read_png(frame_path(folder, element, f))), size))
        z = exrio.read_layers(frame_path(folder, "depth", f))
        z = np.minimum(np.asarray(z["Y"] if "Y" in z else next(iter(z.values())), np.float32), FAR)
        out["depth"].append(fit_frame(z, size))
        m = fit_frame(read_png(frame_path(folder, "masks", f))[..., :2], size)
        out["character"].append(m[..., 0] > 0.5)
        out["prop"].append(m[..., 1] > 0.5)
    return {k: np.stack(v) for k, v in out.items()}


def true_pair(shot: dict, sl: slice, survey: tuple[dict, dict] | None = None) -> dict:
    """The sample of frames ``sl`` of a read shot, the keyed green plate and its alpha (module doc); with
    the shot's ``survey`` (sheet camera, sheet light: what the eval's `given` light passes) also
    harmonize's comp (``harmonize_rgb``), the input the shot stage gives a model that starts from it."""
    from ..camera import FAR
    from ..perception.masks import trimask
    from .pipeline import key_window, model_character, to_model
    from .priors import effect_mask, finite_depth

    greens, truth, env = shot["plate"][sl], shot["truth"][sl], shot["env"][sl]
    char, prop = shot["character"][sl], shot["prop"][sl]
    alpha_k, fg_k = key_window(greens)
    tri = []
    for i in range(len(greens)):
        share = np.where(prop[i], 1.0, 0.0).astype(np.float32) * (alpha_k[i] > 0)
        m = trimask(alpha_k[i], share)
        tri.append(np.stack([m["mask.character"], m["mask.prop"], m["mask.environment"]], -1))
    depth = finite_depth(shot["depth"][sl], FAR)
    sample = {
        "target_rgb": to_model(truth), "target_depth": depth,
        "character_rgb": model_character(fg_k, alpha_k),
        "environment_rgb": to_model(env), "tri_mask": np.stack(tri).astype(np.float32),
        "effect_mask": np.stack([effect_mask(truth[i], env[i], alpha_k[i], cutout=char[i] | prop[i])
                                 for i in range(len(greens))]),
        "character_depth": np.where(alpha_k > 0.5, depth, np.inf).astype(np.float32),
    }
    if survey is not None:
        from .pipeline import survey_harmonize

        sample["harmonize_rgb"] = survey_harmonize(fg_k, alpha_k, sample["tri_mask"], env, *survey)
    return {"sample": sample, "green": greens, "alpha": alpha_k}


def curate_pathtraced(clip, out_dir, settings: dict) -> list[dict]:
    """One path-traced shot: a sample per window (pipeline.window_starts); all accepted (their truth is
    exact). Writes shards and a contact sheet into ``out_dir``; returns the manifest rows."""
    from ..io.dataset import ShardWriter
    from .pipeline import finish_clip, sample_size, window_starts

    t0 = time.time()
    folder = Path(clip.source[len(PREFIX):])
    problems, meta = check_shot_folder(folder, clip.first, clip.last, int(settings["window"]))
    if problems:
        raise ValueError("; ".join(problems))
    first = int(meta["frame_start"]) if clip.first is None else clip.first
    last = int(meta["frame_end"]) if clip.last is None else clip.last
    w, h = meta["resolution"]
    size = sample_size(int(w), int(h), settings)
    shot = read_shot(folder, first, last, size)
    t = int(settings["window"])
    writer = ShardWriter(out_dir, int(settings["samples_per_shard"]), prefix=clip.id)
    common = {"prompt": clip.prompt, "clip": clip.id, "source": "pathtraced", "shot": folder.name,
              "split": split_of(folder.name, meta), "camera": camera_of(meta), "light": key_of(meta)}
    rows, sheet = [], []
    for k, s in enumerate(window_starts(last - first + 1, settings)):
        pair = true_pair(shot, slice(s, s + t), (common["camera"], common["light"]))
        key = f"{clip.id}_w{k:03d}"
        writer.write(key, {**pair["sample"], "meta": {**common, "first_frame": first + s, "window": k}})
        row = {"clip": clip.id, "source": "pathtraced", "path": str(folder), "window": k, "key": key,
               "first_frame": first + s, "last_frame": first + s + t - 1, "status": "accepted", "reasons": "",
               "char_area": round(float(shot["character"][s:s + t].mean()), 4), "masks": "truth", "depth": "truth"}
        rows.append(row)
        if len(sheet) < 6:
            sheet.append((row, pair))
    return finish_clip(writer, rows, sheet, out_dir, clip.id, t0)
