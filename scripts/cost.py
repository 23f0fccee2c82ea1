# Snakemake script entry point of rule(s) using scripts/cost.py: thin, the work is in cinecomp.farm.status.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from cinecomp.farm import status  # noqa: E402
from cinecomp.jobs import run  # noqa: E402

run(snakemake, status.cost_stage)  # noqa: F821 (snakemake is injected by Snakemake)
