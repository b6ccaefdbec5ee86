"""The head built from item text (``head="text"`` / ``"text+id"``) and training exclusions."""

import pytest
import torch
import torch.nn.functional as F

from lite_export.model.config import LiteConfig
from lite_export.model.lite_llm4rec import LiteLLM4Rec
from tests.model.test_model import _catalog, _model

IDS = torch.tensor([[30, 30, 1, 2, 3], [4, 5, 6, 7, 8]])
TARGETS = torch.tensor([[-100, -100, 2, 3, 4], [5, 6, 7, 8, 9]])


@pytest.mark.parametrize("head", ["text", "text+id"])
def test_text_head_rows_come_from_the_item_vectors(head):
    model = _model(head=head)
    w, b = model.head_params()
    assert w.shape == (30, 32) and b.shape == (30,)
    out = model.head_text(model.item_vectors[:-1])
    torch.testing.assert_close(w, out[:, :32])
    torch.testing.assert_close(b, out[:, 32])  # "text+id" starts with a zero residual
    with torch.no_grad():
        ref = model.user_vectors(IDS) @ w.T + b
    torch.testing.assert_close(model.score(IDS), ref)
    rows = torch.tensor([3, 0, 3])
    wr, br = model.head_params(rows)
    torch.testing.assert_close(wr, w[rows])
    torch.testing.assert_close(br, b[rows])
    if head == "text":
        assert model.head is None
    else:
        assert not model.head.weight.any() and not model.head.bias.any()


@pytest.mark.parametrize("head", ["text", "text+id"])
@pytest.mark.parametrize("negatives", [0, 8])
def test_text_head_trains_every_parameter(head, negatives):
    model = _model(head=head).train()
    loss = model(IDS, targets=TARGETS, num_negatives=negatives)
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    assert model.head_text.weight.grad.abs().sum() > 0


def test_residual_dropout_drops_whole_rows_in_training_only():
    model = _model(head="text+id", head_residual_dropout=0.5)
    with torch.no_grad():
        model.head.weight.fill_(1.0)
        model.head.bias.fill_(1.0)
    text_w, text_b = (t.detach() for t in _text_rows(model))
    w_eval, b_eval = model.head_params()
    torch.testing.assert_close(w_eval, text_w + 1)  # eval: text row + residual
    torch.testing.assert_close(b_eval, text_b + 1)
    model.train()
    torch.manual_seed(0)
    w, b = model.head_params()
    res_w, res_b = w - text_w, b - text_b
    dropped = res_b.abs() < 1e-6
    kept = (res_b - 2.0).abs() < 1e-5  # kept rows are rescaled by 1 / (1 - p)
    assert (dropped | kept).all() and dropped.any() and kept.any()
    torch.testing.assert_close(res_w[dropped], torch.zeros_like(res_w[dropped]))
    torch.testing.assert_close(res_w[kept], torch.full_like(res_w[kept], 2.0))


def _text_rows(model):
    out = model.head_text(model.item_vectors[:-1])
    return out[:, :-1], out[:, -1]


@pytest.mark.parametrize("negatives", [0, 8])
def test_blocked_items_get_no_gradient_and_no_probability(negatives):
    model = _model(head="text+id", dropout=0.0).train()
    blocked = [10, 11, 12, 29]
    model.block_in_training(blocked)
    ids = torch.tensor([[30, 1, 2, 3, 4], [4, 5, 6, 7, 8]])
    targets = torch.tensor([[-100, 2, 3, 4, 5], [5, 6, 7, 8, 9]])
    torch.manual_seed(1)
    loss = model(ids, targets=targets, num_negatives=negatives)
    loss.backward()
    grad = model.head.weight.grad
    assert not grad[blocked].any() and not model.head.bias.grad[blocked].any()
    if negatives == 0:  # the loss is the softmax over the unblocked items only
        model.zero_grad()
        h = model(ids)[targets != -100]
        w, b = model.head_params()
        free = torch.ones(30, dtype=torch.bool)
        free[blocked] = False
        logits = (h @ w.T + b)[:, free]
        remap = torch.cumsum(free.long(), 0) - 1
        expected = F.cross_entropy(logits, remap[targets[targets != -100]])
        torch.testing.assert_close(model(ids, targets=targets), expected)
    model.block_in_training([])
    assert not model.train_blocked.any()


@pytest.mark.parametrize("head", ["text", "text+id"])
def test_text_head_checkpoint_round_trip(tmp_path, head):
    model = _model(head=head, head_residual_dropout=0.3 if head == "text+id" else 0.0)
    with torch.no_grad():
        if model.head is not None:
            model.head.weight.normal_()
    model.save_pretrained(tmp_path / "ck")
    again = LiteLLM4Rec.from_pretrained(tmp_path / "ck")
    assert again.config.head == head
    torch.testing.assert_close(again.score(IDS), model.score(IDS), rtol=0, atol=0)


def test_head_config_is_checked():
    with pytest.raises(ValueError, match="is not one of"):
        LiteConfig(head="texts")
    with pytest.raises(ValueError, match="needs an item LLM"):
        LiteConfig(item_llm=None, head="text")
    with pytest.raises(ValueError, match="head_residual_dropout"):
        LiteConfig(head="text", head_residual_dropout=0.2)
    with pytest.raises(ValueError, match="head_match adds a text-match term"):
        LiteConfig(head="id", head_match=True)
    with pytest.raises(ValueError, match="head_cold_scale learns the text-only rows"):
        LiteConfig(head="text+id", head_match=True, head_cold_scale=True)  # nothing dropped
    with pytest.raises(ValueError, match="head_cold_scale learns the text-only rows"):
        LiteConfig(head="text", head_match=True, head_cold_scale=True)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        LiteConfig(head="text+id", head_residual_dropout=1.0)


def _unit_rows(model):
    """The text-match block's item side, written out: centred on the catalog mean, unit length."""
    v = model.item_vectors[:-1]
    return F.normalize(v - v.mean(0), dim=-1)


@pytest.mark.parametrize("head", ["text", "text+id"])
def test_head_match_adds_the_scaled_cosine_of_history_and_item(head):
    model = _model(head=head, head_match=True)
    d_item = model.item_vectors.shape[1]
    assert model.head_width == 32 + d_item
    w, b = model.head_params()
    assert w.shape == (30, 32 + d_item)
    text_w, text_b = model.head_params(match=False)
    torch.testing.assert_close(w[:, :32], text_w)
    torch.testing.assert_close(b, text_b)
    unit = _unit_rows(model)
    scale = model.match_scale.detach()
    torch.testing.assert_close(w[:, 32:], scale * unit)
    u = model.user_vectors(IDS)
    assert u.shape == (2, 32 + d_item)
    with torch.no_grad():
        h = model(IDS)[:, -1]
    torch.testing.assert_close(u[:, :32], h)
    for row, ids in enumerate(IDS.tolist()):  # the mean of the history's unit rows, pads skipped
        mean = unit[[i for i in ids if i != 30]].mean(0)
        torch.testing.assert_close(u[row, 32:], F.normalize(mean, dim=0))
    with torch.no_grad():
        ref = h @ text_w.T + text_b + scale * (u[:, 32:] @ unit.T)
    torch.testing.assert_close(model.score(IDS), ref)


@pytest.mark.parametrize("negatives", [0, 8])
def test_head_match_loss_scores_each_position_against_its_own_history(negatives):
    model = _model(head="text", head_match=True, dropout=0.0).train()
    torch.manual_seed(3)
    loss = model(IDS, targets=TARGETS, num_negatives=negatives)
    loss.backward()
    assert model.match_scale.grad is not None and model.match_scale.grad != 0
    assert model.head_text.weight.grad.abs().sum() > 0
    if negatives:
        return
    # full softmax: position t ranks with the query of the items up to and including t
    unit = _unit_rows(model)
    w, b = model.head_params(match=False)
    hidden = model(IDS)
    rows, targets = [], []
    for r, (ids, tgt) in enumerate(zip(IDS.tolist(), TARGETS.tolist(), strict=True)):
        for t, target in enumerate(tgt):
            if target == -100:
                continue
            q = F.normalize(unit[[i for i in ids[: t + 1] if i != 30]].mean(0), dim=0)
            rows.append(hidden[r, t] @ w.T + b + model.match_scale * (unit @ q))
            targets.append(target)
    expected = F.cross_entropy(torch.stack(rows), torch.tensor(targets))
    torch.testing.assert_close(model(IDS, targets=TARGETS), expected)


def test_head_match_checkpoint_round_trip(tmp_path):
    model = _model(head="text+id", head_match=True)
    with torch.no_grad():
        model.match_scale.fill_(2.5)
        model.match_center.add_(0.1)
    model.save_pretrained(tmp_path / "ck")
    again = LiteLLM4Rec.from_pretrained(tmp_path / "ck")
    assert again.config.head_match and again.match_scale.item() == 2.5
    torch.testing.assert_close(again.match_center, model.match_center, rtol=0, atol=0)
    torch.testing.assert_close(again.score(IDS), model.score(IDS), rtol=0, atol=0)


def _cold_model(**kw):
    model = _model(
        head="text+id", head_match=True, head_residual_dropout=0.5, head_cold_scale=True, **kw
    )
    with torch.no_grad():
        model.head.weight.normal_(std=0.1)
        model.head.bias.normal_(std=0.1)
        model.match_scale.fill_(2.0)
        model.match_scale_cold.fill_(6.0)
        model.cold_bias.fill_(0.25)
    return model


def test_cold_scale_scores_text_only_items_with_their_own_scale_and_bias():
    model = _cold_model()
    assert not model.text_only.any()
    model.block_in_training([3, 7])  # held out of training: they will have no learned residual
    assert model.text_only.nonzero().flatten().tolist() == [3, 7]
    with torch.no_grad():
        model.head.weight[[3, 7]] = 0.0
        model.head.bias[[3, 7]] = 0.0
    w, b = model.head_params()
    text = model.head_text(model.item_vectors[:-1])
    unit = _unit_rows(model)
    cold = model.text_only
    scale = torch.where(cold, 6.0, 2.0).unsqueeze(1)
    torch.testing.assert_close(w[:, 32:], scale * unit)
    torch.testing.assert_close(w[:, :32], text[:, :32] + model.head.weight)
    torch.testing.assert_close(b, text[:, 32] + model.head.bias + 0.25 * cold)
    wr, br = model.head_params(torch.tensor([7, 2]))
    torch.testing.assert_close(wr, w[[7, 2]])
    torch.testing.assert_close(br, b[[7, 2]])


def test_cold_scale_trains_on_the_rows_whose_residual_is_dropped():
    model = _cold_model().train()
    p = model.config.head_residual_dropout
    torch.manual_seed(5)
    w, b, scale = model._head_rows()
    torch.manual_seed(5)
    kept = torch.rand(30) >= p  # the same draw: the rows training keeps, rescaled by 1 / (1 - p)
    assert 0 < kept.sum() < 30
    text = model.head_text(model.item_vectors[:-1])
    torch.testing.assert_close(scale, torch.where(kept, 2.0, 6.0))
    resid = kept.unsqueeze(1) * model.head.weight / (1 - p)
    torch.testing.assert_close(w, text[:, :32] + resid)
    torch.testing.assert_close(b, text[:, 32] + kept * model.head.bias / (1 - p) + 0.25 * ~kept)
    for negatives in (0, 8):
        model.zero_grad()
        model(IDS, targets=TARGETS, num_negatives=negatives).backward()
        for name in ("match_scale", "match_scale_cold", "cold_bias"):
            grad = getattr(model, name).grad
            assert grad is not None and grad != 0, (name, negatives)


def test_cold_scale_checkpoint_round_trip(tmp_path):
    model = _cold_model()
    model.block_in_training([4])
    model.save_pretrained(tmp_path / "ck")
    again = LiteLLM4Rec.from_pretrained(tmp_path / "ck")
    assert again.config.head_cold_scale and again.text_only.nonzero().flatten().tolist() == [4]
    assert (again.match_scale_cold.item(), again.cold_bias.item()) == (6.0, 0.25)
    torch.testing.assert_close(again.score(IDS), model.score(IDS), rtol=0, atol=0)


def test_flat_text_refuses_a_text_head():
    from lite_export.model.flat_text import FlatTextLite

    cfg = LiteConfig.from_name("tiny", d_model=32, d_ff=64, max_history=8, head="text")
    with pytest.raises(ValueError, match="head='id' only"):
        FlatTextLite.build(cfg, _catalog(), seed=0)


def test_cold_calibration_holds_items_out_and_picks_their_scale_on_validation(synthetic):
    from accelerate import Accelerator

    from lite_export.model import cold_calibration as cc
    from lite_export.model.config import TrainConfig
    from lite_export.model.metrics import evaluate_ranking
    from lite_export.model.train import train_model
    from lite_export.model.workflow import catalog_of

    ds, split = synthetic
    cfg = LiteConfig.from_name(
        "tiny", d_model=32, d_ff=64, max_history=20, head="text+id", head_match=True,
        head_residual_dropout=0.5, head_cold_scale=True,
    )  # fmt: skip
    model = LiteLLM4Rec.build(cfg, catalog_of(ds, split))
    train_cfg = TrainConfig.from_name("tiny", epochs=2, cold_calibration=0.1)
    result = train_model(
        model, split, train_cfg, accelerator=Accelerator(cpu=True), progress=False, log=None
    )
    held = cc.calibration_items(model.config.num_items, 0.1, split.cold_items, train_cfg.seed)
    assert len(held) == round(0.1 * model.config.num_items)
    # out of training like a new item: no learned residual, scored as text-only
    assert model.text_only[held].all() and model.text_only.sum() == len(held)
    assert not model.head.weight[held].any() and not model.head.bias[held].any()
    got = result.cold_calibration
    is_cold = [t in set(held) for _, t in split.valid]
    cold = [ex for ex, c in zip(split.valid, is_cold, strict=True) if c]
    others = [ex for ex, c in zip(split.valid, is_cold, strict=True) if not c]
    assert got["users"] == len(split.valid) and got["text_only_target_users"] == len(cold) > 0
    # the model keeps the chosen point
    assert (model.match_scale_cold.item(), model.cold_bias.item()) == pytest.approx(
        (got["chosen"]["scale"], got["chosen"]["bias"])
    )
    n, length = model.config.num_items, model.config.max_history

    def ndcg(scale, bias):  # the one-pass grid's numbers, as the evaluator gives them
        with torch.no_grad():
            model.match_scale_cold.fill_(scale)
            model.cold_bias.fill_(bias)
        return tuple(
            evaluate_ranking(model.frozen_scorer(), ex, n, length, ks=(10,))["ndcg@10"]
            for ex in (cold, others)
        )

    for which in ("chosen", "learned"):
        g = got[which]
        assert ndcg(g["scale"], g["bias"]) == pytest.approx(
            (g["text_only_targets_ndcg@10"], g["other_targets_ndcg@10"]), abs=1e-6
        )
    chosen, learned = got["chosen"], got["learned"]
    assert chosen["text_only_targets_ndcg@10"] >= learned["text_only_targets_ndcg@10"]
    assert chosen["other_targets_ndcg@10"] >= 0.98 * learned["other_targets_ndcg@10"] - 1e-9
    # no grid point within the warm cost ranks the text-only targets better
    warm = got["warm_scale"]
    for f in (cc.SCALE_FACTORS[0], cc.SCALE_FACTORS[-1]):
        for b in (cc.BIAS_OFFSETS[0], cc.BIAS_OFFSETS[-1]):
            c, o = ndcg(warm * f, b)
            if o >= 0.98 * learned["other_targets_ndcg@10"]:
                assert c <= chosen["text_only_targets_ndcg@10"] + 1e-6


def test_cold_calibration_needs_a_cold_scale_and_a_sane_fraction(synthetic):
    from lite_export.model.config import TrainConfig
    from lite_export.model.train import train_model
    from lite_export.model.workflow import catalog_of

    with pytest.raises(ValueError, match=r"cold_calibration .* in \[0, 0.5\)"):
        TrainConfig(cold_calibration=0.7)
    with pytest.raises(ValueError, match=r"cold_calibration_warm_cost .* in \[0, 1\)"):
        TrainConfig(cold_calibration_warm_cost=1.5)
    ds, split = synthetic
    model = LiteLLM4Rec.build(
        LiteConfig.from_name("tiny", d_model=32, d_ff=64), catalog_of(ds, split)
    )
    with pytest.raises(ValueError, match="head_cold_scale=True; add --head-cold-scale"):
        train_model(model, split, TrainConfig(epochs=1, cold_calibration=0.05), log=None)
