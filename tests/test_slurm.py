"""The workflow on a real one-node SLURM with accounting (tests/slurm/cluster.sh), not a mock.

One overnight-like story on the tiny demo shots, each step checked:
  1. `cinecomp submit --begin <a few seconds ahead> --time 00:20:00`: the controller waits for its start
     time, then runs Snakemake with profiles/slurm; one shot's composite job is scancel'ed while it runs,
     its retry asks for twice the memory (attempt-scaled mem_mb) and is scancel'ed too: that shot fails,
     the others finish, pixel-identical to a local run; sacct shows one job per rule per shot with the
     profile's resources; `cinecomp status` says failed (with its log) / done, exit 1.
  2. the rerun redoes only the failed shot; its controller is killed (SIGKILL) mid-run;
  3. the next submission resumes: finished jobs and shots are not redone, nothing half-written
     survives, every frame is there, status says done for all.
The story runs with every core busy (``busy_cores``), as on the loaded box where a resumed run once
published a comp with a frame missing.
Selected with `-m slurm`; skipped (saying why) without root or apt-get.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from helpers import FIRST, LAST, REPO, cinecomp, comp_files, exr_pixels

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
pytestmark = [pytest.mark.slurm, pytest.mark.slow]
RULES = {"ingest_plate", "ingest_env", "key", "masks", "depth", "light", "composite", "assemble", "daily",
         "contact_sheet"}
FAST = ["--slurm-init-seconds-before-status-checks", "2"]  # the tiny jobs take seconds: check often


@pytest.fixture(scope="session")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the SLURM tests need root: tests/slurm/cluster.sh installs Debian packages and starts daemons")
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        pytest.skip("no SLURM installed and no apt-get to install it (tests/slurm/cluster.sh needs Debian's packages)")
    running = subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True).returncode == 0
    r = subprocess.run(["bash", str(CLUSTER), "start"], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, f"cluster.sh start failed:\n{r.stdout}\n{r.stderr}"
    yield
    if not running:  # leave nothing running that this session started
        subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True, timeout=300)


@pytest.fixture
def busy_cores():
    """One busy loop per core for the test's duration (killed after), at niceness $CINECOMP_TEST_BURN_NICE
    (default 0: they compete with the jobs as equals). $CINECOMP_TEST_BURN_CORES sets how many (default:
    one per core); `make test` sets 0, since there the other tests beside the story keep both cores busy."""
    nice = int(os.environ.get("CINECOMP_TEST_BURN_NICE", "0"))
    count = int(os.environ.get("CINECOMP_TEST_BURN_CORES", os.cpu_count() or 2))
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True,
                                preexec_fn=lambda: os.nice(nice)) for _ in range(count)]
    yield burners
    alive = [p.poll() is None for p in burners]
    for p in burners:
        p.kill()
        p.wait()
    assert all(alive), "a CPU burner died during the test: the story did not run on a busy box"


def submit(root: Path, *args) -> str:
    r = cinecomp(root, "submit", "--sheet", "shots.csv", *args, "--", *FAST)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"submitted controller job (\d+)", r.stdout)
    assert m, r.stdout
    return m.group(1)


def sacct(*args) -> list[dict]:
    fields = ["JobIDRaw", "State", "Comment", "WorkDir", "ReqMem", "Timelimit", "AllocCPUS", "Start", "Submit",
              "ExitCode"]
    out = subprocess.run(["sacct", "-a", "-X", "-P", "-n", "-S", "now-1days", "-o", ",".join(fields), *args],
                         capture_output=True, text=True, check=True).stdout
    return [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line.strip()]


def rule_jobs(root: Path) -> list[dict]:
    """This directory's rule jobs, oldest first, with rule and shot parsed from the plugin's comment."""
    jobs = []
    for j in sacct():
        if j["WorkDir"] != str(root) or "_wildcards_" not in j["Comment"]:
            continue
        rule, _, wc = j["Comment"][5:].partition("_wildcards_")
        jobs.append(dict(j, rule=rule, shot=re.sub(r"_\d{3}$", "", wc)))
    return sorted(jobs, key=lambda j: int(j["JobIDRaw"]))


def wait_done(job: str, timeout: float = 420) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = sacct("-j", job)
        if rows and rows[0]["State"].split()[0] not in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING"):
            return rows[0]["State"]
        time.sleep(1)
    subprocess.run(["scancel", job])
    raise AssertionError(f"job {job} did not finish in {timeout}s")


def squeue() -> list[tuple[str, str, str, str]]:
    out = subprocess.run(["squeue", "-h", "-o", "%i|%T|%Z|%k"], capture_output=True, text=True).stdout
    return [tuple(line.split("|", 3)) for line in out.splitlines() if line.count("|") >= 3]


def wait_for_job(root: Path, comment: str, states=("RUNNING",), exclude=(), timeout=300) -> str:
    """A job of this run directory (another session may share the cluster) with that comment and state."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for jid, state, workdir, c in squeue():
            if workdir == str(root) and c == comment and state in states and jid not in exclude:
                return jid
        time.sleep(0.2)
    raise AssertionError(f"no {'/'.join(states)} job {comment} within {timeout}s")


def assert_same_pixels(a: Path, b: Path, shot: str) -> None:
    fa, fb = comp_files(a, shot), comp_files(b, shot)
    assert [f.name for f in fa] == [f.name for f in fb] == [f"{shot}_comp_v001.{n:04d}.exr"
                                                            for n in range(FIRST, LAST + 1)]
    for x, y in zip(fa, fb):
        px, py = exr_pixels(x), exr_pixels(y)
        assert px.keys() == py.keys()
        for k in px:
            assert np.array_equal(px[k], py[k]), f"{x.name} {k} differs from the local run"


def status(root: Path) -> tuple[int, dict]:
    r = cinecomp(root, "status", "--sheet", "shots.csv", "--json")
    assert r.returncode in (0, 1), r.stdout + r.stderr
    return r.returncode, {s["shot"]: s for s in json.loads(r.stdout)["shots"]}


def no_half_written(root: Path) -> None:
    temps = [p for p in (root / "results").rglob(".*") if ".tmp" in p.name]
    assert not temps, f"half-written files survived: {temps}"


def test_overnight_story_on_slurm(cluster, tiny_demo, rendered, tmp_path, busy_cores):
    """``rendered``: the same shots run locally (conftest), what every SLURM-made frame must equal."""
    root = tmp_path / "show"
    shutil.copytree(tiny_demo, root)
    root = root.resolve()

    # 1. submitted to start a few seconds from now; sb's composite is cancelled twice (the retry included)
    begin = datetime.now().replace(microsecond=0) + timedelta(seconds=6)
    controller = submit(root, "--begin", begin.isoformat(), "--time", "00:20:00")
    queued = subprocess.run(["squeue", "-h", "-j", controller, "-o", "%T %r"], capture_output=True, text=True).stdout
    assert queued.split()[:2] == ["PENDING", "BeginTime"], queued  # waits for its start time
    comment = "rule_composite_wildcards_sb"
    first = wait_for_job(root, comment)
    subprocess.run(["scancel", first], check=True)
    retry = wait_for_job(root, comment, states=("PENDING", "RUNNING", "CONFIGURING"), exclude=(first,))
    subprocess.run(["scancel", retry], check=True)
    state = wait_done(controller)
    log = root / "results" / "logs" / "controller" / f"{controller}.log"
    assert log.is_file(), "the controller logs to <results>/logs/controller/<jobid>.log"
    assert state.startswith("FAILED"), (state, log.read_text()[-3000:])
    info = sacct("-j", controller)[0]
    assert datetime.fromisoformat(info["Start"]) >= begin and info["Timelimit"] == "00:20:00"

    jobs = rule_jobs(root)
    for shot in ("sa", "sc"):  # one job per rule per shot, with the profile's resources
        mine = [j for j in jobs if j["shot"] == shot]
        assert sorted(j["rule"] for j in mine) == sorted(RULES), mine
        for j in mine:
            assert j["State"] == "COMPLETED", j
            want = (4000, "01:00:00") if j["rule"] == "key" else (2000, "00:30:00")
            assert (j["ReqMem"], j["Timelimit"], j["AllocCPUS"]) == (f"{want[0]}M", want[1], "1"), j
        assert_same_pixels(root, rendered, shot)
    sb = [j for j in jobs if j["shot"] == "sb" and j["rule"] == "composite"]
    assert [(j["JobIDRaw"], j["State"].split()[0], j["ReqMem"]) for j in sb] == [
        (first, "CANCELLED", "2000M"), (retry, "CANCELLED", "4000M")]  # attempt 2: twice the memory
    assert not any(j["shot"] == "sb" and j["rule"] in ("assemble", "daily", "contact_sheet") for j in jobs)
    rc, st = status(root)
    assert rc == 1 and st["sa"]["state"] == st["sc"]["state"] == "done", st
    assert st["sb"]["state"] == "failed"
    failure = st["sb"]["failures"][0]
    assert failure["rule"] == "composite" and failure["log"].endswith("results/logs/composite/sb.log")
    assert "CANCELLED" in failure["reason"]
    cost = st["sa"]["cost"]
    assert set(cost["rules"]) == RULES and all(c["source"] == "sacct" for c in cost["rules"].values())
    assert cost["total"]["wall_s"] > 0 and cost["total"]["cpu_hours"] > 0 and cost["total"]["peak_mem_mb"] > 0
    assert (root / "results" / "sa" / "v001" / "review" / "sa_v001_cost.html").is_file()
    finished = {p: p.stat().st_mtime_ns for s in ("sa", "sc") for p in (root / "results" / s).rglob("*")}
    seen = {j["JobIDRaw"] for j in jobs}

    # 2. the rerun redoes only sb; its controller is killed once sb's assemble job is submitted
    controller = submit(root, "--time", "00:20:00")
    wait_for_job(root, "rule_assemble_wildcards_sb_001", states=("PENDING", "CONFIGURING", "RUNNING"), timeout=300)
    subprocess.run(["scancel", "--full", "--signal=KILL", controller], check=True)
    wait_done(controller, timeout=120)

    # 3. the next submission resumes; nothing finished is redone
    controller = submit(root, "--time", "00:20:00")
    state = wait_done(controller)
    assert state == "COMPLETED", (root / "results" / "logs" / "controller" / f"{controller}.log").read_text()[-3000:]
    later = [j for j in rule_jobs(root) if j["JobIDRaw"] not in seen]
    assert {j["shot"] for j in later} == {"sb"}, later  # only the failed shot
    composite = [j for j in later if j["rule"] == "composite"]
    assert len(composite) == 1 and composite[0]["State"] == "COMPLETED"  # not redone after the kill
    assert {p: p.stat().st_mtime_ns for s in ("sa", "sc") for p in (root / "results" / s).rglob("*")} == finished
    assert_same_pixels(root, rendered, "sb")
    no_half_written(root)
    rc, st = status(root)
    assert rc == 0 and {s["state"] for s in st.values()} == {"done"}, st


def test_gpu_less_node_takes_a_diffusion_job_as_a_gpu_partition_would(cluster, tmp_path):
    """A diffusion composite's request, built by the plugin's own functions, runs and is accounted."""
    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_executor_plugin_slurm_jobstep import get_cpu_setting

    class Res(dict):
        __getattr__ = dict.get

    class Job:
        threads, resources = 1, Res(gpu=2, cpus_per_gpu=4, mem_mb=96000)

    flags = f"{set_gres_string(Job)} {get_cpu_setting(Job, True)}".split()
    assert flags == ["--gpus=2", "--cpus-per-gpu=4"]
    r = subprocess.run(["sbatch", "--parsable", *flags, "--mem=96000", "--partition=gpu", f"--chdir={tmp_path}",
                        "--wrap", "srun true"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    job = r.stdout.strip().split(";")[0]
    assert wait_done(job, timeout=600) == "COMPLETED"  # waits for 8 free CPUs
    tres = subprocess.run(["sacct", "-X", "-P", "-n", "-j", job, "-o", "AllocTRES"], capture_output=True,
                          text=True).stdout
    assert "gres/gpu=2" in tres and "cpu=8" in tres and "mem=96000M" in tres, tres
