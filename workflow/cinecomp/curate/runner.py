"""Curate a clips sheet: each clip from footage (:mod:`.pipeline`) or from the renderer
(:mod:`.synthetic`, rows ``synthetic:<shot>``) or a path-traced shot (:mod:`.pathtraced`, rows
``pathtraced:<folder>``), then gathered into one dataset; and the two
Snakemake stages of rules/curate.smk."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import CinecompError
from .pipeline import (MANIFEST, Clip, CurateError, check_settings, clip_dir, clip_from_json, clip_rejected, curate_real,
                       gather, read_clips)


def curate_clip(clip: Clip, out_dir, settings: dict, perception: dict | None = None) -> list[dict]:
    """Curate one clip (real, synthetic or path-traced) into its own directory; a clip that cannot be curated at all
    becomes one rejected manifest row (its reason), never an exception that stops the other clips.
    Writes ``out_dir/manifest.csv`` and ``out_dir/index.json`` in every case."""
    import pandas as pd

    from ..atomic import atomic_path
    from ..io.dataset import INDEX, ShardWriter

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    try:
        if clip.synthetic:
            from .synthetic import curate_synthetic

            rows = curate_synthetic(clip, out_dir, settings)
        elif clip.kind == "pathtraced":
            from .pathtraced import curate_pathtraced

            rows = curate_pathtraced(clip, out_dir, settings)
        else:
            rows = curate_real(clip, out_dir, settings, perception)
        if not rows:
            rows = [clip_rejected(clip, f"no window of {settings['window']} frames", time.time() - t0)]
    except (CinecompError, ValueError) as exc:
        rows = [clip_rejected(clip, f"cannot be curated: {exc}", time.time() - t0)]
        ShardWriter(out_dir).close()  # an empty index: no stale shards of an earlier run are listed
    with atomic_path(out_dir / MANIFEST) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    return rows


def run(clips_csv, out_dir, settings: dict | None = None, perception: dict | None = None, log=print) -> dict:
    """Check the sheet, curate every clip, gather: the whole ``cinecomp curate``."""
    settings = check_settings(settings)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CurateError(out_dir, [f"--out {out_dir} is a file, not a directory (fix: name a new or existing "
                                    "dataset directory)"])
    clips = read_clips(clips_csv, settings)
    dirs = []
    for clip in clips:
        t0 = time.time()
        rows = curate_clip(clip, clip_dir(out_dir, clip.id), settings, perception)
        ok = sum(r["status"] == "accepted" for r in rows)
        log(f"{clip.id}: {ok} accepted, {len(rows) - ok} rejected ({time.time() - t0:.1f} s)")
        dirs.append(clip_dir(out_dir, clip.id))
    counts = gather(dirs, out_dir)
    log(f"{out_dir}: {counts['samples']} samples in {counts['shards']} shard(s); manifest {out_dir / MANIFEST}")
    return counts


def curate_stage(inputs, outputs, settings, log):
    """Rule curate_clip: one clip into its directory."""
    clip = clip_from_json(settings["clip"])
    rows = curate_clip(clip, outputs[0], check_settings(settings["settings"]), settings.get("perception"))
    ok = sum(r["status"] == "accepted" for r in rows)
    log.info("clip %s: %d window(s) accepted, %d rejected", clip.id, ok, len(rows) - ok)
    for r in rows:
        if r["status"] != "accepted":
            log.info("  %s: %s", r.get("key") or clip.id, r["reasons"])


def gather_stage(inputs, outputs, settings, log):
    """Rule curate: the per-clip directories into one index.json and manifest.csv."""
    counts = gather(list(inputs), Path(outputs["index"]).parent)
    log.info("curated: %s", counts)
