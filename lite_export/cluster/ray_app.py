"""``lite serve ART --cluster ray``: the HTTP API of ``lite serve`` as a Ray Serve application
whose catalog is split into shards.

Three kinds of deployment (Ray Serve names them, and a Serve config file overrides each one's
``num_replicas``, ``autoscaling_config`` or ``ray_actor_options`` by these names):

* ``UserEncoder`` -- the artifact's user encoder: padded item ids ``[B, L]`` -> user vectors
  ``[B, d]`` (:class:`lite_export.cluster.shards.UserEncoder`);
* ``CatalogShard0`` .. ``CatalogShard{S-1}`` -- each holds the head rows ``W``, ``b`` of its
  slice of the items (only those rows are read from ``head.safetensors``) and returns its own
  top-k with global ids, ranked with :func:`lite_export.kernels.rank` (the fused kernel on a
  GPU, the CPU path otherwise); a user's history is excluded inside each shard;
* ``Ingress`` -- the same FastAPI app as ``lite serve`` (:func:`lite_export.serving.app.create_app`:
  ``/v1/recommend`` and its batch form, the Open Inference Protocol's ``/v2`` routes, health,
  metrics, the page), micro-batching requests as ``lite serve`` does; its engine
  (:class:`RayShardedEngine`) encodes each batch on ``UserEncoder``, fans the user vectors out
  to every shard at once and merges their top-k lists.

:func:`build` is also a Ray Serve application
builder: ``serve run lite_export.cluster.ray_app:build artifact=ART shards=2``, or an
``import_path`` in a Serve config file for ``serve deploy``.

Every replica reads the artifact from its path, so on a multi-node cluster the path must be the
same on every node (a shared file system) -- see docs/cluster.md.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
from pathlib import Path

import numpy as np
from ray import serve

from lite_export.cluster.shards import CatalogShard, UserEncoder, merge_topk, shard_bounds
from lite_export.engines.base import Engine

log = logging.getLogger("ray.serve")

#: the application's name in Ray Serve (``serve status``, ``serve.delete``)
APP_NAME = "lite"
#: each actor asks for no CPU by default (a small cluster, e.g. one 2-core machine, holds them
#: all); a Serve config file sets real ``ray_actor_options`` (``num_cpus``, ``num_gpus``)
NO_CPU = {"num_cpus": 0}


@serve.deployment(name="UserEncoder", ray_actor_options=NO_CPU)
class UserEncoderDeployment:
    def __init__(self, artifact: str, backend: str = "auto", threads: int | None = None):
        self.encoder = UserEncoder.from_artifact(artifact, backend, threads)

    def encode(self, item_ids: np.ndarray) -> np.ndarray:
        return self.encoder(item_ids)


@serve.deployment(name="CatalogShard", ray_actor_options=NO_CPU)
class CatalogShardDeployment:
    def __init__(
        self, artifact: str, start: int, stop: int, device: str | None = None, ranker="auto"
    ):
        self.shard = CatalogShard.from_artifact(artifact, start, stop, device, ranker)

    def topk(self, users: np.ndarray, exclude: np.ndarray | None, k: int):
        return self.shard.topk(users, exclude, k)

    def describe(self) -> dict:
        s = self.shard
        return {"start": s.start, "stop": s.stop, "device": str(s.device), "bytes": s.nbytes}


class RayShardedEngine(Engine):
    """The engine interface over the ``UserEncoder`` and ``CatalogShard`` deployments; the
    artifact (manifest, checksums, ``items.jsonl``) is read in this process for the id mapping
    and the most-popular fallback."""

    name = "ray"
    inline = False  # it waits on other replicas: never on the ingress's event loop

    def __init__(self, artifact, encoder, shards: list, bounds: list, **options):
        super().__init__(artifact, **options)
        self.encoder_handle, self.shard_handles, self.bounds = encoder, shards, bounds

    def _load_impl(self) -> None:
        pass  # the deployments hold the model

    @property
    def info(self) -> dict:
        return {**super().info, "cluster": "ray", "shards": [list(b) for b in self.bounds]}

    def _recommend_impl(self, item_ids: np.ndarray, exclude_ids: np.ndarray, k: int):
        # the vectors by value ([B, d] fp32: a few KB): passing the encoder's response on by
        # reference instead measured slower here (each shard then resolves it: 20 ms against
        # 9 + 7 ms for the two calls one after the other on 2 cores)
        users = self.encoder_handle.encode.remote(item_ids).result()
        calls = [h.topk.remote(users, exclude_ids, k) for h in self.shard_handles]
        return merge_topk([c.result() for c in calls], k)


@serve.deployment(name="Ingress", ray_actor_options=NO_CPU)
@serve.ingress()
class Ingress:
    def __init__(self, settings: dict, encoder, shards: list, bounds: list):
        from lite_export.serving.settings import ServeSettings

        self.settings = ServeSettings(**settings)
        self.encoder, self.shards, self.bounds = encoder, shards, bounds
        self.artifact = Path(self.settings.artifact).resolve()

    def _load(self, artifact):
        from lite_export.serving.model import ModelHandle

        if Path(artifact).resolve() != self.artifact:
            raise ValueError(
                f"this Ray Serve application serves {self.artifact}; roll out another artifact "
                f"by deploying it: `lite serve {artifact} --cluster ray --address ADDR` (Ray "
                "Serve replaces the replicas one by one, without dropping requests)"
            )
        engine = RayShardedEngine(artifact, self.encoder, self.shards, self.bounds).load()
        return ModelHandle.from_engine(engine, self.settings.max_batch)

    def __serve_build_asgi_app__(self):
        from lite_export.serving.app import create_app

        return create_app(self.settings, loader=self._load)


#: build()'s own arguments (the rest are lite serve settings), with their defaults
CLUSTER_ARGS = {"shards": 1, "replicas": 1, "encoder": "auto", "device": None, "ranker": "auto"}


def split_args(args: dict):
    """``(cluster options, ServeSettings)`` of :func:`build`'s ``args``; values may be strings
    (``serve run ... shards=2 max_batch=64``) and are converted to the settings' types."""
    from lite_export.serving.settings import ServeSettings

    args = dict(args)
    if not args.get("artifact"):
        raise ValueError("build() needs artifact=PATH (an artifact directory of `lite export`)")
    artifact = str(Path(args.pop("artifact")).resolve())
    options = {name: args.pop(name, default) for name, default in CLUSTER_ARGS.items()}
    for name in ("shards", "replicas"):
        options[name] = int(options[name])
        if options[name] < 1:
            raise ValueError(f"{name} must be a positive integer, got {options[name]}")
    fields = {f.name: f for f in dataclasses.fields(ServeSettings)}
    unknown = sorted(set(args) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown arguments {unknown}: build() takes artifact, {', '.join(CLUSTER_ARGS)} and "
            f"the lite serve settings {sorted(set(fields) - {'artifact'})}"
        )
    defaults = ServeSettings()
    for name, value in list(args.items()):
        default = getattr(defaults, name)
        if isinstance(value, str) and isinstance(default, bool):
            args[name] = value.strip().lower() in ("1", "true", "yes", "on")
        elif isinstance(value, str) and isinstance(default, int | float):
            args[name] = type(default)(value)
    settings = ServeSettings(artifact=artifact, **args)
    settings.validate()
    return options, settings


def build(args: dict):
    """The Ray Serve application for ``args``: ``artifact`` (required), ``shards`` (1),
    ``replicas`` (1: replicas of every deployment), ``encoder`` (auto|onnxruntime|torch),
    ``device`` (where shards rank; default CUDA where there is one), ``ranker`` (auto), and any
    :class:`lite_export.serving.settings.ServeSettings` field (``max_batch``, ``api_key``, ...).
    Also a Serve application builder (``serve run lite_export.cluster.ray_app:build
    artifact=ART shards=2``)."""
    return _application(*split_args(args))


def _application(options: dict, settings):
    """The bound application of :func:`split_args`'s ``(options, settings)``."""
    from lite_export.artifact import read_manifest

    artifact, replicas = settings.artifact, options["replicas"]
    n = read_manifest(Path(artifact))["dims"]["num_items"]
    bounds = shard_bounds(n, options["shards"])
    encoder = UserEncoderDeployment.options(num_replicas=replicas).bind(
        artifact, options["encoder"], settings.threads
    )
    shard_apps = [
        CatalogShardDeployment.options(name=f"CatalogShard{s}", num_replicas=replicas).bind(
            artifact, a, b, options["device"], options["ranker"]
        )
        for s, (a, b) in enumerate(bounds)
    ]
    # the ingress queues requests in its own micro-batcher (503 + Retry-After past max_queue),
    # so Ray Serve must let that many reach it
    ongoing = settings.max_queue + settings.max_batch
    ingress = Ingress.options(num_replicas=replicas, max_ongoing_requests=ongoing)
    settings_dict = dataclasses.asdict(settings)
    return ingress.bind(settings_dict, encoder, shard_apps, [list(b) for b in bounds])


def _ready(url: str, api_key: str | None, timeout_s: float) -> bool:
    """Poll ``url``/readyz until 200 (the model loaded and warmed up on every shard)."""
    import time
    import urllib.error
    import urllib.request

    headers = {"X-API-Key": api_key} if api_key else {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url + "/readyz", headers=headers)):
                return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    return False


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run(args: dict, address: str | None = None, ready_timeout_s: float = 600.0) -> int:
    """``lite serve ART --cluster ray``: deploy :func:`build` (``args``) on the cluster at
    ``address`` (or a local one on 127.0.0.1), say when it answers, serve until SIGINT/SIGTERM,
    then delete the application (and stop the local cluster it started). Returns the exit code."""
    import sys
    import time

    from lite_export.cluster.runtime import init_ray

    options, settings = split_args(args)  # argument errors (ValueError) before Ray starts
    app = _application(options, settings)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{settings.port}"
    ray = init_ray(address)
    started_here = not address
    stop: list[int] = []  # a plain flag: a handler must not take a lock the main thread holds
    previous = {s: signal.signal(s, lambda sig, _: stop.append(sig)) for s in STOP_SIGNALS}
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        print(
            f"lite serve: deploying {settings.artifact} on Ray ({options['shards']} shard(s), "
            f"{options['replicas']} replica(s) each) for {url}; a line says when it "
            "is ready",
            file=sys.stderr,
            flush=True,
        )
        try:
            serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        except Exception as exc:  # a replica failed to start: Serve says which and why
            print(f"error: cannot deploy {settings.artifact} on Ray: {exc}", file=sys.stderr)
            return 1
        if not _ready(url, settings.api_key, ready_timeout_s):
            print(f"error: {url}/readyz did not answer 200 in {ready_timeout_s:.0f} s")
            return 1
        print(
            f"lite serve: ready, listening on {url} (Ray Serve application "
            f"{APP_NAME!r}, {options['shards']} shard(s); docs {url}/docs; Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
        while not stop:
            time.sleep(0.2)
        print("lite serve: stopping (deleting the Ray Serve application)", file=sys.stderr)
        return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        try:
            serve.delete(APP_NAME)
        finally:
            if started_here:
                serve.shutdown()
                ray.shutdown()
