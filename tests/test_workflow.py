"""End-to-end workflow behaviour on tiny demo shots the project renders itself."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import OpenEXR
import pytest

from cinecomp.io import exr as exrio
from helpers import (FIRST, HEADER, LAST, REPO, TINY, comp_files, copy_run, planned_jobs, review_files, sheet_rows,
                     snakemake, snakemake_command, write_sheet)

pytestmark = pytest.mark.slow


def test_outputs_layers_and_metadata(rendered):
    for shot, _, _ in TINY:
        files = comp_files(rendered, shot)
        assert [f.name for f in files] == [f"{shot}_comp_v001.{f:04d}.exr" for f in range(FIRST, LAST + 1)]
        with OpenEXR.File(str(files[0]), separate_channels=True) as f:
            h = dict(f.header())
            ch = {k: np.array(v.pixels) for k, v in f.channels().items()}
        assert {"R", "G", "B", "A", "mask.character", "mask.prop", "mask.environment"} <= set(ch)
        assert ch["R"].dtype == np.float16 and ch["mask.character"].dtype == np.float32
        assert h["shot"] == shot and h["frame"] == FIRST and h["shotVersion"] == 1
        assert h["framesPerSecond"] == Fraction(24, 1)
        assert h["software"].startswith("cinecomp") and h["owner"] and h["backend"] and h["sourcePlate"]
        m = ch["mask.character"]
        np.testing.assert_allclose(m + ch["mask.environment"], 1.0, atol=1e-6)
        assert 0.01 < m.mean() < 0.9, "the character should cover part of the frame"
        assert all(p.stat().st_size > 0 for p in review_files(rendered, shot))
        # logs and benchmarks live with the run's results (another results folder has its own)
        assert (rendered / "results" / "logs" / "key" / f"{shot}.log").exists()
        assert (rendered / "results" / "benchmarks" / "assemble" / f"{shot}_v001.tsv").exists()
    assert not (rendered / "logs").exists() and not (rendered / "benchmarks").exists()


def test_up_to_date_run_plans_nothing(rendered):
    assert planned_jobs(rendered) == set()


def test_editing_one_row_reruns_only_that_shot(rendered, tmp_path):
    root = copy_run(rendered, tmp_path / "w")
    rows = sheet_rows({"sb": 2})
    rows[1] += '"{""clip_black"": 0.2}"'  # sb: new key parameters, as v002
    write_sheet(root, rows)
    jobs = planned_jobs(root)
    assert {s for _, s in jobs} == {"sb"}
    # the sheet has no camera: the depth stage estimates it from the (new) masks, and the light stage uses it
    assert {r for r, _ in jobs} == {"key", "masks", "depth", "light", "composite", "assemble", "daily", "contact_sheet",
                                    "cost"}


def test_an_edit_without_a_new_version_renders_nothing(rendered, tmp_path):
    """v001 is published: it is never rendered again; the run says how to render the change."""
    root = copy_run(rendered, tmp_path / "w")
    rows = sheet_rows()
    rows[1] += '"{""clip_black"": 0.2}"'
    write_sheet(root, rows)
    r = snakemake(root, "--dry-run")
    assert r.returncode == 0 and "already published" in r.stderr and "sb v001" in r.stderr
    assert planned_jobs(root) == set()


def test_versions_sit_side_by_side_and_reverting_rerenders_nothing(rendered, tmp_path):
    root = copy_run(rendered, tmp_path / "w")
    v1 = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in comp_files(root, "sa") + review_files(root, "sa")}
    write_sheet(root, sheet_rows({"sa": 2}))
    # the same settings as v002: no work file is rendered again, only v002's comp and review
    assert planned_jobs(root) == {("assemble", "sa"), ("daily", "sa"), ("contact_sheet", "sa"), ("cost", "sa")}
    r = snakemake(root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert [f.name for f in comp_files(root, "sa", 2)] == [f"sa_comp_v002.{f:04d}.exr" for f in range(FIRST, LAST + 1)]
    assert all(p.exists() for p in review_files(root, "sa", 2))
    assert exrio.read_exr_header(comp_files(root, "sa", 2)[0])["shotVersion"] == 2
    write_sheet(root, sheet_rows())  # back to v001
    assert planned_jobs(root) == set()
    assert snakemake(root).returncode == 0
    assert v1 == {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in comp_files(root, "sa") + review_files(root, "sa")}


def test_an_old_version_named_on_the_command_line_is_refused(rendered, tmp_path):
    root = copy_run(rendered, tmp_path / "w")
    write_sheet(root, sheet_rows({"sa": 2}))
    r = snakemake(root, "--dry-run", "results/sa/v001/comp")
    assert r.returncode != 0 and "the sheet says v002" in r.stdout + r.stderr


def test_deleting_a_work_folder_reruns_only_its_dependents(rendered, tmp_path):
    """For a version still being made (no daily and contact sheet yet)."""
    root = copy_run(rendered, tmp_path / "w")
    for p in review_files(root, "sa"):
        p.unlink()
    shutil.rmtree(root / "results" / "sa" / "composite")
    assert planned_jobs(root) == {("composite", "sa"), ("assemble", "sa"), ("daily", "sa"), ("contact_sheet", "sa"),
                                  ("cost", "sa")}


def test_broken_plate_fails_alone(tiny_demo, tmp_path):
    root = copy_run(tiny_demo, tmp_path / "w")
    bad = root / "demo" / "sa" / "plate" / "sa_plate.1003.exr"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated mid-file: the header still reads
    r = snakemake(root, "--keep-going")
    assert r.returncode != 0
    assert not comp_files(root, "sa")
    for shot in ("sb", "sc"):
        assert len(comp_files(root, shot)) == LAST - FIRST + 1
    log = (root / "results" / "logs" / "ingest_plate" / "sa.log").read_text()
    assert "sa_plate.1003.exr" in log


def test_bad_sheet_fails_before_any_job_and_keeps_outputs(rendered, tmp_path):
    root = copy_run(rendered, tmp_path / "w")
    before = {p: p.stat().st_mtime_ns for p in (root / "results").rglob("*") if p.is_file()}
    write_sheet(root, sheet_rows() + [sheet_rows()[0]])  # duplicate id
    r = snakemake(root)
    assert r.returncode != 0
    assert "duplicate shot id 'sa'" in r.stdout + r.stderr
    after = {p: p.stat().st_mtime_ns for p in (root / "results").rglob("*") if p.is_file()}
    assert before == after


def test_sigkill_then_rerun_incomplete_matches(rendered, tiny_demo, tmp_path):
    root = copy_run(tiny_demo, tmp_path / "w")
    shot = TINY[0][0]  # one shot: the EXR plate (the others only add time)
    sheet = (root / "shots.csv").read_text().splitlines()
    (root / "shots.csv").write_text("\n".join([sheet[0]] + [r for r in sheet[1:] if r.startswith(f"{shot},")]) + "\n")
    proc = subprocess.Popen(snakemake_command(root, cores=1), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # Kill while a job is part-way through writing a directory of frames.
    deadline = time.time() + 300
    while time.time() < deadline:
        partial = [d for d in (root / "results").glob("*/*") if d.is_dir() and any(d.iterdir())] if (root / "results").exists() else []
        if len(partial) >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert snakemake(root, "--unlock").returncode == 0  # a killed run leaves its lock behind
    r = snakemake(root, "--rerun-incomplete")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    a, b = comp_files(root, shot), comp_files(rendered, shot)
    assert a and [f.name for f in a] == [f.name for f in b]
    for fa, fb in zip(a, b):
        la, lb = exrio.read_layers(fa), exrio.read_layers(fb)
        assert la.keys() == lb.keys()
        for k in la:
            np.testing.assert_array_equal(la[k], lb[k], err_msg=f"{fa.name} {k}")
    assert not any((root / "results" / other).exists() for other, _, _ in TINY[1:])


def test_lint_and_format(tiny_demo, tmp_path):
    root = copy_run(tiny_demo, tmp_path / "w")
    r = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--snakefile", str(REPO / "Snakefile"),
                        "--configfile", str(REPO / "config.yaml"), "--directory", str(root),
                        "--config", "shots=shots.csv"], capture_output=True, text=True, cwd=root)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "Congratulations" in out, out[-4000:]
    snakefmt = Path(sys.executable).with_name("snakefmt")
    r = subprocess.run([str(snakefmt), "--check", "Snakefile", "rules"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_render_uses_the_profile_and_targets(rendered, tmp_path):
    root = copy_run(rendered, tmp_path / "w")
    cli = Path(sys.executable).with_name("cinecomp")
    dry = [str(cli), "render", "--sheet", "shots.csv", "--shots", "sb", "--", "--dry-run"]
    r = subprocess.run(dry, cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "already published" in r.stderr and "sb v001" in r.stderr  # nothing to do
    shutil.rmtree(root / "results" / "sb" / "v001" / "review")
    r = subprocess.run(dry, cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "profiles/default" in r.stdout and "results/sb/v001/comp" in r.stdout
    r = subprocess.run([str(cli), "render", "--sheet", "shots.csv", "--shots", "sb"], cwd=root,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert all(p.exists() for p in review_files(root, "sb"))


def test_the_light_stage_waits_for_the_depth_stage_unless_the_sheet_gives_camera_and_key(tiny_demo, tmp_path):
    """Its camera comes from the depth stage when the sheet has none, and the environment's Z does when
    the sheet gives no key direction (the key from the environment's geometry); a sheet with both
    needs neither."""
    root = copy_run(tiny_demo, tmp_path / "w")
    camera = '"{""height_m"": 1.6, ""tilt_deg"": -5}"'
    key = '"{""azimuth_deg"": 120, ""elevation_deg"": 40}"'
    rows = [r + f",{c},{k}" for r, c, k in zip(sheet_rows(), (camera, camera, ""), ("", key, key))]
    write_sheet(root, rows, header=HEADER + ",camera,light")
    r = snakemake(root, "--dry-run", "--forceall")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    inputs = {m.group(2): m.group(1) for m in re.finditer(
        r"^rule light:\n\s+input: (.*)\n(?:.*\n)*?\s+wildcards: shot=(\w+)", r.stdout + r.stderr, re.M)}
    assert set(inputs) == {"sa", "sb", "sc"}
    assert "results/sa/depth" in inputs["sa"]  # camera given, no key: the environment's Z
    assert "depth" not in inputs["sb"]  # camera and key given
    assert "results/sc/depth" in inputs["sc"]  # no camera: the depth stage's estimate
