"""Path-traced eval shots (Blender/Cycles, a renderer that shares none of harmonize's assumptions):
the judge of picture quality. Reads a folder of shots in the format of ``../shared/data/pathtraced``
(per shot ``greenscreen/ alpha/ groundtruth/ environment/ depth/ masks/`` and ``shot.json``; its
README) and lays them out as eval-set entries like the SDF set's (plate/, env/, truth/ EXRs in
ACEScg), so the same sheet, workflow run and scoring serve both.

The tune/report split and the folder format: io.pathtraced.

Every mode runs on the ``plate`` depth backend when the shot has its environment's Z (``depth/``), as a
TD with a CG environment would: in ``auto`` and ``probe`` that Z, with the actors' size, is where the
camera comes from.

``given`` light: the sheet's camera (height, tilt, roll, focal length) from the Blender camera, and
the key direction and softness from the sun/lamp; nothing else (intensity, colour, fill are left to
the light stage, as a TD with a survey of the set would know only where the sun is).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..io import exr as exrio
from ..io.pathtraced import (PATHTRACED, REPORT, SRGB, TUNE, PathtracedError, camera_of, environment_depth, find_shots,  # noqa: F401
                             frame_path as _frame, hdri_of, key_of, read_png as _read_png, split_of,
                             srgb_to_working as _srgb_to_working)

CONVERT_VERSION = 2  # bump when the conversion changes: converted shots are made again


def convert_shot(shot: Path, set_dir: Path) -> dict:
    """Write plate/, env/ (with depth.Z), truth/ (with alpha.A and the masks) EXRs of one shot under
    ``set_dir/<shot>`` (kept when already converted) and return its eval-set entry."""
    meta = json.loads((shot / "shot.json").read_text())
    name = shot.name
    first, last = int(meta["frame_start"]), int(meta["frame_end"])
    out = set_dir / name
    stamp = out / "converted.json"
    want = {"version": CONVERT_VERSION, "source": str(shot.resolve()),
            "mtime": max(p.stat().st_mtime for p in shot.rglob("*") if p.is_file())}
    if not (stamp.is_file() and json.loads(stamp.read_text()) == want):
        for f in range(first, last + 1):
            plate = _read_png(_frame(shot, "greenscreen", f))
            alpha = _read_png(_frame(shot, "alpha", f))
            alpha = alpha[..., 0] if alpha.ndim == 3 else alpha
            exrio.write_rgba(out / "plate" / f"{name}_plate.{f:04d}.exr",
                             np.dstack([_srgb_to_working(plate), np.ones_like(alpha)]))
            env = _srgb_to_working(_read_png(_frame(shot, "environment", f)))
            channels = {"R": env[..., 0], "G": env[..., 1], "B": env[..., 2], "A": np.ones_like(alpha)}
            depth_file = _frame(shot, "depth", f)
            if depth_file.is_file():
                # the environment's Z: depth/ is the truth render's, with the actors in it
                channels["depth.Z"] = np.minimum(environment_depth(shot, f), 1.0e4)
            exrio.write_exr(out / "env" / f"{name}_env.{f:04d}.exr",
                            {**exrio.half_channels({k: v for k, v in channels.items() if len(k) == 1}, {"shot": name, "frame": f}),
                             **{k: v.astype(np.float32) for k, v in channels.items() if len(k) != 1}})
            truth = _srgb_to_working(_read_png(_frame(shot, "groundtruth", f)))
            masks = _read_png(_frame(shot, "masks", f))
            exrio.write_exr(out / "truth" / f"{name}_truth.{f:04d}.exr",
                            {"R": truth[..., 0], "G": truth[..., 1], "B": truth[..., 2], "alpha.A": alpha.astype(np.float32),
                             "mask.character": (masks[..., 0] > 0.5).astype(np.float32),
                             "mask.prop": (masks[..., 1] > 0.5).astype(np.float32)})
        stamp.write_text(json.dumps(want))
    w, h = meta["resolution"]
    return {
        "shot": name, "split": split_of(name, meta), "description": f"path-traced: {meta.get('hdri', {}).get('file', '')}",
        "conditions": {"renderer": "cycles"}, "width": int(w), "height": int(h), "first": first, "last": last,
        "fps": float(meta.get("fps", 24)),
        "plate": f"{name}/plate/{name}_plate.####.exr", "plate_colourspace": "ACEScg",
        "environment": f"{name}/env/{name}_env.####.exr", "env_colourspace": "ACEScg",
        "truth": f"{name}/truth/{name}_truth.####.exr",
        "camera": camera_of(meta), "light": key_of(meta), "prop_hint": prop_hint(out, name, first, last),
        "source": "pathtraced", "probe": hdri_of(shot, meta),
        # the environment carries its Z (depth.Z): the shots run on the plate depth backend, whose Z
        # also gives the camera when the sheet leaves it empty (perception.camera_estimate)
        "env_depth": _frame(shot, "depth", first).is_file(),
    }


def prop_hint(out: Path, name: str, first: int, last: int) -> str:
    """The sheet's prop_hint (frame:x0,y0,x1,y1) of the prop's box on the middle frame, as a TD would
    draw it ('' when no prop is in view there)."""
    mid = first + (last - first) // 2
    m = exrio.read_layers(out / "truth" / f"{name}_truth.{mid:04d}.exr")["mask.prop"] > 0.5
    if not m.any():
        return ""
    ys, xs = np.nonzero(m)
    return f"{mid}:{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}"


def make_pathtraced_set(out_dir, root=None, split: str = "report", shots=None) -> list[dict]:
    """Entries of the path-traced shots of ``split`` (or the named ``shots``), converted under ``out_dir``."""
    found = find_shots(root)
    if not found:
        raise PathtracedError(f"no path-traced shots under {root or PATHTRACED} (fix: give --pathtraced DIR, "
                              "or make some with bench/blender_shots.py)")
    out_dir = Path(out_dir)
    entries = []
    for shot in found:
        meta = json.loads((shot / "shot.json").read_text())
        if shots and shot.name not in shots:
            continue
        if not shots and split != "all" and split_of(shot.name, meta) != split:
            continue
        entries.append(convert_shot(shot, out_dir))
    if shots:
        unknown = set(shots) - {e["shot"] for e in entries}
        if unknown:
            raise PathtracedError(f"unknown path-traced shot(s) {', '.join(sorted(unknown))} under {root or PATHTRACED}")
    return entries
