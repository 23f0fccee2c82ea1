# Helpers of rules/curate.smk (the clips sheet, per-clip settings); read only when a curate job is asked for.
import functools

from snakemake.exceptions import WorkflowError

CURATE = config.get("curate") or {}
CURATE_OUT = CURATE.get("out") or "curated"


@functools.lru_cache(maxsize=1)
def curate_clips():
    """The clips sheet, every row checked once (only when a curate job is asked for)."""
    from cinecomp.curate.pipeline import CurateError, check_settings, read_clips

    if not CURATE.get("clips"):
        raise WorkflowError(
            "curate: no clips sheet (fix: --config curate='{clips: clips.csv, out: curated}')"
        )
    try:
        settings = check_settings(CURATE.get("settings") or {})
        return settings, {
            c.id: c.to_json() for c in read_clips(CURATE["clips"], settings)
        }
    except (CurateError, ValueError) as exc:
        raise WorkflowError(str(exc))


def curate_sheet(wildcards):
    return CURATE["clips"] if CURATE.get("clips") else []


def curate_clip_settings(wildcards):
    settings, clips = curate_clips()
    if wildcards.clip not in clips:
        raise WorkflowError(
            f"curate: clip {wildcards.clip} is not in {CURATE['clips']}"
        )
    return dict(
        clip=clips[wildcards.clip],
        settings=settings,
        perception=config.get("perception") or {},
    )


def curate_clip_dirs(wildcards):
    _, clips = curate_clips()
    return [f"{CURATE_OUT}/clips/{c}" for c in clips]
