"""Learned perception backends chosen per shot in the sheet, through the workflow to the final EXR,
and their model files checked before any job runs."""

import numpy as np
import pytest
import yaml

from cinecomp.io import exr as exrio
from helpers import HAS_MATANYONE, REPO, SHEET_COLUMNS, comp_files, prop_hint_cell, snakemake

pytestmark = pytest.mark.slow

FIRST, LAST = 1001, 1004
W, H = 64, 36
HEADER = SHEET_COLUMNS + ",prop_hint,key_backend,masks_backend,depth_backend,composite_backend,key_params"


def row(shot, hint="", key="", masks="", depth="", composite="over", src=None):
    src = src or shot  # the demo shot whose plates it uses
    return (f"{shot},demo/{src}/plate/{src}_plate.####.exr,ACEScg,{FIRST},{LAST},24,"
            f"demo/{src}/env/{src}_env.####.exr,ACEScg,1,{hint},{key},{masks},{depth},{composite},"
            '"{""matanyone_warmup"": 1}"')


@pytest.fixture(scope="module")
def learned(tmp_path_factory, perception_models):
    from cinecomp.synth.renderer import make_demo_shot

    root = tmp_path_factory.mktemp("learned")
    make_demo_shot(root / "demo", "pa", W, H, FIRST, LAST)
    perception = {**perception_models, "device": "cpu"}
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())  # the repository's config, models swapped
    cfg["perception"].update(perception)
    (root / "perception.yaml").write_text(yaml.safe_dump(cfg))
    key = "matanyone" if HAS_MATANYONE else ""
    (root / "shots.csv").write_text("\n".join([
        HEADER, row("pa", prop_hint_cell(root, "pa", FIRST + 2, margin=1), key=key, masks="sam2", depth="model",
                    composite="harmonize")]) + "\n")
    r = snakemake(root, "--configfile", str(root / "perception.yaml"))
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-6000:]
    return root


def test_sam2_masks_and_model_depth_reach_the_final_exr(learned):
    comps = comp_files(learned, "pa", 1)
    assert len(comps) == LAST - FIRST + 1
    for i, f in enumerate(range(FIRST, LAST + 1)):
        ch = exrio.read_layers(comps[i])
        masks = exrio.read_layers(learned / "results" / "pa" / "masks" / f"pa_masks.{f:04d}.exr")
        for n in ("mask.character", "mask.prop", "mask.environment"):
            np.testing.assert_allclose(ch[n], masks[n], atol=1e-6)
        key = exrio.read_layers(learned / "results" / "pa" / "key" / f"pa_key.{f:04d}.exr")
        np.testing.assert_allclose(ch["mask.character"] + ch["mask.prop"], key["A"].astype(np.float32), atol=2e-3)
        assert np.isfinite(ch["depth.Z"]).all()
    models = exrio.read_exr_header(comps[0])["perceptionModels"]
    assert "masks=sam2:" in models and "depth=model:" in models and ("key=matanyone:" in models) == HAS_MATANYONE
    log = (learned / "results" / "logs" / "depth" / "pa.log").read_text()
    assert "DepthAnythingForDepthEstimation" in log
    assert "SAM 2" in (learned / "results" / "logs" / "masks" / "pa.log").read_text()
    if HAS_MATANYONE:
        assert "matanyone" in (learned / "results" / "logs" / "key" / "pa.log").read_text()


def test_bad_model_paths_stop_the_run_before_any_job(learned, tmp_path):
    import shutil

    shutil.copytree(learned / "demo", tmp_path / "demo")
    shutil.copy(learned / "shots.csv", tmp_path / "shots.csv")
    cfg = yaml.safe_load((learned / "perception.yaml").read_text())
    cfg["perception"]["sam2"]["checkpoint"] = str(tmp_path / "missing.pt")
    (tmp_path / "bad.yaml").write_text("not: [a checkpoint")
    cfg["perception"]["depth_model"]["path"] = str(tmp_path / "bad.yaml")
    (tmp_path / "perception.yaml").write_text(yaml.safe_dump(cfg))
    with open(tmp_path / "shots.csv", "a") as f:  # clicks are a SAM 2 prompt: the track backend refuses them
        f.write(row("pa2", '"1002:points:30,20"', masks="track", src="pa") + "\n")
    r = snakemake(tmp_path, "--dry-run", "--configfile", str(tmp_path / "perception.yaml"))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert f"shot(s) pa: masks backend sam2: {tmp_path / 'missing.pt'}: SAM 2 checkpoint does not exist" in out
    assert f"shot(s) pa: depth backend model: {tmp_path / 'bad.yaml'}: depth model directory does not exist" in out
    assert "shot pa2: masks backend track: prop_hint clicks" in out
    assert not (tmp_path / "results").exists()


def test_learned_backend_jobs_ask_for_gpus_when_configured(learned, tmp_path):
    import shutil

    shutil.copytree(learned / "demo", tmp_path / "demo")
    with open(tmp_path / "shots.csv", "w") as f:
        f.write((learned / "shots.csv").read_text())
        f.write(row("pc", src="pa") + "\n")  # classical backends
    cfg = yaml.safe_load((learned / "perception.yaml").read_text())
    cfg["perception"]["gpus"] = 2
    (tmp_path / "perception.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake(tmp_path, "--dry-run", "--configfile", str(tmp_path / "perception.yaml"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    gpus = {}
    for block in (r.stdout + r.stderr).split("\nrule ")[1:]:
        name = block.split(":", 1)[0]
        shot = block.split("wildcards: shot=", 1)[1].split()[0].rstrip(",") if "wildcards: shot=" in block else None
        if name in ("key", "masks", "depth") and shot:
            gpus[(name, shot)] = "gpu=2" in block
    learned = {"masks", "depth"} | ({"key"} if HAS_MATANYONE else set())
    assert gpus == {(n, s): s == "pa" and n in learned for n in ("key", "masks", "depth") for s in ("pa", "pc")}, gpus
