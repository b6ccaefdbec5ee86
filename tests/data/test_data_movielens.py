"""MovieLens-1M and -100K loaders on tiny hand-written files."""

from __future__ import annotations

import pytest

from lite_export.data import DataFormatError, DataNotFoundError, load_ml1m, load_ml100k

# Hand-made movies: 3 titles, a Latin-1 character, one movie nobody rates (99).
MOVIES = (
    "2::Alpha (1990)::Comedy|Drama\n"
    "10::Beta Caf\xe9 (1991)::Sci-Fi\n"
    "33::Gamma, The (1992)::Action|Adventure|Thriller\n"
    "99::Never Rated (1999)::Horror\n"
)
# User 7 has a timestamp tie (items 10 then 2 at ts=500, file order kept) and is out of order.
RATINGS = "7::33::4::900\n3::2::5::100\n7::10::3::500\n7::2::1::500\n3::33::2::50\n"


def test_ml1m_ratings_sorted_by_time_stable(writer, tmp_path):
    writer("movies.dat", MOVIES, "latin-1")
    writer("ratings.dat", RATINGS)
    ds = load_ml1m(tmp_path)
    # Items that occur in ratings, ascending numeric id (99 is not rated, so absent).
    assert ds.item_ids == ["2", "10", "33"]
    assert ds.user_ids == ["3", "7"]  # ascending numeric user id
    seqs = [[ds.item_ids[i] for i in s] for s in ds.sequences]
    assert seqs == [["33", "2"], ["10", "2", "33"]]
    assert ds.item_titles[1] == "Beta Caf\xe9 (1991)"
    assert ds.item_texts[0] == "Title: Alpha (1990). Genres: Comedy, Drama."
    assert ds.item_texts[2] == "Title: Gamma, The (1992). Genres: Action, Adventure, Thriller."
    assert ds.item_meta[2] == {"genres": ["Action", "Adventure", "Thriller"]}
    assert ds.max_history == 200
    assert ds.name == "ml-1m"
    assert ds.num_interactions == 5
    assert ds.pad_index == 3
    assert ds.source["interactions"].endswith("ratings.dat")


def test_ml1m_user_sequences_gz(writer, tmp_path):
    writer("movies.dat", MOVIES, "latin-1")
    writer("user_sequences.txt.gz", "7 10 2 33\n3 33 2\n\n")
    ds = load_ml1m(tmp_path)
    assert ds.item_ids == ["2", "10", "33"]
    assert ds.user_ids == ["3", "7"]
    assert [[ds.item_ids[i] for i in s] for s in ds.sequences] == [["33", "2"], ["10", "2", "33"]]


def test_ml1m_prefers_ratings_over_sequences(writer, tmp_path):
    writer("movies.dat.gz", MOVIES, "latin-1")
    writer("ratings.dat.gz", RATINGS)
    writer("user_sequences.txt", "1 2\n")  # would give one user if it were used
    ds = load_ml1m(tmp_path)
    assert ds.user_ids == ["3", "7"]
    assert ds.source["interactions"].endswith("ratings.dat.gz")


def test_ml1m_id_round_trip(writer, tmp_path):
    writer("movies.dat", MOVIES, "latin-1")
    writer("ratings.dat", RATINGS)
    ds = load_ml1m(tmp_path)
    for i, ext in enumerate(ds.item_ids):
        assert ds.index_of(ext) == i
    assert ds.indices_of(["33", "2"]) == [2, 0]
    with pytest.raises(KeyError, match="'99'"):
        ds.index_of("99")


@pytest.mark.parametrize(
    ("name", "text", "line", "needle"),
    [
        ("ratings.dat", "1::2::5::10\n1::10::3\n", 2, "expected 4 fields"),
        ("ratings.dat", "1::2::5::10\n\n1::x::3::11\n", 3, "MovieID must be an integer"),
        ("ratings.dat", "1::2::five::10\n", 1, "Rating must be a number"),
        ("user_sequences.txt", "1 2 10\n2\n", 2, "has no items"),
        ("user_sequences.txt", "1 2 10\n1 33\n", 2, "more than one line"),
        ("user_sequences.txt", "1 2 ten\n", 1, "movie_id must be an integer"),
    ],
)
def test_ml1m_malformed_interactions(writer, tmp_path, name, text, line, needle):
    writer("movies.dat", MOVIES, "latin-1")
    writer(name, text)
    with pytest.raises(DataFormatError) as err:
        load_ml1m(tmp_path)
    msg = str(err.value)
    assert f"{name} line {line}:" in msg
    assert needle in msg
    assert err.value.line == line


def test_ml1m_malformed_movies(writer, tmp_path):
    writer("movies.dat", "2::Alpha (1990)::Comedy\n10::Beta (1991)\n", "latin-1")
    writer("ratings.dat", RATINGS)
    with pytest.raises(DataFormatError, match=r"movies\.dat line 2: expected 3 fields"):
        load_ml1m(tmp_path)


def test_ml1m_movie_missing_from_movies_dat(writer, tmp_path):
    writer("movies.dat", "2::Alpha (1990)::Comedy\n33::Gamma (1992)::Action\n", "latin-1")
    writer("ratings.dat", RATINGS)
    with pytest.raises(DataFormatError) as err:
        load_ml1m(tmp_path)
    msg = str(err.value)
    assert "ratings.dat line 3" in msg  # first rating of movie 10
    assert "movie 10 is not in movies.dat" in msg


def test_ml1m_missing_files(writer, tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_ml1m(tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg
    for name in ("ratings.dat", "user_sequences.txt", "movies.dat"):
        assert name in msg
    writer("ratings.dat", RATINGS)  # movies.dat still missing
    with pytest.raises(DataNotFoundError, match="movies.dat"):
        load_ml1m(tmp_path)
    assert isinstance(err.value, FileNotFoundError)


def test_ml1m_nonexistent_directory(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_ml1m(tmp_path / "nope")


# ----------------------------------------------------------------------------- ML-100K

FLAGS = ["0"] * 19


def _item_line(item: int, title: str, genres: list[int]) -> str:
    flags = list(FLAGS)
    for g in genres:
        flags[g] = "1"
    return "|".join([str(item), title, "01-Jan-1995", "", "http://example.invalid/x", *flags])


def test_ml100k(writer, tmp_path):
    writer(
        "u.item",
        "\n".join(
            [
                _item_line(1, "One (1995)", [3, 4, 5]),  # Animation, Children's, Comedy
                _item_line(5, "Fünf (1996)", [0]),  # unknown
                _item_line(3, "Three (1997)", []),  # no genre flag set
                _item_line(4, "Unrated (1998)", [1]),
            ]
        )
        + "\n",
        "latin-1",
    )
    writer("u.data", "9\t5\t3\t300\n2\t1\t4\t10\n9\t1\t5\t200\n9\t3\t1\t200\n2\t3\t2\t5\n")
    ds = load_ml100k(tmp_path)
    assert ds.name == "ml-100k"
    assert ds.item_ids == ["1", "3", "5"]
    assert ds.user_ids == ["2", "9"]
    assert [[ds.item_ids[i] for i in s] for s in ds.sequences] == [["3", "1"], ["1", "3", "5"]]
    assert ds.item_texts[0] == "Title: One (1995). Genres: Animation, Children's, Comedy."
    assert ds.item_texts[1] == "Title: Three (1997)."
    assert ds.item_texts[2] == "Title: Fünf (1996). Genres: unknown."
    assert ds.max_history == 200


def test_ml100k_malformed(writer, tmp_path):
    bad = _item_line(3, "Three", []).replace("|0|0|0", "|0|2|0", 1)
    writer("u.item", _item_line(1, "One", [1]) + "\n" + bad + "\n", "latin-1")
    writer("u.data", "1\t1\t3\t10\n")
    with pytest.raises(DataFormatError, match=r"u\.item line 2: genre flag .* must be 0 or 1"):
        load_ml100k(tmp_path)
    writer("u.item", _item_line(1, "One", [1]) + "\n1|short|line\n", "latin-1")
    with pytest.raises(DataFormatError, match=r"u\.item line 2: expected 24 '\|'-separated"):
        load_ml100k(tmp_path)
    writer("u.item", _item_line(1, "One", [1]) + "\n", "latin-1")
    writer("u.data", "1\t1\t3\t10\n1\t1\t3\n")
    with pytest.raises(DataFormatError, match=r"u\.data line 2: expected 4 fields"):
        load_ml100k(tmp_path)
    writer("u.data", "1\t1\t3\t10\n1\t2\t3\t11\n")
    with pytest.raises(DataFormatError, match=r"u\.data line 2: movie 2 is not in u\.item"):
        load_ml100k(tmp_path)


def test_ml100k_missing(writer, tmp_path):
    writer("u.data", "1\t1\t3\t10\n")
    with pytest.raises(DataNotFoundError, match=r"u\.item"):
        load_ml100k(tmp_path)
