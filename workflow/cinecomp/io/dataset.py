"""Training samples for the compositing model, written as tar shards a loader streams.

A *sample* is one training window of ``T`` (4n+1) frames of ``H`` x ``W`` (multiples of 16), arrays in
the model's encoding (display-referred, [0, 1]), depth in scene units (``inf`` where unknown, e.g. sky):

===================  =================  =====================================================================
field                shape, dtype       meaning
===================  =================  =====================================================================
``target_rgb``       (T, H, W, 3) f16   the true composite: real footage, or the renderer's comp
``target_depth``     (T, H, W) f16      its depth
``character_rgb``    (T, H, W, 3) f16   the keyed character (premultiplied), de-harmonized: the model's input
``environment_rgb``  (T, H, W, 3) f16   the clean environment plate (character and its shadow removed)
``tri_mask``         (T, H, W, 3) f16   character, prop, environment masks
``effect_mask``      (T, H, W) f16      where the character changes the environment (shadow, contact, moved
                                        props): weighs more in the loss
``character_depth``  (T, H, W) f16      optional: the character's depth
``meta``             JSON               ``prompt`` (str), ``clip``, ``source`` (``real`` | ``synthetic``),
                                        ``first_frame``, and whatever curation measured
``lat_<video>``      (z, n+1, h, w) f32  optional: the VAE latents of a video (``cinecomp train --encode-latents``,
                                        :mod:`cinecomp.train.latents`); ``meta["latents"]`` names the VAE
===================  =================  =====================================================================

A shard is an uncompressed tar (WebDataset's layout: members ``<key>.<field>.npy`` and
``<key>.meta.json``, a sample's members together), written whole or not at all; ``index.json`` beside
the shards lists them with their sample counts.  :func:`iter_samples` reads one sample at a time, so
no dataset is ever held in memory.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import CinecompError
from ..atomic import atomic_path

REQUIRED = ("target_rgb", "target_depth", "character_rgb", "environment_rgb", "tri_mask", "effect_mask")
OPTIONAL = ("character_depth", "harmonize_rgb")  # harmonize_rgb: harmonize's comp (a harmonize-base model's input)
LATENT_PREFIX = "lat_"  # lat_<video>: stored VAE latents, float32 (training's encoder output, bit for bit)
INDEX = "index.json"
SAMPLE_COLOURSPACE = "sRGB Encoded Rec.709 (sRGB)"  # the OCIO colourspace of the samples' pictures (the model's encoding)


class DatasetError(CinecompError, ValueError):
    """A sample or a shard directory that cannot be used, with the file and the fix."""


def check_sample(sample: dict, where: str = "sample") -> None:
    """Raise :class:`DatasetError` unless ``sample`` has every required field with consistent shapes."""
    missing = [k for k in REQUIRED if k not in sample]
    if missing:
        raise DatasetError(f"{where}: missing {', '.join(missing)}")
    t, h, w = np.shape(sample["target_rgb"])[:3]
    if (t - 1) % 4 or h % 16 or w % 16:
        raise DatasetError(f"{where}: {t} frames of {w}x{h}; samples need 4n+1 frames and sizes in multiples of 16")
    for k in REQUIRED + OPTIONAL:
        if k not in sample:
            continue
        shape = np.shape(sample[k])
        want = (t, h, w, 3) if k in ("target_rgb", "character_rgb", "environment_rgb", "tri_mask", "harmonize_rgb") else (t, h, w)
        if shape != want:
            raise DatasetError(f"{where}: {k} has shape {shape}, expected {want}")
        arr = np.asarray(sample[k], np.float32)
        finite = np.isfinite(arr) | (np.isposinf(arr) if "depth" in k else False)
        if not finite.all():
            raise DatasetError(f"{where}: {k} has NaN (or -inf) values")
    meta = sample.get("meta", {})
    if not isinstance(meta, dict) or not isinstance(meta.get("prompt", ""), str):
        raise DatasetError(f"{where}: meta must be a JSON object with a string prompt")
    latents = [k for k in sample if k.startswith(LATENT_PREFIX)]
    if latents and not isinstance(meta.get("latents"), dict):
        raise DatasetError(f"{where}: has {', '.join(latents)} but no meta.latents naming the VAE that made them")
    for k in latents:
        arr = np.asarray(sample[k])
        if arr.ndim != 4 or not np.isfinite(arr).all():
            raise DatasetError(f"{where}: {k} must be finite (z, frames, h, w) latents, got shape {arr.shape}")


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


class ShardWriter:
    """Write samples into ``out_dir/shard-000000.tar``, ``...-000001.tar``, ``samples_per_shard`` each;
    :meth:`close` writes ``index.json``.  Use as a context manager."""

    def __init__(self, out_dir: str | os.PathLike, samples_per_shard: int = 8, prefix: str = "shard"):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.per_shard = int(samples_per_shard)
        self.prefix = prefix
        self.pending: list[tuple[str, dict]] = []
        self.shards: list[dict] = []

    def write(self, key: str, sample: dict) -> None:
        check_sample(sample, f"sample {key}")
        if "." in key or "/" in key:
            raise DatasetError(f"sample key {key!r} may not contain '.' or '/'")
        self.pending.append((key, sample))
        if len(self.pending) >= self.per_shard:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        name = f"{self.prefix}-{len(self.shards):06d}.tar"
        with atomic_path(self.out_dir / name) as tmp:
            with tarfile.open(tmp, "w") as tar:
                for key, sample in self.pending:
                    # a plain half cast, not exr.half_channels: RGB is in [0, 1] and depth's +inf means unknown
                    members = {f"{k}.npy": _npy_bytes(np.asarray(sample[k], np.float16))
                               for k in REQUIRED + OPTIONAL if k in sample}
                    members.update({f"{k}.npy": _npy_bytes(np.asarray(sample[k], np.float32))
                                    for k in sample if k.startswith(LATENT_PREFIX)})
                    members["meta.json"] = json.dumps(sample.get("meta", {})).encode()
                    for field, data in members.items():
                        info = tarfile.TarInfo(f"{key}.{field}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
        self.shards.append({"file": name, "samples": len(self.pending), "keys": [k for k, _ in self.pending]})
        self.pending = []

    def close(self) -> list[dict]:
        self._flush()
        with atomic_path(self.out_dir / INDEX) as tmp:
            Path(tmp).write_text(json.dumps({"shards": self.shards}, indent=1))
        return self.shards

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()


def read_index(shard_dir: str | os.PathLike) -> list[Path]:
    """The shard files of a dataset directory (from its ``index.json``), checked to exist and hold samples."""
    root = Path(shard_dir)
    try:
        index = json.loads((root / INDEX).read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{root / INDEX}: no readable shard index ({exc}) (fix: run cinecomp curate, "
                           "or point the training config's data.shards at a curated dataset)") from None
    shards = [root / s["file"] for s in index.get("shards", []) if int(s.get("samples", 0)) > 0]
    if not shards:
        raise DatasetError(f"{root}: the dataset has no accepted samples (see the curation manifest for why "
                           "clips were rejected)")
    absent = [str(p) for p in shards if not p.is_file()]
    if absent:
        raise DatasetError(f"{root}: shard files listed in {INDEX} are missing: {', '.join(absent[:3])}")
    return shards


def iter_samples(shards: Iterable[str | os.PathLike], decode=None, arrays: bool = True) -> Iterator[tuple[str, dict | None]]:
    """``(key, sample)`` one at a time from tar shards (float32 arrays, ``meta`` a dict). ``decode(i)``
    (i: the sample's running number from 0) False: that sample is ``None``, its members never read;
    ``arrays=False``: samples hold ``meta`` only (no array is read)."""
    n = 0
    for shard in shards:
        current, sample = None, {}
        try:
            with tarfile.open(shard, "r") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, field = member.name.split(".", 1)
                    if key != current:
                        if current is not None:
                            yield current, sample
                            n += 1
                        current = key
                        sample = {} if decode is None or decode(n) else None
                    if sample is None or (field != "meta.json" and not arrays):
                        continue
                    data = tar.extractfile(member).read()
                    if field == "meta.json":
                        sample["meta"] = json.loads(data)
                    elif field.endswith(".npy"):
                        sample[field[:-4]] = np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32)
        except (tarfile.TarError, OSError, ValueError) as exc:
            raise DatasetError(f"{shard}: damaged shard ({exc}) (fix: curate again)") from None
        if current is not None:
            yield current, sample
            n += 1
