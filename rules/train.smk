# Training (docs/training.md): only the target `train` asks for it, never rule all:
#   snakemake train --config train=train.yaml
# The training config names the shards (a curated dataset's index.json is the input) and the output
# directory; `cinecomp train` checks it before any rank starts.


include: "train_common.smk"


rule train:
    input:
        unpack(train_inputs),
    output:
        card=f"{train_out()}/MODEL_CARD.md",
    log:
        f"{train_out()}/train.log",
    conda:
        "../envs/diffusion.yaml"
    resources:
        gpus=resource("train", "gpus"),
        mem_mb=resource("train", "mem_mb"),
        runtime=resource("train", "runtime"),
    params:
        ranks=lambda wildcards, resources: max(int(resources.gpus), 1),
    shell:
        "cinecomp train --config {input.config} --ranks {params.ranks} > {log} 2>&1"
