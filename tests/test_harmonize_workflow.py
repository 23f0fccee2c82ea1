"""The masks, depth and light stages and the harmonize backend in the workflow, on tiny demo shots."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cinecomp.io import exr as exrio
from helpers import SHEET_COLUMNS, comp_files, copy_run, planned_jobs, prop_hint_cell, snakemake, write_sheet

pytestmark = pytest.mark.slow

FIRST, LAST = 1001, 1006
W, H = 64, 36
HEADER = SHEET_COLUMNS + ",camera,light,prop_hint,harmonize_params,composite_backend"
CAMERA = '"{""focal_mm"": 49.45, ""height_m"": 1.25, ""tilt_deg"": -3.81}"'
LIGHT = '"{""azimuth_deg"": 122.5, ""elevation_deg"": 49}"'


def rows(root: Path, hint: str | None = None, light: str = LIGHT, camera: str = CAMERA, params: str = "",
         version: int = 1) -> list[str]:
    hint = prop_hint_cell(root, "ha", FIRST + 3) if hint is None else hint
    env = "demo/{s}/env/{s}_env.####.exr"
    plate = "demo/{s}/plate/{s}_plate.####.exr"
    return [f"ha,{plate.format(s='ha')},ACEScg,{FIRST},{LAST},24,{env.format(s='ha')},ACEScg,{version},{camera},{light},{hint},{params},harmonize",
            f"hb,{plate.format(s='hb')},ACEScg,{FIRST},{LAST},24,{env.format(s='hb')},ACEScg,1,,,,,over"]


@pytest.fixture(scope="module")
def harmonized(tmp_path_factory):
    from cinecomp.synth.renderer import make_demo_shot

    root = tmp_path_factory.mktemp("harmonize")
    for shot in ("ha", "hb"):
        make_demo_shot(root / "demo", shot, W, H, FIRST, LAST)
    write_sheet(root, rows(root), HEADER)
    r = snakemake(root)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-5000:]
    return root


def layers(root, shot, i=0, version=1):
    return exrio.read_layers(comp_files(root, shot, version)[i])


def test_every_backend_gets_masks_and_depth(harmonized):
    for shot in ("ha", "hb"):
        ch = layers(harmonized, shot)
        np.testing.assert_allclose(ch["mask.character"] + ch["mask.prop"] + ch["mask.environment"], 1, atol=1e-5)
        z = ch["depth.Z"]
        assert z.dtype == np.float32 and np.isfinite(z).all() and z[-1].max() < z[0].min()  # ground recedes
    assert layers(harmonized, "hb")["mask.prop"].max() == 0  # no hint, no prop
    assert not any(k.startswith("harmonize.") for k in layers(harmonized, "hb"))


def test_prop_is_tracked_through_the_shot(harmonized):
    for i, f in enumerate(range(FIRST, LAST + 1)):
        ch = layers(harmonized, "ha", i)
        truth = exrio.read_layers(harmonized / "demo" / "ha" / "truth" / f"ha_truth.{f:04d}.exr")["mask.prop"]
        inter = np.minimum(ch["mask.prop"], truth).sum()
        union = np.maximum(ch["mask.prop"], truth).sum()
        assert inter / union > 0.6, f"frame {f}: prop IoU {inter / union:.2f}"


def test_harmonize_layers_light_and_shadow(harmonized):
    ch = layers(harmonized, "ha", 3)
    assert {"harmonize.shadow", "harmonize.contact", "harmonize.relight.R", "harmonize.wrap.B"} <= set(ch)
    light = json.loads((harmonized / "results" / "ha" / "light" / "light.json").read_text())
    assert light["source"]["direction"] == "sheet" and light["azimuth_deg"] == pytest.approx(122.5)
    # the sun is at camera right: the cast shadow lies left of the character, on the ground, and darkens it
    shadow = ch["harmonize.shadow"].astype(np.float32) * (ch["mask.environment"] > 0.99)
    ys, xs = np.nonzero(shadow > 0.3)
    char_x = np.nonzero(ch["mask.character"] > 0.5)[1].mean()
    assert len(xs) > 5 and xs.mean() < char_x + 2
    env = exrio.read_rgba(harmonized / "results" / "ha" / "ingest" / "env" / "ha_env.1004.exr")
    beauty = np.stack([ch[c] for c in "RGB"], -1).astype(np.float32)
    assert (beauty[ys, xs].sum(-1) < env[ys, xs, :3].sum(-1)).all()


def test_harmonize_is_closer_to_the_truth_than_over_in_the_shadow(harmonized, tmp_path):
    """The same shot through both backends: harmonize's shadow region error is lower."""
    root = copy_run(harmonized, tmp_path / "w")
    lines = rows(root)
    write_sheet(root, [lines[0], lines[0].replace("ha,", "hc,", 1).replace(",harmonize", ",over")], HEADER)
    shutil.copytree(root / "demo" / "ha", root / "demo" / "hc")
    for p in (root / "demo" / "hc").rglob("ha_*"):
        p.rename(p.with_name(p.name.replace("ha_", "hc_")))
    r = snakemake(root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    err = {}
    for shot in ("ha", "hc"):
        e = []
        for i, f in enumerate(range(FIRST, LAST + 1)):
            ch = layers(root, shot, i)
            truth = exrio.read_layers(root / "demo" / shot / "truth" / f"{shot}_truth.{f:04d}.exr")
            gt = np.stack([truth[c] for c in "RGB"], -1).astype(np.float32)
            env = exrio.read_rgba(root / "results" / shot / "ingest" / "env" / f"{shot}_env.{f:04d}.exr")[..., :3]
            region = (truth["alpha.A"] < 0.05) & (gt.mean(-1) < 0.9 * env.mean(-1))
            out = np.stack([ch[c] for c in "RGB"], -1).astype(np.float32)
            e.append(np.abs(out[region] - gt[region]).mean())
        err[shot] = np.mean(e)
    assert err["ha"] < 0.8 * err["hc"], err


@pytest.mark.parametrize("edit, expect", [
    (dict(params='"{""shadow_density"": 0.5}"'), {"composite", "assemble", "daily", "contact_sheet", "cost"}),
    (dict(light='"{""azimuth_deg"": 200, ""elevation_deg"": 30}"'), {"light", "composite", "assemble", "daily", "contact_sheet", "cost"}),
    (dict(hint='""'), {"masks", "depth", "composite", "assemble", "daily", "contact_sheet", "cost"}),
    (dict(camera='"{""focal_mm"": 35}"'), {"depth", "light", "composite", "assemble", "daily", "contact_sheet", "cost"}),
])
def test_an_edit_reruns_only_what_it_touches(harmonized, tmp_path, edit, expect):
    root = copy_run(harmonized, tmp_path / "w")
    write_sheet(root, rows(root, **edit, version=2), HEADER)  # a new version: v001 stays as it is
    jobs = planned_jobs(root)
    assert {s for _, s in jobs} == {"ha"} and {r for r, _ in jobs} == expect, jobs


@pytest.mark.parametrize("edit, says", [
    (dict(camera='"{""focal_mm"": NaN}"'), "camera"),
    (dict(hint='"1002:500,2,600,9"'), "outside the"),
    (dict(hint='"2000:1,1,9,9"'), "2000"),
    (dict(params='"{""contact"": 7}"'), "contact must be in"),
    (dict(light='"{""azimuth_deg"": 10}"'), "elevation_deg"),
])
def test_bad_input_stops_before_any_job_and_keeps_outputs(harmonized, tmp_path, edit, says):
    root = copy_run(harmonized, tmp_path / "w")
    before = {p: p.stat().st_mtime_ns for p in (root / "results").rglob("*") if p.is_file()}
    write_sheet(root, rows(root, **edit), HEADER)
    r = snakemake(root)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "shot ha" in out and says in out and "fix" in out, out[-3000:]
    assert before == {p: p.stat().st_mtime_ns for p in (root / "results").rglob("*") if p.is_file()}


def test_plate_depth_backend_uses_the_environments_z(harmonized, tmp_path):
    """depth_backend plate: an environment with its own Z channel gives the comp's depth.Z."""
    root = copy_run(harmonized, tmp_path / "w")
    envz = root / "demo" / "ha" / "envz"
    envz.mkdir()
    for f in range(FIRST, LAST + 1):
        env = exrio.read_layers(root / "demo" / "ha" / "env" / f"ha_env.{f:04d}.exr")
        z = exrio.read_layers(root / "demo" / "ha" / "truth" / f"ha_truth.{f:04d}.exr")["depth.Z"] * 1.5
        exrio.write_exr(envz / f"ha_envz.{f:04d}.exr", {**{c: env[c] for c in "RGB"}, "Z": z})
    line = rows(root, version=2)[0].replace("demo/ha/env/ha_env.####.exr", "demo/ha/envz/ha_envz.####.exr")
    (root / "shots.csv").write_text(f"{HEADER},depth_backend\n{line},plate\n")
    r = snakemake(root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ch = layers(root, "ha", 2, version=2)
    truth = exrio.read_layers(root / "demo" / "ha" / "truth" / f"ha_truth.{FIRST + 2:04d}.exr")
    env = (ch["mask.environment"] > 0.999) & (truth["depth.Z"] < 1000)  # the sky is clamped to 1e4
    np.testing.assert_allclose(ch["depth.Z"][env], 1.5 * truth["depth.Z"][env], rtol=1e-5)
