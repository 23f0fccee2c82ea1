# Composite + key + masks + depth -> <shot>_comp_v###.####.exr, one multi-layer EXR per frame.


rule assemble:
    input:
        composite=f"{RESULTS}/{{shot}}/composite",
        key=f"{RESULTS}/{{shot}}/key",
        masks=f"{RESULTS}/{{shot}}/masks",
        depth=f"{RESULTS}/{{shot}}/depth",
    output:
        directory(f"{RESULTS}/{{shot}}/comp"),
    log:
        "logs/assemble/{shot}.log",
    benchmark:
        "benchmarks/assemble/{shot}.tsv"
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=resource("assemble", "mem_mb"),
        runtime=resource("assemble", "runtime"),
    params:
        settings=assemble_settings,
    script:
        "../scripts/assemble.py"
