"""`lite score`: recommendations for every user of a JSON-lines file, written to Parquet.

Registered in :mod:`lite_export.cli` as ``app.command("score")(score)``; the work is
:func:`lite_export.cluster.score.score_file`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EPILOG = (
    "Examples:\n\n"
    "  lite score art --histories users.jsonl --out recs.parquet -k 20\n\n"
    "  lite score art --histories users.jsonl --out recs.parquet --cluster ray --shards 4\n\n"
    "  lite score /mnt/shared/art --histories users.jsonl --out recs.parquet --cluster ray "
    "--address auto --actors 4"
)


#: ``--progress/--no-progress`` of the long commands that also run unattended (``lite eval``,
#: ``lite score``)
LineProgressOpt = Annotated[
    bool,
    typer.Option(
        help="Show progress: a bar in a terminal, else a line every LITE_PROGRESS_INTERVAL "
        "seconds (default 5) on stderr."
    ),
]

#: ``--address`` of every ``--cluster ray`` command (``lite serve``, ``lite score``)
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        help="--cluster ray: the Ray cluster to join ('auto', or the head's host:port) "
        "\\[default: start a local one on 127.0.0.1]."
    ),
]


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"lite score: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def score(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory written by `lite export`.")],
    histories: Annotated[
        Path,
        typer.Option(
            "--histories",
            help='JSON lines, one user each: {"user": "u1", "history": ["1193", "661"]} '
            '(item ids as in items.jsonl, oldest first; optional "exclude_seen": false).',
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Parquet file to write: columns user, rank, item_id, score; k rows a user.",
        ),
    ],
    k: Annotated[
        int, typer.Option("-k", "--k", help="Items per user (1 to the artifact's K).")
    ] = 10,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Users per engine call (and per Ray Data batch).")
    ] = 256,
    engine: Annotated[
        str,
        typer.Option(
            help="auto|onnxruntime|torch|tensorrt; with --shards: the user encoder's runtime "
            "(auto|onnxruntime|torch)."
        ),
    ] = "auto",
    threads: Annotated[
        int | None,
        typer.Option(help="Engine intra-op threads \\[default: the runtime's own choice]."),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Stop at the first bad line (exit code 2, nothing written)."),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace --out if it is a file (never a directory).")
    ] = False,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="'ray': score with Ray Data actor pools (needs the cluster extra; see "
            "docs/score.md)."
        ),
    ] = None,
    shards: Annotated[
        int | None,
        typer.Option(
            help="Split the catalog into this many shards, ranked separately and merged "
            "(with --cluster ray: one Ray Data stage each) \\[default: no split]."
        ),
    ] = None,
    address: RayAddressOpt = None,
    actors: Annotated[
        int | None, typer.Option(help="--cluster ray: actors per stage \\[default: 1].")
    ] = None,
    progress: LineProgressOpt = True,
) -> None:
    """Score every user of a JSON-lines file and write their top-k to one Parquet file."""
    if cluster is None and (actors is not None or address is not None):
        _fail("--actors and --address need --cluster ray")
    from lite_export.artifact import ArtifactError
    from lite_export.cluster.score import ClusterError, ScoreError, score_file

    try:
        summary = score_file(
            artifact,
            histories,
            out,
            k=k,
            batch_size=batch_size,
            engine=engine,
            threads=threads,
            strict=strict,
            force=force,
            cluster=cluster,
            shards=shards,
            address=address,
            actors=1 if actors is None else actors,
            progress=progress,
        )
    except (ScoreError, ArtifactError, ImportError, ValueError) as exc:
        _fail(str(exc))
    except (ClusterError, OSError) as exc:
        _fail(str(exc), code=1)
    how = "locally" if summary["path"] == "local" else "with Ray Data"
    if summary["shards"]:
        how += f", {summary['shards']} shards"
    print(
        f"scored {summary['users']:,} users ({summary['rows']:,} rows) {how} in "
        f"{summary['seconds']:.1f}s ({summary['users_per_s']:,.0f} users/s); skipped "
        f"{summary['skipped']:,} bad lines; wrote {summary['out']}"
    )
