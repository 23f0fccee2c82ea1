# Snakemake script entry point of rules curate_clip and curate: thin, the work is in cinecomp.curate.pipeline.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from cinecomp.curate import runner  # noqa: E402
from cinecomp.jobs import run  # noqa: E402

run(snakemake, runner.gather_stage if snakemake.rule == "curate" else runner.curate_stage)  # noqa: F821
