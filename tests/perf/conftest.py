"""A tiny artifact for the bench/tune tests: the synthetic catalog's tiny network with seeded,
untrained weights (latency depends on the shapes, not on the weight values), exported with K=20.

LITE_PERF_TEST_CKPT=DIR reuses such a checkpoint (and DIR/../art its artifact) to iterate fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("fastapi")


@pytest.fixture(scope="session")
def perf_checkpoint(tmp_path_factory) -> Path:
    if os.environ.get("LITE_PERF_TEST_CKPT"):
        return Path(os.environ["LITE_PERF_TEST_CKPT"])
    from lite_export.data import leave_one_out, load_dataset
    from lite_export.model.config import LiteConfig
    from lite_export.model.lite_llm4rec import LiteLLM4Rec
    from lite_export.model.workflow import catalog_of

    ds = load_dataset("synthetic")
    cfg = LiteConfig.from_name("tiny", max_history=ds.max_history)
    model = LiteLLM4Rec.build(cfg, catalog_of(ds, leave_one_out(ds)), seed=0)
    return Path(model.save_pretrained(tmp_path_factory.mktemp("perf") / "ckpt"))


@pytest.fixture(scope="session")
def perf_artifact(perf_checkpoint) -> Path:
    """K=20, max_history 50, 1,000 items, fp32."""
    art = perf_checkpoint.parent / "art"
    if os.environ.get("LITE_PERF_TEST_CKPT") and (art / "manifest.json").exists():
        return art
    from lite_export.exporters.onnx import ExportOptions, export_artifact

    return export_artifact(perf_checkpoint, art, ExportOptions(k=20), log=None)
