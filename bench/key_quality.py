"""Key quality against a true alpha: SAD, MSE, gradient error, for the keyer's defaults before and after
the soft-hair tuning, on a synthetic soft-hair plate and on the demo shots.

1. Before/after (in memory, one run): ``BEFORE`` (the previous defaults) and ``AFTER`` (today's
   defaults) key
   - ``hair-blonde``, ``hair-brown``: ``hair_plate`` below, a head and shoulders whose hair is ~220
     semi-transparent strands (opacity 0.1-0.6, 0.5-1.5 px wide) over a vignetted green screen (corners
     40% darker, a left-right gradient, noise); the true alpha is rendered 4x4 supersampled;
   - the demo shots (after `make demo`): their ingested plates (results/<shot>/ingest/plate) against
     demo/<shot>/truth, with the shot's key_params from the sheet on top of each set.
2. The rendered results (results/<shot>/key and comp): the keys the workflow wrote, and the `over`
   composite against the ground-truth render (PSNR), the baseline later composite backends must beat.
SAD is in thousands per frame (alphamatting.com units); ``over``/``under`` split SAD into alpha above and
below the truth; ``corner`` is the mean alpha in the frame's corners where the truth is 0.
Usage: python bench/key_quality.py [--results results] [--demo demo] [--sheet shots/shots.csv] [--json]
                                   [--png hair.png]   (--png: the hair-blonde alpha, truth | before | after)
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))  # this checkout's cinecomp

from cinecomp.layout import REPO  # noqa: E402

from cinecomp.io import exr as exrio  # noqa: E402
from cinecomp import metrics
from cinecomp.perception.key import key_frames  # noqa: E402

# The defaults before the soft-hair tuning (level-based screen pixels + smoothing, no foreground
# correction, levels 0.1 / 0.9) and after (the defaults in keying.KEY_SPEC).
BEFORE = {"screen_model": "smooth", "fg_model": 0.0, "clip_black": 0.1, "clip_white": 0.9}
AFTER: dict = {}
SCREEN = (0.045, 0.30, 0.055)  # ACEScg, the demo's screen colour
HAIR = {"blonde": (0.45, 0.33, 0.16), "brown": (0.22, 0.14, 0.07)}


def hair_plate(h: int = 270, w: int = 480, *, seed: int = 0, hair=HAIR["blonde"], strands: int = 220,
               noise: float = 0.004) -> tuple[np.ndarray, np.ndarray]:
    """(plate (H, W, 3) ACEScg, true alpha (H, W)): a head and shoulders with soft hair over a vignetted
    green screen. Strands are random curves from the top of the head, opacity 0.1-0.6, rendered 4x4
    supersampled (their alphas combine as 1 - prod(1 - a)); the strands carry a little screen spill."""
    rng = np.random.default_rng(seed)
    ss = 4
    hh, ww = h * ss, w * ss
    body = np.zeros((hh, ww), np.uint8)
    cx, cy, r = ww // 2, int(hh * 0.42), int(hh * 0.2)
    cv2.ellipse(body, (cx, cy), (int(r * 0.8), r), 0, 0, 360, 255, -1)  # head
    cv2.ellipse(body, (cx, hh), (int(ww * 0.28), int(hh * 0.38)), 0, 180, 360, 255, -1)  # shoulders
    cv2.rectangle(body, (cx - r // 3, cy), (cx + r // 3, int(hh * 0.75)), 255, -1)  # neck
    log_t, strand = np.zeros((hh, ww), np.float32), np.zeros((hh, ww), np.uint8)
    for _ in range(strands):
        t = rng.uniform(np.pi * 0.9, np.pi * 2.1)  # a root on the top half of the head
        p = np.array([cx + 0.8 * r * np.cos(t), cy + r * np.sin(t)])
        ang, pts = t + rng.normal(0, 0.5), [p]
        for _ in range(24):
            ang += rng.normal(0, 0.12)
            p = p + rng.uniform(0.012, 0.02) * hh * np.array([np.cos(ang), np.sin(ang) + 0.25])  # droops
            pts.append(p)
        strand[:] = 0
        cv2.polylines(strand, [np.round(np.array(pts)).astype(np.int32)], False, 255, int(rng.integers(2, 6)),
                      cv2.LINE_AA)
        log_t += np.log1p(-rng.uniform(0.1, 0.6)) * strand.astype(np.float32) / 255
    down = lambda x: x.reshape(h, ss, w, ss).mean((1, 3))  # noqa: E731
    a_body, a_hair = down(body.astype(np.float32) / 255), down(1 - np.exp(log_t))
    alpha = 1 - (1 - a_body) * (1 - a_hair)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = (xx + 0.5) / w - 0.5, (yy + 0.5) / h - 0.5
    screen = np.asarray(SCREEN, np.float32) * (1 - 0.8 * (x * x + y * y) + 0.06 * x)[..., None]  # corners -40%
    skin = np.asarray((0.45, 0.28, 0.20), np.float32) * (0.8 + 0.2 * rng.random((h, w, 1), np.float32))
    body_rgb = np.where((yy > h * 0.68)[..., None], np.asarray((0.12, 0.16, 0.30), np.float32), skin)
    hair_rgb = np.asarray(hair, np.float32) + 0.12 * screen  # translucent strands lit by the screen
    plate = (hair_rgb * a_hair[..., None] + body_rgb * (a_body * (1 - a_hair))[..., None]
             + screen * (1 - alpha)[..., None])
    plate = plate + rng.normal(0, noise, plate.shape).astype(np.float32)
    return plate.astype(np.float32), alpha.astype(np.float32)


def matte_errors(a: np.ndarray, true: np.ndarray) -> dict:
    """Per-frame SAD (thousands), MSE, gradient error, SAD above/below the truth, corner alpha."""
    a, true = np.asarray(a, np.float32), np.asarray(true, np.float32)
    if a.ndim == 2:
        a, true = a[None], true[None]
    e = a.astype(np.float64) - true
    h, w = a.shape[1:]
    corners = np.zeros((h, w), bool)
    ch, cw = max(1, h // 6), max(1, w // 8)
    for ys in (slice(0, ch), slice(h - ch, h)):
        for xs in (slice(0, cw), slice(w - cw, w)):
            corners[ys, xs] = True
    bg = corners[None] & (true == 0)
    n = len(a)
    return {"sad": metrics.sad(a, true) / n, "mse": metrics.mse(a, true), "grad": metrics.gradient_error(a, true) / n,
            "over": float(e[e > 0].sum() / 1000 / n), "under": float(-e[e < 0].sum() / 1000 / n),
            "corner": float(a[bg].mean()) if bg.any() else 0.0}


def frames(directory: Path) -> dict[int, Path]:
    out = {}
    for p in Path(directory).glob("*.exr"):
        m = re.search(r"\.(\d+)\.exr$", p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def sheet_key_params(sheet: Path) -> dict[str, dict]:
    if not sheet.is_file():
        return {}
    rows = csv.DictReader(line for line in sheet.open() if not line.startswith("#"))
    return {r["shot"]: json.loads(r.get("key_params") or "{}") for r in rows}


def cases(args) -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    """{name: (plates (T, H, W, 3), true alpha (T, h, w), shot key_params)}."""
    out = {}
    for name, colour in HAIR.items():
        pairs = [hair_plate(seed=s, hair=colour) for s in (0, 1)]
        out[f"hair-{name}"] = (np.stack([p for p, _ in pairs]), np.stack([t for _, t in pairs]), {})
    overrides = sheet_key_params(Path(args.sheet))
    for truth_dir in sorted(Path(args.demo).glob("*/truth")):
        shot = truth_dir.parent.name
        plates, truth = frames(Path(args.results) / shot / "ingest" / "plate"), frames(truth_dir)
        common = sorted(set(plates) & set(truth))
        if not common:
            continue
        out[shot] = (np.stack([exrio.read_rgba(plates[f])[..., :3] for f in common]),
                     np.stack([exrio.read_layers(truth[f])["alpha.A"] for f in common]), overrides.get(shot, {}))
    return out


def before_after(args) -> dict:
    table = {}
    for name, (plates, truth, shot_params) in cases(args).items():
        for label, params in (("before", BEFORE), ("after", AFTER)):
            a, _, _ = key_frames(plates, {**params, **shot_params})
            if a.shape[1:] != truth.shape[1:]:  # a plate conformed to another resolution than the truth
                a = np.stack([cv2.resize(x, truth.shape[:0:-1], interpolation=cv2.INTER_AREA) for x in a])
            table.setdefault(name, {})[label] = matte_errors(a, truth)
    return table


def rendered(args) -> dict:
    table = {}
    for truth_dir in sorted(Path(args.demo).glob("*/truth")):
        shot = truth_dir.parent.name
        key_dir, comp_dir = Path(args.results) / shot / "key", Path(args.results) / shot / "comp"
        if not key_dir.is_dir():
            continue
        truth, keys, comps = frames(truth_dir), frames(key_dir), frames(comp_dir)
        rows = []
        for f in sorted(set(truth) & set(keys)):
            t = exrio.read_layers(truth[f])
            true_a = t["alpha.A"]
            h, w = true_a.shape
            a = exrio.read_layers(keys[f])["A"].astype(np.float32)
            if a.shape != true_a.shape:
                a = cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)
            row = [metrics.sad(a, true_a), metrics.mse(a, true_a), metrics.gradient_error(a, true_a)]
            if f in comps:
                c = exrio.read_rgba(comps[f])[..., :3]
                if c.shape[:2] != (h, w):
                    c = cv2.resize(c, (w, h), interpolation=cv2.INTER_AREA)
                gt = np.stack([t["R"], t["G"], t["B"]], -1).astype(np.float32)
                row.append(metrics.psnr(np.clip(c, 0, 1), np.clip(gt, 0, 1)))
            rows.append(row)
        if rows:
            table[shot] = dict(zip(["sad", "mse", "grad", "psnr_over_vs_truth"], np.mean(rows, axis=0).tolist()))
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", default="results")
    ap.add_argument("--demo", default="demo")
    ap.add_argument("--sheet", default="shots/shots.csv")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--png", help="write the hair-blonde alpha (truth | before | after) to this PNG")
    args = ap.parse_args()
    ba, rend = before_after(args), rendered(args)
    if args.png:
        plate, truth = hair_plate()
        strip = [truth] + [key_frames(plate[None], p)[0][0] for p in (BEFORE, AFTER)]
        cv2.imwrite(args.png, (np.concatenate(strip, 1) * 255 + 0.5).astype(np.uint8))
    print(f"keyer defaults before (BEFORE = {json.dumps(BEFORE)}) and after (today's defaults)")
    print(f"{'case':12} {'set':7} {'SAD':>7} {'MSE':>9} {'grad':>7} {'over':>7} {'under':>7} {'corner':>7}")
    for name, sets in ba.items():
        for label, m in sets.items():
            print(f"{name:12} {label:7} {m['sad']:7.3f} {m['mse']:9.5f} {m['grad']:7.3f} {m['over']:7.3f} "
                  f"{m['under']:7.3f} {m['corner']:7.3f}")
    if rend:
        print("\nrendered keys (results/<shot>/key) and the over composite vs the truth")
        print(f"{'shot':8} {'SAD':>8} {'MSE':>10} {'grad':>8} {'PSNR over vs truth':>20}")
        for shot, m in rend.items():
            print(f"{shot:8} {m['sad']:8.3f} {m['mse']:10.5f} {m['grad']:8.3f} "
                  f"{m.get('psnr_over_vs_truth', float('nan')):20.2f}")
    if args.json:
        print(json.dumps({"before_after": ba, "rendered": rend}))


if __name__ == "__main__":
    main()
