"""Config files as every command and the workflow read them: one reader, one merge, one rule for paths.

A relative path in a config file is relative to that file (``models/proof/cinecomp.yaml`` says
``pipeline: pipeline``, found beside it wherever the command runs). Two exceptions, both relative to
the run directory as before: the repository's own ``config.yaml`` (the defaults) and ``--config
KEY=VALUE`` on the command line. Only the keys in :data:`PATH_KEYS` are paths (inputs the workflow
reads); where outputs go (``results``, ``curate.out``) stays relative to the run directory.
``resolve_paths`` is called by ``cli.common.load_config``, ``curate.load_settings`` and the workflow
itself (rules/sheet.smk), so `cinecomp` and a bare ``snakemake --configfile`` see the same paths.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CinecompError
from .layout import REPO

# Config keys that name an input file or directory (relative: relative to the config file giving them).
PATH_KEYS = (("shots",), ("diffusion", "pipeline"), ("diffusion", "text_encoder"), ("diffusion", "tokenizer"),
             ("perception", "sam2", "config"), ("perception", "sam2", "checkpoint"),
             ("perception", "matanyone", "checkpoint"), ("perception", "depth_model", "path"), ("curate", "clips"),
             ("train",))
DEFAULTS = REPO / "config.yaml"


class ConfigFileError(CinecompError):
    """A config file that is missing or cannot be read: one line, the file and the fix."""


def read_config_file(path) -> dict:
    """One config file as a dict (YAML; ``1e-4`` is a number). ConfigFileError names a missing,
    unreadable or non-mapping file."""
    import yaml

    from .params import load_yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigFileError(f"config file {path} does not exist (fix: check the --configfile path)")
    try:
        data = load_yaml(p.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        raise ConfigFileError(f"config file {path} cannot be read: {' '.join(str(exc).split())[:300]} "
                              "(fix: a UTF-8 YAML mapping, see config.yaml)") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"config file {path} is not a YAML mapping of keys (fix: see config.yaml)")
    return data


def merge_config(base: dict, over: dict) -> dict:
    """Nested dicts merged the way snakemake merges config files."""
    for k, v in over.items():
        base[k] = merge_config(dict(base[k]), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def _get(cfg, key):
    for k in key:
        if not isinstance(cfg, dict) or k not in cfg:
            return None
        cfg = cfg[k]
    return cfg


def _set(cfg: dict, key, value) -> None:
    for k in key[:-1]:
        cfg = cfg[k]
    cfg[key[-1]] = value


def resolve_paths(cfg: dict, files, command_line: dict | None = None) -> dict:
    """``cfg`` (merged from ``files`` in order (paths, or (path, its data) pairs), then ``command_line``) with each path key whose value
    came from a config file other than the defaults made relative to that file's directory (absolute).
    A key last set on the command line, or to a value the merge did not keep, is left alone."""
    files = [f if isinstance(f, tuple) else (str(f), read_config_file(f)) for f in files]  # (path, its data)
    for key in PATH_KEYS:
        source = None
        for f, data in files:
            value = _get(data, key)
            if value is not None:
                source = (f, value)
        if source is None or _get(command_line or {}, key) is not None:
            continue
        f, value = source
        if (not isinstance(value, str) or not value or Path(value).expanduser().is_absolute()
                or Path(f).resolve() == DEFAULTS.resolve() or _get(cfg, key) != value):
            continue
        resolved = (Path(f).resolve().parent / value)
        if key == ("perception", "sam2", "config") and not resolved.exists():
            continue  # may name a config inside the sam2 package (configs/sam2.1/...), not a file
        _set(cfg, key, str(resolved))
    return cfg


def load_config(files, entries=()) -> dict:
    """The config snakemake will see: the files in order, then KEY=VALUE entries (values as text,
    YAML for {...}/[...]), relative paths resolved (module doc). ConfigFileError on a bad file."""
    import yaml

    cfg: dict = {}
    read = [(str(f), read_config_file(f)) for f in files]
    for _, data in read:
        merge_config(cfg, data)
    command_line: dict = {}
    for e in entries:
        key, _, value = e.partition("=")
        try:
            value = yaml.safe_load(value) if value.startswith(("{", "[")) else value
        except yaml.YAMLError:
            pass
        merge_config(command_line, {key: value})
    merge_config(cfg, command_line)
    return resolve_paths(cfg, read, command_line)
