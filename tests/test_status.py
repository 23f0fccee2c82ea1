"""`cinecomp status` on local runs (no SLURM): pending before any run, done / failed (log and last error)
/ stale / running after, exit 1 when anything failed; the cost per rule in --json and as a table per
shot in `snakemake --report`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import FIRST, LAST, cinecomp, copy_run, sheet_rows, snakemake, write_sheet

pytestmark = pytest.mark.slow
# a stand-in for a Snakemake in a run directory: says it started, then waits until its stdin closes
WAITER = "import sys; print('started', flush=True); sys.stdin.read()"


def status(root: Path, *args) -> tuple[int, dict, str]:
    r = cinecomp(root, "status", "--sheet", "shots.csv", "--no-sacct", *args)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    if "--json" in args:
        return r.returncode, {s["shot"]: s for s in json.loads(r.stdout)["shots"]}, r.stdout
    return r.returncode, {}, r.stdout


@pytest.fixture(scope="module")
def run_with_a_failure(tiny_demo, rendered, tmp_path_factory):
    """The tiny demo shots sa and sb plus `sx`, whose plate has a damaged frame validation cannot see
    (it reads the first): its ingest job fails. Their status before any run, then a run (sa and sb as
    rendered by the tiny demo's run)."""
    rows = sheet_rows()[:2]
    rows.append(f"sx,demo/sx/plate/sx_plate.####.exr,ACEScg,{FIRST},{LAST},24,demo/sa/env/sa_env.####.exr,ACEScg,1,")

    def damaged_plate(root):
        (root / "demo" / "sx").mkdir()
        shutil.copytree(root / "demo" / "sa" / "plate", root / "demo" / "sx" / "plate")
        for f in (root / "demo" / "sx" / "plate").iterdir():
            f.rename(f.with_name(f.name.replace("sa_", "sx_")))
        bad = root / "demo" / "sx" / "plate" / f"sx_plate.{FIRST + 2:04d}.exr"
        bad.write_bytes(bad.read_bytes()[:200])  # cut short, as a failed copy leaves it

    fresh = copy_run(tiny_demo, tmp_path_factory.mktemp("status") / "fresh")
    write_sheet(fresh, rows)
    damaged_plate(fresh)
    rc, before, _ = status(fresh, "--json")
    root = copy_run(rendered, tmp_path_factory.mktemp("status") / "run")
    write_sheet(root, rows)
    damaged_plate(root)
    r = snakemake(root, "--keep-going")
    assert r.returncode != 0
    return root, rc, before


def test_never_run_shots_are_pending(run_with_a_failure):
    _, rc, before = run_with_a_failure
    assert rc == 0 and {s["state"] for s in before.values()} == {"pending"}
    assert "key" in before["sa"]["to_run"] and before["sa"]["cost"]["rules"] == {}


def test_done_and_failed_with_log_and_error(run_with_a_failure):
    root, _, _ = run_with_a_failure
    rc, st, _ = status(root, "--json")
    assert rc == 1
    assert st["sa"]["state"] == st["sb"]["state"] == "done"
    assert st["sx"]["state"] == "failed"
    f = st["sx"]["failures"][0]
    assert f["rule"] == "ingest_plate" and f["log"] == str(root / "results" / "logs" / "ingest_plate" / "sx.log")
    assert f"sx_plate.{FIRST + 2:04d}.exr" in f["error"], f  # the ingest stage's own message names the frame
    rc, _, table = status(root)
    assert rc == 1 and "sx" in table and "failed" in table and "logs/ingest_plate/sx.log" in table


def test_cost_per_rule_from_benchmarks_and_in_the_report(run_with_a_failure):
    root, _, _ = run_with_a_failure
    _, st, _ = status(root, "--json")
    cost = st["sa"]["cost"]
    assert {"ingest_plate", "key", "masks", "depth", "light", "composite", "assemble", "daily",
            "contact_sheet"} <= set(cost["rules"])
    for c in cost["rules"].values():
        assert c["source"] == "benchmark" and c["wall_s"] > 0 and c["peak_mem_mb"] >= 0 and c["gpu_hours"] == 0
    # the CPU time and the memory Snakemake's benchmark samples can be 0 for a job shorter than its
    # sampling step (a 0.5 s job read 0 MB once on a busy machine)
    assert cost["total"]["cpu_hours"] >= 0 and cost["total"]["wall_s"] > 0
    assert cost["total"]["cpu_hours"] == pytest.approx(sum(c["cpu_hours"] for c in cost["rules"].values()), abs=1e-8)
    html = (root / "results" / "sa" / "v001" / "review" / "sa_v001_cost.html").read_text()
    assert "<table>" in html and "composite" in html and "CPU-hours" in html
    # published versions are not in `all`: the report names them (sx, failed, has no daily to show)
    r = snakemake(root, "--report", "report.html", *[f"results/{s}/v001/review/{s}_v001_cost.html" for s in ("sa", "sb")])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "sa_v001_cost.html" in (root / "report.html").read_text(errors="replace")


def test_stale_after_an_edit_without_a_new_version(run_with_a_failure, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(run_with_a_failure[0], root, symlinks=True)
    rows = (root / "shots.csv").read_text().splitlines()
    rows[2] += '"{""clip_black"": 0.2}"'  # sb: new key parameters, still v001
    (root / "shots.csv").write_text("\n".join(rows) + "\n")
    _, st, _ = status(root, "--json", "--shots", "sa,sb")
    assert st["sa"]["state"] == "done"
    assert st["sb"]["state"] == "stale" and any(s.startswith("key:") for s in st["sb"]["stale"]), st["sb"]


def test_running_locally(run_with_a_failure, tmp_path):
    import base64

    root = tmp_path / "w"
    shutil.copytree(run_with_a_failure[0], root, symlinks=True)
    shutil.rmtree(root / "results" / "sx", ignore_errors=True)
    (root / ".snakemake" / "locks").mkdir(parents=True, exist_ok=True)
    (root / ".snakemake" / "locks" / "0.input.lock").write_text("")
    marker = base64.urlsafe_b64encode(b"results/sx/ingest/plate").decode()
    (root / ".snakemake" / "incomplete").mkdir(parents=True, exist_ok=True)
    (root / ".snakemake" / "incomplete" / marker).write_text("")
    import subprocess
    import sys

    # the lock is live while a Snakemake runs in the directory (this one only waits, as a stand-in)
    proc = subprocess.Popen([sys.executable, "-c", WAITER, "snakemake"], cwd=root, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        proc.stdout.readline()  # it has started (exec'd): its command line is its own
        _, st, _ = status(root, "--json", "--shots", "sx")
    finally:
        proc.communicate(b"")
    assert st["sx"]["state"] == "running" and st["sx"]["jobs"] == {"ingest_plate": "running"}


# ---------------------------------------------------------------- issue 19: damaged run directories (no workflow run)
def test_damaged_run_logs_and_benchmarks_are_no_traceback(tmp_path):
    from cinecomp.farm.status import benchmark, snakemake_errors

    logs = tmp_path / ".snakemake" / "log"
    logs.mkdir(parents=True)
    (logs / "a.snakemake.log").write_text("Error in rule key:\n    wildcards: garbage\n    log: logs/k.log\n")
    (logs / "b.snakemake.log").mkdir()  # a directory
    (logs / "c.snakemake.log").symlink_to(tmp_path / "gone")  # dangling
    found = snakemake_errors(tmp_path)
    assert [(e["rule"], e["wildcards"], e["log"]) for e in found] == [("key", {}, "logs/k.log")]
    bench = tmp_path / "b.tsv"
    bench.write_bytes(b"s\tcpu_time\tmax_rss\n1.5\t\xff\xfe\t12\n")  # not UTF-8
    assert benchmark(bench)["elapsed_s"] == 1.5


def test_summary_failure_shows_snakemakes_reason(tmp_path):
    """`--quiet all` hid why `snakemake --summary` failed (corrupt metadata, missing plates): shown now."""
    import sys

    from cinecomp.farm.status import summary

    fake = ("import sys; quiet = '--quiet' in sys.argv; "
            "print('' if quiet else 'WorkflowError: plate p.####.exr: no frames on disk', file=sys.stderr); sys.exit(1)")
    with pytest.raises(RuntimeError, match="no frames on disk"):
        summary([sys.executable, "-c", fake], ["results/sh010/comp"], tmp_path)


def test_stale_lock_after_a_kill_is_not_running(tmp_path):
    """Snakemake's lock files name no process: the lock is live only while a Snakemake runs here."""
    import base64
    import subprocess
    import sys

    from cinecomp.farm.status import STALE_LOCK, format_table, lock_state, running_locally, shot_status

    smk = tmp_path / ".snakemake"
    (smk / "locks").mkdir(parents=True)
    (smk / "locks" / "0.output.lock").write_text(f"{tmp_path}/results/sx/ingest/plate\n")
    (smk / "incomplete").mkdir()
    (smk / "incomplete" / base64.urlsafe_b64encode(b"results/sx/ingest/plate").decode()).write_text("")
    files = {"results/sx/ingest/plate": dict(rule="ingest_plate", status="missing", log="", date="", plan="")}

    def state():
        lock = lock_state(tmp_path)
        return lock, shot_status("sx", 1, "results", files, [], None, running_locally(tmp_path, lock), tmp_path, lock)

    lock, st = state()  # what a SIGKILLed run leaves
    assert lock == "stale" and st["state"] == "failed" and st["failures"][0]["reason"] == STALE_LOCK, st
    assert "stale lock, run `cinecomp render -- --unlock`" in format_table([st])
    # a Snakemake running in this directory (its command line and working directory) holds it
    proc = subprocess.Popen([sys.executable, "-c", WAITER, "snakemake"], cwd=tmp_path, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        proc.stdout.readline()  # it has started (exec'd): its command line is its own
        lock, st = state()
        assert lock == "live" and st["state"] == "running" and st["jobs"] == {"ingest_plate": "running"}, st
    finally:
        proc.communicate(b"")
