"""cinecomp: composite green-screen character plates into new environments, shot by shot.

Data walks one way, top to bottom; nothing imports upwards:

  cli/         the `cinecomp` command (a dispatcher, one module per subcommand, common)
  stages       one function per workflow rule, called by scripts/ through jobs.run
  train/ curate/ evaluate/          training, data curation, scoring against ground truth
  diffusion/   the learned compositor (model, pipeline, windows, distributed, LoRA)
  composite/ perception/ review/ farm/ synth/   the capabilities
  io/          EXR, plates, ingest, dataset shards
  errors atomic params layout colour camera frames metrics sheet jobs   the foundation

Each subpackage's docstring says what it owns and what it may import.
"""

__version__ = "0.1.0"
SOFTWARE = f"cinecomp {__version__}"
