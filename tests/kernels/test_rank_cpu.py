"""The CPU ranking path and the ``rank`` dispatcher against the torch reference."""

from __future__ import annotations

import pytest
import torch
from kernel_checks import assert_topk_valid, full_scores

from lite_export.kernels import rank, rank_cpu, topk_projection_reference
from lite_export.kernels.reference import normalize_exclude


def _inputs(B, N, d, dtype, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, d, generator=g).to(dtype)
    W = torch.randn(N, d, generator=g).to(dtype)
    b = torch.randn(N, generator=g).to(dtype) if bias else None
    return h, W, b


SHAPES = [
    # (B, N, d, k, chunk_items): chunks not a multiple of the block-max group, a last short
    # chunk, k = N, one chunk only, k bigger than a chunk.
    (1, 100, 16, 1, None),
    (2, 257, 33, 7, 64),
    (5, 3000, 70, 10, 1000),
    (16, 129, 8, 100, 50),
    (19, 77, 24, 77, None),
    (64, 20_000, 64, 10, 4096),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize(("B", "N", "d", "k", "chunk"), SHAPES)
def test_rank_cpu_matches_reference(B, N, d, k, chunk, dtype):
    h, W, b = _inputs(B, N, d, dtype, seed=N)
    scores, ids = rank_cpu(h, W, b, k, chunk_items=chunk)
    assert_topk_valid(scores, ids, full_scores(h, W, b, None), k, dtype)


@pytest.mark.parametrize("bias", [True, False])
def test_rank_cpu_exclusion(bias):
    B, N, d, k = 6, 5000, 16, 20
    h, W, b = _inputs(B, N, d, torch.float32, bias=bias)
    top = torch.topk(full_scores(h, W, b, None), 30, dim=1).indices
    ex = torch.cat([top, torch.full((B, 3), -1), torch.full((B, 1), N)], dim=1)
    ex = ex[:, torch.randperm(ex.shape[1])].to(torch.int32)
    scores, ids = rank_cpu(h, W, b, k, ex, chunk_items=700)
    assert_topk_valid(scores, ids, full_scores(h, W, b, ex.tolist()), k, torch.float32, ex.tolist())


def test_rank_cpu_all_but_k_excluded_and_list_format():
    B, N, d, k = 3, 300, 8, 5
    h, W, b = _inputs(B, N, d, torch.float32)
    keep = [sorted(torch.randperm(N)[:k].tolist()) for _ in range(B)]
    exclude = [[i for i in range(N) if i not in set(row)] for row in keep]
    scores, ids = rank_cpu(h, W, b, k, exclude, chunk_items=64)
    assert [sorted(r) for r in ids.tolist()] == keep
    assert bool(torch.isfinite(scores).all())


def test_rank_cpu_ties_give_valid_distinct_ids():
    h, W, _ = _inputs(4, 4096, 16, torch.float32, bias=False)
    W[:] = W[:8].repeat(512, 1)
    scores, ids = rank_cpu(h, W, None, 40, chunk_items=1024)
    assert_topk_valid(scores, ids, full_scores(h, W, None, None), 40, torch.float32)


def test_rank_cpu_bias_dominated_and_minus_inf_scores():
    """Bias bounds prune blocks: a bias 100x the scores, -inf entries and negative scores."""
    B, N, d, k = 4, 6000, 16, 25
    h, W, b = _inputs(B, N, d, torch.float32)
    b = b * 100 - 50
    b[::3] = float("-inf")
    scores, ids = rank_cpu(h, W, b, k, chunk_items=256, group=16)
    assert_topk_valid(scores, ids, full_scores(h, W, b, None), k, torch.float32)


def test_reference_masks_history():
    h, W, b = _inputs(2, 50, 8, torch.float32)
    vals, ids = topk_projection_reference(h, W, b, 50, [[0, 1, -1], [49, 49]])
    assert torch.isneginf(vals[0, -2:]).all() and set(ids[0, -2:].tolist()) == {0, 1}
    assert torch.isneginf(vals[1, -1]) and ids[1, -1].item() == 49


def test_normalize_exclude_format():
    ex = normalize_exclude(
        torch.tensor([[5, -1, 2, 99], [3, 3, 100, -7]]), 2, 10, torch.device("cpu")
    )
    big = 2**62
    assert ex.tolist() == [[2, 5, big, big, big], [3, 3, big, big, big]]
    assert normalize_exclude([[], []], 2, 10, torch.device("cpu")) is None
    assert normalize_exclude(None, 2, 10, torch.device("cpu")) is None


def test_rank_dispatches_cpu_tensors_to_rank_cpu():
    h, W, b = _inputs(3, 1000, 16, torch.float32)
    s1, i1 = rank(h, W, b, 10, [[1, 2], [3], []])
    s2, i2 = rank_cpu(h, W, b, 10, [[1, 2], [3], []])
    assert torch.equal(s1, s2) and torch.equal(i1, i2)


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        ((torch.zeros(2, 4), torch.zeros(10, 5), None, 3), ValueError, r"d=4.*d=5.*must match"),
        (
            (torch.zeros(2, 4), torch.zeros(10, 4), None, 11),
            ValueError,
            r"k must be in \[1, N=10\]",
        ),
        (
            (torch.zeros(2, 4), torch.zeros(10, 4), torch.zeros(9), 3),
            ValueError,
            r"b must be \[N=10\]",
        ),
        (
            (torch.zeros(2, 4, dtype=torch.int32), torch.zeros(10, 4), None, 3),
            TypeError,
            r"float32",
        ),
    ],
)
def test_rank_cpu_bad_inputs(args, exc, match):
    with pytest.raises(exc, match=match):
        rank_cpu(*args)
