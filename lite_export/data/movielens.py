"""MovieLens loaders: ML-1M (``ratings.dat`` or ``user_sequences.txt``) and ML-100K.

Both follow the same rules:

* The item set is the movies that occur in the interactions (ML-1M: 3,706 of the 3,883 movies
  in ``movies.dat``); internal indices are assigned in ascending numeric movie id order, so the
  mapping is deterministic and independent of file order. External ids are the decimal movie
  ids as strings (``"1193"``).
* Users are ordered by ascending numeric user id; external user ids are decimal strings.
* Rating values are ignored (every rating is an interaction, no threshold), and no k-core
  filtering is applied beyond what the files already have.
* Item text: ``"Title: {title}. Genres: {g1, g2}."`` with the title exactly as in the file
  (year included, e.g. ``"Toy Story (1995)"``). ``item_meta[i] = {"genres": [...]}``.
* Every file may also be gzip'ed (``ratings.dat.gz``); text files are read as Latin-1.
"""

from __future__ import annotations

from pathlib import Path

from ._io import find_file, iter_lines, parse_int, title_genres_text, with_gz
from .base import SequenceDataset
from .errors import DataFormatError, DataNotFoundError

ML1M_FORMATS = (
    "ratings.dat ('UserID::MovieID::Rating::Timestamp') or user_sequences.txt "
    "('user_id movie_id movie_id ...', chronological), plus movies.dat "
    "('MovieID::Title::Genres', Latin-1); any of them may be gzip'ed (.gz)"
)
ML100K_FORMATS = (
    "u.data ('user<TAB>item<TAB>rating<TAB>timestamp') and u.item "
    "('id|title|release|video release|url|19 genre flags', Latin-1); either may be gzip'ed (.gz)"
)

# The 19 genre flags of MovieLens-100K's u.item, in file order (= u.genre).
ML100K_GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

_ENCODING = "latin-1"


def load_ml1m(data_dir: str | Path, max_history: int = 200) -> SequenceDataset:
    """Load MovieLens-1M from ``data_dir``.

    Interactions come from ``ratings.dat`` when it exists (each user's ratings sorted by
    timestamp; ties keep file order) and otherwise from ``user_sequences.txt`` (one line per
    user, ``user_id movie_id ...``, already chronological, taken as is). Titles and genres come
    from ``movies.dat``. A ``.gz`` variant of any file is accepted.

    Raises:
        DataNotFoundError: the directory lacks an interactions file or ``movies.dat``.
        DataFormatError: a malformed line, or an interaction whose movie is not in movies.dat.
    """
    directory = Path(data_dir)
    ratings = find_file(directory, ["ratings.dat"])
    sequences_file = None if ratings is not None else find_file(directory, ["user_sequences.txt"])
    movies_file = find_file(directory, ["movies.dat"])
    missing = []
    if ratings is None and sequences_file is None:
        missing.append("ratings.dat or user_sequences.txt")
    if movies_file is None:
        missing.append("movies.dat")
    if missing:
        raise DataNotFoundError(
            "MovieLens-1M",
            directory,
            with_gz(["ratings.dat", "user_sequences.txt", "movies.dat"]),
            ML1M_FORMATS,
            missing=missing,
        )
    if ratings is not None:
        interactions_file = ratings
        user_items, first_line = _read_timestamped(
            ratings, sep="::", fields="UserID::MovieID::Rating::Timestamp"
        )
    elif sequences_file is not None:
        interactions_file = sequences_file
        user_items, first_line = _read_user_sequences(sequences_file)
    movies = _read_ml1m_movies(movies_file)
    return _build(
        "ml-1m",
        user_items,
        first_line,
        interactions_file,
        movies,
        movies_file,
        max_history,
    )


def load_ml100k(data_dir: str | Path, max_history: int = 200) -> SequenceDataset:
    """Load MovieLens-100K from ``data_dir`` (``u.data`` + ``u.item``).

    ``u.data`` rows (tab- or whitespace-separated ``user item rating timestamp``, randomly
    ordered in the original) are grouped per user and sorted by timestamp, ties in file order.
    Genres are the names of the set flags among the 19 in ``u.item`` (see ``ML100K_GENRES``).

    Raises:
        DataNotFoundError: ``u.data`` or ``u.item`` is missing.
        DataFormatError: a malformed line, or a rated item that is not in u.item.
    """
    directory = Path(data_dir)
    data_file = find_file(directory, ["u.data"])
    item_file = find_file(directory, ["u.item"])
    if data_file is None or item_file is None:
        raise DataNotFoundError(
            "MovieLens-100K",
            directory,
            with_gz(["u.data", "u.item"]),
            ML100K_FORMATS,
            missing=[n for n, f in (("u.data", data_file), ("u.item", item_file)) if f is None],
        )
    user_items, first_line = _read_timestamped(
        data_file, sep=None, fields="user<TAB>item<TAB>rating<TAB>timestamp"
    )
    movies = _read_ml100k_items(item_file)
    return _build("ml-100k", user_items, first_line, data_file, movies, item_file, max_history)


# --------------------------------------------------------------------------- interactions


def _read_timestamped(
    path: Path, sep: str | None, fields: str
) -> tuple[dict[int, list[int]], dict[int, int]]:
    """Read ``user sep item sep rating sep timestamp`` rows into per-user chronological lists.

    Returns ``(user -> items sorted by timestamp (stable), item -> first line it occurs on)``.
    """
    rows: dict[int, list[tuple[int, int]]] = {}
    first_line: dict[int, int] = {}
    for lineno, line in iter_lines(path, _ENCODING):
        if not line.strip():
            continue
        parts = line.split(sep) if sep is not None else line.split()
        if len(parts) != 4:
            raise DataFormatError(
                path,
                lineno,
                f"expected 4 fields '{fields}', got {len(parts)}",
                "each line must hold exactly one rating",
            )
        try:
            user, item, ts = int(parts[0]), int(parts[1]), int(parts[3])
            float(parts[2])
        except ValueError:
            raise _field_error(path, lineno, fields, parts) from None
        rows.setdefault(user, []).append((ts, item))
        first_line.setdefault(item, lineno)
    if not rows:
        raise DataFormatError(path, None, "the file has no interactions", f"expected '{fields}'")
    user_items = {}
    for user, pairs in rows.items():
        pairs.sort(key=lambda p: p[0])  # stable: equal timestamps keep file order
        user_items[user] = [item for _, item in pairs]
    return user_items, first_line


def _field_error(path: Path, lineno: int, fields: str, parts: list[str]) -> DataFormatError:
    """The error for the first field of a rating row that does not parse."""
    names = fields.replace("<TAB>", "::").split("::")
    for name, value in zip(names, parts, strict=True):
        try:
            float(value) if name.lower() == "rating" else int(value)
        except ValueError:
            kind = "a number" if name.lower() == "rating" else "an integer"
            return DataFormatError(path, lineno, f"{name} must be {kind}, got {value!r}")
    return DataFormatError(path, lineno, f"cannot parse the fields {parts!r} as '{fields}'")


def _read_user_sequences(path: Path) -> tuple[dict[int, list[int]], dict[int, int]]:
    """Read ``user_id movie_id movie_id ...`` lines (already chronological)."""
    user_items: dict[int, list[int]] = {}
    first_line: dict[int, int] = {}
    for lineno, line in iter_lines(path, _ENCODING):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DataFormatError(
                path,
                lineno,
                f"user {parts[0]} has no items; expected 'user_id movie_id movie_id ...'",
                "remove the line or add the user's movies",
            )
        user = parse_int(path, lineno, parts[0], "user_id")
        if user in user_items:
            raise DataFormatError(
                path,
                lineno,
                f"user {user} appears on more than one line",
                "put each user's whole chronological sequence on a single line",
            )
        try:
            items = [int(p) for p in parts[1:]]
        except ValueError:
            bad = next(p for p in parts[1:] if not p.lstrip("-").isdigit())
            raise DataFormatError(
                path, lineno, f"movie_id must be an integer, got {bad!r}"
            ) from None
        user_items[user] = items
        for item in items:
            first_line.setdefault(item, lineno)
    if not user_items:
        raise DataFormatError(
            path, None, "the file has no users", "expected lines 'user_id movie_id movie_id ...'"
        )
    return user_items, first_line


# --------------------------------------------------------------------------- item files


def _read_ml1m_movies(path: Path) -> dict[int, tuple[str, list[str]]]:
    """``movies.dat`` -> ``{movie_id: (title, [genres])}``."""
    movies: dict[int, tuple[str, list[str]]] = {}
    for lineno, line in iter_lines(path, _ENCODING):
        if not line.strip():
            continue
        head, sep, rest = line.partition("::")
        title, sep2, genres = rest.rpartition("::")
        if not sep or not sep2:
            got = line.count("::") + 1
            raise DataFormatError(
                path, lineno, f"expected 3 fields 'MovieID::Title::Genres', got {got}"
            )
        movie = parse_int(path, lineno, head.strip(), "MovieID")
        if movie in movies:
            raise DataFormatError(path, lineno, f"MovieID {movie} is listed twice")
        genre_list = [g.strip() for g in genres.split("|") if g.strip()]
        movies[movie] = (title.strip(), genre_list)
    return movies


def _read_ml100k_items(path: Path) -> dict[int, tuple[str, list[str]]]:
    """``u.item`` -> ``{item_id: (title, [genres])}`` from the 19 trailing genre flags."""
    n_flags = len(ML100K_GENRES)
    n_fields = 5 + n_flags
    movies: dict[int, tuple[str, list[str]]] = {}
    for lineno, line in iter_lines(path, _ENCODING):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) < n_fields:
            raise DataFormatError(
                path,
                lineno,
                f"expected {n_fields} '|'-separated fields "
                f"'id|title|release date|video release date|IMDb URL|{n_flags} genre flags', "
                f"got {len(parts)}",
            )
        movie = parse_int(path, lineno, parts[0].strip(), "movie id")
        if movie in movies:
            raise DataFormatError(path, lineno, f"movie id {movie} is listed twice")
        # A title containing '|' would add fields; the last 22 are always date, url and flags.
        title = "|".join(parts[1 : len(parts) - 3 - n_flags]).strip()
        flags = parts[len(parts) - n_flags :]
        genres = []
        for name, flag in zip(ML100K_GENRES, flags, strict=True):
            flag = flag.strip()
            if flag not in ("0", "1"):
                raise DataFormatError(
                    path, lineno, f"genre flag {name!r} must be 0 or 1, got {flag!r}"
                )
            if flag == "1":
                genres.append(name)
        movies[movie] = (title, genres)
    return movies


# --------------------------------------------------------------------------- assembly


def _build(
    name: str,
    user_items: dict[int, list[int]],
    first_line: dict[int, int],
    interactions_file: Path,
    movies: dict[int, tuple[str, list[str]]],
    movies_file: Path,
    max_history: int,
) -> SequenceDataset:
    """Index items in ascending numeric id order and users in ascending numeric id order."""
    item_order = sorted(first_line)
    missing = [m for m in item_order if m not in movies]
    if missing:
        m = min(missing, key=lambda x: first_line[x])
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataFormatError(
            interactions_file,
            first_line[m],
            f"movie {m} is not in {movies_file.name}{more}",
            f"add the movie to {movies_file.name} or remove its interactions",
        )
    index = {m: i for i, m in enumerate(item_order)}
    users = sorted(user_items)
    titles = [movies[m][0] for m in item_order]
    genres = [movies[m][1] for m in item_order]
    return SequenceDataset(
        name=name,
        item_ids=[str(m) for m in item_order],
        item_titles=titles,
        item_texts=[title_genres_text(t, g) for t, g in zip(titles, genres, strict=True)],
        user_ids=[str(u) for u in users],
        sequences=[[index[m] for m in user_items[u]] for u in users],
        max_history=max_history,
        item_meta=[{"genres": g} for g in genres],
        source={"interactions": str(interactions_file), "items": str(movies_file)},
    )
