"""Amazon P5-style loader on tiny hand-written files."""

from __future__ import annotations

import pytest

from lite_export.data import DataFormatError, DataNotFoundError, load_amazon

SEQUENCES = "UB A3 A1 A2\nUA A1 A4\n"
TITLES = (
    "asin\ttitle\n"
    "A1\tSoap &amp; Water  Bar\n"
    "A2\t\n"  # empty title
    "A3\t&#9733;Star&#9733; Cream\n"
    "A4\tPlain Lotion\n"
    "A9\tNever bought\n"
)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_amazon(writer, tmp_path, suffix):
    writer(f"user_sequence.txt{suffix}", SEQUENCES)
    writer(f"item_titles.tsv{suffix}", TITLES)
    ds = load_amazon(tmp_path)
    assert ds.name == "amazon"
    assert ds.max_history == 50
    assert ds.item_ids == ["A3", "A1", "A2", "A4"]  # first appearance; A9 never occurs
    assert ds.user_ids == ["UB", "UA"]  # file order
    assert ds.sequences == [[0, 1, 2], [1, 3]]
    assert ds.item_titles == [
        "\u2605Star\u2605 Cream",
        "Soap & Water Bar",
        "Item A2",
        "Plain Lotion",
    ]
    assert ds.item_texts[1] == "Title: Soap & Water Bar."
    assert ds.item_texts[2] == "Title: Item A2."
    assert all(t for t in ds.item_texts)
    assert [ds.index_of(a) for a in ds.item_ids] == [0, 1, 2, 3]


def test_amazon_missing_title_row(writer, tmp_path):
    writer("user_sequence.txt", "UA A1\nUB A1 A7\n")
    writer("item_titles.tsv", TITLES)
    with pytest.raises(DataFormatError) as err:
        load_amazon(tmp_path)
    msg = str(err.value)
    assert "user_sequence.txt line 2" in msg
    assert "A7" in msg and "item_titles.tsv" in msg


@pytest.mark.parametrize(
    ("name", "text", "line", "needle"),
    [
        ("item_titles.tsv", "A1\tSoap\n", 1, "expected the header"),
        ("item_titles.tsv", "asin\ttitle\nA1\tSoap\nA2 no tab\n", 3, "got no tab"),
        ("item_titles.tsv", "asin\ttitle\nA1\tSoap\nA1\tSoap 2\n", 3, "already has a title"),
        ("user_sequence.txt", "UA A1\nUB\n", 2, "has no items"),
        ("user_sequence.txt", "UA A1\nUA A2\n", 2, "already appeared on line 1"),
    ],
)
def test_amazon_malformed(writer, tmp_path, name, text, line, needle):
    writer("user_sequence.txt", "UA A1 A2\n")
    writer("item_titles.tsv", "asin\ttitle\nA1\tx\nA2\ty\n")
    writer(name, text)
    with pytest.raises(DataFormatError) as err:
        load_amazon(tmp_path)
    assert f"{name} line {line}:" in str(err.value)
    assert needle in str(err.value)


def test_amazon_corrupt_gzip(tmp_path, writer):
    (tmp_path / "user_sequence.txt.gz").write_bytes(b"not gzip at all")
    writer("item_titles.tsv", TITLES)
    with pytest.raises(DataFormatError, match=r"user_sequence\.txt\.gz.*gzip"):
        load_amazon(tmp_path)


def test_amazon_missing(writer, tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_amazon(tmp_path)
    assert "user_sequence.txt" in str(err.value) and "item_titles.tsv" in str(err.value)
    writer("user_sequence.txt", SEQUENCES)
    with pytest.raises(DataNotFoundError, match="item_titles.tsv"):
        load_amazon(tmp_path)
    ds = load_amazon(tmp_path, require_titles=False)  # ID-only use (e.g. Sports/Toys)
    assert ds.item_titles[0] == "Item A3"


def test_amazon_bad_encoding_names_the_line(writer, tmp_path):
    writer("user_sequence.txt", SEQUENCES)
    writer("item_titles.tsv.gz", "asin\ttitle\nA1\tok\nA2\tcaf\xe9\n", "latin-1")
    with pytest.raises(DataFormatError, match=r"item_titles\.tsv\.gz line 3: cannot decode"):
        load_amazon(tmp_path)
