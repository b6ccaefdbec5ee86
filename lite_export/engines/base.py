"""The engine interface (a template method, like Polygraphy's runners).

Public ``load()`` and ``recommend()`` verify the artifact and validate inputs; subclasses
implement only ``_load_impl`` and ``_recommend_impl`` over padded int64 id arrays.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from lite_export.artifact import verify_artifact
from lite_export.catalog import ItemCatalog
from lite_export.data.batching import pad_histories
from lite_export.types import TopK


def engine_inputs(
    hists: list[list[int]], max_history: int, num_items: int, exclude_seen: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The arrays every engine ranks from, for histories of internal indices: ``item_ids``
    ``[B, L]`` (the last ``max_history`` items, left-padded with ``num_items``) and
    ``exclude_ids`` ``[B, H]`` (every history item when ``exclude_seen``, else one pad)."""
    item_ids = pad_histories(hists, max_history, num_items).numpy()
    if not exclude_seen:
        return item_ids, np.full((len(hists), 1), num_items, dtype=np.int64)
    width = max(1, max(map(len, hists)))
    # no history longer than max_history (the usual case): the same ids, padded alike
    if width == item_ids.shape[1]:
        return item_ids, item_ids
    return item_ids, pad_histories(hists, width, num_items).numpy()


class EngineUnavailableError(ImportError):
    """An engine asked for by name cannot run here; the message says what to install."""


class Engine(ABC):
    """Loads an exported artifact and recommends; subclasses run one runtime."""

    name: str = "base"

    def __init__(self, artifact: str | os.PathLike, verify: bool = True, **options):
        self.path = Path(artifact)
        self.verify = verify
        self.options = options
        self.manifest: dict = {}
        self.catalog: ItemCatalog | None = None
        self._loaded = False

    # ----------------------------------------------------------------- public
    def load(self) -> Engine:
        """Verify the artifact (format, sha256 of every file) and load the runtime."""
        if self._loaded:
            return self
        if self.verify:
            self.manifest = verify_artifact(self.path)
        else:
            from lite_export.artifact import read_manifest

            self.manifest = read_manifest(self.path)
        self.catalog = ItemCatalog.read_jsonl(self.path / "items.jsonl")
        dims = self.manifest["dims"]
        self.num_items, self.max_history, self.max_k = (
            dims["num_items"],
            dims["max_history"],
            dims["k"],
        )
        self._load_impl()
        self._loaded = True
        return self

    @property
    def info(self) -> dict:
        return {"engine": self.name, "artifact": str(self.path), **self.manifest.get("dims", {})}

    def recommend(self, histories, k: int = 10, exclude_seen: bool = True) -> TopK:
        """Top-k external ids and scores per history of external ids (best first).

        An empty history gets the most-popular items (``TopK.fallback``); unknown ids raise
        :class:`lite_export.UnknownItemError` naming them all.
        """
        if not self._loaded:
            self.load()
        if isinstance(histories, str | bytes) or not all(
            isinstance(h, list | tuple) for h in histories
        ):
            raise TypeError("histories must be a list of lists of external item ids")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.max_k:
            raise ValueError(
                f"k must be an integer between 1 and {self.max_k} (the K this artifact was "
                f"exported with; re-export with `lite export --k` for more), got {k!r}"
            )
        if not histories:
            return TopK([], np.zeros((0, k), np.float32), np.zeros((0, k), np.int64), [], [])
        hists = self.catalog.batch_indices(histories)
        item_ids, exclude = engine_inputs(hists, self.max_history, self.num_items, exclude_seen)
        scores, indices = self._recommend_impl(item_ids, exclude, k)
        return self.catalog.to_topk(hists, np.asarray(scores)[:, :k], np.asarray(indices)[:, :k])

    # ----------------------------------------------------------------- subclasses
    @abstractmethod
    def _load_impl(self) -> None: ...

    @abstractmethod
    def _recommend_impl(
        self, item_ids: np.ndarray, exclude_ids: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """item_ids [B, L], exclude_ids [B, H] int64 (pad = num_items) -> scores, indices [B, >=k]."""
