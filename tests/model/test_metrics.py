import math

import pytest
import torch

from lite_export.model.metrics import (
    MostPopular,
    NaNScoresError,
    evaluate_ranking,
    mask_items,
    metrics_from_ranks,
    pessimistic_ranks,
)


def test_pessimistic_ranks_count_ties_against_the_target():
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.1], [1.0, 2.0, 3.0, 4.0]])
    targets = torch.tensor([0, 3])
    # row 0: 0.9 is above, 0.5 (item 2) ties -> rank 2 (0-based); row 1: best -> rank 0
    assert pessimistic_ranks(scores, targets).tolist() == [2, 0]


@pytest.mark.parametrize("where", ["target", "other item"])
def test_pessimistic_ranks_refuse_nan_scores(where):
    # a NaN target compares false with everything: it would get rank -1 (a hit, NDCG = inf);
    # a NaN elsewhere would silently drop that item from above the target
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.1], [1.0, 2.0, 3.0, 4.0]])
    scores[1, 3 if where == "target" else 0] = float("nan")
    with pytest.raises(NaNScoresError, match=r"NaN scores to 1 of 2 users \(row 1: 1 of 4"):
        pessimistic_ranks(scores, torch.tensor([0, 3]))


def test_pessimistic_ranks_rank_infinite_scores():
    inf = float("inf")
    scores = torch.tensor([[inf, 1.0, -inf], [-inf, -inf, 0.0]])
    assert pessimistic_ranks(scores, torch.tensor([0, 0])).tolist() == [0, 2]


def test_evaluate_ranking_refuses_a_model_that_returns_nan():
    examples = [([0, 1], 2), ([1], 3)]
    with pytest.raises(NaNScoresError, match="diverged"):
        evaluate_ranking(lambda ids: torch.full((ids.shape[0], 5), float("nan")), examples, 5, 4)


def test_metrics_match_hand_computed_values():
    ranks = [0, 4, 9, 25]
    m = metrics_from_ranks(ranks, ks=(5, 10))
    assert m["recall@5"] == pytest.approx(2 / 4)
    assert m["recall@10"] == pytest.approx(3 / 4)
    assert m["ndcg@5"] == pytest.approx((1.0 + 1 / math.log2(6)) / 4)
    assert m["ndcg@10"] == pytest.approx((1.0 + 1 / math.log2(6) + 1 / math.log2(11)) / 4)


def test_mask_items_ignores_padding():
    scores = torch.zeros(2, 4)
    ids = torch.tensor([[4, 1, 2], [4, 4, 0]])  # pad = 4
    mask_items(scores, ids, pad_index=4)
    assert torch.isinf(scores).tolist() == [[False, True, True, False], [True, False, False, False]]


def test_evaluate_ranking_masks_the_whole_history_and_ranks_pessimistically():
    n = 5
    fixed = torch.tensor([5.0, 4.0, 3.0, 3.0, 1.0])

    def score_fn(ids):
        return fixed.expand(ids.shape[0], -1).clone()

    examples = [
        ([0], 2),  # item 0 masked: 1 above (4.0), item 3 ties -> rank 2
        ([1, 0, 4], 3),  # 0,1 masked: tie with 2 -> rank 1
        ([2], 2),  # target in history -> masked -> miss
    ]
    # max_history=1: the model sees only the last item, the mask still covers the full history
    m = evaluate_ranking(score_fn, examples, n, max_history=1, ks=(1, 2, 3))
    assert m["recall@1"] == 0.0
    assert m["recall@2"] == pytest.approx(1 / 3)
    assert m["recall@3"] == pytest.approx(2 / 3)
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(4) + 1 / math.log2(3)) / 3)


def test_most_popular_scores_are_the_counts():
    mp = MostPopular([3, 0, 7])
    out = mp(torch.zeros(2, 4, dtype=torch.long))
    assert out.tolist() == [[3.0, 0.0, 7.0], [3.0, 0.0, 7.0]]


def test_no_examples_is_a_clear_error():
    with pytest.raises(ValueError, match="no evaluation examples"):
        metrics_from_ranks([])


def test_text_cosine_scores_the_cosine_to_the_mean_history_vector():
    from lite_export.model.metrics import TextCosine

    torch.manual_seed(0)
    v = torch.randn(7, 5)
    peer = TextCosine(v)
    ids = torch.tensor([[7, 7, 1, 3], [0, 2, 4, 6]])  # 7 = pad
    scores = peer(ids)
    unit = torch.nn.functional.normalize(v, dim=-1)
    for row, hist in zip(scores, ([1, 3], [0, 2, 4, 6]), strict=True):
        user = unit[hist].mean(0)
        torch.testing.assert_close(row, torch.nn.functional.cosine_similarity(v, user[None], -1))
    assert scores.shape == (2, 7)
