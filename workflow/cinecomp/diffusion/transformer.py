"""CinecompTransformer3DModel: a Wan 2.1 diffusion transformer that denoises RGB and depth jointly.

The network is Wan 2.1's (diffusers ``WanTransformerBlock`` stack, 3D RoPE, time/text embedding,
adaptive output norm) with two changes:

* the patch embedding takes the conditioning by channel concatenation (see
  :mod:`cinecomp.diffusion.conditioning` for the layout): ``in_channels = rgb_channels +
  depth_channels + cond_channels + mask_channels + presence_channels``;
* a second output head, ``depth_proj_out``, predicts the depth-latent velocity next to Wan's
  ``proj_out`` (RGB velocity).  Both share the final adaptive norm.  The output is
  ``cat([rgb_velocity, depth_velocity], dim=1)`` with ``out_channels = rgb_channels + depth_channels``.

With ``harmonize_base`` (a model that starts where harmonize ends) the input gains harmonize's comp
latent (``rgb_channels``) and its own presence flag (1 channel) after the presence flags, their
patch-embedding weights zero-initialised, and the RGB output becomes a residual on it: the network's
RGB head ``r`` (zero-initialised) is the difference of the clean RGB latent from harmonize's, so

    x0 = base + r,     velocity v = (x_t - x0) / sigma,     sigma = timestep / 1000

where the base flag is 1 (the head's output is the velocity itself where it is 0, as without the
base).  A flow-matching sampler's clean estimate ``x_t - sigma v`` is then ``base + r``: an untrained
model lands on harmonize's latent, and training (which keeps Wan's velocity target ``noise - x0``)
only has to learn ``x0 - base``, what harmonize gets wrong.  Tokens at timestep 0 (references,
context) get velocity 0: they are held clean anyway.  Depth keeps Wan's velocity head.

Every parameter a Wan 2.1 text-to-video transformer has keeps its name and shape here except
``patch_embedding.weight``, which is wider, so :func:`cinecomp.diffusion.init_from_wan.init_from_wan`
can copy a Wan checkpoint in.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.attention import AttentionMixin
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import (
    WanRotaryPosEmbed,
    WanTimeTextImageEmbedding,
    WanTransformerBlock,
)
from diffusers.utils import apply_lora_scale

from .conditioning import folded_mask_channels

TIMESTEP_SCALE = 1000.0  # timestep = 1000 sigma: the flow-matching convention of the pipeline and training

# config fields shared with diffusers' WanTransformer3DModel (same names, same meaning)
WAN_CONFIG_FIELDS = (
    "patch_size",
    "num_attention_heads",
    "attention_head_dim",
    "text_dim",
    "freq_dim",
    "ffn_dim",
    "num_layers",
    "cross_attn_norm",
    "qk_norm",
    "eps",
    "image_dim",
    "added_kv_proj_dim",
    "rope_max_seq_len",
    "pos_embed_seq_len",
)


class CinecompTransformer3DModel(ModelMixin, ConfigMixin, PeftAdapterMixin, AttentionMixin):
    r"""
    Wan 2.1 transformer for joint RGB + depth video denoising, conditioned by channel concatenation.

    Args (the Wan ones mean what they mean in ``WanTransformer3DModel``):
        patch_size, num_attention_heads, attention_head_dim, text_dim, freq_dim, ffn_dim, num_layers,
        cross_attn_norm, qk_norm, eps, image_dim, added_kv_proj_dim, rope_max_seq_len, pos_embed_seq_len.
        in_channels (`int`, *optional*): total input channels; derived from the four widths below when
            omitted and checked against them when given.
        out_channels (`int`, *optional*): ``rgb_channels + depth_channels``; checked when given.
        rgb_channels (`int`, defaults to 16): noisy RGB latent channels (the VAE's ``z_dim``).
        depth_channels (`int`, defaults to 16): noisy depth latent channels.
        cond_channels (`int`, defaults to 48): latent conditioning channels -- character plate,
            character depth, environment (3 x ``z_dim``).
        num_masks (`int`, defaults to 3): tri-mask channels (character, prop, environment).
        mask_fold (`tuple[int, int]`, defaults to ``(4, 8)``): the VAE's temporal and spatial
            compression; every mask is folded from pixel to latent resolution by it.
        mask_channels (`int`, *optional*): ``num_masks * t * s * s`` (768); checked when given.
        presence_channels (`int`, defaults to 3): one flag per conditioning latent (character plate,
            character depth, environment), 1 where that input is given and 0 where it is absent, so an
            absent input is not mistaken for a grey plate (its latent slot is zero either way).
        harmonize_base (`bool`, defaults to False): take harmonize's comp latent and its presence flag
            as the last ``rgb_channels + 1`` input channels and predict RGB as a residual on it (module
            doc); the new input channels and the RGB head start at zero, so an untrained model returns
            harmonize's frames. Model directories saved before it have no such field: False.
        residual_radius (`int`, defaults to 0): with ``harmonize_base``, the residual ``r`` only within
            this many latent cells (and one latent frame) of the character or the prop (their folded
            masks); farther out the clean estimate is harmonize's exactly, since the environment away
            from the actors is the plate. 0: everywhere.
    """

    _supports_gradient_checkpointing = True
    _skip_layerwise_casting_patterns = ["patch_embedding", "condition_embedder", "norm"]
    _no_split_modules = ["WanTransformerBlock"]
    _keep_in_fp32_modules = ["rope", "time_embedder", "scale_shift_table", "norm1", "norm2", "norm3"]
    _keys_to_ignore_on_load_unexpected = ["norm_added_q"]
    _repeated_blocks = ["WanTransformerBlock"]

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int | None = None,
        out_channels: int | None = None,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        rgb_channels: int = 16,
        depth_channels: int = 16,
        cond_channels: int = 48,
        num_masks: int = 3,
        mask_fold: tuple[int, ...] = (4, 8),
        mask_channels: int | None = None,
        presence_channels: int = 3,
        harmonize_base: bool = False,
        residual_radius: int = 0,
    ) -> None:
        super().__init__()
        if residual_radius < 0 or (residual_radius and not harmonize_base):
            raise ValueError(f"residual_radius={residual_radius}: a radius >= 0, and only with harmonize_base")

        derived_mask = folded_mask_channels(num_masks, int(mask_fold[0]), int(mask_fold[1]))
        if mask_channels is not None and mask_channels != derived_mask:
            raise ValueError(
                f"mask_channels={mask_channels} does not match num_masks={num_masks} folded by {tuple(mask_fold)} "
                f"(= {derived_mask})"
            )
        base = (rgb_channels + 1) if harmonize_base else 0
        derived_in = rgb_channels + depth_channels + cond_channels + derived_mask + presence_channels + base
        if in_channels is not None and in_channels != derived_in:
            raise ValueError(
                f"in_channels={in_channels} does not match rgb {rgb_channels} + depth {depth_channels} + "
                f"cond {cond_channels} + mask {derived_mask} + presence {presence_channels} + harmonize base "
                f"{base} = {derived_in}"
            )
        derived_out = rgb_channels + depth_channels
        if out_channels is not None and out_channels != derived_out:
            raise ValueError(f"out_channels={out_channels} must be rgb_channels + depth_channels = {derived_out}")
        self.register_to_config(in_channels=derived_in, out_channels=derived_out, mask_channels=derived_mask)

        inner_dim = num_attention_heads * attention_head_dim

        # 1. Patch & position embedding
        self.rope = WanRotaryPosEmbed(attention_head_dim, patch_size, rope_max_seq_len)
        self.patch_embedding = nn.Conv3d(derived_in, inner_dim, kernel_size=patch_size, stride=patch_size)

        # 2. Condition embeddings
        self.condition_embedder = WanTimeTextImageEmbedding(
            dim=inner_dim,
            time_freq_dim=freq_dim,
            time_proj_dim=inner_dim * 6,
            text_embed_dim=text_dim,
            image_embed_dim=image_dim,
            pos_embed_seq_len=pos_embed_seq_len,
        )

        # 3. Transformer blocks
        self.blocks = nn.ModuleList(
            [
                WanTransformerBlock(
                    inner_dim, ffn_dim, num_attention_heads, qk_norm, cross_attn_norm, eps, added_kv_proj_dim
                )
                for _ in range(num_layers)
            ]
        )

        # 4. Output norm & projections (RGB head = Wan's proj_out, plus a depth head)
        self.norm_out = FP32LayerNorm(inner_dim, eps, elementwise_affine=False)
        self.proj_out = nn.Linear(inner_dim, rgb_channels * math.prod(patch_size))
        self.depth_proj_out = nn.Linear(inner_dim, depth_channels * math.prod(patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, inner_dim) / inner_dim**0.5)

        self.gradient_checkpointing = False
        if harmonize_base:
            self.zero_harmonize_base()

    def zero_harmonize_base(self) -> None:
        """Zero the harmonize-base input channels and the RGB head: the model returns harmonize's comp."""
        if not self.config.harmonize_base:
            raise ValueError("this transformer has no harmonize input (harmonize_base is false)")
        params = [self.patch_embedding.weight, self.proj_out.weight, self.proj_out.bias]
        gathered = contextlib.nullcontext()
        if any(hasattr(p, "ds_id") for p in params):  # built under ZeRO-3's zero.Init: partitioned
            import deepspeed

            gathered = deepspeed.zero.GatheredParameters(params, modifier_rank=0)
        with gathered, torch.no_grad():
            self.patch_embedding.weight[:, self.base_channel:].zero_()
            self.proj_out.weight.zero_()
            self.proj_out.bias.zero_()

    # ------------------------------------------------------------------------------- helpers
    @property
    def latent_channels(self) -> int:
        return self.config.rgb_channels

    @property
    def base_channel(self) -> int:
        """Index of the first harmonize-base input channel (= the input width without them)."""
        cfg = self.config
        return cfg.in_channels - ((cfg.rgb_channels + 1) if cfg.harmonize_base else 0)

    def _residual_velocity(self, hidden_states, rgb_out, timestep, grid) -> torch.Tensor:
        """RGB velocity ``(x_t - base - r) / sigma`` where the base flag is 1, ``r`` where it is 0, 0 on
        tokens at timestep 0 (module doc)."""
        z, c0 = self.config.rgb_channels, self.base_channel
        x_t = hidden_states[:, :z].float()
        base = hidden_states[:, c0 : c0 + z].float()
        flag = hidden_states[:, c0 + z : c0 + z + 1].float()
        b = hidden_states.shape[0]
        sigma = timestep.float() / TIMESTEP_SCALE
        if sigma.ndim == 2:  # per token -> per latent cell
            p_t, p_h, p_w = self.config.patch_size
            sigma = sigma.view(b, 1, *grid)
            sigma = sigma.repeat_interleave(p_t, 2).repeat_interleave(p_h, 3).repeat_interleave(p_w, 4)
        else:
            sigma = sigma.view(b, 1, 1, 1, 1)
        inv = torch.where(sigma > 0, 1.0 / sigma.clamp_min(1e-12), torch.zeros_like(sigma))
        r = rgb_out.float()
        if self.config.residual_radius:
            r = r * self.actor_zone(hidden_states)
        return (flag * (x_t - base - r) * inv + (1.0 - flag) * r).to(rgb_out.dtype)

    def actor_zone(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, H, W) 1 on latent cells within ``residual_radius`` cells (and a latent frame) of any
        character or prop pixel of the folded tri-mask input, else 0."""
        cfg = self.config
        start = cfg.rgb_channels + cfg.depth_channels + cfg.cond_channels
        per_mask = cfg.mask_channels // cfg.num_masks  # mask order: character, prop, environment
        actors = hidden_states[:, start : start + 2 * per_mask].float().amax(dim=1, keepdim=True)
        rad = int(cfg.residual_radius)
        return torch.nn.functional.max_pool3d((actors > 0.5).float(), (3, 2 * rad + 1, 2 * rad + 1), stride=1,
                                              padding=(1, rad, rad))

    def pack_inputs(
        self,
        noisy: torch.Tensor,
        cond_latents: torch.Tensor,
        folded_masks: torch.Tensor,
        presence: torch.Tensor | None = None,
        base: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``cat([noisy RGB+depth (2z), cond latents (3z), folded tri-mask (768), presence flags (3)
        (, harmonize base latent + its flag (z + 1))], dim=1)`` with checks; ``presence`` defaults to
        every conditioning input present; ``base`` (with ``harmonize_base``) to absent (zeros, flag 0)."""
        cfg = self.config
        if presence is None:
            presence = torch.ones(noisy.shape[0], cfg.presence_channels, *noisy.shape[2:], dtype=noisy.dtype,
                                  device=noisy.device)
        expected = {
            "noisy RGB + depth latents": (noisy, cfg.rgb_channels + cfg.depth_channels),
            "conditioning latents": (cond_latents, cfg.cond_channels),
            "folded masks": (folded_masks, cfg.mask_channels),
            "presence flags": (presence, cfg.presence_channels),
        }
        if cfg.harmonize_base:
            if base is None:
                base = torch.zeros(noisy.shape[0], cfg.rgb_channels + 1, *noisy.shape[2:], dtype=noisy.dtype,
                                   device=noisy.device)
            expected["harmonize base + flag"] = (base, cfg.rgb_channels + 1)
        elif base is not None:
            raise ValueError("a harmonize base was given but this transformer has no harmonize input "
                             "(harmonize_base is false)")
        for name, (t, c) in expected.items():
            if t.shape[1] != c:
                raise ValueError(f"{name} have {t.shape[1]} channels, the transformer expects {c}")
        parts = (cond_latents, folded_masks, presence) + ((base,) if cfg.harmonize_base else ())
        return torch.cat([noisy, *(t.to(noisy.dtype) for t in parts)], dim=1)

    def embed_tokens(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Patchify ``(B, C, F, H, W)`` into tokens ``(B, F*H*W/prod(patch), inner_dim)``."""
        hidden_states = self.patch_embedding(hidden_states)
        return hidden_states.flatten(2).transpose(1, 2).contiguous()

    # ------------------------------------------------------------------------------- forward
    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.LongTensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor | None = None,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor | Transformer2DModelOutput:
        """
        Args:
            hidden_states: ``(B, in_channels, F, H, W)`` -- see :meth:`pack_inputs`.
            timestep: ``(B,)`` (or ``(B, seq_len)`` per token, as Wan 2.2).
            encoder_hidden_states: ``(B, L, text_dim)`` precomputed UMT5 prompt embeddings.
        Returns:
            ``sample`` of shape ``(B, rgb_channels + depth_channels, F, H, W)``: RGB then depth velocity.
        """
        batch_size, num_channels, num_frames, height, width = hidden_states.shape
        if num_channels != self.config.in_channels:
            raise ValueError(
                f"hidden_states have {num_channels} channels, the transformer expects {self.config.in_channels} "
                "(use pack_inputs)"
            )
        p_t, p_h, p_w = self.config.patch_size
        ppf, pph, ppw = num_frames // p_t, height // p_h, width // p_w

        rotary_emb = self.rope(hidden_states)
        inputs, raw_timestep = hidden_states, timestep
        hidden_states = self.embed_tokens(hidden_states)

        if timestep.ndim == 2:
            ts_seq_len = timestep.shape[1]
            timestep = timestep.flatten()
        else:
            ts_seq_len = None

        temb, timestep_proj, encoder_hidden_states, encoder_hidden_states_image = self.condition_embedder(
            timestep, encoder_hidden_states, encoder_hidden_states_image, timestep_seq_len=ts_seq_len
        )
        if ts_seq_len is not None:
            timestep_proj = timestep_proj.unflatten(2, (6, -1))
        else:
            timestep_proj = timestep_proj.unflatten(1, (6, -1))

        if encoder_hidden_states_image is not None:
            encoder_hidden_states = torch.concat([encoder_hidden_states_image, encoder_hidden_states], dim=1)

        if torch.is_grad_enabled() and self.gradient_checkpointing:
            for block in self.blocks:
                hidden_states = self._gradient_checkpointing_func(
                    block, hidden_states, encoder_hidden_states, timestep_proj, rotary_emb
                )
        else:
            for block in self.blocks:
                hidden_states = block(hidden_states, encoder_hidden_states, timestep_proj, rotary_emb)

        if temb.ndim == 3:
            shift, scale = (self.scale_shift_table.unsqueeze(0).to(temb.device) + temb.unsqueeze(2)).chunk(2, dim=2)
            shift, scale = shift.squeeze(2), scale.squeeze(2)
        else:
            shift, scale = (self.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        shift = shift.to(hidden_states.device)
        scale = scale.to(hidden_states.device)

        hidden_states = (self.norm_out(hidden_states.float()) * (1 + scale) + shift).type_as(hidden_states)
        outputs = [
            self._unpatchify(head(hidden_states), batch_size, ppf, pph, ppw)
            for head in (self.proj_out, self.depth_proj_out)
        ]
        if self.config.harmonize_base:
            outputs[0] = self._residual_velocity(inputs, outputs[0], raw_timestep, (ppf, pph, ppw))
        output = torch.cat(outputs, dim=1)

        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)

    def _unpatchify(self, tokens: torch.Tensor, batch_size: int, ppf: int, pph: int, ppw: int) -> torch.Tensor:
        p_t, p_h, p_w = self.config.patch_size
        x = tokens.reshape(batch_size, ppf, pph, ppw, p_t, p_h, p_w, -1)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)
