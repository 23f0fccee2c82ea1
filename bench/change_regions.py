"""Where did a harmonize-base model change harmonize's comp, and was the change nearer the truth there?

For each shot of a diffusion eval (``cinecomp eval --backends diffusion``), beside an eval of the same
shots with ``over`` and ``harmonize`` (the untrained eval bench/train_proof_harmonize.py writes): the
squared error of the model's comp minus harmonize's (display-encoded, the metrics' space, summed over
the frames; negative: the model is nearer the truth) and the model's mean change of luminance, over
the regions that decide a zone (``diffusion.residual_zone``):

- ``shade, shadow`` / ``shade, lit``: where harmonize drew shade (``light_ratio.drawn_shade``: its comp darker
  than `over`), inside / outside the truth's shadows (the metrics' shadow region);
- ``margin, shadow`` / ``margin, lit``: the ring ``light_ratio.grown_shade`` adds around that shade;
- ``actors``: the key's alpha > 0.05.

Usage: python bench/change_regions.py MODEL_EVAL BASE_EVAL
       (e.g. /tmp/proofpb/eval_tune_seed0_bo_cos1600_zone_shadows_only_layers /tmp/proofpb/eval_tune_untrained)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))  # this checkout's cinecomp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_eval", type=Path)
    ap.add_argument("base_eval", type=Path, help="an eval of the same shots with the over and harmonize backends")
    args = ap.parse_args()

    import numpy as np

    from cinecomp import metrics
    from cinecomp.colour import luminance
    from cinecomp.diffusion.light_ratio import drawn_shade, grown_shade
    from cinecomp.evaluate.suite import comp_frames, display, read_rgb
    from cinecomp.io import exr as exrio

    results, base = args.model_eval / "results_given", args.base_eval / "results_given"
    shots = sorted(p.name.rsplit("_", 1)[0] for p in results.glob("*_diffusion"))
    if not shots:
        raise SystemExit(f"{results}: no *_diffusion shot directories (fix: give a `cinecomp eval --backends diffusion` "
                         "output directory)")
    regions = ("shade, shadow", "shade, lit", "margin, shadow", "margin, lit", "actors")
    print("| shot | " + " | ".join(f"{r}: px / dSE / dL" for r in regions) + " |")
    print("|---|" + "---|" * len(regions))
    for shot in shots:
        model, harm, over = (comp_frames(d, f"{shot}_{b}") for d, b in
                             ((results, "diffusion"), (base, "harmonize"), (base, "over")))
        set_dir = args.base_eval / "set" / shot
        missing = [n for n, c in (("diffusion", model), ("harmonize", harm), ("over", over)) if not c]
        if missing:
            raise SystemExit(f"shot {shot}: no {', '.join(missing)} comp frames (fix: run the eval with those backends)")
        acc = {r: [0, 0.0, 0.0] for r in regions}
        for frame in sorted(model):
            m_lin, h_lin, o_lin = read_rgb(model[frame]), read_rgb(harm[frame]), read_rgb(over[frame])
            truth = read_rgb(next(set_dir.glob(f"truth/*.{frame}.exr")))
            env = read_rgb(next(set_dir.glob(f"env/*.{frame}.exr")))
            key = next((base / f"{shot}_harmonize" / "key").glob(f"*.{frame}.exr"))
            alpha = exrio.read_rgba(key)[..., 3]
            shade = drawn_shade(h_lin, o_lin)
            margin = grown_shade(shade) & ~shade
            shadow = metrics.shadow_region(truth, env, alpha)
            lit = ~shadow & (alpha < 0.05)
            t, m, h = display(truth), display(m_lin), display(h_lin)
            d_se = ((m - t) ** 2 - (h - t) ** 2).sum(-1)
            d_l = luminance(m) - luminance(h)
            for r, where in zip(regions, (shade & shadow, shade & lit, margin & shadow, margin & lit, alpha > 0.05)):
                acc[r][0] += int(where.sum())
                acc[r][1] += float(d_se[where].sum())
                acc[r][2] += float(d_l[where].sum())
        print(f"| {shot} | " + " | ".join(f"{n} / {se:+.2f} / {dl / max(n, 1):+.4f}" for n, se, dl in acc.values()) + " |")


if __name__ == "__main__":
    main()
