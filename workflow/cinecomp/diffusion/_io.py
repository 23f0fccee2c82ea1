"""Small file helpers for model directories: atomic directory writes, weight discovery."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..atomic import atomic_dir  # noqa: F401 (model directories are written whole)
from .errors import CheckpointError

# The autoencoders a CinecompPipeline runs with (Wan's, or the lossless space-to-depth one).
VAE_CLASSES = ("AutoencoderKLWan", "SpaceToDepthVAE")

# The flow-matching schedulers the pipeline samples with (Wan ships UniPC; the tiny models use Euler).
SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "UniPCMultistepScheduler")

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # a fine-tune's adapter file (diffusion.lora)

WEIGHT_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.bin.index.json",
)


def read_config(model_dir: Path, what: str) -> dict:
    """The ``config.json`` of a diffusers model directory, or a :class:`CheckpointError` naming it."""
    if not model_dir.exists():
        raise CheckpointError(model_dir, f"{what} directory does not exist", "check the path")
    if not model_dir.is_dir():
        raise CheckpointError(model_dir, f"{what} path is not a directory", "give the diffusers model directory")
    cfg_path = model_dir / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(
            cfg_path, f"{what} has no config.json", "give a diffusers-format model directory (save_pretrained)"
        )
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(cfg_path, f"config.json is not valid JSON ({exc})", "re-download or re-save it")
    if not isinstance(cfg, dict):
        raise CheckpointError(cfg_path, "config.json is not a JSON object")
    return cfg


def load_weights(model_dir: Path) -> dict:
    """All tensors of a diffusers model directory (single file or sharded; safetensors or weights-only .bin)."""
    import torch
    from safetensors.torch import load_file

    def _load(file: Path) -> dict:
        if not file.is_file():
            raise CheckpointError(file, "weight file listed in the index is missing", "re-download the checkpoint")
        try:
            if file.suffix == ".safetensors":
                return load_file(str(file), device="cpu")
            return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except CheckpointError:
            raise
        except Exception as exc:  # damaged / truncated / git-lfs pointer
            raise CheckpointError(file, f"cannot read weights ({type(exc).__name__}: {exc})", "re-download it")

    for name in WEIGHT_NAMES:
        file = model_dir / name
        if not file.is_file():
            continue
        if name.endswith(".index.json"):
            try:
                weight_map = json.loads(file.read_text())["weight_map"]
            except (OSError, ValueError, KeyError) as exc:
                raise CheckpointError(file, f"shard index is unreadable ({exc})", "re-download the checkpoint")
            state = {}
            for shard in sorted(set(weight_map.values())):
                state.update(_load(model_dir / shard))
            return state
        return _load(file)
    raise CheckpointError(
        model_dir,
        "no weights found (expected one of " + ", ".join(WEIGHT_NAMES) + ")",
        "give a diffusers-format model directory with its weights",
    )


class NpyFrames:
    """The frames of a ``.npy`` array (time first), read from disk only when sliced.

    Unlike ``np.load(mmap_mode="r")`` nothing stays mapped into the process after a slice is used, so
    a rank's resident memory holds the window it renders, not every frame it has read so far.
    """

    def __init__(self, path: str | os.PathLike):
        import numpy as np

        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in readers:
                raise CheckpointError(self.path, f".npy format {version} is not supported", "save it with np.save")
            shape, fortran, dtype = readers[version](fh)
            self.offset = fh.tell()
        if fortran:
            raise CheckpointError(self.path, "is a Fortran-ordered array", "save it C-ordered (np.save)")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)
        self.frame_items = int(np.prod(self.shape[1:], dtype=np.int64))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        import numpy as np

        if isinstance(index, (int, np.integer)):
            return self[int(index) : int(index) + 1][0]
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("NpyFrames supports a frame index or a contiguous slice of frames")
        start, stop, _ = index.indices(self.shape[0])
        count = max(0, stop - start)
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + start * self.frame_items * self.dtype.itemsize)
            data = np.fromfile(fh, dtype=self.dtype, count=count * self.frame_items)
        return data.reshape((count, *self.shape[1:]))

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def vae_identity(vae_dir: str | os.PathLike) -> dict:
    """What stored latents are checked against: the VAE's class, a hash of its config (without
    diffusers' bookkeeping keys) and a hash of its weight files' bytes (one architecture, other
    weights: other latents). Read from disk only (no model is built)."""
    import hashlib

    root = Path(vae_dir)
    cfg = read_config(root, "VAE")
    weights = hashlib.sha256()
    files = sorted(p for p in root.iterdir() if p.is_file() and p.name.startswith("diffusion_pytorch_model"))
    if not files:
        raise CheckpointError(root, "VAE has no weights", "copy the pipeline's vae/ folder completely")
    for f in files:
        weights.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 24), b""):
                weights.update(block)
    return {"class": cfg.get("_class_name"),
            "config_sha256": config_digest(cfg),
            "weights_sha256": weights.hexdigest()[:16]}


def config_digest(cfg: dict) -> str:
    """A model config's hash, without diffusers' bookkeeping keys (``_class_name`` is kept apart)."""
    import hashlib

    plain = {k: v for k, v in cfg.items() if not k.startswith("_")}
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]
