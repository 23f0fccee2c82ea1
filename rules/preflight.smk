# Parse-time checks, run before any job: a shot whose backend needs model files that are missing
# or wrong stops the whole run here, each problem naming its shots and the path (no job started).


def check_diffusion_models():
    """Model directories of the `diffusion` backend, checked before any job runs."""
    shots = [s for s, row in ROWS.items() if backend(row, "composite") == "diffusion"]
    if not shots:
        return
    from cinecomp.diffusion.checks import check_diffusion_config

    problems = check_diffusion_config(config["diffusion"])
    if config["diffusion"].get("output") == "layers":
        no_env = [s for s in shots if not ROWS[s]["environment"]]
        if no_env:
            problems.append(
                f"diffusion.output 'layers' lays the model's light on an environment plate; shot(s) "
                f"{', '.join(no_env)} have none (fix: give them an environment, or set diffusion.output: frames)"
            )
    if problems:
        raise WorkflowError(
            f"shot(s) {', '.join(shots)} use the diffusion composite backend, but:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


def check_perception_models():
    """Learned perception backends (sam2, matanyone, model): every shot's model files checked
    before any job runs; each problem names the shots, the backend and the path."""
    from cinecomp.perception.models import check_shots

    problems = check_shots(ROWS, config["backends"], config["perception"])
    if problems:
        raise WorkflowError(
            "learned perception backends cannot run:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


check_diffusion_models()
check_perception_models()
