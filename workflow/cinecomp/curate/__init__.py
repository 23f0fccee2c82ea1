"""The prior-driven data curation for training: clips of real footage -> masks, depth, a de-lit character on green, a clean environment plate -> training pairs and shards (:mod:`.pipeline`, its priors in :mod:`.priors` and :mod:`.sam2_priors`), the renderer as a second source (:mod:`.synthetic`), path-traced shot folders as a third (:mod:`.pathtraced`), and :mod:`.runner`, which curates a clips sheet and holds the Snakemake stages of rules/curate.smk.

May import: perception, composite, synth, io and the foundation modules.
"""
