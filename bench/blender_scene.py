"""Scene builder for bench/blender_shots.py: runs INSIDE Blender (``blender -b --python``).

Builds one path-traced compositing test shot with Cycles and writes it in the folder format of
``../shared/data/pathtraced`` (greenscreen/, alpha/, groundtruth/, environment/, depth/, masks/,
shot.json). Run it through the driver; by hand::

    blender -b --factory-startup --python bench/blender_scene.py -- \
        --out-root /tmp/shots --shot-id bl_baseline_s0_forest_slope --variant baseline --seed 0 \
        --hdri ../shared/data/backgrounds/hdri_equirect/forest_slope_1k.hdr

Only ``bpy``/``mathutils`` and the standard library are used (the Debian Blender has no numpy).
The module can be imported without Blender (``bpy`` missing) so that the driver can read
``VARIANTS`` and ``choose_hdri`` from here.

Scene recipe (same as the existing set, see its README):
  * world = equirect HDRI, rotated about +Z so that its brightest spot lines up with a sun lamp; for
    lighting rays the HDRI is clamped at luminance T (camera rays see it unclamped) and the removed
    hot spot energy is given to the sun (strength, colour and size measured from the HDRI);
  * ground = the HDRI projected from the camera onto the ground geometry (diffuse albedo
    pi*HDRI(dir from camera)/E_total), fading to transparent 18-40 m from the camera;
  * actors = capsules/spheres animated per frame (2-bone IK legs on the ground, IK arms onto the box);
  * green screen = the same actors+prop lit by a neutral studio rig (key/fill/rim area lights, dim
    ambient) rendered with transparent film and composited over constant chroma green, with green
    spill from camera-invisible emissive green floor + backdrop;
  * all images go through the compositor with view transform "Raw" and an explicit
    Exposure -> Linear-to-sRGB node pair (identical to the "Standard" view), so alpha stays linear
    and masks stay binary.

With ``--world sky`` (training data that shares no HDRI with the eval) world and ground are
procedural instead, every choice from the stream "cinecomp-blender-sky:<variant>:<seed>" (the scene's
own stream, hence actors, prop and camera, is the one of --world hdri):
  * world = Blender's Nishita sky (sun elevation 10-60 deg, air/dust/ozone density, altitude, sun
    diameter 0.545-1.6 deg drawn); lighting rays see it without the sun disc, camera rays with it;
  * sun lamp = the sky's sun: same direction and angular size, colour and the sky's fill measured by
    rendering the sky (``analyse_sky``), strength from a seed-drawn key-to-fill ratio in K2F_RANGE;
    ``check_sky_sun`` fails the shot unless the final sky's disc is where the lamp points;
  * ground = a 2 km plane with a procedural asphalt/concrete/grass/dirt material; 2-6 distant boxes
    (45-160 m, never towards the sun) stand in for buildings;
  * interior_two_lights keeps its two lamps under a dim dusk sky (sun 3-10 deg, no disc, no sun lamp).
"""

from __future__ import annotations

import argparse
import array
import json
import math
import os
import random
import shutil
import sys
import time

try:  # importable without Blender (the driver reads VARIANTS / choose_hdri)
    import bpy
    from mathutils import Matrix, Quaternion, Vector
except ImportError:  # pragma: no cover - outside Blender
    bpy = None

# --------------------------------------------------------------------------------------------
# variants (single source of truth; the driver imports this table)
# --------------------------------------------------------------------------------------------

VARIANTS = {
    "baseline": "reference: average actor walks in and pushes a box, flat ground, static camera, HDRI + matching sun",
    "tall_white_shirt": "tall slim actor (1.92-1.98 m) in a white shirt pushes the box",
    "short_black_coat": "short actor (1.50-1.58 m) in a black long-sleeved coat pushes the box",
    "wide": "wide/heavy build actor (x1.35 girth) pushes the box",
    "arms_raised": "actor walks past the (static) box with both arms raised above the head; no contact",
    "crouch": "actor crouches low (knees bent, torso pitched ~40 deg) and pushes the box",
    "interior_two_lights": "interior HDRI, no sun: a warm area lamp and a cool point lamp (different colours), both casting shadows",
    "slope": "ground is an 8-12 deg ramp along the push direction (actor pushes the box uphill), flat beyond +-6 m",
    "steps": "actor and box on a raised platform; three steps lead down towards the camera",
    "pan": "camera pans (rotates about its fixed position) following the actor; per-frame camera matrices",
    "occluder": "a foreground occluder (post or crate stack) between camera and actor; it is part of the plate, not of the green screen",
    "set_pieces": "three or four crates, walls and pillars stand behind the action (part of the set, lit by the world and its sun, casting shadows): faces the light stage can read the key's direction from",
    "feet_out": "closer, tighter framing: the actor's feet are cut by the bottom frame edge on every frame",
    "two_actors": "two actors: one pushes the box, a second walks across behind it the other way",
    "motion_blur": "faster approach (jog) and Cycles motion blur on (0.5-frame shutter, centred)",
    "high_angle": "camera 2.6-3.2 m high looking down on the action (~25 deg): the horizon is above the frame",
    "low_angle": "camera 0.6-0.8 m high, near the ground, looking slightly up at the actor",
    "long_lens": "a 65-85 mm lens from far away: flat perspective, little ground",
    "wide_lens": "an 18-21 mm lens from close by: strong perspective",
}

INTERIOR_HDRIS = ("st_fagans_interior", "empty_warehouse_01")
DEFAULT_HDRI_DIR = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data" / "backgrounds" / "hdri_equirect")


def hdri_stem(path: str) -> str:
    name = os.path.basename(path)
    for suffix in ("_1k.hdr", ".hdr", ".exr", ".jpg", ".jpeg", ".png"):  # an LDR photo may light a world too
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def choose_hdri(variant: str, seed: int, hdris: list[str]) -> str:
    """Deterministic HDRI choice for (variant, seed) among ``hdris`` (paths)."""
    hdris = sorted(hdris)
    pool = hdris
    if variant == "interior_two_lights":
        pool = [h for h in hdris if hdri_stem(h) in INTERIOR_HDRIS] or hdris
    rng = random.Random(f"cinecomp-blender-hdri:{variant}:{seed}")
    return pool[rng.randrange(len(pool))]


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------

LUMA = (0.2126, 0.7152, 0.0722)
GREEN_SRGB = (0.1, 0.75, 0.2)


def srgb_to_linear(c):
    return tuple(x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4 for x in c)


def lum(c) -> float:
    return LUMA[0] * c[0] + LUMA[1] * c[1] + LUMA[2] * c[2]


def clamp(x, lo, hi):
    return lo if x < lo else hi if x > hi else x


def smoothstep(e0, e1, x):
    t = clamp((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def lerp(a, b, t):
    return a + (b - a) * t


def sph(az, el):
    """Unit vector for azimuth (from +X towards +Y) and elevation, radians."""
    return (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))


def mat_list(m):
    return [[float(m[i][j]) for j in range(4)] for i in range(4)]


# albedos (sRGB display values of the cloth/skin colour; converted to linear for the shader)
SKINS = {"light": (0.87, 0.69, 0.57), "medium": (0.66, 0.47, 0.34), "dark": (0.38, 0.25, 0.18)}
SHIRTS = {"purple": (0.42, 0.24, 0.56), "yellow": (0.86, 0.70, 0.22), "white": (0.93, 0.93, 0.91),
          "red": (0.70, 0.14, 0.12), "teal": (0.12, 0.48, 0.50), "grey": (0.50, 0.50, 0.52),
          "orange": (0.88, 0.45, 0.13), "black_coat": (0.045, 0.045, 0.05)}
TROUSERS = {"denim": (0.20, 0.28, 0.45), "khaki": (0.60, 0.53, 0.38), "black": (0.07, 0.07, 0.08),
            "grey": (0.36, 0.36, 0.38)}
SHOES = {"brown": (0.30, 0.18, 0.10), "black": (0.05, 0.05, 0.05), "white": (0.85, 0.85, 0.83)}
HAIRS = {"black": (0.04, 0.035, 0.03), "brown": (0.25, 0.15, 0.08), "blonde": (0.72, 0.58, 0.34),
         "grey": (0.55, 0.55, 0.55)}
PROP_MATERIALS = {  # name: (sRGB albedo, roughness, metallic)
    "cardboard": ((0.58, 0.43, 0.27), 0.85, 0.0),
    "wood": ((0.50, 0.33, 0.18), 0.6, 0.0),
    "crate": ((0.64, 0.50, 0.31), 0.75, 0.0),
    "grey_metal": ((0.56, 0.57, 0.59), 0.35, 0.85),
}
BUILDS = {  # name: (height range m, girth factor)
    "average": ((1.70, 1.82), 1.0),
    "tall": ((1.92, 1.98), 0.9),
    "short": ((1.50, 1.58), 0.97),
    "wide": ((1.70, 1.78), 1.35),
}


# --------------------------------------------------------------------------------------------
# variant configuration (all random choices here, from the seed)
# --------------------------------------------------------------------------------------------

def actor_spec(rng, name, build=None, shirt=None, pose="push", coat=False, long_sleeves=None):
    build = build or rng.choice(["average", "average", "tall", "short"])
    (h0, h1), girth = BUILDS[build]
    shirt = shirt or rng.choice(["purple", "yellow", "red", "teal", "grey", "orange", "white"])
    if long_sleeves is None:
        long_sleeves = coat or rng.random() < 0.4
    return {
        "name": name, "build": build, "height_m": round(rng.uniform(h0, h1), 3), "girth": girth,
        "skin": rng.choice(sorted(SKINS)), "shirt": shirt,
        "trousers": rng.choice(sorted(TROUSERS)), "shoes": rng.choice(sorted(SHOES)),
        "hair": rng.choice(sorted(HAIRS)), "long_sleeves": bool(long_sleeves), "coat": bool(coat),
        "pose": pose, "gait_phase": rng.random(),
    }


def variant_config(variant: str, rng: random.Random) -> dict:
    cfg = {
        "variant": variant, "ground": "flat", "lights": "sun", "camera": "static", "occluder": None,
        "motion_blur": False, "contact_fraction": 0.36, "walk_speed": rng.uniform(0.9, 1.2),
        "push_speed": rng.uniform(0.35, 0.5), "prop_material": rng.choice(sorted(PROP_MATERIALS)),
        "prop_size": [round(rng.uniform(0.5, 0.7), 2), round(rng.uniform(0.55, 0.8), 2), round(rng.uniform(0.9, 1.1), 2)],
        "prop_start_x": round(rng.uniform(0.3, 0.5), 2),
        "focal_mm": rng.choice([28.0, 30.0, 32.0, 35.0]), "cam_height": rng.uniform(1.5, 1.7),
        "cam_azimuth_deg": rng.uniform(-120.0, -60.0), "cam_distance": rng.uniform(4.0, 4.8),
        "sun_side": rng.choice([-1, 1]), "sun_rel_deg": rng.uniform(50.0, 140.0),
    }
    actors = []
    if variant == "tall_white_shirt":
        actors.append(actor_spec(rng, "Character", build="tall", shirt="white", long_sleeves=False))
    elif variant == "short_black_coat":
        actors.append(actor_spec(rng, "Character", build="short", shirt="black_coat", coat=True))
    elif variant == "wide":
        actors.append(actor_spec(rng, "Character", build="wide"))
    elif variant == "arms_raised":
        actors.append(actor_spec(rng, "Character", pose="arms_raised"))
        cfg["walk_speed"] = rng.uniform(0.9, 1.1)
        cfg["prop_size"][2] = round(rng.uniform(0.6, 0.9), 2)
    elif variant == "crouch":
        actors.append(actor_spec(rng, "Character", pose="crouch_push"))
        cfg["prop_size"][2] = round(rng.uniform(0.55, 0.7), 2)
        cfg["walk_speed"] = rng.uniform(0.7, 0.9)
    elif variant == "two_actors":
        actors.append(actor_spec(rng, "Character"))
        actors.append(actor_spec(rng, "Character2", pose="walk"))
        cfg["cam_distance"] = rng.uniform(5.0, 5.6)
    else:
        actors.append(actor_spec(rng, "Character"))
    if variant == "interior_two_lights":
        cfg["lights"] = "interior2"
    elif variant == "slope":
        cfg["ground"] = "slope"
        cfg["slope_deg"] = rng.uniform(8.0, 12.0)
    elif variant == "steps":
        cfg["ground"] = "steps"
        cfg["step_rise"] = rng.uniform(0.14, 0.18)
        cfg["step_tread"] = rng.uniform(0.30, 0.36)
        cfg["step_count"] = 3
        cfg["cam_distance"] = rng.uniform(4.4, 5.0)
    elif variant == "pan":
        cfg["camera"] = "pan"
        cfg["contact_fraction"] = 0.7
        cfg["walk_speed"] = rng.uniform(1.2, 1.4)
        cfg["cam_distance"] = rng.uniform(3.4, 3.9)
        cfg["pan_rate_deg_s"] = rng.uniform(20.0, 30.0)
    elif variant == "occluder":
        cfg["occluder"] = rng.choice(["post", "crates"])
    elif variant == "set_pieces":
        pieces = []
        for _ in range(rng.randint(3, 4)):
            kind = rng.choice(["crate", "crate", "wall", "pillar"])
            if kind == "crate":
                side = rng.uniform(0.7, 1.3)
                size = [side, side * rng.uniform(0.8, 1.2), side * rng.uniform(0.8, 1.3)]
            elif kind == "wall":
                size = [rng.uniform(2.5, 4.0), 0.25, rng.uniform(2.0, 2.8)]
            else:
                size = [0.45, 0.45, rng.uniform(2.2, 3.0)]
            pieces.append({"kind": kind, "back_m": rng.uniform(2.0, 6.0), "side_m": rng.choice([-1, 1]) * rng.uniform(1.5, 4.0),
                           "yaw_deg": rng.uniform(-60.0, 60.0), "size_m": [round(v, 2) for v in size],
                           "colour_srgb": list(rng.choice(BLOCK_COLOURS))})
        cfg["set_pieces"] = pieces
    elif variant == "feet_out":
        cfg["camera"] = "feet_out"
        cfg["focal_mm"] = rng.choice([35.0, 40.0])
        cfg["cam_distance"] = rng.uniform(3.0, 3.4)
    elif variant == "high_angle":
        cfg["cam_height"] = rng.uniform(2.6, 3.2)
        cfg["aim_h"] = 0.4
    elif variant == "low_angle":
        cfg["cam_height"] = rng.uniform(0.6, 0.8)
        cfg["aim_h"] = 1.0
    elif variant == "long_lens":
        cfg["focal_mm"] = rng.choice([65.0, 75.0, 85.0])
        cfg["cam_distance"] = rng.uniform(9.0, 11.0)
    elif variant == "wide_lens":
        cfg["focal_mm"] = rng.choice([18.0, 21.0])
        cfg["cam_distance"] = rng.uniform(2.4, 2.8)
    elif variant == "motion_blur":
        cfg["motion_blur"] = True
        cfg["walk_speed"] = rng.uniform(2.8, 3.2)
        cfg["push_speed"] = rng.uniform(0.7, 0.9)
        cfg["contact_fraction"] = 0.55
    cfg["actors"] = actors
    return cfg


# --------------------------------------------------------------------------------------------
# HDRI analysis (pure python, full resolution)
# --------------------------------------------------------------------------------------------

class Hdri:
    """Equirect HDRI statistics in Blender's convention: column u -> azimuth pi - 2 pi u (centre
    column faces +X), row from the bottom -> elevation."""

    def __init__(self, path):
        self.path = path
        self.image = bpy.data.images.load(path, check_existing=True)
        self.W, self.H = self.image.size
        self.buf = array.array("f", [0.0]) * (self.W * self.H * 4)
        self.image.pixels.foreach_get(self.buf)
        W, H, buf = self.W, self.H, self.buf
        upper = []
        peak, kpeak = -1.0, 0
        for k in range(W * (H // 2), W * H):
            o = 4 * k
            v = LUMA[0] * buf[o] + LUMA[1] * buf[o + 1] + LUMA[2] * buf[o + 2]
            upper.append(v)
            if v > peak:
                peak, kpeak = v, k
        upper.sort()
        self.median_upper = upper[len(upper) // 2]
        self.peak_upper = peak
        j, i = divmod(kpeak, W)
        self.hot_el = ((j + 0.5) / H - 0.5) * math.pi
        self.hot_az = math.pi - 2 * math.pi * (i + 0.5) / W

    def integrals(self, T, cone_deg=15.0):
        """Horizontal irradiance of the HDRI clamped at luminance T (upper hemisphere), and the
        energy above T within ``cone_deg`` of the brightest pixel (the sun's share)."""
        W, H, buf = self.W, self.H, self.buf
        hx, hy, hz = sph(self.hot_az, self.hot_el)
        cosc = math.cos(math.radians(cone_deg))
        eh = [0.0, 0.0, 0.0]
        es = [0.0, 0.0, 0.0]
        omega = 0.0
        dphi, dth = 2 * math.pi / W, math.pi / H
        for j in range(H // 2, H):
            el = ((j + 0.5) / H - 0.5) * math.pi
            ce, se = math.cos(el), math.sin(el)
            d_omega = dphi * dth * ce
            base = j * W * 4
            for i in range(W):
                o = base + 4 * i
                r, g, b = buf[o], buf[o + 1], buf[o + 2]
                v = 0.2126 * r + 0.7152 * g + 0.0722 * b
                if v > T:
                    s = T / v
                    az = math.pi - 2 * math.pi * (i + 0.5) / W
                    if ce * math.cos(az) * hx + ce * math.sin(az) * hy + se * hz > cosc:
                        f = (1 - s) * d_omega
                        es[0] += r * f
                        es[1] += g * f
                        es[2] += b * f
                        omega += d_omega
                    r, g, b = r * s, g * s, b * s
                f = se * d_omega
                eh[0] += r * f
                eh[1] += g * f
                eh[2] += b * f
        return eh, es, omega


K2F_RANGE = (1.3, 3.0)  # the existing set spans 1.35-2.24; a weaker measured sun is boosted
EXPOSURE_TARGET = 0.6  # display-linear value of a white horizontal Lambertian card under key + fill


def exposure_for(e_total_lum: float) -> float:
    return math.log2(EXPOSURE_TARGET * math.pi / max(e_total_lum, 1e-6))


def analyse_sun(hdri: Hdri):
    """Clamp level, sun strength/colour/size, fill irradiance and exposure (iterated: T depends
    on the exposure, the exposure on the total irradiance)."""
    el_sun = clamp(hdri.hot_el, math.radians(15.0), math.radians(60.0))
    T = 8.0 * hdri.median_upper
    for _ in range(3):
        eh, es, omega = hdri.integrals(T)
        strength = lum(es)
        if strength > 1e-6:
            colour = [c / strength for c in es]
        else:
            colour = [1.0, 1.0, 1.0]
        k2f_raw = strength * math.sin(el_sun) / max(lum(eh), 1e-9)
        k2f = clamp(k2f_raw, K2F_RANGE[0], K2F_RANGE[1])
        strength = k2f * lum(eh) / math.sin(el_sun)
        e_total = [eh[c] + strength * math.sin(el_sun) * colour[c] for c in range(3)]
        ev = exposure_for(lum(e_total))
        T_new = max(8.0 * hdri.median_upper, 1.05 * 2.0 ** (-ev))
        if abs(T_new - T) < 1e-4 * T:
            break
        T = T_new
    ang = math.degrees(2 * math.sqrt(omega / math.pi)) if omega > 0 else 0.5
    return {
        "T": T, "eh": eh, "strength": strength, "colour": colour, "el": el_sun,
        "k2f": k2f, "k2f_raw": k2f_raw, "angular_deg": clamp(ang, 0.5, 8.0), "ev": ev,
        "e_total": e_total,
    }


# --------------------------------------------------------------------------------------------
# ground
# --------------------------------------------------------------------------------------------

class Ground:
    def __init__(self, cfg):
        self.kind = cfg["ground"]
        self.cfg = cfg
        if self.kind == "slope":
            self.tan = math.tan(math.radians(cfg["slope_deg"]))
            self.xc, self.half = 0.0, 6.0
        elif self.kind == "steps":
            self.rise, self.tread, self.n = cfg["step_rise"], cfg["step_tread"], cfg["step_count"]
            self.y0 = -0.6
            self.top = self.rise * self.n

    def h(self, x, y):
        if self.kind == "slope":
            return self.tan * clamp(x - self.xc, -self.half, self.half)
        if self.kind == "steps":
            if y >= self.y0:
                return self.top
            k = int(math.floor((self.y0 - y) / self.tread)) + 1  # 1 .. : steps down
            return max(self.top - k * self.rise, 0.0)
        return 0.0

    def normal(self, x, y):
        if self.kind == "slope" and abs(x - self.xc) < self.half:
            n = Vector((-self.tan, 0.0, 1.0))
            return n.normalized()
        return Vector((0.0, 0.0, 1.0))

    def mesh(self, name, centre, radius=46.0):
        cx, cy = centre
        x0, x1, y0, y1 = cx - radius, cx + radius, cy - radius, cy + radius
        verts, faces = [], []
        if self.kind == "slope":
            xs = [x0, self.xc - self.half, self.xc + self.half, x1]
            for x in xs:
                verts += [(x, y0, self.h(x, 0)), (x, y1, self.h(x, 0))]
            for k in range(3):
                faces.append((2 * k, 2 * k + 2, 2 * k + 3, 2 * k + 1))
        elif self.kind == "steps":
            prof = [(y1, self.top), (self.y0, self.top)]
            for k in range(1, self.n + 1):
                yk = self.y0 - (k - 1) * self.tread
                prof.append((yk, self.top - k * self.rise))
                prof.append((yk - self.tread if k < self.n else y0, self.top - k * self.rise))
            for (y, z) in prof:
                verts += [(x0, y, z), (x1, y, z)]
            for k in range(len(prof) - 1):
                faces.append((2 * k, 2 * k + 1, 2 * k + 3, 2 * k + 2))
        else:
            verts = [(x0, y0, 0.0), (x1, y0, 0.0), (x1, y1, 0.0), (x0, y1, 0.0)]
            faces = [(0, 1, 2, 3)]
        me = bpy.data.meshes.new(name)
        me.from_pydata(verts, [], faces)
        me.update()
        for p in me.polygons:  # normals up / towards -y (the camera side)
            if p.normal.z < -1e-6 or (abs(p.normal.z) < 1e-6 and p.normal.y > 0):
                p.flip()
        me.update()
        return me

    def describe(self, actor_xy):
        d = {"mode": "projected", "z": round(self.h(*actor_xy), 6), "shape": self.kind,
             "note": "projected: diffuse plane, albedo = pi*HDRI(dir from camera)/E_total, fades to transparent 18-40 m from the camera"}
        if self.kind == "slope":
            d["slope_deg"] = self.cfg["slope_deg"]
            d["height_function"] = f"z = tan({self.cfg['slope_deg']:.3f} deg) * clamp(x - {self.xc}, -{self.half}, {self.half})"
            d["note"] += "; ramp rising along +X (the push direction), flat beyond +-6 m"
        elif self.kind == "steps":
            d.update(step_rise_m=self.rise, step_tread_m=self.tread, step_count=self.n,
                     platform_z=self.top, platform_edge_y=self.y0,
                     height_function=f"z = {self.top:.4f} for y >= {self.y0}; one step of {self.rise:.4f} m down every {self.tread:.4f} m towards -y, then 0")
            d["note"] += "; actor and box on the platform, steps down towards the camera"
        return d


# --------------------------------------------------------------------------------------------
# meshes & materials
# --------------------------------------------------------------------------------------------

def capsule_mesh(name, r0, r1, length, sx=1.0, sy=1.0, seg=16, rings=5):
    """Capsule along local +Z from 0 to ``length`` (sphere centres), radius r0 at 0 and r1 at the
    end, cross-section scaled by sx (local X) and sy (local Y)."""
    verts, faces = [], []
    ring_list = []
    for k in range(rings + 1):  # bottom hemisphere, -90 .. 0 deg
        a = -math.pi / 2 + (math.pi / 2) * k / rings
        ring_list.append((0.0 + r0 * math.sin(a), r0 * math.cos(a)))
    for k in range(rings + 1):  # top hemisphere, 0 .. 90 deg
        a = (math.pi / 2) * k / rings
        ring_list.append((length + r1 * math.sin(a), r1 * math.cos(a)))
    idx = []
    for (z, rr) in ring_list:
        if rr < 1e-7:
            verts.append((0.0, 0.0, z))
            idx.append([len(verts) - 1] * seg)
        else:
            row = []
            for s in range(seg):
                t = 2 * math.pi * s / seg
                verts.append((rr * math.cos(t) * sx, rr * math.sin(t) * sy, z))
                row.append(len(verts) - 1)
            idx.append(row)
    for a_row, b_row in zip(idx[:-1], idx[1:]):
        for s in range(seg):
            q = (a_row[s], a_row[(s + 1) % seg], b_row[(s + 1) % seg], b_row[s])
            uniq = []
            for v in q:
                if v not in uniq:
                    uniq.append(v)
            if len(uniq) >= 3:
                faces.append(tuple(uniq))
    me = bpy.data.meshes.new(name)
    me.from_pydata(verts, [], faces)
    me.update()
    for p in me.polygons:
        p.use_smooth = True
    return me


def frustum_mesh(name, r_top, r_bot, length, sx=1.0, sy=1.0, seg=20):
    """Open tube from z=0 (radius r_top) down to z=-length (radius r_bot): a coat skirt."""
    verts, faces = [], []
    for (z, r) in ((0.0, r_top), (-length, r_bot)):
        for s in range(seg):
            t = 2 * math.pi * s / seg
            verts.append((r * math.cos(t) * sx, r * math.sin(t) * sy, z))
    for s in range(seg):
        faces.append((s, (s + 1) % seg, seg + (s + 1) % seg, seg + s))
    me = bpy.data.meshes.new(name)
    me.from_pydata(verts, [], faces)
    me.update()
    for p in me.polygons:
        p.use_smooth = True
    return me


def box_mesh(name, sx, sy, sz, origin_bottom=False):
    z0 = 0.0 if origin_bottom else -sz / 2
    xs, ys, zs = (-sx / 2, sx / 2), (-sy / 2, sy / 2), (z0, z0 + sz)
    verts = [(x, y, z) for z in zs for y in ys for x in xs]
    faces = [(0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5)]
    me = bpy.data.meshes.new(name)
    me.from_pydata(verts, [], faces)
    me.update()
    return me


def principled(name, srgb, rough=0.6, metallic=0.0, specular=0.35):
    m = bpy.data.materials.new(name)
    m.use_nodes = True
    p = m.node_tree.nodes["Principled BSDF"]
    p.inputs["Base Color"].default_value = (*srgb_to_linear(srgb), 1.0)
    p.inputs["Roughness"].default_value = rough
    p.inputs["Metallic"].default_value = metallic
    p.inputs["Specular"].default_value = specular
    m.diffuse_color = (*srgb_to_linear(srgb), 1.0)
    return m


def emission_material(name, rgb_linear, strength=1.0):
    m = bpy.data.materials.new(name)
    m.use_nodes = True
    nt = m.node_tree
    nt.nodes.clear()
    e = nt.nodes.new("ShaderNodeEmission")
    e.inputs["Color"].default_value = (*rgb_linear, 1.0)
    e.inputs["Strength"].default_value = strength
    o = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(e.outputs[0], o.inputs["Surface"])
    return m


def link(obj, coll=None):
    (coll or bpy.context.scene.collection).objects.link(obj)
    return obj


def new_object(name, data, material=None, pass_index=0):
    ob = bpy.data.objects.new(name, data)
    if material is not None:
        data.materials.append(material)
    ob.pass_index = pass_index
    link(ob)
    return ob


# --------------------------------------------------------------------------------------------
# actor: body dimensions, per-frame joint positions (IK), parts
# --------------------------------------------------------------------------------------------

def body_dims(H, girth):
    s = H / 1.75
    g = girth
    d = {
        "H": H, "ankle_h": 0.045 * H, "shin": 0.245 * H, "thigh": 0.245 * H,
        "foot_len": 0.15 * H, "foot_r": 0.036 * s,
        "hip_w": 0.095 * H * (1 + 0.5 * (g - 1)), "pelvis_up": 0.035 * H,
        "torso": 0.245 * H, "neck": 0.05 * H, "head_r": 0.062 * H,
        "sh_w": 0.21 * H * (1 + 0.4 * (g - 1)), "upperarm": 0.172 * H, "forearm": 0.145 * H,
        "hand_r": 0.045 * s,
        "r_thigh": (0.075 * s * g, 0.052 * s * g), "r_shin": (0.05 * s * g, 0.038 * s * g),
        "r_upperarm": (0.045 * s * g, 0.037 * s * g), "r_forearm": (0.036 * s * g, 0.03 * s * g),
        "r_torso": (0.13 * s * g, 0.15 * s * g), "torso_sx": 0.72, "r_neck": 0.045 * s * (0.5 + 0.5 * g),
        "r_pelvis": 0.13 * s * g,
    }
    d["hip_h"] = d["ankle_h"] + d["shin"] + d["thigh"]
    return d


def ik2(a, target, l1, l2, pole):
    """Two-bone IK from root ``a`` to ``target``: returns (mid joint, end) with the middle joint
    bending towards ``pole``; the end is pulled in when out of reach."""
    v = target - a
    c = v.length
    c = clamp(c, abs(l1 - l2) + 1e-4, (l1 + l2) * 0.9995)
    u = v.normalized()
    end = a + u * c
    cos_a = clamp((l1 * l1 + c * c - l2 * l2) / (2 * l1 * c), -1.0, 1.0)
    w = pole - u * pole.dot(u)
    if w.length < 1e-6:
        w = Vector((0, 0, 1)) - u * u.z
    w.normalize()
    mid = a + (u * cos_a + w * math.sqrt(max(0.0, 1 - cos_a * cos_a))) * l1
    return mid, end


def seg_quat(a, b, lateral):
    """Rotation taking local +Z to (b - a), local +Y close to ``lateral``."""
    z = b - a
    if z.length < 1e-9:
        z = Vector((0, 0, 1))
    z.normalize()
    y = lateral - z * lateral.dot(z)
    if y.length < 1e-6:
        y = Vector((1, 0, 0)) - z * z.x
    y.normalize()
    x = y.cross(z)
    m = Matrix((x, y, z)).transposed()
    return m.to_quaternion()


def frame_quat(fwd, lat, up):
    m = Matrix((fwd, lat, up)).transposed()
    return m.to_quaternion()


class Actor:
    """A primitive-built character; ``pose(t)`` returns the world placement of every part."""

    PARTS = ["foot_L", "foot_R", "shin_L", "shin_R", "thigh_L", "thigh_R", "pelvis", "torso",
             "neck", "head", "nose", "hair", "upperarm_L", "upperarm_R", "forearm_L", "forearm_R",
             "hand_L", "hand_R"]

    def __init__(self, spec, ground: Ground, path, prop=None, t_contact=None):
        self.spec = spec
        self.name = spec["name"]
        self.g = ground
        self.d = body_dims(spec["height_m"], spec["girth"])
        self.path = path  # dict: start (x,y), heading (rad), speed fn
        self.prop = prop
        self.t_contact = t_contact
        self.fwd = Vector((math.cos(path["heading"]), math.sin(path["heading"]), 0.0))
        self.lat = Vector((-self.fwd.y, self.fwd.x, 0.0))  # actor's left
        self.up = Vector((0.0, 0.0, 1.0))
        pose = spec["pose"]
        self.crouch = pose == "crouch_push"
        self.pushing = pose in ("push", "crouch_push")
        self.hip_nominal = self.d["hip_h"] * (0.62 if self.crouch else 0.985)
        self.lean_push = math.radians(45.0 if self.crouch else 20.0)
        self.lean_walk = math.radians(6.0 if pose != "arms_raised" else 1.0)
        self.cycle = 1.25 * self.d["H"] / 1.75 * (0.85 if self.crouch else 1.0)
        self.arm = self.d["upperarm"] + self.d["forearm"] + self.d["hand_r"] * 0.8
        self.reach = 0.86 * self.arm
        if self.pushing:
            self.plan_push()

    def shoulder_height(self, lean, hip):
        """Nominal shoulder height above the ground for a lean and a hip height."""
        return hip + self.d["pelvis_up"] + self.d["torso"] * math.cos(lean) - 0.03

    def plan_push(self):
        """Hand height on the box, lean and knee bend of the push pose, chosen so that the hands
        reach the box face with the arms ~86% extended, at most ~58 deg below horizontal."""
        sz = self.prop.size[2]
        d = self.d
        self.hand_h = (sz - 0.1) if not self.crouch else min(sz - 0.1, 0.62 * sz + 0.1)
        if self.crouch:
            hip = self.hip_nominal
        else:
            hip = d["hip_h"] * 0.95
        lean = self.lean_push
        for _ in range(60):
            dz = self.shoulder_height(lean, hip) - self.hand_h
            if dz <= 0.85 * self.reach:
                break
            if lean < math.radians(40.0):
                lean += math.radians(2.0)
            elif hip > d["hip_h"] * 0.78:
                hip -= 0.01
            else:
                self.hand_h += 0.01
        self.lean_push, self.hip_push = lean, hip

    # --- trajectory -------------------------------------------------------------------------
    def s(self, t):
        return self.path["s"](t)

    def root(self, t):
        p = Vector((*self.path["start"], 0.0)) + self.fwd * self.s(t)
        p.z = self.g.h(p.x, p.y)
        return p

    def contact_weight(self, t):
        if not self.pushing:
            return 0.0
        return smoothstep(self.t_contact - 0.35, self.t_contact, t)

    # --- feet -------------------------------------------------------------------------------
    def foot(self, side, t):
        """Heel, toe and ankle of foot ``side`` (+1 left, -1 right) at time t."""
        d = self.d
        L = self.cycle
        duty = 0.62
        off = 0.0 if side > 0 else 0.5
        s_body = self.s(t) + self.spec["gait_phase"] * L
        x = s_body / L + off
        n = math.floor(x)
        q = x - n
        s_plant = (n - off) * L + duty * L / 2 - self.spec["gait_phase"] * L
        lift = 0.0
        if q < duty:
            s_foot = s_plant
        else:
            u = (q - duty) / (1 - duty)
            s_foot = s_plant + L * smoothstep(0.0, 1.0, u)
            lift = 0.085 * math.sin(math.pi * u) * (0.6 if self.crouch else 1.0)
        base = Vector((*self.path["start"], 0.0)) + self.fwd * s_foot + self.lat * (side * (d["hip_w"] / 2 + 0.012))
        heel_xy = base - self.fwd * 0.22 * d["foot_len"]
        toe_xy = heel_xy + self.fwd * (d["foot_len"] - 2 * d["foot_r"])
        heel = Vector((heel_xy.x, heel_xy.y, self.g.h(heel_xy.x, heel_xy.y) + d["foot_r"] + lift))
        toe = Vector((toe_xy.x, toe_xy.y, self.g.h(toe_xy.x, toe_xy.y) + d["foot_r"] + lift))
        if self.g.kind == "steps":  # keep the foot flat on the higher tread
            z = max(heel.z, toe.z)
            heel.z = toe.z = z
        axis = (toe - heel).normalized()
        ankle = heel + axis * 0.22 * d["foot_len"] + self.up * (d["ankle_h"] - d["foot_r"])
        return heel, toe, ankle

    # --- hands targets ----------------------------------------------------------------------
    def hand_contact_targets(self, t):
        """Hand-centre targets on the prop's near face (world), for both sides."""
        pr = self.prop
        c, q = pr.placement(t)
        ax = q @ Vector((1, 0, 0))
        az = q @ Vector((0, 0, 1))
        ay = q @ Vector((0, 1, 0))
        sx, sy, sz = pr.size
        hz = self.hand_h
        out = {}
        for side in (1, -1):
            y = side * min(0.17 * self.d["H"] / 1.75, sy / 2 - 0.07)
            face = c - ax * (sx / 2) + ay * y + az * (hz - sz / 2)
            out[side] = face - ax * self.d["hand_r"] * 0.9
        return out

    # --- whole pose -------------------------------------------------------------------------
    def pose(self, t):
        d = self.d
        up, fwd, lat = self.up, self.fwd, self.lat
        root = self.root(t)
        feet = {side: self.foot(side, t) for side in (1, -1)}
        w = self.contact_weight(t)
        lean = lerp(self.lean_walk, self.lean_push, w)
        # pelvis height: nominal with gait bob, limited so that both legs reach their ankles
        phase = 2 * math.pi * ((self.s(t) / self.cycle) + self.spec["gait_phase"])
        bob = 0.012 * math.cos(2 * phase)
        g_avg = 0.5 * (feet[1][2].z + feet[-1][2].z) - (d["ankle_h"])
        hip_h = lerp(self.hip_nominal, self.hip_push, w) if self.pushing else self.hip_nominal
        pz = max(g_avg, root.z) + hip_h + bob
        leg = (d["thigh"] + d["shin"]) * 0.995
        for side in (1, -1):
            hip_xy = root + lat * (side * d["hip_w"] / 2)
            an = feet[side][2]
            dxy = math.hypot(hip_xy.x - an.x, hip_xy.y - an.y)
            if dxy < leg:
                pz = min(pz, an.z + math.sqrt(leg * leg - dxy * dxy))
        hip_c = Vector((root.x, root.y, pz))
        pelvis_c = hip_c + up * d["pelvis_up"]
        tdir = (up * math.cos(lean) + fwd * math.sin(lean)).normalized()
        torso_a = pelvis_c + tdir * 0.02
        shoulder_c = pelvis_c + tdir * d["torso"]
        ndir = (tdir + up * 1.5).normalized()
        neck_top = shoulder_c + ndir * d["neck"]
        head_c = neck_top + ndir * (d["head_r"] * 0.8)
        hdir = (fwd - up * 0.15 * w).normalized()
        parts = {}
        parts["pelvis"] = (pelvis_c - up * 0.02, frame_quat(fwd, lat, up))
        parts["torso"] = (torso_a, seg_quat(torso_a, shoulder_c, lat))
        parts["neck"] = (shoulder_c, seg_quat(shoulder_c, neck_top, lat))
        parts["head"] = (head_c, frame_quat(fwd, lat, up))
        parts["nose"] = (head_c + hdir * d["head_r"] * 0.95, frame_quat(fwd, lat, up))
        parts["hair"] = (head_c + up * d["head_r"] * 0.3 - fwd * d["head_r"] * 0.22, frame_quat(fwd, lat, up))
        if self.spec["coat"]:
            parts["coat"] = (pelvis_c + up * 0.06, frame_quat(fwd, lat, up))
        joints = {"head_c": head_c, "shoulder_c": shoulder_c, "pelvis_c": pelvis_c}
        for side, tag in ((1, "L"), (-1, "R")):
            hip = hip_c + lat * (side * d["hip_w"] / 2)
            heel, toe, ankle = feet[side]
            knee, ankle2 = ik2(hip, ankle, d["thigh"], d["shin"], fwd + up * 0.1)
            parts["thigh_" + tag] = (hip, seg_quat(hip, knee, lat))
            parts["shin_" + tag] = (knee, seg_quat(knee, ankle2, lat))
            parts["foot_" + tag] = (heel, seg_quat(heel, toe, lat))
            joints["heel_" + tag], joints["toe_" + tag], joints["knee_" + tag] = heel, toe, knee
            # arms
            sh = shoulder_c + lat * (side * d["sh_w"] / 2) - tdir * 0.03
            arm = d["upperarm"] + d["forearm"] + d["hand_r"] * 0.8
            if self.spec["pose"] == "arms_raised":
                tgt = sh + (up * 0.93 + lat * side * 0.3 + fwd * 0.08).normalized() * arm * 0.95
                pole = lat * side - fwd * 0.3
            else:
                swing = -side * math.radians(22.0) * math.sin(phase)
                hang = (-up * math.cos(swing) + fwd * math.sin(swing)).normalized()
                tgt = sh + (hang + lat * side * 0.12).normalized() * arm * 0.94
                pole = -fwd * 0.8 + lat * side * 0.3
                if w > 0:
                    contact = self.hand_contact_targets(t)[side]
                    tgt = tgt.lerp(contact, w)
                    pole = pole.lerp(-up + lat * side * 0.7 - fwd * 0.2, w)
            elbow, hand_c = ik2(sh, tgt, d["upperarm"], d["forearm"] + d["hand_r"] * 0.8, pole)
            wrist = elbow + (hand_c - elbow).normalized() * d["forearm"]
            parts["upperarm_" + tag] = (sh, seg_quat(sh, elbow, lat))
            parts["forearm_" + tag] = (elbow, seg_quat(elbow, wrist, lat))
            parts["hand_" + tag] = (hand_c, seg_quat(wrist, hand_c, lat))
            joints["hand_" + tag] = hand_c
            joints["shoulder_" + tag] = sh
        return parts, joints

    # --- geometry ---------------------------------------------------------------------------
    def build(self, pass_index=1):
        d, sp = self.d, self.spec
        mats = {
            "skin": principled(f"{self.name}_skin", SKINS[sp["skin"]], 0.55, specular=0.4),
            "shirt": principled(f"{self.name}_shirt", SHIRTS[sp["shirt"]], 0.8 if sp["coat"] else 0.7),
            "trousers": principled(f"{self.name}_trousers", TROUSERS[sp["trousers"]], 0.75),
            "shoes": principled(f"{self.name}_shoes", SHOES[sp["shoes"]], 0.45),
            "hair": principled(f"{self.name}_hair", HAIRS[sp["hair"]], 0.5),
        }
        meshes = {}
        for tag in ("L", "R"):
            meshes["foot_" + tag] = (capsule_mesh("foot", d["foot_r"], d["foot_r"] * 1.15, d["foot_len"] - 2 * d["foot_r"], sx=1.0, sy=1.25), "shoes")
            meshes["shin_" + tag] = (capsule_mesh("shin", d["r_shin"][0], d["r_shin"][1], d["shin"]), "trousers")
            meshes["thigh_" + tag] = (capsule_mesh("thigh", d["r_thigh"][0], d["r_thigh"][1], d["thigh"]), "trousers")
            meshes["upperarm_" + tag] = (capsule_mesh("upperarm", d["r_upperarm"][0], d["r_upperarm"][1], d["upperarm"]), "shirt")
            meshes["forearm_" + tag] = (capsule_mesh("forearm", d["r_forearm"][0], d["r_forearm"][1], d["forearm"]),
                                        "shirt" if sp["long_sleeves"] else "skin")
            meshes["hand_" + tag] = (capsule_mesh("hand", d["hand_r"], d["hand_r"] * 0.85, d["hand_r"] * 0.5, sx=0.7, sy=1.0), "skin")
        r_t = d["r_torso"]
        meshes["torso"] = (capsule_mesh("torso", r_t[0], r_t[1], d["torso"] - r_t[1] * 0.9, sx=d["torso_sx"], sy=1.0, seg=20), "shirt")
        meshes["pelvis"] = (capsule_mesh("pelvis", d["r_pelvis"], d["r_pelvis"], 0.02, sx=0.75, sy=1.05), "trousers")
        meshes["neck"] = (capsule_mesh("neck", d["r_neck"], d["r_neck"], d["neck"]), "skin")
        meshes["head"] = (capsule_mesh("head", d["head_r"], d["head_r"], d["head_r"] * 0.25, sx=0.92, sy=0.88, seg=20), "skin")
        meshes["nose"] = (capsule_mesh("nose", d["head_r"] * 0.16, d["head_r"] * 0.16, 0.0), "skin")
        meshes["hair"] = (capsule_mesh("hair", d["head_r"], d["head_r"], d["head_r"] * 0.2, sx=0.9, sy=0.95, seg=20), "hair")
        if sp["coat"]:
            meshes["coat"] = (frustum_mesh("coat", d["r_pelvis"] * 1.12, d["r_pelvis"] * 1.45, 0.22 * d["H"], sx=0.85, sy=1.05), "shirt")
        self.root_obj = bpy.data.objects.new(self.name, None)
        self.root_obj.empty_display_size = 0.2
        link(self.root_obj)
        self.objects = {}
        for part, (me, mat) in meshes.items():
            ob = new_object(f"{self.name}_{part}", me, mats[mat], pass_index)
            ob.rotation_mode = "QUATERNION"
            self.objects[part] = ob
        self.materials = mats

    def keyframe(self, frames, time_of):
        prev = {}
        self.joint_track = {}
        for f in frames:
            t = time_of(f)
            parts, joints = self.pose(t)
            self.joint_track[f] = joints
            r = self.root(t)
            self.root_obj.location = r
            self.root_obj.keyframe_insert("location", frame=f)
            for part, (loc, q) in parts.items():
                ob = self.objects[part]
                if part in prev and prev[part].dot(q) < 0:
                    q = -q
                prev[part] = q
                ob.location = loc
                ob.rotation_quaternion = q
                ob.keyframe_insert("location", frame=f)
                ob.keyframe_insert("rotation_quaternion", frame=f)

    def points(self, f):
        j = self.joint_track[f]
        return list(j.values())

    def describe(self, pass_index=1):
        sp = self.spec
        return {
            "root_object": self.name,
            "mesh_objects": sorted(ob.name for ob in self.objects.values()),
            "pass_index": pass_index,
            "skin": sp["skin"], "shirt": sp["shirt"],
            "trousers": sp["trousers"], "shoes": sp["shoes"], "hair": sp["hair"],
            "long_sleeves": sp["long_sleeves"],
            "coat": sp["coat"], "build": sp["build"], "height_m": sp["height_m"], "girth": sp["girth"],
            "pose": sp["pose"],
            "albedo_srgb": {"skin": SKINS[sp["skin"]], "shirt": SHIRTS[sp["shirt"]],
                            "trousers": TROUSERS[sp["trousers"]], "shoes": SHOES[sp["shoes"]],
                            "hair": HAIRS[sp["hair"]]},
        }


class Prop:
    def __init__(self, size, material, ground: Ground, start_x, heading=0.0, y=0.0):
        self.size = size
        self.material = material
        self.g = ground
        self.start_x = start_x
        self.y = y
        self.s_of_t = lambda t: 0.0

    def placement(self, t):
        x = self.start_x + self.s_of_t(t)
        n = self.g.normal(x, self.y)
        # pitch so that the box sits on the (possibly sloped) ground: local +Z along the normal
        q = Quaternion((0.0, 1.0, 0.0), math.atan2(n.x, n.z))
        base = Vector((x, self.y, self.g.h(x, self.y)))
        c = base + (q @ Vector((0, 0, 1))) * (self.size[2] / 2)
        return c, q

    def build(self, pass_index=2):
        srgb, rough, metal = PROP_MATERIALS[self.material]
        mat = principled("Prop_" + self.material, srgb, rough, metal)
        self.obj = new_object("Prop", box_mesh("Prop", *self.size), mat, pass_index)
        self.obj.rotation_mode = "QUATERNION"

    def keyframe(self, frames, time_of):
        for f in frames:
            c, q = self.placement(time_of(f))
            self.obj.location = c
            self.obj.rotation_quaternion = q
            self.obj.keyframe_insert("location", frame=f)
            self.obj.keyframe_insert("rotation_quaternion", frame=f)

    def corners(self, t):
        c, q = self.placement(t)
        sx, sy, sz = self.size
        return [c + q @ Vector((a * sx / 2, b * sy / 2, e * sz / 2)) for a in (-1, 1) for b in (-1, 1) for e in (-1, 1)]


# --------------------------------------------------------------------------------------------
# camera
# --------------------------------------------------------------------------------------------

def look_quat(eye, target):
    return (target - eye).to_track_quat("-Z", "Y")


def project(cam_mw, f_px, W, H, p):
    """Pixel coordinates (x right, y down) and depth of world point p."""
    inv = cam_mw.inverted()
    q = inv @ p
    z = -q.z
    if z <= 1e-6:
        return None
    return (W / 2 + f_px * q.x / z, H / 2 - f_px * q.y / z, z)


# --------------------------------------------------------------------------------------------
# nodes: worlds, ground material, compositor
# --------------------------------------------------------------------------------------------

def hdri_world(image, rot_z, T):
    wd = bpy.data.worlds.new("HDRIWorld")
    wd.use_nodes = True
    nt = wd.node_tree
    nt.nodes.clear()
    tc = nt.nodes.new("ShaderNodeTexCoord")
    mp = nt.nodes.new("ShaderNodeMapping")
    mp.vector_type = "POINT"
    mp.inputs["Rotation"].default_value = (0.0, 0.0, rot_z)
    env = nt.nodes.new("ShaderNodeTexEnvironment")
    env.image = image
    env.interpolation = "Linear"
    nt.links.new(tc.outputs["Generated"], mp.inputs["Vector"])
    nt.links.new(mp.outputs["Vector"], env.inputs["Vector"])
    bw = nt.nodes.new("ShaderNodeRGBToBW")
    nt.links.new(env.outputs["Color"], bw.inputs["Color"])
    mx = nt.nodes.new("ShaderNodeMath")
    mx.operation = "MAXIMUM"
    mx.inputs[1].default_value = 1e-8
    nt.links.new(bw.outputs[0], mx.inputs[0])
    dv = nt.nodes.new("ShaderNodeMath")
    dv.operation = "DIVIDE"
    dv.inputs[0].default_value = T
    nt.links.new(mx.outputs[0], dv.inputs[1])
    mn = nt.nodes.new("ShaderNodeMath")
    mn.operation = "MINIMUM"
    mn.inputs[1].default_value = 1.0
    nt.links.new(dv.outputs[0], mn.inputs[0])
    sc = nt.nodes.new("ShaderNodeVectorMath")
    sc.operation = "SCALE"
    nt.links.new(env.outputs["Color"], sc.inputs[0])
    nt.links.new(mn.outputs[0], sc.inputs["Scale"])
    bg_clamped = nt.nodes.new("ShaderNodeBackground")
    nt.links.new(sc.outputs[0], bg_clamped.inputs["Color"])
    bg_cam = nt.nodes.new("ShaderNodeBackground")
    nt.links.new(env.outputs["Color"], bg_cam.inputs["Color"])
    lp = nt.nodes.new("ShaderNodeLightPath")
    mix = nt.nodes.new("ShaderNodeMixShader")
    nt.links.new(lp.outputs["Is Camera Ray"], mix.inputs[0])
    nt.links.new(bg_clamped.outputs[0], mix.inputs[1])
    nt.links.new(bg_cam.outputs[0], mix.inputs[2])
    out = nt.nodes.new("ShaderNodeOutputWorld")
    nt.links.new(mix.outputs[0], out.inputs["Surface"])
    return wd


def studio_world(grey=0.05):
    wd = bpy.data.worlds.new("StudioWorld")
    wd.use_nodes = True
    bg = wd.node_tree.nodes["Background"]
    bg.inputs["Color"].default_value = (grey, grey, grey, 1.0)
    bg.inputs["Strength"].default_value = 1.0
    return wd


def projected_ground_material(image, rot_z, cam_loc, e_total):
    m = bpy.data.materials.new("ProjectedGround")
    m.use_nodes = True
    nt = m.node_tree
    nt.nodes.clear()
    geo = nt.nodes.new("ShaderNodeNewGeometry")
    sub = nt.nodes.new("ShaderNodeVectorMath")
    sub.operation = "SUBTRACT"
    sub.inputs[1].default_value = tuple(cam_loc)
    nt.links.new(geo.outputs["Position"], sub.inputs[0])
    nrm = nt.nodes.new("ShaderNodeVectorMath")
    nrm.operation = "NORMALIZE"
    nt.links.new(sub.outputs[0], nrm.inputs[0])
    mp = nt.nodes.new("ShaderNodeMapping")
    mp.vector_type = "POINT"
    mp.inputs["Rotation"].default_value = (0.0, 0.0, rot_z)
    nt.links.new(nrm.outputs[0], mp.inputs["Vector"])
    env = nt.nodes.new("ShaderNodeTexEnvironment")
    env.image = image
    env.interpolation = "Linear"
    nt.links.new(mp.outputs["Vector"], env.inputs["Vector"])
    mul = nt.nodes.new("ShaderNodeVectorMath")
    mul.operation = "MULTIPLY"
    mul.inputs[1].default_value = tuple(math.pi / max(e, 1e-6) for e in e_total)
    nt.links.new(env.outputs["Color"], mul.inputs[0])
    diff = nt.nodes.new("ShaderNodeBsdfDiffuse")
    nt.links.new(mul.outputs[0], diff.inputs["Color"])
    ln = nt.nodes.new("ShaderNodeVectorMath")
    ln.operation = "LENGTH"
    nt.links.new(sub.outputs[0], ln.inputs[0])
    mr = nt.nodes.new("ShaderNodeMapRange")
    mr.interpolation_type = "SMOOTHSTEP"
    mr.inputs["From Min"].default_value = 18.0
    mr.inputs["From Max"].default_value = 40.0
    nt.links.new(ln.outputs["Value"], mr.inputs["Value"])
    tr = nt.nodes.new("ShaderNodeBsdfTransparent")
    mix = nt.nodes.new("ShaderNodeMixShader")
    nt.links.new(mr.outputs["Result"], mix.inputs[0])
    nt.links.new(diff.outputs[0], mix.inputs[1])
    nt.links.new(tr.outputs[0], mix.inputs[2])
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(mix.outputs[0], out.inputs["Surface"])
    return m


# --------------------------------------------------------------------------------------------
# procedural world (--world sky): Nishita sky + matching sun lamp, procedural ground, far blocks
# --------------------------------------------------------------------------------------------

SKY_GROUNDS = {  # name: (sRGB colour A, sRGB colour B, roughness, pattern)
    "asphalt": ((0.085, 0.085, 0.09), (0.16, 0.155, 0.15), 0.85, "noise"),
    "concrete": ((0.46, 0.45, 0.42), (0.36, 0.35, 0.33), 0.8, "slabs"),
    "grass": ((0.13, 0.24, 0.06), (0.26, 0.32, 0.10), 0.9, "noise"),
    "dirt": ((0.40, 0.30, 0.20), (0.28, 0.21, 0.14), 0.95, "voronoi"),
}
BLOCK_COLOURS = [(0.55, 0.53, 0.50), (0.62, 0.56, 0.46), (0.40, 0.42, 0.45), (0.70, 0.68, 0.64), (0.45, 0.33, 0.27)]
NISHITA_AZ0 = math.pi / 2  # Nishita's sun azimuth (from +X towards +Y) is NISHITA_AZ0 - sun_rotation (measured)


def sky_config(variant: str, seed: int) -> dict:
    """Every random choice of the procedural world, from its own stream (the scene's stream, hence
    actors, prop and camera, is the same as with --world hdri)."""
    rng = random.Random(f"cinecomp-blender-sky:{variant}:{seed}")
    interior = variant == "interior_two_lights"
    c = {
        "model": "NISHITA",
        # interior: a dim dusk sky (low sun, no disc, no sun lamp) under the two lamps
        "sun_elevation_deg": rng.uniform(3.0, 10.0) if interior else rng.uniform(10.0, 60.0),
        "air_density": rng.uniform(0.6, 2.0), "dust_density": rng.uniform(0.0, 5.0),
        "ozone_density": rng.uniform(0.5, 3.0), "altitude_m": rng.uniform(0.0, 600.0),
        "sun_diameter_deg": rng.uniform(0.545, 1.6), "sun_disc": not interior, "sun_lamp": not interior,
        "key_to_fill_ratio": rng.uniform(*K2F_RANGE),
        "ground": rng.choice(sorted(SKY_GROUNDS)), "ground_scale_m": rng.uniform(0.6, 1.6),
        "ground_tint": [rng.uniform(0.9, 1.1) for _ in range(3)],
    }
    blocks = []
    for _ in range(rng.randint(2, 6)):
        blocks.append({"bearing_deg": rng.uniform(-75.0, 75.0), "distance_m": rng.uniform(45.0, 160.0),
                       "size_m": [rng.uniform(8.0, 35.0), rng.uniform(8.0, 35.0), rng.uniform(5.0, 40.0)],
                       "yaw_deg": rng.uniform(-45.0, 45.0), "colour_srgb": list(rng.choice(BLOCK_COLOURS))})
    c["blocks"] = blocks
    return c


def sky_nodes(nt, sky, sun_rotation, disc):
    tex = nt.nodes.new("ShaderNodeTexSky")
    tex.sky_type = "NISHITA"
    tex.sun_disc = disc
    tex.sun_size = math.radians(sky["sun_diameter_deg"])
    tex.sun_intensity = 1.0
    tex.sun_elevation = math.radians(sky["sun_elevation_deg"])
    tex.sun_rotation = sun_rotation
    tex.altitude = sky["altitude_m"]
    tex.air_density = sky["air_density"]
    tex.dust_density = sky["dust_density"]
    tex.ozone_density = sky["ozone_density"]
    bg = nt.nodes.new("ShaderNodeBackground")
    nt.links.new(tex.outputs["Color"], bg.inputs["Color"])
    return bg


def sky_world(sky, sun_rotation, camera_disc=None):
    """Nishita sky; camera rays see the sun disc (if ``camera_disc``), lighting rays never do (the sun
    lamp carries the direct light, as the HDRI world's hot spot is replaced by the lamp)."""
    camera_disc = sky["sun_disc"] if camera_disc is None else camera_disc
    wd = bpy.data.worlds.new("SkyWorld")
    wd.use_nodes = True
    nt = wd.node_tree
    nt.nodes.clear()
    bg_light = sky_nodes(nt, sky, sun_rotation, False)
    bg_cam = sky_nodes(nt, sky, sun_rotation, camera_disc)
    lp = nt.nodes.new("ShaderNodeLightPath")
    mix = nt.nodes.new("ShaderNodeMixShader")
    nt.links.new(lp.outputs["Is Camera Ray"], mix.inputs[0])
    nt.links.new(bg_light.outputs[0], mix.inputs[1])
    nt.links.new(bg_cam.outputs[0], mix.inputs[2])
    out = nt.nodes.new("ShaderNodeOutputWorld")
    nt.links.new(mix.outputs[0], out.inputs["Surface"])
    return wd


def probe_world(sky, disc):
    """The sky alone at sun_rotation 0, disc on or off for every ray (one node: each costs a precompute)."""
    wd = bpy.data.worlds.new("SkyProbeWorld")
    wd.use_nodes = True
    nt = wd.node_tree
    nt.nodes.clear()
    nt.links.new(sky_nodes(nt, sky, 0.0, disc).outputs[0], nt.nodes.new("ShaderNodeOutputWorld").inputs["Surface"])
    return wd


def render_probe(name, world, cam_data, rot_q, size, samples, threads, path):
    """Render ``world`` alone (a scene of its own) to a float EXR; returns its RGBA pixels."""
    sc = bpy.data.scenes.new(name)
    sc.render.engine = "CYCLES"
    sc.cycles.device = "CPU"
    sc.cycles.samples = samples
    sc.cycles.use_adaptive_sampling = False
    sc.cycles.use_denoising = False
    sc.cycles.seed = 0
    if threads > 0:
        sc.render.threads_mode = "FIXED"
        sc.render.threads = threads
    sc.view_settings.view_transform = "Raw"
    sc.world = world
    sc.render.resolution_x, sc.render.resolution_y = size
    sc.render.resolution_percentage = 100
    sc.render.image_settings.file_format = "OPEN_EXR"
    sc.render.image_settings.color_depth = "32"
    sc.render.filepath = path
    cam = bpy.data.objects.new(name + "_cam", cam_data)
    sc.collection.objects.link(cam)
    cam.rotation_mode = "QUATERNION"
    cam.rotation_quaternion = rot_q
    sc.camera = cam
    bpy.ops.render.render(write_still=True, scene=sc.name)
    im = bpy.data.images.load(path)
    buf = array.array("f", [0.0]) * (size[0] * size[1] * 4)
    im.pixels.foreach_get(buf)
    bpy.data.images.remove(im)
    bpy.data.objects.remove(cam)
    bpy.data.scenes.remove(sc)
    return buf


def analyse_sky(sky, probe_dir, threads):
    """Fill and sun of the procedural sky, measured by rendering it (sun_rotation 0): the horizontal
    irradiance of the disc-less sky from a 128x64 equirect probe (``Hdri.integrals``), and the sun's
    irradiance at normal incidence (colour and physical strength) as the difference of two 16x16
    renders of a 4 deg field centred on the sun, disc on and off. The lamp's strength is then set by the
    seed-drawn key_to_fill_ratio (in K2F_RANGE, like a measured HDRI sun), the colour, direction and
    size are the sky's."""
    os.makedirs(probe_dir, exist_ok=True)
    pano = bpy.data.cameras.new("SkyProbePano")
    pano.type = "PANO"
    pano.cycles.panorama_type = "EQUIRECTANGULAR"
    # camera looking along +X, +Z up: the Hdri convention (centre column faces +X)
    q_pano = Vector((1.0, 0.0, 0.0)).to_track_quat("-Z", "Y")
    path = os.path.join(probe_dir, "sky_equirect.exr")
    render_probe("SkyProbe", probe_world(sky, False), pano, q_pano, (128, 64), 16, threads, path)
    probe = Hdri(path)
    eh, _, _ = probe.integrals(float("inf"))
    el = math.radians(sky["sun_elevation_deg"])
    persp = bpy.data.cameras.new("SkyProbeSun")
    persp.sensor_fit = "HORIZONTAL"
    persp.sensor_width = 36.0
    half = math.radians(2.0)
    persp.lens = 18.0 / math.tan(half)
    q_sun = Vector(sph(NISHITA_AZ0, el)).to_track_quat("-Z", "Y")
    means = []
    for disc in (True, False):
        buf = render_probe("SkySunProbe", probe_world(sky, disc), persp, q_sun, (16, 16), 64, threads,
                           os.path.join(probe_dir, f"sun_{int(disc)}.exr"))
        means.append([sum(buf[c::4]) / 256.0 for c in range(3)])
    omega = 4.0 * math.asin(math.sin(half) ** 2)
    e_sun = [max((means[0][c] - means[1][c]) * omega, 1e-9) for c in range(3)]
    shutil.rmtree(probe_dir, ignore_errors=True)
    s_lum = lum(e_sun)
    colour = [c / s_lum for c in e_sun]
    k2f_raw = s_lum * math.sin(el) / max(lum(eh), 1e-9)
    k2f = sky["key_to_fill_ratio"]
    strength = k2f * lum(eh) / math.sin(el)
    e_total = [eh[c] + (strength * math.sin(el) * colour[c] if sky["sun_lamp"] else 0.0) for c in range(3)]
    probe.hot_el, probe.hot_az = el, NISHITA_AZ0  # the sky's sun (the probe has no disc)
    return probe, {
        "T": None, "eh": eh, "strength": strength, "colour": colour, "el": el, "k2f": k2f, "k2f_raw": k2f_raw,
        "angular_deg": sky["sun_diameter_deg"], "ev": exposure_for(lum(e_total)), "e_total": e_total,
        "sun_irradiance_normal_rgb": e_sun,
    }


def check_sky_sun(world, d_sun, threads, probe_dir):
    """Camera-ray radiance of the final sky world towards the sun lamp and 8 deg beside it: the disc
    must be where the lamp is (a wrong sun_rotation convention would put it elsewhere)."""
    cam = bpy.data.cameras.new("SkyCheck")
    cam.sensor_fit = "HORIZONTAL"
    cam.sensor_width = 36.0
    cam.lens = 18.0 / math.tan(math.radians(2.0))
    az = math.atan2(d_sun.y, d_sun.x)
    el = math.asin(clamp(d_sun.z, -1.0, 1.0))
    vals = []
    for k, d in enumerate((d_sun, Vector(sph(az + math.radians(8.0), el)))):
        buf = render_probe("SkyCheck", world, cam, d.to_track_quat("-Z", "Y"), (16, 16), 16, threads,
                           os.path.join(probe_dir, f"check_{k}.exr"))
        vals.append(lum([sum(buf[c::4]) / 256.0 for c in range(3)]))
    shutil.rmtree(probe_dir, ignore_errors=True)
    if not vals[0] > 20.0 * vals[1]:
        raise RuntimeError(f"sky sun disc not at the sun lamp: luminance {vals[0]:.3g} towards the lamp, {vals[1]:.3g} 8 deg beside it")
    return {"luminance_towards_lamp": vals[0], "luminance_8deg_beside": vals[1]}


def procedural_ground_material(sky):
    """Diffuse ground with a seed-drawn pattern: asphalt/grass (two noise scales), concrete (slabs
    with joints), dirt (voronoi cells); world-space coordinates."""
    c_a, c_b, rough, pattern = SKY_GROUNDS[sky["ground"]]
    tint = sky["ground_tint"]
    lin_a = [clamp(x * t, 0.0, 1.0) for x, t in zip(srgb_to_linear(c_a), tint)]
    lin_b = [clamp(x * t, 0.0, 1.0) for x, t in zip(srgb_to_linear(c_b), tint)]
    m = bpy.data.materials.new("ProceduralGround_" + sky["ground"])
    m.use_nodes = True
    nt = m.node_tree
    nt.nodes.clear()
    geo = nt.nodes.new("ShaderNodeNewGeometry")
    sc = nt.nodes.new("ShaderNodeVectorMath")
    sc.operation = "SCALE"
    sc.inputs["Scale"].default_value = 1.0 / sky["ground_scale_m"]
    nt.links.new(geo.outputs["Position"], sc.inputs[0])
    noise = nt.nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = 1.5
    noise.inputs["Detail"].default_value = 8.0
    nt.links.new(sc.outputs[0], noise.inputs["Vector"])
    ramp = nt.nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].position = 0.3
    ramp.color_ramp.elements[0].color = (*lin_a, 1.0)
    ramp.color_ramp.elements[1].position = 0.7
    ramp.color_ramp.elements[1].color = (*lin_b, 1.0)
    nt.links.new(noise.outputs["Fac"], ramp.inputs["Fac"])
    colour = ramp.outputs["Color"]
    if pattern in ("slabs", "voronoi"):
        mul = nt.nodes.new("ShaderNodeMixRGB")
        mul.blend_type = "MULTIPLY"
        mul.inputs["Fac"].default_value = 1.0
        nt.links.new(colour, mul.inputs["Color1"])
        if pattern == "slabs":
            tex = nt.nodes.new("ShaderNodeTexBrick")
            tex.inputs["Scale"].default_value = 0.5
            tex.inputs["Mortar Size"].default_value = 0.015
            tex.inputs["Color1"].default_value = (1.0, 1.0, 1.0, 1.0)
            tex.inputs["Color2"].default_value = (0.9, 0.9, 0.9, 1.0)
            tex.inputs["Mortar"].default_value = (0.45, 0.45, 0.45, 1.0)
            nt.links.new(geo.outputs["Position"], tex.inputs["Vector"])
            nt.links.new(tex.outputs["Color"], mul.inputs["Color2"])
        else:
            tex = nt.nodes.new("ShaderNodeTexVoronoi")
            tex.inputs["Scale"].default_value = 4.0
            nt.links.new(sc.outputs[0], tex.inputs["Vector"])
            vr = nt.nodes.new("ShaderNodeMapRange")
            vr.inputs["To Min"].default_value = 0.75
            vr.inputs["To Max"].default_value = 1.15
            nt.links.new(tex.outputs["Distance"], vr.inputs["Value"])
            nt.links.new(vr.outputs["Result"], mul.inputs["Color2"])
        colour = mul.outputs["Color"]
    bsdf = nt.nodes.new("ShaderNodeBsdfPrincipled")
    bsdf.inputs["Roughness"].default_value = rough
    bsdf.inputs["Specular"].default_value = 0.3
    nt.links.new(colour, bsdf.inputs["Base Color"])
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(bsdf.outputs[0], out.inputs["Surface"])
    return m


def far_blocks(sky, ground, centre, cam_fwd_az, sun_az):
    """Distant boxes ("buildings") behind the action, none within 40 deg of the sun's azimuth as seen
    from the action (their shadows never reach it). Returns (objects, JSON)."""
    objs, info = [], []
    for i, b in enumerate(sky["blocks"]):
        bearing = cam_fwd_az + math.radians(b["bearing_deg"])
        if sun_az is not None and abs(math.atan2(math.sin(bearing - sun_az), math.cos(bearing - sun_az))) < math.radians(40.0):
            continue
        x = centre.x + b["distance_m"] * math.cos(bearing)
        y = centre.y + b["distance_m"] * math.sin(bearing)
        sx, sy, sz = b["size_m"]
        z = ground.h(x, y) - 1.0
        ob = new_object(f"Block{i}", box_mesh(f"Block{i}", sx, sy, sz + 1.0, origin_bottom=True),
                        principled(f"Block{i}_paint", b["colour_srgb"], 0.8))
        ob.location = (x, y, z)
        ob.rotation_euler = (0.0, 0.0, bearing + math.radians(b["yaw_deg"]))
        objs.append(ob)
        info.append({**b, "location": [x, y, z]})
    return objs, info


def file_output(nt, base_path, slot, fmt, color_mode, depth, codec=None):
    fo = nt.nodes.new("CompositorNodeOutputFile")
    fo.base_path = base_path
    fo.file_slots[0].path = slot
    f = fo.format
    f.file_format = fmt
    f.color_mode = color_mode
    f.color_depth = depth
    if fmt == "PNG":
        f.compression = 15
    if codec:
        f.exr_codec = codec
    return fo


def write_exr_y(path, width, height, rows_top_down):
    """Single-part scanline OpenEXR, one FLOAT channel "Y", ZIP compression (16-line blocks),
    minimal header, like the existing set. ``rows_top_down``: list of ``height`` array('f')."""
    import struct
    import zlib

    def attr(name, typ, data):
        return name.encode() + b"\0" + typ.encode() + b"\0" + struct.pack("<i", len(data)) + data

    chlist = b"Y\0" + struct.pack("<iB3xii", 2, 0, 1, 1) + b"\0"
    box = struct.pack("<iiii", 0, 0, width - 1, height - 1)
    header = b"\x76\x2f\x31\x01" + struct.pack("<i", 2)
    header += attr("channels", "chlist", chlist)
    header += attr("compression", "compression", bytes([3]))
    header += attr("dataWindow", "box2i", box)
    header += attr("displayWindow", "box2i", box)
    header += attr("lineOrder", "lineOrder", bytes([0]))
    header += attr("pixelAspectRatio", "float", struct.pack("<f", 1.0))
    header += attr("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0))
    header += attr("screenWindowWidth", "float", struct.pack("<f", 1.0))
    header += b"\0"
    chunks = []
    for y0 in range(0, height, 16):
        raw = b"".join(rows_top_down[y].tobytes() if sys.byteorder == "little" else
                       array.array("f", rows_top_down[y]).byteswap() or rows_top_down[y].tobytes()
                       for y in range(y0, min(y0 + 16, height)))
        inter = bytearray(raw[0::2] + raw[1::2])
        pred = bytearray(len(inter))
        prev = inter[0] if inter else 0
        if inter:
            pred[0] = inter[0]
        for i in range(1, len(inter)):
            c = inter[i]
            pred[i] = (c - prev + 384) & 0xFF
            prev = c
        comp = zlib.compress(bytes(pred), 6)
        data = comp if len(comp) < len(raw) else raw
        chunks.append(struct.pack("<ii", y0, len(data)) + data)
    offset = len(header) + 8 * len(chunks)
    table = b""
    for c in chunks:
        table += struct.pack("<Q", offset)
        offset += len(c)
    with open(path, "wb") as fh:
        fh.write(header + table + b"".join(chunks))


def exr_rows(path, width, height):
    """Rows (top-down) of the first channel of an EXR written by Blender (the depth pass)."""
    img = bpy.data.images.load(path)
    img.colorspace_settings.name = "Non-Color"
    w, h = img.size
    if (w, h) != (width, height):
        raise RuntimeError(f"{path} is {w}x{h}, expected {width}x{height}")
    buf = array.array("f", [0.0]) * (w * h * 4)
    img.pixels.foreach_get(buf)
    bpy.data.images.remove(img)
    rows = []
    for y in range(h - 1, -1, -1):  # Blender rows are bottom-up
        rows.append(array.array("f", buf[y * w * 4:(y + 1) * w * 4:4]))
    return rows


def display_chain(nt, src, ev):
    ex = nt.nodes.new("CompositorNodeExposure")
    ex.inputs["Exposure"].default_value = ev
    nt.links.new(src, ex.inputs["Image"])
    cs = nt.nodes.new("CompositorNodeConvertColorSpace")
    cs.from_color_space = "Linear"
    cs.to_color_space = "sRGB"
    nt.links.new(ex.outputs[0], cs.inputs[0])
    return cs.outputs[0]


def setup_compositor(scene, shot_dir, shot_id, kind, ev=0.0, green_linear=None):
    """kind: groundtruth (+ depth, masks) | environment | greenscreen (+ alpha)."""
    scene.use_nodes = True
    nt = scene.node_tree
    nt.nodes.clear()
    rl = nt.nodes.new("CompositorNodeRLayers")
    comp = nt.nodes.new("CompositorNodeComposite")
    img = rl.outputs["Image"]
    if kind.startswith("greenscreen"):
        rgb = nt.nodes.new("CompositorNodeRGB")
        rgb.outputs[0].default_value = (*green_linear, 1.0)
        ao = nt.nodes.new("CompositorNodeAlphaOver")
        ao.use_premultiply = False
        nt.links.new(rgb.outputs[0], ao.inputs[1])
        nt.links.new(img, ao.inputs[2])
        img = ao.outputs[0]
        if kind == "greenscreen":
            fa = file_output(nt, shot_dir, f"alpha/{shot_id}.", "PNG", "BW", "16")
            nt.links.new(rl.outputs["Alpha"], fa.inputs[0])
    disp = display_chain(nt, img, ev)
    nt.links.new(disp, comp.inputs[0])
    fo = file_output(nt, shot_dir, f"{kind}/{shot_id}.", "PNG", "RGB", "16")
    nt.links.new(disp, fo.inputs[0])
    if kind == "groundtruth":
        # depth: File Output cannot write a 1-channel EXR in 3.4, so it writes a temporary RGB
        # float EXR that write_exr_y() turns into the single "Y" channel file after each frame
        fd = file_output(nt, os.path.join(shot_dir, ".depth_tmp"), "depth.", "OPEN_EXR", "RGB", "32", "ZIP")
        nt.links.new(rl.outputs["Depth"], fd.inputs[0])
        ids = []
        for idx in (1, 2):
            m = nt.nodes.new("CompositorNodeIDMask")
            m.index = idx
            m.use_antialiasing = False
            nt.links.new(rl.outputs["IndexOB"], m.inputs[0])
            ids.append(m.outputs[0])
        mx = nt.nodes.new("CompositorNodeMath")
        mx.operation = "MAXIMUM"
        nt.links.new(ids[0], mx.inputs[0])
        nt.links.new(ids[1], mx.inputs[1])
        cc = nt.nodes.new("CompositorNodeCombineColor")
        nt.links.new(ids[0], cc.inputs[0])
        nt.links.new(ids[1], cc.inputs[1])
        nt.links.new(mx.outputs[0], cc.inputs[2])
        cc.inputs[3].default_value = 1.0
        fm = file_output(nt, shot_dir, f"masks/{shot_id}.", "PNG", "RGB", "8")
        nt.links.new(cc.outputs[0], fm.inputs[0])


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(prog="blender_scene.py")
    p.add_argument("--out-root", required=True)
    p.add_argument("--shot-id", required=True)
    p.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hdri", default=None, help="equirect HDRI (--world hdri)")
    p.add_argument("--world", choices=("hdri", "sky"), default="hdri",
                   help="hdri: the HDRI + matching sun + projected ground; sky: Nishita sky + its sun, procedural ground")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=180)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--frame-start", type=int, default=1001)
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--gs-samples", type=int, default=None)
    p.add_argument("--threads", type=int, default=0, help="0 = all cores")
    p.add_argument("--adaptive-threshold", type=float, default=0.01)
    p.add_argument("--nospill", action="store_true",
                   help="also render greenscreen_nospill/: the green-screen pass with the green floor and backdrop "
                        "turned off (the studio rig alone): the keyer's colour truth, no spill")
    return p.parse_args(argv)


def light_object(name, kind, energy, colour, loc=None, rot_q=None, size=None, radius=None, angle=None):
    li = bpy.data.lights.new(name, kind)
    li.energy = energy
    li.color = colour
    if size is not None:
        li.shape = "SQUARE"
        li.size = size
    if radius is not None:
        li.shadow_soft_size = radius
    if angle is not None:
        li.angle = angle
    li.cycles.cast_shadow = True
    ob = bpy.data.objects.new(name, li)
    if loc is not None:
        ob.location = loc
    if rot_q is not None:
        ob.rotation_mode = "QUATERNION"
        ob.rotation_quaternion = rot_q
    ob.visible_camera = False
    link(ob)
    return ob


def aimed_light(name, kind, target, az, el, dist, irradiance, colour, size=None, radius=None):
    """Area/point light at (az, el, dist) from ``target`` giving ``irradiance`` W/m2 there at
    normal incidence (Cycles: area on-axis E = P/(4 d^2), point E = P/(4 pi d^2); measured)."""
    loc = target + Vector(sph(az, el)) * dist
    q = (target - loc).to_track_quat("-Z", "Y")
    if kind == "AREA":
        power = irradiance * 4.0 * dist * dist
    else:
        power = irradiance * 4.0 * math.pi * dist * dist
    return light_object(name, kind, power, colour, loc, q, size=size, radius=radius), power


def main(argv):
    a = parse_args(argv)
    wall0 = time.time()
    rng = random.Random(f"cinecomp-blender-scene:{a.variant}:{a.seed}")
    cfg = variant_config(a.variant, rng)
    W, H, fps = a.width, a.height, a.fps
    f0, f1 = a.frame_start, a.frame_start + a.frames - 1
    frames = list(range(f0, f1 + 1))
    key_frames = list(range(f0 - 1, f1 + 2))  # one extra on each side for motion blur
    time_of = lambda f: (f - f0) / fps
    shot_dir = os.path.join(os.path.abspath(a.out_root), a.shot_id)
    os.makedirs(shot_dir, exist_ok=True)
    gs_samples = a.gs_samples or 2 * a.samples

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.name = a.shot_id
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = True
    scene.cycles.adaptive_threshold = a.adaptive_threshold
    scene.cycles.seed = 0
    scene.cycles.use_animated_seed = False
    scene.cycles.max_bounces = 4
    scene.cycles.diffuse_bounces = 2
    scene.cycles.glossy_bounces = 2
    scene.cycles.transmission_bounces = 2
    scene.cycles.volume_bounces = 0
    scene.cycles.transparent_max_bounces = 8
    scene.cycles.caustics_reflective = False
    scene.cycles.caustics_refractive = False
    scene.render.resolution_x, scene.render.resolution_y = W, H
    scene.render.resolution_percentage = 100
    scene.render.fps = fps
    scene.frame_start, scene.frame_end = f0, f1
    scene.render.dither_intensity = 0.0
    scene.render.use_persistent_data = True
    if a.threads > 0:
        scene.render.threads_mode = "FIXED"
        scene.render.threads = a.threads
    scene.display_settings.display_device = "sRGB"
    scene.view_settings.view_transform = "Raw"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    vl = scene.view_layers[0]
    vl.use_pass_z = True
    vl.use_pass_object_index = True
    scene.render.filepath = os.path.join(shot_dir, ".composite_")  # never written (no write_still)

    # ---- HDRI analysis --------------------------------------------------------------------
    t_an = time.time()
    sky = None
    if a.world == "sky":
        sky = sky_config(a.variant, a.seed)
        hdri, sun = analyse_sky(sky, os.path.join(shot_dir, ".sky_probe"), a.threads)
    else:
        if not a.hdri:
            raise SystemExit("blender_scene.py: --hdri is required with --world hdri")
        hdri = Hdri(a.hdri)
        sun = analyse_sun(hdri)
    t_an = time.time() - t_an

    # ---- ground, prop, actors ---------------------------------------------------------------
    ground = Ground(cfg)
    duration = (f1 - f0) / fps
    contact_frame = f0 + int(round(cfg["contact_fraction"] * (f1 - f0)))
    t_c = (contact_frame - f0) / fps
    prop = Prop(cfg["prop_size"], cfg["prop_material"], ground, cfg["prop_start_x"])
    actors = []
    main_spec = cfg["actors"][0]
    v_w, v_p = cfg["walk_speed"], cfg["push_speed"]
    if main_spec["pose"] in ("push", "crouch_push"):
        prop.s_of_t = lambda t: max(0.0, t - t_c) * v_p
        # place the actor so that its hands reach the box face at t_c (reach ~0.85 arm length)
        probe = Actor(main_spec, ground, {"start": (0.0, 0.0), "heading": 0.0, "s": lambda t: 0.0}, prop, t_c)
        d = probe.d
        lean = probe.lean_push
        targets = probe.hand_contact_targets(t_c)
        tgt = (targets[1] + targets[-1]) / 2
        dy = abs(targets[1].y - targets[-1].y) / 2 - d["sh_w"] / 2
        root_x_c = tgt.x - 0.5
        for _ in range(3):  # the ground height under the actor may depend on where it stands
            sh_z = ground.h(root_x_c, 0.0) + probe.shoulder_height(lean, probe.hip_push)
            dz = sh_z - tgt.z
            horiz = math.sqrt(max(probe.reach ** 2 - dz * dz - dy * dy, 0.0025))
            root_x_c = tgt.x - horiz - d["torso"] * math.sin(lean)
        s_fn = lambda t: (t - t_c) * v_w if t <= t_c else (t - t_c) * v_p
        actors.append(Actor(main_spec, ground, {"start": (root_x_c, 0.0), "heading": 0.0, "s": s_fn}, prop, t_c))
    else:  # arms raised: walk past the box on its far side... on the camera side of it, static box
        prop.s_of_t = lambda t: 0.0
        contact_frame = None
        y_path = -(cfg["prop_size"][1] / 2 + 0.6)
        mid_t = duration / 2
        start_x = prop.start_x - v_w * mid_t - 0.1
        actors.append(Actor(main_spec, ground, {"start": (start_x, y_path), "heading": 0.0, "s": lambda t: v_w * t}, prop, None))
    if len(cfg["actors"]) > 1:
        spec2 = cfg["actors"][1]
        v2 = rng.uniform(1.0, 1.3)
        y2 = cfg["prop_size"][1] / 2 + rng.uniform(0.9, 1.3)
        x2 = prop.start_x + 1.5 + v2 * duration / 2  # to the right of the box, walking -X
        actors.append(Actor(spec2, ground, {"start": (x2, y2), "heading": math.pi, "s": lambda t, v=v2: v * t}, None, None))

    for i, ac in enumerate(actors):
        ac.build(pass_index=1)
        ac.keyframe(key_frames, time_of)
    prop.build(pass_index=2)
    prop.keyframe(key_frames, time_of)

    # hands-to-box gap per frame (pusher): distance of the farther hand's palm from the box face
    contact_gaps = None
    if contact_frame is not None:
        pa = actors[0]
        contact_gaps = {}
        for f in frames:
            c, q = prop.placement(time_of(f))
            ax = q @ Vector((1.0, 0.0, 0.0))
            face = c - ax * (prop.size[0] / 2)
            gaps = [(face - pa.joint_track[f]["hand_" + tag]).dot(ax) - pa.d["hand_r"] * 0.9 for tag in ("L", "R")]
            contact_gaps[str(f)] = round(max(gaps), 4)

    # ---- camera ---------------------------------------------------------------------------
    cam_data = bpy.data.cameras.new("Camera")
    cam_data.lens = cfg["focal_mm"]
    cam_data.sensor_width = 36.0
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.clip_start = 0.05
    cam_data.clip_end = 1000.0
    cam = bpy.data.objects.new("Camera", cam_data)
    link(cam)
    scene.camera = cam
    f_px = cfg["focal_mm"] / 36.0 * W

    def action_points(f):
        pts = []
        for ac in actors:
            pts += ac.points(f)
        pts += prop.corners(time_of(f))
        return pts

    xs = [p.x for f in frames for p in action_points(f)]
    ys = [p.y for f in frames for p in action_points(f)]
    centre = Vector(((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, 0.0))
    centre.z = ground.h(centre.x, centre.y)
    az = math.radians(cfg["cam_azimuth_deg"])
    dist = cfg["cam_distance"]
    aim_h = cfg.get("aim_h", 0.8 if cfg["camera"] != "feet_out" else 1.0)
    framing = {}

    def place_static(dist):
        eye = centre + Vector((math.cos(az), math.sin(az), 0.0)) * dist
        eye.z = ground.h(eye.x, eye.y) + cfg["cam_height"]
        tgt = centre + Vector((0, 0, aim_h))
        return eye, look_quat(eye, tgt)

    def fits(eye, quats, margin=0.03):
        for f in frames:
            mw = Matrix.Translation(eye) @ quats[f].to_matrix().to_4x4()
            for p in action_points(f):
                pr = project(mw, f_px, W, H, p)
                if pr is None or not (margin * W < pr[0] < (1 - margin) * W and margin * H < pr[1] < (1 - margin) * H):
                    return False
        return True

    cam_quats = {}
    if cfg["camera"] in ("static", "pan"):
        for _ in range(20):
            eye, q = place_static(dist)
            if cfg["camera"] == "pan":
                main_actor = actors[0]
                # follow the actor and add a constant pan rate in the same direction
                rate = math.radians(cfg["pan_rate_deg_s"])
                r0, r1 = main_actor.root(0.0), main_actor.root(1.0)
                turn = (r0 - eye).cross(r1 - eye).z
                rate = rate if turn >= 0 else -rate
                qs = {}
                for f in key_frames:
                    t = time_of(f)
                    r = main_actor.root(t) + main_actor.fwd * 0.35
                    tgt = Vector((r.x, r.y, r.z + aim_h))
                    qf = look_quat(eye, tgt)
                    extra = Quaternion((0, 0, 1), rate * (t - duration / 2))
                    qs[f] = extra @ qf
                quats = qs
            else:
                quats = {f: q for f in key_frames}
            if fits(eye, quats):
                break
            dist *= 1.08
        cam_quats = quats
        framing["all_action_in_frame"] = fits(eye, quats, 0.0)
    else:  # feet_out: aim so that the bottom edge cuts the legs well above the feet
        eye = centre + Vector((math.cos(az), math.sin(az), 0.0)) * dist
        eye.z = ground.h(eye.x, eye.y) + cfg["cam_height"]
        fwd_h = (centre - eye)
        fwd_h.z = 0
        fwd_h.normalize()
        half_v = math.atan((36.0 * H / W / 2) / cfg["focal_mm"])
        feet_pts = [(ac.joint_track[f][k]) for ac in actors for f in frames for k in ("heel_L", "heel_R", "toe_L", "toe_R")]
        d_max = max((p - eye).dot(fwd_h) for p in feet_pts)
        g_z = max(p.z for p in feet_pts)
        cut_h = g_z + 0.28  # lowest visible height at the farthest foot
        ang_bottom = math.atan2(cut_h - eye.z, d_max)
        pitch = ang_bottom + half_v
        yaw = math.atan2(fwd_h.y, fwd_h.x)
        look = Vector((math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch), math.sin(pitch)))
        q = look.to_track_quat("-Z", "Y")
        cam_quats = {f: q for f in key_frames}
        mw = Matrix.Translation(eye) @ q.to_matrix().to_4x4()
        feet_in = any((pr := project(mw, f_px, W, H, p)) is not None and 0 <= pr[0] < W and 0 <= pr[1] < H for p in feet_pts)
        head_pts = [ac.joint_track[f]["head_c"] for ac in actors for f in frames]
        head_in = all((pr := project(mw, f_px, W, H, p)) is not None and 0 <= pr[1] < H for p in head_pts)
        framing.update(feet_in_frame=feet_in, heads_in_frame=head_in, bottom_edge_height_at_farthest_foot_m=round(cut_h - g_z, 3))
    cam.location = eye
    cam.rotation_mode = "XYZ"
    for f in key_frames:
        cam.rotation_euler = cam_quats[f].to_euler("XYZ")
        if f > key_frames[0]:
            cam.rotation_euler.make_compatible(prev_e)
        prev_e = cam.rotation_euler.copy()
        cam.keyframe_insert("rotation_euler", frame=f)
        cam.keyframe_insert("location", frame=f)

    # linear interpolation everywhere (motion blur samples between keys)
    for ob in bpy.data.objects:
        ad = ob.animation_data
        if ad and ad.action:
            for fc in ad.action.fcurves:
                for kp in fc.keyframe_points:
                    kp.interpolation = "LINEAR"

    # ---- occluder ---------------------------------------------------------------------------
    occluder_info = None
    if cfg["occluder"]:
        tm = duration / 2
        pa = actors[0].root(tm) - actors[0].fwd * 0.3  # behind the actor's root: partial cover
        occ_xy = eye.lerp(pa, 0.5)
        oz = ground.h(occ_xy.x, occ_xy.y)
        if cfg["occluder"] == "post":
            r = rng.uniform(0.045, 0.065)
            me = capsule_mesh("Occluder", r, r, 3.0, seg=20)
            mat = principled("Occluder_paint", (0.20, 0.28, 0.22), 0.45, 0.3)
            occ = new_object("Occluder", me, mat, pass_index=3)
            occ.location = (occ_xy.x, occ_xy.y, oz)
            size = [2 * r, 2 * r, 3.0]
        else:
            s = rng.uniform(0.4, 0.5)
            mat = principled("Occluder_crate", PROP_MATERIALS["crate"][0], 0.8)
            me = box_mesh("Occluder", s, s, s, origin_bottom=True)
            occ = new_object("Occluder", me, mat, pass_index=3)
            occ.location = (occ_xy.x, occ_xy.y, oz)
            occ.rotation_euler = (0, 0, rng.uniform(-0.4, 0.4))
            me2 = box_mesh("Occluder_top", s * 0.9, s * 0.9, s * 0.9, origin_bottom=True)
            occ2 = new_object("Occluder_top", me2, mat, pass_index=3)
            occ2.location = (occ_xy.x + rng.uniform(-0.05, 0.05), occ_xy.y, oz + s)
            occ2.rotation_euler = (0, 0, rng.uniform(-0.5, 0.5))
            size = [s, s, s * 1.9]
        occluder_info = {
            "kind": cfg["occluder"], "objects": sorted(o.name for o in bpy.data.objects if o.name.startswith("Occluder")),
            "pass_index": 3, "location": [occ_xy.x, occ_xy.y, oz], "size_m": size,
            "in_greenscreen": False, "in_environment": True,
            "note": "part of the set (environment + groundtruth), not of the green-screen plate: alpha covers the whole actor, masks/depth come from the groundtruth render so the occluded parts are 0 in masks",
        }

    # ---- set pieces (behind the action, so they never cover an actor) ------------------------
    set_pieces_info = []
    if cfg.get("set_pieces"):
        view = centre - eye
        view.z = 0.0
        view.normalize()
        lateral = Vector((-view.y, view.x, 0.0))
        for i, pc in enumerate(cfg["set_pieces"]):
            at = centre + view * pc["back_m"] + lateral * pc["side_m"]
            z0 = ground.h(at.x, at.y)
            sx, sy, sz = pc["size_m"]
            ob = new_object(f"SetPiece{i}", box_mesh(f"SetPiece{i}", sx, sy, sz + 0.2, origin_bottom=True),
                            principled(f"SetPiece{i}_paint", pc["colour_srgb"], 0.8))
            ob.location = (at.x, at.y, z0 - 0.2)  # sunk a little: no gap on uneven ground
            ob.rotation_euler = (0.0, 0.0, math.atan2(view.y, view.x) + math.radians(pc["yaw_deg"]))
            set_pieces_info.append({**pc, "location": [at.x, at.y, z0]})

    # ---- lights & world ---------------------------------------------------------------------
    cam_fwd = cam_quats[f0] @ Vector((0, 0, -1))
    cam_fwd_az = math.atan2(cam_fwd.y, cam_fwd.x)
    action_target = centre + Vector((0, 0, 0.9))
    lights_info = []
    gt_lights = []
    if cfg["lights"] == "sun":
        sun_az = cam_fwd_az + cfg["sun_side"] * math.radians(cfg["sun_rel_deg"])
        sun_az = math.atan2(math.sin(sun_az), math.cos(sun_az))
        rot_z = hdri.hot_az - sun_az
        d_sun = Vector(sph(sun_az, sun["el"]))
        sun_ob = light_object("Sun", "SUN", sun["strength"], sun["colour"],
                              rot_q=d_sun.to_track_quat("Z", "Y"), angle=math.radians(sun["angular_deg"]))
        gt_lights.append(sun_ob)
        e_total = sun["e_total"]
        ev = sun["ev"]
        sun_json = {
            "direction_to_sun": list(d_sun), "light_travel_direction": list(-d_sun),
            "azimuth_deg": math.degrees(sun_az) % 360.0, "elevation_deg": math.degrees(sun["el"]),
            "hdri_hotspot_elevation_deg": math.degrees(hdri.hot_el),
            "strength_w_m2": sun["strength"], "color_linear": list(sun["colour"]),
            "angular_diameter_deg": sun["angular_deg"], "key_to_fill_ratio": sun["k2f"],
            "key_to_fill_ratio_from_hdri": sun["k2f_raw"], "type": "SUN",
            "note": "azimuth from +X towards +Y; elevation clamped to [15,60] deg; strength = HDRI energy above the clamp within 15 deg of its brightest pixel, "
                    f"then scaled so that key_to_fill_ratio lies in [{K2F_RANGE[0]}, {K2F_RANGE[1]}] (key_to_fill_ratio_from_hdri = unscaled)",
        }
        if sky is not None:
            sun_json["note"] = ("azimuth from +X towards +Y; direction, colour and angular size are the Nishita sky's sun (colour measured "
                                "from the sky's disc); strength set so that key_to_fill_ratio (seed-drawn in "
                                f"[{K2F_RANGE[0]}, {K2F_RANGE[1]}]) holds against the sky's fill; key_to_fill_ratio_from_hdri = the sky's own "
                                "disc-to-sky ratio (single scattering: a dark sky)")
        lights_info.append({"name": "Sun", "type": "SUN", "direction_to_light": list(d_sun),
                            "strength_w_m2": sun["strength"], "color_linear": list(sun["colour"]),
                            "angular_diameter_deg": sun["angular_deg"], "cast_shadows": True})
    else:  # interior: HDRI clamped (its hot spot is not replaced), two coloured lamps
        rot_z = rng.uniform(-math.pi, math.pi)
        eh = sun["eh"]
        fill = lum(eh)
        a_az = cam_fwd_az + cfg["sun_side"] * math.radians(rng.uniform(70, 120))
        b_az = a_az + math.pi + rng.uniform(-0.5, 0.5)
        warm = [1.0, 0.62, 0.34]
        cool = [0.52, 0.72, 1.0]
        warm = [c / lum(warm) for c in warm]
        cool = [c / lum(cool) for c in cool]
        specs = [
            ("LampA", "AREA", a_az, math.radians(rng.uniform(40, 55)), rng.uniform(2.4, 3.0), 2.0 * fill, warm, 0.8, None),
            ("LampB", "POINT", b_az, math.radians(rng.uniform(30, 45)), rng.uniform(2.2, 2.8), 1.3 * fill, cool, None, 0.1),
        ]
        e_total = list(eh)
        for (name, kind, laz, lel, ldist, irr, col, size, radius) in specs:
            ob, power = aimed_light(name, kind, action_target, laz, lel, ldist, irr, col, size=size, radius=radius)
            gt_lights.append(ob)
            for c in range(3):
                e_total[c] += irr * math.sin(lel) * col[c]
            ang = math.degrees(2 * math.atan((size or 2 * radius) / 2 / ldist))
            lights_info.append({
                "name": name, "type": kind, "location": list(ob.location), "power_w": power,
                "color_linear": col, "size_m": size, "radius_m": radius, "distance_m": ldist,
                "direction_to_light": list(Vector(sph(laz, lel))), "azimuth_deg": math.degrees(laz) % 360.0,
                "elevation_deg": math.degrees(lel), "irradiance_w_m2_at_target": irr,
                "target": list(action_target), "angular_diameter_deg": ang,
                "key_to_fill_ratio": irr * math.sin(lel) / fill, "cast_shadows": True,
            })
        ev = exposure_for(lum(e_total))
        key = lights_info[0]
        d_key = Vector(key["direction_to_light"])
        sun_json = {
            "direction_to_sun": list(d_key), "light_travel_direction": list(-d_key),
            "azimuth_deg": key["azimuth_deg"], "elevation_deg": key["elevation_deg"],
            "hdri_hotspot_elevation_deg": math.degrees(hdri.hot_el),
            "strength_w_m2": key["irradiance_w_m2_at_target"], "color_linear": key["color_linear"],
            "angular_diameter_deg": key["angular_diameter_deg"], "key_to_fill_ratio": key["key_to_fill_ratio"],
            "key_to_fill_ratio_from_hdri": None, "type": "AREA",
            "note": "no sun: this is the key lamp (LampA) seen from the action centre (strength = its irradiance there); all lamps in 'lights'",
        }
    blocks, blocks_info, sky_check = [], [], None
    if sky is None:
        T = max(8.0 * hdri.median_upper, 1.05 * 2.0 ** (-ev))
        world_gt = hdri_world(hdri.image, rot_z, T)
        ground_mesh = ground.mesh("Ground", (eye.x, eye.y))
        ground_ob = new_object("Ground", ground_mesh, projected_ground_material(hdri.image, rot_z, eye, e_total))
    else:  # sun_rotation rot_z puts the sky's sun at NISHITA_AZ0 - rot_z = sun_az, as the HDRI's hot spot
        T = None
        world_gt = sky_world(sky, rot_z)
        if sky["sun_lamp"]:
            sky_check = check_sky_sun(world_gt, d_sun, a.threads, os.path.join(shot_dir, ".sky_probe"))
        ground_ob = new_object("Ground", ground.mesh("Ground", (eye.x, eye.y), radius=2000.0), procedural_ground_material(sky))
        blocks, blocks_info = far_blocks(sky, ground, centre, cam_fwd_az, sun_az if sky["sun_lamp"] else None)

    # green-screen set: studio rig, emissive green floor (same shape) + backdrop, camera-invisible
    green_lin = srgb_to_linear(GREEN_SRGB)
    gs_floor = new_object("GS_floor", ground.mesh("GS_floor", (centre.x, centre.y), radius=12.0),
                          emission_material("GS_green_floor", green_lin, 0.3))
    gs_floor.visible_camera = False
    back_dir = (centre - eye)
    back_dir.z = 0
    back_dir.normalize()
    bd = box_mesh("GS_backdrop", 0.02, 14.0, 7.0, origin_bottom=True)
    gs_back = new_object("GS_backdrop", bd, emission_material("GS_green_backdrop", green_lin, 0.3))
    gs_back.location = centre + back_dir * 4.5 + Vector((0, 0, -0.5))
    gs_back.rotation_euler = (0, 0, math.atan2(back_dir.y, back_dir.x))
    gs_back.visible_camera = False
    gs_back.visible_shadow = False
    rig = []
    side = rng.choice([-1, 1])
    rig_specs = [
        ("GS_key", cam_fwd_az + math.pi + side * math.radians(40), math.radians(35), 3.2, 2.0, 1.2),
        ("GS_fill", cam_fwd_az + math.pi - side * math.radians(55), math.radians(15), 3.6, 0.6, 1.6),
        ("GS_rim", cam_fwd_az + side * math.radians(30), math.radians(40), 2.6, 1.5, 0.8),
    ]
    gs_lights = []
    for (name, laz, lel, ldist, irr, size) in rig_specs:
        ob, power = aimed_light(name, "AREA", action_target, laz, lel, ldist, irr, (1.0, 1.0, 1.0), size=size)
        gs_lights.append(ob)
        rig.append({"name": name, "type": "AREA", "size_m": size, "power_w": power, "location": list(ob.location),
                    "irradiance_w_m2_at_target": irr})
    world_gs = studio_world(0.05)

    # ---- motion blur --------------------------------------------------------------------------
    if cfg["motion_blur"]:
        scene.render.use_motion_blur = True
        scene.render.motion_blur_shutter = 0.5
        scene.cycles.motion_blur_position = "CENTER"
    else:
        scene.render.use_motion_blur = False

    actor_objs = [ob for ac in actors for ob in list(ac.objects.values())]
    set_objs = [ground_ob] + [o for o in bpy.data.objects if o.name.startswith(("Occluder", "SetPiece"))] + blocks
    gs_objs = [gs_floor, gs_back] + gs_lights

    def configure(kind):
        gs = kind.startswith("greenscreen")
        for ob in actor_objs + [prop.obj]:
            ob.hide_render = kind == "environment"
        for ob in set_objs + gt_lights:
            ob.hide_render = gs
        for ob in gs_objs:
            ob.hide_render = not gs or (kind == "greenscreen_nospill" and ob in (gs_floor, gs_back))
        scene.world = world_gs if gs else world_gt
        scene.render.film_transparent = gs
        scene.cycles.samples = gs_samples if gs else a.samples
        setup_compositor(scene, shot_dir, a.shot_id, kind, ev=0.0 if gs else ev, green_linear=green_lin)

    timings = {}

    def render_frames(kind, flist):
        configure(kind)
        t0 = time.time()
        for f in flist:
            scene.frame_set(f)
            bpy.ops.render.render(write_still=False)
            if kind == "groundtruth":
                tmp = os.path.join(shot_dir, ".depth_tmp", f"depth.{f:04d}.exr")
                write_exr_y(os.path.join(shot_dir, "depth", f"{a.shot_id}.{f:04d}.exr"), W, H, exr_rows(tmp, W, H))
                os.remove(tmp)
        dt = time.time() - t0
        timings[kind] = {"frames": len(flist), "seconds": dt, "per_frame": dt / max(len(flist), 1)}
        print(f"[blender_scene] {a.shot_id}: {kind} {len(flist)} frame(s) in {dt:.1f} s", flush=True)

    for sub in ("greenscreen", "alpha", "groundtruth", "environment", "depth", "masks") + (("greenscreen_nospill",) if a.nospill else ()):
        d_ = os.path.join(shot_dir, sub)
        if os.path.isdir(d_):
            for fn in os.listdir(d_):
                os.remove(os.path.join(d_, fn))
        os.makedirs(d_, exist_ok=True)
    render_frames("groundtruth", frames)
    env_per_frame = cfg["camera"] == "pan"
    render_frames("environment", frames if env_per_frame else [f0])
    if not env_per_frame:
        src = os.path.join(shot_dir, "environment", f"{a.shot_id}.{f0:04d}.png")
        for f in frames[1:]:
            shutil.copyfile(src, os.path.join(shot_dir, "environment", f"{a.shot_id}.{f:04d}.png"))
    render_frames("greenscreen", frames)
    if a.nospill:
        render_frames("greenscreen_nospill", frames)
    shutil.rmtree(os.path.join(shot_dir, ".depth_tmp"), ignore_errors=True)

    # ---- shot.json ---------------------------------------------------------------------------
    per_frame = []
    for f in frames:
        scene.frame_set(f)
        per_frame.append(mat_list(cam.matrix_world))
    scene.frame_set(f0)
    main_actor = actors[0]
    prop_end = prop.start_x + prop.s_of_t(time_of(f1))
    out_root = os.path.abspath(a.out_root)
    ground_json = ground.describe((main_actor.root(0).x, main_actor.root(0).y))
    if sky is None:
        hdri_json = {
            "file": os.path.relpath(os.path.abspath(a.hdri), out_root),
            "file_abs": os.path.abspath(a.hdri),
            "file_relative_to": "output root (the folder holding the shot folders)",
            "rotation_z_rad": rot_z, "rotation_z_deg": math.degrees(rot_z),
            "lighting_clamp_luminance": T, "median_upper_luminance": hdri.median_upper,
            "peak_upper_luminance": hdri.peak_upper,
            "horizontal_irradiance_clamped_rgb": list(sun["eh"]),
            "note": "world = HDRI clamped at luminance T (hot spot replaced by the sun lamp); T is above display white so background pixels are unchanged"
            if cfg["lights"] == "sun" else
            "world = HDRI clamped at luminance T for lighting rays (camera rays unclamped); the hot spot is NOT replaced: the two lamps are the key lights",
        }
    else:
        hdri_json = {
            "file": "", "file_abs": "", "file_relative_to": "output root (the folder holding the shot folders)",
            "procedural_sky": {**{k: v for k, v in sky.items() if k not in ("blocks", "ground", "ground_scale_m", "ground_tint")},
                               "sun_rotation_deg": math.degrees(rot_z), "sun_azimuth_deg": math.degrees(hdri.hot_az - rot_z) % 360.0,
                               "sun_irradiance_normal_rgb": sun["sun_irradiance_normal_rgb"],
                               "disc_at_sun_lamp": sky_check},
            "rotation_z_rad": rot_z, "rotation_z_deg": math.degrees(rot_z),
            "lighting_clamp_luminance": T, "median_upper_luminance": hdri.median_upper,
            "peak_upper_luminance": hdri.peak_upper,
            "horizontal_irradiance_clamped_rgb": list(sun["eh"]),
            "note": "no HDRI: world = Nishita sky (Blender sky texture); lighting rays see it without the sun disc (the sun lamp "
                    "carries the direct light), camera rays with it" + ("" if sky["sun_lamp"] else "; dim dusk sky, no disc, no sun lamp: the two lamps are the key lights")
                    + "; the fill is measured from a 128x64 equirect render of the disc-less sky (no clamp: lighting_clamp_luminance null)",
        }
        ground_json.update(mode="procedural", material=sky["ground"], pattern_scale_m=sky["ground_scale_m"], tint=sky["ground_tint"],
                           far_blocks=blocks_info,
                           note=ground_json["note"].replace("projected: diffuse plane, albedo = pi*HDRI(dir from camera)/E_total, fades to transparent 18-40 m from the camera",
                                                            f"procedural: {sky['ground']} (noise/brick/voronoi textures), 2 km plane; distant boxes "
                                                            "('far_blocks', never within 40 deg of the sun's azimuth) stand in for buildings"))
    shot = {
        "shot_id": a.shot_id,
        "frame_start": f0, "frame_end": f1, "frame_count": len(frames), "frames_rendered": len(frames),
        "fps": fps, "resolution": [W, H],
        "camera": {
            "location": list(cam.location), "rotation_euler_xyz": list(cam.rotation_euler),
            "matrix_world": mat_list(cam.matrix_world),
            "focal_length_mm": cfg["focal_mm"], "sensor_width_mm": 36.0, "sensor_fit": "HORIZONTAL",
            "intrinsics_px": {"fx": f_px, "fy": f_px, "cx": W / 2, "cy": H / 2},
            "convention": "Blender camera: looks along local -Z, +Y up; depth = distance along the view axis",
            "animated": cfg["camera"] == "pan",
            "world_matrix_per_frame": per_frame,
            "world_matrix_per_frame_note": "one 4x4 per frame, frame_start..frame_end; matrix_world is the first frame's",
            "framing": framing,
        },
        "sun": sun_json,
        "lights": lights_info,
        "hdri": hdri_json,
        "ground": ground_json,
        "exposure_ev_groundtruth": ev,
        "exposure_ev_greenscreen": 0.0,
        "exposure_note": f"groundtruth/environment: EV = log2({EXPOSURE_TARGET} * pi / luminance(E_total)), E_total = horizontal irradiance of key + fill at the action centre (a white horizontal Lambertian card displays at {EXPOSURE_TARGET} linear)",
        "view_transform": "Standard (sRGB), 16-bit PNG",
        "greenscreen": {
            "color_srgb": list(GREEN_SRGB), "color_linear": list(green_lin),
            "note": "transparent-film render composited over constant green; spill from camera-invisible emissive green backdrop+floor",
            "rig": rig, "ambient_world_rgb": [0.05, 0.05, 0.05],
        },
        "character": main_actor.describe(1),
        "characters": [ac.describe(1) for ac in actors],
        "prop": {"object": "Prop", "pass_index": 2, "size_m": list(prop.size), "material": prop.material,
                 "start_x": prop.start_x, "end_x": prop_end},
        "contact_frame": contact_frame,
        "contact_note": "first frame on which both hands touch the box; the box moves from the frame after it on"
        if contact_frame is not None else "no contact in this variant (the box stays put); contact_frame is null",
        "push_distance_m": prop_end - prop.start_x,
        "hand_box_gap_m": contact_gaps,
        "hand_box_gap_note": "per frame: how far the farther hand's palm is from the box face (0 = touching; from contact_frame on both hands are on the box)",
        "masks": {"R": "character", "G": "prop", "B": "character or prop",
                  "note": "binary, from IndexOB (first camera sample per pixel) of the groundtruth render" +
                  ("; all actors are 'character'" if len(actors) > 1 else "") +
                  ("; the occluder (pass index 3) hides what it covers" if occluder_info else "")},
        "depth": {"file_format": "OpenEXR scanline, 1 channel float32, ZIP", "channel": "Y",
                  "units": "metres along the camera view axis (planar Z)", "background": 1e10,
                  "note": "first camera sample per pixel (not filtered)"},
        "alpha": {"format": "16-bit PNG, linear coverage of character+prop in greenscreen"},
        "environment": {"rendered_per_frame": env_per_frame},
        "render": {
            "engine": "CYCLES", "device": "CPU", "samples": a.samples, "gs_samples": gs_samples,
            "adaptive_threshold": a.adaptive_threshold, "seed": 0, "scene_seed": a.seed,
            "denoiser": "none (build lacks OpenImageDenoise)",
            "threads": scene.render.threads,
            "max_bounces": scene.cycles.max_bounces,
            "motion_blur": {"enabled": cfg["motion_blur"], "shutter_frames": 0.5 if cfg["motion_blur"] else 0.0,
                            "position": "CENTER"},
            "timings": timings,
            "hdri_analysis_seconds": t_an,
            "shot_wall_seconds": time.time() - wall0,
            "blender_version": bpy.app.version_string,
        },
        "variant": a.variant,
        "variant_description": VARIANTS[a.variant],
        "generator": "bench/blender_shots.py + bench/blender_scene.py",
    }
    if occluder_info:
        shot["occluder"] = occluder_info
    if set_pieces_info:
        shot["set_pieces"] = set_pieces_info
    with open(os.path.join(shot_dir, "shot.json"), "w") as fh:
        json.dump(shot, fh, indent=1)
    print(f"[blender_scene] {a.shot_id}: done in {time.time() - wall0:.1f} s", flush=True)


if __name__ == "__main__" and bpy is not None:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    try:
        main(argv)
    except SystemExit:
        raise
    except BaseException:
        import traceback
        traceback.print_exc()
        sys.stdout.flush()
        os._exit(1)  # blender -b --python would otherwise exit 0
