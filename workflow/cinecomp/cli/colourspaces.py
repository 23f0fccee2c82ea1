"""`cinecomp colourspaces`: list the OCIO colourspaces a sheet may name."""

from __future__ import annotations


def run(args) -> int:
    from ..colour import config

    for cs in config().getColorSpaces():
        aliases = ", ".join(cs.getAliases())
        print(f"{cs.getName()}" + (f"  (aliases: {aliases})" if aliases else ""))
    return 0
