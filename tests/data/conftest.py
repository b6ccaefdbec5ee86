"""Helpers for the data tests: every fixture file is written by the test itself."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` (gzip'ed when the name ends in ``.gz``)."""
    data = text.encode(encoding)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data, mtime=0))
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def writer(tmp_path: Path):
    """``writer(name, text, encoding="utf-8")`` writes a file into ``tmp_path``."""

    def _write(name: str, text: str, encoding: str = "utf-8") -> Path:
        return write(tmp_path / name, text, encoding)

    return _write
