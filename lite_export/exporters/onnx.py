"""`lite export`: a training checkpoint -> a validated ONNX artifact with frozen item embeddings.

The item-LLM vectors pass the adapter once here and become a constant table gathered by id (plus
the learned id embedding); the head is a constant too. Nothing in the graphs touches text.

Graphs (dynamo exporter, dynamic batch and history length):

  model.onnx         item_ids [B, L] int64 (pad = N), exclude_ids [B, H] int64 (pad = N)
                     -> scores [B, K] float32, indices [B, K] int64   (history excluded in-graph)
  model.ort.onnx     the same graph after ONNX Runtime's offline optimisation (fusions); the
                     ONNX Runtime engine runs this one, model.onnx stays portable (TensorRT, C++)
  user_encoder.onnx  item_ids [B, L] -> user_vectors [B, d]   (for the fused kernel or an ANN)

Beside them: head.safetensors (W [N, d], b [N], fp32), encoder.safetensors (the frozen item
table and rec-LLM weights, for the PyTorch engine), items.jsonl and manifest.json; a model with
a text head also gets item_tower.safetensors (see ``ITEM_TOWER_FILE``).

``catalog_precision="int8"`` (``lite export --catalog-precision int8``) makes model.onnx the
user encoder followed by the int8 ranking head of :mod:`lite_export.exporters.quantized_graph`
(an integer matmul bounds every score, the best candidates are re-ranked exactly, unsettled rows
are ranked again in full precision: the same top-K as the fp32 graph); ``"fp8"`` keeps the fp32
graphs (ONNX Runtime has no fp8 matmul on CPU). Either way catalog.safetensors holds the
quantized table (:class:`lite_export.kernels.QuantizedCatalog`) for the PyTorch engine, and the
manifest's ``catalog`` entry says what uses it.

K is fixed at export (``k``, default 100; TensorRT needs a constant K): engines return any
k <= K. The most recent ``max_history`` items are the model input; ``exclude_ids`` may hold the
whole history (or only pads when seen items should stay).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lite_export import progress
from lite_export.artifact import (
    ARTIFACT_FORMAT,
    ARTIFACT_VERSION,
    MANIFEST,
    check_output_dir,
    file_entries,
    publish_directory,
)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: ``--catalog-precision`` values.
CATALOG_PRECISIONS = ("int8", "fp8")
#: score tolerance of the parity check, from the export dtype (SPEC §3)
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 1e-2}
DEFAULT_OPSET = 18
#: tables above this many bytes go to ONNX external data (protobuf stops at 2 GiB)
EXTERNAL_DATA_THRESHOLD = 1_500_000_000


class ExportError(RuntimeError):
    """The export could not be written (the destination is left untouched)."""


class ExportValidationError(ExportError):
    """ONNX Runtime disagrees with PyTorch beyond the dtype's tolerance."""

    def __init__(self, graph: str, report: dict):
        self.report = report
        lines = [f"{graph}: ONNX Runtime output differs from PyTorch beyond tolerance"]
        for name, value in report.items():
            lines.append(f"  {name}: {value}")
        super().__init__("\n".join(lines))


class FrozenUserEncoder(nn.Module):
    """item ids [B, L] -> user vector [B, d]; the item table is a constant buffer.

    With a ``match_table`` [N+1, Di] (a ``head_match`` model's unit item vectors, pad row zero)
    the user vector is followed by the text-match query: ``[B, d + Di]``."""

    def __init__(
        self,
        item_table: torch.Tensor,
        backbone: nn.Module,
        match_table: torch.Tensor | None = None,
    ):
        super().__init__()
        self.register_buffer("item_table", item_table.contiguous())  # [N+1, d], pad row zero
        if match_table is not None:
            self.register_buffer("match_table", match_table.to(item_table.dtype).contiguous())
        else:
            self.match_table = None
        self.backbone = backbone.eval()
        self.num_items = item_table.shape[0] - 1

    @classmethod
    def from_model(cls, model, dtype: torch.dtype) -> FrozenUserEncoder:
        """Freeze a LiteLLM4Rec: item-LLM vectors through the adapter (+ id embedding), once."""
        n = model.config.num_items
        with torch.no_grad():
            ids = torch.arange(n + 1)
            table = model.embed_items(ids.unsqueeze(0))[0].clone()  # [N+1, d]
            table[n] = 0.0
            match = model.match_table() if hasattr(model, "match_table") else None
        return cls(table.to(dtype), copy.deepcopy(model.backbone).to(dtype), match)

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        mask = (item_ids != self.num_items).to(torch.int32)  # [B, L]
        x = F.embedding(item_ids, self.item_table)  # [B, L, d]
        # int32 arithmetic: TensorRT has no int64 CumSum/Clip (see the static check)
        position_ids = (mask.cumsum(-1, dtype=torch.int32) - 1).clamp(min=0).to(torch.int64)
        out = self.backbone(
            inputs_embeds=x, attention_mask=mask.to(torch.int64), position_ids=position_ids
        )
        return self.with_match(out.last_hidden_state[:, -1], item_ids)  # [B, d (+ Di)]

    def with_match(self, h: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """``h [B, d]`` followed by the text-match query when the encoder has a match table:
        the unit vector along the sum of the history's match rows (pads are zero). [B, d + Di]"""
        if self.match_table is None:
            return h
        q = F.embedding(item_ids, self.match_table).float().sum(1)  # [B, Di]
        q = q / q.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        return torch.cat([h, q.to(h.dtype)], dim=-1)


class RankingGraph(nn.Module):
    """item ids -> top-K (scores, indices) over the whole catalog, excluded ids at -inf."""

    def __init__(
        self, encoder: FrozenUserEncoder, weight: torch.Tensor, bias: torch.Tensor, k: int
    ):
        super().__init__()
        self.encoder = encoder
        dtype = encoder.item_table.dtype
        self.register_buffer("head_weight", weight.detach().to(dtype).contiguous())  # [N, d]
        self.register_buffer("head_bias", bias.detach().to(dtype).contiguous())  # [N]
        self.k = k
        self.num_items = encoder.num_items

    def forward(self, item_ids: torch.Tensor, exclude_ids: torch.Tensor):
        h = self.encoder(item_ids)  # [B, d]
        scores = (h @ self.head_weight.T + self.head_bias).float()  # [B, N]
        # one extra column takes the pad id, so the scatter needs no mask tensor
        scores = torch.cat([scores, torch.zeros_like(scores[:, :1])], dim=1)
        scores = scores.scatter(1, exclude_ids, float("-inf"))[:, : self.num_items]
        values, indices = torch.topk(scores, self.k, dim=1)
        return values, indices


@dataclass
class ExportOptions:
    """What `lite export` fixes in the artifact.

    ``min_shape`` / ``opt_shape`` / ``max_shape`` (``(BATCH, HISTORY)`` of ``item_ids``) and
    ``max_exclude`` (the widest ``exclude_ids``) make the input profile that ``manifest.json``
    records and the engines keep to (the TensorRT plan is built with it); None takes the
    defaults of :meth:`lite_export.engines.profile.InputProfile.for_export`.
    """

    k: int = 100
    precision: str = "fp32"
    opset: int = DEFAULT_OPSET
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD
    optimize: bool = True
    probes: int = 16
    seed: int = 0
    extra: dict = field(default_factory=dict)
    min_shape: tuple[int, int] | None = None
    opt_shape: tuple[int, int] | None = None
    max_shape: tuple[int, int] | None = None
    max_exclude: int | None = None
    #: ``"int8"`` | ``"fp8"`` | None: a quantized catalog (see the module docstring).
    catalog_precision: str | None = None
    #: Candidates the int8 graph re-ranks exactly (``M``); None: calibrated on probe users.
    catalog_candidates: int | None = None
    #: Also export the item LLM to ``items_encoder/`` (Optimum; ``lite export --items-encoder``):
    #: the artifact then encodes new item text itself (``lite catalog add``), no checkpoint needed.
    items_encoder: bool = False


def _dims(max_history: int):
    batch = torch.export.Dim("batch", min=1, max=65536)
    history = torch.export.Dim("history", min=1, max=max(2, max_history))
    exclude = torch.export.Dim("exclude", min=1, max=1 << 20)
    return batch, history, exclude


def _export(
    module: nn.Module, args: tuple, path: Path, names: tuple, dynamic: dict, opts, external: bool
):
    import logging
    import warnings

    # the exporter logs one line per optional torchvision op it cannot register
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            input_names=list(names[0]),
            output_names=list(names[1]),
            dynamic_shapes=dynamic,
            opset_version=opts.opset,
            verbose=False,
        )
    if program is None:
        raise ExportError(f"torch.onnx.export returned no program for {path.name}")
    program.save(str(path), external_data=external)
    return sorted(p.name for p in path.parent.glob(path.name + "*"))


def _param_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def probe_histories(num_items: int, max_history: int, count: int, seed: int) -> list[list[int]]:
    """Deterministic probe histories: length 1, short, the model's maximum and longer."""
    rng = np.random.default_rng(seed)
    lengths = [1, 2, 5, max_history, max_history + 7]
    lengths += list(rng.integers(1, max_history + 1, size=max(0, count - len(lengths))))
    return [
        list(rng.choice(num_items, size=min(int(n), num_items), replace=False))
        for n in lengths[:count]
    ]


def reference_scores(model, item_ids: torch.Tensor, exclude_ids: torch.Tensor) -> np.ndarray:
    """Full fp32 PyTorch scores [B, N] with excluded ids at -inf: the parity reference."""
    from lite_export.model.metrics import mask_items

    with torch.inference_mode():
        scores = model.score(item_ids).float()
        mask_items(scores, exclude_ids, model.config.num_items)
    return scores.numpy()


def compare_topk(ref_full: np.ndarray, values: np.ndarray, indices: np.ndarray, tol: float) -> dict:
    """Top-K parity up to ties.

    scores: |ort - ref top-K values| <= tol * (1 + |ref|);
    indices: every returned id's reference score equals what was returned (within tolerance),
    so ids may differ only where reference scores tie within tolerance.
    """
    k = values.shape[1]
    ref_top = -np.sort(-ref_full, axis=1)[:, :k]
    finite = np.isfinite(ref_top)
    diff = np.where(finite, np.abs(values - ref_top), 0.0)
    bound = tol * (1.0 + np.where(finite, np.abs(ref_top), 0.0))
    gathered = np.take_along_axis(ref_full, indices.astype(np.int64), axis=1)
    id_diff = np.where(finite, np.abs(gathered - ref_top), 0.0)
    exact = (indices == np.argsort(-ref_full, axis=1, kind="stable")[:, :k]).mean()
    return {
        "max_abs_score_diff": float(diff.max(initial=0.0)),
        "scores_ok": bool((diff <= bound).all() and (np.isfinite(values) == finite).all()),
        "max_abs_id_score_diff": float(id_diff.max(initial=0.0)),
        "ids_ok": bool((id_diff <= bound).all()),
        "ids_identical_fraction": float(exact),
        "tolerance": tol,
    }


def validation_providers(precision: str) -> list[str]:
    """Execution providers for the parity check: CPU, or CUDA where bf16 needs it."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if precision == "bf16":
        if "CUDAExecutionProvider" not in available:
            raise ExportError(
                "a bf16 export cannot be validated here: ONNX Runtime's CPU execution provider has "
                "no bf16 kernels. Export with --precision fp16 or fp32, or export on a GPU host "
                'with onnxruntime-gpu installed (pip install "lite-export[gpu]")'
            )
        return ["CUDAExecutionProvider"]
    return ["CPUExecutionProvider"]


def _session(path, precision: str = "fp32"):
    """An ONNX Runtime session of a graph file, or of an in-memory ModelProto."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    source = str(path) if isinstance(path, str | os.PathLike) else path.SerializeToString()
    return ort.InferenceSession(source, so, providers=validation_providers(precision))


def optimize_with_ort(src: Path, dst: Path, external: bool, precision: str = "fp32") -> dict:
    """ONNX Runtime's offline graph optimisation (layer-norm, attention, GELU... fusions).

    The extended level may use ONNX Runtime contrib operators, so the result is for ONNX Runtime
    only; the portable graph stays as model.onnx.
    """
    from collections import Counter

    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(dst)
    if external:
        so.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", dst.name + ".data"
        )
        so.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
        )
    ort.InferenceSession(str(src), so, providers=validation_providers(precision))
    before = Counter(n.op_type for n in onnx.load(str(src), load_external_data=False).graph.node)
    after = Counter(n.op_type for n in onnx.load(str(dst), load_external_data=False).graph.node)
    fused = {op: c for op, c in after.items() if op not in before}
    return {
        "level": "ORT_ENABLE_EXTENDED",
        "nodes_before": sum(before.values()),
        "nodes_after": sum(after.values()),
        "fused_ops": fused,
    }


def probe_references(model, probes: list[list[int]]) -> list[tuple]:
    """(item_ids, exclude_ids, fp32 PyTorch scores) for the probe batch and for one user alone."""
    from lite_export.data.batching import pad_histories

    n = model.config.num_items
    refs = []
    for batch in (probes, probes[:1]):
        item_ids = pad_histories(batch, model.config.max_history, n)
        exclude = pad_histories(batch, max(map(len, batch)), n)
        refs.append((item_ids.numpy(), exclude.numpy(), reference_scores(model, item_ids, exclude)))
    return refs


def _validate(graph_path: Path, refs: list[tuple], opts: ExportOptions, bar=None) -> dict:
    sess = _session(graph_path, opts.precision)
    # the int8 graph also says which rows its integer pass settled (the rest were rescued)
    quantized = "quantized_settled" in {o.name for o in sess.get_outputs()}
    names = ["scores", "indices"] + (["quantized_settled"] if quantized else [])
    results, settled = [], []
    for item_ids, exclude, ref in refs:
        values, indices, *rest = sess.run(names, {"item_ids": item_ids, "exclude_ids": exclude})
        res = compare_topk(ref, values, indices, TOLERANCE[opts.precision])
        if not (res["scores_ok"] and res["ids_ok"]):
            raise ExportValidationError(graph_path.name, res)
        results.append(res)
        settled.extend(rest[0].tolist() if rest else [])
        if bar is not None:
            bar.advance(info=graph_path.name)
    worst = max(results, key=lambda r: r["max_abs_score_diff"])
    out = {
        **worst,
        "ids_identical_fraction": min(r["ids_identical_fraction"] for r in results),
        "probes": len(refs[0][0]),
    }
    if quantized:
        out["quantized_settled_fraction"] = float(np.mean(settled))
    return out


def _validate_encoder(encoder: FrozenUserEncoder, path: Path, model, probes, opts) -> dict:
    from lite_export.data.batching import pad_histories

    ids = pad_histories(probes, model.config.max_history, model.config.num_items)
    with torch.inference_mode():
        ref = model.user_vectors(ids).float().numpy()
    (out,) = _session(path, opts.precision).run(["user_vectors"], {"item_ids": ids.numpy()})
    diff = float(np.abs(out.astype(np.float32) - ref).max())
    tol = TOLERANCE[opts.precision]
    bound = tol * (1.0 + float(np.abs(ref).max()))
    res = {"max_abs_diff": diff, "tolerance": tol, "ok": diff <= bound}
    if not res["ok"]:
        raise ExportValidationError(path.name, res)
    return res


#: a text-head model's item side (item-LLM vectors, adapter, id embedding, fusion gate, head
#: projection and residual; fp32): with the rec-LLM weights of encoder.safetensors it rebuilds
#: the model, so `lite catalog add/remove/update` can edit an artifact without its checkpoint
ITEM_TOWER_FILE = "item_tower.safetensors"
#: where ``items_encoder=True`` puts the item LLM's ONNX export inside the artifact
ITEMS_ENCODER_DIR = "items_encoder"


def item_tower_state(model) -> dict[str, torch.Tensor]:
    """Everything of ``model`` but the rec LLM and the item LLM, plus its item-LLM vectors."""
    state = {  # floats as fp32; flags (head_cold_scale's text_only) keep their dtype
        k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu().contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith(("backbone.", "item_llm."))
    }
    state["item_vectors"] = model.item_vectors[:-1].detach().float().cpu().contiguous()
    return state


def export_artifact(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    options: ExportOptions | None = None,
    force: bool = False,
    log=print,
    post_build=None,
    sources=(),
) -> Path:
    """Export a training checkpoint to a validated artifact directory (atomic; see module doc).

    ``post_build(tmp_dir, manifest) -> [file names]`` runs before the manifest is written (e.g.
    the TensorRT plan build), so its files are checksummed and published atomically too.

    ``out`` is checked before any work (:func:`lite_export.artifact.check_output_dir`): an
    existing artifact is replaced only with ``force``; the checkpoint itself, a directory that
    contains it or one of ``sources`` (other inputs, e.g. a timing cache), and anything that is
    not a lite-export artifact are refused with :class:`~lite_export.artifact.OutputDirError`.
    """
    from safetensors.torch import save_file

    from lite_export import __version__
    from lite_export.model.lite_llm4rec import LiteLLM4Rec

    opts = options or ExportOptions()
    say = log or (lambda _m: None)
    missing = [
        m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise ImportError(
            f'lite export needs {", ".join(missing)}: pip install "lite-export[onnx]" '
            '(or "lite-export[gpu]" on an NVIDIA GPU host)'
        )
    if opts.items_encoder and importlib.util.find_spec("optimum") is None:
        raise ImportError(
            'exporting the items encoder needs Hugging Face Optimum: pip install "lite-export[optimum]"'
        )
    if opts.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {opts.precision!r}")
    _check_catalog_options(opts)
    inputs = (checkpoint, *sources)
    target = check_output_dir(out, "artifact", force=force, sources=inputs)
    model = LiteLLM4Rec.from_pretrained(checkpoint).float().eval()
    n, max_hist = model.config.num_items, model.config.max_history
    if not 1 <= opts.k <= n:
        raise ValueError(f"k must be between 1 and the catalog size {n}, got {opts.k}")
    if opts.k > 3840:
        say(
            f"note: k={opts.k} > 3840, the TensorRT TopK limit; model.onnx will not build in TensorRT"
        )
    int8_graph = opts.catalog_precision == "int8"
    if int8_graph and n < opts.k + 1:
        raise ValueError(
            f"--catalog-precision int8 needs more items than k: the catalog has {n}, k={opts.k} "
            "(a catalog this small gains nothing from quantization; export without it)"
        )
    M = opts.catalog_candidates
    if int8_graph and M is not None and not opts.k <= M <= n - 1:
        raise ValueError(
            f"--catalog-candidates must be in [k={opts.k}, catalog size - 1 = {n - 1}], got "
            f"{opts.catalog_candidates}"
        )
    from lite_export.engines.profile import InputProfile

    profile = InputProfile.for_export(  # raises ProfileError (a ValueError) naming the option
        max_hist,
        n,
        min_shape=opts.min_shape,
        opt_shape=opts.opt_shape,
        max_shape=opts.max_shape,
        max_exclude=opts.max_exclude,
    )
    dtype = PRECISIONS[opts.precision]
    validation_providers(opts.precision)  # fail before any work when validation is impossible
    t0 = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        encoder = FrozenUserEncoder.from_model(model, dtype)
        with torch.no_grad():
            head_w, head_b = (t.detach().float().contiguous() for t in model.head_params())
        graph = RankingGraph(encoder, head_w, head_b, opts.k).eval()
        external = _param_bytes(graph) > opts.external_data_threshold
        batch, history, exclude = _dims(max_hist)
        ex_ids = torch.tensor([[n, 1, 2, 3], [4, 5, 6, 7]], dtype=torch.long)
        ex_excl = torch.tensor([[n, n, 1, 2, 3], [9, 4, 5, 6, 7]], dtype=torch.long)
        files = _export(
            encoder,
            (ex_ids,),
            tmp / "user_encoder.onnx",
            (("item_ids",), ("user_vectors",)),
            {"item_ids": {0: batch, 1: history}},
            opts,
            external,
        )
        catalog = None
        if not int8_graph:  # the int8 graph is built below, calibrated on the probes
            say(f"exporting model.onnx ({opts.precision}, K={opts.k}, opset {opts.opset})")
            files += _export(
                graph,
                (ex_ids, ex_excl),
                tmp / "model.onnx",
                (("item_ids", "exclude_ids"), ("scores", "indices")),
                {"item_ids": {0: batch, 1: history}, "exclude_ids": {0: batch, 1: exclude}},
                opts,
                external,
            )
        probes = probe_histories(n, max_hist, opts.probes, opts.seed)
        say("validating against PyTorch in ONNX Runtime")
        # PyTorch references, then each graph on each probe batch (+ the encoder once)
        checks = 1 + 2 * (2 if opts.optimize else 1) + 1
        with progress.task("validating in ONNX Runtime", checks, unit="check") as bar:
            refs = probe_references(model, probes)
            bar.advance(info="PyTorch references")
            if int8_graph:
                catalog = _write_int8_graph(tmp, graph, refs, opts, external, say)
                files += sorted(p.name for p in tmp.glob("model.onnx*"))
            parity = {"model.onnx": _validate(tmp / "model.onnx", refs, opts, bar)}
            parity["user_encoder.onnx"] = _validate_encoder(
                encoder, tmp / "user_encoder.onnx", model, probes, opts
            )
            bar.advance(info="user_encoder.onnx")
            optimization = None
            if opts.optimize:
                optimization = optimize_with_ort(
                    tmp / "model.onnx", tmp / "model.ort.onnx", external, opts.precision
                )
                files += sorted(p.name for p in tmp.glob("model.ort.onnx*"))
                parity["model.ort.onnx"] = _validate(tmp / "model.ort.onnx", refs, opts, bar)
        save_file(
            {
                "weight": head_w,
                "bias": head_b,
            },
            str(tmp / "head.safetensors"),
        )
        save_file(
            {k: v.detach().contiguous() for k, v in encoder.state_dict().items()},
            str(tmp / "encoder.safetensors"),
        )
        if model.config.head != "id":  # what `lite catalog add` needs to give new items rows
            save_file(item_tower_state(model), str(tmp / ITEM_TOWER_FILE))
            files.append(ITEM_TOWER_FILE)
        if opts.catalog_precision is not None:
            catalog = _write_catalog(tmp, graph, opts, catalog, parity)
            files.append("catalog.safetensors")
        model.catalog.write_jsonl(tmp / "items.jsonl")
        files += ["head.safetensors", "encoder.safetensors", "items.jsonl"]
        items_encoder = None
        if opts.items_encoder:
            from lite_export.exporters.items_encoder import export_items_encoder

            say(f"exporting the item LLM to {ITEMS_ENCODER_DIR}/ (Optimum) and validating it")
            items_encoder = export_items_encoder(checkpoint, tmp / ITEMS_ENCODER_DIR)
            items_encoder["directory"] = ITEMS_ENCODER_DIR
            files += [f"{ITEMS_ENCODER_DIR}/{f}" for f in items_encoder["files"]]
        trt = _tensorrt_report(tmp / "model.onnx")
        manifest = {
            "format": ARTIFACT_FORMAT,
            "format_version": ARTIFACT_VERSION,
            "lite_export_version": __version__,
            "created_unix": int(time.time()),
            "source_checkpoint": str(Path(checkpoint).resolve()),
            "model": model.config.to_dict(),
            "dims": {
                "num_items": n,
                "d_model": int(head_w.shape[1]),  # the user vector's width
                "max_history": max_hist,
                "k": opts.k,
                "pad_id": n,
            },
            "dtypes": {
                "compute": opts.precision,
                "scores": "float32",
                "indices": "int64",
                "item_ids": "int64",
            },
            "rec_llm_config": model.backbone.config.to_dict(),
            "opset": opts.opset,
            "inputs": {"item_ids": ["batch", "history"], "exclude_ids": ["batch", "exclude"]},
            # min/opt/max of every input: the TensorRT plan's profile, kept by every engine
            "profile": profile.to_manifest(),
            "outputs": {"scores": ["batch", opts.k], "indices": ["batch", opts.k]},
            "export_options": {
                "k": opts.k,
                "precision": opts.precision,
                "opset": opts.opset,
                "external_data": external,
                "external_data_threshold": opts.external_data_threshold,
                "ort_optimized": opts.optimize,
                "max_exclude": profile.exclude_ids.max[1],
                "catalog_precision": opts.catalog_precision,
                **opts.extra,
            },
            "catalog": catalog,
            **({"items_encoder": items_encoder} if items_encoder else {}),
            "ort_optimization": optimization,
            "parity": parity,
            "tensorrt_check": trt,
            "export_seconds": round(time.perf_counter() - t0, 2),
        }
        if post_build is not None:
            files += post_build(tmp, manifest)
        manifest["files"] = file_entries(tmp, sorted(set(files)))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        publish_directory(tmp, target, kind="artifact", force=force, sources=inputs)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"artifact written to {target} in {time.perf_counter() - t0:.1f}s")
    return target


def _tensorrt_report(path: Path) -> dict:
    """The static TensorRT check of the portable graph (runs without TensorRT)."""
    try:
        from lite_export.exporters.tensorrt import check_tensorrt_compat
    except ImportError:  # pragma: no cover - the module ships with the package
        return {"checked": False}
    try:
        report = check_tensorrt_compat(path)
    except Exception as exc:  # a checker problem must not lose a valid export
        return {"checked": False, "error": str(exc)}
    return {"checked": True, **report.to_dict(), "model": path.name}


def _check_catalog_options(opts: ExportOptions) -> None:
    """Option errors of the quantized catalog, before any work."""
    cp = opts.catalog_precision
    if cp is None:
        if opts.catalog_candidates is not None:
            raise ValueError("--catalog-candidates applies to --catalog-precision int8")
        return
    if cp not in CATALOG_PRECISIONS:
        raise ValueError(f"catalog precision must be one of {CATALOG_PRECISIONS}, got {cp!r}")
    if cp == "fp8" and opts.catalog_candidates is not None:
        raise ValueError(
            "--catalog-candidates applies to --catalog-precision int8 (the fp8 catalog has no "
            "ONNX graph: ONNX Runtime has no fp8 matmul on CPU)"
        )
    if cp == "int8" and opts.precision == "bf16":
        raise ValueError(
            "--catalog-precision int8 builds an ONNX Runtime CPU graph (integer matmul), and ONNX "
            "Runtime's CPU kernels have no bf16: export with --precision fp32 or fp16"
        )


def _write_int8_graph(tmp: Path, graph: RankingGraph, refs, opts, external: bool, say) -> dict:
    """model.onnx = user_encoder.onnx + the int8 head (candidates calibrated on the probes
    unless given); returns the manifest's ``catalog["graph"]`` entry."""
    import onnx

    from lite_export.exporters import quantized_graph as QG

    n = graph.num_items
    tables = QG.head_tables(graph.head_weight, graph.head_bias)
    encoder = onnx.load(str(tmp / "user_encoder.onnx"))
    calibration = None
    M = opts.catalog_candidates
    if M is None:  # the debug graph's bounds on the probe users, against PyTorch's k-th scores
        debug = QG.attach_head(encoder, tables, opts.k, opts.k, debug=True)
        sess = _session(debug, opts.precision)
        bounds = [
            sess.run(["quantized_bounds"], {"item_ids": ids, "exclude_ids": ex})[0]
            for ids, ex, _ in refs
        ]
        kth = [-np.sort(-ref, axis=1)[:, opts.k - 1] for _, _, ref in refs]
        calibration = QG.calibrate_candidates(bounds, kth, opts.k, n)
        M = calibration["candidates"]
        del sess, debug
    say(
        f"exporting model.onnx ({opts.precision}, K={opts.k}, opset {opts.opset}) with the int8 "
        f"catalog: integer-matmul bounds, {M} candidates re-ranked exactly"
        + (f" (probe users needed at most {calibration['needed_max']})" if calibration else "")
    )
    model = QG.attach_head(encoder, tables, opts.k, M)
    onnx.save_model(
        model,
        str(tmp / "model.onnx"),
        save_as_external_data=external,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
        size_threshold=1024,
    )
    return {
        "model.onnx": "int8 bounds (7-bit weights, DynamicQuantizeLinear + MatMulInteger), exact "
        "fp32 re-rank of the candidates, full-precision rescue of unsettled rows",
        "candidates": M,
        "calibration": calibration,
    }


def _write_catalog(tmp: Path, graph: RankingGraph, opts, graph_entry, parity) -> dict:
    """catalog.safetensors (the quantized table of the export-precision head, for the PyTorch
    engine) and the manifest's ``catalog`` entry."""
    from safetensors.torch import save_file

    from lite_export.kernels import quantize_catalog

    W, b = graph.head_weight, graph.head_bias.float()
    cat = quantize_catalog(W, b, opts.catalog_precision)
    save_file(cat.state_dict(), str(tmp / "catalog.safetensors"))
    full = W.numel() * 4 + b.numel() * 4
    settled = {
        g: res.get("quantized_settled_fraction")
        for g, res in parity.items()
        if res.get("quantized_settled_fraction") is not None
    }
    return {
        "precision": opts.catalog_precision,
        "file": "catalog.safetensors",
        "table_bytes": cat.nbytes,
        "fp32_table_bytes": full,
        "graph": graph_entry,
        "probe_rows_settled": settled or None,
    }
