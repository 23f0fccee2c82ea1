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

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

HEADER = "shot,plate,plate_colourspace,first_frame,last_frame,fps,environment,env_colourspace,version,key_params"
TINY = [  # shot, plate format, environment kind
    ("sa", "exr", "sequence"),
    ("sb", "png", "image"),
    ("sc", "mp4", "sequence"),
]
FIRST, LAST = 1001, 1005


def sheet_rows(root: Path, versions: dict | None = None) -> list[str]:
    rows = []
    for shot, fmt, env in TINY:
        plate = {"exr": f"demo/{shot}/plate/{shot}_plate.####.exr", "png": f"demo/{shot}/plate/{shot}_plate.####.png",
                 "mp4": f"demo/{shot}/plate/{shot}_plate.mp4"}[fmt]
        pcs = "ACEScg" if fmt == "exr" else "srgb_tx"
        envp, ecs = ((f"demo/{shot}/env/{shot}_env.####.exr", "ACEScg") if env == "sequence"
                     else (f"demo/{shot}/env/{shot}_env.jpg", "srgb_tx"))
        rows.append(f"{shot},{plate},{pcs},{FIRST},{LAST},24,{envp},{ecs},{(versions or {}).get(shot, 1)},")
    return rows


def write_sheet(root: Path, rows: list[str]) -> None:
    (root / "shots.csv").write_text("\n".join([HEADER, *rows]) + "\n")


def snakemake(root: Path, *args, timeout=900, **kw):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile",
           str(REPO / "config.yaml"), "--directory", str(root), "--cores", "2", "--config", "shots=shots.csv", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def planned_jobs(root: Path, *args) -> set[tuple[str, str]]:
    """(rule, shot) of every job a dry run would run."""
    r = snakemake(root, "--dry-run", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    jobs = set()
    for m in re.finditer(r"^(?:localrule|rule) (\w+):\n(?:.*\n)*?\s+wildcards: shot=([\w-]+)", out, re.M):
        jobs.add((m.group(1), m.group(2)))
    return jobs


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    from cinecomp.synth.renderer import make_demo_shot

    root = tmp_path_factory.mktemp("tiny")
    for shot, fmt, env in TINY:
        make_demo_shot(root / "demo", shot, 48, 28, FIRST, LAST, plate_format=fmt, env_kind=env)
    write_sheet(root, sheet_rows(root))
    return root


@pytest.fixture(scope="module")
def rendered(tiny_demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("rendered")
    shutil.copytree(tiny_demo, root, dirs_exist_ok=True)
    r = snakemake(root)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-5000:]
    return root


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def comp_files(root: Path, shot: str, version: int = 1) -> list[Path]:
    return sorted((root / "results" / shot / f"v{version:03d}" / "comp").glob(f"{shot}_comp_v*.exr"))


def review_files(root: Path, shot: str, version: int = 1) -> list[Path]:
    d = root / "results" / shot / f"v{version:03d}" / "review"
    return [d / f"{shot}_v{version:03d}_daily.mp4", d / f"{shot}_v{version:03d}_contact.png"]


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
    rows = sheet_rows(root, {"sb": 2})
    rows[1] += '"{""clip_black"": 0.2}"'  # sb: new key parameters, as v002
    write_sheet(root, rows)
    jobs = planned_jobs(root)
    assert {s for _, s in jobs} == {"sb"}
    assert {r for r, _ in jobs} == {"key", "masks", "depth", "composite", "assemble", "daily", "contact_sheet", "cost"}


def test_an_edit_without_a_new_version_renders_nothing(rendered, tmp_path):
    """v001 is published: it is never rendered again; the run says how to render the change."""
    root = copy_run(rendered, tmp_path / "w")
    rows = sheet_rows(root)
    rows[1] += '"{""clip_black"": 0.2}"'
    write_sheet(root, rows)
    r = snakemake(root, "--dry-run")
    assert r.returncode == 0 and "already published" in r.stderr and "sb v001" in r.stderr
    assert planned_jobs(root) == set()


def test_versions_sit_side_by_side_and_reverting_rerenders_nothing(rendered, tmp_path):
    root = copy_run(rendered, tmp_path / "w")
    v1 = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in comp_files(root, "sa") + review_files(root, "sa")}
    write_sheet(root, sheet_rows(root, {"sa": 2}))
    # the same settings as v002: no work file is rendered again, only v002's comp and review
    assert planned_jobs(root) == {("assemble", "sa"), ("daily", "sa"), ("contact_sheet", "sa"), ("cost", "sa")}
    r = snakemake(root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert [f.name for f in comp_files(root, "sa", 2)] == [f"sa_comp_v002.{f:04d}.exr" for f in range(FIRST, LAST + 1)]
    assert all(p.exists() for p in review_files(root, "sa", 2))
    assert exrio.read_exr_header(comp_files(root, "sa", 2)[0])["shotVersion"] == 2
    write_sheet(root, sheet_rows(root))  # back to v001
    assert planned_jobs(root) == set()
    assert snakemake(root).returncode == 0
    assert v1 == {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in comp_files(root, "sa") + review_files(root, "sa")}


def test_an_old_version_named_on_the_command_line_is_refused(rendered, tmp_path):
    root = copy_run(rendered, tmp_path / "w")
    write_sheet(root, sheet_rows(root, {"sa": 2}))
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
    write_sheet(root, sheet_rows(root) + [sheet_rows(root)[0]])  # duplicate id
    r = snakemake(root)
    assert r.returncode != 0
    assert "duplicate shot id 'sa'" in r.stdout + r.stderr
    after = {p: p.stat().st_mtime_ns for p in (root / "results").rglob("*") if p.is_file()}
    assert before == after


def test_sigkill_then_rerun_incomplete_matches(rendered, tiny_demo, tmp_path):
    root = copy_run(tiny_demo, tmp_path / "w")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile",
           str(REPO / "config.yaml"), "--directory", str(root), "--cores", "1", "--config", "shots=shots.csv"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
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
    for shot, _, _ in TINY:
        a, b = comp_files(root, shot), comp_files(rendered, shot)
        assert [f.name for f in a] == [f.name for f in b]
        for fa, fb in zip(a, b):
            la, lb = exrio.read_layers(fa), exrio.read_layers(fb)
            assert la.keys() == lb.keys()
            for k in la:
                np.testing.assert_array_equal(la[k], lb[k], err_msg=f"{fa.name} {k}")


def test_lint_and_format(tiny_demo):
    r = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--snakefile", str(REPO / "Snakefile"),
                        "--configfile", str(REPO / "config.yaml"), "--directory", str(tiny_demo),
                        "--config", "shots=shots.csv"], capture_output=True, text=True, cwd=tiny_demo)
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
