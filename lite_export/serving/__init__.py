"""``lite serve``: an HTTP API with dynamic micro-batching in front of any engine, and a small page.

    from lite_export.serving import ServeSettings, create_app, run_server
    settings = ServeSettings.resolve("art", port=8080, max_batch=16)
    run_server(settings)            # blocks; SIGTERM drains, SIGHUP reloads
    app = create_app(settings)      # or mount the FastAPI app in your own uvicorn

FastAPI, uvicorn and prometheus-client (``pip install "lite-export[serve]"``) are imported only
when ``create_app`` or ``run_server`` is first used.
"""

from __future__ import annotations

from lite_export.serving.settings import ServeSettings, SettingsError

_LAZY = {
    "create_app": ("lite_export.serving.app", "create_app"),
    "run_server": ("lite_export.serving.server", "run_server"),
    "ModelHandle": ("lite_export.serving.model", "ModelHandle"),
    "MicroBatcher": ("lite_export.serving.batcher", "MicroBatcher"),
}

__all__ = ["ServeSettings", "SettingsError", *_LAZY]

INSTALL = 'pip install "lite-export[serve]"'


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        try:
            value = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            if exc.name in (
                "fastapi",
                "uvicorn",
                "prometheus_client",
                "fastapi_offline",
                "starlette",
            ):
                raise ImportError(f"lite serve needs {exc.name}: {INSTALL}") from exc
            raise
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lite_export.serving' has no attribute {name!r}")
