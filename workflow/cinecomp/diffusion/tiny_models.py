"""Model configs: the Wan 2.1 sizes for reference and a TINY random set for tests and the demo.

``make_tiny_models(out_dir, seed)`` writes, all in diffusers/transformers format, nothing downloaded::

    out_dir/
      model_index.json  transformer/  vae/  scheduler/    a CinecompPipeline (random weights)
      wan_transformer/                                   a tiny random WanTransformer3DModel (init_from_wan input)
      text_encoder/  tokenizer/                          a tiny random UMT5EncoderModel + a word-level tokenizer

The tiny transformer has 2 layers of 2 heads x 8 dims; the tiny VAE keeps Wan's 4x temporal and 8x
spatial compression (so masks fold into the same 768 channels) at base_dim 8 with z_dim 4.
``vae="space_to_depth"`` writes the invertible :class:`~cinecomp.diffusion.autoencoder.SpaceToDepthVAE`
(z_dim 768, lossless) instead, with the transformer's latent widths to match; ``harmonize_base=True``
gives the transformer the harmonize-comp input and output parameterisation
(:mod:`cinecomp.diffusion.transformer`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ._io import SCHEDULERS, VAE_CLASSES  # noqa: F401 (the classes a model directory may name)

TINY_LATENT_CHANNELS = 4

TINY_WAN_TRANSFORMER = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=8,
    in_channels=TINY_LATENT_CHANNELS,
    out_channels=TINY_LATENT_CHANNELS,
    text_dim=32,
    freq_dim=16,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=64,
)

TINY_TRANSFORMER = {
    **{k: v for k, v in TINY_WAN_TRANSFORMER.items() if k not in ("in_channels", "out_channels")},
    "rgb_channels": TINY_LATENT_CHANNELS,
    "depth_channels": TINY_LATENT_CHANNELS,
    "cond_channels": 3 * TINY_LATENT_CHANNELS,
    "num_masks": 3,
    "mask_fold": (4, 8),
}

TINY_VAE = dict(
    base_dim=8,
    z_dim=TINY_LATENT_CHANNELS,
    dim_mult=[1, 2, 4, 4],
    num_res_blocks=1,
    attn_scales=[],
    temperal_downsample=[False, True, True],
    latents_mean=[0.0] * TINY_LATENT_CHANNELS,
    latents_std=[1.0] * TINY_LATENT_CHANNELS,
)

# Wan's own inference scheduler settings (flow matching, shift 3.0 for 480p) -- Euler for simplicity
TINY_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0)

TINY_TEXT_ENCODER = dict(
    vocab_size=64,
    d_model=TINY_WAN_TRANSFORMER["text_dim"],
    d_kv=8,
    d_ff=32,
    num_layers=1,
    num_heads=2,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=16,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
)
TINY_MAX_SEQUENCE_LENGTH = 16

TINY_WORDS = (
    "a an the man woman child person walks runs sits stands holds looks turns in on at under near with "
    "forest city street room desert beach night day light shadow sun lamp red blue green chair cup "
    "bag sword table wall floor rain wind warm cold cinematic shot"
).split()

# For reference: Wan 2.1 T2V 1.3B (the 14B has 40 heads, 5120 dims, 40 layers, ffn 13824).
WAN21_1_3B_TRANSFORMER = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=12,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=8960,
    num_layers=30,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
)


def make_tiny_tokenizer(out_dir: str | os.PathLike):
    """A word-level tokenizer (pad 0, eos 1, unk 2) saved with ``PreTrainedTokenizerFast``; built offline."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in TINY_WORDS:
        vocab.setdefault(word, len(vocab))
    if len(vocab) > TINY_TEXT_ENCODER["vocab_size"]:  # pragma: no cover - guarded by the constants
        raise ValueError("tiny vocabulary larger than the tiny text encoder's embedding table")
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=TINY_MAX_SEQUENCE_LENGTH,
    )
    fast.save_pretrained(str(out_dir))
    return fast


VAES = ("wan", "space_to_depth")  # the tiny pipeline's autoencoder: a tiny random Wan VAE, or the lossless one


def tiny_transformer_config(z: int = TINY_LATENT_CHANNELS, harmonize_base: bool = False) -> dict:
    """:data:`TINY_TRANSFORMER` for a VAE of ``z`` latent channels (with the harmonize input or not)."""
    return {**TINY_TRANSFORMER, "rgb_channels": z, "depth_channels": z, "cond_channels": 3 * z,
            "harmonize_base": harmonize_base}


def make_tiny_models(out_dir: str | os.PathLike, seed: int = 0, vae: str = "wan",
                     harmonize_base: bool = False) -> dict[str, Path]:
    """Write a tiny random CinecompPipeline, base Wan transformer, text encoder and tokenizer to ``out_dir``.

    ``vae``: one of :data:`VAES`; ``harmonize_base``: the transformer takes harmonize's comp and
    returns it while untrained. The same seed writes the same weights.  Returns the paths by name (``pipeline``, ``transformer``,
    ``vae``, ``scheduler``, ``wan_transformer``, ``text_encoder``, ``tokenizer``).
    """
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from .autoencoder import SpaceToDepthVAE
    from .errors import DiffusionInputError
    from .pipeline import CinecompPipeline
    from .transformer import CinecompTransformer3DModel

    if vae not in VAES:
        raise DiffusionInputError(f"tiny VAE {vae!r} is not one of {', '.join(VAES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        z = TINY_LATENT_CHANNELS if vae == "wan" else SpaceToDepthVAE().config.z_dim
        transformer = CinecompTransformer3DModel(**tiny_transformer_config(z, harmonize_base)).eval()
        torch.manual_seed(seed + 1)
        vae = (AutoencoderKLWan(**TINY_VAE) if vae == "wan" else SpaceToDepthVAE()).eval()
        torch.manual_seed(seed + 2)
        wan = WanTransformer3DModel(**TINY_WAN_TRANSFORMER).eval()
        torch.manual_seed(seed + 3)
        text_encoder = UMT5EncoderModel(UMT5Config(**TINY_TEXT_ENCODER)).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(**TINY_SCHEDULER)

    pipe = CinecompPipeline(transformer=transformer, vae=vae, scheduler=scheduler)
    pipe.save_pretrained(str(out))
    wan.save_pretrained(str(out / "wan_transformer"))
    text_encoder.save_pretrained(str(out / "text_encoder"))
    make_tiny_tokenizer(out / "tokenizer")
    return {
        "pipeline": out,
        "transformer": out / "transformer",
        "vae": out / "vae",
        "scheduler": out / "scheduler",
        "wan_transformer": out / "wan_transformer",
        "text_encoder": out / "text_encoder",
        "tokenizer": out / "tokenizer",
    }


def make_tiny_wan(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Save a tiny random ``WanTransformer3DModel`` (:data:`TINY_WAN_TRANSFORMER`) to ``out_dir``; returns it.

    The :func:`cinecomp.diffusion.init_from_wan.init_from_wan` input for tests; same seed, same weights.
    """
    import torch
    from diffusers import WanTransformer3DModel

    out = Path(out_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wan = WanTransformer3DModel(**TINY_WAN_TRANSFORMER).eval()
    wan.save_pretrained(str(out))
    return out




def scheduler_class(scheduler_dir):
    """The diffusers scheduler class named by ``scheduler_dir/scheduler_config.json``. Any other class
    is an error naming the file: a silent fallback would sample with a different solver."""
    import json

    import diffusers

    from .errors import CheckpointError

    cfg = Path(scheduler_dir) / "scheduler_config.json"
    if not cfg.is_file():
        raise CheckpointError(cfg, "scheduler config is missing", "copy the pipeline's scheduler/ folder completely")
    name = json.loads(cfg.read_text()).get("_class_name")
    if name not in SCHEDULERS:
        raise CheckpointError(cfg, f"scheduler {name!r} is not one cinecomp samples with",
                              f"use one of {', '.join(SCHEDULERS)}")
    return getattr(diffusers, name)

