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
    ref_all = model.recommend(hists, k=7, exclude_seen=False)
    assert rec.recommend(hists, k=7, exclude_seen=False).ids == ref_all.ids


def test_engine_input_errors(artifact):
    rec = lite_export.load(artifact, engine="onnxruntime")
    with pytest.raises(UnknownItemError, match="'nope'"):
        rec.recommend([["nope"]], k=5)
    with pytest.raises(ValueError, match="between 1 and 20"):
        rec.recommend([[rec.catalog.ids[0]]], k=21)
    with pytest.raises(TypeError, match="list of lists"):
        rec.recommend("S0001", k=5)
    assert len(rec.recommend([], k=5)) == 0


def test_engine_errors_say_what_to_install(artifact):
    with pytest.raises(EngineUnavailableError, match="lite-export\\[gpu\\]"):
        lite_export.load(artifact, engine="tensorrt")
    with pytest.raises(ValueError, match="unknown engine"):
        lite_export.load(artifact, engine="openvino")
