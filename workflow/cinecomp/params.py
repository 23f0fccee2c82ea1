"""Numbers a TD types: JSON objects from sheet cells, every value checked for type, range and finiteness.

``parse_json_object`` reads a cell (NaN/Infinity and deep nesting are refused); ``check_params`` checks
an object against a spec of ``Num`` / ``Choice`` / ``Flag`` / ``Rgb`` entries and returns it with
defaults filled. Both raise ``ValueError`` with every problem in one message.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass


def is_finite_number(v) -> bool:
    """A JSON/YAML number that is finite: any int (math.isfinite overflows on a huge one), a finite float."""
    return not isinstance(v, bool) and (isinstance(v, int) or (isinstance(v, float) and math.isfinite(v)))


def shown(v, limit: int = 40) -> str:
    """``repr(v)`` cut to ``limit`` characters (a 400-digit number in a message helps nobody)."""
    r = repr(v)
    return r if len(r) <= limit else f"{r[:limit]}... ({len(r)} characters)"


@dataclass(frozen=True)
class Num:
    default: float | None
    lo: float
    hi: float
    integer: bool = False
    doc: str = ""

    def check(self, name, v):
        if not is_finite_number(v):
            return None, f"{name} must be a finite number in [{self.lo}, {self.hi}], got {shown(v)}"
        if not self.lo <= v <= self.hi:  # before any float(): a 400-digit JSON integer is no float
            return None, f"{name} must be in [{self.lo}, {self.hi}], got {shown(v)}"
        if self.integer and float(v) != int(v):
            return None, f"{name} must be a whole number in [{self.lo}, {self.hi}], got {v!r}"
        return (int(v) if self.integer else float(v)), None

    def describe(self):
        return f"{self.lo}..{self.hi}"


@dataclass(frozen=True)
class Flag:
    default: bool
    doc: str = ""

    def check(self, name, v):
        if not isinstance(v, bool):
            return None, f"{name} must be true or false, got {v!r}"
        return v, None

    def describe(self):
        return "true|false"


@dataclass(frozen=True)
class Choice:
    default: str
    options: tuple
    doc: str = ""

    def check(self, name, v):
        if v not in self.options:
            return None, f"{name} must be one of {', '.join(map(str, self.options))}, got {v!r}"
        return v, None

    def describe(self):
        return "|".join(map(str, self.options))


@dataclass(frozen=True)
class Rgb:
    """Three finite numbers in [lo, hi], not all zero."""

    default: tuple | None
    lo: float = 0.0
    hi: float = 1e6
    doc: str = ""

    def check(self, name, v):
        ok = (isinstance(v, (list, tuple)) and len(v) == 3
              and all(is_finite_number(x) and self.lo <= x <= self.hi for x in v) and any(x > 0 for x in v))
        if not ok:
            return None, f"{name} must be [r, g, b], three finite numbers in [{self.lo}, {self.hi}], not all 0; got {shown(v)}"
        return tuple(float(x) for x in v), None

    def describe(self):
        return "[r, g, b]"


def load_yaml(text: str):
    """YAML as a TD means it: ``1e-4`` is a number (YAML 1.1, PyYAML's default, reads it as a string
    because it has no dot); everything else as ``yaml.safe_load``."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                                 re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))
    return yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader subclass)


def _no_constant(name):
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json_object(text: str, *, example: str) -> dict:
    """A JSON object from a sheet cell. NaN, Infinity and nesting deeper than 8 are refused."""
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{text!r} is not valid JSON ({exc.msg}) (fix: e.g. {example})") from None
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc} (fix: use a finite number, e.g. {example})") from None
    except RecursionError:
        raise ValueError(f"{text[:40]!r}... is nested too deeply (fix: a flat object, e.g. {example})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{text!r} must be a JSON object (fix: e.g. {example})")
    return obj


def check_params(obj: dict, spec: dict, *, what: str, fix: str = "") -> dict:
    """``obj`` checked against ``spec`` (name -> Num/Flag/Choice/Rgb); defaults filled for absent keys.
    ``fix`` ends the error message (default: the docs index, which links every key table)."""
    problems = []
    unknown = sorted(set(obj) - set(spec))
    if unknown:
        problems.append(f"unknown {what} key(s) {', '.join(unknown)}; valid: {', '.join(spec)}")
    out = {}
    for name, s in spec.items():
        if name not in obj or obj[name] is None:
            out[name] = s.default
            continue
        v, err = s.check(name, obj[name])
        if err:
            problems.append(f"{what} {err}")
        out[name] = v
    if problems:
        raise ValueError("; ".join(problems) + f" (fix: {fix or 'docs/README.md links the table of every ' + what + ' key with its range'})")
    return out


def spec_table(spec: dict) -> str:
    """Markdown rows `| name | default | range | meaning |` (the docs' tables: cinecomp.docs_tables)."""
    return "\n".join(f"| `{n}` | {s.default} | {s.describe()} | {s.doc} |" for n, s in spec.items())
