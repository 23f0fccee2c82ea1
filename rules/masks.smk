# Key -> tri-mask per frame: mask.character, mask.prop, mask.environment (soft, summing to one).
# Backends: track (optical flow, no weights) | sam2 (SAM 2 video predictor, perception.sam2).


rule masks:
    input:
        f"{RESULTS}/{{shot}}/key",
    output:
        directory(f"{RESULTS}/{{shot}}/masks"),
    log:
        f"{RESULTS}/logs/masks/{{shot}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/masks/{{shot}}.tsv"
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
