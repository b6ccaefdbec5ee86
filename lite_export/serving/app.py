"""The HTTP API of ``lite serve``: FastAPI routes over a micro-batched engine.

``create_app(settings)`` returns a FastAPI app; its lifespan starts the batcher and loads the
artifact in the background (``/healthz`` answers at once, ``/readyz`` turns 200 once the engine is
loaded and warmed up). Every refusal is a JSON ``{"detail": "..."}`` that says what is wrong and
how to fix it; bad input never gets a 5xx.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from starlette.exceptions import HTTPException

from lite_export import __version__
from lite_export.serving.batcher import Closed, MicroBatcher, QueueFull
from lite_export.serving.metrics import Metrics
from lite_export.serving.model import Job, ModelHandle, RequestError
from lite_export.serving.settings import ServeSettings, default_threads

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("uvicorn.error")

#: most requests one POST /v1/recommend/batch may carry (and never more than --max-queue)
MAX_BATCH_REQUESTS = 1024
RETRY_AFTER = {"Retry-After": "1"}
EXAMPLE = '{"history": ["1193", "661"], "k": 10}'
KEY_HEADER = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="Required when the server has an API key."
)


# ---------------------------------------------------------------------- schemas
class RecommendRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"history": ["1193", "661"], "k": 10, "exclude_seen": True}]
        },
    )
    history: list[StrictStr] = Field(
        description="The user's items, oldest first, as external ids (strings, as in items.jsonl). "
        "Empty: the most popular items (`fallback: true`). Longer than the model's max_history: "
        "the most recent items are used (`truncated: true`)."
    )
    k: StrictInt = Field(
        10,
        ge=1,
        description="How many items: 1 to the served artifact's K (GET /v1/model: max_k); more "
        "gets a 422 that names K.",
    )
    exclude_seen: StrictBool = Field(
        True, description="Leave the history's items out of the answer."
    )
    lenient: StrictBool = Field(
        False, description="Drop unknown item ids (listed in `dropped`) instead of answering 422."
    )


SCORE_KINDS = {
    "model": "the model's score of the item for this history (higher is better; comparable "
    "within one model, not across models)",
    "popularity": "the item's interaction count in the training data: the empty-history "
    "fallback (`fallback: true`), best first",
}


class Item(BaseModel):
    id: str = Field(description="External item id, as in the artifact's items.jsonl.")
    score: float = Field(
        description="What it is depends on the response's `score_kind`: "
        + "; ".join(f'"{k}": {v}' for k, v in SCORE_KINDS.items())
        + "."
    )
    title: str = Field(description="The item's title, as in items.jsonl.")


class RecommendResponse(BaseModel):
    items: list[Item] = Field(description="Best first.")
    fallback: bool = Field(description="The history was empty: most-popular items.")
    score_kind: Literal["model", "popularity"] = Field(
        description='What the items\' `score` is: "model" (the model\'s scores) or "popularity" '
        "(training interaction counts, when `fallback` is true). The two scales are unrelated: "
        "do not compare a popularity count with a model score."
    )
    truncated: bool = Field(description="Only the most recent max_history items were read.")
    dropped: list[str] = Field(description="Unknown ids dropped (lenient requests).")
    warnings: list[str]
    model: str = Field(
        description="Id of the model that answered (first 16 hex of the manifest sha256)."
    )


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests: list[RecommendRequest] = Field(max_length=MAX_BATCH_REQUESTS)


class BatchResponse(BaseModel):
    results: list[RecommendResponse]


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    artifact: StrictStr | None = Field(
        None, description="Artifact directory to load (default: the one being served, re-read)."
    )


class ReloadResponse(BaseModel):
    model: str
    previous: str | None
    artifact: str
    load_seconds: float


class ErrorResponse(BaseModel):
    detail: str = Field(description="What is wrong and how to fix it.")


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (400, "Malformed JSON"),
        (401, "Missing or wrong X-API-Key (when the server has a key)"),
        (413, "Body larger than the limit"),
        (415, "Body is not JSON"),
        (422, "Invalid request (the detail names the field), unknown item ids, k out of range"),
        (503, "Model still loading, overloaded (see Retry-After) or shutting down"),
    )
}

HINTS = {
    "history": 'history is a list of item ids as strings, e.g. ["1193", "661"]',
    "k": "k is an integer from 1 to the artifact's K (GET /v1/model: max_k)",
    "exclude_seen": "exclude_seen is true or false",
    "lenient": "lenient is true or false",
    "requests": f"requests is a list of at most {MAX_BATCH_REQUESTS} objects like {EXAMPLE}",
    "artifact": "artifact is the path of an exported artifact directory on the server",
    "q": "q is the text to search in item titles and ids",
    "limit": "limit is an integer from 1 to 100",
}


# ---------------------------------------------------------------------- state
class ServerState:
    """The served model, the batcher and the metrics of one app."""

    def __init__(self, settings: ServeSettings, on_fatal=None):
        self.settings = settings
        self.threads = settings.threads or default_threads()
        self.metrics = Metrics(settings.max_batch)
        self.model: ModelHandle | None = None
        self.load_error: str | None = None
        self.shutting_down = False
        self.reloading = False
        self._reload_lock = threading.Lock()
        self._on_fatal = on_fatal
        self.route_paths: set[str] = set()  # metric labels: route templates only
        self.batcher = MicroBatcher(
            settings.max_batch,
            settings.max_delay_ms / 1000.0,
            settings.max_queue,
            on_batch=self._on_batch,
            on_depth=self.metrics.queue_depth.set,
        )

    def _on_batch(self, size: int, seconds: float) -> None:
        self.metrics.batch_size.observe(size)
        self.metrics.batch_seconds.observe(seconds)

    def _load(self, artifact) -> ModelHandle:
        s = self.settings
        return ModelHandle.load(artifact, s.engine, self.threads, warmup_batch=s.max_batch)

    def _install(self, handle: ModelHandle) -> None:
        self.model = handle  # one reference swap: requests already checked keep their handle
        self.load_error = None
        self.metrics.set_model(handle.id, handle.summary()["engine"] or "?", str(handle.path))
        self.metrics.ready.set(1)

    def initial_load(self) -> None:
        with self._reload_lock:
            try:
                handle = self._load(self.settings.artifact)
            except Exception as exc:  # any failure to load is reported, never a crash
                self.load_error = f"{type(exc).__name__}: {exc}"
                log.error("lite serve: cannot load %s: %s", self.settings.artifact, self.load_error)
                if self._on_fatal:
                    self._on_fatal(self.load_error)
                return
            self._install(handle)
        log.info(
            "lite serve: model %s ready (%s engine, %d items, max_history %d, K %d; loaded and "
            "warmed up in %.2fs)",
            handle.id,
            handle.engine.name,
            len(handle.catalog),
            handle.max_history,
            handle.max_k,
            handle.load_seconds,
        )

    async def reload(self, artifact: str | None = None, reason: str = "request") -> dict:
        """Load and warm up an artifact beside the served one, then swap it in; the old model
        keeps serving throughout, and stays if anything fails."""
        if not self._reload_lock.acquire(blocking=False):
            busy = "the model is still loading" if self.model is None else "a reload is in progress"
            raise RequestError(
                409, f"{busy}; retry when it has finished", RETRY_AFTER, kind="reload"
            )
        previous = self.model.id if self.model else None
        try:
            self.reloading = True
            path = artifact or (str(self.model.path) if self.model else self.settings.artifact)
            try:
                handle = await asyncio.to_thread(self._load, path)
            except Exception as exc:
                self.metrics.reloads.labels("failed").inc()
                log.warning("lite serve: reload (%s) of %s failed: %s", reason, path, exc)
                raise RequestError(
                    422,
                    f"reload failed, still serving model {previous}: cannot load {path}: "
                    f"{type(exc).__name__}: {exc}",
                    kind="reload",
                ) from None
            self._install(handle)
        finally:
            self.reloading = False
            self._reload_lock.release()
        self.metrics.reloads.labels("ok").inc()
        log.info(
            "lite serve: reloaded (%s): model %s -> %s from %s",
            reason,
            previous,
            handle.id,
            handle.path,
        )
        return {
            "model": handle.id,
            "previous": previous,
            "artifact": str(handle.path),
            "load_seconds": round(handle.load_seconds, 3),
        }

    def require_model(self) -> ModelHandle:
        # while shutting down, requests that reached the app are still answered (only /readyz
        # says 503): uvicorn has stopped accepting connections, and the batcher drains last
        model = self.model
        if model is None:
            if self.load_error:
                raise RequestError(
                    503, f"the model failed to load: {self.load_error}", kind="loading"
                )
            raise RequestError(
                503,
                "the model is still loading; retry when GET /readyz answers 200",
                RETRY_AFTER,
                kind="loading",
            )
        return model

    async def run(self, jobs: list[Job]) -> list[dict]:
        try:
            futures = self.batcher.submit(jobs)
        except QueueFull:
            raise RequestError(
                503,
                f"overloaded: {self.batcher.depth} requests are already waiting (max_queue "
                f"{self.settings.max_queue}); retry after the Retry-After delay, send fewer requests "
                "at once, or raise --max-queue / add replicas",
                RETRY_AFTER,
                kind="overload",
            ) from None
        except Closed:
            raise RequestError(
                503,
                "the server is shutting down; retry on another instance",
                RETRY_AFTER,
                kind="shutting_down",
            ) from None
        if len(futures) == 1:
            return [await futures[0]]
        return list(await asyncio.gather(*futures))


# ---------------------------------------------------------------------- errors
def _loc(loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _k_hint(request: Request) -> str:
    """The hint for a bad ``k``: the served artifact's K when a model is loaded."""
    state = getattr(request.app.state, "lite", None)
    model = state.model if state is not None else None
    if model is None:
        return HINTS["k"]
    return f"k is an integer from 1 to {model.max_k}, the K this artifact was exported with"


def _validation_detail(request: Request, exc: RequestValidationError) -> tuple[int, str, list]:
    errors = exc.errors()
    ctype = request.headers.get("content-type", "")
    for e in errors:
        if e.get("type") == "json_invalid":
            pos = e["loc"][1] if len(e["loc"]) > 1 else "?"
            why = (e.get("ctx") or {}).get("error", "JSON decode error")
            return (
                400,
                f"the body is not valid JSON ({why} at character {pos}); send a JSON object like {EXAMPLE}",
                [],
            )
    body_errors = [e for e in errors if e["loc"][:1] == ("body",)]
    if body_errors and request.method == "POST":
        if any(e["loc"] == ("body",) and e["type"] == "missing" for e in body_errors):
            return (
                422,
                f"the request body is missing: send a JSON object like {EXAMPLE} with Content-Type: application/json",
                [],
            )
        if "json" not in ctype.lower():
            return (
                415,
                f"the body must be JSON: send it with Content-Type: application/json (got {ctype or 'no Content-Type'})",
                [],
            )
    items, hints = [], []
    for e in errors:
        where = _loc(e["loc"])
        field = next((p for p in reversed(e["loc"]) if isinstance(p, str) and p in HINTS), None)
        if e["type"] == "extra_forbidden":
            msg = f"unknown field {e['loc'][-1]!r}"
        elif e["loc"] == ("body",) or e["loc"][-1:] == ("body",):
            msg = f"the body must be a JSON object like {EXAMPLE}"
        else:
            msg = e["msg"]
        items.append({"loc": where, "msg": msg, "type": e["type"]})
        hint = _k_hint(request) if field == "k" else HINTS.get(field)
        if hint and hint not in hints:
            hints.append(hint)
    shown = "; ".join(f"{i['loc']}: {i['msg']}" for i in items[:5])
    more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
    fix = f" ({'; '.join(hints)})" if hints else ""
    return 422, f"invalid request: {shown}{more}{fix}", items


def _install_error_handlers(app: FastAPI, state: ServerState) -> None:
    errors = state.metrics.errors

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        errors.labels(exc.kind).inc()
        return JSONResponse({"detail": exc.detail, **exc.extra}, exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        status, detail, items = _validation_detail(request, exc)
        errors.labels({400: "malformed_json", 415: "content_type"}.get(status, "validation")).inc()
        body = {"detail": detail, "errors": items} if items else {"detail": detail}
        return JSONResponse(body, status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        status, detail = exc.status_code, exc.detail
        if status == 404:
            detail = f"no route {request.method} {request.url.path}; the API is listed at /docs"
            errors.labels("not_found").inc()
        elif status == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            detail = (
                f"{request.method} is not allowed on {request.url.path}; use {allowed} (see /docs)"
            )
            errors.labels("method_not_allowed").inc()
        elif status == 413:
            errors.labels("body_too_large").inc()
        elif status == 400 and detail == "There was an error parsing the body":
            detail = f"the body could not be parsed as JSON (not UTF-8, or nested too deeply); send a JSON object like {EXAMPLE}"
            errors.labels("malformed_json").inc()
        else:
            errors.labels(f"http_{status}").inc()
        return JSONResponse({"detail": detail}, status, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        errors.labels("internal").inc()
        log.exception("lite serve: internal error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {
                "detail": f"internal error ({type(exc).__name__}: {exc}); this is a bug: please report it with the server log"
            },
            500,
        )


class _Guard:
    """Outer ASGI middleware: request metrics (route template, status, latency) and the body limit
    (413 before the body is parsed, for a declared or a streamed size)."""

    def __init__(self, app, state: ServerState):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]
        limit = self.state.settings.max_body_bytes
        fix = (
            f"request bodies are limited to {limit} bytes (--max-body-bytes); send fewer or shorter "
            "histories per request (POST /v1/recommend/batch in several parts)"
        )

        async def send_counted(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        length = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
        try:
            if length is not None and length > limit:
                # drain what the client sends (so it reads the answer), then refuse
                drained = 0
                while drained <= 64 * limit:
                    msg = await receive()
                    drained += len(msg.get("body", b""))
                    if msg["type"] != "http.request" or not msg.get("more_body"):
                        break
                self.state.metrics.errors.labels("body_too_large").inc()
                resp = JSONResponse(
                    {"detail": f"the body has {length} bytes; {fix}"},
                    413,
                    headers={"Connection": "close"},
                )
                await resp(scope, receive, send_counted)
                return
            received = 0

            async def receive_limited():
                nonlocal received
                msg = await receive()
                if msg["type"] == "http.request":
                    received += len(msg.get("body", b""))
                    if received > limit:
                        raise HTTPException(413, f"the body has more than {limit} bytes; {fix}")
                return msg

            await self.app(scope, receive_limited, send_counted)
        finally:
            route = getattr(scope.get("route"), "path", None)
            path = route or (
                scope["path"] if scope["path"] in self.state.route_paths else "unmatched"
            )
            m = self.state.metrics
            m.requests.labels(path, scope.get("method", ""), str(status[0])).inc()
            m.latency.labels(path).observe(time.perf_counter() - start)


# ---------------------------------------------------------------------- app
def create_app(settings: ServeSettings, *, on_fatal=None) -> FastAPI:
    """The FastAPI app serving ``settings.artifact``. Run it with uvicorn (see :func:`run_server`,
    which adds signals); ``on_fatal(message)`` is called if the first load fails."""
    state = ServerState(settings, on_fatal=on_fatal)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.batcher.start()
        threading.Thread(target=state.initial_load, name="lite-load", daemon=True).start()
        yield
        state.shutting_down = True
        await asyncio.to_thread(state.batcher.close, settings.graceful_timeout_s)
        log.info("lite serve: stopped (queue drained)")

    app = FastAPIOffline(
        title="lite-export recommender",
        version=__version__,
        description="Top-k recommendations from an exported Lite-LLM4Rec artifact. Send the API key "
        '(when the server has one) in the `X-API-Key` header. Errors are `{"detail": "..."}` '
        "and say how to fix the request.",
        lifespan=lifespan,
        favicon_url=None,
    )
    app.state.lite = state
    _install_error_handlers(app, state)
    app.add_middleware(_Guard, state=state)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    async def require_key(key: Annotated[str | None, Security(KEY_HEADER)] = None) -> None:
        expected = settings.api_key
        if expected and not (key and hmac.compare_digest(key.encode(), expected.encode())):
            raise RequestError(
                401,
                ("wrong" if key else "missing") + " X-API-Key header: send the key the server was "
                "started with (--api-key or LITE_API_KEY), e.g. curl -H 'X-API-Key: KEY' ...",
                {"WWW-Authenticate": "APIKey"},
                kind="auth",
            )

    keyed = [Depends(require_key)]

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response(status_code=204)

    @app.get("/healthz", summary="Liveness: the process answers", tags=["ops"])
    async def healthz():
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="Readiness: 200 once the model is loaded and warmed up, 503 before and while shutting down",
        tags=["ops"],
        responses={503: {"description": "Loading, failed or shutting down"}},
    )
    async def readyz():
        if state.shutting_down:
            return JSONResponse({"status": "shutting_down"}, 503, headers=RETRY_AFTER)
        if state.model is None:
            if state.load_error:
                return JSONResponse({"status": "failed", "detail": state.load_error}, 503)
            return JSONResponse({"status": "loading"}, 503, headers=RETRY_AFTER)
        return {"status": "ready", "model": state.model.id}

    @app.get(
        "/metrics", summary="Prometheus metrics", tags=["ops"], dependencies=keyed, responses=ERRORS
    )
    async def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        state.metrics.queue_depth.set(state.batcher.depth)
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/v1/model",
        summary="The served model: manifest summary and serving settings",
        tags=["model"],
        dependencies=keyed,
        responses=ERRORS,
    )
    async def model_info():
        model = state.require_model()
        s = settings.public()
        serving = {
            k: s[k]
            for k in (
                "engine",
                "max_batch",
                "max_delay_ms",
                "max_queue",
                "threads",
                "max_body_bytes",
                "api_key",
            )
        }
        serving["threads"] = state.threads
        return {**model.summary(), "serving": serving, "reloading": state.reloading}

    @app.get(
        "/v1/items",
        summary="Search items by title or id (case-insensitive substring)",
        tags=["model"],
        dependencies=keyed,
        responses=ERRORS,
    )
    async def items(
        q: Annotated[
            str,
            Query(
                max_length=200,
                description="Text to find in titles and ids; empty: the most popular items.",
            ),
        ] = "",
        limit: Annotated[int, Query(ge=1, le=100, description="At most this many items.")] = 20,
    ):
        model = state.require_model()
        if len(model.catalog) > 20_000:
            found = await asyncio.to_thread(model.search, q, limit)
        else:
            found = model.search(q, limit)
        return {"items": found, "model": model.id}

    def _job(model: ModelHandle, r: RecommendRequest, where: str = "") -> Job:
        return model.prepare(r.history, r.k, r.exclude_seen, r.lenient, where)

    def _timed(body: dict, start: float) -> JSONResponse:
        ms = (time.perf_counter() - start) * 1000
        return JSONResponse(body, headers={"Server-Timing": f"total;dur={ms:.2f}"})

    @app.post(
        "/v1/recommend",
        response_model=RecommendResponse,
        summary="Top-k items for one history",
        tags=["recommend"],
        dependencies=keyed,
        responses=ERRORS,
    )
    async def recommend(req: RecommendRequest):
        start = time.perf_counter()
        model = state.require_model()
        (result,) = await state.run([_job(model, req)])
        return _timed(result, start)

    @app.post(
        "/v1/recommend/batch",
        response_model=BatchResponse,
        summary="Top-k items for several histories (answered in order)",
        tags=["recommend"],
        dependencies=keyed,
        responses=ERRORS,
    )
    async def recommend_batch(req: BatchRequest):
        start = time.perf_counter()
        model = state.require_model()
        if len(req.requests) > settings.max_queue:
            raise RequestError(
                422,
                f"the batch has {len(req.requests)} requests; this server queues at most "
                f"{settings.max_queue} (--max-queue): split it into smaller batches",
                kind="validation",
            )
        jobs, problems, unknown = [], [], []
        for i, r in enumerate(req.requests):
            try:
                jobs.append(_job(model, r, f"requests[{i}]: "))
            except RequestError as exc:
                problems.append(exc.detail)
                unknown.extend(u for u in exc.extra.get("unknown_ids", []) if u not in unknown)
        if problems:
            more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
            extra = {"unknown_ids": unknown} if unknown else {}
            raise RequestError(
                422,
                " | ".join(problems[:5]) + more,
                kind="unknown_items" if unknown else "validation",
                **extra,
            )
        results = await state.run(jobs) if jobs else []
        return _timed({"results": results}, start)

    @app.post(
        "/admin/reload",
        response_model=ReloadResponse,
        summary="Load and warm up an artifact, then swap it in without dropping requests",
        tags=["ops"],
        dependencies=keyed,
        responses={
            **ERRORS,
            409: {"model": ErrorResponse, "description": "A load or reload is in progress"},
        },
    )
    async def reload(req: Annotated[ReloadRequest | None, Body()] = None):
        return await state.reload(req.artifact if req else None)

    state.route_paths = {getattr(r, "path", "") for r in app.routes}
    return app
