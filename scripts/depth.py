# Snakemake script entry point of rule(s) using scripts/depth.py: thin, the work is in cinecomp.stages.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from cinecomp import stages  # noqa: E402
from cinecomp.jobs import run  # noqa: E402

run(snakemake, stages.depth)  # noqa: F821 (snakemake is injected by Snakemake)
