"""The project's own demo renderer: deterministic, fractional edges, shadows, a box that moves."""

import dataclasses

import imageio_ffmpeg
import numpy as np

import pytest

from cinecomp.synth import renderer as demo
from cinecomp.io import exr as exrio
from cinecomp.synth.renderer import SHOT_SCENES, DemoScene, make_demo_shot, pose, render_frame

W, H = 64, 36


def test_deterministic_and_fractional_alpha():
    a, b = render_frame(5, W, H), render_frame(5, W, H)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    alpha = a["alpha"]
    assert 0 <= alpha.min() and alpha.max() <= 1
    assert ((alpha > 0.05) & (alpha < 0.95)).sum() > 10, "antialiased edges must give fractional alpha"
    np.testing.assert_allclose(a["char_mask"] + a["prop_mask"], alpha, atol=1e-6)


def test_character_casts_a_shadow_on_the_ground():
    r = render_frame(5, 128, 72)
    ground = (r["alpha"] == 0) & (r["depth"] < 1e3)
    darker = ground & (r["gt_rgb"].sum(-1) < 0.8 * r["env_rgb"].sum(-1))
    assert darker.sum() > 20, "the sun must cast shadows of the character/box on the ground"
    far = ground & (r["gt_rgb"].sum(-1) >= 0.999 * r["env_rgb"].sum(-1))
    assert far.sum() > 0.5 * ground.sum(), "ground away from the objects is unchanged"


def test_box_moves_after_contact():
    scene = dataclasses.replace(DemoScene(), contact_at=6)
    xs = [pose(i, scene)["bx"] for i in range(12)]
    assert xs[0] == xs[6] and xs[11] > xs[6] + 0.1
    assert not pose(3, scene)["pushing"] and pose(8, scene)["pushing"]


def test_plate_is_green_where_the_character_is_not():
    r = render_frame(0, W, H)
    bg = r["alpha"] == 0
    g = r["plate_rgb"][bg]
    assert (g[:, 1] > 2 * g[:, 0]).all() and (g[:, 1] > 2 * g[:, 2]).all()


def test_make_demo_shot_files(tmp_path):
    for shot, fmt, env in (("a", "exr", "sequence"), ("b", "png", "image"), ("c", "mp4", "sequence")):
        info = make_demo_shot(tmp_path, shot, 32, 18, 1001, 1003, plate_format=fmt, env_kind=env)
        root = tmp_path / shot
        truth = exrio.read_layers(root / "truth" / f"{shot}_truth.1002.exr")
        assert {"R", "G", "B", "A", "alpha.A", "mask.character", "mask.prop", "depth.Z"} <= set(truth)
        if fmt == "mp4":
            n, _ = imageio_ffmpeg.count_frames_and_secs(str(root / "plate" / "c_plate.mp4"))
            assert n == 3
        else:
            assert len(list((root / "plate").iterdir())) == 3
        assert (root / "env" / ("b_env.jpg" if env == "image" else f"{shot}_env.1003.exr")).exists()
        assert info["first"] == 1001
    a = (tmp_path / "a" / "plate" / "a_plate.1001.exr").read_bytes()
    make_demo_shot(tmp_path / "again", "a", 32, 18, 1001, 1003, plate_format="exr")
    assert (tmp_path / "again" / "a" / "plate" / "a_plate.1001.exr").read_bytes() == a


# Per-layer sums of sh010's frame 0 (192x108, contact at 13.8) rendered before the renderer grew
# lamps, overcast, backdrops, HDRIs and plate gain: the demo shots must not change.
SH010_FRAME0_SUMS = {"alpha": 2060.0, "char_mask": 1067.75, "depth": 66556375.193602085, "env_rgb": 48648.94536924362,
                     "gt_rgb": 45612.47508341819, "plate_rgb": 8761.171747401357, "prop_mask": 992.25}


def test_demo_shots_render_as_before():
    r = render_frame(0, 192, 108, dataclasses.replace(SHOT_SCENES["sh010"], contact_at=0.6 * 23))
    assert {k: v.astype(np.float64).sum() for k, v in r.items()} == pytest.approx(SH010_FRAME0_SUMS, rel=1e-9)


def _ground_ratio(r):
    """truth / environment on the visible ground (alpha 0): shadows and occlusion are < 1."""
    ground = (r["alpha"] == 0) & (r["depth"] < 1e3)
    return r["gt_rgb"].sum(-1)[ground] / r["env_rgb"].sum(-1)[ground]


def test_overcast_has_no_hard_shadow():
    sun = render_frame(8, 96, 54, dataclasses.replace(DemoScene(), contact_at=6))
    overcast = render_frame(8, 96, 54, DemoScene(key="none", contact_at=6))
    assert (_ground_ratio(sun) < 0.35).sum() > 20, "the sun casts hard shadows"
    ratio = _ground_ratio(overcast)
    assert ratio.min() >= 1 - DemoScene().ao_strength - 1e-4, "overcast: only contact occlusion darkens the ground"
    assert 5 < (ratio < 0.9).sum() < (_ground_ratio(sun) < 0.9).sum()


def test_lamp_falls_off_with_the_inverse_square_and_cosine():
    lamp = np.array([1.5, 1.2, -1.0])
    scene = DemoScene(key="lamp", lamp_pos=tuple(lamp), lamp_rgb=(4.0, 3.0, 2.0), ambient_rgb=(0.0, 0.0, 0.0))
    r = render_frame(0, 64, 36, scene, ss=1)
    ro, rd, _, _ = demo._camera_rays(64, 36, scene, ss=1)
    q = ro + (-ro[:, 1] / np.minimum(rd[:, 1], -1e-9))[:, None] * rd  # each pixel's ground point
    d = lamp - q
    expected = 3.0 * (d[:, 1] / np.linalg.norm(d, axis=1)) / (d * d).sum(1)  # G of lamp_rgb x cos / r^2
    albedo = demo._ground_albedo(q, scene)[:, 1]
    ground = ((r["alpha"] == 0) & (r["depth"] < 1e3)).reshape(-1)
    np.testing.assert_allclose(r["env_rgb"][..., 1].reshape(-1)[ground], (albedo * expected)[ground], rtol=1e-4)
    near, far = r["env_rgb"][30, 60, 1], r["env_rgb"][20, 5, 1]
    assert near > 3 * far, "ground near the lamp is much brighter"


def test_plate_gain_applies_to_the_plate_only():
    base = render_frame(4, 64, 36)
    gained = render_frame(4, 64, 36, DemoScene(plate_gain=(2.0, 1.0, 0.5)))
    gain = np.array([2.0, 1.0, 0.5], np.float32)
    np.testing.assert_allclose(gained["plate_rgb"], base["plate_rgb"] * gain, rtol=1e-5)
    for k in ("gt_rgb", "env_rgb", "alpha", "depth"):
        np.testing.assert_array_equal(gained[k], base[k])


def test_environments_fall_back_to_the_procedural_sky(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "BACKGROUNDS", tmp_path / "absent")
    plain = render_frame(3, 48, 28)
    for scene in (DemoScene(hdri="venice_sunset_1k.hdr"), DemoScene(backdrop="photo", photo="oiio_tahoe-gps.jpg")):
        r = render_frame(3, 48, 28, scene)
        for k in plain:
            np.testing.assert_array_equal(r[k], plain[k])


def test_real_environments_light_the_scene(shared_data):
    plain = render_frame(3, 48, 28)
    hdri = render_frame(3, 48, 28, DemoScene(hdri="venice_sunset_1k.hdr"))
    assert not np.allclose(hdri["env_rgb"], plain["env_rgb"])
    assert demo.hdri_sun("venice_sunset_1k.hdr")[1] < 10, "the sunset's sun is near the horizon"
    photo = render_frame(3, 48, 28, DemoScene(backdrop="photo", photo="oiio_tahoe-gps.jpg", backdrop_z=6.0))
    sky = plain["depth"] >= demo.FAR
    assert (photo["depth"][sky] < demo.FAR).all(), "the photo backdrop hides the sky"
    np.testing.assert_array_equal(photo["alpha"], plain["alpha"])
