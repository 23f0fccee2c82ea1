# Snakemake script entry point of rules curate_clip and curate: thin, the work is in cinecomp.curate.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from cinecomp import curate  # noqa: E402
from cinecomp.scripting import run  # noqa: E402

run(snakemake, curate.gather_stage if snakemake.rule == "curate" else curate.curate_stage)  # noqa: F821
