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


def test_bake_lora_gives_the_adapter_output_with_plain_weights(tmp_path):
    from cinecomp.diffusion.checks import check_pipeline_dir
    from cinecomp.diffusion.tiny_models import make_tiny_models

    tiny = make_tiny_models(tmp_path / "tiny", seed=0)
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
