"""`cinecomp status`: per shot done / failed / running / pending / stale, and what it cost.

Sources, all read-only (nothing is run or submitted):
  - Snakemake's metadata, through `snakemake --summary` on every shot's work and published targets:
    a file is missing, ok, or stale (its params, input set, inputs or code changed since it was made);
  - Snakemake's run logs (.snakemake/log/*.snakemake.log): which job failed, and its rule log;
  - locally, .snakemake/locks + .snakemake/incomplete: jobs running now;
  - under SLURM (`sacct` on PATH), the accounting of the jobs run from this directory (the plugin
    names each job `rule_<rule>_wildcards_<shot>[_<version>]` in its comment): running, pending,
    failed (FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL), and cost;
  - the rules' benchmark files (<results>/benchmarks/<rule>/<shot>[_v###].tsv): cost of local runs.

States, the first that applies: running (a job of the shot is running or queued on SLURM, or running
locally), failed (a job of the shot failed and its output is missing: the rule log and its last error
line are given), stale (made, but params/inputs/code changed since: raise `version` to render the
change), done (the sheet's version is published), pending (not run yet, or waiting for its inputs).

Cost per rule: wall seconds, CPU-hours (CPU time used), GPU-hours (GPUs allocated x wall time, SLURM),
peak memory (MB); from sacct where the job ran on SLURM, else from the benchmark file.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import re
import shutil
import subprocess
from ..layout import benchmark_file
from pathlib import Path

FAILED_STATES = ("FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
                 "PREEMPTED")
ACTIVE_STATES = {"RUNNING": "running", "PENDING": "pending", "REQUEUED": "pending", "CONFIGURING": "running",
                 "COMPLETING": "running", "SUSPENDED": "running", "RESIZING": "running"}
STATE_ORDER = ("running", "failed", "stale", "done", "pending")
_ERROR = re.compile(r"(Error|Exception|error:|Traceback|Killed|CANCELLED|oom)", re.I)


# ------------------------------------------------------------------------------------------ sources
def summary(cmd_base: list[str], targets: list[str], cwd: Path) -> dict[str, dict]:
    """`snakemake --summary` of the targets: {output file: {rule, log, status, plan, date}}."""
    cmd = [*cmd_base[:3], *targets, *cmd_base[3:], "--summary"]
    r = subprocess.run([*cmd, "--quiet", "all"], capture_output=True, text=True, cwd=cwd)
    if r.returncode != 0:  # `--quiet all` hid the reason: ask again to show it
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
        lines = [ln for ln in (r.stderr + "\n" + r.stdout).strip().splitlines()
                 if ln.strip() and not ln.startswith(("Using workflow specific profile", "Building DAG", "Assuming"))]
        raise RuntimeError("snakemake --summary failed (Snakemake cannot read this run directory):\n"
                           + "\n".join(lines[-15:]))
    out = {}
    rows = csv.reader(io.StringIO(r.stdout), delimiter="\t")
    for row in rows:
        if len(row) < 6 or row[0] == "output_file":
            continue
        out[row[0]] = dict(date=row[1], rule=row[2], log=row[3], status=row[4], plan=row[5])
    return out


def snakemake_errors(workdir: Path) -> list[dict]:
    """Jobs that failed, from Snakemake's run logs, oldest first: {rule, outputs, wildcards, log, when}."""
    found, logs = [], []
    for path in (workdir / ".snakemake" / "log").glob("*.snakemake.log"):
        try:  # a directory, a dangling link or an unreadable file is no run log
            if path.is_file():
                logs.append((path.stat().st_mtime, path, path.read_text(errors="replace")))
        except OSError:
            continue
    for when, path, text in sorted(logs, key=lambda t: t[0]):
        for m in re.finditer(r"^Error in rule (\w+):\n((?:[ \t]+.*\n?)*)", text, re.M):
            block = m.group(2)
            wc = re.search(r"^\s+wildcards: (.*)$", block, re.M)
            log = re.search(r"^\s+log: (\S+)", block, re.M)
            outputs = re.search(r"^\s+output: (.*)$", block, re.M)
            wildcards = dict(kv.split("=", 1) for kv in wc.group(1).split(", ") if "=" in kv) if wc else {}
            found.append(dict(rule=m.group(1), wildcards=wildcards, log=log.group(1) if log else "",
                              outputs=outputs.group(1).split(", ") if outputs else [],
                              when=when, run_log=str(path)))
    return found


def snakemake_alive(workdir: Path) -> bool | None:
    """Whether a Snakemake process runs in ``workdir`` (its working directory or ``--directory``), from
    /proc; None where there is no /proc to ask. Snakemake's lock files (.snakemake/locks/*.lock) list
    the files locked, not the process holding them: a SIGKILLed run leaves them behind."""
    proc = Path("/proc")
    if not (proc / "self" / "cmdline").exists():
        return None
    workdir = Path(workdir).resolve()
    for p in proc.iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = [a.decode(errors="replace") for a in (p / "cmdline").read_bytes().split(b"\0")]
            if not any(a.endswith("snakemake") for a in argv):  # .../bin/snakemake, python -m snakemake
                continue
            cwd = Path(os.readlink(p / "cwd"))
        except OSError:  # gone meanwhile, or not ours to read
            continue
        dirs = [cwd] + [cwd / argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--directory", "-d")]
        if any(d.resolve() == workdir for d in dirs):
            return True
    return False


def lock_state(workdir: Path, sacct: list[dict] | None = None) -> str:
    """'none' (no lock), 'live' (a Snakemake of this directory runs, here or as SLURM jobs; or no way
    to tell) or 'stale' (locks left by a run that was killed)."""
    if not any((Path(workdir) / ".snakemake" / "locks").glob("*.lock")):
        return "none"
    if any(j["state"] in ACTIVE_STATES for j in sacct or []):
        return "live"
    return "stale" if snakemake_alive(workdir) is False else "live"


STALE_LOCK = "stale lock, run `cinecomp render -- --unlock` (the Snakemake that held it is gone)"


def running_locally(workdir: Path, lock: str | None = None) -> set[str]:
    """Outputs a Snakemake run left incomplete: those of jobs running now while its lock is live (or,
    with ``lock`` 'stale', those a killed run left). Empty without a lock."""
    smk = workdir / ".snakemake"
    if (lock or lock_state(workdir)) == "none":
        return set()
    files = set()
    for p in (smk / "incomplete").glob("*"):
        try:
            files.add(base64.urlsafe_b64decode(p.name.encode()).decode())
        except (ValueError, UnicodeDecodeError):
            continue
    return files


def _seconds(text: str) -> float:
    """sacct [DD-[HH:]]MM:SS[.mmm] -> seconds."""
    if not text:
        return 0.0
    days, _, rest = text.rpartition("-")
    parts = [float(p) for p in rest.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    return (int(days) if days else 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def _mb(text: str) -> float:
    """sacct memory (1234K, 12M, 1.5G; plain = bytes) -> MB."""
    if not text:
        return 0.0
    unit = text[-1].upper()
    scale = {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0 ** 2}
    return float(text[:-1]) * scale[unit] if unit in scale else float(text) / 2 ** 20


def sacct_jobs(workdir: Path, since: str = "now-14days") -> list[dict] | None:
    """The rule jobs run from this directory, oldest first (None: no SLURM accounting here)."""
    if not shutil.which("sacct"):
        return None
    fields = "JobIDRaw,State,Comment,WorkDir,ElapsedRaw,TotalCPU,MaxRSS,AllocTRES,ReqMem,NodeList"
    try:
        r = subprocess.run(["sacct", "-a", "-P", "-n", "-S", since, "-E", "now", "-o", fields],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    jobs: dict[str, dict] = {}
    for line in r.stdout.splitlines():
        f = line.split("|")
        if len(f) < 10:
            continue
        jid, step = f[0].partition(".")[::2]
        if not step:
            if f[3] != str(workdir) or not f[2].startswith("rule_") or "_wildcards_" not in f[2]:
                continue
            rule, _, wc = f[2][5:].partition("_wildcards_")
            gpus = re.search(r"gres/gpu=(\d+)", f[7])
            jobs[jid] = dict(jobid=jid, rule=rule, wildcards=wc, state=f[1].split()[0], elapsed_s=float(f[4] or 0),
                             cpu_s=_seconds(f[5]), peak_mem_mb=_mb(f[6]), gpus=int(gpus.group(1)) if gpus else 0,
                             req_mem=f[8])
        elif jid in jobs:  # steps: the peak memory is the largest of them
            jobs[jid]["peak_mem_mb"] = max(jobs[jid]["peak_mem_mb"], _mb(f[6]))
    return sorted(jobs.values(), key=lambda j: int(j["jobid"]))


def benchmark(path: Path) -> dict | None:
    """A rule's benchmark TSV (the last line: the last run) -> wall, CPU and peak memory."""
    try:
        with path.open(errors="replace") as fh:  # a damaged (non-UTF-8) file reads as no numbers
            rows = list(csv.DictReader(fh, delimiter="\t"))
    except (OSError, csv.Error):
        return None
    if not rows:
        return None
    row = rows[-1]

    def num(k):
        try:
            return float(row.get(k) or 0)
        except ValueError:
            return 0.0

    return dict(elapsed_s=num("s"), cpu_s=num("cpu_time"), peak_mem_mb=num("max_rss"), gpus=0)


def last_error_line(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if _ERROR.search(ln)]
    return (errors or lines or [""])[-1][:500]


# ------------------------------------------------------------------------------------------ per shot
def shot_cost(results: str, shot: str, version: int, rules: list[str], sacct: list[dict] | None) -> dict:
    """Per rule: wall_s, cpu_hours, gpu_hours, peak_mem_mb, source (sacct|benchmark); and the totals."""
    per_rule = {}
    versioned = f"{shot}_{version:03d}"
    for rule in rules:
        job = None
        for j in sacct or []:
            if j["rule"] == rule and j["wildcards"] in (shot, versioned) and j["state"] == "COMPLETED":
                job = j  # the latest completed one
        bench = None
        for v in (None, version):  # per-shot work rules, then the version's own
            bench = bench or benchmark(Path(benchmark_file(results, rule, shot, v)))
        src = job or bench
        if not src:
            continue
        peak = max(src["peak_mem_mb"], (bench or {}).get("peak_mem_mb", 0.0))
        per_rule[rule] = dict(wall_s=round(src["elapsed_s"], 2), cpu_hours=round(src["cpu_s"] / 3600, 9),
                              gpu_hours=round(src["gpus"] * src["elapsed_s"] / 3600, 6), peak_mem_mb=round(peak, 1),
                              source="sacct" if job else "benchmark")
    total = dict(wall_s=round(sum(r["wall_s"] for r in per_rule.values()), 2),
                 cpu_hours=round(sum(r["cpu_hours"] for r in per_rule.values()), 9),
                 gpu_hours=round(sum(r["gpu_hours"] for r in per_rule.values()), 6),
                 peak_mem_mb=max((r["peak_mem_mb"] for r in per_rule.values()), default=0.0))
    return dict(rules=per_rule, total=total)


def shot_status(shot: str, version: int, results: str, files: dict[str, dict], errors: list[dict],
                sacct: list[dict] | None, running_files: set[str], workdir: Path, lock: str = "live") -> dict:
    from ..layout import is_published

    mine = {f: info for f, info in files.items() if f.startswith(f"{results}/{shot}/")}
    rules = sorted({info["rule"] for info in mine.values()})
    missing = {info["rule"]: info for info in mine.values() if info["status"] == "missing"}
    stale = sorted({f"{info['rule']}: {info['status']}" for info in mine.values()
                    if info["status"] not in ("ok", "missing")})
    published = is_published(results, shot, version)
    versioned = f"{shot}_{version:03d}"
    out = dict(shot=shot, version=f"v{version:03d}", state="pending", published=published)
    # SLURM: the latest job of each rule of the shot
    latest = {}
    for j in sacct or []:
        if j["wildcards"] in (shot, versioned):
            latest[j["rule"]] = j
    active = {r: ACTIVE_STATES[j["state"]] for r, j in latest.items() if j["state"] in ACTIVE_STATES}
    local_running = sorted(info["rule"] for f, info in mine.items() if f in running_files)
    failures = []
    if lock == "stale":  # what a killed run left incomplete is not running
        failures += [dict(rule=r, reason=STALE_LOCK, log="", error="", slurm_job=None) for r in local_running]
        local_running = []
    made = [Path(workdir, f).stat().st_mtime for f, info in mine.items() if info["status"] != "missing"
            and Path(workdir, f).exists()]
    newest_output = max(made, default=0.0)
    for rule, info in missing.items():
        if rule in active or rule in local_running or any(f["rule"] == rule for f in failures):
            continue
        j = latest.get(rule)
        reason = None
        if j and j["state"] in FAILED_STATES:
            reason = f"SLURM job {j['jobid']} {j['state']}"
        errs = [e for e in errors if e["rule"] == rule and e["when"] >= newest_output
                and (e["wildcards"].get("shot") == shot or any(o in mine for o in e["outputs"]))]
        if errs and not reason:
            reason = "failed (Snakemake log " + errs[-1]["run_log"] + ")"
        if reason:
            log = Path(workdir, info["log"]) if info["log"] else None
            failures.append(dict(rule=rule, reason=reason, log=str(log) if log else "",
                                 error=last_error_line(log) if log else "",
                                 slurm_job=j["jobid"] if j else None))
    if active or local_running:
        out["state"] = "running" if ("running" in active.values() or local_running) else "pending"
        out["jobs"] = {**active, **{r: "running" for r in local_running}}
    elif failures:
        out["state"] = "failed"
    elif stale and not missing:
        out["state"] = "stale"
    elif stale:
        out["state"] = "stale" if published else "pending"
    elif published:
        out["state"] = "done"
    if failures:
        out["failures"] = failures
    if stale:
        out["stale"] = stale
    if missing and not published:
        out["to_run"] = sorted(missing)
    out["cost"] = shot_cost(results, shot, version, rules, sacct)
    return out


def collect(cfg: dict, cmd_base: list[str], shots: list[str], rows: dict, workdir: Path,
            use_sacct: bool = True) -> list[dict]:
    from ..layout import published_targets

    results = str(cfg.get("results", "results"))
    targets = []
    for shot in shots:
        row = rows[shot]
        work = ["ingest/plate", "key", "masks", "depth", "composite"]
        if row["environment"]:
            work.append("ingest/env")
        targets += [f"{results}/{shot}/{w}" for w in work]
        targets += published_targets(results, shot, int(row["version"]))
    files = summary(cmd_base, targets, workdir)
    errors = snakemake_errors(workdir)
    jobs = sacct_jobs(workdir) if use_sacct else None
    lock = lock_state(workdir, jobs)
    running = running_locally(workdir, lock)
    return [shot_status(s, int(rows[s]["version"]), results, files, errors, jobs, running, workdir, lock)
            for s in shots]


def format_table(states: list[dict]) -> str:
    lines = [f"{'shot':<16} {'version':<7} {'state':<8} {'wall s':>8} {'CPU h':>8} {'GPU h':>7} {'peak MB':>8}  detail"]
    for s in states:
        t = s["cost"]["total"]
        detail = ""
        if s.get("failures"):
            f = s["failures"][0]
            detail = f"{f['rule']}: {f['reason']}" + (f"; log {f['log']}: {f['error']}" if f["log"] else "")
        elif s.get("stale"):
            detail = "; ".join(s["stale"]) + (" (raise version to render the change)" if s["published"] else "")
        elif s.get("jobs"):
            detail = ", ".join(f"{r} {st}" for r, st in sorted(s["jobs"].items()))
        elif s.get("to_run"):
            detail = "to run: " + ", ".join(s["to_run"])
        lines.append(f"{s['shot']:<16} {s['version']:<7} {s['state']:<8} {t['wall_s']:8.1f} {t['cpu_hours']:8.4f} "
                     f"{t['gpu_hours']:7.4f} {t['peak_mem_mb']:8.0f}  {detail}")
    counts = {k: sum(1 for s in states if s["state"] == k) for k in STATE_ORDER}
    lines.append(", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no shots")
    return "\n".join(lines)


def cost_html(shot: str, version: int, cost: dict) -> str:
    """The per-shot cost table of `snakemake --report` (the `cost` rule)."""
    head = "<tr><th>rule</th><th>wall s</th><th>CPU-hours</th><th>GPU-hours</th><th>peak memory MB</th><th>from</th></tr>"
    rows = [f"<tr><td>{html.escape(r)}</td><td>{c['wall_s']:.1f}</td><td>{c['cpu_hours']:.4f}</td>"
            f"<td>{c['gpu_hours']:.4f}</td><td>{c['peak_mem_mb']:.0f}</td><td>{c['source']}</td></tr>"
            for r, c in cost["rules"].items()]
    t = cost["total"]
    rows.append(f"<tr><th>total</th><th>{t['wall_s']:.1f}</th><th>{t['cpu_hours']:.4f}</th>"
                f"<th>{t['gpu_hours']:.4f}</th><th>{t['peak_mem_mb']:.0f} (max)</th><th></th></tr>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(shot)} v{version:03d} cost</title>"
            "<style>td,th{padding:2px 10px;text-align:right}td:first-child{text-align:left}</style></head><body>"
            f"<h3>{html.escape(shot)} v{version:03d}: cost per rule</h3><table>{head}{''.join(rows)}</table>"
            "<p>wall: elapsed seconds of the job; CPU-hours: CPU time used; GPU-hours: GPUs allocated x wall "
            "(SLURM); peak memory: largest resident set. From sacct for SLURM jobs, else the rule's benchmark "
            "file.</p></body></html>\n")


def write_cost_report(out: str, results: str, shot: str, version: int, rules: list[str], workdir: str = ".") -> dict:
    from ..atomic import write_text

    cost = shot_cost(results, shot, version, rules, sacct_jobs(Path(workdir).resolve()))
    write_text(out, cost_html(shot, version, cost))
    return cost


def cost_stage(inputs, outputs, settings: dict, log) -> None:
    """The `cost` rule: the shot's cost table as HTML for `snakemake --report`."""
    cost = write_cost_report(outputs[0], settings["results"], settings["shot"], int(settings["version"]),
                             settings["rules"])
    log.info("cost of %s: %s", settings["shot"], json.dumps(cost["total"]))


# ------------------------------------------------------------------------------------------ CLI
