"""The docs: parameter tables generated from the code's specs are up to date, and every relative link in
README.md and docs/*.md points to a file (and heading) that exists. Fast, and imports no torch."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cinecomp import docs_tables
from helpers import REPO
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`+[^`\n]*`+")
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """Markdown without code: fenced blocks and inline code spans (links there are not links)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    """GitHub's heading ids of a Markdown file: lower case, punctuation dropped, spaces -> '-', repeats -N."""
    seen: dict[str, int] = {}
    out = set()
    for m in HEADING.finditer(FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = re.sub(r"[^\w\- ]", "", m.group(2).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_docs_exist():
    names = {p.name for p in DOCS}
    for page in ("README.md", "shot-sheet.md", "configuration.md", "key.md", "masks.md", "depth.md", "light.md",
                 "composite.md", "harmonize.md", "diffusion.md", "slurm.md", "evaluation.md", "curation.md",
                 "training.md", "benchmarks.md", "architecture.md"):
        assert page in names, f"docs/{page} is missing"
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 200, "README.md grew past ~200 lines: move reference to docs/"


def test_tables_match_the_specs():
    problems = docs_tables.check(REPO)
    assert not problems, "\n".join(problems)


def test_every_spec_in_the_code_has_a_table():
    """A `*_SPEC = {` dict anywhere in the package is listed in docs_tables.SPECS (so it gets a table)."""
    listed = {(module, attr) for module, attr, *_ in docs_tables.SPECS.values()}
    package = REPO / "workflow" / "cinecomp"
    for path in package.rglob("*.py"):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        for attr in re.findall(r"^([A-Z][A-Z0-9_]*_SPEC)\s*(?::[^=]*)?=", path.read_text(encoding="utf-8"), re.M):
            assert (module, attr) in listed, f"{module}.{attr} has no table: add it to docs_tables.SPECS"


def test_a_stale_table_is_caught(monkeypatch):
    """Changing a spec (or hand-editing its table) makes the check fail, naming the table."""
    from cinecomp.params import Num

    page = REPO / "docs" / "harmonize.md"
    text = page.read_text(encoding="utf-8")
    assert docs_tables.render(text) == text
    body = dict(docs_tables.blocks(text))["harmonize"]
    edited = text.replace(body, body.replace("| `light_wrap` |", "| `light_wrap_typo` |"))
    assert edited != text and docs_tables.render(edited) == text

    spec = docs_tables.spec("harmonize")
    monkeypatch.setitem(spec, "light_wrap", Num(0.25, 0.0, 2.0, doc="changed in the code, not in the docs"))
    problems = docs_tables.check(REPO)
    assert any("params:harmonize differs" in p and "harmonize.md" in p for p in problems), problems


def test_markers_pair_up_and_name_known_tables():
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        assert not docs_tables.marker_problems(text), path
        for name, _ in docs_tables.blocks(text):
            assert name in docs_tables.names(), f"{path.name}: unknown table params:{name}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path):
    broken = []
    for target in LINK.findall(prose(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no such file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: {dest.name} has no heading #{anchor}")
    assert not broken, f"{path.relative_to(REPO)}: broken links:\n" + "\n".join(broken)


def test_generator_imports_nothing_heavy():
    code = ("import sys; from cinecomp import docs_tables as d; assert not d.check(), d.check(); "
            "heavy = {'torch', 'diffusers', 'transformers', 'deepspeed'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO / "workflow", timeout=300)


def test_pages_the_code_cites_exist():
    """Error messages and docstrings cite docs pages (`docs/key.md`): each exists."""
    cited = []
    for path in [*(REPO / "workflow" / "cinecomp").rglob("*.py"), *(REPO / "rules").glob("*.smk"),
                 *(REPO / "schemas").glob("*.yaml"), REPO / "config.yaml", REPO / "Snakefile"]:
        for page in re.findall(r"\bdocs/[\w.-]+\.md\b", path.read_text(encoding="utf-8")):
            cited.append(page)
            assert (REPO / page).is_file(), f"{path.relative_to(REPO)} cites {page}, which does not exist"
    assert cited


def test_gpu_recipes_are_valid_configs():
    """docs/recipes: the render overlays pass the config schema over config.yaml; the training recipe
    has only known keys in range (its model and data paths are the site's, so only they are missing)."""
    import yaml
    from snakemake.utils import validate

    from cinecomp.configfile import merge_config
    from cinecomp.train.loop import TrainConfigError, load_config

    recipes = sorted((REPO / "docs" / "recipes").glob("*.yaml"))
    assert len(recipes) >= 3
    for recipe in recipes:
        if recipe.name.startswith("train-"):
            with pytest.raises(TrainConfigError) as err:
                load_config(recipe)
            msg = str(err.value)
            assert "unknown" not in msg and " must be " not in msg and "does not exist" in msg, msg
            continue
        cfg = merge_config(yaml.safe_load((REPO / "config.yaml").read_text()), yaml.safe_load(recipe.read_text()))
        validate(cfg, str(REPO / "schemas" / "config.schema.yaml"))
        assert cfg["diffusion"]["model_height"] in (480, 720) and cfg["backends"]["composite"] == "diffusion"
