"""What the subcommands share: the config Snakemake will see, the shot targets, the snakemake command
of `render`/`submit`, and the command line's own error. Subcommands import this, never the dispatcher."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ..layout import REPO

SHOT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # as schemas/shots.schema.yaml


class UsageError(Exception):
    """A one-line error of the command line itself (exit 2, no traceback)."""


def shot_targets(results: str, shot: str, version: int) -> list[str]:
    """The files and directories `render --shots` asks Snakemake for, for one shot at its version."""
    from ..layout import cost_report, published_targets

    return [*published_targets(results, shot, version), cost_report(results, shot, version)]


def split_config_args(extra: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Snakemake args after `--` without their --configfile(s) and --config/-C options:
    (the other args, config files, KEY=VALUE entries). Snakemake keeps only the last of each option,
    so cinecomp merges them with its own into one of each."""
    rest, files, entries = [], [], []
    i = 0
    while i < len(extra):
        name, eq, value = extra[i].partition("=")
        i += 1
        if name not in ("--configfile", "--configfiles", "--config", "-C"):
            rest.append(extra[i - 1])
            continue
        dest = entries if name in ("--config", "-C") else files
        if eq:  # --config=KEY=VALUE takes that one value
            dest.append(value)
            continue
        while i < len(extra) and not extra[i].startswith("-"):  # like snakemake's nargs
            dest.append(extra[i])
            i += 1
    return rest, files, entries


def load_config(files: list[str], entries=()) -> dict:
    """The config snakemake will see (configfile.load_config); UsageError names a missing or unreadable file."""
    from ..configfile import ConfigFileError, load_config as load

    try:
        return load(files, entries)
    except ConfigFileError as exc:
        raise UsageError(str(exc)) from None


def composite_default(cfg: dict) -> str:
    backends = cfg.get("backends")
    return backends.get("composite", "over") if isinstance(backends, dict) else "over"


def depth_default(cfg: dict) -> str:
    backends = cfg.get("backends")
    return backends.get("depth", "ground") if isinstance(backends, dict) else "ground"


def check_whole_sheet(cfg: dict) -> None:
    """Every row of the configured sheet checked as the workflow will (files too): SheetError lists
    every problem. `submit` runs it before anything is queued."""
    from ..sheet import load_sheet

    movie_start = cfg.get("movie_start_frame", 1001)
    if isinstance(movie_start, bool) or not isinstance(movie_start, int):
        raise UsageError(f"movie_start_frame {movie_start!r} is not a whole number (fix: e.g. 1001)")
    load_sheet(str(cfg.get("shots", "shots/shots.csv")), movie_start=movie_start,
               composite_default=composite_default(cfg), depth_default=depth_default(cfg))


def targets_of_shots(ids: str, cfg: dict) -> list[str]:
    """Targets of `--shots a,b`: ids checked against the sheet, under the configured results."""
    from ..sheet import load_sheet

    shots = [s.strip() for s in ids.split(",") if s.strip()]
    if not shots:
        raise UsageError(f"--shots {ids!r} names no shot (fix: e.g. --shots sh010,sh020)")
    unsafe = [s for s in shots if not SHOT_ID.fullmatch(s)]
    if unsafe:
        raise UsageError(f"{unsafe[0]!r} is not a valid shot id "
                         "(fix: shot ids are letters, digits, '_' and '-', as in the sheet)")
    sheet = str(cfg.get("shots", "shots/shots.csv"))
    df = load_sheet(sheet, check_files=False, composite_default=composite_default(cfg))  # SheetError: all problems
    unknown = [s for s in shots if s not in df.index]
    if unknown:
        known = ", ".join(list(df.index)[:20]) + (", ..." if len(df) > 20 else "")
        raise UsageError("; ".join(f"unknown shot {s!r}" for s in unknown) + f" in {sheet} (known: {known})")
    from ..layout import is_published

    results = str(cfg.get("results", "results"))
    done = [s for s in shots if is_published(results, s, int(df.loc[s, "version"]))]
    if done:  # never rendered again (layout.py): asking Snakemake for them could overwrite them
        print("cinecomp render: already published, not rendered again (raise `version` in the sheet to render "
              "changes): " + ", ".join(f"{s} v{int(df.loc[s, 'version']):03d}" for s in done), file=sys.stderr)
    return [t for s in shots if s not in done for t in shot_targets(results, s, int(df.loc[s, "version"]))]


def render_command(args, extra: list[str], profile: str) -> tuple[list[str] | None, dict]:
    """The snakemake command of `render`/`submit` (None: every shot asked for is published) and the
    config it will see. UsageError/SheetError on bad input."""
    cfg, files, config, _ = sheet_config(args, extra)
    rest = split_config_args(extra)[0]
    targets = targets_of_shots(args.shots, cfg) if args.shots else []
    if args.shots and not targets:
        return None, cfg  # every shot asked for is published
    # Targets before options (--config would swallow them); one --configfile and one --config.
    cmd = [sys.executable, "-m", "snakemake", *targets, "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(Path.cwd()), "--configfile", *files, "--profile", str(REPO / "profiles" / profile),
           *rest]
    if config:
        cmd += ["--config", *config.values()]
    return cmd, cfg


def sheet_config(args, extra: list[str]) -> tuple[dict, list[str], dict, str]:
    """The config of `render`/`submit`/`status` from --configfile, --sheet and the Snakemake args after `--`:
    (config, config files, KEY=VALUE entries by key, sheet path). UsageError when a file is missing."""
    files, entries = split_config_args(extra)[1:]
    files = [str(args.configfile or REPO / "config.yaml"), *files]
    config = {e.partition("=")[0]: e for e in entries}  # one entry per key, the last wins
    if args.sheet:
        config["shots"] = f"shots={args.sheet}"
    cfg = load_config(files, config.values())
    sheet = str(cfg.get("shots", "shots/shots.csv"))
    if not Path(sheet).is_file():
        raise UsageError(f"shot sheet {sheet} does not exist (fix: --sheet PATH or --config shots=PATH)")
    return cfg, files, config, sheet
