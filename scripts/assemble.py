# Snakemake script entry point of rule(s) using scripts/assemble.py: thin, the work is in cinecomp.stages.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from cinecomp import stages  # noqa: E402
from cinecomp.jobs import run  # noqa: E402

run(snakemake, stages.assemble)  # noqa: F821 (snakemake is injected by Snakemake)
