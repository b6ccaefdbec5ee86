import pytest
import torch

from lite_export.catalog import ItemCatalog, UnknownItemError
from lite_export.model.config import LiteConfig
from lite_export.model.lite_llm4rec import LiteLLM4Rec


def _catalog(n=30):
    genres = ["action", "drama", "comedy"]
    return ItemCatalog(
        ids=[f"i{i}" for i in range(n)],
        titles=[f"Item {i}" for i in range(n)],
        popularity=list(range(n)),
        texts=[f"Title: item {i} part {i % 4}. Genres: {genres[i % 3]}." for i in range(n)],
    )


def _model(**overrides):
    cfg = LiteConfig.from_name("tiny", d_model=32, d_ff=64, max_history=8, **overrides)
    return LiteLLM4Rec.build(cfg, _catalog(), seed=0).eval()


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_forward_shapes(arch):
    model = _model(rec_arch=arch)
    ids = torch.tensor([[30, 30, 1, 2, 3], [4, 5, 6, 7, 8]])  # pad index = 30
    assert model(ids).shape == (2, 5, 32)
    assert model.user_vectors(ids).shape == (2, 32)
    assert model.score(ids).shape == (2, 30)
    targets = torch.tensor([[-100, -100, 2, 3, 4], [5, 6, 7, 8, 9]])
    loss = model.train()(ids, targets=targets)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    unused = [n for n, p in trainable.items() if p.grad is None]
    assert not unused, f"parameters without gradients break DDP: {unused}"
    assert all(torch.isfinite(p.grad).all() for p in trainable.values()), "NaN gradients"


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_left_padding_does_not_change_scores(arch):
    model = _model(rec_arch=arch)
    short = torch.tensor([[3, 1, 4]])
    padded = torch.tensor([[30, 30, 30, 3, 1, 4]])
    torch.testing.assert_close(model.score(short), model.score(padded), rtol=1.3e-6, atol=1e-5)


def test_only_the_last_max_history_items_count():
    model = _model()  # max_history = 8
    hist = [f"i{i}" for i in range(12)]
    a = model.recommend([hist], k=5, exclude_seen=False)
    b = model.recommend([hist[-8:]], k=5, exclude_seen=False)
    assert a.ids == b.ids


def test_recommend_excludes_history_and_maps_ids():
    model = _model()
    hist = [f"i{i}" for i in range(0, 28)]  # all but i28, i29 seen
    top = model.recommend([hist], k=2, exclude_seen=True)
    assert sorted(top.ids[0]) == ["i28", "i29"]
    assert top.scores.shape == (1, 2) and top.indices.shape == (1, 2)
    assert top.scores[0, 0] >= top.scores[0, 1]
    seen = model.recommend([["i1"]], k=30, exclude_seen=False)
    assert "i1" in seen.ids[0]


def test_empty_history_gets_most_popular_fallback():
    model = _model()
    top = model.recommend([[], ["i1"]], k=3)
    assert top.ids[0] == ["i29", "i28", "i27"]
    assert top.fallback == [True, False]


def test_bad_inputs_raise_clear_errors():
    model = _model()
    with pytest.raises(UnknownItemError, match="'nope'.*'nada'"):
        model.recommend([["i1", "nope"], ["nada"]], k=3)
    with pytest.raises(ValueError, match="between 1 and the catalog size 30"):
        model.recommend([["i1"]], k=31)
    with pytest.raises(ValueError, match="between 1"):
        model.recommend([["i1"]], k=0)
    with pytest.raises(TypeError, match="list of lists"):
        model.recommend(["i1", "i2"], k=3)


def test_sasrec_peer_has_no_item_llm():
    cfg = LiteConfig.from_name("sasrec", d_model=32, d_ff=64, max_history=8)
    model = LiteLLM4Rec.build(cfg, _catalog(), seed=0).eval()
    assert model.adapter is None and model.id_embedding is not None
    assert model.score(torch.tensor([[1, 2]])).shape == (1, 30)


def test_config_rejects_a_model_without_item_input():
    with pytest.raises(ValueError, match="no item input"):
        LiteConfig(item_llm=None, use_id_embedding=False)


def test_sampled_softmax_loss():
    model = _model().train()
    ids = torch.tensor([[1, 2, 3, 4]])
    targets = torch.tensor([[2, 3, 4, 5]])
    loss = model(ids, targets=targets, num_negatives=8)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert model.head.weight.grad is not None


def test_finetuned_item_llm_gets_gradients():
    model = _model(finetune_item_llm=True).train()
    ids = torch.tensor([[30, 1, 2, 3]])
    targets = torch.tensor([[-100, 2, 3, 4]])
    model(ids, targets=targets).backward()
    grads = [p.grad for p in model.item_llm.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_gated_fusion_mixes_text_and_id_per_dimension(tmp_path):
    model = _model(item_fusion="gate")
    ids = torch.tensor([[30, 1, 2, 3]])
    text = model.adapter(model._batch_item_vectors(ids))
    emb = model.id_embedding(ids)
    g = torch.sigmoid(model.fusion_gate(torch.cat([text, emb], -1)))
    torch.testing.assert_close(model.embed_items(ids), g * text + (1 - g) * emb)
    assert not torch.allclose(model.embed_items(ids), text + emb)
    targets = torch.tensor([[-100, 2, 3, 4]])
    model.train()(ids, targets=targets).backward()
    assert model.fusion_gate.weight.grad.abs().sum() > 0
    model.eval()
    again = LiteLLM4Rec.from_pretrained(model.save_pretrained(tmp_path / "ckpt"))
    assert again.config.item_fusion == "gate"
    torch.testing.assert_close(again.score(ids), model.score(ids))


def test_config_rejects_gate_without_both_inputs_and_unknown_fusions():
    with pytest.raises(ValueError, match="needs both"):
        LiteConfig(item_llm=None, use_id_embedding=True, item_fusion="gate")
    with pytest.raises(ValueError, match="item_fusion='concat' is not one of"):
        LiteConfig(item_fusion="concat")
    with pytest.raises(ValueError, match=r"resid_dropout must be in \[0, 1\)"):
        LiteConfig(resid_dropout=1.0)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_residual_dropout_acts_in_training_only(arch):
    # same seed, same weights: the hooks are the only difference between the two models
    dropped = _model(rec_arch=arch, dropout=0.0, resid_dropout=0.5)
    plain = _model(rec_arch=arch, dropout=0.0)
    ids = torch.tensor([[30, 1, 2, 3, 4, 5]])
    torch.testing.assert_close(dropped.score(ids), plain.score(ids), rtol=0, atol=0)
    dropped.train()
    plain.train()
    torch.testing.assert_close(plain(ids), plain(ids), rtol=0, atol=0)  # nothing else drops
    assert not torch.allclose(dropped(ids), dropped(ids))


def test_gpt2_residual_dropout_is_its_resid_pdrop():
    assert _model(rec_arch="gpt2", dropout=0.2).backbone.config.resid_pdrop == 0.2
    assert _model(rec_arch="gpt2", resid_dropout=0.4).backbone.config.resid_pdrop == 0.4


def test_label_smoothing_loss_matches_its_definition():
    model = _model(dropout=0.0).train()
    ids = torch.tensor([[30, 1, 2, 3]])
    targets = torch.tensor([[-100, 2, 3, 4]])
    eps = 0.2
    logp = torch.log_softmax(model.head(model(ids)[:, 1:]).reshape(3, -1), -1)
    t = targets[:, 1:].reshape(-1)
    expected = ((1 - eps) * -logp[torch.arange(3), t] + eps * -logp.mean(-1)).mean()
    torch.testing.assert_close(model(ids, targets=targets, label_smoothing=eps), expected)
