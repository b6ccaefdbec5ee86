"""Graph rewrites for TensorRT's per-tensor limit: constant tables above 2^31-1 elements.

:func:`split_large_gather` / :func:`split_large_matmul` rewrite a graph whose constant tables
exceed TensorRT's limit of 2^31-1 elements per tensor (the "Volume Limits" of TensorRT's operator
reference, e.g. https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/operators/TopK.html )
into Gathers / MatMuls over chunks, so that the static check
(:func:`lite_export.exporters.tensorrt.check_tensorrt_compat`) passes. Both modify the model in
place, need only ``onnx`` and ``numpy``, and are exact: the results equal the original graph's
for every valid input (tested in ONNX Runtime).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lite_export.exporters.tensorrt.check import (
    _DEFAULT_DOMAINS,
    MAX_ELEMENTS,
    _attr,
    _onnx,
    _opset_of,
    _subgraphs,
    tensor_num_elements,
)

if TYPE_CHECKING:  # pragma: no cover
    import onnx

__all__ = ["split_large_gather", "split_large_matmul"]


# --- splitting tables above the element limit ---------------------------------------------------
class _Names:
    """Fresh tensor/node names that do not collide with any name in the graph."""

    def __init__(self, graph: Any) -> None:
        self.used = {t.name for t in graph.initializer} | {v.name for v in graph.input}
        for node in graph.node:
            self.used.update(node.output)
            self.used.add(node.name)

    def __call__(self, base: str) -> str:
        name, i = base, 0
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name


def _table_array(tensor: Any, base_dir: str | Path | None) -> Any:
    onnx = _onnx()
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        if base_dir is None:
            raise ValueError(
                f"tensor {tensor.name!r} has external data that is not loaded; pass base_dir= the "
                "model's folder, or load the model with onnx.load(path) (external data included)"
            )
        onnx.external_data_helper.load_external_data_for_tensor(tensor, str(base_dir))
    return onnx.numpy_helper.to_array(tensor)


def _split_points(length: int, slab: int, max_elements: int, what: str) -> list[tuple[int, int]]:
    per_chunk = max_elements // slab
    if per_chunk < 1:
        raise ValueError(
            f"cannot split {what}: one slice along the split axis already has {slab:,} elements, "
            f"more than max_elements={max_elements:,}"
        )
    return [(o, min(per_chunk, length - o)) for o in range(0, length, per_chunk)]


def _require_opset13(model: onnx.ModelProto) -> None:
    opset = _opset_of(model)
    if opset is None or opset < 13:
        raise ValueError(f"splitting needs a model with opset >= 13, this one has {opset}")


def _graph_constants(graph: Any) -> dict[str, tuple[Any, Any]]:
    """name -> (TensorProto, Constant node or None) for the top-level graph's constants."""
    inputs = {v.name for v in graph.input}
    out: dict[str, tuple[Any, Any]] = {
        t.name: (t, None) for t in graph.initializer if t.name not in inputs
    }
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS:
            value = _attr(node, "value")
            if value is not None:
                out[node.output[0]] = (value, node)
    return out


def _drop_unused(graph: Any, candidates: Iterable[str]) -> None:
    used = {i for node in graph.node for i in node.input} | {o.name for o in graph.output}
    for sub_node in graph.node:
        for sub in _subgraphs(sub_node):
            used.update(i for n in sub.node for i in n.input)
    drop = {c for c in candidates if c not in used}
    keep_inits = [t for t in graph.initializer if t.name not in drop]
    keep_nodes = [
        n for n in graph.node if not (n.op_type == "Constant" and n.output and n.output[0] in drop)
    ]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)
    del graph.node[:]
    graph.node.extend(keep_nodes)


def split_large_gather(
    model: onnx.ModelProto,
    max_elements: int = MAX_ELEMENTS,
    *,
    base_dir: str | Path | None = None,
) -> onnx.ModelProto:
    """Rewrite every ``Gather`` over a constant table above ``max_elements`` into chunk Gathers.

    The table is cut along the gather axis into chunks of at most ``max_elements`` elements.
    For each chunk ``c`` covering ``[lo, hi)`` the graph computes ``in_c = lo <= idx < hi`` and
    ``Gather(chunk_c, Where(in_c, idx - lo, 0))``; ``Where`` on the broadcast mask picks each
    index's row from its chunk. Negative indices are wrapped first, as ``Gather`` does. The
    result equals the original Gather for every valid index (tested in ONNX Runtime).

    ``model`` is modified in place and returned (a copy of a multi-GB table is what this avoids).
    Tables in external data need ``base_dir`` (the model's folder) unless already loaded. Save
    the result with external data (``onnx.save(..., save_as_external_data=True)``).
    """
    onnx = _onnx()
    import numpy as np

    if max_elements < 1:
        raise ValueError(f"max_elements must be >= 1, got {max_elements}")
    _require_opset13(model)
    helper, graph = onnx.helper, model.graph
    consts = _graph_constants(graph)
    fresh = _Names(graph)
    chunk_cache: dict[tuple[str, int], list[tuple[int, int, str]]] = {}
    new_nodes: list[Any] = []
    new_inits: list[Any] = []
    replaced: set[str] = set()

    def scalar(value: int, base: str) -> str:
        name = fresh(base)
        new_inits.append(onnx.numpy_helper.from_array(np.array(value, dtype=np.int64), name))
        return name

    for node in graph.node:
        data = node.input[0] if node.input else ""
        if (
            node.op_type != "Gather"
            or node.domain not in _DEFAULT_DOMAINS
            or data not in consts
            or tensor_num_elements(consts[data][0]) <= max_elements
        ):
            new_nodes.append(node)
            continue
        tensor = consts[data][0]
        rank = len(tensor.dims)
        axis = int(_attr(node, "axis", 0))
        axis = axis + rank if axis < 0 else axis
        length = int(tensor.dims[axis])
        slab = tensor_num_elements(tensor) // max(length, 1)
        key = (data, axis)
        if key not in chunk_cache:
            array = _table_array(tensor, base_dir)
            chunks = []
            for lo, size in _split_points(length, slab, max_elements, f"table {data!r}"):
                index = (slice(None),) * axis + (slice(lo, lo + size),)
                name = fresh(f"{data}/chunk{lo}")
                part = np.ascontiguousarray(array[index])
                new_inits.append(onnx.numpy_helper.from_array(part, name))
                chunks.append((lo, size, name))
            chunk_cache[key] = chunks
            del array
        chunks = chunk_cache[key]
        p = fresh(f"{node.name or data}/split")
        zero, n_rows = scalar(0, f"{p}/zero"), scalar(length, f"{p}/n")
        idx = fresh(f"{p}/idx64")
        neg, wrapped, norm = fresh(f"{p}/neg"), fresh(f"{p}/wrapped"), fresh(f"{p}/norm")
        new_nodes += [
            helper.make_node("Cast", [node.input[1]], [idx], to=onnx.TensorProto.INT64),
            helper.make_node("Less", [idx, zero], [neg]),
            helper.make_node("Add", [idx, n_rows], [wrapped]),
            helper.make_node("Where", [neg, wrapped, idx], [norm]),
        ]
        axes = list(range(axis)) + [-(i + 1) for i in range(rank - 1 - axis)]
        axes_name = None
        if axes:
            axes_name = fresh(f"{p}/mask_axes")
            new_inits.append(onnx.numpy_helper.from_array(np.array(axes, np.int64), axes_name))
        acc = ""
        for c, (lo, size, chunk) in enumerate(chunks):
            q = f"{p}/c{c}"
            lo_name, hi_name = scalar(lo, f"{q}/lo"), scalar(lo + size, f"{q}/hi")
            ge, lt, inside = fresh(f"{q}/ge"), fresh(f"{q}/lt"), fresh(f"{q}/in")
            local, safe, got = fresh(f"{q}/local"), fresh(f"{q}/safe"), fresh(f"{q}/rows")
            new_nodes += [
                helper.make_node("GreaterOrEqual", [norm, lo_name], [ge]),
                helper.make_node("Less", [norm, hi_name], [lt]),
                helper.make_node("And", [ge, lt], [inside]),
                helper.make_node("Sub", [norm, lo_name], [local]),
                helper.make_node("Where", [inside, local, zero], [safe]),
                helper.make_node("Gather", [chunk, safe], [got], axis=axis, name=fresh(q)),
            ]
            if c == 0:
                acc = got
                continue
            mask = inside
            if axes_name is not None:
                mask = fresh(f"{q}/mask")
                new_nodes.append(helper.make_node("Unsqueeze", [inside, axes_name], [mask]))
            last = c == len(chunks) - 1
            out = node.output[0] if last else fresh(f"{q}/acc")
            new_nodes.append(
                helper.make_node("Where", [mask, got, acc], [out], name=node.name if last else "")
            )
            acc = out
        replaced.add(data)

    if replaced:
        del graph.node[:]
        graph.node.extend(new_nodes)
        graph.initializer.extend(new_inits)
        _drop_unused(graph, replaced)
    return model


def split_large_matmul(
    model: onnx.ModelProto,
    max_elements: int = MAX_ELEMENTS,
    *,
    base_dir: str | Path | None = None,
) -> onnx.ModelProto:
    """Rewrite ``MatMul(A, W)`` / ``Gemm(A, W, b)`` with a constant ``W`` above ``max_elements``.

    ``W`` (the projection head, ``[d, N]`` or ``[N, d]`` with ``transB=1``) is cut along the
    output axis ``N`` into chunks of at most ``max_elements`` elements; each chunk gets its own
    MatMul/Gemm (with the matching slice of a constant bias) and a ``Concat`` on the last axis
    joins the scores. Same in-place contract as :func:`split_large_gather`.
    """
    onnx = _onnx()
    import numpy as np

    if max_elements < 1:
        raise ValueError(f"max_elements must be >= 1, got {max_elements}")
    _require_opset13(model)
    helper, graph = onnx.helper, model.graph
    consts = _graph_constants(graph)
    fresh = _Names(graph)
    new_nodes: list[Any] = []
    new_inits: list[Any] = []
    replaced: set[str] = set()

    for node in graph.node:
        is_mm = node.op_type in ("MatMul", "Gemm") and node.domain in _DEFAULT_DOMAINS
        w = node.input[1] if is_mm and len(node.input) > 1 else ""
        if not is_mm or w not in consts or tensor_num_elements(consts[w][0]) <= max_elements:
            new_nodes.append(node)
            continue
        tensor = consts[w][0]
        rank = len(tensor.dims)
        if rank < 2:
            raise ValueError(f"cannot split {node.op_type} weight {w!r} of rank {rank}")
        trans_b = node.op_type == "Gemm" and int(_attr(node, "transB", 0)) == 1
        axis = 0 if trans_b else rank - 1  # the output (N) axis of W
        length = int(tensor.dims[axis])
        slab = tensor_num_elements(tensor) // max(length, 1)
        array = _table_array(tensor, base_dir)
        bias = None
        if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
            if node.input[2] not in consts:
                raise ValueError(
                    f"cannot split Gemm {node.name!r}: its bias {node.input[2]!r} is not constant"
                )
            bias = _table_array(consts[node.input[2]][0], base_dir)
        p = fresh(f"{node.name or w}/split")
        parts: list[str] = []
        for c, (lo, size) in enumerate(_split_points(length, slab, max_elements, f"weight {w!r}")):
            index = (slice(None),) * axis + (slice(lo, lo + size),)
            w_name = fresh(f"{w}/chunk{lo}")
            new_inits.append(
                onnx.numpy_helper.from_array(np.ascontiguousarray(array[index]), w_name)
            )
            out = fresh(f"{p}/c{c}")
            inputs = [node.input[0], w_name]
            if bias is not None:
                b = bias
                if b.ndim >= 1 and b.shape[-1] == length and length > 1:
                    b = np.ascontiguousarray(b[..., lo : lo + size])
                b_name = fresh(f"{node.input[2]}/chunk{lo}")
                new_inits.append(onnx.numpy_helper.from_array(b, b_name))
                inputs.append(b_name)
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            new_nodes.append(
                helper.make_node(node.op_type, inputs, [out], name=fresh(f"{p}/c{c}"), **attrs)
            )
            parts.append(out)
        new_nodes.append(
            helper.make_node("Concat", parts, [node.output[0]], axis=-1, name=node.name or p)
        )
        replaced.add(w)
        if bias is not None:
            replaced.add(node.input[2])
        del array

    if replaced:
        del graph.node[:]
        graph.node.extend(new_nodes)
        graph.initializer.extend(new_inits)
        _drop_unused(graph, replaced)
    return model
