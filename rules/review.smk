# Final EXRs -> H.264 daily with burn-ins and a contact sheet, both in `snakemake --report`.


rule daily:
    input:
        layout.comp_dir(RESULTS, "{shot}", "{version}"),
    output:
        report(
            layout.daily_file(RESULTS, "{shot}", "{version}"),
            category="Dailies",
            labels={"shot": "{shot}", "version": "v{version}", "type": "daily"},
        ),
    log:
        layout.log_file(RESULTS, "daily", "{shot}", "{version}"),
    benchmark:
        layout.benchmark_file(RESULTS, "daily", "{shot}", "{version}")
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=resource("review", "mem_mb"),
        runtime=resource("review", "runtime"),
    params:
        settings=review_settings,
    script:
        "../scripts/daily.py"


rule contact_sheet:
    input:
        layout.comp_dir(RESULTS, "{shot}", "{version}"),
    output:
        report(
            layout.contact_sheet_file(RESULTS, "{shot}", "{version}"),
            category="Contact sheets",
            labels={
                "shot": "{shot}",
                "version": "v{version}",
                "type": "contact sheet",
            },
        ),
    log:
        layout.log_file(RESULTS, "contact_sheet", "{shot}", "{version}"),
    benchmark:
        layout.benchmark_file(RESULTS, "contact_sheet", "{shot}", "{version}")
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=resource("review", "mem_mb"),
        runtime=resource("review", "runtime"),
    params:
        settings=review_settings,
    script:
        "../scripts/contact_sheet.py"


# Per-shot cost for `snakemake --report` (a table per shot: wall time, CPU-hours, GPU-hours, peak
# memory per rule), from the rules' benchmark files and, on SLURM, sacct. It runs on the controller
# (a local rule) after the shot's last jobs; `cinecomp status --json` gives the same numbers.
localrules:
    cost,


rule cost:
    input:
        daily=layout.daily_file(RESULTS, "{shot}", "{version}"),
        contact=layout.contact_sheet_file(RESULTS, "{shot}", "{version}"),
    output:
        report(
            layout.cost_report(RESULTS, "{shot}", "{version}"),
            category="Cost",
            labels={"shot": "{shot}", "version": "v{version}", "type": "cost"},
        ),
    log:
        layout.log_file(RESULTS, "cost", "{shot}", "{version}"),
    benchmark:
        layout.benchmark_file(RESULTS, "cost", "{shot}", "{version}")
    conda:
        "../envs/core.yaml"
    params:
        settings=cost_settings,
    script:
        "../scripts/cost.py"
