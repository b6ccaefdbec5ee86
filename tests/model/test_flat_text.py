"""The flat-text ablation: packing of item tokens, causality, training, and its refusals."""

from __future__ import annotations

import pytest
import torch

from lite_export.data import leave_one_out, load_dataset
from lite_export.model.config import LiteConfig, TrainConfig
from lite_export.model.flat_text import FlatTextLite, item_token_table
from lite_export.model.train import train_model
from lite_export.model.workflow import catalog_of


@pytest.fixture(scope="module")
def data():
    ds = load_dataset("synthetic", num_items=40, num_users=60, max_len=12, seed=3)
    split = leave_one_out(ds)
    return ds, split, catalog_of(ds, split)


@pytest.fixture(scope="module")
def model(data):
    ds, _, cat = data
    cfg = LiteConfig.from_name("tiny", max_history=ds.max_history, dropout=0.0)
    return FlatTextLite.build(cfg, cat, seed=0, max_item_tokens=6).eval()


class _WordTokenizer:
    """A whitespace tokenizer with the call signature item_token_table uses."""

    unk_token_id = 99

    def __call__(self, texts, add_special_tokens, truncation, max_length):
        assert add_special_tokens is False and truncation
        ids = [[len(w) * 10 + i for i, w in enumerate(t.split())][:max_length] for t in texts]
        return {"input_ids": ids}


def test_item_token_table_is_compact_left_aligned_and_never_empty():
    vocab, tokens, lengths = item_token_table(_WordTokenizer(), ["a bb ccc dddd", "", "bb"], 3)
    # "a bb ccc" -> 10, 21, 32; "" -> unk 99; "bb" -> 20
    assert vocab.tolist() == [10, 20, 21, 32, 99]
    assert tokens.tolist() == [[1, 3, 4], [5, 0, 0], [2, 0, 0], [0, 0, 0]]
    assert lengths.tolist() == [3, 1, 1, 0]  # the last row is the pad item
    with pytest.raises(ValueError, match="max_item_tokens"):
        item_token_table(_WordTokenizer(), ["a"], 0)


def test_pack_lays_items_end_to_end_with_left_padding(model):
    n = model.config.num_items
    ids = torch.tensor([[n, n, 3, 5], [n, 1, 2, 3]])
    tokens, owner, last, first = model.pack(ids)
    assert first == 1  # the all-pad first column is skipped
    lens = model.item_lengths
    for row in range(2):
        items = [i for i in ids[row].tolist() if i != n]
        want = torch.cat([model.item_tokens[i, : lens[i]] for i in items])
        got = tokens[row]
        pad = got.shape[0] - want.shape[0]
        assert torch.equal(got[pad:], want) and not got[:pad].any()
        want_owner = torch.cat([torch.full((int(lens[i]),), i) for i in items])
        assert torch.equal(owner[row, pad:], want_owner) and (owner[row, :pad] == n).all()
        # each item's readout index is its last token
        ends = torch.cumsum(torch.stack([lens[i] for i in items]), 0) + pad - 1
        assert last[row, -len(items) :].tolist() == ends.tolist()
    assert torch.equal(model.tokens_per_user(ids), lens[ids].sum(1))


@torch.no_grad()
def test_hidden_state_of_an_item_depends_only_on_its_prefix(model):
    n = model.config.num_items
    full = model._hidden(torch.tensor([[n, n, 3, 5, 7]]))
    prefix = model._hidden(torch.tensor([[n, n, n, 3, 5]]))
    longer_pad = model._hidden(torch.tensor([[n] * 9 + [3, 5, 7]]))
    tol = 1e-5  # fp32, different padding -> different reduction order in attention
    torch.testing.assert_close(full[0, 3], prefix[0, 4], rtol=tol, atol=tol)
    torch.testing.assert_close(full[0, -1], longer_pad[0, -1], rtol=tol, atol=tol)
    assert not full[0, :2].any()  # pad positions carry nothing
    assert full.shape == (1, 5, model.d_model)


def test_training_lowers_the_loss_and_recommend_excludes_history(data):
    ds, split, cat = data
    cfg = LiteConfig.from_name("tiny", max_history=ds.max_history)
    model = FlatTextLite.build(cfg, cat, seed=0, max_item_tokens=6)
    result = train_model(model, split, TrainConfig(epochs=3, lr=3e-3), progress=False, log=None)
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < losses[0]
    hist = [ds.item_ids[i] for i in split.test[0][0]]
    top = model.recommend([hist], k=10)
    assert len(top.ids[0]) == 10 and not set(top.ids[0]) & set(hist)


def test_refusals(data, model, tmp_path):
    _, _, cat = data
    with pytest.raises(ValueError, match="needs an item LLM"):
        FlatTextLite.build(LiteConfig(item_llm=None, use_id_embedding=True), cat)
    with pytest.raises(NotImplementedError, match="not saved"):
        model.save_pretrained(tmp_path / "x")
