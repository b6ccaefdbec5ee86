"""The cold-start protocol: a seeded fraction of the items held out of training entirely."""

from __future__ import annotations

import random

import pytest

from lite_export.data import cold_start_split, leave_one_out
from lite_export.data.synthetic import make_synthetic
from tests.data.test_data_split_batching import _dataset


def test_cold_start_split_by_hand(monkeypatch):
    # 10 items, fraction 0.2 -> 2 held out; the draw is random.Random(seed).sample
    ds = _dataset([[0, 1, 2, 3, 4], [5, 6, 7], [0, 6, 8, 9], [1, 2]], num_items=10)
    cold = sorted(random.Random(3).sample(range(10), 2))
    split = cold_start_split(ds, 0.2, seed=3)
    assert split.cold_items == cold
    held = set(cold)
    for u, seq in enumerate(ds.sequences):
        w = [i for i in seq[:-1] if i not in held]
        if len(seq) >= 3 and len(w) >= 2:
            j = split.eval_users.index(u)
            assert split.valid[j] == (w[:-1], w[-1])
            assert split.test[j] == (w, seq[-1])
            assert split.train[u] == w[:-1]
        else:
            assert u not in split.eval_users
            assert split.train[u] == [i for i in seq if i not in held]
    assert not held & {i for seq in split.train for i in seq}
    assert not held & {t for _, t in split.valid}
    assert not held & {i for h, _ in split.test for i in h}
    assert all(split.popularity[i] == 0 for i in held)


def test_cold_and_warm_targets_partition_the_test_users():
    ds = make_synthetic(num_users=300, num_items=120, seed=1)
    split = cold_start_split(ds, 0.1, seed=0)
    assert len(split.cold_items) == 12
    cold, warm = split.test_subset("cold"), split.test_subset("warm")
    assert cold and warm and len(cold) + len(warm) == len(split.test)
    assert all(t in split.cold_items for _, t in cold)
    assert all(t not in split.cold_items for _, t in warm)
    assert split.test_subset("all") == split.test
    assert cold_start_split(ds, 0.1, seed=0).cold_items == split.cold_items  # seeded
    assert cold_start_split(ds, 0.1, seed=1).cold_items != split.cold_items
    assert leave_one_out(ds).cold_items == []
    with pytest.raises(ValueError, match="'all', 'cold' or 'warm'"):
        split.test_subset("new")


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 0.001])
def test_cold_start_split_refuses_bad_fractions(fraction):
    ds = _dataset([[0, 1, 2, 3]], num_items=6)
    with pytest.raises(ValueError, match="fraction|held-out"):
        cold_start_split(ds, fraction)
