"""Running on a SLURM cluster: the controller job script and its cleanup (:mod:`.slurm`), and per-shot state and cost from Snakemake's metadata, sacct and the benchmark files (:mod:`.status`).

May import: the foundation modules (layout, sheet, atomic, errors). The command-line side of both lives in cli.
"""
