import json

import numpy as np
import pytest

from lite_export.artifact import ArtifactError, sha256_file, verify_artifact
from lite_export.exporters.onnx import ExportError, ExportOptions, export_artifact


def test_artifact_layout_and_manifest(artifact):
    manifest = json.loads((artifact / "manifest.json").read_text())
    names = {p.name for p in artifact.iterdir()}
    assert {
        "model.onnx",
        "model.ort.onnx",
        "user_encoder.onnx",
        "head.safetensors",
        "encoder.safetensors",
        "items.jsonl",
        "manifest.json",
    } <= names
    assert manifest["format"] == "lite-export-artifact" and manifest["format_version"] == 1
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(artifact / name)
    assert manifest["dims"]["k"] == 20
    for graph in ("model.onnx", "model.ort.onnx"):
        res = manifest["parity"][graph]
        assert res["scores_ok"] and res["ids_ok"] and res["max_abs_score_diff"] <= 1e-4
    assert manifest["parity"]["user_encoder.onnx"]["ok"]
    assert (
        manifest["ort_optimization"]["nodes_after"] <= manifest["ort_optimization"]["nodes_before"]
    )


def test_graph_has_no_text_and_dynamic_shapes(artifact):
    import onnx

    model = onnx.load(str(artifact / "model.onnx"))
    ins = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in model.graph.input
    }
    outs = {
        o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
        for o in model.graph.output
    }
    assert set(ins) == {"item_ids", "exclude_ids"}
    assert all(isinstance(d, str) for d in ins["item_ids"])  # batch and history are dynamic
    assert outs["scores"][1] == 20 and outs["indices"][1] == 20
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in model.graph.input)


def test_refuses_to_overwrite_without_force(trained, artifact):
    *_, ckpt = trained
    before = sha256_file(artifact / "manifest.json")
    with pytest.raises(FileExistsError, match="--force"):
        export_artifact(ckpt, artifact, ExportOptions(k=20), log=None)
    assert sha256_file(artifact / "manifest.json") == before


def test_failed_validation_leaves_nothing_behind(trained, tmp_path, monkeypatch):
    import lite_export.exporters.onnx as onnx_export

    *_, ckpt = trained
    monkeypatch.setitem(onnx_export.TOLERANCE, "fp32", -1.0)  # nothing can pass
    with pytest.raises(onnx_export.ExportValidationError, match="max_abs_score_diff"):
        export_artifact(ckpt, tmp_path / "bad", ExportOptions(k=5, optimize=False), log=None)
    assert list(tmp_path.iterdir()) == []


def test_external_data_with_a_forced_threshold(trained, tmp_path):
    import lite_export

    *_, ckpt = trained
    art = export_artifact(
        ckpt, tmp_path / "ext", ExportOptions(k=10, external_data_threshold=1), log=None
    )
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["export_options"]["external_data"] is True
    assert (art / "model.onnx.data").exists() and "model.onnx.data" in manifest["files"]
    model = lite_export.LiteLLM4Rec.from_pretrained(ckpt)
    hist = [model.catalog.ids[:5]]
    top = lite_export.load(art, engine="onnxruntime", graph="model.onnx").recommend(hist, k=10)
    assert top.ids == model.recommend(hist, k=10).ids


def test_fp16_export_is_validated_within_its_tolerance(trained, tmp_path):
    *_, ckpt = trained
    art = export_artifact(
        ckpt, tmp_path / "fp16", ExportOptions(k=10, precision="fp16", optimize=False), log=None
    )
    res = json.loads((art / "manifest.json").read_text())["parity"]["model.onnx"]
    assert res["tolerance"] == 1e-2 and res["scores_ok"] and res["ids_ok"]


def test_bad_options_are_clear_errors(trained, tmp_path):
    import onnxruntime as ort

    *_, ckpt = trained
    with pytest.raises(ValueError, match="between 1 and the catalog size"):
        export_artifact(ckpt, tmp_path / "a", ExportOptions(k=10**6), log=None)
    with pytest.raises(ValueError, match="precision"):
        export_artifact(ckpt, tmp_path / "b", ExportOptions(precision="int4"), log=None)
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ExportError, match="no bf16 kernels"):
            export_artifact(ckpt, tmp_path / "c", ExportOptions(precision="bf16"), log=None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["missing", "truncated", "altered", "newer"])
def test_load_names_the_damaged_file(artifact, tmp_path, damage):
    import shutil

    art = tmp_path / "copy"
    shutil.copytree(artifact, art)
    if damage == "missing":
        (art / "head.safetensors").unlink()
        match = "head.safetensors is missing"
    elif damage == "truncated":
        data = (art / "model.onnx").read_bytes()
        (art / "model.onnx").write_bytes(data[: len(data) // 2])
        match = "model.onnx has .* bytes"
    elif damage == "altered":
        raw = bytearray((art / "items.jsonl").read_bytes())
        raw[10] = ord("X") if raw[10] != ord("X") else ord("Y")
        (art / "items.jsonl").write_bytes(bytes(raw))
        match = "items.jsonl does not match its sha256"
    else:
        m = json.loads((art / "manifest.json").read_text())
        m["format_version"] = 99
        (art / "manifest.json").write_text(json.dumps(m))
        match = "newer lite-export"
    with pytest.raises(ArtifactError, match=match):
        verify_artifact(art)


def test_cli_export_and_force(trained, tmp_path):
    from typer.testing import CliRunner

    from lite_export.cli import app

    *_, ckpt = trained
    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["export", str(ckpt), "--out", str(out), "--k", "5", "--no-optimize"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "parity model.onnx" in first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 2 and "--force" in second.output
    third = runner.invoke(app, [*args, "--force"])
    assert third.exit_code == 0, third.output
    assert np.isfinite(
        json.loads((out / "manifest.json").read_text())["parity"]["model.onnx"][
            "max_abs_score_diff"
        ]
    )


def test_regularised_gated_model_trains_and_exports_from_the_cli(tmp_path):
    # the issue-17 knobs end to end: the flags reach the configs, the residual-dropout hooks
    # stay out of the exported graph and the gate is frozen into the item table
    from typer.testing import CliRunner

    from lite_export.cli import app
    from lite_export.model.lite_llm4rec import LiteLLM4Rec

    runner = CliRunner()
    ckpt = tmp_path / "ckpt"
    flags = ["--item-fusion", "gate", "--resid-dropout", "0.3", "--label-smoothing", "0.1"]
    args = ["train", "--preset", "tiny", "--epochs", "1", "--out", str(ckpt), "--no-progress"]
    trained = runner.invoke(app, [*args, *flags, "--weight-decay", "0.05"])
    assert trained.exit_code == 0, trained.output
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["model"]["item_fusion"] == "gate" and cfg["model"]["resid_dropout"] == 0.3
    assert cfg["train"]["label_smoothing"] == 0.1 and cfg["train"]["weight_decay"] == 0.05
    model = LiteLLM4Rec.from_pretrained(ckpt)
    assert model.fusion_gate is not None
    art = export_artifact(ckpt, tmp_path / "art", ExportOptions(k=10, optimize=False), log=None)
    parity = json.loads((art / "manifest.json").read_text())["parity"]["model.onnx"]
    assert parity["scores_ok"] and parity["ids_ok"]


def test_text_head_cold_start_run_trains_evaluates_and_exports(tmp_path):
    # --head text+id under the cold-start protocol: the held-out items never reach training,
    # the test is reported per target kind, and the export freezes the computed head rows
    from safetensors.numpy import load_file
    from typer.testing import CliRunner

    from lite_export.cli import app
    from lite_export.model.lite_llm4rec import LiteLLM4Rec

    ckpt, report = tmp_path / "ckpt", tmp_path / "train.json"
    args = ["train", "--preset", "tiny", "--epochs", "1", "--out", str(ckpt), "--no-progress"]
    flags = ["--head", "text+id", "--head-residual-dropout", "0.2", "--cold-items", "0.1"]
    trained = CliRunner().invoke(app, [*args, *flags, "--json", str(report)])
    assert trained.exit_code == 0, trained.output
    assert "cold (" in trained.output and "warm (" in trained.output
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["model"]["head"] == "text+id" and cfg["data"]["cold_items"] == 0.1
    by_target = json.loads(report.read_text())["train"]["test_by_target"]
    test_users = json.loads(report.read_text())["test"]["users"]
    assert by_target["cold"]["users"] + by_target["warm"]["users"] == test_users
    evaluated = CliRunner().invoke(app, ["eval", str(ckpt), "--json", str(tmp_path / "e.json")])
    assert evaluated.exit_code == 0, evaluated.output
    again = json.loads((tmp_path / "e.json").read_text())["by_target"]
    assert again["cold"] == pytest.approx(by_target["cold"], abs=1e-9)
    model = LiteLLM4Rec.from_pretrained(ckpt)
    from lite_export.model.workflow import DataSpec, load_split

    _, split = load_split(DataSpec.from_stored(cfg["data"]))
    cold = split.cold_items
    assert len(cold) == round(0.1 * model.config.num_items)
    # held out of the loss: their learned residual rows never moved from zero
    assert not model.head.weight[cold].any() and not model.head.bias[cold].any()
    assert model.head.weight.any()
    art = export_artifact(ckpt, tmp_path / "art", ExportOptions(k=10, optimize=False), log=None)
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["model"]["head"] == "text+id"
    assert manifest["parity"]["model.onnx"]["scores_ok"]
    head = load_file(str(art / "head.safetensors"))
    w, b = (t.detach().numpy() for t in model.head_params())
    np.testing.assert_array_equal(head["weight"], w)
    np.testing.assert_array_equal(head["bias"], b)
