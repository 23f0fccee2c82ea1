# Helpers of rules/train.smk: the training config (read only when the target `train` is asked for).
import os

from snakemake.exceptions import WorkflowError

TRAIN_CONFIG = config.get("train") or ""


def train_inputs(wildcards):
    from cinecomp.train.loop import TrainConfigError, load_config

    if not TRAIN_CONFIG:
        raise WorkflowError(
            "train: no training config (fix: --config train=train.yaml)"
        )
    try:
        cfg = load_config(TRAIN_CONFIG)
    except TrainConfigError as exc:
        raise WorkflowError(str(exc))
    return {"config": TRAIN_CONFIG, "index": str(cfg["data"]["shards"] / "index.json")}


def train_out():
    if not TRAIN_CONFIG:
        return "trained"
    import yaml

    out = (yaml.safe_load(open(TRAIN_CONFIG)) or {}).get("out", {}).get(
        "dir"
    ) or "trained"
    base = os.path.dirname(os.path.abspath(TRAIN_CONFIG))
    return out if os.path.isabs(out) else os.path.relpath(os.path.join(base, out))
