"""Scoring composite backends against ground truth (:mod:`.suite`): renders the eval set, runs the workflow per backend as a TD would, and reports the field's metrics per shot and on average.

May import: synth, io and the foundation modules; it runs the workflow as a subprocess, never the stages directly.
"""
