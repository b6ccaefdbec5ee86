"""Errors raised by the dataset loaders.

Both errors are meant to be shown to a user as-is (the CLI prints ``str(err)``), so their
messages name the file, the place and the problem, and say how to fix it where that is possible.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class DataFormatError(ValueError):
    """A data file exists but its content does not match the expected format.

    The message reads ``"<file name> line <n>: <problem>. <hint> (file: <full path>)"``, e.g.
    ``"ratings.dat line 17: expected 4 fields 'UserID::MovieID::Rating::Timestamp', got 3"``.
    ``line`` is 1-based and ``None`` for problems that concern the whole file.
    """

    def __init__(
        self,
        path: str | Path,
        line: int | None,
        problem: str,
        hint: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        self.hint = hint
        where = self.path.name if line is None else f"{self.path.name} line {line}"
        message = f"{where}: {problem}"
        if hint:
            message += f". {hint[:1].upper()}{hint[1:]}"
        message += f" (file: {self.path})"
        super().__init__(message)


class DataNotFoundError(FileNotFoundError):
    """The files a loader needs are not in the given directory (or no directory was given).

    The message names the dataset, the directory searched, what is missing there, every file
    name that was tried and the formats the loader accepts, so the user can see at once what to
    put where.
    """

    def __init__(
        self,
        dataset: str,
        directory: str | Path | None,
        looked_for: Sequence[str],
        accepted: str,
        missing: Sequence[str] = (),
    ) -> None:
        self.dataset = dataset
        self.missing = list(missing)
        self.directory = None if directory is None else Path(directory)
        self.looked_for = list(looked_for)
        self.accepted = accepted
        if self.directory is None:
            message = (
                f"dataset {dataset!r} needs a data directory: pass --data-dir DIR "
                f"(data_dir=... in Python) where DIR contains {accepted}"
            )
        else:
            if not self.directory.exists():
                state = "does not exist"
            elif not self.directory.is_dir():
                state = "is not a directory"
            elif self.missing:
                state = f"has no {' and no '.join(self.missing)}"
            else:
                state = "does not contain the required files"
            tried = ", ".join(self.looked_for)
            message = (
                f"no {dataset} data found: directory {self.directory} {state} "
                f"(looked for: {tried}). Accepted: {accepted}"
            )
        super().__init__(message)

    # FileNotFoundError's default __str__ formats (errno, strerror); keep our message instead.
    def __str__(self) -> str:
        return str(self.args[0])
