"""Fused projection + top-K ranking in OpenAI Triton: ``top-k(h @ W.T + b)`` without ``[B, N]``.

Ranking the whole catalog is the step whose cost grows with the business: every new item adds a
row to the projection head. Public systems write the ``[B, N]`` score matrix to memory and then
select; this kernel streams ``W`` once and selects on the fly, so the scores never leave the chip.

Two paths
---------
``method="filter"`` (the default from ``FILTER_MIN_N`` items) bounds each row first: every 64th
item is scored (cuBLAS on a strided view) and the row's 16th best sampled score becomes its bound
(:func:`sample_bound`). Stage 1 then streams ``W`` once with ``FILTER=True``: each score at or
above the bound (or NaN) is appended, packed, to a ``[B, cap]`` buffer at a position taken from a
per-row relaxed atomic counter -- a compare per score and an atomic for ~1 in 1000. Stage 2 is
``torch.topk`` over the filled part. A row is exact when at least ``k`` items passed (its top k
are then all in the buffer) and none overflowed; other rows go to the exact path, so no result
depends on the sample. On CUDA the whole call is captured once per padded shape as a CUDA graph
(:func:`_filter_graphed`): its GPU work is a few hundred microseconds, about what Python needs to
issue its ops one by one.

``method="exact"`` keeps a running top-K per program, as described next.

Design (exact path)
-------------------
*Stage 1* (``_topk_projection_stage1_kernel``), grid ``(cdiv(B, BLOCK_B), chunks)``: program
``(i, c)`` owns query rows ``[i*BLOCK_B, (i+1)*BLOCK_B)`` and a chunk of consecutive item tiles.
For each tile of ``BLOCK_N`` items it computes the ``[BLOCK_B, BLOCK_N]`` score tile
``h @ W_tile.T`` with ``tl.dot`` (fp32 accumulate; ``BLOCK_B >= 16``, tl.dot's minimum, rows
``>= B`` masked) -- or, for ``BLOCK_B <= 2`` (B <= 2, or k > 512), with a broadcast multiply + sum
on the CUDA cores, so no padded query rows waste selection work and a 1024-long list still fits --
adds the bias, sets excluded items to ``-inf``, and folds the tile into a running per-row top
``K_PAD`` held in registers. Then it writes its best ``k`` per row to ``cand [B, chunks, k]``.

*Selection.* Scores are packed with their item index into one int64 (below) so the values-only
``tl.topk``/``tl.sort`` carry the index. The running list ``best [BLOCK_B, K_PAD]`` is kept
sorted ascending, so ``best[:, 0]`` is each row's admission threshold. A tile is first tested
against the thresholds (one row-max and compare); only if some element beats them is it reduced
with ``tl.topk`` (or sorted, when ``BLOCK_N <= K_PAD``) to a descending ``[BLOCK_B, K_PAD]``
list, merged with ``best`` by Batcher's half-cleaner (elementwise max of an ascending and a
descending list holds the top ``K_PAD`` of both, as a bitonic sequence) and re-sorted with
``tl.bitonic_merge`` (``log2 K_PAD`` compare-exchange steps).

*Stage 2* merges the ``B x chunks x k`` candidates with ``torch.topk`` on the packed int64
(values carry index and tie order, so no gather is needed) and unpacks scores and ids with a few
elementwise ops. A second Triton kernel would need one program per row looping over all
candidates (serial for small B); ``torch.topk`` is a radix select spread over the GPU, and the
candidate set is small (e.g. B=16, k=100: 16 x ~500 x 100 int64 = 6 MB beside a 2 GB ``W``).

*Chunks.* ``chunks`` is chosen so that ``cdiv(B, BLOCK_B) * chunks`` is about
``_WAVES x #SMs`` (the chip stays full when B is 1), but each chunk keeps at least
``_MIN_ITEMS_PER_K * K_PAD`` items so large ``k`` does not turn the candidate list into a copy
of the score matrix: large k relative to the tile gives fewer, bigger chunks.

Packing (order-preserving, ties to the lower index)
---------------------------------------------------
``key32 = bits(score) if bits >= 0 else bits ^ 0x7FFFFFFF`` (int32 order == float order, with
``-0.0 < +0.0``; NaN sorts above ``+inf`` like ``torch.topk`` for positive NaN) and
``packed = key32 << 32 | (0x7FFFFFFF - index)``. Item indices need 31 bits (N <= 2**31); among
equal scores the larger packed value, i.e. the lower index, wins, so results are deterministic.
Padding slots (items ``>= N``) hold ``SENTINEL`` = ``-(2**63 - 1)``, below every real score
including ``-inf``, so they never reach the output while ``k <= N``.

Exclusion (format in :mod:`lite_export.kernels.reference`)
-------------------------------------------------------------
The wrapper turns ``exclude`` into int64 ``[B, H + 1]``, each row sorted ascending with padding
and one terminating column set to ``2**62``. A program counts, per row, the excluded ids below its
chunk start (one pass over the row), then walks the row with a cursor: for each tile it compares
the row's next excluded id with the tile end and, only while some row has one inside the tile,
marks it and advances. No ``[B, N]`` mask exists anywhere; a tile costs one ``[BLOCK_B]`` compare
when it holds no history item.

On CPU the kernel runs only under ``TRITON_INTERPRET=1``, which must be set before this module
is imported (``@triton.jit`` reads it at decoration). In the interpreter ``tl.dot`` on bf16
returns garbage, so operands are cast to fp32 there (decided at launch from ``os.environ``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace

import torch
import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources

from lite_export.kernels import dispatch as _dispatch
from lite_export.kernels.graph_cache import MAX_GRAPHS, GraphCache
from lite_export.kernels.reference import (
    EXCLUDE_SENTINEL,
    ExcludeLike,
    check_ranking_inputs,
    normalize_exclude,
)

__all__ = [
    "MAX_K",
    "KernelConfig",
    "LaunchPlan",
    "get_autotune_configs",
    "block_b_for",
    "heuristic_config",
    "graph_buckets",
    "plan_launch",
    "reserve_graph_cache",
    "set_graph_cache_size",
    "topk_projection",
    "topk_projection_static",
    "topk_quantized",
    "tune_topk_projection",
]

#: Largest k the kernel accepts (the running list is K_PAD = next_pow2(k) int64 per row).
MAX_K = 1024

#: Programs per SM the chunk count aims for: enough resident programs to keep several W tiles in
#: flight per SM when B is small (no measurement yet: first GPU run decides, see bench).
_WAVES = 4
#: Each chunk holds at least this many K_PAD's worth of items, so candidates stay <= 1/4 of items.
_MIN_ITEMS_PER_K = 4


# --------------------------------------------------------------------------------------------
# Kernel
# --------------------------------------------------------------------------------------------


@triton.jit
def _pack(scores, idx):
    """Order-preserving int64 of (fp32 score, int64 index); equal scores: lower index larger."""
    bits = scores.to(tl.int32, bitcast=True)
    key = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    return (key.to(tl.int64) << 32) | (0x7FFFFFFF - idx)


@triton.jit
def _merge_tile(best, packed, K_PAD: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr):
    """Fold a packed tile [BLOCK_B, BLOCK_N] into the ascending running list best [BLOCK_B, K_PAD].

    Returns the new list and its per-row minimum (the admission threshold).
    """
    if K_PAD == 1:  # k=1: a running row max (the bitonic helpers need >= 2 elements per row)
        merged = tl.maximum(best, tl.max(packed, axis=1, keep_dims=True))
        thr = tl.max(merged, axis=1)
    elif BLOCK_N >= K_PAD:
        if BLOCK_N > K_PAD:
            cand = tl.topk(packed, K_PAD, dim=1)  # descending [BLOCK_B, K_PAD]
        else:
            cand = tl.sort(packed, dim=1, descending=True)
        merged = tl.bitonic_merge(tl.maximum(best, cand), dim=1, descending=False)
        thr = tl.min(merged, axis=1)
    else:
        # Tile shorter than the list: the half-cleaner only touches the first BLOCK_N slots
        # (the descending candidate list is padded with sentinels, and max(x, sentinel) = x).
        cand = tl.sort(packed, dim=1, descending=True)  # [BLOCK_B, BLOCK_N]
        best3 = tl.reshape(best, (BLOCK_B, K_PAD // BLOCK_N, BLOCK_N))
        first = (tl.arange(0, K_PAD // BLOCK_N) == 0)[None, :, None]
        merged3 = tl.where(first, tl.maximum(best3, cand[:, None, :]), best3)
        # Reduce the 3-D view: tl.min on the 2-D reshape trips Triton's layout pass (3.6/3.7).
        thr = tl.min(tl.min(merged3, axis=2), axis=1)
        merged = tl.bitonic_merge(tl.reshape(merged3, (BLOCK_B, K_PAD)), dim=1, descending=False)
    return merged, thr


@triton.jit
def _topk_projection_stage1_kernel(
    # pointers
    h_ptr,
    w_ptr,
    b_ptr,
    ex_ptr,
    cand_ptr,
    thr_ptr,
    cnt_ptr,
    scale_ptr,
    err_ptr,
    slack_ptr,
    beta_ptr,
    # sizes
    B,
    N,
    D,
    H,
    k,
    tiles_per_chunk,
    CAP,
    # strides
    stride_hb,
    stride_hd,
    stride_wn,
    stride_wd,
    stride_b,
    stride_exb,
    stride_cb,
    stride_cc,
    # meta-parameters
    HAS_BIAS: tl.constexpr,
    HAS_EXCLUDE: tl.constexpr,
    FILTER: tl.constexpr,
    K_PAD: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    SINGLE_D: tl.constexpr,
    USE_DOT: tl.constexpr,
    CAST_FP32: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    SKIP: tl.constexpr,
    EX_BLOCK: tl.constexpr,
    QUANT: tl.constexpr = False,
    ERR_T: tl.constexpr = 1,
):
    SENTINEL: tl.constexpr = -9223372036854775807  # -(2**63 - 1): below every packed score
    BIG: tl.constexpr = 4611686018427387904  # 2**62 == reference.EXCLUDE_SENTINEL

    pid_b = tl.program_id(0)
    pid_c = tl.program_id(1)
    rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    rows64 = rows.to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    offs_t = tl.arange(0, BLOCK_N)

    n_tiles = tl.cdiv(N, BLOCK_N)
    t_start = pid_c * tiles_per_chunk
    t_end = tl.minimum(t_start + tiles_per_chunk, n_tiles)
    chunk_lo = t_start.to(tl.int64) * BLOCK_N

    if FILTER:
        # Admission bound per row (fp32); padded rows get +inf and never admit anything.
        thr_f = tl.load(thr_ptr + rows, mask=row_ok, other=float("inf"))
        cnt_ptrs = tl.broadcast_to(cnt_ptr + rows[:, None], (BLOCK_B, BLOCK_N))
    else:
        best = tl.full((BLOCK_B, K_PAD), SENTINEL, tl.int64)  # ascending; column 0 = threshold
        thr = tl.full((BLOCK_B,), SENTINEL, tl.int64)
    if QUANT:
        # the query's terms of the quantization bound e = slack @ err.T + beta (quantized.py)
        sl0 = tl.load(slack_ptr + rows64 * ERR_T, mask=row_ok, other=0.0)
        if ERR_T == 2:
            sl1 = tl.load(slack_ptr + rows64 * ERR_T + 1, mask=row_ok, other=0.0)

    if HAS_EXCLUDE:
        # cursor[r] = number of row r's excluded ids below this chunk (rows are sorted).
        cur = tl.zeros((BLOCK_B,), tl.int64)
        offs_e = tl.arange(0, EX_BLOCK)
        for e0 in range(0, H, EX_BLOCK):
            e_ok = (e0 + offs_e) < H
            ex = tl.load(
                ex_ptr + rows64[:, None] * stride_exb + (e0 + offs_e)[None, :],
                mask=row_ok[:, None] & e_ok[None, :],
                other=BIG,
            )
            cur += tl.sum((ex < chunk_lo).to(tl.int64), axis=1)
        nxt = tl.load(ex_ptr + rows64 * stride_exb + cur, mask=row_ok, other=BIG)

    if SINGLE_D:
        d_ok = offs_d < D
        h_blk = tl.load(
            h_ptr + rows64[:, None] * stride_hb + offs_d[None, :] * stride_hd,
            mask=row_ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        if CAST_FP32:
            h_blk = h_blk.to(tl.float32)

    n0 = chunk_lo  # int64 scalar: item offsets reach 2**31 and W offsets N * d
    for _ in range(t_start, t_end):
        offs_n = n0 + offs_t  # [BLOCK_N] int64
        n_ok = offs_n < N
        acc = tl.zeros((BLOCK_B, BLOCK_N), tl.float32)
        if SINGLE_D:
            w = tl.load(
                w_ptr + offs_n[:, None] * stride_wn + offs_d[None, :] * stride_wd,
                mask=n_ok[:, None] & d_ok[None, :],
                other=0.0,
            )
            if CAST_FP32:
                w = w.to(tl.float32)
            elif QUANT:  # int8 and e4m3 values are exact in h's dtype (bf16, fp16 or fp32)
                w = w.to(h_ptr.dtype.element_ty)
            if USE_DOT:
                acc = tl.dot(h_blk, tl.trans(w), acc, input_precision=INPUT_PRECISION)
            else:
                acc += tl.sum(h_blk[:, None, :].to(tl.float32) * w[None, :, :].to(tl.float32), 2)
        else:
            for d0 in range(0, D, BLOCK_D):
                dd = d0 + offs_d
                d_ok2 = dd < D
                hb = tl.load(
                    h_ptr + rows64[:, None] * stride_hb + dd[None, :] * stride_hd,
                    mask=row_ok[:, None] & d_ok2[None, :],
                    other=0.0,
                )
                w = tl.load(
                    w_ptr + offs_n[:, None] * stride_wn + dd[None, :] * stride_wd,
                    mask=n_ok[:, None] & d_ok2[None, :],
                    other=0.0,
                )
                if CAST_FP32:
                    hb = hb.to(tl.float32)
                    w = w.to(tl.float32)
                elif QUANT:
                    w = w.to(h_ptr.dtype.element_ty)
                if USE_DOT:
                    acc = tl.dot(hb, tl.trans(w), acc, input_precision=INPUT_PRECISION)
                else:
                    acc += tl.sum(hb[:, None, :].to(tl.float32) * w[None, :, :].to(tl.float32), 2)

        if QUANT:  # h . q_r times the row's scale
            acc *= tl.load(scale_ptr + offs_n, mask=n_ok, other=0.0)[None, :]
        if HAS_BIAS:
            bias = tl.load(b_ptr + offs_n * stride_b, mask=n_ok, other=0.0).to(tl.float32)
            acc += bias[None, :]

        if HAS_EXCLUDE:
            tile_end = n0 + BLOCK_N
            excl = tl.zeros((BLOCK_B, BLOCK_N), tl.int32)
            while tl.max((nxt < tile_end).to(tl.int32), axis=0) > 0:
                hit = nxt < tile_end
                excl = excl | ((offs_n[None, :] == nxt[:, None]) & hit[:, None]).to(tl.int32)
                cur += hit.to(tl.int64)
                nxt = tl.load(ex_ptr + rows64 * stride_exb + cur, mask=row_ok, other=BIG)
            acc = tl.where(excl != 0, float("-inf"), acc)

        score = acc
        if QUANT:  # the upper bound of each item's exact score: what is filtered and kept
            e = tl.load(beta_ptr + offs_n, mask=n_ok, other=0.0)[None, :]
            e += sl0[:, None] * tl.load(err_ptr + offs_n * ERR_T, mask=n_ok, other=0.0)[None, :]
            if ERR_T == 2:
                e1 = tl.load(err_ptr + offs_n * ERR_T + 1, mask=n_ok, other=0.0)
                e += sl1[:, None] * e1[None, :]
            score = acc + e
        packed = _pack(score, offs_n[None, :])
        if FILTER:
            # Append every score >= the row's bound (and NaN, which torch.topk ranks first) to
            # the row's candidate buffer; -inf (excluded) never enters. The counter keeps
            # counting past CAP, so the wrapper sees an overflow.
            keep = ((score >= thr_f[:, None]) & (acc > float("-inf"))) | (acc != acc)
            keep = keep & n_ok[None, :] & row_ok[:, None]
            pos = tl.atomic_add(cnt_ptrs, 1, mask=keep, sem="relaxed")
            tl.store(
                cand_ptr + rows64[:, None] * stride_cb + pos,
                packed,
                mask=keep & (pos < CAP),
            )
        elif SKIP:
            packed = tl.where(n_ok[None, :], packed, SENTINEL)
            # Only fold the tile in when some element beats its row's current K_PAD-th best.
            tile_max = tl.max(packed, axis=1)
            if tl.max((tile_max > thr).to(tl.int32), axis=0) > 0:
                best, thr = _merge_tile(best, packed, K_PAD, BLOCK_B, BLOCK_N)
        else:
            packed = tl.where(n_ok[None, :], packed, SENTINEL)
            best, thr = _merge_tile(best, packed, K_PAD, BLOCK_B, BLOCK_N)
        n0 += BLOCK_N

    if not FILTER:
        # best is ascending: the row's top k are its last k slots; write cand[row, c, 0:k].
        offs_k = tl.arange(0, K_PAD)
        slot = offs_k - (K_PAD - k)
        c_ptrs = (
            cand_ptr + rows64[:, None] * stride_cb + pid_c.to(tl.int64) * stride_cc + slot[None, :]
        )
        tl.store(c_ptrs, best, mask=row_ok[:, None] & (slot >= 0)[None, :])


# Whether @triton.jit above produced the interpreter's function (it reads TRITON_INTERPRET then).
_KERNEL_INTERPRETED = type(_topk_projection_stage1_kernel).__name__ == "InterpretedFunction"


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelConfig:
    """One stage-1 launch shape. ``block_d`` is an upper bound: it shrinks to ``next_pow2(d)``.

    ``waves`` is the number of programs per SM the chunk count aims for (see :func:`plan_launch`);
    ``skip`` applies to the exact path only.
    """

    block_b: int
    block_n: int
    block_d: int
    num_warps: int
    num_stages: int
    skip: bool = True
    waves: int = _WAVES
    reason: str = ""

    def key(self) -> tuple[int, int, int, int, int, bool, int]:
        return (
            self.block_b,
            self.block_n,
            self.block_d,
            self.num_warps,
            self.num_stages,
            self.skip,
            self.waves,
        )

    def short(self) -> str:
        s = "" if self.skip else "-noskip"
        v = "" if self.waves == _WAVES else f"-v{self.waves}"
        return (
            f"b{self.block_b}n{self.block_n}d{self.block_d}w{self.num_warps}s{self.num_stages}"
            f"{s}{v}"
        )


# Register counts are ptxas's for sm_90 (Triton 3.7.1 and 3.6.0 AOT-compiled on CPU, bf16, bias,
# no exclusion); spills noted where ptxas reported a stack frame. Shared memory is Triton's
# pipelined W/h buffers. No GPU timing has chosen between them yet: benchmarks/
# bench_topk_projection.py's sweep times every fitting config on the target shapes.
# fmt: off
_HOPPER = [
    KernelConfig(1, 128, 64, 4, 3, reason="B=1: CUDA-core dot, no padded rows in the selection; 128-168 regs, 4 KB smem"),
    KernelConfig(1, 256, 64, 8, 3, reason="B=1 candidate: 32 KB per tile load keeps more bytes in flight (no cp.async here); 186 regs"),
    KernelConfig(2, 128, 32, 4, 3, reason="B=2: CUDA-core dot; [2,128,32] product, 72-168 regs"),
    KernelConfig(2, 128, 32, 8, 2, reason="k>512 (any B): 8 warps spread the [2,1024] int64 running list, ~100 regs"),
    KernelConfig(16, 128, 128, 4, 3, reason="B<=16 default: M=16 is tl.dot's minimum; 32 KB bf16 W tile/stage; 168-196 regs"),
    KernelConfig(16, 128, 64, 4, 4, reason="B<=16, d<=64 (half): 16 KB/stage, whole d per load, 4 stages; 161-168 regs"),
    KernelConfig(16, 128, 32, 4, 3, reason="B<=16, fp32: IEEE FMA dot in 32-wide d steps, 156 regs (64-wide spills 424 B)"),
    KernelConfig(16, 128, 32, 8, 3, reason="B<=16, fp32, 128<k<=512: as above, 8 warps for the list; 48 KB smem (128-wide: 200 KB)"),
    KernelConfig(16, 64, 256, 4, 3, reason="B<=16, d>=1024 candidate: 512 B row segments per load; spills 8-24 B"),
    KernelConfig(16, 256, 64, 8, 3, reason="B<=16, k<=16, d<=256: wide tile, topk's cheap halving steps dominate; 190 regs"),
    KernelConfig(16, 128, 128, 8, 3, reason="B<=16, 128<k<=512: 8 warps hold the [16,512] int64 list (251 regs at k=512)"),
    KernelConfig(16, 128, 128, 4, 3, skip=False, reason="control: always merge (measures the threshold skip)"),
    KernelConfig(32, 128, 64, 4, 3, reason="16<B<=32, or B>32 with k<=64: one W pass per 32 rows; 235 regs at k=128"),
    KernelConfig(32, 64, 64, 8, 3, reason="B>32, k=128: 32 rows x 128-long list in 190-210 regs (64 rows: 254)"),
    KernelConfig(64, 128, 64, 8, 3, reason="B>32, k<=64: 64 rows per W pass halve W re-reads (from L2); 99-196 regs"),
]

# Ampere (A100: 108 SMs, 164 KB shared memory per SM, 1.6-2.0 TB/s): fewer stages, 64-wide d.
_AMPERE = [
    KernelConfig(1, 128, 64, 4, 2, reason="B=1: CUDA-core dot; 2 stages leave room for 3-4 programs/SM"),
    KernelConfig(2, 128, 32, 4, 2, reason="B=2: CUDA-core dot, as on Hopper"),
    KernelConfig(2, 128, 32, 8, 2, reason="k>512: 8 warps spread the running list, as on Hopper"),
    KernelConfig(16, 128, 64, 4, 3, reason="B<=16 default: 16 KB W tile/stage x 3 fits 164 KB beside a second program"),
    KernelConfig(16, 128, 32, 4, 2, reason="B<=16, fp32: IEEE FMA dot in 32-wide d steps, as on Hopper"),
    KernelConfig(16, 128, 32, 8, 2, reason="B<=16, fp32, 128<k<=512: 8 warps for the list, as on Hopper"),
    KernelConfig(16, 64, 128, 4, 3, reason="B<=16, d>=512: 256 B row segments, same 16 KB/stage"),
    KernelConfig(16, 128, 64, 8, 2, reason="B<=16, 128<k<=512: 8 warps hold the list (4 warps hit 255 regs on sm_80)"),
    KernelConfig(32, 128, 64, 4, 2, reason="16<B<=32, or B>32 with k<=64: one W pass per 32 rows"),
    KernelConfig(32, 64, 64, 8, 2, reason="B>32, k=128: 32-row blocks keep the list in registers"),
    KernelConfig(64, 128, 64, 8, 2, reason="B>32, k<=64: 64 rows per W pass"),
]

#: Interpreter (CPU, TRITON_INTERPRET=1): small tiles keep numpy fast and exercise multi-tile paths.
_INTERPRETER = [
    KernelConfig(1, 32, 32, 4, 1, reason="interpreter: B=1 CUDA-core path"),
    KernelConfig(2, 32, 32, 4, 1, reason="interpreter: B=2 / large-k CUDA-core path"),
    KernelConfig(16, 32, 32, 4, 1, reason="interpreter: tl.dot path, several tiles per chunk"),
    KernelConfig(32, 32, 32, 4, 1, reason="interpreter: 32-row tl.dot path"),
    KernelConfig(64, 32, 32, 4, 1, reason="interpreter: 64-row tl.dot path"),
]

# Filter path (see "Two paths" in the module docstring): no running list, so every B bucket uses
# tl.dot (B < 16 pads rows with zeros -- free while W's bytes set the time) and tiles are sized for
# streaming W alone. The selection is a compare and, for ~1 in 1000 scores, an atomic append.
_FILTER_HOPPER = [
    KernelConfig(16, 128, 128, 4, 3, reason="B<=16, d>=128 default: 32 KB bf16 W tile per stage, 3 in flight per program"),
    KernelConfig(16, 128, 128, 4, 4, reason="B<=16: 4 stages (128 KB in flight) for HBM latency on big d"),
    KernelConfig(16, 64, 256, 4, 3, reason="B<=16, d>=1024: 512 B contiguous segments per W row load"),
    KernelConfig(16, 256, 64, 8, 3, reason="B<=16, d<=256: 32 KB per stage in 8 warps; fewer tiles per item"),
    KernelConfig(16, 128, 64, 4, 4, reason="B<=16, d<=64: the whole row per load, 4 stages of 16 KB"),
    KernelConfig(16, 128, 32, 4, 3, reason="fp32 tables: IEEE FMA dot in 32-wide d steps (no TF32)"),
    KernelConfig(32, 128, 64, 4, 3, reason="16<B<=32: one pass over W per 32 rows"),
    KernelConfig(32, 128, 32, 4, 3, reason="16<B<=32, fp32 tables"),
    KernelConfig(64, 128, 64, 4, 3, reason="B>32: 64 rows per pass; row blocks of one chunk run side by side and share W in L2"),
    KernelConfig(64, 128, 64, 8, 3, reason="B>32: as above in 8 warps (more loads in flight)"),
    KernelConfig(64, 128, 32, 8, 3, reason="B>32, fp32 tables"),
]

_FILTER_AMPERE = [
    KernelConfig(16, 128, 64, 4, 3, reason="B<=16 default: 16 KB W tile per stage x 3 leaves room for a second program per SM"),
    KernelConfig(16, 64, 128, 4, 3, reason="B<=16, d>=512: 256 B row segments, same 16 KB per stage"),
    KernelConfig(16, 128, 32, 4, 2, reason="fp32 tables: IEEE FMA dot in 32-wide d steps"),
    KernelConfig(32, 128, 64, 4, 2, reason="16<B<=32: one pass over W per 32 rows"),
    KernelConfig(32, 128, 32, 4, 2, reason="16<B<=32, fp32 tables"),
    KernelConfig(64, 128, 64, 4, 2, reason="B>32: 64 rows per pass, row blocks share W in L2"),
    KernelConfig(64, 128, 32, 8, 2, reason="B>32, fp32 tables"),
]

_FILTER_INTERPRETER = [
    KernelConfig(16, 32, 32, 4, 1, reason="interpreter: filter path, several tiles per chunk"),
    KernelConfig(32, 32, 32, 4, 1, reason="interpreter: 32-row filter path"),
    KernelConfig(64, 32, 32, 4, 1, reason="interpreter: 64-row filter path"),
]
# fmt: on

#: The two ranking paths of :func:`topk_projection` (``"auto"`` picks one by catalog size).
METHODS = ("exact", "filter")


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _arch(device: torch.device | None) -> str:
    if _interpreting() or device is None or device.type != "cuda":
        return "interpreter"
    major, _ = torch.cuda.get_device_capability(device)
    return "hopper" if major >= 9 else "ampere"


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS} (or 'auto'), got {method!r}")


def get_autotune_configs(arch: str | None = None, method: str = "exact") -> list[KernelConfig]:
    """Candidate stage-1 configs for ``arch`` in {"hopper", "ampere", "interpreter"}.

    ``None`` means the current CUDA device (or the interpreter); ``method`` is ``"exact"`` or
    ``"filter"``. Each config carries a one-line ``reason``; :func:`tune_topk_projection` times
    the ones that fit a shape (same ``block_b`` bucket, see :func:`block_b_for`).
    """
    _check_method(method)
    if arch is None:
        arch = _arch(torch.device("cuda") if torch.cuda.is_available() else None)
    tables = {
        "exact": {"hopper": _HOPPER, "ampere": _AMPERE, "interpreter": _INTERPRETER},
        "filter": {
            "hopper": _FILTER_HOPPER,
            "ampere": _FILTER_AMPERE,
            "interpreter": _FILTER_INTERPRETER,
        },
    }[method]
    if arch not in tables:
        raise ValueError(f"arch must be one of {sorted(tables)}, got {arch!r}")
    return list(tables[arch])


def _next_pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


def block_b_for(B: int, k: int, method: str = "exact") -> int:
    """Query rows per program: the smallest bucket >= B, capped so the running list fits.

    Exact path: B<=2 uses the CUDA-core product (no padded rows); otherwise tl.dot needs >= 16
    rows. The running list is [block_b, next_pow2(k)] int64 in registers: k>128 caps rows at 16,
    k>512 at 2. Filter path: 16, 32 or 64 rows whatever k (no list to hold).
    """
    _check_method(method)
    if method == "filter":
        return 16 if B <= 16 else 32 if B <= 32 else 64
    k_pad = _next_pow2(k)
    if k_pad > 512:
        return 1 if B == 1 else 2
    if B <= 2:
        return _next_pow2(B)
    bb = 16 if B <= 16 else 32 if B <= 32 else 64
    if k_pad >= 128 and bb == 64:
        bb = 32
    if k_pad > 128:
        bb = 16
    return bb


def heuristic_config(
    B: int, D: int, k: int, dtype: torch.dtype, arch: str, method: str = "exact"
) -> KernelConfig:
    """The config used when no tuned one is cached, picked from :func:`get_autotune_configs`."""
    k_pad = _next_pow2(k)
    bb = block_b_for(B, k, method)
    table = get_autotune_configs(arch, method)
    if arch == "interpreter":
        return next(c for c in table if c.block_b == bb)
    hopper = arch == "hopper"
    if method == "filter":
        if dtype == torch.float32:
            want = (bb, 128, 32) if bb <= 32 else (bb, 128, 32, 8)
        elif bb > 16:
            want = (bb, 128, 64)
        elif not hopper:
            want = (16, 64, 128) if D >= 512 else (16, 128, 64)
        else:
            want = (16, 128, 64) if D <= 64 else (16, 128, 128)
        return next(c for c in table if c.key()[: len(want)] == want)
    if bb <= 2:
        if k_pad > 512:
            want = (2, 128, 32, 8, 2)
        elif bb == 1:
            want = (1, 128, 64, 4, 3 if hopper else 2)
        else:
            want = (2, 128, 32, 4, 3 if hopper else 2)
        cfg = next(c for c in table if c.key()[:5] == want)
        return replace(cfg, block_b=bb) if cfg.block_b != bb else cfg
    if bb == 16:
        if dtype == torch.float32:
            want = (16, 128, 32, 8 if k_pad > 128 else 4, 3 if hopper else 2)
        elif k_pad > 128:
            want = (16, 128, 128, 8, 3) if hopper else (16, 128, 64, 8, 2)
        elif not hopper:
            want = (16, 64, 128, 4, 3) if D >= 512 else (16, 128, 64, 4, 3)
        elif D <= 64:
            want = (16, 128, 64, 4, 4)
        elif k_pad <= 16 and D <= 256:
            want = (16, 256, 64, 8, 3)
        else:
            want = (16, 128, 128, 4, 3)
    elif bb == 32:
        want = (
            (32, 64, 64, 8, 3 if hopper else 2)
            if k_pad >= 128
            else (32, 128, 64, 4, 3 if hopper else 2)
        )
    else:
        want = (64, 128, 64, 8, 3 if hopper else 2)
    return next(c for c in table if c.key()[:6] == (*want, True))


def _fits(cfg: KernelConfig, B: int, k: int, method: str = "exact") -> bool:
    bb = block_b_for(B, k, method)
    if method == "filter":
        return cfg.block_b == bb or (bb == 64 and cfg.block_b > 64)
    if cfg.block_b <= 2 and bb <= 2:  # the CUDA-core configs serve B=1 and B=2 alike
        return _next_pow2(k) <= 512 or cfg.num_warps == 8
    return cfg.block_b == bb and (_next_pow2(k) <= 128 or cfg.num_warps == 8)


# --------------------------------------------------------------------------------------------
# Launch
# --------------------------------------------------------------------------------------------

_SM_COUNT: dict[int, int] = {}
_TUNED: dict[tuple, KernelConfig] = {}
_WARNED: set[tuple[KernelConfig, KernelConfig]] = set()

#: Catalogs at least this large take the filter path under ``method="auto"``; below it the
#: sample would be most of ``W`` and the whole call is launch-bound anyway.
FILTER_MIN_N = 1 << 15
#: The filter path scores every ``_SAMPLE_STRIDE``-th item first (1/64 of W's bytes) ...
_SAMPLE_STRIDE = 64
#: ... and takes at least the 16th best sampled score as each row's bound: about 16 * 64 = 1024
#: of N items pass per row, and fewer than k pass with probability ~Poisson(16) <= k/64.
_SAMPLE_RANK_MIN = 16
#: The j-th best is taken among the maxima of ``_SAMPLE_GROUPS_PER_RANK * j`` groups of samples
#: (a max-reduction, then top-j of a few dozen values) instead of a top-j over all S samples:
#: torch.topk(16) over 16k values is a multi-pass radix select (~50-60 us on an H200, the
#: largest fixed cost of the path). The j-th best group maximum is at most the j-th best sample,
#: so slightly more items pass (about 12% more for j=16, 64 groups); any bound is correct.
_SAMPLE_GROUPS_PER_RANK = 4

#: Counters for benchmarks and tests: calls per path, rows the filter path handed to the exact one.
STATS = {"exact_calls": 0, "filter_calls": 0, "filter_fallback_rows": 0}


def _num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 2  # interpreter: a couple of "SMs" so tests see several chunks
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _SM_COUNT:
        _SM_COUNT[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SM_COUNT[idx]


@dataclass(frozen=True)
class LaunchPlan:
    """Everything about a stage-1 launch that depends on the shape and the config."""

    config: KernelConfig
    block_b: int
    block_n: int
    block_d: int
    k_pad: int
    n_tiles: int
    chunks: int
    tiles_per_chunk: int
    single_d: bool
    method: str = "exact"


def plan_launch(
    B: int,
    N: int,
    D: int,
    k: int,
    config: KernelConfig,
    num_sms: int,
    chunks: int | None = None,
    waves: int | None = None,
    method: str = "exact",
) -> LaunchPlan:
    """Block sizes, chunk count and tiles per chunk for one call (pure function, testable).

    Without ``chunks``, aims at ``waves`` (default ``config.waves``) programs per SM in all; on
    the exact path each chunk also keeps at least ``_MIN_ITEMS_PER_K * next_pow2(k)`` items.
    """
    _check_method(method)
    for name, v in (
        ("block_b", config.block_b),
        ("block_n", config.block_n),
        ("block_d", config.block_d),
    ):
        if v < 1 or v & (v - 1):
            raise ValueError(f"config.{name} must be a power of two, got {v} in {config}")
    if config.block_n < 16 or config.block_d < 16:
        raise ValueError(f"config.block_n and block_d must be >= 16, got {config}")
    if method == "filter" and config.block_b < 16:
        raise ValueError(f"the filter path needs config.block_b >= 16 (tl.dot), got {config}")
    k_pad = 1 if method == "filter" else _next_pow2(k)
    block_b = config.block_b
    block_n = min(config.block_n, max(16, _next_pow2(N)))
    block_d = min(config.block_d, max(16, _next_pow2(D)))
    n_tiles = triton.cdiv(N, block_n)
    b_blocks = triton.cdiv(B, block_b)
    if chunks is None:
        chunks = max(1, triton.cdiv((waves or config.waves) * num_sms, b_blocks))
        min_tiles = triton.cdiv(_MIN_ITEMS_PER_K * k_pad, block_n) if method == "exact" else 1
        chunks = min(chunks, max(1, n_tiles // max(1, min_tiles)))
    chunks = max(1, min(int(chunks), n_tiles))
    tiles_per_chunk = triton.cdiv(n_tiles, chunks)
    chunks = triton.cdiv(n_tiles, tiles_per_chunk)
    return LaunchPlan(
        config=config,
        block_b=block_b,
        block_n=block_n,
        block_d=block_d,
        k_pad=k_pad,
        n_tiles=n_tiles,
        chunks=chunks,
        tiles_per_chunk=tiles_per_chunk,
        single_d=block_d >= D,
        method=method,
    )


def _unpack(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of ``_pack`` in torch: int64 -> (fp32 scores, int64 ids)."""
    key = (packed >> 32).to(torch.int32)
    bits = torch.where(key >= 0, key, key ^ 0x7FFFFFFF)
    scores = bits.view(torch.float32)
    ids = 0x7FFFFFFF - (packed & 0xFFFFFFFF)
    return scores, ids


def _check_device(h: torch.Tensor) -> None:
    if h.device.type != "cuda" and not _interpreting():
        raise ValueError(
            f"topk_projection runs on CUDA tensors, got tensors on {h.device}; on CPU use "
            "lite_export.kernels.rank_cpu (or lite_export.kernels.rank, which dispatches), or set "
            "TRITON_INTERPRET=1 before importing lite_export.kernels.fused (slow)"
        )
    if _interpreting() != _KERNEL_INTERPRETED:
        raise RuntimeError(
            "TRITON_INTERPRET changed after lite_export.kernels.fused was imported "
            f"(kernel defined {'with' if _KERNEL_INTERPRETED else 'without'} the interpreter); "
            "set it before the first import (Triton reads it when the kernel is defined)"
        )


def _shape_key(
    B: int,
    N: int,
    D: int,
    k: int,
    dtype: torch.dtype,
    has_b: bool,
    has_ex: bool,
    dev: str,
    method: str = "exact",
) -> tuple:
    bucket_n = _next_pow2(N).bit_length()
    bb = block_b_for(B, k, method)
    return (dev, method, bb, bucket_n, D, _next_pow2(k), str(dtype), has_b, has_ex)


_SENTINEL = -(2**63 - 1)  # = the kernel's SENTINEL: below every packed score


def _launch(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    k: int,
    ex: torch.Tensor | None,
    plan: LaunchPlan,
    bound: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    quant: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run stage 1. Exact path: returns packed candidates ``[B, chunks * k]`` int64. Filter
    path (``bound = (thr [B] fp32, cnt [B] int32, buf [B, CAP] int64)``): fills ``buf``/``cnt``
    and returns ``buf``. ``quant = (scales [N], err [N, T], slack [B, T], beta [N])``, all fp32
    contiguous, with ``W`` a quantized table (int8 or fp8): the filter path on the upper bounds
    ``scale * (h . q) + b + slack @ err.T + beta`` (:func:`topk_quantized`)."""
    B, D = h.shape
    N = W.shape[0]
    if bound is None:
        out = torch.empty((B, plan.chunks, k), dtype=torch.int64, device=h.device)
        thr, cnt, cap = out, out, 0  # dummies, never read on the exact path
        stride_ob, stride_oc = out.stride(0), out.stride(1)
    else:
        thr, cnt, out = bound
        cap = out.shape[1]
        stride_ob, stride_oc = out.stride(0), 0
    interp = _interpreting()
    fp32_dot = (h.dtype if quant is not None else W.dtype) == torch.float32
    input_precision = "ieee" if (fp32_dot or interp) else "tf32"
    scale, err, slack, beta = quant if quant is not None else (out, out, out, out)
    b_arg = b if b is not None else W  # dummy pointer, never read when HAS_BIAS is False
    ex_arg = ex if ex is not None else out
    H = ex.shape[1] if ex is not None else 0
    grid = (triton.cdiv(B, plan.block_b), plan.chunks)
    _topk_projection_stage1_kernel[grid](
        h,
        W,
        b_arg,
        ex_arg,
        out,
        thr,
        cnt,
        scale,
        err,
        slack,
        beta,
        B,
        N,
        D,
        H,
        k,
        plan.tiles_per_chunk,
        cap,
        h.stride(0),
        h.stride(1),
        W.stride(0),
        W.stride(1),
        b.stride(0) if b is not None else 0,
        ex.stride(0) if ex is not None else 0,
        stride_ob,
        stride_oc,
        HAS_BIAS=b is not None,
        HAS_EXCLUDE=ex is not None,
        FILTER=bound is not None,
        K_PAD=plan.k_pad,
        BLOCK_B=plan.block_b,
        BLOCK_N=plan.block_n,
        BLOCK_D=plan.block_d,
        SINGLE_D=plan.single_d,
        USE_DOT=plan.block_b >= 16,
        CAST_FP32=interp,
        INPUT_PRECISION=input_precision,
        SKIP=plan.config.skip,
        EX_BLOCK=64,
        QUANT=quant is not None,
        ERR_T=1 if quant is None else err.shape[1],
        num_warps=plan.config.num_warps,
        num_stages=plan.config.num_stages,
    )
    return out.view(B, -1) if bound is None else out


def _launch_planned(
    h, W, b, k, ex, config, forced, chunks, method, bound=None, quant=None
) -> torch.Tensor:
    """Plan and launch; a config that does not fit this GPU falls back to small tiles."""
    B, D = h.shape
    N = W.shape[0]
    sms = _num_sms(h.device)
    try:
        plan = plan_launch(B, N, D, k, config, sms, chunks, method=method)
        return _launch(h, W, b, k, ex, plan, bound, quant)
    except OutOfResources:
        if forced:
            raise
        # A GPU with less shared memory / registers than the tables assume: small tiles, no
        # pipelining. Correct everywhere, just slower; warn once per config.
        safe = replace(
            config, block_n=64, block_d=32, num_stages=1, reason="OutOfResources fallback"
        )
        if (config, safe) not in _WARNED:
            _WARNED.add((config, safe))
            warnings.warn(
                f"topk_projection: {config.short()} does not fit this GPU "
                f"({torch.cuda.get_device_name(h.device)}); using {safe.short()}",
                RuntimeWarning,
                stacklevel=3,
            )
        plan = plan_launch(B, N, D, k, safe, sms, chunks, method=method)
        return _launch(h, W, b, k, ex, plan, bound, quant)


def _pick_config(h, W, b, k, ex, method: str) -> KernelConfig:
    B, D = h.shape
    key = _shape_key(
        B, W.shape[0], D, k, W.dtype, b is not None, ex is not None, str(h.device), method
    )
    return _TUNED.get(key) or heuristic_config(B, D, k, W.dtype, _arch(h.device), method)


def _exact_packed(h, W, b, k, ex, config, chunks) -> torch.Tensor:
    """Exact path: running top-K per program, merged by ``torch.topk``. Packed ``[B, k]``."""
    STATS["exact_calls"] += 1
    forced = config is not None
    config = config or _pick_config(h, W, b, k, ex, "exact")
    cand = _launch_planned(h, W, b, k, ex, config, forced, chunks, "exact")
    return torch.topk(cand, k, dim=1).values


def sample_bound(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    k: int,
    stride: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Per-row admission bound for the filter path, and the candidate capacity per row.

    Scores every ``stride``-th item (cuBLAS on a strided view of ``W``: no copy) and returns,
    per row, the ``j``-th best of the maxima of ``4j`` groups of the sampled scores,
    ``j = max(16, 2k * S / N)`` for ``S`` sampled items (the ``j``-th best sample itself when
    ``S < 8j``), so about ``j * N / S`` items per row score at least as high. Any bound is
    *correct* (the caller checks that at least ``k`` and at most ``cap`` items passed); this
    one makes the check pass almost always while the candidate buffer stays ~0.1% of ``[B, N]``.
    """
    N = W.shape[0]
    if stride is None:
        stride = max(1, min(_SAMPLE_STRIDE, N // (4 * _SAMPLE_RANK_MIN)))
    Ws = W[::stride]
    S = Ws.shape[0]
    if b is None:
        s = h @ Ws.T
    elif b.dtype == h.dtype:
        s = torch.addmm(b[::stride], h, Ws.T)  # one cuBLAS call, no copies
    else:
        s = (h @ Ws.T).float() + b[::stride].float()
    j = min(S, max(_SAMPLE_RANK_MIN, -(-2 * k * S // N)))
    groups = _SAMPLE_GROUPS_PER_RANK * j
    # In the table's dtype: the bound only has to be *a* bound (the caller checks the counts).
    if 2 * groups <= S:
        per = S // groups  # the last S % groups samples are left out of the bound
        s = s[:, : per * groups].reshape(s.shape[0], groups, per).amax(dim=2)
        expected = 1.25 * j * N / S  # the group-maxima bound lets a few more through
    else:
        expected = j * N / S
    thr = torch.topk(s, j, dim=1).values[:, -1].float().contiguous()
    cap = min(max(k, N), _next_pow2(int(3 * expected) + k))
    return thr, cap


def _filter_path(h, W, b, k, ex, config, chunks, sample_stride):
    """Filter path: ``(scores, ids, ok)``, ``ok`` a per-row flag that the row is exact.

    Stage 1 appends every score at or above the row's sampled bound to a ``[B, cap]`` buffer
    (an atomic counter per row; unfilled slots hold the sentinel); stage 2 is ``torch.topk``
    over the buffer. A row is exact
    when at least ``k`` of its items passed (then its top ``k`` all did) and none overflowed.
    """
    B = h.shape[0]
    forced = config is not None
    config = config or _pick_config(h, W, b, k, ex, "filter")
    thr, cap = sample_bound(h, W, b, k, sample_stride)
    cnt = torch.zeros(B, dtype=torch.int32, device=h.device)
    buf = torch.full((B, cap), _SENTINEL, dtype=torch.int64, device=h.device)  # unfilled: last
    _launch_planned(h, W, b, k, ex, config, forced, chunks, "filter", (thr, cnt, buf))
    top = torch.topk(buf, k, dim=1).values
    scores, ids = _unpack(top)
    ok = (cnt >= k) & (cnt <= cap)
    return scores, ids, ok


def graph_buckets(max_batch: int, max_exclude: int) -> int:
    """How many filter-path graphs a caller meets with batches up to ``max_batch`` rows and
    exclusion lists up to ``max_exclude`` ids: power-of-two batch buckets times power-of-two
    exclusion widths (plus "no exclusion"), per table and k."""
    b = _next_pow2(max(1, max_batch)).bit_length()
    e = _next_pow2(max(1, max_exclude)).bit_length() + 1
    return b * e


#: Captured filter-path graphs, most recently used last (see :func:`_filter_graphed`). Sized for
#: batches up to 256 rows and exclusion lists up to 1024 ids (108 shapes); the PyTorch engine
#: reserves room for its own buckets; bounded by ``graph_cache.MAX_GRAPHS``; evictions logged.
_GRAPHS = GraphCache(
    graph_buckets(256, 1024),
    "topk_projection filter-path CUDA graphs",
    hint="lite_export.kernels.fused.set_graph_cache_size(n) keeps more "
    f"(at most {MAX_GRAPHS}); each holds a [batch, ~4096] int64 buffer",
)
_FAILED = False  # a cache value: capture failed for this shape, stay eager


def set_graph_cache_size(n: int) -> int:
    """Keep at most ``n`` captured filter-path graphs (bounded by ``MAX_GRAPHS``; the least
    recently used are evicted, with a log line). Returns the size in force."""
    return _GRAPHS.resize(n)


def reserve_graph_cache(max_batch: int, max_exclude: int, tables: int = 1) -> int:
    """Grow the graph cache to hold every bucket of :func:`graph_buckets` for ``tables``
    (table, k) pairs; never shrinks it. Returns the size in force."""
    return _GRAPHS.reserve(graph_buckets(max_batch, max_exclude) * max(1, tables))


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    h: torch.Tensor  # [B_pad, d] static input
    ex: torch.Tensor | None  # [B_pad, H_pad] static input
    scores: torch.Tensor  # [B_pad, k] static outputs
    ids: torch.Tensor
    ok: torch.Tensor  # [B_pad] bool


def _filter_graphed(h, W, b, k, ex, config, chunks, sample_stride):
    """The filter path replayed from a CUDA graph: one launch instead of ~25 from Python.

    On a GPU the filter path's own work at N = 1M is a few hundred microseconds, about what
    Python spends issuing its ops one by one, so each shape is captured once and replayed.
    Batches are padded to the next power of two rows and exclusion lists to the next power of
    two columns (padding rows are computed and dropped), so a serving loop with varying batch
    and history sizes reuses a handful of graphs. The graph reads ``W``/``b`` in place: it is
    keyed by their storage, so a new table gets a new graph. Returns ``(scores, ids, ok)`` as
    :func:`_filter_path`, or ``None`` when capture is not possible here.
    """
    B, D = h.shape
    B_pad = _next_pow2(B)
    H_pad = _next_pow2(ex.shape[1]) if ex is not None else 0
    key = (
        h.device,
        h.dtype,
        B_pad,
        D,
        W.data_ptr(),
        tuple(W.shape),
        W.stride(),
        None if b is None else (b.data_ptr(), b.dtype, b.stride()),
        k,
        H_pad,
        config,
        chunks,
        sample_stride,
    )
    cap = _GRAPHS.get(key)
    if cap is _FAILED:  # capture failed for this shape before: stay eager
        return None
    if cap is None:
        static_h = torch.zeros((B_pad, D), dtype=h.dtype, device=h.device)
        static_ex = None
        if ex is not None:
            static_ex = torch.full(
                (B_pad, H_pad), EXCLUDE_SENTINEL, dtype=torch.int64, device=h.device
            )
        cap = _capture(static_h, W, b, k, static_ex, config, chunks, sample_stride)
        _GRAPHS.put(key, _FAILED if cap is None else cap)
        if cap is None:
            return None
    cap.h[:B].copy_(h)
    if ex is not None:
        cap.ex[:B].fill_(EXCLUDE_SENTINEL)
        cap.ex[:B, : ex.shape[1]].copy_(ex)
    cap.graph.replay()
    return cap.scores[:B].clone(), cap.ids[:B].clone(), cap.ok[:B]


def _capture(static_h, W, b, k, static_ex, config, chunks, sample_stride) -> _Captured | None:
    """Warm up and capture the filter path on the static input buffers (filled per call)."""
    args = (W, b, k, static_ex, config, chunks, sample_stride)
    dev = static_h.device
    try:
        # Compile and warm up on a side stream (cuBLAS handles, Triton binaries), then capture.
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            _filter_path(static_h, *args)
        torch.cuda.current_stream(dev).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            scores, ids, ok = _filter_path(static_h, *args)
    except Exception as exc:  # e.g. called inside another capture: run eagerly instead
        warnings.warn(
            f"topk_projection: CUDA graph capture failed ({type(exc).__name__}: {exc}); "
            "running the filter path eagerly for this shape",
            RuntimeWarning,
            stacklevel=4,
        )
        return None
    return _Captured(graph, static_h, static_ex, scores, ids, ok)


def topk_projection(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None = None,
    k: int = 10,
    exclude: ExcludeLike = None,
    *,
    method: str = "auto",
    config: KernelConfig | None = None,
    chunks: int | None = None,
    sample_stride: int | None = None,
    cuda_graph: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` items per row of ``h @ W.T + b``, fused: the ``[B, N]`` scores never hit memory.

    Args:
        h: ``[B, d]`` query vectors (float32, float16 or bfloat16), CUDA.
        W: ``[N, d]`` projection head / item table, same dtype and device as ``h``;
            ``N <= 2**31``. Row-major (``W.stride(1) == 1``) gives wide coalesced loads.
        b: optional ``[N]`` bias (any float dtype), added in fp32.
        k: 1..min(N, 1024); padded to the next power of two inside.
        exclude: items to drop per row: ``None``, an int ``[B, H]`` tensor padded with -1 (any
            negative or ``>= N`` entry is padding), or a list of B lists of ids (see
            :mod:`lite_export.kernels.reference`). Excluded items score ``-inf``.
        method: ``"auto"`` (default: ``"filter"`` for ``N >= FILTER_MIN_N``, else ``"exact"``),
            ``"filter"`` (sampled bound + atomic append; rows it cannot settle are re-ranked by
            the exact path) or ``"exact"`` (running top-K per program). Same results either way.
        config: force a stage-1 config (tuning, tests); default: tuned if cached, else heuristic.
        chunks: force the number of item chunks (tests); default: fill the chip.
        sample_stride: filter path only: score every n-th item for the bound (tests).
        cuda_graph: filter path on CUDA: capture each (padded) shape once in a CUDA graph and
            replay it (default), so Python's per-op launch cost does not add to every call.
            ``W`` and ``b`` are read in place by the graph: update them in place or pass new
            tensors (a new tensor gets a new graph).

    Returns:
        ``(scores [B, k] float32, ids [B, k] int64)``, best first; among equal scores the lower
        id comes first. Accumulation is fp32; fp32 inputs use IEEE fp32 (no TF32).
    """
    check_ranking_inputs(h, W, b, k, exclude, max_k=MAX_K)
    _check_device(h)
    B, D = h.shape
    N = W.shape[0]
    if method == "auto":
        method = "filter" if N >= FILTER_MIN_N else "exact"
    _check_method(method)
    if B == 0:
        empty = torch.empty((0, k), device=h.device)
        return empty, empty.to(torch.int64)
    # Triton launches on the current device's stream, graphs capture on the current device:
    # both must be h's device (a tensor on cuda:1 while cuda:0 is current).
    with _dispatch.device_guard(h):
        return _topk_projection(
            h, W, b, k, exclude, method, config, chunks, sample_stride, cuda_graph
        )


def _topk_projection(h, W, b, k, exclude, method, config, chunks, sample_stride, cuda_graph):
    """:func:`topk_projection` on checked inputs, under the device guard."""
    B = h.shape[0]
    ex = normalize_exclude(exclude, B, W.shape[0], h.device)
    if method == "exact":
        return _unpack(_exact_packed(h, W, b, k, ex, config, chunks))
    STATS["filter_calls"] += 1
    res = None
    if cuda_graph and h.device.type == "cuda" and not torch.cuda.is_current_stream_capturing():
        res = _filter_graphed(h, W, b, k, ex, config, chunks, sample_stride)
    if res is None:
        res = _filter_path(h, W, b, k, ex, config, chunks, sample_stride)
    scores, ids, ok = res
    if not bool(ok.all()):  # one host sync; rare on real data (see sample_bound)
        bad = (~ok).nonzero().squeeze(1)
        STATS["filter_fallback_rows"] += int(bad.numel())
        sub_ex = ex[bad] if ex is not None else None
        scores[bad], ids[bad] = _unpack(_exact_packed(h[bad], W, b, k, sub_ex, None, None))
    return scores, ids


#: The quantized filter path's candidate buffer is this many times the filter path's: items
#: pass on their upper bounds, which sit above their scores by up to the quantization error.
QUANT_CAP_FACTOR = 4
#: Candidates the quantized path re-scores exactly per row, at least (then ``4 k``).
QUANT_MIN_CANDIDATES = 256
STATS["quantized_calls"] = 0
STATS["quantized_fallback_rows"] = 0


def topk_quantized(
    h: torch.Tensor,
    cat,
    W: torch.Tensor,
    k: int = 10,
    exclude: ExcludeLike = None,
    *,
    candidates: int | None = None,
    config: KernelConfig | None = None,
    chunks: int | None = None,
    sample_stride: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of ``h @ W.T + bias`` per row reading a quantized catalog: the same ids as the
    full-precision ranking of ``W`` (up to scores equal within fp32 rounding).

    ``cat`` is a :class:`lite_export.kernels.QuantizedCatalog` (int8 or fp8, bias inside) of the
    rows ``W [N, d]`` (``h``'s dtype and device). Stage 1 is the filter path's kernel reading
    ``cat.q`` (a quarter or half of ``W``'s bytes, dequantized in registers: int8 and e4m3 values
    are exact in bf16) and filtering each item's *upper bound* ``scale * (h . q) + b + e`` (the
    proven bound of :mod:`lite_export.kernels.quantized`, with :data:`~lite_export.kernels.
    quantized.GPU_DOT_UNIT` for the tensor cores' accumulation) against the sampled bound of
    the filter path (scored exactly from ``W``). The ``candidates`` largest bounds (default
    ``max(4k, 256)``) are re-scored exactly from ``W`` in fp32 and the best ``k`` returned. A
    row is exact when its k-th exact score is at least both the sampled bound and the next
    candidate's upper bound (nothing left out can beat it) and its buffer did not overflow;
    other rows are ranked again on ``W`` by the exact path.
    """
    from lite_export.kernels import quantized as Q

    if not isinstance(cat, Q.QuantizedCatalog):
        raise TypeError(f"cat must be a QuantizedCatalog, got {type(cat).__name__}")
    if not isinstance(W, torch.Tensor) or tuple(W.shape) != cat.shape or W.device != cat.device:
        got = f"{tuple(W.shape)} on {W.device}" if isinstance(W, torch.Tensor) else type(W).__name__
        raise ValueError(
            f"W must be the full-precision table the catalog was quantized from: W is {got}, "
            f"the catalog {cat.shape} on {cat.device}"
        )
    check_ranking_inputs(h, W, cat.bias, k, exclude, max_k=MAX_K)
    _check_device(h)
    B, D = h.shape
    N = W.shape[0]
    if B == 0:
        empty = torch.empty((0, k), device=h.device)
        return empty, empty.to(torch.int64)
    STATS["quantized_calls"] += 1
    with _dispatch.device_guard(h):
        ex = normalize_exclude(exclude, B, N, h.device)
        b = cat.bias
        thr, cap = sample_bound(h, W, b, k, sample_stride)
        cap = min(max(k, N), cap * QUANT_CAP_FACTOR)
        beta, _, rows, _, _ = Q._catalog_terms(cat, 32)
        slack = Q._slack(h, cat, dot_unit=Q.GPU_DOT_UNIT).contiguous()  # [B, T]
        quant = (cat.scales.contiguous(), rows.contiguous(), slack, beta.contiguous())
        forced = config is not None
        if config is None:
            config = heuristic_config(B, D, k, h.dtype, _arch(h.device), "filter")
        cnt = torch.zeros(B, dtype=torch.int32, device=h.device)
        buf = torch.full((B, cap), _SENTINEL, dtype=torch.int64, device=h.device)
        _launch_planned(
            h, cat.q, b, k, ex, config, forced, chunks, "filter", (thr, cnt, buf), quant
        )
        M = min(cap, max(k, candidates or max(4 * k, QUANT_MIN_CANDIDATES)))
        top = torch.topk(buf, min(M + 1, cap), dim=1).values  # largest bounds first
        ub, ids = _unpack(top)
        valid = top != _SENTINEL
        cand = torch.where(valid[:, :M], ids[:, :M], torch.zeros_like(ids[:, :M]))
        exact = torch.bmm(W[cand].float(), h.float().unsqueeze(2)).squeeze(2)
        if b is not None:
            exact = exact + b[cand]
        exact = torch.where(valid[:, :M], exact, torch.full_like(exact, float("-inf")))
        scores, j = torch.topk(exact, k, dim=1)
        out_ids = torch.gather(cand, 1, j)
        nxt = torch.full_like(thr, float("-inf"))
        if top.shape[1] > M:
            nxt = torch.where(valid[:, M], ub[:, M], nxt)
        ok = (cnt <= cap) & (scores[:, -1] >= torch.maximum(thr, nxt))
        if not bool(ok.all()):  # one host sync; rows the bound could not settle
            bad = (~ok).nonzero().squeeze(1)
            STATS["quantized_fallback_rows"] += int(bad.numel())
            sub_ex = ex[bad] if ex is not None else None
            scores[bad], out_ids[bad] = _unpack(_exact_packed(h[bad], W, b, k, sub_ex, None, None))
        return scores, out_ids


def topk_projection_static(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    k: int,
    exclude: torch.Tensor | None,
    method: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One path of :func:`topk_projection` with no host sync, for capture in a larger graph.

    ``exclude`` is ``None`` or an int ``[B, H]`` tensor on ``h``'s device (padding: negative or
    ``>= N``). Returns ``(scores [B, k], ids [B, k], ok [B] bool)``: on the filter path ``ok``
    is False for the rows it could not settle (see :func:`sample_bound`), which the caller
    re-ranks with ``topk_projection(..., method="exact")`` after reading ``ok`` on the host; on
    the exact path every row is ok. Inputs are not checked here: check them once, before
    capture, with :func:`lite_export.kernels.check_ranking_inputs`. Run it under
    :func:`lite_export.kernels.dispatch.device_guard`.
    """
    _check_method(method)
    ex = normalize_exclude(exclude, h.shape[0], W.shape[0], h.device)
    if method == "exact":
        scores, ids = _unpack(_exact_packed(h, W, b, k, ex, None, None))
        return scores, ids, torch.ones(h.shape[0], dtype=torch.bool, device=h.device)
    STATS["filter_calls"] += 1
    return _filter_path(h, W, b, k, ex, None, None, None)


def tune_topk_projection(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None = None,
    k: int = 10,
    exclude: ExcludeLike = None,
    *,
    method: str = "auto",
    configs: list[KernelConfig] | None = None,
    rep_ms: int = 50,
) -> tuple[KernelConfig, dict[str, float]]:
    """Time every fitting config on these inputs, cache the fastest for this shape bucket.

    Returns ``(best config, {config.short(): median ms or inf if it failed})``. CUDA only. Later
    :func:`topk_projection` calls with a shape in the same bucket (and method) use the cached
    config.
    """
    check_ranking_inputs(h, W, b, k, exclude, max_k=MAX_K)
    if h.device.type != "cuda" or _interpreting():
        raise ValueError(
            f"tune_topk_projection needs CUDA tensors (not interpreted), got {h.device}"
        )
    B, D = h.shape
    N = W.shape[0]
    if method == "auto":
        method = "filter" if N >= FILTER_MIN_N else "exact"
    _check_method(method)
    with _dispatch.device_guard(h):
        return _tune(h, W, b, k, exclude, method, configs, rep_ms)


def _tune(h, W, b, k, exclude, method, configs, rep_ms):
    B, D = h.shape
    N = W.shape[0]
    arch = _arch(h.device)
    pool = (
        configs
        if configs is not None
        else [c for c in get_autotune_configs(arch, method) if _fits(c, B, k, method)]
    )
    times: dict[str, float] = {}
    best_cfg, best_ms = None, float("inf")
    for cfg in pool:
        try:
            ms = triton.testing.do_bench(
                lambda cfg=cfg: topk_projection(h, W, b, k, exclude, method=method, config=cfg),
                rep=rep_ms,
                return_mode="median",
            )
        except Exception:  # a config that fails to compile/launch on this chip is skipped
            ms = float("inf")
        times[cfg.short()] = ms
        if ms < best_ms:
            best_cfg, best_ms = cfg, ms
    if best_cfg is None:
        raise RuntimeError(f"no config ran for B={B}, N={N}, d={D}, k={k}: {times}")
    ex_present = exclude is not None
    key = _shape_key(B, N, D, k, W.dtype, b is not None, ex_present, str(h.device), method)
    _TUNED[key] = best_cfg
    return best_cfg, times
