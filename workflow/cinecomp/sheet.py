"""The shot sheet: load, validate (every problem at once), and describe each shot.

A sheet is a CSV, one row per shot (columns in README "Shot sheet"). ``load_sheet`` checks the JSON
schema (schemas/shots.schema.yaml) row by row and then what a schema cannot: unique ids, ids and paths
safe as file names and shell words, files that exist, frame ranges inside the plate, readable
resolutions, known colourspaces and valid per-shot key parameters. All problems are collected and
raised together as one ``SheetError``, each naming the row/shot and the fix.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from pathlib import Path

import jsonschema
import pandas as pd
import yaml

from . import colour, frames
from .errors import PlateError, SheetError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "shots.schema.yaml"
INT_COLUMNS = ("first_frame", "last_frame", "version")
FLOAT_COLUMNS = ("fps",)
# Characters that would change the meaning of a shell word or a Snakemake wildcard.
UNSAFE_PATH_CHARS = set(";|&$`<>\"'\\!*?(){}[]\n\r\t,")


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _where(row_no: int, shot: str | None) -> str:
    return f"row {row_no}" + (f" (shot {shot})" if shot else "")


def check_path(value: str) -> str | None:
    """None if a sheet path is safe, else what is wrong with it."""
    bad = sorted({c for c in value if c in UNSAFE_PATH_CHARS})
    if bad:
        return f"contains unsafe character(s) {''.join(bad)!r}"
    if ".." in Path(value).parts:
        return "contains a '..' component"
    return None


def resolve(value: str, base_dir: Path) -> Path:
    p = Path(value)
    return p if p.is_absolute() else base_dir / p


def read_table(path: Path) -> pd.DataFrame:
    """The sheet as strings (no NaN: empty cells are ''), comment lines starting with '#' skipped."""
    if not path.is_file():
        raise SheetError(path, [f"shot sheet {path} does not exist (fix: create it or pass --config shots=PATH)"])
    text = path.read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise SheetError(path, ["the sheet is empty (fix: add a header line and one row per shot; see README)"])
    from io import StringIO

    try:
        df = pd.read_csv(StringIO("\n".join(lines)), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, ValueError) as exc:
        raise SheetError(path, [f"not a readable CSV ({exc}) (fix: one header line, comma-separated rows)"]) from exc
    df.columns = [c.strip() for c in df.columns]
    return df.apply(lambda col: col.str.strip())


def load_sheet(path, *, base_dir=None, movie_start: int = 1001, check_files: bool = True,
               composite_default: str = "over") -> pd.DataFrame:
    """Validate the sheet and return it indexed by shot id, typed, with defaults filled.

    Relative paths in the sheet are relative to ``base_dir`` (default: the current directory, i.e.
    where snakemake runs). Adds columns ``plate_path``, ``env_path`` (absolute), ``plate_kind``,
    ``env_kind``, ``width``, ``height`` (conformed resolution). ``composite_default`` is the config's
    ``backends.composite``: a shot may leave out the environment only if it composites with ``diffusion``.
    """
    path = Path(path)
    base_dir = Path(base_dir) if base_dir else Path.cwd()
    df = read_table(path)
    schema = load_schema()
    problems: list[str] = []

    missing = [c for c in schema["required"] if c not in df.columns]
    if missing:
        raise SheetError(path, [f"missing column(s) {', '.join(missing)} (fix: add them to the header line; see README)"])
    unknown = [c for c in df.columns if c not in schema["properties"]]
    if unknown:
        problems.append(f"unknown column(s) {', '.join(unknown)} (fix: remove or rename; known: {', '.join(schema['properties'])})")
    if df.empty:
        raise SheetError(path, ["the sheet has a header but no shots (fix: add one row per shot)"])
    for col, spec in schema["properties"].items():
        if col not in df.columns:
            df[col] = spec.get("default", "")

    validator = jsonschema.Draft202012Validator(schema)
    rows = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(df.to_dict("records"), start=2):  # row 1 is the header
        shot = raw.get("shot") or None
        where = _where(i, shot)
        row: dict = dict(raw)
        for col in INT_COLUMNS:
            try:
                row[col] = int(raw[col])
            except (TypeError, ValueError):
                problems.append(f"{where}: {col} {raw[col]!r} is not a whole number (fix: e.g. 1001)")
                row[col] = None
        for col in FLOAT_COLUMNS:
            try:
                row[col] = float(raw[col])
            except (TypeError, ValueError):
                problems.append(f"{where}: {col} {raw[col]!r} is not a number (fix: e.g. 24 or 23.976)")
                row[col] = None
        typed = {k: v for k, v in row.items() if v is not None}
        for err in validator.iter_errors(typed):
            col = err.path[0] if err.path else None
            if col == "shot" and err.validator == "pattern":
                problems.append(f"{where}: shot id {raw['shot']!r} is not safe as a file name and shell word "
                                "(fix: use only letters, digits, '_' and '-', at most 64 characters)")
            elif col:
                problems.append(f"{where}: {col} {err.instance!r}: {err.message} (fix: see README 'Shot sheet')")
            else:
                problems.append(f"{where}: {err.message}")
        if shot:
            if shot in seen:
                problems.append(f"{where}: duplicate shot id {shot!r} (also on row {seen[shot]}) (fix: make ids unique)")
            else:
                seen[shot] = i
        rows.append((i, row))

    for i, row in rows:
        where = _where(i, row.get("shot"))
        for col in ("plate", "environment", "reference", "light_probe"):
            msg = check_path(row[col]) if row[col] else None
            if msg:
                problems.append(f"{where}: {col} path {row[col]!r} {msg} (fix: use a plain path without it)")
                row["_unsafe"] = True
        problems.extend(f"{where}: {m}" for m in _check_backend_needs(row, composite_default))
        problems.extend(f"{where}: {m}" for m in _check_json_cells(row))
        for col in ("plate_colourspace", "env_colourspace", "reference_colourspace", "light_probe_colourspace"):
            if row[col]:
                msg = colour.check_colourspace(row[col])
                if msg:
                    problems.append(f"{where}: {col}: {msg}")
        if row["key_params"]:
            problems.extend(f"{where}: key_params: {m}" for m in _check_key_params(row["key_params"]))
        if row.get("first_frame") is not None and row.get("last_frame") is not None and row["first_frame"] > row["last_frame"]:
            problems.append(f"{where}: first_frame {row['first_frame']} is after last_frame {row['last_frame']} (fix: swap them)")
        if check_files and not row.get("_unsafe") and row["plate"]:
            problems.extend(f"{where}: {m}" for m in _check_media(row, base_dir, movie_start))

    if problems:
        raise SheetError(path, problems)

    out = pd.DataFrame([r for _, r in rows]).drop(columns=["_unsafe", "_prop_hint"], errors="ignore")
    # Paths stay as the sheet wrote them (relative ones relative to the run directory), so moving a
    # show directory does not make every shot look changed to Snakemake.
    out["plate_path"] = [str(Path(p)) for p in out["plate"]]
    out["env_path"] = [str(Path(p)) if p else "" for p in out["environment"]]
    out["reference_role"] = [r["reference_role"] or ("" if not r["reference"] else "prop" if r["environment"]
                                                     else "environment") for r in out.to_dict("records")]
    return out.set_index("shot", drop=False)


def _check_backend_needs(row: dict, composite_default: str) -> list[str]:
    """Environment and reference columns that only make sense with the diffusion backend."""
    diffusion = (row.get("composite_backend") or composite_default) == "diffusion"
    out = []
    if not row["environment"] and not diffusion:
        out.append("environment is empty; only the diffusion composite backend can synthesise one "
                   "(fix: give an environment plate, or set composite_backend to diffusion)")
    if row["environment"] and not row["env_colourspace"]:
        out.append("env_colourspace is empty (fix: name the environment's OCIO colourspace, e.g. ACEScg)")
    if row["reference"]:
        if not diffusion:
            out.append("a reference image is only used by the diffusion composite backend "
                       "(fix: set composite_backend to diffusion, or clear reference)")
        if not row["reference_colourspace"]:
            out.append("reference_colourspace is empty (fix: name the reference image's OCIO colourspace, "
                       "e.g. srgb_tx for a JPG/PNG)")
    elif row["reference_role"]:
        out.append("reference_role is set but reference is empty (fix: give the reference image or clear the role)")
    return out


def _check_json_cells(row: dict) -> list[str]:
    """camera, light, harmonize_params, prop_hint and the probe rotation: parsed and range-checked.
    Parsed values are kept in the row (``_prop_hint``) for the media checks."""
    from .camera import parse_camera
    from .harmonize import parse_harmonize_params
    from .light import parse_light
    from .masks import parse_prop_hint

    out = []
    for col, parse in (("camera", parse_camera), ("light", parse_light), ("harmonize_params", parse_harmonize_params),
                       ("prop_hint", parse_prop_hint)):
        try:
            value = parse(row[col]) if row[col] else None
        except ValueError as exc:
            msg = str(exc)
            out.append(msg if msg.startswith(col) else f"{col}: {msg}")
            value = None
        if col == "prop_hint":
            row["_prop_hint"] = value
    rot = row["light_probe_rotation_deg"]
    if rot:
        try:
            ok = math.isfinite(float(rot)) and -360 <= float(rot) <= 360
        except ValueError:
            ok = False
        if not ok:
            out.append(f"light_probe_rotation_deg {rot!r} must be a number of degrees in [-360, 360] (fix: e.g. 90)")
    if rot and not row["light_probe"]:
        out.append("light_probe_rotation_deg is set but light_probe is empty (fix: give the probe or clear the rotation)")
    if row["light_probe"] and row["light_probe_colourspace"] == "" and not row["light_probe"].lower().endswith((".hdr", ".exr")):
        out.append("light_probe_colourspace is empty and the probe is not .hdr/.exr "
                   "(fix: name its OCIO colourspace, e.g. 'Linear Rec.709 (sRGB)')")
    return out


def _check_key_params(text: str) -> list[str]:
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"{text!r} is not valid JSON ({exc.msg}) (fix: e.g. {{\"clip_black\": 0.05}})"]
    if not isinstance(params, dict):
        return [f"{text!r} must be a JSON object (fix: e.g. {{\"clip_black\": 0.05}})"]
    try:
        from .keying import KeyParams

        KeyParams.from_dict(params)
    except (TypeError, ValueError) as exc:
        return [f"{exc} (fix: use the parameters listed in README 'Keying')"]
    return []


@lru_cache(maxsize=4096)
def _probe_cached(path: str, part, view, movie_start: int, stamp):
    from .plates import probe

    return probe(path, part=part, view=view, movie_start=movie_start)


def probe(path: Path, *, part=None, view=None, movie_start: int = 1001):
    """plates.probe, cached per file and directory state: shots sharing plates are probed once."""
    try:
        st = path.parent.stat()
        stamp = (st.st_mtime_ns, path.stat().st_mtime_ns if path.exists() else None)
    except OSError:
        stamp = None
    return _probe_cached(str(path), part, view, movie_start, stamp)


def _check_media(row: dict, base_dir: Path, movie_start: int) -> list[str]:
    """Plate and environment exist, the frame range is inside the plate, resolutions are readable."""
    out = []
    first, last = row.get("first_frame"), row.get("last_frame")
    part = row.get("plate_part") or None
    view = row.get("plate_view") or None
    plate = resolve(row["plate"], base_dir)
    try:
        info = probe(plate, part=part, view=view, movie_start=movie_start)
    except PlateError as exc:
        out.append(f"plate: {exc}")
        info = None
    if info is not None:
        row["plate_kind"], row["plate_width"], row["plate_height"] = info.kind, info.width, info.height
        if info.kind in ("still", "hdri"):
            out.append(f"plate {plate} is a single image, not a sequence or movie "
                       "(fix: give a pattern like plate.####.exr or a movie file)")
        elif first is not None and last is not None and first <= last:
            have = set(info.frames)
            lacking = [f for f in range(first, last + 1) if f not in have]
            if lacking:
                span = f"{info.frames[0]}-{info.frames[-1]}" if info.frames else "none"
                out.append(f"plate {plate}: frames {frames.frame_ranges(lacking)} of {first}-{last} are missing (plate has {span}; "
                           "fix: correct first_frame/last_frame or render the missing frames)")
    if row.get("reference") and not row.get("_unsafe"):
        ref = resolve(row["reference"], base_dir)
        try:
            rinfo = probe(ref, movie_start=movie_start)
            if rinfo.kind != "still":
                out.append(f"reference {ref} is a {rinfo.kind}, not a single image (fix: give one PNG/JPG/EXR)")
        except PlateError as exc:
            out.append(f"reference: {exc}")
    einfo = None
    if row["environment"]:
        env = resolve(row["environment"], base_dir)
        try:
            einfo = probe(env, movie_start=movie_start)
        except PlateError as exc:
            out.append(f"environment: {exc}")
    if einfo is not None:
        row["env_kind"] = einfo.kind
        if einfo.kind not in ("still", "hdri") and first is not None and last is not None and first <= last:
            have = set(einfo.frames)
            lacking = [f for f in range(first, last + 1) if f not in have]
            if lacking:
                out.append(f"environment {env}: frames {frames.frame_ranges(lacking)} of {first}-{last} are missing "
                           "(fix: extend the environment sequence or use a still image)")
    if row.get("light_probe") and not row.get("_unsafe"):
        out.extend(_check_probe(resolve(row["light_probe"], base_dir), movie_start))
    if row.get("_prop_hint") and info is not None and first is not None and last is not None:
        from .masks import check_prop_hint

        out.extend(m if m.startswith("prop_hint") else f"prop_hint: {m}" for m in check_prop_hint(
            row["_prop_hint"], first=first, last=last, plate_width=info.width, plate_height=info.height,
            base_dir=base_dir))
    res = row.get("resolution") or ""
    if res:
        w, h = (int(v) for v in res.split("x"))
    elif info is not None:
        w, h = info.width, info.height
    else:
        w = h = None
    row["width"], row["height"] = w, h
    return out


def _check_probe(path: Path, movie_start: int) -> list[str]:
    """A light probe is one equirectangular image: width twice its height."""
    try:
        pinfo = probe(path, movie_start=movie_start)
    except PlateError as exc:
        return [f"light_probe: {exc}"]
    if pinfo.kind not in ("still", "hdri"):
        return [f"light_probe {path} is a {pinfo.kind}, not one image (fix: give one equirectangular .hdr/.exr)"]
    if abs(pinfo.width - 2 * pinfo.height) > 1:
        return [f"light_probe {path} is {pinfo.width}x{pinfo.height}, not equirectangular (2:1) "
                "(fix: give a latitude-longitude panorama twice as wide as high)"]
    return []


def frame_files(row, movie_start: int = 1001) -> list[str]:
    """The plate files a shot reads (one movie, or one file per frame of a sequence)."""
    p = row["plate_path"]
    if frames.is_movie(p) or not frames.is_sequence(p):
        return [p]
    return [str(f) for f in frames.sequence_files(p, row["first_frame"], row["last_frame"])]


def env_files(row) -> list[str]:
    p = row["env_path"]
    if not p:
        return []
    if frames.is_movie(p) or not frames.is_sequence(p):
        return [p]
    return [str(f) for f in frames.sequence_files(p, row["first_frame"], row["last_frame"])]
