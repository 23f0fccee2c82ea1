"""CinecompTransformer3DModel, init_from_wan, and the conditioning layout (tiny random models only)."""

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import WanTransformer3DModel  # noqa: E402

from cinecomp.diffusion.conditioning import (  # noqa: E402
    decode_depth,
    encode_depth,
    fold_masks,
    reference_mask,
    unfold_masks,
)
from cinecomp.diffusion.tiny_models import TINY_TRANSFORMER, TINY_WAN_TRANSFORMER, make_tiny_wan  # noqa: E402
from cinecomp.diffusion.errors import CheckpointError  # noqa: E402
from cinecomp.diffusion.init_from_wan import init_from_wan  # noqa: E402
from cinecomp.diffusion.transformer import CinecompTransformer3DModel  # noqa: E402

Z = TINY_WAN_TRANSFORMER["in_channels"]


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory):
    return make_tiny_wan(tmp_path_factory.mktemp("wan") / "transformer", seed=0)


def _inputs(seed=0, frames=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, Z, frames, 4, 4, generator=g)
    t = torch.tensor([637.0])
    text = torch.randn(1, 7, TINY_WAN_TRANSFORMER["text_dim"], generator=g)
    extra = {
        "depth": torch.randn(1, Z, frames, 4, 4, generator=g),
        "cond": torch.randn(1, 3 * Z, frames, 4, 4, generator=g),
        "mask": torch.rand(1, 768, frames, 4, 4, generator=g),
    }
    return x, t, text, extra


def test_config_fields_and_widths():
    m = CinecompTransformer3DModel(**TINY_TRANSFORMER)
    cfg = m.config
    assert cfg.in_channels == 5 * Z + 768 + 3 and cfg.out_channels == 2 * Z and cfg.mask_channels == 768
    assert cfg.presence_channels == 3
    assert m.patch_embedding.in_channels == cfg.in_channels
    wan_cfg = WanTransformer3DModel(**TINY_WAN_TRANSFORMER).config
    for key in ("num_attention_heads", "attention_head_dim", "text_dim", "freq_dim", "ffn_dim", "num_layers", "eps"):
        assert cfg[key] == wan_cfg[key]
    assert tuple(cfg.patch_size) == tuple(wan_cfg.patch_size)
    with pytest.raises(ValueError, match="in_channels"):
        CinecompTransformer3DModel(**TINY_TRANSFORMER, in_channels=17)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    m = CinecompTransformer3DModel(**TINY_TRANSFORMER).eval()
    m.save_pretrained(tmp_path / "m")
    m2 = CinecompTransformer3DModel.from_pretrained(tmp_path / "m").eval()
    skip = {"_use_default_values", "_name_or_path"}
    strip = lambda c: {k: (list(v) if isinstance(v, tuple) else v) for k, v in c.items() if k not in skip}  # noqa: E731
    assert strip(m2.config) == strip(m.config)
    x, t, text, e = _inputs()
    hs = m.pack_inputs(torch.cat([x, e["depth"]], 1), e["cond"], e["mask"])
    with torch.no_grad():
        a, b = m(hs, t, text).sample, m2(hs, t, text).sample
    assert a.shape == (1, 2 * Z, 2, 4, 4)
    assert torch.equal(a, b)


def test_init_from_wan_rgb_equals_base(wan_dir, tmp_path):
    base = WanTransformer3DModel.from_pretrained(wan_dir).eval()
    model = init_from_wan(wan_dir, tmp_path / "cinecomp")
    assert (tmp_path / "cinecomp" / "config.json").is_file()
    x, t, text, e = _inputs(3)
    with torch.no_grad():
        ref = base(x, t, text).sample
        for seed in (4, 5):  # the extra conditioning channels are arbitrary
            _, _, _, e = _inputs(seed)
            out = model(model.pack_inputs(torch.cat([x, e["depth"]], 1), e["cond"], e["mask"]), t, text).sample
            torch.testing.assert_close(out[:, :Z], ref, atol=1e-5, rtol=0)
            torch.testing.assert_close(out[:, Z:], ref, atol=1e-5, rtol=0)  # depth head starts as a copy
    # new input channels are exactly zero, the copied ones exactly Wan's
    w = model.patch_embedding.weight
    assert torch.equal(w[:, :Z], base.patch_embedding.weight) and not w[:, Z:].any()
    # the saved widened model loads back with the same prediction
    reloaded = CinecompTransformer3DModel.from_pretrained(tmp_path / "cinecomp").eval()
    with torch.no_grad():
        hs = model.pack_inputs(torch.cat([x, e["depth"]], 1), e["cond"], e["mask"])
        assert torch.equal(reloaded(hs, t, text).sample, model(hs, t, text).sample)


def test_init_from_wan_accepts_pipeline_root(wan_dir, tmp_path):
    root = tmp_path / "Wan2.1-T2V"
    shutil.copytree(wan_dir, root / "transformer")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    assert init_from_wan(root).config.rgb_channels == Z


def test_init_from_wan_bad_checkpoints_name_the_path(wan_dir, tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(CheckpointError, match=str(missing)):
        init_from_wan(missing)

    no_config = tmp_path / "no_config"
    no_config.mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        init_from_wan(no_config)

    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(wan_dir / "config.json", no_weights / "config.json")
    with pytest.raises(CheckpointError, match=f"{no_weights}.*no weights"):
        init_from_wan(no_weights)

    i2v = tmp_path / "i2v"
    shutil.copytree(wan_dir, i2v)
    cfg = json.loads((i2v / "config.json").read_text())
    cfg["in_channels"] = 2 * Z + 4
    (i2v / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=f"{i2v}.*in_channels=12 but out_channels=4"):
        init_from_wan(i2v)

    wrong_width = tmp_path / "wrong_width"
    shutil.copytree(wan_dir, wrong_width)
    cfg = json.loads((wrong_width / "config.json").read_text())
    cfg["in_channels"] = cfg["out_channels"] = 2 * Z
    (wrong_width / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=f"{wrong_width}.*shape"):
        init_from_wan(wrong_width)

    other = tmp_path / "other"
    shutil.copytree(wan_dir, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["_class_name"] = "FluxTransformer2DModel"
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="not a Wan 2.1 transformer"):
        init_from_wan(other)

    damaged = tmp_path / "damaged"
    shutil.copytree(wan_dir, damaged)
    (damaged / "diffusion_pytorch_model.safetensors").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        init_from_wan(damaged)

    with pytest.raises(CheckpointError, match="VAE"):
        init_from_wan(wan_dir, latent_channels=16)


def test_fold_masks_is_lossless_and_ordered():
    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(1, 3, 9, 16, 24, generator=g) > 0.5).float()
    folded = fold_masks(masks)
    assert folded.shape == (1, 768, 3, 2, 3)
    assert torch.equal(unfold_masks(folded), masks)
    # latent frame 0 = pixel frame 0 (repeated 4x); latent frame 1 = pixel frames 1..4
    c = ((1 * 4 + 2) * 8 + 5) * 8 + 3  # prop mask, subframe 2, row 5, col 3
    assert folded[0, c, 1, 1, 2] == masks[0, 1, 1 + 2, 8 + 5, 16 + 3]
    assert folded[0, c, 0, 1, 2] == masks[0, 1, 0, 8 + 5, 16 + 3]
    ref = reference_mask("prop", 16, 16)
    assert ref.shape == (1, 768, 1, 2, 2)
    assert ref[:, 256:512].eq(1).all() and ref[:, :256].eq(0).all() and ref[:, 512:].eq(0).all()


def test_depth_encoding_round_trip():
    d = torch.tensor([0.1, 0.5, 3.0, 40.0, 1000.0])
    enc = encode_depth(d)
    assert enc[0] == 1.0 and enc[-1] == -1.0 and torch.all(enc[1:] < enc[:-1])
    torch.testing.assert_close(decode_depth(enc), d, rtol=1e-4, atol=0)
    odd = encode_depth(torch.tensor([float("inf"), float("nan"), -1.0, 0.0, 5000.0]))
    assert torch.equal(odd, torch.full((5,), -1.0))
    assert np.isfinite(decode_depth(torch.tensor([-3.0, 3.0])).numpy()).all()


def test_vace_checkpoint_gives_its_base_dit(tmp_path):
    from diffusers import WanVACETransformer3DModel

    torch.manual_seed(2)
    vace = WanVACETransformer3DModel(**TINY_WAN_TRANSFORMER, vace_layers=[0], vace_in_channels=8)
    vace.save_pretrained(tmp_path / "vace")
    model = init_from_wan(tmp_path / "vace")
    assert torch.equal(model.blocks[1].attn1.to_q.weight, vace.blocks[1].attn1.to_q.weight)
    assert torch.equal(model.proj_out.weight, vace.proj_out.weight)
    assert not any(k.startswith("vace_") for k in model.state_dict())


def test_pipeline_from_a_wan_pipeline_directory(tmp_path):
    from cinecomp.diffusion.tiny_models import make_tiny_models
    from cinecomp.diffusion.init_from_wan import build_pipeline_from_wan
    from cinecomp.diffusion.pipeline import CinecompPipeline

    tiny = make_tiny_models(tmp_path / "tiny", seed=0)
    wan = tmp_path / "Wan2.1-T2V"  # laid out as Wan's diffusers pipeline
    wan.mkdir()
    shutil.copytree(tiny["wan_transformer"], wan / "transformer")
    shutil.copytree(tiny["vae"], wan / "vae")
    shutil.copytree(tiny["scheduler"], wan / "scheduler")
    (wan / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    build_pipeline_from_wan(wan, tmp_path / "cinecomp")
    pipe = CinecompPipeline.from_pretrained(tmp_path / "cinecomp")
    assert pipe.transformer.config.in_channels == 5 * Z + 768 + 3
    shutil.rmtree(wan / "vae")
    with pytest.raises(CheckpointError, match=f"{wan}.*no vae/"):
        build_pipeline_from_wan(wan)


def test_make_tiny_wan_is_seeded(wan_dir, tmp_path):
    again = WanTransformer3DModel.from_pretrained(make_tiny_wan(tmp_path / "again", seed=0))
    base = WanTransformer3DModel.from_pretrained(wan_dir)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), base.state_dict().values()))


def test_peft_lora_changes_output_and_disable_delete_restore_exactly():
    pytest.importorskip("peft")
    from peft import LoraConfig

    torch.manual_seed(3)
    m = CinecompTransformer3DModel(**TINY_TRANSFORMER).eval()
    x, t, text, e = _inputs(6)
    hs = m.pack_inputs(torch.cat([x, e["depth"]], 1), e["cond"], e["mask"])

    def run():
        with torch.no_grad():
            return m(hs, t, text).sample

    base = run()
    m.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_v"]), adapter_name="shot")
    assert torch.equal(run(), base)  # PEFT's default init (B = 0) leaves the output unchanged
    g = torch.Generator().manual_seed(7)
    n_lora = 0
    for name, p in m.named_parameters():
        if "lora_B" in name:
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            n_lora += 1
    assert n_lora == 2 * 2 * TINY_TRANSFORMER["num_layers"]  # to_q, to_v in attn1 and attn2 of each block
    with_lora = run()
    assert not torch.allclose(with_lora, base)

    m.disable_adapters()
    assert torch.equal(run(), base)
    m.enable_adapters()
    assert torch.equal(run(), with_lora)
    m.delete_adapters("shot")
    assert torch.equal(run(), base)
    assert not any("lora_" in name for name, _ in m.named_parameters())


def test_reference_keeps_its_aspect_ratio_padded_not_stretched():
    """A 2:1 reference into a 1:1 shot: scaled to fit, centred, mid-grey padding outside its region."""
    import torch

    from cinecomp.diffusion.conditioning import fit_reference

    img = torch.zeros(20, 40, 3)
    yy, xx = torch.meshgrid(torch.arange(20), torch.arange(40), indexing="ij")
    img[((yy - 9.5) ** 2 + (xx - 19.5) ** 2) < 64] = 1.0  # a disc of radius 8
    out, region = fit_reference(img, None, 32, 32)
    assert out.shape == (32, 32, 3) and region.shape == (32, 32)
    rows = torch.nonzero(region.any(dim=1)).flatten()
    assert (rows.min(), rows.max()) == (8, 23)  # 16 rows of image centred, 8 of padding above and below
    assert torch.all(out[:8] == 0.5) and torch.all(region[:8] == 0) and torch.all(region[8:24] == 1)
    ys, xs = torch.nonzero(out[..., 0] > 0.5, as_tuple=True)
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    assert abs(int(height) - int(width)) <= 1  # still a disc, not an ellipse
    same, same_region = fit_reference(img[:, :20], torch.ones(20, 20), 20, 20)  # same size: untouched
    assert torch.equal(same, img[:, :20]) and torch.all(same_region == 1)
