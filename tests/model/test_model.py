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
