"""Full-ranking evaluation: Recall@K and NDCG@K over all items, history masked, ties pessimistic.

Protocol (written next to every number we report): leave-one-out by time, the score of every
catalog item is computed (no sampled negatives), the items of the user's history are set to -inf
(so a target that repeats a history item counts as a miss), and the target's rank counts every
other item with an equal score as ranked above it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence

import torch

from lite_export.data.batching import pad_histories

DEFAULT_KS = (5, 10, 20)
PROTOCOL = "leave-one-out, full ranking over all items, history masked, pessimistic ties"


def mask_items(scores: torch.Tensor, item_ids: torch.Tensor, pad_index: int) -> torch.Tensor:
    """Set scores[b, i] = -inf for every real (non-pad) id i in row b of item_ids; in place."""
    rows, cols = (item_ids != pad_index).nonzero(as_tuple=True)
    scores[rows, item_ids[rows, cols]] = float("-inf")
    return scores


class NaNScoresError(ValueError):
    """The scores to rank hold NaN: no rank can be given (a NaN compares false with everything,
    so it would count as a hit at rank -1 or hide the items it replaced)."""


def pessimistic_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target; items tied with the target count as ranked above it. [B]

    Raises :class:`NaNScoresError` when any row holds a NaN score (``-inf``, the mask of history
    items, and ``+inf`` are ranked like any other value).
    """
    nan_rows = torch.isnan(scores).any(1)
    if bool(nan_rows.any()):
        rows = nan_rows.nonzero().flatten()
        first = int(rows[0])
        raise NaNScoresError(
            f"the model gave NaN scores to {len(rows)} of {scores.shape[0]} users "
            f"(row {first}: {int(torch.isnan(scores[first]).sum())} of {scores.shape[1]} items, "
            f"target {'NaN' if torch.isnan(scores[first, targets[first]]) else 'finite'}), "
            "so they cannot be ranked; the weights or inputs hold NaN or inf (a diverged "
            "training run: lower the learning rate, keep gradient clipping on, or check the "
            "checkpoint with torch.isfinite)"
        )
    t = scores.gather(1, targets[:, None])  # [B, 1]
    return (scores > t).sum(1) + (scores == t).sum(1) - 1


def metrics_from_ranks(ranks: Sequence[int] | torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict:
    r = torch.as_tensor(ranks, dtype=torch.float64)
    if r.numel() == 0:
        raise ValueError("no evaluation examples: every user needs at least 3 interactions")
    out = {}
    for k in ks:
        hit = r < k
        out[f"recall@{k}"] = hit.double().mean().item()
        out[f"ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(r + 2.0), 0.0).mean().item()
    return out


def ndcg_at(rank: int, k: int) -> float:
    """NDCG@k of a single target at 0-based rank (one relevant item: IDCG = 1)."""
    return 1.0 / math.log2(rank + 2) if rank < k else 0.0


@torch.inference_mode()
def evaluate_ranking(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    examples: Sequence[tuple[list[int], int]],
    num_items: int,
    max_history: int,
    batch_size: int = 256,
    ks: Sequence[int] = DEFAULT_KS,
    device: torch.device | str = "cpu",
    desc: str | None = None,
    stop: Callable[[], bool] | None = None,
    timings: dict | None = None,
) -> dict:
    """Metrics of ``score_fn(item_ids [B, L]) -> scores [B, N]`` on (history, target) examples.

    The model sees the most recent ``max_history`` items; the mask covers the whole history.
    ``desc``: show progress under this name (:mod:`lite_export.progress`). ``stop``: asked
    before every batch; when it returns True the pass ends by raising
    :class:`~lite_export.model.stopping.StopRequested`. ``timings``: filled with
    ``batch_seconds`` (one per batch) and ``seconds`` (the whole pass).
    """
    from lite_export import progress

    ranks = []
    batch_seconds: list[float] = []
    t0 = time.perf_counter()
    bar = progress.task(desc, len(examples), unit="user") if desc else progress.Task("", 0, "")
    with bar:
        for start in range(0, len(examples), batch_size):
            if stop is not None and stop():
                from lite_export.model.stopping import StopRequested

                raise StopRequested(desc or "evaluation")
            t = time.perf_counter()
            chunk = examples[start : start + batch_size]
            ranks.append(_rank_batch(score_fn, chunk, num_items, max_history, device))
            batch_seconds.append(time.perf_counter() - t)
            bar.advance(len(ranks[-1]))
    if timings is not None:
        timings["batch_seconds"] = batch_seconds
        timings["seconds"] = time.perf_counter() - t0
    result = metrics_from_ranks(torch.cat(ranks) if ranks else [], ks)
    result["users"] = len(examples)
    return result


@torch.inference_mode()
def target_ranks(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    examples: Sequence[tuple[list[int], int]],
    num_items: int,
    max_history: int,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The 0-based pessimistic rank of every example's target, in order (the numbers
    :func:`evaluate_ranking` averages; kept per user for paired comparisons of two models). [U]"""
    ranks = [
        _rank_batch(score_fn, examples[i : i + batch_size], num_items, max_history, device)
        for i in range(0, len(examples), batch_size)
    ]
    return torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long)


def _rank_batch(score_fn, chunk, num_items: int, max_history: int, device) -> torch.Tensor:
    """0-based pessimistic ranks of the targets of one batch of (history, target) examples."""
    ids, full, targets = _batch_inputs(chunk, num_items, max_history, device)
    return _ranks(score_fn(ids), full, targets, num_items)


def _batch_inputs(chunk, num_items: int, max_history: int, device):
    """The model's input ids [B, L], the whole histories to mask and the targets of a batch."""
    hists = [h for h, _ in chunk]
    ids = pad_histories(hists, max_history, num_items).to(device)
    full = pad_histories(hists, max(1, max(len(h) for h in hists)), num_items).to(device)
    targets = torch.tensor([t for _, t in chunk], dtype=torch.long, device=device)
    return ids, full, targets


def _ranks(scores: torch.Tensor, full, targets, num_items: int) -> torch.Tensor:
    scores = scores.float()
    if scores.shape != (len(targets), num_items):
        raise ValueError(
            f"score_fn returned {tuple(scores.shape)}, expected {(len(targets), num_items)}"
        )
    mask_items(scores, full, num_items)
    return pessimistic_ranks(scores, targets).cpu()


@torch.inference_mode()
def evaluate_variants(
    variants_fn: Callable[[torch.Tensor], Iterable[torch.Tensor]],
    examples: Sequence[tuple[list[int], int]],
    num_items: int,
    max_history: int,
    batch_size: int = 256,
    ks: Sequence[int] = DEFAULT_KS,
    device: torch.device | str = "cpu",
) -> list[dict]:
    """:func:`evaluate_ranking` of several scorings in one pass over the data:
    ``variants_fn(item_ids [B, L])`` yields V score tensors ``[B, N]`` (each its own tensor: it
    is masked in place), the same V for every batch. One metrics dict per variant."""
    ranks: list[list[torch.Tensor]] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        ids, full, targets = _batch_inputs(chunk, num_items, max_history, device)
        for v, scores in enumerate(variants_fn(ids)):
            if v == len(ranks):
                ranks.append([])
            ranks[v].append(_ranks(scores, full, targets, num_items))
    return [metrics_from_ranks(torch.cat(r), ks) | {"users": len(examples)} for r in ranks]


class MostPopular:
    """The most-popular peer: every user gets the items ranked by training-set interaction count."""

    def __init__(self, popularity: Sequence[int]):
        self.scores = torch.as_tensor(popularity, dtype=torch.float32)  # [N]

    def __call__(self, item_ids: torch.Tensor) -> torch.Tensor:
        return self.scores.to(item_ids.device).expand(item_ids.shape[0], -1).clone()


class TextCosine:
    """The text-only peer: cosine between each item's item-LLM vector and the mean of the
    vectors of the user's history (no training; scores any item that has text)."""

    def __init__(self, item_vectors: torch.Tensor):
        v = torch.as_tensor(item_vectors, dtype=torch.float32)
        unit = torch.nn.functional.normalize(v, dim=-1)
        self.table = torch.cat([unit, torch.zeros(1, v.shape[1])])  # [N + 1, Di], pad row zero
        self.num_items = v.shape[0]

    def __call__(self, item_ids: torch.Tensor) -> torch.Tensor:
        table = self.table.to(item_ids.device)
        real = (item_ids != self.num_items).unsqueeze(-1).float()  # [B, L, 1]
        mean = (table[item_ids] * real).sum(1) / real.sum(1).clamp(min=1.0)  # pads are zero rows
        user = torch.nn.functional.normalize(mean, dim=-1)
        return user @ table[:-1].T  # [B, N]
