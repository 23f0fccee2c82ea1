"""Initialise a :class:`CinecompTransformer3DModel` from a Wan 2.1 (or VACE) diffusers checkpoint.

* every Wan weight is copied under the same name;
* ``patch_embedding.weight`` is widened: its first ``z`` input channels (the noisy RGB latent) are
  Wan's, every new channel (noisy depth, plate, character depth, environment, folded tri-mask, presence
  flags) is zero;
* the depth head ``depth_proj_out`` starts as a copy of Wan's ``proj_out``;
* with ``harmonize_base`` (a model that starts where harmonize ends, see
  :mod:`cinecomp.diffusion.transformer`) harmonize's comp and its flag are further zero channels and
  the RGB head ``proj_out`` is zero: the model returns harmonize's comp until it is trained.

With zero new channels the widened model computes exactly Wan's hidden states whatever the
conditioning holds, so its RGB prediction equals the base model's prediction on the same noisy RGB
latent, timestep and prompt (up to convolution summation order, ~1e-6) -- fine-tuning starts from Wan.
A VACE checkpoint is accepted for its base DiT: the ``vace_*`` context blocks are dropped.
Only local directories are read; nothing is downloaded.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

import torch

from ..atomic import atomic_dir
from ._io import load_weights, read_config
from .conditioning import PRESENCE_CHANNELS, folded_mask_channels
from .errors import CheckpointError
from .transformer import WAN_CONFIG_FIELDS, CinecompTransformer3DModel

WAN_CLASSES = ("WanTransformer3DModel", "WanVACETransformer3DModel")
_WIDENED = "patch_embedding.weight"


def resolve_wan_transformer_dir(wan_dir: str | os.PathLike) -> Path:
    """Accept the transformer directory itself or a whole Wan pipeline directory (uses ``transformer/``)."""
    path = Path(wan_dir).expanduser()
    if (path / "model_index.json").is_file() and (path / "transformer").is_dir():
        return path / "transformer"
    return path


def cinecomp_config_from_wan(
    wan_config: dict, mask_fold: tuple[int, int] = (4, 8), num_masks: int = 3, path: Path | None = None,
    harmonize_base: bool = False,
) -> dict:
    """The CinecompTransformer3DModel config for a Wan config (raises CheckpointError when incompatible)."""
    where = path if path is not None else "<wan config>"
    class_name = wan_config.get("_class_name")
    if class_name is not None and class_name not in WAN_CLASSES:
        raise CheckpointError(
            where,
            f"has _class_name={class_name}, not a Wan 2.1 transformer ({' or '.join(WAN_CLASSES)})",
            "give the transformer/ directory of a Wan 2.1 T2V (or VACE) diffusers checkpoint",
        )
    z_in = int(wan_config.get("in_channels", 16))
    z_out = int(wan_config.get("out_channels") or z_in)
    if z_in != z_out:
        raise CheckpointError(
            where,
            f"has in_channels={z_in} but out_channels={z_out}: an image-to-video or otherwise widened "
            "checkpoint, whose extra input channels have no place in the cinecomp layout",
            "use the Wan 2.1 text-to-video (or VACE) transformer, whose in_channels equal out_channels",
        )
    if wan_config.get("image_dim") is not None or wan_config.get("added_kv_proj_dim") is not None:
        raise CheckpointError(
            where,
            "expects CLIP image embeddings (image_dim/added_kv_proj_dim set): an image-to-video checkpoint",
            "use the Wan 2.1 text-to-video (or VACE) transformer",
        )
    cfg = {k: wan_config[k] for k in WAN_CONFIG_FIELDS if k in wan_config}
    cfg.update(
        rgb_channels=z_in,
        depth_channels=z_in,
        cond_channels=3 * z_in,
        num_masks=num_masks,
        mask_fold=tuple(mask_fold),
        presence_channels=PRESENCE_CHANNELS,
        harmonize_base=harmonize_base,
    )
    cfg["in_channels"] = (5 * z_in + folded_mask_channels(num_masks, *mask_fold) + PRESENCE_CHANNELS
                          + ((z_in + 1) if harmonize_base else 0))
    cfg["out_channels"] = 2 * z_in
    return cfg


def widen_state_dict(wan_state: dict, model_state: dict, path: Path, z: int) -> dict:
    """Map a Wan state dict onto the cinecomp model's keys (zero-widened patch embedding, copied depth head)."""
    state = {}
    for key, value in wan_state.items():
        if key.startswith("vace_") or "norm_added_q" in key:
            continue  # VACE context blocks / legacy keys: not part of the base DiT
        state[key] = value
    unexpected = sorted(set(state) - set(model_state))
    if unexpected:
        raise CheckpointError(
            path,
            f"has {len(unexpected)} weight(s) a Wan 2.1 transformer of this config does not have, e.g. "
            + ", ".join(unexpected[:5]),
            "check that config.json and the weights belong together",
        )
    if "proj_out.weight" in state:
        state["depth_proj_out.weight"] = state["proj_out.weight"].clone()
    if "proj_out.bias" in state:
        state["depth_proj_out.bias"] = state["proj_out.bias"].clone()
    missing = sorted(set(model_state) - set(state))
    if missing:
        raise CheckpointError(
            path,
            f"is missing {len(missing)} weight(s), e.g. " + ", ".join(missing[:5]),
            "the checkpoint is incomplete or not a Wan 2.1 transformer; re-download it",
        )
    base = state[_WIDENED]
    target = model_state[_WIDENED]
    if base.shape[1] != z or base.shape[0] != target.shape[0] or base.shape[2:] != target.shape[2:]:
        raise CheckpointError(
            path,
            f"patch_embedding.weight has shape {tuple(base.shape)}, config implies "
            f"({target.shape[0]}, {z}, {', '.join(map(str, target.shape[2:]))})",
            "check that config.json and the weights belong together",
        )
    wide = torch.zeros(target.shape, dtype=base.dtype)
    wide[:, :z] = base
    state[_WIDENED] = wide
    for key, value in state.items():
        if tuple(value.shape) != tuple(model_state[key].shape):
            raise CheckpointError(
                path,
                f"weight {key} has shape {tuple(value.shape)}, config implies {tuple(model_state[key].shape)}",
                "check that config.json and the weights belong together",
            )
    return state


def init_from_wan(
    wan_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    torch_dtype: torch.dtype | None = None,
    mask_fold: tuple[int, int] = (4, 8),
    latent_channels: int | None = None,
    harmonize_base: bool = False,
) -> CinecompTransformer3DModel:
    """Build a CinecompTransformer3DModel from a local Wan 2.1 diffusers transformer directory.

    Args:
        wan_dir: the Wan ``transformer/`` directory (``config.json`` + weights) or a whole Wan pipeline
            directory containing one.
        out_dir: if given, the widened model is saved there (``save_pretrained``; written atomically).
        torch_dtype: cast the weights (default: keep the checkpoint's dtype).
        mask_fold: the VAE's (temporal, spatial) compression the tri-mask is folded by.
        latent_channels: the VAE's ``z_dim``, checked against the checkpoint when given.
        harmonize_base: add harmonize's comp as an input and start the RGB head at zero (module doc).
    """
    path = resolve_wan_transformer_dir(wan_dir)
    wan_config = read_config(path, "Wan transformer")
    cfg = cinecomp_config_from_wan(wan_config, mask_fold=mask_fold, path=path, harmonize_base=harmonize_base)
    z = cfg["rgb_channels"]
    if latent_channels is not None and latent_channels != z:
        raise CheckpointError(
            path, f"has {z} latent channels but the VAE has {latent_channels}", "use the VAE of the same Wan release"
        )
    try:
        from accelerate import init_empty_weights  # no memory for weights that are about to be replaced
    except ImportError:  # pragma: no cover - accelerate ships with diffusers' extras
        init_empty_weights = nullcontext
    with init_empty_weights():
        model = CinecompTransformer3DModel(**cfg)
    wan_state = load_weights(path)
    state = widen_state_dict(wan_state, model.state_dict(), path, z)
    if torch_dtype is not None:
        state = {k: v.to(torch_dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    if harmonize_base:
        model.zero_harmonize_base()
    model.eval()
    if out_dir is not None:
        with atomic_dir(out_dir) as tmp:
            model.save_pretrained(tmp)
    return model


def build_pipeline_from_wan(wan_pipeline_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                           harmonize_base: bool = False):
    """A CinecompPipeline from a local Wan 2.1 pipeline directory (``transformer/``, ``vae/``, ``scheduler/``).

    The transformer is widened by :func:`init_from_wan`; Wan's VAE and scheduler are used as they are
    (the text encoder is not: prompts are encoded once by :mod:`cinecomp.diffusion.prompts`).  With
    ``out_dir`` the pipeline is saved there (atomically) for ``CinecompPipeline.from_pretrained``.
    """
    from diffusers import AutoencoderKLWan

    from .tiny_models import scheduler_class
    from .pipeline import CinecompPipeline

    root = Path(wan_pipeline_dir).expanduser()
    for sub in ("transformer", "vae", "scheduler"):
        if not (root / sub).is_dir():
            raise CheckpointError(root, f"has no {sub}/ directory", "give a Wan 2.1 diffusers pipeline directory")
    vae_cfg = read_config(root / "vae", "Wan VAE")
    if vae_cfg.get("_class_name", "AutoencoderKLWan") != "AutoencoderKLWan":
        raise CheckpointError(root / "vae", f"has _class_name={vae_cfg.get('_class_name')}, not AutoencoderKLWan")
    sched_cls = scheduler_class(root / "scheduler")
    transformer = init_from_wan(root / "transformer", latent_channels=int(vae_cfg.get("z_dim", 16)),
                                harmonize_base=harmonize_base)
    try:
        vae = AutoencoderKLWan.from_pretrained(root / "vae", local_files_only=True).eval()
    except (OSError, ValueError) as exc:
        raise CheckpointError(root / "vae", f"cannot load the VAE ({exc})", "re-download the Wan pipeline") from exc
    scheduler = sched_cls.from_pretrained(root / "scheduler")
    pipe = CinecompPipeline(transformer=transformer, vae=vae, scheduler=scheduler)
    if out_dir is not None:
        with atomic_dir(out_dir) as tmp:
            pipe.save_pretrained(tmp)
    return pipe
