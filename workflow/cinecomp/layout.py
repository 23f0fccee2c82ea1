"""Where a shot's files go (docs/outputs.md), and which versions are published.

    <results>/<shot>/{ingest,key,masks,depth,light,composite,diffusion}/   work files, one set per shot,
                                                                          no version in their names
    <results>/<shot>/v<NNN>/comp/<shot>_comp_v<NNN>.<FFFF>.exr           the published version
    <results>/<shot>/v<NNN>/review/<shot>_v<NNN>_daily.mp4, _contact.png
    <results>/logs/<rule>/<shot>[_v<NNN>].log, <results>/benchmarks/...  with the run's results

A version is *published* once its daily and contact sheet exist (the last jobs of a shot). The
workflow never plans a job for a published version, so v001 and v002 sit side by side, rerunning a
sheet renders nothing it already published, and reverting a sheet to v001 leaves v001 as it was.
To render changes, raise the shot's ``version``; to redo a version on purpose, delete its folder.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the workflow's checkout: Snakefile, config.yaml, schemas/
SHARED_DATA = REPO.parent / "shared" / "data"  # real sample data beside the checkout, where present


def version_dir(results, shot: str, version: int) -> str:
    return f"{results}/{shot}/v{int(version):03d}"


def published_targets(results, shot: str, version: int) -> list[str]:
    """The comp frames' folder, the daily and the contact sheet of a version."""
    d, v = version_dir(results, shot, version), f"v{int(version):03d}"
    return [f"{d}/comp", f"{d}/review/{shot}_{v}_daily.mp4", f"{d}/review/{shot}_{v}_contact.png"]


def cost_report(results, shot: str, version: int) -> str:
    """The version's cost table (rules/review.smk `cost`): made once the version is published, not part of it."""
    return f"{version_dir(results, shot, version)}/review/{shot}_v{int(version):03d}_cost.html"


def is_published(results, shot: str, version: int) -> bool:
    """True once the version's daily and contact sheet exist."""
    return all(Path(p).is_file() for p in published_targets(results, shot, version)[1:])
