# cinecomp: composite green-screen character plates into new environments, shot by shot.
# Usage: README.md. All logic lives in rules/ and the cinecomp package (workflow/cinecomp); every
# output path comes from cinecomp.layout. This file only includes, in order:
#   sheet      the config checked, the shot sheet loaded (argv sniffing), shared look-ups
#   resources  memory, runtime, threads, GPUs and conda envs of a shot's jobs
#   settings   per-stage params of a shot (EXR metadata, the cost table's rules)
#   targets    input functions that depend on a shot's row, and all_outputs() for rule all
#   preflight  parse-time model checks (stop before any job runs)
#   then one file per stage, in the order a shot flows through them.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/sheet.smk"
include: "rules/resources.smk"
include: "rules/settings.smk"
include: "rules/targets.smk"
include: "rules/preflight.smk"
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
