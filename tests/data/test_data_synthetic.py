"""The built-in synthetic catalog: determinism, shape, and that it rewards sequence models."""

from __future__ import annotations

import time

import numpy as np
import pytest

from lite_export.data import leave_one_out, load_dataset, make_synthetic


@pytest.fixture(scope="module")
def default():
    return make_synthetic()


def test_shape_and_text(default):
    ds = default
    assert ds.name == "synthetic"
    assert ds.num_items >= 1000
    assert len(ds.sequences) == 2000
    assert ds.item_ids[0] == "S0001" and ds.item_ids[-1] == "S1000"
    assert len(set(ds.item_ids)) == ds.num_items
    assert ds.max_history == 50
    lengths = [len(s) for s in ds.sequences]
    assert min(lengths) >= 8 and max(lengths) <= 60
    assert all(len(set(s)) == len(s) for s in ds.sequences)  # no repeats
    assert all(0 <= i < ds.num_items for s in ds.sequences for i in s)
    for title, text, meta in zip(ds.item_titles, ds.item_texts, ds.item_meta, strict=True):
        assert 1 <= len(meta["genres"]) <= 3
        assert text == f"Title: {title}. Genres: {', '.join(meta['genres'])}."
    genres = {g for m in ds.item_meta for g in m["genres"]}
    assert 15 <= len(genres) <= 20
    assert len(set(ds.item_titles)) > 500  # readable and varied
    assert ds.index_of("S0042") == 41


def test_deterministic(default):
    again = make_synthetic()
    assert again.sequences == default.sequences
    assert again.item_texts == default.item_texts
    assert again.user_ids == default.user_ids
    other = make_synthetic(seed=1)
    assert other.sequences != default.sequences
    assert other.item_texts != default.item_texts


def test_fast():
    start = time.perf_counter()
    make_synthetic(seed=3)
    assert time.perf_counter() - start < 1.0


def test_options_and_errors():
    ds = make_synthetic(num_items=50, num_users=30, seed=2, min_len=3, max_len=10, max_history=5)
    assert ds.num_items == 50 and len(ds.sequences) == 30 and ds.max_history == 5
    assert all(3 <= len(s) <= 10 for s in ds.sequences)
    with pytest.raises(ValueError, match="max_len"):
        make_synthetic(num_items=20, max_len=30)
    with pytest.raises(ValueError, match="p_next"):
        make_synthetic(p_next=0.9, p_neighbor=0.2)
    assert load_dataset("synthetic", num_items=1200).num_items == 1200


def _ndcg_recall_at_10(scores: np.ndarray, pairs) -> tuple[float, float]:
    """Full ranking, history masked, ties pessimistic."""
    scores = scores.astype(np.float64).copy()
    targets = np.array([t for _, t in pairs])
    for row, (history, _) in enumerate(pairs):
        scores[row, history] = -np.inf
    target_scores = scores[np.arange(len(pairs)), targets]
    rank = (scores >= target_scores[:, None]).sum(axis=1) - 1
    hit = rank < 10
    return float((hit / np.log2(rank + 2)).mean()), float(hit.mean())


def test_sequence_model_beats_most_popular(default):
    """A last-item transition-count model must clearly beat most-popular on the test split."""
    split = leave_one_out(default)
    n = default.num_items
    pop = np.array(split.popularity, dtype=np.float64)
    bigram = np.zeros((n, n))
    for seq in split.train:
        np.add.at(bigram, (seq[:-1], seq[1:]), 1.0)
    last = [h[-1] for h, _ in split.test]
    pop_ndcg, pop_recall = _ndcg_recall_at_10(np.tile(pop, (len(last), 1)), split.test)
    big_ndcg, big_recall = _ndcg_recall_at_10(bigram[last] + 1e-3 * pop / pop.max(), split.test)
    assert 0.02 <= pop_ndcg <= 0.07
    assert big_ndcg >= 4 * pop_ndcg
    assert big_recall > pop_recall
