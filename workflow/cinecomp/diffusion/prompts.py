"""Prompt embeddings: encode once with UMT5 (as Wan does), cache to safetensors, load at inference.

The diffusion rule never loads the text encoder (UMT5-XXL is ~11 GB): a separate step runs
:func:`encode_prompts` for every prompt of a show, and the pipeline gets the cached tensors.

Embeddings follow diffusers' Wan pipeline exactly: tokenised to ``max_sequence_length`` (512 for Wan),
encoded with the attention mask, the padded positions set to zero.  The cache file holds one tensor
``embeds`` (N, L, D) and its metadata (format, prompts as JSON, max_sequence_length, text encoder path and
fingerprint); asking again for prompts already cached with the same encoder computes nothing.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import Sequence

import torch

from ..atomic import atomic_path
from .checks import model_fingerprint, resolve_text_encoder_dirs
from .errors import CheckpointError, DiffusionInputError

CACHE_FORMAT = "cinecomp-prompt-embeds/1"


def clean_prompt(text: str) -> str:
    """Wan's prompt cleaning without ftfy: unescape HTML entities, collapse whitespace."""
    text = html.unescape(html.unescape(text))
    return re.sub(r"\s+", " ", text).strip()


def _read_cache(path: Path) -> tuple[dict, torch.Tensor]:
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError(path, "prompt embedding cache does not exist", "run encode_prompts first")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            embeds = f.get_tensor("embeds")
        if meta.get("format") != CACHE_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {CACHE_FORMAT!r}")
        meta["prompts"] = json.loads(meta["prompts"])
        meta["max_sequence_length"] = int(meta["max_sequence_length"])
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(
            path, f"not a cinecomp prompt embedding cache ({exc})", "delete it and re-run encode_prompts"
        )
    if embeds.shape[0] != len(meta["prompts"]):
        raise CheckpointError(path, "prompt list and embeddings disagree", "delete it and re-run encode_prompts")
    return meta, embeds


def _t5_embeds(text_encoder, tokenizer, prompts: list[str], max_sequence_length: int) -> torch.Tensor:
    inputs = tokenizer(
        [clean_prompt(p) for p in prompts],
        padding="max_length",
        max_length=max_sequence_length,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    mask = inputs.attention_mask
    seq_lens = mask.gt(0).sum(dim=1).long()
    hidden = text_encoder(inputs.input_ids, mask).last_hidden_state.float()
    out = torch.zeros_like(hidden)
    for i, n in enumerate(seq_lens.tolist()):
        out[i, :n] = hidden[i, :n]
    return out


def encode_prompts(
    text_encoder_dir: str | os.PathLike,
    prompts: Sequence[str],
    out_path: str | os.PathLike,
    *,
    tokenizer_dir: str | os.PathLike | None = None,
    max_sequence_length: int = 512,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Encode ``prompts`` with a local UMT5 encoder and cache them in ``out_path`` (safetensors).

    An existing cache made by the same encoder at the same length is reused: only prompts it lacks are
    encoded, and nothing is written when all are there.  Returns ``out_path``.
    """
    prompts = list(dict.fromkeys(prompts))  # unique, order kept
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise DiffusionInputError("prompts must be a non-empty list of strings")
    out_path = Path(out_path)
    te_dir, tok_dir = resolve_text_encoder_dirs(text_encoder_dir, tokenizer_dir)
    fp = model_fingerprint(te_dir)

    cached_prompts, cached = [], None
    if out_path.is_file():
        try:
            meta, embeds = _read_cache(out_path)
        except CheckpointError:
            meta, embeds = None, None  # unreadable cache: rebuild it
        if meta and meta.get("text_encoder_fingerprint") == fp and meta["max_sequence_length"] == max_sequence_length:
            cached_prompts, cached = meta["prompts"], embeds
    todo = [p for p in prompts if p not in cached_prompts]
    if not todo:
        return out_path

    from transformers import AutoTokenizer, UMT5EncoderModel

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
        text_encoder = UMT5EncoderModel.from_pretrained(str(te_dir), local_files_only=True).eval()
    except (OSError, ValueError) as exc:
        raise CheckpointError(te_dir, f"cannot load the UMT5 text encoder/tokenizer ({exc})", "check the directory")
    with torch.no_grad():
        new = _t5_embeds(text_encoder, tokenizer, todo, max_sequence_length).to(dtype)
    all_prompts = cached_prompts + todo
    embeds = new if cached is None else torch.cat([cached.to(dtype), new], dim=0)

    from safetensors.torch import save_file

    meta = {
        "format": CACHE_FORMAT,
        "prompts": json.dumps(all_prompts),
        "max_sequence_length": str(max_sequence_length),
        "text_encoder": str(te_dir.resolve()),
        "text_encoder_fingerprint": fp,
    }
    with atomic_path(out_path) as tmp:
        save_file({"embeds": embeds.contiguous()}, str(tmp), metadata=meta)
    return out_path


def load_prompt_embeds(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``{prompt: (1, L, D) tensor}`` from a cache written by :func:`encode_prompts`."""
    meta, embeds = _read_cache(Path(path))
    return {p: embeds[i : i + 1].clone() for i, p in enumerate(meta["prompts"])}
