"""The shot camera: a pinhole over a ground plane, and the conventions every 3D stage shares.

World frame (metres): origin on the ground right below the camera; +y up; +z the camera's forward
axis projected on the ground; +x to the camera's right on the ground. The ground is y = 0. The
camera sits at (0, height_m, 0), pitched by ``tilt_deg`` (< 0 looks down) and rolled by
``roll_deg`` about its view axis (> 0 turns the image's horizon counter-clockwise).

Light directions (sheet column ``light``) point *towards* the light: azimuth on the ground from
+z towards +x (0 = straight ahead of the camera, a backlight; 90 = camera right; 180 = behind the
camera), elevation above the horizon. ``light_direction`` turns them into a world vector.

Depth is camera-space z (distance along the view axis), as in an EXR ``depth.Z`` layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import Num, check_params, parse_json_object

FAR = 1.0e4  # depth of the sky / anything that never meets the ground

CAMERA_SPEC = {
    "focal_mm": Num(35.0, 1.0, 2000.0, doc="lens focal length"),
    "sensor_width_mm": Num(36.0, 1.0, 100.0, doc="sensor (film back) width"),
    "height_m": Num(1.6, 0.05, 1000.0, doc="lens height above the ground"),
    "tilt_deg": Num(0.0, -89.0, 89.0, doc="pitch; < 0 looks down"),
    "roll_deg": Num(0.0, -45.0, 45.0, doc="roll about the view axis"),
}
CAMERA_EXAMPLE = '{"focal_mm": 33, "sensor_width_mm": 36, "height_m": 1.6, "tilt_deg": -9}'


def parse_camera(text: str) -> dict:
    """The sheet's ``camera`` cell checked (ValueError naming the fix); empty -> {} (defaults)."""
    if not text or not text.strip():
        return {}
    return {k: v for k, v in check_params(parse_json_object(text, example=CAMERA_EXAMPLE), CAMERA_SPEC,
                                          what="camera").items()}


def light_direction(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit world vector towards a light at (azimuth, elevation) in the sheet's convention."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])


def azimuth_elevation(direction) -> tuple[float, float]:
    """Inverse of ``light_direction``."""
    d = np.asarray(direction, np.float64)
    d = d / np.linalg.norm(d)
    return float(np.degrees(np.arctan2(d[0], d[2])) % 360.0), float(np.degrees(np.arcsin(np.clip(d[1], -1, 1))))


@dataclass(frozen=True)
class Camera:
    focal_mm: float = 35.0
    sensor_width_mm: float = 36.0
    height_m: float = 1.6
    tilt_deg: float = 0.0
    roll_deg: float = 0.0

    @classmethod
    def from_params(cls, params: dict | None) -> "Camera":
        full = check_params(dict(params or {}), CAMERA_SPEC, what="camera")
        return cls(**full)

    @property
    def position(self) -> np.ndarray:
        return np.array([0.0, self.height_m, 0.0])

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right, up, forward) of the camera as world unit vectors."""
        t, r = np.radians(self.tilt_deg), np.radians(self.roll_deg)
        fwd = np.array([0.0, np.sin(t), np.cos(t)])
        right0 = np.array([1.0, 0.0, 0.0])
        up0 = np.cross(fwd, right0)
        right = np.cos(r) * right0 - np.sin(r) * up0
        up = np.sin(r) * right0 + np.cos(r) * up0
        return right, up, fwd

    def focal_px(self, width: int) -> float:
        return self.focal_mm / self.sensor_width_mm * width

    def rays(self, width: int, height: int) -> np.ndarray:
        """(H, W, 3) world unit directions through pixel centres (row 0 at the top)."""
        right, up, fwd = self.basis()
        f = self.focal_px(width)
        xs = (np.arange(width) + 0.5 - width / 2) / f
        ys = (np.arange(height) + 0.5 - height / 2) / f
        d = fwd[None, None] + xs[None, :, None] * right[None, None] - ys[:, None, None] * up[None, None]
        return d / np.linalg.norm(d, axis=-1, keepdims=True)

    def project(self, points: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixel coordinates (x, y; pixel centres at .5) and camera-space depth of world points (..., 3)."""
        right, up, fwd = self.basis()
        rel = np.asarray(points, np.float64) - self.position
        z = rel @ fwd
        zs = np.where(np.abs(z) < 1e-9, 1e-9, z)
        f = self.focal_px(width)
        return (rel @ right) / zs * f + width / 2, -(rel @ up) / zs * f + height / 2, z

    def unproject(self, x, y, depth, width: int, height: int) -> np.ndarray:
        """World points (..., 3) of pixel coordinates (x, y) at camera-space depth."""
        right, up, fwd = self.basis()
        f = self.focal_px(width)
        x, y, depth = (np.asarray(a, np.float64) for a in (x, y, depth))
        d = fwd + ((x - width / 2) / f)[..., None] * right - ((y - height / 2) / f)[..., None] * up
        return self.position + depth[..., None] * d

    def ground_depth(self, width: int, height: int) -> np.ndarray:
        """(H, W) float32 camera-space depth of the ground plane; FAR where a ray never meets it."""
        rays = self.rays(width, height)
        _, _, fwd = self.basis()
        down = rays[..., 1] < -1e-6
        t = np.where(down, self.height_m / np.maximum(-rays[..., 1], 1e-6), np.inf)
        z = np.where(down, t * (rays @ fwd), FAR)
        return np.minimum(z, FAR).astype(np.float32)

    def horizon_row(self, width: int, height: int) -> float:
        """Image row of the horizon at the centre column (may lie outside the frame)."""
        t = np.radians(self.tilt_deg)
        return height / 2 + np.tan(t) * self.focal_px(width)
