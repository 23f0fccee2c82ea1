"""The diffusion engine: a Wan 2.1 transformer that denoises RGB and depth jointly, and its pipeline.

Modules (one model per file, pipeline apart from model, distributed code apart):
  conditioning   channel layout, tri-mask folding, depth encoding, reference-image semantics
  transformer    CinecompTransformer3DModel
  autoencoder    SpaceToDepthVAE: lossless, behind AutoencoderKLWan's interface
  init_from_wan  build it from a Wan 2.1 (or VACE) diffusers checkpoint, widened with zero channels
  pipeline       CinecompPipeline (transformer + AutoencoderKLWan + flow-matching scheduler)
  prompts        UMT5 prompt embeddings, computed once and cached
  lora           fine-tunes as PEFT LoRA adapters
  tiny_models    tiny random configs for tests and the demo
  windows        long shots: overlapping 4n+1-frame windows, blended, resumable
  distributed    multi-rank inference: DeepSpeed ZeRO-3 + Ulysses sequence parallelism

Names are imported lazily so ``import cinecomp.diffusion`` stays cheap.
"""

import importlib

_EXPORTS = {
    "CinecompTransformer3DModel": "transformer",
    "SpaceToDepthVAE": "autoencoder",
    "CinecompPipeline": "pipeline",
    "CinecompPipelineOutput": "pipeline",
    "Reference": "conditioning",
    "init_from_wan": "init_from_wan",
    "build_pipeline_from_wan": "init_from_wan",
    "plan_windows": "windows",
    "render_windows": "windows",
    "encode_prompts": "prompts",
    "load_prompt_embeds": "prompts",
    "load_lora": "lora",
    "unload_lora": "lora",
    "make_tiny_models": "tiny_models",
    "make_tiny_wan": "tiny_models",
    "CheckpointError": "errors",
    "DiffusionInputError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
