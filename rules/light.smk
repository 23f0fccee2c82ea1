# Sheet light / light probe / HDRI environment / environment plate -> one light estimate per shot.


rule light:
    input:
        unpack(light_inputs),
    output:
        f"{RESULTS}/{{shot}}/light/light.json",
    log:
        f"{RESULTS}/logs/light/{{shot}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/light/{{shot}}.tsv"
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=resource("light", "mem_mb"),
        runtime=resource("light", "runtime"),
    params:
        settings=light_settings,
    script:
        "../scripts/light.py"
