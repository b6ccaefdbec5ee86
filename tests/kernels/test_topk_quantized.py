"""The fused kernel's quantized filter path (``fused.topk_quantized``): the ids of ranking the
full-precision table, from upper bounds read off an int8 or fp8 catalog.

On CPU it runs under ``TRITON_INTERPRET=1`` (conftest.py) with tiny shapes; on a CUDA machine the
same tests launch the compiled kernel.
"""

from __future__ import annotations

import os

import pytest
import torch
from kernel_checks import assert_topk_valid, full_scores

tp = pytest.importorskip("lite_export.kernels.fused", reason="needs triton")

from lite_export.kernels import quantize_catalog, rank, rank_cpu  # noqa: E402
from lite_export.kernels import quantized as Q  # noqa: E402

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
DEVICE = "cuda" if torch.cuda.is_available() and not INTERPRETED else "cpu"
PRECISIONS = pytest.mark.parametrize("precision", ["int8", "fp8"])
RTOL = 1e-5


def _inputs(B, N, d, dtype=torch.float32, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, d, generator=g).to(dtype)
    W = torch.randn(N, d, generator=g).to(dtype)
    b = torch.randn(N, generator=g) if bias else None
    return h.to(DEVICE), W.to(DEVICE), None if b is None else b.to(DEVICE)


def _check(h, W, b, k, got, exclude=None):
    """``got`` is a valid top-k of the full-precision scores, with rank_cpu's ids except where
    scores tie within fp32 rounding."""
    v, i = got
    ex = exclude.tolist() if isinstance(exclude, torch.Tensor) else exclude
    full = full_scores(h, W, b, ex)
    assert_topk_valid(v, i, full, k, torch.float32, ex)
    ref_v, ref_i = rank_cpu(h.float().cpu(), W.float().cpu(), None if b is None else b.cpu(), k, ex)
    scale = float(full[torch.isfinite(full)].abs().max())
    swap = i.cpu() != ref_i
    if bool(swap.any()):
        a, r = full.gather(1, i.cpu())[swap], full.gather(1, ref_i)[swap]
        assert torch.allclose(a, r, rtol=0, atol=RTOL * scale), "ids differ without a tie"


@PRECISIONS
@pytest.mark.parametrize(
    ("B", "N", "d", "k"), [(3, 2000, 32, 10), (17, 3001, 48, 7), (2, 777, 16, 1)]
)
def test_same_ids_as_the_full_precision_ranking(precision, B, N, d, k):
    h, W, b = _inputs(B, N, d, seed=N)
    cat = quantize_catalog(W, b, precision)
    before = dict(tp.STATS)
    got = tp.topk_quantized(h, cat, W, k, sample_stride=8)
    _check(h, W, b, k, got)
    assert tp.STATS["quantized_calls"] == before["quantized_calls"] + 1
    assert torch.equal(rank(h, W, k=k, catalog=cat, method="filter")[1], got[1])


@PRECISIONS
def test_exclusion_and_a_half_table(precision):
    h, W, b = _inputs(6, 2500, 32, dtype=torch.bfloat16, seed=3)
    g = torch.Generator().manual_seed(4)
    ex = torch.randint(0, 2500, (6, 40), generator=g).to(DEVICE)
    ex[:, 30:] = -1
    cat = quantize_catalog(W, b, precision)
    got = tp.topk_quantized(h, cat, W, 12, ex, sample_stride=8)
    _check(h, W, b, 12, got, ex)


def test_rows_the_bound_cannot_settle_fall_back_to_the_exact_path():
    """Candidates = k on near-duplicate rows: the certificate fails for most rows, which the
    exact path re-ranks on W; the answers stay exact."""
    B, N, d, k = 4, 2000, 32, 10
    h, W, b = _inputs(B, N, d, seed=5)
    W = W[:20].repeat(N // 20, 1) + 1e-3 * W
    cat = quantize_catalog(W, b)
    before = tp.STATS["quantized_fallback_rows"]
    got = tp.topk_quantized(h, cat, W, k, candidates=k, sample_stride=8)
    assert tp.STATS["quantized_fallback_rows"] > before
    _check(h, W, b, k, got)


def test_the_gpu_bound_allows_for_tensor_core_rounding():
    h, W, b = _inputs(5, 100, 64, seed=6)
    cat = quantize_catalog(W, b)
    cpu, gpu = Q._slack(h, cat), Q._slack(h, cat, dot_unit=Q.GPU_DOT_UNIT)
    assert bool((gpu > cpu).all()) and bool((gpu < cpu * 1.01).all())


def test_bad_inputs():
    h, W, b = _inputs(2, 500, 16)
    cat = quantize_catalog(W, b)
    with pytest.raises(TypeError, match="QuantizedCatalog"):
        tp.topk_quantized(h, W, W, 5)
    with pytest.raises(ValueError, match="quantized from"):
        tp.topk_quantized(h, cat, W[:100], 5)
    with pytest.raises(ValueError, match="'auto', 'cpu' or 'filter'"):
        rank(h, W, k=5, catalog=cat, method="exact")


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="needs a CUDA GPU (compiled Triton)")
@PRECISIONS
def test_gpu_bf16_table_at_a_real_size(precision):  # pragma: no cover - GPU only
    """200k x 256 bf16 on the GPU's tensor cores: the same ids as the fp32 ranking."""
    h, W, b = _inputs(16, 200_000, 256, dtype=torch.bfloat16, seed=11)
    cat = quantize_catalog(W, b, precision)
    ex = torch.randint(0, 200_000, (16, 50), device=DEVICE)
    before = tp.STATS["quantized_fallback_rows"]
    got = rank(h, W, k=100, exclude=ex, catalog=cat)
    _check(h, W, b, 100, got, ex)
    assert tp.STATS["quantized_fallback_rows"] - before <= 16
