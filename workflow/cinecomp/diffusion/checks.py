"""Cheap checks of the diffusion model directories, run when the workflow is planned.

They read only JSON (no torch import), so a wrong path or an incompatible checkpoint stops the run
before any job starts, with a message naming the directory and the fix.
"""

from __future__ import annotations

import hashlib
import math
import json
from pathlib import Path

from ._io import LORA_WEIGHT_NAME, SCHEDULERS, VAE_CLASSES
from .errors import CheckpointError, DiffusionInputError

TINY_HINT = "`cinecomp models tiny --out DIR` writes a tiny random set for plumbing tests"
WAN_HINT = "`cinecomp models from-wan --wan WAN21_DIFFUSERS_DIR --out DIR` builds one from Wan 2.1"


def _json(path: Path, what: str, problems: list[str]) -> dict | None:
    if not path.is_file():
        problems.append(f"{path}: {what} is missing")
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"{path}: {what} is not valid JSON ({exc})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: {what} is not a JSON object")
        return None
    return data


def _has_weights(model_dir: Path) -> bool:
    from ._io import WEIGHT_NAMES

    return any((model_dir / n).is_file() for n in WEIGHT_NAMES)


BASE_REF = "base_model.json"  # in a fine-tune's adapter directory: the base pipeline it loads onto


def resolve_pipeline(pipeline_dir: str | Path) -> tuple[Path, Path | None]:
    """``(pipeline directory, adapter directory or None)``: a CinecompPipeline directory is itself; an
    adapter directory (a LoRA fine-tune with ``base_model.json``, written by training's periodic eval and
    final save) names its base, which must exist, be a pipeline and have the transformer config the
    adapter was trained on -- else a :class:`CheckpointError` naming base_model.json and the fix."""
    root = Path(pipeline_dir)
    ref_file = root / BASE_REF
    if not ref_file.is_file():
        return root, None
    from ._io import config_digest

    fix = (f"set \"base\" in {ref_file} to the pipeline directory the adapter was trained on (the training "
           "config's model.pipeline)")
    try:
        ref = json.loads(ref_file.read_text())
        base = Path(str(ref["base"])).expanduser()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(ref_file, f"is not a base reference ({type(exc).__name__}: {exc})", fix) from None
    base = base if base.is_absolute() else root / base
    if not (base / "model_index.json").is_file():
        what = "does not exist" if not base.exists() else "is not a CinecompPipeline directory (no model_index.json)"
        raise CheckpointError(ref_file, f"base model directory {base} {what}", fix)
    if (base / BASE_REF).is_file():
        raise CheckpointError(ref_file, f"base {base} is itself an adapter directory", fix)
    problems: list[str] = []
    tcfg = _json(base / "transformer" / "config.json", "base transformer config", problems)
    if tcfg is None:
        raise CheckpointError(ref_file, problems[0], fix)
    if config_digest(tcfg) != ref.get("transformer_config"):
        raise CheckpointError(ref_file, f"base {base}: its transformer config (hash {config_digest(tcfg)}) is not "
                              f"the one the adapter was trained on (hash {ref.get('transformer_config')})", fix)
    if not (root / str(ref.get("adapter", LORA_WEIGHT_NAME))).is_file():
        raise CheckpointError(root / str(ref.get("adapter", LORA_WEIGHT_NAME)), "the adapter weights are missing",
                              "copy the fine-tune directory completely")
    return base, root


def check_pipeline_dir(pipeline_dir: str | Path, ranks: int = 1) -> list[str]:
    """Problems that stop ``pipeline_dir`` (a pipeline, or an adapter directory on one:
    :func:`resolve_pipeline`) from running as a CinecompPipeline on ``ranks`` ranks."""
    try:
        root, _ = resolve_pipeline(pipeline_dir)
    except CheckpointError as exc:
        return [str(exc)]
    if not root.is_dir():
        return [f"{root}: diffusion pipeline directory does not exist (fix: set diffusion.pipeline in config.yaml "
                f"to a local CinecompPipeline directory; {TINY_HINT}; {WAN_HINT})"]
    problems: list[str] = []
    index = _json(root / "model_index.json", "model_index.json (a diffusers pipeline directory)", problems)
    if index is not None and index.get("_class_name") != "CinecompPipeline":
        problems.append(f"{root / 'model_index.json'}: is a {index.get('_class_name')!r}, not a CinecompPipeline "
                        f"(fix: {WAN_HINT})")
    tcfg = _json(root / "transformer" / "config.json", "transformer config", problems)
    vcfg = _json(root / "vae" / "config.json", "VAE config", problems)
    scfg = _json(root / "scheduler" / "scheduler_config.json", "scheduler config", problems)
    if scfg is not None and scfg.get("_class_name") not in SCHEDULERS:
        problems.append(f"{root / 'scheduler' / 'scheduler_config.json'}: scheduler {scfg.get('_class_name')!r} is not "
                        f"one cinecomp samples with (fix: use one of {', '.join(SCHEDULERS)})")
    if vcfg is not None and vcfg.get("_class_name") not in VAE_CLASSES:
        problems.append(f"{root / 'vae' / 'config.json'}: VAE {vcfg.get('_class_name')!r} is not one cinecomp runs "
                        f"with (fix: use one of {', '.join(VAE_CLASSES)})")
    for sub in ("transformer", "vae"):
        if (root / sub).is_dir() and not _has_weights(root / sub):
            problems.append(f"{root / sub}: no weights (diffusion_pytorch_model.safetensors) (fix: copy the "
                            "checkpoint completely, or re-save it with save_pretrained)")
    if tcfg is not None:
        if tcfg.get("_class_name") != "CinecompTransformer3DModel":
            problems.append(f"{root / 'transformer'}: is a {tcfg.get('_class_name')!r}, not a "
                            f"CinecompTransformer3DModel (a plain Wan transformer has too few input channels; "
                            f"fix: {WAN_HINT})")
        else:
            heads = int(tcfg.get("num_attention_heads", 0))
            if ranks > 1 and heads % ranks:
                problems.append(f"{root / 'transformer'}: {heads} attention heads cannot be split over {ranks} "
                                f"ranks (fix: set diffusion.ranks to a divisor of {heads})")
            if vcfg is not None:
                z = vcfg.get("z_dim")
                widths = (tcfg.get("rgb_channels"), tcfg.get("depth_channels"), tcfg.get("cond_channels"))
                if widths != (z, z, None if z is None else 3 * z):
                    problems.append(f"{root / 'transformer'}: latent widths rgb/depth/cond {widths} do not fit "
                                    f"the VAE's z_dim={z} (expected z, z, 3z): transformer and VAE are from "
                                    "different checkpoints")
            if tcfg.get("num_masks", 3) != 3:
                problems.append(f"{root / 'transformer'}: expects {tcfg.get('num_masks')} masks; cinecomp "
                                "feeds the tri-mask (3)")
    return problems


def resolve_text_encoder_dirs(text_encoder_dir, tokenizer_dir=None) -> tuple[Path, Path]:
    """(text_encoder, tokenizer) directories: a Wan pipeline root, or an encoder dir with a tokenizer beside/in it."""
    te = Path(text_encoder_dir).expanduser()
    if not te.is_dir():
        raise CheckpointError(te, "text encoder directory does not exist", "check the path")
    if (te / "model_index.json").is_file() and (te / "text_encoder").is_dir():
        te, tok_default = te / "text_encoder", te / "tokenizer"
    else:
        tok_default = te.parent / "tokenizer" if (te.parent / "tokenizer").is_dir() else te
    tok = Path(tokenizer_dir).expanduser() if tokenizer_dir is not None else tok_default
    if not (te / "config.json").is_file():
        raise CheckpointError(te, "text encoder has no config.json", "give a transformers UMT5EncoderModel directory")
    if not any((tok / n).is_file() for n in ("tokenizer.json", "spiece.model", "tokenizer_config.json")):
        raise CheckpointError(
            tok,
            "no tokenizer found (tokenizer.json / spiece.model)",
            "set diffusion.tokenizer (tokenizer_dir) or put tokenizer/ beside the encoder",
        )
    return te, tok



def check_text_encoder_dir(text_encoder_dir: str | Path, tokenizer_dir: str | Path | None = None,
                           text_dim: int | None = None) -> list[str]:
    """Problems with the UMT5 text encoder the prompt rule loads."""
    te = Path(text_encoder_dir)
    if not te.is_dir():
        return [f"{te}: text encoder directory does not exist (fix: set diffusion.text_encoder in config.yaml to "
                f"a local UMT5 encoder directory, e.g. a Wan 2.1 pipeline's text_encoder/; {TINY_HINT})"]
    try:
        te, _ = resolve_text_encoder_dirs(te, tokenizer_dir)
    except CheckpointError as exc:
        return [str(exc)]
    problems: list[str] = []
    cfg = _json(te / "config.json", "text encoder config", problems)
    if cfg is not None and text_dim is not None and cfg.get("d_model") not in (None, text_dim):
        problems.append(f"{te}: encoder width d_model={cfg.get('d_model')} but the transformer expects "
                        f"text_dim={text_dim} (fix: use the text encoder of the same model family)")
    return problems


def window_problems(window: int, overlap: int, section: str) -> list[str]:
    """The window (4n+1) and overlap (4m+1, at most half) of a config ``section``, as messages."""
    if (window - 1) % 4:
        return [f"{section}.window={window} must be 4n+1 (e.g. 81, 41, 21)"]
    from .windows import check_overlap

    try:
        check_overlap(window, overlap)
    except DiffusionInputError as exc:
        return [f"{section}.{exc}"]
    return []


def check_diffusion_config(d: dict) -> list[str]:
    """Every problem with config.yaml's ``diffusion`` section: settings, then the model directories."""
    from ..colour import check_colourspace

    problems = [f"diffusion.{k}={v!r} must be a finite number" for k, v in d.items()
                if isinstance(v, float) and not math.isfinite(v)]
    problems += window_problems(d["window"], d["overlap"], "diffusion")
    cs_problem = check_colourspace(d["model_colourspace"])
    if cs_problem:
        problems.append(f"diffusion.model_colourspace: {cs_problem}")
    problems += check_pipeline_dir(d["pipeline"], d["ranks"])
    problems += check_text_encoder_dir(d["text_encoder"], d.get("tokenizer") or None,
                                       transformer_text_dim(d["pipeline"]))
    return problems


def takes_harmonize(pipeline_dir: str | Path) -> bool:
    """Whether the pipeline's transformer starts from harmonize (config ``harmonize_base``: it then takes
    harmonize's comp of the shot as an input). Model directories saved before the field: False."""
    try:
        root, _ = resolve_pipeline(pipeline_dir)
        return bool(json.loads((root / "transformer" / "config.json").read_text()).get("harmonize_base"))
    except (OSError, ValueError, AttributeError, CheckpointError):
        return False


def transformer_text_dim(pipeline_dir: str | Path) -> int | None:
    try:
        root, _ = resolve_pipeline(pipeline_dir)
        return int(json.loads((root / "transformer" / "config.json").read_text())["text_dim"])
    except (OSError, ValueError, KeyError, TypeError, CheckpointError):
        return None


def model_fingerprint(model_dir: str | Path) -> str:
    """Identity of a model directory tree: every JSON file's content, every other file's name, size and
    modification time (weights of one architecture all have the same size; reading them to hash would
    cost minutes for a 14B model).

    Part of the rules' params and of every window's key, so replacing the weights in place reruns the
    shots that use them and never reuses their old windows.  A copy keeps the identity only if it keeps
    the times (``cp -p``, ``shutil.copytree``); otherwise the shots rerun, which is safe.  An adapter
    directory's identity includes its base's.
    """
    root = Path(model_dir)
    h = hashlib.sha256()
    if (root / BASE_REF).is_file():
        try:
            h.update(model_fingerprint(resolve_pipeline(root)[0]).encode())
        except CheckpointError:
            pass  # the checks report it
    for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = f.relative_to(root).as_posix()
        h.update(rel.encode())
        st = f.stat()
        h.update(f.read_bytes() if f.suffix == ".json" else f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


ENGINE_MODULES = ("pipeline.py", "transformer.py", "conditioning.py", "windows.py", "distributed.py", "_io.py",
                  "autoencoder.py")


def engine_version() -> str:
    """The version of the code that turns a window's inputs into pixels: a hash of the engine's source
    files.  Part of every window's key, so a window rendered by other code (a fix, another sampling
    convention) is rendered again rather than blended with new ones."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in ENGINE_MODULES:
        h.update(name.encode())
        h.update((here / name).read_bytes())
    return h.hexdigest()[:12]
