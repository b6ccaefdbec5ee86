"""Comparing two TopK results the way the cluster tests need."""

from __future__ import annotations

import numpy as np


def assert_same_topk(got, want, atol: float = 1e-5) -> None:
    """Two TopK results agree: scores within ``atol`` (fp32 sums in another order) and the same
    ids, except that items whose scores tie exactly may come in another order."""
    np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=atol)
    for r, (a, b) in enumerate(zip(got.ids, want.ids, strict=True)):
        if a == b:
            continue
        scores = want.scores[r]
        for j in (j for j in range(len(a)) if a[j] != b[j]):
            ties = np.isclose(scores, scores[j], rtol=0, atol=atol).sum()
            assert ties > 1, (
                f"row {r}, rank {j}: {a[j]!r} != {b[j]!r} and score {scores[j]} is no tie"
            )
