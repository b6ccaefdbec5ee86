"""Which ranking path to run for a shape on a GPU: the per-device table behind ``method="auto"``.

:func:`lite_export.kernels.rank` has several correct paths on CUDA -- the fused kernel's
``"filter"`` and ``"exact"`` paths and ``"torch"`` (matmul + ``torch.topk``) -- and none is the
fastest everywhere (``benchmarks/results/topk_gpu.md``: the fused kernel wins on large catalogs
and batches, matmul + topk on small ones). ``method="auto"`` looks the shape up in a *rank table*
of measured times and runs the path that measured fastest at the nearest measured shape.

Where the table comes from, first match wins:

1. :func:`use_table` (benchmarks, tests) or ``$LITE_EXPORT_RANK_TABLE`` (a file path);
2. the table ``lite tune --gpu`` measured on this GPU with this torch and Triton, stored under
   the cache directory (``$LITE_EXPORT_CACHE``, else ``$XDG_CACHE_HOME/lite_export``, else
   ``~/.cache/lite_export``) as ``rank_tables/<gpu>--torch-<v>--triton-<v>.json``;
3. the defaults shipped in ``rank_defaults.json``, derived from the committed H200 measurements
   by ``benchmarks/derive_rank_defaults.py``.

Table format (JSON, one file per GPU name + torch + Triton version)::

    {"format": "lite_export.rank_table", "version": 1,
     "gpu": "NVIDIA H200", "torch": "2.11.0+cu130", "triton": "3.6.0",
     "source": "lite tune --gpu", "created": "2026-11-20T10:00:00Z",
     "rows": [{"N": 1000000, "d": 64, "B": 1, "k": 10, "dtype": "bfloat16", "exclude": 0,
               "ms": {"torch": 0.132, "filter": 0.231, "exact": 0.374}, "best": "torch"}, ...]}

``ms`` holds the median milliseconds of each path that ran correctly at that shape (a path that
failed or gave a wrong answer is left out); ``exclude`` is the exclusion width (history ids per
row, 0 = none); ``best`` is the fastest and is recomputed on load.

Lookup (:meth:`RankTable.choose`): rows of the same dtype (else of the same element size) and
the same exclusion on/off are preferred when the table has any; among them, the nearest rows by
``|log2 N/N'| + |log2 d/d'| + |log2 B/B'| + 0.5 |log2 k/k'|``; among the paths measured in all of
those rows, the one with the smallest mean ``log(ms / row best)`` -- at a measured shape, simply
its fastest path. Ties go to ``"torch"`` (the simplest). Decisions are cached per shape, so a
call costs one dict lookup.

This module imports only torch (Triton's version is read from package metadata).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "DEFAULTS_PATH",
    "PATHS",
    "RankTable",
    "RankTableError",
    "TableRow",
    "cache_root",
    "choose_method",
    "device_guard",
    "table_for",
    "table_key",
    "table_path",
    "use_table",
]

#: The ranking paths a table can hold, in tie-break order (the simplest first).
PATHS = ("torch", "filter", "exact")
FORMAT = "lite_export.rank_table"
VERSION = 1
#: The shipped defaults (derived from ``benchmarks/results/topk_gpu.json`` on an H200).
DEFAULTS_PATH = Path(__file__).with_name("rank_defaults.json")

_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


class RankTableError(ValueError):
    """A rank table file that cannot be used; the message names the file and the problem."""


def device_guard(t: Any) -> contextlib.AbstractContextManager:
    """``torch.cuda.device(t.device)`` for a CUDA tensor, else a no-op context.

    Triton launches on the *current* device's stream and CUDA graphs capture on the current
    device, so every launch and capture runs under this guard, taken from the tensor: a tensor on
    ``cuda:1`` is served on ``cuda:1`` whatever the current device is. Entering it costs a device
    switch (~1 us) and nothing when the devices already match.
    """
    dev = getattr(t, "device", t)
    if isinstance(dev, torch.device) and dev.type == "cuda":
        return torch.cuda.device(dev)
    return contextlib.nullcontext()


def dtype_name(dtype: torch.dtype | str) -> str:
    """The canonical table name of a dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``."""
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}")
        dtype = _DTYPES[dtype]
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class TableRow:
    """One measured shape: median ms per path that ran correctly there."""

    N: int
    d: int
    B: int
    k: int
    dtype: str
    exclude: int
    ms: dict[str, float] = field(hash=False)

    @property
    def best(self) -> str | None:
        ok = {p: t for p, t in self.ms.items() if math.isfinite(t)}
        if not ok:
            return None
        return min(ok, key=lambda p: (ok[p], PATHS.index(p)))

    def to_json(self) -> dict:
        return {
            "N": self.N,
            "d": self.d,
            "B": self.B,
            "k": self.k,
            "dtype": self.dtype,
            "exclude": self.exclude,
            "ms": {
                p: round(self.ms[p], 5) for p in PATHS if math.isfinite(self.ms.get(p, math.inf))
            },
            "best": self.best,
        }


def _distance(row: TableRow, B: int, N: int, d: int, k: int) -> float:
    lg = math.log2
    return abs(lg(N / row.N)) + abs(lg(d / row.d)) + abs(lg(B / row.B)) + 0.5 * abs(lg(k / row.k))


@dataclass
class RankTable:
    """Measured times of the ranking paths on one GPU (see the module docstring)."""

    gpu: str
    torch: str
    triton: str
    rows: list[TableRow]
    source: str = ""
    created: str = ""
    notes: str = ""

    # ---------------------------------------------------------------- lookup
    def choose(
        self,
        B: int,
        N: int,
        d: int,
        k: int,
        dtype: torch.dtype | str = torch.bfloat16,
        exclude: bool = False,
        allowed: tuple[str, ...] = PATHS,
    ) -> str:
        """The path to run for this shape: fastest at the nearest measured shape(s)."""
        allowed = tuple(p for p in PATHS if p in allowed)
        if not allowed:
            raise ValueError(f"allowed must name at least one of {PATHS}")
        rows = [r for r in self.rows if any(p in r.ms for p in allowed)]
        name = dtype_name(dtype)
        size = _DTYPES[name].itemsize
        for keep in (
            lambda r: _DTYPES[r.dtype].itemsize == size,  # fp16 and bf16 stand in for each other
            lambda r: r.dtype == name,
            lambda r: bool(r.exclude) == bool(exclude),
        ):
            preferred = [r for r in rows if keep(r)]
            rows = preferred or rows
        if not rows:
            return allowed[0]
        B, N, d, k = max(1, B), max(1, N), max(1, d), max(1, k)
        dist = [_distance(r, B, N, d, k) for r in rows]
        near = [r for r, x in zip(rows, dist, strict=True) if x <= min(dist) + 1e-9]
        scores = {}
        for p in allowed:
            if all(p in r.ms and math.isfinite(r.ms[p]) for r in near):
                best = [min(t for q, t in r.ms.items() if q in allowed) for r in near]
                scores[p] = sum(
                    math.log(r.ms[p] / m) for r, m in zip(near, best, strict=True)
                ) / len(near)
        if not scores:
            return allowed[0]
        return min(scores, key=lambda p: (round(scores[p], 12), PATHS.index(p)))

    # ---------------------------------------------------------------- files
    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "gpu": self.gpu,
            "torch": self.torch,
            "triton": self.triton,
            "source": self.source,
            "created": self.created,
            "notes": self.notes,
            "rows": [r.to_json() for r in self.rows],
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "rank table") -> RankTable:
        """Parse and check a table; :class:`RankTableError` names what is wrong and where."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise RankTableError(f'{where} is not a rank table (no "format": "{FORMAT}")')
        if data.get("version") != VERSION:
            raise RankTableError(
                f"{where} has version {data.get('version')!r}; this lite-export reads version "
                f"{VERSION}: measure again with `lite tune --gpu`"
            )
        rows = []
        for i, r in enumerate(data.get("rows") or []):
            try:
                ms = {str(p): float(t) for p, t in dict(r["ms"]).items()}
                unknown = sorted(set(ms) - set(PATHS))
                if unknown:
                    raise ValueError(f"unknown path(s) {unknown}; known: {list(PATHS)}")
                if any(t <= 0 for t in ms.values()):
                    raise ValueError("times must be > 0 ms")
                row = TableRow(
                    N=int(r["N"]),
                    d=int(r["d"]),
                    B=int(r["B"]),
                    k=int(r["k"]),
                    dtype=dtype_name(r.get("dtype", "bfloat16")),
                    exclude=int(r.get("exclude", 0)),
                    ms=ms,
                )
                if min(row.N, row.d, row.B, row.k) < 1:
                    raise ValueError("N, d, B and k must be >= 1")
            except (KeyError, TypeError, ValueError) as exc:
                raise RankTableError(f"{where}: row {i} is invalid ({exc}): {r!r}") from exc
            rows.append(row)
        if not rows:
            raise RankTableError(f"{where} has no rows")
        return cls(
            gpu=str(data.get("gpu", "")),
            torch=str(data.get("torch", "")),
            triton=str(data.get("triton", "")),
            rows=rows,
            source=str(data.get("source", "")),
            created=str(data.get("created", "")),
            notes=str(data.get("notes", "")),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> RankTable:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise RankTableError(f"cannot read rank table {path}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise RankTableError(f"rank table {path} is not valid JSON: {exc}") from exc
        return cls.from_json(data, where=f"rank table {path}")

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (a temporary file beside it, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.dumps())
        os.replace(tmp, path)
        return path

    def dumps(self) -> str:
        """The JSON text: header fields, then one row per line (diff-friendly)."""
        data = self.to_json()
        rows = data.pop("rows")
        head = json.dumps(data, indent=1)[:-2]  # drop the closing "\n}"
        body = ",\n".join("  " + json.dumps(r) for r in rows)
        return f'{head},\n "rows": [\n{body}\n ]\n}}\n'

    def summary(self) -> str:
        """One line per row: shape, each path's ms, the winner."""
        lines = []
        for r in self.rows:
            times = "  ".join(f"{p} {r.ms[p]:.4f}" for p in PATHS if p in r.ms)
            lines.append(
                f"N={r.N:>9} d={r.d:>5} B={r.B:>4} k={r.k:>4} {r.dtype:>8} exclude={r.exclude:>4}"
                f"  {times}  -> {r.best}"
            )
        return "\n".join(lines)


# -------------------------------------------------------------------- where tables live


def cache_root() -> Path:
    """The project's cache directory (the same rule as the item-vector cache)."""
    root = os.environ.get("LITE_EXPORT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "lite_export"
    )
    return Path(root)


def triton_version() -> str:
    """Triton's installed version from package metadata (does not import Triton)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("triton")
    except PackageNotFoundError:
        return "missing"


def table_key(device: torch.device | int | None = None) -> tuple[str, str, str]:
    """(GPU name, torch version, Triton version) of a CUDA device: what a tuned table is for."""
    return torch.cuda.get_device_name(device), torch.__version__, triton_version()


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]+", "_", s).strip("_") or "unknown"


def table_path(key: tuple[str, str, str]) -> Path:
    """Where ``lite tune --gpu`` stores (and ``method="auto"`` finds) the table for ``key``."""
    gpu, tv, trv = key
    name = f"{_slug(gpu)}--torch-{_slug(tv)}--triton-{_slug(trv)}.json"
    return cache_root() / "rank_tables" / name


_DEFAULTS: RankTable | None = None
_OVERRIDE: RankTable | None = None
_BY_DEVICE: dict[tuple[str, str, str], tuple[RankTable, str]] = {}
_CHOICES: dict[tuple, str] = {}
_WARNED: set[str] = set()


def defaults() -> RankTable:
    global _DEFAULTS
    if _DEFAULTS is None:
        _DEFAULTS = RankTable.load(DEFAULTS_PATH)
    return _DEFAULTS


def use_table(table: RankTable | str | os.PathLike | None) -> None:
    """Make ``method="auto"`` use ``table`` (a :class:`RankTable` or a file) on every device;
    ``None`` goes back to the tuned table / defaults. Clears the cached decisions."""
    global _OVERRIDE
    if table is not None and not isinstance(table, RankTable):
        table = RankTable.load(table)
    _OVERRIDE = table
    _BY_DEVICE.clear()
    _CHOICES.clear()


def table_for(device: torch.device | None) -> tuple[RankTable, str]:
    """(the table ``method="auto"`` uses on ``device``, where it came from)."""
    if _OVERRIDE is not None:
        return _OVERRIDE, "use_table()"
    env = os.environ.get("LITE_EXPORT_RANK_TABLE")
    if env:
        try:
            return RankTable.load(env), env
        except RankTableError as exc:
            if env not in _WARNED:
                _WARNED.add(env)
                warnings.warn(
                    f"LITE_EXPORT_RANK_TABLE: {exc}; using the defaults", RuntimeWarning, 2
                )
            return defaults(), str(DEFAULTS_PATH)
    if device is None or device.type != "cuda":
        return defaults(), str(DEFAULTS_PATH)
    key = table_key(device)
    if key not in _BY_DEVICE:
        path = table_path(key)
        found = (defaults(), str(DEFAULTS_PATH))
        if path.is_file():
            try:
                found = (RankTable.load(path), str(path))
            except RankTableError as exc:
                warnings.warn(
                    f"{exc}; using the defaults (run `lite tune --gpu` again)", RuntimeWarning, 2
                )
        _BY_DEVICE[key] = found
    return _BY_DEVICE[key]


def choose_method(
    B: int,
    N: int,
    d: int,
    k: int,
    dtype: torch.dtype,
    exclude: bool,
    device: torch.device,
    allowed: tuple[str, ...] = PATHS,
) -> str:
    """``method="auto"``'s decision for a CUDA shape, cached (B by power-of-two bucket)."""
    bucket = 1 << max(0, (int(B) - 1).bit_length())
    key = (str(device), bucket, N, d, k, dtype, bool(exclude), allowed)
    choice = _CHOICES.get(key)
    if choice is None:
        table, _ = table_for(device)
        choice = table.choose(bucket, N, d, k, dtype, exclude, allowed)
        _CHOICES[key] = choice
    return choice


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
