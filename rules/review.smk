# Final EXRs -> H.264 daily with burn-ins and a contact sheet, both in `snakemake --report`.


rule daily:
    input:
        f"{RESULTS}/{{shot}}/v{{version}}/comp",
    output:
        report(
            f"{RESULTS}/{{shot}}/v{{version}}/review/{{shot}}_v{{version}}_daily.mp4",
            category="Dailies",
            labels={"shot": "{shot}", "version": "v{version}", "type": "daily"},
        ),
    log:
        f"{RESULTS}/logs/daily/{{shot}}_v{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/daily/{{shot}}_v{{version}}.tsv"
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
        f"{RESULTS}/{{shot}}/v{{version}}/comp",
    output:
        report(
            f"{RESULTS}/{{shot}}/v{{version}}/review/{{shot}}_v{{version}}_contact.png",
            category="Contact sheets",
            labels={
                "shot": "{shot}",
                "version": "v{version}",
                "type": "contact sheet",
            },
        ),
    log:
        f"{RESULTS}/logs/contact_sheet/{{shot}}_v{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/contact_sheet/{{shot}}_v{{version}}.tsv"
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
        daily=f"{RESULTS}/{{shot}}/v{{version}}/review/{{shot}}_v{{version}}_daily.mp4",
        contact=f"{RESULTS}/{{shot}}/v{{version}}/review/{{shot}}_v{{version}}_contact.png",
    output:
        report(
            f"{RESULTS}/{{shot}}/v{{version}}/review/{{shot}}_v{{version}}_cost.html",
            category="Cost",
            labels={"shot": "{shot}", "version": "v{version}", "type": "cost"},
        ),
    log:
        f"{RESULTS}/logs/cost/{{shot}}_v{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cost/{{shot}}_v{{version}}.tsv"
    conda:
        "../envs/core.yaml"
    params:
        settings=cost_settings,
    script:
        "../scripts/cost.py"
