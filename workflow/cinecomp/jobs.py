"""Glue between Snakemake `script:` entry points and the package: logging, settings, errors."""

from __future__ import annotations

import contextlib
import inspect
import logging
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field

from .atomic import publish_dir
from .frames import check_frames, frames_in_dir


@dataclass
class Job:
    """What a stage may need of its Snakemake job beyond its settings (not params: no rerun on change)."""

    threads: int = 1
    resources: dict = field(default_factory=dict)


def writes_frames(stage):
    """Mark a stage whose first output is a directory of frames: :func:`run` publishes it whole (written
    in a hidden directory beside it, renamed into place) and only once it holds every frame of its range."""
    stage.writes_frames = True
    return stage


def expected_frames(inputs, settings: dict) -> list[int]:
    """The frames a frame stage's output must hold: the settings' first..last (ingest: the sheet's range),
    else every frame from the first to the last its input directories hold (a gap in an input is caught too)."""
    if "first" in settings and "last" in settings:
        return list(range(int(settings["first"]), int(settings["last"]) + 1))
    have = [f for path in inputs for f in frames_in_dir(path)]
    return list(range(min(have), max(have) + 1)) if have else []


def _terminated(signum, frame):
    raise SystemExit(128 + signum)  # scancel's SIGTERM unwinds: no temporary directory is left behind


def run(snakemake, stage) -> None:
    """Call ``stage(inputs, outputs, settings, log)`` with the job's log file as the log.

    ``settings`` is the rule's ``params.settings``; a stage with a ``job`` parameter also gets a
    :class:`Job` (threads, resources such as ``gpu``).  stdout/stderr of the stage go to the log too, and
    an exception is logged (with the shot) before it fails the job. A :func:`writes_frames` stage's output
    appears only complete (every frame of :func:`expected_frames`), or not at all.
    """
    log_path = snakemake.log[0]
    open(log_path, "w").close()  # every writer appends (O_APPEND), so a child process's output is not overwritten
    handler = logging.FileHandler(log_path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    log = logging.getLogger(f"cinecomp.{snakemake.rule}")
    shot = snakemake.wildcards.get("shot", "?")
    import OpenEXR

    OpenEXR.set_global_thread_count(max(1, int(getattr(snakemake, "threads", 1) or 1)))
    signal.signal(signal.SIGTERM, _terminated)
    t0 = time.perf_counter()
    with open(log_path, "a") as fh:
        stdout, stderr = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = fh
        try:
            log.info("shot %s: rule %s starts", shot, snakemake.rule)
            kwargs = {}
            if "job" in inspect.signature(stage).parameters:
                res = {k: v for k, v in snakemake.resources.items() if not k.startswith("_")}
                kwargs["job"] = Job(int(getattr(snakemake, "threads", 1) or 1), res)
            settings, outputs = dict(snakemake.params.settings), list(snakemake.output)
            with contextlib.ExitStack() as publish:
                if getattr(stage, "writes_frames", False):
                    frames = expected_frames(snakemake.input, settings)
                    final = outputs[0]
                    outputs[0] = str(publish.enter_context(publish_dir(final, lambda d: check_frames(
                        d, frames, shot=shot, name=final))))
                stage(snakemake.input, outputs, settings, log, **kwargs)
            log.info("shot %s: rule %s done in %.2f s", shot, snakemake.rule, time.perf_counter() - t0)
        except BaseException as exc:
            log.error("shot %s: rule %s failed: %s\n%s", shot, snakemake.rule, exc, traceback.format_exc())
            handler.flush()
            raise
        finally:
            sys.stdout, sys.stderr = stdout, stderr
