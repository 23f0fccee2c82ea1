"""The `diffusion` composite backend of one shot, as the workflow runs it.

    key EXRs + environment EXRs (scene-linear ACEScg)
      -> model-space arrays (display-encoded [0, 1], padded to the model's multiples) + cached prompt
         embeddings, written to ``<work>/shot.npz``
      -> the DeepSpeed launcher, N ranks (`python -m cinecomp.diffusion.distributed`), which renders
         overlapping windows into ``<work>/windows/window_####.npz`` (the checkpoints: a rerun reuses
         every finished window) and blends them into ``<work>/windows/shot.npz``
      -> composite EXRs: R,G,B (ACEScg, half), A = 1, depth.Z (scene units, float32).

The tri-mask is key-only until the mask stage exists (character = alpha, prop = 0, environment =
1 - alpha) and no character depth is given; the model still returns a depth for the whole frame.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .. import exrio
from ..colour import WORKING_SPACE, convert
from ..frames import frame_path
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


def _pad(video: np.ndarray, h: int, w: int) -> np.ndarray:
    """Edge-pad (T, H, W[, C]) at the bottom and right."""
    pad = [(0, 0), (0, h - video.shape[1]), (0, w - video.shape[2])] + [(0, 0)] * (video.ndim - 3)
    return np.pad(video, pad, mode="edge")


def to_model_space(rgb: np.ndarray, colourspace: str) -> np.ndarray:
    """Scene-linear ACEScg (T, H, W, 3) -> the model's display encoding, clipped to [0, 1]."""
    return np.clip(np.stack([convert(f, WORKING_SPACE, colourspace) for f in rgb]), 0.0, 1.0)


def from_model_space(rgb: np.ndarray, colourspace: str) -> np.ndarray:
    return np.stack([convert(np.asarray(f, np.float32), colourspace, WORKING_SPACE) for f in rgb])


def prepare_inputs(key_files, env_files, colourspace: str, ranks: int = 1) -> tuple[dict, tuple[int, int]]:
    """The model's per-frame inputs from the key (premultiplied RGBA) and environment frames.

    Returns ``(arrays, (height, width))`` with arrays ``character_rgb``, ``tri_mask`` and (unless
    ``env_files`` is None: the model synthesises the environment) ``environment_rgb``, (T, H', W', C)
    padded to :func:`padded_size`, and the original size.
    """
    keys = np.stack([exrio.read_rgba(f) for f in key_files])
    envs = None
    if env_files is not None:
        envs = np.stack([exrio.read_rgba(f)[..., :3] for f in env_files])
        if keys.shape[:3] != envs.shape[:3]:
            raise DiffusionInputError(f"key frames are {keys.shape[:3]} (T, H, W) but environment frames "
                                      f"{envs.shape[:3]}")
    alpha = np.clip(keys[..., 3:4], 0.0, 1.0)
    straight = np.where(alpha > 1e-4, keys[..., :3] / np.maximum(alpha, 1e-4), 0.0)
    character = to_model_space(straight, colourspace) * alpha
    tri = np.concatenate([alpha, np.zeros_like(alpha), 1.0 - alpha], axis=-1)
    h, w = keys.shape[1:3]
    ph, pw = padded_size(h, w, ranks)
    arrays = {
        "character_rgb": _pad(character.astype(np.float32), ph, pw),
        "tri_mask": _pad(tri.astype(np.float32), ph, pw),
    }
    if envs is not None:
        arrays["environment_rgb"] = _pad(to_model_space(envs, colourspace).astype(np.float32), ph, pw)
    return arrays, (h, w)


def reference_arrays(path, role: str, source_colourspace: str, model_colourspace: str) -> dict:
    """A reference image in the model's encoding, for ``shot.npz`` (any size: the pipeline resizes it)."""
    from ..plates import read_frame

    rgb = read_frame(path, 0)[..., :3]
    img = np.clip(convert(rgb, source_colourspace, model_colourspace), 0.0, 1.0).astype(np.float32)
    return {"reference_image": img, "reference_role": np.array(role)}


def prompt_arrays(prompt_file, prompt: str, negative_prompt: str) -> dict:
    from .prompts import load_prompt_embeds

    cache = load_prompt_embeds(prompt_file)
    out = {}
    for name, text in (("prompt_embeds", prompt), ("negative_prompt_embeds", negative_prompt)):
        if name == "negative_prompt_embeds" and not text:
            continue  # zeros: Wan's unconditional embedding
        if text not in cache:
            raise DiffusionInputError(f"{prompt_file}: has no embedding of {text!r} (fix: delete it so the "
                                      "prompt_embeds rule runs again)")
        out[name] = cache[text].float().numpy()
    return out


def launch(work: Path, settings: dict, ranks: int, threads: int, log_file) -> Path:
    """Run the DeepSpeed launcher on ``work/shot.npz``; returns the blended ``shot.npz`` it writes."""
    import torch

    from . import distributed

    windows = work / "windows"
    args = ["--pipeline", str(Path(settings["pipeline"]).resolve()), "--shot", str(work / "shot.npz"),
            "--out", str(windows), "--steps", str(settings["steps"]), "--guidance", str(settings["guidance"]),
            "--seed", str(settings["seed"]), "--window", str(settings["window"]),
            "--overlap", str(settings["overlap"]), "--zero-stage", "3" if ranks > 1 else "0"]
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
    return windows / "shot.npz"


def composite_shot(key_files, env_files, prompt_file, out_dir, work_dir, settings: dict, log, ranks: int = 1,
                   threads: int = 1) -> dict:
    """Render one shot with the diffusion backend; writes composite EXRs into ``out_dir``."""
    shot, version = settings["attrs"]["shot"], int(settings["attrs"]["version"])
    frames = [f for f, _ in key_files]
    work = Path(work_dir).resolve()  # the launcher runs in it
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    arrays, (h, w) = prepare_inputs([p for _, p in key_files],
                                    None if env_files is None else [p for _, p in env_files],
                                    settings["model_colourspace"], ranks)
    if settings.get("reference"):
        arrays.update(reference_arrays(settings["reference"], settings["reference_role"],
                                       settings["reference_colourspace"], settings["model_colourspace"]))
    arrays.update(prompt_arrays(prompt_file, settings["prompt"], settings["negative_prompt"]))
    from ..atomic import atomic_path

    with atomic_path(work / "shot.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    log.info("shot %s: %d frames %dx%d (model %dx%d), %d rank(s), window %s overlap %s, %s steps; environment: %s%s",
             shot, len(frames), w, h, arrays["character_rgb"].shape[2], arrays["character_rgb"].shape[1], ranks,
             settings["window"], settings["overlap"], settings["steps"],
             "plate" if "environment_rgb" in arrays else "synthesised",
             f"; {settings['reference_role']} reference {settings['reference']}" if settings.get("reference") else "")
    result = launch(work, settings, ranks, threads, sys.stdout)  # the job's log (scripting.run)
    with np.load(result, allow_pickle=False) as data:
        rgb, depth = data["frames"][:, :h, :w], data["depth"][:, :h, :w]
    if len(rgb) != len(frames):
        raise DiffusionInputError(f"{result}: {len(rgb)} frames rendered for {len(frames)} input frames "
                                  "(fix: delete the file and rerun)")
    rgb = from_model_space(rgb, settings["model_colourspace"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        chans = {c: rgb[i, ..., k].astype(np.float16) for k, c in enumerate("RGB")}
        chans["A"] = np.ones((h, w), np.float16)
        chans["depth.Z"] = depth[i].astype(np.float32)
        exrio.write_exr(frame_path(out, shot, "diffusion", version, frame), chans,
                        attrs={**settings["attrs"], "frame": int(frame), "backend": "diffusion"})
    seconds = time.perf_counter() - t0
    log.info("shot %s: diffusion composite of %d frames in %.1f s", shot, len(frames), seconds)
    return {"frames": len(frames), "seconds": seconds, "ranks": ranks}
