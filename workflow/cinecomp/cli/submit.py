"""`cinecomp submit`: the Snakemake controller itself as a SLURM job (overnight)."""

from __future__ import annotations

import sys
from pathlib import Path

import shutil
import subprocess

from ..errors import SheetError
from ..farm.slurm import SubmitError, check_log_dir, check_mem_mb, controller_name, controller_script, parse_begin, parse_time_limit
from .common import UsageError, check_whole_sheet, render_command


def run(args, extra: list[str]) -> int:
    """`cinecomp submit`: checks everything, then one sbatch; prints the job id."""
    try:
        if not shutil.which("sbatch"):
            raise SubmitError("sbatch is not on PATH: no SLURM on this machine (fix: run on a SLURM login node, "
                              "or render locally with `cinecomp render`)")
        begin = parse_begin(args.begin) if args.begin else None
        minutes = parse_time_limit(args.time)
        check_mem_mb(args.mem_mb)
        cmd, cfg = render_command(args, extra, profile="slurm")
        check_whole_sheet(cfg)  # as the controller will, hours later: a bad sheet is refused now
        if cmd is None:
            print("cinecomp submit: nothing to render (every shot asked for is published); nothing submitted")
            return 0
        workdir = Path.cwd().resolve()
        results = Path(str(cfg.get("results", "results")))
        log_dir = check_log_dir(Path(args.log_dir) if args.log_dir else (workdir / results / "logs" / "controller"))
    except (SubmitError, UsageError) as exc:
        print(f"cinecomp submit: {exc}", file=sys.stderr)
        return 2
    except SheetError as exc:
        print(exc, file=sys.stderr)
        return 1
    unlock = [c for c in cmd if c != "--rerun-incomplete"]
    # the unlock needs no targets: they sit right after "-m snakemake"
    i = unlock.index("--snakefile")
    unlock = unlock[:3] + unlock[i:] + ["--unlock"]
    name = controller_name(workdir)
    sbatch = ["sbatch", "--parsable", f"--job-name={name}", "--dependency=singleton", f"--time={minutes}",
              f"--output={log_dir}/%j.log", f"--chdir={workdir}", "--cpus-per-task=1",
              f"--mem={args.mem_mb}", "--comment=cinecomp_controller", "--export=ALL"]
    if begin is not None:
        sbatch.append(f"--begin={begin:%Y-%m-%dT%H:%M:%S}")
    if args.partition:
        sbatch.append(f"--partition={args.partition}")
    script = controller_script(workdir, cmd, unlock)
    r = subprocess.run(sbatch, input=script, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"cinecomp submit: sbatch refused the controller job: {r.stderr.strip() or r.stdout.strip()}",
              file=sys.stderr)
        return 1
    job = r.stdout.strip().split(";")[0]
    when = f"at {begin:%Y-%m-%d %H:%M:%S}" if begin else "now"
    print(f"submitted controller job {job} ({name}), starts {when}, time limit {args.time}; "
          f"log: {log_dir}/{job}.log")
    print(f"follow it: cinecomp status   (squeue -j {job}; scancel {job} stops it and its jobs)")
    return 0
