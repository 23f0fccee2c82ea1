"""Train the compositing model on curated shards: flow matching on RGB + depth latents, DeepSpeed.

``cinecomp train --config train.yaml [--ranks N] [--resume]`` launches :func:`main` on N ranks with the
DeepSpeed launcher (``DS_ACCELERATOR=cpu`` and gloo without CUDA).  One step, per rank and sample:

* the target frames and depth are encoded by the frozen VAE (``x0``: RGB then depth latents), the
  conditioning (keyed character, environment, tri-mask, presence flags) by the pipeline's own
  :meth:`~cinecomp.diffusion.pipeline.CinecompPipeline.prepare_conditioning` -- or their latents are
  read from the shards when ``--encode-latents`` stored them there with this VAE (:mod:`.latents`);
* condition dropout: the prompt becomes the unconditional "" embedding (for guidance), the environment
  and the character depth are dropped (flagged absent), each with its probability -- the workflow's
  composite gives no character depth, so a model trained with it always present would run in a flag
  state it never saw;
* references (:func:`draw_references`, probability ``dropout.reference``): with the environment dropped, a
  still of it as an ``environment`` reference (environment synthesis from a reference image); else, on a
  sample with a prop, the prop cut from a target frame as a ``prop`` reference (prop replacement: the old
  prop leaves the plate, the environment and harmonize's comp, and the model must draw it from the
  reference). Reference frames lead the latents clean at timestep 0 per token and weigh 0 in the loss,
  as the sampler gives them;
* a model that starts from harmonize (transformer ``harmonize_base``) gets the sample's
  ``harmonize_rgb`` (harmonize's comp, written by curation) exactly as the shot stage gives it: present
  with the environment, absent (flag 0) when the environment is dropped -- harmonize needs one;
* context (long-shot windows): with ``context_prob`` the first 1..F-1 latent frames are given clean at
  timestep 0 per token, as :func:`~cinecomp.diffusion.windows.render_windows` gives a window its
  predecessor's frames;
* ``sigma`` from a shifted logit-normal (the scheduler's shift: ``flow_shift`` for Wan's UniPC,
  ``shift`` for flow-matching Euler; :func:`scheduler_shift`), ``x_t = (1 - sigma) x0 + sigma noise``,
  the model predicts ``v = noise - x0`` at ``timestep = 1000 sigma`` (the sampler's convention): one
  timestep per sample, per token only when frames are held clean (a per-token timestep makes diffusers
  build a (batch, tokens, 6 dim) modulation per block);
* the loss is the squared error weighted per latent cell by region (character, prop, effect =
  shadows/contact/moved props, environment; clean frames weigh 0), RGB plus ``depth_weight`` x depth;
  for a harmonize-base model (``loss.rgb_error`` auto) the RGB term is the clean-frame error (velocity
  error x sigma^2), so every noise level weighs alike.

Modes: ``lora`` (default) trains PEFT LoRA adapters on the blocks' attention and feed-forward plus,
fully, the modules the adapter cannot express -- the widened patch embedding (the new input channels)
and the depth head -- saved beside the adapter with ``base_model.json`` (an adapter directory the diffusion
backend renders unbaked; the periodic evals write the same) and restored by ``load_lora`` / ``bake_lora``; ``full``
trains every parameter (tiny configs).  ZeRO-2 by default (ZeRO-3 for the 14B base), bf16 on GPUs,
gradient checkpointing, checkpoints with the optimizer and the step every ``checkpoint_every`` steps
(``--resume`` continues from the newest: every random draw is a function of (seed, step, rank), so a
resumed run repeats the loss trajectory), ``loss.csv`` and ``loss.png``, a model card.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import CinecompError
from .. import colour
from ..io.dataset import SAMPLE_COLOURSPACE, DatasetError, iter_samples, read_index
from ..diffusion.light_ratio import EXPOSURE_GAIN_RANGE, SOLID_ALPHA  # the shot stage's keep_object_exposure
from .latents import TARGET_DEPTH_RANGE, stored_for
from ..params import Choice, Flag, Num, check_params, load_yaml, shown

SECTIONS = {
    "train": {
        "mode": Choice("lora", ("lora", "full"), "LoRA adapters + patch embedding + depth head, or every parameter"),
        "lora_rank": Num(16, 1, 1024, True, "LoRA rank"),
        "steps": Num(100, 1, 10_000_000, True, "optimizer steps"),
        "lr": Num(1e-4, 1e-8, 1.0, False, "AdamW learning rate"),
        "weight_decay": Num(0.0, 0.0, 1.0, False, "AdamW weight decay"),
        "warmup_steps": Num(0, 0, 1_000_000, True, "linear learning-rate warm-up"),
        "lr_schedule": Choice("constant", ("constant", "cosine"), "after the warm-up: the learning rate held, or "
                              "decayed along a half cosine to 0 at the last step (the weights settle instead of "
                              "ending on one noisy step)"),
        "batch": Num(1, 1, 64, True, "samples per rank per step"),
        "grad_clip": Num(1.0, 0.0, 1000.0, False, "gradient norm clip (0 = off)"),
        "seed": Num(0, 0, 2**31 - 1, True, "seed of every random draw"),
        "zero_stage": Num(2, 0, 3, True, "DeepSpeed ZeRO stage (2 default, 3 for the 14B base)"),
        "precision": Choice("auto", ("auto", "float32", "bfloat16"), "auto: bfloat16 on GPUs, float32 on CPU"),
        "hflip": Num(0.0, 0.0, 1.0, False, "probability of mirroring a sample left-right, every picture of it "
                     "alike (light and shadows mirror with it; a mirrored sample is encoded, not read from stored latents)"),
        "exposure_invariant": Flag(False, "move each sample's target character and prop to harmonize's exposure (one "
                                   "linear gain over the window's solid object pixels) before training: the model learns "
                                   "the comp's shape, colour and shadows, not a data source's exposure convention (a "
                                   "sample without harmonize's comp is refused; a moved sample is encoded, not read from "
                                   "stored latents)"),
        "exposure_scope": Choice("sample", ("sample", "data"), "the gain exposure_invariant moves a target by: "
                                 "sample, its own (the model learns no exposure); data, the geometric mean of every "
                                 "sample's (one pass over the data before training): the model learns how far each "
                                 "sample's exposure strays from harmonize's, not the data's mean convention"),
        "gradient_checkpointing": Flag(True, "recompute block activations in the backward pass"),
        "checkpoint_every": Num(0, 0, 10_000_000, True, "steps between resumable checkpoints (0: only at the end)"),
        "log_every": Num(1, 1, 1_000_000, True, "steps between loss.csv rows"),
        "max_sequence_length": Num(512, 1, 4096, True, "prompt tokens (Wan: 512; the tiny models: 16)"),
        "eval_every": Num(0, 0, 10_000_000, True, "steps between `cinecomp eval` runs on the current weights (LoRA: an adapter directory, not baked; 0: off)"),
    },
    "loss": {
        "character": Num(2.0, 0.0, 100.0, False, "weight of the character region"),
        "prop": Num(2.0, 0.0, 100.0, False, "weight of the prop region"),
        "effect": Num(3.0, 0.0, 100.0, False, "weight of shadows, contact and moved props"),
        "environment": Num(1.0, 0.0, 100.0, False, "weight of the rest"),
        "depth_weight": Num(0.5, 0.0, 100.0, False, "depth loss relative to RGB"),
        "shift": Num(0.0, 0.0, 100.0, False, "sigma shift (0: the scheduler's)"),
        "rgb_error": Choice("auto", ("auto", "velocity", "x0"),
                            "the RGB loss: velocity error, or clean-frame error (velocity error x sigma^2: every "
                            "noise level weighs alike, not the nearly clean ones most); auto: x0 for a model that "
                            "starts from harmonize (its RGB is a clean-frame residual), velocity else"),
    },
    "eval": {  # the `cinecomp eval` run every train.eval_every steps
        "split": Choice("report", ("report", "tune", "all", *(f"ev{i:02d}" for i in range(1, 15))),
                        "the eval shots scored: a split, or one shot"),
        "width": Num(0, 0, 8192, True, "eval frame width (0: eval's default); even, at least 16, given with height"),
        "height": Num(0, 0, 8192, True, "eval frame height (0: eval's default)"),
        "frames": Num(0, 0, 1000, True, "frames per eval shot (0: eval's default)"),
        "steps": Num(30, 1, 1000, True, "sampling steps"),
        "guidance": Num(5.0, 0.0, 100.0, False, "classifier-free guidance (<= 1: off)"),
        "window": Num(81, 5, 1001, True, "frames per window (4n+1)"),
        "overlap": Num(17, 1, 1001, True, "frames (4m+1) a window shares with the one before"),
        "output": Choice("frames", ("frames", "layers"), "diffusion.output of the eval renders"),
        "layers_height": Num(0, 0, 4320, True, "diffusion.layers_height of the eval renders"),
    },
    "dropout": {
        "text": Num(0.1, 0.0, 1.0, False, "probability of the unconditional prompt"),
        "environment": Num(0.1, 0.0, 1.0, False, "probability of no environment plate (unset: 0 for a model that "
                           "starts from harmonize, whose shot stage always has one)"),
        "character_depth": Num(0.5, 0.0, 1.0, False, "probability of no character depth (the workflow gives none)"),
        "context_prob": Num(0.3, 0.0, 1.0, False, "probability of clean context frames"),
        "reference": Num(0.2, 0.0, 1.0, False, "probability of a reference image (environment still without "
                         "the environment plate, else the prop for prop replacement)"),
    },
}
PATHS = {"data": ("shards",), "model": ("pipeline", "text_encoder"), "out": ("dir",)}
# dropout as the workflow gives a model its inputs: every one but character depth (it passes none)
WORKFLOW_INPUTS = {"text": 0.0, "environment": 0.0, "context_prob": 0.0, "reference": 0.0, "character_depth": 1.0}
TRAINED_MODULES = ("patch_embedding", "depth_proj_out")  # full-trained next to the LoRA adapters


def trained_modules(transformer) -> tuple[str, ...]:
    """:data:`TRAINED_MODULES`, plus the zero-initialised RGB head of a model with a harmonize base
    (its residual on harmonize: a LoRA cannot move a zero matrix)."""
    return TRAINED_MODULES + (("proj_out",) if transformer.config.harmonize_base else ())


class TrainConfigError(CinecompError, ValueError):
    """A training config that cannot run, with every problem and the fix."""


# ----------------------------------------------------------------------------------------- config


def load_config(path: str | os.PathLike, check_latents: bool = True) -> dict:
    """The training config: every number checked for type, range and finiteness, every path checked,
    the dataset checked to hold samples and any stored latents checked to be the model's VAE's
    (``cfg["vae_identity"]``, ``cfg["latents"]``: stored / samples) -- all before a model is built or a
    step runs."""
    import yaml

    path = Path(path)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise TrainConfigError(f"{path}: the training config is not UTF-8 (byte 0x{exc.object[exc.start]:02x} at "
                               f"offset {exc.start}) (fix: save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`)") from None
    except (OSError, yaml.YAMLError) as exc:
        raise TrainConfigError(f"{path}: cannot read the training config ({' '.join(str(exc).split())})") from None
    if not isinstance(raw, dict):
        raise TrainConfigError(f"{path}: the training config must be a mapping of sections")
    problems = []
    unknown = sorted(map(str, set(raw) - set(SECTIONS) - set(PATHS)))
    if unknown:
        problems.append(f"unknown section(s) {', '.join(unknown)}; valid: {', '.join([*PATHS, *SECTIONS])}")
    cfg = {}

    def section_of(name: str, example: str) -> dict:
        value = raw.get(name) or {}
        if not isinstance(value, dict):
            problems.append(f"{name} must be a mapping of keys, e.g. `{name}: {{{example}}}`, got {shown(value)}")
            return {}
        return value

    for section, spec in SECTIONS.items():
        try:
            cfg[section] = check_params(section_of(section, f"{next(iter(spec))}: ..."), spec, what=section,
                                        fix="docs/training.md lists every key with its range")
        except ValueError as exc:
            problems.append(str(exc))
    base = path.parent
    for section, keys in PATHS.items():
        given = section_of(section, f"{keys[0]}: PATH")
        extra = sorted(set(given) - set(keys) - {"tokenizer"})
        if extra:
            problems.append(f"unknown {section} key(s) {', '.join(extra)}; valid: {', '.join(keys)}")
        cfg[section] = {}
        for key in (*keys, "tokenizer"):
            value = given.get(key)
            if value in (None, ""):
                if key != "tokenizer":
                    problems.append(f"{section}.{key} is required (a path)")
                cfg[section][key] = None
                continue
            p = Path(str(value)).expanduser()
            cfg[section][key] = p if p.is_absolute() else base / p
    if not problems and cfg["train"]["eval_every"]:
        problems += eval_problems(cfg["eval"])
    if problems:
        raise TrainConfigError(f"{path}: " + "; ".join(problems))
    from ..diffusion.checks import check_pipeline_dir, check_text_encoder_dir, takes_harmonize, transformer_text_dim

    problems += check_pipeline_dir(cfg["model"]["pipeline"], 1)
    problems += check_text_encoder_dir(cfg["model"]["text_encoder"], cfg["model"]["tokenizer"],
                                       transformer_text_dim(cfg["model"]["pipeline"]))
    try:
        cfg["shard_files"] = read_index(cfg["data"]["shards"])
    except DatasetError as exc:
        problems.append(str(exc))
    if problems:
        raise TrainConfigError(f"{path}: " + "; ".join(problems))
    if takes_harmonize(cfg["model"]["pipeline"]) and "environment" not in (raw.get("dropout") or {}):
        # the shot stage gives a harmonize-base model harmonize's comp, hence the environment, every time;
        # steps without it train the RGB head to draw whole frames, which hazes the environment it should
        # leave as harmonize's (docs/training.md: +0.03 on its own training samples at 0.05)
        cfg["dropout"]["environment"] = 0.0
    from ..diffusion._io import vae_identity
    from .latents import latent_problems

    cfg["vae_identity"] = vae_identity(Path(cfg["model"]["pipeline"]) / "vae")
    if check_latents:
        problems, stored, total = latent_problems(cfg["shard_files"], cfg["vae_identity"], path)
        if problems:
            raise TrainConfigError(f"{path}: data.shards: " + "; ".join(problems))
        cfg["latents"] = {"stored": stored, "samples": total}
    cfg["path"] = path
    return cfg


def eval_problems(ev: dict) -> list[str]:
    """What would make the periodic `cinecomp eval` fail, found before training starts."""
    from ..diffusion.checks import window_problems
    from ..evaluate.suite import EvalError, parse_size

    problems = []
    if bool(ev["width"]) != bool(ev["height"]):
        problems.append(f"eval.width={ev['width']} and eval.height={ev['height']}: give both or neither")
    elif ev["width"]:
        try:
            parse_size(f"{ev['width']}x{ev['height']}")  # cinecomp eval's own rule for --size
        except EvalError as exc:
            problems.append(f"eval.width x height: {exc}")
    return problems + window_problems(ev["window"], ev["overlap"], "eval")


# ------------------------------------------------------------------------------------------- data


class SampleStream:
    """Samples in a fixed order per epoch (shards shuffled by (seed, epoch)); ``at(position)`` opens
    the stream at any position, so a resumed run reads what the interrupted one would have."""

    def __init__(self, shard_files: list[Path], counts: list[int], seed: int):
        self.files, self.counts, self.seed = list(shard_files), list(counts), seed
        self.total = sum(counts)

    def _order(self, epoch: int) -> list[int]:
        return list(np.random.default_rng([self.seed, epoch]).permutation(len(self.files)))

    def at(self, position: int, keep=None):
        """Samples from ``position`` on; ``keep(position)`` False: that one is ``None``, never decoded
        (a rank skips the others' share of a step without reading it)."""
        epoch, skip = divmod(position, self.total)
        while True:
            start = epoch * self.total

            def decode(i):
                return i >= skip and (keep is None or keep(start + i))

            for i, (_, sample) in enumerate(iter_samples((self.files[j] for j in self._order(epoch)), decode)):
                if i >= skip:
                    yield sample
            epoch, skip = epoch + 1, 0


def shard_counts(shard_dir: Path) -> dict:
    """{shard path (as read_index gives it): samples} of a dataset directory."""
    index = json.loads((Path(shard_dir) / "index.json").read_text())
    return {Path(shard_dir) / s["file"]: int(s["samples"]) for s in index["shards"]}


# ------------------------------------------------------------------------------------- one example


def region_weights(sample: dict, loss: dict):
    """Per-pixel loss weight (T, H, W): the largest of the region weights that apply."""
    import torch

    m = torch.from_numpy(np.asarray(sample["tri_mask"], np.float32))
    effect = torch.from_numpy(np.asarray(sample["effect_mask"], np.float32)).clamp(0, 1)
    w = loss["environment"] * m[..., 2].clamp(0, 1)
    w = torch.maximum(w, loss["character"] * m[..., 0].clamp(0, 1))
    w = torch.maximum(w, loss["prop"] * m[..., 1].clamp(0, 1))
    w = torch.maximum(w, loss["effect"] * effect)
    return torch.maximum(w, torch.full_like(w, min(loss["environment"], 1e-3)))


def latent_weights(weights, temporal: int = 4, spatial: int = 8):
    """(T, H, W) pixel weights -> (1, 1, n+1, h, w) on the latent grid (the VAE's causal grouping)."""
    import torch

    w = weights[None, None]
    first, rest = w[:, :, :1], w[:, :, 1:]
    if rest.shape[2]:
        rest = rest.reshape(1, 1, rest.shape[2] // temporal, temporal, *rest.shape[3:]).mean(dim=3)
    w = torch.cat([first, rest], dim=2)
    return torch.nn.functional.avg_pool3d(w, (1, spatial, spatial))


def mirror(sample: dict) -> dict:
    """The sample mirrored left-right: every per-pixel array (frames, height, width[, channels]) whose
    height and width are the target's; the rest (meta, stored latents) as it is."""
    h, w = np.shape(sample["target_rgb"])[1:3]
    out = {}
    for k, v in sample.items():
        shape = np.shape(v) if isinstance(v, np.ndarray) else ()
        out[k] = np.ascontiguousarray(v[:, :, ::-1]) if len(shape) >= 3 and shape[1:3] == (h, w) else v
    return out


LINEAR_REC709 = "Linear Rec.709 (sRGB)"  # the samples' primaries, scene-linear: where a gain is a gain


def sample_to_linear(rgb: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) of a sample's pictures (io.dataset.SAMPLE_COLOURSPACE) -> linear light, its primaries."""
    a = np.ascontiguousarray(rgb, np.float32)
    return colour.convert(a.reshape(-1, a.shape[-2], 3), SAMPLE_COLOURSPACE, LINEAR_REC709).reshape(a.shape)


def linear_to_sample(rgb: np.ndarray) -> np.ndarray:
    """The inverse of :func:`sample_to_linear`."""
    a = np.ascontiguousarray(rgb, np.float32)
    return colour.convert(a.reshape(-1, a.shape[-2], 3), LINEAR_REC709, SAMPLE_COLOURSPACE).reshape(a.shape)


def _objects(sample: dict) -> np.ndarray:
    tri = np.asarray(sample["tri_mask"], np.float32)
    return np.clip(tri[..., 0] + tri[..., 1], 0.0, 1.0)


def exposure_gain(sample: dict) -> float | None:
    """Harmonize's over the target's luminance summed over the window's solid character and prop pixels
    (linear light): the gain that moves the target to harmonize's exposure; None without harmonize's
    comp or solid objects."""
    if "harmonize_rgb" not in sample:
        return None
    solid = _objects(sample) > SOLID_ALPHA
    if not solid.any():
        return None
    luma = np.array([0.2126, 0.7152, 0.0722], np.float32)  # Rec.709
    t_sum = float((sample_to_linear(sample["target_rgb"])[solid] @ luma).sum())
    b_sum = float((sample_to_linear(sample["harmonize_rgb"])[solid] @ luma).sum())
    if t_sum <= 0 or b_sum <= 0:
        return None
    return float(np.clip(b_sum / t_sum, *EXPOSURE_GAIN_RANGE))


def data_exposure_gain(files) -> float:
    """The geometric mean of :func:`exposure_gain` over every sample of ``files`` (train.exposure_scope
    data): the data's convention, taken out of every target alike."""
    logs = [math.log(g) for _, s in iter_samples(files) if (g := exposure_gain(s)) is not None]
    if not logs:
        raise DatasetError("train.exposure_scope data: no sample has harmonize's comp and solid character or prop "
                           "pixels to measure the data's exposure on (fix: curate the data again with this version, "
                           "or set train.exposure_invariant false)")
    return float(math.exp(sum(logs) / len(logs)))


def match_exposure(sample: dict, gain: float | None = None) -> dict:
    """The sample with its target's character and prop moved to the exposure harmonize gave them: one
    gain in linear light (``gain``, else the sample's own :func:`exposure_gain`), applied where the
    objects are (soft at their edges); the environment, the objects' texture and shading within them,
    and every other picture stay. How bright an actor comes out of a source is its convention (the
    generator's plates and the path-traced set's are exposed differently, docs/evaluation.md): a model
    trained on one learns it and misapplies it to the other."""
    gain = exposure_gain(sample) if gain is None else gain
    if gain is None or "harmonize_rgb" not in sample:
        return sample
    objects = _objects(sample)
    target = sample_to_linear(sample["target_rgb"])
    moved = np.clip(linear_to_sample(target * (1.0 + objects[..., None] * (gain - 1.0))), 0.0, 1.0)
    return {**sample, "target_rgb": np.where(objects[..., None] > 0, moved, sample["target_rgb"]).astype(np.float32)}


def make_example(pipe, sample: dict, rng: np.random.Generator, cfg: dict, embeds: dict, device):
    """Model input, timestep, velocity target and loss weights of one sample (see the module doc)."""
    import torch

    drop, loss = cfg["dropout"], cfg["loss"]
    hflip = cfg.get("train", {}).get("hflip", 0.0)
    mirrored = bool(hflip) and rng.random() < hflip  # drawn only when on: runs without it draw as before
    if mirrored:
        sample = mirror(sample)
    matched = bool(cfg.get("train", {}).get("exposure_invariant"))
    if matched:
        if "harmonize_rgb" not in sample:
            raise DatasetError(f"sample {sample.get('meta', {}).get('id', '?')} has no harmonize_rgb, whose exposure "
                               "train.exposure_invariant moves the target to (fix: curate the data again with this "
                               "version, which writes harmonize's comp into every sample, or set it false)")
        sample = match_exposure(sample, cfg.get("data_exposure_gain"))  # set by main for exposure_scope data
    prompt = sample.get("meta", {}).get("prompt", "")
    text = embeds[""] if rng.random() < drop["text"] else embeds[prompt]
    env = None if rng.random() < drop["environment"] else sample["environment_rgb"]
    char_depth = sample.get("character_depth")
    if char_depth is not None and rng.random() < drop["character_depth"]:
        char_depth = None
    base = None
    if pipe.transformer.config.harmonize_base and env is not None:  # as the shot stage: with the environment
        if "harmonize_rgb" not in sample:
            raise DatasetError(f"sample {sample.get('meta', {}).get('id', '?')} has no harmonize_rgb, which the "
                               f"model ({cfg['model']['pipeline']}: harmonize_base) starts from (fix: curate the "
                               "data again with this version, which writes harmonize's comp into every sample)")
        base = sample["harmonize_rgb"]
    t, h, w = np.shape(sample["target_rgb"])[:3]
    key = f"sample {sample.get('meta', {}).get('clip', '?')}"
    identity = cfg.get("vae_identity")  # load_config's; without it (a hand-made cfg) everything is encoded
    stored = stored_for(sample, identity, False, key) if identity and not (mirrored or matched) else None  # None: encoded here
    if stored is not None:
        x0 = torch.cat([stored["target_rgb"], stored["target_depth"]], dim=1)
    else:
        x0 = pipe.encode_context(sample["target_rgb"], sample["target_depth"], TARGET_DEPTH_RANGE, h, w)
    frames = x0.shape[2]
    clean = int(rng.integers(1, frames)) if frames > 1 and rng.random() < drop["context_prob"] else 0

    shift = loss["shift"] or scheduler_shift(pipe.scheduler.config)
    s = 1.0 / (1.0 + math.exp(-rng.standard_normal()))  # logit-normal
    sigma = shift * s / (1.0 + (shift - 1.0) * s)
    sigma = float(min(max(sigma, 1e-3), 1.0))
    g = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    refs = draw_references(sample, env is None, rng, drop.get("reference", 0.0))  # the last draws: see the doc
    if stored is not None:  # prop replacement edits pixels before the VAE: its own stored variants
        stored = stored_for(sample, identity, any(r.role == "prop" for r in refs), key)
    c = pipe.prepare_conditioning(sample["character_rgb"], sample["tri_mask"], char_depth, env, refs,
                                  harmonize_rgb=base, latents=stored and stored["conditioning"])
    r = c.num_references
    if r:  # as the sampler: the reference latents lead, clean (RGB slot, depth zero)
        x0 = torch.cat([torch.cat([c.references, torch.zeros_like(c.references)], dim=1), x0], dim=2)
        frames, clean = frames + r, clean + r
    noise = torch.randn(x0.shape, generator=g)
    xt = (1.0 - sigma) * x0 + sigma * noise
    xt[:, :, :clean] = x0[:, :, :clean]
    target = noise - x0

    weights = latent_weights(region_weights(sample, loss), pipe.vae_scale_factor_temporal,
                             pipe.vae_scale_factor_spatial)
    if r:
        weights = torch.cat([torch.zeros(*weights.shape[:2], r, *weights.shape[3:]), weights], dim=2)
    weights[:, :, :clean] = 0.0
    p_t, p_h, p_w = pipe.transformer.config.patch_size
    tokens = (frames // p_t) * (x0.shape[3] // p_h) * (x0.shape[4] // p_w)
    if clean:  # per token: 0 on the clean frames' tokens, as render_windows gives a window its context
        timestep = torch.full((1, tokens), sigma * 1000.0)
        timestep[:, : clean // p_t * tokens // (frames // p_t)] = 0.0
    else:
        timestep = torch.full((1,), sigma * 1000.0)
    model_input = torch.cat([xt, c.model_input()], dim=1)
    return {"input": model_input.to(device), "timestep": timestep.to(device), "text": text.to(device),
            "target": target.to(device), "weights": weights.to(device), "sigma": sigma, "clean": clean}


def draw_references(sample: dict, env_dropped: bool, rng: np.random.Generator, prob: float) -> list:
    """The references of one training example (module doc): [] with probability 1 - ``prob``; an
    ``environment`` still of the sample's environment plate when the plate itself was dropped; else the
    prop of the frame where it is largest, cut from the target (elsewhere 0) with its region, as a
    ``prop`` reference (prepare_conditioning then removes the old prop from the inputs)."""
    from ..diffusion.conditioning import Reference

    if prob <= 0 or rng.random() >= prob:
        return []
    t = len(sample["target_rgb"])
    if env_dropped:
        return [Reference(np.asarray(sample["environment_rgb"][int(rng.integers(0, t))], np.float32), "environment")]
    prop = np.asarray(sample["tri_mask"])[..., 1] > 0.5
    if not prop.any():
        return []
    k = int(prop.reshape(t, -1).sum(1).argmax())
    region = prop[k].astype(np.float32)
    return [Reference(np.asarray(sample["target_rgb"][k], np.float32) * region[..., None], "prop", region)]


def scheduler_shift(config) -> float:
    """The sigma shift the pipeline's scheduler samples with: ``flow_shift`` (Wan's UniPC / DPM-Solver
    configs), else ``shift`` (flow-matching Euler), else 1."""
    for name in ("flow_shift", "shift"):
        value = config.get(name) if hasattr(config, "get") else getattr(config, name, None)
        if value:
            return float(value)
    return 1.0


def rgb_error_is_x0(cfg: dict, transformer) -> bool:
    """``loss.rgb_error`` resolved: x0 for a harmonize-base transformer under ``auto``."""
    choice = cfg["loss"].get("rgb_error", "auto")
    if choice == "auto":
        return bool(getattr(transformer.config, "harmonize_base", False))
    return choice == "x0"


def lr_factor(tr: dict):
    """The learning rate's factor at optimizer step ``s`` (0-based): a linear warm-up over ``warmup_steps``,
    then 1 (``lr_schedule: constant``) or a half cosine from 1 down to 0 at step ``steps`` (``cosine``)."""
    warm, steps, cosine = tr["warmup_steps"], tr["steps"], tr.get("lr_schedule", "constant") == "cosine"

    def factor(s: int) -> float:
        if warm and s < warm:
            return (s + 1) / warm
        if not cosine or steps <= warm:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (s - warm) / (steps - warm))))

    return factor


def weighted_loss(pred, ex: dict, z: int, depth_weight: float, rgb_x0: bool = False):
    """Region-weighted mean squared velocity error: RGB + depth_weight x depth. ``rgb_x0``: the RGB term
    is the clean-frame error, ``(sigma * velocity error)^2`` -- with ``x_t = (1 - sigma) x0 + sigma noise``
    a velocity error e is a clean-frame error sigma e, so the plain velocity loss weighs nearly clean
    samples by 1 / sigma^2 and teaches a residual model to copy its noisy input."""
    err = (pred.float() - ex["target"].float()) ** 2
    w = ex["weights"]
    norm = (w.sum() * z).clamp_min(1e-8)
    rgb = (err[:, :z] * w).sum() / norm
    if rgb_x0:
        rgb = rgb * float(ex["sigma"]) ** 2
    depth = (err[:, z:] * w).sum() / norm
    return rgb + depth_weight * depth, rgb.detach(), depth.detach()


# ------------------------------------------------------------------------------------- model setup


def trainable_transformer(pipe, cfg: dict):
    """The transformer with what this mode trains marked trainable; returns its trainable parameters."""
    from ..diffusion.lora import add_lora

    transformer = pipe.transformer
    transformer.train()
    if cfg["train"]["mode"] == "lora":
        transformer.requires_grad_(False)
        add_lora(transformer, "cinecomp", rank=cfg["train"]["lora_rank"])
        for name in trained_modules(transformer):
            getattr(transformer, name).requires_grad_(True)
    else:
        transformer.requires_grad_(True)
    if cfg["train"]["gradient_checkpointing"]:
        transformer.enable_gradient_checkpointing()
    pipe.vae.requires_grad_(False).eval()
    return [p for p in transformer.parameters() if p.requires_grad]


def load_pipeline(cfg: dict, dtype):
    """The base pipeline.  Under ZeRO-3 its transformer is built under ``deepspeed.zero.Init``: each
    rank only ever holds its partition (1/N of every weight), never the whole fp32 model."""
    from ..diffusion.pipeline import CinecompPipeline

    where = str(cfg["model"]["pipeline"])
    if cfg["train"]["zero_stage"] != 3:
        return CinecompPipeline.from_pretrained(where)
    from ..diffusion.distributed import build_transformer_zero3

    transformer = build_transformer_zero3(Path(where) / "transformer", ds_config(cfg, dtype), dtype)
    return CinecompPipeline.from_pretrained(where, transformer=transformer)


def ds_config(cfg: dict, dtype) -> dict:
    import torch

    tr = cfg["train"]
    return {
        "train_micro_batch_size_per_gpu": 1,  # one sample per forward; a step accumulates ``batch`` of them
        "gradient_accumulation_steps": tr["batch"],
        "gradient_clipping": tr["grad_clip"],
        "zero_optimization": {"stage": tr["zero_stage"]},
        "bf16": {"enabled": dtype == torch.bfloat16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def saved_parameters(pipe, cfg: dict) -> list:
    """The tensors a save writes: the trainable ones (adapter + fully trained modules) in LoRA mode,
    every one in full mode."""
    params = pipe.transformer.parameters()
    return [p for p in params if p.requires_grad] if cfg["train"]["mode"] == "lora" else list(params)


def save_outputs(pipe, cfg: dict, out: Path, step: int, history: list[dict], rank: int = 0) -> Path:
    """The trained weights: a LoRA directory (adapter + fully trained modules) or a whole pipeline.
    Called on every rank: under ZeRO-3 only the saved tensors are gathered, and rank 0 writes."""
    from ..diffusion.lora import save_adapter_dir

    lora = cfg["train"]["mode"] == "lora"
    target = out / ("lora" if lora else "pipeline")
    with gathered(saved_parameters(pipe, cfg), cfg["train"]):
        if rank != 0:
            return target
        if lora:  # renderable as it is: diffusion.pipeline may name it (base_model.json names the base)
            save_adapter_dir(pipe.transformer, target, cfg["model"]["pipeline"], trained_modules(pipe.transformer))
        else:
            from ..atomic import atomic_dir

            with atomic_dir(target) as tmp:
                pipe.save_pretrained(str(tmp))
    write_model_card(out, cfg, step, history)
    return target


def write_model_card(out: Path, cfg: dict, step: int, history: list[dict]) -> None:
    from ..atomic import write_text

    last = history[-1] if history else {}
    first = history[0] if history else {}
    lines = [
        "# cinecomp compositing model (trained)", "",
        f"- base: `{cfg['model']['pipeline']}`", f"- data: `{cfg['data']['shards']}` "
        f"({sum(shard_counts(cfg['data']['shards']).values())} samples)",
        f"- mode: {cfg['train']['mode']} (rank {cfg['train']['lora_rank']}), steps: {step}, "
        f"lr {cfg['train']['lr']}, batch {cfg['train']['batch']} per rank, seed {cfg['train']['seed']}",
        f"- loss: first {first.get('loss', float('nan')):.4f}, last {last.get('loss', float('nan')):.4f} "
        "(loss.csv, loss.png)",
        "- weights: " + ("`lora/`, an adapter directory (LoRA + fully trained modules + `base_model.json` naming "
                         "the base above): set `diffusion.pipeline` to it to render, unbaked; `cinecomp models "
                         "bake-lora` makes a standalone copy" if cfg["train"]["mode"] == "lora" else
                         "`pipeline/`, the whole pipeline"),
        f"- VAE latents: {cfg.get('latents', {}).get('stored', 0)} of {cfg.get('latents', {}).get('samples', 0)} "
        "samples read from the shards, the rest encoded at every step",
        f"- config: `{cfg['path']}`", "",
    ]
    write_text(out / "MODEL_CARD.md", "\n".join(lines))


def precision_report(transformer) -> dict:
    """{"trainable" | "keep_fp32" | "other": sorted dtypes} of the transformer's tensors (of a ZeRO-3
    parameter: its partition, not the empty placeholder)."""
    from ..diffusion.distributed import keeps_fp32

    keep = getattr(transformer, "_keep_in_fp32_modules", None)
    seen: dict[str, set] = {"trainable": set(), "keep_fp32": set(), "other": set()}
    for name, p in transformer.named_parameters():
        kind = "trainable" if p.requires_grad else "keep_fp32" if keeps_fp32(name, keep) else "other"
        seen[kind].add(str(getattr(p, "ds_tensor", p).dtype).removeprefix("torch."))
    return {k: sorted(v) for k, v in seen.items()}


def restore_fp32(transformer) -> list[str]:
    """Put the frozen tensors of the transformer's ``_keep_in_fp32_modules`` (RoPE tables, time embedding,
    modulation tables, norms) back in float32 after DeepSpeed cast the whole module to bfloat16, as
    diffusers keeps them at inference: training then sees the model inference runs.  Trainable tensors
    stay in the engine's precision (its optimizer holds them).  A ZeRO-3 parameter is restored on its
    partition (its ``data`` is an empty placeholder).  Returns the names restored."""
    from ..diffusion.distributed import keeps_fp32, to_fp32

    keep = getattr(transformer, "_keep_in_fp32_modules", None)
    tensors = [(n, p, p.requires_grad) for n, p in transformer.named_parameters()]
    tensors += [(n, b, False) for n, b in transformer.named_buffers()]
    return [name for name, t, trainable in tensors
            if not trainable and t.is_floating_point() and keeps_fp32(name, keep) and to_fp32(t)]


def plot_loss(history: list[dict], path: Path, width: int = 480, height: int = 240) -> None:
    """loss.png: the loss per step as a line (PIL, no plotting library)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    if len(history) >= 2:
        steps = np.array([h["step"] for h in history], float)
        loss = np.array([h["loss"] for h in history], float)
        lo, hi = float(loss.min()), float(loss.max())
        span = hi - lo or 1.0
        xs = 10 + (steps - steps[0]) / max(steps[-1] - steps[0], 1) * (width - 20)
        ys = height - 20 - (loss - lo) / span * (height - 40)
        draw.line(list(zip(xs, ys)), fill=(200, 40, 40), width=2)
        draw.text((10, 4), f"loss {hi:.4g} .. {lo:.4g}, steps {int(steps[0])}..{int(steps[-1])}", fill="black")
    img.save(path)


# -------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="cinecomp training rank (run through `cinecomp train`)")
    ap.add_argument("--config", required=True)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)

    import deepspeed
    import deepspeed.comm as dist
    import torch

    from ..diffusion.distributed import init_distributed, is_cpu_accelerator, rank_device
    from ..diffusion.prompts import encode_prompts, load_prompt_embeds

    rank, world = init_distributed()
    tr = cfg["train"]
    out = Path(cfg["out"]["dir"])
    out.mkdir(parents=True, exist_ok=True)
    device = rank_device()
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(
        tr["precision"], torch.float32 if is_cpu_accelerator() else torch.bfloat16)

    lat = cfg["latents"]
    if rank == 0 and lat["stored"] < lat["samples"]:  # the one place a missing latent costs time
        from .latents import fix_hint

        print(f"latents: {lat['samples'] - lat['stored']} of {lat['samples']} samples have no stored VAE latents: "
              f"their videos are encoded through the VAE at every step ({fix_hint(cfg['path'])} once)", flush=True)
    counts = shard_counts(cfg["data"]["shards"])
    files = cfg["shard_files"]
    stream = SampleStream(files, [counts[f] for f in files], tr["seed"])
    prompts = sorted({""} | {s.get("meta", {}).get("prompt", "") for _, s in iter_samples(files, arrays=False)})
    centred = tr["exposure_invariant"] and tr["exposure_scope"] == "data"
    gain_file = out / "data_exposure_gain.json"  # rank 0 reads the data once; the others read its answer
    cache = out / "prompt_embeds.safetensors"
    if rank == 0:
        if centred:
            gain = data_exposure_gain(files)
            gain_file.write_text(json.dumps({"gain": gain}))
            print(f"exposure_scope data: every target's character and prop moved by the data's mean gain, "
                  f"{math.log2(gain):+.2f} stops", flush=True)
        encode_prompts(cfg["model"]["text_encoder"], prompts, cache, tokenizer_dir=cfg["model"]["tokenizer"],
                       max_sequence_length=tr["max_sequence_length"])
    dist.barrier()
    if centred:
        cfg["data_exposure_gain"] = float(json.loads(gain_file.read_text())["gain"])
    embeds = {p: e.to(dtype) for p, e in load_prompt_embeds(cache).items()}

    pipe = load_pipeline(cfg, dtype)
    built_partitioned = bool(list(pipe.transformer.parameters())) and all(
        hasattr(p, "ds_id") for p in pipe.transformer.parameters())  # zero.Init: never whole on a rank
    pipe.vae.to(device)
    torch.manual_seed(tr["seed"])  # the LoRA's initial A matrices (and anything else drawn from torch's RNG)
    params = trainable_transformer(pipe, cfg)
    optimizer = torch.optim.AdamW(params, lr=tr["lr"], weight_decay=tr["weight_decay"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(tr))
    engine, optimizer, _, scheduler = deepspeed.initialize(model=pipe.transformer, optimizer=optimizer,
                                                           lr_scheduler=scheduler, config=ds_config(cfg, dtype))
    restore_fp32(pipe.transformer)  # DeepSpeed's bf16 cast takes the frozen fp32 modules with it
    z = pipe.transformer.config.rgb_channels
    rgb_x0 = rgb_error_is_x0(cfg, pipe.transformer)

    step, history = 0, []
    ckpt = out / "checkpoints"
    if args.resume and (ckpt / "latest").is_file():
        _, client = engine.load_checkpoint(str(ckpt), load_module_strict=False)
        step, history = int(client["step"]), list(client["history"])
        if rank == 0:
            print(f"resumed at step {step} from {ckpt}", flush=True)

    probe = next(stream.at(0))  # a fixed sample, sigma and noise: the loss curve without sampling noise
    probe_start = probe_loss(engine, pipe, probe, cfg, embeds, device, dtype, z, rgb_x0) if step == 0 else None
    per_step = tr["batch"] * world
    samples = stream.at(step * per_step, keep=lambda pos: (pos % per_step) // tr["batch"] == rank)
    t0 = time.perf_counter()
    while step < tr["steps"]:
        batch = [s for s in (next(samples) for _ in range(per_step)) if s is not None]  # this rank's share
        losses = []
        for i, sample in enumerate(batch):  # micro-steps; DeepSpeed steps the optimizer after the last
            rng = np.random.default_rng([tr["seed"], step, rank, i])
            ex = make_example(pipe, sample, rng, cfg, embeds, device)
            pred = engine(hidden_states=ex["input"].to(dtype), timestep=ex["timestep"],
                          encoder_hidden_states=ex["text"], return_dict=False)[0]
            loss, rgb, depth = weighted_loss(pred, ex, z, cfg["loss"]["depth_weight"], rgb_x0)
            engine.backward(loss)  # scaled by 1 / batch (gradient accumulation)
            engine.step()
            losses.append([float(loss.detach()), float(rgb), float(depth)])
        step += 1
        mean = torch.tensor(np.mean(losses, axis=0), dtype=torch.float64, device=device)
        dist.all_reduce(mean)
        mean = (mean / world).tolist()
        row = {"step": step, "loss": mean[0], "loss_rgb": mean[1], "loss_depth": mean[2],
               "lr": float(scheduler.get_last_lr()[0]), "seconds": time.perf_counter() - t0}
        if step % tr["log_every"] == 0 or step == tr["steps"]:
            history.append(row)
            if rank == 0:
                print(f"step {step}: loss {row['loss']:.5f} (rgb {row['loss_rgb']:.5f}, depth "
                      f"{row['loss_depth']:.5f})", flush=True)
        if tr["checkpoint_every"] and step % tr["checkpoint_every"] == 0 and step < tr["steps"]:
            save_checkpoint(engine, ckpt, step, history)
        if tr["eval_every"] and step % tr["eval_every"] == 0:
            with gathered(saved_parameters(pipe, cfg), tr):  # what run_eval writes
                if rank == 0:
                    run_eval(cfg, out, step, pipe)
            dist.barrier()
    save_checkpoint(engine, ckpt, step, history)
    summary = {"steps": step, "probe_loss_start": probe_start, "precision": precision_report(pipe.transformer),
               "probe_loss_end": probe_loss(engine, pipe, probe, cfg, embeds, device, dtype, z, rgb_x0),
               "last_loss": history[-1]["loss"] if history else None, "ranks": world,
               "built_partitioned": built_partitioned}
    target = save_outputs(pipe, cfg, out, step, history, rank)
    if rank == 0:
        from ..atomic import write_text

        write_text(out / "summary.json", json.dumps(summary, indent=1))
        write_history(out, history)
        print(f"trained {step} steps; weights in {target}", flush=True)
    dist.barrier()
    return 0


def probe_loss(engine, pipe, sample: dict, cfg: dict, embeds: dict, device, dtype, z: int, rgb_x0: bool) -> float:
    """The loss on one fixed example (every input the workflow gives, a fixed sigma and noise): comparable
    across steps."""
    import torch

    fixed = {**cfg, "dropout": WORKFLOW_INPUTS}
    ex = make_example(pipe, sample, np.random.default_rng([cfg["train"]["seed"], 2**31]), fixed, embeds, device)
    with torch.no_grad():
        pred = engine(hidden_states=ex["input"].to(dtype), timestep=ex["timestep"],
                      encoder_hidden_states=ex["text"], return_dict=False)[0]
        return float(weighted_loss(pred, ex, z, cfg["loss"]["depth_weight"], rgb_x0)[0])


def save_checkpoint(engine, ckpt: Path, step: int, history: list[dict]) -> None:
    """A resumable checkpoint: trainable weights, optimizer, scheduler, the step and the loss history
    (the frozen base is not copied: it is the pipeline the config names)."""
    engine.save_checkpoint(str(ckpt), tag=f"step_{step:07d}", client_state={"step": step, "history": history},
                           exclude_frozen_parameters=True)


def gathered(params: list, tr: dict):
    """Under ZeRO-3 every rank gathers ``params`` (what a save or bake reads); otherwise nothing to do."""
    import contextlib

    if tr["zero_stage"] != 3:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def write_history(out: Path, history: list[dict]) -> None:
    import pandas as pd

    from ..atomic import atomic_path

    with atomic_path(out / "loss.csv") as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)
    plot_loss(history, out / "loss.png")


def run_eval(cfg: dict, out: Path, step: int, pipe) -> None:
    """Save the current weights and run `cinecomp eval` with the diffusion backend on them.  A LoRA run
    writes only the adapter and its trained modules with a reference to the base pipeline (an adapter
    directory, which the diffusion backend loads onto the base); a full run, whose trained weights are
    the whole transformer, the whole pipeline."""
    import subprocess

    from ..diffusion.lora import save_adapter_dir

    where = out / "eval" / f"step_{step:07d}"
    model = where / ("lora" if cfg["train"]["mode"] == "lora" else "pipeline")
    if cfg["train"]["mode"] == "lora":
        save_adapter_dir(pipe.transformer, model, cfg["model"]["pipeline"], trained_modules(pipe.transformer))
    else:
        pipe.save_pretrained(str(model))
    import yaml

    ev = cfg["eval"]
    model_cfg = where / "model.yaml"
    model_cfg.write_text(yaml.safe_dump({"diffusion": {
        "pipeline": str(model.resolve()), "text_encoder": str(Path(cfg["model"]["text_encoder"]).resolve()),
        "max_sequence_length": cfg["train"]["max_sequence_length"],
        "tokenizer": str(Path(cfg["model"]["tokenizer"]).resolve()) if cfg["model"]["tokenizer"] else "",
        **{k: ev[k] for k in ("steps", "guidance", "window", "overlap", "output", "layers_height")}}}))
    which = ["--split", ev["split"]] if ev["split"] in ("report", "tune", "all") else ["--shots", ev["split"]]
    cmd = [sys.executable, "-m", "cinecomp.cli.main", "eval", "--out", str(where / "eval"), *which,
           "--backends", "diffusion", "--configfile", str(model_cfg), "--json"]
    if ev["width"] and ev["height"]:
        cmd += ["--size", f"{ev['width']}x{ev['height']}"]
    if ev["frames"]:
        cmd += ["--frames", str(ev["frames"])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    (where / "eval.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode == 0:  # the scores beside the loss curve: eval.json per step
        from ..atomic import write_text

        write_text(where / "eval.json", proc.stdout.strip().splitlines()[-1])
    print(f"eval at step {step}: exit {proc.returncode}, {where / 'eval.log'}", flush=True)


def launch(config: str | os.PathLike, ranks: int = 1, resume: bool = False, threads: int = 1) -> int:
    """``cinecomp train``: check the config, then run :func:`main` on ``ranks`` ranks (DeepSpeed launcher)."""
    import subprocess

    from ..diffusion.distributed import launch_command, launch_env

    load_config(config)  # every problem before any rank starts
    try:
        import torch

        cpu = not torch.cuda.is_available()
    except ImportError:
        cpu = True
    args = ["--config", str(config)] + (["--resume"] if resume else [])
    cmd = launch_command(ranks, args, module="cinecomp.train.loop")
    return subprocess.call(cmd, env=launch_env(ranks, cpu, threads))


if __name__ == "__main__":
    sys.exit(main())
