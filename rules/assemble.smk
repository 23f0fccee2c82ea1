# Composite + key + masks + depth -> <shot>/v###/comp/<shot>_comp_v###.####.exr, one multi-layer EXR per
# frame: a published version, never overwritten (common.smk skips a version that is published).


rule assemble:
    input:
        composite=f"{RESULTS}/{{shot}}/composite",
        key=f"{RESULTS}/{{shot}}/key",
        masks=f"{RESULTS}/{{shot}}/masks",
        depth=f"{RESULTS}/{{shot}}/depth",
    output:
        directory(f"{RESULTS}/{{shot}}/v{{version}}/comp"),
    log:
        f"{RESULTS}/logs/assemble/{{shot}}_v{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/assemble/{{shot}}_v{{version}}.tsv"
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=resource("assemble", "mem_mb"),
        runtime=resource("assemble", "runtime"),
    params:
        settings=assemble_settings,
    script:
        "../scripts/assemble.py"
