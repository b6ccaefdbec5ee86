"""The HTTP API of ``lite serve``: FastAPI routes over a micro-batched engine.

``create_app(settings)`` returns a FastAPI app; its lifespan starts the batcher and loads the
artifact in the background (``/healthz`` answers at once, ``/readyz`` turns 200 once the engine is
loaded and warmed up). Every refusal is a JSON ``{"detail": "..."}`` that says what is wrong and
how to fix it (``{"error": "..."}`` on the Open Inference Protocol's ``/v2`` routes, see
:mod:`lite_export.serving.oip`); bad input never gets a 5xx.

**The fast path.** ``POST /v1/recommend`` and ``POST /v2/models/lite/infer`` are answered by the
outermost ASGI layer (:class:`_Guard`) without FastAPI's routing, dependency injection and
request objects, which cost more than the rest of a request on a 2-core machine (see
docs/serving.md, "Where the time goes"). It validates with the same Pydantic model as the route
(``RecommendRequest``, compiled JSON validation); anything it does not accept as it is (a body that
fails validation, another content type, a missing or wrong API key, a body over the limit) goes to
the FastAPI route unchanged, which answers exactly as before. The routes stay registered, so the
OpenAPI document is the same.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError
from starlette.exceptions import HTTPException

from lite_export import __version__
from lite_export.serving import oip
from lite_export.serving.batcher import Closed, MicroBatcher, QueueFull
from lite_export.serving.busypoll import BusyPoll
from lite_export.serving.metrics import Metrics
from lite_export.serving.model import Job, ModelHandle, RequestError
from lite_export.serving.settings import ServeSettings, default_threads

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("uvicorn.error")

#: most requests one POST /v1/recommend/batch may carry (and never more than --max-queue)
MAX_BATCH_REQUESTS = 1024
RETRY_AFTER = {"Retry-After": "1"}
JSON_TYPE = (b"content-type", b"application/json")
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


# Open Inference Protocol answers (documentation: the routes return these shapes as they are)
class ProtocolErrorResponse(BaseModel):
    error: str = Field(description="What is wrong and how to fix it.")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1: any size; the first dimension is the batch.")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata] = Field(
        description="HISTORY (BYTES [B, L], item ids), K (INT32 [B, 1], optional, default 10), "
        "EXCLUDE_SEEN (BOOL [B, 1], optional, default true)."
    )
    outputs: list[TensorMetadata] = Field(
        description="ITEM_IDS (BYTES [B, k], best first) and SCORES (FP32 [B, k])."
    )


class OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[str | float] | None = Field(
        None, description="Row-major values; absent when sent as binary data."
    )
    parameters: dict[str, Any] | None = Field(
        None, description="binary_data_size when the output follows the JSON header as binary."
    )


class InferResponse(BaseModel):
    id: str | None = None
    model_name: str
    model_version: str
    parameters: dict[str, Any] = Field(description="model: the id of the model that answered.")
    outputs: list[OutputTensor]


ModelName = Annotated[str, PathParam(description="The model: `lite`.", examples=[oip.MODEL_NAME])]
ModelVersion = Annotated[
    str, PathParam(description="Its version: `1`.", examples=[oip.MODEL_VERSION])
]


def oip_check(name: str, version: str | None = None) -> None:
    """404 in the protocol's body for a model or version this server does not serve."""
    try:
        oip.check_model(name, version)
    except oip.ProtocolError as exc:
        raise RequestError(exc.status, exc.message, kind=exc.kind) from None


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
#: Busy polling (``--busy-poll-ms``) starts only after this long without two HTTP requests in
#: flight at once: under load, a loop that reads each request the moment it arrives would run
#: them one by one on the idle-engine path instead of batching them (measured: ONNX Runtime at
#: 32 clients served 1,340 instead of 1,760 requests/s when it polled then).
SOLO_S = 1.0


class ServerState:
    """The served model, the batcher and the metrics of one app."""

    def __init__(self, settings: ServeSettings, on_fatal=None, loader=None):
        self.settings = settings
        self._loader = loader
        self.threads = settings.threads or default_threads()
        self.metrics = Metrics(settings.max_batch)
        self.model: ModelHandle | None = None
        self.load_error: str | None = None
        self.shutting_down = False
        self.reloading = False
        self._reload_lock = threading.Lock()
        self._on_fatal = on_fatal
        self.route_paths: set[str] = set()  # metric labels: route templates only
        self.active = 0  # requests in ServerState.run (on the event loop)
        self.in_flight = 0  # HTTP requests between the outermost layer's entry and exit
        self.last_concurrent = 0.0  # perf_counter when two or more were last in flight
        self.batcher = MicroBatcher(
            settings.max_batch,
            settings.max_delay_ms / 1000.0,
            settings.max_queue,
            on_batch=self._on_batch,
            on_depth=self.metrics.queue_depth.set,
        )

        self.poller = BusyPoll(
            settings.busy_poll_ms / 1000.0,
            lambda: self.active == 0 and not self.batcher.working,
        )
        self.metrics.busy_poll_seconds.set_function(lambda: self.poller.polled_s)

    def _on_batch(self, size: int, seconds: float) -> None:
        self.metrics.batch_size.observe(size)
        self.metrics.batch_seconds.observe(seconds)

    def _load(self, artifact) -> ModelHandle:
        s = self.settings
        if self._loader is not None:
            return self._loader(artifact)
        return ModelHandle.load(artifact, s.engine, self.threads, warmup_batch=s.max_batch)

    def _install(self, handle: ModelHandle) -> None:
        self.model = handle  # one reference swap: requests already checked keep their handle
        self.load_error = None
        self.metrics.set_model(handle.id, handle.summary()["engine"] or "?", str(handle.path))
        # what is alive now (the frameworks, the engine, the catalog: ~200k objects) lives as long
        # as the model: out of the cyclic GC, whose full pass over it took 87 ms on 2 cores (a
        # request that triggered one waited for it); thawed again at the next reload
        gc.unfreeze()
        gc.collect()
        gc.freeze()
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
        """The answers to ``jobs``: one alone with the engine idle runs here, at once; the rest
        go through the batcher's queue (see MicroBatcher.claim)."""
        self.active += 1
        try:
            if len(jobs) == 1 and self.batcher.idle and jobs[0].model.inline:
                # one turn of the event loop first, so that requests which arrived together with
                # this one reach the queue or this count, and are batched instead
                await asyncio.sleep(0)
                if self.active == 1 and self.batcher.claim():
                    out = [self.batcher.run_claimed(jobs[0])]
                    if time.perf_counter() - self.last_concurrent > SOLO_S:
                        self.poller.kick()  # one client at a time: poll for the next request
                    return out
            return await self._queued(jobs)
        finally:
            self.active -= 1

    async def _queued(self, jobs: list[Job]) -> list[dict]:
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

    async def infer_v2(
        self, body: bytes, header_length: str | None, encoding: str | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """``POST /v2/models/lite/infer``: (status, headers, body); every refusal is the
        protocol's ``{"error": ...}`` with a 400 (404, 413, 415, 503 where they apply)."""
        try:
            body = oip.decode_body(body, encoding, self.settings.max_body_bytes)
            req = oip.parse_infer(body, header_length)
            model = self.require_model()
            rows = len(req.histories)
            jobs = [
                model.prepare(
                    h,
                    req.k,
                    e,
                    req.lenient,
                    f"HISTORY row {r}: " if rows > 1 else "",
                    lenient_hint='"parameters": {"lenient": true}',
                )
                for r, (h, e) in enumerate(zip(req.histories, req.exclude_seen, strict=True))
            ]
            results = await self.run(jobs)
        except oip.ProtocolError as exc:
            self.metrics.errors.labels(exc.kind).inc()
            return exc.status, [JSON_TYPE], oip.error_body(exc.message)
        except RequestError as exc:
            self.metrics.errors.labels(exc.kind).inc()
            headers = [
                JSON_TYPE,
                *((k.lower().encode(), v.encode()) for k, v in exc.headers.items()),
            ]
            # the protocol's bad request is a 400 (lite's own routes answer 422)
            status = 400 if exc.status == 422 else exc.status
            return status, headers, oip.error_body(exc.detail)
        payload, headers = oip.encode_infer(req, results, model.id)
        return 200, headers, payload


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


def _refusal(path: str, status: int, detail: str, headers=None, **extra) -> JSONResponse:
    """``{"detail": ...}`` (with ``extra``), or the protocol's ``{"error": ...}`` on /v2 routes."""
    if oip.is_protocol_path(path):
        return JSONResponse({"error": detail}, status, headers=headers)
    return JSONResponse({"detail": detail, **extra}, status, headers=headers)


def _internal_detail(exc: BaseException) -> str:
    return (
        f"internal error ({type(exc).__name__}: {exc}); this is a bug: please report it with "
        "the server log"
    )


def _install_error_handlers(app: FastAPI, state: ServerState) -> None:
    errors = state.metrics.errors

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        errors.labels(exc.kind).inc()
        status = exc.status
        if status == 422 and oip.is_protocol_path(request.url.path):
            status = 400  # the protocol's bad request
        return _refusal(request.url.path, status, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        status, detail, items = _validation_detail(request, exc)
        errors.labels({400: "malformed_json", 415: "content_type"}.get(status, "validation")).inc()
        if oip.is_protocol_path(request.url.path):
            return JSONResponse({"error": detail}, 400)
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
        return _refusal(request.url.path, status, detail, exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        errors.labels("internal").inc()
        log.exception("lite serve: internal error on %s %s", request.method, request.url.path)
        return _refusal(request.url.path, 500, _internal_detail(exc))


#: POST routes the outermost layer answers itself: exact path -> (metric route label, protocol)
FAST_ROUTES = {
    "/v1/recommend": ("/v1/recommend", "v1"),
    f"/v2/models/{oip.MODEL_NAME}/infer": ("/v2/models/{name}/infer", "v2"),
    f"/v2/models/{oip.MODEL_NAME}/versions/{oip.MODEL_VERSION}/infer": (
        "/v2/models/{name}/versions/{version}/infer",
        "v2",
    ),
}
#: request headers the outermost layer reads
_HEADERS = {
    b"content-length",
    b"content-type",
    b"content-encoding",
    b"x-api-key",
    b"inference-header-content-length",
}


async def _read_body(receive, limit: int) -> tuple[list, bytes | None]:
    """The request's messages and its body; the body is None when it is over ``limit`` or the
    client left before sending all of it (the messages are then replayed to the FastAPI app,
    which answers as it always has)."""
    messages, chunks, size = [], [], 0
    while True:
        msg = await receive()
        messages.append(msg)
        if msg["type"] != "http.request":
            return messages, None
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            return messages, None
        chunks.append(chunk)
        if not msg.get("more_body"):
            return messages, chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _replay(messages: list, receive):
    async def replay():
        return messages.pop(0) if messages else await receive()

    return replay


async def _send(send, status: int, headers: list, body: bytes) -> None:
    head = [(b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def _dumps(obj) -> bytes:
    """JSON as Starlette's JSONResponse renders it."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class _Guard:
    """Outer ASGI middleware: request metrics (route template, status, latency), the body limit
    (413 before the body is parsed, for a declared or a streamed size), and the fast path of
    ``POST /v1/recommend`` and ``POST /v2/models/lite/infer`` (see the module docstring)."""

    def __init__(self, app, state: ServerState):
        self.app, self.state = app, state
        self._validate = RecommendRequest.__pydantic_validator__.validate_json
        self._children: dict[tuple, tuple] = {}  # metric children by (route, method, status)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        state = self.state
        state.in_flight += 1
        if state.in_flight > 1:
            state.last_concurrent = start
        status = [500]
        label = None
        limit = self.state.settings.max_body_bytes
        fix = (
            f"request bodies are limited to {limit} bytes (--max-body-bytes); send fewer or shorter "
            "histories per request (POST /v1/recommend/batch in several parts)"
        )

        async def send_counted(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        headers = {n: v for n, v in scope.get("headers", ()) if n in _HEADERS}
        length = None
        if b"content-length" in headers:
            try:
                length = int(headers[b"content-length"])
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
                resp = _refusal(
                    scope["path"],
                    413,
                    f"the body has {length} bytes; {fix}",
                    headers={"Connection": "close"},
                )
                await resp(scope, receive, send_counted)
                return
            source = receive
            fast = FAST_ROUTES.get(scope["path"]) if scope["method"] == "POST" else None
            if fast is not None:
                messages, body = await _read_body(receive, limit)
                if body is not None and await self._answer(
                    fast[1], headers, body, send_counted, start
                ):
                    label = fast[0]
                    return
                source = _replay(messages, receive)
            received = 0

            async def receive_limited():
                nonlocal received
                msg = await source()
                if msg["type"] == "http.request":
                    received += len(msg.get("body", b""))
                    if received > limit:
                        raise HTTPException(413, f"the body has more than {limit} bytes; {fix}")
                return msg

            await self.app(scope, receive_limited, send_counted)
        finally:
            state.in_flight -= 1
            path = label or getattr(scope.get("route"), "path", None)
            if path is None:
                path = scope["path"] if scope["path"] in self.state.route_paths else "unmatched"
            key = (path, scope.get("method", ""), str(status[0]))
            children = self._children.get(key)
            if children is None:
                m = self.state.metrics
                children = self._children[key] = (m.requests.labels(*key), m.latency.labels(path))
            children[0].inc()
            children[1].observe(time.perf_counter() - start)

    async def _answer(self, protocol: str, headers: dict, body: bytes, send, start=0.0) -> bool:
        """Answer a fast-path request; False (nothing sent) to leave it to the FastAPI route."""
        state = self.state
        key = state.settings.api_key
        if key and not hmac.compare_digest(headers.get(b"x-api-key", b""), key.encode()):
            return False  # the route answers 401
        if protocol == "v2":
            try:
                status, out, payload = await state.infer_v2(
                    body,
                    _latin1(headers.get(b"inference-header-content-length")),
                    _latin1(headers.get(b"content-encoding")),
                )
            except Exception as exc:  # a bug (engine failure): as the route's handler answers
                state.metrics.errors.labels("internal").inc()
                log.exception("lite serve: internal error on POST /v2 infer")
                status, out, payload = 500, [JSON_TYPE], oip.error_body(_internal_detail(exc))
            await _send(send, status, out, payload)
            return True
        ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if ctype != b"application/json" or b"content-encoding" in headers:
            return False
        try:
            req = self._validate(body)
        except ValidationError:
            return False  # the route names the problem
        t0 = time.perf_counter()
        try:
            model = state.require_model()
            job = model.prepare(req.history, req.k, req.exclude_seen, req.lenient)
            (result,) = await state.run([job])
            payload = _dumps(result)
        except RequestError as exc:
            state.metrics.errors.labels(exc.kind).inc()
            extra = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
            body = _dumps({"detail": exc.detail, **exc.extra})
            await _send(send, exc.status, [JSON_TYPE, *extra], body)
            return True
        except Exception as exc:
            state.metrics.errors.labels("internal").inc()
            log.exception("lite serve: internal error on POST /v1/recommend")
            await _send(send, 500, [JSON_TYPE], _dumps({"detail": _internal_detail(exc)}))
            return True
        t1 = time.perf_counter()
        timing = f"total;dur={(t1 - t0) * 1000:.2f}, app;dur={(t1 - start) * 1000:.2f}".encode()
        await _send(send, 200, [JSON_TYPE, (b"server-timing", timing)], payload)
        return True


def _latin1(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


# ---------------------------------------------------------------------- app
def create_app(settings: ServeSettings, *, on_fatal=None, loader=None) -> FastAPI:
    """The FastAPI app serving ``settings.artifact``. Run it with uvicorn (see :func:`run_server`,
    which adds signals); ``on_fatal(message)`` is called if the first load fails. ``loader``
    (``artifact -> ModelHandle``) replaces the engine registry, for the first load and reloads:
    the Ray Serve ingress (:mod:`lite_export.cluster.ray_app`) serves a sharded engine with it."""
    state = ServerState(settings, on_fatal=on_fatal, loader=loader)

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
                "busy_poll_ms",
                "threads",
                "max_body_bytes",
                "api_key",
            )
        }
        serving["threads"] = state.threads
        serving["batching"] = settings.batching()
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

    # ------------------------------------------------------------ Open Inference Protocol (v2)
    v2 = ["Open Inference Protocol (v2)"]
    v2_errors = {
        code: {"model": ProtocolErrorResponse, "description": text}
        for code, text in (
            (400, "Bad request: the error names the problem"),
            (401, "Missing or wrong X-API-Key (when the server has a key)"),
            (404, "Another model or version than lite/1"),
            (413, "Body larger than the limit"),
            (503, "Model still loading, overloaded (see Retry-After) or shutting down"),
        )
    }

    def _not_ready() -> str | None:
        if state.shutting_down:
            return "the server is shutting down"
        if state.model is None:
            return f"the model {'failed to load' if state.load_error else 'is still loading'}"
        return None

    @app.get("/v2", summary="Server metadata", tags=v2, response_model=ServerMetadata)
    async def v2_server():
        return oip.server_metadata(__version__)

    @app.get(
        "/v2/health/live",
        summary="Liveness: 200 while the process answers",
        tags=v2,
        response_model=Live,
    )
    async def v2_live():
        return {"live": True}

    @app.get(
        "/v2/health/ready",
        summary="Readiness: 200 once the model is loaded and warmed up, 400 before and while "
        "shutting down",
        tags=v2,
        response_model=Ready,
        responses={400: {"model": ProtocolErrorResponse, "description": "Not ready"}},
    )
    async def v2_ready():
        why = _not_ready()
        if why:
            return JSONResponse({"error": f"not ready: {why}"}, 400)
        return {"ready": True}

    async def _metadata(name: str, version: str | None = None):
        oip_check(name, version)
        return oip.model_metadata()

    async def _model_ready(name: str, version: str | None = None):
        oip_check(name, version)
        why = _not_ready()
        if why:
            return JSONResponse({"error": f"model {name!r} is not ready: {why}"}, 400)
        return {"name": name, "ready": True}

    async def _infer(request: Request, name: str, version: str | None = None):
        oip_check(name, version)
        status, headers, payload = await state.infer_v2(
            await request.body(),
            request.headers.get("inference-header-content-length"),
            request.headers.get("content-encoding"),
        )
        return Response(payload, status, headers={k.decode(): v.decode() for k, v in headers})

    # each route twice: /v2/models/{name}/... and /v2/models/{name}/versions/{version}/... (the
    # versioned ones, the same operations, are left out of the OpenAPI document)
    async def metadata(name: ModelName):
        return await _metadata(name)

    async def metadata_v(name: ModelName, version: ModelVersion):
        return await _metadata(name, version)

    async def model_ready(name: ModelName):
        return await _model_ready(name)

    async def model_ready_v(name: ModelName, version: ModelVersion):
        return await _model_ready(name, version)

    async def infer(request: Request, name: ModelName):
        return await _infer(request, name)

    async def infer_v(request: Request, name: ModelName, version: ModelVersion):
        return await _infer(request, name, version)

    infer_doc = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": oip.INFER_REQUEST_SCHEMA}},
            "description": "The protocol's inference request. Binary tensor data (tritonclient's "
            "default) follows the JSON header, whose length is in the "
            "Inference-Header-Content-Length header.",
        }
    }
    for prefix, hidden, handlers in (
        ("/v2/models/{name}", False, (metadata, model_ready, infer)),
        ("/v2/models/{name}/versions/{version}", True, (metadata_v, model_ready_v, infer_v)),
    ):
        app.get(
            prefix,
            summary="Model metadata: the tensors of the Triton `lite` model",
            tags=v2,
            response_model=ModelMetadata,
            responses=v2_errors,
            dependencies=keyed,
            include_in_schema=not hidden,
        )(handlers[0])
        app.get(
            prefix + "/ready",
            summary="Model readiness: 200 once loaded and warmed up, 400 before",
            tags=v2,
            response_model=ModelReady,
            responses=v2_errors,
            dependencies=keyed,
            include_in_schema=not hidden,
        )(handlers[1])
        app.post(
            prefix + "/infer",
            summary="Top-k items for each row of HISTORY (Open Inference Protocol)",
            tags=v2,
            response_model=InferResponse,
            responses=v2_errors,
            dependencies=keyed,
            openapi_extra=infer_doc,
            include_in_schema=not hidden,
        )(handlers[2])

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
