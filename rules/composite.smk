# Key + environment -> composite beauty per frame. Backends: `over` (classical) and `diffusion`
# (the tri-mask RGB-D video model, run by the DeepSpeed launcher on `diffusion.ranks` ranks).


# The text encoder runs here, once per shot; the inference ranks only load the cached embeddings.
rule prompt_embeds:
    output:
        layout.prompt_embeds_file(RESULTS, "{shot}"),
    log:
        layout.log_file(RESULTS, "prompt_embeds", "{shot}"),
    benchmark:
        layout.benchmark_file(RESULTS, "prompt_embeds", "{shot}")
    conda:
        "../envs/diffusion.yaml"
    resources:
        mem_mb=resource("prompt_embeds", "mem_mb"),
        runtime=resource("prompt_embeds", "runtime"),
    params:
        settings=prompt_settings,
    script:
        "../scripts/prompt_embeds.py"


# Harmonize's comp as the diffusion backend's input, for a model that starts where harmonize ends
# (transformer harmonize_base; rules/targets.smk: takes_harmonize).
rule harmonize_base:
    input:
        unpack(harmonize_base_inputs),
    output:
        directory(layout.work_dir(RESULTS, "{shot}", "harmonize")),
    log:
        layout.log_file(RESULTS, "harmonize_base", "{shot}"),
    benchmark:
        layout.benchmark_file(RESULTS, "harmonize_base", "{shot}")
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=resource("composite", "mem_mb"),
        runtime=resource("composite", "runtime"),
    params:
        settings=harmonize_base_settings,
    script:
        "../scripts/composite.py"


rule composite:
    input:
        unpack(composite_inputs),
    output:
        directory(layout.work_dir(RESULTS, "{shot}", "composite")),
    log:
        layout.log_file(RESULTS, "composite", "{shot}"),
    benchmark:
        layout.benchmark_file(RESULTS, "composite", "{shot}")
    conda:
        "../envs/diffusion.yaml"
    threads: composite_threads
    resources:
        mem_mb=composite_resource("mem_mb"),
        runtime=composite_resource("runtime"),
        gpu=composite_resource("gpu"),
        cpus_per_gpu=composite_resource("cpus_per_gpu"),
        cpus_per_task=composite_resource("cpus_per_task"),
    params:
        settings=composite_settings,
    script:
        "../scripts/composite.py"
