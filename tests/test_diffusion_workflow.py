"""The `diffusion` composite backend run by the workflow on a tiny shot with tiny random models.

The models are random, so the pictures are noise: these tests check the plumbing a TD relies on
(prompt rule, DeepSpeed launcher on 2 CPU ranks, per-window checkpoints and resume, depth in the
comp, reruns, and errors before any job), not the look.
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("deepspeed")
from cinecomp.io import exr as exrio  # noqa: E402
from helpers import SHEET_COLUMNS, planned_jobs, snakemake_command  # noqa: E402
from helpers import snakemake as run_snakemake  # noqa: E402

pytestmark = pytest.mark.slow

FIRST, LAST = 1001, 1009  # 9 frames: two windows of 5 overlapping by 1
HEADER = SHEET_COLUMNS + ",prompt,composite_backend,reference,reference_colourspace"
ATOL_RANKS = 1e-3  # 1 vs 2 ranks, after the half-float EXR round trip (observed ~2e-6 before it)


def sheet(prompt="a person walks in a forest", sd_version=1):
    return "\n".join([
        HEADER,
        f"sd,demo/sd/plate/sd_plate.####.exr,ACEScg,{FIRST},{LAST},24,demo/sd/env/sd_env.####.exr,ACEScg,{sd_version},{prompt},"
        "diffusion,,",
        f"so,demo/so/plate/so_plate.####.exr,ACEScg,{FIRST},{FIRST + 4},24,demo/so/env/so_env.####.exr,ACEScg,1,,,,",
        # no environment plate: synthesised from the prompt and an environment reference image
        f"sr,demo/so/plate/so_plate.####.exr,ACEScg,{FIRST},{FIRST + 4},24,,,1,a beach at dusk,diffusion,ref.png,srgb_tx",
    ]) + "\n"


def snakemake(root: Path, *args, configs=("tiny.yaml",), timeout=900):
    """The workflow with the tiny models' config (``cinecomp models tiny``'s cinecomp.yaml) and ``configs``."""
    return run_snakemake(root, *args, configs=configs, timeout=timeout)


def write_config(root: Path, name: str, diffusion: dict) -> None:
    (root / name).write_text(yaml.safe_dump({"diffusion": diffusion}))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from cinecomp.cli.main import main

    out = tmp_path_factory.mktemp("models") / "tiny"
    assert main(["models", "tiny", "--out", str(out)]) == 0  # in this process: `cinecomp models tiny`'s code path
    return out


@pytest.fixture(scope="module")
def diffusion_run(models, tmp_path_factory):
    from cinecomp.synth.renderer import make_demo_shot

    root = tmp_path_factory.mktemp("diffusion")
    make_demo_shot(root / "demo", "sd", 48, 28, FIRST, LAST, plate_format="exr", env_kind="sequence")
    make_demo_shot(root / "demo", "so", 48, 28, FIRST, FIRST + 4, plate_format="exr", env_kind="sequence")
    from PIL import Image

    Image.fromarray(np.linspace(0, 255, 40 * 64 * 3).astype(np.uint8).reshape(40, 64, 3)).save(root / "ref.png")
    (root / "shots.csv").write_text(sheet())
    shutil.copy(models / "cinecomp.yaml", root / "tiny.yaml")  # what `cinecomp models tiny` suggests
    cfg = yaml.safe_load((root / "tiny.yaml").read_text())
    cfg["backends"]["composite"] = "over"  # the sheet picks diffusion per shot
    cfg["diffusion"]["ranks"] = 2
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake(root)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-5000:]
    return root


def planned(root: Path, *args, configs=("tiny.yaml",)) -> set[tuple[str, str]]:
    return planned_jobs(root, *args, configs=configs)


def comp_layers(root: Path, shot: str, version: str = "v001") -> list[dict]:
    files = sorted((root / "results" / shot / version / "comp").glob("*.exr"))
    return [exrio.read_layers(f) for f in files]


def test_comp_has_rgb_and_joint_depth(diffusion_run):
    layers = comp_layers(diffusion_run, "sd")
    assert len(layers) == LAST - FIRST + 1
    for ch in layers:
        assert {"R", "G", "B", "A", "depth.Z", "diffusion.Z", "mask.character"} <= set(ch)
        assert ch["R"].shape == (28, 48)  # the model's padding (48x32) is cropped off
        rgb = np.stack([ch[c] for c in "RGB"]).astype(np.float32)
        assert np.isfinite(rgb).all() and rgb.std() > 0
        z = ch["diffusion.Z"]  # the model's joint depth (depth.Z is the depth stage's, as for every backend)
        assert np.isfinite(z).all() and (z >= 0.1 - 1e-3).all() and (z <= 1000.0 + 1e-1).all()
    header = exrio.read_exr_header(sorted((diffusion_run / "results" / "sd" / "v001" / "comp").glob("*.exr"))[0])
    assert header["backend"] == "key=chroma composite=diffusion"
    # the classical shot of the same run has the depth stage's depth, not the model's
    assert all("depth.Z" in ch and "diffusion.Z" not in ch for ch in comp_layers(diffusion_run, "so"))
    assert (diffusion_run / "results" / "sd" / "v001" / "review" / "sd_v001_contact.png").stat().st_size > 0


def test_two_ranks_shard_the_model_and_give_the_frames_one_process_gives(diffusion_run, tmp_path):
    """The composite job's 2 ranks (ZeRO-3 + Ulysses, float32) against one process, no DeepSpeed, on the
    arrays the ranks read.  The same arithmetic except that matmuls see half the tokens and attention runs
    per head-group: frames agree to float32 rounding (asserted within 1e-4, observed ~2e-6)."""
    import json
    import shlex

    from cinecomp.diffusion.distributed import _load_shot
    from cinecomp.diffusion.pipeline import CinecompPipeline
    from cinecomp.diffusion.windows import iter_blended, plan_windows, render_windows

    work = diffusion_run / "results" / "sd" / "diffusion"
    log = (diffusion_run / "results" / "logs" / "composite" / "sd.log").read_text()
    cmd = shlex.split(next(line for line in log.splitlines() if line.startswith("+ DS_ACCELERATOR=cpu "))[2:])
    arg = {k.lstrip("-"): v for k, v in zip(cmd, cmd[1:]) if k.startswith("--")}
    assert arg["num_gpus"] == "2" and arg["zero-stage"] == "3" and arg["output"] == "frames"
    meta = json.loads((work / "windows" / "run.json").read_text())
    assert meta["world_size"] == 2 and meta["zero_stage"] == 3
    # ZeRO-3: rank 0 holds half of the transformer's parameters (plus padding)
    assert meta["local_param_numel"] <= meta["total_param_numel"] // 2 + 64
    # Ulysses: each rank carries half of a window's 12 tokens (2 latent frames of 2 x 3 patches: 48x32 padded)
    assert meta["tokens_per_rank"] == 6
    assert meta["device"] == "cpu" and meta["misplaced"] == []
    assert {d for _, d in meta["placement"].values()} == {"float32"}
    two = [(f, d) for _, f, d, *_ in iter_blended(work / "windows")]

    pipe = CinecompPipeline.from_pretrained(arg["pipeline"])
    pipe.set_progress_bar_config(disable=True)
    call = dict(_load_shot(work / "shot"), num_inference_steps=int(arg["steps"]), guidance_scale=float(arg["guidance"]),
                seed=int(arg["seed"]), batch_guidance=True, reconstruct_over=False)  # as the ranks call it
    window, overlap = int(arg["window"]), int(arg["overlap"])
    frames1, depth1 = render_windows(pipe, call, tmp_path / "one", window=window, overlap=overlap)
    assert len(plan_windows(len(frames1), window, overlap)) == 2 == len(list((work / "windows").glob("window_*.npz")))
    assert len(two) == len(frames1) == LAST - FIRST + 1
    np.testing.assert_allclose(np.stack([f for f, _ in two]), frames1, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.stack([d for _, d in two]), depth1, rtol=1e-4, atol=0)
    # the workflow's way of reading (streaming the blend from the window files) gives the blended frames
    streamed = np.stack([f for _, f, _ in iter_blended(tmp_path / "one")])
    np.testing.assert_allclose(streamed, frames1, atol=1e-6)


def test_shot_without_environment_is_synthesised_from_its_reference(diffusion_run):
    layers = comp_layers(diffusion_run, "sr")
    assert len(layers) == 5 and all("diffusion.Z" in ch for ch in layers)
    assert not (diffusion_run / "results" / "sr" / "ingest" / "env").exists()
    log = (diffusion_run / "results" / "logs" / "composite" / "sr.log").read_text()
    assert "environment: synthesised; environment reference ref.png" in log
    shot = diffusion_run / "results" / "sr" / "diffusion" / "shot"  # what the ranks read
    assert not (shot / "environment_rgb.npy").exists()
    assert np.load(shot / "reference_image.npy").shape == (40, 64, 3)
    assert str(np.load(shot / "reference_role.npy")) == "environment"


def test_log_shows_ranks_and_windows(diffusion_run):
    log = (diffusion_run / "results" / "logs" / "composite" / "sd.log").read_text()
    assert "2 rank(s)" in log and "DS_ACCELERATOR=cpu" in log and "--num_gpus 2" in log
    assert "window 0: frames 0-4 rendered" in log and "window 1: frames 4-8 rendered" in log
    assert (diffusion_run / "results" / "logs" / "prompt_embeds" / "sd.log").exists()
    assert not (diffusion_run / "results" / "so" / "diffusion").exists()  # no prompt rule for a classical shot


def test_changing_ranks_reruns_nothing_and_a_prompt_edit_reruns_that_shot(diffusion_run, tmp_path):
    write_config(diffusion_run, "one_rank.yaml", {"ranks": 1})
    assert planned(diffusion_run, configs=("tiny.yaml", "one_rank.yaml")) == set()
    root = tmp_path / "w"
    shutil.copytree(diffusion_run, root, symlinks=True)
    (root / "shots.csv").write_text(sheet("a person runs on a beach at night", sd_version=2))
    assert planned(root) == {(r, "sd") for r in ("prompt_embeds", "composite", "assemble", "daily", "contact_sheet", "cost")}


def test_bad_model_directories_fail_before_any_job(diffusion_run, models, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(diffusion_run, root, symlinks=True)
    before = {p: p.stat().st_mtime_ns for p in (root / "results").rglob("*") if p.is_file()}
    write_config(root, "bad.yaml", {"pipeline": str(tmp_path / "no_such_model")})
    r = snakemake(root, configs=("tiny.yaml", "bad.yaml"))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "shot(s) sd, sr use the diffusion composite backend" in out
    assert f"{tmp_path / 'no_such_model'}: diffusion pipeline directory does not exist" in out
    assert "cinecomp models tiny" in out
    # a plain Wan transformer where the widened one should be: the channel count cannot fit
    wrong = tmp_path / "wrong"
    shutil.copytree(models, wrong)
    shutil.rmtree(wrong / "transformer")
    shutil.copytree(models / "wan_transformer", wrong / "transformer")
    write_config(root, "bad.yaml", {"pipeline": str(wrong), "ranks": 3})
    r = snakemake(root, configs=("tiny.yaml", "bad.yaml"))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert f"{wrong / 'transformer'}: is a 'WanTransformer3DModel', not a CinecompTransformer3DModel" in out
    after = {p: p.stat().st_mtime_ns for p in (root / "results").rglob("*") if p.is_file()}
    assert before == after


def test_layers_output_lays_the_models_light_on_the_plain_comp(diffusion_run, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(diffusion_run, root, symlinks=True)
    write_config(root, "layers.yaml", {"output": "layers", "layers_blur": float("nan"), "ranks": 1})
    r = snakemake(root, "--dry-run", configs=("tiny.yaml", "layers.yaml"))
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "diffusion.layers_blur=nan must be a finite number" in out
    assert "shot(s) sr have none (fix: give them an environment, or set diffusion.output: frames)" in out
    write_config(root, "layers.yaml", {"output": "layers", "layers_blur": 2.0, "ranks": 1, "residual_zone": "objects",
                                       "object_exposure": "base"})
    # a new version of sd (a published one is never rendered again), without sr
    (root / "shots.csv").write_text("\n".join(sheet(sd_version=2).splitlines()[:-1]) + "\n")
    assert ("composite", "sd") in planned(root, configs=("tiny.yaml", "layers.yaml"))
    r = snakemake(root, configs=("tiny.yaml", "layers.yaml"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert ("the model's light laid on the over comp; its change kept on objects; the actors' exposure the base "
            "comp's") in (root / "results" / "logs" / "composite" / "sd.log").read_text()  # the config reached the shot
    from cinecomp.composite.over import over
    from cinecomp.diffusion.light_ratio import RATIO_LIMITS, blur

    from cinecomp.stages import element_frames

    keys, envs = (element_frames(root / "results" / "sd" / d) for d in ("key", "ingest/env"))
    for ch, (_, key_file), (_, env_file) in zip(comp_layers(root, "sd", "v002"), keys, envs, strict=True):
        key, env = exrio.read_rgba(key_file), exrio.read_rgba(env_file)
        plain = over(key[..., :3], key[..., 3], env[..., :3])
        rgb = np.stack([ch[c] for c in "RGB"], axis=-1).astype(np.float32)
        ratio = rgb / np.maximum(plain, 1e-3)
        lit = plain > 0.05  # the random model's light ratio: bounded and smooth, the plate's detail kept
        assert (ratio[lit] > RATIO_LIMITS[0] * 0.99).all() and (ratio[lit] < RATIO_LIMITS[1] * 1.01).all()
        assert np.abs(ratio - blur(ratio, 1.0))[lit].mean() < 0.1 * ratio[lit].mean()
        away = key[..., 3] == 0  # zone objects: the environment is the over comp's exactly
        np.testing.assert_allclose(rgb[away], plain[away], atol=2e-3, rtol=2e-3)
    with np.load(root / "results" / "sd" / "diffusion" / "windows" / "window_0000.npz") as w:
        assert w["over_reconstruction"].shape == w["frames"].shape


class _Resources(dict):
    __getattr__ = dict.get


class _Job:
    def __init__(self, threads, resources):
        self.threads, self.resources = threads, _Resources(resources)


def test_slurm_gets_gpus_for_diffusion_shots_only(diffusion_run):
    """What the SLURM executor plugin would pass to sbatch for each composite job of the plan."""
    import re

    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_executor_plugin_slurm_jobstep import get_cpu_setting

    r = snakemake(diffusion_run, "--dry-run", *[f"results/{s}/composite" for s in ("sd", "sr", "so")], "--forcerun",
                  "composite", "--default-resources", "cpus_per_task=1")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    sbatch = {}
    for m in re.finditer(r"^rule composite:\n(?:.*\n)*?\s+wildcards: shot=(\w+)\n(?:.*\n)*?\s+resources: (.*)\n", out,
                         re.M):
        res = dict(kv.split("=", 1) for kv in m.group(2).split(", "))
        res = {k: int(v) if v.isdigit() else v for k, v in res.items()}
        job = _Job(1, res)  # threads only matter when no cpus_per_* is set, and both are here
        gpu = bool(job.resources.get("gpu"))
        sbatch[m.group(1)] = f"{set_gres_string(job)} {get_cpu_setting(job, gpu)}".strip()
    assert sbatch["sd"] == sbatch["sr"] == "--gpus=2 --cpus-per-gpu=4"  # diffusion.ranks, resources.composite_diffusion
    assert sbatch["so"] == "--cpus-per-task=1"


def test_killed_mid_shot_resumes_at_its_unfinished_window_on_fewer_ranks(diffusion_run, tmp_path):
    """SIGKILL the whole run once the composite job has written window 0; the rerun, on 1 rank where
    the first run had 2, reuses window 0, renders window 1 and gives the 2-rank frames."""
    import os
    import signal
    import time

    root = tmp_path / "w"
    shutil.copytree(diffusion_run, root, symlinks=True)
    before = comp_layers(root, "sd")
    shutil.rmtree(root / "results" / "sd" / "v001")  # not published yet
    shutil.rmtree(root / "results" / "sd" / "composite")
    windows = root / "results" / "sd" / "diffusion" / "windows"
    shutil.rmtree(windows)
    write_config(root, "one_rank.yaml", {"ranks": 1})
    configs = ("tiny.yaml", "one_rank.yaml")
    proc = subprocess.Popen(snakemake_command(root, configs=configs), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (windows / "window_0000.npz").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (windows / "window_0000.npz").exists()  # windows are written whole (tmp + rename)
    # However far the job got past window 0 before the kill, start the rerun from there.
    (windows / "window_0001.npz").unlink(missing_ok=True)
    for done in (root / "results" / "sd" / "composite", root / "results" / "sd" / "v001"):
        shutil.rmtree(done, ignore_errors=True)
    assert snakemake(root, "--unlock", configs=configs).returncode == 0
    r = snakemake(root, "--rerun-incomplete", configs=configs)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    log = (root / "results" / "logs" / "composite" / "sd.log").read_text()
    assert "window 0: frames 0-4 reused (checkpoint)" in log
    assert "window 1: frames 4-8 rendered" in log and "1 rank(s)" in log
    after = comp_layers(root, "sd")
    assert len(after) == len(before) == LAST - FIRST + 1
    for a, b in zip(after, before):
        for k in ("R", "G", "B", "diffusion.Z"):
            np.testing.assert_allclose(a[k].astype(np.float32), b[k].astype(np.float32),
                                       atol=ATOL_RANKS, rtol=ATOL_RANKS if k == "diffusion.Z" else 0)
