"""Learned perception backends: their config section, device choice, and the checks run before any job.

Three backends of existing rules load model files from local paths (config.yaml ``perception``):

  masks  ``sam2``       SAM 2 video predictor: a model config (YAML) + a checkpoint (sam2_masks.py)
  key    ``matanyone``  MatAnyone video matting: a checkpoint, the network built from the package's
                        own config (matanyone_key.py; optional extra, non-commercial licence)
  depth  ``model``      a transformers depth-estimation directory, e.g. Depth Anything V2 (depth_model.py)

Nothing is downloaded. The checks here open every file the jobs will open and compare the
checkpoint's tensors with the network its config builds, so a missing path, a file that is not a
checkpoint of that model or a wrong config stops the run at planning time, naming the path and the
fix (the caller adds the shot and the backend). Checkpoints load with safetensors or
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

# stage -> learned backend -> config key holding its settings
LEARNED = {"masks": {"sam2": "sam2"}, "key": {"matanyone": "matanyone"}, "depth": {"model": "depth_model"}}
SAM2_INSTALL = "pip install --no-build-isolation sam2==1.1.0 with SAM2_BUILD_CUDA=0 (`make venv` does)"
MATANYONE_INSTALL = ("pip install --no-deps matanyone2-runtime==0.2.0 (`make venv` does), or install MatAnyone "
                     "from its repository (package `matanyone`)")
SAM2_CONFIGS = "the sam2 package ships configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml"


def resolve_device(name: str = "auto"):
    """torch.device: CUDA when present (``auto``), else CPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def fingerprint(*paths) -> str:
    """Identity of model files (name, size, modification time; a directory's files): part of the
    rules' params, so replacing a checkpoint in place reruns the shots that use it."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            if f.is_file():
                st = f.stat()
                h.update(f"{f.as_posix()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def load_state_dict(path) -> dict:
    """Tensors of a checkpoint: .safetensors, or a torch file read with weights_only=True (a
    {"model": state_dict} wrapper is unwrapped). ValueError saying what the file is not."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise ValueError(f"{path}: not a safetensors file ({exc})") from None
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # pickle, zip or weights_only refusal
        raise ValueError(f"{path}: not a checkpoint torch.load(weights_only=True) can read "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if isinstance(sd, dict) and isinstance(sd.get("model"), dict):
        sd = sd["model"]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: holds no state dict of tensors")
    return sd


def compare_state(model, sd: dict, path, what: str, *, allow_unexpected: bool = False,
                  any_shape: tuple = (), optional: tuple = ()) -> list[str]:
    """Problems when the checkpoint ``sd`` does not fit ``model`` (missing/unexpected/mis-shaped);
    ``any_shape``: tensors the loader converts itself."""
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in sd.items()}
    missing = sorted(k for k in own.keys() - got.keys() if not k.startswith(optional or ("\0",)))
    unexpected = [] if allow_unexpected else sorted(got.keys() - own.keys())
    shapes = [k for k in own.keys() & got.keys() if own[k] != got[k] and k not in any_shape]
    if not (missing or unexpected or shapes):
        return []
    parts = []
    if missing:
        parts.append(f"{len(missing)} of the model's tensors missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unknown tensors (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        k = sorted(shapes)[0]
        parts.append(f"{len(shapes)} tensors of another shape (e.g. {k}: {got[k]} in the file, {own[k]} in the model)")
    return [f"{path}: not a checkpoint of the {what} its config builds: " + "; ".join(parts)]


# ------------------------------------------------------------------------------------------------
# SAM 2
# ------------------------------------------------------------------------------------------------


def sam2_config_file(config: str) -> Path:
    """A local YAML path, else a config name inside the installed sam2 package."""
    p = Path(config)
    if p.is_file():
        return p
    try:
        import sam2

        inside = Path(sam2.__path__[0]) / config
        if inside.is_file():
            return inside
    except ImportError:
        pass
    return p


@functools.cache
def _check_sam2(config: str, checkpoint: str, stamp: str) -> tuple[str, ...]:
    try:
        import sam2  # noqa: F401
        from hydra.utils import instantiate
        from omegaconf import OmegaConf
    except ImportError as exc:
        return (f"the sam2 package is not installed ({exc}) (fix: {SAM2_INSTALL})",)
    cfg_file, ckpt = sam2_config_file(config), Path(checkpoint)
    problems = []
    if not cfg_file.is_file():
        problems.append(f"{config}: SAM 2 model config does not exist (fix: set perception.sam2.config to a local "
                        f"YAML file; {SAM2_CONFIGS})")
    if not ckpt.is_file():
        problems.append(f"{ckpt}: SAM 2 checkpoint does not exist (fix: set perception.sam2.checkpoint to a local "
                        ".pt file, e.g. sam2.1_hiera_tiny.pt from the SAM 2 release)")
    if problems:
        return tuple(problems)
    try:
        cfg = OmegaConf.load(cfg_file)
        target = str(cfg.model._target_)
    except Exception as exc:
        return (f"{cfg_file}: not a SAM 2 model config ({type(exc).__name__}: {exc}) (fix: {SAM2_CONFIGS})",)
    if not target.startswith("sam2."):
        return (f"{cfg_file}: model._target_ is {target!r}, not a SAM 2 model (fix: {SAM2_CONFIGS})",)
    try:
        sd = load_state_dict(ckpt)
    except ValueError as exc:
        return (f"{exc} (fix: a SAM 2 checkpoint, {{'model': state_dict}} saved with torch.save)",)
    try:
        import torch

        with torch.random.fork_rng():
            OmegaConf.resolve(cfg)
            model = instantiate(cfg.model, _recursive_=True)
    except Exception as exc:
        return (f"{cfg_file}: the config does not build a SAM 2 model ({type(exc).__name__}: {exc}) "
                f"(fix: {SAM2_CONFIGS})",)
    return tuple(compare_state(model, sd, ckpt, f"SAM 2 model {cfg_file.name}"))


def check_sam2(settings: dict) -> list[str]:
    c, k = settings.get("config") or "", settings.get("checkpoint") or ""
    return list(_check_sam2(c, k, fingerprint(sam2_config_file(c), k)))


# ------------------------------------------------------------------------------------------------
# MatAnyone
# ------------------------------------------------------------------------------------------------


def matanyone_package():
    """(module name, network class) of the installed MatAnyone: ``matanyone2`` (matanyone2-runtime)
    or ``matanyone`` (the repository's package). ImportError with the install line."""
    import importlib

    for name, module, cls in (("matanyone2", "matanyone2.model.matanyone2", "MatAnyone2"),
                              ("matanyone", "matanyone.model.matanyone", "MatAnyone")):
        try:
            return name, getattr(importlib.import_module(module), cls)
        except ImportError:
            continue
    raise ImportError(f"MatAnyone is not installed (fix: {MATANYONE_INSTALL})")


def matanyone_config(package: str):
    """The package's own eval config (its model: base.yaml), with the ResNet ImageNet weights not
    fetched (the checkpoint holds them)."""
    import importlib

    from omegaconf import OmegaConf, open_dict

    root = Path(importlib.import_module(package).__path__[0]) / "config"
    cfg = OmegaConf.load(root / "eval_matanyone_config.yaml")
    cfg.pop("defaults", None)
    cfg.pop("hydra", None)
    with open_dict(cfg):
        cfg.model = OmegaConf.load(root / "model" / "base.yaml")
        cfg.model.pretrained_resnet = False
    return cfg


def build_matanyone(checkpoint=None):
    """(package, network, cfg): the network from the package's config; weights from ``checkpoint``."""
    package, cls = matanyone_package()
    cfg = matanyone_config(package)
    net = cls(cfg, single_object=True)
    if checkpoint is not None:
        net.load_weights(load_state_dict(checkpoint))
    return package, net.eval(), cfg


@functools.cache
def _check_matanyone(checkpoint: str, stamp: str) -> tuple[str, ...]:
    try:
        package, cls = matanyone_package()
    except ImportError as exc:
        return (str(exc),)
    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        return (f"{ckpt}: MatAnyone checkpoint does not exist (fix: set perception.matanyone.checkpoint to a local "
                ".pth or .safetensors file of the MatAnyone release)",)
    try:
        sd = load_state_dict(ckpt)
    except ValueError as exc:
        return (f"{exc} (fix: a MatAnyone checkpoint, e.g. matanyone.pth)",)
    try:
        import torch

        with torch.random.fork_rng():
            net = cls(matanyone_config(package), single_object=True)
    except Exception as exc:
        return (f"the {package} package's config does not build its network ({type(exc).__name__}: {exc}) "
                f"(fix: reinstall it: {MATANYONE_INSTALL})",)
    # the package's loader takes extra tensors and converts the mask encoder's input channels itself;
    # the auxiliary (training-loss) heads are not used for inference
    return tuple(compare_state(net, sd, ckpt, f"{package} network", allow_unexpected=True,
                               optional=("aux_computer.",),
                               any_shape=("mask_encoder.conv1.weight", "pixel_fuser.sensory_compress.weight")))


def check_matanyone(settings: dict) -> list[str]:
    k = settings.get("checkpoint") or ""
    return list(_check_matanyone(k, fingerprint(k)))


# ------------------------------------------------------------------------------------------------
# Depth model (transformers)
# ------------------------------------------------------------------------------------------------

DEPTH_FIX = ("set perception.depth_model.path to a local transformers depth-estimation directory (config.json + "
             "model.safetensors), e.g. Depth Anything V2 Small saved with save_pretrained")


@functools.cache
def _check_depth_model(path: str, stamp: str) -> tuple[str, ...]:
    root = Path(path)
    if not root.is_dir():
        return (f"{root}: depth model directory does not exist (fix: {DEPTH_FIX})",)
    if not (root / "config.json").is_file():
        return (f"{root}: no config.json, not a transformers model directory (fix: {DEPTH_FIX})",)
    weights = sorted(root.glob("*.safetensors")) or sorted(root.glob("pytorch_model*.bin"))
    if not weights:
        return (f"{root}: no weights (model.safetensors) (fix: {DEPTH_FIX})",)
    try:
        import torch
        from transformers import AutoConfig, AutoModelForDepthEstimation

        cfg = AutoConfig.from_pretrained(root, local_files_only=True)
    except Exception as exc:
        return (f"{root / 'config.json'}: not a transformers model config ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}) (fix: {DEPTH_FIX})",)
    try:
        AutoModelForDepthEstimation._model_mapping[type(cfg)]
    except KeyError:
        return (f"{root / 'config.json'}: a {type(cfg).__name__} ({cfg.model_type}) is not a depth-estimation "
                f"model (fix: {DEPTH_FIX})",)
    try:  # transformers' own loader, onto the meta device: the tensors are matched, not read
        _, info = AutoModelForDepthEstimation.from_pretrained(root, local_files_only=True, device_map="meta",
                                                              output_loading_info=True)
    except Exception as exc:
        return (f"{root}: the weights do not load into its {type(cfg).__name__} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300]}) (fix: {DEPTH_FIX})",)
    bad = {k: sorted(map(str, info.get(k) or [])) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(bad.values()):
        return (f"{root}: not a checkpoint of the {cfg.model_type} model its config describes: "
                + "; ".join(f"{len(v)} {k.replace('_', ' ')} (e.g. {', '.join(v[:3])})" for k, v in bad.items() if v)
                + f" (fix: {DEPTH_FIX})",)
    del torch
    return ()


def check_depth_model(settings: dict) -> list[str]:
    p = settings.get("path") or ""
    return list(_check_depth_model(p, fingerprint(p)))


CHECKS = {"sam2": check_sam2, "matanyone": check_matanyone, "depth_model": check_depth_model}
PATHS = {"sam2": ("config", "checkpoint"), "matanyone": ("checkpoint",), "depth_model": ("path",)}


def check_backend(stage: str, backend: str, perception: dict) -> list[str]:
    """Problems of one learned backend's files ([] for a classical backend)."""
    key = LEARNED.get(stage, {}).get(backend)
    if key is None:
        return []
    return CHECKS[key](perception.get(key) or {})


def model_id(stage: str, backend: str, perception: dict) -> str | None:
    """Fingerprint of a learned backend's files (None for a classical backend)."""
    key = LEARNED.get(stage, {}).get(backend)
    if key is None:
        return None
    s = perception.get(key) or {}
    paths = [sam2_config_file(s[k]) if (key, k) == ("sam2", "config") else s[k] for k in PATHS[key] if s.get(k)]
    return fingerprint(*paths)


def _first_mask_sam2(row) -> bool:
    """Does the shot's matanyone key take its first mask from SAM 2 (key_params)?"""
    import json

    try:
        params = json.loads(row.get("key_params") or "{}")
    except ValueError:
        return False
    return isinstance(params, dict) and params.get("matanyone_first_mask") == "sam2"


def check_shots(rows: dict, backends: dict, perception: dict) -> list[str]:
    """Every problem of the sheet's learned perception backends, before any job: each names the
    shot(s), the backend and the path. ``rows``: shot -> sheet row; ``backends``: config defaults."""
    from .masks import POINTS_NEED_SAM2

    def backend(row, stage):
        return row.get(f"{stage}_backend") or backends.get(stage)

    used, problems = {}, []
    for s, row in rows.items():
        for stage, learned in LEARNED.items():
            b = backend(row, stage)
            if b in learned:
                used.setdefault((stage, b), []).append(s)
        if backend(row, "masks") != "sam2" and ":points:" in (row.get("prop_hint") or ""):
            problems.append(f"shot {s}: masks backend {backend(row, 'masks')}: {POINTS_NEED_SAM2}")
        if backend(row, "depth") == "model" and not row.get("environment"):
            problems.append(f"shot {s}: depth backend model: it predicts the environment plate's depth, and the "
                            "shot has none (fix: give an environment, or use depth_backend ground)")
        if backend(row, "key") == "matanyone" and _first_mask_sam2(row):
            used.setdefault(("masks", "sam2"), []).append(f"{s} (matanyone_first_mask)")
    for (stage, b), shots in used.items():
        problems += [f"shot(s) {', '.join(shots)}: {stage} backend {b}: {p}"
                     for p in check_backend(stage, b, perception or {})]
    return problems


def shot_settings(row, stage: str, backend: str, perception: dict) -> dict | None:
    """The job's settings of a learned backend (perception section + device + the files' identity, so a
    replaced checkpoint reruns the shot); None for a classical backend."""
    key = LEARNED[stage].get(backend)
    if key is None:
        return None
    out = dict(perception[key], device=perception["device"], model_id=model_id(stage, backend, perception))
    if key == "matanyone" and _first_mask_sam2(row):
        out["sam2"] = dict(perception["sam2"], device=perception["device"])
    return out

