"""Prometheus metrics of one server (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Metrics:
    def __init__(self, max_batch: int):
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "lite_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "lite_request_duration_seconds",
            "HTTP request latency (first byte received to response sent)",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "lite_errors",
            "Refused or failed requests by kind (validation, unknown_items, overload, body_too_large, "
            "auth, not_found, loading, shutting_down, internal, ...)",
            ["kind"],
            registry=r,
        )
        buckets = sorted(
            {b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096) if b < max_batch}
            | {max_batch}
        )
        self.batch_size = Histogram(
            "lite_batch_size",
            "Requests per engine batch (micro-batching)",
            buckets=buckets,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "lite_batch_duration_seconds",
            "Engine time per batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("lite_queue_depth", "Requests waiting for the engine", registry=r)
        self.reloads = Counter("lite_reloads", "Model reloads by result", ["result"], registry=r)
        self.model_info = Gauge(
            "lite_model_info",
            "The model being served (value 1)",
            ["model", "engine", "artifact"],
            registry=r,
        )
        self.ready = Gauge("lite_ready", "1 when the model is loaded and warmed up", registry=r)
        self.busy_poll_seconds = Gauge(
            "lite_busy_poll_seconds",
            "Seconds the event loop has spent busy polling in all (--busy-poll-ms; 0 when off)",
            registry=r,
        )

    def set_model(self, model_id: str, engine: str, artifact: str) -> None:
        self.model_info.clear()
        self.model_info.labels(model_id, engine, artifact).set(1)
