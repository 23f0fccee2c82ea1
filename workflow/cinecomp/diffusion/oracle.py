"""Stand-ins with known answers for checking the sampling machinery without a trained model.

Used by the tests and ``bench/diffusion.py`` to measure what the engine itself does to a shot (window
seams, context, noise, blending), separately from what a model would learn:

* :class:`PoolVAE` -- an exact, weight-free "VAE" with Wan's layout: latent frame 0 is pixel frame 0,
  latent frame k >= 1 the mean of pixel frames 4k-3..4k, each latent cell the mean of 8x8 pixels; the
  decoder repeats them back.  Flat colours survive a round trip exactly.
* :func:`colour_oracle` -- a transformer ``forward`` that behaves like a model that holds a colour: with
  clean frames (context or references at timestep 0) it continues their mean colour; without them it
  "synthesises" a colour from the noise it starts from, as a real model samples a new environment from
  new noise.  It returns the exact flow-matching velocity towards that colour.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin


class _Dist:
    def __init__(self, mean):
        self.mean = mean

    def mode(self):
        return self.mean


class _Encoded:
    def __init__(self, mean):
        self.latent_dist = _Dist(mean)


class PoolVAE(ModelMixin, ConfigMixin):
    """Average-pool encoder / repeat decoder with AutoencoderKLWan's interface and compression (4, 8)."""

    @register_to_config
    def __init__(self, z_dim: int = 4, scale_factor_temporal: int = 4, scale_factor_spatial: int = 8):
        super().__init__()
        self.register_to_config(latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim)
        self.anchor = nn.Parameter(torch.zeros(1), requires_grad=False)  # gives the module a device/dtype

    def encode(self, video: torch.Tensor):
        t, s = self.config.scale_factor_temporal, self.config.scale_factor_spatial
        first, rest = video[:, :, :1], video[:, :, 1:]
        b, c, n, h, w = rest.shape
        groups = rest.reshape(b, c, n // t, t, h, w).mean(dim=3) if n else rest
        x = torch.cat([first, groups], dim=2)
        x = nn.functional.avg_pool3d(x, (1, s, s))
        pad = self.config.z_dim - x.shape[1]
        x = torch.cat([x, x.mean(dim=1, keepdim=True).expand(-1, pad, -1, -1, -1)], dim=1) if pad > 0 else x
        return _Encoded(x[:, : self.config.z_dim])

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        t, s = self.config.scale_factor_temporal, self.config.scale_factor_spatial
        x = z[:, :3]
        x = torch.cat([x[:, :, :1], x[:, :, 1:].repeat_interleave(t, dim=2)], dim=2)
        x = x.repeat_interleave(s, dim=3).repeat_interleave(s, dim=4)
        return (x,) if not return_dict else {"sample": x}


def colour_oracle(channels: int, gain: float = 4.0):
    """A ``forward`` for :class:`CinecompTransformer3DModel` holding one colour per window (see the module
    doc).  ``channels`` = rgb + depth latent channels (2z)."""
    state = {}

    def forward(hidden_states, timestep, encoder_hidden_states, attention_kwargs=None, return_dict=True):
        xt = hidden_states[:, :channels].float()
        frames = xt.shape[2]
        per_token = timestep.ndim == 2
        t = timestep.float().amax(dim=1) if per_token else timestep.float()
        sigma = (t / 1000.0).view(-1, 1, 1, 1, 1)
        clean = 0
        if per_token:  # tokens at timestep 0 are the clean leading frames
            per_frame = timestep.shape[1] // frames
            clean = int((timestep[0].view(frames, per_frame) == 0).all(dim=1).sum())
        if clean:
            colour = xt[:1, :, :clean].mean(dim=(2, 3, 4), keepdim=True)
        else:
            if float(sigma.max()) >= 0.999 or "colour" not in state:  # first step: pure noise
                state["colour"] = torch.tanh(gain * xt[:1].mean(dim=(2, 3, 4), keepdim=True)) * 0.5
            colour = state["colour"]
        v = (xt - colour) / sigma
        v[:, :, :clean] = 0.0
        return (v,) if not return_dict else {"sample": v}

    return forward
