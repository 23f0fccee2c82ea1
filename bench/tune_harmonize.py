"""Tune harmonize_params on the eval set's `tune` split, in process, without rerunning the workflow.

Reads a finished `cinecomp eval --split tune --backends over,harmonize` directory (key, masks,
depth, light of every shot), reruns only the harmonize stage with each candidate setting and scores
it like `cinecomp eval` (display-encoded, against the truth). Prints one row per candidate with the
ratios to `over` that the issue's goals use. The defaults in harmonize.HARMONIZE_SPEC were chosen
here on the tune split; report numbers come from `cinecomp eval --split report`.

Usage: python bench/tune_harmonize.py EVAL_DIR [--light given|auto] [--grid 'relight=0.4,0.6;albedo=0.18,0.25']
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))  # this checkout's cinecomp

from cinecomp.layout import REPO  # noqa: E402

from cinecomp.evaluate import suite as evaluate  # noqa: E402
from cinecomp import stages  # noqa: E402
from cinecomp.composite.harmonize import parse_harmonize_params  # noqa: E402

GOALS = "shadow_err ratio <= 0.5, char_err ratio <= 0.7, no shot worse in psnr_full, flicker ratio <= 1"


def shot_inputs(results: Path, sid: str) -> SimpleNamespace:
    r = results / sid
    return SimpleNamespace(key=str(r / "key"), env=str(r / "ingest" / "env"), masks=str(r / "masks"),
                           depth=str(r / "depth"), light=str(r / "light" / "light.json"))


def run_candidate(results: Path, entries: list[dict], set_dir: Path, params: dict, tmp: Path) -> dict:
    """{shot: metrics} of harmonize with ``params`` on every entry."""
    log = logging.getLogger("tune")
    out = {}
    for e in entries:
        sid = evaluate.shot_id(e["shot"], "harmonize")
        inputs = shot_inputs(results, sid)
        camera = json.loads((Path(inputs.depth) / "contacts.json").read_text())["camera"]
        out_dir = tmp / sid / "comp"
        settings = {"harmonize": params, "camera": camera, "attrs": {"shot": sid, "version": 1, "framesPerSecond": 24}}
        stages.harmonize(inputs, [str(out_dir)], settings, log)
        frames = {int(p.name.rsplit(".", 2)[1]): p for p in sorted(out_dir.glob("*.exr"))}
        out[e["shot"]] = evaluate.score_shot(frames, e, set_dir)
    return out


def ratios(cand: dict, over: dict) -> dict:
    a, b = evaluate.average(cand), evaluate.average(over)
    worse = [s for s in cand if cand[s]["psnr_full"] < over[s]["psnr_full"]]
    return {"shadow_err": a["shadow_err"] / b["shadow_err"], "char_err": a["char_err"] / b["char_err"],
            "ber": a["shadow_ber"],
            "flicker": a["flicker"] / b["flicker"], "psnr_full": a["psnr_full"] - b["psnr_full"], "worse": worse}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval_dir")
    ap.add_argument("--light", default="given", choices=evaluate.LIGHT_MODES)
    ap.add_argument("--split", default="tune", choices=[*evaluate.SPLITS, "all"])
    ap.add_argument("--set", default="sdf", choices=["sdf", "pathtraced"], dest="eval_set",
                    help="which eval set EVAL_DIR was made with (cinecomp eval --set)")
    ap.add_argument("--pathtraced", default=None, help="with --set pathtraced: the shots' folder (default ../shared/data/pathtraced)")
    ap.add_argument("--grid", default="", help="'name=v1,v2;name2=v3' (JSON values); default: the defaults only")
    ap.add_argument("--per-shot", action="store_true", help="also print each shot's full-frame PSNR minus over's")
    args = ap.parse_args()
    out = Path(args.eval_dir).resolve()
    set_dir, results = out / "set", out / f"results_{args.light}"
    if args.eval_set == "pathtraced":
        from cinecomp.evaluate.pathtraced import make_pathtraced_set

        shots = make_pathtraced_set(set_dir, args.pathtraced, split=args.split)
    else:
        shots = json.loads((set_dir / "manifest.json").read_text())["shots"].values()
    entries = [e for e in shots if args.split in ("all", e["split"])
               and (results / evaluate.shot_id(e["shot"], "harmonize")).is_dir()]
    over = {e["shot"]: evaluate.score_shot(evaluate.comp_frames(results, evaluate.shot_id(e["shot"], "over")), e, set_dir)
            for e in entries}
    axes = [(k, [json.loads(v) for v in vals.split(",")]) for k, vals in
            (item.split("=") for item in args.grid.split(";") if item)]
    print(f"{len(entries)} {args.split} shots, light {args.light}; goals: {GOALS}")
    print(f"{'candidate':48} {'shadow':>7} {'char':>7} {'BER':>6} {'flicker':>7} {'dPSNR':>6}  worse")
    for combo in itertools.product(*[v for _, v in axes]) if axes else [()]:
        overrides = dict(zip([k for k, _ in axes], combo))
        params = parse_harmonize_params(json.dumps(overrides))
        with tempfile.TemporaryDirectory() as tmp:
            cand = run_candidate(results, entries, set_dir, params, Path(tmp))
        r = ratios(cand, over)
        print(f"{json.dumps(overrides) or 'defaults':48} {r['shadow_err']:7.3f} {r['char_err']:7.3f} {r['ber']:6.3f} "
              f"{r['flicker']:7.3f} {r['psnr_full']:+6.2f}  {','.join(r['worse'])}")
        if args.per_shot:
            print("    " + "  ".join(f"{s.split('_s0')[0].split('_')[0] if not s.startswith('bl_') else s[3:].split('_s0')[0]} {cand[s]['psnr_full'] - over[s]['psnr_full']:+.2f}/"
                                     f"{cand[s]['shadow_err'] / max(over[s]['shadow_err'], 1e-9):.2f}" for s in cand), flush=True)


if __name__ == "__main__":
    main()
