# What a shot's job asks of the machine or the cluster: memory and runtime (config `resources`),
# threads, GPUs, and the conda environment of `--sdm conda` (paths relative to rules/).


def resource(rule_name, key):
    res = config["resources"]
    own = res.get(rule_name, {})
    value = own[key] if key in own else res["default"][key]
    # a retried job (--retries, profiles/slurm) asks for more memory each attempt
    if key == "mem_mb":
        return lambda wildcards, attempt: value * attempt
    return value


def composite_resource(key):
    """Resources of a shot's composite job: `composite_diffusion` for the diffusion backend, with
    one GPU per rank (SLURM: --gpus=N --cpus-per-gpu=M); locally the ranks run on CPU cores.
    """

    def get(wildcards, attempt):
        if backend(shot_row(wildcards), "composite") != "diffusion":
            classical = {"gpu": 0, "cpus_per_gpu": 0, "cpus_per_task": 1}
            value = classical[key] if key in classical else resource("composite", key)
        elif key == "gpu":
            value = config["diffusion"]["ranks"]
        elif key == "cpus_per_task":
            value = 0  # SLURM: --cpus-per-gpu instead
        else:
            value = resource("composite_diffusion", key)
        return value(wildcards, attempt) if callable(value) else value

    return get


def composite_threads(wildcards):
    if backend(shot_row(wildcards), "composite") != "diffusion":
        return 1
    return config["diffusion"]["ranks"] * resource(
        "composite_diffusion", "cpus_per_gpu"
    )


def perception_gpu(stage):
    """GPUs of a shot's job for `stage`: perception.gpus for a learned backend, else none."""

    def get(wildcards):
        from cinecomp.perception.models import LEARNED

        learned = backend(shot_row(wildcards), stage) in LEARNED[stage]
        return config["perception"]["gpus"] if learned else 0

    return get


def stage_env(stage):
    """--sdm conda: envs/perception.yaml (torch, sam2, transformers) for a learned backend's job,
    envs/core.yaml for the classical ones (paths relative to rules/)."""

    def get(wildcards):
        from cinecomp.perception.models import LEARNED

        learned = backend(shot_row(wildcards), stage) in LEARNED[stage]
        return "../envs/perception.yaml" if learned else "../envs/core.yaml"

    return get
