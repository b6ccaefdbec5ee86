"""The quantized catalog (int8 and fp8, per-row scales): exact top-k against ``rank_cpu`` on the
full-precision table, on random and adversarial tables, and the bound it rests on."""

from __future__ import annotations

import pytest
import torch
from kernel_checks import assert_topk_valid, full_scores

from lite_export.kernels import (
    QuantizedCatalog,
    quantize_catalog,
    rank,
    rank_cpu,
    rank_quantized,
)
from lite_export.kernels import quantized as Q

RTOL = 1e-5  # fp32 scores, different summation orders
PRECISIONS = pytest.mark.parametrize("precision", ["int8", "fp8"])


def _inputs(B, N, d, bias=True, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, d, generator=g).to(dtype)
    W = torch.randn(N, d, generator=g).to(dtype)
    b = torch.randn(N, generator=g).to(dtype) if bias else None
    return h, W, b


def assert_same_as_rank_cpu(h, W, b, k, got, exclude=None, **kw):
    """``got`` has rank_cpu's ids on the full-precision table, except where the two fp32 scores
    tie (within RTOL), and rank_cpu's scores within RTOL. Returns the number of tie swaps."""
    ref_v, ref_i = rank_cpu(h, W, b, k, exclude, **kw)
    v, i = got
    assert v.shape == ref_v.shape == i.shape and v.dtype == torch.float32 and i.dtype == torch.int64
    ex = exclude.tolist() if isinstance(exclude, torch.Tensor) else exclude
    full = full_scores(h, W, b, ex)
    assert_topk_valid(v, i, full, k, torch.float32, ex)
    fin = torch.isfinite(ref_v)
    assert torch.equal(torch.isfinite(v), fin)
    scale = full[torch.isfinite(full)].abs().max().clamp(min=1e-30)
    assert torch.allclose(v[fin], ref_v[fin], rtol=RTOL, atol=RTOL * float(scale))
    swap = (i != ref_i) & fin
    if bool(swap.any()):  # only exact fp32 ties (up to summation order) may be ordered otherwise
        a = full.gather(1, i)[swap]
        r = full.gather(1, ref_i)[swap]
        assert torch.allclose(a, r, rtol=RTOL, atol=RTOL * float(scale)), (
            f"{int(swap.sum())} ids differ from rank_cpu without a tie"
        )
    return int(swap.sum())


# --------------------------------------------------------------------------------------------
# quantize_catalog
# --------------------------------------------------------------------------------------------


def test_quantize_per_row_scales_and_rounding():
    _, W, b = _inputs(1, 3000, 40)
    W[::7] *= 1e4
    W[1::7] *= 1e-4
    W[5] = 0
    W[6] = 1e-41  # subnormal row: scale clamped to the smallest normal
    cat = quantize_catalog(W, b)
    assert cat.q.dtype == torch.int8 and cat.q.shape == W.shape
    assert cat.scales.dtype == torch.float32 and cat.scales.shape == (3000,)
    assert cat.bias.dtype == torch.float32 and torch.equal(cat.bias, b)
    assert cat.precision == "int8"
    assert int(cat.q.abs().max()) <= 127
    absmax = W.abs().amax(dim=1)
    normal = absmax > 127 * 2.0**-126
    assert torch.equal(cat.scales[normal], absmax[normal] / 127)
    assert bool((cat.q[normal].abs().amax(dim=1) == 127).all())
    assert cat.scales[5] == 0 and not bool(cat.q[5].any())
    assert cat.scales[6] == 2.0**-126
    err = (W.double() - cat.q.double() * cat.scales.double().unsqueeze(1)).abs()
    assert bool((err <= cat.scales.double().unsqueeze(1) * (0.5 + 127 * 2.0**-24)).all())
    assert cat.nbytes == 3000 * 40 + 3000 * 4 * 2


def test_quantize_fp8_per_row_scales_and_rounding():
    _, W, b = _inputs(1, 3000, 40, seed=1)
    W[::7] *= 1e4
    W[1::7] *= 1e-4
    W[5] = 0
    W[9, :3] = torch.tensor([2.0**-10, 2.0**-10 * 1.01, 3 * 2.0**-10]) * W[9].abs().max() / 448
    cat = quantize_catalog(W, b, "fp8")
    assert cat.q.dtype == torch.float8_e4m3fn and cat.precision == "fp8"
    assert torch.equal(cat.bias, b)
    qf = cat.q.float()
    assert torch.isfinite(qf).all() and float(qf.abs().max()) == 448
    absmax = W.abs().amax(dim=1)
    nz = absmax > 0
    assert torch.equal(cat.scales[nz], absmax[nz] / 448)
    assert cat.scales[5] == 0 and not bool(qf[5].any())
    u = 2.0**-24
    err = (W.double() - qf.double() * cat.scales.double().unsqueeze(1)).abs()
    allowed = cat.scales.double().unsqueeze(1) * (
        (2.0**-4 + 2 * u) * qf.double().abs() + 2.0**-10 * (1 + 2 * u)
    )
    assert bool((err <= allowed).all())
    # e4m3 relative rounding is reached (the bound is not loose by construction)
    assert (
        float((err / cat.scales.double().unsqueeze(1) / qf.double().abs()).nan_to_num().max())
        > 0.05
    )
    assert cat.nbytes == 3000 * 40 + 3000 * 4 * 2


def test_quantize_with_7_bit_weights():
    _, W, b = _inputs(1, 500, 24, seed=2)
    cat = quantize_catalog(W, b, qmax=63)
    assert int(cat.q.abs().max()) == 63
    assert torch.equal(cat.scales, W.abs().amax(dim=1) / 63)
    h = torch.randn(7, 24, generator=torch.Generator().manual_seed(3))
    assert_same_as_rank_cpu(h, W, b, 10, rank_quantized(h, cat, 10, W=W, chunk_items=128))


def test_quantize_half_tables_and_bad_inputs():
    _, W, _ = _inputs(1, 100, 8)
    cat = quantize_catalog(W.to(torch.bfloat16))
    assert cat.bias is None and cat.q.dtype == torch.int8
    assert quantize_catalog(W.half(), precision="fp8").q.dtype == torch.float8_e4m3fn
    W[3, 2] = float("nan")
    with pytest.raises(ValueError, match="row 3"):
        quantize_catalog(W)
    with pytest.raises(ValueError, match="precision must be one of"):
        quantize_catalog(torch.ones(2, 2), precision="int4")
    with pytest.raises(ValueError, match="qmax"):
        quantize_catalog(torch.ones(2, 2), qmax=128)
    with pytest.raises(ValueError, match="int8 only"):
        quantize_catalog(torch.ones(2, 2), precision="fp8", qmax=63)
    with pytest.raises(TypeError, match="int8 or float8_e4m3fn"):
        QuantizedCatalog(q=torch.zeros(2, 2), scales=torch.ones(2))
    with pytest.raises(TypeError, match="needs q as"):
        QuantizedCatalog(
            q=torch.zeros(2, 2, dtype=torch.int8), scales=torch.ones(2), precision="fp8"
        )


@PRECISIONS
def test_catalog_round_trips_through_safetensors(tmp_path, precision):
    st = pytest.importorskip("safetensors.torch")
    _, W, b = _inputs(1, 500, 16)
    cat = quantize_catalog(W, b, precision)
    st.save_file(cat.state_dict(), tmp_path / "cat.safetensors")
    back = QuantizedCatalog.from_state_dict(st.load_file(tmp_path / "cat.safetensors"))
    assert back.precision == precision
    assert torch.equal(back.q.view(torch.int8), cat.q.view(torch.int8))
    assert torch.equal(back.scales, cat.scales) and torch.equal(back.bias, cat.bias)


@PRECISIONS
def test_error_bound_holds(precision):
    """|s_q - s| <= slack @ rows.T + beta, with s in float64 (and so for any fp32 order)."""
    h, W, b = _inputs(64, 4000, 96, seed=3)
    W[::5] *= 300
    cat = quantize_catalog(W, b, precision)
    slack, rows, beta = Q.error_bounds(h, cat)
    assert slack.shape == (64, 1 if precision == "int8" else 2) and rows.shape == (
        4000,
        slack.shape[1],
    )
    if precision == "int8":  # c_d = 0.5 + a little for fp32 rounding
        c = slack[:, 0].double() / h.double().abs().sum(dim=1)
        assert bool(((c > 0.5) & (c < 0.51)).all())
    s = h.double() @ W.double().T + b.double()
    sq = h.double() @ (cat.q.double() * cat.scales.double().unsqueeze(1)).T + b.double()
    e = slack.double() @ rows.double().T + beta.double()
    gap = (sq - s).abs()
    assert bool((gap <= e).all())
    assert float((gap / e).max()) > 0.1  # and not vacuous


# --------------------------------------------------------------------------------------------
# rank_quantized: identical top-k
# --------------------------------------------------------------------------------------------


@PRECISIONS
def test_identical_topk_on_10000_random_queries(precision):
    N, d, k = 8192, 48, 10
    _, W, b = _inputs(1, N, d, seed=11)
    cat = quantize_catalog(W, b, precision)
    g = torch.Generator().manual_seed(12)
    swaps = 0
    for _ in range(5):  # 5 batches of 2000 queries
        h = torch.randn(2000, d, generator=g)
        swaps += assert_same_as_rank_cpu(h, W, b, k, rank_quantized(h, cat, k, W=W))
    assert swaps == 0


SHAPES = [
    # (B, N, d, k, chunk_items, group): one chunk, ragged last chunk, k = N, k > chunk
    (1, 100, 16, 1, None, None),
    (2, 257, 33, 7, 64, None),
    (5, 3000, 70, 10, 1000, 16),
    (16, 129, 8, 100, 50, None),
    (19, 77, 24, 77, None, None),
    (64, 20_000, 64, 10, 4096, None),
    (3, 5000, 128, 200, 1024, 64),
]


@pytest.mark.parametrize(("B", "N", "d", "k", "chunk", "group"), SHAPES)
@pytest.mark.parametrize("bias", [True, False])
@PRECISIONS
def test_rank_quantized_matches_rank_cpu(B, N, d, k, chunk, group, bias, precision):
    h, W, b = _inputs(B, N, d, bias=bias, seed=N + k)
    cat = quantize_catalog(W, b, precision)
    got = rank_quantized(h, cat, k, W=W, chunk_items=chunk, group=group)
    assert_same_as_rank_cpu(h, W, b, k, got)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@PRECISIONS
def test_half_tables(dtype, precision):
    h, W, b = _inputs(8, 3000, 32, dtype=dtype, seed=5)
    cat = quantize_catalog(W, b, precision)
    got = rank_quantized(h, cat, 20, W=W, chunk_items=512)
    assert_same_as_rank_cpu(h, W, b, 20, got)


@PRECISIONS
def test_exact_ties(precision):
    h, W, _ = _inputs(4, 4096, 16, bias=False)
    W[:] = W[:8].repeat(512, 1)
    cat = quantize_catalog(W, precision=precision)
    got = rank_quantized(h, cat, 40, W=W, chunk_items=1024)
    assert_same_as_rank_cpu(h, W, None, 40, got, chunk_items=1024)


def test_near_ties_within_one_quantization_step():
    """Copies of 60 rows moved by up to 0.7 of a step per element: quantized scores tie or
    swap their order against the exact ones, so the order must come from W."""
    B, N, d, k = 32, 6000, 32, 25
    h, _, _ = _inputs(B, 1, d, bias=False, seed=7)
    g = torch.Generator().manual_seed(8)
    q = torch.randint(-126, 127, (60, d), generator=g).float()
    q[:, 0] = 127  # fixes each row's absmax, so its scale
    step = torch.rand(60, 1, generator=g) + 0.01
    u = (torch.rand(N, d, generator=g) - 0.5) * 1.4
    u[:, 0] = 0
    W = (q.repeat(N // 60, 1) + u) * step.repeat(N // 60, 1)
    cat = quantize_catalog(W)
    got = rank_quantized(h, cat, k, W=W, chunk_items=700)
    assert assert_same_as_rank_cpu(h, W, None, k, got) == 0
    # Without W the quantized scores decide: a valid top-k of those, not of the exact ones.
    v, i = rank_quantized(h, cat, k)
    sq = h @ (cat.q.float() * cat.scales.unsqueeze(1)).T
    assert torch.allclose(v, torch.topk(sq, k, dim=1).values, rtol=1e-5, atol=1e-5)
    assert torch.allclose(sq.gather(1, i), v, rtol=1e-5, atol=1e-5)
    assert not torch.equal(i, got[1])


def test_fp8_near_ties_within_one_rounding_interval():
    """fp8 copies of 60 rows moved by up to 0.7 of each element's rounding half-interval: the
    quantized rows are equal, the exact scores differ, so the order must come from W."""
    B, N, d, k = 32, 6000, 32, 25
    h, _, _ = _inputs(B, 1, d, bias=False, seed=17)
    g = torch.Generator().manual_seed(18)
    v = (torch.randn(60, d, generator=g) * 100).clamp(-440, 440).to(torch.float8_e4m3fn).float()
    v[:, 0] = 448  # fixes each row's absmax, so its scale
    e = torch.floor(torch.log2(v.abs().clamp(min=2.0**-6)))
    half = 2.0 ** (e - 5)  # half the spacing of the binade below (a power of two's tighter side)
    V = v.repeat(N // 60, 1)
    u = (torch.rand(N, d, generator=g) - 0.5) * 1.4 * half.repeat(N // 60, 1)
    u[:, 0] = 0
    step = (torch.rand(60, 1, generator=g) + 0.01).repeat(N // 60, 1)
    W = (V + u) * step
    cat = quantize_catalog(W, precision="fp8")
    assert torch.equal(cat.q.float(), V)  # every copy quantizes to its base row
    got = rank_quantized(h, cat, k, W=W, chunk_items=700)
    assert assert_same_as_rank_cpu(h, W, None, k, got) == 0
    v_q, i_q = rank_quantized(h, cat, k)  # the quantized scores alone cannot order the copies
    assert not torch.equal(i_q, got[1])


@PRECISIONS
def test_large_scales_next_to_tiny_ones_and_zero_rows(precision):
    B, N, d, k = 12, 5000, 24, 30
    h, W, b = _inputs(B, N, d, seed=9)
    g = torch.Generator().manual_seed(10)
    W *= (10.0 ** torch.randint(-6, 7, (N, 1), generator=g)).float()
    W[::97] = 0
    b = b * 10.0 ** torch.randint(-6, 4, (N,), generator=g).float()
    cat = quantize_catalog(W, b, precision)
    got = rank_quantized(h, cat, k, W=W, chunk_items=512)
    assert_same_as_rank_cpu(h, W, b, k, got)
    # zero rows win on bias alone
    W[:] = 0
    W[1::2] = -1e6 * W.new_ones(d)
    hp = h.abs()
    cat = quantize_catalog(W, b, precision)
    got = rank_quantized(hp, cat, k, W=W, chunk_items=512)
    assert_same_as_rank_cpu(hp, W, b, k, got)


@PRECISIONS
def test_all_zero_table_ties_everywhere(precision):
    h, _, _ = _inputs(3, 10, 8)
    W = torch.zeros(500, 8)
    cat = quantize_catalog(W, precision=precision)
    v, i = rank_quantized(h, cat, 50, W=W, chunk_items=64)
    assert bool((v == 0).all())
    assert all(len(set(r)) == 50 for r in i.tolist())


@PRECISIONS
def test_k_equals_n_with_exclusion_and_minus_inf_bias(precision):
    B, N, d = 4, 300, 12
    h, W, b = _inputs(B, N, d, seed=4)
    b[::11] = float("-inf")
    ex = torch.randint(0, N, (B, 40), generator=torch.Generator().manual_seed(1))
    cat = quantize_catalog(W, b, precision)
    got = rank_quantized(h, cat, N, ex, W=W, chunk_items=64)
    assert_same_as_rank_cpu(h, W, b, N, got, ex)


@PRECISIONS
def test_exclusion_of_most_of_the_catalog(precision):
    B, N, d, k = 5, 20_000, 16, 10
    h, W, b = _inputs(B, N, d, seed=6)
    g = torch.Generator().manual_seed(2)
    keep = [torch.randperm(N, generator=g)[: 3 + 2 * r].tolist() for r in range(B)]  # 3..11 left
    mask = torch.ones(B, N, dtype=torch.bool)
    for r, row in enumerate(keep):
        mask[r, row] = False
    width = int(mask.sum(1).max())
    ex = torch.full((B, width), -1, dtype=torch.int64)
    for r in range(B):
        ids = mask[r].nonzero().flatten()
        ex[r, : ids.numel()] = ids[torch.randperm(ids.numel(), generator=g)]
    cat = quantize_catalog(W, b, precision)
    v, i = rank_quantized(h, cat, k, ex, W=W, chunk_items=2048)
    assert_same_as_rank_cpu(h, W, b, k, (v, i), ex)
    for r, row in enumerate(keep):
        n = min(k, len(row))
        assert set(i[r, :n].tolist()) <= set(row) and torch.isfinite(v[r, :n]).all()
        assert torch.isneginf(v[r, n:]).all()
        assert len(set(i[r].tolist())) == k


def test_exclude_list_format_and_rank_hook():
    h, W, b = _inputs(3, 1000, 16)
    cat = quantize_catalog(W, b)
    ex = [[1, 2], [3], []]
    v1, i1 = rank(h, W, k=10, exclude=ex, catalog=cat)
    v2, i2 = rank_quantized(h, cat, 10, ex, W)
    assert torch.equal(v1, v2) and torch.equal(i1, i2)
    assert_same_as_rank_cpu(h, W, b, 10, (v1, i1), ex)
    assert torch.equal(rank(h, W, b, 10, ex)[1], rank_cpu(h, W, b, 10, ex)[1])  # unchanged
    with pytest.raises(ValueError, match="b=None"):
        rank(h, W, b, 10, catalog=cat)
    with pytest.raises(ValueError, match="'auto', 'cpu' or 'filter'"):
        rank(h, W, k=10, catalog=cat, method="torch")
    with pytest.raises(TypeError, match="QuantizedCatalog"):
        rank(h, W, k=10, catalog=W)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_rank_hook_on_cuda_runs_the_fused_quantized_path():  # pragma: no cover - GPU only
    h, W, b = _inputs(2, 100, 8)
    cat = quantize_catalog(W.cuda(), b.cuda())
    v, i = rank(h.cuda(), W.cuda(), k=5, catalog=cat)
    assert torch.equal(i.cpu(), rank_cpu(h, W, b, 5)[1])


@PRECISIONS
def test_candidate_pool_never_short_and_holds_the_top_k(monkeypatch, precision):
    """The pool handed to the re-rank has >= min(k, items left) entries and the exact top-k."""
    seen = []
    orig = Q._finish

    def spy(pv, pi, finite, k, N, B, dev):
        seen.append((pi.clone(), finite.clone(), k))
        return orig(pv, pi, finite, k, N, B, dev)

    monkeypatch.setattr(Q, "_finish", spy)
    cases = [(16, 3000, 32, 10, None), (4, 500, 8, 500, None), (8, 2000, 16, 50, [[1, 2, 3]] * 8)]
    for B, N, d, k, ex in cases:
        h, W, b = _inputs(B, N, d, seed=N)
        W[::3] *= 50
        cat = quantize_catalog(W, b, precision)
        seen.clear()
        rank_quantized(h, cat, k, ex, W=W, chunk_items=256)
        pi, finite, _ = seen[0]
        left = N - (0 if ex is None else len(set(ex[0])))
        assert bool((finite.sum(1) >= min(k, left)).all())
        top = rank_cpu(h, W, b, k, ex)[1]
        for r in range(B):
            assert set(top[r].tolist()) <= set(pi[r][finite[r]].tolist())


def test_bad_inputs():
    h, W, b = _inputs(2, 50, 8)
    cat = quantize_catalog(W, b)
    with pytest.raises(TypeError, match="QuantizedCatalog"):
        rank_quantized(h, W, 5)
    with pytest.raises(ValueError, match=r"k must be in \[1, N=50\]"):
        rank_quantized(h, cat, 51, W=W)
    with pytest.raises(ValueError, match="d=8"):
        rank_quantized(torch.zeros(2, 7), cat, 5)
    with pytest.raises(ValueError, match="full-precision table"):
        rank_quantized(h, cat, 5, W=W[:10])
