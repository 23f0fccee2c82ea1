"""The depth stage: per frame float32 camera-space depth (docs/depth.md).

Backends: ``ground`` (default) — the environment is a ground plane seen by the shot camera (sky at
FAR); ``plate`` — the environment's own Z channel. Either way every keyed object (character, prop)
stands on the ground where its lowest keyed pixels are: it becomes a camera-facing card through that
contact point, in front of the environment. Contacts are found per frame and smoothed over the shot,
so depth and the shadows cast from it do not jitter. A character mask with several actors (separate
parts, ``actor_regions``) gets one contact per actor as well (``actors``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..camera import FAR, Camera

OBJECTS = ("character", "prop")
SOLID = 0.5  # mask value counted as part of an object
# a separate part of the character mask is an actor of its own when it has at least this share of the
# largest part's solid pixels; a smaller one (a speck, a hand cut off by a prop) belongs to the nearest actor
ACTOR_MIN_SHARE = 0.15


def contact_pixel(mask: np.ndarray) -> tuple[float, float] | None:
    """(x, y) where a soft mask touches the ground: its lowest solid row, at the centre of its
    solid pixels in the lowest 3% of its height. None for an empty mask, and for one the frame's
    bottom edge cuts (a medium shot: its feet, and so its contact, are out of frame)."""
    solid = mask > SOLID
    rows = np.flatnonzero(solid.any(axis=1))
    if rows.size == 0 or solid.sum() < 4 or rows[-1] >= mask.shape[0] - 1:
        return None
    top, bottom = rows[0], rows[-1]
    band = solid[max(top, bottom - max(1, int(0.03 * (bottom - top + 1)))) : bottom + 1]
    xs = np.nonzero(band)[1]
    return float(xs.mean() + 0.5), float(bottom + 1.0)  # the bottom edge of the lowest row


def contact_point(camera: Camera, pixel: tuple[float, float], width: int, height: int) -> np.ndarray | None:
    """World point on the ground under ``pixel``; None when the pixel lies at or above the horizon."""
    ray = camera.unproject(pixel[0], pixel[1], 1.0, width, height) - camera.position
    if ray[1] >= -1e-4:
        return None
    return camera.position + ray * (camera.height_m / -ray[1])


def actor_regions(mask: np.ndarray) -> list[np.ndarray]:
    """The actors of a character mask, left to right: (H, W) bool regions that split the frame between
    its solid parts of at least ACTOR_MIN_SHARE of the largest (8-connected, gaps of a pixel closed),
    every other pixel going to the nearest of them, so ``mask * region`` over the regions sums to the
    mask. One actor: one region, the whole frame. No solid pixel: []."""
    solid = mask > SOLID
    if not solid.any():
        return []
    eight = np.ones((3, 3), bool)
    labels, n = ndimage.label(solid | ndimage.binary_closing(solid, structure=eight), structure=eight)
    sizes = ndimage.sum(solid, labels, np.arange(1, n + 1)) if n > 1 else np.array([solid.sum()])
    big = [i + 1 for i, size in enumerate(sizes) if size >= ACTOR_MIN_SHARE * sizes.max()]
    if len(big) < 2:
        return [np.ones(mask.shape, bool)]
    _, (iy, ix) = ndimage.distance_transform_edt(~np.isin(labels, big), return_indices=True)
    owner = labels[iy, ix]
    return sorted((owner == b for b in big), key=lambda r: float(np.nonzero(r & solid)[1].mean()))


def frame_actor_contacts(camera: Camera, mask: np.ndarray, width: int, height: int) -> list:
    """The world contact of each actor of one frame's character mask (``actor_regions``, left to right;
    None for one whose feet are out of frame)."""
    pts = []
    for region in actor_regions(mask):
        px = contact_pixel(mask * region)
        pts.append(None if px is None else contact_point(camera, px, width, height))
    return pts


def smooth_actors(raw: list[list]) -> list[list]:
    """Per-frame actor contacts smoothed per actor over the shot when every frame has the same number of
    actors (their left-to-right order is then their identity; an actor whose feet leave the frame keeps
    its nearest frame's contact, as an object does); else as found."""
    counts = {len(p) for p in raw}
    if len(counts) != 1 or counts == {0}:
        return raw
    tracks = [smooth_track([p[k] for p in raw]) for k in range(counts.pop())]
    return [[t[i] for t in tracks] for i in range(len(raw))]


def character_parts(mask: np.ndarray, contact, actors) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """[(matte, contact)] of the character: one per actor where the frame's ``actors`` contacts match
    its actor regions in number (two or more), else the whole mask with its one contact."""
    if actors is not None and len(actors) > 1:
        regions = actor_regions(mask)
        if len(regions) == len(actors):
            return [(mask * r, None if a is None else np.asarray(a, np.float32)) for r, a in zip(regions, actors)]
    return [(mask, None if contact is None else np.asarray(contact, np.float32))]


def smooth_track(points: list, radius: int = 2) -> list:
    """Median then mean over +-radius frames of a per-frame list of (3,) points (None = unknown);
    unknown frames take the nearest known value. All None stays None."""
    idx = [i for i, p in enumerate(points) if p is not None]
    if not idx:
        return points
    arr = np.array([points[min(idx, key=lambda j: abs(j - i))] for i in range(len(points))], np.float64)
    med = ndimage.median_filter(arr, size=(2 * radius + 1, 1), mode="nearest")
    return list(ndimage.uniform_filter1d(med, 2 * radius + 1, axis=0, mode="nearest"))


def card_depth(camera: Camera, contact: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W) depth of a vertical card through ``contact`` facing the camera's ground-forward axis."""
    rays = camera.rays(width, height)
    _, _, fwd = camera.basis()
    t = contact[2] / np.maximum(rays[..., 2], 1e-6)
    return (t * (rays @ fwd)).astype(np.float32)


def object_contacts(camera: Camera, masks_per_frame, width: int, height: int) -> dict:
    """Per object, the smoothed world contact point of every frame ({obj: [xyz or None]}), and under
    ``actors`` per frame the contact of each actor of the character mask (``smooth_actors``).
    ``masks_per_frame`` yields {obj: (H, W) mask}; a frame where an object is absent keeps the
    nearest frame's contact (None only if the object never appears)."""
    raw: dict[str, list] = {o: [] for o in OBJECTS}
    actors = []
    for masks in masks_per_frame:
        for o in OBJECTS:
            px = contact_pixel(masks[o])
            raw[o].append(None if px is None else contact_point(camera, px, width, height))
        actors.append(frame_actor_contacts(camera, masks["character"], width, height))
    return {**{o: smooth_track(pts) for o, pts in raw.items()}, "actors": smooth_actors(actors)}


def shot_depth(env_depth: np.ndarray, masks: dict, contacts: dict, camera: Camera) -> np.ndarray:
    """Depth of one frame: the environment with each object's card in front where it is solid (one
    card per actor when ``contacts`` has this frame's ``actors``)."""
    h, w = env_depth.shape
    z = env_depth.astype(np.float32).copy()
    parts = character_parts(masks["character"], contacts.get("character"), contacts.get("actors"))
    for m, c in parts + [(masks["prop"], contacts.get("prop"))]:
        if c is None:
            continue
        solid = m > SOLID
        if solid.any():
            z = np.where(solid, np.minimum(z, card_depth(camera, np.asarray(c), w, h)), z)
    return z


def z_channels(names) -> list[str]:
    """The channel names the ``plate`` backend reads as the environment's depth."""
    return [n for n in names if n in ("Z", "depth.Z") or n.endswith((".Z", ".depth"))]


def plate_depth(layers: dict, size: tuple[int, int], fit: str = "stretch", src_aspect: float = 1.0,
                dst_aspect: float = 1.0) -> np.ndarray | None:
    """The environment's own Z (``Z``, ``depth.Z`` or any ``*.Z``/``*.depth``) at ``size`` = (w, h),
    conformed as its RGB is (``environment_fit`` ``fit``, the pixel aspects: ``io.ingest.conform``) and
    resampled to the nearest sample so edges never blend two surfaces; padding is FAR. None if it has none."""
    from ..io.ingest import conform

    names = z_channels(layers)
    if not names:
        return None
    z = np.asarray(layers[sorted(names, key=len)[0]], np.float32)
    z = np.where(np.isfinite(z) & (z > 0), np.minimum(z, FAR), FAR).astype(np.float32)
    z = conform(z[..., None], size, fit, src_aspect, dst_aspect, nearest=True, pad=FAR)[0][..., 0]
    return z
