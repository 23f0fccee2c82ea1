# Key + environment -> composite beauty per frame (backend `over` for now).


rule composite:
    input:
        key=f"{RESULTS}/{{shot}}/key",
        env=f"{RESULTS}/{{shot}}/ingest/env",
    output:
        directory(f"{RESULTS}/{{shot}}/composite"),
    params:
        settings=composite_settings,
    log:
        "logs/composite/{shot}.log",
    benchmark:
        "benchmarks/composite/{shot}.tsv"
    resources:
        mem_mb=resource("composite", "mem_mb"),
        runtime=resource("composite", "runtime"),
    conda:
        "../envs/core.yaml"
    script:
        "../scripts/composite.py"
