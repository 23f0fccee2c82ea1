"""Long shots: window planning, blending, resume from finished windows."""

import numpy as np
import pytest

from cinecomp.diffusion.errors import DiffusionInputError
from cinecomp.diffusion.windows import (
    Window,
    blend_weights,
    blend_windows,
    iter_blended,
    plan_windows,
    render_windows,
    window_path,
)


def test_plan_windows():
    assert plan_windows(81) == [Window(0, 0, 81, 81)]
    assert plan_windows(30) == [Window(0, 0, 30, 33)]  # short shot: padded to 4n+1, pad dropped later
    assert plan_windows(30)[0].pad == 3
    plan = plan_windows(200, window=81, overlap=16)
    assert [(w.start, w.stop) for w in plan] == [(0, 81), (65, 146), (119, 200)]
    assert all(w.length == 81 and (w.length - 1) % 4 == 0 for w in plan)
    for a, b in zip(plan, plan[1:]):
        assert a.stop - b.start >= 16
    assert plan[-1].stop == 200
    with pytest.raises(DiffusionInputError, match="4n\\+1"):
        plan_windows(100, window=80)
    with pytest.raises(DiffusionInputError, match="overlap"):
        plan_windows(100, window=21, overlap=21)


def test_blend_weights_sum_to_one_and_blend_is_exact_on_agreement():
    n = 57
    plan = plan_windows(n, window=21, overlap=6)
    total = np.zeros(n)
    for w in plan:
        total[w.start : w.stop] += blend_weights(plan, w.index)
    np.testing.assert_allclose(total, 1.0)
    truth = np.random.default_rng(0).random((n, 4, 4, 3)).astype(np.float32) + 0.5
    outputs = {w.index: truth[w.start : w.stop] for w in plan}
    np.testing.assert_allclose(blend_windows(plan, outputs, n), truth, rtol=1e-6)
    np.testing.assert_allclose(blend_windows(plan, outputs, n, log=True), truth, rtol=1e-5)
    # disagreeing windows cross-fade: the overlap lies between them
    a = {0: np.zeros((21, 1)), 1: np.ones((21, 1)), 2: np.ones((21, 1)) * 2}
    plan3 = plan_windows(51, window=21, overlap=6)
    assert len(plan3) == 3
    mixed = blend_windows(plan3, {k: a[k] for k in range(3)}, 51)[:, 0]
    ov = slice(plan3[1].start, plan3[0].stop)
    assert np.all(np.diff(mixed[ov]) > 0) and mixed[0] == 0 and mixed[-1] == 2


class FakeRender:
    """Stands in for the pipeline: frames = plate * 0.5, depth = 2 + mask; counts calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, character_rgb, tri_mask, seed, **kw):
        assert len(character_rgb) == 9
        self.calls.append(float(character_rgb[0, 0, 0, 0]))

        class Out:
            frames = character_rgb * 0.5
            depth = 2.0 + tri_mask[..., 0]

        return Out()


def test_render_windows_resumes_and_invalidates(tmp_path):
    n = 23
    rgb = np.linspace(0, 1, n, dtype=np.float32)[:, None, None, None] * np.ones((n, 4, 4, 3), np.float32)
    mask = np.zeros((n, 4, 4, 3), np.float32)
    inputs = dict(character_rgb=rgb, tri_mask=mask, seed=3, prompt_embeds=np.ones((1, 2, 4)))
    r = FakeRender()
    frames, depth = render_windows(r, inputs, tmp_path, window=9, overlap=2)
    plan = plan_windows(n, 9, 2)
    assert len(r.calls) == len(plan) == 3
    np.testing.assert_allclose(frames, rgb * 0.5, rtol=1e-6)
    np.testing.assert_allclose(depth, 2.0, rtol=1e-6)
    assert all(window_path(tmp_path, w).is_file() for w in plan)
    # streamed frame by frame from the window files: the same blend
    streamed = list(iter_blended(tmp_path))
    assert [i for i, _, _ in streamed] == list(range(n))
    np.testing.assert_allclose(np.stack([f for _, f, _ in streamed]), frames, rtol=1e-6)
    np.testing.assert_allclose(np.stack([d for _, _, d in streamed]), depth, rtol=1e-6)
    assert render_windows(FakeRender(), inputs, tmp_path, 9, 2, blend=False) is None

    # rerun: everything reused
    r2, seen = FakeRender(), []
    again, _ = render_windows(r2, inputs, tmp_path, 9, 2, on_window=lambda w, reused: seen.append(reused))
    assert r2.calls == [] and seen == [True] * 3 and np.array_equal(again, frames)

    # an interrupted run: a missing window is rendered alone
    window_path(tmp_path, plan[1]).unlink()
    r3 = FakeRender()
    render_windows(r3, inputs, tmp_path, 9, 2)
    assert len(r3.calls) == 1

    # a damaged checkpoint is rendered again; a changed frame invalidates only its windows
    window_path(tmp_path, plan[0]).write_bytes(b"garbage")
    changed = dict(inputs, character_rgb=rgb.copy())
    changed["character_rgb"][-1] = 0.25
    r4 = FakeRender()
    render_windows(r4, changed, tmp_path, 9, 2)
    assert len(r4.calls) == 2  # window 0 (damaged) and the last window (changed frame)
    # a changed setting invalidates everything
    r5 = FakeRender()
    render_windows(r5, dict(changed, seed=4), tmp_path, 9, 2)
    assert len(r5.calls) == 3


def test_render_windows_with_the_tiny_pipeline(tmp_path):
    torch = pytest.importorskip("torch")
    from cinecomp.diffusion.configs import make_tiny_models
    from cinecomp.diffusion.pipeline import CinecompPipeline

    make_tiny_models(tmp_path / "tiny", seed=0)
    pipe = CinecompPipeline.from_pretrained(tmp_path / "tiny")
    pipe.set_progress_bar_config(disable=True)
    n, h, w = 11, 32, 32  # not 4n+1 as a whole: windows of 5 (the last one aligned to the end)
    rng = np.random.default_rng(1)
    mask = np.zeros((n, h, w, 3), np.float32)
    mask[:, 8:24, 8:20, 0] = 1
    mask[..., 2] = 1 - mask[..., 0]
    inputs = dict(
        character_rgb=rng.random((n, h, w, 3), dtype=np.float32) * mask[..., :1],
        tri_mask=mask,
        environment_rgb=rng.random((h, w, 3), dtype=np.float32),  # a still: passed to every window
        prompt_embeds=torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0)),
        num_inference_steps=2,
        guidance_scale=3.0,
        seed=5,
    )
    frames, depth = render_windows(pipe, inputs, tmp_path / "windows", window=5, overlap=2)
    assert frames.shape == (n, h, w, 3) and depth.shape == (n, h, w)
    assert np.isfinite(frames).all() and np.isfinite(depth).all() and depth.min() > 0
    assert [(w.start, w.stop) for w in plan_windows(n, 5, 2)] == [(0, 5), (3, 8), (6, 11)]
    single = pipe(**{**inputs, "character_rgb": inputs["character_rgb"][:5], "tri_mask": mask[:5]})
    np.testing.assert_allclose(frames[:3], single.frames[:3], atol=1e-6)  # before the first overlap


def test_npy_frames_reads_slices_like_the_array(tmp_path):
    from cinecomp.diffusion._io import NpyFrames

    a = np.arange(5 * 3 * 2 * 3, dtype=np.float32).reshape(5, 3, 2, 3)
    np.save(tmp_path / "a.npy", a)
    f = NpyFrames(tmp_path / "a.npy")
    assert len(f) == 5 and f.shape == a.shape and f.ndim == 4 and np.ndim(f) == 4
    np.testing.assert_array_equal(f[1:4], a[1:4])
    np.testing.assert_array_equal(f[2], a[2])
    np.testing.assert_array_equal(np.asarray(f), a)
    win = Window(0, 3, 5, 5)  # two real frames, three held
    from cinecomp.diffusion.windows import slice_window

    np.testing.assert_array_equal(slice_window({"character_rgb": f}, win)["character_rgb"],
                                  slice_window({"character_rgb": a}, win)["character_rgb"])
