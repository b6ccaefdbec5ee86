"""Turning sequences into padded id tensors for training and evaluation.

Conventions (shared with the model and the exported artifact):

* Histories are **left**-padded with ``pad_index`` (= ``num_items``), so the most recent real
  item is always in the last column ``L-1`` and the model reads its output there.
* Histories longer than ``max_len`` keep their most recent ``max_len`` items.
* Training targets are padded with ``IGNORE_INDEX`` (-100, ``torch.nn.CrossEntropyLoss``'s
  default ``ignore_index``).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
import torch
from torch.utils.data import Dataset

IGNORE_INDEX = -100


def _check_max_len(max_len: int) -> None:
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")


def _left_pad(rows: Sequence[Sequence[int]], width: int, fill: int) -> torch.Tensor:
    # one pass over all ids into one array, then one masked store: the per-row copies this
    # replaces were most of recommend()'s host time at batch 64
    lens = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    out = np.full((len(rows), width), fill, dtype=np.int64)
    flat = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lens.sum()))
    out[np.arange(width) >= (width - lens)[:, None]] = flat  # row-major: each row's ids in order
    return torch.from_numpy(out)


def pad_histories(histories: Sequence[Sequence[int]], max_len: int, pad_index: int) -> torch.Tensor:
    """Stack histories into a ``LongTensor [B, L]``, left-padded with ``pad_index``.

    Each row keeps the most recent ``max_len`` items; ``L = min(max_len, longest history)``,
    at least 1, so an all-empty batch is one column of pads. An empty history is a row of pads.
    """
    _check_max_len(max_len)
    rows = [h[-max_len:] if len(h) > max_len else h for h in histories]
    width = max(1, max((len(r) for r in rows), default=0))
    return _left_pad(rows, width, pad_index)


class TrainWindows(Dataset):
    """One training example per train sequence of length >= 2 (SASRec convention).

    For a sequence ``s`` the example is ``inputs = s[:-1][-max_len:]`` and
    ``targets = s[1:][-max_len:]``: the target at every position is the next item, and only the
    most recent window of a long sequence is used. Shorter sequences are skipped;
    ``self.users[k]`` is the index (into ``sequences``) that example ``k`` came from.
    Items are ``(inputs, targets)`` lists; batch them with :meth:`collate` or
    :func:`collate_train`.
    """

    def __init__(self, sequences: Sequence[Sequence[int]], max_len: int, pad_index: int) -> None:
        _check_max_len(max_len)
        self.max_len = max_len
        self.pad_index = pad_index
        self.users: list[int] = [u for u, s in enumerate(sequences) if len(s) >= 2]
        self._examples: list[tuple[list[int], list[int]]] = [
            (list(sequences[u][:-1][-max_len:]), list(sequences[u][1:][-max_len:]))
            for u in self.users
        ]

    def __len__(self) -> int:
        return len(self._examples)

    def __getitem__(self, k: int) -> tuple[list[int], list[int]]:
        return self._examples[k]

    def collate(
        self, batch: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> dict[str, torch.Tensor]:
        """``collate_train`` with this dataset's pad index (usable as a DataLoader collate_fn)."""
        return collate_train(batch, self.pad_index)


def collate_train(
    batch: Sequence[tuple[Sequence[int], Sequence[int]]], pad_index: int
) -> dict[str, torch.Tensor]:
    """Batch ``(inputs, targets)`` pairs.

    Returns ``item_ids [B, L]`` left-padded with ``pad_index`` and ``targets [B, L]``
    left-padded with ``IGNORE_INDEX`` (-100); ``L`` is the longest example in the batch.
    """
    for inputs, targets in batch:
        if len(inputs) != len(targets):
            raise ValueError(
                f"inputs and targets must have the same length, got {len(inputs)} and {len(targets)}"
            )
    width = max(1, max((len(i) for i, _ in batch), default=0))
    return {
        "item_ids": _left_pad([i for i, _ in batch], width, pad_index),
        "targets": _left_pad([t for _, t in batch], width, IGNORE_INDEX),
    }


class EvalExamples(Dataset):
    """``(history, target)`` pairs (e.g. ``split.valid`` or ``split.test``) for batching.

    Items are ``(history, target)`` with the *full* history; :meth:`collate` /
    :func:`collate_eval` cut it to ``max_len`` for the model input but also return the full
    history for masking already-seen items.
    """

    def __init__(
        self, pairs: Sequence[tuple[Sequence[int], int]], max_len: int, pad_index: int
    ) -> None:
        _check_max_len(max_len)
        self.pairs = pairs
        self.max_len = max_len
        self.pad_index = pad_index

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int) -> tuple[Sequence[int], int]:
        return self.pairs[k]

    def collate(self, batch: Sequence[tuple[Sequence[int], int]]) -> dict[str, torch.Tensor]:
        """``collate_eval`` with this dataset's ``max_len`` and pad index."""
        return collate_eval(batch, self.max_len, self.pad_index)


def collate_eval(
    batch: Sequence[tuple[Sequence[int], int]], max_len: int, pad_index: int
) -> dict[str, torch.Tensor]:
    """Batch ``(history, target)`` pairs.

    Returns ``item_ids [B, L]`` (:func:`pad_histories`), ``targets [B]`` and ``seen [B, S]``:
    every item of each full (untruncated) history, left-padded with ``pad_index``, e.g. for
    ``scores.scatter_(1, seen, -inf)`` on a ``[B, num_items + 1]`` score matrix.
    """
    histories = [h for h, _ in batch]
    return {
        "item_ids": pad_histories(histories, max_len, pad_index),
        "targets": torch.tensor([t for _, t in batch], dtype=torch.long),
        "seen": pad_histories(
            histories, max(1, max((len(h) for h in histories), default=1)), pad_index
        ),
    }
