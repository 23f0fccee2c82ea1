# Ingested plate -> alpha + despilled premultiplied foreground (R,G,B,A per frame).


rule key:
    input:
        f"{RESULTS}/{{shot}}/ingest/plate",
    output:
        directory(f"{RESULTS}/{{shot}}/key"),
    params:
        settings=key_settings,
    log:
        "logs/key/{shot}.log",
    benchmark:
        "benchmarks/key/{shot}.tsv"
    resources:
        mem_mb=resource("key", "mem_mb"),
        runtime=resource("key", "runtime"),
    conda:
        "../envs/core.yaml"
    script:
        "../scripts/key.py"
