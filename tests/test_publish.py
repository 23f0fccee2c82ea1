"""A job's frame directory is published whole or not at all (jobs.run, atomic.publish_dir, frames.check_frames):
a job killed mid-write or missing a frame leaves no sequence with a gap, a rerun heals it, and no published
comp frame holds a NaN or Inf (composite.assemble.check_finite)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from cinecomp.atomic import publish_dir
from cinecomp.composite.assemble import write_comp_frame
from cinecomp.errors import FileError
from cinecomp.frames import check_frames, frame_path
from cinecomp.io import exr as exrio
from cinecomp.jobs import expected_frames
from cinecomp.perception.masks import key_only_trimask
from helpers import REPO

FRAMES = [1001, 1002, 1003]
H, W = 6, 8

# The assemble rule's job as Snakemake's script runs it (jobs.run with the real stage), in its own process;
# argv: the work root, and the frame after whose comp file the process SIGKILLs itself (0: never).
ASSEMBLE_JOB = """
import os, signal, sys
from types import SimpleNamespace
from snakemake.iocontainers import Namedlist
from cinecomp import stages
from cinecomp.composite import assemble
from cinecomp.jobs import run

root, kill_after = sys.argv[1], int(sys.argv[2])
write = assemble.write_comp_frame
def write_then_die(path, *a, frame, **kw):
    write(path, *a, frame=frame, **kw)
    if frame == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)  # the node dies, the job is scancel'ed --signal=KILL, ...
assemble.write_comp_frame = write_then_die
inputs = Namedlist(fromdict={k: f"{root}/work/{k}" for k in ("composite", "key", "masks", "depth")})
settings = {"first": 1001, "compression": "zip", "attrs": {"shot": "sh", "version": 1}}
run(SimpleNamespace(input=inputs, output=Namedlist([f"{root}/sh/v001/comp"]), log=[f"{root}/assemble.log"],
                    rule="assemble", wildcards={"shot": "sh"}, threads=1, resources={},
                    params=SimpleNamespace(settings=settings)), stages.assemble)
"""


@pytest.fixture
def work(tmp_path):
    """An assemble job's inputs: composite, masks and depth frames 1001-1003 of shot sh, 8x6."""
    rng = np.random.default_rng(0)
    for f in FRAMES:
        exrio.write_rgba(frame_path(tmp_path / "work/composite", "sh", "over", None, f),
                         rng.random((H, W, 4)).astype(np.float32))
        exrio.write_exr(frame_path(tmp_path / "work/masks", "sh", "masks", None, f),
                        key_only_trimask(rng.random((H, W)).astype(np.float32)))
        exrio.write_exr(frame_path(tmp_path / "work/depth", "sh", "depth", None, f),
                        {"depth.Z": rng.random((H, W)).astype(np.float32)})
    (tmp_path / "work/key").mkdir()
    return tmp_path


def assemble_job(root, kill_after: int = 0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", ASSEMBLE_JOB, str(root), str(kill_after)], capture_output=True,
                          text=True, env={"PYTHONPATH": str(REPO / "workflow"), "PATH": "/usr/bin:/bin"})


def comp_dir_and_leftovers(root):
    parent = root / "sh" / "v001"
    return parent / "comp", sorted(p.name for p in parent.iterdir() if p.name != "comp")


def test_an_assemble_job_killed_mid_write_publishes_no_gap_and_a_rerun_heals_it(work):
    killed = assemble_job(work, kill_after=1002)
    assert killed.returncode == -9, killed.stderr  # died after writing frames 1001 and 1002
    comp, left = comp_dir_and_leftovers(work)
    assert not comp.exists(), sorted(p.name for p in comp.iterdir())  # no comp/ with 2 of 3 frames
    assert len(left) == 1 and left[0].startswith(".comp.") and left[0].endswith(".publish.tmp")  # hidden
    healed = assemble_job(work)
    assert healed.returncode == 0, healed.stderr + (work / "assemble.log").read_text()
    comp, left = comp_dir_and_leftovers(work)
    assert [p.name for p in sorted(comp.iterdir())] == [f"sh_comp_v001.{f}.exr" for f in FRAMES]
    assert left == []  # the killed job's half-written directory is gone


def test_an_input_with_a_gap_is_not_published_and_names_the_frame(work):
    (frame_path(work / "work/composite", "sh", "over", None, 1002)).unlink()
    r = assemble_job(work)
    assert r.returncode != 0
    log = (work / "assemble.log").read_text()
    assert f"shot sh: {work}/sh/v001/comp: frame 1002 of 1001-1003 missing, so it is not published" in log
    assert list((work / "sh" / "v001").iterdir()) == []  # nothing published, nothing left behind


def test_check_frames_and_expected_frames(tmp_path):
    d = tmp_path / "key"
    for f in (1001, 1002, 1005):
        (d / f"sh_key.{f}.exr").parent.mkdir(exist_ok=True)
        (d / f"sh_key.{f}.exr").write_bytes(b"")
    (d / "contacts.json").write_text("{}")
    check_frames(d, [1001, 1002], shot="sh")
    with pytest.raises(FileError, match=r"^shot sh: .*/key: 3 frames 1003-1004,1006 of 1001-1006 missing"):
        check_frames(d, range(1001, 1007), shot="sh")
    assert expected_frames([str(d), str(tmp_path / "plate.exr")], {}) == list(range(1001, 1006))  # a gap counts
    assert expected_frames([str(tmp_path / "plate.exr")], {"first": 7, "last": 9}) == [7, 8, 9]


def test_publish_dir_keeps_the_name_and_publishes_only_what_verifies(tmp_path):
    out = tmp_path / "ingest" / "plate"
    with publish_dir(out) as d:
        assert d.name == "plate" and d.parent.name.startswith(".plate.")
        (d / "a").write_text("1")
    assert (out / "a").read_text() == "1"

    def refuse(d):
        raise FileError(d, "incomplete")

    with pytest.raises(FileError), publish_dir(out, refuse) as d:
        (d / "b").write_text("2")
    assert [p.name for p in out.iterdir()] == ["a"]  # the earlier output stands
    assert sorted(p.name for p in out.parent.iterdir()) == ["plate"]


@pytest.mark.parametrize("where", ["R", "A", "mask.prop", "depth.Z", "harmonize.shadow"])
def test_a_non_finite_pixel_is_never_published(tmp_path, where):
    beauty = np.full((H, W, 4), 0.5, np.float32)
    masks = key_only_trimask(np.full((H, W), 0.5, np.float32))
    depth = np.ones((H, W), np.float32)
    extra = {"harmonize.shadow": np.zeros((H, W), np.float16)}
    bad = {"R": beauty[..., 0], "A": beauty[..., 3], "mask.prop": masks["mask.prop"], "depth.Z": depth,
           **extra}[where]
    bad[1, 2], bad[0, 0] = np.nan, np.inf
    path = tmp_path / "sh_comp_v001.1002.exr"
    count = 1 if where in ("R", "A") else 2  # the beauty's half cast clamps Inf to 65504 (and says so); NaN stays
    with pytest.raises(FileError, match=rf"^shot sh: .*sh_comp_v001.1002.exr: frame 1002 has non-finite .* "
                                        rf"channel\(s\) {where} {count};"):
        write_comp_frame(path, beauty, masks, depth, frame=1002, compression="zip", attrs={"shot": "sh"},
                         extra=extra)
    assert list(tmp_path.iterdir()) == []
