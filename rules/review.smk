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
    params:
        settings=review_settings,
    log:
        "logs/daily/{shot}.log",
    benchmark:
        "benchmarks/daily/{shot}.tsv"
    resources:
        mem_mb=resource("review", "mem_mb"),
        runtime=resource("review", "runtime"),
    conda:
        "../envs/core.yaml"
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
    params:
        settings=review_settings,
    log:
        "logs/contact_sheet/{shot}.log",
    benchmark:
        "benchmarks/contact_sheet/{shot}.tsv"
    resources:
        mem_mb=resource("review", "mem_mb"),
        runtime=resource("review", "runtime"),
    conda:
        "../envs/core.yaml"
    script:
        "../scripts/contact_sheet.py"
