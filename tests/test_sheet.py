"""Shot sheet validation: every problem reported at once, naming the row/shot and the fix."""

import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cinecomp.io import exr as exrio
from cinecomp.errors import SheetError
from cinecomp.sheet import check_path, load_sheet
from helpers import REPO, SHEET_COLUMNS as HEADER, grass_photo, muted_screen

REPO_WORKFLOW = REPO / "workflow"


def green_screen(h, w):
    """A green-screen plate frame (RGBA): a flat screen with a grey figure in the middle."""
    img = np.full((h, w, 4), (0.05, 0.35, 0.06, 1.0), np.float32)
    img[h // 3:, w // 3: w // 2] = (0.5, 0.5, 0.5, 1.0)
    return img


def make_plates(root, w=32, h=18, frames=range(1001, 1006)):
    (root / "plate").mkdir(parents=True)
    for f in frames:
        exrio.write_rgba(root / "plate" / f"p.{f:04d}.exr", green_screen(h, w))
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
    r = subprocess.run([sys.executable, "-m", "cinecomp.cli.main", "validate", "--sheet", str(sheet)],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1 and "duplicate shot id" in r.stderr
    sheet = write_sheet(tmp_path, row())
    r = subprocess.run([sys.executable, "-m", "cinecomp.cli.main", "validate", "--sheet", str(sheet)],
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
    from cinecomp.io import exr as _e

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
    (dict(light='{"azimuth_deg": 90, "elevation_deg": 30, "intensity": 1000000}'), "intensity must be in"),
    (dict(probe="black.exr"), "shows no light"),  # a black character, published silently
    (dict(probe="inf.exr"), "NaN or Inf"),
    (dict(probe="huge.hdr"), "beyond 1e+10"),
])
def test_harmonize_columns_bad(tmp_path, cells, says):
    import cv2

    make_plates(tmp_path)
    from cinecomp.io import exr as _e

    Image.fromarray(np.zeros((9, 16), np.uint8)).save(tmp_path / "small.png")
    _e.write_rgba(tmp_path / "notequi.exr", np.ones((16, 20, 4), np.float32))
    _e.write_rgba(tmp_path / "probe.exr", np.ones((16, 32, 4), np.float32))
    _e.write_rgba(tmp_path / "black.exr", np.zeros((16, 32, 4), np.float32), dtype=np.float32)
    _e.write_rgba(tmp_path / "inf.exr", np.where(np.arange(32) == 3, np.inf, 1.0)[None, :, None]
                  * np.ones((16, 32, 4), np.float32), dtype=np.float32)
    cv2.imwrite(str(tmp_path / "huge.hdr"), np.full((16, 32, 3), 1e30, np.float32))
    sheet = write_sheet(tmp_path, hz_row("bad", **cells), hz_row("good"), header=HZ_HEADER)
    probs, msg = problems(sheet, tmp_path)
    assert len(probs) == 1, probs  # the good row has none, the bad one exactly this
    assert "shot bad" in probs[0] and says in probs[0] and "fix" in probs[0], probs[0]


# ---------------------------------------------------------------- values that used to pass validation and fail later
KP_HEADER = HEADER + ",key_params,resolution"


def kp_row(shot="sh010", fps="24", params="", res="", first=1001, last=1005):
    q = '"' + params.replace('"', '""') + '"' if params else ""
    return f"{shot},plate/p.####.exr,ACEScg,{first},{last},{fps},env.png,srgb_tx,1,{q},{res}"


def one_problem(tmp_path, **cells):
    """The problems of a sheet with one bad row and one good row: exactly one, on the bad row."""
    make_plates(tmp_path)
    probs, msg = problems(write_sheet(tmp_path, kp_row("bad", **cells), kp_row("good"), header=KP_HEADER), tmp_path)
    assert len(probs) == 1, probs
    assert "row 2 (shot bad)" in probs[0] and "fix" in probs[0], probs[0]
    return probs[0]


@pytest.mark.parametrize("params, says", [
    ('{"despill": NaN}', "NaN"),
    ('{"clip_black": Infinity}', "Infinity"),
    ('{"screen_blur": -Infinity}', "-Infinity"),
    ('{"screen": ' + "[" * 50 + "]" * 50 + "}", "nested too deeply"),
    ('{"screen": ' + "[" * 20_000 + "]" * 20_000 + "}", "nested too deeply"),  # RecursionError in json
])
def test_key_params_refuses_non_finite_and_deep_json(tmp_path, params, says):
    p = one_problem(tmp_path, params=params)
    assert "key_params" in p and says in p and len(p) < 400, p


@pytest.mark.parametrize("fps", ["nan", "inf", "-inf", "1e-9", "0", "-24", "1001", "abc", ""])
def test_fps_finite_and_bounded(tmp_path, fps):
    p = one_problem(tmp_path, fps=fps)
    assert f"fps {fps!r}" in p and ("1..1000" in p or "not a number" in p), p
    assert "minimum" not in p and "required property" not in p  # no schema text on top


def test_schema_bounds_what_the_checks_bound():
    from cinecomp.sheet import FPS_MAX, FPS_MIN, FRAME_MAX, FRAME_MIN, load_schema

    props = load_schema()["properties"]
    assert (props["fps"]["minimum"], props["fps"]["maximum"]) == (FPS_MIN, FPS_MAX) == (1, 1000)
    for col in ("first_frame", "last_frame"):
        assert (props[col]["minimum"], props[col]["maximum"]) == (FRAME_MIN, FRAME_MAX)


@pytest.mark.parametrize("first, last, says", [
    ("1001", "10000000", "last_frame 10000000 is outside 0..9999999"),  # 1..1e9: test_huge_frame_range_answers_at_once
    ("-5", "1005", "first_frame -5 is outside"),
    ("1", "9000000", "is 9000000 frames, more than 100000"),
    ("1001", "1e9", "last_frame '1e9' is not a whole number"),
])
def test_frame_range_bounded(tmp_path, first, last, says):
    p = one_problem(tmp_path, first=first, last=last)
    assert says in p, p


def test_huge_frame_range_answers_at_once(tmp_path):
    """1..1e9 used to build a billion-element list (8 GB): in a child limited to 4 GB of address space it
    must answer with the range error (no timing: the memory limit is the check)."""
    import resource

    make_plates(tmp_path)
    sheet = write_sheet(tmp_path, kp_row(first=1, last=1_000_000_000), header=KP_HEADER)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from cinecomp.sheet import load_sheet\n"
            "try:\n    load_sheet(sys.argv[2])\nexcept Exception as exc:\n    print(exc)\n")
    limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # noqa: E731
    r = subprocess.run([sys.executable, "-c", code, str(REPO_WORKFLOW), str(sheet)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "last_frame 1000000000 is outside" in r.stdout, r.stdout


def test_missing_frames_is_arithmetic():
    from cinecomp.sheet import missing_frames

    assert missing_frames(999, 1007, range(1001, 1006)) == [(999, 1000), (1006, 1007)]
    assert missing_frames(1, 10 ** 12, [5, 6, 8, 10 ** 13]) == [(1, 4), (7, 7), (9, 10 ** 12)]  # instant
    assert missing_frames(1001, 1005, [1005, 1001, 1002, 1003, 1004, 1003]) == []


def test_plate_coverage_still_reported(tmp_path):
    p = one_problem(tmp_path, first=1001, last=90000)
    assert "frames 1006-90000 of 1001-90000 are missing" in p, p


@pytest.mark.parametrize("res, says", [
    ("abc", "is not WIDTHxHEIGHT"),
    ("1920X1080", "lower-case x"),
    ("1920 x 1080", "(fix: 1920x1080)"),
    ("10x10x3", "is not WIDTHxHEIGHT"),
    ("99999x99999", "16..16384"),
    ("1x1", "16..16384"),
    ("0x1080", "16..16384"),
    ("x", "is not WIDTHxHEIGHT"),
])
def test_resolution_parsed_and_bounded(tmp_path, res, says):
    p = one_problem(tmp_path, res=res)
    assert f"resolution {res!r}" in p and says in p, p


def test_resolution_odd_sizes_allowed(tmp_path):
    make_plates(tmp_path)
    df = load_sheet(write_sheet(tmp_path, kp_row(res="33x17"), kp_row("b", res="016384x16"), header=KP_HEADER),
                    base_dir=tmp_path)
    assert (df.loc["sh010", "width"], df.loc["sh010", "height"]) == (33, 17)
    assert df.loc["b", "resolution"] == "16384x16" and df.loc["b", "width"] == 16384  # written canonically


# ---------------------------------------------------------------- the CSV itself
def test_row_with_more_cells_than_the_header(tmp_path):
    make_plates(tmp_path)
    sheet = write_sheet(tmp_path, "# a comment line", row() + ",oops", row("sh020"), row("sh030") + ",,")
    probs, _ = problems(sheet, tmp_path)
    assert len(probs) == 1, probs  # trailing empty cells (spreadsheets write them) are fine
    assert "row 3 (shot sh010)" in probs[0] and "10 cells but the header has 9 columns" in probs[0], probs
    assert "fix" in probs[0]


def test_latin1_sheet_is_a_clear_error(tmp_path):
    make_plates(tmp_path)
    p = tmp_path / "shots.csv"
    p.write_bytes((HEADER + ",prompt\n" + row() + ",un café\n").encode("latin-1"))
    probs, _ = problems(p, tmp_path)
    assert len(probs) == 1 and "not UTF-8" in probs[0] and "byte 0xe9 on line 2" in probs[0], probs
    assert "fix: save the sheet as UTF-8" in probs[0]


def test_utf8_bom_is_accepted(tmp_path):
    make_plates(tmp_path)
    p = tmp_path / "shots.csv"
    p.write_bytes(("\ufeff" + HEADER + "\n" + row() + "\n").encode("utf-8"))
    assert list(load_sheet(p, base_dir=tmp_path).index) == ["sh010"]


def test_comments_and_blank_lines_skipped_only_outside_quotes(tmp_path):
    make_plates(tmp_path)
    prompt = "a person walks in\n# holding a crate, \"heavy\"\n\n  and sets it down"
    cell = '"' + prompt.replace('"', '""') + '"'
    sheet = write_sheet(tmp_path, "# a comment, with a comma and an \"unbalanced quote", "", "   ",
                        f"{row()},{cell}", "  # indented comment", "", row("sh020") + ",plain", ",,,,,,,,,,",
                        header="# leading comment\n" + HEADER + ",prompt")
    df = load_sheet(sheet, base_dir=tmp_path)
    assert list(df.index) == ["sh010", "sh020"]
    assert df.loc["sh010", "prompt"] == prompt  # every line, its inner spaces kept
    assert df.loc["sh020", "prompt"] == "plain"
    # a row's number is the line of the sheet it starts on
    probs, _ = problems(write_sheet(tmp_path, f"{row()},{cell}", row() + ",x", header=HEADER + ",prompt"),
                        tmp_path)
    assert any("row 6 (shot sh010)" in p and "also on row 2" in p for p in probs), probs


def test_unclosed_quote_names_its_row(tmp_path):
    make_plates(tmp_path)
    probs, _ = problems(write_sheet(tmp_path, row(), row("sh020") + ',"never closed', row("sh030"),
                                    header=HEADER + ",prompt"), tmp_path)
    assert len(probs) == 1 and "row 3" in probs[0] and "never closed" in probs[0] and "fix" in probs[0], probs


def test_huge_cell_is_a_clear_error(tmp_path):
    make_plates(tmp_path)
    probs, _ = problems(write_sheet(tmp_path, row() + ',"' + "x" * 200_000 + '"', header=HEADER + ",prompt"), tmp_path)
    assert len(probs) == 1 and "row 2" in probs[0] and "longer than" in probs[0] and "fix" in probs[0], probs


def test_header_problems(tmp_path):
    make_plates(tmp_path)
    probs, _ = problems(write_sheet(tmp_path, row() + ",a,", header=HEADER + ",prompt,,prompt"), tmp_path)
    assert any("column 11 of the header has no name" in p for p in probs), probs
    assert any("prompt appear more than once" in p for p in probs), probs


def test_every_bad_value_at_once(tmp_path):
    make_plates(tmp_path)
    sheet = write_sheet(tmp_path, kp_row("a", fps="nan"), kp_row("b", res="1x1"),
                        kp_row("c", params='{"despill": NaN}'), kp_row("d", last=10_000_000), kp_row("e") + ",x",
                        header=KP_HEADER)
    probs, _ = problems(sheet, tmp_path)
    assert len(probs) == 5, probs
    for i, shot in enumerate("abcde", start=2):
        assert any(f"row {i} (shot {shot})" in p for p in probs), (shot, probs)


# ---------------------------------------------------------------- issue 19: hostile inputs at validation
BIG = "9" * 401  # a JSON integer no float holds: math.isfinite(int) overflowed


@pytest.mark.parametrize("cells, says", [
    (dict(camera='{"height_m": %s}' % BIG), "camera height_m must be in [0.05, 1000.0], got 99999"),
    (dict(light='{"azimuth_deg": %s, "elevation_deg": 30}' % BIG), "light azimuth_deg must be in"),
    (dict(light='{"colour": [%s, 1, 1]}' % BIG), "light colour must be [r, g, b]"),
    (dict(params='{"relight": %s}' % BIG), "harmonize_params relight must be in"),
])
def test_huge_json_integers_are_a_range_error(tmp_path, cells, says):
    make_plates(tmp_path)
    probs, _ = problems(write_sheet(tmp_path, hz_row("bad", **cells), hz_row("good"), header=HZ_HEADER), tmp_path)
    assert len(probs) == 1 and "shot bad" in probs[0] and says in probs[0] and len(probs[0]) < 400, probs


def test_huge_json_integer_in_key_params_is_a_range_error(tmp_path):
    p = one_problem(tmp_path, params='{"clip_black": %s}' % BIG)
    assert "key parameter clip_black must be in [0.0, 1.0]" in p and len(p) < 400, p


def test_twenty_digit_version_is_a_range_error(tmp_path):
    make_plates(tmp_path)
    probs, _ = problems(write_sheet(tmp_path, row("bad")[:-1] + "9" * 20, row("good")), tmp_path)
    assert len(probs) == 1 and "shot bad" in probs[0] and "version" in probs[0], probs
    assert "out of range, 20 digits" in probs[0] and "not a whole number" not in probs[0], probs


def test_semicolon_sheet_gets_a_delimiter_hint(tmp_path):
    p = write_sheet(tmp_path, row().replace(",", ";"), header=HEADER.replace(",", ";"))
    probs, _ = problems(p, tmp_path)
    assert len(probs) == 1 and "separated by ';', not commas" in probs[0] and "fix" in probs[0], probs


@pytest.mark.parametrize("link", ["dangling", "loop"])
def test_symlink_frame_that_cannot_be_opened_fails_validation(tmp_path, link):
    make_plates(tmp_path)
    f = tmp_path / "plate" / "p.1003.exr"
    f.unlink()
    f.symlink_to(f if link == "loop" else tmp_path / "gone.exr")
    probs, _ = problems(write_sheet(tmp_path, row("bad"), row("good", last=1002)), tmp_path)
    assert len(probs) == 1 and "shot bad" in probs[0] and str(f) in probs[0], probs
    assert "dangling or looping symlink" in probs[0] and "fix" in probs[0], probs


def test_plate_depth_needs_an_exr_environment_with_z(tmp_path):
    make_plates(tmp_path)
    exrio.write_rgba(tmp_path / "env.exr", np.full((18, 32, 4), 0.5, np.float32))
    Image.fromarray(np.full((18, 32, 3), 128, np.uint8)).save(tmp_path / "env.jpg")
    header = HEADER + ",depth_backend"
    sheet = write_sheet(tmp_path, row("jpg", env="env.jpg") + ",plate", row("noz", env="env.exr", env_cs="ACEScg")
                        + ",plate", row("ground", env="env.jpg") + ",ground", header=header)
    probs, _ = problems(sheet, tmp_path)
    assert len(probs) == 2, probs
    assert "shot jpg" in probs[0] and "needs an EXR environment with a Z channel" in probs[0] and "not an EXR" in probs[0]
    assert "shot noz" in probs[1] and "has none" in probs[1] and "fix" in probs[1], probs
    # the config's default backend counts for rows that leave depth_backend empty
    sheet = write_sheet(tmp_path, row("dflt", env="env.jpg"))
    with pytest.raises(SheetError, match="needs an EXR environment"):
        load_sheet(sheet, base_dir=tmp_path, depth_default="plate")


def test_prop_hint_mask_that_is_a_directory(tmp_path):
    make_plates(tmp_path)
    (tmp_path / "maskdir.png").mkdir()
    probs, _ = problems(write_sheet(tmp_path, hz_row("bad", hint="maskdir.png"), hz_row("good"), header=HZ_HEADER),
                        tmp_path)
    assert len(probs) == 1 and "is a directory, not an image" in probs[0] and "does not exist" not in probs[0], probs


def test_environment_fit_is_checked(tmp_path):
    make_plates(tmp_path)
    header = HEADER + ",environment_fit"
    df = load_sheet(write_sheet(tmp_path, row("a") + ",fit", row("b") + ",", header=header), base_dir=tmp_path)
    assert list(df["environment_fit"]) == ["fit", ""]
    probs, _ = problems(write_sheet(tmp_path, row("bad") + ",squash", row("good") + ",none", header=header), tmp_path)
    assert len(probs) == 1 and "shot bad" in probs[0] and "environment_fit 'squash'" in probs[0], probs
    assert "'fill'" in probs[0] and "fix" in probs[0], probs[0]


def test_a_photo_that_is_no_green_screen_is_refused_at_validation(tmp_path):
    """A garden photo (grass: ~60% of it "strongly green", which the key stage used to key and publish)
    is refused by load_sheet naming the shot, the file and frame, what was measured and the fix; a muted
    green screen passes, and min_screen 0 lets a TD through on purpose."""
    from cinecomp.colour import convert

    make_plates(tmp_path)
    (tmp_path / "garden").mkdir()
    (tmp_path / "muted").mkdir()
    for f in range(1001, 1006):
        srgb = np.clip(convert(grass_photo(seed=f), "ACEScg", "srgb_tx"), 0, 1)
        Image.fromarray((srgb * 255 + 0.5).astype(np.uint8)).save(tmp_path / "garden" / f"g.{f:04d}.png")
        exrio.write_rgba(tmp_path / "muted" / f"m.{f:04d}.exr", muted_screen(seed=f)[0])
    sheet = write_sheet(tmp_path, row("garden", "garden/g.####.png", cs="srgb_tx"), row("muted", "muted/m.####.exr"),
                        row())
    probs, msg = problems(sheet, tmp_path)
    assert len(probs) == 1, msg
    p = probs[0]
    assert p.startswith("row 2 (shot garden): plate ")
    assert "garden/g.####.png frame 1001: no green or blue screen found" in p
    assert re.search(r"measured green: backdrop 0\.\d% of the pixels .*, [5-6]\d\.\d% green-coloured in all", p), p
    assert "fix: check the plate is the green-screen plate (grass, foliage or a sky is not a screen)" in p
    sheet = write_sheet(tmp_path, kp_row("garden", params='{"min_screen": 0}').replace("plate/p.####.exr,ACEScg",
                                                                                        "garden/g.####.png,srgb_tx"),
                        header=KP_HEADER)
    assert list(load_sheet(sheet, base_dir=tmp_path).index) == ["garden"]
    assert list(load_sheet(write_sheet(tmp_path, row("garden", "garden/g.####.png", cs="srgb_tx")), base_dir=tmp_path,
                           check_screens=False).index) == ["garden"]  # a cluster job's own parse
