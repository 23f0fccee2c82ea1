# cinecomp: composite green-screen character plates into new environments, shot by shot.
# Usage: README.md. All logic lives in rules/ and the cinecomp package (workflow/cinecomp).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/ingest.smk"
include: "rules/key.smk"
include: "rules/masks.smk"
include: "rules/depth.smk"
include: "rules/light.smk"
include: "rules/composite.smk"
include: "rules/assemble.smk"
include: "rules/review.smk"
include: "rules/curate.smk"  # only the target `curate` (never rule all)
include: "rules/train.smk"  # only the target `train` (never rule all)


rule all:
    default_target: True
    input:
        all_outputs(),
