"""HDRIs of our own: equirect panoramas of procedural outdoor worlds, rendered with Blender/Cycles.

The path-traced eval is lit by HDRIs (a sun lined up with the panorama's brightest region, the ground
the panorama projected onto a plane). Training or tuning on shots lit the same way without using the
eval's own five HDRIs needs other panoramas; this makes them. Each seed draws a world of its own:

  * a Nishita sky (sun elevation 10-60 deg, air/dust/ozone, sun size; ``blender_scene.sky_config``'s
    ranges), seen with its disc, plus a sun lamp along the disc carrying the direct light (its strength
    from a drawn key-to-fill ratio, measured against the sky as ``blender_scene.analyse_sky`` does), so
    objects in the panorama cast sharp shadows that agree with the sun, as in a photographed HDRI;
  * a procedural ground (asphalt, concrete slabs, grass, dirt; ``procedural_ground_material``);
  * 4-12 boxes ("buildings", 20-150 m, all around), 0-6 trees (trunk + canopy) and 0-4 small crates
    5-15 m away whose shadows fall on the ground near the nadir.

The panorama is seen from 1.7 m above the ground and written as Radiance ``.hdr`` named
``pano_s<seed>_1k.hdr`` (so ``blender_scene.hdri_stem`` gives ``pano_s<seed>``), beside a JSON of the
world drawn (sun azimuth in the panorama, elevation, blocks). Use them with::

    python bench/blender_shots.py --out DIR --all --hdri-dir PANO_DIR ...

Usage: python bench/blender_panorama.py --out DIR [--seeds 0-7] [--size 1024x512] [--samples 32]
(the driver runs itself inside ``blender -b``; Debian's ``blender`` package, 3.4, is enough).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

TREE_GREENS = [(0.20, 0.30, 0.12), (0.25, 0.33, 0.15), (0.16, 0.24, 0.12), (0.33, 0.35, 0.17)]
CRATE_COLOURS = [(0.55, 0.42, 0.28), (0.45, 0.45, 0.47), (0.62, 0.55, 0.45), (0.30, 0.30, 0.32)]


def world_config(seed: int) -> dict:
    """Every choice of panorama ``seed`` (its own stream: no shot's stream is reused)."""
    import blender_scene

    sky = blender_scene.sky_config("panorama", seed)
    rng = random.Random(f"cinecomp-blender-panorama:{seed}")
    sky["blocks"] = [{
        "bearing_deg": rng.uniform(-180.0, 180.0), "distance_m": rng.uniform(20.0, 150.0),
        "size_m": [rng.uniform(6.0, 35.0), rng.uniform(6.0, 35.0), rng.uniform(4.0, 40.0)],
        "yaw_deg": rng.uniform(-45.0, 45.0), "colour_srgb": list(rng.choice(blender_scene.BLOCK_COLOURS)),
    } for _ in range(rng.randint(4, 12))]
    sky["trees"] = [{
        "bearing_deg": rng.uniform(-180.0, 180.0), "distance_m": rng.uniform(8.0, 60.0),
        "height_m": rng.uniform(4.0, 12.0), "canopy_m": rng.uniform(1.5, 4.0),
        "colour_srgb": list(rng.choice(TREE_GREENS)),
    } for _ in range(rng.randint(0, 6))]
    sky["crates"] = [{
        "bearing_deg": rng.uniform(-180.0, 180.0), "distance_m": rng.uniform(5.0, 15.0),
        "size_m": [rng.uniform(0.6, 2.5), rng.uniform(0.6, 2.5), rng.uniform(0.5, 2.0)],
        "yaw_deg": rng.uniform(0.0, 90.0), "colour_srgb": list(rng.choice(CRATE_COLOURS)),
    } for _ in range(rng.randint(0, 4))]
    return sky


def build_and_render(seed: int, out: str, size: tuple[int, int], samples: int, threads: int) -> dict:
    """Inside Blender: build panorama ``seed``'s world and render it to ``out``/pano_s<seed>_1k.hdr."""
    import bpy
    from mathutils import Vector

    import blender_scene as bs

    bpy.ops.wm.read_factory_settings(use_empty=True)
    sky = world_config(seed)
    _, sun = bs.analyse_sky(sky, os.path.join(out, f".probe_s{seed}"), threads)
    sun_az = bs.NISHITA_AZ0  # sun_rotation 0
    d_sun = Vector(bs.sph(sun_az, sun["el"]))

    sc = bpy.context.scene
    sc.render.engine = "CYCLES"
    sc.cycles.device = "CPU"
    sc.cycles.samples = samples
    sc.cycles.use_adaptive_sampling = False
    sc.cycles.use_denoising = False
    sc.cycles.seed = seed
    if threads > 0:
        sc.render.threads_mode = "FIXED"
        sc.render.threads = threads
    sc.view_settings.view_transform = "Raw"
    sc.world = bs.sky_world(sky, 0.0, camera_disc=True)

    lamp = bpy.data.lights.new("Sun", "SUN")
    lamp.energy = sun["strength"]
    lamp.color = sun["colour"]
    lamp.angle = math.radians(sky["sun_diameter_deg"])
    sun_ob = bpy.data.objects.new("Sun", lamp)
    sun_ob.rotation_mode = "QUATERNION"
    sun_ob.rotation_quaternion = (-d_sun).to_track_quat("-Z", "Y")
    sc.collection.objects.link(sun_ob)

    bpy.ops.mesh.primitive_plane_add(size=4000.0, location=(0.0, 0.0, 0.0))
    ground = bpy.context.active_object
    ground.data.materials.append(bs.procedural_ground_material(sky))

    def place(kind, spec, i):
        bearing = math.radians(spec["bearing_deg"])
        x, y = spec["distance_m"] * math.cos(bearing), spec["distance_m"] * math.sin(bearing)
        if kind == "tree":
            trunk_h = spec["height_m"] - spec["canopy_m"]
            bpy.ops.mesh.primitive_cylinder_add(radius=0.15 + 0.02 * spec["height_m"], depth=trunk_h,
                                                location=(x, y, trunk_h / 2))
            bpy.context.active_object.data.materials.append(bs.principled(f"Trunk{i}", (0.30, 0.22, 0.16), 0.9))
            bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=3, radius=spec["canopy_m"],
                                                  location=(x, y, trunk_h + 0.8 * spec["canopy_m"]))
            bpy.context.active_object.data.materials.append(bs.principled(f"Canopy{i}", spec["colour_srgb"], 0.9))
            return
        sx, sy, sz = spec["size_m"]
        ob = bs.new_object(f"{kind}{i}", bs.box_mesh(f"{kind}{i}", sx, sy, sz, origin_bottom=True),
                           bs.principled(f"{kind}{i}_paint", spec["colour_srgb"], 0.8))
        ob.location = (x, y, 0.0)
        ob.rotation_euler = (0.0, 0.0, bearing + math.radians(spec["yaw_deg"]))

    for i, b in enumerate(sky["blocks"]):
        place("Block", b, i)
    for i, t in enumerate(sky["trees"]):
        place("tree", t, i)
    for i, c in enumerate(sky["crates"]):
        place("Crate", c, i)

    cam_data = bpy.data.cameras.new("Pano")
    cam_data.type = "PANO"
    cam_data.cycles.panorama_type = "EQUIRECTANGULAR"
    cam = bpy.data.objects.new("Pano", cam_data)
    cam.location = (0.0, 0.0, 1.7)
    cam.rotation_mode = "QUATERNION"
    cam.rotation_quaternion = Vector((1.0, 0.0, 0.0)).to_track_quat("-Z", "Y")  # centre column faces +X
    sc.collection.objects.link(cam)
    sc.camera = cam
    sc.render.resolution_x, sc.render.resolution_y = size
    sc.render.resolution_percentage = 100
    sc.render.image_settings.file_format = "HDR"
    path = os.path.join(out, f"pano_s{seed}_1k.hdr")
    sc.render.filepath = path
    t0 = time.time()
    bpy.ops.render.render(write_still=True)
    info = {"seed": seed, "file": os.path.basename(path), "size": list(size), "samples": samples,
            "render_s": round(time.time() - t0, 1), "camera_height_m": 1.7,
            "sun": {"azimuth_deg_world": math.degrees(sun_az), "elevation_deg": sky["sun_elevation_deg"],
                    "strength_w_m2": sun["strength"], "colour_linear": sun["colour"],
                    "key_to_fill_ratio": sun["k2f"]},
            "world": sky}
    with open(path[:-len(".hdr")] + ".json", "w") as fh:
        json.dump(info, fh, indent=1)
    return info


def parse_seeds(text: str) -> list[int]:
    a, _, b = text.partition("-")
    return list(range(int(a), int(b or a) + 1))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", default="0-7", help="A-B inclusive (default 0-7)")
    p.add_argument("--size", default="1024x512", help="WxH of the equirect panorama (2:1)")
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="render threads (0 = all cores)")
    p.add_argument("--blender", default="blender")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    w, _, h = a.size.partition("x")
    size = (int(w), int(h))
    if size[0] != 2 * size[1] or size[1] < 16:
        p.error(f"--size must be 2:1 and at least 32x16, got {a.size}")
    if a.samples < 1:
        p.error(f"--samples must be >= 1, got {a.samples}")
    seeds = parse_seeds(a.seeds)
    os.makedirs(a.out, exist_ok=True)
    if a.inside:
        for s in seeds:
            info = build_and_render(s, a.out, size, a.samples, a.threads)
            print(f"[blender_panorama] {info['file']}: sun az {info['sun']['azimuth_deg_world']:.0f} el "
                  f"{info['sun']['elevation_deg']:.1f}, {len(info['world']['blocks'])} blocks, "
                  f"{len(info['world']['trees'])} trees, {info['render_s']} s", flush=True)
        return 0
    if shutil.which(a.blender) is None:
        sys.exit(f"error: Blender not found ({a.blender!r}); install it (apt-get install blender) or pass --blender")
    for s in seeds:  # one Blender per panorama: a fresh scene each time
        if os.path.isfile(os.path.join(a.out, f"pano_s{s}_1k.hdr")):
            print(f"[blender_panorama] pano_s{s}_1k.hdr exists: kept", flush=True)
            continue
        cmd = [a.blender, "-b", "--factory-startup", "--python", os.path.abspath(__file__), "--", "--inside",
               "--out", a.out, "--seeds", str(s), "--size", a.size, "--samples", str(a.samples),
               "--threads", str(a.threads)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("[blender_panorama]")]
        print("\n".join(lines) or r.stdout[-2000:], flush=True)
        if r.returncode or not lines:
            sys.exit(f"error: panorama seed {s} failed (exit {r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
    return 0


if __name__ == "__main__":
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    sys.exit(main(argv))
