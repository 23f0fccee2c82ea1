"""The camera from the pictures (perception.camera_estimate), the stages that hand it on, and the key
cues measured from the environment plate (issue 18 items 5, 6). Tiny synthetic frames only."""

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import REPO  # noqa: F401 (puts this checkout's cinecomp first on the path)

from cinecomp.camera import FAR, Camera, light_direction
from cinecomp.perception.camera_estimate import (ACTOR_HEIGHT_M, camera_from_plane, estimate_camera,
                                                 fit_ground_inverse_depth)

W, H = 128, 72
TRUE = Camera(focal_mm=28.0, height_m=1.45, tilt_deg=-11.0, roll_deg=4.0)


def actor_mask(cam: Camera, x: float, z: float, width: int = W, height: int = H) -> np.ndarray:
    """A standing ACTOR_HEIGHT_M person, 0.4 m wide, with its contact on the ground at world (x, 0, z)."""
    m = np.zeros((height, width), np.float32)
    foot, head = np.array([x, 0.0, z]), np.array([x, ACTOR_HEIGHT_M, z])
    (fx, hx), (fy, hy), _ = cam.project(np.stack([foot, head]), width, height)
    half = 0.2 * cam.focal_px(width) / z
    rows = np.arange(height) + 0.5
    cols = np.arange(width) + 0.5
    # each row's centre: the line from foot to head (a rolled camera leans the person)
    t = np.clip((fy - rows) / max(fy - hy, 1e-6), 0, 1)
    cx = fx + t * (hx - fx)
    inside = (rows[:, None] >= hy) & (rows[:, None] < fy) & (np.abs(cols[None, :] - cx[:, None]) <= half)
    m[inside] = 1.0
    return m


def walking(cam: Camera, n: int = 6, width: int = W, height: int = H, toward: bool = False) -> list[dict]:
    zs = np.linspace(7.0, 3.5, n) if toward else np.full(n, 4.5)
    xs = np.linspace(-0.8, 0.8, n)
    return [{"character": actor_mask(cam, x, z, width, height), "prop": np.zeros((height, width), np.float32)}
            for x, z in zip(xs, zs)]


def test_ground_plane_z_gives_back_tilt_roll_and_height():
    z = TRUE.ground_depth(W, H)
    coef, keep, rms = fit_ground_inverse_depth(z)
    cam = camera_from_plane(coef, TRUE.focal_px(W), W)
    assert rms < 1e-4 and keep.mean() > 0.5
    assert cam.tilt_deg == pytest.approx(TRUE.tilt_deg, abs=0.05)
    assert cam.roll_deg == pytest.approx(TRUE.roll_deg, abs=0.05)
    assert cam.height_m == pytest.approx(TRUE.height_m, abs=0.005)


def test_walls_and_sky_in_the_z_are_left_out_of_the_ground_fit():
    ground = TRUE.ground_depth(W, H)
    z = ground.copy()
    z[:, 90:] = np.minimum(z[:, 90:], 3.0)  # a wall 3 m away on the right
    z[5:20, 10:30] = FAR  # a hole (sky seen through)
    coef, keep, _ = fit_ground_inverse_depth(z)
    wall = np.zeros_like(keep)
    wall[:, 90:] = ground[:, 90:] > 3.0 * 1.03  # off the ground by more than the fit's tolerance
    assert wall.sum() > 100 and not (keep & wall).any()
    cam = camera_from_plane(coef, TRUE.focal_px(W), W)
    assert cam.tilt_deg == pytest.approx(TRUE.tilt_deg, abs=0.2)
    assert cam.roll_deg == pytest.approx(TRUE.roll_deg, abs=0.2)
    assert cam.height_m == pytest.approx(TRUE.height_m, abs=0.02)


def test_plate_z_and_an_actor_give_the_whole_camera():
    est = estimate_camera(None, W, H, env_z=TRUE.ground_depth(W, H), masks_per_frame=walking(TRUE))
    p = est["params"]
    assert est["source"] == {"tilt_deg": "plate_z", "roll_deg": "plate_z", "height_m": "plate_z", "focal_mm": "actors"}
    assert p["focal_mm"] == pytest.approx(TRUE.focal_mm, rel=0.06)
    assert p["tilt_deg"] == pytest.approx(TRUE.tilt_deg, abs=1.0)
    assert p["roll_deg"] == pytest.approx(TRUE.roll_deg, abs=0.1)
    assert p["height_m"] == pytest.approx(TRUE.height_m, rel=0.06)
    assert 0.5 <= est["confidence"] <= 0.9
    Camera.from_params(p)  # in the sheet's ranges


def test_actors_at_several_distances_give_horizon_and_height_without_z():
    cam = Camera(focal_mm=35.0, height_m=1.9, tilt_deg=-7.0)  # the default focal length: not measured here
    est = estimate_camera(None, W, H, env_z=None, masks_per_frame=walking(cam, 8, toward=True))
    assert est["source"]["tilt_deg"] == "actors" and est["source"]["focal_mm"] == "default"
    assert est["params"]["tilt_deg"] == pytest.approx(-7.0, abs=1.5)
    assert est["params"]["height_m"] == pytest.approx(1.9, rel=0.12)
    assert 0 < est["confidence"] <= 0.6


@pytest.mark.parametrize("case", ["nothing", "sky_only", "not_a_plane", "nan", "actor_at_one_distance",
                                  "feet_out_of_frame", "empty_masks"])
def test_a_missing_cue_falls_back_and_says_so(case):
    rng = np.random.default_rng(0)
    z, masks = None, None
    if case == "sky_only":
        z = np.full((H, W), FAR, np.float32)
    if case == "not_a_plane":
        z = rng.uniform(1.0, 50.0, (H, W)).astype(np.float32)
    if case == "nan":
        z = np.full((H, W), np.nan, np.float32)
    if case == "actor_at_one_distance":
        masks = walking(TRUE)  # no Z, and the actor never changes distance
    if case == "feet_out_of_frame":
        masks = [{"character": np.ones((H, W), np.float32)}] * 4
    if case == "empty_masks":
        masks = [{"character": np.zeros((H, W), np.float32)}] * 4
    est = estimate_camera(None, W, H, env_z=z, masks_per_frame=masks)
    assert est["params"] == {} and set(est["source"].values()) == {"default"}
    assert est["confidence"] == pytest.approx(0.3) and est["notes"]
    json.dumps(est)


def test_z_without_a_whole_actor_keeps_the_default_focal_and_trusts_less():
    est = estimate_camera(None, W, H, env_z=TRUE.ground_depth(W, H), masks_per_frame=None)
    assert est["source"]["focal_mm"] == "default" and est["source"]["roll_deg"] == "plate_z"
    assert est["params"]["roll_deg"] == pytest.approx(TRUE.roll_deg, abs=0.1)
    assert est["confidence"] <= 0.6


def test_the_sheets_camera_wins():
    est = estimate_camera({"height_m": 2.0}, W, H, env_z=TRUE.ground_depth(W, H), masks_per_frame=walking(TRUE))
    assert est == {"params": {"height_m": 2.0}, "source": {"height_m": "sheet"}, "confidence": 1.0,
                   "notes": ["camera: the sheet's"]}


def test_depth_stage_estimates_the_camera_and_light_and_harmonize_use_it(tmp_path, monkeypatch):
    """Plate backend, no sheet camera: the depth stage fits the environment's Z (each frame's read once,
    the middle one's too), writes the camera and its source/confidence in contacts.json with one contact
    per actor; the light stage hands that confidence to harmonize (light.json)."""
    from cinecomp import stages
    from cinecomp.io import exr as exrio
    from cinecomp.perception.light import ShotLight

    w, h = 96, 54
    cam = Camera(focal_mm=30.0, height_m=1.5, tilt_deg=-9.0)
    masks_dir, env_dir, out = tmp_path / "masks", tmp_path / "env", tmp_path / "depth"
    masks_dir.mkdir(), env_dir.mkdir()
    for i, m in enumerate(walking(cam, 4, w, h)):
        f = 1001 + i
        exrio.write_exr(masks_dir / f"s_masks.{f}.exr", {f"mask.{o}": v for o, v in m.items()} | {"mask.environment": 1 - m["character"]})
        env = np.full((h, w), 0.3, np.float32)
        exrio.write_exr(env_dir / f"s_env.{f}.exr", {"R": env, "G": env, "B": env, "A": np.ones_like(env),
                                                    "depth.Z": cam.ground_depth(w, h)})
    settings = {"backend": "plate", "camera": {}, "env_source": str(env_dir / "s_env.####.exr"),
                "environment_fit": "stretch", "attrs": {"shot": "s"}}
    reads = []
    read_exr = exrio.read_exr
    monkeypatch.setattr(exrio, "read_exr", lambda path, *a, **k: reads.append(Path(path).name) or read_exr(path, *a, **k))
    stages.depth(SimpleNamespace(masks=str(masks_dir)), [str(out)], settings, logging.getLogger("t"))
    env_reads = [r for r in reads if r.startswith("s_env")]
    assert sorted(env_reads) == sorted(set(env_reads)) and len(env_reads) == 4  # each environment frame once
    made = json.loads((out / "contacts.json").read_text())
    assert [len(a) for a in made["actors"]] == [1] * 4 and made["actors"][0][0] == made["character"][0]
    assert made["camera_estimate"]["source"]["tilt_deg"] == "plate_z"
    assert made["camera"]["tilt_deg"] == pytest.approx(-9.0, abs=1.0)
    assert made["camera"]["focal_mm"] == pytest.approx(30.0, rel=0.08)
    conf = made["camera_estimate"]["confidence"]
    assert conf > 0.3

    light_out = tmp_path / "light" / "light.json"
    inputs = SimpleNamespace(depth=str(out), keys=lambda: ["depth"])
    stages.light(inputs, [str(light_out)], {"camera": {}, "light": None, "probe_rotation_deg": None, "shot": "s"},
                 logging.getLogger("t"))
    lj = json.loads(light_out.read_text())
    assert lj["camera"] == made["camera"] and lj["confidences"]["camera"] == pytest.approx(conf)
    assert ShotLight.from_json(lj).camera_confidence == pytest.approx(conf)


def test_pathtraced_entries_with_z_run_on_the_plate_depth_backend():
    from cinecomp.evaluate.suite import sheet_rows

    entry = {"shot": "p1", "plate": "p1/plate/p.####.exr", "plate_colourspace": "ACEScg", "first": 1001, "last": 1002,
             "fps": 24.0, "environment": "p1/env/e.####.exr", "env_colourspace": "ACEScg", "camera": {}, "light": {},
             "prop_hint": "", "probe": "", "env_depth": True}
    for mode in ("given", "auto"):
        assert {r["depth_backend"] for r in sheet_rows([entry], ["over", "harmonize"], mode, "set")} == {"plate"}
    assert not any("depth_backend" in r for r in sheet_rows([{**entry, "env_depth": False}], ["over"], "auto", "set"))


def test_a_dim_source_in_frame_is_a_weak_key():
    """A spot only ~15x its surroundings (a glow, a practical in a display-referred plate) is trusted far
    less than a sun-bright one, so a good camera does not turn it into dense shadows."""
    from cinecomp.perception.light import ShotLight, estimate_light, shot_light_json

    cam = Camera(tilt_deg=5.0)
    frame = np.empty((72, 128, 3), np.float32)
    frame[:40], frame[40:] = 1.0, 0.2
    frame[10:13, 100:103] = 15.0
    light = estimate_light(sheet_light=None, camera=cam, env_frames=[frame])
    assert light["source"]["direction"] == "environment_plate" and light["confidence"] < 0.4
    trust = ShotLight.from_json(shot_light_json(light, {}, 0.9)).shadow_trust
    assert trust < 0.25


def test_ground_shadow_cue_finds_the_axis_of_stripes_on_the_ground_and_says_when_there_is_none():
    from cinecomp.perception.key_cues import ground_shadow_cue

    cam = Camera(focal_mm=24.0, height_m=1.6, tilt_deg=-25.0)
    w, h = 160, 90
    z = cam.ground_depth(w, h)
    pts = cam.unproject(*np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5), z, w, h)
    az = 60.0
    d = light_direction(az, 0.0)
    across = pts[..., 0] * d[2] - pts[..., 2] * d[0]  # distance across the axis
    lum = np.where(np.sin(across * 2 * np.pi / 1.5) > 0, 1.0, 0.3)
    frame = np.repeat(np.where(z < FAR, lum, 2.0)[..., None], 3, axis=-1).astype(np.float32)
    cue = ground_shadow_cue(frame, z, cam)
    err = abs((cue.axis_deg - az + 90) % 180 - 90)
    assert err < 5 and cue.coherence > 0.5 and cue.key_to_fill == pytest.approx(0.3 ** -1 - 1, rel=0.3)
    none = ground_shadow_cue(frame, np.full((h, w), FAR, np.float32), cam)
    assert none.axis_deg is None and none.key_to_fill is None and "ground" in none.note


def test_sky_side_cue_names_the_brighter_side_and_says_when_there_is_no_sky():
    from cinecomp.perception.key_cues import sky_side_cue

    cam = Camera(focal_mm=24.0, height_m=1.6, tilt_deg=5.0)
    w, h = 64, 36
    z = cam.ground_depth(w, h)
    rays = cam.rays(w, h)
    az = np.arctan2(rays[..., 0], rays[..., 2])
    for sun_az, side in ((70.0, 1), (-110.0, -1)):  # camera right; camera left (behind it)
        sky = 0.5 * np.exp(1.5 * np.cos(az - np.radians(sun_az)))  # the glow around the sun, out of frame
        frame = np.repeat(np.where(z < FAR, 0.2, sky)[..., None], 3, axis=-1).astype(np.float32)
        cue = sky_side_cue(frame, z, cam)
        assert np.sign(cue.slope) == side and cue.confidence > 0.5, cue.note
    flat = np.repeat(np.where(z < FAR, 0.2, 0.8)[..., None], 3, axis=-1).astype(np.float32)
    flat += np.random.default_rng(0).normal(0, 0.01, flat.shape).astype(np.float32)  # noise, no gradient
    assert sky_side_cue(flat, z, cam).confidence < 0.1
    down = Camera(focal_mm=24.0, height_m=1.6, tilt_deg=-60.0)  # only ground in view
    none = sky_side_cue(flat, down.ground_depth(w, h), down)
    assert none.slope is None and none.confidence == 0 and "sky" in none.note


def box_scene(cam: Camera, boxes, sun_az: float, sun_el: float, fill_over_key: float, w: int = 320, h: int = 180):
    """A ground plane and yawed boxes (centre x, z on the ground, width, depth, height, yaw deg, albedo),
    ray cast: camera-space Z and a Lambertian frame lit by a key at (sun_az, sun_el) and an even fill
    (no cast shadows)."""
    rays = cam.rays(w, h)
    _, _, fwd = cam.basis()
    t_best = np.where(rays[..., 1] < -1e-6, cam.height_m / np.maximum(-rays[..., 1], 1e-6), np.inf)
    normal = np.zeros(rays.shape)
    normal[..., 1] = 1.0
    albedo = np.full((h, w), 0.3)
    for cx, cz, bw, bd, bh, yaw, rho in boxes:
        c, s = np.cos(np.radians(yaw)), np.sin(np.radians(yaw))
        rot = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])  # world -> box axes
        o = rot @ (cam.position - np.array([cx, bh / 2, cz]))
        d = rays @ rot.T
        half = np.array([bw / 2, bh / 2, bd / 2])
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (-half - o) / d, (half - o) / d
        t_near = np.minimum(t1, t2)
        enter, axis = t_near.max(-1), t_near.argmax(-1)
        leave = np.maximum(t1, t2).min(-1)
        hit = (enter < leave) & (enter > 0) & (enter < t_best)
        local = np.zeros(rays.shape)
        np.put_along_axis(local, axis[..., None], -np.sign(np.take_along_axis(d, axis[..., None], -1)), -1)
        t_best = np.where(hit, enter, t_best)
        normal = np.where(hit[..., None], local @ rot, normal)
        albedo = np.where(hit, rho, albedo)
    z = np.where(np.isfinite(t_best), t_best * (rays @ fwd), FAR).astype(np.float32)
    key = np.maximum(normal @ light_direction(sun_az, sun_el), 0.0)
    lum = np.where(np.isfinite(t_best), albedo * (fill_over_key + key), 2.0)
    return np.repeat(lum[..., None], 3, axis=-1).astype(np.float32), z


BOXES = [(-6.0, 30.0, 5.0, 4.0, 6.0, 30.0, 0.5), (7.0, 40.0, 6.0, 5.0, 9.0, -25.0, 0.25),
         (1.0, 55.0, 8.0, 6.0, 12.0, 10.0, 0.4)]


@pytest.mark.parametrize("sun_az, sun_el", [(120.0, 35.0), (250.0, 25.0), (300.0, 50.0)])
def test_shading_cue_reads_the_key_from_the_creases_of_the_environments_geometry(sun_az, sun_el):
    from cinecomp.perception.key_cues import shading_cue

    cam = Camera(focal_mm=24.0, height_m=1.6, tilt_deg=2.0)
    frame, z = box_scene(cam, BOXES, sun_az, sun_el, 0.15)
    cue = shading_cue(frame, z, cam)
    err = abs((cue.azimuth_deg - sun_az + 180.0) % 360.0 - 180.0)
    assert err < 25 and cue.strength > 0.5 and cue.creases >= 3, cue.note
    # the paint differs from box to box, so one global brightness says nothing; a 2K frame reads the same
    big, zbig = box_scene(cam, BOXES, sun_az, sun_el, 0.15, w=1280, h=720)
    assert abs((shading_cue(big, zbig, cam).azimuth_deg - sun_az + 180.0) % 360.0 - 180.0) < 25


def test_shading_cue_says_when_there_is_no_crease_and_the_light_stage_falls_back():
    from cinecomp.perception.light import DEFAULT_CONFIDENCE, estimate_light
    from cinecomp.perception.key_cues import shading_cue

    cam = Camera(focal_mm=24.0, height_m=1.6, tilt_deg=2.0)
    frame, z = box_scene(cam, [], 120.0, 35.0, 0.15)  # a ground plane only
    for depth in (z, None, np.full_like(z, np.nan), z[:10]):
        cue = shading_cue(frame, depth, cam)
        assert cue.azimuth_deg is None and cue.strength == 0 and "environment shading" in cue.note
    plain = estimate_light(sheet_light=None, camera=cam, env_frames=[frame], env_z=z)
    assert plain["source"]["direction"] == "default" and plain["confidence"] == DEFAULT_CONFIDENCE
    # with the boxes, the light stage takes the key from them, above the default's confidence, and a
    # sheet's direction still wins
    frame, z = box_scene(cam, BOXES, 250.0, 25.0, 0.15)
    est = estimate_light(sheet_light=None, camera=cam, env_frames=[frame], env_z=z)
    assert est["source"]["direction"] == "environment_shading" and est["confidence"] > 0.4
    assert abs((est["azimuth_deg"] - 250.0 + 180.0) % 360.0 - 180.0) < 25
    given = estimate_light(sheet_light={"azimuth_deg": 40.0, "elevation_deg": 30.0}, camera=cam, env_frames=[frame], env_z=z)
    assert given["source"]["direction"] == "sheet" and given["azimuth_deg"] == 40.0


def test_light_stage_takes_the_key_from_the_environments_geometry_with_the_sheets_camera(tmp_path):
    """Sheet camera, no light, plate backend: the light stage reads the depth stage's environment Z at
    its middle environment frame and takes the key from the buildings' faces; the camera stays the sheet's."""
    from cinecomp import stages
    from cinecomp.io import exr as exrio

    w, h = 320, 180
    cam = Camera(focal_mm=24.0, height_m=1.6, tilt_deg=2.0)
    frame, z = box_scene(cam, BOXES, 250.0, 25.0, 0.15, w, h)
    masks_dir, env_dir, out = tmp_path / "masks", tmp_path / "env", tmp_path / "depth"
    masks_dir.mkdir(), env_dir.mkdir()
    for i, m in enumerate(walking(cam, 3, w, h)):
        f = 1001 + i
        exrio.write_exr(masks_dir / f"s_masks.{f}.exr", {f"mask.{o}": v for o, v in m.items()} | {"mask.environment": 1 - m["character"]})
        exrio.write_exr(env_dir / f"s_env.{f}.exr", {"R": frame[..., 0], "G": frame[..., 1], "B": frame[..., 2],
                                                    "A": np.ones((h, w), np.float32), "depth.Z": z})
    sheet_camera = {"focal_mm": 24.0, "height_m": 1.6, "tilt_deg": 2.0}
    stages.depth(SimpleNamespace(masks=str(masks_dir)), [str(out)],
                 {"backend": "plate", "camera": sheet_camera, "env_source": str(env_dir / "s_env.####.exr"),
                  "environment_fit": "stretch", "attrs": {"shot": "s"}}, logging.getLogger("t"))
    light_out = tmp_path / "light" / "light.json"
    stages.light(SimpleNamespace(depth=str(out), env=str(env_dir), keys=lambda: ["depth", "env"]), [str(light_out)],
                 {"camera": sheet_camera, "light": None, "probe_rotation_deg": None, "shot": "s",
                  "env_colourspace": "ACEScg"}, logging.getLogger("t"))
    lj = json.loads(light_out.read_text())
    assert lj["source"]["direction"] == "environment_shading", lj["notes"]
    assert abs((lj["azimuth_deg"] - 250.0 + 180.0) % 360.0 - 180.0) < 25
    assert lj["camera"] == sheet_camera and lj["confidences"]["camera"] == 1.0
    assert lj["confidences"]["exposure"] == 0.0  # the exposure does not follow this key
