# Per-stage settings of a shot: the rules' params. Editing one row of the sheet reruns only that
# shot, and only from the first stage the edit touches. Each builder takes the job's wildcards.
import functools
import json
import os

from cinecomp import SOFTWARE, layout


def exr_attrs(row):
    """Metadata every EXR of a shot carries (docs/outputs.md). The version is only in the
    published comp (assemble_settings): raising it re-renders no work file."""
    # the plate's pixel aspect; NaN for a shot without a probed plate; square pixels add no key
    aspect = row.get("pixel_aspect", 1.0)
    square = aspect != aspect or float(aspect) == 1.0
    return {
        "shot": row["shot"],
        **({} if square else {"pixelAspectRatio": float(aspect)}),
        "framesPerSecond": float(row["fps"]),
        "software": SOFTWARE,
        "sourcePlate": row["plate"],
    }


def perception_settings(row, stage):
    """{"model": the learned backend's settings} for a learned backend; {} for a classical one, so a
    classical shot's params (and what they say about its finished outputs) stay as they were.
    """
    from cinecomp.perception.models import shot_settings

    settings = shot_settings(row, stage, backend(row, stage), config["perception"])
    return {} if settings is None else {"model": settings}


@functools.cache
def model_id(path):
    from cinecomp.diffusion.checks import model_fingerprint

    return model_fingerprint(path)


def camera_params(row):
    from cinecomp.camera import parse_camera

    return parse_camera(row["camera"])


def ingest_plate_settings(wildcards):
    row = shot_row(wildcards)
    return dict(
        source=row["plate_path"],
        colourspace=row["plate_colourspace"],
        first=int(row["first_frame"]),
        last=int(row["last_frame"]),
        resolution=[int(row["width"]), int(row["height"])],
        part=row["plate_part"] or None,
        view=row["plate_view"] or None,
        movie_start=config["movie_start_frame"],
        attrs=exr_attrs(row),
    )


def environment_fit(row):
    """How the environment meets the plate's frame (docs/shot-sheet.md#environment-fit): its
    ``fit`` and the plate's ``pixel_aspect``, each only when not the default (fill, square pixels),
    so the params of shots finished before the setting existed stay as they were."""
    from cinecomp.io.ingest import ENVIRONMENT_FIT, environment_fit_settings

    aspect = row.get("pixel_aspect", 1.0)
    fit = row["environment_fit"] or config.get("environment_fit", ENVIRONMENT_FIT)
    return environment_fit_settings(fit, 1.0 if aspect != aspect else float(aspect))


def ingest_env_settings(wildcards):
    row = shot_row(wildcards)
    return dict(
        source=row["env_path"],
        colourspace=row["env_colourspace"],
        first=int(row["first_frame"]),
        last=int(row["last_frame"]),
        resolution=[int(row["width"]), int(row["height"])],
        movie_start=config["movie_start_frame"],
        **environment_fit(row),
        attrs=exr_attrs(row),
    )


def key_settings(wildcards):
    row = shot_row(wildcards)
    return dict(
        backend=backend(row, "key"),
        params=json.loads(row["key_params"]) if row["key_params"] else {},
        **perception_settings(row, "key"),
        attrs=exr_attrs(row),
    )


def masks_settings(wildcards):
    row = shot_row(wildcards)
    return dict(
        backend=backend(row, "masks"),
        prop_hint=row["prop_hint"],
        plate_size=[int(row["plate_width"]), int(row["plate_height"])],
        **perception_settings(row, "masks"),
        attrs=exr_attrs(row),
    )


def depth_settings(wildcards):
    row = shot_row(wildcards)
    return dict(
        backend=backend(row, "depth"),
        camera=camera_params(row),
        env_source=row["env_path"],
        # the plate backend's Z meets the frame as the environment's RGB did
        **(environment_fit(row) if backend(row, "depth") == "plate" else {}),
        **perception_settings(row, "depth"),
        attrs=exr_attrs(row),
    )


def light_settings(wildcards):
    from cinecomp.perception.light import parse_light

    row = shot_row(wildcards)
    return dict(
        light=parse_light(row["light"]),
        camera=camera_params(row),
        env_colourspace=row["env_colourspace"],
        probe_colourspace=row["light_probe_colourspace"],
        # empty: registered to the environment plate (perception.light.register_probe_yaw)
        probe_rotation_deg=(
            float(row["light_probe_rotation_deg"])
            if row["light_probe_rotation_deg"]
            else None
        ),
        shot=row["shot"],
    )


def prompt_settings(wildcards):
    row, d = shot_row(wildcards), config["diffusion"]
    return dict(
        prompt=row["prompt"],
        negative_prompt=d["negative_prompt"],
        unconditional="encoded",  # "" is encoded, not zeros (caches made before this rerun)
        text_encoder=d["text_encoder"],
        tokenizer=d["tokenizer"],
        text_encoder_id=model_id(d["text_encoder"]),
        max_sequence_length=d["max_sequence_length"],
    )


def harmonize_settings(row):
    from cinecomp.composite.harmonize import parse_harmonize_params

    return dict(
        camera=camera_params(row),
        harmonize=parse_harmonize_params(row["harmonize_params"]),
        depth_backend=backend(row, "depth"),
    )


def harmonize_base_settings(wildcards):
    """The harmonize_base rule's settings: harmonize's comp of the shot, the diffusion model's starting point."""
    row = shot_row(wildcards)
    return dict(backend="harmonize", attrs=exr_attrs(row), **harmonize_settings(row))


def composite_settings(wildcards):
    row = shot_row(wildcards)
    settings = dict(backend=backend(row, "composite"), attrs=exr_attrs(row))
    if settings["backend"] == "harmonize":
        settings.update(harmonize_settings(row))
    if settings["backend"] == "diffusion":
        # ranks are not here: they change speed, not pixels (no rerun when they change)
        d = config["diffusion"]
        settings.update(
            {
                k: d[k]
                for k in (
                    "pipeline",
                    "steps",
                    "guidance",
                    "seed",
                    "window",
                    "overlap",
                    "output",
                    "layers_height",
                    "layers_blur",
                )
            },
            model_id=model_id(d["pipeline"]),
            model_colourspace=d["model_colourspace"],
            prompt=row["prompt"],
            negative_prompt=d["negative_prompt"],
            work_dir=layout.work_dir(RESULTS, row["shot"], "diffusion"),
            reference=row["reference"] or None,
            reference_role=row["reference_role"] or None,
            reference_colourspace=row["reference_colourspace"] or None,
        )
        if d.get("model_height"):  # only when set: finished shots' params stay the same
            settings["model_height"] = d["model_height"]
        if d.get("residual_zone", "all") != "all":
            settings["residual_zone"] = d["residual_zone"]
        if d.get("object_exposure", "model") != "model":
            settings["object_exposure"] = d["object_exposure"]
    return settings


def assemble_settings(wildcards):
    row = shot_row(wildcards)
    attrs = exr_attrs(row)
    attrs["version"] = sheet_version(wildcards)
    attrs["owner"] = config["owner"] or os.environ.get("USER", "") or "unknown"
    attrs["backend"] = (
        f"key={backend(row, 'key')} composite={backend(row, 'composite')}"
    )
    learned = {st: perception_settings(row, st) for st in ("key", "masks", "depth")}
    # which learned models made the layers, by their files' identity
    if any(learned.values()):
        attrs["perceptionModels"] = " ".join(
            f"{st}={backend(row, st)}:{s['model']['model_id']}"
            for st, s in learned.items()
            if s
        )
    return dict(
        first=int(row["first_frame"]),
        compression=config["exr"]["compression"],
        attrs=attrs,
    )


def review_settings(wildcards):
    row = shot_row(wildcards)
    return dict(
        shot=row["shot"],
        version=sheet_version(wildcards),
        first=int(row["first_frame"]),
        fps=float(row["fps"]),
        **config["review"],
    )


@functools.cache
def cost_rules():
    """Rules whose jobs a shot's cost table sums: every rule of the workflow with a benchmark file
    per shot (layout.benchmark_file), in the order they are defined, but `cost` itself. Asked for
    when a cost job is planned, so every rule file has been read."""
    return [
        r.name
        for r in workflow.rules
        if r.benchmark is not None and "shot" in r.wildcard_names and r.name != "cost"
    ]


def cost_settings(wildcards):
    return dict(
        results=RESULTS,
        shot=wildcards.shot,
        version=sheet_version(wildcards),
        rules=cost_rules(),
    )
