"""`lite catalog add | remove | update`: edit a deployed artifact's items without retraining."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

catalog_app = typer.Typer(
    name="catalog",
    help="Add, remove or re-encode items of an exported artifact (text-head models), without "
    "retraining: the edited artifact is validated like `lite export` and written to --out.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

ArtArg = Annotated[Path, typer.Argument(help="Artifact directory written by `lite export`.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Artifact directory to write (not ART).")]
ItemsOpt = Annotated[
    Path,
    typer.Option(
        "--items",
        help='JSON lines, one item each: {"id": ..., "text": ...} (+ optional "title", '
        '"popularity"); "text" is what the item LLM reads, as in items.jsonl.',
    ),
]
CheckpointOpt = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        help="Encode text with this training checkpoint's item LLM (default: the artifact's "
        "source checkpoint, if it still exists).",
    ),
]
EncoderOpt = Annotated[
    Path | None,
    typer.Option(
        "--encoder",
        help="Encode text with this exported items encoder (items_encoder.onnx, ONNX Runtime "
        "only) instead of a checkpoint.",
    ),
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Replace --out if it is a lite-export artifact.")
]


def _run(art: Path, out: Path, operation: str, force: bool, **kwargs) -> None:
    from lite_export.artifact import ArtifactError, OutputDirError
    from lite_export.catalog_edit import CatalogEditError, edit_catalog
    from lite_export.cli import _fail
    from lite_export.exporters.items_encoder import ItemsEncoderError
    from lite_export.exporters.onnx import ExportError

    try:
        path = edit_catalog(art, out, operation, force=force, **kwargs)
    except (CatalogEditError, ArtifactError, OutputDirError, ExportError, ValueError) as exc:
        _fail(str(exc))
    except (ItemsEncoderError, FileNotFoundError, ImportError, OSError) as exc:
        _fail(str(exc))
    import json

    change = json.loads((path / "manifest.json").read_text())["catalog_change"]
    check = change["untouched_items_check"]
    print(
        f"{operation}: {change['count']:,} items; {path} written. Untouched items: scores "
        f"agree within {check['max_abs_score_diff']:.2e} (tolerance {check['tolerance']:g}) "
        f"on {check['histories']} histories"
    )
    print(f"serve it with: lite serve {path}  (or POST /admin/reload to a running server)")


@catalog_app.command(
    epilog="Examples:\n\n"
    "  lite catalog add art --items new.jsonl --out art2\n\n"
    "  lite catalog add art --items new.jsonl --out art2 --encoder items_enc"
)
def add(
    artifact: ArtArg,
    items: ItemsOpt,
    out: OutOpt,
    checkpoint: CheckpointOpt = None,
    encoder: EncoderOpt = None,
    force: ForceOpt = False,
) -> None:
    """Append new items: their text is encoded, their input and head rows computed from it."""
    from lite_export.catalog_edit import CatalogEditError, read_items_file
    from lite_export.cli import _fail

    try:
        rows = read_items_file(items)
    except CatalogEditError as exc:
        _fail(str(exc))
    _run(artifact, out, "add", force, items=rows, checkpoint=checkpoint, encoder=encoder)


@catalog_app.command(
    epilog="Examples:\n\n"
    "  lite catalog remove art --ids 1193,661 --out art2\n\n"
    "  lite catalog remove art --ids-file gone.txt --out art2"
)
def remove(
    artifact: ArtArg,
    out: OutOpt,
    ids: Annotated[str | None, typer.Option("--ids", help="Comma-separated item ids.")] = None,
    ids_file: Annotated[
        Path | None, typer.Option("--ids-file", help="A file with one item id per line.")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Stop recommending items (they stay accepted in histories)."""
    from lite_export.cli import _fail

    if (ids is None) == (ids_file is None):
        _fail("pass exactly one of --ids ID,ID,... and --ids-file FILE")
    if ids_file is not None:
        if not ids_file.is_file():
            _fail(f"--ids-file {ids_file} does not exist")
        names = [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
    else:
        names = [part.strip() for part in ids.split(",") if part.strip()]
    _run(artifact, out, "remove", force, ids=names)


@catalog_app.command(
    epilog="Example:\n\n  lite catalog update art --items changed.jsonl --out art2"
)
def update(
    artifact: ArtArg,
    items: ItemsOpt,
    out: OutOpt,
    checkpoint: CheckpointOpt = None,
    encoder: EncoderOpt = None,
    force: ForceOpt = False,
) -> None:
    """Re-encode items whose text changed (their learned id rows are kept)."""
    from lite_export.catalog_edit import CatalogEditError, read_items_file
    from lite_export.cli import _fail

    try:
        rows = read_items_file(items)
    except CatalogEditError as exc:
        _fail(str(exc))
    _run(artifact, out, "update", force, items=rows, checkpoint=checkpoint, encoder=encoder)
