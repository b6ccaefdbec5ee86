"""Calibrate a text head's cold scale on items the model never trained on.

With ``head_cold_scale`` the text-only rows (items held out of training, or added by
``lite catalog add``) have their own text-match scale and bias offset. Learned on the rows that
residual dropout removes, they stay close to the warm ones, because those rows' items still
trained the text projection and the rec LLM as targets. ``TrainConfig.cold_calibration``
instead holds a seeded fraction of the training items out of training entirely (like new
items), and after training picks the scale and offset that rank the validation users whose
target is one of them best, at a bounded cost to the other validation users (validation data
only).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from lite_export.model.metrics import evaluate_variants

#: the cold scale is searched as these multiples of the learned warm scale
SCALE_FACTORS = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
#: and the bias offset over these values (the logits' units)
BIAS_OFFSETS = (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0)


def calibration_items(num_items: int, fraction: float, exclude, seed: int) -> list[int]:
    """A seeded ``fraction`` of the catalog, drawn from the items not in ``exclude``."""
    pool = sorted(set(range(num_items)) - set(exclude))
    count = round(fraction * num_items)
    if not 1 <= count < len(pool):
        raise ValueError(
            f"cold_calibration {fraction:g} of {num_items} items holds out {count} of the "
            f"{len(pool)} trainable items; choose a fraction that holds out at least one and "
            "keeps the rest trainable (e.g. 0.05)"
        )
    return sorted(random.Random(f"cold-calibration-{seed}").sample(pool, count))


def without_items(sequences: Sequence[list[int]], items) -> list[list[int]]:
    """``sequences`` with every occurrence of ``items`` removed."""
    drop = set(items)
    return [[i for i in s if i not in drop] for s in sequences]


def cold_grid(model) -> tuple[tuple[float, float], list[tuple[float, float]]]:
    """The model's current (cold scale, bias offset) and the calibration grid, that point first."""
    learned = (float(model.match_scale_cold.detach()), float(model.cold_bias.detach()))
    warm = float(model.match_scale.detach())
    return learned, [learned] + [(warm * f, b) for f in SCALE_FACTORS for b in BIAS_OFFSETS]


@torch.no_grad()
def evaluate_grid(model, grid, examples, batch_size=256, ks=(10,), device="cpu") -> list[dict]:
    """The metrics of ``examples`` with the text-only rows at each (cold scale, bias offset) of
    ``grid``, in one pass: the user vectors and the rest of the scores are computed once per
    batch. One metrics dict per grid point, as :func:`~lite_export.model.metrics.evaluate_ranking`
    gives it."""
    cfg = model.config
    current = (float(model.match_scale_cold), float(model.cold_bias))
    w, b = (t.detach() for t in model.head_params())
    cols = model.text_only.to(w.device).nonzero().flatten()
    unit = model.match_table()[:-1][cols]  # the text-only rows' match block, before the scale
    d = w.shape[1] - unit.shape[1]

    def variants(item_ids):
        u = model.user_vectors(item_ids)
        base = F.linear(u, w, b)
        cos = u[:, d:] @ unit.T  # [B, C]
        for scale, bias in grid:
            scores = base.clone()
            scores[:, cols] += (scale - current[0]) * cos + (bias - current[1])
            yield scores

    return evaluate_variants(
        variants, examples, cfg.num_items, cfg.max_history, batch_size, ks=ks, device=device
    )


def choose(cold: Sequence[float], others: Sequence[float], warm_cost: float) -> int:
    """The grid point (index) with the best ``cold`` metric among those whose ``others`` metric
    is within ``warm_cost`` of point 0's (the learned values, always allowed)."""
    floor = (1.0 - warm_cost) * others[0]
    allowed = [i for i in range(len(cold)) if others[i] >= floor] or [0]
    return max(allowed, key=lambda i: (cold[i], others[i], i == 0))  # ties keep the learned


@torch.no_grad()
def calibrate_cold_scale(
    model,
    examples: Sequence[tuple[list[int], int]],
    warm_cost: float = 0.02,
    batch_size: int = 256,
    device="cpu",
    log: Callable[[str], None] | None = None,
) -> dict:
    """Set ``model.match_scale_cold`` and ``model.cold_bias`` to the grid point that ranks
    text-only targets best (validation NDCG@10 of the ``examples`` whose target is text-only)
    while the other examples' NDCG@10 stays within ``warm_cost`` (a fraction) of what the
    learned values give them. A larger cold scale or bias ranks text-only targets higher and
    pushes every text-only item above the other users' targets: on NDCG@10 over all users the
    few text-only targets lose, and new items would hardly ever be recommended. The learned
    values are a candidate too. Returns the choice and the learned values' metrics."""
    if model.match_scale_cold is None:
        raise ValueError("cold calibration needs a model with head_cold_scale=True")
    cold_users = [i for i, (_, t) in enumerate(examples) if bool(model.text_only[t])]
    if not cold_users:
        raise ValueError(
            "no validation user has a calibration item as target; raise cold_calibration"
        )
    learned, grid = cold_grid(model)
    warm = float(model.match_scale)

    def run(rows):
        return evaluate_grid(model, grid, rows, batch_size=batch_size, ks=(10,), device=device)

    text_only_set = set(cold_users)
    cold = [m["ndcg@10"] for m in run([examples[i] for i in cold_users])]
    others = [
        m["ndcg@10"] for m in run([e for i, e in enumerate(examples) if i not in text_only_set])
    ]
    best = choose(cold, others, warm_cost)
    model.match_scale_cold.fill_(grid[best][0])
    model.cold_bias.fill_(grid[best][1])

    def point(i):
        return {
            "scale": grid[i][0],
            "bias": grid[i][1],
            "text_only_targets_ndcg@10": cold[i],
            "other_targets_ndcg@10": others[i],
        }

    out = {
        "users": len(examples),
        "text_only_target_users": len(cold_users),
        "learned": point(0),
        "chosen": point(best),
        "warm_scale": warm,
        "warm_cost": warm_cost,
    }
    if log is not None:
        log(
            f"cold calibration on {len(examples):,} validation users ({len(cold_users):,} with a "
            f"text-only target): scale {learned[0]:.2f} -> {grid[best][0]:.2f}, bias "
            f"{learned[1]:+.2f} -> {grid[best][1]:+.2f} (warm scale {warm:.2f}); ndcg@10 of "
            f"text-only targets {cold[0]:.4f} -> {cold[best]:.4f}, of the others "
            f"{others[0]:.4f} -> {others[best]:.4f} (allowed cost {warm_cost:.0%})"
        )
    return out
