"""PyTorch engine: the frozen encoder and the ranking, on CUDA as one captured graph per request
shape.

Eagerly (``graph="off"``) a request is a few hundred small kernel launches from Python: the
encoder's layers, the ranking (:func:`lite_export.kernels.rank`) and the exclusion, each issued
one by one, plus host syncs inside the backbone's mask code -- milliseconds on a GPU whose work
takes a fraction of that (``benchmarks/results/engines_gpu.md``). With ``graph="capture"`` (the
default on CUDA) each (batch bucket, history bucket, exclusion bucket, k bucket) is captured once
as a CUDA graph of the whole request, :func:`request_step`, and replayed:

* static buffers per bucket: one pinned host buffer ``[B, L + H]`` int64 holds the left-padded
  history ids and the excluded ids (pad = N); one pinned host buffer ``[B, 2k + 1]`` int64 gets
  the top-k ids, the fp32 score bits and an ok flag per row;
* per call: the id mapping (the base class), a numpy copy into the pinned buffer, one
  host-to-device copy of the rows in use, one graph replay, one device-to-host copy, one sync.
  Batch padding rows hold a valid history (a dummy, or an earlier call's), so they compute
  harmlessly and are never read; a history is left-padded to its bucket, which changes nothing
  (pads are masked and positions count real items only);
* the ranking path inside the graph is ``method="auto"``'s choice for the bucket's shape (the
  rank table, :mod:`lite_export.kernels.dispatch`); the fused filter path reports rows it could
  not settle through the ok flag, and those (rare) rows are re-ranked by the exact path.

``graph="compile"`` instead runs :func:`request_step` through ``torch.compile(mode=
"reduce-overhead")`` (its CUDA graphs, ranking by matmul + topk: the compiler does not trace the
fused kernel's launcher); ``graph="static"`` runs the bucketed path eagerly (CPU tests, and the
reference for the graphs). ``benchmarks/bench_gpu_e2e.py`` measures all of them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lite_export.engines.base import Engine
from lite_export.kernels import rank_static

log = logging.getLogger("lite_export.engines.torch")

#: ``graph`` option values; ``"auto"`` is ``"capture"`` on CUDA and ``"off"`` elsewhere.
GRAPH_MODES = ("auto", "capture", "compile", "static", "off")
#: Batch buckets: a batch runs padded to the smallest bucket that holds it; larger batches are
#: split into batches of the largest bucket.
DEFAULT_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Graphs kept by an engine at most, whatever its buckets ask for.
MAX_ENGINE_GRAPHS = 512
#: ``catalog`` option values.
CATALOG_MODES = ("full", "quantized")


def history_buckets(max_history: int, smallest: int = 8) -> tuple[int, ...]:
    """Powers of two from ``smallest`` below ``max_history``, then ``max_history`` itself."""
    out, b = [], smallest
    while b < max_history:
        out.append(b)
        b *= 2
    return (*out, max_history)


def bucket_of(n: int, buckets: Iterable[int]) -> int | None:
    """The smallest bucket >= ``n``, or None when ``n`` is above the largest."""
    return next((b for b in sorted(buckets) if b >= n), None)


def _next_pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


def _advise_random(t: torch.Tensor) -> bool:
    """Tell the kernel a memory-mapped tensor is read at random rows (``madvise(MADV_RANDOM)``,
    Linux): no readahead around each touched page, so the re-rank of a quantized catalog keeps
    only its candidates' pages of the head resident (200k x 64 items, 8 batches of 16 users from
    a cold page cache: 14 MiB of the 50 MiB head resident with it, 46 MiB without). Returns
    whether the call succeeded; elsewhere it does nothing."""
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux") or t.nbytes == 0:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        page = os.sysconf("SC_PAGE_SIZE")
        start = t.data_ptr() // page * page
        length = t.data_ptr() + t.nbytes - start
        return libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), 1) == 0  # RANDOM
    except (OSError, AttributeError, ValueError):
        return False


def encode(encoder: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """User vectors ``[B, d]`` of left-padded ids ``[B, L]`` (pad = the encoder's ``num_items``).

    The frozen encoder's computation (``FrozenUserEncoder.forward``) with the attention mask
    built here as a 4-D additive mask ``[B, 1, L, L]`` (causal and padding): the backbone then
    uses it as given, with no host-side check of the padding (``transformers`` calls
    ``mask.all()`` on a 2-D mask, a host sync that a CUDA graph cannot hold). ``use_cache=False``:
    no key/value cache is built for a single forward.
    """
    n = encoder.num_items
    valid = ids != n  # [B, L]
    x = F.embedding(ids, encoder.item_table)  # [B, L, d], the pad row is zero
    pos = (valid.to(torch.int32).cumsum(-1, dtype=torch.int32) - 1).clamp(min=0).to(torch.int64)
    L = ids.shape[1]
    causal = torch.ones((L, L), dtype=torch.bool, device=ids.device).tril()
    allowed = causal[None, None] & valid[:, None, None, :]  # [B, 1, L, L]
    mask = torch.zeros(allowed.shape, dtype=x.dtype, device=ids.device)
    mask.masked_fill_(~allowed, torch.finfo(x.dtype).min)
    out = encoder.backbone(inputs_embeds=x, attention_mask=mask, position_ids=pos, use_cache=False)
    return encoder.with_match(out.last_hidden_state[:, -1], ids)


def load_frozen_encoder(artifact: Path, manifest: dict) -> torch.nn.Module:
    """The artifact's user encoder (``encoder.safetensors``: the frozen item table and the rec
    LLM) as a ``FrozenUserEncoder``, in the dtype it was exported in."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel

    from lite_export.exporters.onnx import FrozenUserEncoder

    cfg = dict(manifest["rec_llm_config"])
    backbone = AutoModel.from_config(AutoConfig.for_model(cfg.pop("model_type"), **cfg))
    state = load_file(str(Path(artifact) / "encoder.safetensors"))
    table = state["item_table"]
    encoder = FrozenUserEncoder(table, backbone.to(table.dtype), state.get("match_table"))
    encoder.load_state_dict(state)
    return encoder


def request_step(
    encoder: torch.nn.Module,
    weight: torch.Tensor,
    bias: torch.Tensor,
    buf: torch.Tensor,
    L: int,
    H: int,
    k: int,
    method: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One whole request on static tensors: what a CUDA graph captures, and what runs eagerly.

    ``buf [B, L + H]`` int64: history ids left-padded to ``L``, then ``H`` excluded ids (pad =
    N; ``H = 0``: no exclusion). Returns ``(packed [B, 2k + 1] int64, h [B, d])``: ``packed``
    holds the top-k ids, the fp32 bits of their scores and a per-row ok flag (see
    :func:`lite_export.kernels.rank_static`), so one copy brings everything to the host.
    """
    ids = buf[:, :L]
    ex = buf[:, L : L + H] if H else None
    h = encode(encoder, ids)
    w, b = weight, bias
    if method == "cpu" and h.dtype != torch.float32:  # the CPU path ranks in fp32
        h, w, b = h.float(), w.float(), b.float()
    scores, idx, ok = rank_static(h, w, b, k, ex, method)
    bits = scores.float().view(torch.int32).to(torch.int64)
    return torch.cat([idx, bits, ok.to(torch.int64).unsqueeze(1)], dim=1), h


class _RequestModule(torch.nn.Module):
    """:func:`request_step` as a module, so ``torch.compile`` sees the tables as buffers."""

    def __init__(self, encoder, weight, bias):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, buf: torch.Tensor, L: int, H: int, k: int):
        return request_step(self.encoder, self.weight, self.bias, buf, L, H, k, "torch")


#: ``attention`` option values -> the SDPA backends a captured graph may use (``None``: torch's
#: own choice). Small requests in fp32 get torch's memory-efficient kernel, which leaves most of
#: the GPU idle at batch 1; the explicit math path can be faster there, and a fused kernel at
#: larger batches, so ``"auto"`` captures both and keeps the faster graph.
ATTENTION_BACKENDS: dict[str, tuple[str, ...] | None] = {"default": None, "math": ("MATH",)}


def _replay_ms(graph, reps: int = 10) -> float:
    """Mean device time of ``reps`` back-to-back replays (after one untimed), in ms."""
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / reps


@dataclass
class _Bucket:
    """The static buffers (and graph) of one request shape."""

    key: tuple[int, int, int, int]  # (batch, history, exclusion, k) buckets
    method: str
    host_in: torch.Tensor  # [B, L + H] int64, pinned on CUDA
    host_out: torch.Tensor  # [B, 2k + 1] int64, pinned on CUDA
    dev_in: torch.Tensor  # [B, L + H] int64 on the engine's device
    run: object = None  # callable(rows) -> None: fills host_out[:rows]
    h: torch.Tensor | None = None  # the last call's user vectors (re-ranking unsettled rows)
    attention: str = "default"  # the SDPA backends its graph was captured with


class TorchEngine(Engine):
    """Options: ``device`` ("cpu", "cuda", "cuda:N"; default cuda when available), ``ranker``
    (``kernels.rank``'s method: "auto" -- the fastest measured path for the shape --, "filter",
    "exact", "torch" -- matmul + topk --, "cpu"), ``graph`` ("auto": "capture" on CUDA, "off"
    elsewhere; "capture", "compile", "static", "off": see the module docstring), ``compile``
    (bool: ``torch.compile`` the encoder when ``graph="off"``), ``batch_buckets`` (default
    1, 2, 4, ..., 256), ``history_buckets`` (default powers of two from 8, then max_history),
    ``graph_cache`` (graphs kept; default: every bucket combination, at most 512), ``attention``
    (``graph="capture"`` only: "auto" -- capture each bucket with torch's default attention
    kernels and with the math path and keep the faster --, "default", "math"), ``catalog``
    ("full" -- the default: the fp32 head in memory --, or "quantized": rank the artifact's
    quantized catalog (``lite export --catalog-precision int8|fp8``) with the exact re-rank of
    :func:`lite_export.kernels.rank_quantized`; on CPU the head stays a memory map of
    ``head.safetensors`` of which only the candidates' rows are read, so the table in RAM is a
    quarter of the fp32 one; on CUDA the fused kernel's quantized path; eager (``graph="off"``);
    the same top-k)."""

    name = "torch"

    def _load_impl(self) -> None:
        from safetensors.torch import load_file

        encoder = load_frozen_encoder(self.path, self.manifest)
        # safetensors maps the file (copy-on-write): a page is read when first touched, so with
        # the quantized catalog only the re-rank's candidate rows of the head are ever read
        head = load_file(str(self.path / "head.safetensors"))
        self._setup(encoder, head["weight"], head["bias"], catalog=self._quantized_catalog())

    def _quantized_catalog(self):
        """The artifact's QuantizedCatalog when ``catalog="quantized"``, else None."""
        choice = self.options.get("catalog") or "full"
        if choice not in CATALOG_MODES:
            raise ValueError(f"catalog must be one of {CATALOG_MODES}, got {choice!r}")
        if choice == "full":
            return None
        entry = self.manifest.get("catalog")
        if not entry:
            raise ValueError(
                f"catalog='quantized': {self.path} has no quantized catalog; export it with "
                "`lite export CKPT --out ART --catalog-precision int8` (or fp8)"
            )
        from safetensors.torch import load_file

        from lite_export.kernels import QuantizedCatalog

        return QuantizedCatalog.from_state_dict(load_file(str(self.path / entry["file"])))

    @classmethod
    def from_model(cls, model, k: int = 100, dtype: torch.dtype = torch.float32, **options):
        """An engine over an in-memory :class:`lite_export.LiteLLM4Rec`, without exporting it
        (benchmarks of large catalogs, tests): the same encoder and head an export freezes."""
        from lite_export.exporters.onnx import FrozenUserEncoder

        eng = cls(Path("<in-memory model>"), verify=False, **options)
        n = model.config.num_items
        eng.catalog = model.catalog
        eng.num_items, eng.max_history, eng.max_k = n, model.config.max_history, k
        eng.manifest = {
            "dims": {
                "num_items": n,
                "d_model": model.head_width,  # the user vector's width
                "max_history": eng.max_history,
                "k": k,
                "pad_id": n,
            }
        }
        encoder = FrozenUserEncoder.from_model(model, dtype)
        with torch.no_grad():
            weight, bias = model.head_params()
        eng._setup(encoder, weight.detach(), bias.detach())
        eng._loaded = True
        return eng

    # ------------------------------------------------------------------ setup
    def _setup(self, encoder, weight: torch.Tensor, bias: torch.Tensor, catalog=None) -> None:
        from lite_export.kernels import METHODS
        from lite_export.kernels.dispatch import device_guard
        from lite_export.kernels.graph_cache import GraphCache

        opts = self.options
        device = torch.device(
            opts.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        )
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        dtype = encoder.item_table.dtype
        self.quantized = catalog
        if catalog is not None:
            if (opts.get("graph") or "auto") not in ("auto", "off"):
                raise ValueError(
                    "catalog='quantized' ranks eagerly (graph='off'): its exact re-rank decides "
                    f"on the host which rows to re-rank, which a CUDA graph cannot hold (graph "
                    f"{opts.get('graph')!r}); use catalog='full' for whole-request graphs"
                )
            if device.type == "cpu":
                weight = weight.float()  # fp32 already: the memory map stays one
                _advise_random(weight)
            else:  # the fused kernel's quantized path: catalog and rows on the GPU
                from lite_export.kernels import QuantizedCatalog

                self.quantized = QuantizedCatalog(
                    q=catalog.q.to(device),
                    scales=catalog.scales.to(device),
                    bias=None if catalog.bias is None else catalog.bias.to(device),
                )
        with device_guard(device):
            self.encoder = encoder.to(device).eval()
            keep = catalog is not None and device.type == "cpu"
            self.weight = weight if keep else weight.to(device, dtype).contiguous()
            self.bias = bias.to(device, dtype).contiguous()
        self.attention = opts.get("attention") or "auto"
        if self.attention not in ("auto", *ATTENTION_BACKENDS):
            raise ValueError(
                f"attention must be 'auto' or one of {tuple(ATTENTION_BACKENDS)}, got "
                f"{self.attention!r}"
            )
        self.ranker = opts.get("ranker") or "auto"
        if self.ranker not in METHODS:
            raise ValueError(f"ranker must be one of {METHODS}, got {self.ranker!r}")
        mode = opts.get("graph") or "auto"
        if mode not in GRAPH_MODES:
            raise ValueError(f"graph must be one of {GRAPH_MODES}, got {mode!r}")
        if mode == "auto":
            mode = "capture" if device.type == "cuda" and catalog is None else "off"
        if mode in ("capture", "compile") and device.type != "cuda":
            raise ValueError(
                f"graph={mode!r} needs a CUDA device, the engine runs on {device}; use "
                "graph='static' for the bucketed path without graphs, or graph='off'"
            )
        if mode == "compile" and self.ranker not in ("auto", "torch"):
            raise ValueError(
                f"graph='compile' ranks with matmul + topk (torch.compile does not trace the fused "
                f"kernel's launcher), so ranker={self.ranker!r} cannot run in it; use "
                "graph='capture' for the fused paths"
            )
        self.graph_mode = mode
        self.batch_buckets = tuple(sorted(set(opts.get("batch_buckets") or DEFAULT_BATCH_BUCKETS)))
        hist = opts.get("history_buckets")
        self.history_buckets = (
            tuple(sorted({min(int(b), self.max_history) for b in hist} | {self.max_history}))
            if hist
            else history_buckets(self.max_history)
        )
        if min(self.batch_buckets) < 1 or min(self.history_buckets) < 1:
            raise ValueError("batch_buckets and history_buckets must be positive integers")
        # Every (batch, history) bucket with and without exclusion, and room for a second k or
        # histories longer than max_history (their exclusion lists get buckets of their own).
        want = len(self.batch_buckets) * len(self.history_buckets) * 2 * 2
        self._graphs = GraphCache(
            int(opts.get("graph_cache") or min(want, MAX_ENGINE_GRAPHS)),
            f"torch engine request graphs ({device})",
            hint="pass graph_cache=N to the engine (or fewer batch_buckets/history_buckets)",
            limit=MAX_ENGINE_GRAPHS,
        )
        self._lock = threading.Lock()
        self._pool = None
        self._compiled = None
        encoder = self.encoder

        def forward(ids: torch.Tensor) -> torch.Tensor:
            return encode(encoder, ids)

        self._forward = forward
        if mode == "off":
            if opts.get("compile"):
                self._forward = torch.compile(forward)
            if device.type == "cuda" and self.ranker in ("auto", "filter"):
                from lite_export.kernels import triton_available

                if triton_available():  # the kernel's own filter-path graphs: room for our shapes
                    from lite_export.kernels.fused import reserve_graph_cache

                    reserve_graph_cache(self.batch_buckets[-1], _next_pow2(self.max_history))

    @property
    def info(self) -> dict:
        cat = getattr(self, "quantized", None)
        return {**super().info, "catalog": cat.precision if cat is not None else "full"}

    # ------------------------------------------------------------------ recommend
    def _recommend_impl(self, item_ids: np.ndarray, exclude_ids: np.ndarray, k: int):
        n = self.num_items
        exclude = exclude_ids
        if exclude_ids.shape[1] == 1 and bool((exclude_ids[:, 0] >= n).all()):
            exclude = None  # the base class's form of exclude_seen=False
        if self.graph_mode == "off":
            return self._eager(item_ids, exclude, k)
        top = self.batch_buckets[-1]
        if item_ids.shape[0] <= top:
            return self._bucketed(item_ids, exclude, k)
        parts = [
            self._bucketed(
                item_ids[i : i + top], None if exclude is None else exclude[i : i + top], k
            )
            for i in range(0, item_ids.shape[0], top)
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _eager(self, item_ids, exclude, k):
        from lite_export.kernels import rank
        from lite_export.kernels.dispatch import device_guard

        with torch.inference_mode(), device_guard(self.device):
            ids = torch.from_numpy(item_ids).to(self.device)
            h = self._forward(ids)  # [B, d]
            ex = None if exclude is None else torch.from_numpy(exclude).to(self.device)
            w, b = self.weight, self.bias
            if self.device.type == "cpu" and h.dtype != torch.float32:  # CPU path ranks in fp32
                h, w, b = h.float(), w.float(), b.float()
            if self.quantized is not None:  # the catalog holds the bias
                if h.dtype != w.dtype:
                    h = h.to(w.dtype)
                scores, indices = rank(h, w, None, k, ex, catalog=self.quantized)
            else:
                scores, indices = rank(h, w, b, k, ex, method=self.ranker)
            return scores.float().cpu().numpy(), indices.cpu().numpy()

    def bucket_key(self, B: int, L: int, H: int, k: int) -> tuple[int, int, int, int]:
        """(batch, history, exclusion, k) buckets of a request: its graph's key."""
        Lb = bucket_of(L, self.history_buckets) or _next_pow2(L)
        Hb = 0 if H == 0 else (Lb if Lb >= H else _next_pow2(H))
        return bucket_of(B, self.batch_buckets), Lb, Hb, min(self.max_k, _next_pow2(k))

    def _bucketed(self, item_ids: np.ndarray, exclude: np.ndarray | None, k: int):
        from lite_export.kernels.dispatch import device_guard

        B, L = item_ids.shape
        H = 0 if exclude is None else exclude.shape[1]
        key = self.bucket_key(B, L, H, k)
        _, Lb, Hb, kb = key
        n = self.num_items
        with self._lock, torch.inference_mode(), device_guard(self.device):
            bucket = self._graphs.get(key)
            if bucket is None:
                bucket = self._build(key)
                self._graphs.put(key, bucket)
            arr = bucket.host_in.numpy()
            arr[:B, : Lb - L] = n
            arr[:B, Lb - L : Lb] = item_ids
            if Hb:
                arr[:B, Lb : Lb + H] = exclude
                arr[:B, Lb + H :] = n
            bucket.run(B)
            out = bucket.host_out.numpy()[:B]
            indices = out[:, :k].copy()
            scores = out[:, kb : kb + k].astype(np.int32).view(np.float32)
            unsettled = (out[:, 2 * kb] == 0) & (item_ids[:, -1] != n)
            if unsettled.any():  # the filter path's rare rows: re-rank them exactly
                self._settle(bucket, np.flatnonzero(unsettled), k, scores, indices)
        return scores, indices

    def _settle(self, bucket: _Bucket, rows: np.ndarray, k, scores, indices) -> None:
        from lite_export.kernels import rank

        _, Lb, Hb, kb = bucket.key
        sel = torch.from_numpy(rows).to(self.device)
        ex = bucket.dev_in[sel, Lb : Lb + Hb] if Hb else None
        h, w, b = bucket.h[sel], self.weight, self.bias
        if self.device.type == "cpu":  # the exact path needs CUDA (or Triton's interpreter)
            h, w, b, method = h.float(), w.float(), b.float(), "cpu"
        else:
            method = "exact"
        s, i = rank(h, w, b, kb, ex, method=method)
        scores[rows] = s[:, :k].float().cpu().numpy()
        indices[rows] = i[:, :k].cpu().numpy()

    # ------------------------------------------------------------------ buckets
    def _method(self, Bb: int, kb: int, exclude: bool) -> str:
        from lite_export.kernels import auto_path

        if self.graph_mode == "compile":
            return "torch"
        if self.ranker != "auto":
            return self.ranker
        return auto_path(
            Bb, self.num_items, self.weight.shape[1], kb, self.weight.dtype, exclude, self.device
        )

    def _build(self, key: tuple[int, int, int, int]) -> _Bucket:
        """Static buffers for ``key``, and the graph (captured or compiled) that fills them."""
        Bb, Lb, Hb, kb = key
        cuda = self.device.type == "cuda"
        method = self._method(Bb, kb, Hb > 0)
        host_in = torch.full((Bb, Lb + Hb), self.num_items, dtype=torch.int64, pin_memory=cuda)
        host_in[:, Lb - 1] = 0  # padding rows: a valid one-item history, computed and dropped
        host_out = torch.zeros((Bb, 2 * kb + 1), dtype=torch.int64, pin_memory=cuda)
        dev_in = host_in.to(self.device, copy=True)
        bucket = _Bucket(key, method, host_in, host_out, dev_in)
        step = functools.partial(
            request_step, self.encoder, self.weight, self.bias, L=Lb, H=Hb, k=kb, method=method
        )
        if self.graph_mode == "static":
            bucket.run = functools.partial(self._run_eager, bucket, step)
            return bucket
        step(dev_in)  # eager first: Triton compiles, cuBLAS handles, the matmul mode probe
        if self.graph_mode == "compile":
            bucket.run = self._compile_runner(bucket)
            return bucket
        try:
            bucket.run = self._capture(bucket, step)
        except Exception as exc:  # e.g. an op that cannot be captured: stay correct, eagerly
            log.warning(
                "torch engine: CUDA graph capture failed for bucket %s (%s: %s); running it "
                "eagerly",
                key,
                type(exc).__name__,
                exc,
            )
            bucket.run = functools.partial(self._run_eager, bucket, step)
        return bucket

    def _run_eager(self, bucket: _Bucket, step, rows: int) -> None:
        bucket.dev_in[:rows].copy_(bucket.host_in[:rows], non_blocking=True)
        out, bucket.h = step(bucket.dev_in)
        bucket.host_out[:rows].copy_(out[:rows])

    def _capture_with(self, bucket: _Bucket, step, attention: str):
        """(graph, out, h) of ``step`` captured with ``attention``'s SDPA backends."""
        from torch.nn.attention import SDPBackend, sdpa_kernel

        device = self.device
        backends = ATTENTION_BACKENDS[attention]
        ctx = sdpa_kernel([getattr(SDPBackend, b) for b in backends]) if backends else None
        with ctx or contextlib.nullcontext():
            cur = torch.cuda.current_stream(device)
            side = torch.cuda.Stream(device)
            side.wait_stream(cur)
            with torch.cuda.stream(side):  # warm-up off the capture stream, as torch recommends
                step(bucket.dev_in)
            cur.wait_stream(side)
            if self._pool is None:  # one memory pool for all of this engine's graphs
                self._pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                out, h = step(bucket.dev_in)
        return graph, out, h

    def _capture(self, bucket: _Bucket, step):
        device = self.device
        choices = [self.attention] if self.attention != "auto" else list(ATTENTION_BACKENDS)
        captured = {a: self._capture_with(bucket, step, a) for a in choices}
        if len(captured) > 1:  # keep the attention kernels that replay fastest for this shape
            times = {a: _replay_ms(g) for a, (g, _, _) in captured.items()}
            best = min(times, key=times.get)
            log.debug(
                "torch engine: bucket %s attention %s (replay ms %s)", bucket.key, best, times
            )
        else:
            best = choices[0]
        graph, out, h = captured.pop(best)
        captured.clear()  # the slower graphs' memory goes back to the pool
        bucket.attention = best
        bucket.h = h

        def run(rows: int) -> None:  # on the caller's current stream
            bucket.dev_in[:rows].copy_(bucket.host_in[:rows], non_blocking=True)
            graph.replay()
            bucket.host_out[:rows].copy_(out[:rows], non_blocking=True)
            torch.cuda.current_stream(device).synchronize()

        run.graph = graph  # kept alive with the bucket
        return run

    def _compile_runner(self, bucket: _Bucket):
        _, Lb, Hb, kb = bucket.key
        if self._compiled is None:
            module = _RequestModule(self.encoder, self.weight, self.bias)
            for t in (*module.parameters(), *module.buffers()):
                torch._dynamo.mark_static_address(t)  # no per-replay copies of the tables
            limit = self._graphs.capacity + 8  # one compiled graph per bucket shape at most
            for name in ("recompile_limit", "cache_size_limit"):
                if hasattr(torch._dynamo.config, name):
                    setattr(
                        torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), limit)
                    )
            self._compiled = torch.compile(module, mode="reduce-overhead")
        torch._dynamo.mark_static_address(bucket.dev_in)
        compiled = self._compiled
        device = self.device

        def run(rows: int) -> None:
            bucket.dev_in[:rows].copy_(bucket.host_in[:rows], non_blocking=True)
            torch.compiler.cudagraph_mark_step_begin()
            out, bucket.h = compiled(bucket.dev_in, Lb, Hb, kb)
            bucket.host_out[:rows].copy_(out[:rows], non_blocking=True)
            torch.cuda.current_stream(device).synchronize()

        return run
