"""VAE latents stored in the shards, so training does not encode five videos per step through the VAE.

``cinecomp train --config train.yaml --encode-latents`` (:func:`encode_shards`) encodes, once, every
sample's videos with the VAE of the config's ``model.pipeline`` and writes them into the shards as
``lat_<video>`` members (float32: the encoder's output bit for bit), with ``meta["latents"]`` naming the
VAE (:func:`~cinecomp.diffusion._io.vae_identity`: class, config hash, weights hash) and the depth range:

* ``lat_target_rgb`` / ``lat_target_depth``: the clean target (``x0``);
* ``lat_character_rgb``, ``lat_environment_rgb``, ``lat_character_depth``, ``lat_harmonize_rgb``: the
  conditioning, as :meth:`~cinecomp.diffusion.pipeline.CinecompPipeline.conditioning_latents` encodes it;
* ``..._noprop`` variants of the plate, environment and harmonize's comp for samples with a prop: prop
  replacement (a ``prop`` reference drawn in training) removes the prop from those pixels *before* the
  VAE, which the latent space cannot do exactly (Wan's encoder is not linear), so both variants are
  encoded.  Reference images (one still each) are still encoded per step: they are drawn from any frame.

Training (:func:`stored_for`) uses them when they match the model's VAE, encodes a sample that has none
(and says how many at the start), and refuses latents of another VAE (:func:`latent_problems`, at
config check, before any model is built).  Every random draw of a step is the same with or without them.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np

from ..io.dataset import LATENT_PREFIX, DatasetError, check_sample, iter_samples, read_index

TARGET_DEPTH_RANGE = (0.1, 1000.0)  # the target's depth encoding (make_example)
NOPROP = "_noprop"
PROP_VIDEOS = ("character_rgb", "environment_rgb", "harmonize_rgb")  # what prop replacement edits


def fix_hint(cfg_path) -> str:
    return f"`cinecomp train --config {cfg_path} --encode-latents` re-encodes them with this model's VAE"


def has_prop(sample: dict) -> bool:
    """Whether training may draw a prop reference for the sample (draw_references' own test)."""
    return bool((np.asarray(sample["tri_mask"])[..., 1] > 0.5).any())


def sample_latents(pipe, sample: dict) -> dict:
    """{``lat_<video>``: (z, n+1, h, w) float32} of one sample (module doc)."""
    import torch

    from ..diffusion.conditioning import DEFAULT_DEPTH_FAR, DEFAULT_DEPTH_NEAR

    t, h, w = np.shape(sample["target_rgb"])[:3]
    out = {}
    with torch.no_grad():
        x0 = pipe.encode_context(sample["target_rgb"], sample["target_depth"], TARGET_DEPTH_RANGE, h, w)
        z = x0.shape[1] // 2
        out["target_rgb"], out["target_depth"] = x0[:, :z], x0[:, z:]
        args = (sample["character_rgb"], sample["tri_mask"], sample.get("character_depth"),
                sample["environment_rgb"], sample.get("harmonize_rgb"))
        out.update(pipe.conditioning_latents(*args, replace_prop=False,
                                             depth_range=(DEFAULT_DEPTH_NEAR, DEFAULT_DEPTH_FAR)))
        if has_prop(sample):
            cut = pipe.conditioning_latents(*args, replace_prop=True, depth_range=(DEFAULT_DEPTH_NEAR, DEFAULT_DEPTH_FAR))
            out.update({k + NOPROP: v for k, v in cut.items() if k in PROP_VIDEOS})
    return {LATENT_PREFIX + k: v[0].float().cpu().numpy() for k, v in out.items()}


def latents_meta(identity: dict) -> dict:
    from ..diffusion.conditioning import DEFAULT_DEPTH_FAR, DEFAULT_DEPTH_NEAR

    return {"vae": identity, "depth_range": [DEFAULT_DEPTH_NEAR, DEFAULT_DEPTH_FAR],
            "target_depth_range": list(TARGET_DEPTH_RANGE)}


def stored_for(sample: dict, identity: dict, replace_prop: bool, where: str = "sample") -> dict | None:
    """The sample's stored latents as training uses them: ``{"target_rgb", "target_depth", "conditioning":
    {video: latent}}`` (the prop-free variants when ``replace_prop``), or None when it has none.  Latents
    of another VAE (or depth encoding) are a :class:`DatasetError`."""
    meta = sample.get("meta", {}).get("latents")
    if not meta or LATENT_PREFIX + "target_rgb" not in sample:
        return None
    problem = mismatch(meta, identity)
    if problem:
        raise DatasetError(f"{where}: {problem}")
    import torch

    def lat(name):
        return torch.from_numpy(np.asarray(sample[LATENT_PREFIX + name], np.float32))[None]

    cond = {}
    for video in ("character_rgb", "character_depth", "environment_rgb", "harmonize_rgb"):
        name = video + NOPROP if replace_prop and video in PROP_VIDEOS else video
        if LATENT_PREFIX + name in sample:
            cond[video] = lat(name)
    return {"target_rgb": lat("target_rgb"), "target_depth": lat("target_depth"), "conditioning": cond}


def mismatch(meta: dict, identity: dict) -> str:
    """Why latents described by ``meta`` (a sample's ``meta["latents"]``) are not this VAE's, or ''."""
    want = latents_meta(identity)
    made = meta.get("vae") or {}
    diff = [k for k in ("class", "config_sha256", "weights_sha256") if made.get(k) != identity.get(k)]
    if diff:
        return (f"stored latents were made by another VAE ({made.get('class')}, config {made.get('config_sha256')}, "
                f"weights {made.get('weights_sha256')}) than the model's ({identity.get('class')}, config "
                f"{identity.get('config_sha256')}, weights {identity.get('weights_sha256')}; differ: {', '.join(diff)})")
    for key in ("depth_range", "target_depth_range"):
        if list(meta.get(key) or []) != want[key]:
            return f"stored latents encode depth over {key}={meta.get(key)}, training over {want[key]}"
    return ""


def latent_problems(shard_files: list[Path], identity: dict, cfg_path) -> tuple[list[str], int, int]:
    """(problems, samples with stored latents, samples) of a dataset, from the samples' meta alone:
    a problem per shard whose latents another VAE made (the first sample named)."""
    problems, stored, total, bad = [], 0, 0, set()
    for shard in shard_files:
        for key, sample in iter_samples([shard], arrays=False):
            total += 1
            meta = sample.get("meta", {}).get("latents")
            if not meta:
                continue
            why = mismatch(meta, identity)
            if why and shard not in bad:
                bad.add(shard)
                problems.append(f"{shard} (sample {key}): {why} (fix: {fix_hint(cfg_path)}, or curate again)")
            stored += not why
    return problems, stored, total


def vae_pipeline(pipeline_dir):
    """A CinecompPipeline holding the directory's VAE and only the *config* of its transformer (built on
    the meta device: no weights read), enough to encode what training encodes."""
    from accelerate import init_empty_weights

    from ..diffusion._io import read_config
    from ..diffusion.autoencoder import load_vae
    from ..diffusion.pipeline import CinecompPipeline
    from ..diffusion.tiny_models import scheduler_class
    from ..diffusion.transformer import CinecompTransformer3DModel

    root = Path(pipeline_dir)
    with init_empty_weights():
        transformer = CinecompTransformer3DModel.from_config(read_config(root / "transformer", "cinecomp transformer"))
    scheduler = scheduler_class(root / "scheduler").from_pretrained(root / "scheduler")
    return CinecompPipeline(transformer=transformer, vae=load_vae(root / "vae").eval(), scheduler=scheduler)


def encode_shards(shard_dir, pipeline_dir, log=print) -> dict:
    """Write every sample's latents (module doc) into the shards of ``shard_dir``, each shard rewritten
    whole (atomically, its other members byte for byte).  Samples that already hold this VAE's latents
    are kept; another VAE's are replaced.  Returns {"encoded", "kept", "samples"}."""
    from ..atomic import atomic_path
    from ..diffusion._io import vae_identity

    files = read_index(shard_dir)
    identity = vae_identity(Path(pipeline_dir) / "vae")
    meta_out = latents_meta(identity)
    pipe = None
    counts = {"encoded": 0, "kept": 0, "samples": 0}
    for shard in files:
        groups: dict[str, list] = {}
        try:
            with tarfile.open(shard, "r") as tar:
                for m in tar:
                    if m.isfile():
                        groups.setdefault(m.name.split(".", 1)[0], []).append((m.name.split(".", 1)[1],
                                                                                tar.extractfile(m).read()))
        except (tarfile.TarError, OSError) as exc:
            raise DatasetError(f"{shard}: damaged shard ({exc}) (fix: curate again)") from None
        out: dict[str, dict[str, bytes]] = {}
        changed = False
        for key, members in groups.items():
            raw = {f: d for f, d in members if not f.startswith(LATENT_PREFIX)}
            meta = json.loads(raw.get("meta.json", b"{}"))
            old = {f: d for f, d in members if f.startswith(LATENT_PREFIX)}
            counts["samples"] += 1
            if meta.get("latents") and not mismatch(meta["latents"], identity) and old:
                out[key] = {**raw, **old}
                counts["kept"] += 1
                continue
            sample = {f[:-4]: np.load(io.BytesIO(d), allow_pickle=False).astype(np.float32)
                      for f, d in raw.items() if f.endswith(".npy")}
            sample["meta"] = meta
            check_sample(sample, f"{shard} sample {key}")
            if pipe is None:  # built only when a sample needs encoding
                pipe = vae_pipeline(pipeline_dir)
            lat = sample_latents(pipe, sample)
            meta["latents"] = meta_out
            raw["meta.json"] = json.dumps(meta).encode()
            for name, arr in lat.items():
                buf = io.BytesIO()
                np.save(buf, arr, allow_pickle=False)
                raw[f"{name}.npy"] = buf.getvalue()
            out[key] = raw
            counts["encoded"] += 1
            changed = True
        if not changed:
            continue
        with atomic_path(shard) as tmp:
            with tarfile.open(tmp, "w") as tar:
                for key, members in out.items():
                    for field, data in members.items():
                        info = tarfile.TarInfo(f"{key}.{field}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
        log(f"{shard}: latents of {len(out)} sample(s) written ({identity['class']})")
    return counts
