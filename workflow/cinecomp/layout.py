"""Where a shot's files go (docs/outputs.md), and which versions are published.

    <results>/<shot>/{ingest/plate,ingest/env,key,masks,depth,light,composite,diffusion}/   work files,
                                                       one set per shot, no version in their names
    <results>/<shot>/v<NNN>/comp/<shot>_comp_v<NNN>.<FFFF>.exr           the published version
    <results>/<shot>/v<NNN>/review/<shot>_v<NNN>_daily.mp4, _contact.png (and _cost.html)
    <results>/logs/<rule>/<shot>[_v<NNN>].log, <results>/benchmarks/<rule>/<shot>[_v<NNN>].tsv

The rules (rules/*.smk) take every path from here. Each function accepts Snakemake wildcards in
place of a shot or a version: ``work_dir(results, "{shot}", "key")`` is the rule's output pattern
``<results>/{shot}/key``, and ``comp_dir(results, "{shot}", "{version}")`` is
``<results>/{shot}/v{version}/comp``; a version given as a number is written v<NNN>.

A version is *published* once its daily and contact sheet exist (the last jobs of a shot). The
workflow never plans a job for a published version, so v001 and v002 sit side by side, rerunning a
sheet renders nothing it already published, and reverting a sheet to v001 leaves v001 as it was.
To render changes, raise the shot's ``version``; to redo a version on purpose, delete its folder.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the workflow's checkout: Snakefile, config.yaml, schemas/
SHARED_DATA = REPO.parent / "shared" / "data"  # real sample data beside the checkout, where present


def version_tag(version) -> str:
    """'v002' for version 2 (or "2", "002"); a Snakemake wildcard "{version}" gives 'v{version}'."""
    if isinstance(version, str) and version.startswith("{"):
        return f"v{version}"
    return f"v{int(version):03d}"


# ------------------------------------------------------------------------------------- work files
def work_dir(results, shot: str, stage: str) -> str:
    """A shot's work folder of a stage: ``ingest/plate``, ``ingest/env``, ``key``, ``masks``,
    ``depth``, ``light``, ``composite``, ``diffusion`` (the diffusion backend's own files), ``harmonize``
    (harmonize's comp as the diffusion backend's input: rule harmonize_base)."""
    return f"{results}/{shot}/{stage}"


def light_file(results, shot: str) -> str:
    """The shot's light estimate (rules/light.smk)."""
    return f"{work_dir(results, shot, 'light')}/light.json"


def prompt_embeds_file(results, shot: str) -> str:
    """The shot's encoded prompt, made once for the diffusion backend (rules/composite.smk)."""
    return f"{work_dir(results, shot, 'diffusion')}/prompt_embeds.safetensors"


# ------------------------------------------------------------------------------ a published version
def version_dir(results, shot: str, version) -> str:
    return f"{results}/{shot}/{version_tag(version)}"


def comp_dir(results, shot: str, version) -> str:
    """The version's comp frames, <shot>_comp_v<NNN>.<FFFF>.exr (rules/assemble.smk)."""
    return f"{version_dir(results, shot, version)}/comp"


def review_file(results, shot: str, version, kind: str) -> str:
    """A review file of a version: kind ``daily.mp4``, ``contact.png`` or ``cost.html``."""
    return f"{version_dir(results, shot, version)}/review/{shot}_{version_tag(version)}_{kind}"


def daily_file(results, shot: str, version) -> str:
    return review_file(results, shot, version, "daily.mp4")


def contact_sheet_file(results, shot: str, version) -> str:
    return review_file(results, shot, version, "contact.png")


def published_targets(results, shot: str, version) -> list[str]:
    """The comp frames' folder, the daily and the contact sheet of a version."""
    return [comp_dir(results, shot, version), daily_file(results, shot, version),
            contact_sheet_file(results, shot, version)]


def cost_report(results, shot: str, version) -> str:
    """The version's cost table (rules/review.smk `cost`): made once the version is published, not part of it."""
    return review_file(results, shot, version, "cost.html")


def is_published(results, shot: str, version: int) -> bool:
    """True once the version's daily and contact sheet exist."""
    return all(Path(p).is_file() for p in published_targets(results, shot, version)[1:])


# ---------------------------------------------------------------------------- logs and benchmarks
def _job_name(shot: str, version=None) -> str:
    return shot if version is None else f"{shot}_{version_tag(version)}"


def log_file(results, rule: str, shot: str, version=None) -> str:
    """A job's log, <results>/logs/<rule>/<shot>[_v<NNN>].log (`shot` may be any job's name: a clip)."""
    return f"{results}/logs/{rule}/{_job_name(shot, version)}.log"


def benchmark_file(results, rule: str, shot: str, version=None) -> str:
    """A job's benchmark, <results>/benchmarks/<rule>/<shot>[_v<NNN>].tsv; a shot's cost table
    (farm.status.shot_cost) reads these."""
    return f"{results}/benchmarks/{rule}/{_job_name(shot, version)}.tsv"
