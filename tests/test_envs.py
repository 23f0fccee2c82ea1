"""envs/*.yaml (for --sdm conda, not buildable here) carry the same pins as the virtual environment."""

import re

import yaml

from helpers import REPO


def pins() -> dict[str, str]:
    out = {}
    for req in REPO.glob("requirements*.txt"):
        for line in req.read_text().splitlines():
            m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", line.strip())
            if m:
                out[m.group(1).lower()] = m.group(2)
    return out


def test_env_pins_match_requirements():
    known = pins()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        deps = spec["dependencies"]
        assert "python=3.11" in deps, env
        pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
        for line in pip:
            name, version = line.split("==")
            assert known.get(name.lower()) == version, f"{env.name}: {line} differs from requirements*.txt"


def test_rules_use_existing_envs():
    for smk in (REPO / "rules").glob("*.smk"):
        for m in re.finditer(r'conda:\s*\n\s*"\.\./(envs/[^"]+)"', smk.read_text()):
            assert (REPO / m.group(1)).is_file(), f"{smk.name} names missing {m.group(1)}"
