"""Compatibility entry point: SLURM controller scripts queued by cinecomp before the package layout
moved (``python -m cinecomp.slurm cleanup WORKDIR SELF_JOBID``) still run. New scripts call
:mod:`cinecomp.farm.slurm`; remove this file once no such controller can be queued."""

import sys

from .farm.slurm import cleanup

if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "cleanup":
        sys.exit(cleanup(sys.argv[2], sys.argv[3]))
    sys.exit("usage: python -m cinecomp.slurm cleanup WORKDIR SELF_JOBID")
