# Curation of training pairs (docs/curation.md): a job per clip of the clips sheet, then one job
# that gathers their shards into one index and manifest. Only the target `curate` asks for them:
#   snakemake curate --config curate='{clips: clips.csv, out: curated}'
# so the render DAG (rule all) never contains these jobs and never reads the clips sheet.


include: "curate_common.smk"


wildcard_constraints:
    clip="[A-Za-z0-9][A-Za-z0-9_-]*",


rule curate_clip:
    input:
        curate_sheet,
    output:
        directory(f"{CURATE_OUT}/clips/{{clip}}"),
    log:
        layout.log_file(CURATE_OUT, "curate_clip", "{clip}"),
    benchmark:
        layout.benchmark_file(CURATE_OUT, "curate_clip", "{clip}")
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=resource("curate_clip", "mem_mb"),
        runtime=resource("curate_clip", "runtime"),
    params:
        settings=curate_clip_settings,
    script:
        "../scripts/curate.py"


rule curate:
    input:
        curate_clip_dirs,
    output:
        index=f"{CURATE_OUT}/index.json",
        manifest=f"{CURATE_OUT}/manifest.csv",
    log:
        layout.log_file(CURATE_OUT, "curate", "gather"),
    conda:
        "../envs/core.yaml"
    params:
        settings={},
    script:
        "../scripts/curate.py"
