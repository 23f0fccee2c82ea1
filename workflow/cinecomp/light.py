"""The shot's light: one estimate per shot, from the sheet, a light probe, an HDRI environment or the
environment plate (README "Light"). Directions follow camera.py's conventions.
"""

from __future__ import annotations

from .params import Num, Rgb, check_params, parse_json_object

LIGHT_SPEC = {
    "azimuth_deg": Num(None, -360.0, 360.0, doc="towards the key: 0 ahead of the camera (backlight), 90 camera right, 180 behind the camera"),
    "elevation_deg": Num(None, 1.0, 90.0, doc="key height above the horizon"),
    "colour": Rgb(None, 0.0, 1e6, doc="key colour, scene-linear ACEScg (normalised to luminance 1)"),
    "intensity": Num(None, 0.0, 1e6, doc="key irradiance on a surface facing it, in the environment's scene-linear units (empty: estimated)"),
    "softness_deg": Num(None, 0.0, 45.0, doc="angular radius of the key: 0.27 the sun, 5-20 a window or softbox"),
    "key_to_fill": Num(None, 0.0, 1000.0, doc="key irradiance over fill irradiance; 0 = no key (overcast)"),
}
LIGHT_EXAMPLE = '{"azimuth_deg": 300, "elevation_deg": 35}'


def parse_light(text: str) -> dict | None:
    """The sheet's ``light`` cell checked. None: estimate it (empty or "auto")."""
    if not text or not text.strip() or text.strip().strip('"').lower() == "auto":
        return None
    obj = parse_json_object(text, example=LIGHT_EXAMPLE)
    given = check_params(obj, LIGHT_SPEC, what="light")
    if (given["azimuth_deg"] is None) != (given["elevation_deg"] is None):
        raise ValueError(f"light {text!r} gives only one of azimuth_deg and elevation_deg (fix: give both, e.g. {LIGHT_EXAMPLE})")
    return {k: v for k, v in given.items() if v is not None}
