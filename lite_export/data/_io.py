"""Small file helpers shared by the loaders (private)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from .errors import DataFormatError


def find_file(directory: Path, names: Sequence[str]) -> Path | None:
    """The first existing file among ``names`` (each tried plain, then with ``.gz``)."""
    for name in names:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def with_gz(names: Sequence[str]) -> list[str]:
    """``["a", "b"]`` -> ``["a", "a.gz", "b", "b.gz"]`` (for error messages)."""
    return [v for name in names for v in (name, f"{name}.gz")]


_ENCODING_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "latin-1": "Latin-1"}


def open_binary(path: Path) -> BinaryIO:
    """Open a file for reading bytes, transparently gunzipping ``*.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")  # noqa: SIM115 (the caller closes it)


def decoded_lines(path: Path, encoding: str) -> Iterator[str]:
    """Yield every line of a (possibly gzip'ed) text file, decoded, line ending kept.

    Lines are decoded one by one, so a decoding error names its exact line; it and gzip
    errors become :class:`DataFormatError`. The output can be fed straight to ``csv.reader``.
    """
    lineno = 0
    label = _ENCODING_NAMES.get(encoding, encoding)
    try:
        with open_binary(path) as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    yield raw.decode(encoding)
                except UnicodeDecodeError as e:
                    raise DataFormatError(
                        path,
                        lineno,
                        f"cannot decode byte {e.start + 1} of the line as {label} ({e.reason})",
                        f"save the file as {label}",
                    ) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataFormatError(
            path,
            lineno + 1 if lineno else None,
            f"the gzip stream is corrupt or truncated ({e})",
            "re-download or re-compress the file",
        ) from None


def iter_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """Yield ``(1-based line number, line without its line ending)`` for every line."""
    for lineno, line in enumerate(decoded_lines(path, encoding), 1):
        yield lineno, line.rstrip("\r\n")


def parse_int(path: Path, lineno: int, value: str, what: str) -> int:
    """``int(value)`` or a DataFormatError saying which field was not an integer."""
    try:
        return int(value)
    except ValueError:
        raise DataFormatError(path, lineno, f"{what} must be an integer, got {value!r}") from None


def sentence(label: str, value: str) -> str:
    """``"Label: value."`` without doubling a final period the value already has."""
    value = value.strip()
    return f"{label}: {value}" if value.endswith(".") else f"{label}: {value}."


def title_genres_text(title: str, genres: Sequence[str]) -> str:
    """The MovieLens / synthetic item template ``"Title: {title}. Genres: {a, b}."``.

    Items without any genre get only the title sentence, so no text ends in ``"Genres: ."``.
    """
    text = sentence("Title", title)
    if genres:
        text += " " + sentence("Genres", ", ".join(genres))
    return text
