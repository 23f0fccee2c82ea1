# Which files a shot needs: the input functions of the stages whose inputs depend on the shot's
# row (its backends, environment, light probe, reference), and the final targets of rule all.
# Every path comes from cinecomp.layout.
import sys

from cinecomp import layout


def depth_inputs(wildcards):
    row, shot = shot_row(wildcards), wildcards.shot
    inputs = dict(masks=layout.work_dir(RESULTS, shot, "masks"))
    if backend(row, "depth") == "plate":
        inputs["env"] = shot_env_files(shot)
    if backend(row, "depth") == "model":
        inputs["env"] = layout.work_dir(RESULTS, shot, "ingest/env")
    return inputs


def light_inputs(wildcards):
    from cinecomp.perception.light import parse_light

    row = shot_row(wildcards)
    inputs = {}
    # the depth stage's camera when the sheet has none (estimated from the pictures), and its
    # environment Z when the sheet gives no key direction (the environment's geometry shaded by the key)
    if not camera_params(row) or (
        row["environment"] and "azimuth_deg" not in (parse_light(row["light"]) or {})
    ):
        inputs["depth"] = layout.work_dir(RESULTS, wildcards.shot, "depth")
    if row["environment"]:
        inputs["env"] = layout.work_dir(RESULTS, wildcards.shot, "ingest/env")
        if row["env_kind"] == "hdri":
            inputs["env_hdri"] = row["env_path"]
    if row["light_probe"]:
        inputs["probe"] = row["light_probe"]
    return inputs


def takes_harmonize(row):
    """The diffusion backend with a model that starts from harmonize (its transformer's
    harmonize_base) on a shot with an environment: harmonize's comp is one of its inputs.
    """
    from cinecomp.diffusion.checks import takes_harmonize as model_takes_harmonize

    return (
        backend(row, "composite") == "diffusion"
        and bool(row["environment"])
        and model_takes_harmonize(config["diffusion"]["pipeline"])
    )


def harmonize_base_inputs(wildcards):
    """What harmonize reads for the harmonize_base rule (the diffusion model's starting comp)."""
    shot = wildcards.shot
    return dict(
        key=layout.work_dir(RESULTS, shot, "key"),
        masks=layout.work_dir(RESULTS, shot, "masks"),
        depth=layout.work_dir(RESULTS, shot, "depth"),
        light=layout.light_file(RESULTS, shot),
        env=layout.work_dir(RESULTS, shot, "ingest/env"),
    )


def composite_inputs(wildcards):
    row, shot = shot_row(wildcards), wildcards.shot
    inputs = dict(
        key=layout.work_dir(RESULTS, shot, "key"),
        masks=layout.work_dir(RESULTS, shot, "masks"),
    )
    if backend(row, "composite") == "harmonize":
        inputs["depth"] = layout.work_dir(RESULTS, shot, "depth")
        inputs["light"] = layout.light_file(RESULTS, shot)
    if takes_harmonize(row):
        inputs["harmonize"] = layout.work_dir(RESULTS, shot, "harmonize")
    if row["environment"]:  # else the diffusion backend synthesises it
        inputs["env"] = layout.work_dir(RESULTS, shot, "ingest/env")
    if row["reference"]:
        inputs["reference"] = row["reference"]
    if backend(row, "composite") == "diffusion":
        inputs["prompts"] = layout.prompt_embeds_file(RESULTS, shot)
    return inputs


def all_outputs():
    """Per shot: the work files and the sheet's version. A deleted work folder is a missing
    target, so it and only what depends on it are rebuilt (Snakemake skips missing intermediates
    otherwise). A published version is left out: it is never rendered again (layout.py).
    """
    out, done = [], []
    for shot, row in ROWS.items():
        if layout.is_published(RESULTS, shot, row["version"]):
            done.append(f"{shot} {layout.version_tag(row['version'])}")
            continue
        if row["environment"]:
            out.append(layout.work_dir(RESULTS, shot, "ingest/env"))
        if backend(row, "composite") == "harmonize":
            out.append(layout.light_file(RESULTS, shot))
        out += [
            *(
                layout.work_dir(RESULTS, shot, stage)
                for stage in ("ingest/plate", "key", "masks", "depth", "composite")
            ),
            *layout.published_targets(RESULTS, shot, row["version"]),
            layout.cost_report(RESULTS, shot, row["version"]),
        ]
    if done:
        print(
            f"cinecomp: {len(done)} shot version(s) already published, not rendered again "
            f"(raise `version` in the sheet to render changes): {', '.join(done[:20])}"
            + (" ..." if len(done) > 20 else ""),
            file=sys.stderr,
        )
    return out
