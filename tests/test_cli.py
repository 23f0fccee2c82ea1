"""`cinecomp render` / `validate`: the snakemake command they build, and one-line errors before it runs.

subprocess.call is mocked: no snakemake runs here."""

import os
import subprocess
import sys

import pytest

from cinecomp.cli import common as cli_common
from cinecomp.cli import main as cli
from cinecomp.cli import render as cli_render
from helpers import REPO

HEADER = "shot,plate,plate_colourspace,first_frame,last_frame,fps,environment,env_colourspace,version"


@pytest.fixture
def show(tmp_path, monkeypatch):
    """A run directory with a sheet (sh010 v1, sh020 v3; no plates needed: ids are checked, not media)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shots.csv").write_text(f"{HEADER}\nsh010,p.####.exr,ACEScg,1001,1005,24,env.png,ACEScg,1\n"
                                        "sh020,p.####.exr,ACEScg,1001,1005,24,env.png,ACEScg,3\n")
    return tmp_path


def render(argv, monkeypatch):
    """(exit code, the snakemake command or None) of `cinecomp render ARGV`."""
    calls = []
    monkeypatch.setattr(cli_render.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    code = cli.main(["render", *argv])
    return code, (calls[0] if calls else None)


def option(cmd, name):
    """The values after the one `name` option of a snakemake command (it must appear once)."""
    assert cmd.count(name) == 1, cmd
    i = cmd.index(name) + 1
    j = next((k for k in range(i, len(cmd)) if cmd[k].startswith("-")), len(cmd))
    return cmd[i:j]


def test_sheet_and_passthrough_config_are_one_config(show, monkeypatch):
    code, cmd = render(["--sheet", "shots.csv", "--", "--dry-run", "--config", "results=R", "owner=me"], monkeypatch)
    assert code == 0 and "--dry-run" in cmd
    assert option(cmd, "--config") == ["results=R", "owner=me", "shots=shots.csv"]
    # the same key twice: one entry, --sheet wins over a passthrough shots=
    _, cmd = render(["--sheet", "shots.csv", "--", "-C", "shots=other.csv", "--config=results=R2"], monkeypatch)
    assert option(cmd, "--config") == ["shots=shots.csv", "results=R2"] and "-C" not in cmd


def test_passthrough_configfiles_extend_ours(show, monkeypatch):
    (show / "extra.yaml").write_text("owner: me\nshots: shots.csv\n")
    code, cmd = render(["--", "--configfile", "extra.yaml", "--dry-run"], monkeypatch)
    assert code == 0 and option(cmd, "--configfile") == [str(cli.REPO / "config.yaml"), "extra.yaml"]
    assert "--dry-run" in cmd


@pytest.mark.parametrize("how", ["config", "configfile", "default"])
def test_shots_targets_under_the_configured_results(show, monkeypatch, how):
    (show / "mine.yaml").write_text("results: /show/comp\nshots: shots.csv\n")
    argv = {"config": ["--sheet", "shots.csv", "--shots", "sh020,sh010", "--", "--config", "results=out/R"],
            "configfile": ["--shots", "sh020,sh010", "--", "--configfile", "mine.yaml"],
            "default": ["--sheet", "shots.csv", "--shots", "sh020,sh010"]}[how]
    results = {"config": "out/R", "configfile": "/show/comp", "default": "results"}[how]
    seen = []
    real = cli.shot_targets
    monkeypatch.setattr(cli_common, "shot_targets", lambda *a: seen.append(a) or real(*a))
    code, cmd = render(argv, monkeypatch)
    assert code == 0
    assert seen == [(results, "sh020", 3), (results, "sh010", 1)]  # the sheet's versions
    targets = real(results, "sh020", 3) + real(results, "sh010", 1)
    assert cmd[3:3 + len(targets)] == targets  # before every option
    assert all(t.startswith(results + "/") for t in targets)


def test_shot_targets_today():
    assert cli.shot_targets("R", "sh010", 1) == ["R/sh010/v001/comp", "R/sh010/v001/review/sh010_v001_daily.mp4",
                                                  "R/sh010/v001/review/sh010_v001_contact.png",
                                                  "R/sh010/v001/review/sh010_v001_cost.html"]


@pytest.mark.parametrize("shots, says", [
    ("sh010,nope", "unknown shot 'nope' in shots.csv (known: sh010, sh020)"),
    ("../x", "'../x' is not a valid shot id"),
    ("sh010;rm", "is not a valid shot id"),
    (",", "names no shot"),
])
def test_bad_shot_ids_stop_before_snakemake(show, monkeypatch, capsys, shots, says):
    code, cmd = render(["--sheet", "shots.csv", "--shots", shots], monkeypatch)
    err = capsys.readouterr().err
    assert code == 2 and cmd is None
    assert says in err and err.count("\n") == 1, err


def test_bad_sheet_with_shots_lists_its_problems(show, monkeypatch, capsys):
    (show / "shots.csv").write_text(f"{HEADER}\nsh010,p.####.exr,ACEScg,1001,1005,nan,env.png,ACEScg,1\n")
    code, cmd = render(["--sheet", "shots.csv", "--shots", "sh010"], monkeypatch)
    assert code == 1 and cmd is None and "fps 'nan'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--configfile", "nope.yaml"], ["--", "--configfile", "nope.yaml"],
                                  ["--", "--configfiles=nope.yaml"], ["--sheet", "nope.csv"]])
def test_missing_files_are_one_line_errors(show, monkeypatch, capsys, argv):
    code, cmd = render(argv, monkeypatch)
    err = capsys.readouterr().err
    assert code == 2 and cmd is None
    assert "nope." in err and "does not exist" in err and err.count("\n") == 1, err


def test_unreadable_configfile(show, monkeypatch, capsys):
    (show / "bad.yaml").write_text("results: [unclosed\n")
    code, cmd = render(["--configfile", "bad.yaml"], monkeypatch)
    err = capsys.readouterr().err
    assert code == 2 and cmd is None and "bad.yaml cannot be read" in err and err.count("\n") == 1, err


def test_validate_missing_configfile(show, capsys):
    assert cli.main(["validate", "--sheet", "shots.csv", "--configfile", "nope.yaml"]) == 2
    err = capsys.readouterr().err
    assert "nope.yaml does not exist" in err and err.count("\n") == 1


def test_split_config_args():
    rest, files, entries = cli.split_config_args(
        ["-n", "--config=a=1", "target", "--configfile", "x.yaml", "y.yaml", "-C", "b=2", "c=3", "--forceall"])
    assert rest == ["-n", "target", "--forceall"]
    assert files == ["x.yaml", "y.yaml"] and entries == ["a=1", "b=2", "c=3"]


def test_no_traceback_from_the_real_command(show):
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow")}  # this checkout
    r = subprocess.run([sys.executable, "-m", "cinecomp.cli.main", "render", "--shots", "sh010", "--", "--configfile",
                        "missing.yaml"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "missing.yaml does not exist" in r.stderr


def test_config_file_paths_are_relative_to_the_file(tmp_path, capsys):
    """Issue 19: a config file's relative paths are found beside it, whichever command reads it and
    wherever it runs; the defaults (config.yaml) and --config KEY=VALUE stay relative to the run directory."""
    from cinecomp.configfile import load_config

    sub = tmp_path / "show"
    sub.mkdir()
    (sub / "cfg.yaml").write_text("shots: my.csv\ndiffusion: {pipeline: models/p}\n")
    (sub / "my.csv").write_text(f"{HEADER}\nsh010,nothere.####.exr,ACEScg,1001,1005,24,env.png,ACEScg,1\n")
    cfg = load_config([REPO / "config.yaml", sub / "cfg.yaml"])
    assert cfg["shots"] == str(sub / "my.csv") and cfg["diffusion"]["pipeline"] == str(sub / "models" / "p")
    assert cfg["results"] == "results" and cfg["diffusion"]["text_encoder"] == "models/cinecomp/text_encoder"
    assert load_config([REPO / "config.yaml", sub / "cfg.yaml"], ["shots=x.csv"])["shots"] == "x.csv"
    # a command
    assert cli.main(["validate", "--configfile", str(sub / "cfg.yaml")]) == 1
    assert f"shot sheet {sub / 'my.csv'} has 2 problem" in capsys.readouterr().err
    # the workflow itself (a bare snakemake, as a SLURM job runs it), from another directory
    r = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile",
                        str(REPO / "config.yaml"), "show/cfg.yaml", "--directory", str(tmp_path), "--dry-run",
                        "--cores", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, PYTHONPATH=str(REPO / "workflow")))
    assert r.returncode != 0 and f"shot sheet {sub / 'my.csv'} has 2 problem" in r.stdout + r.stderr, r.stderr[-2000:]
    assert "nothere.####.exr" in r.stdout + r.stderr
