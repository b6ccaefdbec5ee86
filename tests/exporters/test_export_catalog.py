"""`lite export --catalog-precision int8|fp8`: the artifact, its graphs and engines give the fp32
artifact's top-K for every user of the trained model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import lite_export  # noqa: E402
from lite_export.exporters.onnx import ExportOptions, export_artifact  # noqa: E402
from lite_export.kernels import quantize_catalog, rank_cpu, rank_quantized  # noqa: E402

SCORE_ATOL = 1e-5  # the same fp32 scores, computed in another summation order


@pytest.fixture(scope="module")
def fp8_artifact(trained, tmp_path_factory):
    *_, ckpt = trained
    out = tmp_path_factory.mktemp("art") / "fp8"
    return export_artifact(ckpt, out, ExportOptions(k=20, catalog_precision="fp8"), log=None)


@pytest.fixture(scope="module")
def histories(synthetic):
    """Every synthetic user's last 50 items (external ids)."""
    ds, _ = synthetic
    return [[ds.item_ids[i] for i in seq[-50:]] for seq in ds.sequences]


def assert_same_topk(got, ref):
    assert got.ids == ref.ids, (
        f"{sum(a != b for a, b in zip(got.ids, ref.ids, strict=True))} rows differ"
    )
    np.testing.assert_allclose(got.scores, ref.scores, rtol=0, atol=SCORE_ATOL)


def test_int8_artifact_files_manifest_and_graphs(int8_artifact):
    m = json.loads((int8_artifact / "manifest.json").read_text())
    cat = m["catalog"]
    assert cat["precision"] == "int8" and cat["file"] in m["files"]
    assert m["export_options"]["catalog_precision"] == "int8"
    n, d = m["dims"]["num_items"], m["dims"]["d_model"]
    assert cat["table_bytes"] == n * d + 2 * 4 * n and cat["fp32_table_bytes"] == 4 * n * (d + 1)
    graph = cat["graph"]
    assert m["dims"]["k"] <= graph["candidates"] <= n - 1
    assert graph["calibration"]["needed_max"] <= graph["candidates"]
    for g in ("model.onnx", "model.ort.onnx"):
        assert m["parity"][g]["ids_ok"] and m["parity"][g]["quantized_settled_fraction"] == 1.0
    ops = {x.op_type for x in onnx.load(str(int8_artifact / "model.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger", "If"} <= ops
    ort_ops = {x.op_type for x in onnx.load(str(int8_artifact / "model.ort.onnx")).graph.node}
    assert "DynamicQuantizeMatMul" in ort_ops
    trt = m["tensorrt_check"]  # honest: TensorRT cannot parse the integer ops
    assert trt["checked"] and not trt["ok"]
    assert {f["op_type"] for f in trt["findings"] if f["severity"] == "error"} >= {"MatMulInteger"}


@pytest.mark.parametrize("exclude_seen", [True, False])
@pytest.mark.parametrize("graph", ["model.ort.onnx", "model.onnx"])
def test_int8_graph_gives_the_fp32_graphs_topk_for_every_user(
    int8_artifact, artifact, histories, exclude_seen, graph
):
    q = lite_export.load(int8_artifact, engine="onnxruntime", graph=graph)
    f = lite_export.load(artifact, engine="onnxruntime", graph=graph)
    assert_same_topk(
        q.recommend(histories, k=20, exclude_seen=exclude_seen),
        f.recommend(histories, k=20, exclude_seen=exclude_seen),
    )


@pytest.mark.parametrize("which", ["int8", "fp8"])
def test_torch_engine_ranks_the_quantized_catalog(
    which, int8_artifact, fp8_artifact, artifact, histories
):
    art = int8_artifact if which == "int8" else fp8_artifact
    q = lite_export.load(art, engine="torch", catalog="quantized")
    assert q.info["catalog"] == which
    ref = lite_export.load(artifact, engine="torch")
    assert ref.info["catalog"] == "full"
    for exclude_seen in (True, False):
        assert_same_topk(
            q.recommend(histories, k=20, exclude_seen=exclude_seen),
            ref.recommend(histories, k=20, exclude_seen=exclude_seen),
        )
    # the head stays a memory map of head.safetensors (only the candidates' pages are read)
    assert _mapped_file(q.weight.data_ptr()) == str((art / "head.safetensors").resolve())


def _mapped_file(address: int) -> str | None:
    """The file whose mapping holds ``address`` in this process (/proc/self/maps), if any."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if lo <= address < hi:
            name = parts[5].strip() if len(parts) > 5 else ""
            return name if name.startswith("/") else None
    return None


def test_fp8_artifact_keeps_fp32_graphs(fp8_artifact):
    m = json.loads((fp8_artifact / "manifest.json").read_text())
    assert m["catalog"]["precision"] == "fp8" and m["catalog"]["graph"] is None
    ops = {x.op_type for x in onnx.load(str(fp8_artifact / "model.onnx")).graph.node}
    assert "MatMulInteger" not in ops
    from safetensors.torch import load_file

    assert load_file(str(fp8_artifact / "catalog.safetensors"))["q"].dtype == torch.float8_e4m3fn


@pytest.mark.parametrize("precision", ["int8", "fp8"])
def test_trained_user_vectors_identical_topk(trained, synthetic, precision):
    """The trained model's user vectors of every user: rank_quantized on its head gives
    rank_cpu's ids exactly, with and without the history excluded."""
    from lite_export.data.batching import pad_histories

    model, *_ = trained
    ds, _ = synthetic
    n = model.config.num_items
    ids = pad_histories(ds.sequences, model.config.max_history, n)
    with torch.inference_mode():
        h = model.user_vectors(ids).float()
    W, b = (t.detach().float() for t in model.head_params())
    cat = quantize_catalog(W, b, precision)
    ex = torch.where(ids == n, -1, ids)
    for exclude in (None, ex):
        ref_v, ref_i = rank_cpu(h, W, b, 20, exclude)
        v, i = rank_quantized(h, cat, 20, exclude, W)
        assert torch.equal(i, ref_i)
        torch.testing.assert_close(v, ref_v, rtol=0, atol=SCORE_ATOL)


def test_too_few_candidates_are_rescued_with_identical_results(
    trained, artifact, histories, tmp_path
):
    """--catalog-candidates k: many rows need more candidates than that; the rescue ranks them
    in full precision, so the answers do not change."""
    *_, ckpt = trained
    art = export_artifact(
        ckpt,
        tmp_path / "m20",
        ExportOptions(k=20, catalog_precision="int8", catalog_candidates=20),
        log=None,
    )
    m = json.loads((art / "manifest.json").read_text())
    assert (
        m["catalog"]["graph"]["candidates"] == 20 and m["catalog"]["graph"]["calibration"] is None
    )
    assert m["catalog"]["probe_rows_settled"]["model.onnx"] < 1.0
    q = lite_export.load(art, engine="onnxruntime")
    sess = q.session
    from lite_export.data.batching import pad_histories

    idx = q.catalog.batch_indices(histories)
    item_ids = pad_histories(idx, q.max_history, q.num_items).numpy()
    settled = sess.run(["quantized_settled"], {"item_ids": item_ids, "exclude_ids": item_ids})[0]
    assert 0 < settled.mean() < 1
    assert_same_topk(
        q.recommend(histories, k=20),
        lite_export.load(artifact, engine="onnxruntime").recommend(histories, k=20),
    )


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (dict(catalog_precision="int4"), "catalog precision must be one of"),
        (dict(catalog_precision="int8", precision="bf16"), "no bf16"),
        (dict(catalog_candidates=64), "applies to --catalog-precision int8"),
        (dict(catalog_precision="fp8", catalog_candidates=64), "fp8 catalog has no"),
        (dict(catalog_precision="int8", catalog_candidates=5), r"must be in \[k=20"),
        (dict(catalog_precision="int8", k=1000), "needs more items than k"),
    ],
)
def test_bad_catalog_options_fail_before_writing(trained, tmp_path, opts, message):
    *_, ckpt = trained
    opts = {"k": 20, **opts}
    with pytest.raises(ValueError, match=message):
        export_artifact(ckpt, tmp_path / "out", ExportOptions(**opts), log=None)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_int8_for_tensorrt_and_unknown_precisions(tmp_path):
    from typer.testing import CliRunner

    from lite_export.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "export",
            "nope",
            "--out",
            str(tmp_path / "a"),
            "--format",
            "tensorrt",
            "--catalog-precision",
            "int8",
        ],
    )
    assert res.exit_code == 2 and "TensorRT's ONNX parser does not" in res.output
    res = runner.invoke(
        app, ["export", "nope", "--out", str(tmp_path / "a"), "--catalog-precision", "int4"]
    )
    assert res.exit_code == 2 and "must be int8 or fp8" in res.output


def test_torch_engine_quantized_catalog_errors(artifact, int8_artifact):
    with pytest.raises(ValueError, match="has no quantized catalog"):
        lite_export.load(artifact, engine="torch", catalog="quantized")
    with pytest.raises(ValueError, match="catalog must be one of"):
        lite_export.load(int8_artifact, engine="torch", catalog="int8")
    with pytest.raises(ValueError, match="ranks eagerly"):
        lite_export.load(int8_artifact, engine="torch", catalog="quantized", graph="static")
