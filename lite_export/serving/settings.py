"""Serving settings: built-in defaults < a ``serve.json`` file (written by ``lite tune``) < CLI flags.

No web framework is imported here, so the CLI can check settings (and refuse an unsafe bind)
before paying for FastAPI, uvicorn and an engine.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

ENGINES = ("auto", "torch", "onnxruntime", "tensorrt")


class SettingsError(ValueError):
    """A serving setting (flag or settings-file key) is invalid; the message says how to fix it."""


@dataclass
class ServeSettings:
    """Everything ``lite serve`` needs. Field names are the settings-file keys (``max_batch``;
    ``max-batch`` is accepted too)."""

    artifact: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    engine: str = "auto"
    #: batching: at most this many requests per engine call. Continuous by default: a request
    #: that finds the engine free runs at once, and what arrives while a batch runs is the next
    #: batch (batches form from load, never from a timer) ...
    max_batch: int = 32
    #: ... unless this is > 0 (opt-in): then the engine waits up to this long after the first
    #: request of a batch for more to arrive (fuller batches for a longer latency)
    max_delay_ms: float = 0.0
    #: requests waiting for the engine; beyond it new requests get 503 + Retry-After
    max_queue: int = 256
    #: after each request, keep the event loop polling (not sleeping) this long while the engine
    #: is idle, so the next request is not delayed by the CPU's wake-up from idle (0: off; costs
    #: up to one core while it polls; see docs/serving.md "Busy polling")
    busy_poll_ms: float = 0.0
    #: intra-op threads of the engine (None: half the cores, see :func:`default_threads`)
    threads: int | None = None
    api_key: str | None = None
    insecure: bool = False
    max_body_bytes: int = 1_000_000
    log_level: str = "info"
    access_log: bool = False
    #: seconds SIGTERM/SIGINT waits for in-flight requests before cancelling them
    graceful_timeout_s: float = 30.0

    # ------------------------------------------------------------------ building
    @classmethod
    def file_keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name != "artifact"]

    @classmethod
    def read_file(cls, path: str | os.PathLike) -> dict:
        """The settings in a JSON file; unknown keys are an error (keys starting with ``_`` are
        comments and ignored)."""
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            raise SettingsError(f"settings file {p} does not exist") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise SettingsError(f"settings file {p} is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise SettingsError(
                f'settings file {p} must hold a JSON object like {{"max_batch": 32}}'
            )
        out, unknown = {}, []
        keys = set(cls.file_keys())
        for key, value in data.items():
            if key.startswith("_"):
                continue
            name = key.replace("-", "_")
            if name not in keys:
                unknown.append(key)
            else:
                out[name] = value
        if unknown:
            raise SettingsError(
                f"settings file {p}: unknown keys {unknown}; known keys: {sorted(keys)}"
            )
        return out

    @classmethod
    def resolve(
        cls, artifact: str | os.PathLike, config: str | os.PathLike | None = None, **flags
    ) -> ServeSettings:
        """Defaults, then the settings file, then every flag that is not None; validated."""
        values = cls.read_file(config) if config else {}
        unknown = [k for k in flags if k not in cls.file_keys()]
        if unknown:
            raise TypeError(f"unknown serving settings {unknown}")
        values.update({k: v for k, v in flags.items() if v is not None})
        settings = cls(artifact=str(artifact), **values)
        settings.validate()
        return settings

    def to_file(self, path: str | os.PathLike) -> None:
        """Write the settings (without the artifact and the API key) as a settings file."""
        data = {
            k: v for k, v in dataclasses.asdict(self).items() if k not in ("artifact", "api_key")
        }
        Path(path).write_text(json.dumps(data, indent=2) + "\n")

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        def integer(name: str, lo: int, hi: int | None = None, optional: bool = False) -> None:
            v = getattr(self, name)
            if optional and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi and v > hi):
                span = f"{lo}..{hi}" if hi else f">= {lo}"
                raise SettingsError(f"{name} must be an integer {span}, got {v!r}")

        if self.engine not in ENGINES:
            raise SettingsError(f"engine must be one of {'|'.join(ENGINES)}, got {self.engine!r}")
        if not isinstance(self.host, str) or not self.host:
            raise SettingsError(f"host must be a host name or IP address, got {self.host!r}")
        integer("port", 1, 65535)
        integer("max_batch", 1, 4096)
        integer("max_queue", 1, 1_000_000)
        integer("threads", 1, 1024, optional=True)
        integer("max_body_bytes", 1024)
        d = self.max_delay_ms
        if isinstance(d, bool) or not isinstance(d, int | float) or not 0 <= d <= 10_000:
            raise SettingsError(
                f"max_delay_ms must be a number of milliseconds 0..10000, got {d!r}"
            )
        self.max_delay_ms = float(d)
        bp = self.busy_poll_ms
        if isinstance(bp, bool) or not isinstance(bp, int | float) or not 0 <= bp <= 1000:
            raise SettingsError(
                f"busy_poll_ms must be a number of milliseconds 0..1000 (0: off), got {bp!r}"
            )
        self.busy_poll_ms = float(bp)
        if not isinstance(self.graceful_timeout_s, int | float) or self.graceful_timeout_s < 0:
            raise SettingsError("graceful_timeout_s must be a number of seconds >= 0")
        for flag in ("insecure", "access_log"):
            if not isinstance(getattr(self, flag), bool):
                raise SettingsError(f"{flag} must be true or false")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise SettingsError("api_key must be a non-empty string")
        if self.log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise SettingsError("log_level must be critical|error|warning|info|debug|trace")

    def check_bind(self) -> None:
        """Refuse to listen beyond this machine without an API key, unless ``insecure``."""
        if is_loopback(self.host) or self.api_key or self.insecure:
            return
        raise SettingsError(
            f"refusing to listen on {self.host} without an API key: anyone who can reach it could "
            "query and reload the model. Pass --api-key KEY (or set LITE_API_KEY; clients send it "
            "in the X-API-Key header), keep --host 127.0.0.1, or pass --insecure on a trusted network"
        )

    def batching(self) -> str:
        """``continuous`` (no wait: batches form from load) or ``timed`` (``max_delay_ms`` > 0)."""
        return "timed" if self.max_delay_ms > 0 else "continuous"

    def public(self) -> dict:
        """The settings a client may see (no API key)."""
        d = dataclasses.asdict(self)
        d["api_key"] = bool(self.api_key)
        return d


def default_threads() -> int:
    """Engine threads when none are set: half the cores, at least one. The HTTP side (parsing,
    validation, JSON) needs the rest: on 2 cores, ONNX Runtime with its default 2 intra-op
    threads served the ML-1M model at ~180-320 req/s, with 1 thread ~380-420 req/s."""
    return max(1, (os.cpu_count() or 2) // 2)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
