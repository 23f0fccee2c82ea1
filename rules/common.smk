# Shot sheet, config validation and helpers shared by every rule.
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from cinecomp import SOFTWARE  # noqa: E402
from cinecomp.errors import SheetError  # noqa: E402
from cinecomp.sheet import env_files, frame_files, load_sheet  # noqa: E402

validate(config, "../schemas/config.schema.yaml")

try:
    SHOTS = load_sheet(config["shots"], movie_start=config["movie_start_frame"])
except SheetError as exc:
    raise WorkflowError(str(exc))
validate(SHOTS, "../schemas/shots.schema.yaml")

RESULTS = config["results"]


wildcard_constraints:
    shot=r"[A-Za-z0-9][A-Za-z0-9_-]*",


def shot_row(wildcards):
    return SHOTS.loc[wildcards.shot]


def backend(row, stage):
    return row[f"{stage}_backend"] or config["backends"][stage]


def resource(rule_name, key):
    res = config["resources"]
    return res.get(rule_name, {}).get(key, res["default"][key])


def exr_attrs(row):
    """Metadata every EXR of a shot carries (README "Outputs")."""
    return {
        "shot": row["shot"],
        "version": int(row["version"]),
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
        attrs=exr_attrs(row),
    )


def composite_settings(wildcards):
    row = shot_row(wildcards)
    return dict(backend=backend(row, "composite"), attrs=exr_attrs(row))


def assemble_settings(wildcards):
    row = shot_row(wildcards)
    attrs = exr_attrs(row)
    attrs["owner"] = config["owner"] or os.environ.get("USER", "") or "unknown"
    attrs["backend"] = (
        f"key={backend(row, 'key')} composite={backend(row, 'composite')}"
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
        version=int(row["version"]),
        first=int(row["first_frame"]),
        fps=float(row["fps"]),
        **config["review"],
    )


def all_outputs():
    """Finals and the intermediates: a deleted intermediate is a missing target, so it and
    only what depends on it are rebuilt (Snakemake skips missing intermediates otherwise).
    """
    out = []
    for shot in SHOTS.index:
        out += [
            f"{RESULTS}/{shot}/ingest/plate",
            f"{RESULTS}/{shot}/ingest/env",
            f"{RESULTS}/{shot}/key",
            f"{RESULTS}/{shot}/composite",
            f"{RESULTS}/{shot}/comp",
            f"{RESULTS}/{shot}/review/{shot}_daily.mp4",
            f"{RESULTS}/{shot}/review/{shot}_contact.png",
        ]
    return out
