"""Generate varied path-traced compositing test shots with Blender/Cycles.

What it makes: one folder per shot in exactly the format of ../shared/data/pathtraced (see its
README): greenscreen/ (16-bit sRGB PNG, studio rig over chroma green), alpha/ (16-bit grey PNG,
linear coverage of actors+prop in the green-screen render), groundtruth/ (16-bit sRGB PNG, HDRI
world + sun or lamps, cast shadows), environment/ (clean plate, no actors/prop), depth/ (float32
EXR, single channel "Y", planar Z, background 1e10), masks/ (8-bit RGB PNG, R=character, G=prop,
B=union, binary) and shot.json (same keys as the existing set plus additive ones: variant,
lights, characters, camera.world_matrix_per_frame, ...). Files are named <shot_id>.<frame>.<ext>
with frames from 1001. The existing 8 shots are all "one actor pushes a box on flat ground, static
camera, HDRI + sun"; this adds variants (``--list``): other bodies / poses / clothing (tall in a
white shirt, short in a black coat, wide, arms raised, crouching), an interior lit by two coloured
lamps, sloped and stepped ground, a panning camera, a foreground occluder, feet cut by the frame
edge, two actors and motion blur. Every shot is deterministic from (variant, --seed).

Worlds (``--world``): ``hdri`` (default) lights every shot with an HDRI of --hdri-dir (the shared
five; the report half of ../shared/data/pathtraced uses four of them) plus a sun lamp matched to its
hot spot, over an HDRI-projected ground. ``sky`` uses no HDRI, so training shots share none with the
eval: a Nishita sky (Blender's sky texture, on the CPU) with a seed-drawn sun elevation (10-60 deg),
air/dust/ozone density, altitude and sun diameter (0.545-1.6 deg); a sun lamp in the sky's sun
direction with its angular size and its colour, both measured by rendering the sky (fill: 128x64
equirect probe of the disc-less sky; sun: disc on minus disc off in a 4 deg field), and a strength
that gives a seed-drawn key-to-fill ratio in [1.3, 3.0] (the sky's own ratio, 2.4-10 on the test set
below, is kept as sun.key_to_fill_ratio_from_hdri); a procedural ground (asphalt, concrete slabs,
grass or dirt from noise/brick/voronoi textures, 2 km plane) and 2-6 distant boxes standing in for
buildings (45-160 m, never within 40 deg of the sun's azimuth, so they never shadow the action).
Each sky shot renders its final world towards the sun lamp and 8 deg beside it and fails unless the
disc is there (``hdri.procedural_sky.disc_at_sun_lamp``: ~16000 vs ~37), so shadows match the sky.
interior_two_lights keeps its two lamps under a dim dusk sky (sun 3-10 deg, no disc, no sun lamp).
Shot ids end in ``_sky`` (``bl_<variant>_s<seed>_sky``); shot.json has the same keys, with
``hdri.file`` "" and ``hdri.procedural_sky`` / ``ground.mode`` "procedural" describing the world.
Actors, prop and camera of a (variant, seed) are the same in both worlds.

This script runs with the normal python3 and calls, per shot,
``blender -b --factory-startup --python bench/blender_scene.py -- <args>`` (the scene script runs
in Blender's own Python with bpy; Debian's Blender has no numpy, so it uses none). Install Blender
with ``apt-get install -y blender`` (tested with Debian's Blender 3.4.1, the version the existing
set was rendered with). Cycles on the CPU, adaptive sampling, denoiser off (this Blender build
has no OpenImageDenoise).

Run:
    python3 bench/blender_shots.py --list
    python3 bench/blender_shots.py --out /tmp/blender_shots --all                  # defaults: 320x180, 12 frames, 32 spp
    python3 bench/blender_shots.py --out /tmp/blender_shots --variant pan --variant slope --seed 3
    python3 bench/blender_shots.py --out /tmp/blender_shots --all --size 160x90 --frames 6 --samples 16
    python3 bench/blender_shots.py --out /tmp/blender_shots --check-only          # format check only
    python3 bench/blender_shots.py --out /tmp/train_shots --all --seeds 0-4 --world sky --split tune \
        --size 160x90 --frames 9 --samples 16 --threads 1                         # training data (curate pathtraced: rows)

After rendering, every shot is checked against a reference shot of the existing set (file set and
naming, PNG bit depth / colour type / size, EXR channels / type / compression, shot.json keys as a
superset); value checks (binary masks, alpha vs masks, green plate, depth range) run when numpy,
OpenEXR and OpenCV are importable, else through .venv/bin/python if it exists.

Timings here (2-core CPU box, Blender 3.4.1, CPU shared with other jobs: load average 5-7):
  * --all --size 160x90 --frames 6 --samples 16: 154 s for the 14 shots (5-15 s per shot);
  * --all with the defaults (320x180, 12 frames, 32 spp, green screen 64 spp): 1024 s for the 14
    shots, 37-125 s per shot (groundtruth 2-8 s/frame, green screen 0.6-2.3 s/frame, environment
    one frame, or 12 for "pan"); the fastest numbers are the ones with the least contention;
  * --all --seeds 0-1 --world sky --split tune --size 160x90 --frames 9 --samples 16 --threads 1:
    454 s for the 28 shots (12.1-21.0 s per shot: groundtruth 0.48-1.01 s/frame, environment
    0.38-1.31 s, green screen 0.17-0.34 s/frame, sky probes 4-7 s; load average ~1.3), all passing
    the format and value checks; ``cinecomp curate`` accepted all 28 (one 5-frame window each).
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import blender_scene  # noqa: E402  (importable without bpy: VARIANTS, choose_hdri)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE = REPO.parent / "shared" / "data" / "pathtraced" / "shot09_empty_warehouse_01"
SUBDIRS = ("greenscreen", "alpha", "groundtruth", "environment", "depth", "masks")


# ------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------

def find_blender(explicit: str | None) -> str:
    exe = explicit or shutil.which("blender")
    if not exe or not (Path(exe).is_file() or shutil.which(exe)):
        sys.exit("error: 'blender' not found on PATH. Install it with:\n"
                 "    apt-get update && apt-get install -y blender\n"
                 "(or pass --blender /path/to/blender)")
    return exe


def blender_version(exe: str) -> str:
    try:
        out = subprocess.run([exe, "-b", "--factory-startup", "--version"], capture_output=True, text=True, timeout=120).stdout
        for line in out.splitlines():
            if line.startswith("Blender "):
                return line.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 320x180, got {text!r}")


def resolve_hdri(name: str | None, variant: str, seed: int, hdri_dir: Path) -> str:
    hdris = sorted(str(p) for p in hdri_dir.glob("*.hdr"))
    if name:
        p = Path(name)
        if p.is_file():
            return str(p.resolve())
        for h in hdris:
            if blender_scene.hdri_stem(h) == name or Path(h).name == name:
                return h
        sys.exit(f"error: HDRI {name!r} not found (in {hdri_dir}: {[blender_scene.hdri_stem(h) for h in hdris]})")
    if not hdris:
        sys.exit(f"error: no .hdr files in {hdri_dir}")
    return blender_scene.choose_hdri(variant, seed, hdris)


def shot_id_for(variant: str, seed: int, hdri: str | None) -> str:
    """``bl_<variant>_s<seed>_<HDRI stem>``, or ``..._sky`` for the procedural world (hdri None)."""
    return f"bl_{variant}_s{seed}_{blender_scene.hdri_stem(hdri) if hdri else 'sky'}"


def render_shot(exe: str, out: Path, variant: str, seed: int, hdri: str | None, args) -> tuple[str, float, bool]:
    sid = shot_id_for(variant, seed, hdri)
    w, h = args.size
    cmd = [exe, "-b", "--factory-startup", "--python", str(HERE / "blender_scene.py"), "--",
           "--out-root", str(out), "--shot-id", sid, "--variant", variant, "--seed", str(seed),
           *(["--hdri", hdri] if hdri else ["--world", "sky"]), "--width", str(w), "--height", str(h),
           "--frames", str(args.frames), "--samples", str(args.samples), "--threads", str(args.threads)]
    if args.gs_samples:
        cmd += ["--gs-samples", str(args.gs_samples)]
    if args.nospill:
        cmd += ["--nospill"]
    log_path = out / f"{sid}.blender.log"
    print(f"[blender_shots] {sid}: rendering ({variant}, seed {seed}, {w}x{h}, {args.frames} frames, {args.samples} spp)", flush=True)
    t0 = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            if line.startswith("[blender_scene]") or "Error" in line or "Traceback" in line:
                print("   " + line.rstrip(), flush=True)
        rc = proc.wait()
    dt = time.time() - t0
    ok = rc == 0 and (out / sid / "shot.json").is_file()
    if ok:
        log_path.unlink()
        print(f"[blender_shots] {sid}: {dt:.1f} s", flush=True)
    else:
        print(f"[blender_shots] {sid}: FAILED (exit {rc}) after {dt:.1f} s; Blender log: {log_path}", flush=True)
    return sid, dt, ok


# ------------------------------------------------------------------------------------------
# format check (pure python) against a reference shot of the existing set
# ------------------------------------------------------------------------------------------

def png_info(path: Path) -> dict:
    with open(path, "rb") as fh:
        head = fh.read(33)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return {"error": "not a PNG"}
    w, h, depth, ctype = struct.unpack(">IIBB", head[16:26])
    return {"size": (w, h), "bit_depth": depth, "colour_type": {0: "grey", 2: "RGB", 4: "grey+alpha", 6: "RGBA", 3: "palette"}[ctype]}


def exr_info(path: Path) -> dict:
    data = path.read_bytes()
    if data[:4] != b"\x76\x2f\x31\x01":
        return {"error": "not an OpenEXR file"}
    version = struct.unpack("<i", data[4:8])[0]
    pos, attrs = 8, {}
    while True:
        end = data.index(b"\0", pos)
        name = data[pos:end].decode()
        pos = end + 1
        if not name:
            break
        end = data.index(b"\0", pos)
        typ = data[pos:end].decode()
        pos = end + 1
        size = struct.unpack("<i", data[pos:pos + 4])[0]
        pos += 4
        attrs[name] = (typ, data[pos:pos + size])
        pos += size
    chans = []
    raw = attrs["channels"][1]
    p = 0
    while raw[p:p + 1] != b"\0":
        end = raw.index(b"\0", p)
        cname = raw[p:end].decode()
        ptype = struct.unpack("<i", raw[end + 1:end + 5])[0]
        chans.append((cname, {0: "UINT", 1: "HALF", 2: "FLOAT"}[ptype]))
        p = end + 1 + 16
    xmin, ymin, xmax, ymax = struct.unpack("<iiii", attrs["dataWindow"][1])
    comp = {0: "NONE", 1: "RLE", 2: "ZIPS", 3: "ZIP", 4: "PIZ", 5: "PXR24", 6: "B44", 7: "B44A", 8: "DWAA", 9: "DWAB"}[attrs["compression"][1][0]]
    return {"channels": chans, "compression": comp, "size": (xmax - xmin + 1, ymax - ymin + 1),
            "tiled": bool(version & 0x200), "multipart": bool(version & 0x1000)}


def key_paths(obj, prefix="") -> set[str]:
    out = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{prefix}.{k}" if prefix else k
            out.add(p)
            out |= key_paths(v, p)
    return out


def frame_files(shot: Path, sub: str) -> list[str]:
    return sorted(p.name for p in (shot / sub).iterdir()) if (shot / sub).is_dir() else []


def check_shot(shot: Path, ref: Path) -> list[str]:
    """Differences of ``shot`` from the reference format (empty list = same format)."""
    problems = []
    sid, rid = shot.name, ref.name
    meta = json.loads((shot / "shot.json").read_text())
    rmeta = json.loads((ref / "shot.json").read_text())
    missing = sorted(key_paths(rmeta) - key_paths(meta))
    if missing:
        problems.append(f"shot.json lacks keys: {missing}")
    extra = {"greenscreen_nospill"}  # --nospill's pass, beyond the reference format
    top = sorted(p.name for p in shot.iterdir() if not p.name.startswith(".") and p.name not in extra)
    rtop = sorted(p.name for p in ref.iterdir())
    if top != rtop:
        problems.append(f"top-level entries {top} != reference {rtop}")
    f0, f1 = meta["frame_start"], meta["frame_end"]
    w, h = meta["resolution"]
    for sub in SUBDIRS:
        rfiles = frame_files(ref, sub)
        ext = rfiles[0].rsplit(".", 1)[1]
        want = [f"{sid}.{f:04d}.{ext}" for f in range(f0, f1 + 1)]
        got = frame_files(shot, sub)
        if got != want:
            problems.append(f"{sub}/: files {got[:3]}... != expected {want[:3]}... ({len(got)} vs {len(want)})")
            continue
        # naming pattern identical to the reference: <shot_id>.<4-digit frame>.<ext>
        rname = rfiles[0]
        if not (rname.startswith(rid + ".") and rname[len(rid) + 1:].split(".")[0].isdigit()):
            problems.append(f"reference naming unexpected: {rname}")
        rinfo_fn = png_info if ext == "png" else exr_info
        rinfo = rinfo_fn(ref / sub / rname)
        for name in got:
            info = rinfo_fn(shot / sub / name)
            if info.get("size") != (w, h):
                problems.append(f"{sub}/{name}: size {info.get('size')} != resolution {(w, h)}")
            a = {k: v for k, v in info.items() if k != "size"}
            b = {k: v for k, v in rinfo.items() if k != "size"}
            if a != b:
                problems.append(f"{sub}/{name}: {a} != reference {b}")
                break
    return problems


def value_check_available() -> bool:
    try:
        import cv2  # noqa: F401
        import numpy  # noqa: F401
        import OpenEXR  # noqa: F401
        return True
    except ImportError:
        return False


def value_check(shot: Path) -> list[str]:
    """Sanity of the pixel values (needs numpy, OpenEXR, cv2). Returns notes (prefixed FAIL: on
    failures)."""
    import cv2
    import numpy as np
    import OpenEXR

    meta = json.loads((shot / "shot.json").read_text())
    sid, f0, f1 = shot.name, meta["frame_start"], meta["frame_end"]
    occluded = "occluder" in meta
    notes = []
    green = np.array(meta["greenscreen"]["color_srgb"]) * 65535
    ious, depth_min, depth_fg, bg_frac, green_err, shadow = [], [], [], [], [], []
    for f in range(f0, f1 + 1):
        name = f"{sid}.{f:04d}"
        m = cv2.imread(str(shot / "masks" / f"{name}.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
        a = cv2.imread(str(shot / "alpha" / f"{name}.png"), cv2.IMREAD_UNCHANGED).astype(np.float64) / 65535
        gs = cv2.imread(str(shot / "greenscreen" / f"{name}.png"), cv2.IMREAD_UNCHANGED)[..., ::-1].astype(np.float64)
        gt = cv2.imread(str(shot / "groundtruth" / f"{name}.png"), cv2.IMREAD_UNCHANGED)[..., ::-1].astype(np.float64)
        env = cv2.imread(str(shot / "environment" / f"{name}.png"), cv2.IMREAD_UNCHANGED)[..., ::-1].astype(np.float64)
        d = OpenEXR.File(str(shot / "depth" / f"{name}.exr")).channels()["Y"].pixels
        vals = set(np.unique(m).tolist())
        if not vals <= {0, 255}:
            notes.append(f"FAIL: {name} masks not binary: {sorted(vals)[:6]}")
        if not np.array_equal(m[..., 2] > 0, (m[..., 0] > 0) | (m[..., 1] > 0)):
            notes.append(f"FAIL: {name} masks B != R|G")
        union = m[..., 2] > 0
        ah = a > 0.5
        inter, uni = (union & ah).sum(), (union | ah).sum()
        ious.append(inter / max(uni, 1))
        depth_min.append(float(d.min()))
        if union.any():
            depth_fg.append(float(np.median(d[union])))
        bg_frac.append(float((d >= 1e9).mean()))
        bg = a < 1e-4
        if bg.any():
            green_err.append(float(np.abs(gs[bg] - green).max() / 65535))
        out = ~union
        dl = (gt[out].mean(-1) - env[out].mean(-1)) / 65535
        shadow.append(float((dl < -0.03).mean()))
    iou = min(ious)
    if iou < (0.5 if occluded else 0.85):
        notes.append(f"FAIL: alpha>0.5 vs mask union IoU min {iou:.3f}")
    if min(depth_min) <= 0 or not all(np.isfinite(depth_min)):
        notes.append(f"FAIL: depth min {min(depth_min)}")
    if not depth_fg or not (0.3 < min(depth_fg) and max(depth_fg) < 50):
        notes.append(f"FAIL: actor depth median outside 0.3-50 m: {depth_fg[:3]}")
    if green_err and max(green_err) > 0.01:
        notes.append(f"FAIL: green plate background deviates from constant green by {max(green_err):.4f}")
    notes.append(f"alpha/mask IoU min {iou:.3f}; actor depth {min(depth_fg):.2f}-{max(depth_fg):.2f} m; "
                 f"depth background {100 * np.mean(bg_frac):.1f}%; green bg max err {max(green_err or [0]):.4f}; "
                 f"groundtruth darker than env (shadow) outside actors: {100 * np.mean(shadow):.2f}% px")
    return notes


def run_checks(out: Path, sids: list[str], ref: Path, values: str) -> bool:
    ok = True
    print(f"[check] reference format: {ref}")
    for sid in sids:
        shot = out / sid
        if not (shot / "shot.json").is_file():
            print(f"[check] {sid}: MISSING")
            ok = False
            continue
        probs = check_shot(shot, ref)
        print(f"[check] {sid}: format {'OK' if not probs else 'DIFFERS'}")
        for p in probs:
            print("    - " + p)
        ok &= not probs
    if values == "off":
        return ok
    if value_check_available():
        for sid in sids:
            if (out / sid / "shot.json").is_file():
                notes = value_check(out / sid)
                for n in notes:
                    print(f"[values] {sid}: {n}")
                ok &= not any(n.startswith("FAIL") for n in notes)
    else:
        venv = REPO / ".venv" / "bin" / "python"
        if venv.is_file() and Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
            r = subprocess.run([str(venv), __file__, "--out", str(out), "--values-only", *sum((["--shot", s] for s in sids), [])])
            ok &= r.returncode == 0
        else:
            print("[values] skipped: numpy/OpenEXR/cv2 not importable (run with .venv/bin/python)")
    return ok


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="output root (one folder per shot is created in it)")
    p.add_argument("--variant", action="append", default=[], help="variant name (repeatable or comma separated); see --list")
    p.add_argument("--all", action="store_true", help="one shot of every variant")
    p.add_argument("--list", action="store_true", help="print the variants and exit")
    p.add_argument("--seed", type=int, default=0, help="scene seed (every shot is deterministic from variant + seed)")
    p.add_argument("--seeds", default=None, help="a range of seeds A-B (inclusive): one shot per variant and seed, "
                   "e.g. training data for curate's pathtraced: rows")
    p.add_argument("--split", choices=("tune", "report"), default=None,
                   help="stamp the shots' split in shot.json (curation refuses report shots; without it a hash of the "
                   "shot id decides)")
    p.add_argument("--size", type=parse_size, default=(320, 180), help="WxH, default 320x180")
    p.add_argument("--frames", type=int, default=12, help="frames per shot from 1001 (default 12)")
    p.add_argument("--samples", type=int, default=32, help="Cycles samples for groundtruth/environment (default 32)")
    p.add_argument("--nospill", action="store_true", help="also render greenscreen_nospill/ (the green-screen "
                   "pass without the green floor and backdrop: the keyer's colour truth; bench/keyer_spill.py)")
    p.add_argument("--gs-samples", type=int, default=None, help="samples for the green-screen pass (default: 2 x --samples; it is ~8x cheaper)")
    p.add_argument("--threads", type=int, default=0, help="render threads (0 = all cores)")
    p.add_argument("--hdri", default=None, help="force an HDRI (stem like forest_slope or a path; an LDR photo such as ../shared/data/backgrounds/photos/*.jpg works too, lit by a sun at its brightest pixel); default: chosen from the seed")
    p.add_argument("--hdri-dir", type=Path, default=Path(blender_scene.DEFAULT_HDRI_DIR))
    p.add_argument("--world", choices=("hdri", "sky"), default="hdri",
                   help="hdri (default): an HDRI of --hdri-dir + matching sun, HDRI-projected ground; sky: a procedural Nishita "
                   "sky + its sun, procedural ground and distant blocks, no HDRI (shot ids end in _sky)")
    p.add_argument("--blender", default=None, help="Blender executable (default: blender on PATH)")
    p.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="existing shot whose format is checked against")
    p.add_argument("--no-check", action="store_true", help="skip the format/value check after rendering")
    p.add_argument("--check-only", action="store_true", help="only check the shots already in --out")
    p.add_argument("--values-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--shot", action="append", default=[], help=argparse.SUPPRESS)
    p.add_argument("--keep-going", action="store_true", help="continue after a failed shot")
    a = p.parse_args(argv)

    if a.list:
        w = max(map(len, blender_scene.VARIANTS))
        for name, desc in blender_scene.VARIANTS.items():
            print(f"{name:<{w}}  {desc}")
        return 0
    if a.out is None:
        p.error("--out DIR is required")
    out = a.out.resolve()
    if a.values_only:
        ok = True
        for sid in a.shot:
            notes = value_check(out / sid)
            for n in notes:
                print(f"[values] {sid}: {n}")
            ok &= not any(n.startswith("FAIL") for n in notes)
        return 0 if ok else 1
    if a.check_only:
        if not out.is_dir():
            p.error(f"--out {out} does not exist")
        sids = sorted(d.name for d in out.iterdir() if (d / "shot.json").is_file())
        return 0 if run_checks(out, sids, a.reference, "on") else 1

    variants = [v for item in a.variant for v in item.split(",") if v]
    if a.all:
        variants = list(blender_scene.VARIANTS)
    if not variants:
        p.error("give --variant NAME (see --list) or --all")
    unknown = [v for v in variants if v not in blender_scene.VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; see --list")
    if a.world == "sky" and a.hdri:
        p.error(f"--hdri {a.hdri!r} with --world sky: the procedural sky uses no HDRI; drop one of them")

    exe = find_blender(a.blender)
    print(f"[blender_shots] {blender_version(exe)} ({exe}); output {out}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    t_all = time.time()
    seeds = [a.seed]
    if a.seeds:
        lo, _, hi = a.seeds.partition("-")
        if not (lo.isdigit() and hi.isdigit() and int(lo) <= int(hi)):
            p.error(f"--seeds {a.seeds!r}: give A-B with A <= B, e.g. 0-19")
        seeds = list(range(int(lo), int(hi) + 1))
    for seed in seeds:
        for v in variants:
            hdri = resolve_hdri(a.hdri, v, seed, a.hdri_dir) if a.world == "hdri" else None
            sid, dt, ok = render_shot(exe, out, v, seed, hdri, a)
            results.append((sid, v, dt, ok))
            if ok and a.split:
                meta_file = out / sid / "shot.json"
                meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "split": a.split}, indent=1))
            if not ok and not a.keep_going:
                break
        if results and not results[-1][3] and not a.keep_going:
            break
    total = time.time() - t_all
    print("\n[blender_shots] per-shot timings:")
    for sid, v, dt, ok in results:
        extra = ""
        meta = out / sid / "shot.json"
        if ok and meta.is_file():
            tm = json.loads(meta.read_text())["render"]["timings"]
            extra = "  (" + ", ".join(f"{k} {x['per_frame']:.2f} s/frame" for k, x in tm.items()) + ")"
        print(f"  {sid:<50} {dt:7.1f} s  {'ok' if ok else 'FAILED'}{extra}")
    print(f"  total {total:.1f} s for {len(results)} shot(s)")
    good = [sid for sid, _, _, ok in results if ok]
    ok_all = all(ok for *_, ok in results) and len(results) == len(variants) * len(seeds)
    if good and not a.no_check:
        if a.reference.is_dir():
            ok_all &= run_checks(out, good, a.reference, "on")
        else:
            print(f"[check] skipped: reference {a.reference} not found")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
