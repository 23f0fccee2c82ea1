"""`cinecomp submit` without a cluster: bad input stops with a clear error and submits nothing; good input
makes one sbatch call with the begin time, time limit, log place and the controller script."""

from __future__ import annotations

import os
import stat
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cinecomp.cli import main as cli
from cinecomp.farm.slurm import SubmitError, controller_name, parse_begin, parse_time_limit
from helpers import REPO, SHEET_COLUMNS as HEADER


@pytest.fixture
def show(tmp_path, monkeypatch):
    """A run directory with a one-shot sheet and a fake sbatch that records its arguments and script."""
    plate = tmp_path / "plates" / "p.1001.png"
    plate.parent.mkdir()
    import cv2
    import numpy as np

    screen = np.zeros((16, 16, 3), np.uint8)
    screen[..., 1] = 200  # a green screen (BGR), as validation wants a plate to show
    screen[6:12, 6:10] = 90  # and someone in front of it
    cv2.imwrite(str(plate), screen)
    (tmp_path / "shots.csv").write_text(f"{HEADER}\nsh010,plates/p.####.png,srgb_tx,1001,1001,24,plates/p.####.png,"
                                        "srgb_tx,1\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/sbatch.args\ncat > {tmp_path}/sbatch.script\necho 4242\n')
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args) -> int:
    return cli.main(["submit", "--sheet", "shots.csv", *args])


def test_submits_the_controller_with_begin_time_and_log(show, capsys):
    begin = (datetime.now() + timedelta(hours=1)).replace(microsecond=0)
    assert run("--begin", begin.isoformat(), "--time", "10:00:00", "--shots", "sh010") == 0
    out = capsys.readouterr().out
    log_dir = show / "results" / "logs" / "controller"
    assert "submitted controller job 4242" in out and f"{log_dir}/4242.log" in out
    args = (show / "sbatch.args").read_text().split()
    assert f"--begin={begin.isoformat()}" in args and "--time=600" in args
    assert f"--output={log_dir}/%j.log" in args and "--dependency=singleton" in args
    assert f"--job-name={controller_name(show.resolve())}" in args and f"--chdir={show.resolve()}" in args
    script = (show / "sbatch.script").read_text()
    assert "-m cinecomp.farm.slurm cleanup" in script and "--unlock" in script
    run_line = [ln for ln in script.splitlines() if ln.startswith(sys.executable) and "--unlock" not in ln][-1]
    assert f"--profile {REPO / 'profiles' / 'slurm'}" in run_line
    assert "results/sh010/v001/comp" in run_line  # --shots: that shot's targets


@pytest.mark.parametrize("args, says", [
    (["--begin", "2020-01-01T22:00"], "is in the past"),
    (["--begin", "tonight"], "is not a time"),
    (["--begin", "25:00"], "is not a time of day"),
    (["--time", "10h"], "is not a SLURM time limit"),
    (["--time", "10:75:00"], "minutes and seconds go up to 59"),
    (["--time", "0"], "no time at all"),
    (["--shots", "sh999"], "unknown shot 'sh999'"),
    (["--begin", "now+99999999999h"], "more than 365 days from now"),  # was an OverflowError traceback
    (["--begin", f"{datetime.now() + timedelta(days=400):%Y-%m-%dT%H:%M}"], "more than 365 days from now"),
    (["--time", "99999999999999999999"], "more than 365 days"),  # SLURM would make it UNLIMITED
    (["--time", "9" * 5000], "more than 365 days"),
    (["--time", "366-00:00:00"], "more than 365 days"),
    (["--mem-mb", "0"], "--mem-mb 0 is outside"),  # SLURM would give the whole node
])
def test_bad_input_submits_nothing(show, capsys, args, says):
    assert run(*args) == 2
    err = capsys.readouterr().err
    assert says in err and "fix" in err or "known" in err, err
    assert not (show / "sbatch.args").exists()


def test_no_sbatch_on_the_machine(show, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    assert run() == 2
    assert "sbatch is not on PATH" in capsys.readouterr().err
    assert not (show / "sbatch.args").exists()


def test_log_dir_not_writable(show, capsys):
    blocker = show / "a_file"
    blocker.write_text("x")
    assert run("--log-dir", str(blocker / "logs")) == 2
    err = capsys.readouterr().err
    assert "controller log directory" in err and "not writable" in err and "fix" in err
    assert not (show / "sbatch.args").exists()


def test_time_and_begin_forms():
    assert [parse_time_limit(t) for t in ("600", "10:00:00", "90:30", "1-12:00:00", "2-0", "1-2:30")] == [
        600, 600, 91, 2160, 2880, 1590]
    now = datetime(2026, 12, 2, 23, 0)
    assert parse_begin("22:00", now) == datetime(2026, 12, 3, 22, 0)  # the next 22:00, as SLURM reads it
    assert parse_begin("now+30m", now) == now + timedelta(minutes=30)
    assert parse_begin("2026-12-24T22:00", now) == datetime(2026, 12, 24, 22, 0)
    with pytest.raises(SubmitError, match="in the past"):
        parse_begin("2026-12-02T22:59", now)


def test_bad_sheet_without_shots_is_refused_before_queuing(show, capsys):
    """Without --shots the whole sheet is checked as the controller will check it (issue 19)."""
    sheet = show / "shots.csv"
    sheet.write_text(sheet.read_text().replace(",24,", ",nan,"))
    assert run() == 1
    err = capsys.readouterr().err
    assert "shot sh010" in err and "fps 'nan'" in err and "fix" in err
    assert not (show / "sbatch.args").exists()
