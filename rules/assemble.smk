# Composite + key + masks + depth -> <shot>/v###/comp/<shot>_comp_v###.####.exr, one multi-layer EXR per
# frame: a published version, never overwritten (targets.smk skips a version that is published).


rule assemble:
    input:
        composite=layout.work_dir(RESULTS, "{shot}", "composite"),
        key=layout.work_dir(RESULTS, "{shot}", "key"),
        masks=layout.work_dir(RESULTS, "{shot}", "masks"),
        depth=layout.work_dir(RESULTS, "{shot}", "depth"),
    output:
        directory(layout.comp_dir(RESULTS, "{shot}", "{version}")),
    log:
        layout.log_file(RESULTS, "assemble", "{shot}", "{version}"),
    benchmark:
        layout.benchmark_file(RESULTS, "assemble", "{shot}", "{version}")
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=resource("assemble", "mem_mb"),
        runtime=resource("assemble", "runtime"),
    params:
        settings=assemble_settings,
    script:
        "../scripts/assemble.py"
