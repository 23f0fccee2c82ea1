# Shot sheet, config validation and helpers shared by every rule.
import functools
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from cinecomp import SOFTWARE  # noqa: E402
from cinecomp.errors import SheetError  # noqa: E402
from cinecomp.layout import cost_report, is_published, published_targets  # noqa: E402
from cinecomp.sheet import env_files, frame_files, load_sheet  # noqa: E402

validate(config, "../schemas/config.schema.yaml")

# Targets that never read the shot sheet (curation and training): asked for alone, they plan and
# run where no valid sheet exists (a clean checkout, a training box).
NO_SHEET_RULES = {"curate", "curate_clip", "train"}


def sheet_needed():
    """False when the command line asks only for NO_SHEET_RULES (targets, or a cluster job's
    --target-jobs); read with Snakemake's own parser, and True whenever in doubt."""
    try:
        from snakemake.cli import get_argument_parser

        args, _ = get_argument_parser().parse_known_args(sys.argv[1:])
    except (Exception, SystemExit):
        return True
    asked = set(getattr(args, "targets", None) or ())
    asked |= {str(j).split(":", 1)[0] for j in getattr(args, "target_jobs", None) or ()}
    return not asked or not asked <= NO_SHEET_RULES


ROWS = {}
if sheet_needed():
    try:
        SHOTS = load_sheet(
            config["shots"],
            movie_start=config["movie_start_frame"],
            composite_default=config["backends"]["composite"],
        )
    except SheetError as exc:
        raise WorkflowError(str(exc))
    # load_sheet has validated every row against schemas/shots.schema.yaml and filled its
    # defaults. Jobs look rows up in plain dicts: a pandas .loc per input/param function was a
    # third of the planning time of a 1000-shot sheet (bench/plan.py).
    ROWS = SHOTS.to_dict("index")

RESULTS = config["results"]


def check_diffusion_models():
    """Model directories of the `diffusion` backend, checked before any job runs."""
    shots = [s for s, row in ROWS.items() if backend(row, "composite") == "diffusion"]
    if not shots:
        return
    from cinecomp.diffusion.checks import check_diffusion_config

    problems = check_diffusion_config(config["diffusion"])
    if config["diffusion"].get("output") == "layers":
        no_env = [s for s in shots if not ROWS[s]["environment"]]
        if no_env:
            problems.append(
                f"diffusion.output 'layers' lays the model's light on an environment plate; shot(s) "
                f"{', '.join(no_env)} have none (fix: give them an environment, or set diffusion.output: frames)"
            )
    if problems:
        raise WorkflowError(
            f"shot(s) {', '.join(shots)} use the diffusion composite backend, but:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


def check_perception_models():
    """Learned perception backends (sam2, matanyone, model): every shot's model files checked
    before any job runs; each problem names the shots, the backend and the path."""
    from cinecomp.perception.models import check_shots

    problems = check_shots(ROWS, config["backends"], config["perception"])
    if problems:
        raise WorkflowError(
            "learned perception backends cannot run:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


def perception_settings(row, stage):
    """{"model": the learned backend's settings} for a learned backend; {} for a classical one, so a
    classical shot's params (and what they say about its finished outputs) stay as they were.
    """
    from cinecomp.perception.models import shot_settings

    settings = shot_settings(row, stage, backend(row, stage), config["perception"])
    return {} if settings is None else {"model": settings}


def perception_gpu(stage):
    """GPUs of a shot's job for `stage`: perception.gpus for a learned backend, else none."""

    def get(wildcards):
        from cinecomp.perception.models import LEARNED

        learned = backend(shot_row(wildcards), stage) in LEARNED[stage]
        return config["perception"]["gpus"] if learned else 0

    return get


def stage_env(stage):
    """--sdm conda: envs/perception.yaml (torch, sam2, transformers) for a learned backend's job,
    envs/core.yaml for the classical ones (paths relative to rules/)."""

    def get(wildcards):
        from cinecomp.perception.models import LEARNED

        learned = backend(shot_row(wildcards), stage) in LEARNED[stage]
        return "../envs/perception.yaml" if learned else "../envs/core.yaml"

    return get


wildcard_constraints:
    shot=r"[A-Za-z0-9][A-Za-z0-9_-]*",
    version=r"\d{3}",


def shot_row(wildcards):
    return ROWS[wildcards.shot]


@functools.cache
def shot_frame_files(shot):
    return frame_files(ROWS[shot])


@functools.cache
def shot_env_files(shot):
    return env_files(ROWS[shot])


def backend(row, stage):
    return row[f"{stage}_backend"] or config["backends"][stage]


def resource(rule_name, key):
    res = config["resources"]
    own = res.get(rule_name, {})
    value = own[key] if key in own else res["default"][key]
    # a retried job (--retries, profiles/slurm) asks for more memory each attempt
    if key == "mem_mb":
        return lambda wildcards, attempt: value * attempt
    return value


def exr_attrs(row):
    """Metadata every EXR of a shot carries (README "Outputs"). The version is only in the
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


# Per-stage settings of a shot. They are the rules' params, so editing one row of the
# sheet reruns only that shot, and only from the first stage the edit touches.
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


def ingest_env_settings(wildcards):
    row = shot_row(wildcards)
    return dict(
        source=row["env_path"],
        colourspace=row["env_colourspace"],
        first=int(row["first_frame"]),
        last=int(row["last_frame"]),
        resolution=[int(row["width"]), int(row["height"])],
        movie_start=config["movie_start_frame"],
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


@functools.cache
def model_id(path):
    from cinecomp.diffusion.checks import model_fingerprint

    return model_fingerprint(path)


def camera_params(row):
    from cinecomp.camera import parse_camera

    return parse_camera(row["camera"])


def masks_settings(wildcards):
    row = shot_row(wildcards)
    return dict(
        backend=backend(row, "masks"),
        prop_hint=row["prop_hint"],
        plate_size=[int(row["plate_width"]), int(row["plate_height"])],
        **perception_settings(row, "masks"),
        attrs=exr_attrs(row),
    )


def depth_inputs(wildcards):
    row = shot_row(wildcards)
    inputs = dict(masks=f"{RESULTS}/{wildcards.shot}/masks")
    if backend(row, "depth") == "plate":
        inputs["env"] = shot_env_files(wildcards.shot)
    if backend(row, "depth") == "model":
        inputs["env"] = f"{RESULTS}/{wildcards.shot}/ingest/env"
    return inputs


def depth_settings(wildcards):
    row = shot_row(wildcards)
    return dict(
        backend=backend(row, "depth"),
        camera=camera_params(row),
        env_source=row["env_path"],
        **perception_settings(row, "depth"),
        attrs=exr_attrs(row),
    )


def light_inputs(wildcards):
    row = shot_row(wildcards)
    inputs = {}
    if row["environment"]:
        inputs["env"] = f"{RESULTS}/{wildcards.shot}/ingest/env"
        if row["env_kind"] == "hdri":
            inputs["env_hdri"] = row["env_path"]
    if row["light_probe"]:
        inputs["probe"] = row["light_probe"]
    return inputs


def light_settings(wildcards):
    from cinecomp.perception.light import parse_light

    row = shot_row(wildcards)
    return dict(
        light=parse_light(row["light"]),
        camera=camera_params(row),
        env_colourspace=row["env_colourspace"],
        probe_colourspace=row["light_probe_colourspace"],
        probe_rotation_deg=float(row["light_probe_rotation_deg"] or 0.0),
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


def composite_settings(wildcards):
    row = shot_row(wildcards)
    settings = dict(backend=backend(row, "composite"), attrs=exr_attrs(row))
    if settings["backend"] == "harmonize":
        from cinecomp.composite.harmonize import parse_harmonize_params

        settings.update(
            camera=camera_params(row),
            harmonize=parse_harmonize_params(row["harmonize_params"]),
        )
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
            work_dir=f"{RESULTS}/{row['shot']}/diffusion",
            reference=row["reference"] or None,
            reference_role=row["reference_role"] or None,
            reference_colourspace=row["reference_colourspace"] or None,
        )
    return settings


def composite_inputs(wildcards):
    row = shot_row(wildcards)
    inputs = dict(
        key=f"{RESULTS}/{wildcards.shot}/key", masks=f"{RESULTS}/{wildcards.shot}/masks"
    )
    if backend(row, "composite") == "harmonize":
        inputs["depth"] = f"{RESULTS}/{wildcards.shot}/depth"
        inputs["light"] = f"{RESULTS}/{wildcards.shot}/light/light.json"
    if row["environment"]:  # else the diffusion backend synthesises it
        inputs["env"] = f"{RESULTS}/{wildcards.shot}/ingest/env"
    if row["reference"]:
        inputs["reference"] = row["reference"]
    if backend(row, "composite") == "diffusion":
        inputs["prompts"] = (
            f"{RESULTS}/{wildcards.shot}/diffusion/prompt_embeds.safetensors"
        )
    return inputs


def composite_resource(key):
    """Resources of a shot's composite job: `composite_diffusion` for the diffusion backend, with
    one GPU per rank (SLURM: --gpus=N --cpus-per-gpu=M); locally the ranks run on CPU cores.
    """

    def get(wildcards, attempt):
        if backend(shot_row(wildcards), "composite") != "diffusion":
            classical = {"gpu": 0, "cpus_per_gpu": 0, "cpus_per_task": 1}
            value = classical[key] if key in classical else resource("composite", key)
        elif key == "gpu":
            value = config["diffusion"]["ranks"]
        elif key == "cpus_per_task":
            value = 0  # SLURM: --cpus-per-gpu instead
        else:
            value = resource("composite_diffusion", key)
        return value(wildcards, attempt) if callable(value) else value

    return get


def composite_threads(wildcards):
    if backend(shot_row(wildcards), "composite") != "diffusion":
        return 1
    return config["diffusion"]["ranks"] * resource(
        "composite_diffusion", "cpus_per_gpu"
    )


def sheet_version(wildcards):
    """The version a versioned job renders: the sheet's. A target for another version (an old one
    named on the command line) is refused: it would be rendered with today's settings.
    """
    row = shot_row(wildcards)
    if int(wildcards.version) != int(row["version"]):
        raise WorkflowError(
            f"shot {row['shot']}: v{wildcards.version} was requested but the sheet says "
            f"v{int(row['version']):03d} (fix: ask for the sheet's version, or change the sheet)"
        )
    return int(row["version"])


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


# Rules whose jobs a shot's cost table sums (rules/review.smk, `cost`).
COST_RULES = [
    "ingest_plate",
    "ingest_env",
    "key",
    "masks",
    "depth",
    "light",
    "prompt_embeds",
    "composite",
    "assemble",
    "daily",
    "contact_sheet",
]


def cost_settings(wildcards):
    return dict(
        results=RESULTS,
        shot=wildcards.shot,
        version=sheet_version(wildcards),
        rules=COST_RULES,
    )


def all_outputs():
    """Per shot: the work files and the sheet's version. A deleted work folder is a missing
    target, so it and only what depends on it are rebuilt (Snakemake skips missing intermediates
    otherwise). A published version is left out: it is never rendered again (layout.py).
    """
    out, done = [], []
    for shot, row in ROWS.items():
        if is_published(RESULTS, shot, row["version"]):
            done.append(f"{shot} v{int(row['version']):03d}")
            continue
        if row["environment"]:
            out.append(f"{RESULTS}/{shot}/ingest/env")
        if backend(row, "composite") == "harmonize":
            out.append(f"{RESULTS}/{shot}/light/light.json")
        out += [
            f"{RESULTS}/{shot}/ingest/plate",
            f"{RESULTS}/{shot}/key",
            f"{RESULTS}/{shot}/masks",
            f"{RESULTS}/{shot}/depth",
            f"{RESULTS}/{shot}/composite",
            *published_targets(RESULTS, shot, row["version"]),
            cost_report(RESULTS, shot, row["version"]),
        ]
    if done:
        print(
            f"cinecomp: {len(done)} shot version(s) already published, not rendered again "
            f"(raise `version` in the sheet to render changes): {', '.join(done[:20])}"
            + (" ..." if len(done) > 20 else ""),
            file=sys.stderr,
        )
    return out


check_diffusion_models()
check_perception_models()
