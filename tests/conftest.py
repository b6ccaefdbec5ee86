"""Shared fixtures: one tiny model trained once on the synthetic catalog per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def synthetic():
    from lite_export.data import leave_one_out, load_dataset

    ds = load_dataset("synthetic")
    return ds, leave_one_out(ds)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, synthetic):
    """(model, train result, test metrics, checkpoint dir) of a 4-epoch tiny run on CPU."""
    from accelerate import Accelerator

    from lite_export.model.config import LiteConfig, TrainConfig
    from lite_export.model.workflow import DataSpec, train_checkpoint

    ds, split = synthetic
    ckpt = tmp_path_factory.mktemp("ckpt") / "tiny"
    model, result, test = train_checkpoint(
        DataSpec("synthetic"),
        LiteConfig.from_name("tiny", max_history=ds.max_history),
        TrainConfig.from_name("tiny", epochs=4, seed=0),
        ckpt,
        accelerator=Accelerator(cpu=True),
        progress=False,
        log=None,
        data=(ds, split),
    )
    return model, result, test, ckpt


@pytest.fixture(scope="session")
def tiny_artifact(trained, tmp_path_factory):
    """A K=20 fp32 artifact exported from the session's tiny checkpoint (also ``artifact``; a
    module may override ``artifact``, never this name, which session fixtures depend on)."""
    from lite_export.exporters.onnx import ExportOptions, export_artifact

    *_, ckpt = trained
    out = tmp_path_factory.mktemp("art") / "tiny"
    return export_artifact(ckpt, out, ExportOptions(k=20), log=None)


@pytest.fixture(scope="session")
def int8_artifact(trained, tmp_path_factory):
    """The tiny checkpoint exported with ``--catalog-precision int8`` (K=20): model.onnx ranks
    with the integer-matmul head (``lite_export.exporters.quantized_graph``)."""
    from lite_export.exporters.onnx import ExportOptions, export_artifact

    *_, ckpt = trained
    out = tmp_path_factory.mktemp("art") / "int8"
    return export_artifact(ckpt, out, ExportOptions(k=20, catalog_precision="int8"), log=None)


@pytest.fixture(scope="session")
def artifact(tiny_artifact):
    """A K=20 fp32 artifact exported from the session's tiny checkpoint."""
    return tiny_artifact


@pytest.fixture(scope="session")
def triton_server(tiny_artifact, tmp_path_factory):
    """One real `tritonserver` for the session, serving the tiny artifact's Triton `lite` model
    (a triton_fixture.TritonServer: url, log, artifact); skips without LITE_TRITON_VENV."""
    from triton_fixture import start_triton

    with start_triton(tiny_artifact, tmp_path_factory.mktemp("triton")) as server:
        yield server


@pytest.fixture(scope="session")
def text_head_trained(tmp_path_factory, synthetic):
    """(model, checkpoint dir) of a 2-epoch tiny run with ``head="text+id"`` on CPU: the model
    whose artifacts `lite catalog add/remove/update` can edit."""
    from accelerate import Accelerator

    from lite_export.model.config import LiteConfig, TrainConfig
    from lite_export.model.workflow import DataSpec, train_checkpoint

    ds, split = synthetic
    ckpt = tmp_path_factory.mktemp("ckpt") / "text-head"
    model, *_ = train_checkpoint(
        DataSpec("synthetic"),
        LiteConfig.from_name(
            "tiny", max_history=ds.max_history, head="text+id", head_residual_dropout=0.3
        ),
        TrainConfig.from_name("tiny", epochs=2, seed=0),
        ckpt,
        accelerator=Accelerator(cpu=True),
        progress=False,
        log=None,
        data=(ds, split),
    )
    return model, ckpt


@pytest.fixture(scope="session")
def text_head_artifact(text_head_trained, tmp_path_factory):
    """The text-head checkpoint exported with K=20 (fp32, ONNX Runtime optimisation off)."""
    from lite_export.exporters.onnx import ExportOptions, export_artifact

    _, ckpt = text_head_trained
    out = tmp_path_factory.mktemp("art") / "text-head"
    return export_artifact(ckpt, out, ExportOptions(k=20, optimize=False), log=None)
