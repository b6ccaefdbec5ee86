"""`lite catalog add | remove | update`: change a deployed artifact's items without retraining.

A model with a text head (``--head text`` or ``text+id``) computes every item's head row from
its item-LLM vector, so an item it never saw gets a row from its text alone. An edit:

1. rebuilds the model from the artifact itself (``item_tower.safetensors``: the item-LLM
   vectors and every weight outside the rec LLM; ``encoder.safetensors``: the rec LLM), so
   the training checkpoint is not needed;
2. encodes the new or changed text with the checkpoint's item LLM (``checkpoint=``) or with the
   ONNX items encoder of :func:`~lite_export.exporters.items_encoder.export_items_encoder`
   (``encoder=``, or the artifact's own ``items_encoder/`` from ``lite export
   --items-encoder``: ONNX Runtime and tokenizers only, no PyTorch at that step), after
   checking that the encoder reproduces the artifact's own item vectors;
3. appends (``add``), retires (``remove``: bias -inf, never recommended, still accepted in
   histories) or re-encodes (``update``) items: a new item's id embedding and learned head
   residual are zero, so its input row is its adapted text and its head row the text row;
4. exports the edited model with the parent's export options, through the same validation as
   ``lite export`` (ONNX Runtime against PyTorch), checks that every untouched item keeps its
   score for histories of untouched items, records the change in the manifest (parent
   manifest's sha256, what changed, the check) and publishes the new artifact atomically.

The parent artifact is never modified.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lite_export.artifact import MANIFEST, verify_artifact

ITEM_FIELDS = ("id", "text")  # required in every new-items line; "title", "popularity" optional
OPERATIONS = ("add", "remove", "update")
#: how far an encoder may stray from the artifact's own item vectors (fp32 encoders)
ENCODER_TOLERANCE = 1e-4
#: existing items re-encoded to check an encoder before it encodes anything new
ENCODER_CHECK_ITEMS = 8


class CatalogEditError(ValueError):
    """The edit cannot be made as asked; the message says what is wrong and what to do."""


@dataclass
class NewItem:
    id: str
    text: str
    title: str
    popularity: int = 0


@dataclass
class CatalogChange:
    """What one edit did (recorded in the new manifest's ``catalog_change``)."""

    operation: str
    ids: list[str]
    parent: dict = field(default_factory=dict)
    encoder: dict | None = None
    check: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)  # encode, export (with validation), total

    def to_dict(self) -> dict:
        shown = self.ids[:20]
        return {
            "operation": self.operation,
            "count": len(self.ids),
            "ids": shown,
            "ids_truncated": len(self.ids) > len(shown),
            "parent": self.parent,
            "encoder": self.encoder,
            "untouched_items_check": self.check,
            "seconds": self.seconds,
        }


# ---------------------------------------------------------------------- inputs
def read_items_file(path: str | os.PathLike) -> list[NewItem]:
    """``new.jsonl``: one JSON object per line with ``id`` and ``text`` (the item-LLM input, as in
    the artifact's items.jsonl), optionally ``title`` (default: the text) and ``popularity``."""
    path = Path(path)
    if not path.is_file():
        raise CatalogEditError(f"items file {path} does not exist")
    items, seen = [], {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CatalogEditError(f"{path} line {lineno}: not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise CatalogEditError(f"{path} line {lineno}: expected a JSON object")
            missing = [k for k in ITEM_FIELDS if row.get(k) in (None, "")]
            if missing:
                raise CatalogEditError(
                    f"{path} line {lineno}: missing {', '.join(missing)}; every line needs "
                    '"id" and "text" (the text the item LLM reads, as in items.jsonl), e.g. '
                    '{"id": "B00X", "text": "Title: ... Brand: ..."}'
                )
            if not isinstance(row["text"], str):
                raise CatalogEditError(f"{path} line {lineno}: text must be a string")
            item_id = str(row["id"])
            if item_id in seen:
                raise CatalogEditError(
                    f"{path} line {lineno}: id {item_id!r} is repeated (first on line "
                    f"{seen[item_id]}); give each item once"
                )
            seen[item_id] = lineno
            try:
                pop = int(row.get("popularity", 0))
            except (TypeError, ValueError):
                raise CatalogEditError(
                    f"{path} line {lineno}: popularity must be an integer"
                ) from None
            items.append(NewItem(item_id, row["text"], str(row.get("title", row["text"])), pop))
    if not items:
        raise CatalogEditError(f"{path} has no items")
    return items


# ---------------------------------------------------------------------- the model
def model_from_artifact(art: str | os.PathLike):
    """The PyTorch model an artifact was exported from, rebuilt from the artifact alone (fp32;
    an fp16/bf16 export gives its rounded rec-LLM weights). Needs a text-head artifact."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel

    from lite_export.catalog import ItemCatalog
    from lite_export.exporters.onnx import ITEM_TOWER_FILE
    from lite_export.model.config import LiteConfig
    from lite_export.model.lite_llm4rec import LiteLLM4Rec

    art = Path(art)
    manifest = verify_artifact(art)
    config = LiteConfig.from_dict(manifest["model"])
    if config.head == "id":
        raise CatalogEditError(
            f"{art} was exported from a model with an id-only head (head='id'): each item's "
            "head row was learned in training, so an item it never saw has none. Train with "
            "`lite train --head text+id` (or --head text), export, and edit that artifact; or "
            "retrain with the new items"
        )
    if not (art / ITEM_TOWER_FILE).is_file():
        raise CatalogEditError(
            f"{art} has no {ITEM_TOWER_FILE} (exported by an older lite-export); re-export its "
            "checkpoint with `lite export` to edit its catalog"
        )
    catalog = ItemCatalog.read_jsonl(art / "items.jsonl")
    rec_cfg = dict(manifest["rec_llm_config"])
    backbone = AutoModel.from_config(AutoConfig.for_model(rec_cfg.pop("model_type"), **rec_cfg))
    tower = load_file(str(art / ITEM_TOWER_FILE))
    vectors = tower.pop("item_vectors")
    encoder = load_file(str(art / "encoder.safetensors"))
    state = {k: v.float() for k, v in encoder.items() if k.startswith("backbone.")} | tower
    model = LiteLLM4Rec(config, catalog, backbone, vectors)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CatalogEditError(
            f"{art}: the weights do not match its manifest (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}); re-export the checkpoint"
        )
    return model.to(torch.float32).eval(), manifest


def rebuild(model, catalog, vectors, sources: Sequence[int | None]):
    """A model for ``catalog`` (N' items): item ``j`` keeps the learned rows of old item
    ``sources[j]`` (id embedding, head residual), or zeros where it is None (a new item);
    ``vectors`` [N', Di] are the item-LLM vectors of the new catalog."""
    import torch

    from lite_export.model.lite_llm4rec import LiteLLM4Rec

    n_new = len(catalog)
    config = replace(model.config, num_items=n_new)
    fresh = LiteLLM4Rec(config, catalog, model.backbone, torch.as_tensor(vectors).float())
    src = torch.tensor([-1 if s is None else s for s in sources], dtype=torch.long)
    known = src >= 0
    state = {}
    for name, value in model.state_dict().items():
        if name.startswith("backbone."):
            continue
        if name == "id_embedding.weight":  # [N + 1, d], the pad row last and zero
            rows = torch.zeros(n_new + 1, value.shape[1], dtype=value.dtype)
            rows[:n_new][known] = value[src[known]]
            state[name] = rows
        elif name in ("head.weight", "head.bias"):  # the learned residual ("text+id")
            rows = torch.zeros((n_new, *value.shape[1:]), dtype=value.dtype)
            rows[known] = value[src[known]]
            state[name] = rows
        elif name == "text_only":  # head_cold_scale: a new item has no learned residual
            rows = torch.ones(n_new, dtype=torch.bool)
            rows[known] = value[src[known]]
            state[name] = rows
        else:
            state[name] = value
    missing, unexpected = fresh.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("backbone.")]
    if missing or unexpected:  # pragma: no cover - a new parameter this function does not map
        raise RuntimeError(f"catalog edit: unmapped weights {missing + unexpected}")
    return fresh.eval()


# ---------------------------------------------------------------------- encoders
def checkpoint_encoder(checkpoint: str | os.PathLike) -> tuple[Callable, dict]:
    """Texts -> item-LLM vectors with a training checkpoint's item LLM (PyTorch)."""
    from lite_export.artifact import read_checkpoint_meta
    from lite_export.model.config import LiteConfig
    from lite_export.model.item_llm import encode_texts, load_item_llm

    ckpt = Path(checkpoint)
    meta = read_checkpoint_meta(ckpt)
    cfg = LiteConfig.from_dict(meta["model"])
    if not cfg.uses_item_llm:
        raise CatalogEditError(f"checkpoint {ckpt} has no item LLM (an id-only model)")
    source = str(ckpt / "item_llm") if meta.get("item_llm_saved") else cfg.item_llm
    llm, tokenizer = load_item_llm(source)

    def encode(texts: list[str]) -> np.ndarray:
        return encode_texts(llm, tokenizer, texts, cfg.item_llm_max_tokens).numpy()

    return encode, {"kind": "checkpoint", "path": str(ckpt.resolve()), "item_llm": cfg.item_llm}


def onnx_encoder(export_dir: str | os.PathLike) -> tuple[Callable, dict]:
    """Texts -> item-LLM vectors with an exported items encoder (ONNX Runtime, no PyTorch)."""
    from lite_export.exporters.items_encoder import ItemsEncoder

    enc = ItemsEncoder.from_dir(export_dir)
    info = {"kind": "items_encoder.onnx", "path": str(Path(export_dir).resolve())}
    return (lambda texts: np.asarray(enc.encode(list(texts)), dtype=np.float32)), info


def check_encoder(encode: Callable, model, where: str) -> dict:
    """Re-encode a few of the artifact's own items: the encoder must give back their vectors
    (else it is another item LLM, or another text template, and new rows would be wrong)."""
    catalog = model.catalog
    n = len(catalog)
    idx = np.unique(np.linspace(0, n - 1, min(ENCODER_CHECK_ITEMS, n)).astype(int))
    got = np.asarray(encode([catalog.texts[i] for i in idx]), dtype=np.float64)
    ref = model.item_vectors[:-1][idx].double().numpy()
    if got.shape != ref.shape:
        raise CatalogEditError(
            f"{where} gives {got.shape[-1]}-wide vectors but the artifact's item LLM gives "
            f"{ref.shape[-1]}: it is not the item LLM this model was trained with"
        )
    err = float((np.abs(got - ref) / np.maximum(1.0, np.abs(ref))).max())
    if err > ENCODER_TOLERANCE:
        raise CatalogEditError(
            f"{where} does not reproduce the artifact's item vectors (worst relative error "
            f"{err:.2e} > {ENCODER_TOLERANCE:g} on {len(idx)} of its items): pass the checkpoint "
            "the artifact was exported from, or the items encoder exported from it"
        )
    return {"items": int(len(idx)), "max_rel_error": err, "tolerance": ENCODER_TOLERANCE}


def _encoder(art: Path, manifest: dict, checkpoint, encoder) -> tuple[Callable, dict]:
    from lite_export.exporters.onnx import ITEMS_ENCODER_DIR

    if checkpoint is not None and encoder is not None:
        raise CatalogEditError("pass --checkpoint or --encoder, not both")
    if encoder is not None:
        return onnx_encoder(encoder)
    if checkpoint is None and (art / ITEMS_ENCODER_DIR / "items_encoder.json").is_file():
        return onnx_encoder(art / ITEMS_ENCODER_DIR)  # exported with --items-encoder
    if checkpoint is None:
        source = manifest.get("source_checkpoint")
        if source and Path(source).is_dir():
            checkpoint = source
        else:
            there = f" ({source} is no longer there)" if source else ""
            raise CatalogEditError(
                "new text needs the model's item LLM: pass --checkpoint CKPT (the training "
                "checkpoint) or --encoder DIR (its items encoder, written by "
                "lite_export.exporters.items_encoder.export_items_encoder), or export the "
                f"artifact with `lite export --items-encoder`{there}"
            )
    return checkpoint_encoder(checkpoint)


# ---------------------------------------------------------------------- the edits
def _plan(op: str, model, items: list[NewItem] | None, ids: list[str] | None):
    """(new catalog, which texts to encode as {new index: text}, sources, changed ids)."""
    from lite_export.catalog import ItemCatalog

    cat = model.catalog
    n = len(cat)
    retired = list(cat.retired or [False] * n)
    if op == "add":
        clash = [it.id for it in items if it.id in cat]
        if clash:
            shown = ", ".join(repr(c) for c in clash[:10])
            raise CatalogEditError(
                f"{len(clash)} of the new items are already in the catalog ({shown}); "
                "`lite catalog update` changes an existing item's text"
            )
        new = ItemCatalog(
            ids=cat.ids + [it.id for it in items],
            titles=cat.titles + [it.title for it in items],
            popularity=cat.popularity + [it.popularity for it in items],
            texts=cat.texts + [it.text for it in items],
            retired=retired + [False] * len(items),
        )
        encode = {n + j: it.text for j, it in enumerate(items)}
        return new, encode, list(range(n)) + [None] * len(items), [it.id for it in items]
    if op == "update":
        unknown = [it.id for it in items if it.id not in cat]
        if unknown:
            raise CatalogEditError(_unknown_message(unknown, "update"))
        texts, titles = list(cat.texts), list(cat.titles)
        encode = {}
        for it in items:
            i = cat.index_of(it.id)
            texts[i], titles[i], encode[i] = it.text, it.title, it.text
        new = ItemCatalog(list(cat.ids), titles, list(cat.popularity), texts, retired)
        return new, encode, list(range(n)), [it.id for it in items]
    # remove
    if not ids:
        raise CatalogEditError("no ids to remove; pass --ids ID,ID,... or --ids-file FILE")
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise CatalogEditError(f"ids given more than once: {', '.join(map(repr, dupes[:10]))}")
    unknown = [i for i in ids if i not in cat]
    if unknown:
        raise CatalogEditError(_unknown_message(unknown, "remove"))
    gone = [i for i in ids if retired[cat.index_of(i)]]
    if gone:
        raise CatalogEditError(
            f"already removed from the catalog: {', '.join(map(repr, gone[:10]))}"
        )
    for i in ids:
        retired[cat.index_of(i)] = True
    new = ItemCatalog(
        list(cat.ids), list(cat.titles), list(cat.popularity), list(cat.texts), retired
    )
    return new, {}, list(range(n)), list(ids)


def _unknown_message(unknown: list[str], op: str) -> str:
    shown = ", ".join(repr(u) for u in unknown[:10])
    more = f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""
    hint = "`lite catalog add` adds new items" if op == "update" else "check the ids"
    return f"not in the catalog: {shown}{more}; {hint} (ids exactly as in items.jsonl)"


def edit_catalog(
    art: str | os.PathLike,
    out: str | os.PathLike,
    operation: str,
    *,
    items: list[NewItem] | None = None,
    ids: list[str] | None = None,
    checkpoint: str | os.PathLike | None = None,
    encoder: str | os.PathLike | None = None,
    force: bool = False,
    log=print,
) -> Path:
    """Write ``out``: the artifact ``art`` with ``items`` added (``"add"``), re-encoded
    (``"update"``) or ``ids`` removed (``"remove"``); see the module docstring."""
    import torch

    from lite_export.artifact import check_output_dir
    from lite_export.exporters.onnx import ITEMS_ENCODER_DIR, export_artifact

    if operation not in OPERATIONS:
        raise CatalogEditError(f"operation must be one of {OPERATIONS}, got {operation!r}")
    say = log or (lambda _m: None)
    t0 = time.perf_counter()
    seconds: dict = {}
    art = Path(art)
    target = check_output_dir(out, "artifact", force=force, sources=[art])
    model, manifest = model_from_artifact(art)
    opts_manifest = manifest.get("export_options", {})
    if operation == "remove" and opts_manifest.get("catalog_precision"):
        raise CatalogEditError(
            f"{art} has a quantized catalog (--catalog-precision "
            f"{opts_manifest['catalog_precision']}); removing items from it is not supported: "
            "edit an fp32 export, then quantize"
        )
    new_catalog, to_encode, sources, changed = _plan(operation, model, items, ids)
    k = int(manifest["dims"]["k"])
    live = len(new_catalog) - sum(new_catalog.retired or [])
    if live < k + 1:
        raise CatalogEditError(
            f"after this edit {live} items can be recommended, fewer than the artifact's k={k} "
            "plus one; re-export with a smaller --k or keep more items"
        )
    left = [name for name in ("model.plan", "triton") if (art / name).exists()]
    if left:
        say(
            f"note: {art} also holds {' and '.join(left)}; the edited artifact has the ONNX "
            "graphs only: build TensorRT plans and Triton repositories again from it"
        )
    vectors = model.item_vectors[:-1].detach().clone()
    enc_info = None
    if to_encode:
        encode, enc_info = _encoder(art, manifest, checkpoint, encoder)
        enc_info["check"] = check_encoder(encode, model, enc_info["path"])
        say(f"encoding {len(to_encode):,} item texts ({enc_info['kind']})")
        t_enc = time.perf_counter()
        new_vectors = torch.as_tensor(np.asarray(encode(list(to_encode.values()))))
        seconds["encode"] = round(time.perf_counter() - t_enc, 3)
        grown = torch.zeros(len(new_catalog), vectors.shape[1])
        grown[: vectors.shape[0]] = vectors
        grown[list(to_encode)] = new_vectors.float()
        vectors = grown
    edited = rebuild(model, new_catalog, vectors, sources)
    changed_set = set(changed)
    was_retired = model.catalog.retired or [False] * len(model.catalog)
    untouched = [
        i
        for i, item_id in enumerate(model.catalog.ids)
        if item_id not in changed_set and not was_retired[i]
    ]
    change = CatalogChange(
        operation,
        changed,
        parent={
            "path": str(art.resolve()),
            "manifest_sha256": hashlib.sha256((art / MANIFEST).read_bytes()).hexdigest(),
            "num_items": len(model.catalog),
        },
        encoder=enc_info,
        seconds=seconds,
    )

    def post_build(tmp: Path, new_manifest: dict) -> list[str]:
        change.check = check_untouched(art, tmp, manifest, untouched)
        files = []
        if manifest.get("items_encoder"):  # the same item LLM: its export carries over
            shutil.copytree(art / ITEMS_ENCODER_DIR, tmp / ITEMS_ENCODER_DIR)
            new_manifest["items_encoder"] = manifest["items_encoder"]
            files = [f"{ITEMS_ENCODER_DIR}/{f}" for f in manifest["items_encoder"]["files"]]
        seconds["export"] = round(time.perf_counter() - t_export, 3)
        seconds["total"] = round(time.perf_counter() - t0, 3)
        new_manifest["source_checkpoint"] = manifest.get("source_checkpoint")
        new_manifest["catalog_change"] = change.to_dict()
        new_manifest["catalog_history"] = [
            *manifest.get("catalog_history", []),
            {k: v for k, v in change.to_dict().items() if k != "untouched_items_check"},
        ]
        return files

    ckpt_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.ckpt.", dir=target.parent))
    try:
        ckpt = edited.save_pretrained(ckpt_dir / "model")
        t_export = time.perf_counter()
        say(f"{operation}: {len(changed):,} items; exporting {len(new_catalog):,} items")
        return export_artifact(
            ckpt,
            target,
            export_options_of(manifest),
            force=force,
            log=log,
            post_build=post_build,
            sources=[art],
        )
    finally:
        shutil.rmtree(ckpt_dir, ignore_errors=True)


def export_options_of(manifest: dict):
    """The ExportOptions an artifact was written with (K, precision, opset, shapes, ...)."""
    from lite_export.exporters.onnx import ExportOptions

    eo = manifest.get("export_options", {})
    prof = manifest.get("profile", {}).get("item_ids", {})
    shape = lambda key: tuple(prof[key]) if key in prof else None  # noqa: E731
    return ExportOptions(
        k=int(eo.get("k", manifest["dims"]["k"])),
        precision=eo.get("precision", "fp32"),
        opset=int(eo.get("opset", manifest.get("opset", 18))),
        external_data_threshold=int(eo.get("external_data_threshold", 1_500_000_000)),
        optimize=bool(eo.get("ort_optimized", True)),
        min_shape=shape("min"),
        opt_shape=shape("opt"),
        max_shape=shape("max"),
        max_exclude=eo.get("max_exclude"),
        catalog_precision=eo.get("catalog_precision"),
    )


def check_untouched(parent: Path, tmp: Path, manifest: dict, untouched: list[int]) -> dict:
    """Histories of untouched items, scored by both artifacts' user encoder and head: every
    untouched item's score must agree within the export dtype's tolerance."""
    from safetensors.numpy import load_file

    from lite_export.data.batching import pad_histories
    from lite_export.exporters.onnx import TOLERANCE, ExportValidationError, _session

    precision = manifest["export_options"].get("precision", "fp32")
    max_hist = int(manifest["dims"]["max_history"])
    n_old = int(manifest["dims"]["num_items"])
    n_new = sum(1 for line in (tmp / "items.jsonl").read_text().splitlines() if line.strip())
    rng = np.random.default_rng(0)
    pool = np.asarray(untouched)
    lengths = [1, 3, max_hist, *rng.integers(1, max_hist + 1, size=13)]
    hists = [list(rng.choice(pool, size=min(int(n), len(pool)), replace=False)) for n in lengths]
    cols = pool  # untouched items keep their index: new items are appended
    scores = []
    for root, n in ((parent, n_old), (tmp, n_new)):
        head = load_file(str(root / "head.safetensors"))
        ids = pad_histories(hists, max_hist, n).numpy()
        (users,) = _session(root / "user_encoder.onnx", precision).run(
            ["user_vectors"], {"item_ids": ids}
        )
        w, b = head["weight"][cols].astype(np.float64), head["bias"][cols].astype(np.float64)
        scores.append(users.astype(np.float64) @ w.T + b)
    diff = float(np.abs(scores[0] - scores[1]).max())
    tol = TOLERANCE[precision]
    bound = tol * (1.0 + float(np.abs(scores[0]).max()))
    res = {
        "histories": len(hists),
        "items": int(len(cols)),
        "max_abs_score_diff": diff,
        "tolerance": tol,
        "ok": diff <= bound,
    }
    if not res["ok"]:
        raise ExportValidationError("untouched items (parent vs edited artifact)", res)
    return res
