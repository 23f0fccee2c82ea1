"""The project's own demo renderer: deterministic, fractional edges, shadows, a box that moves."""

import dataclasses

import imageio_ffmpeg
import numpy as np

from cinecomp import exrio
from cinecomp.demo import DemoScene, make_demo_shot, pose, render_frame

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
