"""Shot sheet validation: every problem reported at once, naming the row/shot and the fix."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cinecomp import exrio
from cinecomp.errors import SheetError
from cinecomp.sheet import check_path, load_sheet

HEADER = "shot,plate,plate_colourspace,first_frame,last_frame,fps,environment,env_colourspace,version"


def make_plates(root, w=32, h=18, frames=range(1001, 1006)):
    (root / "plate").mkdir(parents=True)
    for f in frames:
        exrio.write_rgba(root / "plate" / f"p.{f:04d}.exr", np.full((h, w, 4), 0.5, np.float32))
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(root / "env.png")


def write_sheet(tmp_path, *rows, header=HEADER):
    p = tmp_path / "shots.csv"
    p.write_text("\n".join([header, *rows]) + "\n")
    return p


def row(shot="sh010", plate="plate/p.####.exr", first=1001, last=1005, cs="ACEScg", env="env.png", env_cs="srgb_tx"):
    return f"{shot},{plate},{cs},{first},{last},24,{env},{env_cs},1"


def problems(sheet, tmp_path):
    with pytest.raises(SheetError) as err:
        load_sheet(sheet, base_dir=tmp_path)
    return err.value.problems, str(err.value)


def test_good_sheet_loads(tmp_path):
    make_plates(tmp_path)
    df = load_sheet(write_sheet(tmp_path, row(), row("sh020")), base_dir=tmp_path)
    assert list(df.index) == ["sh010", "sh020"]
    assert (df.width == 32).all() and (df.height == 18).all()
    assert df.loc["sh010", "first_frame"] == 1001 and df.loc["sh010", "prompt"] == ""


def test_empty_sheet(tmp_path):
    p = tmp_path / "shots.csv"
    p.write_text("")
    probs, msg = problems(p, tmp_path)
    assert "empty" in probs[0] and "fix" in probs[0]


def test_header_only(tmp_path):
    probs, _ = problems(write_sheet(tmp_path), tmp_path)
    assert "no shots" in probs[0]


def test_missing_columns(tmp_path):
    probs, _ = problems(write_sheet(tmp_path, "sh010,plate/p.####.exr", header="shot,plate"), tmp_path)
    assert "missing column" in probs[0] and "plate_colourspace" in probs[0] and "version" in probs[0]


def test_missing_sheet(tmp_path):
    probs, _ = problems(tmp_path / "nope.csv", tmp_path)
    assert "does not exist" in probs[0]


def test_duplicate_ids(tmp_path):
    make_plates(tmp_path)
    probs, _ = problems(write_sheet(tmp_path, row(), row()), tmp_path)
    assert any("duplicate shot id 'sh010'" in p and "row 3" in p for p in probs)


@pytest.mark.parametrize("bad", ["..", "a/b", "sh;rm", "sh 010", "$(x)", "-x"])
def test_unsafe_ids(tmp_path, bad):
    make_plates(tmp_path)
    probs, _ = problems(write_sheet(tmp_path, row(shot=bad)), tmp_path)
    assert any("not safe as a file name" in p for p in probs), probs


@pytest.mark.parametrize("bad", ["../plate/p.####.exr", "plate/p.####.exr;rm -rf x", "plate/$HOME.####.exr"])
def test_unsafe_paths(tmp_path, bad):
    make_plates(tmp_path)
    probs, _ = problems(write_sheet(tmp_path, row(plate=bad.replace(",", ""))), tmp_path)
    assert any("plate path" in p and "row 2 (shot sh010)" in p for p in probs), probs


def test_check_path():
    assert check_path("/show/plates/a.####.exr") is None
    assert check_path("a/%04d.png") is None
    assert "'..'" in check_path("a/../b.exr")


def test_missing_plate(tmp_path):
    make_plates(tmp_path)
    probs, _ = problems(write_sheet(tmp_path, row(plate="plate/nope.####.exr")), tmp_path)
    assert any("shot sh010" in p and "nope" in p for p in probs), probs


def test_missing_environment(tmp_path):
    make_plates(tmp_path)
    probs, _ = problems(write_sheet(tmp_path, row(env="nope.jpg")), tmp_path)
    assert any("environment" in p and "nope.jpg" in p for p in probs), probs


def test_frame_range_outside_plate(tmp_path):
    make_plates(tmp_path)
    probs, _ = problems(write_sheet(tmp_path, row(first=999, last=1007)), tmp_path)
    msg = next(p for p in probs if "missing" in p)
    assert "999-1000" in msg and "1006-1007" in msg and "1001-1005" in msg and "fix" in msg


def test_reversed_range(tmp_path):
    make_plates(tmp_path)
    probs, _ = problems(write_sheet(tmp_path, row(first=1005, last=1001)), tmp_path)
    assert any("after last_frame" in p for p in probs)


def test_bad_numbers_and_colourspace(tmp_path):
    make_plates(tmp_path)
    probs, _ = problems(write_sheet(tmp_path, row(first="abc", cs="srgb")), tmp_path)
    assert any("first_frame 'abc' is not a whole number" in p for p in probs)
    assert any("unknown colourspace 'srgb'" in p and "srgb_tx" in p for p in probs)


def test_all_problems_at_once(tmp_path):
    make_plates(tmp_path)
    sheet = write_sheet(tmp_path, row(), row(), row("bad;id"), row("sh030", plate="plate/x.####.exr"),
                        row("sh040", first=990))
    probs, msg = problems(sheet, tmp_path)
    assert len(probs) >= 4
    for needle in ("duplicate", "not safe", "sh030", "sh040"):
        assert needle in msg


def test_cli_validate_reports_and_fails(tmp_path):
    make_plates(tmp_path)
    sheet = write_sheet(tmp_path, row(), row())
    r = subprocess.run([sys.executable, "-m", "cinecomp.cli", "validate", "--sheet", str(sheet)],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1 and "duplicate shot id" in r.stderr
    sheet = write_sheet(tmp_path, row())
    r = subprocess.run([sys.executable, "-m", "cinecomp.cli", "validate", "--sheet", str(sheet)],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "1 shot(s) OK" in r.stdout


def test_environment_and_reference_rules_of_the_diffusion_backend(tmp_path):
    make_plates(tmp_path)
    header = HEADER + ",composite_backend,reference,reference_role,reference_colourspace"
    rows = [
        row("sa", env="", env_cs="") + ",,,,",  # over needs an environment
        row("sb", env="", env_cs="") + ",diffusion,env.png,,srgb_tx",  # synthesised from the reference: OK
        row("sc") + ",over,env.png,,srgb_tx",  # over ignores references
        row("sd") + ",diffusion,env.png,,",  # no colourspace for the reference
        row("se") + ",diffusion,missing.png,prop,srgb_tx",
        row("sf") + ",diffusion,,prop,",  # a role without an image
        row("sg", env_cs="") + ",diffusion,,,",
    ]
    probs, _ = problems(write_sheet(tmp_path, *rows, header=header), tmp_path)
    text = "\n".join(probs)
    assert not any("shot sb" in p for p in probs), text
    assert any("shot sa" in p and "only the diffusion composite backend can synthesise" in p for p in probs)
    assert any("shot sc" in p and "only used by the diffusion composite backend" in p for p in probs)
    assert any("shot sd" in p and "reference_colourspace is empty" in p for p in probs)
    assert any("shot se" in p and "missing.png" in p for p in probs)
    assert any("shot sf" in p and "reference_role is set but reference is empty" in p for p in probs)
    assert any("shot sg" in p and "env_colourspace is empty" in p for p in probs)
    assert len(probs) == 6, text
    good = load_sheet(write_sheet(tmp_path, rows[1], row("sh") + ",diffusion,env.png,,srgb_tx", header=header),
                      base_dir=tmp_path)
    assert good.loc["sb", "reference_role"] == "environment" and good.loc["sb", "env_path"] == ""
    assert good.loc["sh", "reference_role"] == "prop"  # with an environment plate: prop replacement
    # the config's default backend counts too
    assert load_sheet(write_sheet(tmp_path, row("sa", env="", env_cs="") + ",,,,", header=header),
                      base_dir=tmp_path, composite_default="diffusion").loc["sa", "environment"] == ""


# ---------------------------------------------------------------- camera, light, probe, prop hint, harmonize_params
HZ_HEADER = HEADER + ",camera,light,light_probe,light_probe_rotation_deg,prop_hint,harmonize_params"


def hz_row(shot="sh010", camera="", light="", probe="", rot="", hint="", params=""):
    q = lambda s: '"' + s.replace('"', '""') + '"' if s else ""  # noqa: E731 (CSV-quote a JSON cell)
    return f"{row(shot)},{q(camera)},{q(light)},{probe},{rot},{q(hint)},{q(params)}"


def test_harmonize_columns_good(tmp_path):
    make_plates(tmp_path)
    mask = np.zeros((18, 32), np.uint8)
    mask[5:10, 6:12] = 255
    Image.fromarray(mask).save(tmp_path / "propmask.png")
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(tmp_path / "probe.png")
    from cinecomp import exrio as _e

    _e.write_rgba(tmp_path / "probe.exr", np.ones((16, 32, 4), np.float32))
    sheet = write_sheet(tmp_path, hz_row("a", '{"focal_mm": 33, "height_m": 1.6, "tilt_deg": -9}',
                                         '{"azimuth_deg": 300, "elevation_deg": 35}', "probe.exr", "90",
                                         "1003:4,2,20,15", '{"shadow_density": 0.8}'),
                        hz_row("b", light="auto", hint="propmask.png"), header=HZ_HEADER)
    df = load_sheet(sheet, base_dir=tmp_path)
    assert list(df.index) == ["a", "b"]


@pytest.mark.parametrize("cells, says", [
    (dict(camera='{"focal_mm": NaN}'), "camera: "),
    (dict(camera='{"height_m": 1e9}'), "height_m must be in"),
    (dict(camera='{"focal_mm": 35'), "not valid JSON"),
    (dict(light='{"azimuth_deg": 300}'), "only one of azimuth_deg and elevation_deg"),
    (dict(light='{"azimuth_deg": 300, "elevation_deg": 95}'), "elevation_deg must be in"),
    (dict(light='{"azimuth_deg": Infinity, "elevation_deg": 30}'), "light: "),
    (dict(light='{"colour": [1, -1, 1]}'), "colour must be"),
    (dict(light="sunny"), "not valid JSON"),
    (dict(params='{"shadow_density": 3}'), "shadow_density must be in"),
    (dict(params='{"shadows": 1}'), "unknown harmonize_params key"),
    (dict(hint="1003:4,2,20"), "prop_hint"),
    (dict(hint="1003:40,2,60,15"), "outside the"),
    (dict(hint="999:4,2,20,15"), "999"),
    (dict(hint="nomask.png"), "nomask.png"),
    (dict(hint="small.png"), "the plate is 32x18"),
    (dict(probe="notequi.exr"), "not equirectangular"),
    (dict(probe="missing.hdr"), "light_probe"),
    (dict(rot="90"), "light_probe is empty"),
    (dict(probe="probe.exr", rot="nan"), "light_probe_rotation_deg"),
])
def test_harmonize_columns_bad(tmp_path, cells, says):
    make_plates(tmp_path)
    from cinecomp import exrio as _e

    Image.fromarray(np.zeros((9, 16), np.uint8)).save(tmp_path / "small.png")
    _e.write_rgba(tmp_path / "notequi.exr", np.ones((16, 20, 4), np.float32))
    _e.write_rgba(tmp_path / "probe.exr", np.ones((16, 32, 4), np.float32))
    sheet = write_sheet(tmp_path, hz_row("bad", **cells), hz_row("good"), header=HZ_HEADER)
    probs, msg = problems(sheet, tmp_path)
    assert len(probs) == 1, probs  # the good row has none, the bad one exactly this
    assert "shot bad" in probs[0] and says in probs[0] and "fix" in probs[0], probs[0]
