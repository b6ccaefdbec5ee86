"""The catalog in shards, in one process: the split, the merge, and recommendations equal to the
unsharded engines'."""

from __future__ import annotations

import numpy as np
import pytest

from lite_export.cluster.shards import CatalogShard, merge_topk, shard_bounds
from tests.cluster.topk_check import assert_same_topk


def test_shard_bounds_cover_the_catalog_with_sizes_one_apart():
    assert shard_bounds(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert shard_bounds(5, 5) == [(i, i + 1) for i in range(5)]
    assert shard_bounds(7, 1) == [(0, 7)]
    with pytest.raises(ValueError, match="at least one item; use --shards 4 or fewer"):
        shard_bounds(4, 5)
    with pytest.raises(ValueError, match="positive integer"):
        shard_bounds(4, 0)


def test_merge_takes_the_best_scores_and_breaks_ties_by_the_lower_id():
    a = (np.array([[5.0, 1.0], [2.0, 2.0]]), np.array([[3, 0], [1, 2]]))
    b = (np.array([[4.0, 1.0], [2.0, -np.inf]]), np.array([[7, 6], [0, 5]]))
    scores, ids = merge_topk([a, b], 3)
    assert ids.tolist() == [[3, 7, 0], [0, 1, 2]]
    assert scores.tolist() == [[5.0, 4.0, 1.0], [2.0, 2.0, 2.0]]
    with pytest.raises(ValueError, match="fewer than k=5"):
        merge_topk([a], 5)


def test_a_shard_excludes_only_its_own_items_and_returns_global_ids():
    import torch

    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((12, 4), np.float32), rng.standard_normal(12).astype(np.float32)
    h = rng.standard_normal((3, 4)).astype(np.float32)
    exclude = np.array([[0, 5, 12], [6, 7, 12], [12, 12, 12]])  # 12: the pad
    full = h @ W.T + b
    for r, row in enumerate(exclude):
        full[r, row[row < 12]] = -np.inf
    shard = CatalogShard(torch.from_numpy(W[4:9]), torch.from_numpy(b[4:9]), 4, 12, "cpu")
    scores, ids = shard.topk(h, exclude, 3)
    for r in range(3):
        want = np.argsort(-full[r, 4:9], kind="stable")[:3] + 4
        assert ids[r].tolist() == want.tolist()
        np.testing.assert_allclose(scores[r], full[r, want], rtol=1e-6, atol=1e-6)
    assert 5 not in ids[0] and not {6, 7} & set(ids[1])
    small = CatalogShard(torch.from_numpy(W[:2]), torch.from_numpy(b[:2]), 0, 12, "cpu")
    assert small.topk(h, None, 10)[1].shape == (3, 2)  # k capped at the shard's size


@pytest.mark.parametrize("shards", [1, 2, 3])
@pytest.mark.parametrize("encoder", ["onnxruntime", "torch"])
def test_sharded_engine_recommends_what_the_unsharded_engine_does(tiny_artifact, shards, encoder):
    import lite_export

    ref = lite_export.load(tiny_artifact, engine="onnxruntime")
    eng = lite_export.load(tiny_artifact, engine="sharded", shards=shards, encoder=encoder)
    assert len(eng.info["shards"]) == shards and eng.info["encoder"] == encoder
    ids = ref.catalog.ids
    histories = [ids[:5], ids[3:4], [], ids[7:30], ids[1:2] * 3]
    for exclude_seen in (True, False):
        want = ref.recommend(histories, k=20, exclude_seen=exclude_seen)
        got = eng.recommend(histories, k=20, exclude_seen=exclude_seen)
        assert_same_topk(got, want)
        assert got.fallback == want.fallback
