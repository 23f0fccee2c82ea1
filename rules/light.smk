# Sheet light / light probe / HDRI environment / environment plate -> one light estimate per shot.


rule light:
    input:
        unpack(light_inputs),
    output:
        layout.light_file(RESULTS, "{shot}"),
    log:
        layout.log_file(RESULTS, "light", "{shot}"),
    benchmark:
        layout.benchmark_file(RESULTS, "light", "{shot}")
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=resource("light", "mem_mb"),
        runtime=resource("light", "runtime"),
    params:
        settings=light_settings,
    script:
        "../scripts/light.py"
