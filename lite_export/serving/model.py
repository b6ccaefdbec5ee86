"""One loaded, warmed-up model (engine + catalog + id) and the checks each request goes through
before it reaches the engine, so that bad input gets a 4xx that names the problem."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

#: exceptions that mean "this artifact cannot be served" (a failed load or reload, never a 5xx)
LOAD_ERRORS = (ValueError, OSError, ImportError, KeyError, RuntimeError)


class RequestError(Exception):
    """A request the server refuses; ``status`` is a 4xx (or 503) and ``detail`` says how to fix it."""

    def __init__(
        self, status: int, detail: str, headers: dict | None = None, kind: str = "", **extra
    ):
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers or {}, extra
        self.kind = kind or f"http_{status}"  # the lite_errors_total label


@dataclass
class Job:
    """One recommendation request, checked and ready for the engine."""

    model: ModelHandle
    history: list[str]  # what the engine gets (see ModelHandle.prepare)
    k: int
    exclude_seen: bool
    truncated: bool = False
    dropped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class ModelHandle:
    """An engine over one artifact, loaded and warmed up; immutable once built, so a reload
    builds a new handle and swaps the reference (requests keep the handle they were checked by)."""

    def __init__(self, engine, artifact: Path, manifest_sha256: str, load_seconds: float):
        self.engine = engine
        self.path = artifact
        self.sha256 = manifest_sha256
        self.id = manifest_sha256[:16]
        self.catalog = engine.catalog
        self.manifest = engine.manifest
        self.max_history, self.max_k = engine.max_history, engine.max_k
        #: a lone request may run the engine on the event loop's thread (see MicroBatcher.claim);
        #: not an engine that waits on other processes (``inline = False``, e.g. Ray handles)
        self.inline = getattr(engine, "inline", True)
        self.load_seconds = load_seconds
        self.loaded_unix = time.time()
        self._search = [
            f"{i}\n{t}".casefold()
            for i, t in zip(self.catalog.ids, self.catalog.titles, strict=True)
        ]
        self._by_popularity = self.catalog.most_popular(len(self.catalog))[0]
        self._popularity_rank = {i: r for r, i in enumerate(self._by_popularity)}

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls, artifact, engine: str = "auto", threads: int | None = None, warmup_batch: int = 32
    ) -> ModelHandle:
        """Verify and load the artifact with the engine, then warm it up (first calls allocate)."""
        from lite_export.engines.registry import load

        start = time.perf_counter()
        path = Path(artifact).resolve()
        options = {"threads": threads} if threads else {}
        eng = load(path, engine=engine, **options)
        if threads and eng.name == "torch":  # the PyTorch engine runs on torch's thread pool
            import torch

            torch.set_num_threads(threads)
        return cls.from_engine(eng, warmup_batch, start)

    @classmethod
    def from_engine(cls, engine, warmup_batch: int = 32, start: float | None = None) -> ModelHandle:
        """A handle over an engine that is already loaded (any object with the engine
        interface: ``catalog``, ``manifest``, ``max_history``, ``max_k``, ``info``, ``name``,
        ``recommend``), warmed up; ``start`` (perf_counter) is when its load began."""
        start = time.perf_counter() if start is None else start
        path = Path(engine.path).resolve()
        # the manifest as verified by the engine (it checksums every other file)
        sha = hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()
        handle = cls(engine, path, sha, 0.0)
        handle.warmup(warmup_batch)
        handle.load_seconds = time.perf_counter() - start
        return handle

    def warmup(self, batch: int) -> None:
        popular = [self.catalog.ids[i] for i in self._by_popularity[: self.max_history]]
        k = min(10, self.max_k)
        for b in sorted({1, max(1, batch)}):
            self.engine.recommend([popular] * b, k=k, exclude_seen=True)
        self.engine.recommend([popular[:1], []], k=k, exclude_seen=False)

    # ------------------------------------------------------------------ requests
    def prepare(
        self,
        history: list[str],
        k: int,
        exclude_seen: bool,
        lenient: bool,
        where: str = "",
        lenient_hint: str = '"lenient": true',
    ) -> Job:
        """Check one request against this model; raises RequestError (422) naming the problem
        (``lenient_hint``: how this request's protocol asks for leniency)."""
        if not 1 <= k <= self.max_k:
            raise RequestError(
                422,
                f"{where}k must be between 1 and {self.max_k} (the K this artifact was exported "
                f"with; re-export with `lite export --k N` to serve more), got {k}",
                kind="validation",
            )
        warnings: list[str] = []
        unknown = self.catalog.unknown(history)
        dropped: list[str] = []
        if unknown:
            dropped = list(dict.fromkeys(unknown))
            if not lenient:
                shown = ", ".join(repr(u) for u in dropped[:10])
                more = f" (+{len(dropped) - 10} more)" if len(dropped) > 10 else ""
                raise RequestError(
                    422,
                    f"{where}unknown item ids: {shown}{more}. The catalog has {len(self.catalog)} "
                    "items: pass external ids exactly as in the artifact's items.jsonl (search them "
                    f"with GET /v1/items?q=TITLE), or send {lenient_hint} to drop unknown ids",
                    kind="unknown_items",
                    unknown_ids=dropped,
                )
            history = [h for h in history if h in self.catalog]
            warnings.append(
                f"dropped {len(unknown)} unknown item id(s) from the history: "
                + ", ".join(repr(u) for u in dropped[:10])
                + (" ..." if len(dropped) > 10 else "")
            )
        if not history:
            warnings.append("empty history: returning the most popular items (fallback)")
        truncated = len(history) > self.max_history
        if truncated:
            warnings.append(
                f"history has {len(history)} items; the model reads the most recent "
                f"{self.max_history}"
                + (" (all are excluded from the results)" if exclude_seen else "")
            )
            history = self.compact(history, exclude_seen)
        return Job(self, history, k, exclude_seen, truncated, dropped, warnings)

    def compact(self, history: list[str], exclude_seen: bool) -> list[str]:
        """A history longer than max_history, reduced to what the engine needs: the model reads
        the last max_history items; exclusion needs every item seen, once. Bounded by the catalog
        size, however long the request's history."""
        window = history[-self.max_history :]
        if not exclude_seen:
            return window
        in_window = set(window)
        older = [h for h in dict.fromkeys(history[: -self.max_history]) if h not in in_window]
        return older + window

    def search(self, query: str, limit: int) -> list[dict]:
        """Items whose id or title contains ``query`` (case-insensitive), exact id and title
        prefix first, then by popularity; the most popular items for an empty query."""
        cat = self.catalog
        q = query.strip().casefold()
        if not q:
            hits = self._by_popularity[:limit]
        else:
            rank = self._popularity_rank
            found = [i for i, s in enumerate(self._search) if q in s]

            def key(i: int):
                exact = cat.ids[i].casefold() == q
                prefix = cat.titles[i].casefold().startswith(q)
                return (not exact, not prefix, rank[i])

            hits = sorted(found, key=key)[:limit]
        return [
            {"id": cat.ids[i], "title": cat.titles[i], "popularity": cat.popularity[i]}
            for i in hits
        ]

    def summary(self) -> dict:
        m = self.manifest
        info = self.engine.info
        return {
            "id": self.id,
            "sha256": self.sha256,
            "artifact": str(self.path),
            "engine": info.get("engine"),
            "engine_info": {k: v for k, v in info.items() if k not in ("engine", "artifact")},
            "format": m.get("format"),
            "format_version": m.get("format_version"),
            "lite_export_version": m.get("lite_export_version"),
            "created_unix": m.get("created_unix"),
            "dims": m.get("dims", {}),
            "precision": m.get("export_options", {}).get(
                "precision", m.get("dtypes", {}).get("compute")
            ),
            "dtypes": m.get("dtypes", {}),
            "files": {name: e.get("bytes") for name, e in m.get("files", {}).items()},
            "num_items": len(self.catalog),
            "max_history": self.max_history,
            "max_k": self.max_k,
            "loaded_unix": self.loaded_unix,
            "load_seconds": round(self.load_seconds, 3),
        }
