"""`lite catalog add | remove | update` on a real text-head artifact (ONNX Runtime, PyTorch)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lite_export.artifact import verify_artifact
from lite_export.catalog_edit import CatalogEditError, edit_catalog, model_from_artifact

NEW = [
    {
        "id": "N1",
        "text": "Title: Starfall Odyssey. Genres: Sci-Fi, Adventure.",
        "title": "Starfall",
    },
    {"id": "N2", "text": "Title: Laugh Track. Genres: Comedy."},
    {"id": "N3", "text": "Title: Quiet Harbour. Genres: Drama, Romance.", "popularity": 4},
]


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _ids(art: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (art / "items.jsonl").read_text().splitlines()]


def _digests(art: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in art.iterdir() if p.is_file()
    }


def _run(*args):
    from lite_export.cli import app

    return CliRunner().invoke(app, ["catalog", *map(str, args)])


@pytest.fixture(scope="module")
def added(text_head_artifact, tmp_path_factory):
    """The session's text-head artifact with NEW added from the CLI (the checkpoint encodes)."""
    tmp = tmp_path_factory.mktemp("catalog")
    before = _digests(text_head_artifact)
    out = tmp / "added"
    res = _run("add", text_head_artifact, "--items", _jsonl(tmp / "new.jsonl", NEW), "--out", out)
    assert res.exit_code == 0, res.output
    assert _digests(text_head_artifact) == before  # the parent is never modified
    return out


def test_add_appends_items_with_rows_from_their_text(text_head_trained, text_head_artifact, added):
    from safetensors.numpy import load_file

    from lite_export.model.item_llm import encode_texts

    model, _ = text_head_trained
    n = model.config.num_items
    manifest = verify_artifact(added)
    assert _ids(added) == _ids(text_head_artifact) + ["N1", "N2", "N3"]
    assert manifest["dims"]["num_items"] == n + 3 and manifest["dims"]["pad_id"] == n + 3
    change = manifest["catalog_change"]
    parent_sha = hashlib.sha256((text_head_artifact / "manifest.json").read_bytes()).hexdigest()
    assert change["operation"] == "add" and change["ids"] == ["N1", "N2", "N3"]
    assert change["parent"]["manifest_sha256"] == parent_sha
    assert change["untouched_items_check"]["ok"] and change["encoder"]["kind"] == "checkpoint"
    assert manifest["parity"]["model.onnx"]["scores_ok"]  # validated like any export
    # old rows unchanged, new rows = the text head applied to the new texts' item-LLM vectors
    old, new = (load_file(str(a / "head.safetensors")) for a in (text_head_artifact, added))
    np.testing.assert_array_equal(new["weight"][:n], old["weight"])
    llm = model._item_llm_to_save
    vec = encode_texts(llm, model.item_tokenizer, [r["text"] for r in NEW], 64)
    with torch.no_grad():
        out = model.head_text(vec).numpy()
    np.testing.assert_allclose(new["weight"][n:], out[:, :-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new["bias"][n:], out[:, -1], rtol=1e-5, atol=1e-6)
    rows = [json.loads(line) for line in (added / "items.jsonl").read_text().splitlines()]
    assert rows[n]["title"] == "Starfall" and rows[n + 1]["title"] == NEW[1]["text"]
    assert rows[n + 2]["popularity"] == 4


@pytest.mark.parametrize("engine", ["onnxruntime", "torch"])
def test_engines_rank_new_items_like_the_pytorch_model(added, engine):
    import lite_export

    ref, _ = model_from_artifact(added)
    eng = lite_export.load(added, engine=engine)
    ids = _ids(added)
    hists = [["N1"], ["N2", ids[3]], [ids[5], ids[9], "N3"], ids[10:40]]
    got, want = eng.recommend(hists, k=20), ref.recommend(hists, k=20)
    assert got.ids == want.ids
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-4, atol=1e-4)
    # a new item is rankable: under its own nearest history it can be recommended
    full = ref.score(torch.tensor([[len(ids)] * 49 + [ids.index("N1")]]))[0]
    assert torch.isfinite(full[-3:]).all()


def test_remove_never_recommends_and_still_accepts(added, tmp_path):
    import lite_export

    eng = lite_export.load(added)
    hist = [_ids(added)[7]]
    top = eng.recommend([hist], k=20).ids[0]
    gone = top[:2]  # the two best answers for this history
    out = tmp_path / "removed"
    res = _run("remove", added, "--ids", ",".join(gone), "--out", out)
    assert res.exit_code == 0, res.output
    after = lite_export.load(out)
    for e in (after, lite_export.load(out, engine="torch")):
        again = e.recommend([hist, gone, []], k=20)  # removed ids are still valid history
        assert not set(gone) & {i for row in again.ids for i in row}
        assert again.ids[0][:18] == top[2:20]  # the rest keep their order
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert sum(r.get("retired", False) for r in rows) == 2
    manifest = verify_artifact(out)
    assert [h["operation"] for h in manifest["catalog_history"]] == ["add", "remove"]
    res = _run("remove", out, "--ids", gone[0], "--out", tmp_path / "again")
    assert res.exit_code == 2 and "already removed" in res.output
    assert not (tmp_path / "again").exists()


def test_update_re_encodes_changed_text_only(added, tmp_path):
    from safetensors.numpy import load_file

    ids = _ids(added)
    changed = [{"id": ids[4], "text": "Title: A different film. Genres: Horror."}]
    out = tmp_path / "updated"
    res = _run("update", added, "--items", _jsonl(tmp_path / "u.jsonl", changed), "--out", out)
    assert res.exit_code == 0, res.output
    old, new = (load_file(str(a / "head.safetensors")) for a in (added, out))
    differs = np.abs(old["weight"] - new["weight"]).max(1) > 0
    assert differs.tolist() == [i == 4 for i in range(len(ids))]
    row = json.loads((out / "items.jsonl").read_text().splitlines()[4])
    assert row["text"] == changed[0]["text"]
    assert verify_artifact(out)["catalog_change"]["untouched_items_check"]["ok"]


def test_an_artifact_with_its_items_encoder_edits_without_the_checkpoint(
    text_head_trained, added, tmp_path
):
    pytest.importorskip("optimum")
    from lite_export.exporters.onnx import ExportOptions, export_artifact

    _, ckpt = text_head_trained
    art = export_artifact(
        ckpt, tmp_path / "art", ExportOptions(k=20, optimize=False, items_encoder=True), log=None
    )
    assert verify_artifact(art)["items_encoder"]["parity"]["passed"]
    more = _jsonl(
        tmp_path / "m.jsonl", [{"id": "N9", "text": "Title: Night Train. Genres: Thriller."}]
    )
    first, second = tmp_path / "one", tmp_path / "two"
    assert _run("add", art, "--items", more, "--out", first).exit_code == 0
    again = _jsonl(tmp_path / "a.jsonl", NEW)
    res = _run("add", first, "--items", again, "--out", second)  # its encoder carried over
    assert res.exit_code == 0, res.output
    for out in (first, second):
        manifest = verify_artifact(out)
        assert manifest["catalog_change"]["encoder"]["kind"] == "items_encoder.onnx"
        assert any(f.startswith("items_encoder/") for f in manifest["files"])
    assert _ids(second)[-4:] == ["N9", "N1", "N2", "N3"]
    # --encoder DIR: an items encoder kept elsewhere, for an artifact exported without one
    res = _run(
        "add",
        added,
        "--items",
        more,
        "--out",
        tmp_path / "three",
        "--encoder",
        art / "items_encoder",
    )
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"id": "X1", "text": "a"}, {"id": "X1", "text": "b"}], "repeated"),
        ([{"id": "X2"}], "missing text"),
        ([{"text": "no id"}], "missing id"),
        ([{"id": "N1", "text": "again"}], "already in the catalog"),
    ],
)
def test_add_refuses_bad_items_and_writes_nothing(added, tmp_path, rows, message):
    out = tmp_path / "bad"
    res = _run("add", added, "--items", _jsonl(tmp_path / "bad.jsonl", rows), "--out", out)
    assert res.exit_code == 2 and message in res.output, res.output
    assert not out.exists()


def test_unknown_ids_and_wrong_encoders_are_refused(
    text_head_trained, text_head_artifact, tmp_path
):
    from lite_export.model.lite_llm4rec import LiteLLM4Rec

    res = _run("remove", text_head_artifact, "--ids", "nope,S0001", "--out", tmp_path / "r")
    assert res.exit_code == 2 and "not in the catalog: 'nope'" in res.output
    upd = _jsonl(tmp_path / "u.jsonl", [{"id": "nope", "text": "x"}])
    res = _run("update", text_head_artifact, "--items", upd, "--out", tmp_path / "u")
    assert res.exit_code == 2 and "`lite catalog add` adds new items" in res.output
    # another model's item LLM (the tiny random item LLM of another seed)
    model, _ = text_head_trained
    other = LiteLLM4Rec.build(model.config, model.catalog, seed=1).save_pretrained(tmp_path / "c")
    new = _jsonl(tmp_path / "n.jsonl", NEW[:1])
    res = _run(
        "add", text_head_artifact, "--items", new, "--out", tmp_path / "o", "--checkpoint", other
    )
    assert res.exit_code == 2 and "does not reproduce the artifact's item vectors" in res.output
    assert not any((tmp_path / d).exists() for d in ("r", "u", "o"))


def test_id_only_head_is_refused_with_the_fix(tiny_artifact, tmp_path):
    new = _jsonl(tmp_path / "n.jsonl", NEW[:1])
    res = _run("add", tiny_artifact, "--items", new, "--out", tmp_path / "x")
    assert res.exit_code == 2 and "id-only head" in res.output and "--head text+id" in res.output
    with pytest.raises(CatalogEditError, match="id-only head"):
        edit_catalog(tiny_artifact, tmp_path / "y", "remove", ids=["S0001"], log=None)


def test_triton_repository_is_rebuilt_from_the_edited_artifact(added, tmp_path):
    from lite_export.exporters.triton_server import write_model_repository

    repo = tmp_path / "repo"
    write_model_repository(added, repo)
    items = (repo / "lite" / "1").rglob("items.jsonl")
    assert any("N3" in p.read_text() for p in items)


def test_an_edit_must_leave_more_than_k_items(text_head_artifact, tmp_path):
    ids = _ids(text_head_artifact)
    k = verify_artifact(text_head_artifact)["dims"]["k"]
    with pytest.raises(CatalogEditError, match=f"fewer than the artifact's k={k}"):
        edit_catalog(text_head_artifact, tmp_path / "x", "remove", ids=ids[k:], log=None)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("cold_scale", [False, True], ids=["match", "match+cold-scale"])
def test_head_match_model_exports_serves_and_takes_new_items(cold_scale, tmp_path):
    from safetensors.numpy import load_file

    # the text-match block widens the user vector and the head rows to d + Di: the export, every
    # engine and a catalog edit must carry it (new items get their match rows from their text)
    import lite_export
    from lite_export.catalog_edit import NewItem
    from lite_export.exporters.onnx import ExportOptions, export_artifact
    from tests.model.test_model import _model

    model = _model(
        head="text+id",
        head_match=True,
        head_residual_dropout=0.5 if cold_scale else 0.0,
        head_cold_scale=cold_scale,
    )
    with torch.no_grad():
        model.head.weight.normal_(std=0.1)
        model.match_scale.fill_(3.0)
        if cold_scale:  # items 0 and 1 have no learned residual: the cold scale and bias
            model.match_scale_cold.fill_(7.0)
            model.cold_bias.fill_(0.5)
            model.head.weight[:2] = 0.0
            model.head.bias[:2] = 0.0
            model.text_only[:2] = True
    model.save_pretrained(tmp_path / "ck")
    art = export_artifact(tmp_path / "ck", tmp_path / "art", ExportOptions(k=5), log=None)
    manifest = verify_artifact(art)
    width = 32 + model.item_vectors.shape[1]
    assert manifest["dims"]["d_model"] == width
    assert (
        manifest["parity"]["model.onnx"]["scores_ok"] and manifest["parity"]["model.onnx"]["ids_ok"]
    )
    assert manifest["parity"]["user_encoder.onnx"]["ok"]
    assert manifest["tensorrt_check"]["checked"] and manifest["tensorrt_check"]["ok"]
    histories = [["i1", "i2", "i3"], ["i4"], ["i7", "i9", "i8", "i2"]]
    ref = model.recommend(histories, k=5)
    for engine in ("onnxruntime", "torch", "sharded"):
        options = {"shards": 2} if engine == "sharded" else {}
        got = lite_export.load(art, engine=engine, **options).recommend(histories, k=5)
        assert got.ids == ref.ids, engine
        np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-5, atol=1e-5)
    new = [NewItem(id="N1", text="Title: item 1 part 1. Genres: drama.", title="N1")]
    out = edit_catalog(
        art, tmp_path / "art2", "add", items=new, checkpoint=tmp_path / "ck", log=None
    )
    head = load_file(str(out / "head.safetensors"))
    assert head["weight"].shape == (31, width)
    edited = model_from_artifact(out)[0]
    w, _ = edited.head_params()
    np.testing.assert_allclose(head["weight"], w.detach().numpy(), rtol=0, atol=0)
    # the new item's match row: its own unit vector, centred on the *training* catalog's mean,
    # times the scale of rows without a learned residual (the cold scale, where the model has one)
    vec = edited.item_vectors[30] - model.match_center
    scale = 7.0 if cold_scale else 3.0
    np.testing.assert_allclose(
        head["weight"][30, 32:], (scale * vec / vec.norm()).numpy(), rtol=1e-5, atol=1e-6
    )
    if cold_scale:
        assert edited.text_only.tolist() == [True, True] + [False] * 28 + [True]
        text_bias = edited.head_text(edited.item_vectors[30])[-1].item()
        np.testing.assert_allclose(head["bias"][30], text_bias + 0.5, rtol=1e-5, atol=1e-6)
