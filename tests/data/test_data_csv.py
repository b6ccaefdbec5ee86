"""Generic CSV loader on tiny hand-written files."""

from __future__ import annotations

import pytest

from lite_export.data import DataFormatError, DataNotFoundError, load_csv
from lite_export.data.csv import parse_timestamp

ITEMS = (
    "item_id,title,genres,brand\n"
    'i1,"Dune, Part One",Sci-Fi|Drama,\n'
    "i2,Heat,Crime,Warner\n"
    "i3,,Comedy,Acme\n"  # empty title
    "i4,Unused,Drama,\n"
)
# Out of order, mixed numeric / ISO timestamps, a tie for u1 (i2 then i1 in file order).
INTERACTIONS = (
    "user_id,item_id,timestamp\n"
    "u2,i3,2024-01-02T00:00:00Z\n"
    "u1,i2,2024-01-05\n"
    "u1,i3,2024-01-01T10:00:00+02:00\n"
    "u2,i1,1704067200\n"  # 2024-01-01T00:00:00Z
    "u1,i1,2024-01-05T00:00:00\n"
)


def test_csv(writer, tmp_path):
    writer("items.csv", ITEMS)
    writer("interactions.csv", INTERACTIONS)
    ds = load_csv(tmp_path)
    assert ds.name == "csv"
    assert ds.max_history == 50
    assert ds.item_ids == ["i1", "i2", "i3"]  # items.csv order, only items with interactions
    assert ds.user_ids == ["u2", "u1"]  # first appearance
    assert [[ds.item_ids[i] for i in s] for s in ds.sequences] == [
        ["i1", "i3"],
        ["i3", "i2", "i1"],
    ]
    assert ds.item_titles == ["Dune, Part One", "Heat", "Item i3"]
    assert ds.item_texts == [
        "Title: Dune, Part One. Genres: Sci-Fi|Drama.",
        "Title: Heat. Genres: Crime. Brand: Warner.",
        "Genres: Comedy. Brand: Acme.",
    ]
    assert ds.item_meta[1] == {"title": "Heat", "genres": "Crime", "brand": "Warner"}


def test_csv_no_title_column_and_options(writer, tmp_path):
    writer("things.csv.gz", "item_id,product_name\nx,Blue Mug\ny,\n")
    writer("events.csv", "item_id,user_id,rating\nx,a,5\ny,a,1\nx,b,2\n")  # no timestamp
    ds = load_csv(tmp_path, max_history=7, interactions="events.csv", items="things.csv")
    assert ds.max_history == 7
    assert ds.item_titles == ["Blue Mug", "Item y"]  # first text column is the title
    assert ds.item_texts == ["Product name: Blue Mug.", "Title: Item y."]
    assert ds.sequences == [[0, 1], [0]]  # file order when there is no timestamp


def test_parse_timestamp():
    assert parse_timestamp("12.5") == 12.5
    assert parse_timestamp("1970-01-01T00:01:00Z") == 60.0
    assert parse_timestamp("1970-01-01T01:00:00+01:00") == 0.0
    assert parse_timestamp("1970-01-02") == 86400.0
    for bad in ("yesterday", "nan", ""):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


@pytest.mark.parametrize(
    ("name", "text", "line", "needle"),
    [
        ("interactions.csv", "user,item\nu,i1\n", 1, "lacks the column(s) user_id, item_id"),
        ("interactions.csv", "user_id,item_id,timestamp\nu,i1,1\nu,i2\n", 3, "expected 3 fields"),
        ("interactions.csv", "user_id,item_id,timestamp\nu,i1,1\n\nu,i2,soon\n", 4, "timestamp"),
        ("interactions.csv", "user_id,item_id,timestamp\n,i1,1\n", 2, "user_id is empty"),
        ("interactions.csv", "user_id,item_id,timestamp\nu,i1,1\nu,i9,2\n", 3, "'i9' has no row"),
        ("items.csv", "item_id,title\ni1,a\ni1,b\n", 3, "already has a row on line 2"),
        ("items.csv", "item_id,title\ni1,a,extra\n", 2, "expected 2 fields"),
        ("items.csv", "title\na\n", 1, "lacks the column(s) item_id"),
    ],
)
def test_csv_malformed(writer, tmp_path, name, text, line, needle):
    writer("items.csv", "item_id,title\ni1,a\ni2,b\n")
    writer("interactions.csv", "user_id,item_id,timestamp\nu,i1,1\n")
    writer(name, text)
    with pytest.raises(DataFormatError) as err:
        load_csv(tmp_path)
    assert f"{name} line {line}:" in str(err.value)
    assert needle in str(err.value)


def test_csv_missing(writer, tmp_path):
    writer("interactions.csv", INTERACTIONS)
    with pytest.raises(DataNotFoundError) as err:
        load_csv(tmp_path)
    assert "items.csv" in str(err.value) and str(tmp_path) in str(err.value)


def test_csv_bad_encoding_names_the_line(writer, tmp_path):
    writer("interactions.csv", "user_id,item_id,timestamp\nu,i1,1\n")
    writer("items.csv", "item_id,title\ni1,ok\ni2,caf\xe9\n", "latin-1")
    with pytest.raises(DataFormatError, match=r"items\.csv line 3: cannot decode .* as UTF-8"):
        load_csv(tmp_path)
