"""Errors raised by the diffusion engine; each names the file or input and says how to fix it."""

from ..errors import CinecompError, FileError


class CheckpointError(FileError, ValueError):
    """A model directory cannot be used (missing, incomplete, or the wrong kind of checkpoint)."""


class DiffusionInputError(CinecompError, ValueError):
    """The inputs given to the diffusion pipeline have the wrong shape, range or frame count."""
