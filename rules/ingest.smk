# Plates and environments -> scene-linear ACEScg half EXR frames at the shot's resolution.


rule ingest_plate:
    input:
        lambda wc: shot_frame_files(wc.shot),
    output:
        directory(layout.work_dir(RESULTS, "{shot}", "ingest/plate")),
    log:
        layout.log_file(RESULTS, "ingest_plate", "{shot}"),
    benchmark:
        layout.benchmark_file(RESULTS, "ingest_plate", "{shot}")
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
        directory(layout.work_dir(RESULTS, "{shot}", "ingest/env")),
    log:
        layout.log_file(RESULTS, "ingest_env", "{shot}"),
    benchmark:
        layout.benchmark_file(RESULTS, "ingest_env", "{shot}")
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=resource("ingest", "mem_mb"),
        runtime=resource("ingest", "runtime"),
    params:
        settings=ingest_env_settings,
    script:
        "../scripts/ingest.py"
