# Tri-mask (+ the environment's own Z) -> depth per frame and where each object meets the ground.
# Backends: ground | plate (the environment's Z) | model (a depth model on the environment, perception.depth_model).


rule depth:
    input:
        unpack(depth_inputs),
    output:
        directory(layout.work_dir(RESULTS, "{shot}", "depth")),
    log:
        layout.log_file(RESULTS, "depth", "{shot}"),
    benchmark:
        layout.benchmark_file(RESULTS, "depth", "{shot}")
    conda:
        stage_env("depth")
    resources:
        mem_mb=resource("depth", "mem_mb"),
        runtime=resource("depth", "runtime"),
        gpu=perception_gpu("depth"),
    params:
        settings=depth_settings,
    script:
        "../scripts/depth.py"
