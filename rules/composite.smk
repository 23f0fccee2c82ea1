# Key + environment -> composite beauty per frame (backend `over` for now).


rule composite:
    input:
        key=f"{RESULTS}/{{shot}}/key",
        env=f"{RESULTS}/{{shot}}/ingest/env",
    output:
        directory(f"{RESULTS}/{{shot}}/composite"),
    log:
        "logs/composite/{shot}.log",
    benchmark:
        "benchmarks/composite/{shot}.tsv"
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=resource("composite", "mem_mb"),
        runtime=resource("composite", "runtime"),
    params:
        settings=composite_settings,
    script:
        "../scripts/composite.py"
