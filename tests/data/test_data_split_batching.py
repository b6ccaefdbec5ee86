"""Leave-one-out split and the padding / batching helpers."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from lite_export.data import (
    IGNORE_INDEX,
    EvalExamples,
    SequenceDataset,
    TrainWindows,
    collate_eval,
    collate_train,
    leave_one_out,
    pad_histories,
)


def _dataset(sequences: list[list[int]], num_items: int = 6) -> SequenceDataset:
    ids = [f"x{i}" for i in range(num_items)]
    return SequenceDataset(
        name="hand",
        item_ids=ids,
        item_titles=ids,
        item_texts=ids,
        user_ids=[f"u{u}" for u in range(len(sequences))],
        sequences=sequences,
    )


def test_leave_one_out_exact():
    ds = _dataset([[0, 1, 2, 3, 4], [5, 1], [2, 3, 5], [4]])
    split = leave_one_out(ds)
    assert split.train == [[0, 1, 2], [5, 1], [2], [4]]
    assert split.valid == [([0, 1, 2], 3), ([2], 3)]
    assert split.test == [([0, 1, 2, 3], 4), ([2, 3], 5)]
    assert split.eval_users == [0, 2]
    # counted over train only: 0,1,2 | 5,1 | 2 | 4
    assert split.popularity == [1, 2, 2, 0, 1, 1]
    assert ds.sequences[0] == [0, 1, 2, 3, 4]  # not modified


def test_leave_one_out_histories_are_independent_lists():
    split = leave_one_out(_dataset([[0, 1, 2, 3]]))
    split.valid[0][0].append(5)
    assert split.train[0] == [0, 1]


def test_pad_histories():
    out = pad_histories([[1, 2, 3, 4, 5], [7], []], max_len=3, pad_index=9)
    assert out.dtype == torch.long
    assert out.tolist() == [[3, 4, 5], [9, 9, 7], [9, 9, 9]]
    # L shrinks to the longest history when that is shorter than max_len
    assert pad_histories([[1], [2, 3]], max_len=10, pad_index=0).tolist() == [[0, 1], [2, 3]]
    assert pad_histories([[]], max_len=4, pad_index=5).tolist() == [[5]]
    assert pad_histories([], max_len=4, pad_index=5).shape == (0, 1)
    with pytest.raises(ValueError, match="max_len"):
        pad_histories([[1]], max_len=0, pad_index=5)


def test_train_windows_shifted_by_one():
    seqs = [[0, 1, 2, 3, 4, 5], [3], [4, 2], []]
    windows = TrainWindows(seqs, max_len=3, pad_index=6)
    assert len(windows) == 2
    assert windows.users == [0, 2]
    assert windows[0] == ([2, 3, 4], [3, 4, 5])
    assert windows[1] == ([4], [2])
    batch = collate_train([windows[0], windows[1]], pad_index=6)
    assert batch["item_ids"].tolist() == [[2, 3, 4], [6, 6, 4]]
    assert batch["targets"].tolist() == [[3, 4, 5], [IGNORE_INDEX, IGNORE_INDEX, 2]]
    # every real target is the input one position later in the original sequence
    ids, tg = batch["item_ids"], batch["targets"]
    assert torch.equal(ids[0, 1:], tg[0, :-1])
    loader = DataLoader(windows, batch_size=2, collate_fn=windows.collate)
    assert torch.equal(next(iter(loader))["targets"], tg)
    with pytest.raises(ValueError, match="same length"):
        collate_train([([1, 2], [3])], pad_index=0)


def test_eval_examples():
    pairs = [([0, 1, 2, 3], 4), ([5], 0)]
    ex = EvalExamples(pairs, max_len=2, pad_index=6)
    assert len(ex) == 2 and ex[1] == ([5], 0)
    batch = ex.collate([ex[0], ex[1]])
    assert batch["item_ids"].tolist() == [[2, 3], [6, 5]]
    assert batch["targets"].tolist() == [4, 0]
    assert batch["seen"].tolist() == [[0, 1, 2, 3], [6, 6, 6, 5]]  # full histories
    assert torch.equal(collate_eval(pairs, 2, 6)["item_ids"], batch["item_ids"])
