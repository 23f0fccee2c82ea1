"""Training on tiny data: the loss falls, a fresh run is a function of its config and seed, a resumed
run repeats the trajectory, the LoRA fine-tune (adapter + fully trained patch embedding and depth head)
survives save -> bake -> load, 2 ranks run, and a bad config or an empty dataset is refused before any
step."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("deepspeed")

from cinecomp.io.dataset import DatasetError, ShardWriter, check_sample, iter_samples, read_index  # noqa: E402
from cinecomp.train.loop import TrainConfigError, launch, load_config  # noqa: E402
from helpers import REPO  # noqa: E402

T, H, W = 5, 32, 32


def synthetic_sample(rng):
    """A flat environment, a box character and its shadow: enough structure for the loss to learn."""
    env = np.ones((T, H, W, 3), np.float32) * rng.uniform(0.3, 0.7, 3).astype(np.float32)
    mask = np.zeros((T, H, W, 3), np.float32)
    y0, x0 = rng.integers(4, 12, 2)
    mask[:, y0 : y0 + 16, x0 : x0 + 10, 0] = 1
    mask[..., 2] = 1 - mask[..., 0]
    effect = np.zeros((T, H, W), np.float32)
    effect[:, y0 + 14 : y0 + 18, x0 + 8 : x0 + 16] = 1
    char = mask[..., :1] * rng.uniform(0.2, 0.9, 3).astype(np.float32)
    target = env * (1 - 0.5 * effect[..., None]) * (1 - mask[..., :1]) + char * 0.8
    depth = np.where(mask[..., 0] > 0, 3.0, np.inf).astype(np.float32)
    return dict(target_rgb=target, target_depth=depth, character_rgb=char, environment_rgb=env, tri_mask=mask,
                effect_mask=effect, meta={"prompt": "a person stands in a room", "clip": "synthetic",
                                          "source": "synthetic"})


def write_dataset(path, n, seed=0):
    rng = np.random.default_rng(seed)
    with ShardWriter(path, samples_per_shard=2) as writer:
        for i in range(n):
            writer.write(f"s{i:03d}", synthetic_sample(rng))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from cinecomp.diffusion.tiny_models import make_tiny_models

    root = tmp_path_factory.mktemp("train")
    tiny = make_tiny_models(root / "tiny", seed=0)
    write_dataset(root / "data", 4)
    return root, tiny


def write_config(path, root, tiny, out, **train):
    cfg = {"data": {"shards": str(root / "data")},
           "model": {"pipeline": str(tiny["pipeline"]), "text_encoder": str(tiny["text_encoder"])},
           "out": {"dir": str(out)},
           "train": {"steps": 6, "lr": 0.003, "batch": 2, "max_sequence_length": 16, **train}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def history(out):
    import pandas as pd

    return pd.read_csv(out / "loss.csv")


@pytest.fixture(scope="module")
def trained(setup):
    """6 steps in one go (a resumable checkpoint after step 3), and steps 4-6 again, resumed from that
    checkpoint in another output directory (as after a run killed between steps 3 and 6)."""
    import shutil

    root, tiny = setup
    whole = root / "whole"
    assert launch(write_config(root / "whole.yaml", root, tiny, whole, checkpoint_every=3), ranks=1) == 0
    half = root / "half"
    shutil.copytree(whole / "checkpoints" / "step_0000003", half / "checkpoints" / "step_0000003")
    (half / "checkpoints" / "latest").write_text("step_0000003")  # what the killed run's last save left
    assert launch(write_config(root / "resumed.yaml", root, tiny, half), ranks=1, resume=True) == 0
    return root, tiny, whole, half


@pytest.mark.slow
def test_loss_falls_and_a_resumed_run_repeats_the_trajectory(trained):
    root, tiny, whole, half = trained
    summary = json.loads((whole / "summary.json").read_text())
    assert summary["steps"] == 6
    assert summary["probe_loss_end"] < 0.8 * summary["probe_loss_start"], summary
    a, b = history(whole), history(half)
    assert list(a["step"]) == list(b["step"]) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-5)  # steps 4-6 after the resume too
    assert {"step_0000003", "step_0000006"} <= {p.name for p in (whole / "checkpoints").iterdir()}
    assert (half / "checkpoints" / "latest").read_text() == "step_0000006"
    assert json.loads((half / "summary.json").read_text())["probe_loss_start"] is None  # resumed, not afresh
    assert (whole / "loss.png").is_file() and (whole / "MODEL_CARD.md").is_file()
    assert sorted(p.name for p in (whole / "lora").iterdir()) == ["base_model.json", "pytorch_lora_weights.safetensors",
                                                                  "trained_modules.safetensors"]


@pytest.mark.slow
def test_a_fresh_run_is_a_function_of_its_config_and_seed(trained, tmp_path):
    """Fresh-run repeatability without a second launch: step 1's loss and the probe loss the 6-step run
    logged, computed again here from the config alone (a new process's pipeline, prompt embeddings,
    sample order and per-(seed, step, rank, sample) draws, no DeepSpeed), agree.  With the resume test
    (steps 4-6 from a checkpoint) this covers what two whole fresh runs compared step by step did."""
    from cinecomp.diffusion.prompts import encode_prompts, load_prompt_embeds
    from cinecomp.train import loop

    root, _, whole, _ = trained
    cfg = loop.load_config(root / "whole.yaml")
    tr = cfg["train"]
    stream = loop.SampleStream(cfg["shard_files"], [loop.shard_counts(cfg["data"]["shards"])[f]
                                                    for f in cfg["shard_files"]], tr["seed"])
    prompts = sorted({""} | {s.get("meta", {}).get("prompt", "") for _, s in iter_samples(cfg["shard_files"],
                                                                                          arrays=False)})
    encode_prompts(cfg["model"]["text_encoder"], prompts, tmp_path / "embeds.safetensors",
                   tokenizer_dir=cfg["model"]["tokenizer"], max_sequence_length=tr["max_sequence_length"])
    embeds = load_prompt_embeds(tmp_path / "embeds.safetensors")
    pipe = loop.load_pipeline(cfg, torch.float32)
    torch.manual_seed(tr["seed"])
    loop.trainable_transformer(pipe, cfg)
    z = pipe.transformer.config.rgb_channels

    def loss_of(sample, rng, config):
        ex = loop.make_example(pipe, sample, rng, config, embeds, "cpu")
        with torch.no_grad():
            pred = pipe.transformer(hidden_states=ex["input"], timestep=ex["timestep"],
                                    encoder_hidden_states=ex["text"], return_dict=False)[0]
        return float(loop.weighted_loss(pred, ex, z, cfg["loss"]["depth_weight"],
                                        loop.rgb_error_is_x0(config, pipe.transformer))[0])

    samples = stream.at(0)
    step1 = np.mean([loss_of(next(samples), np.random.default_rng([tr["seed"], 0, 0, i]), cfg)
                     for i in range(tr["batch"])])  # one rank: the whole batch, before the optimizer steps
    np.testing.assert_allclose(step1, history(whole)["loss"][0], rtol=1e-5)
    fixed = {**cfg, "dropout": {"text": 0.0, "environment": 0.0, "context_prob": 0.0, "reference": 0.0,
                                "character_depth": 1.0}}
    probe = loss_of(next(stream.at(0)), np.random.default_rng([tr["seed"], 2**31]), fixed)
    np.testing.assert_allclose(probe, json.loads((whole / "summary.json").read_text())["probe_loss_start"],
                               rtol=1e-5)


@pytest.mark.slow
def test_lora_round_trip_train_save_bake_load_same_output(trained, tmp_path):
    """The fine-tune's adapter and its fully trained modules (new input channels, depth head) load
    together, and baking keeps both: the baked pipeline gives the loaded adapter's output.  Without the
    trained modules (what baking used to keep) the output differs."""
    from cinecomp.diffusion import lora
    from cinecomp.diffusion.pipeline import CinecompPipeline
    from cinecomp.diffusion.transformer import CinecompTransformer3DModel

    root, tiny, whole, _ = trained
    g = torch.Generator().manual_seed(0)
    m = CinecompTransformer3DModel.from_pretrained(tiny["pipeline"] / "transformer")
    x = torch.randn(1, m.config.in_channels, 2, 4, 4, generator=g)
    t, text = torch.tensor([400.0]), torch.randn(1, 16, 32, generator=g)

    def out(model):
        with torch.no_grad():
            return model(x, t, text).sample

    base = out(m)
    lora.load_lora(m, whole / "lora", adapter_name="show")
    loaded = out(m)
    assert not torch.allclose(loaded, base, atol=1e-5)
    lora.unload_lora(m)
    np.testing.assert_allclose(out(m).numpy(), base.numpy(), atol=1e-6)  # trained modules restored too

    baked_dir = lora.bake_lora(tiny["pipeline"], whole / "lora", tmp_path / "baked")
    baked = CinecompPipeline.from_pretrained(baked_dir).transformer
    np.testing.assert_allclose(out(baked).numpy(), loaded.numpy(), atol=1e-5)

    adapter_only = tmp_path / "adapter_only"
    adapter_only.mkdir()
    (adapter_only / lora.LORA_WEIGHT_NAME).write_bytes((whole / "lora" / lora.LORA_WEIGHT_NAME).read_bytes())
    lora.load_lora(m, adapter_only, adapter_name="partial")
    assert not torch.allclose(out(m), loaded, atol=1e-5)


def test_dataset_round_trip_and_bad_samples(tmp_path):
    rng = np.random.default_rng(1)
    sample = synthetic_sample(rng)
    write_dataset(tmp_path / "d", 3)
    keys = [k for k, _ in iter_samples(read_index(tmp_path / "d"))]
    assert keys == ["s000", "s001", "s002"]
    for _, s in iter_samples(read_index(tmp_path / "d")):
        check_sample(s)
        assert np.isposinf(s["target_depth"]).any() and s["meta"]["prompt"]
    with pytest.raises(DatasetError, match="4n\\+1 frames"):
        check_sample({**sample, "target_rgb": sample["target_rgb"][:4]})
    with pytest.raises(DatasetError, match="missing effect_mask"):
        check_sample({k: v for k, v in sample.items() if k != "effect_mask"})
    bad = dict(sample, tri_mask=sample["tri_mask"].copy())
    bad["tri_mask"][0, 0, 0, 0] = np.nan
    with pytest.raises(DatasetError, match="tri_mask has NaN"):
        check_sample(bad)
    (tmp_path / "d" / "shard-000000.tar").write_bytes(b"not a tar")
    with pytest.raises(DatasetError, match="damaged shard"):
        list(iter_samples(read_index(tmp_path / "d")))


@pytest.mark.parametrize("edit, says", [
    ({"train": {"lr": float("nan")}}, "lr must be a finite number"),
    ({"train": {"steps": 0}}, "steps must be in [1"),
    ({"train": {"mode": "qlora"}}, "mode must be one of lora, full"),
    ({"train": {"lr_schedule": "linear"}}, "lr_schedule must be one of constant, cosine"),
    ({"train": {"exposure_scope": "shot"}}, "exposure_scope must be one of sample, data"),
    ({"train": {"lr": 1e-4, "epochs": 3}}, "unknown train key(s) epochs"),
    ({"loss": {"effect": -1}}, "effect must be in [0.0"),
    ({"optimizer": {}}, "unknown section(s) optimizer"),
    ({"model": {"pipeline": "/nonexistent/pipeline", "text_encoder": "/nonexistent/te"}}, "/nonexistent/pipeline"),
    ({"data": {"shards": "/nonexistent/shards"}}, "no readable shard index"),
])
def test_bad_training_configs_are_refused_before_any_step(setup, tmp_path, capsys, edit, says):
    from cinecomp.cli.main import main

    root, tiny = setup
    path = write_config(tmp_path / "bad.yaml", root, tiny, tmp_path / "out")
    cfg = yaml.safe_load(path.read_text())
    for section, values in edit.items():
        cfg.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(TrainConfigError) as exc:
        load_config(path)
    assert says in str(exc.value)
    assert not (tmp_path / "out").exists()  # nothing ran
    capsys.readouterr()
    try:  # the command line, in this process (the same code path as `cinecomp train`)
        rc = main(["train", "--config", str(path)])
    except SystemExit as exc:
        rc = exc.code
    assert rc == 2 and says in capsys.readouterr().err


def test_a_harmonize_base_model_keeps_its_environment_unless_the_config_drops_it(setup, tmp_path):
    """The shot stage gives a model that starts from harmonize the environment every time (harmonize needs
    it): unset, dropout.environment is 0 for it (steps without it hazed the environment, docs/training.md);
    set, the config wins; other models keep the default 0.1."""
    from cinecomp.diffusion.tiny_models import make_tiny_models

    root, tiny = setup
    base_model = make_tiny_models(tmp_path / "tiny_hb", seed=0, harmonize_base=True)
    plain = load_config(write_config(tmp_path / "plain.yaml", root, tiny, tmp_path / "out"))
    assert plain["dropout"]["environment"] == 0.1
    unset = load_config(write_config(tmp_path / "hb.yaml", root, base_model, tmp_path / "out"))
    assert unset["dropout"]["environment"] == 0.0
    assert unset["dropout"]["text"] == 0.1  # the other dropouts keep their defaults
    path = write_config(tmp_path / "hb_set.yaml", root, base_model, tmp_path / "out")
    cfg = yaml.safe_load(path.read_text())
    cfg["dropout"] = {"environment": 0.05}
    path.write_text(yaml.safe_dump(cfg))
    assert load_config(path)["dropout"]["environment"] == 0.05


def test_a_dataset_with_no_accepted_samples_is_a_clear_error(setup, tmp_path):
    root, tiny = setup
    ShardWriter(tmp_path / "empty").close()  # curation accepted nothing
    path = write_config(tmp_path / "t.yaml", root, tiny, tmp_path / "out")
    cfg = yaml.safe_load(path.read_text())
    cfg["data"]["shards"] = str(tmp_path / "empty")
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(TrainConfigError, match="no accepted samples"):
        load_config(path)


def test_the_train_target_plans_one_job_and_checks_the_config_first(setup, tmp_path):
    """`snakemake train --config train=train.yaml` is one job writing the model card; rule all never
    contains it; a bad training config stops the planning with the config's own message."""
    root, tiny = setup
    good = write_config(tmp_path / "t.yaml", root, tiny, tmp_path / "out")
    # planned in an empty directory with no shot sheet: the train target reads none
    (tmp_path / "empty").mkdir()
    cmd = [sys.executable, "-m", "snakemake", "train", "-n", "--snakefile", str(REPO / "Snakefile"),
           "--configfile", str(REPO / "config.yaml"), "--directory", str(tmp_path / "empty"),
           "--config", "shots=/nonexistent/shots.csv", f"train={good}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "rule train:" in proc.stdout and "MODEL_CARD.md" in proc.stdout
    cfg = yaml.safe_load(good.read_text())
    cfg["train"]["lr"] = -1
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(cmd[:-1] + [f"train={tmp_path / 'bad.yaml'}"], capture_output=True, text=True)
    assert proc.returncode != 0 and "lr must be in" in proc.stdout + proc.stderr


def test_sample_stream_reads_a_gathered_index_with_nested_shards_and_seeks(tmp_path, monkeypatch):
    """Curation gathers per-clip shards (``clips/<clip>/...tar``) into one index; the stream reads them in
    a fixed order per epoch and opens at any position (what --resume relies on)."""
    from cinecomp.train.loop import SampleStream, shard_counts

    shards = []
    for clip in ("a", "b"):
        write_dataset(tmp_path / "clips" / clip, 3, seed=ord(clip))
        for s in json.loads((tmp_path / "clips" / clip / "index.json").read_text())["shards"]:
            shards.append({**s, "file": f"clips/{clip}/{s['file']}"})
    (tmp_path / "index.json").write_text(json.dumps({"shards": shards}))
    files = read_index(tmp_path)
    counts = shard_counts(tmp_path)
    stream = SampleStream(files, [counts[f] for f in files], seed=3)
    first = [s["target_rgb"].sum() for s, _ in zip(stream.at(0), range(8))]
    again = [s["target_rgb"].sum() for s, _ in zip(stream.at(5), range(3))]
    np.testing.assert_allclose(again, first[5:8])
    assert len({round(float(v), 3) for v in first[:6]}) == 6  # an epoch is every sample once

    # a rank of two (batch 1) decodes only its own share: every other sample, across the epoch's end
    import cinecomp.io.dataset as dataset

    loads = []
    real_load = dataset.np.load
    monkeypatch.setattr(dataset.np, "load", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    mine = [s for s, _ in zip(stream.at(4, keep=lambda pos: pos % 2 == 1), range(4))]
    assert [s is None for s in mine] == [True, False, True, False]
    np.testing.assert_allclose([mine[1]["target_rgb"].sum(), mine[3]["target_rgb"].sum()], [first[5], first[7]])
    assert len(loads) == 2 * 6  # two samples of six arrays: the skipped ones were never read
    # the prompts are collected from the samples' meta alone
    loads.clear()
    metas = [m for _, m in dataset.iter_samples(files, arrays=False)]
    assert len(metas) == 6 and all(set(m) == {"meta"} for m in metas) and not loads


@pytest.mark.slow
def test_two_ranks_in_bf16_keep_the_fp32_modules_and_evaluate_every_n_steps(setup):
    """Two ZeRO-3 ranks training in bfloat16 as on GPUs: the transformer is built under zero.Init (never
    whole on a rank), its frozen _keep_in_fp32_modules are float32 on the partitions (as at inference),
    the saved LoRA holds the gathered weights, and `cinecomp eval` of the baked weights runs every
    eval_every steps."""
    from safetensors.torch import load_file

    from cinecomp.diffusion import lora

    root, tiny = setup
    out = root / "bf16"
    cfg = write_config(root / "bf16.yaml", root, tiny, out, steps=2, batch=1, precision="bfloat16", eval_every=2,
                       zero_stage=3)
    raw = yaml.safe_load(cfg.read_text())
    raw["eval"] = {"split": "ev02", "width": 32, "height": 16, "frames": 5, "steps": 1, "guidance": 1.0,
                   "window": 5, "overlap": 1}
    cfg.write_text(yaml.safe_dump(raw))
    assert launch(cfg, ranks=2) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ranks"] == 2 and np.isfinite(history(out)["loss"]).all()
    assert summary["precision"] == {"trainable": ["bfloat16"], "keep_fp32": ["float32"], "other": ["bfloat16"]}
    assert summary["built_partitioned"] is True
    from cinecomp.diffusion.transformer import CinecompTransformer3DModel

    m = CinecompTransformer3DModel.from_pretrained(tiny["pipeline"] / "transformer")
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    trained = load_file(str(out / "lora" / lora.TRAINED_MODULES_NAME))
    assert trained and all(tuple(v.shape) == shapes[k] for k, v in trained.items())  # gathered, not placeholders
    lora.load_lora(m, out / "lora")  # the adapter's shapes fit the model
    scores = json.loads((out / "eval" / "step_0000002" / "eval.json").read_text())
    assert set(scores) == {"diffusion"} and np.isfinite(scores["diffusion"]["psnr_full"])
    # the eval rendered the adapter directory on its base: no baked pipeline was written
    step_dir = out / "eval" / "step_0000002"
    assert not (step_dir / "pipeline").exists() and (step_dir / "lora" / "base_model.json").is_file()
    assert yaml.safe_load((step_dir / "model.yaml").read_text())["diffusion"]["pipeline"] == str((step_dir / "lora").resolve())
    raw["eval"]["overlap"] = 3
    cfg.write_text(yaml.safe_dump(raw))
    with pytest.raises(TrainConfigError, match=r"eval.overlap=3 must be 4m\+1"):
        load_config(cfg)


def test_sigma_shift_is_the_sampling_schedulers():
    """Wan's UniPC calls its shift flow_shift: training drew sigma with shift 1 where sampling used 3."""
    from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    from cinecomp.train.loop import scheduler_shift

    wan = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    assert scheduler_shift(wan.config) == 3.0
    assert scheduler_shift(FlowMatchEulerDiscreteScheduler(shift=5.0).config) == 5.0
    assert scheduler_shift(DDIMScheduler().config) == 1.0


def test_examples_train_the_flag_states_and_timesteps_inference_uses(setup, tmp_path):
    """Character depth is dropped (flag 0) as the workflow gives none; without clean context frames the
    timestep is one scalar per sample (per token only with context)."""
    from cinecomp.diffusion.conditioning import PRESENCE_NAMES
    from cinecomp.diffusion.pipeline import CinecompPipeline
    from cinecomp.train.loop import make_example

    root, tiny = setup
    cfg = load_config(write_config(tmp_path / "c.yaml", root, tiny, tmp_path / "out"))
    pipe = CinecompPipeline.from_pretrained(str(tiny["pipeline"]))
    rng = np.random.default_rng(0)
    sample = synthetic_sample(rng)
    sample["character_depth"] = sample["target_depth"]
    embeds = {"": torch.zeros(1, 16, 32), "a person stands in a room": torch.ones(1, 16, 32)}
    flag = -len(PRESENCE_NAMES) + PRESENCE_NAMES.index("character_depth")

    def example(**dropout):
        cfg["dropout"].update(dropout)
        return make_example(pipe, sample, np.random.default_rng(1), cfg, embeds, "cpu")

    dropped = example(character_depth=1.0, context_prob=0.0)
    assert float(dropped["input"][:, flag].abs().max()) == 0.0
    assert tuple(dropped["timestep"].shape) == (1,) and dropped["clean"] == 0
    kept = example(character_depth=0.0)
    assert float(kept["input"][:, flag].min()) == 1.0
    context = example(context_prob=1.0)
    assert context["clean"] > 0 and context["timestep"].ndim == 2
    assert float(context["timestep"][0, 0]) == 0.0 and float(context["timestep"][0, -1]) > 0


@pytest.mark.parametrize("text, says", [
    ("train:\n  lr: 0.001\n# caf\xe9\n".encode("latin-1"), "is not UTF-8 (byte 0xe9"),
    (b"data: curated\n", "data must be a mapping of keys, e.g. `data: {shards: PATH}`, got 'curated'"),
    (b"train: [lr]\n", "train must be a mapping of keys"),
    (b"train:\n  steps: " + b"9" * 401 + b"\n", "train steps must be in [1, 10000000], got 99999"),
])
def test_malformed_training_configs_name_the_field(tmp_path, capsys, text, says):
    """Refused before any path or model is looked at: no traceback, the field named (issue 19)."""
    from cinecomp.cli import main as cli

    path = tmp_path / "train.yaml"
    path.write_bytes(text)
    with pytest.raises(TrainConfigError) as exc:
        load_config(path)
    assert says in str(exc.value), exc.value
    assert cli.main(["train", "--config", str(path)]) == 2
    assert says in capsys.readouterr().err


def test_the_cosine_schedule_warms_up_then_decays_to_zero_at_the_last_step():
    from cinecomp.train.loop import lr_factor

    constant = lr_factor({"warmup_steps": 4, "steps": 12})  # a config without lr_schedule: as before it
    assert [constant(s) for s in (0, 1, 3, 4, 11)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    cosine = lr_factor({"warmup_steps": 4, "steps": 12, "lr_schedule": "cosine"})
    f = [cosine(s) for s in range(13)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]  # the same warm-up
    assert f[4] == 1.0 and f[8] == pytest.approx(0.5) and f[12] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in zip(f[4:], f[5:]))  # falling all the way
    assert lr_factor({"warmup_steps": 0, "steps": 1, "lr_schedule": "cosine"})(0) == 1.0


def test_lr_written_1e_minus_4_is_a_number(tmp_path):
    """YAML 1.1 reads 1e-4 (no dot) as a string; a TD means the number."""
    path = tmp_path / "train.yaml"
    path.write_text("train:\n  lr: 1e-4\n  weight_decay: 1E-2\n")
    with pytest.raises(TrainConfigError) as exc:  # the paths are missing, but the numbers are fine
        load_config(path)
    msg = str(exc.value).split(": ", 1)[1]  # after the file's path
    assert "lr" not in msg and "weight_decay" not in msg and "data.shards" in msg, msg
    from cinecomp.params import load_yaml

    assert load_yaml("lr: 1e-4\nn: 3\ns: '1e-4'\n") == {"lr": 1e-4, "n": 3, "s": "1e-4"}


def _partitioned(p, dtype):
    """A stand-in ZeRO-3 parameter: its values in ``ds_tensor``, ``data`` an empty placeholder."""
    p.ds_tensor = p.data.detach().to(dtype).clone()
    p.ds_id = id(p)
    p.data = torch.empty(0, dtype=dtype)


def test_restore_fp32_acts_on_zero3_partitions_not_placeholders(setup):
    """Under ZeRO-3 a parameter's values live in its partition; restoring float32 on the placeholder
    (what restore_fp32 did) left the partitions -- what forward gathers -- in bfloat16."""
    from cinecomp.diffusion.distributed import keeps_fp32
    from cinecomp.diffusion.transformer import CinecompTransformer3DModel
    from cinecomp.train.loop import precision_report, restore_fp32

    _, tiny = setup
    m = CinecompTransformer3DModel.from_pretrained(tiny["pipeline"] / "transformer").requires_grad_(False)
    keep = m._keep_in_fp32_modules
    for _, p in m.named_parameters():
        _partitioned(p, torch.bfloat16)
    restored = restore_fp32(m)
    kept = [n for n, _ in m.named_parameters() if keeps_fp32(n, keep)]
    assert kept and set(kept) <= set(restored)
    for name, p in m.named_parameters():
        assert p.ds_tensor.dtype == (torch.float32 if keeps_fp32(name, keep) else torch.bfloat16), name
        assert p.numel() == 0
    assert precision_report(m) == {"trainable": [], "keep_fp32": ["float32"], "other": ["bfloat16"]}


def test_a_zero3_lora_save_gathers_only_the_saved_tensors_and_rank_0_writes(setup, tmp_path, monkeypatch):
    """Saving a LoRA under ZeRO-3 gathers the adapter and the fully trained modules on every rank (not
    the whole model: 14B of gathered weights per rank); only rank 0 writes."""
    import contextlib

    import deepspeed

    from cinecomp.diffusion.pipeline import CinecompPipeline
    from cinecomp.train.loop import TRAINED_MODULES, save_outputs, trainable_transformer

    root, tiny = setup
    cfg = load_config(write_config(tmp_path / "c.yaml", root, tiny, tmp_path / "out", zero_stage=3))
    pipe = CinecompPipeline.from_pretrained(str(tiny["pipeline"]))
    trainable_transformer(pipe, cfg)
    seen = []

    @contextlib.contextmanager
    def spy(params, modifier_rank=None):
        seen.append({id(p) for p in params})
        yield

    monkeypatch.setattr(deepspeed.zero, "GatheredParameters", spy)
    want = {id(p) for n, p in pipe.transformer.named_parameters()
            if "lora_" in n or n.split(".")[0] in TRAINED_MODULES}
    assert 0 < len(want) < len(list(pipe.transformer.parameters()))
    save_outputs(pipe, cfg, tmp_path / "r1", 1, [], rank=1)
    assert seen == [want] and not (tmp_path / "r1").exists()  # gathered with rank 0, wrote nothing
    target = save_outputs(pipe, cfg, tmp_path / "r0", 1, [], rank=0)
    assert seen[1] == want and (target / "pytorch_lora_weights.safetensors").is_file()


def prop_sample(rng):
    """synthetic_sample with a prop beside the character, its depth and harmonize's comp."""
    s = synthetic_sample(rng)
    s["tri_mask"][:, 2:8, 22:30, 1] = 1
    s["tri_mask"][..., 2] = np.clip(1 - s["tri_mask"][..., 0] - s["tri_mask"][..., 1], 0, 1)
    s["target_rgb"][:, 2:8, 22:30] = 0.9
    s["character_depth"] = np.where(s["tri_mask"][..., 0] > 0, 3.0, np.inf).astype(np.float32)
    s["harmonize_rgb"] = np.clip(s["target_rgb"] * 0.95, 0, 1).astype(np.float32)
    return s


def test_stored_latents_give_the_examples_encoding_gives_and_another_vaes_are_refused(setup, tmp_path):
    """`cinecomp train --encode-latents` writes every video's VAE latents into the shards once; an example
    built from them is the one built by encoding (every dropout, reference, prop replacement and context
    draw alike) and no video goes through the VAE (only the one-frame references); latents of another
    VAE (same config, other weights) are refused at config check, naming the shard and the fix."""
    from cinecomp.cli.main import main
    from cinecomp.diffusion.pipeline import CinecompPipeline
    from cinecomp.diffusion.tiny_models import make_tiny_models
    from cinecomp.train.latents import encode_shards
    from cinecomp.train.loop import make_example

    root, tiny_other = setup
    tiny = make_tiny_models(tmp_path / "tiny", seed=1, harmonize_base=True)
    rng = np.random.default_rng(4)
    with ShardWriter(tmp_path / "data", samples_per_shard=2) as writer:
        writer.write("p0", prop_sample(rng))
        writer.write("p1", synthetic_sample(rng) | {"harmonize_rgb": synthetic_sample(rng)["target_rgb"]})
    path = write_config(tmp_path / "t.yaml", root, tiny, tmp_path / "out")
    raw_cfg = yaml.safe_load(path.read_text())
    raw_cfg["data"]["shards"] = str(tmp_path / "data")
    raw_cfg["dropout"] = {"text": 0.5, "environment": 0.5, "character_depth": 0.5, "context_prob": 0.5,
                          "reference": 0.7}
    path.write_text(yaml.safe_dump(raw_cfg))
    cfg = load_config(path)
    assert cfg["latents"] == {"stored": 0, "samples": 2}
    plain = [s for _, s in iter_samples(read_index(tmp_path / "data"))]
    assert main(["train", "--config", str(path), "--encode-latents"]) == 0
    cfg = load_config(path)
    assert cfg["latents"] == {"stored": 2, "samples": 2}
    shard = read_index(tmp_path / "data")[0]
    before = shard.read_bytes()
    assert encode_shards(tmp_path / "data", tiny["pipeline"]) == {"encoded": 0, "kept": 2, "samples": 2}
    assert shard.read_bytes() == before  # the latents are made once
    stored = [s for _, s in iter_samples([shard])]
    assert {k for k in stored[0] if k.startswith("lat_")} == {
        "lat_target_rgb", "lat_target_depth", "lat_character_rgb", "lat_character_depth", "lat_environment_rgb",
        "lat_harmonize_rgb", "lat_character_rgb_noprop", "lat_environment_rgb_noprop", "lat_harmonize_rgb_noprop"}
    assert "lat_character_rgb_noprop" not in stored[1]  # no prop: no prop replacement drawn

    pipe = CinecompPipeline.from_pretrained(str(tiny["pipeline"]))
    embeds = {"": torch.zeros(1, 16, 32), "a person stands in a room": torch.ones(1, 16, 32)}
    frames_encoded = []
    real_encode = pipe.encode_video
    pipe.encode_video = lambda v: frames_encoded.append(v.shape[2]) or real_encode(v)
    kinds = set()
    for seed in range(3):
        for a, b in zip(plain, stored):
            frames_encoded.clear()
            want = make_example(pipe, a, np.random.default_rng(seed), cfg, embeds, "cpu")
            frames_encoded.clear()
            got = make_example(pipe, b, np.random.default_rng(seed), cfg, embeds, "cpu")
            assert set(frames_encoded) <= {1}, frames_encoded  # only reference stills were encoded
            assert (got["sigma"], got["clean"]) == (want["sigma"], want["clean"])
            for k in ("input", "target", "weights", "timestep", "text"):
                np.testing.assert_allclose(got[k].numpy(), want[k].numpy(), atol=1e-5, err_msg=k)
            kinds.add((len(frames_encoded), got["clean"] > 0))
    assert len(kinds) >= 3, kinds  # references drawn and not, context and not

    other = write_config(tmp_path / "o.yaml", root, tiny_other, tmp_path / "out")
    raw = yaml.safe_load(other.read_text())
    raw["data"]["shards"] = str(tmp_path / "data")
    other.write_text(yaml.safe_dump(raw))
    with pytest.raises(TrainConfigError) as exc:
        load_config(other)
    assert str(shard) in str(exc.value) and "differ: weights_sha256" in str(exc.value)
    assert f"--config {other} --encode-latents" in str(exc.value)
    cfg_other = load_config(write_config(tmp_path / "o2.yaml", root, tiny_other, tmp_path / "out"))
    with pytest.raises(DatasetError, match="another VAE"):
        make_example(pipe, stored[0], np.random.default_rng(0), cfg_other, embeds, "cpu")
