"""Shared checks for ranking results: top-K compared by gathered scores, never by raw ids."""

from __future__ import annotations

import torch

# (atol, rtol) per input dtype. Kernel, CPU path and reference all multiply the *same* (rounded)
# inputs and accumulate in fp32, so only the fp32 summation order differs; half inputs get 10x
# more room because bf16/fp16 tensor-core products are summed in hardware-defined order.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (1e-4, 1e-4),
    torch.float16: (1e-3, 1e-3),
    torch.bfloat16: (1e-3, 1e-3),
}


def full_scores(
    h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, exclude: list[list[int]] | None
) -> torch.Tensor:
    """fp32 ``h @ W.T + b`` on CPU with excluded items at -inf: [B, N]."""
    s = h.float().cpu() @ W.float().cpu().T
    if b is not None:
        s = s + b.float().cpu()
    if exclude is not None:
        N = W.shape[0]
        for r, row in enumerate(exclude):
            for item in row:
                if 0 <= item < N:
                    s[r, item] = float("-inf")
    return s


def _where(mask: torch.Tensor) -> str:
    idx = mask.nonzero().tolist()
    return f"{len(idx)} mismatching element(s), first at {idx[:5]}"


def assert_topk_valid(
    scores: torch.Tensor,
    ids: torch.Tensor,
    full: torch.Tensor,
    k: int,
    dtype: torch.dtype,
    exclude: list[list[int]] | None = None,
) -> None:
    """``(scores, ids)`` is a correct top-k of ``full`` up to ties.

    Checks shapes and dtypes; ids valid and distinct per row; each score equals the full score
    of its id; the sorted scores equal the reference top-k values; scores are sorted; and no
    excluded id appears in a row that still has k non-excluded items.
    """
    atol, rtol = TOLERANCES[dtype]
    B, N = full.shape
    assert scores.shape == (B, k), f"scores shape {tuple(scores.shape)} != {(B, k)}"
    assert ids.shape == (B, k), f"ids shape {tuple(ids.shape)} != {(B, k)}"
    assert scores.dtype == torch.float32, scores.dtype
    assert ids.dtype == torch.int64, ids.dtype
    scores, ids = scores.cpu(), ids.cpu()
    assert bool(((ids >= 0) & (ids < N)).all()), (
        f"ids out of [0, {N}): {_where((ids < 0) | (ids >= N))}"
    )
    for r in range(B):
        assert len(set(ids[r].tolist())) == k, f"row {r}: repeated ids {ids[r].tolist()}"
    gathered = full.gather(1, ids)
    ref_vals = torch.topk(full, k, dim=1).values
    finite = torch.isfinite(ref_vals)
    # -inf (excluded) slots: kernel and reference must agree on how many, values must be -inf.
    assert torch.equal(torch.isfinite(scores), finite), _where(torch.isfinite(scores) != finite)
    assert torch.equal(torch.isfinite(gathered), finite), _where(torch.isfinite(gathered) != finite)
    ok = torch.isclose(scores[finite], gathered[finite], atol=atol, rtol=rtol)
    assert bool(ok.all()), f"score != W-row score of its id: {_where(~ok)}"
    ok = torch.isclose(scores[finite], ref_vals[finite], atol=atol, rtol=rtol)
    assert bool(ok.all()), (
        f"top-k values differ from the reference: {_where(~ok)}; "
        f"max |diff| {(scores[finite] - ref_vals[finite]).abs().max().item():.3g}"
    )
    assert bool((scores[:, :-1] >= scores[:, 1:]).all()), "scores are not sorted best first"
    if exclude is not None:
        for r, row in enumerate(exclude):
            banned = {x for x in row if 0 <= x < N}
            if N - len(banned) >= k:
                hit = banned & set(ids[r].tolist())
                assert not hit, f"row {r}: excluded ids {sorted(hit)} returned"
