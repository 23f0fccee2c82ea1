"""Glue between Snakemake `script:` entry points and the package: logging, settings, errors."""

from __future__ import annotations

import inspect
import logging
import sys
import time
import traceback
from dataclasses import dataclass, field


@dataclass
class Job:
    """What a stage may need of its Snakemake job beyond its settings (not params: no rerun on change)."""

    threads: int = 1
    resources: dict = field(default_factory=dict)


def run(snakemake, stage) -> None:
    """Call ``stage(inputs, outputs, settings, log)`` with the job's log file as the log.

    ``settings`` is the rule's ``params.settings``; a stage with a ``job`` parameter also gets a
    :class:`Job` (threads, resources such as ``gpu``).  stdout/stderr of the stage go to the log too, and
    an exception is logged (with the shot) before it fails the job.
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
            stage(snakemake.input, snakemake.output, dict(snakemake.params.settings), log, **kwargs)
            log.info("shot %s: rule %s done in %.2f s", shot, snakemake.rule, time.perf_counter() - t0)
        except BaseException as exc:
            log.error("shot %s: rule %s failed: %s\n%s", shot, snakemake.rule, exc, traceback.format_exc())
            handler.flush()
            raise
        finally:
            sys.stdout, sys.stderr = stdout, stderr
