"""Fine-tunes as PEFT LoRA adapters on the CinecompTransformer3DModel (diffusers' PeftAdapterMixin).

* :func:`add_lora` -- a new trainable adapter (training);
* :func:`save_lora` -- an adapter to ``<dir>/pytorch_lora_weights.safetensors`` (config in the metadata);
* :func:`save_trained_modules` -- the modules a fine-tune trains fully (patch embedding, depth head) to
  ``<dir>/trained_modules.safetensors``; :func:`load_lora`, :func:`unload_lora` and :func:`bake_lora`
  carry them with the adapter (the scale applies to the adapter only: trained modules are swapped in);
* :func:`load_lora` -- a saved adapter (ours, a diffusers Wan LoRA with ``transformer.`` keys, or an
  original-format Wan LoRA with ``diffusion_model.`` keys) from a local file or directory, at a scale;
* :func:`set_lora_scales` -- which adapters are active, with what weight;
* :func:`unload_lora` -- one adapter, or all of them, in which case the PEFT layers are removed and
  the transformer is exactly the base model again;
* :func:`save_adapter_dir` -- an *adapter directory* (adapter + trained modules + ``base_model.json``
  naming the base pipeline), which the diffusion backend renders without a baked copy:
  :func:`adapter_merge` folds it into the base's weights one tensor at a time as they load
  (:func:`apply_adapter_dir` on a whole transformer).

Only safetensors are read; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import torch

from ..atomic import atomic_dir
from ._io import LORA_WEIGHT_NAME  # noqa: F401 (lora.LORA_WEIGHT_NAME: the adapter file's name)
from .errors import CheckpointError

# modules a fine-tune trains fully (the widened patch embedding's new input channels, the depth head):
# a LoRA cannot express them, so they are saved beside the adapter and loaded / baked with it
TRAINED_MODULES_NAME = "trained_modules.safetensors"
# attention projections and the feed-forward of every Wan block (what Wan LoRAs usually target)
DEFAULT_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")


def _transformer(model):
    """Accept the transformer or a pipeline holding one."""
    return getattr(model, "transformer", model)


def _scales(transformer) -> dict:
    if not hasattr(transformer, "_cinecomp_lora_scales"):
        transformer._cinecomp_lora_scales = {}
    return transformer._cinecomp_lora_scales


def lora_adapters(model) -> list[str]:
    """Names of the adapters loaded on the transformer."""
    return list(getattr(_transformer(model), "peft_config", {}) or {})


def add_lora(
    model,
    adapter_name: str = "cinecomp",
    rank: int = 16,
    alpha: float | None = None,
    target_modules=DEFAULT_TARGET_MODULES,
    init_lora_weights: bool | str = True,
) -> str:
    """Add a new (trainable) LoRA adapter; with the default init the output is unchanged until trained."""
    from peft import LoraConfig

    transformer = _transformer(model)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else rank,
        target_modules=list(target_modules),
        init_lora_weights=init_lora_weights,
    )
    transformer.add_adapter(config, adapter_name=adapter_name)
    _scales(transformer)[adapter_name] = 1.0
    return adapter_name


def save_lora(model, out_dir: str | os.PathLike, adapter_name: str = "cinecomp") -> Path:
    """Write one adapter to ``out_dir/pytorch_lora_weights.safetensors`` (atomically)."""
    transformer = _transformer(model)
    if adapter_name not in lora_adapters(transformer):
        raise ValueError(f"no LoRA adapter named {adapter_name!r} (loaded: {lora_adapters(transformer)})")
    with atomic_dir(out_dir) as tmp:
        transformer.save_lora_adapter(str(tmp), adapter_name=adapter_name, weight_name=LORA_WEIGHT_NAME)
    return Path(out_dir) / LORA_WEIGHT_NAME


def _resolve_lora_file(path: Path) -> Path:
    if path.is_file():
        if path.suffix != ".safetensors":
            raise CheckpointError(path, "LoRA weights must be a .safetensors file", "convert it to safetensors")
        return path
    if not path.is_dir():
        raise CheckpointError(path, "LoRA path does not exist", "check the path")
    if (path / LORA_WEIGHT_NAME).is_file():
        return path / LORA_WEIGHT_NAME
    files = sorted(path.glob("*.safetensors"))
    if len(files) != 1:
        raise CheckpointError(
            path,
            f"expected {LORA_WEIGHT_NAME} or exactly one .safetensors file, found {len(files)}",
            "point at the LoRA file itself",
        )
    return files[0]


def _check_targets(transformer, state: dict, prefix: str | None, file: Path) -> None:
    """Every LoRA weight must belong to a layer of this transformer (else it was trained for another model)."""
    modules = {name for name, _ in transformer.named_modules()}
    targets = set()
    for key in state:
        if prefix is not None:
            if not key.startswith(prefix + "."):
                continue
            key = key[len(prefix) + 1 :]
        if ".lora_" in key:
            targets.add(key.split(".lora_")[0])
    if not targets:
        raise CheckpointError(
            file, "no LoRA weights matched this transformer's layers", "use a LoRA trained on this model"
        )
    unknown = sorted(t for t in targets if t not in modules)
    if unknown:
        raise CheckpointError(
            file,
            f"{len(unknown)} of {len(targets)} LoRA target layers do not exist in this transformer, e.g. "
            + ", ".join(unknown[:3]),
            "use a LoRA trained on this model (Wan 2.1 of the same size)",
        )


def load_lora(model, path: str | os.PathLike, adapter_name: str | None = None, scale: float = 1.0) -> str:
    """Load a LoRA adapter from a local file/directory and activate it (with the others) at ``scale``."""
    transformer = _transformer(model)
    file = _resolve_lora_file(Path(path).expanduser())
    if adapter_name is None:
        adapter_name = re.sub(r"\W", "_", file.parent.name if file.name == LORA_WEIGHT_NAME else file.stem)
    if adapter_name in lora_adapters(transformer):
        raise ValueError(f"a LoRA adapter named {adapter_name!r} is already loaded; unload it or pick another name")
    state, metadata, prefix = _read_lora(file)
    _check_targets(transformer, state, prefix, file)
    try:
        with warnings.catch_warnings():  # peft warns whenever a second adapter is injected: that is the point
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            transformer.load_lora_adapter(state, prefix=prefix, adapter_name=adapter_name, metadata=metadata)
    except (ValueError, KeyError, IndexError, RuntimeError) as exc:
        raise CheckpointError(
            file, f"does not fit this transformer ({exc})", "use a LoRA trained on this model"
        ) from exc
    _scales(transformer)[adapter_name] = float(scale)
    set_lora_scales(transformer, _scales(transformer))
    _load_trained_modules(transformer, file, adapter_name)
    return adapter_name


def _read_lora(file: Path) -> tuple[dict, dict | None, str | None]:
    """(state in diffusers keys, PEFT config metadata, key prefix or None) of a LoRA safetensors file."""
    from diffusers.loaders import WanLoraLoaderMixin
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            raw_meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise CheckpointError(file, f"cannot read LoRA weights ({exc})", "re-export the adapter")
    if not state:
        raise CheckpointError(file, "LoRA file holds no tensors")
    metadata = json.loads(raw_meta["lora_adapter_metadata"]) if "lora_adapter_metadata" in raw_meta else None
    state = WanLoraLoaderMixin.lora_state_dict(state)  # original-format Wan LoRAs -> diffusers keys
    prefix = "transformer" if any(k.startswith("transformer.") for k in state) else None
    if prefix and metadata and not any(k.startswith("transformer.") for k in metadata):
        metadata = {f"transformer.{k}": v for k, v in metadata.items()}
    return state, metadata, prefix


def set_lora_scales(model, scales: dict[str, float]) -> None:
    """Activate exactly the adapters in ``scales`` with those weights (0 keeps one loaded but without effect)."""
    transformer = _transformer(model)
    unknown = set(scales) - set(lora_adapters(transformer))
    if unknown:
        raise ValueError(f"unknown LoRA adapter(s) {sorted(unknown)} (loaded: {lora_adapters(transformer)})")
    _scales(transformer).update({k: float(v) for k, v in scales.items()})
    if scales:
        transformer.set_adapters(list(scales), [float(v) for v in scales.values()])


def unload_lora(model, adapter_name: str | None = None) -> None:
    """Remove one adapter, or all (``None``): then every PEFT layer is removed and the base model is back."""
    transformer = _transformer(model)
    names = lora_adapters(transformer)
    scales = _scales(transformer)
    if adapter_name is not None and adapter_name not in names:
        raise ValueError(f"no LoRA adapter named {adapter_name!r} (loaded: {names})")
    _restore_trained_modules(transformer, adapter_name)
    if adapter_name is None or names == [adapter_name]:
        if names:
            transformer.unload_lora()
        scales.clear()
        return
    transformer.delete_adapters(adapter_name)
    scales.pop(adapter_name, None)
    if scales:
        set_lora_scales(transformer, dict(scales))


def save_trained_modules(model, out_dir: str | os.PathLike, modules=("patch_embedding", "depth_proj_out")) -> Path:
    """The full weights of ``modules`` (trained next to the adapter) to ``out_dir/trained_modules.safetensors``."""
    from safetensors.torch import save_file

    from ..atomic import atomic_path

    transformer = _transformer(model)
    state = {}
    for name in modules:
        for pname, p in getattr(transformer, name).named_parameters():
            state[f"{name}.{pname}"] = p.detach().float().cpu().contiguous()
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(out_dir) / TRAINED_MODULES_NAME) as tmp:
        save_file(state, str(tmp), metadata={"modules": json.dumps(list(modules))})
    return Path(out_dir) / TRAINED_MODULES_NAME


def _load_trained_modules(transformer, lora_file: Path, adapter_name: str) -> None:
    """Load the adapter's fully trained modules (if it has them), keeping the originals for unload_lora."""
    from safetensors.torch import load_file

    file = lora_file.parent / TRAINED_MODULES_NAME
    if not file.is_file():
        return
    try:
        state = load_file(str(file))
    except Exception as exc:
        raise CheckpointError(file, f"cannot read the trained modules ({exc})", "re-export the fine-tune")
    params = dict(transformer.named_parameters())
    bad = [k for k, v in state.items() if k not in params or tuple(params[k].shape) != tuple(v.shape)]
    if bad:
        raise CheckpointError(file, f"{len(bad)} trained weight(s) do not fit this transformer, e.g. {bad[0]}",
                              "use a fine-tune of this model")
    saved = transformer.__dict__.setdefault("_cinecomp_replaced", {})
    with torch.no_grad():
        originals = {}
        for k, v in state.items():
            originals[k] = params[k].detach().clone()
            params[k].copy_(v.to(params[k].dtype))
    saved[adapter_name] = originals


def _restore_trained_modules(transformer, adapter_name: str | None) -> None:
    saved = transformer.__dict__.get("_cinecomp_replaced", {})
    names = list(saved) if adapter_name is None else [adapter_name]
    params = dict(transformer.named_parameters())
    with torch.no_grad():
        for name in reversed(names):
            for k, v in saved.pop(name, {}).items():
                params[k].copy_(v)


@torch.no_grad()
def fuse_lora(model, adapter_names: list[str] | None = None) -> None:
    """Merge active adapters into the base weights (faster inference; unload_lora no longer restores)."""
    _transformer(model).fuse_lora(adapter_names=adapter_names)


def bake_lora(pipeline_dir: str | os.PathLike, lora_path: str | os.PathLike, out_dir: str | os.PathLike,
              scale: float = 1.0) -> Path:
    """A copy of a CinecompPipeline with a LoRA fine-tune merged into its transformer's weights.

    The workflow's multi-rank inference shards plain weights with ZeRO-3, so a show's fine-tune reaches
    it baked: point ``diffusion.pipeline`` at ``out_dir``.  The result is a normal pipeline directory
    (no PEFT layers); the original is untouched.
    """
    from .pipeline import CinecompPipeline

    pipe = CinecompPipeline.from_pretrained(str(pipeline_dir))
    name = load_lora(pipe.transformer, lora_path, scale=scale)
    fuse_lora(pipe.transformer, [name])
    pipe.transformer.unload_lora()  # drops the PEFT layers; the fused weights (and trained modules) stay
    _scales(pipe.transformer).clear()
    pipe.transformer.__dict__.pop("_cinecomp_replaced", None)
    with atomic_dir(out_dir) as tmp:
        pipe.save_pretrained(str(tmp))
    return Path(out_dir)


# ------------------------------------------------------------------------- adapter directories


def save_adapter_dir(model, out_dir: str | os.PathLike, base_dir: str | os.PathLike, modules,
                     adapter_name: str = "cinecomp") -> Path:
    """A fine-tune the workflow renders without baking: the adapter, its fully trained ``modules`` and
    ``base_model.json`` naming the base pipeline directory (and its transformer config's hash, checked
    when it is loaded).  Point ``diffusion.pipeline`` at ``out_dir``."""
    from ..atomic import write_text
    from ._io import config_digest, read_config
    from .checks import BASE_REF

    save_lora(model, out_dir, adapter_name)
    save_trained_modules(model, out_dir, modules)
    base = Path(base_dir).resolve()
    write_text(Path(out_dir) / BASE_REF, json.dumps({
        "base": str(base), "transformer_config": config_digest(read_config(base / "transformer", "base transformer")),
        "adapter": LORA_WEIGHT_NAME, "trained_modules": TRAINED_MODULES_NAME}, indent=1))
    return Path(out_dir)


def adapter_merge(adapter_dir: str | os.PathLike, scale: float = 1.0):
    """``merge(name, base_tensor) -> tensor``: a base transformer weight with the adapter directory's
    LoRA folded in (``W + scale * alpha/r * B @ A``, what :func:`fuse_lora` computes) or replaced by its
    fully trained module.  Works one tensor at a time, so a ZeRO-3 load streams it into the partitions
    without the whole model on any rank."""
    root = Path(adapter_dir)
    file = _resolve_lora_file(root)
    state, metadata, prefix = _read_lora(file)
    if prefix:
        state = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
    meta = {k.split(".", 1)[1] if k.startswith("transformer.") else k: v for k, v in (metadata or {}).items()}
    if meta.get("use_dora") or meta.get("rank_pattern") or meta.get("alpha_pattern"):
        raise CheckpointError(file, "a DoRA or per-layer-rank adapter cannot be merged while loading",
                              "bake it: cinecomp models bake-lora --pipeline BASE --lora DIR --out DIR")
    pairs = {}
    for key, a in state.items():
        if ".lora_A." in key:
            layer = key.split(".lora_A.")[0]
            b = state.get(key.replace(".lora_A.", ".lora_B."))
            if b is None:
                raise CheckpointError(file, f"{layer} has lora_A but no lora_B", "re-export the adapter")
            r = a.shape[0]
            alpha = float(meta.get("lora_alpha", r))
            factor = alpha / (r ** 0.5 if meta.get("use_rslora") else r)
            pairs[layer + ".weight"] = (a.float(), b.float(), factor * scale)
    trained = {}
    if (root / TRAINED_MODULES_NAME).is_file():
        from safetensors.torch import load_file

        try:
            trained = load_file(str(root / TRAINED_MODULES_NAME))
        except Exception as exc:
            raise CheckpointError(root / TRAINED_MODULES_NAME, f"cannot read the trained modules ({exc})",
                                  "re-export the fine-tune")
    used = set()

    def merge(name: str, tensor: torch.Tensor) -> torch.Tensor:
        if name in trained:
            used.add(name)
            return _fitting(trained[name], tensor, name, root / TRAINED_MODULES_NAME)
        if name in pairs:
            used.add(name)
            a, b, factor = pairs[name]
            return _fitting(tensor.float() + factor * (b @ a), tensor, name, file)
        return tensor

    merge.expected = set(pairs) | set(trained)  # every one must be met (else the adapter is another model's)
    merge.used = used
    return merge


def _fitting(new: torch.Tensor, old: torch.Tensor, name: str, file: Path) -> torch.Tensor:
    if tuple(new.shape) != tuple(old.shape):
        raise CheckpointError(file, f"{name} is {tuple(new.shape)} in the fine-tune, {tuple(old.shape)} in the base",
                              "point base_model.json at the pipeline the adapter was trained on")
    return new.to(old.dtype)


def check_merged(merge, adapter_dir) -> None:
    """After a merge: every adapter weight met a layer of the base (else it is another model's)."""
    missing = sorted(merge.expected - merge.used)
    if missing:
        raise CheckpointError(Path(adapter_dir), f"{len(missing)} fine-tuned weight(s) have no layer in the base "
                              f"transformer, e.g. {missing[0]}", "point base_model.json at the pipeline the adapter "
                              "was trained on")


@torch.no_grad()
def apply_adapter_dir(transformer, adapter_dir: str | os.PathLike) -> None:
    """Fold an adapter directory into a loaded (whole) transformer's weights, in place."""
    merge = adapter_merge(adapter_dir)
    for name, p in transformer.named_parameters():
        p.copy_(merge(name, p.detach()))
    check_merged(merge, adapter_dir)
