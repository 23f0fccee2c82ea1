# Ingested plate -> alpha + despilled premultiplied foreground (R,G,B,A per frame).
# Backends: chroma (colour difference) | matanyone (MatAnyone video matting, perception.matanyone).


rule key:
    input:
        f"{RESULTS}/{{shot}}/ingest/plate",
    output:
        directory(f"{RESULTS}/{{shot}}/key"),
    log:
        f"{RESULTS}/logs/key/{{shot}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/key/{{shot}}.tsv"
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
