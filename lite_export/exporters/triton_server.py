"""Triton Inference Server model repository for an exported artifact (`lite export --format triton`).

Two models are written (``name`` defaults to ``lite``)::

    <repo>/
      lite_onnx/                     backend "onnxruntime": the portable graph as is
        config.pbtxt                 item_ids [-1], exclude_ids [-1] -> scores [K], indices [K]
        1/model.onnx(+.data)
      lite-export-repository.json    marker: lite-export wrote this repository (standalone
                                     repositories only; Triton ignores files at the top)
      lite/                          backend "python": external ids in, external ids out
        config.pbtxt                 HISTORY [-1] BYTES, K [1] INT32 (optional),
                                     EXCLUDE_SEEN [1] BOOL (optional) -> ITEM_IDS [-1], SCORES [-1]
        1/model.py                   numpy, json, onnxruntime, Triton utils (+ lite_export, torch)
        1/artifact/                  model.onnx(+.data), user_encoder.onnx, head.safetensors,
                                     items.jsonl, manifest.json

``lite_onnx`` padding contract: Triton's dynamic batcher only batches requests whose shapes are
equal, so clients left-pad ``item_ids`` to ``max_history`` with the pad id (``num_items``, see
``manifest.json`` ``dims``) and ``exclude_ids`` to one fixed width of their choice (pad id too);
requests of other widths still work, they are just batched separately. With the TensorRT
accelerator (``tensorrt_accelerator=True``) the config also carries the artifact's input profile
(``trt_profile_min/opt/max_shapes``: batch up to ``max_batch_size``, ``exclude_ids`` up to the
export's ``--max-exclude``) and a persistent engine cache (``trt_engine_cache_enable``,
``trt_engine_cache_path``), keys the onnxruntime backend documents
(https://github.com/triton-inference-server/onnxruntime_backend#onnx-runtime-with-tensorrt-optimization
): ONNX Runtime builds one engine per instance for the whole range, once, and reloads it from the
cache after a restart instead of rebuilding it for every new request width. ``lite`` takes one raw
history per request (``allow_ragged_batch``), pads it itself, and runs the batch in ONNX Runtime
on CPU -- or, on a ``KIND_GPU`` instance whose Python has lite-export and torch with CUDA, runs
``user_encoder.onnx`` and ranks with the fused Triton kernel on that GPU (parameter ``ranker``:
``auto``, ``onnx`` = always the ranking graph, ``lite_export`` = always
:func:`lite_export.kernels.rank`, the CPU path on a CPU instance).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from lite_export.artifact import publish_directory

__all__ = ["TritonRepositoryError", "write_model_repository", "build_model_repository"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_KINDS = ("KIND_CPU", "KIND_GPU", "KIND_AUTO")
#: Where ONNX Runtime's TensorRT provider keeps the engines it builds for ``lite_onnx``, on the
#: server. Outside the model repository (Triton's polling would see new files there) and one
#: level below an existing directory: the provider creates only the last level.
DEFAULT_TRT_CACHE_DIR = "/tmp/lite-export-trt-cache"


class TritonRepositoryError(RuntimeError):
    """The model repository could not be written (the destination is left untouched)."""


def _graph_files(artifact_dir: Path, graph: str) -> list[str]:
    """``graph`` and its external-data file (``graph.data``) when there is one."""
    if not (artifact_dir / graph).is_file():
        raise TritonRepositoryError(
            f"{artifact_dir / graph} is missing; re-run `lite export` to write a complete artifact"
        )
    return [graph] + ([f"{graph}.data"] if (artifact_dir / f"{graph}.data").is_file() else [])


def _graph_dims(path: Path) -> dict[str, list[int]]:
    """Dims of the graph's inputs and outputs without the batch dim (-1 for dynamic)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    out: dict[str, list[int]] = {}
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        out[value.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in dims][1:]
    return out


def _copy(src: Path, dst: Path) -> None:
    """Hard link when possible (same file system, no extra disk), else copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _instance_group(count: int, kind: str) -> str:
    return f"instance_group [\n  {{\n    count: {count}\n    kind: {kind}\n  }}\n]\n"


def _profile_of(manifest: dict):
    """The artifact's input profile (its defaults for an artifact exported before it was kept)."""
    from lite_export.engines.profile import InputProfile

    dims = manifest["dims"]
    return InputProfile.from_manifest(manifest) or InputProfile.for_export(
        int(dims["max_history"]), int(dims["num_items"])
    )


def tensorrt_profile_parameters(manifest: dict, max_batch_size: int) -> dict[str, str]:
    """``trt_profile_{min,opt,max}_shapes`` of ``lite_onnx``: the artifact's profile, with the
    batch running from its minimum to Triton's ``max_batch_size`` (the largest batch the server
    forms). Format ``name:d0xd1,name:d0xd1`` (ONNX Runtime's TensorRT provider options,
    https://onnxruntime.ai/docs/execution-providers/TensorRT-ExecutionProvider.html ), full input
    shapes batch dim included."""
    profile = _profile_of(manifest)
    lo_b = min(profile.min_batch, max_batch_size)
    out = {}
    for which in ("min", "opt", "max"):
        parts = []
        for name in ("item_ids", "exclude_ids"):
            width = getattr(getattr(profile, name), which)[1]
            batch = {
                "min": lo_b,
                "opt": max(lo_b, min(getattr(profile, name).opt[0], max_batch_size)),
                "max": max_batch_size,
            }[which]
            parts.append(f"{name}:{batch}x{width}")
        out[f"trt_profile_{which}_shapes"] = ",".join(parts)
    return out


def _dynamic_batching(preferred: Sequence[int], delay_us: int) -> str:
    sizes = ", ".join(str(int(s)) for s in preferred)
    return (
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {sizes} ]\n"
        f"  max_queue_delay_microseconds: {int(delay_us)}\n"
        "}\n"
    )


def onnx_config(
    name: str,
    dims: dict[str, list[int]],
    manifest_dims: dict,
    *,
    max_batch_size: int,
    preferred_batch_sizes: Sequence[int],
    max_queue_delay_us: int,
    instance_count: int,
    kind: str,
    tensorrt_accelerator: bool,
    trt_parameters: dict[str, str] | None = None,
) -> str:
    """config.pbtxt text of the onnxruntime-backend model (dims from the graph, batch dim off).

    ``trt_parameters``: extra parameters of the TensorRT accelerator (profile shapes, engine
    cache), after ``precision_mode``.
    """

    def dims_text(n: str) -> str:
        return ", ".join(str(d) for d in dims[n])

    accel = ""
    if tensorrt_accelerator:
        params = {"precision_mode": "FP16", **(trt_parameters or {})}
        accel = (
            "optimization {\n  execution_accelerators {\n    gpu_execution_accelerator : [ {\n"
            '      name : "tensorrt"\n'
            + "".join(
                f"      parameters {{ key: {json.dumps(k)} value: {json.dumps(str(v))} }}\n"
                for k, v in params.items()
            )
            + "    } ]\n  }\n}\n"
        )
    pad, hist = manifest_dims["pad_id"], manifest_dims["max_history"]
    max_exclude = ""
    if trt_parameters and "trt_profile_max_shapes" in trt_parameters:
        max_exclude = trt_parameters["trt_profile_max_shapes"].rsplit("x", 1)[-1]
    return (
        f"# lite-export: the portable ranking graph (num_items={manifest_dims['num_items']}, "
        f"K={manifest_dims['k']}).\n"
        "# Padding contract: the dynamic batcher only batches requests of equal shape, so clients\n"
        f"# LEFT-pad item_ids to max_history={hist} with the pad id {pad}, and exclude_ids to one\n"
        f"# fixed width with the pad id {pad} (all pads = exclude nothing). Other widths work but\n"
        "# are batched separately."
        + (
            f" With TensorRT, exclude_ids is at most {max_exclude} wide (the\n"
            "# profile below; lite export --max-exclude).\n"
            if tensorrt_accelerator and max_exclude
            else "\n"
        )
        + f'name: "{name}"\n'
        'backend: "onnxruntime"\n'
        f"max_batch_size: {int(max_batch_size)}\n"
        "input [\n"
        f'  {{ name: "item_ids" data_type: TYPE_INT64 dims: [ {dims_text("item_ids")} ] }},\n'
        f'  {{ name: "exclude_ids" data_type: TYPE_INT64 dims: [ {dims_text("exclude_ids")} ] }}\n'
        "]\n"
        "output [\n"
        f'  {{ name: "scores" data_type: TYPE_FP32 dims: [ {dims_text("scores")} ] }},\n'
        f'  {{ name: "indices" data_type: TYPE_INT64 dims: [ {dims_text("indices")} ] }}\n'
        "]\n"
        + _dynamic_batching(preferred_batch_sizes, max_queue_delay_us)
        + _instance_group(instance_count, kind)
        + accel
    )


def python_config(
    name: str,
    manifest_dims: dict,
    *,
    max_batch_size: int,
    preferred_batch_sizes: Sequence[int],
    max_queue_delay_us: int,
    instance_count: int,
    graph: str,
    kind: str = "KIND_CPU",
    ranker: str = "auto",
) -> str:
    """config.pbtxt text of the python-backend model (external ids in and out)."""
    return (
        "# lite-export: one history of external item ids per request (any length; the model\n"
        f"# keeps the last max_history={manifest_dims['max_history']} and pads them itself).\n"
        f"# K (optional, default 10, at most {manifest_dims['k']}); EXCLUDE_SEEN (optional, default"
        " true).\n"
        "# An empty history gets the most popular items; unknown ids get an error response.\n"
        f'name: "{name}"\n'
        'backend: "python"\n'
        f"max_batch_size: {int(max_batch_size)}\n"
        "input [\n"
        '  { name: "HISTORY" data_type: TYPE_STRING dims: [ -1 ] allow_ragged_batch: true },\n'
        '  { name: "K" data_type: TYPE_INT32 dims: [ 1 ] optional: true },\n'
        '  { name: "EXCLUDE_SEEN" data_type: TYPE_BOOL dims: [ 1 ] optional: true }\n'
        "]\n"
        "output [\n"
        '  { name: "ITEM_IDS" data_type: TYPE_STRING dims: [ -1 ] },\n'
        '  { name: "SCORES" data_type: TYPE_FP32 dims: [ -1 ] }\n'
        "]\n"
        + _dynamic_batching(preferred_batch_sizes, max_queue_delay_us)
        + _instance_group(instance_count, kind)
        + f'parameters {{ key: "graph" value: {{ string_value: "{graph}" }} }}\n'
        + f'parameters {{ key: "ranker" value: {{ string_value: "{ranker}" }} }}\n'
        + 'parameters { key: "intra_op_num_threads" value: { string_value: "0" } }\n'
    )


def build_model_repository(
    artifact_dir: str | os.PathLike,
    dest: str | os.PathLike,
    manifest: dict | None = None,
    *,
    name: str = "lite",
    max_batch_size: int = 64,
    preferred_batch_sizes: Sequence[int] = (8, 16, 32),
    max_queue_delay_us: int = 500,
    instance_count: int = 1,
    kind: str = "KIND_CPU",
    tensorrt_accelerator: bool = False,
    python_model: bool = True,
    onnx_model: bool = True,
    tensorrt_cache_dir: str = DEFAULT_TRT_CACHE_DIR,
) -> list[str]:
    """Write the repository into ``dest`` (not atomic; see :func:`write_model_repository`).

    ``manifest`` defaults to the artifact's ``manifest.json``; the export passes the one it is
    building (``post_build`` hook, before ``manifest.json`` exists). Returns the written files,
    relative to ``dest``. ``tensorrt_cache_dir`` (with ``tensorrt_accelerator``) is an absolute
    directory on the server for ONNX Runtime's TensorRT engine cache.
    """
    art, out = Path(artifact_dir), Path(dest)
    if manifest is None:
        from lite_export.artifact import ArtifactError, read_manifest

        try:  # names a training checkpoint passed instead, and a missing or foreign directory
            manifest = read_manifest(art)
        except ArtifactError as exc:
            raise TritonRepositoryError(str(exc)) from None
    if not _NAME.match(name):
        raise ValueError(f"name must match {_NAME.pattern} (a directory name), got {name!r}")
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    if instance_count < 1:
        raise ValueError(f"instance_count must be >= 1, got {instance_count}")
    if tensorrt_accelerator and not (
        isinstance(tensorrt_cache_dir, str) and tensorrt_cache_dir.startswith("/")
    ):
        raise ValueError(
            "tensorrt_cache_dir must be an absolute path on the Triton server (ONNX Runtime "
            "resolves a relative one against the server's working directory), got "
            f"{tensorrt_cache_dir!r}"
        )
    preferred = sorted({int(s) for s in preferred_batch_sizes if 1 <= int(s) <= max_batch_size})
    if not preferred:
        preferred = [max_batch_size]
    mdims = manifest["dims"]
    graph = "model.onnx"
    graph_files = _graph_files(art, graph)
    written: list[str] = []
    if onnx_model:
        dims = _graph_dims(art / graph)
        if dims.get("scores") != [mdims["k"]] or dims.get("indices") != [mdims["k"]]:
            raise TritonRepositoryError(
                f"{art / graph} outputs {dims.get('scores')} do not have the fixed K={mdims['k']} "
                "of manifest.json; re-run `lite export`"
            )
        model_dir = out / f"{name}_onnx"
        for f in graph_files:
            _copy(art / f, model_dir / "1" / f)
            written.append(f"{name}_onnx/1/{f}")
        cfg = onnx_config(
            f"{name}_onnx",
            dims,
            mdims,
            max_batch_size=max_batch_size,
            preferred_batch_sizes=preferred,
            max_queue_delay_us=max_queue_delay_us,
            instance_count=instance_count,
            kind=kind,
            tensorrt_accelerator=tensorrt_accelerator,
            trt_parameters={
                **tensorrt_profile_parameters(manifest, max_batch_size),
                "trt_engine_cache_enable": "1",
                "trt_engine_cache_path": tensorrt_cache_dir,
            },
        )
        (model_dir / "config.pbtxt").write_text(cfg)
        written.append(f"{name}_onnx/config.pbtxt")
    if python_model:
        model_dir = out / name
        ranking = [*_graph_files(art, "user_encoder.onnx"), "head.safetensors"]
        for f in [*graph_files, *ranking, "items.jsonl"]:
            if not (art / f).is_file():
                raise TritonRepositoryError(f"{art / f} is missing; re-run `lite export`")
            _copy(art / f, model_dir / "1" / "artifact" / f)
            written.append(f"{name}/1/artifact/{f}")
        slim = {k: manifest[k] for k in ("format", "format_version", "dims") if k in manifest}
        (model_dir / "1" / "artifact" / "manifest.json").write_text(json.dumps(slim, indent=2))
        (model_dir / "1" / "model.py").write_text(PYTHON_MODEL)
        cfg = python_config(
            name,
            mdims,
            max_batch_size=max_batch_size,
            preferred_batch_sizes=preferred,
            max_queue_delay_us=max_queue_delay_us,
            instance_count=instance_count,
            graph=graph,
            kind=kind,
        )
        (model_dir / "config.pbtxt").write_text(cfg)
        written += [
            f"{name}/1/artifact/manifest.json",
            f"{name}/1/model.py",
            f"{name}/config.pbtxt",
        ]
    return sorted(written)


def write_model_repository(
    artifact_dir: str | os.PathLike,
    repo_dir: str | os.PathLike,
    *,
    name: str = "lite",
    max_batch_size: int = 64,
    preferred_batch_sizes: Sequence[int] = (8, 16, 32),
    max_queue_delay_us: int = 500,
    instance_count: int = 1,
    kind: str = "KIND_CPU",
    tensorrt_accelerator: bool = False,
    force: bool = False,
    python_model: bool = True,
    onnx_model: bool = True,
    tensorrt_cache_dir: str = DEFAULT_TRT_CACHE_DIR,
) -> Path:
    """Write a Triton model repository for ``artifact_dir`` to ``repo_dir`` (see module doc).

    Atomic: built in a temporary directory beside ``repo_dir`` and renamed into place. The
    repository carries a marker file (``lite-export-repository.json``; Triton loads only
    subdirectories, so the server ignores it): an existing ``repo_dir`` is replaced only with
    ``force`` and only when it has that marker (it stays until the new one is done); the
    artifact, a directory that contains it, and anything else are refused with
    :class:`~lite_export.artifact.OutputDirError` before any work.
    """
    from lite_export import __version__
    from lite_export.artifact import (
        TRITON_REPOSITORY_FORMAT,
        TRITON_REPOSITORY_MARKER,
        check_output_dir,
    )

    sources = (artifact_dir,)
    target = check_output_dir(
        repo_dir, "triton-repository", force=force, sources=sources, option="repo_dir"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build_model_repository(
            artifact_dir,
            tmp,
            name=name,
            max_batch_size=max_batch_size,
            preferred_batch_sizes=preferred_batch_sizes,
            max_queue_delay_us=max_queue_delay_us,
            instance_count=instance_count,
            kind=kind,
            tensorrt_accelerator=tensorrt_accelerator,
            python_model=python_model,
            onnx_model=onnx_model,
            tensorrt_cache_dir=tensorrt_cache_dir,
        )
        marker = {
            "format": TRITON_REPOSITORY_FORMAT,
            "format_version": 1,
            "lite_export_version": __version__,
            "artifact": str(Path(artifact_dir).resolve()),
            "models": sorted(p.name for p in tmp.iterdir() if p.is_dir()),
        }
        (tmp / TRITON_REPOSITORY_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        publish_directory(tmp, target, kind="triton-repository", force=force, sources=sources)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


#: The python-backend model. Self-contained on purpose: the server's Python environment need not
#: have lite-export, only numpy, onnxruntime and Triton's python backend utils.
PYTHON_MODEL = r'''"""lite-export recommender for Triton's python backend (written by `lite export --format triton`).

Inputs per request: HISTORY [1, L] BYTES (external item ids, oldest first; L may be 0),
K [1, 1] INT32 (optional, default 10), EXCLUDE_SEEN [1, 1] BOOL (optional, default true).
Outputs: ITEM_IDS [1, k] BYTES, SCORES [1, k] FP32, best first. Needs only numpy, json,
onnxruntime and triton_python_backend_utils; where the server's Python also has lite-export and
torch, a GPU instance ranks with lite-export's fused kernel (parameter "ranker": auto | onnx |
lite_export).
"""

import contextlib
import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

DEFAULT_K = 10


class TritonPythonModel:
    """Maps external ids to indices, runs the ranking graph in ONNX Runtime, maps back."""

    def initialize(self, args):
        """Load the artifact copy beside this file and open an ONNX Runtime CPU session."""
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        here = os.path.join(args["model_repository"], args["model_version"], "artifact")
        with open(os.path.join(here, "manifest.json")) as f:
            dims = json.load(f)["dims"]
        self.num_items = int(dims["num_items"])
        self.max_history = int(dims["max_history"])
        self.max_k = int(dims["k"])
        self.pad = int(dims["pad_id"])
        self.ids = []
        self.popularity = []
        retired = []  # `lite catalog remove`: never recommended, the fallback included
        with open(os.path.join(here, "items.jsonl"), encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    self.ids.append(str(row["id"]))
                    self.popularity.append(int(row.get("popularity", 0)))
                    retired.append(bool(row.get("retired", False)))
        if len(self.ids) != self.num_items:
            raise pb_utils.TritonModelException(
                f"items.jsonl has {len(self.ids)} items, manifest.json says {self.num_items}"
            )
        self.index = {ext: i for i, ext in enumerate(self.ids)}
        self.ids_bytes = np.array([s.encode("utf-8") for s in self.ids], dtype=np.object_)
        order = sorted(range(self.num_items), key=lambda i: (retired[i], -self.popularity[i], i))
        self.popular = np.array(order[: self.max_k], dtype=np.int64)
        self.popular_scores = np.array(
            [float(self.popularity[i]) for i in self.popular], dtype=np.float32
        )
        so = ort.SessionOptions()
        so.log_severity_level = 3
        threads = int(params.get("intra_op_num_threads") or 0)
        if threads > 0:
            so.intra_op_num_threads = threads
        graph = params.get("graph") or "model.onnx"
        self.session = ort.InferenceSession(
            os.path.join(here, graph), so, providers=["CPUExecutionProvider"]
        )
        self.kernel = self._kernel_ranker(args, params.get("ranker") or "auto", here, so)

    def _kernel_ranker(self, args, ranker, here, so):
        """(encoder session, rank, torch, device, W, b) to rank with lite-export, or None."""
        if ranker not in ("auto", "onnx", "lite_export"):
            raise pb_utils.TritonModelException(
                f"parameter ranker must be auto, onnx or lite_export, got {ranker!r}"
            )
        gpu = args.get("model_instance_kind") == "GPU"
        if ranker == "onnx" or (ranker == "auto" and not gpu):
            return None
        try:
            import torch
            from safetensors.torch import load_file

            from lite_export.kernels import rank
        except ImportError as exc:
            if ranker == "lite_export":
                raise pb_utils.TritonModelException(
                    f"ranker lite_export needs lite-export and torch in the server's Python: {exc}"
                ) from exc
            log = getattr(getattr(pb_utils, "Logger", None), "log_warn", print)
            log(f"lite-export not importable ({exc}): ranking with the ONNX graph on CPU")
            return None
        device = torch.device("cpu")
        if gpu and torch.cuda.is_available():
            # Triton passes each instance its GPU as model_instance_device_id (python backend
            # README, "initialize"); make it this process's current device, so the fused kernel
            # launches there and not on GPU 0
            device = torch.device(f"cuda:{int(args.get('model_instance_device_id') or 0)}")
            torch.cuda.set_device(device)
        head = load_file(os.path.join(here, "head.safetensors"))
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            # without device_id ONNX Runtime's CUDA provider uses GPU 0 for every instance
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index}))
        path = os.path.join(here, "user_encoder.onnx")
        encoder = ort.InferenceSession(path, so, providers=providers)
        return encoder, rank, torch, device, head["weight"].to(device), head["bias"].to(device)

    def _rank(self, item_ids, exclude, k):
        """scores, indices [B, >=k] of one padded batch."""
        if self.kernel is None:
            return self.session.run(
                ["scores", "indices"], {"item_ids": item_ids, "exclude_ids": exclude}
            )
        encoder, rank, torch, device, weight, bias = self.kernel
        h = encoder.run(["user_vectors"], {"item_ids": item_ids})[0]
        h = torch.from_numpy(h).to(device, weight.dtype)
        on_device = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
        with torch.inference_mode(), on_device:
            scores, indices = rank(h, weight, bias, k, torch.from_numpy(exclude).to(device))
        return scores.float().cpu().numpy(), indices.cpu().numpy()

    def _parse(self, request):
        """(indices, k, exclude_seen) of one request, or an error message."""
        hist = pb_utils.get_input_tensor_by_name(request, "HISTORY")
        if hist is None:
            return "input HISTORY is required"
        raw = hist.as_numpy().reshape(-1)
        ext = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in raw]
        k = DEFAULT_K
        k_t = pb_utils.get_input_tensor_by_name(request, "K")
        if k_t is not None:
            vals = k_t.as_numpy().reshape(-1)
            if vals.size != 1:
                return f"K must hold one value, got {vals.size}"
            k = int(vals[0])
        if not 1 <= k <= self.max_k:
            return (
                f"K must be between 1 and {self.max_k} (the K this artifact was exported with; "
                f"re-export with `lite export --k` for more), got {k}"
            )
        exclude_seen = True
        e_t = pb_utils.get_input_tensor_by_name(request, "EXCLUDE_SEEN")
        if e_t is not None and e_t.as_numpy().size:
            exclude_seen = bool(e_t.as_numpy().reshape(-1)[0])
        unknown, idx = [], []
        for e in ext:
            i = self.index.get(e)
            if i is None:
                if e not in unknown:
                    unknown.append(e)
            else:
                idx.append(i)
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:10])
            more = f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""
            return (
                f"unknown item ids: {shown}{more}. The catalog has {self.num_items} items; "
                "pass external ids exactly as they appear in items.jsonl"
            )
        return idx, k, exclude_seen

    def execute(self, requests):
        """One response per request; bad requests get an error response, the rest one batch."""
        responses = [None] * len(requests)
        rows = []  # (request number, indices, k, exclude_seen)
        for r, request in enumerate(requests):
            try:
                parsed = self._parse(request)
            except Exception as exc:  # never let one request take the model down
                parsed = f"bad request: {exc}"
            if isinstance(parsed, str):
                responses[r] = pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(parsed)
                )
            else:
                rows.append((r, *parsed))
        ranked = [row for row in rows if row[1]]
        if ranked:
            width = max(1, max(len(row[1]) if row[3] else 1 for row in ranked))
            item_ids = np.full((len(ranked), self.max_history), self.pad, dtype=np.int64)
            exclude = np.full((len(ranked), width), self.pad, dtype=np.int64)
            for b, (_r, idx, _k, seen) in enumerate(ranked):
                tail = idx[-self.max_history :]
                item_ids[b, self.max_history - len(tail) :] = tail
                if seen:
                    exclude[b, width - len(idx) :] = idx
            try:
                scores, indices = self._rank(item_ids, exclude, max(row[2] for row in ranked))
            except Exception as exc:
                for r, *_ in ranked:
                    responses[r] = pb_utils.InferenceResponse(
                        output_tensors=[], error=pb_utils.TritonError(f"inference failed: {exc}")
                    )
            else:
                for b, (r, _idx, k, _seen) in enumerate(ranked):
                    responses[r] = self._response(indices[b, :k], scores[b, :k])
        for r, idx, k, _seen in rows:
            if not idx:  # empty history: the most popular items
                responses[r] = self._response(self.popular[:k], self.popular_scores[:k])
        return responses

    def _response(self, indices, scores):
        ids = self.ids_bytes[np.asarray(indices, dtype=np.int64)].reshape(1, -1)
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("ITEM_IDS", ids),
                pb_utils.Tensor("SCORES", np.asarray(scores, dtype=np.float32).reshape(1, -1)),
            ]
        )

    def finalize(self):
        """Release the ONNX Runtime sessions (and the head on the GPU)."""
        self.session = None
        self.kernel = None
'''
