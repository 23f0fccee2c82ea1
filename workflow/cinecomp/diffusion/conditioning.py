"""How the diffusion engine's conditioning is laid out: tri-mask folding, depth encoding, references.

Channel layout of the transformer input (``z`` = VAE latent channels, 16 for Wan 2.1)::

    [ noisy RGB latent        z ]  \\ denoised jointly; the transformer predicts a velocity for
    [ noisy depth latent      z ]  /  each (output = 2z channels: RGB velocity, depth velocity)
    [ character-plate latent  z ]  premultiplied keyed plate (prop pixels removed for prop replacement)
    [ character-depth latent  z ]  character depth, encoded like the depth video, -1 (far) off the character
    [ environment latent      z ]  environment plate; zeros when the shot has none (environment synthesis)
    [ folded tri-mask       768 ]  3 masks x (4 frames x 8 x 8 pixels) folded into one latent cell
    [ presence flags          3 ]  1 where the plate / character depth / environment slot holds an input,
                                   0 where it is absent (a zero latent alone would read as a grey plate)

Tri-mask folding: the character/prop/environment masks are kept at pixel resolution and folded
losslessly into the latent grid.  Wan's VAE is causal in time: latent frame 0 sees pixel frame 0 alone,
latent frame k >= 1 sees pixel frames 4k-3..4k.  The first mask frame is therefore repeated four times
(as Wan's image-to-video pipeline does with its first-frame mask), giving 4 * (n + 1) frames for
4n + 1 pixel frames, and every (4 frames x 8 x 8 pixels) block becomes 256 channels of one latent cell.
Channel index = ((mask * 4 + subframe) * 8 + row) * 8 + column, mask order character, prop, environment.

Depth encoding: the VAE is an RGB VAE, so depth is mapped to [-1, 1] and replicated to three
channels.  The mapping is log-depth between ``near`` and ``far`` (defaults 0.1 and 1000 scene units):
``near -> +1``, ``far -> -1``; depth beyond ``far``, infinite, non-finite or <= 0 (sky, unknown) encodes
as -1.  Log-depth spreads the four decades a shot spans evenly over the VAE's range; the decoded depth
video averages the three decoded channels and inverts the mapping.

Reference images are extra leading latent frames (one latent frame per image, encoded alone).  A
reference frame's noisy-RGB slot carries the clean reference latent at every step (it is never noised),
its noisy-depth, plate, character-depth and environment slots are zero, and its tri-mask slots say what
the reference is *for*: the mask channel of its role (character, prop or environment) is one -- over the
region given by ``Reference.mask`` if there is one, else everywhere -- and the other two are zero.
Reference frames carry presence flags 0 (no plate, depth or environment there) and are clean: they are
sampled at timestep 0 per token while the shot's frames run the schedule.  The reference frames are
trimmed from the output after denoising.

Context frames (long shots): a window's first frames repeat the previous window's last ones; their
noisy RGB and depth slots carry the clean latents of what the previous window made, at timestep 0 per
token like references, so the new window continues the content (an environment it synthesised, a
shadow, a relit colour) instead of sampling it afresh.

* Environment synthesis: no environment plate -> the environment slot is zero, an ``environment``
  reference image shows the model what the environment looks like.
* Prop replacement: a ``prop`` reference image shows the new prop; the pixels under the tri-mask's
  prop channel are removed from the character plate and environment plate before encoding so the old
  prop cannot leak through, and the model draws the reference prop in the prop region.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .errors import DiffusionInputError

MASK_NAMES = ("character", "prop", "environment")
PRESENCE_NAMES = ("plate", "character_depth", "environment")  # one flag channel each
PRESENCE_CHANNELS = len(PRESENCE_NAMES)
REFERENCE_ROLES = MASK_NAMES
DEFAULT_DEPTH_NEAR = 0.1
DEFAULT_DEPTH_FAR = 1000.0


# ----------------------------------------------------------------------------------------- masks
def folded_mask_channels(num_masks: int = 3, temporal: int = 4, spatial: int = 8) -> int:
    """Number of transformer input channels the folded tri-mask takes (768 for Wan's 4x8x8 VAE)."""
    return num_masks * temporal * spatial * spatial


def fold_masks(masks: torch.Tensor, temporal: int = 4, spatial: int = 8) -> torch.Tensor:
    """Fold pixel-resolution masks ``(B, M, 4n+1, H, W)`` into ``(B, M*temporal*spatial**2, n+1, H/8, W/8)``."""
    if masks.ndim != 5:
        raise DiffusionInputError(f"masks must be (B, M, T, H, W), got shape {tuple(masks.shape)}")
    b, m, t, h, w = masks.shape
    if (t - 1) % temporal or h % spatial or w % spatial:
        raise DiffusionInputError(
            f"masks of {t} frames x {h}x{w} cannot be folded: need {temporal}n+1 frames and H, W "
            f"multiples of {spatial}"
        )
    lat_t, lat_h, lat_w = (t - 1) // temporal + 1, h // spatial, w // spatial
    first = masks[:, :, :1].expand(b, m, temporal - 1, h, w)
    x = torch.cat([first, masks], dim=2)  # (B, M, temporal * lat_t, H, W)
    x = x.reshape(b, m, lat_t, temporal, lat_h, spatial, lat_w, spatial)
    x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)  # B, M, subframe, row, col, T', H', W'
    return x.reshape(b, m * temporal * spatial * spatial, lat_t, lat_h, lat_w)


def unfold_masks(folded: torch.Tensor, num_masks: int = 3, temporal: int = 4, spatial: int = 8) -> torch.Tensor:
    """Inverse of :func:`fold_masks`: ``(B, M*t*s*s, n+1, h, w)`` -> ``(B, M, 4n+1, 8h, 8w)``."""
    b, c, lat_t, lat_h, lat_w = folded.shape
    if c != num_masks * temporal * spatial * spatial:
        raise DiffusionInputError(f"folded masks have {c} channels, expected {num_masks * temporal * spatial**2}")
    x = folded.reshape(b, num_masks, temporal, spatial, spatial, lat_t, lat_h, lat_w)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)  # B, M, T', subframe, H', row, W', col
    x = x.reshape(b, num_masks, lat_t * temporal, lat_h * spatial, lat_w * spatial)
    return x[:, :, temporal - 1 :]


def fit_reference(image: torch.Tensor, region: torch.Tensor | None, height: int, width: int):
    """A reference image (H, W, 3) in [0, 1] fitted into the shot's (height, width) keeping its
    aspect ratio: scaled to fit, centred, padded with mid grey (0 in the model's [-1, 1]). The
    returned region (height, width) is the given one (or all of the image) where the image is and 0
    in the padding, so the reference's role covers only its own pixels."""
    ih, iw = image.shape[:2]
    if region is None:
        region = torch.ones(ih, iw)
    scale = min(height / ih, width / iw)
    th, tw = max(1, min(height, round(ih * scale))), max(1, min(width, round(iw * scale)))
    if (th, tw) != (ih, iw):
        image = torch.nn.functional.interpolate(image.permute(2, 0, 1)[None], size=(th, tw), mode="bilinear",
                                                align_corners=False)[0].permute(1, 2, 0)
        region = torch.nn.functional.interpolate(region[None, None].float(), size=(th, tw), mode="nearest")[0, 0]
    y0, x0 = (height - th) // 2, (width - tw) // 2
    out = torch.full((height, width, 3), 0.5, dtype=image.dtype)
    out_region = torch.zeros(height, width)
    out[y0:y0 + th, x0:x0 + tw] = image
    out_region[y0:y0 + th, x0:x0 + tw] = region
    return out, out_region


def reference_mask(
    role: str, height: int, width: int, region: torch.Tensor | None = None, temporal: int = 4, spatial: int = 8
) -> torch.Tensor:
    """Folded tri-mask ``(1, C, 1, H/8, W/8)`` of one reference frame: its role's channel is the region."""
    if role not in REFERENCE_ROLES:
        raise DiffusionInputError(f"reference role {role!r} is not one of {', '.join(REFERENCE_ROLES)}")
    masks = torch.zeros(1, len(MASK_NAMES), 1, height, width)
    masks[0, MASK_NAMES.index(role), 0] = 1.0 if region is None else region
    return fold_masks(masks, temporal, spatial)


# ----------------------------------------------------------------------------------------- depth
def encode_depth(depth: torch.Tensor, near: float = DEFAULT_DEPTH_NEAR, far: float = DEFAULT_DEPTH_FAR) -> torch.Tensor:
    """Depth (scene units) -> [-1, 1] log-depth, near -> +1, far/inf/unknown -> -1."""
    if not 0 < near < far:
        raise DiffusionInputError(f"depth range needs 0 < near < far, got near={near}, far={far}")
    depth = depth.float()
    valid = torch.isfinite(depth) & (depth > 0)
    d = torch.where(valid, depth, torch.full_like(depth, far)).clamp(near, far)
    enc = 1.0 - 2.0 * (torch.log(d) - math.log(near)) / (math.log(far) - math.log(near))
    return enc.clamp(-1.0, 1.0)


def decode_depth(
    encoded: torch.Tensor, near: float = DEFAULT_DEPTH_NEAR, far: float = DEFAULT_DEPTH_FAR
) -> torch.Tensor:
    """Inverse of :func:`encode_depth` (values are clamped to [-1, 1] first, so depth is in [near, far])."""
    e = encoded.float().clamp(-1.0, 1.0)
    log_d = math.log(near) + (1.0 - e) * 0.5 * (math.log(far) - math.log(near))
    return torch.exp(log_d)


# ------------------------------------------------------------------------------------ references
@dataclass
class Reference:
    """A reference image (H, W, 3) in [0, 1], what it is for, and optionally where (mask (H, W))."""

    image: np.ndarray | torch.Tensor
    role: str = "environment"
    mask: np.ndarray | torch.Tensor | None = None

    def __post_init__(self):
        if self.role not in REFERENCE_ROLES:
            raise DiffusionInputError(f"reference role {self.role!r} is not one of {', '.join(REFERENCE_ROLES)}")


def as_reference(item) -> Reference:
    """Accept a :class:`Reference`, an ``(image, role)`` pair, or a bare image (role ``environment``)."""
    if isinstance(item, Reference):
        return item
    if isinstance(item, tuple) and len(item) in (2, 3) and isinstance(item[1], str):
        return Reference(*item)
    return Reference(item)
