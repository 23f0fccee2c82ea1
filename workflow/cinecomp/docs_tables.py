"""The parameter tables of the docs, generated from the code's own specs.

Every table of parameters in ``README.md`` and ``docs/*.md`` sits between two marker comments::

    <!-- params:harmonize -->
    | key | type / range | default | meaning |
    ...
    <!-- /params:harmonize -->

and is made here from the spec the code checks values against (:data:`SPECS`: the ``Num`` / ``Flag`` /
``Choice`` / ``Rgb`` dicts of :mod:`cinecomp.params`) or, for ``config``, from
``schemas/config.schema.yaml`` with the defaults of ``config.yaml``. Nothing between the markers is
written by hand::

    .venv/bin/python -m cinecomp.docs_tables --write    # regenerate every table in place
    .venv/bin/python -m cinecomp.docs_tables --check    # exit 1 naming each table that differs
    .venv/bin/python -m cinecomp.docs_tables --print harmonize

``tests/test_docs.py`` fails when a table and its spec differ. Importing this module is cheap (the
spec modules are imported only when a table is made, and none of them imports torch).

A developer tool at the top, beside cli: it may import everything below it (the spec modules, lazily),
and nothing in the library imports it.
"""

from __future__ import annotations

import argparse
import importlib
import math
import re
import sys
from pathlib import Path

from .layout import REPO

# table name -> (module, attribute[, key inside it]): the spec a table is made from
SPECS = {
    "key": ("cinecomp.perception.key", "KEY_SPEC"),
    "camera": ("cinecomp.camera", "CAMERA_SPEC"),
    "light": ("cinecomp.perception.light", "LIGHT_SPEC"),
    "harmonize": ("cinecomp.composite.harmonize", "HARMONIZE_SPEC"),
    "curate": ("cinecomp.curate.pipeline", "CURATE_SPEC"),
    "train.train": ("cinecomp.train.loop", "SECTIONS", "train"),
    "train.loss": ("cinecomp.train.loop", "SECTIONS", "loss"),
    "train.dropout": ("cinecomp.train.loop", "SECTIONS", "dropout"),
    "train.eval": ("cinecomp.train.loop", "SECTIONS", "eval"),
}
# table name -> (JSON schema, the YAML file whose values are the defaults)
SCHEMAS = {
    "config": ("schemas/config.schema.yaml", "config.yaml"),
}
# markers stand alone on their lines (a marker quoted inside a sentence is not one)
BLOCK = re.compile(r"^<!-- params:(?P<name>[\w.-]+) -->\n(?P<body>.*?)^<!-- /params:(?P=name) -->$", re.S | re.M)
MARKER = re.compile(r"^<!-- /?params:[\w.-]+ -->$", re.M)


def names() -> list[str]:
    return [*SPECS, *SCHEMAS]


def doc_files(repo: Path = REPO) -> list[Path]:
    """The Markdown files that may hold tables: README.md and docs/*.md."""
    return [p for p in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))] if p.is_file()]


# ------------------------------------------------------------------------------------------- cells
def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, every `|` escaped (once)."""
    return " ".join(str(text).split()).replace("\\|", "|").replace("|", "\\|")


def _num(x) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if x.is_integer() and abs(x) < 1e6:
            return str(int(x))
        return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", f"{x:.6g}")
    return str(x)


def _value(v) -> str:
    """A default as a TD types it in JSON/YAML."""
    if v is None:
        return "empty"
    if isinstance(v, bool) or isinstance(v, (int, float)):
        return _num(v)
    if isinstance(v, str):
        return f"`{v}`" if v else '`""`'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_num(x) for x in v) + "]"
    if isinstance(v, dict):
        return "`{}`" if not v else "`" + ", ".join(f"{k}: {_num(x)}" for k, x in v.items()) + "`"
    return str(v)


def _range(s) -> str:
    """The type and range of one spec entry (params.Num / Flag / Choice / Rgb, or any with describe())."""
    kind = type(s).__name__
    if kind == "Num":
        return f"{'integer' if s.integer else 'number'} {_num(s.lo)}..{_num(s.hi)}"
    if kind == "Flag":
        return "true \\| false"
    if kind == "Choice":
        return " \\| ".join(map(str, s.options))
    if kind == "Rgb":
        return f"[r, g, b], each {_num(s.lo)}..{_num(s.hi)}, not all 0"
    return " \\| ".join(p.strip() for p in s.describe().replace("\\|", "|").split("|"))


# ------------------------------------------------------------------------------------------ tables
def spec_markdown(spec: dict) -> str:
    """A Markdown table of a params spec: key, type / range, default, meaning (the spec's doc)."""
    rows = ["| key | type / range | default | meaning |", "|---|---|---|---|"]
    for name, s in spec.items():
        rows.append(f"| `{name}` | {_cell(_range(s))} | {_cell(_value(s.default))} | {_cell(getattr(s, 'doc', ''))} |")
    return "\n".join(rows) + "\n"


def _schema_range(node: dict) -> str:
    kind = node.get("type", "")
    if "enum" in node:
        return " \\| ".join(str(o) if o != "" else '""' for o in node["enum"])
    lo, hi = node.get("minimum"), node.get("maximum")
    if lo is not None and hi is not None:
        return f"{kind} {_num(lo)}..{_num(hi)}"
    if lo is not None:
        return f"{kind} >= {_num(lo)}"
    if hi is not None:
        return f"{kind} <= {_num(hi)}"
    if kind == "string" and node.get("minLength"):
        return "string, not empty"
    return kind


def _flatten(node: dict, key: str, defaults):
    """(dotted key, schema node, default) of every leaf of a schema; ``defaults`` are the YAML's values.
    A map of any names (``additionalProperties``, e.g. resources.<rule>) gives a row per name the YAML sets."""
    props = node.get("properties")
    if props:
        for name, child in props.items():
            d = defaults.get(name) if isinstance(defaults, dict) else None
            if d is None and isinstance(node.get("default"), dict):
                d = node["default"].get(name)
            yield from _flatten(child, f"{key}.{name}" if key else name, d)
        return
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and isinstance(defaults, dict) and defaults:
        for name, values in defaults.items():
            yield f"{key}.{name}", extra, values
        return
    yield key, node, defaults


def _schema_type(node: dict) -> str:
    if node.get("type") == "object" and node.get("properties"):  # a map of named values, e.g. resources.<rule>
        return ", ".join(f"{k} {_schema_range(v)}" for k, v in node["properties"].items())
    return _schema_range(node)


_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[\w.-]+):(?P<rest>.*)$")


def yaml_comments(text: str) -> dict[str, str]:
    """Dotted key -> the comment at the end of its line in a YAML file (block style), with the comment
    lines under it that continue it (a ``#`` in the same column)."""
    out, stack, last, col = {}, [], None, -1
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("#"):
            if last is not None and line.index("#") == col:
                out[last] += " " + stripped[1:].strip()
            else:
                last = None
            continue
        m = _KEY_LINE.match(line)
        if not m:
            last = None
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m["key"]))
        key = ".".join(k for _, k in stack)
        rest, last = m["rest"], None
        quoted = False
        for i, ch in enumerate(rest):  # the first # outside quotes, after a space, starts the comment
            quoted = quoted != (ch == '"')
            if ch == "#" and not quoted and (i == 0 or rest[i - 1] == " "):
                out[key], last, col = rest[i + 1:].strip(), key, len(line) - len(rest) + i
                break
    return out


def schema_markdown(schema: dict, defaults: dict, comments: dict | None = None) -> str:
    """A Markdown table of every leaf key of a JSON schema: key, type / range, default (from
    ``defaults``, else the schema's own), meaning (the schema's description, else ``comments[key]``)."""
    comments = comments or {}
    rows = ["| key | type / range | default | meaning |", "|---|---|---|---|"]
    for key, node, d in _flatten(schema, "", defaults):
        if d is None and "default" in node:
            d = node["default"]
        meaning = node.get("description") or comments.get(key, "")
        rows.append(f"| `{key}` | {_cell(_schema_type(node))} | {_cell(_value(d) if d is not None else '-')} "
                    f"| {_cell(meaning)} |")
    return "\n".join(rows) + "\n"


def spec(name: str) -> dict:
    """The spec a table is made from, imported from the module that owns it."""
    module, attr, *key = SPECS[name]
    obj = getattr(importlib.import_module(module), attr)
    return obj[key[0]] if key else obj


def table(name: str, repo: Path = REPO) -> str:
    """The generated Markdown of table ``name`` (ends with a newline)."""
    if name in SPECS:
        return spec_markdown(spec(name))
    if name in SCHEMAS:
        import yaml

        schema_path, values_path = SCHEMAS[name]
        schema = yaml.safe_load((repo / schema_path).read_text())
        text = (repo / values_path).read_text()
        return schema_markdown(schema, yaml.safe_load(text) or {}, yaml_comments(text))
    raise KeyError(f"no parameter table {name!r} (known: {', '.join(names())})")


# -------------------------------------------------------------------------------------- documents
def blocks(text: str) -> list[tuple[str, str]]:
    """(name, body) of every marked table of a Markdown text."""
    return [(m["name"], m["body"]) for m in BLOCK.finditer(text)]


def marker_problems(text: str) -> list[str]:
    """Markers that do not pair up (an opening without its close, or the reverse)."""
    inside = [m.span() for m in BLOCK.finditer(text)]
    problems = []
    for m in MARKER.finditer(text):
        if not any(a <= m.start() < b for a, b in inside):
            problems.append(f"unpaired marker {m.group(0)}")
    return problems


def render(text: str, repo: Path = REPO, cache: dict | None = None) -> str:
    """``text`` with every marked table regenerated."""
    cache = {} if cache is None else cache

    def fill(m):
        name = m["name"]
        if name not in cache:
            cache[name] = table(name, repo)
        return f"<!-- params:{name} -->\n{cache[name]}<!-- /params:{name} -->"

    return BLOCK.sub(fill, text)


def check(repo: Path = REPO) -> list[str]:
    """Every difference between the docs and the specs: a table that differs from its spec, an unknown
    table name, an unpaired marker, a spec with no table anywhere."""
    problems, seen, cache = [], set(), {}
    for path in doc_files(repo):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(repo)
        problems += [f"{rel}: {p}" for p in marker_problems(text)]
        for name, body in blocks(text):
            seen.add(name)
            try:
                if name not in cache:
                    cache[name] = table(name, repo)
            except KeyError as exc:
                problems.append(f"{rel}: {exc.args[0]}")
                continue
            if body != cache[name]:
                problems.append(f"{rel}: table params:{name} differs from its spec "
                                f"(fix: .venv/bin/python -m cinecomp.docs_tables --write)")
    for name in names():
        if name not in seen:
            problems.append(f"no doc page has the table params:{name} (fix: add <!-- params:{name} --> "
                            f"<!-- /params:{name} --> on the page that documents it, then --write)")
    return problems


def write(repo: Path = REPO) -> list[Path]:
    """Regenerate every marked table in place; the files that changed."""
    changed, cache = [], {}
    for path in doc_files(repo):
        text = path.read_text(encoding="utf-8")
        new = render(text, repo, cache)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cinecomp.docs_tables", description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="regenerate every marked table in README.md and docs/*.md")
    g.add_argument("--check", action="store_true", help="exit 1 when a table differs from its spec (default)")
    g.add_argument("--print", metavar="NAME", help=f"print one table ({', '.join(names())})")
    args = ap.parse_args(argv)
    if args.print:
        try:
            sys.stdout.write(table(args.print))
        except KeyError as exc:
            print(exc.args[0], file=sys.stderr)
            return 2
        return 0
    if args.write:
        for path in write():
            print(f"wrote {path.relative_to(REPO)}")
    problems = check()
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
