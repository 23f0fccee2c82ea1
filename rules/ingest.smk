# Plates and environments -> scene-linear ACEScg half EXR frames at the shot's resolution.


rule ingest_plate:
    input:
        lambda wc: shot_frame_files(wc.shot),
    output:
        directory(f"{RESULTS}/{{shot}}/ingest/plate"),
    log:
        f"{RESULTS}/logs/ingest_plate/{{shot}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ingest_plate/{{shot}}.tsv"
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=resource("ingest", "mem_mb"),
        runtime=resource("ingest", "runtime"),
    params:
        settings=ingest_plate_settings,
    script:
        "../scripts/ingest.py"


rule ingest_env:
    input:
        lambda wc: shot_env_files(wc.shot),
    output:
        directory(f"{RESULTS}/{{shot}}/ingest/env"),
    log:
        f"{RESULTS}/logs/ingest_env/{{shot}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ingest_env/{{shot}}.tsv"
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=resource("ingest", "mem_mb"),
        runtime=resource("ingest", "runtime"),
    params:
        settings=ingest_env_settings,
    script:
        "../scripts/ingest.py"
