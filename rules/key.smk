# Ingested plate -> alpha + despilled premultiplied foreground (R,G,B,A per frame).
# Backends: chroma (colour difference) | matanyone (MatAnyone video matting, perception.matanyone).


rule key:
    input:
        layout.work_dir(RESULTS, "{shot}", "ingest/plate"),
    output:
        directory(layout.work_dir(RESULTS, "{shot}", "key")),
    log:
        layout.log_file(RESULTS, "key", "{shot}"),
    benchmark:
        layout.benchmark_file(RESULTS, "key", "{shot}")
    conda:
        stage_env("key")
    resources:
        mem_mb=resource("key", "mem_mb"),
        runtime=resource("key", "runtime"),
        gpu=perception_gpu("key"),
    params:
        settings=key_settings,
    script:
        "../scripts/key.py"
