"""`cinecomp submit`: the Snakemake controller itself as a SLURM job (overnight renders).

The controller is the main Snakemake process with `--profile profiles/slurm`; from inside its SLURM job
it submits one job per rule per shot, as from a login node (snakemake-executor-plugin-slurm >= 2.x
detects the job context, warns, and clears the SLURM_* variables it inherited before submitting).

    cinecomp submit [--begin 22:00] [--time 10:00:00] [--shots sh010,sh020] [--sheet S] [-- SNAKEMAKE ARGS]

Everything is checked before anything is submitted: `--begin` (a time of day: the next one; a date and
time, not in the past; `now+N[s|m|h]`), `--time` (a SLURM time limit), `sbatch` on PATH, the sheet and
the shots, the controller log directory writable. The job (name `cinecomp-<dir>-<hash>`, one per run
directory at a time through `--dependency=singleton`) logs to `<results>/logs/controller/<jobid>.log`;
its script first cancels rule jobs an earlier controller of the same directory left behind (a
controller killed mid-run) and waits until they have ended (at most CANCEL_WAIT_S; past that it stops,
naming them), unlocks the directory, then runs Snakemake with `--rerun-incomplete` (the
profile's), so half-made outputs are redone and finished ones are kept.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import subprocess
import sys
import tempfile
import time
from ..errors import CinecompError
from ..layout import REPO
from ..params import shown
from datetime import datetime, timedelta
from pathlib import Path


_NOW_PLUS = re.compile(r"^now\+(\d{1,15})\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?)?$", re.I)
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
TIME_EXAMPLES = "10:00:00 (hours:minutes:seconds), 600 (minutes), 1-12:00:00 (days-hours:minutes:seconds)"
BEGIN_EXAMPLES = "22:00 (the next 22:00), 2026-12-24T22:00, now+30m"
MAX_DAYS = 365  # --time and --begin reach at most a year: more is a typo, and SLURM reads a huge limit as UNLIMITED
MEM_MB_MIN, MEM_MB_MAX = 100, 16 * 1024 * 1024  # the controller's --mem: 0 means the whole node to SLURM


class SubmitError(CinecompError):
    """Bad input to `cinecomp submit`: one line naming what is wrong and the fix; nothing was submitted."""


def parse_time_limit(text: str) -> int:
    """A SLURM time limit -> minutes (seconds round up). SubmitError when malformed or zero."""
    t = (text or "").strip()
    if re.search(r"\d{13}", t):  # int() of thousands of digits fails, and any such limit is past MAX_DAYS
        raise SubmitError(f"--time {shown(text)} is more than {MAX_DAYS} days (SLURM would run the controller "
                          f"UNLIMITED) (fix: e.g. {TIME_EXAMPLES})")
    d = h = mi = s = 0
    if m := re.fullmatch(r"(\d+)", t):
        mi = int(m[1])
    elif m := re.fullmatch(r"(\d+):(\d\d)", t):
        mi, s = int(m[1]), int(m[2])
    elif m := re.fullmatch(r"(\d+):(\d\d):(\d\d)", t):
        h, mi, s = int(m[1]), int(m[2]), int(m[3])
    elif m := re.fullmatch(r"(\d+)-(\d{1,2})(?::(\d\d)(?::(\d\d))?)?", t):
        d, h, mi, s = int(m[1]), int(m[2]), int(m[3] or 0), int(m[4] or 0)
        if h > 23:
            raise SubmitError(f"--time {text!r}: {h} hours after the days (fix: at most 23, e.g. {TIME_EXAMPLES})")
    else:
        raise SubmitError(f"--time {text!r} is not a SLURM time limit (fix: e.g. {TIME_EXAMPLES})")
    if s > 59 or (mi > 59 and (h or d or ":" in t and t.count(":") == 2)):
        raise SubmitError(f"--time {text!r}: minutes and seconds go up to 59 (fix: e.g. {TIME_EXAMPLES})")
    minutes = d * 1440 + h * 60 + mi + (1 if s else 0)
    if minutes <= 0:
        raise SubmitError(f"--time {text!r} is no time at all (fix: e.g. {TIME_EXAMPLES})")
    if minutes > MAX_DAYS * 1440:
        raise SubmitError(f"--time {shown(text)} is more than {MAX_DAYS} days (SLURM would run the controller "
                          f"UNLIMITED) (fix: e.g. {TIME_EXAMPLES})")
    return minutes


def check_mem_mb(mem_mb: int) -> int:
    """The controller's memory in MB, bounded (SLURM reads --mem=0 as all of a node's memory)."""
    if not MEM_MB_MIN <= mem_mb <= MEM_MB_MAX:
        raise SubmitError(f"--mem-mb {mem_mb} is outside {MEM_MB_MIN}..{MEM_MB_MAX} (SLURM gives --mem=0 the whole "
                          "node) (fix: e.g. --mem-mb 4000, the default)")
    return mem_mb


def parse_begin(text: str, now: datetime | None = None) -> datetime:
    """When the controller may start. A bare time of day is its next occurrence (today, else tomorrow,
    as SLURM reads it); a date and time must not be in the past."""
    now = now or datetime.now()
    t = (text or "").strip()
    if not t:
        raise SubmitError(f"--begin is empty (fix: e.g. {BEGIN_EXAMPLES})")
    if t.lower() == "now":
        return now
    m = _NOW_PLUS.match(t)
    if m:
        unit = (m.group(2) or "s").lower()[0]
        seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[unit]
        if seconds > MAX_DAYS * 86400:  # timedelta overflows long before a huge number ends
            raise SubmitError(f"--begin {shown(text)} is more than {MAX_DAYS} days from now "
                              f"(fix: e.g. {BEGIN_EXAMPLES})")
        return now + timedelta(seconds=seconds)
    m = _CLOCK.match(t)
    if m:
        h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        if h > 23 or mi > 59 or s > 59:
            raise SubmitError(f"--begin {text!r} is not a time of day (fix: e.g. {BEGIN_EXAMPLES})")
        at = now.replace(hour=h, minute=mi, second=s, microsecond=0)
        return at if at > now else at + timedelta(days=1)
    try:
        at = datetime.fromisoformat(t)
    except ValueError:
        raise SubmitError(f"--begin {text!r} is not a time SLURM or cinecomp can read "
                          f"(fix: e.g. {BEGIN_EXAMPLES})") from None
    if at.tzinfo is not None:
        at = at.astimezone().replace(tzinfo=None)
    if at > now + timedelta(days=MAX_DAYS):
        raise SubmitError(f"--begin {text!r} is more than {MAX_DAYS} days from now (fix: e.g. {BEGIN_EXAMPLES})")
    if at < now - timedelta(seconds=1):
        raise SubmitError(f"--begin {text!r} is in the past (it is now {now:%Y-%m-%dT%H:%M:%S}; fix: a later "
                          f"time, or leave --begin out to start now)")
    return at


def controller_name(workdir: Path) -> str:
    """One controller per run directory at a time (sbatch --dependency=singleton uses name and user)."""
    digest = hashlib.sha1(str(workdir).encode()).hexdigest()[:8]
    base = re.sub(r"[^A-Za-z0-9_-]", "_", workdir.name)[:30] or "root"
    return f"cinecomp-{base}-{digest}"


def check_log_dir(path: Path) -> Path:
    """The controller log directory, made and tried with a real file (root ignores permission bits)."""
    from ..atomic import writable_dir_problem

    problem = writable_dir_problem(path)
    if problem:
        raise SubmitError(f"the controller log directory {path} is not writable ({problem}) "
                          "(fix: --log-dir DIR, or a results folder you can write to)")
    return path.resolve()


def controller_script(workdir: Path, snakemake_cmd: list[str], unlock_cmd: list[str]) -> str:
    """The controller job's script: clean up after a killed earlier controller, then run Snakemake."""
    py = shlex.quote(sys.executable)
    return "\n".join([
        "#!/bin/bash",
        "# cinecomp submit: the Snakemake controller as a SLURM job",
        f"cd {shlex.quote(str(workdir))} || exit 1",
        'echo "cinecomp controller job $SLURM_JOB_ID on $(hostname) started $(date -Is)"',
        f"PYTHONPATH={shlex.quote(str(REPO / 'workflow'))}${{PYTHONPATH:+:$PYTHONPATH}} {py} -m cinecomp.farm.slurm "
        f"cleanup {shlex.quote(str(workdir))} \"$SLURM_JOB_ID\" || exit 1",
        "echo '+ ' " + shlex.quote(shlex.join(unlock_cmd)),
        shlex.join(unlock_cmd) + " >/dev/null 2>&1 || true",
        "echo '+ ' " + shlex.quote(shlex.join(snakemake_cmd)),
        shlex.join(snakemake_cmd),
        "rc=$?",
        'echo "cinecomp controller job $SLURM_JOB_ID finished $(date -Is) with exit code $rc"',
        "exit $rc",
        "",
    ])


# job states after which no process of the job is left (squeue lists ended jobs only with -t all; any other state,
# COMPLETING included, may still have processes writing files)
_ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY",
          "PREEMPTED", "REVOKED"}
CANCEL_WAIT_S = 300  # scancel's SIGTERM, SLURM's KillWait (30 s by default), SIGKILL and the epilog fit well inside


def live_jobs(ids: list[str]) -> list[str]:
    """Which of ``ids`` squeue still lists in a state that is not an end (their processes may still write)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%T"], capture_output=True, text=True, timeout=60, check=True)
    states = dict(line.split("|", 1) for line in out.stdout.splitlines() if "|" in line)
    return [i for i in ids if states.get(i, "COMPLETED").strip().split()[0] not in _ENDED]


def wait_gone(ids: list[str], timeout: float = CANCEL_WAIT_S, poll: float = 1.0) -> list[str]:
    """Wait until none of ``ids`` is live (see :func:`live_jobs`); the ones still live after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            left = live_jobs(ids)
        except (OSError, subprocess.SubprocessError):
            left = list(ids)  # squeue did not answer (slurmctld busy): ask again
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(poll)


def cleanup(workdir: str, self_id: str, timeout: float = CANCEL_WAIT_S) -> int:
    """Cancel rule jobs of this run directory still queued or running from an earlier controller (their
    outputs are marked incomplete and are redone) and wait until they have ended: a cancelled job's
    processes live on for SLURM's KillWait, and one still writing (or removing its output) beside the
    resumed run's job of the same rule would leave a sequence with a gap. Exit 1 when they outlive ``timeout``
    (the controller script then stops before unlocking)."""
    try:
        out = subprocess.run(["squeue", "-h", "-o", "%i|%Z|%k"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    stale = [i for i, wd, comment in (line.split("|", 2) for line in out.splitlines() if line.count("|") >= 2)
             if wd == workdir and comment.startswith("rule_") and i != self_id]
    if not stale:
        return 0
    print(f"cinecomp controller: cancelling {len(stale)} job(s) left by an earlier controller: "
          f"{', '.join(stale)}", flush=True)
    subprocess.run(["scancel", *stale], check=False)
    t0 = time.monotonic()
    left = wait_gone(stale, timeout)
    if left:
        print(f"cinecomp controller: job(s) {', '.join(left)} of {workdir} still running {timeout:.0f} s after "
              f"scancel; not starting, so they cannot race this run's jobs (fix: `squeue -j {','.join(left)}`; "
              f"end them with `scancel --signal=KILL {' '.join(left)}` (or ask your admin if a node is stuck), "
              "then submit again)", file=sys.stderr, flush=True)
        return 1
    print(f"cinecomp controller: job(s) {', '.join(stale)} have ended ({time.monotonic() - t0:.0f} s after scancel)",
          flush=True)
    return 0


if __name__ == "__main__":  # `python -m cinecomp.farm.slurm cleanup WORKDIR SELF_JOBID` (the controller script)
    if len(sys.argv) == 4 and sys.argv[1] == "cleanup":
        sys.exit(cleanup(sys.argv[2], sys.argv[3]))
    sys.exit("usage: python -m cinecomp.farm.slurm cleanup WORKDIR SELF_JOBID")
