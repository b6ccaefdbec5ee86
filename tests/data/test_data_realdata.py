"""The loaders on the real shared datasets (read in place, never copied).

Skipped when ``../shared/data`` (relative to the repository) is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lite_export.data import leave_one_out, load_dataset

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

pytestmark = pytest.mark.realdata


def _require(sub: str) -> Path:
    path = DATA / sub
    if not path.is_dir():
        pytest.skip(f"real data not available: {path} is absent")
    return path


def test_ml1m_real():
    ds = load_dataset("ml-1m", _require("ml-1m"))
    assert ds.source["interactions"].endswith("user_sequences.txt.gz")
    assert ds.summary() == {
        "dataset": "ml-1m",
        "users": 6040,
        "items": 3706,
        "interactions": 1_000_209,
        "max_history": 200,
    }
    toy_story = ds.index_of("1")
    assert ds.item_texts[toy_story] == (
        "Title: Toy Story (1995). Genres: Animation, Children's, Comedy."
    )
    assert ds.item_ids == sorted(ds.item_ids, key=int)
    split = leave_one_out(ds)
    assert len(split.test) == 6040
    assert sum(split.popularity) == 1_000_209 - 2 * 6040


def test_ml100k_real():
    ds = load_dataset("ml-100k", _require("ml-100k"))
    assert (len(ds.sequences), ds.num_items, ds.num_interactions) == (943, 1682, 100_000)
    assert ds.item_texts[ds.index_of("1")] == (
        "Title: Toy Story (1995). Genres: Animation, Children's, Comedy."
    )


def test_amazon_beauty_real():
    ds = load_dataset("amazon", _require("amazon-beauty"))
    assert (len(ds.sequences), ds.num_items, ds.num_interactions) == (22_363, 12_101, 198_502)
    assert ds.max_history == 50
    assert min(len(s) for s in ds.sequences) >= 5
    assert all(t.strip() for t in ds.item_texts)
    assert not any("&amp;" in t or "&#" in t for t in ds.item_titles)
