"""What the test modules share: the checkout's paths, the tiny demo shots and their sheet, running
Snakemake and the `cinecomp` command on a run directory, and reading what a run wrote.

The fixtures built from these live in conftest.py; test modules import from here (never from each
other). tests/slurm/load_test.py, a script, imports this module too.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))  # this checkout's cinecomp, first

import numpy as np  # noqa: E402

from cinecomp.layout import REPO, SHARED_DATA  # noqa: E402,F401 (the checkout's root and its sample data)

# The shot sheet's required columns; each test's sheet adds the optional ones it needs.
SHEET_COLUMNS = "shot,plate,plate_colourspace,first_frame,last_frame,fps,environment,env_colourspace,version"
HEADER = SHEET_COLUMNS + ",key_params"  # the tiny demo's sheet
TINY = [  # shot, plate format, environment kind: the tiny demo shots
    ("sa", "exr", "sequence"),
    ("sb", "png", "image"),
    ("sc", "mp4", "sequence"),
]
FIRST, LAST = 1001, 1005
TINY_SIZE = (48, 28)
HAS_MATANYONE = any(importlib.util.find_spec(m) for m in ("matanyone2", "matanyone"))
NO_MATANYONE = "MatAnyone is not installed (pip install --no-deps matanyone2-runtime==0.2.0; `make venv` does)"


# ------------------------------------------------------------------------------------------------
# The tiny demo shots and their sheet
# ------------------------------------------------------------------------------------------------


def sheet_row(shot: str, fmt: str, env: str, version: int = 1) -> str:
    """A sheet row (HEADER's columns, key_params empty) for a demo shot made by :func:`make_tiny_shot`."""
    plate = {"exr": f"demo/{shot}/plate/{shot}_plate.####.exr", "png": f"demo/{shot}/plate/{shot}_plate.####.png",
             "mp4": f"demo/{shot}/plate/{shot}_plate.mp4"}[fmt]
    pcs = "ACEScg" if fmt == "exr" else "srgb_tx"
    envp, ecs = ((f"demo/{shot}/env/{shot}_env.####.exr", "ACEScg") if env == "sequence"
                 else (f"demo/{shot}/env/{shot}_env.jpg", "srgb_tx"))
    return f"{shot},{plate},{pcs},{FIRST},{LAST},24,{envp},{ecs},{version},"


def sheet_rows(versions: dict | None = None) -> list[str]:
    """The tiny demo's rows, each shot at version 1 unless ``versions`` says otherwise."""
    return [sheet_row(shot, fmt, env, (versions or {}).get(shot, 1)) for shot, fmt, env in TINY]


def write_sheet(root: Path, rows: list[str], header: str = HEADER) -> None:
    (root / "shots.csv").write_text("\n".join([header, *rows]) + "\n")


def make_tiny_shot(root: Path, shot: str, fmt: str = "exr", env: str = "sequence") -> None:
    """A tiny demo shot (TINY_SIZE, FIRST-LAST) under ``root/demo``."""
    from cinecomp.synth.renderer import make_demo_shot

    make_demo_shot(root / "demo", shot, *TINY_SIZE, FIRST, LAST, plate_format=fmt, env_kind=env)


def make_tiny_demo(root: Path, shots=TINY) -> Path:
    """The tiny demo shots and their sheet in ``root``."""
    for shot, fmt, env in shots:
        make_tiny_shot(root, shot, fmt, env)
    write_sheet(root, [sheet_row(*s) for s in shots])
    return root


def prop_box(mask: np.ndarray, margin: int = 0) -> list[int]:
    """[x0, y0, x1, y1] (x1, y1 exclusive) around ``mask > 0.5``, ``margin`` pixels wider on each side."""
    ys, xs = np.nonzero(mask > 0.5)
    return [int(xs.min()) - margin, int(ys.min()) - margin, int(xs.max()) + 1 + margin, int(ys.max()) + 1 + margin]


def prop_hint_cell(root: Path, shot: str, frame: int, margin: int = 0) -> str:
    """The sheet's prop_hint cell: a box around the demo shot's true prop on ``frame``."""
    from cinecomp.io import exr as exrio

    prop = exrio.read_layers(root / "demo" / shot / "truth" / f"{shot}_truth.{frame:04d}.exr")["mask.prop"]
    return '"{}:{},{},{},{}"'.format(frame, *prop_box(prop, margin))


def keyed_push_shot(root: Path, w: int, h: int, first: int, last: int, version: int | None) -> dict:
    """The demo shot sh010 with its box pushed ~15 px (``sh``), keyed by the chroma keyer: frames, the
    key files as (frame, path), the plates and the true layers per frame."""
    from cinecomp.frames import frame_path
    from cinecomp.io import exr as exrio
    from cinecomp.perception.key import key_shot
    from cinecomp.synth import renderer as demo

    scene = dataclasses.replace(demo.SHOT_SCENES["sh010"], push_speed=0.12)
    demo.make_demo_shot(root, "sh", w, h, first, last, scene=scene)
    frames = list(range(first, last + 1))
    keys = [frame_path(root / "key", "sh", "key", version, f) for f in frames]
    plates = [root / "sh" / "plate" / f"sh_plate.{f:04d}.exr" for f in frames]
    key_shot(plates, keys, {}, attrs={"shot": "sh"})
    truth = {f: exrio.read_layers(root / "sh" / "truth" / f"sh_truth.{f:04d}.exr") for f in frames}
    return {"root": root, "frames": frames, "keys": list(zip(frames, keys)), "plates": plates, "truth": truth}


def check_trimask(keys: list, layers: dict) -> None:
    """Every frame's tri-mask: float32, summing to 1, character + prop = the key's alpha."""
    from cinecomp.composite.assemble import MASK_LAYERS
    from cinecomp.io import exr as exrio

    for f, key in keys:
        m = layers[f]
        alpha = exrio.read_layers(key)["A"].astype(np.float32)
        assert all(m[n].dtype == np.float32 for n in MASK_LAYERS)
        np.testing.assert_allclose(sum(m[n] for n in MASK_LAYERS), 1.0, atol=1e-5)
        np.testing.assert_allclose(m["mask.character"] + m["mask.prop"], alpha, atol=1e-5)  # masks agree with alpha
        assert m["mask.prop"].min() >= 0 and m["mask.character"].min() >= -1e-6


# ------------------------------------------------------------------------------------------------
# Plates that are screens and plates that are not (ACEScg)
# ------------------------------------------------------------------------------------------------


def grass_photo(h: int = 54, w: int = 96, seed: int = 0) -> np.ndarray:
    """(H, W, 3) a garden photo, no screen: textured green grass (blades of every brightness) on the
    lower 60%, a warm textured hedge and wall above. ~55% of it passes the old "strongly green" test."""
    rng = np.random.default_rng(seed)
    img = np.asarray((0.3, 0.2, 0.12), np.float32) * rng.uniform(0.4, 1.2, (h, w, 1)).astype(np.float32)
    blades = rng.uniform(0.25, 1.4, (1, w, 1)) * rng.uniform(0.6, 1.2, (h, w, 1))  # vertical blades
    grass = np.asarray((0.06, 0.3, 0.04), np.float32) * blades * (1 + rng.normal(0, 0.15, (h, w, 3)))
    img[int(0.4 * h):] = grass[int(0.4 * h):]
    return np.clip(img, 0.0, None).astype(np.float32)


def muted_screen(h: int = 72, w: int = 128, noise: float = 0.004, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) a muted, low-saturation green screen (0.22/0.27/0.22 ACEScg, 15% darker in the corners,
    pixel noise) behind a figure: a near-white shirt, a skin head with dark eyes; and its true matte
    (the figure's hard shape; the plate's edge is softened by 0.7 px)."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    fall = 1.0 - 0.15 * (((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) / 0.5)
    bg = np.asarray((0.22, 0.27, 0.22), np.float32) * fall[..., None]
    cx = 0.5 * w
    shirt = (np.abs(xx - cx) < 0.22 * w) & (yy > 0.55 * h)
    head = np.hypot((xx - cx) / (0.11 * w), (yy - 0.38 * h) / (0.2 * h)) < 1
    eyes = np.hypot(np.abs(xx - cx) - 0.04 * w, yy - 0.35 * h) < 0.025 * w
    fg = bg.copy()
    fg[shirt] = (0.8, 0.808, 0.8)
    fg[head] = (0.5, 0.34, 0.27)
    fg[head & eyes] = (0.03, 0.03, 0.03)
    alpha = (shirt | head).astype(np.float32)
    soft = cv2.GaussianBlur(alpha, (0, 0), 0.7)[..., None]
    plate = fg * soft + bg * (1 - soft) + rng.normal(0, noise, (h, w, 3))
    return np.clip(plate, 0.0, None).astype(np.float32), alpha


# ------------------------------------------------------------------------------------------------
# Running the workflow and the command
# ------------------------------------------------------------------------------------------------


def snakemake_command(root: Path, *args, configs=(), cores: int = 2) -> list[str]:
    """Snakemake on this checkout's Snakefile and config.yaml (+ ``configs``, files in ``root``) in ``root``."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile",
            str(REPO / "config.yaml"), *[str(root / c) for c in configs], "--directory", str(root), "--cores",
            str(cores), "--config", "shots=shots.csv", *args]


def snakemake(root: Path, *args, configs=(), timeout=900, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_command(root, *args, configs=configs), capture_output=True, text=True,
                          timeout=timeout, **kw)


def planned_jobs(root: Path, *args, configs=()) -> set[tuple[str, str]]:
    """(rule, shot) of every job a dry run would run."""
    r = snakemake(root, "--dry-run", *args, configs=configs)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    return {(m.group(1), m.group(2)) for m in re.finditer(
        r"^(?:localrule|rule) (\w+):\n(?:.*\n)*?\s+wildcards: shot=([\w-]+)", out, re.M)}


def cinecomp(root: Path, *args, timeout=900) -> subprocess.CompletedProcess:
    """`cinecomp ARGS` (this checkout's) run in ``root``."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    return subprocess.run([sys.executable, "-m", "cinecomp.cli.main", *args], cwd=root, capture_output=True,
                          text=True, timeout=timeout, env=env)


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of a run directory (sheet, media, results and Snakemake's records) to change."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


# ------------------------------------------------------------------------------------------------
# What a run wrote
# ------------------------------------------------------------------------------------------------


def comp_files(root: Path, shot: str, version: int = 1) -> list[Path]:
    return sorted((root / "results" / shot / f"v{version:03d}" / "comp").glob(f"{shot}_comp_v*.exr"))


def review_files(root: Path, shot: str, version: int = 1) -> list[Path]:
    d = root / "results" / shot / f"v{version:03d}" / "review"
    return [d / f"{shot}_v{version:03d}_daily.mp4", d / f"{shot}_v{version:03d}_contact.png"]


def exr_pixels(path: Path) -> dict:
    """Every channel of an EXR as read by OpenEXR itself."""
    import OpenEXR

    with OpenEXR.File(str(path), separate_channels=True) as f:
        return {k: np.array(v.pixels) for k, v in f.channels().items()}
