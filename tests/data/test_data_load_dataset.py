"""``load_dataset``: the name-based entry point used by the CLI."""

from __future__ import annotations

import pytest

from lite_export.data import DATASETS, DataNotFoundError, SequenceDataset, load_dataset


def test_names():
    assert DATASETS == ("synthetic", "ml-1m", "ml-100k", "amazon", "csv")


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError) as err:
        load_dataset("netflix")
    for name in DATASETS:
        assert name in str(err.value)


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("ml-1m", "movies.dat"),
        ("ml-100k", "u.item"),
        ("amazon", "item_titles.tsv"),
        ("csv", "interactions.csv"),
    ],
)
def test_real_dataset_without_dir(name, needle):
    with pytest.raises(DataNotFoundError) as err:
        load_dataset(name)
    assert "--data-dir DIR" in str(err.value)
    assert needle in str(err.value)


def test_synthetic_rejects_data_dir(tmp_path):
    with pytest.raises(ValueError, match="data-dir"):
        load_dataset("synthetic", tmp_path)


def test_dispatch_and_kwargs(writer, tmp_path):
    writer("interactions.csv", "user_id,item_id,timestamp\na,x,1\na,y,2\n")
    writer("items.csv", "item_id,title\nx,X\ny,Y\n")
    ds = load_dataset("CSV", tmp_path, max_history=9)
    assert isinstance(ds, SequenceDataset)
    assert ds.max_history == 9 and ds.sequences == [[0, 1]]
    with pytest.raises(DataNotFoundError, match="ml-100k|MovieLens-100K"):
        load_dataset("ml_100k", tmp_path)


def test_dataset_validation():
    with pytest.raises(ValueError, match="not unique"):
        SequenceDataset("d", ["a", "a"], ["t", "t"], ["t", "t"], [], [])
    with pytest.raises(ValueError, match="outside"):
        SequenceDataset("d", ["a"], ["t"], ["t"], ["u"], [[1]])
