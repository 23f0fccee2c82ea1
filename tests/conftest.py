"""Fixtures shared by the test modules; the helpers they are built from are in helpers.py.

Session fixtures are made once per run and are read-only: a test that changes a run directory
works on a copy (helpers.copy_run).
"""

import os
import shutil

os.environ.setdefault("OMP_NUM_THREADS", "2")  # before numpy loads its BLAS

import pytest  # noqa: E402

from helpers import REPO, SHARED_DATA, HAS_MATANYONE, make_tiny_demo, snakemake  # noqa: E402,F401 (REPO: the checkout)


@pytest.fixture(scope="session", autouse=True)
def scontrol_answers_at_once(tmp_path_factory):
    """Snakemake's SLURM executor plugin runs `scontrol show config` (10 s timeout) each time Snakemake
    starts. Where SLURM is installed but its controller is not running (tests/slurm/cluster.sh stopped),
    every Snakemake call of the tests would wait those 10 s. The tests' `scontrol` answers at once then
    (exit 1: no controller), and is the real one whenever the controller answers `scontrol ping`."""
    real = shutil.which("scontrol")
    if real is None:
        yield
        return
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\n"{real}" ping >/dev/null 2>&1 || exit 1\nexec "{real}" "$@"\n')
    (bin_dir / "scontrol").chmod(0o755)
    path = os.environ["PATH"]
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{path}"
    yield
    os.environ["PATH"] = path


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data absent: {SHARED_DATA} (see shared/data/MANIFEST.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """The tiny demo shots (helpers.TINY: EXR, PNG and MP4 plates) and their sheet, never run."""
    return make_tiny_demo(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def rendered(tiny_demo, tmp_path_factory):
    """The tiny demo rendered by the workflow (every shot published as v001)."""
    root = tmp_path_factory.mktemp("rendered")
    shutil.copytree(tiny_demo, root, dirs_exist_ok=True)
    r = snakemake(root)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-5000:]
    return root


@pytest.fixture(scope="session")
def perception_models(tmp_path_factory):
    """Random SAM 2.1 hiera-t (the sam2 package's config at a 256 input), a tiny Depth Anything and,
    where installed, MatAnyone's network, saved to local files."""
    from cinecomp.perception import tiny_models as perception_tiny

    root = tmp_path_factory.mktemp("models")
    out = {"sam2": perception_tiny.make_sam2(root / "sam2", image_size=256),
           "depth_model": {**perception_tiny.make_depth_model(root), "input_size": 56}}
    if HAS_MATANYONE:
        out["matanyone"] = perception_tiny.make_matanyone(root / "matanyone")
    return out


# `make test` hands the files to pytest-xdist workers (--dist loadfile), and each worker makes its own
# session fixtures: the files that share an expensive one go to one worker as one unit.  The units whose
# workflow runs and DeepSpeed launches take minutes are handed out first (xdist would hand out the files
# with the most tests first, and a long file handed out last ends the run alone).  Only where and when a
# file runs changes, never what it checks.
SAME_WORKER = {"test_status.py": "test_workflow.py",  # `rendered`: the tiny demo through the workflow
               "test_perception_workflow.py": "test_perception.py"}  # `perception_models`
LONG_FIRST = ("test_diffusion_workflow.py", "test_train.py", "test_workflow.py", "test_perception.py",
              "test_diffusion_distributed.py", "test_harmonize_workflow.py", "test_diffusion_harmonize_base.py",
              "test_curate.py", "test_evaluate.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedFixtureScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid):
            path = nodeid.split("::", 1)[0]
            folder, _, name = path.rpartition("/")
            return f"{folder}/{SAME_WORKER.get(name, name)}" if folder else SAME_WORKER.get(name, name)

        def _assign_work_unit(self, node):
            def rank(scope):
                name = scope.rpartition("/")[2]
                return LONG_FIRST.index(name) if name in LONG_FIRST else len(LONG_FIRST)

            self.workqueue.move_to_end(min(self.workqueue, key=rank), last=False)  # ties: xdist's order
            super()._assign_work_unit(node)

    return SharedFixtureScheduling(config, log)
