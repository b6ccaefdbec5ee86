"""A catalog split into shards: each holds the head rows of its slice of items and returns its
own top-k with global ids; a merge gives the same top-k as ranking the whole catalog.

The pieces (torch and numpy only, no Ray), which the Ray Serve deployments and the Ray Data
stages of :mod:`lite_export.cluster.ray_app` and :mod:`lite_export.cluster.score` wrap:

* :func:`shard_bounds` -- contiguous slices ``[start, stop)`` of item indices whose sizes differ
  by at most one (the split FAISS's ``IndexShards`` and Ray's ``array_split`` make);
* :class:`UserEncoder` -- the artifact's user encoder alone: padded ids ``[B, L]`` -> user
  vectors ``[B, d]`` (``user_encoder.onnx`` in ONNX Runtime, else the PyTorch encoder);
* :class:`CatalogShard` -- rows ``[start, stop)`` of ``head.safetensors`` (only those rows are
  read), ranked with :func:`lite_export.kernels.rank` (the fused kernel on a GPU, the CPU path
  otherwise); exclusion happens inside the shard, on its own items;
* :func:`merge_topk` -- the global top-k of the shards' top-k lists;
* :class:`ShardedEngine` -- all of it in one process (``lite_export.load(ART, engine="sharded",
  shards=S)``), the reference the distributed paths are tested against.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lite_export.engines.base import Engine


def shard_bounds(num_items: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous ``[start, stop)`` slices of ``range(num_items)``, the first
    ``num_items % shards`` one item longer than the rest."""
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ValueError(f"shards must be a positive integer, got {shards!r}")
    if shards > num_items:
        raise ValueError(
            f"{shards} shards for a catalog of {num_items} items: each shard needs at least one "
            f"item; use --shards {num_items} or fewer"
        )
    size, extra = divmod(num_items, shards)
    bounds, start = [], 0
    for s in range(shards):
        stop = start + size + (1 if s < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def merge_topk(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of the shards' ``(scores [B, k_s], global ids [B, k_s])``, best first;
    among equal scores the lower id first. Returns ``(scores [B, k] float32, ids [B, k] int64)``."""
    scores = np.concatenate([np.asarray(p[0], np.float32) for p in parts], axis=1)
    ids = np.concatenate([np.asarray(p[1], np.int64) for p in parts], axis=1)
    if scores.shape[1] < k:
        raise ValueError(
            f"the shards returned {scores.shape[1]} candidates per row, fewer than k={k}"
        )
    # primary key: score, descending; secondary: id, ascending (lexsort sorts by the last key first)
    order = np.lexsort((ids, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


class UserEncoder:
    """User vectors of padded item ids (pad = ``num_items``), from an exported artifact."""

    def __init__(self, run, num_items: int, d_model: int, backend: str):
        self._run, self.num_items, self.d_model, self.backend = run, num_items, d_model, backend

    @classmethod
    def from_artifact(
        cls, artifact: str | os.PathLike, backend: str = "auto", threads: int | None = None
    ) -> UserEncoder:
        """``backend``: ``"onnxruntime"`` (``user_encoder.onnx``), ``"torch"``
        (``encoder.safetensors``) or ``"auto"`` (ONNX Runtime where it is installed and the
        artifact has the graph, else PyTorch)."""
        from lite_export.artifact import read_manifest

        path = Path(artifact)
        manifest = read_manifest(path)
        dims = manifest["dims"]
        if backend not in ("auto", "onnxruntime", "torch"):
            raise ValueError(f"backend must be auto, onnxruntime or torch, got {backend!r}")
        onnx = path / "user_encoder.onnx"
        if backend == "auto":
            try:
                import onnxruntime  # noqa: F401

                backend = "onnxruntime" if onnx.exists() else "torch"
            except ImportError:
                backend = "torch"
        if backend == "onnxruntime":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.log_severity_level = 3
            if threads:
                so.intra_op_num_threads = int(threads)
            session = ort.InferenceSession(str(onnx), so, providers=["CPUExecutionProvider"])

            def run(ids: np.ndarray) -> np.ndarray:
                return session.run(["user_vectors"], {"item_ids": ids})[0]

        else:
            import torch

            from lite_export.engines.torch_engine import encode, load_frozen_encoder

            if threads:
                torch.set_num_threads(int(threads))
            encoder = load_frozen_encoder(path, manifest).eval()

            def run(ids: np.ndarray) -> np.ndarray:
                with torch.inference_mode():
                    return encode(encoder, torch.from_numpy(ids)).float().numpy()

        return cls(run, dims["num_items"], dims["d_model"], backend)

    def __call__(self, item_ids: np.ndarray) -> np.ndarray:
        """``[B, L]`` int64 -> ``[B, d]`` float32."""
        return np.ascontiguousarray(self._run(np.ascontiguousarray(item_ids, np.int64)), np.float32)


class CatalogShard:
    """Head rows ``[start, stop)`` of a catalog of ``num_items`` items, ranked on ``device``."""

    def __init__(self, weight, bias, start: int, num_items: int, method: str = "auto"):
        self.weight, self.bias = weight, bias
        self.start, self.stop = start, start + weight.shape[0]
        self.num_items, self.method = num_items, method
        self.device = weight.device

    @classmethod
    def from_artifact(
        cls,
        artifact: str | os.PathLike,
        start: int,
        stop: int,
        device: str | None = None,
        method: str = "auto",
    ) -> CatalogShard:
        """Read only rows ``[start, stop)`` of the artifact's ``head.safetensors``; ``device``
        defaults to CUDA where there is one."""
        import torch
        from safetensors import safe_open

        from lite_export.artifact import read_manifest

        path = Path(artifact)
        n = read_manifest(path)["dims"]["num_items"]
        if not 0 <= start < stop <= n:
            raise ValueError(f"shard rows [{start}, {stop}) are outside the catalog's {n} items")
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        with safe_open(str(path / "head.safetensors"), framework="pt") as f:
            weight = f.get_slice("weight")[start:stop].to(dev).contiguous()
            bias = f.get_slice("bias")[start:stop].to(dev).contiguous()
        return cls(weight, bias, start, n, method)

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def nbytes(self) -> int:
        return self.weight.nbytes + self.bias.nbytes

    def topk(
        self, users: np.ndarray, exclude: np.ndarray | None, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """This shard's best ``min(k, len(shard))`` items per user vector, with global ids.

        ``users`` ``[B, d]`` float32; ``exclude`` ``[B, H]`` global item ids to drop (a user's
        history; ids outside this shard, and the pad ``num_items``, are ignored) or None.
        Returns ``(scores [B, k_s] float32, global ids [B, k_s] int64)``, best first.
        """
        import torch

        from lite_export.kernels import rank

        h = torch.as_tensor(np.ascontiguousarray(users, np.float32)).to(self.device)
        h = h.to(self.weight.dtype)
        local = None
        if exclude is not None:
            ex = torch.as_tensor(np.ascontiguousarray(exclude, np.int64)).to(self.device)
            mine = (ex >= self.start) & (ex < self.stop)
            local = torch.where(mine, ex - self.start, torch.full_like(ex, -1))  # -1: padding
        with torch.inference_mode():
            scores, idx = rank(
                h, self.weight, self.bias, min(k, len(self)), local, method=self.method
            )
        return scores.float().cpu().numpy(), idx.cpu().numpy() + self.start


class ShardedEngine(Engine):
    """The artifact's catalog ranked as ``shards`` slices in one process, then merged: the same
    recommendations as the other engines (ids equal up to exact ties).

    Options: ``shards`` (default 1), ``encoder`` (``UserEncoder`` backend: auto, onnxruntime,
    torch), ``threads``, ``device`` (where the shards rank), ``ranker`` (``kernels.rank``'s
    method, default auto).
    """

    name = "sharded"

    def _load_impl(self) -> None:
        opts = self.options
        self.encoder = UserEncoder.from_artifact(
            self.path, opts.get("encoder") or "auto", opts.get("threads")
        )
        bounds = shard_bounds(self.num_items, int(opts.get("shards") or 1))
        method = opts.get("ranker") or "auto"
        self.shards = [
            CatalogShard.from_artifact(self.path, a, b, opts.get("device"), method)
            for a, b in bounds
        ]

    @property
    def info(self) -> dict:
        shards = getattr(self, "shards", [])
        return {
            **super().info,
            "shards": [[s.start, s.stop] for s in shards],
            "encoder": getattr(getattr(self, "encoder", None), "backend", None),
        }

    def _recommend_impl(self, item_ids: np.ndarray, exclude_ids: np.ndarray, k: int):
        users = self.encoder(item_ids)
        return merge_topk([s.topk(users, exclude_ids, k) for s in self.shards], k)
