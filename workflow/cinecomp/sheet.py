"""The shot sheet: load, validate (every problem at once), and describe each shot.

A sheet is a UTF-8 CSV, one row per shot (columns in docs/shot-sheet.md). ``load_sheet`` checks the
JSON schema (schemas/shots.schema.yaml) row by row and then what a schema cannot: unique ids, ids and
paths safe as file names and shell words, files that exist, frame ranges inside the plate, readable
resolutions, known colourspaces and valid per-shot key parameters. Numbers a TD types (frames, fps,
resolution, key_params) are parsed and bounded here, before the schema, so a bad one is one clear
problem. All problems are collected and raised together as one ``SheetError``, each naming the row
(the line of the sheet where the row starts), the shot, the column and the fix.
"""

from __future__ import annotations

import csv
import io
import math
import re
from bisect import bisect_left
from functools import lru_cache
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import yaml

from . import colour, frames
from .errors import PlateError, SheetError
from .params import parse_json_object
from .layout import REPO

SCHEMA_PATH = REPO / "schemas" / "shots.schema.yaml"
# Bounds of the numbers a sheet gives (also in the schema and docs/shot-sheet.md).
FRAME_MIN, FRAME_MAX = 0, 9_999_999  # frame numbers
MAX_FRAMES = 100_000  # frames per shot (over an hour at 24 fps)
FPS_MIN, FPS_MAX = 1, 1000
RES_MIN, RES_MAX = 16, 16384  # conformed width and height, pixels (odd sizes are fine: dailies pad them)
MAX_JSON_DEPTH = 8  # key_params nesting (the deepest valid value, "screen": [r, g, b], is 2)
KEY_PARAMS_EXAMPLE = '{"clip_black": 0.05}'
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


# ------------------------------------------------------------------------------------------ reading the CSV
def _decode(path: Path, data: bytes) -> str:
    """UTF-8 text (a BOM is dropped). Anything else is refused, not guessed: a Latin-1 guess would
    misread a CP1252 or Mac sheet and its accented paths would silently not match the files."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SheetError(path, [
            f"the sheet is not UTF-8: byte 0x{data[exc.start]:02x} on line {line}, column {col} is not valid "
            "UTF-8 (fix: save the sheet as UTF-8, e.g. Excel's 'CSV UTF-8', or convert it with "
            "`iconv -f latin1 -t utf-8`)"]) from None


def _records(path: Path, text: str):
    """(line where the record starts, fields) of each CSV record. Blank lines and lines starting with
    '#' are skipped only where a record starts, never inside a quoted cell: a quoted multi-line prompt
    keeps all its lines. The csv module pulls the lines, so quoting follows its rules exactly."""
    lines = io.StringIO(text, newline="")  # splits at \n, \r\n and \r only, like csv
    state = {"line": 0, "start": None}

    def feed():
        for ln in lines:
            state["line"] += 1
            if state["start"] is None:  # between records
                if not ln.strip() or ln.lstrip().startswith("#"):
                    continue
                state["start"] = state["line"]
            yield ln

    reader = csv.reader(feed(), skipinitialspace=True, strict=True)
    while True:
        state["start"] = None
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            what, fix = ("a quoted cell that starts in it is never closed" if "end of data" in str(exc)
                         else f"it is not valid CSV ({exc})"), 'quote a cell as "...", a quote in it as ""'
            if "field limit" in str(exc):
                what, fix = f"a cell is longer than {csv.field_size_limit()} characters", "shorten it"
            raise SheetError(path, [f"row {state['start']}: {what}, so nothing after it can be read "
                                    f"(fix: {fix})"]) from None
        yield state["start"], fields


def read_table(path: Path) -> tuple[list[str], list[tuple[int, dict]], list[str]]:
    """The sheet's header, its rows as ``(row number, {column: stripped cell})`` and the problems of
    the table itself. A row's number is the line of the sheet where it starts (the header's is 1
    unless comments precede it). A row with more non-empty cells than the header is a problem (its
    cells would be shifted) and is left out; missing trailing cells are empty."""
    if not path.is_file():
        raise SheetError(path, [f"shot sheet {path} does not exist (fix: create it or pass --config shots=PATH)"])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SheetError(path, [f"cannot read the sheet ({exc.strerror}) (fix: check its permissions)"]) from None
    records = list(_records(path, _decode(path, data)))
    if not records:
        raise SheetError(path, ["the sheet is empty (fix: add a header line and one row per shot; see docs/shot-sheet.md)"])
    (header_line, header), records = records[0], records[1:]
    header = [h.strip() for h in header]
    while header and not header[-1]:  # a trailing comma on the header line
        header.pop()
    problems = [f"row {header_line}: column {i + 1} of the header has no name (fix: name it or delete it)"
                for i, h in enumerate(header) if not h]
    dups = sorted({h for h in header if h and header.count(h) > 1})
    if dups:
        problems.append(f"row {header_line}: column(s) {', '.join(dups)} appear more than once in the header "
                        "(fix: keep one of each)")
    rows = []
    for line, fields in records:
        cells = [f.strip() for f in fields]
        if not any(cells):  # a row of empty cells, as spreadsheets write them
            continue
        if any(cells[len(header):]):
            shot = cells[header.index("shot")] if "shot" in header else None
            problems.append(f"{_where(line, shot)}: {len(cells)} cells but the header has {len(header)} columns, "
                            "so its cells do not line up with the columns (fix: quote a cell that contains a "
                            'comma, e.g. "a, b", or delete the extra comma)')
            continue
        rows.append((line, {h: cells[i] if i < len(cells) else "" for i, h in enumerate(header)}))
    return header, rows, problems


# ------------------------------------------------------------------------------------------ typed cells
def _whole(text: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(f"{text!r} is not a whole number (fix: e.g. 1001)")
    if len(text.lstrip("+-").lstrip("0")) > 18:  # a range problem, not a format one (int() of 5000 digits fails)
        raise ValueError(f"{text[:24]!r}{'...' if len(text) > 24 else ''} is out of range, {len(text.lstrip('+-'))} "
                         "digits (fix: a small whole number, e.g. 1001 for a frame or 1 for a version)")
    return int(text)


def _frame(text: str) -> int:
    n = _whole(text)
    if not FRAME_MIN <= n <= FRAME_MAX:
        raise ValueError(f"{n} is outside {FRAME_MIN}..{FRAME_MAX} (fix: a frame number in that range, e.g. 1001)")
    return n


def _fps(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number (fix: e.g. 24 or 23.976)") from None
    if not (math.isfinite(v) and FPS_MIN <= v <= FPS_MAX):
        raise ValueError(f"{text!r} must be a finite number of frames per second in {FPS_MIN}..{FPS_MAX} "
                         "(fix: e.g. 24 or 23.976)")
    return v


def parse_resolution(text: str) -> tuple[int, int]:
    """'1920x1080' -> (1920, 1080); ValueError with the fix unless WIDTHxHEIGHT, both in RES_MIN..RES_MAX."""
    m = re.fullmatch(r"([0-9]{1,9})\s*([xX×*])\s*([0-9]{1,9})", text)
    if not m:
        raise ValueError(f"{text!r} is not WIDTHxHEIGHT (fix: e.g. 1920x1080, or empty for the plate's size)")
    w, h = int(m.group(1)), int(m.group(3))
    if m.group(0) != f"{m.group(1)}x{m.group(3)}":
        raise ValueError(f"{text!r} must be written WIDTHxHEIGHT with a lower-case x and no spaces (fix: {w}x{h})")
    if not (RES_MIN <= w <= RES_MAX and RES_MIN <= h <= RES_MAX):
        raise ValueError(f"{text!r}: width and height must each be {RES_MIN}..{RES_MAX} pixels "
                         "(fix: e.g. 1920x1080, or empty for the plate's size)")
    return w, h


# Cells parsed and bounded in Python, before the schema, so each bad one is one clear problem.
TYPED_CELLS = (("first_frame", _frame), ("last_frame", _frame), ("version", _whole), ("fps", _fps),
               ("resolution", parse_resolution))


def load_sheet(path, *, base_dir=None, movie_start: int = 1001, check_files: bool = True,
               composite_default: str = "over", depth_default: str = "ground",
               check_screens: bool = True) -> pd.DataFrame:
    """Validate the sheet and return it indexed by shot id, typed, with defaults filled.

    Relative paths in the sheet are relative to ``base_dir`` (default: the current directory, i.e.
    where snakemake runs). Adds columns ``plate_path``, ``env_path`` (absolute), ``plate_kind``,
    ``env_kind``, ``width``, ``height`` (conformed resolution). ``composite_default`` is the config's
    ``backends.composite``: a shot may leave out the environment only if it composites with ``diffusion``;
    ``depth_default`` is ``backends.depth`` (``plate`` needs an EXR environment with a Z channel).
    ``check_screens`` (with ``check_files``): the first frame of each plate must show a green or blue
    screen backdrop (``perception.key.shot_screen``), so a photo that is no screen stops here.
    """
    path = Path(path)
    base_dir = Path(base_dir) if base_dir else Path.cwd()
    header, table, problems = read_table(path)
    schema = load_schema()

    missing = [c for c in schema["required"] if c not in header]
    if missing:
        delim = next((d for d in (";", "\t", "|") if any(d in h for h in header)), None)
        if delim:  # a spreadsheet's "CSV" in a locale whose list separator is not the comma
            raise SheetError(path, problems + [
                f"the header is separated by {delim!r}, not commas, so no column can be found "
                "(fix: save the sheet as comma-separated CSV, e.g. Excel's 'CSV UTF-8 (Comma delimited)')"])
        raise SheetError(path, problems + [f"missing column(s) {', '.join(missing)} "
                                           "(fix: add them to the header line; see docs/shot-sheet.md)"])
    unknown = [c for c in header if c and c not in schema["properties"]]
    if unknown:
        problems.append(f"unknown column(s) {', '.join(unknown)} (fix: remove or rename; known: {', '.join(schema['properties'])})")
    if not table and not problems:
        raise SheetError(path, ["the sheet has a header but no shots (fix: add one row per shot)"])

    validator = jsonschema.Draft202012Validator(schema)
    rows = []
    seen: dict[str, int] = {}
    for i, raw in table:
        shot = raw.get("shot") or None
        where = _where(i, shot)
        row = {col: raw.get(col, spec.get("default", "")) for col, spec in schema["properties"].items()}
        bad = set()  # columns reported here: the schema would only repeat them
        row["_res"] = None  # (width, height) of a valid resolution cell; the cell itself stays text
        for col, parse in TYPED_CELLS:
            if col == "resolution" and not row[col]:
                continue
            try:
                value = parse(row[col])
            except ValueError as exc:
                problems.append(f"{where}: {col} {exc}")
                bad.add(col)
                value = None
            if col == "resolution":
                row["_res"] = value
                row[col] = f"{value[0]}x{value[1]}" if value else row[col]  # canonical: 01920x1080 -> 1920x1080
            else:
                row[col] = value
        typed = {k: v for k, v in row.items() if v is not None and k not in bad and not k.startswith("_")}
        for err in validator.iter_errors(typed):
            col = err.path[0] if err.path else None
            if err.validator == "required" and bad & set(re.findall(r"'([^']*)'", err.message)):
                continue
            if col == "shot" and err.validator == "pattern":
                problems.append(f"{where}: shot id {raw['shot']!r} is not safe as a file name and shell word "
                                "(fix: use only letters, digits, '_' and '-', at most 64 characters)")
            elif col:
                problems.append(f"{where}: {col} {err.instance!r}: {err.message} (fix: see docs/shot-sheet.md)")
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
            bad_key = _check_key_params(row["key_params"])
            row["_bad_key_params"] = bool(bad_key)
            problems.extend(f"{where}: key_params: {m}" for m in bad_key)
        first, last = row["first_frame"], row["last_frame"]
        row["_range"] = None  # the frame range, once it is known to be sane
        if first is not None and last is not None:
            if first > last:
                problems.append(f"{where}: first_frame {first} is after last_frame {last} (fix: swap them)")
            elif last - first + 1 > MAX_FRAMES:
                problems.append(f"{where}: first_frame {first} to last_frame {last} is {last - first + 1} frames, "
                                f"more than {MAX_FRAMES} (fix: check the numbers, or split the shot into rows)")
            else:
                row["_range"] = (first, last)
        if check_files and not row.get("_unsafe") and row["plate"]:
            media = _check_media(row, base_dir, movie_start, depth_default)
            problems.extend(f"{where}: {m}" for m in media)
            if check_screens and not media and row["_range"] and not row.get("_bad_key_params"):
                problems.extend(f"{where}: {m}" for m in _check_screen(row, base_dir, movie_start))

    if problems:
        raise SheetError(path, problems)

    out = pd.DataFrame([r for _, r in rows]).drop(columns=["_unsafe", "_prop_hint", "_res", "_range",
                                                           "_bad_key_params"],
                                                  errors="ignore")
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
    from .composite.harmonize import parse_harmonize_params
    from .perception.light import parse_light
    from .perception.masks import parse_prop_hint

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


def _depth(obj) -> int:
    """How deeply JSON lists/objects nest (a flat object is 1); iterative, so it cannot recurse."""
    depth, level = 0, [obj]
    while level:
        depth += 1
        level = [v for o in level for v in (o.values() if isinstance(o, dict) else o) if isinstance(v, (dict, list))]
    return depth


def _check_key_params(text: str) -> list[str]:
    """A JSON object (no NaN/Infinity, not deeply nested) that KeyParams accepts."""
    from .perception.key import KeyParams

    try:
        params = parse_json_object(text, example=KEY_PARAMS_EXAMPLE)
        if _depth(params) > MAX_JSON_DEPTH:
            raise ValueError(f"{text[:40]!r}... is nested too deeply (fix: a flat object, e.g. {KEY_PARAMS_EXAMPLE})")
        KeyParams.from_dict(params)
    except (TypeError, ValueError) as exc:
        msg = str(exc)
        return [msg if "(fix:" in msg else f"{msg} (fix: use the parameters and ranges listed in docs/key.md)"]
    return []


def missing_frames(first: int, last: int, have) -> list[tuple[int, int]]:
    """The gaps ``[(a, b), ...]`` of first..last not in ``have`` (frame numbers): arithmetic on ranges,
    never a list as long as the requested range."""
    have = sorted(set(have))
    gaps, nxt = [], first
    for f in have[bisect_left(have, first):]:
        if f > last:
            break
        if f > nxt:
            gaps.append((nxt, f - 1))
        nxt = f + 1
    if nxt <= last:
        gaps.append((nxt, last))
    return gaps


def _ranges_text(gaps: list[tuple[int, int]]) -> str:
    s = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in gaps)
    return s if len(s) < 80 else s[:77] + "..."


@lru_cache(maxsize=4096)
def _probe_cached(path: str, part, view, movie_start: int, stamp):
    from .io.plates import probe

    return probe(path, part=part, view=view, movie_start=movie_start)


def probe(path: Path, *, part=None, view=None, movie_start: int = 1001):
    """plates.probe, cached per file and directory state: shots sharing plates are probed once."""
    try:
        st = path.parent.stat()
        stamp = (st.st_mtime_ns, path.stat().st_mtime_ns if path.exists() else None)
    except OSError:
        stamp = None
    return _probe_cached(str(path), part, view, movie_start, stamp)


def _check_media(row: dict, base_dir: Path, movie_start: int, depth_default: str = "ground") -> list[str]:
    """Plate and environment exist, the frame range is inside the plate, resolutions are readable."""
    out = []
    first, last = row["_range"] or (None, None)
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
        elif first is not None:
            lacking = missing_frames(first, last, info.frames)
            if lacking:
                span = f"{min(info.frames)}-{max(info.frames)}" if info.frames else "none"
                out.append(f"plate {plate}: frames {_ranges_text(lacking)} of {first}-{last} are missing "
                           f"(plate has {span}; "
                           "fix: correct first_frame/last_frame or render the missing frames)")
            out.extend(_broken_files("plate", plate, info, first, last))
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
        if einfo.kind not in ("still", "hdri") and first is not None:
            lacking = missing_frames(first, last, einfo.frames)
            if lacking:
                out.append(f"environment {env}: frames {_ranges_text(lacking)} of {first}-{last} are missing "
                           "(fix: extend the environment sequence or use a still image)")
            out.extend(_broken_files("environment", env, einfo, first, last))
    if einfo is not None and (row.get("depth_backend") or depth_default) == "plate":
        out.extend(_check_plate_depth(env, einfo))
    if row.get("light_probe") and not row.get("_unsafe"):
        out.extend(_check_probe(resolve(row["light_probe"], base_dir), movie_start))
    if row.get("_prop_hint") and info is not None and first is not None:
        from .perception.masks import check_prop_hint

        out.extend(m if m.startswith("prop_hint") else f"prop_hint: {m}" for m in check_prop_hint(
            row["_prop_hint"], first=first, last=last, plate_width=info.width, plate_height=info.height,
            base_dir=base_dir))
    if row["_res"]:  # parsed and bounded in load_sheet
        w, h = row["_res"]
    elif info is not None:
        w, h = info.width, info.height
    else:
        w = h = None
    row["width"], row["height"] = w, h
    if info is not None and w:  # the plate's pixel aspect after the conform (docs/outputs.md)
        from .io.ingest import conformed_aspect

        row["pixel_aspect"] = conformed_aspect(info.pixel_aspect, (info.width, info.height), (w, h))
    return out


def _check_plate_depth(env: Path, einfo) -> list[str]:
    """The ``plate`` depth backend reads the environment's own Z: it must be an EXR with a Z channel."""
    from .perception.depth import z_channels

    if "channels" not in einfo.details:
        return [f"depth_backend plate needs an EXR environment with a Z channel, but {env} is not an EXR "
                "(fix: give an EXR with Z/depth.Z, or set depth_backend to ground or model)"]
    if not z_channels(einfo.details["channels"]):
        return [f"depth_backend plate needs an EXR environment with a Z channel, but {env} has none "
                f"(channels: {', '.join(einfo.details['channels'])}; fix: give an EXR with Z/depth.Z, or set "
                "depth_backend to ground or model)"]
    return []


def _broken_files(col: str, pattern: Path, info, first: int, last: int) -> list[str]:
    """A frame of the shot whose file is a dangling or self-looping symlink: named here, not left to
    Snakemake's MissingInputException."""
    if not frames.is_sequence(str(pattern)):  # a movie: one file, probed already
        return []
    bad = frames.broken_frames(pattern, [f for f in info.frames if first <= f <= last])
    if not bad:
        return []
    more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
    return [f"{col} frame {bad[0]}{more} cannot be opened: a dangling or looping symlink "
            f"(fix: point the link at a real file, or replace it with the frame)"]


SCREEN_CHECK_WIDTH = 384  # the plate frame is checked for a screen at most this wide (detection needs 192)


def _check_screen(row: dict, base_dir: Path, movie_start: int) -> list[str]:
    """The plate's first frame shows a green or blue screen (the key stage's own test, ``shot_screen``,
    with the shot's key_params): a photo of a garden is refused here, not keyed and published."""
    import cv2

    from .io.plates import read_frame
    from .perception.key import KeyParams, shot_screen

    params = KeyParams.from_dict(parse_json_object(row["key_params"], example=KEY_PARAMS_EXAMPLE)
                                 if row["key_params"] else None)
    cs = row["plate_colourspace"]
    if params.min_screen <= 0 or not cs or colour.check_colourspace(cs):  # no check; a bad colourspace: reported
        return []
    frame = row["_range"][0]  # the first: a movie decodes every frame up to the one asked for
    plate = resolve(row["plate"], base_dir)
    try:
        rgb = read_frame(plate, frame, part=row.get("plate_part") or None, view=row.get("plate_view") or None,
                         movie_start=movie_start)[..., :3]
    except PlateError as exc:
        return [f"plate: {exc}"]
    h, w = rgb.shape[:2]
    if w > SCREEN_CHECK_WIDTH:
        rgb = cv2.resize(rgb, (SCREEN_CHECK_WIDTH, max(1, round(h * SCREEN_CHECK_WIDTH / w))),
                         interpolation=cv2.INTER_AREA)
    rgb = colour.convert(np.nan_to_num(rgb, nan=0.0, posinf=0.0, neginf=0.0), cs)
    try:
        shot_screen([rgb], params)
    except ValueError as exc:
        return [f"plate {plate} frame {frame}: {exc}"]
    return []


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
    try:
        problem = _probe_pixels_problem(str(path), path.stat().st_mtime_ns)
    except PlateError as exc:
        return [f"light_probe: {exc}"]
    return [f"light_probe {path} {problem[0]} (fix: {problem[1]})"] if problem else []


@lru_cache(maxsize=256)
def _probe_pixels_problem(path: str, stamp) -> tuple[str, str] | None:
    """light.probe_problem of a probe file (NaN/Inf, absurd values, no light), read once per file state."""
    from .io.plates import read_image
    from .perception.light import probe_problem

    return probe_problem(read_image(path))


def frame_files(row, movie_start: int = 1001) -> list[str]:
    """The plate files a shot reads (one movie, or one file per frame of a sequence)."""
    p = row["plate_path"]
    if frames.is_movie(p) or not frames.is_sequence(p):
        return [p]
    return frames.sequence_names(p, row["first_frame"], row["last_frame"])


def env_files(row) -> list[str]:
    p = row["env_path"]
    if not p:
        return []
    if frames.is_movie(p) or not frames.is_sequence(p):
        return [p]
    return frames.sequence_names(p, row["first_frame"], row["last_frame"])
