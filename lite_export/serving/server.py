"""``run_server``: uvicorn around :func:`create_app`, with the signals a service needs.

SIGTERM / SIGINT: stop accepting connections, answer every request already received (the batcher
drains its queue), then exit 0. SIGHUP: reload the served artifact (re-read from disk) and swap it
in without dropping a request. A model that cannot be loaded at startup exits 1.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvicorn

from lite_export.serving.app import create_app
from lite_export.serving.settings import ServeSettings

log = logging.getLogger("uvicorn.error")

#: uvicorn's own start-up lines, which claim the server runs before the model is loaded:
#: ``run_server`` prints one line with the URL once it is ready instead
_EARLY_CLAIMS = ("Uvicorn running on", "Application startup complete")


class _NotBeforeReady(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_EARLY_CLAIMS)


class _HeldHeaders:
    """A transport that holds a response's status line and headers until the response's first
    body write, and sends them together: one write, one TCP segment and one wake-up of the client
    per response instead of two (uvicorn writes the headers as soon as the app starts the
    response). Anything else (1xx answers, later body chunks, close) flushes what is held first.
    """

    __slots__ = ("_transport", "_held")

    def __init__(self, transport):
        self._transport = transport
        self._held = b""

    def write(self, data) -> None:
        if self._held:
            data, self._held = self._held + bytes(data), b""
        elif data[:9] == b"HTTP/1.1 " and data[9:10] != b"1":
            self._held = bytes(data)  # the headers: wait for the body
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._held:
            data, self._held = self._held, b""
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name):
        return getattr(self._transport, name)


def _http_protocol():
    """uvicorn's httptools protocol with :class:`_HeldHeaders` (None without httptools: uvicorn's
    default)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None

    class Protocol(HttpToolsProtocol):
        def connection_made(self, transport) -> None:
            super().connection_made(_HeldHeaders(transport))

        def on_response_complete(self) -> None:
            self.transport.flush()  # a response without a body write (HEAD)
            super().on_response_complete()

    return Protocol


def run_server(settings: ServeSettings) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code (0 after a graceful drain)."""
    settings.validate()
    settings.check_bind()
    failed: list[str] = []

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            app.state.lite.shutting_down = True  # /readyz says so while in-flight requests drain
            super().handle_exit(sig, frame)

    def on_fatal(message: str) -> None:
        failed.append(message)
        server.should_exit = True

    app = create_app(settings, on_fatal=on_fatal)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
        server_header=False,
        lifespan="on",
        **({"http": protocol} if (protocol := _http_protocol()) else {}),
    )
    server = Server(config)
    quiet = _NotBeforeReady()
    log.addFilter(quiet)
    url = f"http://{settings.host}:{settings.port}"
    if ":" in settings.host:  # IPv6 literal
        url = f"http://[{settings.host}]:{settings.port}"

    async def announce_when_ready() -> None:
        """One line with the URL once the socket is bound and the model loaded and warmed up
        (what /readyz says with 200); nothing if the load fails or the server stops first."""
        state = app.state.lite
        while not server.should_exit:
            if server.started and state.model is not None:
                m = state.model
                print(
                    f"lite serve: ready, listening on {url} (model {m.id}, {m.engine.name} "
                    f"engine, {len(m.catalog)} items, K {m.max_k}; page {url}/, docs "
                    f"{url}/docs; API key {'required' if settings.api_key else 'off'}; Ctrl-C "
                    "stops)",
                    file=sys.stderr,
                    flush=True,
                )
                return
            await asyncio.sleep(0.02)

    def on_hup() -> None:
        async def reload() -> None:
            from lite_export.serving.model import RequestError

            try:
                await app.state.lite.reload(reason="SIGHUP")
            except RequestError as exc:
                log.warning("lite serve: SIGHUP reload refused: %s", exc.detail)

        asyncio.get_running_loop().create_task(reload())

    async def main() -> None:
        if hasattr(signal, "SIGHUP"):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_hup)
        announcer = asyncio.get_running_loop().create_task(announce_when_ready())
        try:
            await server.serve()
        finally:
            announcer.cancel()

    # uvicorn re-raises the stop signal after its graceful shutdown, to the handler that was in
    # place before it; a no-op one makes a drained stop exit 0 instead of dying by the signal.
    previous = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGINT, signal.SIGTERM)}
    print(
        f"lite serve: loading {settings.artifact} ({settings.engine} engine) for {url}; "
        "a line says when it is ready",
        file=sys.stderr,
        flush=True,
    )
    try:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(main())
    finally:
        log.removeFilter(quiet)
        for s, handler in previous.items():
            signal.signal(s, handler)
    if failed:
        print(f"error: cannot serve {settings.artifact}: {failed[0]}", file=sys.stderr)
        return 1
    if not server.started:
        return 1
    return 0
