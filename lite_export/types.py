"""Result types shared by models and engines."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TopK:
    """Top-K recommendations for a batch of users, best first.

    ids      list[list[str]]  external item ids  `[B][k]`
    scores   np.ndarray       float32 scores     [B, k]: the model's scores (higher is better),
                              except in a fallback row: the items' training popularity counts
    indices  np.ndarray       int64 internal indices [B, k]
    fallback list[bool]       True where a row came from the most-popular fallback (empty history)
    titles   list[list[str]]  the items' titles from items.jsonl `[B][k]`
    """

    ids: list[list[str]]
    scores: np.ndarray
    indices: np.ndarray
    fallback: list[bool] = field(default_factory=list)
    titles: list[list[str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)
