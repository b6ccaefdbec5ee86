"""Core data types shared by every loader, the trainer and the evaluator.

Items carry an *internal index* ``0 .. num_items-1`` (the row of the projection head) and an
*external id* (the string a user's system knows, e.g. MovieLens ``"1193"`` or an Amazon ASIN).
Padding uses the index ``num_items`` (one past the last item), so id tensors never need a
separate sentinel and the frozen item table simply gains one zero row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class SequenceDataset:
    """A catalog plus one chronological interaction sequence per user.

    sequences[u] holds internal item indices in time order (oldest first).
    """

    name: str
    item_ids: list[str]  # internal index -> external id
    item_titles: list[str]  # internal index -> display title
    item_texts: list[str]  # internal index -> text fed to the item LLM (dataset template)
    user_ids: list[str]  # user position -> external user id
    sequences: list[list[int]]  # per user, internal indices, oldest first
    max_history: int = 200  # the protocol's maximum history length for this dataset
    item_meta: list[dict] = field(default_factory=list)  # optional per-item extras (genres, ...)
    source: dict[str, str] = field(default_factory=dict)  # where the data came from (file paths)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if len(self.item_titles) != n or len(self.item_texts) != n:
            raise ValueError(
                f"dataset {self.name!r}: {n} item ids but {len(self.item_titles)} titles and "
                f"{len(self.item_texts)} texts; every item needs exactly one of each"
            )
        if self.item_meta and len(self.item_meta) != n:
            raise ValueError(
                f"dataset {self.name!r}: {n} item ids but {len(self.item_meta)} item_meta "
                "entries; item_meta must be empty or hold one dict per item"
            )
        if len(self.user_ids) != len(self.sequences):
            raise ValueError(
                f"dataset {self.name!r}: {len(self.user_ids)} user ids but "
                f"{len(self.sequences)} sequences"
            )
        for u, seq in enumerate(self.sequences):
            if seq and (min(seq) < 0 or max(seq) >= n):
                raise ValueError(
                    f"dataset {self.name!r}: user {self.user_ids[u]!r} has an item index outside "
                    f"0..{n - 1}; sequences hold internal indices, not external ids"
                )
        self._index = {ext: i for i, ext in enumerate(self.item_ids)}
        if len(self._index) != n:
            raise ValueError(f"dataset {self.name!r}: external item ids are not unique")

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def pad_index(self) -> int:
        return len(self.item_ids)

    @property
    def num_interactions(self) -> int:
        return sum(len(s) for s in self.sequences)

    def index_of(self, external_id: str) -> int:
        """Internal index of an external item id (KeyError names the id when unknown)."""
        try:
            return self._index[str(external_id)]
        except KeyError:
            raise KeyError(f"unknown item id {external_id!r} in dataset {self.name!r}") from None

    def indices_of(self, external_ids: Iterable[str]) -> list[int]:
        """Internal indices of several external ids, in order (KeyError on the first unknown)."""
        return [self.index_of(e) for e in external_ids]

    def summary(self) -> dict:
        return {
            "dataset": self.name,
            "users": len(self.sequences),
            "items": self.num_items,
            "interactions": self.num_interactions,
            "max_history": self.max_history,
        }


@dataclass
class LeaveOneOutSplit:
    """Leave-one-out by time: last item = test, second-to-last = validation, the rest = train.

    train[u]       the training sequence (all but the last two items) — targets at every position
    valid[u]       (history, target): history = train[u], target = the second-to-last item
    test[u]        (history, target): history = train[u] + [valid target], target = the last item
    Users with fewer than 3 interactions contribute to train only.
    popularity[i]  interaction count of item i in the training sequences (most-popular fallback)
    eval_users[j]  the user position (index into ``SequenceDataset.sequences``) of valid[j]
                   and test[j]; users with fewer than 3 interactions are absent
    cold_items     under the cold-start protocol, the held-out items (see ``test_subset``)
    """

    train: list[list[int]]
    valid: list[tuple[list[int], int]]
    test: list[tuple[list[int], int]]
    popularity: list[int]
    eval_users: list[int] = field(default_factory=list)
    #: items held out of training and validation entirely (the cold-start protocol,
    #: :func:`lite_export.data.split.cold_start_split`); empty in the standard split
    cold_items: list[int] = field(default_factory=list)

    def test_subset(self, which: str) -> list[tuple[list[int], int]]:
        """The test examples whose target is a held-out item (``"cold"``), the others
        (``"warm"``), or all of them (``"all"``)."""
        if which == "all":
            return self.test
        if which not in ("cold", "warm"):
            raise ValueError(f"which must be 'all', 'cold' or 'warm', got {which!r}")
        cold = set(self.cold_items)
        return [ex for ex in self.test if (ex[1] in cold) == (which == "cold")]
