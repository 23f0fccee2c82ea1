# Key -> tri-mask per frame: mask.character, mask.prop, mask.environment (soft, summing to one).
# Backends: track (optical flow, no weights) | sam2 (SAM 2 video predictor, perception.sam2).


rule masks:
    input:
        layout.work_dir(RESULTS, "{shot}", "key"),
    output:
        directory(layout.work_dir(RESULTS, "{shot}", "masks")),
    log:
        layout.log_file(RESULTS, "masks", "{shot}"),
    benchmark:
        layout.benchmark_file(RESULTS, "masks", "{shot}")
    conda:
        stage_env("masks")
    resources:
        mem_mb=resource("masks", "mem_mb"),
        runtime=resource("masks", "runtime"),
        gpu=perception_gpu("masks"),
    params:
        settings=masks_settings,
    script:
        "../scripts/masks.py"
