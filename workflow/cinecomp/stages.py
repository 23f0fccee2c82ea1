"""One function per workflow rule: (inputs, outputs, settings, log) -> None.

Called by the thin scripts in scripts/ through jobs.run; settings are the rule's params.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .composite import assemble as assemble_mod
from .io import exr as exrio
from .composite.over import over
from .atomic import write_text
from .frames import FRAME_FILE, frame_path, sample_indices
from .jobs import Job, writes_frames


def element_frames(directory) -> list[tuple[int, Path]]:
    """(frame, path) of every project frame file in ``directory``, sorted by frame."""
    out = []
    for p in Path(directory).iterdir():
        m = FRAME_FILE.match(p.name)
        if m:
            out.append((int(m.group("frame")), p))
    if not out:
        raise FileNotFoundError(f"{directory}: no frames (fix: rerun the rule that makes it)")
    return sorted(out)


def _shot(settings) -> tuple[str, int | None]:
    """(shot, version); version None for work files (only the published comp carries one)."""
    a = settings["attrs"]
    return a["shot"], (int(a["version"]) if a.get("version") is not None else None)


@writes_frames
def ingest(inputs, outputs, settings, log):
    from .io.ingest import environment_fit_of, ingest as run_ingest

    shot, version = _shot(settings)
    out_dir = Path(outputs[0])
    element = out_dir.name  # "plate" or "env"
    out_dir.mkdir(parents=True, exist_ok=True)
    # the plate keeps its pixels (resized to the shot's resolution); the environment meets the plate's frame
    fit, aspect = ("stretch", None) if element == "plate" else environment_fit_of(settings)
    report = run_ingest(
        settings["source"], shot=shot, element=element, version=version, first=settings["first"],
        last=settings["last"], colourspace=settings["colourspace"], out_dir=out_dir,
        resolution=tuple(settings["resolution"]), part=settings.get("part"), view=settings.get("view"),
        movie_start=settings["movie_start"], fps=settings["attrs"]["framesPerSecond"],
        kind="plate" if element == "plate" else "environment", report_path=out_dir / "ingest_report.json",
        fit=fit, pixel_aspect=aspect, log=log,
    )
    repaired = sum(f.get("repaired", 0) for f in report.get("frames", []) if isinstance(f, dict))
    log.info("ingested %s %s frames %s-%s (%d non-finite pixels repaired)", shot, element,
             settings["first"], settings["last"], repaired)
    if report.get("clamped_total"):
        log.warning("shot %s: %s: %d pixels beyond the half-float range (+-65504) clamped to it (per frame: "
                    "ingest_report.json)", shot, element, report["clamped_total"])


@writes_frames
def key(inputs, outputs, settings, log):
    from .perception.key import key_shot

    shot, version = _shot(settings)
    if settings["backend"] not in ("chroma", "matanyone"):
        raise ValueError(f"shot {shot}: key backend {settings['backend']!r} is not available "
                         "(fix: use 'chroma' or 'matanyone')")
    plates = element_frames(inputs[0])
    out_dir = Path(outputs[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    out_files = [frame_path(out_dir, shot, "key", version, f) for f, _ in plates]
    if settings["backend"] == "matanyone":
        from .perception.matanyone import matanyone_key_shot

        report = matanyone_key_shot([p for _, p in plates], out_files, settings["params"],
                                    settings=settings["model"], attrs=settings["attrs"], log=log)
    else:
        report = key_shot([p for _, p in plates], out_files, settings["params"], attrs=settings["attrs"])
    log.info("keyed %d frames: %s", len(out_files), {k: v for k, v in report.items() if k != "frames"})


def read_trimask(path) -> dict[str, np.ndarray]:
    """{character, prop} of a masks-stage frame."""
    layers = exrio.read_layers(path)
    return {o: layers[f"mask.{o}"] for o in ("character", "prop")}


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1))


@writes_frames
def masks(inputs, outputs, settings, log):
    from .perception.masks import parse_prop_hint, track_masks

    shot, version = _shot(settings)
    if settings["backend"] not in ("track", "sam2"):
        raise ValueError(f"shot {shot}: masks backend {settings['backend']!r} is not available "
                         "(fix: use 'track' or 'sam2')")
    keys = element_frames(inputs[0])
    out_dir = Path(outputs[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    out_files = [frame_path(out_dir, shot, "masks", version, f) for f, _ in keys]
    hint = parse_prop_hint(settings["prop_hint"])
    if settings["backend"] == "sam2":
        from .perception.sam2_masks import sam2_masks

        report = sam2_masks(keys, out_files, hint=hint, plate_size=tuple(settings["plate_size"]),
                            settings=settings["model"], base_dir=Path.cwd(), attrs=settings["attrs"], log=log)
    else:
        report = track_masks(keys, out_files, hint=hint, plate_size=tuple(settings["plate_size"]),
                             base_dir=Path.cwd(), attrs=settings["attrs"], log=log)
    log.info("masks of %d frames: %s", len(keys), {k: v for k, v in report.items() if k != "frames"})


@writes_frames
def depth(inputs, outputs, settings, log):
    from .perception import depth as depth_mod
    from .camera import Camera

    shot, version = _shot(settings)
    mask_files = element_frames(inputs.masks)
    h, w = read_trimask(mask_files[0][1])["character"].shape
    env_src = run = None
    if settings["backend"] == "plate":
        from .io.ingest import environment_fit_of
        from .io.plates import frame_file

        env_src = settings["env_source"]
        fit, aspect = environment_fit_of(settings)  # the Z meets the frame as the environment's RGB did

    read_z: dict = {}  # the middle frame's Z read for the camera estimate, kept for its frame of the loop

    def env_plate_z(frame):
        if frame in read_z:
            return read_z.pop(frame)
        layers, _ = exrio.read_exr(frame_file(env_src, frame))
        env_z = depth_mod.plate_depth(layers, (w, h), fit, exrio.pixel_aspect(frame_file(env_src, frame)), aspect)
        if env_z is None:
            raise ValueError(f"shot {shot}: depth backend 'plate' but {frame_file(env_src, frame)} has no Z channel "
                             "(fix: use depth_backend ground, or give an environment with a Z/depth.Z channel)")
        return env_z

    def env_plate_z_kept(frame):
        read_z[frame] = env_plate_z(frame)
        return read_z[frame]

    # the camera: the sheet's, else from the pictures (the environment's Z on the plate backend, the actors)
    from .perception.camera_estimate import estimate_camera

    estimate = estimate_camera(
        settings["camera"], w, h,
        env_z=env_plate_z_kept(mask_files[len(mask_files) // 2][0]) if env_src is not None and not settings["camera"] else None,
        masks_per_frame=None if settings["camera"] else [read_trimask(p) for _, p in mask_files])
    camera = Camera.from_params(estimate["params"])
    contacts = depth_mod.object_contacts(camera, (read_trimask(p) for _, p in mask_files), w, h)
    ground = camera.ground_depth(w, h)
    if settings["backend"] == "model":
        from .perception.depth_model import DepthRun

        run, envs = DepthRun(ground, settings["model"]), dict(element_frames(inputs.env))
    out_dir = Path(outputs[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, (frame, path) in enumerate(mask_files):
        env_z = ground
        if run is not None:
            if frame not in envs:
                raise FileNotFoundError(f"shot {shot}: environment frame {frame} missing in {inputs.env} "
                                        "(fix: rerun ingest_env)")
            env_z = run.depth(exrio.read_rgba(envs[frame]))
        if env_src is not None:
            env_z = env_plate_z(frame)
        c = {**{o: None if contacts[o][i] is None else np.asarray(contacts[o][i]) for o in depth_mod.OBJECTS},
             "actors": contacts["actors"][i]}
        z = depth_mod.shot_depth(env_z, read_trimask(path), c, camera)
        exrio.write_exr(frame_path(out_dir, shot, "depth", version, frame),
                        {"depth.Z": z, "environment.Z": env_z.astype(np.float32)}, compression="zip",
                        attrs={**settings["attrs"], "frame": frame})
    # the camera the depth was made with (the sheet's or the estimate) and where it came from: the light
    # stage and harmonize use the same one
    contacts_json = {"frames": [f for f, _ in mask_files], "camera": estimate["params"],
                     "camera_estimate": {k: estimate[k] for k in ("source", "confidence", "notes")},
                     **{o: [None if p is None else [float(x) for x in p] for p in contacts[o]] for o in depth_mod.OBJECTS},
                     # one contact per actor of the character mask, per frame (left to right)
                     "actors": [[None if p is None else [float(x) for x in p] for p in frame] for frame in contacts["actors"]]}
    write_json(out_dir / "contacts.json", contacts_json)
    log.info("depth (%s) of %d frames; camera %s (%s, confidence %.2f: %s)%s", settings["backend"], len(mask_files),
             camera, estimate["source"], estimate["confidence"], "; ".join(estimate["notes"]),
             f"; model {run.report()}" if run is not None else "")


def _equirect(path, colourspace: str | None) -> np.ndarray:
    """An equirectangular image in ACEScg; default colourspace by extension."""
    from . import colour
    from .io.plates import read_image

    cs = colourspace or ("Linear Rec.709 (sRGB)" if str(path).lower().endswith(".hdr") else "ACEScg")
    rgb = np.ascontiguousarray(read_image(path)[..., :3], np.float32)
    return colour.convert(rgb, cs, colour.WORKING_SPACE)


def light(inputs, outputs, settings, log):
    from .camera import Camera
    from .perception.light import estimate_light

    camera_params, camera_confidence = settings["camera"], None
    if "depth" in inputs.keys():  # the depth stage's camera: the sheet's, or estimated from the pictures
        made = json.loads((Path(inputs.depth) / "contacts.json").read_text())
        if "camera_estimate" in made and not settings["camera"]:
            camera_params, camera_confidence = made["camera"], made["camera_estimate"]["confidence"]
    camera = Camera.from_params(camera_params)
    env_frames = env_z = None
    if "env" in inputs.keys():
        frames = element_frames(inputs.env)
        picks = [frames[i] for i in sample_indices(len(frames), 5)]  # one estimate
        env_frames = [exrio.read_rgba(p)[..., :3] for _, p in picks]
        if "depth" in inputs.keys():  # the environment's Z at the middle pick: its geometry's shading
            depths = dict(element_frames(inputs.depth))
            middle = picks[len(picks) // 2][0]
            if middle in depths:
                env_z = exrio.read_layers(depths[middle])["environment.Z"]
    env_hdri = _equirect(inputs.env_hdri, settings["env_colourspace"]) if "env_hdri" in inputs.keys() else None
    probe = _equirect(inputs.probe, settings["probe_colourspace"]) if "probe" in inputs.keys() else None
    if probe is not None:  # the sheet refuses such a probe; it may have changed since
        from .errors import PlateError
        from .perception.light import probe_problem

        problem = probe_problem(probe)
        if problem:
            raise PlateError(inputs.probe, f"light_probe {problem[0]}", problem[1], shot=settings["shot"])
    est = estimate_light(sheet_light=settings["light"], camera=camera, env_frames=env_frames, env_hdri=env_hdri,
                         probe=probe, probe_rotation_deg=settings["probe_rotation_deg"], env_z=env_z)
    from .perception.light import shot_light_json

    est = shot_light_json(est, camera_params, camera_confidence)  # + the camera, its confidence, the up shares
    Path(outputs[0]).parent.mkdir(parents=True, exist_ok=True)
    write_json(outputs[0], est)
    log.info("light of %s: %s", settings["shot"], est)


def prompt_embeds(inputs, outputs, settings, log):
    from .diffusion.prompts import encode_prompts

    # the negative prompt is always encoded: an empty one is Wan's unconditional embedding, the
    # encoding of "" (its end-of-sequence token), not zeros
    prompts = [settings["prompt"], settings["negative_prompt"]]
    encode_prompts(settings["text_encoder"], prompts, outputs[0], tokenizer_dir=settings["tokenizer"] or None,
                   max_sequence_length=settings["max_sequence_length"])
    log.info("prompt embeddings of %s cached in %s", prompts, outputs[0])


@writes_frames
def composite(inputs, outputs, settings, log, job=None):
    shot, version = _shot(settings)
    if settings["backend"] == "diffusion":
        from .diffusion.shot import composite_shot

        job = job or Job()
        envs = element_frames(inputs.env) if "env" in inputs.keys() else None
        composite_shot(element_frames(inputs.key), envs, inputs.prompts, outputs[0], settings["work_dir"], settings,
                       log, ranks=max(1, int(job.resources.get("gpu") or 1)), threads=job.threads,
                       mask_files=element_frames(inputs.masks),
                       harmonize_files=element_frames(inputs.harmonize) if "harmonize" in inputs.keys() else None)
        return
    if settings["backend"] == "harmonize":
        return harmonize(inputs, outputs, settings, log)
    if settings["backend"] != "over":
        raise ValueError(f"shot {shot}: composite backend {settings['backend']!r} is not available "
                         "(fix: use 'over', 'harmonize' or 'diffusion')")
    keys = element_frames(inputs.key)
    envs = dict(element_frames(inputs.env))
    out_dir = Path(outputs[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    for frame, key_file in keys:
        k = exrio.read_rgba(key_file)
        if frame not in envs:
            raise FileNotFoundError(f"shot {shot}: environment frame {frame} missing in {inputs.env}")
        env = exrio.read_rgba(envs[frame])
        rgb = over(k[..., :3], k[..., 3], env[..., :3])
        rgba = np.concatenate([rgb, np.ones_like(rgb[..., :1])], axis=-1)
        exrio.write_rgba(frame_path(out_dir, shot, settings["backend"], version, frame), rgba,
                         attrs={**settings["attrs"], "frame": frame, "backend": settings["backend"]})
    log.info("composited %d frames with %s", len(keys), settings["backend"])


def harmonize(inputs, outputs, settings, log):
    from .composite import harmonize as hz
    from .camera import Camera

    shot, version = _shot(settings)
    contacts = json.loads((Path(inputs.depth) / "contacts.json").read_text())
    # the camera the depth stage used (the sheet's, or estimated from the pictures)
    params, camera = settings["harmonize"], Camera.from_params(contacts.get("camera", settings["camera"]))
    if params["holdout"] is None:  # a given Z (plate) holds the actor out where the set is nearer; a guess does not
        params = {**params, "holdout": 1.0 if settings.get("depth_backend") == "plate" else 0.0}
    light = hz.ShotLight.from_json(json.loads(Path(inputs.light).read_text())).trusted()  # each effect as far as it is known
    keys = element_frames(inputs.key)
    envs, masks, depths = (dict(element_frames(d)) for d in (inputs.env, inputs.masks, inputs.depth))
    for frame, _ in keys:
        for what, files in (("environment", envs), ("masks", masks), ("depth", depths)):
            if frame not in files:
                raise FileNotFoundError(f"shot {shot}: {what} frame {frame} missing (fix: rerun its rule)")

    picks = [keys[i] for i in sample_indices(len(keys), 6)]  # the per-shot grade from 6 frames
    grade = hz.shot_grade([(exrio.read_rgba(p), read_trimask(masks[f])) for f, p in picks], light, camera, params)
    log.info("shot %s: gain %s, exposure %s, plate shading %s, light %s", shot, grade.gain, grade.exposure,
             grade.plate_shading, light)
    out_dir = Path(outputs[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    # what the grade rests on, beside the frames (light.json has the light's half of the exposure's confidence)
    write_json(out_dir / "grade.json", {"gain": [float(g) for g in grade.gain], "exposure": grade.exposure,
                                        "plate_shading": [float(c) for c in grade.plate_shading]})
    for i, (frame, key_file) in enumerate(keys):
        contact = {o: contacts[o][i] for o in ("character", "prop")}
        contact["actors"] = contacts["actors"][i] if "actors" in contacts else None  # an older contacts.json: one
        env_z = exrio.read_layers(depths[frame])["environment.Z"]
        beauty, layers = hz.harmonize_frame(exrio.read_rgba(key_file), exrio.read_rgba(envs[frame])[..., :3],
                                            read_trimask(masks[frame]), env_z, contact, light, grade, camera, params)
        attrs = {**settings["attrs"], "frame": frame, "backend": "harmonize"}
        chans = exrio.half_channels({**{c: beauty[..., k] for k, c in enumerate("RGBA")}, **layers}, attrs)
        exrio.write_exr(frame_path(out_dir, shot, "harmonize", version, frame), chans, attrs=attrs)
    log.info("harmonized %d frames", len(keys))


@writes_frames
def assemble(inputs, outputs, settings, log):
    shot, version = _shot(settings)
    comps = element_frames(inputs.composite)
    masks, depths = dict(element_frames(inputs.masks)), dict(element_frames(inputs.depth))
    out_dir = Path(outputs[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    for frame, comp_file in comps:
        layers = exrio.read_layers(comp_file)
        beauty = exrio.rgba_from_layers(layers)
        tri = {k: v for k, v in exrio.read_layers(masks[frame]).items() if k in assemble_mod.MASK_LAYERS}
        depth = exrio.read_layers(depths[frame])["depth.Z"]
        extra = {k: v for k, v in layers.items() if k not in ("R", "G", "B", "A")}
        if "depth.Z" in extra:  # the diffusion backend's joint depth
            extra["diffusion.Z"] = extra.pop("depth.Z")
        assemble_mod.write_comp_frame(frame_path(out_dir, shot, "comp", version, frame), beauty, tri, depth,
                                      frame=frame, compression=settings["compression"], attrs=settings["attrs"],
                                      extra=extra)
    log.info("assembled %d frames (%s)", len(comps), settings["compression"])


def daily(inputs, outputs, settings, log):
    from .review.media import make_daily

    files = [p for _, p in element_frames(inputs[0])]
    info = make_daily(files, outputs[0], shot=settings["shot"], version=settings["version"],
                      first_frame=settings["first"], fps=settings["fps"], display=settings["display"],
                      view=settings["view"], min_height=settings["daily_min_height"])
    log.info("daily: %s", info)


def contact_sheet(inputs, outputs, settings, log):
    from .review.media import make_contact_sheet

    files = [p for _, p in element_frames(inputs[0])]
    info = make_contact_sheet(files, outputs[0], shot=settings["shot"], version=settings["version"],
                              columns=settings["contact_columns"])
    log.info("contact sheet: %s", info)
