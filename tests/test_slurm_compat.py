"""Controller scripts queued by an earlier cinecomp call `python -m cinecomp.slurm cleanup WORKDIR ID`:
that entry point still cancels the stale rule jobs of its run directory after the package moved."""

import os
import subprocess
import sys

import pytest

from helpers import REPO


@pytest.mark.parametrize("module", ["cinecomp.slurm", "cinecomp.farm.slurm"])
def test_queued_controllers_cleanup_entry_point(tmp_path, module):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scancel.args"
    work = tmp_path / "run"
    (bin_dir / "squeue").write_text("#!/bin/sh\n"
                                    f"echo '11|{work}|rule_key_wildcards_sh010'\n"
                                    f"echo '12|{work}|cinecomp_controller'\n"
                                    f"echo '13|/elsewhere|rule_key_wildcards_sh010'\n"
                                    f"echo '14|{work}|rule_ingest_wildcards_sh020'\n")
    (bin_dir / "scancel").write_text(f"#!/bin/sh\necho \"$@\" > {calls}\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "PYTHONPATH": str(REPO / "workflow")}
    r = subprocess.run([sys.executable, "-m", module, "cleanup", str(work), "14"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert calls.read_text().split() == ["11"]  # this directory's rule jobs, not itself, not others'
    bad = subprocess.run([sys.executable, "-m", module], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "usage: python -m" in bad.stderr
