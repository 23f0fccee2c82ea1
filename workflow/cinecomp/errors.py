"""Errors a TD sees: each names the shot and/or file and says how to fix it."""


class CinecompError(Exception):
    """Base class for every error cinecomp raises on bad input."""


class PlateError(CinecompError):
    """A plate/environment file cannot be read (missing, damaged, unsupported)."""

    def __init__(self, path, problem: str, fix: str = "", shot: str | None = None):
        self.path, self.problem, self.fix, self.shot = str(path), problem, fix, shot
        where = f"shot {shot}: " if shot else ""
        msg = f"{where}{path}: {problem}"
        if fix:
            msg += f" (fix: {fix})"
        super().__init__(msg)


class SheetError(CinecompError):
    """The shot sheet has problems; ``problems`` lists every one found."""

    def __init__(self, sheet, problems: list[str]):
        self.sheet, self.problems = str(sheet), list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"shot sheet {sheet} has {len(self.problems)} problem(s):\n{lines}")
