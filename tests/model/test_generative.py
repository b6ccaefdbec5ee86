"""The generative peer (P5-style id generation + constrained beam search) of the paper."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lite_export.model.generative import (
    BOS,
    DIGIT0,
    SEP,
    GenerativeConfig,
    GenerativeRecommender,
    ItemIdCodec,
    PrefixTrie,
    evaluate_generative,
    train_generative,
)


def _valid_next(codec: ItemIdCodec, prefix: tuple[int, ...], banned: set[int]) -> set[int]:
    """Brute force: digit tokens that extend ``prefix`` towards an item not banned."""
    out = set()
    for i in range(codec.num_items):
        d = codec.digits(i)
        if i not in banned and d[: len(prefix)] == prefix:
            out.add(DIGIT0 + d[len(prefix)])
    return out


@settings(max_examples=150, deadline=None)
@given(
    num_items=st.integers(1, 2500),
    data=st.data(),
)
def test_trie_allows_exactly_the_prefixes_of_valid_unbanned_items(num_items, data):
    codec = ItemIdCodec(num_items)
    trie = PrefixTrie(codec)
    banned = set(data.draw(st.lists(st.integers(0, num_items - 1), max_size=30)))
    length = data.draw(st.integers(0, codec.width - 1))
    prefix = tuple(data.draw(st.lists(st.integers(0, 9), min_size=length, max_size=length)))
    got = trie.allowed([DIGIT0 + d for d in prefix], trie.ban_counts(list(banned)))
    assert set(got) == _valid_next(codec, prefix, banned)
    assert len(got) == len(set(got))
    # a full-width prefix allows nothing: generation never runs past one item
    assert trie.allowed([DIGIT0] * codec.width) == []


@settings(max_examples=60, deadline=None)
@given(num_items=st.integers(2, 3000), seed=st.integers(0, 10_000))
def test_every_path_through_the_trie_is_a_valid_unbanned_item(num_items, seed):
    codec = ItemIdCodec(num_items)
    trie = PrefixTrie(codec)
    g = torch.Generator().manual_seed(seed)
    banned = set(torch.randint(0, num_items, (min(20, num_items - 1),), generator=g).tolist())
    if len(banned) == num_items:
        return
    counts = trie.ban_counts(list(banned))
    path: list[int] = []
    while (options := trie.allowed(path, counts)) != []:
        path.append(options[int(torch.randint(0, len(options), (1,), generator=g))])
    item = codec.decode(path)
    assert item is not None and item not in banned


def test_codec_round_trip_and_history_layout():
    codec = ItemIdCodec(100)
    assert codec.width == 2
    assert codec.encode_history([12, 7]) == [
        BOS,
        DIGIT0 + 1,
        DIGIT0 + 2,
        SEP,
        DIGIT0,
        DIGIT0 + 7,
        SEP,
    ]
    assert all(codec.decode(codec.encode_item(i)[:-1]) == i for i in range(100))
    assert codec.decode([DIGIT0 + 9]) is None  # wrong width
    assert ItemIdCodec(150).decode([DIGIT0 + 1, DIGIT0 + 9, DIGIT0 + 9]) is None  # 199 >= 150
    with pytest.raises(ValueError, match="outside"):
        codec.digits(100)


@pytest.fixture(scope="module")
def tiny_generative():
    from lite_export.data import leave_one_out, load_dataset
    from lite_export.model.workflow import catalog_of

    torch.set_num_threads(2)
    ds = load_dataset("synthetic", num_items=120, num_users=120, max_len=25)
    split = leave_one_out(ds)
    cfg = GenerativeConfig(num_items=ds.num_items, d_model=32, d_ff=64, max_history=20)
    model = GenerativeRecommender(cfg, catalog_of(ds, split), seed=0)
    probe = model.training_batch(split.train[:64])
    with torch.no_grad():
        model.eval()
        before = model.loss(probe).item()
    result = train_generative(model, split, epochs=3, batch_size=32, lr=5e-3, log=None)
    with torch.no_grad():
        after = model.loss(probe).item()
    return ds, split, model, result, before, after


def test_training_reduces_the_loss(tiny_generative):
    _, _, _, result, before, after = tiny_generative
    assert result["epochs_run"] == 3
    assert after < before - 0.3, (before, after)
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]


def test_constrained_beam_search_returns_valid_distinct_unseen_items(tiny_generative):
    ds, split, model, *_ = tiny_generative
    hists = [h for h, _ in split.test[:12]]
    lists = model.generate_items(hists, num_beams=20)
    for hist, items in zip(hists, lists, strict=True):
        assert len(items) == 20
        assert len(set(items)) == 20
        assert all(0 <= i < ds.num_items for i in items)
        assert not set(items) & set(hist)
    # the public call maps to external ids, best first
    top = model.recommend([[ds.item_ids[i] for i in hists[0]]], k=20)
    assert top.ids[0] == [ds.item_ids[i] for i in lists[0]]


def test_beam_search_when_few_items_are_left():
    cfg = GenerativeConfig(num_items=12, d_model=16, d_ff=32, n_heads=2, max_history=12)
    model = GenerativeRecommender(cfg, seed=0)
    history = list(range(9))  # 3 items left, 5 beams
    items = model.generate_items([history], num_beams=5)[0]
    assert sorted(items) == [9, 10, 11]


def test_evaluation_metrics_are_bounded_and_k_needs_beams(tiny_generative):
    _, split, model, *_ = tiny_generative
    m = evaluate_generative(model, split.test[:40], batch_size=20)
    assert m["users"] == 40
    for k in (5, 10, 20):
        assert 0.0 <= m[f"ndcg@{k}"] <= m[f"recall@{k}"] <= 1.0
    assert m["recall@5"] <= m["recall@10"] <= m["recall@20"]
    with pytest.raises(ValueError, match="beams"):
        evaluate_generative(model, split.test[:4], ks=(50,))
