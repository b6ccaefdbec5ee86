import numpy as np
import pytest

import lite_export
from lite_export.catalog import UnknownItemError
from lite_export.engines.base import EngineUnavailableError


def _histories(model, ds_split):
    ds, split = ds_split
    hists = [[ds.item_ids[i] for i in h] for h, _ in split.test[:24]]
    return hists + [[ds.item_ids[0]], []]


@pytest.mark.parametrize("engine", ["onnxruntime", "torch", "auto"])
def test_engines_match_pytorch(trained, synthetic, artifact, engine):
    model, *_ = trained
    hists = _histories(model, synthetic)
    ref = model.recommend(hists, k=20)
    rec = lite_export.load(artifact, engine=engine)
    top = rec.recommend(hists, k=20)
    assert top.ids == ref.ids
    np.testing.assert_allclose(top.scores, ref.scores, rtol=1e-4, atol=1e-4)
    assert top.fallback == ref.fallback
    # titles like the C++ TopK: the catalog's title of every returned id, fallback rows too
    titles = dict(zip(rec.catalog.ids, rec.catalog.titles, strict=True))
    assert top.titles == ref.titles == [[titles[i] for i in row] for row in ref.ids]
    assert top.fallback[-1] and top.titles[-1] and all(top.titles[-1])
    ref_all = model.recommend(hists, k=7, exclude_seen=False)
    all_seen = rec.recommend(hists, k=7, exclude_seen=False)
    assert all_seen.ids == ref_all.ids
    assert all_seen.titles == ref_all.titles == [[titles[i] for i in r] for r in ref_all.ids]


def test_engine_input_errors(artifact):
    rec = lite_export.load(artifact, engine="onnxruntime")
    with pytest.raises(UnknownItemError, match="'nope'"):
        rec.recommend([["nope"]], k=5)
    with pytest.raises(ValueError, match="between 1 and 20"):
        rec.recommend([[rec.catalog.ids[0]]], k=21)
    with pytest.raises(TypeError, match="list of lists"):
        rec.recommend("S0001", k=5)
    none = rec.recommend([], k=5)
    assert len(none) == 0 and none.titles == [] and none.fallback == []


def test_a_checkpoint_and_an_artifact_are_told_apart(trained, artifact):
    from lite_export.artifact import ArtifactError, CheckpointError

    *_, ckpt = trained
    with pytest.raises(ArtifactError, match="is a training checkpoint") as exc:
        lite_export.load(ckpt, engine="auto")
    assert f"lite export {ckpt} --out ART" in str(exc.value)
    with pytest.raises(ArtifactError, match="is a training checkpoint"):
        lite_export.load(ckpt, engine="onnxruntime")
    with pytest.raises(CheckpointError, match="is an exported artifact") as exc:
        lite_export.LiteLLM4Rec.from_pretrained(artifact)
    assert f"exported from, {ckpt.resolve()}" in str(exc.value)


def test_engine_errors_say_what_to_install(artifact):
    with pytest.raises(EngineUnavailableError, match="lite-export\\[gpu\\]"):
        lite_export.load(artifact, engine="tensorrt")
    with pytest.raises(ValueError, match="unknown engine"):
        lite_export.load(artifact, engine="openvino")


def _has_tensorrt() -> bool:
    from lite_export.exporters.tensorrt import tensorrt_available

    return tensorrt_available()


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(not _has_tensorrt(), reason="needs TensorRT and an NVIDIA GPU")
def test_tensorrt_engine_matches_pytorch(trained, synthetic, tmp_path):
    from lite_export.exporters.onnx import ExportOptions, export_artifact
    from lite_export.exporters.tensorrt import build_engine

    model, *_, ckpt = trained
    hists = _histories(model, synthetic)

    def plan(tmp, manifest):
        hist = manifest["dims"]["max_history"]
        shapes = [{"item_ids": s, "exclude_ids": s} for s in ((1, 1), (16, hist), (64, hist))]
        build_engine(
            tmp / "model.onnx",
            tmp / "model.plan",
            min_shapes=shapes[0],
            opt_shapes=shapes[1],
            max_shapes=shapes[2],
            precision="fp32",
        )
        return ["model.plan"]

    art = export_artifact(ckpt, tmp_path / "trt", ExportOptions(k=20), log=None, post_build=plan)
    top = lite_export.load(art, engine="tensorrt").recommend(hists, k=20)
    ref = model.recommend(hists, k=20)
    assert top.ids == ref.ids and top.titles == ref.titles
    np.testing.assert_allclose(top.scores, ref.scores, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_onnxruntime_cuda_provider_matches_pytorch(trained, synthetic, artifact):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("needs onnxruntime-gpu with the CUDA execution provider")
    model, *_ = trained
    hists = _histories(model, synthetic)
    rec = lite_export.load(artifact, engine="onnxruntime", providers=["CUDAExecutionProvider"])
    assert rec.recommend(hists, k=20).ids == model.recommend(hists, k=20).ids


@pytest.mark.gpu
def test_torch_engine_on_cuda_uses_the_fused_kernel(trained, synthetic, artifact):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    model, *_ = trained
    hists = _histories(model, synthetic)
    top = lite_export.load(artifact, engine="torch", device="cuda").recommend(hists, k=20)
    ref = model.recommend(hists, k=20)
    assert top.ids == ref.ids and top.titles == ref.titles
    np.testing.assert_allclose(top.scores, ref.scores, rtol=1e-4, atol=1e-4)
