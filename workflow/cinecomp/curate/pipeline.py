"""Prior-driven data curation (docs/curation.md): clips of people in real scenes -> training pairs.

``cinecomp curate --clips clips.csv --out DIR`` (and rules/curate.smk: a job per clip, then a gather
job) reads a sheet of clips, checks every row before any expensive work, and per clip:

1. reads the frames (a movie, or an EXR/PNG/... sequence) at the training size (scaled to cover, then
   centre-cropped to ``width`` x ``height``, multiples of 16), every ``step``-th frame for the row's fps;
2. priors: character and prop masks (SAM 2 when ``perception.sam2`` is configured and a prompt box is
   known; else the background model of a still camera, curate.priors), depth (the ``ground`` backend:
   the environment as a ground plane of the clip's camera, the character a card at its contact; or the
   ``model`` backend when ``perception.depth_model.path`` is configured), the light (the light stage's
   estimate from the clean plate, or the row's ``light``);
3. cuts the clip into windows of ``window`` (4n+1) frames and makes each a pair:
   target = the original frames and their depth; input = the character cut out, de-harmonized (the
   shot's light divided out, a random studio key/colour/intensity applied as a ratio with normals from
   its depth) on an uneven chroma green, then keyed by the project's chroma keyer; environment = the
   clean plate (temporal median of a still camera; inpainting otherwise); the tri-mask from the key's
   alpha and the prop share; effect_mask = where the character changes the environment;
4. quality filters per window (mask area and stability, camera and character motion, blur,
   light-estimate confidence), each failure a reason in the manifest;
5. writes the accepted windows as shards (dataset.ShardWriter), ``manifest.csv`` (one row per window,
   and one per clip rejected whole) and a contact sheet PNG.

The demo ray-marcher is a second source (curate.synthetic): a row ``synthetic:<eval shot>`` or
``synthetic:random:<seed>`` renders a scene with exact ground truth (plate on green, environment,
comp with shadows, masks, depth) and writes its true pair. Path-traced shots are a third
(curate.pathtraced): a row ``pathtraced:<shot folder>`` (bench/blender_shots.py renders them).
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ProblemsError
from ..io.dataset import SAMPLE_COLOURSPACE
from ..params import Num, check_params

SRGB = SAMPLE_COLOURSPACE
CLIP_COLUMNS = ("clip", "id", "prompt", "fps", "first", "last", "camera", "light", "box", "colourspace")
MANIFEST = "manifest.csv"
CONTACT = "contact.png"
SYNTHETIC = "synthetic:"
PATHTRACED = "pathtraced:"
CLIP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

CURATE_SPEC = {
    "window": Num(9, 5, 81, integer=True, doc="frames per sample (4n+1)"),
    "width": Num(256, 32, 2048, integer=True, doc="sample width (multiple of 16)"),
    "height": Num(0, 0, 2048, integer=True, doc="sample height (multiple of 16); 0: the clip's aspect"),
    "stride": Num(0, 0, 10000, integer=True, doc="frames between window starts; 0: the window (no overlap)"),
    "max_windows": Num(12, 1, 100000, integer=True, doc="windows per clip at most (evenly spread)"),
    "max_frames": Num(480, 5, 100000, integer=True, doc="frames read per clip at most"),
    "samples_per_shard": Num(8, 1, 10000, integer=True, doc="samples per tar shard"),
    "seed": Num(0, 0, 2**31 - 1, integer=True, doc="seed of the random studio lights"),
    "threshold": Num(0.1, 0.01, 1.0, doc="background model: colour change counted as foreground (display)"),
    "min_area": Num(0.005, 0.0, 1.0, doc="least mean character area (fraction of the frame)"),
    "max_area": Num(0.6, 0.0, 1.0, doc="largest mean character area"),
    "min_iou": Num(0.55, 0.0, 1.0, doc="least mean IoU of consecutive frames' masks (mask stability)"),
    "max_area_change": Num(0.4, 0.0, 100.0, doc="largest relative spread (std / mean) of the mask area"),
    "max_camera_motion": Num(1.5, 0.0, 10000.0, doc="largest camera drift (pixels at the sample width) for the background model"),
    "max_motion": Num(0.04, 0.0, 10.0, doc="largest character speed (fraction of the width per frame)"),
    "min_sharpness": Num(0.15, 0.0, 1000.0, doc="least character sharpness (Laplacian variance over the plate's)"),
    "min_light_confidence": Num(0.1, 0.0, 1.0, doc="least confidence of the light estimate"),
    "min_travel": Num(2.5, 0.0, 100.0, doc="background model: least extent of the character's path over the clip, "
                      "in its widths (less: the median plate shows it)"),
}
CURATE_FIX = "docs/curation.md lists every setting, e.g. {\"window\": 17, \"width\": 320}"


class CurateError(ProblemsError):
    """A clips sheet or settings that cannot be curated; ``problems`` lists each with its fix."""


def check_settings(settings: dict | None) -> dict:
    """Curation settings with defaults, each checked (ValueError naming the fix)."""
    raw = {}
    for k, v in dict(settings or {}).items():  # snakemake --config gives nested numbers as strings
        if isinstance(v, str):
            try:
                v = float(v) if any(c in v for c in ".eE") else int(v)
            except ValueError:
                pass
        raw[k] = v
    s = check_params(raw, CURATE_SPEC, what="curate setting", fix=CURATE_FIX)
    if (s["window"] - 1) % 4:
        raise ValueError(f"curate setting window={s['window']}: samples need 4n+1 frames, e.g. 9 or 17 "
                         f"(fix: {CURATE_FIX})")
    for k in ("width", "height"):
        if s[k] % 16:
            raise ValueError(f"curate setting {k}={s[k]}: must be a multiple of 16 (fix: e.g. {s[k] // 16 * 16 or 16})")
    return s


# ------------------------------------------------------------------------------------------------
# the clips sheet
# ------------------------------------------------------------------------------------------------


@dataclass
class Clip:
    id: str
    source: str  # a file / sequence pattern, synthetic:... or pathtraced:<folder>
    row: int
    prompt: str = ""
    fps: float | None = None
    first: int | None = None
    last: int | None = None
    camera: dict = field(default_factory=dict)
    light: dict | None = None
    box: list | None = None
    colourspace: str = ""
    info: object = None  # plates.PlateInfo of a real clip

    @property
    def synthetic(self) -> bool:
        return self.source.startswith(SYNTHETIC)

    @property
    def kind(self) -> str:
        """real (footage), synthetic (the demo renderer) or pathtraced (a path-traced shot folder)."""
        return "synthetic" if self.synthetic else "pathtraced" if self.source.startswith(PATHTRACED) else "real"

    def to_json(self) -> dict:
        return {"id": self.id, "source": self.source, "row": self.row, "prompt": self.prompt, "fps": self.fps,
                "first": self.first, "last": self.last, "camera": self.camera, "light": self.light, "box": self.box,
                "colourspace": self.colourspace}


def _clip_id(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_-")[:64]
    return s or "clip"


SEP = ":"  # synthetic:<eval shot>[:<seed>]


def parse_synthetic(source: str) -> tuple[str, int | None]:
    """``synthetic:ev03`` -> ("ev03", None); ``synthetic:random:7`` -> ("random", 7); ValueError naming the fix."""
    from ..evaluate.suite import eval_shots

    rest = source.split(SEP, 1)[1] if SEP in source else ""
    names = [s.name for s in eval_shots()]
    if rest.startswith("random"):
        _, _, seed = rest.partition(SEP)
        if seed.isdigit():
            return "random", int(seed)
        raise ValueError(f"{source}: a random scene needs a whole-number seed (fix: synthetic:random:7)")
    if rest in names:
        return rest, None
    raise ValueError(f"{source}: unknown synthetic scene (fix: synthetic:random:<seed> or synthetic:<eval shot>, "
                     f"one of {', '.join(names)})")


def _check_synthetic(source: str) -> str | None:
    try:
        parse_synthetic(source)
    except ValueError as exc:
        return str(exc)
    return None


def read_clips(path, settings: dict | None = None) -> list[Clip]:
    """The clips sheet, every row checked (files exist and decode their header, frame range and fps
    make at least one window): raises :class:`CurateError` listing every problem, naming the row, the
    file and the fix, before any expensive work."""
    from ..camera import parse_camera
    from ..colour import check_colourspace
    from ..errors import PlateError
    from ..frames import is_movie, is_sequence
    from ..perception.light import parse_light
    from ..io.plates import probe

    s = check_settings(settings)
    path = Path(path)
    if not path.is_file():
        raise CurateError(path, [f"{path}: no such clips sheet (fix: give a CSV with a 'clip' column, one clip a row)"])
    base = path.parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = list(reader)  # extra cells of a row land under the key None (DictReader's restkey)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CurateError(path, [f"cannot read it as CSV ({exc}) (fix: save it as UTF-8 CSV)"]) from None
    if "clip" not in header:
        raise CurateError(path, [f"no 'clip' column (columns: {', '.join(header) or 'none'}) "
                                 f"(fix: a header line with clip[,{','.join(CLIP_COLUMNS[1:])}])"])
    unknown = [h for h in header if h not in CLIP_COLUMNS]
    problems = [f"unknown column(s) {', '.join(unknown)} (fix: use {', '.join(CLIP_COLUMNS)})"] if unknown else []
    if not rows:
        problems.append("no clips (fix: one clip a row under the header)")
    clips, ids = [], {}
    for n, raw in enumerate(rows, start=2):  # line numbers as a spreadsheet shows them
        where = f"row {n}"
        r = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        extra = [c for c in raw.get(None) or [] if c.strip()]
        if extra:  # as the shot sheet: shifted cells would be read as the wrong columns
            problems.append(f"{where}: {len(header) + len(raw[None])} cells but the header has {len(header)} "
                            "columns, so its cells do not line up (fix: quote a cell that contains a comma, "
                            'e.g. "a, b", or delete the extra comma)')
            continue
        src = r.get("clip", "")
        bad = []
        if not src:
            problems.append(f"{where}: empty clip (fix: a movie file, an image sequence such as "
                            "plate.####.exr, synthetic:ev01 / synthetic:random:7, or pathtraced:<shot folder>)")
            continue
        clip = Clip(id="", source=src, row=n, prompt=r.get("prompt", ""), colourspace=r.get("colourspace", ""))
        if clip.kind == "pathtraced":
            p = Path(src[len(PATHTRACED):])
            clip.source = PATHTRACED + str(p if p.is_absolute() else (base / p))
        elif not clip.synthetic:
            p = Path(src)
            clip.source = str(p if p.is_absolute() else (base / p))
        clip.id = r.get("id") or _clip_id(src[len(SYNTHETIC):] if clip.synthetic else Path(src[len(PATHTRACED):]).name
                                          if clip.kind == "pathtraced" else Path(src).stem.split(".")[0])
        where = f"row {n} ({src})"
        if not CLIP_ID.match(clip.id):
            bad.append(f"id {clip.id!r} is not a safe name (fix: letters, digits, _ and -, at most 64)")
        elif clip.id in ids:
            bad.append(f"id {clip.id} is also row {ids[clip.id]}'s (fix: give one of them an id column value)")
        ids.setdefault(clip.id, n)
        for key in ("fps", "first", "last"):
            text = r.get(key, "")
            if not text:
                continue
            try:
                v = float(text)
                if not np.isfinite(v) or (key == "fps" and v <= 0) or (key != "fps" and v != int(v)):
                    raise ValueError
                setattr(clip, key, v if key == "fps" else int(v))
            except ValueError:
                bad.append(f"{key} {text!r} is not a {'positive number' if key == 'fps' else 'whole frame number'}"
                           f" (fix: e.g. {'24' if key == 'fps' else '1001'}, or leave it empty)")
        for key, parse in (("camera", parse_camera), ("light", parse_light)):
            if r.get(key):
                try:
                    setattr(clip, key, parse(r[key]) if key == "camera" else parse(r[key]))
                except ValueError as exc:
                    bad.append(f"{key}: {exc}")
        if r.get("box"):
            try:
                box = [float(v) for v in r["box"].split(",")]
                if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
                    raise ValueError
                clip.box = box
            except ValueError:
                bad.append(f"box {r['box']!r} (fix: x0,y0,x1,y1 of the character on the first frame, in the "
                           "clip's pixels, x right, y down)")
        if clip.colourspace:
            cs = check_colourspace(clip.colourspace)
            if cs:
                bad.append(f"colourspace: {cs}")
        if clip.first is not None and clip.last is not None and clip.first > clip.last:
            bad.append(f"first {clip.first} is after last {clip.last} (fix: swap them)")
        if clip.synthetic:
            err = _check_synthetic(clip.source)
            if err:
                bad.append(err)
        elif clip.kind == "pathtraced":
            from ..io.pathtraced import check_shot_folder

            if not bad:
                bad += check_shot_folder(Path(clip.source[len(PATHTRACED):]), clip.first, clip.last, s["window"])[0]
        elif not bad:
            try:
                if not (is_movie(clip.source) or is_sequence(clip.source)):
                    raise PlateError(clip.source, "is neither a movie nor an image sequence",
                                     "give a .mp4/.mov file or a pattern such as clip.####.png")
                clip.info = probe(clip.source)
            except PlateError as exc:
                bad.append(str(exc))
            except Exception as exc:  # a decoder's own error: still name the file
                bad.append(f"{clip.source}: cannot be read ({exc}) (fix: check the file plays, re-encode it)")
        if not bad and clip.info is not None:
            frames = clip.info.frames
            first = clip.first if clip.first is not None else frames[0]
            last = clip.last if clip.last is not None else frames[-1]
            if first < frames[0] or last > frames[-1]:
                bad.append(f"frames {first}-{last} are outside the clip's {frames[0]}-{frames[-1]} "
                           f"({'movies count from 1001' if clip.info.kind == 'movie' else 'files on disk'}) "
                           "(fix: correct first/last or leave them empty)")
            if clip.fps and clip.info.fps and clip.fps > clip.info.fps * 1.001:
                bad.append(f"fps {clip.fps:g} is above the clip's own {clip.info.fps:g} (fix: at most "
                           f"{clip.info.fps:g}, or leave it empty)")
            step = _step(clip)
            n = (min(last, frames[-1]) - max(first, frames[0])) // step + 1
            if not bad and n < s["window"]:
                bad.append(f"{n} frame(s) (at step {step}) are fewer than one window of {s['window']} "
                           "(fix: a longer range, a higher fps, or a smaller window setting)")
        problems += [f"{where}: {b}" for b in bad]
        clips.append(clip)
    if problems:
        raise CurateError(path, problems)
    return clips


def _step(clip: Clip) -> int:
    src = getattr(clip.info, "fps", None)
    if not clip.fps or not src:
        return 1
    return max(1, int(round(src / clip.fps)))


# ------------------------------------------------------------------------------------------------
# frames
# ------------------------------------------------------------------------------------------------


def sample_size(width: int, height: int, settings: dict) -> tuple[int, int]:
    """(W, H) of the samples for a clip of width x height: the setting's width, the clip's aspect."""
    w = int(settings["width"])
    h = int(settings["height"]) or max(16, int(round(w * height / width / 16)) * 16)
    return w, h


def fit_frame(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale to cover ``size`` (area filter) and centre-crop."""
    import cv2

    w, h = size
    ih, iw = img.shape[:2]
    s = max(w / iw, h / ih)
    nw, nh = max(w, int(round(iw * s))), max(h, int(round(ih * s)))
    r = cv2.resize(np.ascontiguousarray(img, np.float32), (nw, nh),
                   interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    y0, x0 = (nh - h) // 2, (nw - w) // 2
    return r[y0:y0 + h, x0:x0 + w]


def to_linear(rgb: np.ndarray, colourspace: str) -> np.ndarray:
    from ..colour import WORKING_SPACE, convert

    if colourspace in ("", WORKING_SPACE, "ACEScg"):
        return np.asarray(rgb, np.float32)
    return convert(np.ascontiguousarray(rgb, np.float32), colourspace, WORKING_SPACE).astype(np.float32)


def to_model(rgb: np.ndarray) -> np.ndarray:
    """Scene-linear ACEScg (..., H, W, 3) -> the samples' display encoding in [0, 1] (as the diffusion
    backend's ``to_model_space`` with the default ``model_colourspace``)."""
    from ..colour import WORKING_SPACE, convert

    a = np.asarray(rgb, np.float32)
    flat = a.reshape(-1, a.shape[-2], 3)
    return np.clip(convert(np.ascontiguousarray(flat), WORKING_SPACE, SRGB), 0.0, 1.0).reshape(a.shape)


def read_clip_frames(clip: Clip, settings: dict) -> tuple[np.ndarray, list[int]]:
    """(T, H, W, 3) scene-linear ACEScg frames at the sample size, and their frame numbers."""
    from ..frames import is_movie
    from ..io.plates import iter_movie, read_frame

    info = clip.info
    frames = info.frames
    first = clip.first if clip.first is not None else frames[0]
    last = clip.last if clip.last is not None else frames[-1]
    step = _step(clip)
    wanted = list(range(first, last + 1, step))[: int(settings["max_frames"])]
    size = sample_size(info.width, info.height, settings)
    cs = clip.colourspace or ("ACEScg" if str(info.kind).startswith("exr") else SRGB)
    out = []
    if is_movie(clip.source):
        want = set(wanted)
        for n, img in enumerate(iter_movie(clip.source, first - frames[0], wanted[-1] - first + 1)):
            if first + n in want:
                out.append(fit_frame(img[..., :3], size))
    else:
        out = [fit_frame(read_frame(clip.source, f)[..., :3], size) for f in wanted]
    rgb = np.stack(out)
    return to_linear(rgb.reshape(-1, size[0], 3), cs).reshape(rgb.shape), wanted


# ------------------------------------------------------------------------------------------------
# windows
# ------------------------------------------------------------------------------------------------


def window_starts(n: int, settings: dict) -> list[int]:
    t = int(settings["window"])
    stride = int(settings["stride"]) or t
    starts = list(range(0, n - t + 1, stride))
    k = int(settings["max_windows"])
    if len(starts) > k:
        starts = [starts[i] for i in np.linspace(0, len(starts) - 1, k).round().astype(int)]
    return starts


def check_window(m: dict, settings: dict, still: bool) -> list[str]:
    """The quality filters: reasons a window is rejected (empty: accepted)."""
    s, why = settings, []
    if m["empty_frames"]:
        why.append(f"no character on {m['empty_frames']} frame(s)")
    if m["char_area"] < s["min_area"]:
        why.append(f"character too small ({m['char_area']:.2%} of the frame < {s['min_area']:.2%})")
    if m["char_area"] > s["max_area"]:
        why.append(f"character too large ({m['char_area']:.0%} of the frame > {s['max_area']:.0%})")
    if m["mask_iou"] < s["min_iou"]:
        why.append(f"masks unstable (IoU of consecutive frames {m['mask_iou']:.2f} < {s['min_iou']:.2f})")
    if m["area_change"] > s["max_area_change"]:
        why.append(f"mask area unstable (spread {m['area_change']:.2f} > {s['max_area_change']:.2f})")
    if still and m["camera_drift_px"] > s["max_camera_motion"]:
        why.append(f"camera moves ({m['camera_drift_px']:.1f} px > {s['max_camera_motion']:g}) and the masks come "
                   "from the background model of a still camera (fix: configure perception.sam2 and give a box)")
    if m["char_motion"] > s["max_motion"]:
        why.append(f"character moves too fast ({m['char_motion']:.3f} of the width a frame > {s['max_motion']:g})")
    if m["sharpness"] < s["min_sharpness"]:
        why.append(f"character blurred (sharpness {m['sharpness']:.2f} < {s['min_sharpness']:g})")
    if still and m["travel"] < s["min_travel"]:
        why.append(f"character stays in place (its path spans {m['travel']:.1f} of its widths < {s['min_travel']:g}): "
                   "the background model's clean plate shows it (fix: configure perception.sam2 and give a box, or "
                   "a clip where the person crosses the frame)")
    if m["light_confidence"] < s["min_light_confidence"]:
        why.append(f"light estimate unsure (confidence {m['light_confidence']:.2f} < {s['min_light_confidence']:g})")
    return why


def travel(char: np.ndarray) -> float:
    """Horizontal extent of the union of the character's masks over the clip, in its mean width: the
    median of a background model is clean only where the character is absent most of the time."""
    cols = char.any(axis=1)  # (T, W)
    present = cols.any(axis=1)
    if not present.any():
        return 0.0
    widths = cols[present].sum(axis=1)
    span = np.flatnonzero(cols.any(axis=0))
    return float((span[-1] - span[0] + 1) / max(float(np.median(widths)), 1.0))


def _mask_metrics(char: np.ndarray) -> dict:
    from .priors import mask_iou

    areas = char.reshape(len(char), -1).mean(1)
    ious = [mask_iou(char[i], char[i + 1]) for i in range(len(char) - 1)]
    mean = float(areas.mean())
    return {"char_area": mean, "empty_frames": int((char.reshape(len(char), -1).sum(1) < 4).sum()),
            "mask_iou": float(np.mean(ious)) if ious else 1.0,
            "area_change": float(areas.std() / mean) if mean > 0 else 0.0}


def key_window(plates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The project's chroma keyer on a window of green plates: (alpha (T, H, W), premultiplied fg)."""
    from ..perception.key import key_frames

    alpha, fg, _ = key_frames(plates, {"screen": "green"})
    return alpha, fg


def model_character(fg_premult: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Premultiplied keyed foreground -> the samples' character_rgb (straight colour encoded, times alpha)."""
    a = np.clip(alpha, 0, 1)[..., None]
    straight = np.where(a > 1e-4, fg_premult / np.maximum(a, 1e-4), 0.0)
    return to_model(straight) * a


# ------------------------------------------------------------------------------------------------
# one real clip
# ------------------------------------------------------------------------------------------------


def _depth_backend(perception: dict | None):
    dm = (perception or {}).get("depth_model") or {}
    path = dm.get("path")
    return dm if path and Path(path).is_dir() else None


def _sam2_settings(perception: dict | None):
    s = (perception or {}).get("sam2") or {}
    return s if s.get("checkpoint") and Path(s["checkpoint"]).is_file() else None


def priors(frames: np.ndarray, clip: Clip, settings: dict, perception: dict | None = None) -> dict:
    """Masks, clean plate(s), depth and light of a whole clip (module doc, step 2)."""
    from ..camera import Camera
    from .priors import background_masks, camera_motion, inpaint_plate, stabilise
    from ..perception.depth import object_contacts, shot_depth
    from ..perception.light import estimate_light

    t, h, w = frames.shape[:3]
    motion = camera_motion(frames)
    still = motion["drift"] <= settings["max_camera_motion"]
    sam2 = _sam2_settings(perception)
    masks_from = "background model (still camera)" if still else "background model (camera moves: unreliable)"
    if not still and (sam2 is None or clip.box is None):  # hand-held: try to hold it still
        held = stabilise(frames)
        if held is not None:
            moved = camera_motion(held[0])
            if moved["drift"] <= settings["max_camera_motion"]:
                frames, still = held[0], True
                motion = {**moved, "before_stabilising": motion["drift"]}
                masks_from = f"background model (stabilised, zoom {held[1]:.2f})"
    bg = background_masks(frames, threshold=settings["threshold"])
    if sam2 is not None:
        from .sam2_priors import sam2_clip_masks

        box = clip.box
        if box is not None and clip.info is not None:  # clip pixels -> sample pixels
            box = _box_to_sample(box, (clip.info.width, clip.info.height), (w, h))
        elif still:
            box = _bbox(bg["character"][0] | bg["prop"][0])
        if box is not None:
            bg["character"], bg["prop"] = sam2_clip_masks(frames, box, sam2, perception.get("device", "auto"))
            masks_from = "sam2"
            if not still:  # the background model's shadows mean nothing on a moving camera
                bg["shadow"] = np.zeros_like(bg["character"])
    if not still:
        envs = np.stack([inpaint_plate(frames[i], bg["character"][i] | bg["prop"][i] | bg["shadow"][i])
                         for i in range(t)])
    else:
        envs = None
    camera = Camera.from_params(clip.camera)
    plate = bg["plate"]
    light = estimate_light(sheet_light=clip.light, camera=camera, env_frames=[plate])
    env_depth = camera.ground_depth(w, h)
    depth_from = "ground"
    dm = _depth_backend(perception)
    if dm is not None:
        from ..perception.depth_model import DepthRun

        run = DepthRun(env_depth, {**dm, "device": (perception or {}).get("device", "auto")})
        env_depth = run.depth(plate)
        depth_from = "model"
    objects = [{"character": bg["character"][i].astype(np.float32), "prop": bg["prop"][i].astype(np.float32)}
               for i in range(t)]
    contacts = object_contacts(camera, objects, w, h)
    depth = np.stack([shot_depth(env_depth, objects[i], {o: contacts[o][i] if contacts[o] is not None else None
                                                         for o in contacts}, camera) for i in range(t)])
    return {**bg, "frames": frames, "still": still, "camera_motion": motion, "envs": envs, "camera": camera, "light": light,
            "depth": depth, "masks_from": masks_from, "depth_from": depth_from, "env_depth": env_depth,
            "contacts": contacts, "camera_params": clip.camera}


def _bbox(mask: np.ndarray):
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def _box_to_sample(box, src_size, size):
    iw, ih = src_size
    w, h = size
    s = max(w / iw, h / ih)
    ox, oy = (iw * s - w) / 2, (ih * s - h) / 2
    return [box[0] * s - ox, box[1] * s - oy, box[2] * s - ox, box[3] * s - oy]


def make_pair(frames: np.ndarray, pri: dict, sl: slice, rng: np.random.Generator, studio: dict | None = None) -> dict:
    """The pair of one window (module doc, step 3): sample arrays + the green plate and keyed alpha (for
    the contact sheet)."""
    from ..camera import FAR
    from .priors import deharmonize, effect_mask, finite_depth, green_plate, random_studio, soft_alpha
    from ..perception.masks import trimask

    win = frames[sl]
    char, prop = pri["character"][sl], pri["prop"][sl]
    env = pri["envs"][sl] if pri["envs"] is not None else np.broadcast_to(pri["plate"], win.shape)
    studio = studio or random_studio(rng)
    gain, greens, shares = None, [], []
    for i in range(len(win)):
        alpha = soft_alpha(char[i] | prop[i], win[i])
        masks = {"character": char[i].astype(np.float32), "prop": prop[i].astype(np.float32)}
        fg, _, gain = deharmonize(win[i], alpha, masks, env[i], pri["light"], pri["camera"], studio, gain)
        greens.append(green_plate(fg, alpha, rng))
        p = soft_alpha(prop[i], win[i]) if prop[i].any() else np.zeros_like(alpha)
        shares.append(np.clip(p / np.maximum(alpha, 1e-3), 0, 1))
    greens = np.stack(greens)
    alpha_k, fg_k = key_window(greens)
    tri = [trimask(alpha_k[i], shares[i]) for i in range(len(win))]
    tri = np.stack([np.stack([m["mask.character"], m["mask.prop"], m["mask.environment"]], -1) for m in tri])
    depth = pri["depth"][sl]
    sample = {
        "target_rgb": to_model(win),
        "target_depth": finite_depth(depth, FAR),
        "character_rgb": model_character(fg_k, alpha_k),
        "environment_rgb": to_model(np.ascontiguousarray(env)),
        "tri_mask": tri.astype(np.float32),
        "effect_mask": np.stack([effect_mask(win[i], env[i], alpha_k[i], cutout=char[i] | prop[i])
                                 for i in range(len(win))]),
        "character_depth": np.where(alpha_k > 0.5, finite_depth(depth, FAR), np.inf).astype(np.float32),
    }
    contacts = {o: (c[sl] if c is not None else [None] * len(win)) for o, c in pri["contacts"].items()}
    sample["harmonize_rgb"] = harmonize_sample(fg_k, alpha_k, tri, env, pri["env_depth"], contacts,
                                               pri["light"], pri["camera_params"], pri["camera"])
    return {"sample": sample, "green": greens, "alpha": alpha_k, "studio": studio}


def survey_harmonize(fg_k, alpha_k, tri, env, camera_params: dict, sheet_light: dict | None) -> np.ndarray:
    """:func:`harmonize_sample` of a rendered sample whose camera and light a set survey gives (the eval's
    `given` light: the sheet's camera and light, the light stage's estimate from the first environment
    frame, the ground depth of the depth stage's default, contacts from the tri-mask)."""
    from ..camera import Camera
    from ..perception.depth import object_contacts
    from ..perception.light import estimate_light

    n, h, w = np.shape(tri)[:3]
    camera = Camera.from_params(camera_params)
    masks = [{"character": tri[i, ..., 0], "prop": tri[i, ..., 1]} for i in range(n)]
    contacts = object_contacts(camera, masks, w, h)
    est = estimate_light(sheet_light=sheet_light, camera=camera, env_frames=[np.asarray(env[0], np.float32)])
    return harmonize_sample(fg_k, alpha_k, tri, env, camera.ground_depth(w, h), contacts, est, camera_params, camera)


def harmonize_sample(fg_k, alpha_k, tri, env, env_depth, contacts: dict, light_estimate: dict, camera_params,
                     camera) -> np.ndarray:
    """Harmonize's comp of one sample (its key, tri-mask and environment; the clip's light estimate,
    camera, environment depth and contacts, as the light and depth stages make them) in the samples'
    encoding: what the shot stage gives a model that starts from harmonize (rule harmonize_base), so
    training sees the input inference gives. Harmonize's default settings (an empty harmonize_params)."""
    from ..composite.harmonize import harmonize_frames, parse_harmonize_params
    from ..perception.light import shot_light_json

    n = len(fg_k)
    keys = [np.dstack([fg_k[i], np.clip(alpha_k[i], 0, 1)]).astype(np.float32) for i in range(n)]
    masks = [{"character": tri[i, ..., 0], "prop": tri[i, ..., 1]} for i in range(n)]
    depths = env_depth if np.ndim(env_depth) == 3 else [env_depth] * n
    comp = harmonize_frames(keys, [np.asarray(env[i], np.float32) for i in range(n)], masks, depths, contacts,
                            shot_light_json(light_estimate, camera_params), camera, parse_harmonize_params(""))
    return to_model(np.stack(comp))


def curate_real(clip: Clip, out_dir, settings: dict, perception: dict | None = None) -> list[dict]:
    """Curate one real clip into ``out_dir`` (shards, index.json, manifest.csv, contact.png); returns
    its manifest rows."""
    t0 = time.time()
    frames, numbers = read_clip_frames(clip, settings)
    return curate_frames(clip, frames, numbers, out_dir, settings, perception, t0)


def curate_frames(clip: Clip, frames: np.ndarray, numbers: list[int], out_dir, settings: dict,
                  perception: dict | None = None, t0: float | None = None, source: str = "real") -> list[dict]:
    """:func:`curate_real` on frames already read (scene-linear, at the sample size)."""
    from .priors import flow_motion, sharpness

    t0 = time.time() if t0 is None else t0
    pri = priors(frames, clip, settings, perception)
    frames = pri["frames"]  # stabilised when the camera was hand-held
    rows, sheet = [], []
    rng = np.random.default_rng([int(settings["seed"]), _stable_hash(clip.id)])
    out_dir = Path(out_dir)
    from ..io.dataset import ShardWriter

    writer = ShardWriter(out_dir, int(settings["samples_per_shard"]), prefix=f"{clip.id}")
    common = {"clip": clip.id, "source": source, "path": clip.source, "masks": pri["masks_from"],
              "depth": pri["depth_from"], "camera_drift_px": round(pri["camera_motion"]["drift"], 3),
              "light_confidence": round(float(pri["light"]["confidence"]), 3), "plate_unseen": round(pri["unseen"], 4)}
    t = int(settings["window"])
    path_span = travel(pri["character"] | pri["prop"])
    common["travel"] = round(path_span, 3)
    for k, s in enumerate(window_starts(len(frames), settings)):
        sl = slice(s, s + t)
        char = pri["character"][sl] | pri["prop"][sl]
        m = {**_mask_metrics(pri["character"][sl]), "camera_drift_px": pri["camera_motion"]["drift"],
             "char_motion": flow_motion(frames[sl], char) / frames.shape[2],
             "sharpness": sharpness(frames[sl], char, pri["plate"]),
             "light_confidence": float(pri["light"]["confidence"]), "travel": path_span}
        why = check_window(m, settings, still=pri["masks_from"] != "sam2")
        key = f"{clip.id}_w{k:03d}"
        row = {**common, "window": k, "key": key, "first_frame": numbers[s], "last_frame": numbers[s + t - 1],
               "status": "rejected" if why else "accepted", "reasons": "; ".join(why),
               **{n: round(float(v), 4) for n, v in m.items() if n not in ("camera_drift_px", "light_confidence", "travel")}}
        pair = make_pair(frames, pri, sl, rng) if not why or len(sheet) < 6 else None
        if not why:
            meta = {"prompt": clip.prompt, "clip": clip.id, "source": source, "first_frame": numbers[s],
                    "window": k, "studio": _jsonable(pair["studio"]), **{n: row[n] for n in
                    ("char_area", "mask_iou", "char_motion", "sharpness", "light_confidence", "masks", "depth")}}
            writer.write(key, {**pair["sample"], "meta": meta})
        if pair is not None and len(sheet) < 6:
            sheet.append((row, pair))
        rows.append(row)
    return finish_clip(writer, rows, sheet, out_dir, clip.id, t0, pri.get("plate"))


def finish_clip(writer, rows: list[dict], sheet: list, out_dir, clip_id: str, t0: float, plate=None) -> list[dict]:
    """Close a clip's shards, note each row's shard and the clip's seconds, write its contact sheet."""
    shards = writer.close()
    secs = round(time.time() - t0, 2)
    for row in rows:
        row["shard"] = next((sh["file"] for sh in shards if row["key"] in sh["keys"]), "")
        row["clip_seconds"] = secs
    write_contact_sheet(Path(out_dir) / CONTACT, clip_id, sheet, plate)
    return rows


def _stable_hash(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def clip_rejected(clip: Clip, reason: str, seconds: float = 0.0) -> dict:
    return {"clip": clip.id, "source": clip.kind, "path": clip.source, "window": -1,
            "key": "", "status": "rejected", "reasons": reason, "shard": "", "clip_seconds": round(seconds, 2)}


# ------------------------------------------------------------------------------------------------
# contact sheet
# ------------------------------------------------------------------------------------------------


def _checker(h: int, w: int, size: int = 8) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    return np.where(((x // size + y // size) % 2)[..., None] > 0, 0.55, 0.4).astype(np.float32) * np.ones(3, np.float32)


def _depth_vis(z: np.ndarray) -> np.ndarray:
    finite = np.isfinite(z)
    if not finite.any():
        return np.zeros(z.shape + (3,), np.float32)
    lz = np.log(np.where(finite, np.maximum(z, 1e-3), 1.0))
    lo, hi = np.percentile(lz[finite], [1, 99])
    v = np.where(finite, 1 - 0.85 * np.clip((lz - lo) / max(hi - lo, 1e-6), 0, 1), 0)
    return np.stack([v, v, v], -1).astype(np.float32)


def pair_columns(sample: dict, i: int, green=None, alpha=None) -> list[tuple[str, np.ndarray]]:
    """Display images (H, W, 3) in [0, 1] of frame i of a sample, for contact sheets and pair strips."""
    from ..colour import WORKING_SPACE, convert

    a = sample["tri_mask"][i]
    cols = [("target", sample["target_rgb"][i]), ("depth", _depth_vis(sample["target_depth"][i])),
            ("tri-mask", a[..., [1, 0, 2]] * np.array([1.0, 1.0, 0.35], np.float32))]
    if green is not None:
        cols.append(("green plate", np.clip(convert(np.ascontiguousarray(green[i]), WORKING_SPACE, SRGB), 0, 1)))
    alpha_i = 1.0 - a[..., 2]
    h, w = alpha_i.shape
    cols.append(("input (keyed)", sample["character_rgb"][i] + (1 - alpha_i)[..., None] * _checker(h, w)))
    cols.append(("environment", sample["environment_rgb"][i]))
    e = sample["effect_mask"][i]
    cols.append(("effect", sample["target_rgb"][i] * 0.35 + e[..., None] * np.array([1.0, 0.3, 0.1], np.float32)))
    return cols


def write_contact_sheet(path, clip_id: str, entries: list, plate=None, scale: int = 0) -> Path | None:
    """A PNG: a row per window shown (its middle frame), columns target | depth | tri-mask | green plate |
    keyed input | environment | effect, labelled with the window's status and reasons."""
    from PIL import Image, ImageDraw

    from ..io.images import save_png, scale_to, tile_rows, upscale

    rows, labels, names = [], [], []
    for row, pair in entries or []:
        s = pair["sample"]
        i = len(s["target_rgb"]) // 2
        cols = pair_columns(s, i, pair.get("green"), pair.get("alpha"))
        k = scale or scale_to(cols[0][1].shape[1], 160)
        rows.append([upscale((np.clip(c, 0, 1) * 255).astype(np.uint8), k) for _, c in cols])
        labels.append(f"{row['key']} {row['first_frame']}-{row['last_frame']}: {row['status']}"
                      + (f" ({row['reasons']})" if row.get("reasons") else ""))
        names = names or [n for n, _ in cols]
    if not rows:
        img = Image.new("RGB", (480, 40), (20, 20, 20))
        ImageDraw.Draw(img).text((6, 12), f"{clip_id}: no window to show", fill=(230, 230, 230))
    else:  # a header band of column names, then per window a band with its label over its tiles
        img, boxes = tile_rows(rows, top=16, row_head=18)
        d = ImageDraw.Draw(img)
        for name, (x0, *_) in zip(names, boxes[0]):
            d.text((x0 + 4, 2), name, fill=(230, 230, 230))
        for label, row_boxes in zip(labels, boxes):
            ok = "accepted" in label.split(":")[1][:10]
            d.text((4, row_boxes[0][1] - 18 + 3), label[:200], fill=(140, 230, 140) if ok else (240, 140, 120))
    path = Path(path)
    save_png(img, path)
    return path


# ------------------------------------------------------------------------------------------------
# a clip, the gather, the command
# ------------------------------------------------------------------------------------------------


def gather(clip_dirs: list, out_dir) -> dict:
    """Merge per-clip outputs (each with index.json and manifest.csv) into ``out_dir/index.json`` (shard
    paths relative to out_dir) and ``out_dir/manifest.csv``; returns counts."""
    import pandas as pd

    from ..atomic import atomic_path
    from ..io.dataset import INDEX

    out_dir = Path(out_dir)
    shards, frames = [], []
    for d in clip_dirs:
        d = Path(d)
        index = json.loads((d / INDEX).read_text())
        rel = os.path.relpath(d, out_dir)
        for s in index.get("shards", []):
            shards.append({**s, "file": str(Path(rel) / s["file"])})
        m = pd.read_csv(d / MANIFEST, dtype={"shard": str}, keep_default_na=False)
        if "shard" in m:
            m["shard"] = [str(Path(rel) / f) if f else "" for f in m["shard"]]
        frames.append(m)
    manifest = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    with atomic_path(out_dir / MANIFEST) as tmp:
        manifest.to_csv(tmp, index=False)
    with atomic_path(out_dir / INDEX) as tmp:
        Path(tmp).write_text(json.dumps({"shards": shards}, indent=1))
    status = manifest["status"] if len(manifest) else pd.Series([], dtype=str)
    return {"accepted": int((status == "accepted").sum()), "rejected": int((status == "rejected").sum()),
            "samples": sum(int(s["samples"]) for s in shards), "shards": len(shards)}


def clip_dir(out_dir, clip_id: str) -> Path:
    return Path(out_dir) / "clips" / clip_id


def load_settings(configfile=None, overrides: dict | None = None) -> tuple[dict, dict]:
    """(curate settings, perception settings) from config.yaml (+ a config file, + overrides)."""
    from ..configfile import DEFAULTS, ConfigFileError, load_config

    try:
        cfg = load_config([DEFAULTS, *([configfile] if configfile else [])])
    except ConfigFileError as exc:
        raise CurateError(configfile, [str(exc)]) from None
    settings = {**((cfg.get("curate") or {}).get("settings") or {}), **(overrides or {})}
    return check_settings(settings), dict(cfg.get("perception") or {})


# ------------------------------------------------------------------------------------------------
# Snakemake stages (rules/curate.smk, scripts/curate.py)
# ------------------------------------------------------------------------------------------------


def clip_from_json(d: dict) -> Clip:
    """A clip of the rule's params, its file probed again (cheap) for the frame list."""
    from ..io.plates import probe

    clip = Clip(**{k: d.get(k) for k in ("id", "source", "row", "prompt", "fps", "first", "last", "camera",
                                           "light", "box", "colourspace")})
    clip.camera, clip.prompt, clip.colourspace = clip.camera or {}, clip.prompt or "", clip.colourspace or ""
    if clip.kind == "real":
        clip.info = probe(clip.source)
    return clip


