"""``lite score``: recommendations for every user of a JSON-lines file, written to Parquet.

Input: one JSON object per line, ``{"user": "u1", "history": ["1193", "661"]}`` (``history``:
external item ids, oldest first, as in the artifact's ``items.jsonl``; optional
``"exclude_seen": false``); blank lines are skipped. Output: one Parquet file with columns
``user`` (string), ``rank`` (int32, 1 = best), ``item_id`` (string) and ``score`` (float32), ``k``
rows per user, users in input order, written beside the target and renamed into place.

Two paths give the same file:

* local (:func:`score_file` without ``cluster``): the file is streamed through one engine
  (``lite_export.load``; ``shards=S``: :class:`~lite_export.cluster.shards.ShardedEngine`) in
  batches, and the Parquet file is written batch by batch;
* ``cluster="ray"``: lines are read and checked here (bad lines are reported as on the local
  path), the valid rows become a Ray Data dataset (input order preserved), and actor pools
  score it -- one stage holding the engine, or with ``shards=S`` a pipeline of a
  :class:`~lite_export.cluster.shards.UserEncoder` stage, one
  :class:`~lite_export.cluster.shards.CatalogShard` stage per shard and a merge stage
  (:func:`~lite_export.cluster.shards.merge_topk`).

Ray and pyarrow are imported only when :func:`score_file` runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: what a line of the input looks like, quoted in error messages
EXAMPLE = '{"user": "u1", "history": ["1193", "661"]}'
#: bad lines reported one by one (stderr); past this, only their count
MAX_REPORTED = 20
#: --engine values (the registry's names; ``sharded`` is what --shards picks)
ENGINE_NAMES = ("auto", "onnxruntime", "torch", "tensorrt")


class ScoreError(ValueError):
    """A problem with the command's arguments or input; the message says how to fix it."""


class BadLineError(ScoreError):
    """A bad input line under ``strict=True`` (nothing was written)."""


class ClusterError(RuntimeError):
    """A Ray Data stage failed, or Ray Data broke the input order (the message says which)."""


@dataclass
class UserRow:
    """One valid input line."""

    line: int
    user: str
    history: list[str]
    exclude_seen: bool


# --------------------------------------------------------------------------- input


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def parse_line(text: str, catalog, artifact: str = "ART") -> UserRow | str:
    """The :class:`UserRow` of one line of text, or a message saying what is wrong with it and
    how to fix it (``catalog``: an :class:`~lite_export.catalog.ItemCatalog`, for unknown ids)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return (
            f"not valid JSON ({exc.msg} at column {exc.colno}); write one JSON object per "
            f"line, like {EXAMPLE}"
        )
    if not isinstance(obj, dict):
        return (
            f"a JSON {_json_type(obj)} where a user object belongs; write one object per line, "
            f"like {EXAMPLE}"
        )
    if "user" not in obj:
        return (
            f'no "user" field; give every line a "user" id (a string or an integer), like {EXAMPLE}'
        )
    user = obj["user"]
    if isinstance(user, bool) or not isinstance(user, str | int) or user == "":
        what = "an empty string" if user == "" else f"a JSON {_json_type(user)}"
        return f'"user" must be a non-empty string or an integer, got {what}'
    if "history" not in obj:
        return (
            'no "history" field; give every line a "history": a list of item ids, oldest '
            f"first ([] for a user with none), like {EXAMPLE}"
        )
    history = obj["history"]
    if not isinstance(history, list):
        return (
            f'"history" must be a list of item ids (oldest first), got a JSON '
            f"{_json_type(history)}; write it like {EXAMPLE}"
        )
    for i, item in enumerate(history):
        if isinstance(item, bool) or not isinstance(item, str | int):
            return (
                f'"history" item {i} is a JSON {_json_type(item)}; item ids are strings (or '
                f"integers) exactly as in {artifact}/items.jsonl"
            )
    history = [h if isinstance(h, str) else str(h) for h in history]
    exclude_seen = obj.get("exclude_seen", True)
    if not isinstance(exclude_seen, bool):
        return f'"exclude_seen" must be true or false, got a JSON {_json_type(exclude_seen)}'
    unknown = catalog.unknown(history)
    if unknown:
        unknown = list(dict.fromkeys(unknown))
        shown = ", ".join(repr(u) for u in unknown[:5])
        more = f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
        return (
            f'unknown item ids {shown}{more} in "history": the artifact\'s catalog has '
            f"{len(catalog):,} items; use ids exactly as they appear in {artifact}/items.jsonl"
        )
    return UserRow(0, str(user), history, exclude_seen)


class _BadLines:
    """Reports bad lines as ``FILE:LINE: message`` (the first ``MAX_REPORTED``, then a count);
    under ``strict`` the first one raises :class:`BadLineError`."""

    def __init__(self, name: str, strict: bool, warn: Callable[[str], None]):
        self.name, self.strict, self.warn = name, strict, warn
        self.count = 0

    def __call__(self, line: int, message: str) -> None:
        self.count += 1
        text = f"{self.name}:{line}: {message}"
        if self.strict:
            raise BadLineError(
                f"{text}\n(--strict stops at the first bad line and writes nothing; fix the "
                "line, or leave out --strict to skip bad lines)"
            )
        if self.count <= MAX_REPORTED:
            self.warn(text)

    def finish(self) -> None:
        if self.count > MAX_REPORTED:
            self.warn(
                f"{self.name}: {self.count - MAX_REPORTED:,} more bad lines not shown "
                f"({self.count:,} bad lines in all, skipped)"
            )


def read_users(path: Path, catalog, bad: Callable[[int, str], None], artifact: str = "ART"):
    """The valid rows of a JSON-lines file, streamed in order; every bad line goes to ``bad``
    (line number, message) and is skipped. Blank lines are skipped silently."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad(number, f"not valid UTF-8 (byte {exc.start + 1}); save the file as UTF-8")
                continue
            row = parse_line(text, catalog, artifact)
            if isinstance(row, str):
                bad(number, row)
                continue
            row.line = number
            yield row


def _count_lines(path: Path) -> int:
    """Non-blank lines of the file (the progress bar's total)."""
    with open(path, "rb") as f:
        return sum(1 for raw in f if raw.strip())


def _chunks(rows: Iterator[UserRow], size: int) -> Iterator[list[UserRow]]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --------------------------------------------------------------------------- ranking pieces


def padded_inputs(
    hists: list[list[int]], exclude_seen, max_history: int, num_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(item_ids [B, L], exclude_ids [B, H])`` for histories of internal indices, as
    :meth:`lite_export.engines.base.Engine.recommend` builds them
    (:func:`~lite_export.engines.base.engine_inputs`), with ``exclude_seen`` one flag or one per
    row (a row that does not exclude gets only pads)."""
    from lite_export.engines.base import engine_inputs

    flags = np.atleast_1d(np.asarray(exclude_seen, dtype=bool))
    if flags.size == 1 or flags.all() or not flags.any():
        return engine_inputs(hists, max_history, num_items, bool(flags.flat[0]))
    item_ids, exclude = engine_inputs(hists, max_history, num_items, True)
    exclude = exclude.copy()  # it may be item_ids itself
    exclude[~flags] = num_items
    return item_ids, exclude


def _schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("user", pa.string()),
            ("rank", pa.int32()),
            ("item_id", pa.string()),
            ("score", pa.float32()),
        ]
    )


def _long_table(users: list[str], ids: list[list[str]], scores: np.ndarray, k: int, seq=None):
    """The output rows of a batch: ``k`` per user, best first (``seq``: each user's position in
    the input, carried as ``_seq`` on the Ray path to check the order)."""
    import pyarrow as pa

    n = len(users)
    columns = {
        "user": pa.array(np.repeat(np.asarray(users, dtype=object), k), pa.string()),
        "rank": pa.array(np.tile(np.arange(1, k + 1, dtype=np.int32), n), pa.int32()),
        "item_id": pa.array([i for row in ids for i in row], pa.string()),
        "score": pa.array(np.asarray(scores, np.float32).reshape(-1), pa.float32()),
    }
    if seq is not None:
        columns["_seq"] = pa.array(np.repeat(np.asarray(seq, np.int64), k), pa.int64())
    return pa.table(columns)


def recommend_rows(engine, histories: list[list[str]], flags: list[bool], k: int):
    """``engine.recommend`` over rows whose ``exclude_seen`` differs: one call per flag value.
    Returns ``(ids [B][k], scores [B, k])`` in row order."""
    ids: list = [None] * len(histories)
    scores = np.zeros((len(histories), k), np.float32)
    for flag in (True, False):
        rows = [r for r, f in enumerate(flags) if f is flag]
        if not rows:
            continue
        top = engine.recommend([histories[r] for r in rows], k=k, exclude_seen=flag)
        for j, r in enumerate(rows):
            ids[r] = top.ids[j]
        scores[rows] = top.scores
    return ids, scores


# --------------------------------------------------------------------------- Ray Data stages


def _lists(column) -> list:
    return column.to_pylist()


def _matrix(column, width: int, dtype) -> np.ndarray:
    """A fixed-size-list column as a ``[B, width]`` array (slices respected)."""
    arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    return np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype).reshape(-1, width)


def _fixed(matrix: np.ndarray, pa_type):
    import pyarrow as pa

    matrix = np.ascontiguousarray(matrix)
    flat = pa.array(matrix.reshape(-1), pa_type)
    return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])


class EngineStage:
    """Ray Data stage: an engine (``lite_export.load``) scores each batch."""

    def __init__(self, artifact: str, engine: str, threads: int | None, k: int):
        import lite_export

        self.engine = lite_export.load(artifact, engine=engine, threads=threads, verify=False)
        self.k = k

    def __call__(self, batch):
        ids, scores = recommend_rows(
            self.engine, _lists(batch["history"]), _lists(batch["exclude_seen"]), self.k
        )
        return _long_table(_lists(batch["user"]), ids, scores, self.k, _lists(batch["_seq"]))


class EncoderStage:
    """Ray Data stage: internal indices (``hist``) and user vectors (``user_vec``) of a batch."""

    def __init__(self, artifact: str, backend: str, threads: int | None):
        from lite_export.artifact import read_manifest
        from lite_export.catalog import ItemCatalog
        from lite_export.cluster.shards import UserEncoder

        self.encoder = UserEncoder.from_artifact(artifact, backend, threads)
        self.catalog = ItemCatalog.read_jsonl(Path(artifact) / "items.jsonl")
        self.max_history = read_manifest(Path(artifact))["dims"]["max_history"]

    def __call__(self, batch):
        import pyarrow as pa

        hists = self.catalog.batch_indices(_lists(batch["history"]))
        item_ids, _ = padded_inputs(hists, False, self.max_history, self.encoder.num_items)
        users = self.encoder(item_ids)
        batch = batch.drop_columns(["history"])
        batch = batch.append_column("hist", pa.array(hists, pa.list_(pa.int64())))
        return batch.append_column("user_vec", _fixed(users, pa.float32()))


class ShardStage:
    """Ray Data stage: one catalog shard's top-k (columns ``_s{i}_scores``, ``_s{i}_ids``)."""

    def __init__(self, artifact: str, index: int, start: int, stop: int, k: int, threads=None):
        from lite_export.artifact import read_manifest
        from lite_export.cluster.shards import CatalogShard

        if threads:
            import torch

            torch.set_num_threads(int(threads))
        self.shard = CatalogShard.from_artifact(artifact, start, stop)
        dims = read_manifest(Path(artifact))["dims"]
        self.max_history, self.d = dims["max_history"], dims["d_model"]
        self.index, self.k = index, k

    def __call__(self, batch):
        import pyarrow as pa

        hists = _lists(batch["hist"])
        flags = _lists(batch["exclude_seen"])
        _, exclude = padded_inputs(hists, flags, self.max_history, self.shard.num_items)
        users = _matrix(batch["user_vec"], self.d, np.float32)
        scores, ids = self.shard.topk(users, exclude, self.k)
        batch = batch.append_column(f"_s{self.index}_scores", _fixed(scores, pa.float32()))
        return batch.append_column(f"_s{self.index}_ids", _fixed(ids, pa.int64()))


class MergeStage:
    """Ray Data stage: the shards' top-k lists merged into the output rows."""

    def __init__(self, artifact: str, shard_sizes: list[int], k: int):
        from lite_export.catalog import ItemCatalog

        self.catalog = ItemCatalog.read_jsonl(Path(artifact) / "items.jsonl")
        self.widths = [min(k, n) for n in shard_sizes]
        self.k = k

    def __call__(self, batch):
        from lite_export.cluster.shards import merge_topk

        parts = [
            (
                _matrix(batch[f"_s{s}_scores"], w, np.float32),
                _matrix(batch[f"_s{s}_ids"], w, np.int64),
            )
            for s, w in enumerate(self.widths)
        ]
        scores, ids = merge_topk(parts, self.k)
        top = self.catalog.to_topk(_lists(batch["hist"]), scores, ids)
        return _long_table(
            _lists(batch["user"]), top.ids, top.scores, self.k, _lists(batch["_seq"])
        )


# --------------------------------------------------------------------------- output


def _check_out(out: Path, force: bool, inputs: list[Path]) -> None:
    if out.is_dir():
        raise ScoreError(
            f"--out {out} is a directory; --out names the Parquet file to write, e.g. "
            f"--out {out / 'recs.parquet'} (a directory is never replaced, even with --force)"
        )
    for source in inputs:
        try:
            inside = out.resolve() == source.resolve() or out.resolve().is_relative_to(
                source.resolve()
            )
        except OSError:
            inside = False
        if inside:
            raise ScoreError(
                f"--out {out} is (or is inside) {source}, an input of this command; choose "
                "another --out (refused even with --force)"
            )
    if (out.exists() or out.is_symlink()) and not force:
        raise ScoreError(f"--out {out} exists; pass --force to replace it, or choose another --out")
    if not out.parent.is_dir():
        raise ScoreError(
            f"the directory of --out, {out.parent}, does not exist; create it first "
            f"(mkdir -p {out.parent}) or choose another --out"
        )


class _AtomicParquet:
    """A Parquet file written beside ``out`` (``.NAME.tmp-PID``) and renamed onto it by
    ``commit()``; ``abort()`` (or leaving the ``with`` block by an exception) removes it."""

    def __init__(self, out: Path):
        import pyarrow.parquet as pq

        self.out = out
        self.tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        self.schema = _schema()
        self.writer = pq.ParquetWriter(str(self.tmp), self.schema)
        self.rows = 0

    def write(self, table) -> None:
        if "_seq" in table.column_names:
            table = table.drop_columns(["_seq"])
        table = table.select(self.schema.names).cast(self.schema)
        self.writer.write_table(table)
        self.rows += table.num_rows

    def commit(self) -> None:
        self.writer.close()
        if self.out.is_dir():  # appeared while scoring
            raise ScoreError(f"--out {self.out} became a directory while scoring; not replaced")
        os.replace(self.tmp, self.out)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> _AtomicParquet:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is not None:
            self.abort()


# --------------------------------------------------------------------------- score_file


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _check_int(name: str, value, low: int = 1, high: int | None = None, hint: str = "") -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        span = f"between {low} and {high}" if high is not None else f"an integer >= {low}"
        raise ScoreError(f"{name} must be {span}, got {value!r}{hint}")


def score_file(
    artifact: str | os.PathLike,
    histories: str | os.PathLike,
    out: str | os.PathLike,
    k: int = 10,
    batch_size: int = 256,
    engine: str = "auto",
    threads: int | None = None,
    strict: bool = False,
    force: bool = False,
    cluster: str | None = None,
    shards: int | None = None,
    address: str | None = None,
    actors: int = 1,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> dict:
    """Score every user of ``histories`` (JSON lines) with the artifact and write ``out``
    (Parquet: ``user``, ``rank``, ``item_id``, ``score``; ``k`` rows per user, input order).

    Bad lines are reported to ``warn`` (default: stderr) as ``FILE:LINE: message`` and skipped;
    ``strict`` raises :class:`BadLineError` at the first one instead. ``out`` is written beside
    the target and renamed into place: an existing file is replaced only with ``force``, a
    directory never; on any error the target is untouched and no temporary file is left.

    ``cluster="ray"`` scores with Ray Data (``address``: the cluster to join, default a local
    one on 127.0.0.1; ``actors``: actors per stage); ``shards=S`` splits the catalog into S
    shards (locally: ``engine="sharded"``; on Ray: an encoder stage, a stage per shard and a
    merge). Returns a summary: ``users``, ``rows``, ``skipped``, ``seconds``, ``users_per_s``,
    ``path`` (``local`` or ``ray``), ``shards``, ``out``.

    Raises:
        ScoreError: bad arguments, an output that may not be written, or (``strict``) a bad line.
        lite_export.ArtifactError: ``artifact`` is not an artifact.
        ImportError: a runtime (Ray, an engine) is not installed; the message says what to run.
    """
    start = time.perf_counter()
    warn = warn or _stderr
    art, src, out = Path(artifact), Path(histories), Path(out)
    from lite_export.artifact import read_manifest

    dims = read_manifest(art)["dims"]
    max_k = dims["k"]
    _check_int(
        "-k",
        k,
        1,
        max_k,
        f" (this artifact was exported with K={max_k}; re-export with `lite export --k` for more)",
    )
    _check_int("--batch-size", batch_size)
    if threads is not None:
        _check_int("--threads", threads)
    if cluster not in (None, "ray"):
        raise ScoreError(f"--cluster must be 'ray' (the one cluster engine), got {cluster!r}")
    if cluster is None and (address is not None or actors != 1):
        raise ScoreError("--address and --actors need --cluster ray")
    _check_int("--actors", actors)
    if engine not in ENGINE_NAMES:
        raise ScoreError(f"--engine must be one of {'|'.join(ENGINE_NAMES)}, got {engine!r}")
    if shards is not None:
        from lite_export.cluster.shards import shard_bounds

        _check_int("--shards", shards)
        try:
            shard_bounds(dims["num_items"], shards)
        except ValueError as exc:
            raise ScoreError(str(exc)) from None
        if engine == "tensorrt":
            raise ScoreError(
                "--shards ranks each shard with kernels.rank and encodes users with "
                "user_encoder.onnx (onnxruntime) or PyTorch: use --engine auto, onnxruntime or "
                "torch with --shards"
            )
    if not src.is_file():
        what = "is a directory" if src.is_dir() else "does not exist"
        raise ScoreError(
            f"--histories {src} {what}; pass a JSON-lines file with one user per line, like "
            f"{EXAMPLE}"
        )
    _check_out(out, force, [src, art])
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError(
            'lite score writes Parquet with pyarrow: pip install "lite-export[cluster]" '
            "(or pip install pyarrow)"
        ) from None

    bad = _BadLines(str(histories), strict, warn)
    total = _count_lines(src) if progress else None
    from lite_export.progress import enabled

    with enabled(progress), _AtomicParquet(out) as sink:
        if cluster == "ray":
            users = _score_ray(
                art, src, sink, bad, k, batch_size, engine, threads, shards, address, actors, total
            )
        else:
            users = _score_local(art, src, sink, bad, k, batch_size, engine, threads, shards, total)
        bad.finish()
        sink.commit()
    seconds = time.perf_counter() - start
    return {
        "users": users,
        "rows": sink.rows,
        "skipped": bad.count,
        "seconds": seconds,
        "users_per_s": users / seconds if seconds > 0 else 0.0,
        "path": cluster or "local",
        "shards": shards,
        "out": str(out),
    }


def _score_local(art, src, sink, bad, k, batch_size, engine, threads, shards, total) -> int:
    import lite_export
    from lite_export.progress import task

    if shards is None:
        eng = lite_export.load(art, engine=engine, threads=threads)
    else:
        encoder = None if engine == "auto" else engine
        eng = lite_export.load(
            art, engine="sharded", shards=shards, encoder=encoder, threads=threads
        )
    users = 0
    with task(f"scoring {src.name}", total, unit="line") as bar:
        for chunk in _chunks(read_users(src, eng.catalog, bad, str(art)), batch_size):
            ids, scores = recommend_rows(
                eng, [r.history for r in chunk], [r.exclude_seen for r in chunk], k
            )
            sink.write(_long_table([r.user for r in chunk], ids, scores, k))
            users += len(chunk)
            bar.advance(users + bad.count - bar.done)  # lines read, bad ones included
    return users


def _score_ray(
    art, src, sink, bad, k, batch_size, engine, threads, shards, address, actors, total
) -> int:
    import logging

    import pyarrow as pa

    from lite_export.artifact import verify_artifact
    from lite_export.catalog import ItemCatalog
    from lite_export.cluster.runtime import init_ray
    from lite_export.progress import task

    loaded = sys.modules.get("ray")
    already = loaded is not None and loaded.is_initialized()
    init_ray(address)  # first: without Ray, this says what to install
    import ray.data
    from ray.util.debug import log_once

    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    data_log = logging.getLogger("ray.data")
    saved_level = data_log.level
    try:
        verify_artifact(art)  # once here; the actors read the same files
        catalog = ItemCatalog.read_jsonl(art / "items.jsonl")
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False  # this command shows its own
        log_once("ray_data_progress_manager_disabled")  # (and Ray need not warn that it does)
        data_log.setLevel(logging.WARNING)
        refs, users = [], 0
        with task(f"reading {src.name}", total, unit="line") as bar:
            for chunk in _chunks(read_users(src, catalog, bad, str(art)), batch_size):
                table = pa.table(
                    {
                        "_seq": pa.array(range(users, users + len(chunk)), pa.int64()),
                        "user": pa.array([r.user for r in chunk], pa.string()),
                        "history": pa.array([r.history for r in chunk], pa.list_(pa.string())),
                        "exclude_seen": pa.array([r.exclude_seen for r in chunk], pa.bool_()),
                    }
                )
                refs.append(ray.put(table))
                users += len(chunk)
                bar.advance(users + bad.count - bar.done)
        if not users:
            return 0
        ds = ray.data.from_arrow_refs(refs)
        del refs
        ds = _pipeline(ray, ds, str(art.resolve()), k, batch_size, engine, threads, shards, actors)
        last = -1  # the input position of the last user written
        with task("scoring", users, unit="user") as bar:
            for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                if not table.num_rows:
                    continue
                # k rows a user, users in input order (a block may end inside a user's rows)
                seq = table["_seq"].to_numpy()
                steps = np.diff(seq, prepend=last)
                if seq[0] not in (last, last + 1) or ((steps != 0) & (steps != 1)).any():
                    raise ClusterError(
                        f"Ray Data returned users out of input order (user {seq[0]} after "
                        f"{last}); nothing was written. Please report this"
                    )
                sink.write(table)
                bar.advance(int(seq[-1]) - last)
                last = int(seq[-1])
        if last + 1 != users or sink.rows != users * k:
            raise ClusterError(
                f"Ray Data returned {sink.rows:,} rows for {last + 1:,} users, not {users * k:,} "
                f"for {users:,}; nothing was written. Please report this"
            )
        return users
    except Exception as exc:
        raise _ray_cause(exc) from None
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
        data_log.setLevel(saved_level)
        if not already and not address:
            ray.shutdown()


def _pipeline(ray, ds, art: str, k, batch_size, engine, threads, shards, actors):
    """The map_batches stages of the Ray path (every actor asks for no CPU, so that a small
    machine holds them all)."""
    pool = dict(
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=0,
        batch_size=batch_size,
        batch_format="pyarrow",
        zero_copy_batch=True,
    )
    if shards is None:
        return ds.map_batches(EngineStage, fn_constructor_args=(art, engine, threads, k), **pool)
    from lite_export.artifact import read_manifest
    from lite_export.cluster.shards import shard_bounds

    bounds = shard_bounds(read_manifest(Path(art))["dims"]["num_items"], shards)
    ds = ds.map_batches(EncoderStage, fn_constructor_args=(art, engine, threads), **pool)
    for s, (a, b) in enumerate(bounds):
        ds = ds.map_batches(ShardStage, fn_constructor_args=(art, s, a, b, k, threads), **pool)
    sizes = [b - a for a, b in bounds]
    return ds.map_batches(MergeStage, fn_constructor_args=(art, sizes, k), **pool)


_RAISED = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")


def _ray_cause(exc: BaseException) -> BaseException:
    """The error a Ray Data stage raised, so that its message reaches the user. Ray keeps the
    original exception object only sometimes (``.cause``); otherwise its type and message are
    the last ``Type: message`` line of the traceback text Ray carries, re-raised as
    ImportError (a runtime missing on a node: the message says what to install) or
    :class:`ClusterError`."""
    chain, seen = [exc], {id(exc)}
    while isinstance(getattr(chain[-1], "cause", None), BaseException):
        cause = chain[-1].cause
        if id(cause) in seen:
            break
        seen.add(id(cause))
        chain.append(cause)
    if not type(chain[-1]).__module__.startswith("ray"):
        return chain[-1]
    lines = (line.strip() for e in chain for line in str(e).splitlines())
    found = [
        m.groups() for m in map(_RAISED.match, lines) if m and not m.group(1).startswith("ray.")
    ]
    if not found:
        return exc
    name, message = found[-1]
    if name.endswith(("EngineUnavailableError", "ImportError", "ModuleNotFoundError")):
        return ImportError(message)
    return ClusterError(f"a Ray Data stage failed: {name.rsplit('.', 1)[-1]}: {message}")
