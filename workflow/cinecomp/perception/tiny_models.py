"""Random-weight models for the learned perception backends: plumbing tests and benchmarks, not pictures.

Each is the real network of its package, built from the package's own config, saved where a real
checkpoint would be, and loaded back through the same code paths as real weights:
  SAM 2      the sam2 package's configs/sam2.1/sam2.1_hiera_t.yaml (input size optionally reduced,
             e.g. 256 for fast CPU tests) + {"model": state_dict} saved with torch.save;
  MatAnyone  the installed package's network from its config, state dict saved with torch.save;
  depth      a tiny Depth Anything (DINOv2 backbone) written with save_pretrained.
"""

from __future__ import annotations

from pathlib import Path


def make_sam2(out_dir, image_size: int = 1024, seed: int = 0) -> dict:
    """{"config", "checkpoint"} of a random SAM 2.1 hiera-t (``image_size`` a multiple of 64)."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from .models import sam2_config_file

    if image_size % 64:
        raise ValueError(f"image_size {image_size} must be a multiple of 64")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = OmegaConf.load(sam2_config_file("configs/sam2.1/sam2.1_hiera_t.yaml"))
    cfg.model.image_size = int(image_size)
    for attn in ("self_attention", "cross_attention"):  # RoPE grid of the 1/16-resolution features
        cfg.model.memory_attention.layer[attn].feat_sizes = [image_size // 16, image_size // 16]
    config = out / f"sam2.1_hiera_t_{image_size}.yaml"
    OmegaConf.save(cfg, config)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = instantiate(cfg.model, _recursive_=True)
    checkpoint = out / f"sam2.1_hiera_t_{image_size}_random.pt"
    torch.save({"model": model.state_dict()}, checkpoint)
    return {"config": str(config), "checkpoint": str(checkpoint)}


def make_matanyone(out_dir, seed: int = 0) -> dict:
    """{"checkpoint"} of the installed MatAnyone package's network with random weights."""
    import torch

    from .models import build_matanyone

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        package, net, _ = build_matanyone()
    checkpoint = out / f"{package}_random.pth"
    torch.save(net.state_dict(), checkpoint)
    return {"checkpoint": str(checkpoint)}


def make_depth_model(out_dir, seed: int = 0) -> dict:
    """{"path"} of a tiny random Depth Anything directory (config.json + model.safetensors)."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            image_size=56, patch_size=14, reshape_hidden_states=False,
                            out_features=["stage1", "stage2", "stage3", "stage4"])
    cfg = DepthAnythingConfig(backbone_config=backbone, patch_size=14, reassemble_hidden_size=32,
                              neck_hidden_sizes=[16, 16, 16, 16], fusion_hidden_size=16, head_hidden_size=8)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DepthAnythingForDepthEstimation(cfg)
    path = Path(out_dir) / "depth_anything_tiny"
    model.save_pretrained(path)
    return {"path": str(path)}


def make_all(out_dir, sam2_image_size: int = 256, seed: int = 0) -> dict:
    """The three (MatAnyone only where its package is installed) and a config overlay selecting them."""
    out = Path(out_dir)
    perception = {"sam2": make_sam2(out / "sam2", sam2_image_size, seed),
                  "depth_model": {**make_depth_model(out, seed), "input_size": 56}}
    try:
        perception["matanyone"] = make_matanyone(out / "matanyone", seed)
    except ImportError:
        pass
    return perception
