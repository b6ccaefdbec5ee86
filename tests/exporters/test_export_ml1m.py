"""Export at real scale: the ML-1M catalog (3,706 items) and history length 200."""

from pathlib import Path

import pytest

ML1M = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ml-1m"


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(not (ML1M / "movies.dat").exists(), reason="../shared/data/ml-1m not present")
def test_ml1m_export_matches_pytorch(tmp_path):
    import numpy as np

    import lite_export
    from lite_export.data import leave_one_out, load_dataset
    from lite_export.exporters.onnx import ExportOptions, export_artifact
    from lite_export.model.config import LiteConfig
    from lite_export.model.lite_llm4rec import LiteLLM4Rec
    from lite_export.model.workflow import catalog_of

    ds = load_dataset("ml-1m", ML1M)
    split = leave_one_out(ds)
    # the ML-1M shape of the quality runs (d=64, 2 layers, history 200), id embeddings only so
    # the test needs no item-LLM download; the weights are the seeded initialisation
    cfg = LiteConfig.from_name("sasrec", d_model=64, d_ff=256, max_history=ds.max_history)
    model = LiteLLM4Rec.build(cfg, catalog_of(ds, split), seed=0).eval()
    ckpt = model.save_pretrained(tmp_path / "ckpt")
    art = export_artifact(ckpt, tmp_path / "art", ExportOptions(k=100, optimize=False), log=None)
    hists = [[ds.item_ids[i] for i in h] for h, _ in split.test[:32]]
    ref = LiteLLM4Rec.from_pretrained(ckpt).recommend(hists, k=100)
    top = lite_export.load(art, engine="onnxruntime").recommend(hists, k=100)
    assert top.ids == ref.ids
    np.testing.assert_allclose(top.scores, ref.scores, rtol=1e-4, atol=1e-4)
