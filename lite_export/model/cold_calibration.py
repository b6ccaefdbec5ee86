"""Calibrate a text head's cold scale on items the model never trained on.

With ``head_cold_scale`` the text-only rows (items held out of training, or added by
``lite catalog add``) have their own text-match scale and bias offset. Learned on the rows that
residual dropout removes, they stay close to the warm ones, because those rows' items still
trained the text projection and the rec LLM as targets. ``TrainConfig.cold_calibration``
instead holds a seeded fraction of the training items out of training entirely (like new
items), and after training picks the scale and offset that rank them best on the validation
users whose target is one of them: validation data only, the same NDCG@10 rule as the rest.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch

from lite_export.model.metrics import evaluate_ranking

#: the cold scale is searched as these multiples of the learned warm scale
SCALE_FACTORS = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
#: and the bias offset over these values (the logits' units)
BIAS_OFFSETS = (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5)


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


@torch.no_grad()
def calibrate_cold_scale(
    model,
    examples: Sequence[tuple[list[int], int]],
    batch_size: int = 256,
    device="cpu",
    log: Callable[[str], None] | None = None,
) -> dict:
    """Set ``model.match_scale_cold`` and ``model.cold_bias`` to the grid point with the best
    NDCG@10 on ``examples`` (validation users whose target is a text-only item). Returns the
    chosen values, the grid's best and the learned values' metric."""
    if model.match_scale_cold is None:
        raise ValueError("cold calibration needs a model with head_cold_scale=True")
    if not examples:
        raise ValueError(
            "no validation user has a calibration item as target; raise cold_calibration"
        )
    cfg = model.config
    learned = (float(model.match_scale_cold), float(model.cold_bias))
    warm = float(model.match_scale)

    def ndcg(scale: float, bias: float) -> float:
        model.match_scale_cold.fill_(scale)
        model.cold_bias.fill_(bias)
        m = evaluate_ranking(
            model.frozen_scorer(),
            examples,
            cfg.num_items,
            cfg.max_history,
            batch_size=batch_size,
            ks=(10,),
            device=device,
        )
        return m["ndcg@10"]

    before = ndcg(*learned)
    best = (before, *learned)
    for f in SCALE_FACTORS:
        for b in BIAS_OFFSETS:
            score = ndcg(warm * f, b)
            if score > best[0]:
                best = (score, warm * f, b)
    model.match_scale_cold.fill_(best[1])
    model.cold_bias.fill_(best[2])
    out = {
        "users": len(examples),
        "learned": {"scale": learned[0], "bias": learned[1], "ndcg@10": before},
        "chosen": {"scale": best[1], "bias": best[2], "ndcg@10": best[0]},
        "warm_scale": warm,
    }
    if log is not None:
        log(
            f"cold calibration on {len(examples):,} validation users: scale {learned[0]:.2f} -> "
            f"{best[1]:.2f}, bias {learned[1]:+.2f} -> {best[2]:+.2f} (warm scale {warm:.2f}); "
            f"their ndcg@10 {before:.4f} -> {best[0]:.4f}"
        )
    return out
