"""`cinecomp demo`: render the project's demo plates."""

from __future__ import annotations


def run(args) -> int:
    from ..synth.renderer import make_demo

    for info in make_demo(args.out):
        print(f"{info.get('shot')}: {info.get('plate')}")
    return 0
