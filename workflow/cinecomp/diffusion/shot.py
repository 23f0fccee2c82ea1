"""The `diffusion` composite backend of one shot, as the workflow runs it.

    key EXRs + environment EXRs (scene-linear ACEScg)
      -> model-space arrays (display-encoded [0, 1], padded to the model's multiples) + cached prompt
         embeddings, written frame by frame to ``<work>/shot/*.npy``
      -> the DeepSpeed launcher, N ranks (`python -m cinecomp.diffusion.distributed`), which reads
         them a window at a time and renders overlapping windows into ``<work>/windows/window_####.npz`` (the checkpoints:
         a rerun reuses every finished window) and ``windows.json``
      -> composite EXRs, blended from the windows one frame at a time: R,G,B (ACEScg, half), A = 1,
         depth.Z (scene units, float32).  With ``output: layers`` the R,G,B are the plain `over` comp
         times the model's low-frequency change of light (:mod:`cinecomp.diffusion.light_ratio`).
Nothing holds the whole shot in memory, so memory does not grow with the shot's length.

The tri-mask comes from the mask stage (key-only without it: character = alpha, prop = 0,
environment = 1 - alpha); no character depth is given; the model returns a depth for the whole frame.

A model that starts from harmonize (transformer ``harmonize_base``) also gets harmonize's comp of the
shot (the `harmonize_base` rule's frames) as ``harmonize_rgb``, and harmonize's comp replaces the plain
`over` comp as the base the ``layers`` / model-resolution output is laid on: an untrained such model
returns harmonize's frames.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ..io import exr as exrio
from ..composite.assemble import MASK_LAYERS
from ..colour import WORKING_SPACE, convert
from ..composite.over import over
from ..frames import frame_path
from ..perception.masks import key_only_trimask
from .errors import DiffusionInputError

SPATIAL_MULTIPLE = 16  # VAE 8x times the transformer's 2x2 patch


def padded_size(height: int, width: int, ranks: int = 1) -> tuple[int, int]:
    """(H, W) rounded up to multiples of 16 (VAE and patching); wider still only if the ranks could not
    split each frame's tokens evenly otherwise (Ulysses), so most sizes render the same pixels on any
    number of ranks (720p: 45 x 80 tokens per latent frame, split by 2, 4, 8 or 16)."""
    m = SPATIAL_MULTIPLE
    h, w = -(-height // m) * m, -(-width // m) * m
    if ranks > 1 and (h // m) * (w // m) % ranks:
        w = -(-width // (m * ranks)) * (m * ranks)
    return h, w


def layers_size(height: int, width: int, model_height: int, ranks: int = 1) -> tuple[int, int]:
    """The model's (H, W) for ``output: layers`` at ``model_height`` (0: the plate's own, padded): the
    plate's aspect, multiples of 16, wider only if the ranks could not split the tokens evenly."""
    if not model_height:
        return padded_size(height, width, ranks)
    m = SPATIAL_MULTIPLE
    h = max(m, round(model_height / m) * m)
    w = max(m, round(width * h / height / m) * m)
    while (h // m) * (w // m) % ranks:
        w += m
    return h, w


def _fit(image: np.ndarray, h: int, w: int, resize: bool) -> np.ndarray:
    """(H, W, C) -> (h, w, C): resized (area average) for layers, else edge-padded."""
    if not resize:
        return _pad(image, h, w)
    import cv2

    if image.shape[:2] == (h, w):
        return image
    out = cv2.resize(np.ascontiguousarray(image, np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return out.reshape(h, w, image.shape[2])


def _pad(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """Edge-pad an (H, W, C) image at the bottom and right to (h, w, C)."""
    return np.pad(image, [(0, h - image.shape[0]), (0, w - image.shape[1]), (0, 0)], mode="edge")


def _convert(rgb: np.ndarray, src: str, dst: str) -> np.ndarray:
    """colour.convert for (..., H, W, 3) of any leading shape, in one call."""
    rgb = np.asarray(rgb, np.float32)
    return convert(rgb.reshape(-1, rgb.shape[-2], 3), src, dst).reshape(rgb.shape)


def to_model_space(rgb: np.ndarray, colourspace: str) -> np.ndarray:
    """Scene-linear ACEScg (..., H, W, 3) -> the model's display encoding, clipped to [0, 1]."""
    return np.clip(_convert(rgb, WORKING_SPACE, colourspace), 0.0, 1.0)


def from_model_space(rgb: np.ndarray, colourspace: str) -> np.ndarray:
    return _convert(rgb, colourspace, WORKING_SPACE)


def prepare_inputs(key_files, env_files, colourspace: str, ranks: int = 1,
                   out_dir=None, mask_files=None, layers_height: int | None = None,
                   harmonize_files=None) -> tuple[dict, tuple[int, int]]:
    """The model's per-frame inputs from the key (premultiplied RGBA) and environment frames.

    Returns ``(arrays, (height, width))`` with arrays ``character_rgb``, ``tri_mask`` and (unless
    ``env_files`` is None: the model synthesises the environment) ``environment_rgb`` and (with
    ``harmonize_files``, harmonize's comp frames) ``harmonize_rgb``, (T, H', W', C)
    padded to :func:`padded_size` (or, with ``layers_height``, output layers, resized to
    :func:`layers_size`), and the original size.
    With ``out_dir`` the arrays are ``.npy`` files there, filled one frame at a time (memory does not
    grow with the shot's length).
    """
    first = exrio.read_rgba(key_files[0])
    h, w = first.shape[:2]
    resize = layers_height is not None
    ph, pw = layers_size(h, w, layers_height, ranks) if resize else padded_size(h, w, ranks)
    t = len(key_files)
    names = ["character_rgb", "tri_mask"] + ([] if env_files is None else ["environment_rgb"])
    names += [] if harmonize_files is None else ["harmonize_rgb"]
    if env_files is not None and len(env_files) != t:
        raise DiffusionInputError(f"{t} key frames but {len(env_files)} environment frames")
    if harmonize_files is not None and len(harmonize_files) != t:
        raise DiffusionInputError(f"{t} key frames but {len(harmonize_files)} harmonize comp frames (fix: rerun "
                                  "the shot's harmonize_base rule)")

    def alloc(name):
        shape = (t, ph, pw, 3)
        if out_dir is None:
            return np.empty(shape, np.float32)
        return np.lib.format.open_memmap(Path(out_dir) / f"{name}.npy", mode="w+", dtype=np.float32, shape=shape)

    arrays = {name: alloc(name) for name in names}
    for i, key_file in enumerate(key_files):
        key = first if i == 0 else exrio.read_rgba(key_file)
        if key.shape[:2] != (h, w):
            raise DiffusionInputError(f"{key_file}: {key.shape[1]}x{key.shape[0]}, the shot's first key frame is {w}x{h}")
        if mask_files is None:
            masks = key_only_trimask(key[..., 3])
        else:  # the mask stage's tri-mask: character + prop = alpha
            masks = {m: v.astype(np.float32) for m, v in exrio.read_layers(mask_files[i]).items() if m in MASK_LAYERS}
        alpha = np.clip(key[..., 3:4], 0.0, 1.0)
        straight = np.where(alpha > 1e-4, key[..., :3] / np.maximum(alpha, 1e-4), 0.0)
        arrays["character_rgb"][i] = _fit(to_model_space(straight, colourspace) * alpha, ph, pw, resize)
        arrays["tri_mask"][i] = _fit(np.stack([masks[m] for m in MASK_LAYERS], axis=-1), ph, pw, resize)
        for name, files, what in (("environment_rgb", env_files, "environment"),
                                  ("harmonize_rgb", harmonize_files, "harmonize comp")):
            if files is not None:
                rgb = exrio.read_rgba(files[i])[..., :3]
                if rgb.shape[:2] != (h, w):
                    raise DiffusionInputError(f"{files[i]}: {what} frames are {rgb.shape[1]}x{rgb.shape[0]}, "
                                              f"key frames {w}x{h}")
                arrays[name][i] = _fit(to_model_space(rgb, colourspace), ph, pw, resize)
    for a in arrays.values():
        if isinstance(a, np.memmap):
            a.flush()
    return arrays, (h, w)


def reference_arrays(path, role: str, source_colourspace: str, model_colourspace: str) -> dict:
    """A reference image in the model's encoding, for the shot directory (any size: the pipeline fits it, keeping its aspect)."""
    from ..io.plates import read_frame

    rgb = read_frame(path, 0)[..., :3]
    img = np.clip(convert(rgb, source_colourspace, model_colourspace), 0.0, 1.0).astype(np.float32)
    return {"reference_image": img, "reference_role": np.array(role)}


def write_shot_dir(work: Path, key_files, env_files, settings: dict, ranks: int, prompt_file,
                   mask_files=None, layers_height=None, harmonize_files=None) -> tuple[dict, tuple]:
    """``work/shot/``: the launcher's input, one ``.npy`` per array (the ranks read the per-frame ones a
    window at a time, see ``_io.NpyFrames``); written whole or not at all."""
    from ..atomic import atomic_dir

    with atomic_dir(work / "shot") as tmp:
        arrays, size = prepare_inputs(key_files, env_files, settings["model_colourspace"], ranks, out_dir=tmp,
                                      mask_files=mask_files, layers_height=layers_height,
                                      harmonize_files=harmonize_files)
        small = {}
        if settings.get("reference"):
            small.update(reference_arrays(settings["reference"], settings["reference_role"],
                                          settings["reference_colourspace"], settings["model_colourspace"]))
        small.update(prompt_arrays(prompt_file, settings["prompt"], settings["negative_prompt"]))
        for name, value in small.items():
            np.save(Path(tmp) / f"{name}.npy", value)
        info = {name: tuple(a.shape) for name, a in {**arrays, **small}.items()}
        del arrays
    return info, size


def prompt_arrays(prompt_file, prompt: str, negative_prompt: str) -> dict:
    from .prompts import load_prompt_embeds

    cache = load_prompt_embeds(prompt_file)
    out = {}
    for name, text in (("prompt_embeds", prompt), ("negative_prompt_embeds", negative_prompt)):
        if text not in cache:  # an empty negative prompt too: Wan encodes "", it does not use zeros
            raise DiffusionInputError(f"{prompt_file}: has no embedding of {text!r} (fix: delete it so the "
                                      "prompt_embeds rule runs again)")
        out[name] = cache[text].float().numpy()
    return out


def launch(work: Path, settings: dict, ranks: int, threads: int, log_file) -> Path:
    """Run the DeepSpeed launcher on ``work/shot/``; returns the directory of its window files."""
    import torch

    from . import distributed

    windows = work / "windows"
    args = ["--pipeline", str(Path(settings["pipeline"]).resolve()), "--shot", str(work / "shot"), "--no-blend",
            "--out", str(windows), "--steps", str(settings["steps"]), "--guidance", str(settings["guidance"]),
            "--seed", str(settings["seed"]), "--window", str(settings["window"]),
            "--overlap", str(settings["overlap"]), "--zero-stage", "3" if ranks > 1 else "0",
            "--output", settings.get("output", "frames")]
    cpu = not torch.cuda.is_available()
    cmd = distributed.launch_command(ranks, args)
    env = distributed.launch_env(ranks, cpu=cpu, threads_per_rank=max(1, threads // ranks))
    print(f"+ {'DS_ACCELERATOR=cpu ' if cpu else ''}{' '.join(cmd)}", file=log_file, flush=True)
    try:
        log_file.fileno()
    except (AttributeError, OSError, ValueError):
        log_file = None  # not a real file (e.g. captured): inherit
    proc = subprocess.run(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT if log_file else None,
                          cwd=str(work))
    if proc.returncode:
        raise RuntimeError(f"the DeepSpeed launcher exited with {proc.returncode} ({ranks} ranks); see this log "
                           f"above. Finished windows in {windows} are kept and reused on the rerun")
    return windows


def composite_shot(key_files, env_files, prompt_file, out_dir, work_dir, settings: dict, log, ranks: int = 1,
                   threads: int = 1, mask_files=None, harmonize_files=None) -> dict:
    """Render one shot with the diffusion backend; writes composite EXRs into ``out_dir``.
    ``harmonize_files``: (frame, path) of harmonize's comp, for a model with a harmonize base."""
    shot, version = settings["attrs"]["shot"], settings["attrs"].get("version")  # None: a work file
    frames = [f for f, _ in key_files]
    layers = settings.get("output", "frames") == "layers"
    if layers and env_files is None:
        raise DiffusionInputError(f"shot {shot}: diffusion.output 'layers' needs an environment plate to lay the "
                                  "model's light on (fix: give the shot an environment, or set diffusion.output: frames)")
    # output frames at a model resolution: back to the plate with over's detail (light_ratio.frames_to_plate)
    model_height = 0 if layers else int(settings.get("model_height", 0))
    with_over = layers or (model_height > 0 and env_files is not None)
    zone = settings.get("residual_zone", "all")
    if zone != "all" and not with_over:
        raise DiffusionInputError(f"shot {shot}: diffusion.residual_zone '{zone}' keeps the model's change on part "
                                  "of a base comp, which needs the environment plate and diffusion.output 'layers' "
                                  "or a diffusion.model_height (fix: set one, or residual_zone: all)")
    keep_exposure = settings.get("object_exposure", "model") == "base"
    if keep_exposure and not with_over:
        raise DiffusionInputError(f"shot {shot}: diffusion.object_exposure 'base' keeps the base comp's exposure of "
                                  "the actors, which needs the environment plate and diffusion.output 'layers' or a "
                                  "diffusion.model_height (fix: set one, or object_exposure: model)")
    work = Path(work_dir).resolve()  # the launcher runs in it
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    info, (h, w) = write_shot_dir(work, [p for _, p in key_files],
                                  None if env_files is None else [p for _, p in env_files], settings, ranks,
                                  prompt_file, None if mask_files is None else [p for _, p in mask_files],
                                  int(settings.get("layers_height", 0)) if layers else model_height or None,
                                  None if harmonize_files is None else [p for _, p in harmonize_files])
    log.info("shot %s: %d frames %dx%d (model %dx%d), %d rank(s), window %s overlap %s, %s steps; environment: %s%s",
             shot, len(frames), w, h, info["character_rgb"][2], info["character_rgb"][1], ranks,
             settings["window"], settings["overlap"], settings["steps"],
             "plate" if "environment_rgb" in info else "synthesised",
             f"; {settings['reference_role']} reference {settings['reference']}" if settings.get("reference") else "")
    windows = launch(work, {**settings, "output": "layers" if with_over else "frames"}, ranks, threads,
                     sys.stdout)  # the job's log (jobs.run)
    from .windows import iter_blended, read_manifest

    if read_manifest(windows)["num_frames"] != len(frames):
        raise DiffusionInputError(f"{windows}: windows.json is for another frame count than the shot's "
                                  f"{len(frames)} (fix: delete {windows} and rerun)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cs = settings["model_colourspace"]
    for i, rgb, depth, *over_rec in iter_blended(windows, with_over=with_over):  # one frame at a time
        frame = frames[i]
        if layers or model_height:
            from .light_ratio import apply_layers, frames_to_plate, keep_object_exposure, resize_to, residual_zone

            if with_over:
                key = exrio.read_rgba(key_files[i][1]) \
                    if harmonize_files is None or zone != "all" or keep_exposure else None
                over_comp = over(key[..., :3], key[..., 3], exrio.read_rgba(env_files[i][1])[..., :3]) \
                    if harmonize_files is None or zone in ("shadows", "shadows_only") else None
                # the base the model's change is laid on: harmonize's comp, else the plain over comp
                plain = over_comp if harmonize_files is None else exrio.read_rgba(harmonize_files[i][1])[..., :3]
                model_lin, rec, sigma = from_model_space(rgb, cs), from_model_space(over_rec[0], cs), \
                    settings.get("layers_blur", 4.0)
                rgb = apply_layers(plain, model_lin, rec, sigma) if layers else frames_to_plate(model_lin, plain, rec, sigma)
                if zone != "all":  # the rest of the environment stays the base comp's
                    rgb = (plain + residual_zone(zone, plain, key[..., 3], over_comp) * (rgb - plain)).astype(np.float32)
                if keep_exposure:  # the model's shading and colour of the actors at the base's exposure
                    rgb = keep_object_exposure(rgb, plain, key[..., 3])
            else:  # a synthesised environment: no over comp to take detail from
                rgb = resize_to(from_model_space(rgb, cs), h, w)
            depth = resize_to(depth[..., None], h, w)[..., 0]
        else:
            rgb = from_model_space(rgb[:h, :w], cs)
        attrs = {**settings["attrs"], "frame": int(frame), "backend": "diffusion"}
        chans = exrio.half_channels({**{c: rgb[..., k] for k, c in enumerate("RGB")}, "A": np.ones((h, w))}, attrs)
        chans["depth.Z"] = depth[:h, :w].astype(np.float32)  # (layers: already the plate's size)
        exrio.write_exr(frame_path(out, shot, "diffusion", version, frame), chans, attrs=attrs)
    seconds = time.perf_counter() - t0
    log.info("shot %s: diffusion composite of %d frames (%s%s%s) in %.1f s", shot, len(frames),
             f"the model's light laid on the {'harmonize' if harmonize_files is not None else 'over'} comp"
             if layers else
             f"the model's frames at height {model_height}, back to the plate" if model_height else "the model's frames",
             f"; its change kept on {zone}" if zone != "all" else "",
             "; the actors' exposure the base comp's" if keep_exposure else "", seconds)
    return {"frames": len(frames), "seconds": seconds, "ranks": ranks}
