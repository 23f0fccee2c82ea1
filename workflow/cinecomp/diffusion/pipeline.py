"""CinecompPipeline: keyed character + tri-mask (+ depth, environment, references) -> RGB video + depth video.

Components: ``transformer`` (:class:`CinecompTransformer3DModel`), ``vae`` (``AutoencoderKLWan``, or the
lossless :class:`~cinecomp.diffusion.autoencoder.SpaceToDepthVAE` behind the same interface, used for
RGB and for depth -- depth is log-encoded to [-1, 1] and replicated to three channels, see
:mod:`cinecomp.diffusion.conditioning`) and ``scheduler`` (a flow-matching scheduler:
``FlowMatchEulerDiscreteScheduler`` or Wan's ``UniPCMultistepScheduler`` with flow sigmas).
There is no text encoder: prompts are encoded once by :func:`cinecomp.diffusion.prompts.encode_prompts`
and the cached embeddings are passed in.

Frame counts must be 4n+1 (Wan's causal VAE compresses 4n+1 frames into n+1 latent frames), and
height/width multiples of 16 (VAE 8x times the 2x2 patch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from diffusers import AutoencoderKLWan, DiffusionPipeline
from diffusers.schedulers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from .conditioning import (
    DEFAULT_DEPTH_FAR,
    DEFAULT_DEPTH_NEAR,
    MASK_NAMES,
    Reference,
    as_reference,
    decode_depth,
    encode_depth,
    fit_reference,
    fold_masks,
    reference_mask,
)
from .autoencoder import SpaceToDepthVAE
from .errors import DiffusionInputError
from .transformer import CinecompTransformer3DModel


# the videos prepare_conditioning encodes through the VAE, by name (stored latents use these names)
CONDITIONING_VIDEOS = ("character_rgb", "character_depth", "environment_rgb", "harmonize_rgb")


@dataclass
class CinecompPipelineOutput(BaseOutput):
    """``frames``: (T, H, W, 3) float32 RGB in [0, 1]; ``depth``: (T, H, W) float32 in scene units
    (between the ``depth_range`` used); ``latents``: the denoised (1, 2z, n+1, H/8, W/8) latents, RGB then depth;
    ``over_reconstruction``: with ``reconstruct_over``, the VAE's reconstruction of the base comp --
    harmonize's when ``harmonize_rgb`` is given, else the plain `over` comp -- (T, H, W, 3) in [0, 1],
    what :func:`cinecomp.diffusion.light_ratio.apply_layers` divides the frames by."""

    frames: np.ndarray | torch.Tensor | None
    depth: np.ndarray | torch.Tensor | None
    latents: torch.Tensor | None = None
    over_reconstruction: np.ndarray | torch.Tensor | None = None


@dataclass
class Conditioning:
    """The encoded conditioning of one window: ``cond`` (1, 3z, R+n+1, h, w) plate / character depth /
    environment latents, ``masks`` (1, 768, R+n+1, h, w) folded tri-mask, ``presence`` (1, 3, R+n+1, h, w)
    flags, ``references`` (1, z, R, h, w) clean reference latents or None, ``base`` (1, z + 1, R+n+1, h,
    w) harmonize's comp latent and its presence flag, or None when the transformer has no such input."""

    cond: torch.Tensor
    masks: torch.Tensor
    presence: torch.Tensor
    references: torch.Tensor | None
    base: torch.Tensor | None = None

    def model_input(self) -> torch.Tensor:
        """Everything after the noisy latents, in the transformer's input order."""
        parts = [self.cond, self.masks, self.presence] + ([self.base] if self.base is not None else [])
        return torch.cat([p.cpu() for p in parts], dim=1)

    @property
    def num_references(self) -> int:
        return 0 if self.references is None else self.references.shape[2]


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach().to("cpu", torch.float32)
    else:
        try:
            t = torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.float32)))
        except (TypeError, ValueError) as exc:
            raise DiffusionInputError(f"{name} is not an array of numbers ({exc})") from None
    if "depth" not in name and not torch.isfinite(t).all():  # depth may be inf (sky, unknown)
        raise DiffusionInputError(f"{name} contains NaN or infinite values")
    return t


def check_frame_count(num_frames: int, temporal: int = 4) -> None:
    """Raise a clear error unless ``num_frames`` is ``temporal * n + 1``."""
    if num_frames < 1 or (num_frames - 1) % temporal:
        lower = (max(num_frames, 1) - 1) // temporal * temporal + 1
        upper = lower + temporal
        raise DiffusionInputError(
            f"got {num_frames} frames; the Wan VAE needs {temporal}n+1 frames (1, 5, 9, 13, ..., 81): "
            f"trim to {lower} or pad to {upper} frames (long shots go through overlapping windows)"
        )


class CinecompPipeline(DiffusionPipeline):
    r"""Tri-mask-guided joint RGB + depth video diffusion for compositing a keyed character into a scene."""

    model_cpu_offload_seq = "transformer->vae"

    def __init__(
        self,
        transformer: CinecompTransformer3DModel,
        vae: AutoencoderKLWan | SpaceToDepthVAE,
        scheduler: FlowMatchEulerDiscreteScheduler | UniPCMultistepScheduler,
    ):
        super().__init__()
        self.register_modules(transformer=transformer, vae=vae, scheduler=scheduler)
        self.vae_scale_factor_temporal = vae.config.scale_factor_temporal if vae is not None else 4
        self.vae_scale_factor_spatial = vae.config.scale_factor_spatial if vae is not None else 8

    # -------------------------------------------------------------------------------- checks
    def check_components(self) -> None:
        tcfg, vcfg = self.transformer.config, self.vae.config
        if tcfg.rgb_channels != vcfg.z_dim or tcfg.depth_channels != vcfg.z_dim or tcfg.cond_channels != 3 * vcfg.z_dim:
            raise DiffusionInputError(
                f"transformer latent widths (rgb {tcfg.rgb_channels}, depth {tcfg.depth_channels}, cond "
                f"{tcfg.cond_channels}) do not fit the VAE's z_dim={vcfg.z_dim} (expected z, z, 3z)"
            )
        if tuple(tcfg.mask_fold) != (self.vae_scale_factor_temporal, self.vae_scale_factor_spatial):
            raise DiffusionInputError(
                f"transformer folds masks by {tuple(tcfg.mask_fold)} but the VAE compresses by "
                f"({self.vae_scale_factor_temporal}, {self.vae_scale_factor_spatial})"
            )

    def _check_video(self, x: torch.Tensor, name: str, channels: int | None, shape=None) -> None:
        want = "(T, H, W)" if channels is None else f"(T, H, W, {channels})"
        ndim = 3 if channels is None else 4
        if x.ndim != ndim or (channels is not None and x.shape[-1] != channels):
            raise DiffusionInputError(f"{name} must be {want}, got shape {tuple(x.shape)}")
        if shape is not None and tuple(x.shape[:3]) != tuple(shape):
            raise DiffusionInputError(
                f"{name} has shape {tuple(x.shape[:3])} (T, H, W) but character_rgb has {tuple(shape)}"
            )

    # ------------------------------------------------------------------------------ latents
    def _latent_stats(self, device, dtype=torch.float32):
        z = self.vae.config.z_dim
        mean = torch.tensor(self.vae.config.latents_mean, device=device, dtype=dtype).view(1, z, 1, 1, 1)
        std = torch.tensor(self.vae.config.latents_std, device=device, dtype=dtype).view(1, z, 1, 1, 1)
        return mean, std

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> normalised latents (B, z, n+1, H/8, W/8), deterministic (mode)."""
        vae_device = next(self.vae.parameters()).device
        dist = self.vae.encode(video.to(vae_device, self.vae.dtype)).latent_dist
        lat = dist.mode().float()
        mean, std = self._latent_stats(lat.device)
        return (lat - mean) / std

    @torch.no_grad()
    def reconstruct_over(self, character_rgb, tri_mask, environment_rgb, harmonize_rgb=None) -> torch.Tensor:
        """The base comp through this pipeline's VAE, (T, H, W, 3) in [0, 1]: the model's output divided by
        it keeps only what the model changed (shadows, relighting), free of the VAE's own losses. The base
        is ``harmonize_rgb`` when given (a model that starts from harmonize), else the plain `over` comp
        (premultiplied character + environment x its mask)."""
        if harmonize_rgb is not None:
            base = _as_tensor(harmonize_rgb, "harmonize_rgb").clamp(0.0, 1.0) * 2.0 - 1.0
            video = self.decode_latents(self.encode_video(base.permute(3, 0, 1, 2)[None]))
            return ((video[0] + 1.0) * 0.5).clamp(0.0, 1.0).permute(1, 2, 3, 0).cpu()
        if environment_rgb is None:
            raise DiffusionInputError("reconstruct_over needs an environment plate (the model synthesises none "
                                      "to compare with): render frames instead of layers")
        plate = _as_tensor(character_rgb, "character_rgb").clamp(0.0, 1.0)
        env = _as_tensor(environment_rgb, "environment_rgb").clamp(0.0, 1.0)
        if env.ndim == 3:
            env = env.unsqueeze(0).expand(plate.shape[0], *env.shape)
        keep = _as_tensor(tri_mask, "tri_mask")[..., 2:3].clamp(0.0, 1.0)
        over = (plate + keep * env).clamp(0.0, 1.0) * 2.0 - 1.0
        video = self.decode_latents(self.encode_video(over.permute(3, 0, 1, 2)[None]))
        return ((video[0] + 1.0) * 0.5).clamp(0.0, 1.0).permute(1, 2, 3, 0).cpu()

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, z, n+1, h, w) -> video (B, 3, 4n+1, 8h, 8w) in [-1, 1] (float32)."""
        vae_device = next(self.vae.parameters()).device
        latents = latents.to(vae_device, torch.float32)
        mean, std = self._latent_stats(latents.device)
        video = self.vae.decode((latents * std + mean).to(self.vae.dtype), return_dict=False)[0]
        return video.float().clamp(-1.0, 1.0)

    def prepare_conditioning(
        self,
        character_rgb,
        tri_mask,
        character_depth=None,
        environment_rgb=None,
        reference_images: Sequence | None = None,
        replace_prop: bool | None = None,
        depth_range: tuple[float, float] = (DEFAULT_DEPTH_NEAR, DEFAULT_DEPTH_FAR),
        harmonize_rgb=None,
        latents: dict | None = None,
    ) -> "Conditioning":
        """Encode every conditioning input (see :mod:`cinecomp.diffusion.conditioning` for the layout).

        ``latents``: {name: (1, z, n+1, h, w)} latents of the videos named in :data:`CONDITIONING_VIDEOS`
        as :meth:`conditioning_latents` makes them (with this ``replace_prop``), used instead of encoding
        (training's stored latents); the videos not in it are encoded.
        Returns a :class:`Conditioning`; its first R latent frames are the references.
        """
        self.check_components()
        has_base = bool(getattr(self.transformer.config, "harmonize_base", False))
        if harmonize_rgb is not None and not has_base:
            raise DiffusionInputError(
                f"harmonize_rgb was given but the transformer{self._where()} has no harmonize input "
                "(its config has no harmonize_base: true): fix: use a model made with one "
                "(`cinecomp models tiny --harmonize-base`, or trained from such a base), or leave "
                "harmonize's comp out")
        refs = [as_reference(r) for r in (reference_images or [])]
        if replace_prop is None:
            replace_prop = any(r.role == "prop" for r in refs)
        masks, videos = self._conditioning_videos(character_rgb, tri_mask, character_depth, environment_rgb,
                                                  harmonize_rgb, replace_prop, depth_range)
        t, h, w = masks.shape[:3]
        encoded = self.encode_named(videos, latents)
        plate_lat = encoded["character_rgb"]
        zeros = torch.zeros_like(plate_lat)
        depth_lat = encoded.get("character_depth", zeros)
        env_lat = encoded.get("environment_rgb", zeros)
        base = None
        if has_base:  # harmonize's latent and its flag; zeros and 0 when not given
            flag = torch.full_like(plate_lat[:, :1], float(harmonize_rgb is not None))
            base = torch.cat([encoded.get("harmonize_rgb", zeros), flag], dim=1)
        cond = torch.cat([plate_lat, depth_lat, env_lat], dim=1)
        folded = fold_masks(
            masks.permute(3, 0, 1, 2).unsqueeze(0), self.vae_scale_factor_temporal, self.vae_scale_factor_spatial
        )
        given = torch.tensor([1.0, float(character_depth is not None), float("environment_rgb" in videos)])
        presence = given.view(1, -1, 1, 1, 1).expand(1, len(given), *cond.shape[2:]).clone()
        return self._with_references(refs, cond, folded, presence, base, t, h, w)

    def conditioning_latents(self, character_rgb, tri_mask, character_depth=None, environment_rgb=None,
                             harmonize_rgb=None, replace_prop: bool = False,
                             depth_range: tuple[float, float] = (DEFAULT_DEPTH_NEAR, DEFAULT_DEPTH_FAR)) -> dict:
        """{name: (1, z, n+1, h, w)} latents of every conditioning video given (names:
        :data:`CONDITIONING_VIDEOS`), exactly as :meth:`prepare_conditioning` encodes them with this
        ``replace_prop`` -- what curation's latents step stores so training need not encode them."""
        self.check_components()
        _, videos = self._conditioning_videos(character_rgb, tri_mask, character_depth, environment_rgb,
                                              harmonize_rgb, replace_prop, depth_range)
        return self.encode_named(videos)

    def encode_named(self, videos: dict, latents: dict | None = None) -> dict:
        """{name: (1, 3, T, H, W) video} -> {name: (1, z, n+1, h, w) latents}: those in ``latents`` taken
        from it (checked for shape), the rest encoded in one batch."""
        todo = [k for k in videos if not latents or k not in latents]
        out = {}
        if todo:
            encoded = self.encode_video(torch.cat([videos[k] for k in todo], dim=0))
            out = {k: encoded[i : i + 1] for i, k in enumerate(todo)}
        t, h, w = next(iter(videos.values())).shape[2:]
        want = (1, self.vae.config.z_dim, (t - 1) // self.vae_scale_factor_temporal + 1,
                h // self.vae_scale_factor_spatial, w // self.vae_scale_factor_spatial)
        for k in videos:
            if k in out:
                continue
            lat = torch.as_tensor(latents[k], dtype=torch.float32)
            lat = lat[None] if lat.ndim == 4 else lat
            if tuple(lat.shape) != want:
                raise DiffusionInputError(f"stored latents of {k} have shape {tuple(lat.shape)}, this VAE makes "
                                          f"{want} for these frames (fix: encode the latents again with this VAE)")
            out[k] = lat
        return {k: out[k] for k in videos}

    def _conditioning_videos(self, character_rgb, tri_mask, character_depth, environment_rgb, harmonize_rgb,
                             replace_prop: bool, depth_range) -> tuple[torch.Tensor, dict]:
        """The checked tri-mask (T, H, W, 3) and {name: (1, 3, T, H, W) video in [-1, 1]} of the videos
        the VAE encodes (the prop removed when ``replace_prop``)."""
        plate = _as_tensor(character_rgb, "character_rgb")
        self._check_video(plate, "character_rgb", 3)
        t, h, w = plate.shape[:3]
        check_frame_count(t, self.vae_scale_factor_temporal)
        multiple = self.vae_scale_factor_spatial * self.transformer.config.patch_size[1]
        if h % multiple or w % multiple:
            lo = f"{max(w // multiple, 1) * multiple}x{max(h // multiple, 1) * multiple}"
            hi = f"{-(-w // multiple) * multiple}x{-(-h // multiple) * multiple}"
            raise DiffusionInputError(
                f"frames are {w}x{h}; width and height must be multiples of {multiple} "
                f"(VAE {self.vae_scale_factor_spatial}x times the transformer's patch): crop to {lo} or pad to {hi}"
            )
        masks = _as_tensor(tri_mask, "tri_mask")
        self._check_video(masks, "tri_mask", len(MASK_NAMES), (t, h, w))
        masks = masks.clamp(0.0, 1.0)

        env = None
        if environment_rgb is not None:
            env = _as_tensor(environment_rgb, "environment_rgb")
            if env.ndim == 3:  # a still environment plate / image
                env = env.unsqueeze(0).expand(t, *env.shape)
            self._check_video(env, "environment_rgb", 3, (t, h, w))

        plate = plate.clamp(0.0, 1.0)
        if replace_prop:  # remove the old prop so only the reference prop can appear there
            keep = 1.0 - masks[..., 1:2]
            plate = plate * keep
            env = env * keep if env is not None else None

        to_vae = lambda v: v.permute(3, 0, 1, 2).unsqueeze(0) * 2.0 - 1.0  # noqa: E731  (T,H,W,C)->(1,C,T,H,W)
        videos = {"character_rgb": to_vae(plate)}
        if character_depth is not None:
            depth = _as_tensor(character_depth, "character_depth")
            self._check_video(depth, "character_depth", None, (t, h, w))
            enc = encode_depth(depth, *depth_range)
            enc = torch.where(masks[..., 0] > 0.5, enc, torch.full_like(enc, -1.0))  # off the character: far
            videos["character_depth"] = enc.unsqueeze(0).unsqueeze(0).expand(1, 3, t, h, w)
        if env is not None:
            videos["environment_rgb"] = to_vae(env.clamp(0.0, 1.0))
        if harmonize_rgb is not None:
            base_rgb = _as_tensor(harmonize_rgb, "harmonize_rgb")
            self._check_video(base_rgb, "harmonize_rgb", 3, (t, h, w))
            if replace_prop:  # the old prop leaves harmonize's comp too
                base_rgb = base_rgb * (1.0 - masks[..., 1:2])
            videos["harmonize_rgb"] = to_vae(base_rgb.clamp(0.0, 1.0))
        return masks, videos

    def _with_references(self, refs, cond, folded, presence, base, t, h, w) -> "Conditioning":
        """The conditioning with the reference images encoded as leading clean latent frames."""
        ref_lat = None
        if refs:
            images, ref_masks = [], []
            for k, ref in enumerate(refs):
                img = _as_tensor(ref.image, f"reference_images[{k}]")
                if img.ndim != 3 or img.shape[-1] != 3:
                    raise DiffusionInputError(f"reference_images[{k}] must be (H, W, 3), got {tuple(img.shape)}")
                region = None
                if ref.mask is not None:
                    region = _as_tensor(ref.mask, f"reference_images[{k}].mask")
                    if region.shape != img.shape[:2]:
                        raise DiffusionInputError(
                            f"reference_images[{k}].mask is {tuple(region.shape)}, its image is {tuple(img.shape[:2])}"
                        )
                if img.shape[:2] != (h, w):  # any size: fitted to the shot's keeping its aspect (padded)
                    img, region = fit_reference(img, region, h, w)
                images.append(img.clamp(0.0, 1.0).permute(2, 0, 1)[:, None] * 2.0 - 1.0)  # (3, 1, H, W)
                region = None if region is None else region.clamp(0.0, 1.0)
                ref_masks.append(
                    reference_mask(
                        ref.role, h, w, region, self.vae_scale_factor_temporal, self.vae_scale_factor_spatial
                    )
                )
            ref_lat = self.encode_video(torch.stack(images))  # (R, z, 1, h, w), each image alone
            ref_lat = ref_lat.permute(2, 1, 0, 3, 4)  # (1, z, R, h, w)
            r = ref_lat.shape[2]
            cond = torch.cat([torch.zeros(1, cond.shape[1], r, *cond.shape[3:]), cond.cpu()], dim=2)
            folded = torch.cat([torch.cat(ref_masks, dim=2), folded], dim=2)
            presence = torch.cat([torch.zeros(1, presence.shape[1], r, *presence.shape[3:]), presence], dim=2)
            if base is not None:  # reference frames: no base (flag 0)
                base = torch.cat([torch.zeros(1, base.shape[1], r, *base.shape[3:]), base.cpu()], dim=2)
        return Conditioning(cond.cpu(), folded, presence, ref_lat, None if base is None else base.cpu())

    def _where(self) -> str:
        """`` at DIR`` naming the transformer's model directory when it was loaded from one."""
        path = getattr(self.transformer.config, "_name_or_path", "") or ""
        return f" at {path}" if path else ""

    def encode_context(self, frames, depth, depth_range, height: int, width: int) -> torch.Tensor:
        """Clean latents ``(1, 2z, m+1, h, w)`` (RGB then depth) of a window's context: the previous
        window's last ``4m+1`` frames (T, H, W, 3) and depth (T, H, W)."""
        rgb = _as_tensor(frames, "context_frames")
        self._check_video(rgb, "context_frames", 3)
        t = rgb.shape[0]
        check_frame_count(t, self.vae_scale_factor_temporal)
        if tuple(rgb.shape[1:3]) != (height, width):
            raise DiffusionInputError(f"context_frames are {tuple(rgb.shape[1:3])}, the shot's frames "
                                      f"{(height, width)}")
        d = _as_tensor(depth, "context_depth")
        self._check_video(d, "context_depth", None, rgb.shape[:3])
        enc = encode_depth(d, *depth_range)
        videos = torch.cat([rgb.clamp(0.0, 1.0).permute(3, 0, 1, 2).unsqueeze(0) * 2.0 - 1.0,
                            enc.unsqueeze(0).unsqueeze(0).expand(1, 3, *enc.shape)], dim=0)
        lat = self.encode_video(videos)  # (2, z, m+1, h, w)
        return torch.cat([lat[:1], lat[1:]], dim=1).cpu()

    def initial_noise(self, shape, seed: int, frame_offset: int = 0) -> torch.Tensor:
        """Noise ``shape`` = (1, C, F, h, w) drawn per latent frame from ``(seed, absolute latent frame)``:
        latent frame k of a window starting at pixel frame ``frame_offset`` (a multiple of the VAE's
        temporal factor) is the shot's latent frame ``frame_offset / 4 + k``, so a frame's noise does not
        depend on which window renders it."""
        temporal = self.vae_scale_factor_temporal
        if frame_offset % temporal:
            raise DiffusionInputError(f"frame_offset={frame_offset} must be a multiple of {temporal} "
                                      "(windows start on latent-frame boundaries)")
        base = frame_offset // temporal
        frames = []
        for k in range(shape[2]):
            state = np.random.SeedSequence([int(seed), base + k]).generate_state(2, np.uint32)
            g = torch.Generator("cpu").manual_seed(int(state[0]) << 32 | int(state[1]))
            frames.append(torch.randn((shape[0], shape[1], *shape[3:]), generator=g, dtype=torch.float32))
        return torch.stack(frames, dim=2)

    # -------------------------------------------------------------------------------- call
    @torch.no_grad()
    def __call__(
        self,
        character_rgb,
        tri_mask,
        character_depth=None,
        environment_rgb=None,
        reference_images: Sequence[Reference | Any] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        num_inference_steps: int = 30,
        guidance_scale: float = 5.0,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        replace_prop: bool | None = None,
        depth_range: tuple[float, float] = (DEFAULT_DEPTH_NEAR, DEFAULT_DEPTH_FAR),
        latents: torch.Tensor | None = None,
        context_frames=None,
        context_depth=None,
        frame_offset: int = 0,
        batch_guidance: bool = True,
        reconstruct_over: bool = False,
        harmonize_rgb=None,
        output_type: str = "np",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> CinecompPipelineOutput | tuple:
        r"""
        Args:
            character_rgb: (T, H, W, 3) premultiplied keyed character plate in [0, 1] (display-referred;
                values outside are clipped), T = 4n+1, H and W multiples of 16.
            tri_mask: (T, H, W, 3) character, prop and environment masks in [0, 1].
            character_depth: (T, H, W) depth of the character in scene units (used under the character
                mask), or None (flagged absent to the model).
            environment_rgb: (T, H, W, 3) or a still (H, W, 3) environment plate in [0, 1], or None to
                synthesise the environment (from the prompt and any ``environment`` reference image).
            reference_images: images (H, W, 3) in [0, 1] -- a :class:`Reference` (image, role, mask), an
                ``(image, role)`` pair, or a bare image (role ``environment``).  Roles: ``environment``
                (environment synthesis), ``prop`` (prop replacement), ``character``.
            prompt_embeds: (1, L, text_dim) or (L, text_dim) cached UMT5 embeddings
                (:func:`cinecomp.diffusion.prompts.load_prompt_embeds`).
            negative_prompt_embeds: the unconditional embeddings for classifier-free guidance: the
                encoding of the negative prompt, "" for Wan's unconditional (the workflow always passes
                it); zeros when omitted, which only API callers without a text encoder should rely on.
            guidance_scale: CFG weight; <= 1 disables guidance (one transformer call per step).
            generator / seed: the noise source; the same seed gives the same frames.  With ``seed`` the
                noise is drawn per latent frame from (seed, absolute latent frame), see ``frame_offset``.
            replace_prop: remove the prop region from plate and environment before encoding (default:
                when a ``prop`` reference is given).
            depth_range: (near, far) of the log-depth encoding, scene units.
            latents: initial noise (1, 2z, n+1, H/8, W/8) instead of drawing it.
            context_frames / context_depth: (4m+1, H, W, 3) / (4m+1, H, W): what the previous window made
                of this window's first 4m+1 frames; held clean (timestep 0 per token) so this window
                continues it.  ``context_depth`` defaults to far everywhere.
            frame_offset: the shot frame this window starts at (a multiple of 4), for the noise.
            batch_guidance: run the conditional and unconditional passes as one batch of two (one
                parameter gather per step under ZeRO-3); False runs them one after the other (half the
                activation memory).
            reconstruct_over: also return ``over_reconstruction`` (see :meth:`reconstruct_over`; needs
                ``environment_rgb`` or ``harmonize_rgb``), for applying the output as low-frequency layers.
            harmonize_rgb: (T, H, W, 3) harmonize's comp of these frames in [0, 1], for a transformer with
                ``harmonize_base``: its RGB is predicted as a residual on it (an untrained one returns it).
                Such a transformer without it runs with the base flagged absent.
            output_type: ``"np"`` (numpy), ``"pt"`` (torch) or ``"latent"`` (no decoding).
        """
        if prompt_embeds is None:
            raise DiffusionInputError(
                "prompt_embeds are required: the pipeline has no text encoder; encode prompts once with "
                "cinecomp.diffusion.prompts.encode_prompts and pass load_prompt_embeds(...)[prompt]"
            )
        if reconstruct_over and environment_rgb is None and harmonize_rgb is None:
            self.reconstruct_over(character_rgb, tri_mask, None)  # its error, before any step
        if output_type not in ("np", "pt", "latent"):
            raise DiffusionInputError(f"output_type must be 'np', 'pt' or 'latent', got {output_type!r}")
        device = self._execution_device
        tdtype = self.transformer.dtype
        text_dim = self.transformer.config.text_dim

        def _prep_embeds(e, name):
            e = e if isinstance(e, torch.Tensor) else torch.as_tensor(np.asarray(e))
            e = e.unsqueeze(0) if e.ndim == 2 else e
            if e.ndim != 3 or e.shape[0] != 1 or e.shape[-1] != text_dim:
                raise DiffusionInputError(
                    f"{name} must be (1, L, {text_dim}) (the transformer's text_dim), got {tuple(e.shape)}: "
                    "were the prompts encoded with the matching text encoder?"
                )
            return e.to(device, tdtype)

        prompt_embeds = _prep_embeds(prompt_embeds, "prompt_embeds")
        do_cfg = guidance_scale > 1.0
        if do_cfg:
            negative_prompt_embeds = (
                torch.zeros_like(prompt_embeds)
                if negative_prompt_embeds is None
                else _prep_embeds(negative_prompt_embeds, "negative_prompt_embeds")
            )
            prompt_embeds, negative_prompt_embeds = _same_length(prompt_embeds, negative_prompt_embeds)

        c = self.prepare_conditioning(
            character_rgb, tri_mask, character_depth, environment_rgb, reference_images, replace_prop, depth_range,
            harmonize_rgb,
        )
        num_refs = c.num_references
        z = self.transformer.config.rgb_channels
        shape = (1, 2 * z, c.cond.shape[2] - num_refs, *c.cond.shape[3:])
        if latents is None:
            if seed is not None:
                latents = self.initial_noise(shape, seed, frame_offset)
            else:
                latents = randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise DiffusionInputError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        latents = torch.cat([torch.zeros(1, 2 * z, num_refs, *shape[3:]), latents.float().cpu()], dim=2)

        # clean leading latent frames: references (RGB slot, no depth), then the context
        clean = []
        if num_refs:
            clean.append(torch.cat([c.references.cpu(), torch.zeros_like(c.references.cpu())], dim=1))
        if context_frames is not None:
            h, w = np.shape(context_frames)[1:3]
            if context_depth is None:
                context_depth = np.full(np.shape(context_frames)[:3], np.inf, np.float32)
            ctx = self.encode_context(context_frames, context_depth, depth_range, h, w)
            if ctx.shape[2] >= shape[2] or tuple(ctx.shape[3:]) != tuple(shape[3:]):
                raise DiffusionInputError(
                    f"context of {np.shape(context_frames)[0]} frames leaves no frame to render in a window of "
                    f"{np.shape(character_rgb)[0]} (or is another size): the overlap must be shorter than the window")
            clean.append(ctx)
        clean = torch.cat(clean, dim=2).to(device) if clean else None
        num_clean = 0 if clean is None else clean.shape[2]

        batch = 2 if do_cfg and batch_guidance else 1
        embeds = torch.cat([prompt_embeds, negative_prompt_embeds]) if batch == 2 else prompt_embeds
        latents = latents.to(device)
        cond_in = c.model_input().to(device, tdtype)

        p_t, p_h, p_w = self.transformer.config.patch_size
        tokens_per_frame = (shape[3] // p_h) * (shape[4] // p_w)
        clean_tokens = num_clean // p_t * tokens_per_frame
        total_tokens = latents.shape[2] // p_t * tokens_per_frame

        def timesteps_for(t, n):
            """(n,) or, with clean frames, (n, tokens): timestep 0 on the clean frames' tokens."""
            if not num_clean:
                return t.expand(n).to(device)
            ts = t.to(device).expand(n, total_tokens).clone()
            ts[:, :clean_tokens] = 0
            return ts

        def predict(x, t, embeds_):
            n = embeds_.shape[0]
            model_input = torch.cat([x.to(tdtype), cond_in], dim=1).expand(n, -1, -1, -1, -1)
            return self.transformer(hidden_states=model_input, timestep=timesteps_for(t, n),
                                    encoder_hidden_states=embeds_, attention_kwargs=attention_kwargs,
                                    return_dict=False)[0].float()

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for t in timesteps:
                if num_clean:
                    latents[:, :, :num_clean] = clean
                if not do_cfg:
                    noise_pred = predict(latents, t, embeds)
                elif batch == 2:
                    both = predict(latents, t, embeds)
                    noise_pred = both[1:] + guidance_scale * (both[:1] - both[1:])
                else:
                    cond_pred = predict(latents, t, prompt_embeds)
                    uncond_pred = predict(latents, t, negative_prompt_embeds)
                    noise_pred = uncond_pred + guidance_scale * (cond_pred - uncond_pred)
                latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
                progress_bar.update()
        if num_clean:
            latents[:, :, :num_clean] = clean  # the context stays what it was given

        latents = latents[:, :, num_refs:]  # trim the reference frames
        self.maybe_free_model_hooks()
        if output_type == "latent":
            out = CinecompPipelineOutput(frames=None, depth=None, latents=latents)
            return out if return_dict else (None, None, latents)

        decoded = self.decode_latents(torch.cat([latents[:, :z], latents[:, z:]], dim=0))  # (2, 3, T, H, W)
        frames = ((decoded[0] + 1.0) * 0.5).clamp(0.0, 1.0).permute(1, 2, 3, 0).cpu()
        depth = decode_depth(decoded[1].mean(dim=0), *depth_range).cpu()
        over_rec = self.reconstruct_over(character_rgb, tri_mask, environment_rgb,
                                         harmonize_rgb if c.base is not None else None) if reconstruct_over else None
        if output_type == "np":
            frames, depth = frames.numpy(), depth.numpy()
            over_rec = None if over_rec is None else over_rec.numpy()
        if not return_dict:
            return frames, depth, latents
        return CinecompPipelineOutput(frames=frames, depth=depth, latents=latents, over_reconstruction=over_rec)


def _same_length(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (1, L, D) embeddings padded with zeros to one length (Wan pads every prompt with zeros)."""
    n = max(a.shape[1], b.shape[1])
    pad = lambda e: torch.nn.functional.pad(e, (0, 0, 0, n - e.shape[1])) if e.shape[1] < n else e  # noqa: E731
    return pad(a), pad(b)
