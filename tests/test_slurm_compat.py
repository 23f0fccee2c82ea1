"""The controller's cleanup (`python -m cinecomp.farm.slurm cleanup WORKDIR ID`, and the old entry point
`cinecomp.slurm` that controller scripts queued by an earlier cinecomp still call), with fake squeue/scancel:
it cancels the stale rule jobs of its run directory and waits until they have ended before the controller
unlocks and resumes (a cancelled job still writing beside the resumed one left a sequence with a gap)."""

import os
import subprocess
import sys
import time

import pytest

from cinecomp.farm import slurm
from helpers import REPO


def fake_slurm(tmp_path, work, ending_polls: int):
    """squeue lists jobs 11-14; after scancel, job 11 shows COMPLETING for ``ending_polls`` polls, then is gone
    (-1: never ends). Returns (bin dir, scancel's arguments file, file counting squeue's state polls)."""
    bin_dir, calls, polls = tmp_path / "bin", tmp_path / "scancel.args", tmp_path / "polls"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text(f"""#!/bin/sh
case "$*" in
  *%Z*) echo '11|{work}|rule_key_wildcards_sh010'; echo '12|{work}|cinecomp_controller'
        echo '13|/elsewhere|rule_key_wildcards_sh010'; echo '14|{work}|rule_ingest_wildcards_sh020' ;;
  *) echo x >> {polls}; n=$(wc -l < {polls})
     echo '13|RUNNING'
     if [ ! -e {calls} ]; then echo '11|RUNNING'
     elif [ {ending_polls} -lt 0 ] || [ "$n" -le {ending_polls} ]; then echo '11|COMPLETING'; fi ;;
esac
""")
    (bin_dir / "scancel").write_text(f"#!/bin/sh\necho \"$@\" > {calls}\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return bin_dir, calls, polls


@pytest.mark.parametrize("module", ["cinecomp.slurm", "cinecomp.farm.slurm"])
def test_queued_controllers_cleanup_entry_point(tmp_path, module):
    work = tmp_path / "run"
    bin_dir, calls, _ = fake_slurm(tmp_path, work, ending_polls=0)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "PYTHONPATH": str(REPO / "workflow")}
    r = subprocess.run([sys.executable, "-m", module, "cleanup", str(work), "14"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert calls.read_text().split() == ["11"]  # this directory's rule jobs, not itself, not others'
    bad = subprocess.run([sys.executable, "-m", module], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "usage: python -m" in bad.stderr


def test_cleanup_waits_until_the_cancelled_jobs_have_ended(tmp_path, monkeypatch, capsys):
    work = tmp_path / "run"
    bin_dir, calls, polls = fake_slurm(tmp_path, work, ending_polls=3)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(time, "sleep", lambda s: None)
    assert slurm.cleanup(str(work), "14") == 0
    assert calls.read_text().split() == ["11"]
    # returned only once squeue stopped listing job 11 (3 polls COMPLETING, the 4th without it); job 13 is
    # another directory's and is not waited for
    assert len(polls.read_text().split()) == 4
    assert "job(s) 11 have ended" in capsys.readouterr().out


def test_cleanup_refuses_to_resume_beside_a_job_that_does_not_end(tmp_path, monkeypatch, capsys):
    work = tmp_path / "run"
    bin_dir, calls, polls = fake_slurm(tmp_path, work, ending_polls=-1)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(time, "sleep", lambda s: None)
    assert slurm.cleanup(str(work), "14", timeout=0) == 1
    err = capsys.readouterr().err
    assert "job(s) 11" in err and str(work) in err and "scancel --signal=KILL 11" in err
    # the controller script stops there: no unlock, no Snakemake beside the live job
    script = slurm.controller_script(work, ["snakemake"], ["snakemake", "--unlock"])
    assert '"$SLURM_JOB_ID" || exit 1' in script
    assert script.index("cleanup") < script.index("--unlock")
