"""Errors raised by the diffusion engine; each names the file or input and says how to fix it."""

from ..errors import CinecompError


class CheckpointError(CinecompError, ValueError):
    """A model directory cannot be used (missing, incomplete, or the wrong kind of checkpoint)."""

    def __init__(self, path, problem: str, fix: str = ""):
        self.path, self.problem, self.fix = str(path), problem, fix
        msg = f"{path}: {problem}"
        if fix:
            msg += f" (fix: {fix})"
        super().__init__(msg)


class DiffusionInputError(CinecompError, ValueError):
    """The inputs given to the diffusion pipeline have the wrong shape, range or frame count."""
