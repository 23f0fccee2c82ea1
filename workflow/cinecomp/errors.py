"""Errors a TD sees: each names the shot and/or file and says how to fix it.

Two message formats, each written once here: :class:`FileError` (``shot S: path: problem (fix: ...)``,
subclassed by PlateError and diffusion's CheckpointError) and :class:`ProblemsError` (``where has N
problem(s):`` and one line per problem, subclassed by SheetError and curate's CurateError). Every
error on bad input derives from :class:`CinecompError` (training's config and dataset errors, `submit`'s
too); only the command line's own UsageError (exit 2) stands apart.
"""


class CinecompError(Exception):
    """Base class for every error cinecomp raises on bad input."""


class FileError(CinecompError):
    """A file or directory that cannot be used: the shot (if any), the path, the problem and the fix."""

    def __init__(self, path, problem: str, fix: str = "", shot: str | None = None):
        self.path, self.problem, self.fix, self.shot = str(path), problem, fix, shot
        where = f"shot {shot}: " if shot else ""
        msg = f"{where}{path}: {problem}"
        if fix:
            msg += f" (fix: {fix})"
        super().__init__(msg)


class ProblemsError(CinecompError):
    """Every problem found in one input (``where``), one line each; ``problems`` lists them."""

    def __init__(self, where, problems: list[str]):
        self.where, self.problems = str(where), list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{where} has {len(self.problems)} problem(s):\n{lines}")


class PlateError(FileError):
    """A plate/environment file cannot be read (missing, damaged, unsupported)."""


class SheetError(ProblemsError):
    """The shot sheet has problems; ``problems`` lists every one found."""

    def __init__(self, sheet, problems: list[str]):
        self.sheet = str(sheet)
        super().__init__(f"shot sheet {sheet}", problems)
