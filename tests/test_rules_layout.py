"""The rule files take every path from cinecomp.layout, the Snakefile only includes, and the cost
table's rules come from the workflow itself (no hand-kept list)."""

import json
import re
import subprocess
import sys

from cinecomp import layout
from helpers import REPO


def test_layout_paths_for_numbers_and_wildcards():
    assert layout.work_dir("R", "sh010", "ingest/plate") == "R/sh010/ingest/plate"
    assert layout.work_dir("R", "{shot}", "key") == "R/{shot}/key"
    assert layout.light_file("R", "{shot}") == "R/{shot}/light/light.json"
    assert layout.prompt_embeds_file("R", "a") == "R/a/diffusion/prompt_embeds.safetensors"
    assert layout.comp_dir("R", "{shot}", "{version}") == "R/{shot}/v{version}/comp"
    assert layout.daily_file("R", "{shot}", "{version}") == "R/{shot}/v{version}/review/{shot}_v{version}_daily.mp4"
    assert layout.contact_sheet_file("R", "a", 2) == "R/a/v002/review/a_v002_contact.png"
    assert layout.cost_report("R", "a", "002") == "R/a/v002/review/a_v002_cost.html"
    assert layout.published_targets("R", "a", 1) == [
        "R/a/v001/comp", "R/a/v001/review/a_v001_daily.mp4", "R/a/v001/review/a_v001_contact.png"]
    assert layout.log_file("R", "key", "{shot}") == "R/logs/key/{shot}.log"
    assert layout.log_file("R", "assemble", "{shot}", "{version}") == "R/logs/assemble/{shot}_v{version}.log"
    assert layout.benchmark_file("R", "daily", "a", 3) == "R/benchmarks/daily/a_v003.tsv"
    assert layout.benchmark_file("R", "curate_clip", "{clip}") == "R/benchmarks/curate_clip/{clip}.tsv"


def test_rule_files_spell_no_results_path():
    spelled = [f"{p.name}: {line.strip()}" for p in sorted((REPO / "rules").glob("*.smk"))
               for line in p.read_text().splitlines() if re.search(r'f"\{RESULTS\}/', line)]
    assert not spelled, "paths under results come from cinecomp.layout:\n" + "\n".join(spelled)


def test_snakefile_is_only_includes():
    code = [ln for ln in (REPO / "Snakefile").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    allowed = re.compile(r'^(from snakemake\.utils import min_version|min_version\(.*\)|configfile: .*|include: "rules/\w+\.smk".*'
                         r'|rule all:|\s+default_target: True|\s+input:|\s+all_outputs\(\),)$')
    assert [ln for ln in code if not allowed.match(ln)] == []


def test_cost_rules_are_the_per_shot_benchmarked_rules():
    """Read with `train` on the command line, so no shot sheet is needed."""
    code = f"""
import json, sys
from pathlib import Path
sys.argv = ["snakemake", "train"]
from snakemake.api import SnakemakeApi
from snakemake.io import strip_wildcard_constraints
from snakemake.settings.types import ConfigSettings, OutputSettings, Quietness, ResourceSettings
with SnakemakeApi(OutputSettings(quiet={{Quietness.ALL}})) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=Path({str(REPO / 'Snakefile')!r}),
                      config_settings=ConfigSettings(configfiles=[Path({str(REPO / 'config.yaml')!r})],
                                                     config=dict(shots="/nonexistent.csv")))._workflow
    print(json.dumps(dict(cost=wf.globals["cost_rules"](), results=wf.globals["RESULTS"],
                          bench={{r.name: strip_wildcard_constraints(str(r.benchmark)) for r in wf.rules if r.benchmark is not None}})))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["cost"] == ["ingest_plate", "ingest_env", "key", "masks", "depth", "light", "prompt_embeds",
                           "harmonize_base", "composite", "assemble", "daily", "contact_sheet"]
    for rule in out["cost"]:  # where farm.status.shot_cost looks for them
        versioned = layout.benchmark_file(out["results"], rule, "{shot}", "{version}")
        assert out["bench"][rule] in (layout.benchmark_file(out["results"], rule, "{shot}"), versioned)


def test_every_error_on_bad_input_derives_from_one_base_class():
    """One error base class: every exception class of the package is a CinecompError, but the command
    line's own UsageError (exit 2) and private ones that are turned into a CinecompError before a TD sees
    them."""
    import importlib
    import inspect
    import pkgutil

    import cinecomp
    from cinecomp.errors import CinecompError

    apart = []
    for info in pkgutil.walk_packages(cinecomp.__path__, "cinecomp."):
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == info.name and not issubclass(cls, CinecompError):
                apart.append(f"{info.name}.{name}")
    assert [a for a in apart if not a.rsplit(".", 1)[1].startswith("_")] == ["cinecomp.cli.common.UsageError"]
