"""The renderer's scenes: the SDF eval set (pairs of shots per condition, one ``tune`` and one
``report`` each) and the lighting presets the curation's random scenes draw from. A fast fixture
for unit tests and training data, not the judge of picture quality (its light model is harmonize's)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..camera import light_direction
from .renderer import DemoScene, from_camera_world, hdri_sun, heading


@dataclass(frozen=True)
class EvalShot:
    name: str
    split: str  # tune | report
    description: str
    conditions: dict  # key, direction, elevation, colour, environment, camera, plate
    scene: DemoScene


def camera_at(height: float, tilt_deg: float, fov_deg: float = 40.0, dist: float = 6.0, heading_deg: float = 0.0,
            look_x: float = 0.2) -> dict:
    """DemoScene camera fields: at ``height``, pitched by ``tilt_deg``, ``dist`` metres back from the
    action along ``heading_deg`` (demo-world azimuth of its view axis)."""
    h, t = math.radians(heading_deg), math.radians(tilt_deg)
    pos = np.array([look_x - dist * math.sin(h), height, -dist * math.cos(h)])
    fwd = np.array([math.sin(h) * math.cos(t), math.sin(t), math.cos(h) * math.cos(t)])
    return {"cam_pos": tuple(float(v) for v in pos), "cam_target": tuple(float(v) for v in pos + fwd * dist),
            "fov_deg": fov_deg}


def scene(camera: dict, sun: tuple[float, float] | None = None, align_hdri: bool = False, **fields) -> DemoScene:
    """A DemoScene with ``camera`` (kwargs of camera_at), a sun at (azimuth, elevation) in the sheet's
    convention (relative to the camera), and the HDRI turned so its own sun lies at that azimuth
    (``align_hdri``) or else with its centre column ahead of the camera."""
    scene = DemoScene(**camera_at(**camera), **fields)
    if sun is not None:
        sun_dir = from_camera_world(light_direction(*sun), scene)
        scene = dataclasses.replace(scene, sun_dir=tuple(float(v) for v in sun_dir))
    if scene.hdri:
        spot = hdri_sun(scene.hdri) if align_hdri else None
        ahead = math.degrees(heading(scene))
        yaw = math.degrees(math.atan2(scene.sun_dir[0], scene.sun_dir[2])) - spot[0] if spot else ahead
        scene = dataclasses.replace(scene, hdri_yaw_deg=round(yaw % 360.0, 6))
    return scene


WARM_SUN, WHITE_SUN, COOL_SUN = (2.4, 2.15, 1.85), (2.1, 2.1, 2.1), (1.8, 2.05, 2.4)
LOW_SUN = (3.0, 1.9, 0.9)
OVERCAST = dict(key="none", ao_radius=0.25, ao_strength=0.65, sky_zenith=(0.95, 1.0, 1.08),
                sky_horizon=(1.2, 1.22, 1.25), bounce=0.3)
STONE = dict(ground_a=(0.33, 0.32, 0.30), ground_b=(0.26, 0.25, 0.24))
EARTH = dict(ground_a=(0.24, 0.19, 0.12), ground_b=(0.30, 0.25, 0.16))
WOOD = dict(ground_a=(0.36, 0.22, 0.12), ground_b=(0.30, 0.18, 0.10))
DUSK_SKY = dict(sky_zenith=(0.20, 0.22, 0.45), sky_horizon=(0.80, 0.55, 0.40))


def _all_eval_shots() -> list[EvalShot]:
    """The eval set: pairs of shots per condition, one ``tune`` and one ``report`` each."""
    cam0 = dict(height=1.25, tilt_deg=-4.0)
    s = EvalShot
    return [
        s("ev01", "tune", "hard sun front-right, high; procedural sky", dict(
            key="sun", direction="front", elevation="high", colour="warm white", environment="procedural",
            camera="default", plate="neutral"), scene(cam0, sun=(135, 55), sun_rgb=WARM_SUN)),
        s("ev02", "report", "hard sun from camera right, side light; beach photo backdrop; high camera", dict(
            key="sun", direction="side", elevation="high", colour="white", environment="photo Bells-Beach",
            camera="high 2.6 m, tilt -18", plate="neutral"),
          scene(dict(height=2.6, tilt_deg=-18.0), sun=(90, 45), sun_rgb=WHITE_SUN, backdrop="photo",
                 photo="skimage_Bells-Beach.jpg", backdrop_z=9.0, **STONE)),
        s("ev03", "tune", "low orange sun from the left (side); sunset HDRI", dict(
            key="sun", direction="side", elevation="low", colour="orange", environment="hdri venice_sunset",
            camera="default", plate="neutral"),
          scene(dict(height=1.4, tilt_deg=-5.0), sun=(270, 14), sun_rgb=LOW_SUN, shadow_k=14.0,
                 hdri="venice_sunset_1k.hdr", align_hdri=True, **STONE)),
        s("ev04", "report", "low orange sun front-left; sunset HDRI; lower camera, 35 deg lens", dict(
            key="sun", direction="front", elevation="low", colour="orange", environment="hdri venice_sunset",
            camera="1.0 m, level, fov 35", plate="neutral"),
          scene(dict(height=1.0, tilt_deg=-1.0, fov_deg=35.0, dist=6.5), sun=(215, 16), sun_rgb=LOW_SUN,
                 shadow_k=14.0, hdri="venice_sunset_1k.hdr", align_hdri=True, **STONE)),
        s("ev05", "tune", "backlight through a forest; forest HDRI; low camera looking up", dict(
            key="sun", direction="back", elevation="mid", colour="warm white", environment="hdri forest_slope",
            camera="low 0.7 m, tilt +3", plate="neutral"),
          scene(dict(height=0.7, tilt_deg=3.0), sun=(25, 35), sun_rgb=WARM_SUN, shadow_k=8.0,
                 hdri="forest_slope_1k.hdr", align_hdri=True, **EARTH)),
        s("ev06", "report", "backlight, dusk sky colours; rock landscape photo; camera turned 25 deg", dict(
            key="sun", direction="back", elevation="mid", colour="warm", environment="photo pano_JDW_0302",
            camera="1.5 m, tilt -8, heading 25", plate="neutral"),
          scene(dict(height=1.5, tilt_deg=-8.0, heading_deg=25.0), sun=(335, 28), sun_rgb=(3.1, 2.6, 2.0),
                 backdrop="photo", photo="skimage_pano_JDW_0302.jpg", backdrop_z=10.0, **EARTH, **DUSK_SKY)),
        s("ev07", "tune", "overcast: city square HDRI as sky, no sun", dict(
            key="overcast", direction="-", elevation="-", colour="grey", environment="hdri potsdamer_platz",
            camera="default", plate="neutral"),
          scene(cam0, hdri="potsdamer_platz_1k.hdr", env_gain=2.2, **{**OVERCAST, **STONE})),
        s("ev08", "report", "overcast procedural grey sky; high camera, 50 deg lens", dict(
            key="overcast", direction="-", elevation="-", colour="grey", environment="procedural overcast",
            camera="high 2.2 m, tilt -14, fov 50", plate="neutral"),
          scene(dict(height=2.2, tilt_deg=-14.0, fov_deg=50.0, dist=5.5), **OVERCAST)),
        s("ev09", "tune", "interior: warm lamp front-left, inverse-square falloff, beige wall, dim fill", dict(
            key="lamp", direction="front", elevation="mid", colour="warm", environment="wall + hdri st_fagans fill",
            camera="1.5 m, tilt -6", plate="neutral"),
          scene(dict(height=1.5, tilt_deg=-6.0, dist=5.0), key="lamp", lamp_pos=(-1.6, 2.4, -1.0),
                 lamp_rgb=(5.5, 3.6, 1.8), shadow_k=14.0, backdrop="wall", backdrop_z=2.0, wall_rgb=(0.55, 0.45, 0.36),
                 hdri="st_fagans_interior_1k.hdr", env_gain=0.12, bounce=0.1, **WOOD)),
        s("ev10", "report", "interior: lamp from camera right, warehouse HDRI dimmed", dict(
            key="lamp", direction="side", elevation="mid", colour="warm white", environment="hdri empty_warehouse",
            camera="default", plate="neutral"),
          scene(cam0, key="lamp", lamp_pos=(2.0, 2.1, -0.6), lamp_rgb=(4.6, 3.8, 2.8), shadow_k=14.0,
                 hdri="empty_warehouse_01_1k.hdr", env_gain=0.2, bounce=0.1, **STONE)),
        s("ev11", "tune", "plate over-exposed +1 stop and warm; cool sun from the camera; snowy forest photo", dict(
            key="sun", direction="front", elevation="mid", colour="white, blue fill", environment="photo tahoe",
            camera="1.6 m, tilt -8, fov 45", plate="+1 stop, warm WB"),
          scene(dict(height=1.6, tilt_deg=-8.0, fov_deg=45.0), sun=(170, 40), sun_rgb=WHITE_SUN, backdrop="photo",
                 photo="oiio_tahoe-gps.jpg", backdrop_z=9.0, env_gain=0.55, plate_gain=(2.2, 1.9, 1.4),
                 ground_a=(0.45, 0.46, 0.48), ground_b=(0.38, 0.39, 0.42))),
        s("ev12", "report", "plate under-exposed -1 stop and cool; sun side-left; rock photo", dict(
            key="sun", direction="side", elevation="mid", colour="white", environment="photo pano_JDW_9518",
            camera="default", plate="-1 stop, cool WB"),
          scene(cam0, sun=(250, 45), sun_rgb=WHITE_SUN, backdrop="photo", photo="skimage_pano_JDW_9518.jpg",
                 backdrop_z=9.0, plate_gain=(0.42, 0.5, 0.7), **EARTH)),
        s("ev13", "tune", "telephoto (fov 24) from 11 m, high sun side-left, slight plate tint", dict(
            key="sun", direction="side", elevation="high", colour="warm white", environment="procedural",
            camera="tele fov 24, 1.7 m", plate="+0.3 stop, warm"),
          scene(dict(height=1.7, tilt_deg=-4.0, fov_deg=24.0, dist=11.0), sun=(300, 60), sun_rgb=WARM_SUN,
                 plate_gain=(1.3, 1.15, 1.0))),
        s("ev14", "report", "wide lens (fov 62) from 3.8 m, sun front-right low-ish, slight cool plate", dict(
            key="sun", direction="front", elevation="mid", colour="white", environment="procedural dusk",
            camera="wide fov 62, 1.2 m", plate="-0.3 stop, cool"),
          scene(dict(height=1.2, tilt_deg=-3.0, fov_deg=62.0, dist=3.8), sun=(150, 28), sun_rgb=WHITE_SUN,
                 plate_gain=(0.75, 0.82, 0.95), **DUSK_SKY)),
    ]


@lru_cache(maxsize=1)
def eval_shots() -> tuple[EvalShot, ...]:
    """The eval set's shots (built once: aligning HDRIs reads them)."""
    return tuple(_all_eval_shots())


