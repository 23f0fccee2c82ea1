"""The model's output applied as low-frequency harmonization layers on the full-detail `over` comp.

A model that works through a VAE returns frames with the VAE's losses (soft edges, lost plate grain,
colour shifts): a small one loses most of the detail.  What the model adds to a plain comp (the
character's shadow and contact occlusion on the environment, the environment's light on the character)
is low-frequency.  So ``diffusion.output: layers`` keeps the pixels of the plain `over` comp (key over
environment, at the plate's resolution) and takes from the model only the change of light:

    ratio  = blur(linear(model frame)) / blur(linear(VAE reconstruction of the over comp))
    output = over * ratio                                   (per channel, scene-linear)

Dividing by the VAE's own reconstruction of `over` (not by `over` itself) cancels what the VAE does to
any picture, so only what the model changed remains.  Because the change is smooth, the model can run
at a fraction of the plate's resolution (``diffusion.layers_height``): its ratio is resized to the
plate, whose own pixels are never resampled.  ``output: frames`` (the default) writes the
model's frames as they are, which is right for a model whose VAE keeps the plate's detail.

``output: frames`` at a model resolution (``diffusion.model_height``: Wan is trained at 480p/720p, a 2K
plate would be far outside it) returns to the plate with :func:`frames_to_plate`: the model's frame,
upsampled, plus what its size and VAE lost of the `over` comp, relit by the model's change of light,
wherever the model kept the content (its frame is a smooth change of light of its `over`
reconstruction); where it replaced content (a synthesised environment, a new prop) the upsampled
frame alone.
"""

from __future__ import annotations

import numpy as np

RATIO_LIMITS = (1.0 / 16.0, 4.0)  # a shadow darkens at most 16x, relighting brightens at most 4x
KEEP_TOLERANCE = 0.25  # relative difference from a relit `over` above which the model replaced the content
EPSILON = 1e-2  # scene-linear; keeps near-black pixels from making ratios of noise
SHADE_THRESHOLD = 0.99  # the base comp darker than `over` by more than 1%: the shadows and contact it drew
SOLID_ALPHA = 0.95  # keep_object_exposure measures the objects where the key is this solid
EXPOSURE_GAIN_RANGE = (1 / 16, 16)  # ... and never moves them by more than 4 stops (as train.loop.match_exposure)
SHADE_GROW = 0.02  # of the plate's height (4 px at 180): the model may move a shadow's edge that far


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an (H, W, C) image, edges reflected; sigma in pixels (0: unchanged)."""
    if sigma <= 0:
        return image
    import cv2

    return cv2.GaussianBlur(np.ascontiguousarray(image, np.float32), (0, 0), sigmaX=float(sigma),
                            borderType=cv2.BORDER_REFLECT)


def light_ratio(model_lin: np.ndarray, over_rec_lin: np.ndarray, sigma: float) -> np.ndarray:
    """The model's change of light, (H, W, 3) ratios in :data:`RATIO_LIMITS`."""
    num = blur(np.maximum(model_lin, 0.0), sigma) + EPSILON
    den = blur(np.maximum(over_rec_lin, 0.0), sigma) + EPSILON
    return np.clip(num / den, *RATIO_LIMITS).astype(np.float32)


def resize_to(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """(H', W', C) -> (h, w, C), bilinear (the ratio is smooth: nothing finer to keep)."""
    if image.shape[:2] == (h, w):
        return image
    import cv2

    out = cv2.resize(np.ascontiguousarray(image, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return out.reshape(h, w, image.shape[2])


def apply_layers(over_lin: np.ndarray, model_lin: np.ndarray, over_rec_lin: np.ndarray, sigma: float) -> np.ndarray:
    """``over_lin`` (H, W, 3) times the model's light ratio.  The model may have run at another size
    (``diffusion.layers_height``, or the plate stretched to its multiples of 16): its ratio is computed
    there (``sigma`` in model pixels) and resized to ``over_lin``'s."""
    h, w = over_lin.shape[:2]
    return (over_lin * resize_to(light_ratio(model_lin, over_rec_lin, sigma), h, w)).astype(np.float32)


def frames_to_plate(model_lin: np.ndarray, over_lin: np.ndarray, over_rec_lin: np.ndarray, sigma: float) -> np.ndarray:
    """The model's frame ``model_lin`` (run at a smaller size, beside ``over_rec_lin``: the VAE's
    reconstruction of the `over` comp there) at the size of ``over_lin`` (the plate's `over` comp):
    upsampled, plus what the model's size and VAE lost of `over` (``over_lin`` minus ``over_rec_lin``
    upsampled) times the model's light ratio where the model kept the content (module doc): a model
    that changes nothing gives ``over_lin`` back. ``sigma`` in model pixels."""
    h, w = over_lin.shape[:2]
    ratio = light_ratio(model_lin, over_rec_lin, sigma)
    relit = np.maximum(over_rec_lin, 0.0) * ratio
    residual = (np.abs(model_lin - relit) / (relit + EPSILON)).mean(axis=-1, keepdims=True)
    keep = np.clip(1.0 - residual / KEEP_TOLERANCE, 0.0, 1.0)
    detail = over_lin - resize_to(np.ascontiguousarray(over_rec_lin, np.float32), h, w)
    lit_detail = resize_to(np.ascontiguousarray(keep * ratio, np.float32), h, w) * detail
    return (resize_to(model_lin, h, w) + lit_detail).astype(np.float32)


def keep_object_exposure(rgb_lin: np.ndarray, base_lin: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``rgb_lin`` with the character's and prop's overall brightness moved back to ``base_lin``'s
    (``diffusion.object_exposure: base``): one gain in linear light, the base's over ``rgb_lin``'s luminance
    summed over the solid object pixels (alpha > 0.95), applied as far as the alpha reaches; their shading
    and colour stay the model's, the environment is untouched. The inverse of what
    ``train.exposure_invariant`` does to a training target, so such a model is run as it was trained."""
    from ..colour import luminance

    a = np.clip(np.asarray(alpha, np.float32), 0.0, 1.0).reshape(*rgb_lin.shape[:2], 1)
    solid = a[..., 0] > SOLID_ALPHA
    got, want = float(luminance(rgb_lin)[solid].sum()), float(luminance(base_lin)[solid].sum())
    if not solid.any() or got <= 0 or want <= 0:
        return rgb_lin
    gain = float(np.clip(want / got, *EXPOSURE_GAIN_RANGE))
    return (rgb_lin * (1.0 + a * (gain - 1.0))).astype(np.float32)


def residual_zone(zone: str, base_lin: np.ndarray, alpha: np.ndarray, over_lin: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 1) weight of the model's change kept on the base comp (``diffusion.residual_zone``):
    ``objects``, the key's alpha (the character and prop); ``shadows``, that and the shadows and contact
    the base drew (where it is darker than ``over_lin``, the plain `over` comp), grown by
    :data:`SHADE_GROW` of the height, so the model may correct a shadow's density, softness and edge but
    not lay a shadow where the base saw none; ``shadows_only``, those shadows and contact off the actors
    (one minus the alpha): the actors stay the base's; ``all``, everywhere."""
    a = np.clip(np.asarray(alpha, np.float32), 0.0, 1.0).reshape(*base_lin.shape[:2], 1)
    if zone == "all":
        return np.ones_like(a)
    if zone == "objects":
        return a
    if zone not in ("shadows", "shadows_only") or over_lin is None:
        raise ValueError(f"residual_zone {zone!r}: one of all, objects, shadows, shadows_only (the last two need "
                         "the over comp)")
    shade = grown_shade(drawn_shade(base_lin, over_lin))[..., None].astype(np.float32)
    return shade * (1.0 - a) if zone == "shadows_only" else np.maximum(a, shade)


def drawn_shade(base_lin: np.ndarray, over_lin: np.ndarray) -> np.ndarray:
    """(H, W) bool: where the base comp drew shadow or contact (darker than the plain `over` comp by more
    than 1 - :data:`SHADE_THRESHOLD`)."""
    from ..colour import luminance

    return luminance(base_lin) < SHADE_THRESHOLD * luminance(over_lin)


def grown_shade(shade: np.ndarray) -> np.ndarray:
    """(H, W) bool ``shade`` grown by :data:`SHADE_GROW` of its height (a disc, at least 1 pixel)."""
    import cv2

    px = max(1, round(SHADE_GROW * shade.shape[0]))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(shade.astype(np.uint8), disc) > 0
