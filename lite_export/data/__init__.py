"""Datasets, the leave-one-out split and batching for Lite-LLM4Rec.

``load_dataset(name, data_dir)`` is the one entry point the CLI uses; the per-format loaders
are exported too. Every loader returns a :class:`SequenceDataset` (internal item indices
``0..N-1``, pad index ``N``, sequences oldest first).
"""

from __future__ import annotations

from pathlib import Path

from .amazon import AMAZON_FORMATS, load_amazon
from .base import LeaveOneOutSplit, SequenceDataset
from .batching import (
    IGNORE_INDEX,
    EvalExamples,
    TrainWindows,
    collate_eval,
    collate_train,
    pad_histories,
)
from .csv import CSV_FORMATS, load_csv
from .errors import DataFormatError, DataNotFoundError
from .movielens import ML1M_FORMATS, ML100K_FORMATS, load_ml1m, load_ml100k
from .split import cold_start_split, leave_one_out
from .synthetic import make_synthetic

#: Dataset names accepted by :func:`load_dataset` (and ``lite train --data``).
DATASETS: tuple[str, ...] = ("synthetic", "ml-1m", "ml-100k", "amazon", "csv")

_FORMATS = {
    "ml-1m": ML1M_FORMATS,
    "ml-100k": ML100K_FORMATS,
    "amazon": AMAZON_FORMATS,
    "csv": CSV_FORMATS,
}
_LOADERS = {
    "ml-1m": load_ml1m,
    "ml-100k": load_ml100k,
    "amazon": load_amazon,
    "csv": load_csv,
}


def load_dataset(name: str, data_dir: str | Path | None = None, **kwargs) -> SequenceDataset:
    """Load a dataset by name: ``synthetic``, ``ml-1m``, ``ml-100k``, ``amazon`` or ``csv``.

    ``synthetic`` is built in and takes no ``data_dir`` (``kwargs`` go to
    :func:`make_synthetic`, e.g. ``num_items=2000, seed=1``). The others read files from
    ``data_dir`` and pass ``kwargs`` to their loader (e.g. ``max_history=100``).
    Names are case-insensitive and ``_`` may replace ``-``.

    Raises:
        ValueError: an unknown name, or a ``data_dir`` given for ``synthetic``.
        DataNotFoundError: a file dataset without ``data_dir`` or without its files there.
        DataFormatError: a malformed data file.
    """
    key = name.strip().lower().replace("_", "-")
    if key == "synthetic":
        if data_dir is not None:
            raise ValueError(
                "the synthetic dataset is generated, not read: drop --data-dir "
                f"(got {str(data_dir)!r}) or choose one of {', '.join(DATASETS[1:])}"
            )
        return make_synthetic(**kwargs)
    if key not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if data_dir is None:
        raise DataNotFoundError(key, None, [], _FORMATS[key])
    return _LOADERS[key](data_dir, **kwargs)


__all__ = [
    "AMAZON_FORMATS",
    "CSV_FORMATS",
    "DATASETS",
    "IGNORE_INDEX",
    "ML100K_FORMATS",
    "ML1M_FORMATS",
    "DataFormatError",
    "DataNotFoundError",
    "EvalExamples",
    "LeaveOneOutSplit",
    "SequenceDataset",
    "TrainWindows",
    "collate_eval",
    "collate_train",
    "cold_start_split",
    "leave_one_out",
    "load_amazon",
    "load_csv",
    "load_dataset",
    "load_ml100k",
    "load_ml1m",
    "make_synthetic",
    "pad_histories",
]
