"""Curation's second source: the demo ray-marcher (demo.py) as unlimited pairs with exact ground truth.

A clips-sheet row ``synthetic:<eval shot>`` (``synthetic:ev03``: a scene of the eval set, evaluate.py)
or ``synthetic:random:<seed>`` (a scene drawn from the eval set's ranges: sun / lamp / overcast key at
any direction, colour and elevation; camera height, tilt, lens and heading; procedural skies, the real
HDRIs and photo backdrops of ../shared/data/backgrounds where present; ground materials; the plate's
exposure and white balance) renders ``window`` frames per sample and writes the true pair:

- target: the renderer's comp (character lit by the scene, its shadows and contact) and its depth;
- input: the renderer's plate (the character under the studio's light on chroma green) keyed by the
  project's chroma keyer (what the workflow feeds the model);
- environment: the renderer's environment alone; tri-mask: its character and prop masks;
- effect_mask: where the comp differs from the environment outside the character.

:func:`render_scene` is also what bench/curation.py uses to curate renderer shots *as if they were
real footage* (only the comp frames given) and compare with these truths.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from .pipeline import parse_synthetic



def random_scene(seed: int):
    """A DemoScene drawn from the eval set's ranges (module doc)."""
    from ..synth.renderer import BACKGROUNDS
    from ..synth.scenes import COOL_SUN, DUSK_SKY, EARTH, LOW_SUN, OVERCAST, STONE, WARM_SUN, WHITE_SUN, WOOD
    from ..synth.scenes import scene as make_scene

    rng = np.random.default_rng(seed)
    cam = dict(height=float(rng.uniform(0.8, 2.4)), tilt_deg=float(rng.uniform(-15, 2)),
               fov_deg=float(rng.uniform(30, 60)), dist=float(rng.uniform(4.5, 8.0)),
               heading_deg=float(rng.uniform(-30, 30)))
    ground = [STONE, EARTH, WOOD, {}][int(rng.integers(4))]
    fields: dict = dict(ground)
    key = rng.choice(["sun", "sun", "sun", "lamp", "none"])
    sun = None
    if key == "sun":
        sun = (float(rng.uniform(0, 360)), float(rng.uniform(12, 70)))
        fields["sun_rgb"] = [WARM_SUN, WHITE_SUN, COOL_SUN, LOW_SUN][int(rng.integers(4))]
        fields["shadow_k"] = float(rng.uniform(6, 16))
    elif key == "lamp":
        fields.update(key="lamp", lamp_pos=(float(rng.uniform(-2.5, 2.5)), float(rng.uniform(1.8, 2.8)),
                                            float(rng.uniform(-1.5, 0.5))),
                      lamp_rgb=tuple(float(v) for v in np.array([5.0, 3.6, 2.2]) * rng.uniform(0.7, 1.3)),
                      shadow_k=14.0, bounce=0.1)
    else:
        fields.update({k: v for k, v in OVERCAST.items() if k not in ground})
    env = rng.choice(["procedural", "dusk", "photo", "hdri"])
    photos = sorted(p.name for p in (BACKGROUNDS / "photos").glob("*.jpg"))
    hdris = sorted(p.name for p in (BACKGROUNDS / "hdri_equirect").glob("*.hdr"))
    if env == "dusk":
        fields.update(DUSK_SKY)
    elif env == "photo" and photos:
        fields.update(backdrop="photo", photo=photos[int(rng.integers(len(photos)))],
                      backdrop_z=float(rng.uniform(8, 11)), env_gain=float(rng.uniform(0.5, 1.2)))
    elif env == "hdri" and hdris and key != "lamp":
        fields.update(hdri=hdris[int(rng.integers(len(hdris)))], env_gain=float(rng.uniform(0.6, 1.5)))
    fields["plate_gain"] = tuple(float(v) for v in 2.0 ** rng.uniform(-0.5, 0.5) * (1 + rng.uniform(-0.1, 0.1, 3)))
    return make_scene(cam, sun=sun, align_hdri=False, **fields)


def scene_of(source: str):
    """(name, DemoScene) of a synthetic source."""
    from ..synth.scenes import eval_shots

    name, seed = parse_synthetic(source)
    if name == "random":
        return f"random{seed}", random_scene(seed)
    return name, next(s.scene for s in eval_shots() if s.name == name)


def render_scene(scene, frames: int, size: tuple[int, int], contact: float = 0.6, ss: int = 1) -> dict:
    """Every layer of ``frames`` frames of a scene (stacked (T, H, W[, 3]) scene-linear arrays; see
    demo.render_frame), with the hands reaching the box at ``contact`` of the shot."""
    from ..synth.renderer import render_frame

    scene = dataclasses.replace(scene, contact_at=contact * (frames - 1))
    out = [render_frame(i, size[0], size[1], scene, ss=ss) for i in range(frames)]
    return {k: np.stack([o[k] for o in out]) for k in out[0]}, scene


def studio_of(scene) -> dict:
    """The renderer's studio light (demo.render_frame's key, fill and flat term, times the plate gain)
    in curate.priors.studio_irradiance's terms and camera.py's world frame; irradiance x pi, as the
    light stage measures it (a matte of albedo a reflects a E / pi)."""
    from ..synth.renderer import to_camera_world, unit

    gain = np.asarray(scene.plate_gain, np.float64) * np.pi
    return {"direction": to_camera_world(unit((-0.5, 0.6, -0.8)), scene, point=False).tolist(),
            "key_rgb": (1.1 * gain).tolist(),
            "fill_direction": to_camera_world(unit((0.7, 0.2, -0.6)), scene, point=False).tolist(),
            "fill_dir_rgb": (0.35 * gain).tolist(), "fill_rgb": (0.12 * gain).tolist(), "exposure": None}


def true_pair(r: dict, scene=None) -> dict:
    """The exact sample of rendered layers ``r`` (module doc); with the ``scene`` also harmonize's comp
    (``harmonize_rgb``) from the sheet camera and light a set survey would give (as the eval's `given`
    light), the ground depth and the key, as the workflow's stages make them."""
    from ..camera import FAR
    from .pipeline import key_window, model_character, to_model
    from .priors import effect_mask, finite_depth

    alpha_k, fg_k = key_window(r["plate_rgb"])
    alpha = r["alpha"]
    tri = np.stack([r["char_mask"], r["prop_mask"], 1.0 - alpha], -1).astype(np.float32)
    depth = finite_depth(r["depth"], FAR)
    return {
        "target_rgb": to_model(r["gt_rgb"]), "target_depth": depth,
        "character_rgb": model_character(fg_k, alpha_k),
        "environment_rgb": to_model(r["env_rgb"]), "tri_mask": tri,
        "effect_mask": np.stack([effect_mask(r["gt_rgb"][i], r["env_rgb"][i], alpha[i]) for i in range(len(alpha))]),
        "character_depth": np.where(alpha > 0.5, depth, np.inf).astype(np.float32),
        **({} if scene is None else {"harmonize_rgb": scene_harmonize(r, scene, fg_k, alpha_k, tri)}),
    }, alpha_k


def scene_harmonize(r: dict, scene, fg_k, alpha_k, tri) -> np.ndarray:
    """Harmonize's comp of rendered layers ``r`` (see :func:`true_pair`), in the samples' encoding."""
    from ..synth.renderer import scene_camera, scene_light
    from .pipeline import survey_harmonize

    return survey_harmonize(fg_k, alpha_k, tri, r["env_rgb"], scene_camera(scene), scene_light(scene, len(tri)))


def curate_synthetic(clip, out_dir, settings: dict) -> list[dict]:
    """One synthetic clip: ``max_windows`` samples (at most 4), each a fresh render of ``window`` frames
    with the contact at a different point of the walk; all accepted (their truth is exact)."""
    from .pipeline import finish_clip, sample_size
    from ..io.dataset import ShardWriter
    from ..synth.renderer import scene_light

    t0 = time.time()
    name, scene = scene_of(clip.source)
    size = sample_size(16, 9, settings) if not settings["height"] else (int(settings["width"]), int(settings["height"]))
    t = int(settings["window"])
    n = min(int(settings["max_windows"]), 4)
    rows, sheet = [], []
    writer = ShardWriter(out_dir, int(settings["samples_per_shard"]), prefix=clip.id)
    for k in range(n):
        contact = [0.6, 0.2, 0.9, 0.4][k]
        r, sc = render_scene(scene, t, size, contact)
        sample, alpha_k = true_pair(r, sc)
        key = f"{clip.id}_w{k:03d}"
        meta = {"prompt": clip.prompt, "clip": clip.id, "source": "synthetic", "first_frame": 0, "window": k,
                "scene": name, "contact": contact, "light": scene_light(sc, t)}
        writer.write(key, {**sample, "meta": meta})
        row = {"clip": clip.id, "source": "synthetic", "path": clip.source, "window": k, "key": key,
               "first_frame": 0, "last_frame": t - 1, "status": "accepted", "reasons": "",
               "char_area": round(float((r["char_mask"] > 0.5).mean()), 4), "masks": "truth", "depth": "truth"}
        rows.append(row)
        sheet.append((row, {"sample": sample, "green": r["plate_rgb"], "alpha": alpha_k}))
    return finish_clip(writer, rows, sheet, out_dir, clip.id, t0)


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    from ..metrics import psnr_from_mse

    d = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    if mask is not None:
        m = np.broadcast_to(mask[..., None] if d.ndim == mask.ndim + 1 else mask, d.shape)
        if not m.any():
            return float("nan")
        return float(min(psnr_from_mse(float(d[m].mean())), 100.0))
    return float(min(psnr_from_mse(float(d.mean())), 100.0))


def pair_fidelity(scene, frames: int, size: tuple[int, int], settings: dict, given: bool = False,
                  studio: str = "renderer", seed: int = 0) -> dict:
    """Curate a renderer shot as if it were real footage (only its comp frames; with ``given`` also the
    survey's camera and light) and compare each window's curated pair with the renderer's truth, in the
    samples' display encoding: ``env_psnr`` (environment, whole frame), ``input_psnr`` (the keyed
    character, where either alpha > 0.05; relit to the renderer's own studio light so the two are
    comparable), ``input_psnr_overlap`` (the same where both alphas > 0.9: the de-lighting alone, without
    the masks' misses), ``mask_iou`` (alpha > 0.5); and baselines: ``env_psnr_frames`` (the comp frames
    themselves as the environment: no clean plate), ``input_psnr_cutout`` / ``input_psnr_overlap_cutout``
    (the character cut out of the comp as it is: no de-harmonization)."""
    from .pipeline import Clip, make_pair, priors, to_model, window_starts
    from ..synth.renderer import scene_camera, scene_light

    r, sc = render_scene(scene, frames, size)
    clip = Clip(id="fidelity", source="bench", row=0, camera=scene_camera(sc) if given else {},
                light=scene_light(sc, frames) if given else None)
    t0 = time.time()
    pri = priors(r["gt_rgb"], clip, settings)
    t = int(settings["window"])
    rng = np.random.default_rng(seed)
    out = []
    for s in window_starts(frames, settings):
        sl = slice(s, s + t)
        truth, _ = true_pair({k: v[sl] for k, v in r.items()})
        pair = make_pair(r["gt_rgb"], pri, sl, rng, studio=studio_of(sc) if studio == "renderer" else None)
        got = pair["sample"]
        a_true, a_got = 1 - truth["tri_mask"][..., 2], 1 - got["tri_mask"][..., 2]
        region = (a_true > 0.05) | (a_got > 0.05)
        cutout = to_model(r["gt_rgb"][sl]) * a_got[..., None]
        out.append({"env_psnr": _psnr(got["environment_rgb"], truth["environment_rgb"]),
                    "env_psnr_frames": _psnr(got["target_rgb"], truth["environment_rgb"]),
                    "input_psnr": _psnr(got["character_rgb"], truth["character_rgb"], region),
                    "input_psnr_cutout": _psnr(cutout, truth["character_rgb"], region),
                    "input_psnr_overlap": _psnr(got["character_rgb"], truth["character_rgb"], (a_true > 0.9) & (a_got > 0.9)),
                    "input_psnr_overlap_cutout": _psnr(cutout, truth["character_rgb"], (a_true > 0.9) & (a_got > 0.9)),
                    "mask_iou": float(((a_true > 0.5) & (a_got > 0.5)).sum() / max(((a_true > 0.5) | (a_got > 0.5)).sum(), 1))})
    keys = out[0].keys() if out else []
    res = {k: float(np.nanmean([o[k] for o in out])) for k in keys}
    res.update(windows=len(out), seconds=round(time.time() - t0, 2),
               light_confidence=float(pri["light"]["confidence"]), travel=None)
    from .pipeline import travel

    res["travel"] = travel(pri["character"] | pri["prop"])
    return res
