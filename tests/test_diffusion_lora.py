"""Fine-tunes as PEFT LoRA adapters: loading changes the output, unloading restores it exactly."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from cinecomp.diffusion import lora  # noqa: E402
from cinecomp.diffusion.tiny_models import TINY_TRANSFORMER  # noqa: E402
from cinecomp.diffusion.errors import CheckpointError  # noqa: E402
from cinecomp.diffusion.transformer import CinecompTransformer3DModel  # noqa: E402


def _model(seed=0):
    torch.manual_seed(seed)
    return CinecompTransformer3DModel(**TINY_TRANSFORMER).eval()


def _forward(m):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, m.config.in_channels, 2, 4, 4, generator=g)
    text = torch.randn(1, 5, 32, generator=g)
    with torch.no_grad():
        return m(x, torch.tensor([400.0]), text).sample


def _make_adapter(path, name, seed):
    m = _model()
    torch.manual_seed(seed)
    lora.add_lora(m, name, rank=4, init_lora_weights=False)  # random A and B: a visible effect
    return lora.save_lora(m, path, name)


def test_load_changes_unload_restores_exactly(tmp_path):
    style = _make_adapter(tmp_path / "style", "style", 1)
    assert style.name == "pytorch_lora_weights.safetensors"
    contact = _make_adapter(tmp_path / "contact", "contact", 2)
    m = _model()
    base = _forward(m)
    base_keys = set(m.state_dict())

    assert lora.load_lora(m, tmp_path / "style") == "style"
    with_style = _forward(m)
    assert not torch.allclose(with_style, base)

    lora.load_lora(m, contact, adapter_name="contact", scale=0.5)
    both = _forward(m)
    assert sorted(lora.lora_adapters(m)) == ["contact", "style"]
    assert not torch.allclose(both, with_style)

    lora.set_lora_scales(m, {"style": 1.0, "contact": 0.0})
    torch.testing.assert_close(_forward(m), with_style, atol=1e-6, rtol=0)

    lora.unload_lora(m, "contact")
    torch.testing.assert_close(_forward(m), with_style, atol=1e-6, rtol=0)
    lora.unload_lora(m)
    assert lora.lora_adapters(m) == []
    assert torch.equal(_forward(m), base)
    assert set(m.state_dict()) == base_keys  # the PEFT layers are gone


def test_lora_with_transformer_prefix_and_pipeline(tmp_path):
    from safetensors.torch import load_file, save_file

    file = _make_adapter(tmp_path / "a", "a", 3)
    prefixed = tmp_path / "diffusers_style.safetensors"
    save_file({f"transformer.{k}": v for k, v in load_file(str(file)).items()}, str(prefixed))
    m = _model()
    base = _forward(m)
    lora.load_lora(m, file, adapter_name="plain")
    plain = _forward(m)
    lora.unload_lora(m)

    class Pipe:  # load_lora takes a pipeline too
        transformer = m

    assert lora.load_lora(Pipe(), prefixed) == "diffusers_style"
    torch.testing.assert_close(_forward(m), plain, atol=1e-6, rtol=0)
    lora.unload_lora(Pipe())
    assert torch.equal(_forward(m), base)


def test_bad_lora_paths(tmp_path):
    m = _model()
    with pytest.raises(CheckpointError, match=str(tmp_path / "missing")):
        lora.load_lora(m, tmp_path / "missing")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot read LoRA"):
        lora.load_lora(m, junk)
    from safetensors.torch import save_file

    unrelated = tmp_path / "unrelated.safetensors"
    save_file({"text_encoder.layer.lora_A.weight": torch.zeros(4, 8)}, str(unrelated))
    with pytest.raises(CheckpointError, match="target layers do not exist in this transformer"):
        lora.load_lora(m, unrelated)
    assert lora.lora_adapters(m) == []
    assert np.isfinite(_forward(m).numpy()).all()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from cinecomp.diffusion.tiny_models import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("lora") / "tiny", seed=0)


def test_bake_lora_gives_the_adapter_output_with_plain_weights(tmp_path, tiny):
    from cinecomp.diffusion.checks import check_pipeline_dir

    base = CinecompTransformer3DModel.from_pretrained(tiny["transformer"]).eval()
    torch.manual_seed(5)
    lora.add_lora(base, "show", rank=4, init_lora_weights=False)
    adapter = lora.save_lora(base, tmp_path / "show_lora", "show")
    lora.unload_lora(base)
    lora.load_lora(base, adapter, scale=0.7)
    want = _forward(base)

    out = lora.bake_lora(tiny["pipeline"], adapter, tmp_path / "baked", scale=0.7)
    assert check_pipeline_dir(out) == []
    baked = CinecompTransformer3DModel.from_pretrained(out / "transformer").eval()
    assert not any("lora" in n for n, _ in baked.named_parameters())
    torch.testing.assert_close(_forward(baked), want, atol=1e-5, rtol=1e-5)
    plain = CinecompTransformer3DModel.from_pretrained(tiny["transformer"]).eval()
    assert not torch.allclose(_forward(plain), want)  # the original is untouched and differs


def _size(path):
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_an_adapter_directory_renders_as_its_bake_without_baking(tmp_path, tiny):
    """What training's periodic eval and final save write in LoRA mode -- the adapter, its fully trained
    modules and base_model.json -- loads onto the base (whole, or streamed one tensor at a time as ZeRO-3
    does) with the output of the baked pipeline, at a fraction of its size; the workflow's checks follow
    the reference. A missing base or a base of another config is refused naming base_model.json and the
    fix, before any weight is read."""
    import json
    import shutil

    from cinecomp.diffusion.checks import (BASE_REF, check_pipeline_dir, model_fingerprint, resolve_pipeline,
                                           transformer_text_dim)
    from cinecomp.diffusion.distributed import load_transformer

    m = CinecompTransformer3DModel.from_pretrained(tiny["transformer"]).eval()
    torch.manual_seed(5)
    lora.add_lora(m, "cinecomp", rank=4, init_lora_weights=False)
    with torch.no_grad():
        m.patch_embedding.weight.add_(0.05)  # a fully trained module moved too
    adapter = lora.save_adapter_dir(m, tmp_path / "eval" / "lora", tiny["pipeline"], ("patch_embedding", "depth_proj_out"))
    assert sorted(p.name for p in adapter.iterdir()) == [BASE_REF, lora.LORA_WEIGHT_NAME, lora.TRAINED_MODULES_NAME]
    baked = lora.bake_lora(tiny["pipeline"], adapter, tmp_path / "baked")
    want = _forward(CinecompTransformer3DModel.from_pretrained(baked / "transformer").eval())
    got = _forward(load_transformer(tiny["transformer"], torch.float32, "cpu", adapter))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(_forward(load_transformer(tiny["transformer"], torch.float32, "cpu")), want)
    merge = lora.adapter_merge(adapter)  # the ZeRO-3 path: tensor by tensor from the base's file
    from safetensors.torch import load_file

    streamed = {k: merge(k, v) for k, v in load_file(str(tiny["transformer"] / "diffusion_pytorch_model.safetensors")).items()}
    lora.check_merged(merge, adapter)
    baked_state = load_file(str(baked / "transformer" / "diffusion_pytorch_model.safetensors"))
    for k, v in baked_state.items():
        torch.testing.assert_close(streamed[k], v, atol=1e-6, rtol=1e-5)
    assert _size(adapter) < 0.2 * _size(baked)

    assert resolve_pipeline(adapter) == (tiny["pipeline"].resolve(), adapter)
    assert resolve_pipeline(tiny["pipeline"]) == (tiny["pipeline"], None)  # a full model directory as before
    assert check_pipeline_dir(adapter) == [] and transformer_text_dim(adapter) == 32
    assert model_fingerprint(adapter) != model_fingerprint(tmp_path / "eval")

    ref = json.loads((adapter / BASE_REF).read_text())
    (adapter / BASE_REF).write_text(json.dumps({**ref, "base": str(tmp_path / "gone")}))
    with pytest.raises(CheckpointError) as exc:
        resolve_pipeline(adapter)
    msg = str(exc.value)
    assert str(adapter / BASE_REF) in msg and "gone does not exist" in msg and 'set "base"' in msg
    assert check_pipeline_dir(adapter) == [msg]
    other = tmp_path / "other"
    shutil.copytree(tiny["pipeline"], other)
    cfg = json.loads((other / "transformer" / "config.json").read_text())
    (other / "transformer" / "config.json").write_text(json.dumps({**cfg, "num_layers": cfg["num_layers"] + 1}))
    (adapter / BASE_REF).write_text(json.dumps({**ref, "base": str(other)}))
    with pytest.raises(CheckpointError, match="is not the one the adapter was trained on"):
        load_transformer(other / "transformer", torch.float32, "cpu", resolve_pipeline(adapter)[1])
    (adapter / BASE_REF).write_text("{not json")
    assert "is not a base reference" in check_pipeline_dir(adapter)[0]
