# The config and the shot sheet: the config checked against its schema, the sheet's rows loaded
# once (unless only a target that reads no sheet is asked for), and the look-ups every rule shares.
import functools
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from cinecomp import layout  # noqa: E402
from cinecomp.configfile import resolve_paths  # noqa: E402
from cinecomp.errors import SheetError  # noqa: E402
from cinecomp.sheet import env_files, frame_files, load_sheet  # noqa: E402

# relative paths in a --configfile are relative to that file, as every cinecomp command reads them
# (a value the files did not give, e.g. --config shots=X, is left relative to the run directory)
resolve_paths(config, [str(f) for f in workflow.overwrite_configfiles])
validate(config, "../schemas/config.schema.yaml")

RESULTS = config["results"]

# Targets that never read the shot sheet (curation and training): asked for alone, they plan and
# run where no valid sheet exists (a clean checkout, a training box).
NO_SHEET_RULES = {"curate", "curate_clip", "train"}


@functools.cache
def cli_args():
    """This Snakemake's command line, read with Snakemake's own parser (None when it cannot be)."""
    try:
        from snakemake.cli import get_argument_parser

        return get_argument_parser().parse_known_args(sys.argv[1:])[0]
    except (Exception, SystemExit):
        return None


def job_process():
    """True in a cluster job's own Snakemake (--target-jobs): the sheet was checked when the run was planned."""
    return bool(getattr(cli_args(), "target_jobs", None))


def sheet_needed():
    """False when the command line asks only for NO_SHEET_RULES (targets, or a cluster job's
    --target-jobs); True whenever in doubt."""
    args = cli_args()
    if args is None:
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
            depth_default=config["backends"]["depth"],
            check_screens=not job_process(),  # reads a plate frame per shot: once, when the run is planned
        )
    except SheetError as exc:
        raise WorkflowError(str(exc))
    # load_sheet has validated every row against schemas/shots.schema.yaml and filled its
    # defaults. Jobs look rows up in plain dicts: a pandas .loc per input/param function was a
    # third of the planning time of a 1000-shot sheet (bench/plan.py).
    ROWS = SHOTS.to_dict("index")


wildcard_constraints:
    shot=r"[A-Za-z0-9][A-Za-z0-9_-]*",
    version=r"\d{3}",


def shot_row(wildcards):
    return ROWS[wildcards.shot]


def backend(row, stage):
    """The shot's backend of a stage: the sheet's column, else config `backends`."""
    return row[f"{stage}_backend"] or config["backends"][stage]


@functools.cache
def shot_frame_files(shot):
    return frame_files(ROWS[shot])


@functools.cache
def shot_env_files(shot):
    return env_files(ROWS[shot])


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
