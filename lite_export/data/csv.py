"""A generic CSV pair, for bringing your own data.

``interactions.csv`` — header ``user_id,item_id,timestamp`` (column order free, extra columns
such as ``rating`` ignored). ``timestamp`` is either a number (e.g. Unix seconds) or ISO-8601
(``2024-01-31``, ``2024-01-31T12:00:00``, ``...Z``, ``...+02:00``; naive times are taken as
UTC); both kinds are converted to seconds since the epoch, so they sort together. Each user's
rows are sorted by timestamp, ties (and rows without a ``timestamp`` column) keep file order.

``items.csv`` — header ``item_id`` plus any text columns. The display title is the ``title``
column when there is one, else the first text column; an empty title becomes
``"Item {item_id}"``. The item text is ``"{Col}: {value}."`` for every non-empty text column in
header order, joined with spaces (``Col`` = the column name with ``_`` -> space and the first
letter upper-cased), e.g. ``"Title: Dune. Genres: Sci-Fi|Drama."``.
``item_meta[i]`` holds the raw text columns.

Order: internal item indices follow the row order of ``items.csv`` (restricted to items that
occur in the interactions; rows for other items are ignored); users follow their first
appearance in ``interactions.csv``. Both files are UTF-8 (a BOM is fine) and may be gzip'ed.
"""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime
from pathlib import Path

from ._io import decoded_lines, find_file, sentence, with_gz
from .base import SequenceDataset
from .errors import DataFormatError, DataNotFoundError

CSV_FORMATS = (
    "interactions.csv (header 'user_id,item_id,timestamp'; timestamp numeric or ISO-8601) and "
    "items.csv (header 'item_id,' then text columns such as 'title,genres'); either may be "
    "gzip'ed (.gz)"
)
_ENCODING = "utf-8-sig"


def load_csv(
    data_dir: str | Path,
    max_history: int = 50,
    interactions: str = "interactions.csv",
    items: str = "items.csv",
    name: str = "csv",
) -> SequenceDataset:
    """Load ``interactions.csv`` + ``items.csv`` from ``data_dir`` (file names configurable).

    Raises:
        DataNotFoundError: either file is missing.
        DataFormatError: a bad header, a row with the wrong number of fields, an empty id, an
            unparseable timestamp, a duplicate item row, or an interaction whose item has no
            row in items.csv.
    """
    directory = Path(data_dir)
    inter_file = find_file(directory, [interactions])
    items_file = find_file(directory, [items])
    if inter_file is None or items_file is None:
        raise DataNotFoundError(
            "CSV",
            directory,
            with_gz([interactions, items]),
            CSV_FORMATS,
            missing=[n for n, f in ((interactions, inter_file), (items, items_file)) if f is None],
        )
    user_items, item_first_line = _read_interactions(inter_file)
    item_rows, text_columns = _read_items(items_file)

    missing = [i for i in item_first_line if i not in item_rows]
    if missing:
        first = min(missing, key=lambda i: item_first_line[i])
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataFormatError(
            inter_file,
            item_first_line[first],
            f"item {first!r} has no row in {items_file.name}{more}",
            f"add a row for it to {items_file}",
        )
    item_ids = [i for i in item_rows if i in item_first_line]  # items.csv row order
    index = {item: k for k, item in enumerate(item_ids)}
    title_col = next((c for c in text_columns if c.strip().lower() == "title"), None)
    if title_col is None and text_columns:
        title_col = text_columns[0]

    titles, texts, meta = [], [], []
    for item in item_ids:
        values = item_rows[item]
        title = values.get(title_col, "").strip() if title_col is not None else ""
        title = title or f"Item {item}"
        parts = [sentence(_label(c), values[c]) for c in text_columns if values[c].strip()]
        titles.append(title)
        texts.append(" ".join(parts) if parts else sentence("Title", title))
        meta.append(dict(values))
    users = list(user_items)
    return SequenceDataset(
        name=name,
        item_ids=item_ids,
        item_titles=titles,
        item_texts=texts,
        user_ids=users,
        sequences=[[index[i] for i in user_items[u]] for u in users],
        max_history=max_history,
        item_meta=meta,
        source={"interactions": str(inter_file), "items": str(items_file)},
    )


def _label(column: str) -> str:
    label = column.strip().replace("_", " ")
    return label[:1].upper() + label[1:]


def parse_timestamp(value: str) -> float:
    """A number (returned as is) or an ISO-8601 date/time (seconds since the epoch, naive = UTC).

    Raises ValueError for anything else (including NaN and infinities).
    """
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise ValueError(f"timestamp must be finite, got {value!r}")
        return number
    moment = datetime.fromisoformat(value)  # ValueError when not ISO-8601
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _header(path: Path, reader, required: list[str], expected: str) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise DataFormatError(
            path, None, "the file is empty", f"expected the header '{expected}'"
        ) from None
    header = [h.strip() for h in header]
    lower = [h.lower() for h in header]
    absent = [c for c in required if c not in lower]
    if absent:
        raise DataFormatError(
            path,
            1,
            f"the header {','.join(header)!r} lacks the column(s) {', '.join(absent)}",
            f"the first line must be a header like '{expected}'",
        )
    dupes = sorted({h for h in lower if lower.count(h) > 1})
    if dupes:
        raise DataFormatError(path, 1, f"the header repeats the column(s) {', '.join(dupes)}")
    return header


def _read_interactions(path: Path) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Per-user chronological item lists plus the first line on which each item occurs."""
    rows: dict[str, list[tuple[float, str]]] = {}
    first_line: dict[str, int] = {}
    expected = "user_id,item_id,timestamp"
    source = decoded_lines(path, _ENCODING)
    reader = csv.reader(source)
    try:
        header = _header(path, reader, ["user_id", "item_id"], expected)
        lower = [h.lower() for h in header]
        u_col, i_col = lower.index("user_id"), lower.index("item_id")
        t_col = lower.index("timestamp") if "timestamp" in lower else None
        for row in reader:
            lineno = reader.line_num
            if not row or all(not v.strip() for v in row):
                continue
            if len(row) != len(header):
                raise DataFormatError(
                    path,
                    lineno,
                    f"expected {len(header)} fields '{','.join(header)}', got {len(row)}",
                    "quote values that contain commas",
                )
            user, item = row[u_col].strip(), row[i_col].strip()
            if not user or not item:
                what = "user_id" if not user else "item_id"
                raise DataFormatError(path, lineno, f"{what} is empty")
            ts = 0.0
            if t_col is not None:
                try:
                    ts = parse_timestamp(row[t_col])
                except ValueError:
                    raise DataFormatError(
                        path,
                        lineno,
                        f"timestamp must be a number or ISO-8601, got {row[t_col]!r}",
                        "use e.g. 1700000000 or 2024-01-31T12:00:00Z",
                    ) from None
            rows.setdefault(user, []).append((ts, item))
            first_line.setdefault(item, lineno)
    except csv.Error as e:
        raise DataFormatError(path, reader.line_num, f"CSV syntax error: {e}") from None
    finally:
        source.close()  # closes the file also when a row was rejected
    if not rows:
        raise DataFormatError(
            path, None, "the file has no interactions", f"expected '{expected}' rows"
        )
    user_items = {}
    for user, pairs in rows.items():
        pairs.sort(key=lambda p: p[0])  # stable: ties keep file order
        user_items[user] = [item for _, item in pairs]
    return user_items, first_line


def _read_items(path: Path) -> tuple[dict[str, dict[str, str]], list[str]]:
    """``{item_id: {text column: value}}`` in file order, plus the text column names."""
    items: dict[str, dict[str, str]] = {}
    lines: dict[str, int] = {}
    source = decoded_lines(path, _ENCODING)
    reader = csv.reader(source)
    try:
        header = _header(path, reader, ["item_id"], "item_id,title,genres")
        id_col = [h.lower() for h in header].index("item_id")
        text_columns = [h for k, h in enumerate(header) if k != id_col]
        for row in reader:
            lineno = reader.line_num
            if not row or all(not v.strip() for v in row):
                continue
            if len(row) != len(header):
                raise DataFormatError(
                    path,
                    lineno,
                    f"expected {len(header)} fields '{','.join(header)}', got {len(row)}",
                    "quote values that contain commas",
                )
            item = row[id_col].strip()
            if not item:
                raise DataFormatError(path, lineno, "item_id is empty")
            if item in items:
                raise DataFormatError(
                    path, lineno, f"item {item!r} already has a row on line {lines[item]}"
                )
            values = [v for k, v in enumerate(row) if k != id_col]
            items[item] = dict(zip(text_columns, values, strict=True))
            lines[item] = lineno
    except csv.Error as e:
        raise DataFormatError(path, reader.line_num, f"CSV syntax error: {e}") from None
    finally:
        source.close()  # closes the file also when a row was rejected
    return items, text_columns
