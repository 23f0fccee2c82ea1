# Final EXRs -> H.264 daily with burn-ins and a contact sheet, both in `snakemake --report`.


rule daily:
    input:
        f"{RESULTS}/{{shot}}/comp",
    output:
        report(
            f"{RESULTS}/{{shot}}/review/{{shot}}_daily.mp4",
            category="Dailies",
            labels={"shot": "{shot}", "type": "daily"},
        ),
    log:
        "logs/daily/{shot}.log",
    benchmark:
        "benchmarks/daily/{shot}.tsv"
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
        f"{RESULTS}/{{shot}}/comp",
    output:
        report(
            f"{RESULTS}/{{shot}}/review/{{shot}}_contact.png",
            category="Contact sheets",
            labels={"shot": "{shot}", "type": "contact sheet"},
        ),
    log:
        "logs/contact_sheet/{shot}.log",
    benchmark:
        "benchmarks/contact_sheet/{shot}.tsv"
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=resource("review", "mem_mb"),
        runtime=resource("review", "runtime"),
    params:
        settings=review_settings,
    script:
        "../scripts/contact_sheet.py"
