import json
import shutil

import numpy as np
import pytest

from lite_export.model.lite_llm4rec import CheckpointError, LiteLLM4Rec


def test_round_trip_reproduces_predictions_exactly(trained, synthetic):
    model, _, _, ckpt = trained
    ds, split = synthetic
    hists = [[ds.item_ids[i] for i in h] for h, _ in split.test[:16]] + [[]]
    before = model.recommend(hists, k=20)
    loaded = LiteLLM4Rec.from_pretrained(ckpt)
    after = loaded.recommend(hists, k=20)
    assert after.ids == before.ids
    np.testing.assert_array_equal(after.scores, before.scores)


def test_checkpoint_holds_no_pickle(trained):
    *_, ckpt = trained
    names = {p.name for p in ckpt.iterdir()}
    assert {"config.json", "model.safetensors", "items.jsonl", "item_vectors.safetensors"} <= names
    for p in ckpt.rglob("*"):
        if p.is_file():
            assert p.suffix in {".json", ".jsonl", ".safetensors", ".txt"}, p
            assert not p.read_bytes().startswith(b"\x80"), f"{p} looks like a pickle"


def test_missing_file_and_newer_format_are_clear_errors(trained, tmp_path):
    *_, ckpt = trained
    broken = tmp_path / "broken"
    shutil.copytree(ckpt, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        LiteLLM4Rec.from_pretrained(broken)

    newer = tmp_path / "newer"
    shutil.copytree(ckpt, newer)
    meta = json.loads((newer / "config.json").read_text())
    meta["format_version"] = 99
    (newer / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="newer lite-export"):
        LiteLLM4Rec.from_pretrained(newer)

    with pytest.raises(CheckpointError, match="does not exist"):
        LiteLLM4Rec.from_pretrained(tmp_path / "nowhere")
