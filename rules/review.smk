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
