"""One function per workflow rule: (inputs, outputs, settings, log) -> None.

Called by the thin scripts in scripts/ through scripting.run; settings are the rule's params.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from . import assemble as assemble_mod
from . import exrio
from .composite import over
from .frames import frame_path
from .scripting import Job

_FRAME = re.compile(r"^(?P<shot>.+)_(?P<element>[A-Za-z0-9]+)_v(?P<version>\d{3})\.(?P<frame>\d+)\.exr$")


def element_frames(directory) -> list[tuple[int, Path]]:
    """(frame, path) of every project frame file in ``directory``, sorted by frame."""
    out = []
    for p in Path(directory).iterdir():
        m = _FRAME.match(p.name)
        if m:
            out.append((int(m.group("frame")), p))
    if not out:
        raise FileNotFoundError(f"{directory}: no frames (fix: rerun the rule that makes it)")
    return sorted(out)


def _shot(settings) -> tuple[str, int]:
    a = settings["attrs"]
    return a["shot"], int(a["version"])


def ingest(inputs, outputs, settings, log):
    from .ingest import ingest as run_ingest

    shot, version = _shot(settings)
    out_dir = Path(outputs[0])
    element = out_dir.name  # "plate" or "env"
    out_dir.mkdir(parents=True, exist_ok=True)
    report = run_ingest(
        settings["source"], shot=shot, element=element, version=version, first=settings["first"],
        last=settings["last"], colourspace=settings["colourspace"], out_dir=out_dir,
        resolution=tuple(settings["resolution"]), part=settings.get("part"), view=settings.get("view"),
        movie_start=settings["movie_start"], fps=settings["attrs"]["framesPerSecond"],
        kind="plate" if element == "plate" else "environment", report_path=out_dir / "ingest_report.json",
    )
    repaired = sum(f.get("repaired", 0) for f in report.get("frames", []) if isinstance(f, dict))
    log.info("ingested %s %s frames %s-%s (%d non-finite pixels repaired)", shot, element,
             settings["first"], settings["last"], repaired)


def key(inputs, outputs, settings, log):
    from .keying import key_shot

    shot, version = _shot(settings)
    if settings["backend"] != "chroma":
        raise ValueError(f"shot {shot}: key backend {settings['backend']!r} is not available (fix: use 'chroma')")
    plates = element_frames(inputs[0])
    out_dir = Path(outputs[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    out_files = [frame_path(out_dir, shot, "key", version, f) for f, _ in plates]
    report = key_shot([p for _, p in plates], out_files, settings["params"], attrs=settings["attrs"])
    log.info("keyed %d frames: %s", len(out_files), {k: v for k, v in report.items() if k != "frames"})


def prompt_embeds(inputs, outputs, settings, log):
    from .diffusion.prompts import encode_prompts

    prompts = [settings["prompt"]] + ([settings["negative_prompt"]] if settings["negative_prompt"] else [])
    encode_prompts(settings["text_encoder"], prompts, outputs[0], tokenizer_dir=settings["tokenizer"] or None,
                   max_sequence_length=settings["max_sequence_length"])
    log.info("prompt embeddings of %s cached in %s", prompts, outputs[0])


def composite(inputs, outputs, settings, log, job=None):
    shot, version = _shot(settings)
    if settings["backend"] == "diffusion":
        from .diffusion.shot import composite_shot

        job = job or Job()
        envs = element_frames(inputs.env) if "env" in inputs.keys() else None
        composite_shot(element_frames(inputs.key), envs, inputs.prompts, outputs[0], settings["work_dir"], settings,
                       log, ranks=max(1, int(job.resources.get("gpu") or 1)), threads=job.threads)
        return
    if settings["backend"] != "over":
        raise ValueError(f"shot {shot}: composite backend {settings['backend']!r} is not available "
                         "(fix: use 'over' or 'diffusion')")
    keys = element_frames(inputs.key)
    envs = dict(element_frames(inputs.env))
    out_dir = Path(outputs[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    for frame, key_file in keys:
        k = exrio.read_rgba(key_file)
        if frame not in envs:
            raise FileNotFoundError(f"shot {shot}: environment frame {frame} missing in {inputs.env}")
        env = exrio.read_rgba(envs[frame])
        rgb = over(k[..., :3], k[..., 3], env[..., :3])
        rgba = np.concatenate([rgb, np.ones_like(rgb[..., :1])], axis=-1)
        exrio.write_rgba(frame_path(out_dir, shot, settings["backend"], version, frame), rgba,
                         attrs={**settings["attrs"], "frame": frame, "backend": settings["backend"]})
    log.info("composited %d frames with %s", len(keys), settings["backend"])


def assemble(inputs, outputs, settings, log):
    shot, version = _shot(settings)
    comps = element_frames(inputs.composite)
    keys = dict(element_frames(inputs.key))
    out_dir = Path(outputs[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    for frame, comp_file in comps:
        layers = exrio.read_layers(comp_file)
        beauty = exrio.rgba_from_layers(layers)
        alpha = exrio.read_layers(keys[frame])["A"].astype(np.float32)
        masks = assemble_mod.key_only_trimask(alpha)
        depth = layers.get("depth.Z")  # the diffusion backend's joint depth
        assemble_mod.write_comp_frame(frame_path(out_dir, shot, "comp", version, frame), beauty, masks, depth,
                                      frame=frame, compression=settings["compression"], attrs=settings["attrs"])
    log.info("assembled %d frames (%s)", len(comps), settings["compression"])


def daily(inputs, outputs, settings, log):
    from .review import make_daily

    files = [p for _, p in element_frames(inputs[0])]
    info = make_daily(files, outputs[0], shot=settings["shot"], version=settings["version"],
                      first_frame=settings["first"], fps=settings["fps"], display=settings["display"],
                      view=settings["view"], min_height=settings["daily_min_height"])
    log.info("daily: %s", info)


def contact_sheet(inputs, outputs, settings, log):
    from .review import make_contact_sheet

    files = [p for _, p in element_frames(inputs[0])]
    info = make_contact_sheet(files, outputs[0], shot=settings["shot"], version=settings["version"],
                              columns=settings["contact_columns"])
    log.info("contact sheet: %s", info)
