"""The ceiling of the learned compositor: a perfect model through each autoencoder, beside `harmonize` and `over`.

A perfect transformer returns the truth's latent (flow matching with Euler lands exactly on the clean
latent it predicts), so what reaches the comp is the truth through the autoencoder, and in `layers`
mode its light ratio laid on the `over` comp. This measures exactly that on the path-traced report
half, with the engine's own functions (model-space encoding, padding / resizing, the pipeline's latent
normalisation, ``apply_layers``), one window of the whole shot (12 frames held to 13):

* ``frames``: the truth (model space, padded to multiples of 16) -> encode -> decode, cropped;
* ``layers @ H``: the model runs at height H (``diffusion.layers_height``; 0 = the plate's own):
  ``over x blur(AE(truth)) / blur(AE(over))``;
* ``layers on harmonize``: a model with a harmonize base lays its change on harmonize's comp:
  ``harmonize x blur(AE(truth)) / blur(AE(harmonize))``;
* ``untrained harmonize-base model``: what an untrained ``harmonize_base`` transformer returns as
  frames (harmonize's comp through the AE); as layers it is harmonize's comp itself (ratio 1).

psnr is capped at 100 dB (the eval's cap): 100 means the truth exactly.

usage: python bench/ceiling.py --eval DIR [--md OUT.md] [--model-height 96] [--only-s2d]
  DIR: a finished `cinecomp eval --set pathtraced --split report --light given --backends over,harmonize --out DIR`
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from cinecomp.evaluate import suite  # noqa: E402
from cinecomp.evaluate.pathtraced import make_pathtraced_set  # noqa: E402
from cinecomp.io import exr as exrio  # noqa: E402

METRICS = ("psnr_full", "psnr_shadow", "char_err", "shadow_err")
MODEL_CS = "sRGB Encoded Rec.709 (sRGB)"  # config.yaml's diffusion.model_colourspace
SIGMA = 4.0  # config.yaml's diffusion.layers_blur
WINDOW = 13  # 12 frames held to 4n+1


def load_pipes():
    from cinecomp.diffusion.autoencoder import SpaceToDepthVAE
    from cinecomp.diffusion.pipeline import CinecompPipeline

    proof = CinecompPipeline.from_pretrained(str(REPO / "models" / "proof" / "pipeline"))
    s2d = CinecompPipeline(transformer=proof.transformer, vae=SpaceToDepthVAE(), scheduler=proof.scheduler)
    return {"tiny VAE (models/proof)": proof, "space-to-depth AE": s2d}


def through(pipe, video: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) model-space frames -> encode -> decode with the pipeline's own normalisation."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(video)).permute(3, 0, 1, 2)[None] * 2.0 - 1.0
    out = pipe.decode_latents(pipe.encode_video(x))
    return ((out[0] + 1.0) * 0.5).clamp(0.0, 1.0).permute(1, 2, 3, 0).numpy()


def hold(frames: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([frames, np.repeat(frames[-1:], n - len(frames), axis=0)]) if len(frames) < n else frames


def model_video(lin: np.ndarray, size: tuple[int, int], resize: bool) -> np.ndarray:
    from cinecomp.diffusion.shot import _fit, to_model_space

    return hold(np.stack([_fit(to_model_space(f, MODEL_CS), *size, resize) for f in lin]), WINDOW)


def score(outs: list[np.ndarray], truth: list[np.ndarray], envs, alphas) -> dict:
    per = [suite.frame_metrics(o, g, e, a) for o, g, e, a in zip(outs, truth, envs, alphas)]
    return {m: float(np.nanmean([p[m] for p in per])) for m in METRICS}


def shot_rows(entry: dict, set_dir: Path, results: Path, pipes: dict, model_heights=()) -> dict:
    from cinecomp.diffusion.light_ratio import apply_layers, frames_to_plate
    from cinecomp.diffusion.shot import from_model_space, layers_size, padded_size

    frames = range(entry["first"], entry["last"] + 1)
    truth_layers = [exrio.read_layers(set_dir / entry["truth"].replace("####", f"{f:04d}")) for f in frames]
    truth = [np.stack([t[c] for c in "RGB"], -1).astype(np.float32) for t in truth_layers]
    alphas = [t["alpha.A"] for t in truth_layers]
    envs = [suite.read_rgb(set_dir / entry["environment"].replace("####", f"{f:04d}")) for f in frames]
    comps = {b: suite.comp_frames(results, suite.shot_id(entry["shot"], b)) for b in ("over", "harmonize")}
    base = {b: [suite.read_rgb(comps[b][f]) for f in frames] for b in comps}
    n, (h, w) = len(truth), truth[0].shape[:2]
    rows = {b: score(base[b], truth, envs, alphas) for b in ("over", "harmonize")}
    for name, pipe in pipes.items():
        ph, pw = padded_size(h, w)
        rec = through(pipe, model_video(np.stack(truth), (ph, pw), False))
        outs = [from_model_space(rec[i, :h, :w], MODEL_CS) for i in range(n)]
        rows[f"perfect model, frames, {name}"] = score(outs, truth, envs, alphas)
        rec_h = through(pipe, model_video(np.stack(base["harmonize"]), (ph, pw), False))
        outs = [from_model_space(rec_h[i, :h, :w], MODEL_CS) for i in range(n)]
        rows[f"untrained harmonize-base model, frames, {name}"] = score(outs, truth, envs, alphas)
        for lh in (48, 0):
            size = layers_size(h, w, lh)
            model = through(pipe, model_video(np.stack(truth), size, True))
            over_rec = through(pipe, model_video(np.stack(base["over"]), size, True))
            outs = [apply_layers(base["over"][i], from_model_space(model[i], MODEL_CS),
                                 from_model_space(over_rec[i], MODEL_CS), SIGMA) for i in range(n)]
            at = f"{lh}px" if lh else f"plate height ({h} px, resized to {size[0]})"
            rows[f"perfect model, layers on over @ {at}, {name}"] = score(outs, truth, envs, alphas)
            harm_rec = through(pipe, model_video(np.stack(base["harmonize"]), size, True))
            outs = [apply_layers(base["harmonize"][i], from_model_space(model[i], MODEL_CS),
                                 from_model_space(harm_rec[i], MODEL_CS), SIGMA) for i in range(n)]
            rows[f"perfect harmonize-base model, layers on harmonize @ {at}, {name}"] = score(
                outs, truth, envs, alphas)
        for mh in model_heights:  # output frames at diffusion.model_height, back to the plate on harmonize
            size = layers_size(h, w, mh)
            model = through(pipe, model_video(np.stack(truth), size, True))
            harm_rec = through(pipe, model_video(np.stack(base["harmonize"]), size, True))
            outs = [frames_to_plate(from_model_space(model[i], MODEL_CS), base["harmonize"][i],
                                    from_model_space(harm_rec[i], MODEL_CS), SIGMA) for i in range(n)]
            rows[f"perfect harmonize-base model, frames @ model_height {mh} ({size[1]}x{size[0]}) back to the "
                 f"plate on harmonize, {name}"] = score(outs, truth, envs, alphas)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eval", required=True, type=Path, help="a finished over,harmonize eval of the report half")
    ap.add_argument("--md", type=Path, help="also write the table here")
    ap.add_argument("--model-height", type=int, action="append", default=[],
                    help="also: a perfect harmonize-base model's frames at this diffusion.model_height (repeatable)")
    ap.add_argument("--only-s2d", action="store_true", help="only the space-to-depth AE (not models/proof's VAE)")
    args = ap.parse_args()
    results = args.eval / "results_given"
    entries = make_pathtraced_set(args.eval / "set", split="report")
    pipes = load_pipes()
    if args.only_s2d:
        pipes = {k: v for k, v in pipes.items() if k == "space-to-depth AE"}
    per_shot = {e["shot"]: shot_rows(e, args.eval / "set", results, pipes, args.model_height) for e in entries}
    names = list(next(iter(per_shot.values())))
    lines = ["| | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for r in names:
        mean = {m: float(np.mean([per_shot[s][r][m] for s in per_shot])) for m in METRICS}
        lines.append(f"| {r} | " + " | ".join(f"{mean[m]:.4f}" if m.endswith("err") else f"{mean[m]:.2f}"
                                              for m in METRICS) + " |")
    table = "\n".join(lines)
    print(table)
    print("\npsnr_full per shot:")
    for s, rows in per_shot.items():
        print(f"  {s}: " + ", ".join(f"{r}: {rows[r]['psnr_full']:.2f}" for r in names))
    if args.md:
        args.md.write_text(table + "\n\n" + json.dumps(per_shot, indent=1) + "\n")


if __name__ == "__main__":
    main()
