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
    plan = plan_windows(200, window=81, overlap=17)
    assert [(w.start, w.stop, w.length) for w in plan] == [(0, 81, 81), (64, 145, 81), (128, 200, 73)]
    assert all(w.start % 4 == 0 and (w.length - 1) % 4 == 0 for w in plan)  # latent-frame boundaries
    for a, b in zip(plan, plan[1:]):
        assert a.stop - b.start == 17
    assert plan[-1].stop == 200 and plan[-1].pad == 1
    cover = np.zeros(200, int)
    for w in plan:
        cover[w.start : w.stop] += 1
    assert cover.min() == 1 and cover.max() == 2
    with pytest.raises(DiffusionInputError, match="4n\\+1"):
        plan_windows(100, window=80)
    with pytest.raises(DiffusionInputError, match="overlap=21"):
        plan_windows(100, window=21, overlap=21)
    with pytest.raises(DiffusionInputError, match="fix: use 13 or 17"):
        plan_windows(100, window=81, overlap=16)
    with pytest.raises(DiffusionInputError, match="at most 37"):
        plan_windows(200, window=81, overlap=45)


@pytest.mark.parametrize("n", [57, 51, 53, 200])
def test_blend_weights_partition_of_unity_with_monotone_ramps(n):
    """Every frame's weights sum to one (also where three windows meet at a shot's end, which the old
    end-aligned plan got wrong), each window's weights rise, stay at one, then fall."""
    plan = plan_windows(n, window=21, overlap=5)
    total = np.zeros(n)
    for w in plan:
        wt = blend_weights(plan, w.index)
        total[w.start : w.stop] += wt
        peak = int(np.argmax(wt))
        assert np.all(np.diff(wt[: peak + 1]) >= 0) and np.all(np.diff(wt[peak:]) <= 0)
        assert wt.max() == 1.0
    np.testing.assert_allclose(total, 1.0)
    truth = np.random.default_rng(0).random((n, 4, 4, 3)).astype(np.float32) + 0.5
    outputs = {w.index: truth[w.start : w.stop] for w in plan}
    np.testing.assert_allclose(blend_windows(plan, outputs, n), truth, rtol=1e-6)
    np.testing.assert_allclose(blend_windows(plan, outputs, n, log=True), truth, rtol=1e-5)


def test_disagreeing_windows_cross_fade():
    plan3 = plan_windows(51, window=21, overlap=5)
    assert len(plan3) == 3
    a = {k: np.full((21, 1), float(k)) for k in range(3)}
    mixed = blend_windows(plan3, a, 51)[:, 0]
    ov = slice(plan3[1].start, plan3[0].stop)
    assert np.all(np.diff(mixed[ov]) > 0) and mixed[0] == 0 and mixed[-1] == 2
    assert np.all(np.diff(mixed) >= 0)  # never back: no ghost of an earlier window


class FakeRender:
    """Stands in for the pipeline: frames = plate * 0.5, depth = 2 + mask; counts calls, keeps context."""

    def __init__(self):
        self.calls, self.contexts = [], []

    def __call__(self, character_rgb, tri_mask, seed, frame_offset, context_frames=None, context_depth=None, **kw):
        assert len(character_rgb) == 9 and frame_offset % 4 == 0
        self.calls.append(float(character_rgb[0, 0, 0, 0]))
        self.contexts.append((frame_offset, None if context_frames is None else np.array(context_frames)))

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
    frames, depth = render_windows(r, inputs, tmp_path, window=9, overlap=1)
    plan = plan_windows(n, 9, 1)
    assert len(r.calls) == len(plan) == 3
    # each window after the first gets the previous window's output of the frames they share
    assert r.contexts[0] == (0, None)
    for (offset, ctx), win in zip(r.contexts[1:], plan[1:]):
        assert offset == win.start
        np.testing.assert_allclose(ctx, rgb[win.start : win.start + 1] * 0.5)
    np.testing.assert_allclose(frames, rgb * 0.5, rtol=1e-6)
    np.testing.assert_allclose(depth, 2.0, rtol=1e-6)
    assert all(window_path(tmp_path, w).is_file() for w in plan)
    # streamed frame by frame from the window files: the same blend
    streamed = list(iter_blended(tmp_path))
    assert [i for i, _, _ in streamed] == list(range(n))
    np.testing.assert_allclose(np.stack([f for _, f, _ in streamed]), frames, rtol=1e-6)
    np.testing.assert_allclose(np.stack([d for _, _, d in streamed]), depth, rtol=1e-6)
    assert render_windows(FakeRender(), inputs, tmp_path, 9, 1, blend=False) is None

    # rerun: everything reused
    r2, seen = FakeRender(), []
    again, _ = render_windows(r2, inputs, tmp_path, 9, 1, on_window=lambda w, reused: seen.append(reused))
    assert r2.calls == [] and seen == [True] * 3 and np.array_equal(again, frames)

    # an interrupted run: a missing window is rendered alone
    window_path(tmp_path, plan[1]).unlink()
    r3 = FakeRender()
    render_windows(r3, inputs, tmp_path, 9, 1)
    assert len(r3.calls) == 1
    np.testing.assert_allclose(r3.contexts[0][1], rgb[8:9] * 0.5)  # context read from window 0's file

    # a damaged checkpoint is rendered again; a changed frame invalidates only its windows
    window_path(tmp_path, plan[0]).write_bytes(b"garbage")
    changed = dict(inputs, character_rgb=rgb.copy())
    changed["character_rgb"][-1] = 0.25
    r4 = FakeRender()
    render_windows(r4, changed, tmp_path, 9, 1)
    assert len(r4.calls) == 2  # window 0 (damaged) and the last window (changed frame)
    # a changed frame in the first window invalidates it and every window after it (their context)
    early = dict(changed, character_rgb=changed["character_rgb"].copy())
    early["character_rgb"][2] = 0.75
    r6 = FakeRender()
    render_windows(r6, early, tmp_path, 9, 1)
    assert len(r6.calls) == 3
    # a changed setting invalidates everything
    r5 = FakeRender()
    render_windows(r5, dict(early, seed=4), tmp_path, 9, 1)
    assert len(r5.calls) == 3
    # the other ranks (write=False) decide nothing and render what rank 0 says, through ``agree``
    r7, asked = FakeRender(), []
    render_windows(r7, dict(early, seed=4), tmp_path, 9, 1, write=False, blend=False,
                   agree=lambda todo: asked.append(todo) or [1])
    assert asked == [None] and [offset for offset, _ in r7.contexts] == [plan[1].start]


def test_render_windows_with_the_tiny_pipeline(tmp_path):
    torch = pytest.importorskip("torch")
    from cinecomp.diffusion.tiny_models import make_tiny_models
    from cinecomp.diffusion.pipeline import CinecompPipeline

    make_tiny_models(tmp_path / "tiny", seed=0)
    pipe = CinecompPipeline.from_pretrained(tmp_path / "tiny")
    pipe.set_progress_bar_config(disable=True)
    n, h, w = 11, 32, 32  # not 4n+1 as a whole: windows of 5 (the last one padded)
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
    frames, depth = render_windows(pipe, inputs, tmp_path / "windows", window=5, overlap=1)
    assert frames.shape == (n, h, w, 3) and depth.shape == (n, h, w)
    assert np.isfinite(frames).all() and np.isfinite(depth).all() and depth.min() > 0
    assert [(w.start, w.stop) for w in plan_windows(n, 5, 1)] == [(0, 5), (4, 9), (8, 11)]
    single = pipe(**{**inputs, "character_rgb": inputs["character_rgb"][:5], "tri_mask": mask[:5]})
    np.testing.assert_allclose(frames[:4], single.frames[:4], atol=1e-6)  # before the first overlap


@pytest.fixture(scope="module")
def oracle_pipe(tmp_path_factory):
    """The tiny pipeline with the exact PoolVAE and a colour-holding oracle transformer."""
    pytest.importorskip("torch")
    from cinecomp.diffusion.tiny_models import TINY_LATENT_CHANNELS, make_tiny_models
    from cinecomp.diffusion.oracle import PoolVAE, colour_oracle
    from cinecomp.diffusion.pipeline import CinecompPipeline

    root = tmp_path_factory.mktemp("oracle")
    make_tiny_models(root, seed=0)
    tiny = CinecompPipeline.from_pretrained(root)
    transformer = tiny.transformer
    transformer.forward = colour_oracle(2 * TINY_LATENT_CHANNELS)
    pipe = CinecompPipeline(transformer=transformer, vae=PoolVAE(TINY_LATENT_CHANNELS), scheduler=tiny.scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def seam_and_inside_change(frames, plan):
    """Largest mean frame-to-frame change across a window boundary (the overlaps and the frame after
    each) and inside windows (elsewhere)."""
    step = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))  # step[i]: frame i -> i+1
    boundary = np.zeros(len(step), bool)
    for a, b in zip(plan, plan[1:]):
        boundary[max(b.start - 1, 0) : a.stop] = True
    return step[boundary].max(), step[~boundary].max()


@pytest.mark.parametrize("context", [True, False])
def test_three_windows_without_seams(oracle_pipe, tmp_path, context):
    """A shot three windows long through the colour-holding oracle: with context the frame-to-frame change
    across window boundaries is no larger than inside a window; independent windows (the old engine)
    jump at every boundary."""
    import torch

    n, h, w = 29, 32, 32
    plan = plan_windows(n, 13, 5)
    assert len(plan) == 3
    mask = np.zeros((n, h, w, 3), np.float32)
    mask[..., 2] = 1.0
    inputs = dict(character_rgb=np.zeros((n, h, w, 3), np.float32), tri_mask=mask,
                  prompt_embeds=torch.zeros(1, 4, 32), num_inference_steps=4, guidance_scale=1.0, seed=2)
    frames, _ = render_windows(oracle_pipe, inputs, tmp_path, window=13, overlap=5, context=context)
    seam, inside = seam_and_inside_change(frames, plan)
    if context:
        assert seam <= inside + 1e-5, (seam, inside)
    else:
        assert seam > inside + 0.01, (seam, inside)


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
