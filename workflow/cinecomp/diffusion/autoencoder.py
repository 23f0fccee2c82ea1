"""SpaceToDepthVAE: an invertible, weight-free autoencoder behind ``AutoencoderKLWan``'s interface.

A small trained VAE loses most of a plate's detail (the shipped proof VAE reconstructs at 17 dB), so a
model behind it cannot beat a comp that keeps every pixel, however good its transformer. This one
loses nothing: it is the tri-mask folding of :mod:`cinecomp.diffusion.conditioning` applied to the
RGB video. Every (4 frames x 8 x 8 pixels x 3 channels) block becomes the 768 channels of one latent
cell, Wan's causal grouping kept (latent frame 0 is pixel frame 0 alone, repeated four times; latent
frame k >= 1 is pixel frames 4k-3..4k), so ``decode(encode(x)) == x`` bit for bit and the pipeline,
the windows and the mask folding see Wan's (4, 8) compression unchanged.

Interface (what the pipeline, training and the checks read): ``encode(x).latent_dist.mode()`` /
``.sample()`` (deterministic: no noise), ``decode(z).sample`` (or a tuple with ``return_dict=False``),
``config.z_dim`` (768), ``config.scale_factor_temporal`` / ``scale_factor_spatial`` (4, 8),
``config.latents_mean`` / ``latents_std`` (0 and 1 per channel: the pipeline's normalisation is then
exact). It saves and loads with ``save_pretrained`` / ``from_pretrained`` from a local directory like
any diffusers model (one placeholder parameter, so the pipeline can ask it for its device and dtype).

Video is (B, 3, 4n+1, H, W) with H, W multiples of 8; anything else is refused with the sizes to
crop or pad to (the pipeline pads to multiples of 16 before it gets here).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKLOutput
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_utils import ModelMixin

from .conditioning import fold_masks, folded_mask_channels, unfold_masks
from .errors import DiffusionInputError

RGB = 3


class SpaceToDepthVAE(ModelMixin, ConfigMixin):
    r"""Lossless pixel-unshuffle autoencoder with ``AutoencoderKLWan``'s interface (module doc).

    Args:
        scale_factor_temporal (`int`, defaults to 4): pixel frames per latent frame (after the first).
        scale_factor_spatial (`int`, defaults to 8): pixels per latent cell along each axis.
        z_dim (`int`, *optional*): ``3 * temporal * spatial**2`` (768); checked when given.
    """

    @register_to_config
    def __init__(self, scale_factor_temporal: int = 4, scale_factor_spatial: int = 8, z_dim: int | None = None,
                 latents_mean: list[float] | None = None, latents_std: list[float] | None = None):
        super().__init__()
        if scale_factor_temporal < 1 or scale_factor_spatial < 1:
            raise ValueError(f"scale factors must be >= 1, got ({scale_factor_temporal}, {scale_factor_spatial})")
        derived = folded_mask_channels(RGB, scale_factor_temporal, scale_factor_spatial)
        if z_dim is not None and z_dim != derived:
            raise ValueError(f"z_dim={z_dim} does not match 3 x {scale_factor_temporal} x {scale_factor_spatial}^2 "
                             f"= {derived}: a space-to-depth latent holds every pixel")
        for name, value, want in (("latents_mean", latents_mean, 0.0), ("latents_std", latents_std, 1.0)):
            if value is not None and (len(value) != derived or any(v != want for v in value)):
                raise ValueError(f"{name} must be {derived} x {want} (the latent is the pixels themselves)")
        self.register_to_config(z_dim=derived, latents_mean=[0.0] * derived, latents_std=[1.0] * derived)
        self.anchor = nn.Parameter(torch.zeros(1), requires_grad=False)  # the module's device and dtype

    def _check(self, video: torch.Tensor) -> None:
        t, s = self.config.scale_factor_temporal, self.config.scale_factor_spatial
        if video.ndim != 5 or video.shape[1] != RGB:
            raise DiffusionInputError(f"SpaceToDepthVAE encodes (B, 3, T, H, W) video, got shape {tuple(video.shape)}")
        n, h, w = video.shape[2:]
        if (n - 1) % t or h % s or w % s:
            lo, hi = (n - 1) // t * t + 1, -(-(n - 1) // t) * t + 1
            raise DiffusionInputError(
                f"SpaceToDepthVAE: video of {n} frames x {w}x{h} cannot be encoded without loss: it needs "
                f"{t}n+1 frames and width/height multiples of {s} (fix: trim to {lo} or pad to {hi} frames; crop "
                f"to {w // s * s}x{h // s * s} or pad to {-(-w // s) * s}x{-(-h // s) * s})")

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        self._check(x)
        z = fold_masks(x, self.config.scale_factor_temporal, self.config.scale_factor_spatial)
        dist = DiagonalGaussianDistribution(torch.cat([z, torch.zeros_like(z)], dim=1), deterministic=True)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        if z.ndim != 5 or z.shape[1] != self.config.z_dim:
            raise DiffusionInputError(f"SpaceToDepthVAE decodes (B, {self.config.z_dim}, F, h, w) latents, got "
                                      f"shape {tuple(z.shape)}")
        x = unfold_masks(z, RGB, self.config.scale_factor_temporal, self.config.scale_factor_spatial)
        return DecoderOutput(sample=x) if return_dict else (x,)

    def forward(self, sample: torch.Tensor, return_dict: bool = True):
        return self.decode(self.encode(sample).latent_dist.mode(), return_dict=return_dict)


def load_vae(vae_dir):
    """The autoencoder saved in ``vae_dir``, of the class its ``config.json`` names (local files only).
    Any other class is an error naming the file and the classes cinecomp runs with."""
    import json
    from pathlib import Path

    import diffusers

    from .errors import CheckpointError
    from ._io import VAE_CLASSES

    cfg = Path(vae_dir) / "config.json"
    if not cfg.is_file():
        raise CheckpointError(cfg, "VAE config is missing", "copy the pipeline's vae/ folder completely")
    name = json.loads(cfg.read_text()).get("_class_name")
    if name not in VAE_CLASSES:
        raise CheckpointError(cfg, f"VAE {name!r} is not one cinecomp runs with", f"use one of {', '.join(VAE_CLASSES)}")
    cls = SpaceToDepthVAE if name == "SpaceToDepthVAE" else getattr(diffusers, name)
    return cls.from_pretrained(str(vae_dir), local_files_only=True)
