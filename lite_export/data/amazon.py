"""Amazon 2014 review data in the P5 / S3-Rec "sequential" layout.

Files (each may be gzip'ed):

* ``user_sequence.txt`` — one line per user, ``reviewerID asin asin ...``, oldest first.
* ``item_titles.tsv`` — header ``asin<TAB>title``, one row per item, UTF-8.

Choices:

* The item set is the ASINs that occur in the sequences (title rows for other ASINs are
  ignored). Internal indices follow **first appearance** in ``user_sequence.txt`` (file order of
  users, then position in the line), so a given file always gives the same mapping.
* Users keep file order; external user ids are the reviewerIDs.
* Titles are HTML-unescaped (``&amp;`` -> ``&``, ``&#9733;`` -> the star) and their whitespace
  runs collapsed to single spaces; an empty title becomes ``"Item {asin}"`` so that no item
  text is empty. Item text: ``"Title: {title}."``. Max history: 50 (the protocol's value).
"""

from __future__ import annotations

import html
from pathlib import Path

from ._io import find_file, iter_lines, sentence, with_gz
from .base import SequenceDataset
from .errors import DataFormatError, DataNotFoundError

AMAZON_FORMATS = (
    "user_sequence.txt ('reviewerID asin asin ...', chronological) and item_titles.tsv "
    "(header 'asin<TAB>title'); either may be gzip'ed (.gz)"
)
_ENCODING = "utf-8"


def load_amazon(
    data_dir: str | Path,
    max_history: int = 50,
    require_titles: bool = True,
    name: str = "amazon",
) -> SequenceDataset:
    """Load an Amazon 2014 P5-style dataset (e.g. Beauty) from ``data_dir``.

    With ``require_titles=False`` a directory without ``item_titles.tsv`` (Amazon Sports/Toys
    in the shared data) still loads, every item titled ``"Item {asin}"`` (for ID-only
    baselines). ``name`` becomes ``SequenceDataset.name``.

    Raises:
        DataNotFoundError: the sequence file (or, with ``require_titles``, the title file) is
            missing.
        DataFormatError: a malformed line, or an ASIN in the sequences without a title row.
    """
    directory = Path(data_dir)
    seq_file = find_file(directory, ["user_sequence.txt"])
    titles_file = find_file(directory, ["item_titles.tsv"])
    if seq_file is None or (titles_file is None and require_titles):
        raise DataNotFoundError(
            "Amazon (P5 layout)",
            directory,
            with_gz(["user_sequence.txt", "item_titles.tsv"]),
            AMAZON_FORMATS,
            missing=[
                n
                for n, f in (("user_sequence.txt", seq_file), ("item_titles.tsv", titles_file))
                if f is None
            ],
        )

    user_ids: list[str] = []
    raw_sequences: list[list[str]] = []
    first_line: dict[str, int] = {}  # asin -> first line; dict order = first appearance
    seen_users: dict[str, int] = {}
    for lineno, line in iter_lines(seq_file, _ENCODING):
        parts = line.split()
        if not parts:
            continue
        user = parts[0]
        if len(parts) < 2:
            raise DataFormatError(
                seq_file,
                lineno,
                f"user {user} has no items; expected 'reviewerID asin asin ...'",
                "remove the line or add the user's items",
            )
        if user in seen_users:
            raise DataFormatError(
                seq_file,
                lineno,
                f"user {user} already appeared on line {seen_users[user]}",
                "put each user's whole chronological sequence on a single line",
            )
        seen_users[user] = lineno
        items = parts[1:]
        for asin in items:
            if asin not in first_line:
                first_line[asin] = lineno
        user_ids.append(user)
        raw_sequences.append(items)
    if not user_ids:
        raise DataFormatError(
            seq_file, None, "the file has no users", "expected lines 'reviewerID asin asin ...'"
        )

    titles = _read_titles(titles_file) if titles_file is not None else {}
    item_ids = list(first_line)
    item_titles = []
    for asin in item_ids:
        if asin in titles:
            item_titles.append(titles[asin])
        elif titles_file is None:
            item_titles.append(f"Item {asin}")
        else:
            raise DataFormatError(
                seq_file,
                first_line[asin],
                f"item {asin} has no row in {titles_file.name}",
                f"add a line '{asin}<TAB>title' to {titles_file} (an empty title is allowed)",
            )
    index = {asin: i for i, asin in enumerate(item_ids)}
    source = {"interactions": str(seq_file)}
    if titles_file is not None:
        source["items"] = str(titles_file)
    return SequenceDataset(
        name=name,
        item_ids=item_ids,
        item_titles=item_titles,
        item_texts=[sentence("Title", t) for t in item_titles],
        user_ids=user_ids,
        sequences=[[index[a] for a in seq] for seq in raw_sequences],
        max_history=max_history,
        source=source,
    )


def clean_title(raw: str, asin: str) -> str:
    """HTML-unescape, collapse whitespace; an empty result becomes ``"Item {asin}"``."""
    title = " ".join(html.unescape(raw).split())
    return title or f"Item {asin}"


def _read_titles(path: Path) -> dict[str, str]:
    """``item_titles.tsv`` -> ``{asin: cleaned title}``; checks the header and duplicates."""
    titles: dict[str, str] = {}
    lines: dict[str, int] = {}
    header_seen = False
    extra_columns = False
    for lineno, line in iter_lines(path, _ENCODING):
        if not header_seen:
            header = [h.strip().lower() for h in line.lstrip("\ufeff").split("\t")]
            if header[:2] != ["asin", "title"]:
                raise DataFormatError(
                    path,
                    lineno,
                    f"expected the header 'asin<TAB>title', got {line[:60]!r}",
                    "add that header as the first line",
                )
            header_seen = True
            extra_columns = len(header) > 2
            continue
        if not line.strip():
            continue
        asin, tab, raw_title = line.partition("\t")
        asin = asin.strip()
        if not tab or not asin:
            raise DataFormatError(
                path,
                lineno,
                "expected 2 tab-separated fields 'asin<TAB>title'"
                + (", got no tab" if not tab else ", got an empty asin"),
                "separate the asin and the title with a TAB (the title may be empty)",
            )
        if asin in titles:
            raise DataFormatError(
                path, lineno, f"asin {asin} already has a title on line {lines[asin]}"
            )
        if extra_columns:  # 'asin<TAB>title<TAB>more...': keep only the title column
            raw_title = raw_title.split("\t", 1)[0]
        titles[asin] = clean_title(raw_title, asin)
        lines[asin] = lineno
    if not header_seen:
        raise DataFormatError(
            path, None, "the file is empty", "expected the header 'asin<TAB>title'"
        )
    return titles
