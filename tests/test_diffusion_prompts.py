"""Prompt embeddings: a tiny random UMT5 + a locally built tokenizer, cached to safetensors."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from cinecomp.diffusion import prompts as P  # noqa: E402
from cinecomp.diffusion.tiny_models import TINY_WAN_TRANSFORMER, make_tiny_models  # noqa: E402
from cinecomp.diffusion.errors import CheckpointError  # noqa: E402

L = 16


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_models(tmp_path_factory.mktemp("tiny"), seed=0)


def test_encode_cache_round_trip(tiny, tmp_path, monkeypatch):
    cache = tmp_path / "prompts.safetensors"
    prompts = ["A man walks in the forest", "a woman sits on a chair at night"]
    P.encode_prompts(tiny["text_encoder"], prompts, cache, max_sequence_length=L)
    embeds = P.load_prompt_embeds(cache)
    assert list(embeds) == prompts
    for e in embeds.values():
        assert e.shape == (1, L, TINY_WAN_TRANSFORMER["text_dim"]) and torch.isfinite(e).all()
    # padded positions are zero (Wan convention): 6 words + </s> = 7 tokens
    assert embeds[prompts[0]][0, :7].abs().sum() > 0 and not embeds[prompts[0]][0, 7:].any()
    assert not torch.equal(embeds[prompts[0]], embeds[prompts[1]])

    # same encoder, cached prompts: nothing is recomputed; a new prompt is appended, old ones kept
    calls = []
    real = P._t5_embeds
    monkeypatch.setattr(P, "_t5_embeds", lambda te, tok, ps, n: calls.append(list(ps)) or real(te, tok, ps, n))
    P.encode_prompts(tiny["text_encoder"], prompts[:1], cache, max_sequence_length=L)
    assert calls == []
    P.encode_prompts(tiny["text_encoder"], ["the city street in rain", prompts[1]], cache, max_sequence_length=L)
    assert calls == [["the city street in rain"]]
    again = P.load_prompt_embeds(cache)
    assert list(again) == prompts + ["the city street in rain"]
    assert torch.equal(again[prompts[0]], embeds[prompts[0]])
    # batch-independence: encoding alone gives the same embedding as in a batch
    solo = tmp_path / "solo.safetensors"
    P.encode_prompts(tiny["pipeline"], [prompts[1]], solo, max_sequence_length=L)  # a pipeline root works too
    torch.testing.assert_close(P.load_prompt_embeds(solo)[prompts[1]], embeds[prompts[1]], atol=1e-5, rtol=0)


def test_prompt_errors_name_the_path(tiny, tmp_path):
    with pytest.raises(CheckpointError, match=str(tmp_path / "missing")):
        P.encode_prompts(tmp_path / "missing", ["a"], tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match="run encode_prompts"):
        P.load_prompt_embeds(tmp_path / "none.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a cinecomp prompt embedding cache"):
        P.load_prompt_embeds(bad)


def test_unconditional_embedding_is_the_encoding_of_the_empty_prompt(tiny, tmp_path):
    """Wan's unconditional embedding is "" encoded (its end-of-sequence token), not zeros: the prompt
    rule's stage caches it and the composite's shot arrays use it for an empty negative prompt."""
    import logging

    from cinecomp import stages
    from cinecomp.diffusion.shot import prompt_arrays

    cache = tmp_path / "prompt_embeds.safetensors"
    settings = {"prompt": "a person walks", "negative_prompt": "", "text_encoder": str(tiny["text_encoder"]),
                "tokenizer": "", "max_sequence_length": 16}
    stages.prompt_embeds(None, [str(cache)], settings, logging.getLogger("t"))
    arrays = prompt_arrays(cache, "a person walks", "")
    neg = arrays["negative_prompt_embeds"]
    assert neg.shape == arrays["prompt_embeds"].shape
    assert np.abs(neg[0, 0]).sum() > 0 and not neg[0, 1:].any()  # one real token (</s>), then padding
