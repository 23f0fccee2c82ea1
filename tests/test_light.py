"""Light estimation: synthetic panoramas with a known sun, SH irradiance, priorities, plate-only defaults,
and the real HDRIs of the shared data."""

import json

import numpy as np
import pytest

from cinecomp.colour import LUMA_ACESCG
from cinecomp.camera import Camera, light_direction
from cinecomp.perception.light import (equirect_directions, equirect_solid_angles, estimate_light, irradiance, parse_light,
                            sh_eval, sh_irradiance_from_equirect)

SKY = np.array([0.4, 0.5, 0.7], np.float32)
SUN = np.array([1.2, 1.0, 0.8], np.float32) * 3000.0


def angle_deg(a, b):
    return float(np.degrees(np.arccos(np.clip(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


def sun_panorama(az, el, radius_deg=2.0, h=256, w=512):
    """Uniform sky of radiance SKY all round plus a sun disk; and the sun's exact irradiance (RGB) above
    the sky on a surface facing it."""
    dirs = equirect_directions(h, w)
    centre = light_direction(az, el)
    cos = dirs @ centre
    disk = cos > np.cos(np.radians(radius_deg))
    img = np.broadcast_to(SKY, (h, w, 3)).copy()
    img[disk] = SUN
    key = ((SUN - SKY)[None] * (equirect_solid_angles(h, w)[disk] * cos[disk])[:, None]).sum(0)
    return img, key


def luminance(rgb):
    return float(np.asarray(rgb) @ LUMA_ACESCG)


def assert_finite_json(light):
    text = json.dumps(light)
    assert "NaN" not in text and "Infinity" not in text
    assert len(light["ambient_sh"]) == 9 and all(len(c) == 3 for c in light["ambient_sh"])
    assert 0.0 <= light["confidence"] <= 1.0


def test_sh_uniform_environment_gives_pi_L():
    img = np.full((64, 128, 3), [0.3, 0.6, 1.2], np.float32)
    normals = np.random.default_rng(0).normal(size=(50, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    e = sh_eval(sh_irradiance_from_equirect(img), normals)
    np.testing.assert_allclose(e, np.pi * np.broadcast_to([0.3, 0.6, 1.2], e.shape), rtol=1e-3)
    light = {"ambient_sh": sh_irradiance_from_equirect(img).tolist(), "intensity": 0.0, "colour": [1, 1, 1],
             "direction": [0, 1, 0]}
    out = irradiance(light, normals.astype(np.float32))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.pi * np.broadcast_to([0.3, 0.6, 1.2], e.shape), rtol=1e-3)
    assert np.isclose(equirect_solid_angles(64, 128).sum(), 4 * np.pi)


@pytest.mark.parametrize("az, el", [(60.0, 35.0), (180.0, 20.0), (275.0, 70.0)])  # 180: across the seam
def test_sun_in_hdri(az, el):
    img, key = sun_panorama(az, el)
    light = estimate_light(sheet_light=None, camera=Camera(), env_hdri=img)
    assert_finite_json(light)
    assert light["source"]["direction"] == light["source"]["intensity"] == "environment_hdri"
    assert angle_deg(light["direction"], light_direction(az, el)) < 2.0
    assert light["intensity"] == pytest.approx(luminance(key), rel=0.1)
    np.testing.assert_allclose(np.array(light["colour"]) * light["intensity"], key, rtol=0.1)
    assert light["softness_deg"] < 4.0 and light["confidence"] > 0.8
    normals = np.array([[0, 1, 0], [0, -1, 0], [1, 0, 0], [0, 0, -1]], np.float64)
    np.testing.assert_allclose(sh_eval(light["ambient_sh"], normals), np.pi * np.broadcast_to(SKY, (4, 3)), rtol=0.1)
    ambient_up = luminance(sh_eval(light["ambient_sh"], np.array([0.0, 1.0, 0.0])))
    assert light["key_to_fill"] == pytest.approx(light["intensity"] * light["direction"][1] / ambient_up, rel=1e-6)


def test_probe_rotation_and_priority_over_hdri():
    img, _ = sun_panorama(60.0, 35.0)
    flat = np.full((64, 128, 3), 0.5, np.float32)
    light = estimate_light(sheet_light=None, camera=Camera(), env_hdri=flat, probe=img, probe_rotation_deg=30.0)
    assert light["source"]["direction"] == "light_probe" and light["source"]["ambient"] == "light_probe"
    assert light["azimuth_deg"] == pytest.approx(90.0, abs=2.0)
    assert light["elevation_deg"] == pytest.approx(35.0, abs=2.0)


def test_sheet_direction_wins_over_probe_but_intensity_is_measured():
    img, key = sun_panorama(60.0, 35.0)
    sheet = parse_light('{"azimuth_deg": 200, "elevation_deg": 20}')
    light = estimate_light(sheet_light=sheet, camera=Camera(), probe=img)
    assert (light["azimuth_deg"], light["elevation_deg"], light["confidence"]) == (200.0, 20.0, 1.0)
    assert light["source"]["direction"] == "sheet" and light["source"]["intensity"] == "light_probe"
    assert angle_deg(light["direction"], light_direction(200, 20)) < 1e-6
    assert light["intensity"] == pytest.approx(luminance(key), rel=0.1)
    assert any("degrees from the light_probe" in n for n in light["notes"])


def test_sheet_key_to_fill_and_colour():
    img, _ = sun_panorama(60.0, 35.0)
    light = estimate_light(sheet_light={"key_to_fill": 2.0, "colour": (2.0, 2.0, 1.0)}, camera=Camera(), env_hdri=img)
    assert light["key_to_fill"] == pytest.approx(2.0)
    assert light["source"]["intensity"] == "sheet" and light["source"]["ambient"] == "environment_hdri"
    assert luminance(light["colour"]) == pytest.approx(1.0)
    off = estimate_light(sheet_light={"key_to_fill": 0.0}, camera=Camera(), env_hdri=img)
    assert off["intensity"] == 0.0 and off["key_to_fill"] == 0.0


def test_overcast_panorama_has_no_key():
    dirs = equirect_directions(128, 256)
    y = dirs[..., 1:2]
    img = np.where(y > 0, (1.0 + 0.8 * y) * SKY, 0.3 * SKY).astype(np.float32)
    img *= 1 + 0.03 * np.random.default_rng(1).standard_normal(img.shape[:2])[..., None]
    light = estimate_light(sheet_light=None, camera=Camera(), env_hdri=img)
    assert_finite_json(light)
    assert light["key_to_fill"] < 0.1 and light["confidence"] <= 0.3


def test_plate_only_defaults_and_grey_world():
    rng = np.random.default_rng(2)
    frame = np.empty((36, 64, 3), np.float32)
    frame[:18], frame[18:] = 0.6, 0.2
    frames = [frame * (1 + 0.05 * rng.standard_normal((36, 64, 1))).astype(np.float32) for _ in range(3)]
    light = estimate_light(sheet_light=None, camera=Camera(), env_frames=frames)
    assert_finite_json(light)
    assert light["source"]["direction"] == "default" and light["source"]["intensity"] == "environment_plate"
    assert light["confidence"] <= 0.3 and light["key_to_fill"] == pytest.approx(3.0)
    assert (light["azimuth_deg"], light["elevation_deg"]) == (150.0, 45.0)
    # key + fill on an upward surface = pi * mean ground radiance / albedo
    total_up = luminance(irradiance(light, np.array([0, 1, 0], np.float32)))
    ground = float(np.mean([luminance(f[18:].reshape(-1, 3).mean(0)) for f in frames]))
    assert total_up == pytest.approx(np.pi * ground / 0.18, rel=0.02)


def test_plate_with_visible_sun_gives_its_direction():
    cam = Camera(tilt_deg=5.0)
    frame = np.empty((72, 128, 3), np.float32)
    frame[:40], frame[40:] = SKY, 0.2
    frame[10:13, 100:103] = 500.0
    light = estimate_light(sheet_light=None, camera=cam, env_frames=[frame])
    assert light["source"]["direction"] == "environment_plate" and light["confidence"] == pytest.approx(0.6)
    assert angle_deg(light["direction"], cam.rays(128, 72)[11, 101]) < 1.5


def test_no_environment_defaults():
    light = estimate_light(sheet_light=None, camera=Camera())
    assert_finite_json(light)
    assert set(light["source"].values()) == {"default"} and light["confidence"] <= 0.3
    assert luminance(irradiance(light, np.array([0, 1, 0], np.float32))) == pytest.approx(np.pi, rel=0.01)


def test_the_exposures_confidence_and_source_are_in_light_json():
    """The ratio of lights rests on the light's shape on the character: its confidence is the key
    direction's weight (0 for the default guess, 1 given) times the camera's (0 for the default camera,
    1 given, partial for one estimated from the pictures: it places the normals and the ground); a key
    taken from a bright spot in the environment plate counts 0 (measured wrong wherever it fired)."""
    from cinecomp.perception.light import DEFAULT_CAMERA_CONFIDENCE, ShotLight, shot_light_json

    frame = np.empty((36, 64, 3), np.float32)
    frame[:18], frame[18:] = 0.6, 0.2
    camera = {"tilt_deg": 0.0}
    for sheet, want in ((None, 0.0), ({"azimuth_deg": 200.0, "elevation_deg": 40.0}, 1.0)):
        light = shot_light_json(estimate_light(sheet_light=sheet, camera=Camera(), env_frames=[frame]), camera)
        assert light["confidences"]["exposure"] == pytest.approx(want)
        assert light["source"]["exposure"].startswith("ratio of lights")
        assert ShotLight.from_json(light).exposure_weight == pytest.approx(want)
    seen = frame.copy()
    seen[5:7, 50:52] = 500.0  # a lamp in frame: confidence 0.6 in its direction
    est = estimate_light(sheet_light=None, camera=Camera(tilt_deg=5.0), env_frames=[seen])
    assert est["confidence"] == pytest.approx(0.6)
    assert shot_light_json(est, camera)["confidences"]["exposure"] == 0  # a bright spot in frame
    assert shot_light_json(est, None)["confidences"]["exposure"] == 0
    given = estimate_light(sheet_light={"azimuth_deg": 200.0, "elevation_deg": 40.0}, camera=Camera(), env_frames=[frame])
    assert shot_light_json(given, None)["confidences"]["exposure"] == 0  # the default camera: a guess
    estimated = shot_light_json(given, camera, camera_confidence=0.86)  # from the environment's Z
    assert estimated["confidences"]["exposure"] == pytest.approx((0.86 - DEFAULT_CAMERA_CONFIDENCE) / (1 - DEFAULT_CAMERA_CONFIDENCE))
    assert "camera: estimated" in estimated["source"]["exposure"]
    assert DEFAULT_CAMERA_CONFIDENCE < 1


def test_irradiance_key_and_visibility():
    img, _ = sun_panorama(60.0, 35.0)
    light = estimate_light(sheet_light=None, camera=Camera(), env_hdri=img)
    n = np.broadcast_to(np.asarray(light["direction"], np.float32), (4, 5, 3))
    lit, shadowed = irradiance(light, n), irradiance(light, n, visibility=np.zeros((4, 5), np.float32))
    assert lit.shape == (4, 5, 3) and lit.dtype == np.float32
    key = light["intensity"] * np.array(light["colour"])
    np.testing.assert_allclose(lit - shadowed, np.broadcast_to(key, lit.shape), rtol=1e-4)
    np.testing.assert_allclose(shadowed, np.maximum(sh_eval(light["ambient_sh"], n), 0), rtol=1e-4)


def test_real_hdris(shared_data):
    from cinecomp.colour import convert
    from cinecomp.io.plates import read_image

    paths = sorted((shared_data / "backgrounds" / "hdri_equirect").glob("*.hdr"))
    if not paths:
        pytest.skip(f"no .hdr files in {shared_data / 'backgrounds' / 'hdri_equirect'}")
    got = {}
    for p in paths:
        rgb = convert(read_image(p)[..., :3], "Linear Rec.709 (sRGB)", "ACEScg")
        got[p.stem] = light = estimate_light(sheet_light=None, camera=Camera(), env_hdri=rgb)
        assert_finite_json(light)
        print(f"{p.stem}: azimuth {light['azimuth_deg']:.1f} elevation {light['elevation_deg']:.1f} "
              f"key_to_fill {light['key_to_fill']:.3g} confidence {light['confidence']:.2f}")
    if "venice_sunset_1k" in got:  # a clear sun just above the horizon, ahead-right of the camera
        v = got["venice_sunset_1k"]
        assert v["azimuth_deg"] == pytest.approx(36.0, abs=3.0) and 0.0 < v["elevation_deg"] < 8.0
        assert v["confidence"] > 0.8 and v["softness_deg"] < 3.0
    if "potsdamer_platz_1k" in got:  # overcast
        assert got["potsdamer_platz_1k"]["key_to_fill"] < 0.1 and got["potsdamer_platz_1k"]["confidence"] <= 0.3


def textured_world(seed: int):
    """Radiance as a function of (azimuth, elevation) in degrees: smooth random structure and a sun."""
    rng = np.random.default_rng(seed)
    waves = [(rng.integers(4, 20), rng.uniform(0.02, 0.15), rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.6))
             for _ in range(12)]

    def radiance(az, el):
        a, e = np.radians(az), np.radians(el)
        log = sum(amp * np.sin(k * a + f * np.degrees(e) + ph) for k, f, ph, amp in waves) - 0.005 * el
        return np.exp(log)[..., None] * np.array([0.5, 0.5, 0.5], np.float32)

    return radiance


def panorama_of(radiance, h=128, w=256):
    az = ((np.arange(w) + 0.5) / w - 0.5) * 360.0
    el = 90.0 - (np.arange(h) + 0.5) / h * 180.0
    return radiance(*np.meshgrid(az, el)).astype(np.float32)


def plate_of(radiance, camera, rotation_deg, w=120, h=68):
    """The environment plate a camera sees when the probe's centre column faces azimuth rotation_deg."""
    rays = camera.rays(w, h)
    az = np.degrees(np.arctan2(rays[..., 0], rays[..., 2]))
    el = np.degrees(np.arcsin(rays[..., 1]))
    return radiance(az - rotation_deg, el).astype(np.float32)


def test_a_probe_without_rotation_is_registered_to_the_environment_plate():
    from cinecomp.perception.light import register_probe_yaw

    world = textured_world(3)
    probe, _ = sun_panorama(40.0, 30.0, h=128, w=256)
    probe = probe / SKY * panorama_of(world)  # the sun on the textured world
    camera = Camera(tilt_deg=-6.0)
    plate = plate_of(world, camera, 137.0)
    reg = register_probe_yaw(probe, plate, camera)
    assert reg.rotation_deg == pytest.approx(137.0, abs=2.0) and reg.confidence > 0.5, reg
    guessed = register_probe_yaw(probe, plate, Camera(), search_tilt=True)  # camera unknown: tilt searched too
    assert guessed.rotation_deg == pytest.approx(137.0, abs=3.0), guessed
    light = estimate_light(sheet_light=None, camera=camera, probe=probe, probe_rotation_deg=None, env_frames=[plate])
    assert angle_deg(light["direction"], light_direction(40.0 + 137.0, 30.0)) < 3.0
    assert "registered to the environment plate" in light["notes"][0]
    assert light["confidences"]["direction"] > 0.5
    # a given rotation wins: no search
    given = estimate_light(sheet_light=None, camera=camera, probe=probe, probe_rotation_deg=0.0, env_frames=[plate])
    assert angle_deg(given["direction"], light_direction(40.0, 30.0)) < 3.0

    # a plate of another place: no clear peak, so the probe's direction is not trusted
    other = plate_of(textured_world(11), camera, 137.0)
    light = estimate_light(sheet_light=None, camera=camera, probe=probe, probe_rotation_deg=None, env_frames=[other])
    assert light["confidences"]["direction"] < 0.25, light["notes"]
    # nothing like it (a flat grey plate): rotation 0 and a note saying how to fix it
    flat = np.full_like(plate, 0.2)
    light = estimate_light(sheet_light=None, camera=camera, probe=probe, probe_rotation_deg=None, env_frames=[flat])
    assert "does not match the environment plate" in light["notes"][0] and "light_probe_rotation_deg" in light["notes"][0]
    assert angle_deg(light["direction"], light_direction(40.0, 30.0)) < 3.0 and light["confidences"]["direction"] == 0


def test_probe_registration_on_the_path_traced_shots(shared_data):
    """The shot's own HDRI as an unregistered probe: the key lands within 15 degrees of the sun
    (shot09: a warehouse; bench/probe_yaw.py reports every shot)."""
    from cinecomp import colour
    from cinecomp.evaluate.pathtraced import _frame, _read_png, _srgb_to_working, camera_of, key_of
    from cinecomp.io.plates import read_image

    shot = shared_data / "pathtraced" / "shot09_empty_warehouse_01"
    if not shot.is_dir():
        pytest.skip(f"path-traced shots absent: {shot}")
    meta = json.loads((shot / "shot.json").read_text())
    hdri = shared_data / "backgrounds" / "hdri_equirect" / "empty_warehouse_01_1k.hdr"
    probe = colour.convert(np.ascontiguousarray(read_image(hdri)[..., :3], np.float32), "Linear Rec.709 (sRGB)",
                           colour.WORKING_SPACE)
    plate = _srgb_to_working(_read_png(_frame(shot, "environment", 1006)))
    key = key_of(meta)
    for camera in (Camera.from_params(camera_of(meta)), Camera()):
        light = estimate_light(sheet_light=None, camera=camera, probe=probe, probe_rotation_deg=None, env_frames=[plate])
        assert angle_deg(light["direction"], light_direction(key["azimuth_deg"], key["elevation_deg"])) < 15.0, light["notes"]


def test_a_black_probe_is_refused_or_ignored(tmp_path):
    """An all-zero probe would light the character with nothing (intensity 0, ambient 0: a black
    character). estimate_light ignores it and says so (here: the HDRI lights the shot); the light stage
    refuses it naming the shot, the probe and the fix."""
    import logging
    from types import SimpleNamespace

    from cinecomp import stages
    from cinecomp.errors import PlateError
    from cinecomp.io import exr as exrio
    from cinecomp.perception.light import probe_problem

    black = np.zeros((32, 64, 3), np.float32)
    img, key = sun_panorama(60.0, 35.0, h=64, w=128)
    light = estimate_light(sheet_light=None, camera=Camera(), probe=black, env_hdri=img)
    assert light["source"]["intensity"] == "environment_hdri" and light["intensity"] > 0
    assert any("light_probe: shows no light" in n for n in light["notes"])
    alone = estimate_light(sheet_light=None, camera=Camera(), probe=black)
    assert set(alone["source"].values()) == {"default"} and alone["intensity"] > 0
    assert probe_problem(black)[0].startswith("shows no light") and probe_problem(img) is None
    exrio.write_rgba(tmp_path / "probe.exr", np.zeros((32, 64, 4), np.float32))
    settings = {"light": None, "camera": {}, "env_colourspace": "", "probe_colourspace": "",
                "probe_rotation_deg": 0.0, "shot": "s"}
    with pytest.raises(PlateError, match=r"shot s: .*probe.exr: light_probe shows no light .*fix: "):
        stages.light(SimpleNamespace(probe=str(tmp_path / "probe.exr"), keys=lambda: ["probe"]),
                     [str(tmp_path / "light.json")], settings, logging.getLogger("t"))
    assert not (tmp_path / "light.json").exists()
