"""diffusion.output 'layers': the plain over comp times the model's low-frequency change of light."""

import numpy as np
import pytest

from cinecomp.diffusion.light_ratio import RATIO_LIMITS, apply_layers, blur, light_ratio

pytest.importorskip("cv2")
H, W = 48, 64


@pytest.fixture
def over():
    rng = np.random.default_rng(0)  # a detailed plate: fine noise over a gradient
    base = np.linspace(0.2, 0.8, W, dtype=np.float32)[None, :, None] * np.ones((H, 1, 3), np.float32)
    return base + 0.1 * rng.random((H, W, 3), dtype=np.float32)


def vae_like(img):
    """What a lossy VAE does to any picture: loses the detail and shifts the colour."""
    return blur(img, 3.0) * np.array([0.8, 0.9, 1.1], np.float32)


def test_a_model_that_changes_nothing_gives_the_over_comp_whatever_its_vae_loses(over):
    rec = vae_like(over)
    np.testing.assert_allclose(apply_layers(over, rec, rec, 4.0), over, rtol=1e-5)


def test_a_shadow_is_laid_on_the_full_detail_comp(over):
    rec = vae_like(over)
    model = rec.copy()
    model[16:40, 8:40] *= 0.4  # the model darkened a region (a shadow), through the same lossy VAE
    out = apply_layers(over, model, rec, 2.0)
    np.testing.assert_allclose(out[24:32, 16:32], 0.4 * over[24:32, 16:32], rtol=0.05)  # inside: darker
    np.testing.assert_allclose(out[:, 52:], over[:, 52:], rtol=0.01)  # far from it: untouched
    ratio = out / over  # the plate's detail survives: the change is smooth, the output is not blurred
    assert np.abs(ratio - blur(ratio, 1.0)).max() < 0.05
    detail = lambda img: np.abs(img - blur(img, 1.0)).mean()  # noqa: E731
    assert detail(out) > 0.6 * detail(over) and detail(model) < 0.4 * detail(over)


def test_ratios_are_bounded(over):
    rec = vae_like(over)
    dark = apply_layers(over, np.zeros_like(rec), rec, 0.0)
    assert (dark >= over * RATIO_LIMITS[0] - 1e-6).all()
    assert light_ratio(rec, rec, 4.0).dtype == np.float32


def test_a_model_run_at_low_resolution_lights_the_full_resolution_comp(over):
    import cv2

    small = cv2.resize(vae_like(over), (32, 24), interpolation=cv2.INTER_AREA)  # layers_height 24
    model = small.copy()
    model[:, :16] *= 0.5  # the left half in shadow
    out = apply_layers(over, model, small, 1.0)
    assert out.shape == over.shape
    np.testing.assert_allclose(out[:, :20], 0.5 * over[:, :20], rtol=0.06)  # (EPSILON: not quite 0.5 on dark pixels)
    np.testing.assert_allclose(out[:, 40:], over[:, 40:], rtol=0.02)


def test_layers_size_keeps_the_aspect_in_multiples_of_16():
    from cinecomp.diffusion.shot import layers_size

    assert layers_size(108, 192, 48) == (48, 80)
    assert layers_size(1080, 1920, 0) == (1088, 1920)  # 0: the plate's own size, padded
    assert layers_size(1080, 1920, 96) == (96, 176)
    assert layers_size(16, 16, 16, ranks=2) == (16, 32)  # 2 ranks split the tokens evenly


def test_frames_at_a_model_resolution_come_back_with_the_plates_detail_where_the_model_kept_it(over):
    """output: frames with diffusion.model_height: the model ran at 32x24 (its over reconstruction: the
    comp made smaller); it darkened the left half and replaced a patch. A model that changes nothing
    gives the comp back exactly."""
    import cv2

    from cinecomp.diffusion.light_ratio import frames_to_plate, resize_to

    h, w = over.shape[:2]
    small = cv2.resize(over, (32, 24), interpolation=cv2.INTER_AREA)
    model = small.copy()
    model[:, :16] *= 0.5  # a change of light: the content is kept
    rng = np.random.default_rng(1)
    model[4:10, 22:30] = rng.uniform(0.0, 1.0, (6, 8, 3)).astype(np.float32)  # new content
    np.testing.assert_allclose(frames_to_plate(small, over, small, 1.0), over, atol=1e-5)
    out = frames_to_plate(model, over, small, 1.0)
    assert out.shape == over.shape
    truth = over.copy()
    truth[:, : w // 2] *= 0.5
    plain = resize_to(model, h, w)  # what upsampling alone gives
    kept = np.zeros((h, w), bool)
    kept[:, :12] = kept[:, 36:40] = True  # away from the light's edge and the new patch
    err = lambda img: np.abs(img - truth)[kept].mean()  # noqa: E731
    assert err(out) < 0.3 * err(plain), (err(out), err(plain))
    detail = lambda img: np.abs(img - blur(img, 1.0))[kept].mean()  # noqa: E731
    assert detail(out) > 0.8 * detail(truth) > 0.8 * 2 * detail(plain)
    new = (slice(10, 18), slice(46, 58))  # inside the replaced patch (plate pixels): the model's own picture
    np.testing.assert_allclose(out[new], plain[new], atol=0.02)
