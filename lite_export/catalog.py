"""The item catalog a model ranks: internal index <-> external id, titles, popularity.

Written as ``items.jsonl`` (one JSON object per line, in index order) in checkpoints and exported
artifacts alike, so any tool can join scores back to ids and titles without Python.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class UnknownItemError(KeyError):
    """Raised when a history names item ids that the catalog does not contain."""

    def __init__(self, unknown: Sequence[str], num_items: int):
        self.unknown = list(unknown)
        shown = ", ".join(repr(u) for u in self.unknown[:10])
        more = f" (+{len(self.unknown) - 10} more)" if len(self.unknown) > 10 else ""
        super().__init__(
            f"unknown item ids: {shown}{more}. The catalog has {num_items} items; "
            "pass external ids exactly as they appear in items.jsonl"
        )

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


@dataclass
class ItemCatalog:
    ids: list[str]
    titles: list[str]
    popularity: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    #: items removed from recommendation (``lite catalog remove``): still accepted in
    #: histories, never recommended (their head bias is -inf); empty = none
    retired: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ids = [str(i) for i in self.ids]
        if not self.popularity:
            self.popularity = [0] * len(self.ids)
        if not any(self.retired):
            self.retired = []
        elif len(self.retired) != len(self.ids):
            raise ValueError("ItemCatalog: retired needs one flag per item")
        self._index = {ext: i for i, ext in enumerate(self.ids)}
        if len(self._index) != len(self.ids):
            raise ValueError("ItemCatalog: external item ids must be unique")

    def __contains__(self, external_id: object) -> bool:
        return str(external_id) in self._index

    def unknown(self, external_ids: Iterable) -> list:
        """The ids not in the catalog (as ``in`` tells), in order: one dict lookup per string."""
        index = self._index
        return [e for e in external_ids if e not in index and str(e) not in index]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def pad_index(self) -> int:
        return len(self.ids)

    def index_of(self, external_id) -> int:
        """The internal index of one external id (UnknownItemError if it is not here)."""
        idx = self._index.get(str(external_id))
        if idx is None:
            raise UnknownItemError([str(external_id)], len(self.ids))
        return idx

    def indices(self, external_ids: Iterable) -> list[int]:
        """Internal indices of external ids; raises UnknownItemError naming every unknown id."""
        if not isinstance(external_ids, list | tuple):
            external_ids = list(external_ids)
        # fast path: every id a known string (one C-level dict lookup each)
        out = list(map(self._index.get, external_ids))
        if None not in out:
            return out
        out, unknown = [], []
        for ext in external_ids:
            idx = self._index.get(str(ext))
            if idx is None:
                unknown.append(str(ext))
            else:
                out.append(idx)
        if unknown:
            raise UnknownItemError(unknown, len(self.ids))
        return out

    def batch_indices(self, histories: Iterable[Iterable]) -> list[list[int]]:
        """indices() for many histories; the error names every unknown id of every history."""
        out, unknown = [], []
        for h in histories:
            try:
                out.append(self.indices(h))
            except UnknownItemError as exc:
                unknown.extend(u for u in exc.unknown if u not in unknown)
        if unknown:
            raise UnknownItemError(unknown, len(self.ids))
        return out

    def most_popular(self, k: int) -> tuple[list[int], list[float]]:
        """The k most popular items (ties: lower index first): the empty-history fallback."""
        gone = self.retired or [False] * len(self.ids)  # retired items only after all others
        order = sorted(range(len(self.ids)), key=lambda i: (gone[i], -self.popularity[i], i))[:k]
        return order, [float(self.popularity[i]) for i in order]

    def to_topk(self, hists: list[list[int]], scores, indices):
        """A TopK from per-row scores/indices [B, k]; empty histories get the popularity fallback."""
        import numpy as np

        from lite_export.types import TopK

        scores = np.array(scores, dtype=np.float32)
        indices = np.array(indices, dtype=np.int64)
        empty = [len(h) == 0 for h in hists]
        if any(empty):
            pop_idx, pop_scores = self.most_popular(indices.shape[1])
            for r in (r for r, e in enumerate(empty) if e):
                indices[r], scores[r] = pop_idx, pop_scores
        return TopK(
            ids=[[self.ids[i] for i in row] for row in indices],
            scores=scores,
            indices=indices,
            fallback=empty,
            titles=[[self.titles[i] for i in row] for row in indices],
        )

    def write_jsonl(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for i, ext in enumerate(self.ids):
                row = {
                    "index": i,
                    "id": ext,
                    "title": self.titles[i],
                    "popularity": self.popularity[i],
                }
                if self.texts:
                    row["text"] = self.texts[i]
                if self.retired and self.retired[i]:
                    row["retired"] = True
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    @classmethod
    def read_jsonl(cls, path: str | Path) -> ItemCatalog:
        ids, titles, pops, texts, retired = [], [], [], [], []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    if row["index"] != len(ids):
                        raise ValueError(f"index {row['index']} out of order (expected {len(ids)})")
                    ids.append(str(row["id"]))
                    titles.append(row.get("title", ""))
                    pops.append(int(row.get("popularity", 0)))
                    if "text" in row:
                        texts.append(row["text"])
                    retired.append(bool(row.get("retired", False)))
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(
                        f"{path} line {lineno}: bad item row ({exc}); each line must be a JSON "
                        'object like {"index": 0, "id": "1193", "title": "...", "popularity": 3}'
                    ) from None
        return cls(ids, titles, pops, texts if len(texts) == len(ids) else [], retired)
