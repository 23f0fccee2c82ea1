"""Camera conventions, the depth stage's maths and the harmonize compositor (E2C relight, C2E shadows)."""

import dataclasses

import numpy as np
import pytest

from cinecomp.composite import harmonize as hz
from cinecomp.camera import FAR, Camera, azimuth_elevation, light_direction, parse_camera
from cinecomp.perception.depth import (actor_regions, card_depth, contact_pixel, contact_point, frame_actor_contacts,
                                       object_contacts, plate_depth, shot_depth)

W, H = 160, 90
CAM = Camera(focal_mm=35, height_m=1.5, tilt_deg=-8)


# ------------------------------------------------------------------ camera
def test_light_direction_convention():
    np.testing.assert_allclose(light_direction(0, 0), [0, 0, 1], atol=1e-12)  # ahead of the camera: backlight
    np.testing.assert_allclose(light_direction(90, 0), [1, 0, 0], atol=1e-12)  # camera right
    np.testing.assert_allclose(light_direction(180, 0), [0, 0, -1], atol=1e-12)  # behind the camera
    np.testing.assert_allclose(light_direction(0, 90), [0, 1, 0], atol=1e-12)
    assert azimuth_elevation(light_direction(300, 35)) == pytest.approx((300, 35))


def test_project_unproject_round_trip_and_ground():
    pts = np.array([[0.3, 0.0, 4.0], [-1.0, 1.2, 7.0], [2.0, 0.5, 12.0]])
    x, y, z = CAM.project(pts, W, H)
    np.testing.assert_allclose(CAM.unproject(x, y, z, W, H), pts, atol=1e-9)
    ground = CAM.ground_depth(W, H)
    xs, ys = np.floor(x[0]).astype(int), np.floor(y[0]).astype(int)
    assert abs(ground[ys, xs] - z[0]) / z[0] < 0.05  # the ground point lies on the ground map
    assert (ground[0] == FAR).all() or CAM.horizon_row(W, H) < 0  # sky above the horizon
    assert (ground[-1] < 10).all()


@pytest.mark.parametrize("text, fix", [
    ('{"focal_mm": NaN}', "finite"), ('{"height_m": -1}', "height_m"), ('{"tilt_deg": 95}', "tilt_deg"),
    ('{"focal": 35}', "unknown camera key"), ("[1, 2]", "JSON object"), ('{"focal_mm": 35', "not valid JSON"),
    ("[" * 5000 + "]" * 5000, "nested too deeply"), ('{"roll_deg": "3"}', "roll_deg"),
])
def test_camera_cell_bad_values(text, fix):
    with pytest.raises(ValueError, match=fix):
        parse_camera(text)


# ------------------------------------------------------------------ depth
def standing_bar(x0=70, x1=80, top=30, bottom=70):
    m = np.zeros((H, W), np.float32)
    m[top:bottom, x0:x1] = 1.0
    return m


def test_contact_and_card_depth_meet_the_ground():
    bar = standing_bar()
    px = contact_pixel(bar)
    assert px == pytest.approx((75.0, 70.0))
    c = contact_point(CAM, px, W, H)
    assert c[1] == pytest.approx(0.0, abs=1e-9)
    card = card_depth(CAM, c, W, H)
    ground = CAM.ground_depth(W, H)
    assert card[69, 75] == pytest.approx(ground[69, 75], rel=0.03)  # the card stands where the feet are
    z = shot_depth(ground, {"character": bar, "prop": np.zeros_like(bar)}, {"character": c, "prop": None}, CAM)
    assert (z[bar > 0.5] <= ground[bar > 0.5] + 1e-4).all()
    ys, xs = np.nonzero(bar > 0.5)
    world = CAM.unproject(xs + 0.5, ys + 0.5, z[ys, xs], W, H)
    assert np.ptp(world[:, 2]) < 1e-3 and world[:, 1].max() > 1.0  # one upright card, taller than a metre
    assert contact_pixel(np.zeros((H, W))) is None
    assert contact_pixel(standing_bar(bottom=H)) is None  # feet out of frame: no contact, no cast shadow
    assert contact_point(CAM, (80.0, 1.0), W, H) is None  # above the horizon: no ground there


def test_contacts_are_smoothed_and_filled():
    frames = [{"character": standing_bar(70 + i, 80 + i), "prop": np.zeros((H, W))} for i in range(8)]
    frames[3] = {"character": np.zeros((H, W)), "prop": np.zeros((H, W))}  # character missing on one frame
    c = object_contacts(CAM, frames, W, H)
    xs = np.array([p[0] for p in c["character"]])
    assert c["prop"] == [None] * 8 and np.all(np.isfinite(xs)) and np.all(np.diff(xs) > -1e-6)


def test_plate_depth_finds_z_and_keeps_edges():
    z = np.full((4, 6), 3.0, np.float32)
    z[:, 3:] = np.inf
    out = plate_depth({"R": z, "Z": z}, (12, 8))
    assert out.shape == (8, 12) and set(np.unique(out)) == {3.0, FAR}
    assert plate_depth({"R": z}, (6, 4)) is None


def test_plate_depth_meets_the_frame_as_the_environment_rgb_does():
    """environment_fit: the Z of a 16:9 square-pixel environment under a 2.0 anamorphic frame is
    cropped (fill) or padded with FAR (fit) where its RGB is, never blended."""
    from cinecomp.io.ingest import conform

    z = np.repeat(np.arange(1, 10, dtype=np.float32)[:, None], 16, 1)  # rows at depth 1..9
    filled = plate_depth({"Z": z}, (16, 9), "fill", 1.0, 2.0)
    rgb = conform(np.repeat(z[..., None], 3, -1), (16, 9), "fill", 1.0, 2.0, nearest=True)[0][..., 0]
    np.testing.assert_array_equal(filled, rgb)
    assert filled.min() > 1 and filled.max() < 9 and set(np.unique(filled)) <= set(range(1, 10))
    fitted = plate_depth({"Z": z}, (16, 9), "fit", 1.0, 2.0)
    assert (fitted[:, :4] == FAR).all() and (fitted[:, 12:] == FAR).all() and fitted[:, 4:12].max() == 9


# ------------------------------------------------------------------ harmonize
def light(az=90.0, el=40.0, key=3.0, ambient=0.6, softness=1.0):
    sh = np.zeros((9, 3))
    sh[0] = ambient / 0.282095  # uniform ambient irradiance: c0 * Y0 = ambient
    return hz.ShotLight.from_json({"direction": light_direction(az, el).tolist(), "intensity": key,
                                   "colour": [1, 1, 1], "ambient_sh": sh.tolist(), "softness_deg": softness})


def frame_inputs(bar=None):
    bar = standing_bar() if bar is None else bar
    key = np.concatenate([np.stack([bar * 0.2, bar * 0.15, bar * 0.1], -1), bar[..., None]], -1)
    env = np.full((H, W, 3), 0.5, np.float32)
    masks = {"character": bar, "prop": np.zeros_like(bar)}
    px = contact_pixel(bar)
    contacts = {"character": None if px is None else contact_point(CAM, px, W, H), "prop": None}
    return key, env, masks, contacts


def run(l, params=None, bar=None):
    key, env, masks, contacts = frame_inputs(bar)
    params = params or hz.parse_harmonize_params("")
    grade = hz.shot_grade([(key, masks)], l, CAM, params)
    return hz.harmonize_frame(key, env, masks, CAM.ground_depth(W, H), contacts, l, grade, CAM, params)


def shadow_side(layers, bar):
    s = layers["harmonize.shadow"] * (bar < 0.5)
    ys, xs = np.nonzero(s > 0.3)
    return xs.mean(), ys.mean(), s


@pytest.mark.parametrize("az, side", [(90, "left"), (270, "right"), (0, "towards camera"), (180, "away")])
def test_shadow_falls_away_from_the_light(az, side):
    bar = standing_bar()
    _, layers = run(light(az=az, el=35), bar=bar)
    if side == "away":  # straight behind the bar, hidden by it: dense under the matte, nothing beside it
        assert layers["harmonize.shadow"][64:69, 72:78].min() > 0.8
        beside = np.ones_like(bar, bool)
        beside[:, 68:82] = False  # more than 2 pixels from the bar
        assert layers["harmonize.shadow"][beside].max() < 0.3
        return
    x, y, s = shadow_side(layers, bar)
    assert s.max() > 0.8, "a hard key casts a dense shadow"
    if side == "left":
        assert x < 70
    elif side == "right":
        assert x > 80
    else:
        assert y > 70  # below the feet in the image: nearer the camera


def test_shadow_is_attached_and_softens_with_distance():
    bar = standing_bar()
    _, layers = run(light(az=90, el=30, softness=4.0), bar=bar)
    s = layers["harmonize.shadow"] * (bar < 0.5)
    assert s[60:70, 64:70].max() > 0.8  # attached to the feet
    cols = np.nonzero((s > 0.5).any(axis=0))[0]
    assert cols.min() < 40 and cols.max() < 80  # a long shadow to the left (as deep as the bar is wide)

    def edge_width(col):  # rows in the penumbra across the shadow's streak
        v = s[:, col]
        return int(((v > 0.05) & (v < 0.95)).sum())

    near, far = 66, cols.min() + 2
    assert edge_width(far) > edge_width(near)  # softer where the occluder (the head) is far from the ground


def test_contact_darkening_is_local():
    bar = standing_bar()
    _, layers = run(light(az=90, el=60, key=0.0, ambient=1.0), bar=bar)  # overcast: no key
    c = layers["harmonize.contact"]
    assert layers["harmonize.shadow"].max() <= 1.0
    assert c[71, 70:80].mean() > 2 * c[85, 10:30].mean() and c[71, 70:80].mean() > 0.05


def test_moving_prop_moves_its_shadow():
    a, b = standing_bar(40, 56, 50, 70), standing_bar(70, 86, 50, 70)
    _, la = run(light(az=90, el=35), bar=a)
    _, lb = run(light(az=90, el=35), bar=b)
    xa, _, _ = shadow_side(la, a)
    xb, _, _ = shadow_side(lb, b)
    assert xb - xa == pytest.approx(30, abs=3)


@pytest.mark.parametrize("az", [90, 270])
def test_a_box_under_a_side_light_casts_its_shadow_beside_it_not_in_front(az):
    """The matte's lowest point is the box's front: its footprint stands behind it, so a side light's
    shadow lies beside the box, no nearer the camera than its front (a card centred on the front
    reached half a box towards the camera: a shadow on the ground in front of a box on steps)."""
    box = standing_bar(60, 90, 40, 70)
    c = contact_point(CAM, contact_pixel(box), W, H)
    occ = hz._solid_shadow(hz.world_points(CAM.ground_depth(W, H), CAM), np.ones((H, W), bool), box, c, True,
                           light_direction(az, 35), CAM, (W, H), 1.0, 40.0)
    s = occ * (box < 0.5)
    assert s[71:].max() < 0.3, "no shadow nearer the camera than the box's front"
    beside = s[60:71, :60] if az == 90 else s[60:71, 90:]
    assert beside.max() > 0.8 and (beside > 0.5).sum() > 100  # a dense shadow beside the box


def test_footprint_stands_behind_the_contact_and_a_person_is_narrower_from_the_side():
    bar = standing_bar(70, 80, 30, 70)  # about 0.5 m wide at the contact's distance
    c = contact_point(CAM, contact_pixel(bar), W, H)
    width = hz.object_width(bar, c, CAM)
    for solid in (True, False):
        front = hz.footprint(bar, c, CAM, solid, light_direction(180, 40))  # behind the camera
        side = hz.footprint(bar, c, CAM, solid, light_direction(90, 40))
        depth = min(width, hz.MAX_PROP_M if solid else hz.MAX_BODY_DEPTH_M)
        np.testing.assert_allclose(front.centre, np.asarray(c) + [0, 0, depth / 2], atol=1e-9)
        np.testing.assert_allclose(front.away, [0, 0, 1], atol=1e-9)  # the light from behind the camera
        np.testing.assert_allclose(side.away, [-1, 0, 0], atol=1e-9)
        assert front.across == 1.0 and front.along == pytest.approx(depth)
        if solid:  # a prop's orientation is unknown: a square as wide as its matte from every side
            assert side.across == 1.0 and side.along == pytest.approx(width)
        else:  # a person seen from the side: as wide as they are deep, half their front width at least
            assert side.across == pytest.approx(max(hz.MIN_SIDE_WIDTH, depth / width))
            assert side.along == pytest.approx(width)


def test_relight_shades_towards_the_key_and_keeps_texture():
    yy, xx = np.mgrid[0:H, 0:W]
    disc = (((xx - 80) ** 2 + (yy - 45) ** 2) < 30 ** 2).astype(np.float32)
    params = hz.parse_harmonize_params('{"light_wrap": 0}')
    _, right_lit = run(light(az=90, el=10, key=5.0, ambient=0.2), params, disc)
    ratio = right_lit["harmonize.relight.G"]
    assert ratio[45, 100] > 1.5 * ratio[45, 60]  # the side facing the key is brighter
    # texture: the ratio is smooth, so plate detail (here a checker) passes through unchanged
    assert np.abs(np.diff(ratio[45, 60:100])).max() < 0.2 * ratio[45, 60:100].mean()


def test_grey_world_grade_undoes_exposure_and_white_balance_when_asked():
    """With an albedo given (the opt-in grey-world grade) and full matching, a plate shot brighter and
    bluer composites the same."""
    params = hz.parse_harmonize_params('{"albedo": 0.18, "exposure_match": 1, "colour_match": 1}')
    l = light()
    key, env, masks, contacts = frame_inputs()
    depth = CAM.ground_depth(W, H)
    outs = []
    for gain in ([1, 1, 1], [2.5, 2.0, 3.1]):
        k = key.copy()
        k[..., :3] *= np.array(gain, np.float32)
        grade = hz.shot_grade([(k, masks)], l, CAM, params)
        outs.append(hz.harmonize_frame(k, env, masks, depth, contacts, l, grade, CAM, params)[0])
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-5)


def test_the_plates_exposure_and_relative_albedos_are_kept():
    """By default the plate's exposure is evidence: a plate shot a stop brighter comes out a stop
    brighter, and a white shirt stays whiter than a black coat (no normalisation to an albedo)."""
    params = hz.parse_harmonize_params('{"light_wrap": 0}')
    l = light()
    key, env, masks, contacts = frame_inputs()
    depth = CAM.ground_depth(W, H)
    solid = key[..., 3] > 0.99
    means = {}
    for name, gain in (("plate", 1.0), ("brighter", 2.0), ("black coat", 0.1)):
        k = key.copy()
        k[..., :3] *= gain
        grade = hz.shot_grade([(k, masks)], l, CAM, params)
        beauty = hz.harmonize_frame(k, env, masks, depth, contacts, l, grade, CAM, params)[0]
        means[name] = float(beauty[..., 1][solid].mean())
    assert means["brighter"] / means["plate"] == pytest.approx(2.0, rel=1e-3)
    assert means["black coat"] / means["plate"] == pytest.approx(0.1, rel=1e-3)


def studio_lit(albedo_top=0.2, albedo_bottom=0.2, c=(0.0, -0.5, 0.0), bar=None):
    """A plate of a standing bar (1200 solid pixels: a fully trusted fit) lit by a studio whose light is
    1 + c . n on the matte's normals (its light on an upward surface: 1 + c_y), upper half of albedo
    ``albedo_top`` (the shirt), lower half ``albedo_bottom``."""
    bar = standing_bar(60, 90) if bar is None else bar
    masks = {"character": bar, "prop": np.zeros_like(bar)}
    n = hz.object_normals(masks, CAM)
    rho = np.where(np.arange(H)[:, None] < 50, albedo_top, albedo_bottom) * np.ones((1, W))
    lum = (rho * (1.0 + n @ np.asarray(c, np.float32)) * bar).astype(np.float32)
    key = np.concatenate([np.repeat(lum[..., None], 3, -1), bar[..., None]], -1)
    return key, masks


def test_a_plate_lit_twice_as_bright_as_the_environment_comes_out_half_as_bright():
    """The studio lit the character twice as bright as its light on an upward surface (seen in the
    plate's shading), the environment lights the character as much as its ground: the ratio of lights
    halves the character (the old grade kept the plate's exposure: gain 1)."""
    key, masks = studio_lit(c=(0.0, -0.5, 0.0))
    params = hz.parse_harmonize_params('{"exposure_match": 1}')
    grade = hz.shot_grade([(key, masks)], light(key=0.0), CAM, params)  # an even light: E(n) = E(up)
    solid = masks["character"] > 0.5
    n = hz.object_normals(masks, CAM)[solid]
    studio = float(np.mean(1.0 - 0.5 * n[:, 1])) / 0.5  # the studio's light on the character over up
    assert studio == pytest.approx(2.0, rel=0.1)
    np.testing.assert_allclose(grade.gain, 1.0 / studio, rtol=0.02)
    assert grade.exposure["confidence"] == pytest.approx(1.0)
    assert grade.exposure["cues"]["env"] == pytest.approx(0.0, abs=1e-4)
    # the default takes exposure_match of the way
    default = hz.shot_grade([(key, masks)], light(key=0.0), CAM, hz.parse_harmonize_params(""))
    m = hz.HARMONIZE_SPEC["exposure_match"].default
    assert 0 < m <= 1
    np.testing.assert_allclose(default.gain, studio ** -m, rtol=0.02)


def test_the_exposure_follows_the_environments_light_on_the_character():
    """A studio lit evenly, an environment whose key grazes the ground but faces the character: the
    character comes out brighter than the plate, by the environment's light on it over its light on the
    ground."""
    key, masks = studio_lit(c=(0.0, 0.0, 0.0))
    l = light(az=180.0, el=10.0, key=3.0, ambient=0.3)  # a low key behind the camera
    grade = hz.shot_grade([(key, masks)], l, CAM, hz.parse_harmonize_params('{"exposure_match": 1}'))
    up = np.array([0.0, 1.0, 0.0], np.float32)
    e_up = float((l.key(up) + l.ambient(up)) @ hz.LUMA)
    expected = float(np.clip(np.log2(float(grade.mean_irradiance @ hz.LUMA) / e_up), *hz.EXPOSURE_RANGE_STOPS))
    assert expected > 0.5
    np.testing.assert_allclose(np.log2(grade.gain), expected, atol=1e-3)
    assert grade.exposure["cues"]["studio"] == pytest.approx(0.0, abs=1e-3)


def test_a_white_shirt_stays_whiter_than_a_black_one():
    """One gain per shot: the costume's albedos are kept, never pushed to a mean reflectance."""
    params = hz.parse_harmonize_params('{"light_wrap": 0, "relight": 0}')
    out = {}
    for shirt, rho in (("white", 0.8), ("black", 0.04)):
        key, masks = studio_lit(albedo_top=rho, albedo_bottom=0.2)
        grade = hz.shot_grade([(key, masks)], light(), CAM, params)
        _, env, _, contacts = frame_inputs(masks["character"])
        beauty = hz.harmonize_frame(key, env, masks, CAM.ground_depth(W, H), contacts, light(), grade, CAM, params)[0]
        solid = masks["character"] > 0.5
        top, bottom = solid & (np.arange(H)[:, None] < 50), solid & (np.arange(H)[:, None] >= 50)
        out[shirt] = (float(beauty[..., 1][top].mean()), float(beauty[..., 1][bottom].mean()),
                      float(key[..., 1][top].mean()) / float(key[..., 1][bottom].mean()))
    assert out["white"][0] > 10 * out["black"][0]  # 0.8 against 0.04
    for shirt in out:  # shirt over trousers as on the plate
        assert out[shirt][0] / out[shirt][1] == pytest.approx(out[shirt][2], rel=1e-3)


def test_a_weak_cue_leaves_the_exposure_at_the_plates():
    """A guessed key direction (the light's shape on the character unknown) or too few pixels to fit
    the studio's shading: exposure_match 1 moves nothing (the old grade moved by a guessed direction
    whenever the key/fill split was trusted)."""
    on = hz.parse_harmonize_params('{"exposure_match": 1}')
    key, masks = studio_lit(c=(0.0, -0.5, 0.0))
    side = light(az=90.0, el=20.0, key=3.0, ambient=0.3)
    guessed = dataclasses.replace(side, confidence=0.2)  # the light stage's default direction
    g = hz.shot_grade([(key, masks)], guessed, CAM, on)
    np.testing.assert_allclose(g.gain, 1.0, rtol=1e-5)
    trusted = hz.shot_grade([(key, masks)], side, CAM, on)
    assert abs(np.log2(trusted.gain[0])) > 0.3  # the cue, trusted, does move it
    assert g.exposure["confidence"] == 0 and g.exposure["stops"] == 0
    tiny = np.zeros((H, W), np.float32)
    tiny[60:66, 70:76] = 1.0  # 36 pixels of a distant actor: no studio shading to speak of
    key, masks = studio_lit(c=(0.0, -0.5, 0.0), bar=tiny)
    g = hz.shot_grade([(key, masks)], side, CAM, on)
    np.testing.assert_allclose(g.gain, 1.0, rtol=1e-5)
    assert g.exposure["confidences"]["plate_fit"] == 0
    # light.json's exposure confidence wins over the direction's
    told = dataclasses.replace(side, exposure_confidence=0.0)
    np.testing.assert_allclose(hz.shot_grade([(studio_lit()[0], studio_lit()[1])], told, CAM, on).gain, 1.0, rtol=1e-5)


def test_no_confidence_in_any_estimate_gives_over():
    """Direction, camera, key/fill and colour all unknown: no shadow, no contact, no shading, no colour:
    the comp is plain `over` (light wrap, which rests on no estimate, switched off)."""
    l = dataclasses.replace(light(), confidence=0.0, camera_confidence=0.0, fill_confidence=0.0, colour_trust=0.0)
    key, env, masks, contacts = frame_inputs()
    params = hz.parse_harmonize_params('{"light_wrap": 0}')
    grade = hz.shot_grade([(key, masks)], l, CAM, params)
    beauty, layers = hz.harmonize_frame(key, env, masks, CAM.ground_depth(W, H), contacts, l, grade, CAM, params)
    a = key[..., 3:]
    np.testing.assert_allclose(beauty[..., :3], key[..., :3] + (1 - a) * env, atol=1e-5)
    assert layers["harmonize.shadow"].max() == 0 and layers["harmonize.contact"].max() == 0


def test_a_guessed_key_to_fill_is_pulled_towards_even_keeping_the_light():
    up = np.array([0.0, 1.0, 0.0], np.float32)
    full = light(key=3.0, ambient=0.6)
    for c, ratio in ((1.0, None), (0.5, None), (0.0, 1.0)):
        t = dataclasses.replace(full, fill_confidence=c).trusted()
        k, a = float(t.key(up) @ hz.LUMA), float(t.ambient(up) @ hz.LUMA)
        k0, a0 = float(full.key(up) @ hz.LUMA), float(full.ambient(up) @ hz.LUMA)
        assert k + a == pytest.approx(k0 + a0, rel=1e-5)  # the light on the ground is kept
        assert k / a == pytest.approx(ratio if ratio is not None else (k0 / a0) ** c, rel=1e-4)


def test_nothing_keyed_leaves_the_environment():
    empty = np.zeros((H, W), np.float32)
    key, env, masks, _ = frame_inputs(empty)
    params = hz.parse_harmonize_params("")
    grade = hz.shot_grade([(key, masks)], light(), CAM, params)
    beauty, layers = hz.harmonize_frame(key, env, masks, CAM.ground_depth(W, H), {"character": None, "prop": None},
                                        light(), grade, CAM, params)
    np.testing.assert_allclose(beauty[..., :3], env)
    assert set(layers) == set(hz.LAYERS) and beauty[..., 3].min() == 1


def test_layers_rebuild_the_comp():
    """The written layers are what was applied: env x (1 - shadow*keyshare - contact*ambshare), fg x relight + wrap."""
    key, env, masks, contacts = frame_inputs()
    params = hz.parse_harmonize_params('{"shadow_density": 0.7, "contact": 1.5}')
    l = light()
    grade = hz.shot_grade([(key, masks)], l, CAM, params)
    beauty, layers = hz.harmonize_frame(key, env, masks, CAM.ground_depth(W, H), contacts, l, grade, CAM, params)
    env_ratio = hz.environment_ratio(layers["harmonize.shadow"], layers["harmonize.contact"], l)
    k, a = hz.up_shares(l)
    np.testing.assert_allclose(env_ratio, np.clip(1 - layers["harmonize.shadow"][..., None] * k
                                                  - layers["harmonize.contact"][..., None] * a, 0, 1), atol=1e-6)
    relight = np.stack([layers[f"harmonize.relight.{c}"] for c in "RGB"], -1)
    wrap = np.stack([layers[f"harmonize.wrap.{c}"] for c in "RGB"], -1)
    a = key[..., 3:]
    rebuilt = key[..., :3] * relight + wrap + (1 - a) * env * env_ratio
    np.testing.assert_allclose(beauty[..., :3], rebuilt, atol=1e-5)


@pytest.mark.parametrize("text, fix", [
    ('{"shadow_density": 2}', "shadow_density"), ('{"relight": NaN}', "finite"),
    ('{"light_wrap": Infinity}', "finite"), ('{"shadow": 1}', "unknown harmonize_params"),
    ('{"albedo": 0}', "albedo"), ("0.5", "JSON object"), ('{"studio_stops": NaN}', "finite"),
    ('{"studio_stops": 11}', "studio_stops"), ('{"light_colour": 1.5}', "light_colour"),
    ('{"exposure_match": -1}', "exposure_match"),
])
def test_harmonize_params_bad_values(text, fix):
    with pytest.raises(ValueError, match=fix):
        hz.parse_harmonize_params(text)


def test_light_stage_reads_a_probe(tmp_path):
    """The light rule's stage: an .hdr probe (linear Rec.709) with a sun at azimuth 60 (probe frame),
    rotated by 30 -> the key at azimuth 90 (camera right); light.json says where each part came from."""
    import json
    import logging
    from types import SimpleNamespace

    import cv2

    from cinecomp import stages

    h, w = 64, 128
    probe = np.full((h, w, 3), 0.3, np.float32)
    u = int((60 / 360 + 0.5) * w)  # column of azimuth 60
    v = int((90 - 40) / 180 * h)  # row of elevation 40
    probe[v - 1:v + 2, u - 1:u + 2] = 4000.0
    cv2.imwrite(str(tmp_path / "probe.hdr"), probe[..., ::-1])
    out = tmp_path / "light" / "light.json"
    settings = {"light": None, "camera": {}, "env_colourspace": "", "probe_colourspace": "",
                "probe_rotation_deg": 30.0, "shot": "t"}
    stages.light(SimpleNamespace(probe=str(tmp_path / "probe.hdr"), keys=lambda: ["probe"]), [str(out)], settings,
                 logging.getLogger("t"))
    est = json.loads(out.read_text())
    assert est["source"]["direction"] == "light_probe" and est["intensity"] > 0
    assert est["azimuth_deg"] == pytest.approx(90, abs=4) and est["elevation_deg"] == pytest.approx(40, abs=4)
    assert sum(est["up_shares"]["key"]) / 3 > 0.3


@pytest.mark.parametrize("alpha", [1.0, 0.0], ids=["opaque", "empty"])
def test_a_frame_with_no_background_or_no_foreground_composites(alpha):
    """A black/white/grey plate frame keys fully opaque (no edge: the distance transform has no zero
    pixel) or fully clear; harmonize and over both render it, finite, with the harmonize layers."""
    from cinecomp.composite.over import over

    full = np.full((H, W), alpha, np.float32)
    key, env, masks, contacts = frame_inputs(full)
    params = hz.parse_harmonize_params("")
    grade = hz.shot_grade([(key, masks)], light(), CAM, params)
    beauty, layers = hz.harmonize_frame(key, env, masks, CAM.ground_depth(W, H), contacts, light(), grade, CAM, params)
    assert np.isfinite(beauty).all() and all(np.isfinite(v).all() for v in layers.values())
    assert set(layers) == set(hz.LAYERS)
    normals = hz.matte_normals(full, CAM)
    np.testing.assert_allclose(normals, np.broadcast_to(-CAM.basis()[2], (H, W, 3)), atol=1e-6)
    plain = over(key[..., :3], key[..., 3], env)
    np.testing.assert_allclose(plain, key[..., :3] if alpha else env, atol=1e-6)


def test_harmonize_stage_clamps_to_half_and_says_so(tmp_path, caplog):
    """A key 1e6 bright under a grey-world grade (albedo) overflows half floats: the stage writes
    +-65504, never Inf, and its log names the shot, frame and layers clamped (issue 19)."""
    import json
    import logging
    from types import SimpleNamespace

    from cinecomp import stages
    from cinecomp.io import exr as exrio

    key, env, masks, contacts = frame_inputs()
    dirs = {d: tmp_path / d for d in ("key", "env", "masks", "depth", "out")}
    for d in dirs.values():
        d.mkdir()
    exrio.write_rgba(dirs["key"] / "s_key.1001.exr", key)
    exrio.write_rgba(dirs["env"] / "s_env.1001.exr", env)
    exrio.write_exr(dirs["masks"] / "s_masks.1001.exr", {f"mask.{o}": m for o, m in masks.items()})
    exrio.write_exr(dirs["depth"] / "s_depth.1001.exr", {"environment.Z": CAM.ground_depth(W, H).astype(np.float32)})
    (dirs["depth"] / "contacts.json").write_text(json.dumps(
        {o: [None if c is None else [float(x) for x in c]] for o, c in contacts.items()}))
    l = light(key=1e6)
    (tmp_path / "light.json").write_text(json.dumps({"direction": l.direction.tolist(), "intensity": 1e6,
                                                     "colour": [1, 1, 1], "ambient_sh": l.ambient_sh.tolist(),
                                                     "softness_deg": 1.0}))
    inputs = SimpleNamespace(light=tmp_path / "light.json", key=dirs["key"], env=dirs["env"], masks=dirs["masks"],
                             depth=dirs["depth"])
    settings = {"harmonize": hz.parse_harmonize_params('{"albedo": 0.5, "exposure_match": 1}'),
                "camera": {"focal_mm": 35, "height_m": 1.5, "tilt_deg": -8}, "attrs": {"shot": "s"}}
    with caplog.at_level(logging.WARNING):
        stages.harmonize(inputs, [dirs["out"]], settings, logging.getLogger("t"))
    layers = exrio.read_layers(dirs["out"] / "s_harmonize.1001.exr")
    assert all(np.isfinite(v).all() for v in layers.values())
    assert layers["R"].max() == exrio.HALF_MAX and layers["harmonize.relight.R"].max() == exrio.HALF_MAX
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("shot s frame 1001" in m and "harmonize.relight.R" in m and " px" in m for m in said), said


def test_a_guessed_key_direction_casts_its_shadow_spread_over_every_azimuth():
    """A key whose direction is a guess (confidence at the default) on a known camera: no directed shadow,
    but the expected one of an unknown azimuth, around the actor's feet on both sides; none with
    shadow_spread 0, none on an unknown camera, and a given direction keeps its one directed shadow."""
    bar = standing_bar()
    guessed = dataclasses.replace(light(az=90), confidence=0.0, camera_confidence=1.0)
    _, spread = run(guessed, hz.parse_harmonize_params('{"light_wrap": 0}'))
    s = spread["harmonize.shadow"] * (bar < 0.5)
    ys, xs = np.nonzero(bar > 0.5)
    feet = slice(ys.max() - 2, min(H, ys.max() + 6))
    assert s[feet, : xs.min()].max() > 0.05 and s[feet, xs.max() + 1:].max() > 0.05  # left and right of the feet
    _, off = run(guessed, hz.parse_harmonize_params('{"light_wrap": 0, "shadow_spread": 0}'))
    assert off["harmonize.shadow"].max() == 0
    no_camera = dataclasses.replace(guessed, camera_confidence=0.0)
    assert run(no_camera, hz.parse_harmonize_params('{"light_wrap": 0}'))[1]["harmonize.shadow"].max() == 0
    _, given = run(light(az=90), hz.parse_harmonize_params('{"light_wrap": 0}'))
    g = given["harmonize.shadow"] * (bar < 0.5)
    assert g[:, xs.max() + 1:].max() < 0.05 < g[:, : xs.min()].max()  # key from the right: shadow to the left only
    with pytest.raises(ValueError, match="shadow_spread"):
        hz.parse_harmonize_params('{"shadow_spread": 2}')


def test_a_guessed_key_spreads_its_shadow_over_every_elevation_too():
    """A guessed direction's elevation is as unknown as its azimuth: the spread shadow is the same
    whatever elevation the guess has (it was cast at the guessed one's alone, so a low guess drew a
    long shadow and a high one a short dense blob)."""
    params = hz.parse_harmonize_params('{"light_wrap": 0}')
    low, high = (run(dataclasses.replace(light(az=90, el=el), confidence=0.0, camera_confidence=1.0), params)[1]["harmonize.shadow"]
                 for el in (15.0, 80.0))
    assert low.max() > 0.02
    np.testing.assert_allclose(low, high, atol=1e-6)


def test_contact_and_the_spread_shadow_are_one_dome_look_up():
    """Contact darkening and a guessed key's spread shadow are the same weighted look-up over a set of
    directions (hz._dome_occlusion); a direction of weight 0 counts for nothing, and the spread is the
    plain mean over SPREAD_AZIMUTHS x SPREAD_ELEVATIONS."""
    bar = standing_bar()
    _, _, masks, contacts = frame_inputs(bar)
    depth = CAM.ground_depth(W, H)
    objects = [(bar, contacts["character"], False)]
    _, contact = hz.environment_occlusion(depth, objects, light(), CAM, 1.0, contact_radius=0.3)
    dome = hz._dome_occlusion(depth, objects, CAM, [(light_direction(az, el), np.sin(np.radians(el))) for az, el in hz.CONTACT_DIRS],
                              hz.CONTACT_SOFTNESS_DEG, falloff_m=0.3)
    np.testing.assert_allclose(contact, dome, atol=1e-6)
    one = hz._dome_occlusion(depth, objects, CAM, [(light_direction(90, 40), 1.0)], 1.0)
    padded = hz._dome_occlusion(depth, objects, CAM, [(light_direction(90, 40), 1.0), (light_direction(270, 40), 0.0)], 1.0)
    np.testing.assert_allclose(one, padded, atol=1e-6)
    spread = hz.spread_shadow(depth, objects, CAM, 1.0)
    mean = hz._dome_occlusion(depth, objects, CAM, [(light_direction(az, el), 1.0) for el in hz.SPREAD_ELEVATIONS
                                                    for az in range(0, 360, 360 // hz.SPREAD_AZIMUTHS)], 1.0)
    np.testing.assert_allclose(spread, mean, atol=1e-6)
    assert spread.max() > 0.02 and one.max() > spread.max()


def test_a_post_nearer_than_the_actor_covers_it_and_the_ground_never_does():
    """The environment's depth says a post stands 1.5 m from the camera, the actor ~8 m away: the post
    covers the actor where both are (the post's pixels, not the key's), the rest of the actor and the
    ground around its feet stay as they were. Empty (what the composite stage turns into 0 unless the
    depth backend is plate) or 0: the actor is in front again."""
    key, env, masks, contacts = frame_inputs()
    env[:, 73:76] = (0.9, 0.1, 0.1)  # the post: red, across the actor's columns 70-79
    depth = CAM.ground_depth(W, H)
    post = depth.copy()
    post[:, 73:76] = 1.5
    l = light()
    params = hz.parse_harmonize_params('{"holdout": 1}')
    grade = hz.shot_grade([(key, masks)], l, CAM, params)
    with_post, layers = hz.harmonize_frame(key, env, masks, post, contacts, l, grade, CAM, params)
    without, _ = hz.harmonize_frame(key, env, masks, depth, contacts, l, grade, CAM, params)
    held = layers["harmonize.holdout"]
    assert held[35:65, 74].min() > 0.95  # the post's middle column, over the actor's body
    assert held[35:65, 70:72].max() < 0.2 and held[35:65, 77:80].max() < 0.2  # beside the post: the actor
    assert held[:, :65].max() == 0 and held[:, 85:].max() == 0
    np.testing.assert_allclose(with_post[35:65, 74, :3], env[35:65, 74] * 1.0, atol=0.06)  # red post in front
    np.testing.assert_allclose(with_post[35:65, 71, :3], without[35:65, 71, :3], atol=0.02)
    assert hz.holdout(depth, [(masks["character"], contacts["character"], False)], CAM).max() == 0  # ground alone
    for off in ('{"holdout": 0}', ""):
        beauty = hz.harmonize_frame(key, env, masks, post, contacts, l, grade, CAM, hz.parse_harmonize_params(off))[0]
        np.testing.assert_allclose(beauty[35:65, 74, :3], without[35:65, 74, :3], atol=0.05)


def two_actors(near=(20, 30, 20, 75), far=(110, 118, 35, 55), speck=True):
    """A character mask with two actors: a near one (x0, x1, top, bottom: feet low in frame) and a far
    one (feet higher), plus a 2x2 speck."""
    m = np.zeros((H, W), np.float32)
    for x0, x1, top, bottom in (near, far):
        m[top:bottom, x0:x1] = 1.0
    if speck:
        m[5:7, 60:62] = 1.0
    return m


def test_each_actor_of_a_character_mask_gets_its_own_contact():
    m = two_actors()
    regions = actor_regions(m)
    assert len(regions) == 2  # the speck is no actor
    np.testing.assert_array_equal(sum(m * r for r in regions), m)  # the regions split the mask whole
    pts = frame_actor_contacts(CAM, m, W, H)
    assert pts[0] == pytest.approx(contact_point(CAM, contact_pixel(two_actors(far=(0, 0, 0, 0), speck=False)), W, H))
    assert pts[1] == pytest.approx(contact_point(CAM, (114.0, 55.0), W, H))
    assert pts[1][2] > pts[0][2] + 2  # the far actor stands farther away
    one = standing_bar()
    assert len(actor_regions(one)) == 1 and actor_regions(one)[0].all()  # one actor: the whole frame
    assert actor_regions(np.zeros((H, W), np.float32)) == []
    cut = two_actors(near=(20, 30, 20, H))  # the near actor's feet out of frame
    assert frame_actor_contacts(CAM, cut, W, H)[0] is None
    masks = [{"character": two_actors(far=(110 + i, 118 + i, 35, 55)), "prop": np.zeros((H, W), np.float32)}
             for i in range(5)]
    contacts = object_contacts(CAM, masks, W, H)
    assert [len(a) for a in contacts["actors"]] == [2] * 5
    xs = [a[1][0] for a in contacts["actors"]]
    assert xs == sorted(xs)  # the far actor walks right, tracked as one


def test_two_actors_cast_two_shadows_from_their_own_feet_and_an_old_contacts_json_still_reads():
    """With one contact for the whole mask (the near actor's: what a contacts.json of the previous version
    holds, which still reads) the far actor's shadow is cast from the near one's distance, away from its
    feet; with one contact each it starts at the far actor's own feet, and the near one's is as if alone."""
    m = two_actors(speck=False)
    key = np.concatenate([np.stack([m * 0.2, m * 0.15, m * 0.1], -1), m[..., None]], -1)
    env = np.full((H, W, 3), 0.5, np.float32)
    masks = {"character": m, "prop": np.zeros_like(m)}
    actors = frame_actor_contacts(CAM, m, W, H)
    l = light(az=90.0, el=30.0)  # from the right: shadows fall to the left, along the ground
    params = hz.parse_harmonize_params("")
    grade = hz.shot_grade([(key, masks)], l, CAM, params)
    depth = CAM.ground_depth(W, H)
    single = {"character": actors[0], "prop": None}  # an older contacts.json: no actors
    each = {**single, "actors": actors}
    s_one = hz.harmonize_frame(key, env, masks, depth, single, l, grade, CAM, params)[1]["harmonize.shadow"]
    s_each = hz.harmonize_frame(key, env, masks, depth, each, l, grade, CAM, params)[1]["harmonize.shadow"]
    far_feet = (slice(53, 57), slice(100, 110))  # the ground just left of the far actor's feet
    assert s_each[far_feet].max() > 0.5 and s_one[far_feet].max() < 0.2
    alone = two_actors(far=(0, 0, 0, 0), speck=False)  # the near actor's shadow is its own, as if alone
    masks_alone = {"character": alone, "prop": np.zeros_like(alone)}
    key_alone = key * alone[..., None]
    s_alone = hz.harmonize_frame(key_alone, env, masks_alone, depth, single, l, grade, CAM, params)[1]["harmonize.shadow"]
    near = (slice(60, 90), slice(0, 40))
    assert s_alone[near].max() > 0.5
    np.testing.assert_allclose(s_each[near], s_alone[near], atol=0.05)
