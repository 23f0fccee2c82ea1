"""Multi-rank inference: DeepSpeed ZeRO-3 parameter sharding + DeepSpeed-Ulysses sequence parallelism.

Launched with the DeepSpeed launcher, one rank per GPU::

    deepspeed --num_gpus 8 --module cinecomp.diffusion.distributed \\
        --pipeline models/cinecomp --shot shot.npz --out comp.npz --steps 30 --seed 1

On CPU the same code runs with ``DS_ACCELERATOR=cpu LOCAL_SIZE=<ranks>`` and the gloo backend
(:func:`launch_command` / :func:`launch_env` build that), which is how the tests check that two ranks
give the frames one gives.

* ZeRO-3: the transformer is built under ``deepspeed.zero.Init`` (every rank holds 1/N of every
  parameter from the start), rank 0 streams the weights in from safetensors, and
  ``deepspeed.initialize`` (stage 3, no optimizer) gathers each module's parameters just before it
  runs and frees them after.  The VAE is small and replicated.
* Ulysses: the token sequence is split across ranks after the patch embedding (and RoPE table);
  each block's self-attention swaps the split from tokens to heads with an all-to-all
  (``deepspeed.sequence.layer.DistributedAttention``), attends over the whole sequence for its heads,
  and swaps back.  Cross-attention to the prompt needs no communication.  The output projections
  gather the sequence again.  Needs ``num_attention_heads`` and the token count divisible by the
  number of ranks.
* Every rank draws the same noise from the same seed and, after the gather, holds the same latents
  at every step; each rank decodes with its VAE copy and rank 0 writes the result.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import shutil
import socket
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .errors import DiffusionInputError

# ----------------------------------------------------------------------------------- setup


def _skip_cpu_shm_kernel() -> None:
    """DeepSpeed JIT-compiles a shared-memory allreduce kernel for CPU ranks on first use (~1 min);
    inference barely allreduces, so CPU runs skip it unless CINECOMP_DS_SHM=1."""
    if os.environ.get("CINECOMP_DS_SHM") == "1":
        return
    ds_torch = importlib.import_module("deepspeed.comm.torch")
    ds_torch.build_shm_op = lambda: None


def is_cpu_accelerator() -> bool:
    from deepspeed.accelerator import get_accelerator

    return get_accelerator().device_name() == "cpu"


def init_distributed() -> tuple[int, int]:
    """Initialise DeepSpeed's communication (gloo on CPU); returns (rank, world_size)."""
    import deepspeed
    import deepspeed.comm as dist
    from deepspeed.accelerator import get_accelerator

    if not dist.is_initialized():
        cpu = is_cpu_accelerator()
        if cpu:
            _skip_cpu_shm_kernel()
        backend = "gloo" if cpu else get_accelerator().communication_backend_name()
        deepspeed.init_distributed(dist_backend=backend)
    return dist.get_rank(), dist.get_world_size()


def block_numel(config) -> int:
    """Parameters of one transformer block (self- and cross-attention, FFN) from a model config."""
    dim = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    return 8 * dim * dim + 2 * dim * int(config["ffn_dim"])


def zero3_config(dtype: torch.dtype = torch.float32, block: int | None = None, persist: int | None = None) -> dict:
    """A ZeRO stage-3 inference config (no optimizer; the weight matrices partitioned).

    With ``block`` (elements of one transformer block) at most about two blocks are gathered at a time
    (the one running and the one prefetched), so a rank's peak parameter memory is its shard plus
    two blocks, not the whole model (DeepSpeed's defaults allow 1e9 live elements).  Parameters with
    fewer than ``persist`` elements (biases, norms, modulation tables: vectors, not matrices) stay whole
    on every rank instead of being gathered one by one on every call; 0 partitions everything."""
    zero = {"stage": 3, "stage3_param_persistence_threshold": int(persist or 0)}
    if block:
        zero.update(stage3_prefetch_bucket_size=int(block), stage3_max_live_parameters=int(2 * block),
                    stage3_max_reuse_distance=int(block))
    else:
        zero["stage3_prefetch_bucket_size"] = 5e7
    return {
        "train_micro_batch_size_per_gpu": 1,
        "zero_optimization": zero,
        # zero.Init builds the partitions in this precision (its dtype= argument is ignored on CPU
        # accelerators in DeepSpeed 0.19); the keep-in-fp32 modules are made float32 after
        "fp16": {"enabled": dtype == torch.float16},
        "bf16": {"enabled": dtype == torch.bfloat16},
        "wall_clock_breakdown": False,
    }


def persistence_threshold(config) -> int:
    """Elements below which a parameter stays whole on every rank: every vector of a block (biases,
    norms, its (1, 6, d) modulation table), never a weight matrix (d x d and larger)."""
    dim = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    return max(6 * dim, int(config["ffn_dim"])) + 1


def keeps_fp32(name: str, keep: list[str] | tuple[str, ...] | None) -> bool:
    """diffusers' rule for ``_keep_in_fp32_modules``: a tensor whose dotted name has one of them as a part."""
    parts = name.split(".")
    return any(k in parts for k in keep or ())


def rank_device() -> torch.device:
    """The device this rank computes on (DeepSpeed's accelerator; ``cpu`` on CPU ranks)."""
    from deepspeed.accelerator import get_accelerator

    return torch.device("cpu") if is_cpu_accelerator() else torch.device(get_accelerator().current_device_name())


def tensor_placement(module) -> dict:
    """Every parameter (a ZeRO-3 parameter's partition) and buffer of ``module`` with its device and dtype."""
    out = {}
    for name, p in module.named_parameters():
        t = getattr(p, "ds_tensor", None)
        t = p if t is None else t
        out[name] = (str(t.device), str(t.dtype).replace("torch.", ""))
    for name, b in module.named_buffers():
        out[name] = (str(b.device), str(b.dtype).replace("torch.", ""))
    return out


def misplaced(module, device: torch.device) -> list[str]:
    """Names of the tensors of ``module`` that are not on ``device`` (compares the device type and index)."""
    want = torch.device(device)
    bad = []
    for name, (dev, _) in tensor_placement(module).items():
        d = torch.device(dev)
        if d.type != want.type or (want.index is not None and d.index != want.index):
            bad.append(f"{name} on {dev}")
    return bad


# ------------------------------------------------------------------------- ZeRO-3 loading


def to_fp32(param) -> bool:
    """Make one parameter float32 where it lives: a ZeRO-3 parameter's partition (``ds_tensor``; its
    ``data`` is only an empty placeholder) or an ordinary tensor.  Returns whether it changed."""
    part = getattr(param, "ds_tensor", None)
    if part is not None:
        if part.dtype == torch.float32:
            return False
        part.data = part.data.float()
        param.data = torch.empty(0, dtype=torch.float32, device=param.data.device)
        return True
    if param.dtype == torch.float32:
        return False
    param.data = param.data.float()
    return True


def build_transformer_zero3(model_dir: str | os.PathLike, ds_config: dict, dtype: torch.dtype = torch.float32,
                            adapter: str | os.PathLike | None = None):
    """The CinecompTransformer3DModel built under ``deepspeed.zero.Init`` (no rank ever holds it whole),
    its ``_keep_in_fp32_modules`` float32 on the partitions, and its weights streamed in from rank 0.
    ``ds_config`` is the engine's config (stage 3; its bf16/fp16 flag sets the partitions' dtype).
    ``adapter``: a fine-tune's adapter directory, folded into each weight as it streams in
    (:func:`~cinecomp.diffusion.lora.adapter_merge`: one tensor at a time, no baked copy anywhere)."""
    import deepspeed
    import deepspeed.comm as dist
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed
    from safetensors import safe_open

    from ._io import read_config
    from .transformer import CinecompTransformer3DModel

    model_dir = Path(model_dir)
    if (model_dir / "model_index.json").is_file():
        model_dir = model_dir / "transformer"
    config = read_config(model_dir, "cinecomp transformer")
    weights = model_dir / "diffusion_pytorch_model.safetensors"
    shards = model_dir / "diffusion_pytorch_model.safetensors.index.json"
    device = rank_device()
    with deepspeed.zero.Init(config_dict_or_path=ds_config):
        model = CinecompTransformer3DModel.from_config(config)
    cfg = model.config
    # as diffusers' from_pretrained(torch_dtype=...): the _keep_in_fp32_modules stay float32 (zero.Init
    # made every partition ``dtype``; DeepSpeed gathers partitions of different dtypes separately)
    keep = model._keep_in_fp32_modules
    for name, p in model.named_parameters():
        if keeps_fp32(name, keep):
            to_fp32(p)
    # zero.Init casts every float tensor created under it, and DeepSpeed moves no buffer of a zero.Init
    # model: RoPE's tables are rebuilt outside it and put on the rank's device, in float32 (rope is a
    # keep-in-fp32 module: diffusers' from_pretrained gives the same)
    model.rope = WanRotaryPosEmbed(cfg.attention_head_dim, cfg.patch_size, cfg.rope_max_seq_len).to(
        device, torch.float32)

    rank = dist.get_rank()
    if shards.is_file():
        weight_map = json.loads(shards.read_text())["weight_map"]
    elif weights.is_file():
        weight_map = None
    else:
        from .errors import CheckpointError

        raise CheckpointError(model_dir, "no safetensors weights found", "save the model with save_pretrained")
    handles: dict[str, object] = {}
    merge = None
    if adapter is not None and rank == 0:
        from .lora import adapter_merge

        merge = adapter_merge(adapter)

    def tensor(name):
        file = model_dir / weight_map[name] if weight_map else weights
        if str(file) not in handles:
            handles[str(file)] = safe_open(str(file), framework="pt")
        t = handles[str(file)].get_tensor(name)
        return merge(name, t) if merge else t

    for module_name, module in model.named_modules():
        params = list(module.named_parameters(recurse=False))
        if not params:
            continue
        with deepspeed.zero.GatheredParameters([p for _, p in params], modifier_rank=0):
            if rank == 0:
                for pname, p in params:
                    full = f"{module_name}.{pname}" if module_name else pname
                    p.data.copy_(tensor(full))
    handles.clear()
    if merge:
        from .lora import check_merged

        check_merged(merge, adapter)
    return model


def load_transformer_zero3(model_dir: str | os.PathLike, ds_config: dict | None = None,
                           dtype: torch.dtype = torch.float32, adapter: str | os.PathLike | None = None):
    """Build the CinecompTransformer3DModel partitioned with ZeRO-3 (:func:`build_transformer_zero3`)
    for inference.

    Returns ``(module, engine)``: call ``module`` (a ModelMixin with its config; the engine's ZeRO
    hooks are on it) and keep ``engine`` alive.
    """
    import deepspeed

    from ._io import read_config

    model_dir = Path(model_dir)
    if (model_dir / "model_index.json").is_file():
        model_dir = model_dir / "transformer"
    config = read_config(model_dir, "cinecomp transformer")
    ds_config = ds_config or zero3_config(dtype, block=block_numel(config), persist=persistence_threshold(config))
    model = build_transformer_zero3(model_dir, ds_config, dtype, adapter)
    model.eval()
    engine, *_ = deepspeed.initialize(model=model, config=ds_config)
    engine.eval()
    return engine.module, engine


def load_transformer(model_dir: str | os.PathLike, dtype: torch.dtype, device: torch.device | str,
                     adapter: str | os.PathLike | None = None):
    """The whole transformer on one device, loaded diffusers' way: ``torch_dtype`` at load (its
    ``_keep_in_fp32_modules``, RoPE's tables among them, stay float32), ``adapter`` (a fine-tune's adapter
    directory) folded into its weights, then moved -- not cast -- to ``device``."""
    from .transformer import CinecompTransformer3DModel

    model = CinecompTransformer3DModel.from_pretrained(model_dir, torch_dtype=dtype)
    if adapter is not None:
        from .lora import apply_adapter_dir

        apply_adapter_dir(model, adapter)
    return model.eval().to(device)


# ----------------------------------------------------------------------------------- Ulysses


def _apply_rotary_emb(x: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding (interleaved pairs), as in diffusers' WanAttnProcessor."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos = freqs_cos[..., 0::2]
    sin = freqs_sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


class UlyssesAttnProcessor:
    """Wan self-attention over a sequence sharded across ranks (DeepSpeed-Ulysses all-to-all)."""

    def __init__(self, group=None):
        from deepspeed.sequence.layer import DistributedAttention

        # tensors are (batch, tokens, heads, head_dim): scatter heads (2), gather tokens (1)
        self.attention = DistributedAttention(self._local_attention, group, scatter_idx=2, gather_idx=1)

    @staticmethod
    def _local_attention(query, key, value, *args, **kwargs):
        from diffusers.models.attention_dispatch import dispatch_attention_fn

        return dispatch_attention_fn(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        if encoder_hidden_states is not None or attention_mask is not None:
            raise RuntimeError("UlyssesAttnProcessor is for unmasked self-attention (attn1) only")
        from diffusers.models.transformers.transformer_wan import _get_qkv_projections

        query, key, value = _get_qkv_projections(attn, hidden_states, None)
        query = attn.norm_q(query)
        key = attn.norm_k(key)
        query = query.unflatten(2, (attn.heads, -1))
        key = key.unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:  # the local tokens' slice of the table (see enable_sequence_parallel)
            query = _apply_rotary_emb(query, *rotary_emb)
            key = _apply_rotary_emb(key, *rotary_emb)
        out = self.attention(query, key, value, 0)  # batch_dim_idx=0
        out = out.flatten(2, 3).type_as(query)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


class SequenceParallel:
    """Hooks that shard the transformer's token sequence across the ranks of ``group``."""

    def __init__(self, transformer, group=None):
        import deepspeed.comm as dist

        self.dist, self.group = dist, group
        self.world = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        heads = transformer.config.num_attention_heads
        if heads % self.world:
            raise DiffusionInputError(
                f"{heads} attention heads cannot be split over {self.world} ranks (Ulysses needs heads % ranks == 0)"
            )
        self.transformer = transformer
        self.handles = []
        self.tokens_per_rank = None
        self._old_processors = {}
        for i, block in enumerate(transformer.blocks):
            self._old_processors[i] = block.attn1.processor
            block.attn1.set_processor(UlyssesAttnProcessor(group))
        self.handles.append(transformer.rope.register_forward_hook(self._shard_rope))
        self.handles.append(transformer.condition_embedder.register_forward_hook(self._shard_timesteps))
        self.handles.append(transformer.blocks[0].register_forward_pre_hook(self._shard_tokens))
        for head in (transformer.proj_out, transformer.depth_proj_out):
            self.handles.append(head.register_forward_hook(self._gather_tokens))

    def _split(self, n: int) -> slice:
        if n % self.world:
            raise DiffusionInputError(
                f"{n} tokens cannot be split evenly over {self.world} ranks: choose a frame count / resolution "
                f"whose (latent frames x latent height/2 x latent width/2) is a multiple of {self.world}"
            )
        k = n // self.world
        self.tokens_per_rank = k
        return slice(self.rank * k, (self.rank + 1) * k)

    def _shard_rope(self, module, args, output):
        cos, sin = output
        s = self._split(cos.shape[1])
        return cos[:, s], sin[:, s]

    def _shard_timesteps(self, module, args, output):
        """Per-token timesteps (clean reference / context frames at 0): each rank keeps its tokens' rows
        of the time embedding (B, tokens, d) and modulation (B, tokens, 6d), as it keeps their RoPE rows."""
        temb, timestep_proj, *rest = output
        if temb.ndim != 3:
            return output
        s = self._split(temb.shape[1])
        return (temb[:, s], timestep_proj[:, s], *rest)

    def _shard_tokens(self, module, args):
        hidden_states, encoder_hidden_states, temb, rotary_emb = args
        return (
            hidden_states[:, self._split(hidden_states.shape[1])].contiguous(),
            encoder_hidden_states,
            temb,
            rotary_emb,
        )

    def _gather_tokens(self, module, args, output):
        parts = [torch.empty_like(output) for _ in range(self.world)]
        self.dist.all_gather(parts, output.contiguous(), group=self.group)
        return torch.cat(parts, dim=1)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        for i, proc in self._old_processors.items():
            self.transformer.blocks[i].attn1.set_processor(proc)
        self.handles.clear()


# ------------------------------------------------------------------------------- pipeline


def build_pipeline(pipeline_dir: str | os.PathLike, zero_stage: int = 3, sequence_parallel: bool = True,
                   dtype: torch.dtype | None = None, ds_config: dict | None = None):
    """A CinecompPipeline for this rank: ZeRO-3 transformer (or replicated with ``zero_stage=0``),
    replicated VAE and scheduler, Ulysses hooks when more than one rank.

    On GPUs the transformer runs in bfloat16 (``dtype`` default; its ``_keep_in_fp32_modules`` -- RoPE,
    time embedding, modulation tables, norms -- in float32 as diffusers keeps them) and the VAE in float32
    on the rank's device; on CPU ranks everything is float32 unless ``dtype`` says otherwise."""
    import deepspeed.comm as dist
    from .autoencoder import load_vae
    from .tiny_models import scheduler_class
    from .pipeline import CinecompPipeline

    from .checks import resolve_pipeline

    root, adapter = resolve_pipeline(pipeline_dir)  # an adapter directory loads onto its base, unbaked
    cpu = is_cpu_accelerator()
    device = rank_device()
    dtype = dtype or (torch.float32 if cpu else torch.bfloat16)
    engine = None
    if zero_stage == 3:
        transformer, engine = load_transformer_zero3(root / "transformer", dtype=dtype, ds_config=ds_config,
                                                     adapter=adapter)
    elif zero_stage == 0:
        transformer = load_transformer(root / "transformer", dtype, device, adapter)
    else:
        raise DiffusionInputError(f"zero_stage must be 0 or 3 for inference, got {zero_stage}")
    vae = load_vae(root / "vae").eval().to(device)
    scheduler = scheduler_class(root / "scheduler").from_pretrained(root / "scheduler")
    stray = misplaced(transformer, device)
    if stray:  # caught here, not at the first attention call of a GPU shot
        raise RuntimeError(f"{len(stray)} transformer tensor(s) are not on this rank's device {device}: "
                           + ", ".join(stray[:5]))
    pipe = CinecompPipeline(transformer=transformer, vae=vae, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=dist.get_rank() != 0)
    pipe._ds_engine = engine
    pipe._sequence_parallel = SequenceParallel(transformer) if sequence_parallel and dist.get_world_size() > 1 else None
    return pipe


def local_parameter_numel(module) -> int:
    """Elements of the parameters this rank holds (its ZeRO-3 partition, or everything)."""
    return sum(int(getattr(p, "ds_tensor", p).numel()) for p in module.parameters())


def total_parameter_numel(module) -> int:
    return sum(int(p.ds_numel) if hasattr(p, "ds_numel") else p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------------ CLI


def _load_shot(path: Path) -> dict:
    """A shot from an ``.npz``, or from a directory of ``.npy`` files whose per-frame arrays are read
    from disk a window at a time (:class:`NpyFrames`: memory does not grow with shot length)."""
    if path.is_dir():
        from ._io import NpyFrames

        shot = {}
        for f in sorted(path.glob("*.npy")):
            frames = NpyFrames(f)
            per_frame = frames.ndim >= 3 and f.stem not in ("prompt_embeds", "negative_prompt_embeds", "reference_image")
            shot[f.stem] = frames if per_frame else np.load(f, allow_pickle=False)
    else:
        with np.load(path, allow_pickle=False) as data:
            shot = {k: data[k] for k in data.files}
    for k in ("prompt_embeds", "negative_prompt_embeds"):
        if k in shot:
            shot[k] = torch.from_numpy(shot[k])
    missing = [k for k in ("character_rgb", "tri_mask", "prompt_embeds") if k not in shot]
    if missing:
        raise DiffusionInputError(f"{path}: shot file lacks {', '.join(missing)}")
    if "reference_image" in shot:  # one reference image and its role (environment, prop, character)
        image, role = shot.pop("reference_image"), str(shot.pop("reference_role", "environment"))
        shot["reference_images"] = [(image, role)]
    return shot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", required=True, help="CinecompPipeline directory")
    parser.add_argument(
        "--shot",
        required=True,
        help=".npz: character_rgb, tri_mask, [character_depth], "
        "[environment_rgb], prompt_embeds, [negative_prompt_embeds]",
    )
    parser.add_argument(
        "--out", required=True, help="rank 0 writes frames + depth here (.npz), or a window " "directory with --window"
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zero-stage", type=int, default=3, choices=(0, 3))
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="transformer precision; auto = bfloat16 on GPUs, float32 on CPU ranks")
    parser.add_argument("--no-sequence-parallel", action="store_true")
    parser.add_argument("--window", type=int, default=0, help="temporal window (4n+1) for long shots; 0 = one pass")
    parser.add_argument("--overlap", type=int, default=17, help="frames (4m+1) a window shares with the one before")
    parser.add_argument("--independent-windows", action="store_true",
                        help="with --window: no context from the previous window (each window sampled afresh)")
    parser.add_argument("--sequential-cfg", action="store_true",
                        help="conditional and unconditional passes one after the other, not as one batch")
    parser.add_argument("--persistence-threshold", type=int, default=None,
                        help="ZeRO-3: parameters with fewer elements stay whole on every rank "
                        "(default: every vector of a block, no matrix; 0 partitions everything)")
    parser.add_argument("--no-blend", action="store_true",
                        help="with --window: write only the window files and windows.json (read them with "
                        "cinecomp.diffusion.windows.iter_blended), never the whole shot in memory")
    parser.add_argument("--output", default="frames", choices=("frames", "layers"),
                        help="layers: also write the VAE's reconstruction of the plain over comp "
                        "(cinecomp.diffusion.light_ratio divides the frames by it)")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the launcher
    args = parser.parse_args(argv)

    torch.set_grad_enabled(False)
    rank, world = init_distributed()
    from . import pipeline as _pipeline  # noqa: F401  (diffusers' modules: part of the runtime, not the model)

    rss_before_model = _rss_now_mb()  # the runtime (torch, DeepSpeed, diffusers, gloo) before any model is built
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    ds_config = None
    if args.persistence_threshold is not None and args.zero_stage == 3:
        from ._io import read_config

        from .checks import resolve_pipeline

        root = resolve_pipeline(args.pipeline)[0] / "transformer"
        resolved = dtype or (torch.float32 if is_cpu_accelerator() else torch.bfloat16)
        ds_config = zero3_config(resolved, block=block_numel(read_config(root, "cinecomp transformer")),
                                 persist=args.persistence_threshold)
    pipe = build_pipeline(args.pipeline, args.zero_stage, not args.no_sequence_parallel, dtype, ds_config)
    shot = _load_shot(Path(args.shot))
    call = dict(shot, num_inference_steps=args.steps, guidance_scale=args.guidance, seed=args.seed,
                batch_guidance=not args.sequential_cfg, reconstruct_over=args.output == "layers")
    gathers = _count_gathers()
    out = Path(args.out)
    if args.window:
        from .windows import render_windows

        def report(win, reused):
            if rank == 0:
                state = "reused (checkpoint)" if reused else "rendered"
                print(f"window {win.index}: frames {win.start}-{win.stop - 1} {state}", flush=True)

        from .checks import engine_version, model_fingerprint

        # what a window's pixels depend on besides its inputs: the weights, their precision, this code
        key_extra = f"{model_fingerprint(args.pipeline)}:{pipe.transformer.dtype}:{engine_version()}"
        t0 = time.perf_counter()
        blended = render_windows(pipe, call, out, args.window, args.overlap, report, write=rank == 0,
                                 key_extra=key_extra, blend=not args.no_blend,
                                 context=not args.independent_windows, agree=_from_rank0 if world > 1 else None)
        render_seconds = time.perf_counter() - t0
        frames, depth = blended if blended is not None else (None, None)
        out_file = out / ("run.json" if args.no_blend else "shot.npz")
    else:
        t0 = time.perf_counter()
        result = pipe(**call)
        render_seconds = time.perf_counter() - t0
        frames, depth = result.frames, result.depth
        out_file = out
    import deepspeed.comm as dist
    from deepspeed.accelerator import get_accelerator

    # every rank's peak RSS (MB; Linux ru_maxrss is in KiB), gathered for rank 0's meta
    rss = torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, rss_before_model],
                       dtype=torch.float64,
                       device=get_accelerator().current_device_name())
    rss_parts = [torch.zeros_like(rss) for _ in range(world)]
    dist.all_gather(rss_parts, rss)
    if rank == 0:
        from ..atomic import atomic_path

        sp = pipe._sequence_parallel
        meta = {
            "world_size": world,
            "zero_stage": args.zero_stage,
            "local_param_numel": local_parameter_numel(pipe.transformer),
            "total_param_numel": total_parameter_numel(pipe.transformer),
            "tokens_per_rank": sp.tokens_per_rank if sp else None,
            "device": str(rank_device()),
            "misplaced": misplaced(pipe.transformer, rank_device()),
            "placement": tensor_placement(pipe.transformer),
            "param_gathers": gathers["calls"],
            "gathered_numel": gathers["numel"],
            "render_seconds": render_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "peak_rss_mb_per_rank": [float(t[0]) for t in rss_parts],
            # peak minus the runtime: what the model's parameters, activations and buffers added
            "model_peak_mb_per_rank": [float(t[0] - t[1]) for t in rss_parts],
        }
        with atomic_path(out_file) as tmp:
            if frames is None:  # --no-blend: the frames stay in the window files
                Path(tmp).write_text(json.dumps(meta, indent=1))
            else:
                with open(tmp, "wb") as fh:
                    np.savez(fh, frames=frames, depth=depth, meta=np.array(json.dumps(meta)))
    dist.barrier()
    return 0


def _from_rank0(todo):
    """Rank 0's list (of windows to render), broadcast to every rank."""
    import deepspeed.comm as dist

    box = [todo]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _count_gathers() -> dict:
    """Count this rank's ZeRO-3 parameter all-gathers (calls, and elements gathered) from now on."""
    from deepspeed.runtime.zero import partition_parameters as pp

    counts = {"calls": 0, "numel": 0}
    original = pp._dist_allgather_fn

    def counted(input_tensor, output_tensor, group=None):
        counts["calls"] += 1
        counts["numel"] += int(output_tensor.numel())
        return original(input_tensor, output_tensor, group=group)

    pp._dist_allgather_fn = counted
    return counts


def _rss_now_mb() -> float:
    """Resident memory of this process now (Linux /proc; the peak is ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(num_ranks: int, script_args: list[str], master_port: int | None = None,
                   module: str = "cinecomp.diffusion.distributed") -> list[str]:
    """The DeepSpeed launcher command running ``module`` (default: :func:`main`) on ``num_ranks`` local ranks."""
    exe = shutil.which("deepspeed", path=str(Path(sys.executable).parent)) or shutil.which("deepspeed")
    if exe is None:
        raise RuntimeError("the deepspeed launcher is not installed in this environment")
    return [
        exe,
        "--num_gpus",
        str(num_ranks),
        "--master_port",
        str(master_port or free_port()),
        "--module",
        module,
        *script_args,
    ]


def launch_env(num_ranks: int, cpu: bool, threads_per_rank: int = 1) -> dict:
    """Environment for the launcher; on CPU: DeepSpeed's CPU accelerator with ``num_ranks`` devices."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    if cpu:
        env.update(DS_ACCELERATOR="cpu", LOCAL_SIZE=str(num_ranks), OMP_NUM_THREADS=str(threads_per_rank))
    # Not set here, but honoured from the environment: MALLOC_MMAP_THRESHOLD_=1048576 makes glibc hand
    # ZeRO-3's freed gather buffers back on CPU ranks (less memory, slower: see bench/diffusion.py)
    return env


if __name__ == "__main__":
    sys.exit(main())
