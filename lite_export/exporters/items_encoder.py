"""Item text -> item vector outside Python: the item LLM exported with Hugging Face Optimum.

``export_items_encoder(CKPT, OUT)`` exports a checkpoint's item LLM with Optimum's
``feature-extraction`` export and appends the masked mean pooling to the graph, so the ONNX
model returns the item vector itself (the same vector as ``item_vectors.safetensors``)::

    OUT/items_encoder.onnx        input_ids, attention_mask (+ token_type_ids / position_ids when
                                  the item LLM takes them) [B, T] int64
                                  -> item_vector [B, d_item] float32   (masked mean, in the graph)
                                  -> last_hidden_state [B, T, d_item]  (Optimum's own output)
    OUT/items_tokenizer/          the item LLM's tokenizer; tokenizer.json has truncation at the
                                  checkpoint's ``item_llm_max_tokens`` and padding to the batch's
                                  longest text built in, so ``Tokenizer.from_file(...)`` (Python,
                                  Rust, C++ or JS bindings of Hugging Face tokenizers) gives the
                                  graph's inputs directly
    OUT/items_encoder.json        input/output names, pooling, max tokens, opset and parity report

Every export is validated: ONNX Runtime encodes the checkpoint's own item texts (all of them up
to 512 items, a seeded sample of 512 above that) and must reproduce ``item_vectors.safetensors``
within 1e-4 (absolute, or relative to the value where it is above 1); otherwise
:class:`ItemsEncoderParityError` names the worst item.

``encode_items_onnx(OUT, texts)`` is the refresh path: changed item text -> new item vectors
with ONNX Runtime and ``tokenizers`` only (no torch, no transformers, no Optimum).

Exporting needs the ``optimum`` extra (``pip install "lite-export[optimum]"``); encoding needs
only the ``onnx`` extra.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ENCODER_FILE = "items_encoder.onnx"
TOKENIZER_DIR = "items_tokenizer"
SIDECAR_FILE = "items_encoder.json"
OUTPUT_NAME = "item_vector"
HIDDEN_NAME = "last_hidden_state"
SIDECAR_FORMAT = "lite-export/items-encoder"
SIDECAR_VERSION = 1
#: everything the export writes in its out dir (the sidecar marks them as its own)
OUTPUTS = (ENCODER_FILE, f"{ENCODER_FILE}.data", SIDECAR_FILE, TOKENIZER_DIR)
#: parity tolerance: |onnx - torch| / max(1, |torch|) (fp32)
DEFAULT_TOLERANCE = 1e-4
#: the oldest opset accepted (torch exports scaled_dot_product_attention from opset 14)
MIN_OPSET = 14
#: catalogs up to this size are checked item by item; larger ones on a seeded sample this big
DEFAULT_MAX_CHECK = 512
#: above this many bytes the graph's weights go to ONNX external data (protobuf stops at 2 GiB)
EXTERNAL_DATA_THRESHOLD = 1_500_000_000

_OPTIMUM_HINT = (
    'pip install "lite-export[optimum]" (adds optimum-onnx 0.1.0 and optimum 2.1.0, about 3.5 MB '
    "of pure Python, on top of the onnx extra's onnx + onnxruntime; optimum-onnx pins "
    "transformers<4.58, which lite-export's transformers==4.57.6 satisfies)"
)
_ORT_HINT = 'pip install "lite-export[onnx]" (onnx + onnxruntime, CPU)'


class ItemsEncoderError(RuntimeError):
    """The item LLM could not be exported or run (nothing is left half-written in OUT)."""


class ItemsEncoderParityError(ItemsEncoderError):
    """The exported encoder does not reproduce the checkpoint's item vectors.

    ``report`` holds the numbers: items checked, max absolute and scaled differences, the worst
    item (index, id, text) and the tolerance.
    """

    def __init__(self, message: str, report: dict[str, Any]):
        self.report = report
        super().__init__(message)


# --------------------------------------------------------------------------- export


def export_items_encoder(
    checkpoint_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    opset: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    max_check: int = DEFAULT_MAX_CHECK,
    batch_size: int = 64,
    force: bool = False,
) -> dict[str, Any]:
    """Export the checkpoint's item LLM to ``out_dir/items_encoder.onnx`` and validate it.

    Args:
        checkpoint_dir: a training checkpoint (``lite train --out``) whose model has an item LLM.
        out_dir: created if needed; ``items_encoder.onnx`` (+ ``.data``), ``items_encoder.json``
            and ``items_tokenizer/`` are written there, nothing else is touched. Checked before
            any work: an earlier export there (its ``items_encoder.json`` sidecar says so) is
            replaced only with ``force``; those names holding anything else, or the checkpoint,
            are refused (:class:`~lite_export.artifact.OutputDirError`).
        opset: ONNX opset for Optimum's export (None: Optimum's default for the architecture).
        tolerance: allowed ``|onnx - torch| / max(1, |torch|)`` over the checked item vectors.
        max_check: check every item up to this many, else a seeded random sample of this size.
        batch_size: texts per ONNX Runtime call during validation.
        force: replace an earlier items-encoder export in ``out_dir``.

    Returns:
        A report for the artifact manifest: files (relative to ``out_dir``), opset, input and
        output names, pooling, max tokens, d_item and the parity numbers.

    Raises:
        ImportError: Optimum, onnx or onnxruntime is not installed (says what to install).
        ItemsEncoderError: the checkpoint has no usable item LLM, or the export failed.
        ItemsEncoderParityError: ONNX Runtime does not reproduce ``item_vectors.safetensors``.
        OutputDirError: ``out_dir`` holds something the export must not replace (see above);
            :class:`~lite_export.artifact.OutputExistsError` for an earlier export, no ``force``.
    """
    _check_outputs(Path(out_dir), checkpoint_dir, force)
    if opset is not None and opset < MIN_OPSET:
        raise ItemsEncoderError(
            f"opset {opset} is too old for the items encoder: use opset >= {MIN_OPSET} "
            "(scaled-dot-product attention and the pooling's ReduceSum need it) or leave it unset"
        )
    main_export = _import_optimum()
    import onnx

    ckpt = Path(checkpoint_dir)
    meta = _read_meta(ckpt)
    model_cfg = meta.get("model", {})
    max_tokens = int(model_cfg.get("item_llm_max_tokens", 64))
    source = _item_llm_source(ckpt, meta)
    texts, ids = _read_item_texts(ckpt)
    vectors = _read_item_vectors(ckpt, len(texts))

    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".items_encoder.", dir=out))
    ok = False
    try:
        raw_dir = tmp / "optimum"
        _run_optimum_export(main_export, source, raw_dir, opset)
        stage = tmp / "stage"
        stage.mkdir()
        graph = _add_pooling(onnx, raw_dir / "model.onnx", stage / ENCODER_FILE)
        _save_tokenizer(source, stage / TOKENIZER_DIR, max_tokens)
        sidecar = {
            "format": SIDECAR_FORMAT,
            "format_version": SIDECAR_VERSION,
            "onnx": ENCODER_FILE,
            "tokenizer": f"{TOKENIZER_DIR}/tokenizer.json",
            "inputs": graph["inputs"],
            "output": OUTPUT_NAME,
            "outputs": [OUTPUT_NAME, HIDDEN_NAME],
            "pooling": "masked mean of last_hidden_state over attention_mask, inside the graph",
            "item_llm": model_cfg.get("item_llm"),
            "max_tokens": max_tokens,
            "d_item": graph["d_item"],
            "opset": graph["opset"],
        }
        (stage / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2))

        parity = _check_parity(
            ItemsEncoder.from_dir(stage),
            texts,
            ids,
            vectors,
            tolerance,
            max_check,
            batch_size,
            finetuned=bool(model_cfg.get("finetune_item_llm")),
        )
        sidecar["parity"] = parity
        (stage / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2))

        files = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())
        _check_outputs(out, ckpt, force)  # again, the last line of defence: nothing else goes
        for name in OUTPUTS:
            old = out / name
            if old.is_dir():
                shutil.rmtree(old)
            elif old.exists():
                old.unlink()
        for entry in stage.iterdir():
            os.replace(entry, out / entry.name)
        ok = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not ok and created and not any(out.iterdir()):
            out.rmdir()

    return {
        "file": ENCODER_FILE,
        "files": files,
        "opset": graph["opset"],
        "inputs": graph["inputs"],
        "output": OUTPUT_NAME,
        "pooling": sidecar["pooling"],
        "item_llm": model_cfg.get("item_llm"),
        "max_tokens": max_tokens,
        "d_item": graph["d_item"],
        "parity": parity,
    }


def _import_optimum():
    """Optimum's ``main_export``, or an ImportError that says what to install."""
    try:
        from optimum.exporters.onnx import main_export
    except ImportError as exc:
        raise ImportError(
            f"exporting the item LLM to ONNX needs Hugging Face Optimum ({exc}): {_OPTIMUM_HINT}"
        ) from None
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"exporting the item LLM needs onnx and onnxruntime ({exc}): {_OPTIMUM_HINT}"
        ) from None
    return main_export


def _check_outputs(out: Path, checkpoint: str | os.PathLike, force: bool) -> None:
    """Refuse to replace what the export did not write: its outputs in ``out`` may be replaced
    only when the sidecar there is an items-encoder sidecar (and ``force``), never when one of
    them is, or contains, the checkpoint."""
    from lite_export.artifact import OutputDirError, OutputExistsError

    if out.exists() and not out.is_dir():
        raise OutputDirError(
            f"{out} is a file, not a directory; choose another out_dir, or move it away yourself"
        )
    present = [out / n for n in OUTPUTS if (out / n).exists() or (out / n).is_symlink()]
    if not present:
        return
    src = Path(checkpoint).resolve()
    for p in present:
        real = p.resolve()
        if real == src or real in src.parents:
            raise OutputDirError(
                f"{p} is, or contains, the checkpoint {checkpoint} this export reads: writing "
                "there would destroy it, so it is refused even with force; choose another out_dir"
            )
    try:
        sidecar = json.loads((out / SIDECAR_FILE).read_text())
    except (OSError, ValueError):
        sidecar = None
    if not (isinstance(sidecar, dict) and sidecar.get("format") == SIDECAR_FORMAT):
        names = ", ".join(f"{p.name}/" if p.is_dir() else p.name for p in present)
        them = "it" if len(present) == 1 else "them"
        raise OutputDirError(
            f"{out} holds {names}, not from an items-encoder export of lite-export (no "
            f"{SIDECAR_FILE} of its own), which this export would replace; choose another "
            f"out_dir, or move {them} away yourself"
        )
    if not force:
        raise OutputExistsError(
            f"{out} already holds an items-encoder export ({SIDECAR_FILE}); pass force=True "
            f"(--force) to replace it (nothing else in {out} is touched)"
        )


def _read_meta(ckpt: Path) -> dict[str, Any]:
    cfg = ckpt / "config.json"
    if not cfg.is_file():
        raise ItemsEncoderError(
            f"{ckpt} is not a lite-export checkpoint (no config.json); "
            f"train one with `lite train --out {ckpt}`"
        )
    try:
        return json.loads(cfg.read_text())
    except json.JSONDecodeError as exc:
        raise ItemsEncoderError(
            f"{cfg} is not valid JSON ({exc}); re-save the checkpoint"
        ) from None


def _item_llm_source(ckpt: Path, meta: dict[str, Any]) -> str:
    """Where the checkpoint's item LLM (weights + tokenizer) lives: a local directory or hub id."""
    from lite_export.model.config import TINY_RANDOM_ITEM_LLM

    cfg = meta.get("model", {})
    name = cfg.get("item_llm")
    if name is None:
        raise ItemsEncoderError(
            f"checkpoint {ckpt} has no item LLM (item_llm=None: an item-id-only model); "
            "there is no text encoder to export"
        )
    saved = ckpt / "item_llm"
    if saved.is_dir():
        return str(saved)
    if meta.get("item_llm_saved") or name == TINY_RANDOM_ITEM_LLM or cfg.get("finetune_item_llm"):
        why = (
            "its weights exist only there (random init)"
            if name == TINY_RANDOM_ITEM_LLM
            else "it was saved there (fine-tuned)"
        )
        raise ItemsEncoderError(
            f"checkpoint {ckpt} is missing its item LLM directory {saved} ({name!r}: {why}); "
            "copy the complete checkpoint or re-train it"
        )
    from lite_export.model.item_llm import resolve_item_llm_path

    return resolve_item_llm_path(name)  # alias -> local path (ImportError names the extra)


def _read_item_texts(ckpt: Path) -> tuple[list[str], list[str]]:
    from lite_export.catalog import ItemCatalog

    path = ckpt / "items.jsonl"
    if not path.is_file():
        raise ItemsEncoderError(f"checkpoint {ckpt} is missing items.jsonl; re-save the checkpoint")
    try:
        catalog = ItemCatalog.read_jsonl(path)
    except ValueError as exc:
        raise ItemsEncoderError(str(exc)) from None
    if not len(catalog):
        raise ItemsEncoderError(f"{path} holds no items")
    if not catalog.texts:
        raise ItemsEncoderError(
            f"{path} has items without a 'text'; the item LLM's vectors are checked against "
            "each item's text: re-save the checkpoint"
        )
    return catalog.texts, catalog.ids


def _read_item_vectors(ckpt: Path, n: int) -> np.ndarray:
    from safetensors.numpy import load_file

    path = ckpt / "item_vectors.safetensors"
    if not path.is_file():
        raise ItemsEncoderError(
            f"checkpoint {ckpt} is missing item_vectors.safetensors (the reference the exported "
            "encoder is validated against); re-save the checkpoint"
        )
    table = load_file(str(path)).get("item_vectors")
    if table is None or table.ndim != 2 or table.shape[0] != n:
        shape = None if table is None else tuple(table.shape)
        raise ItemsEncoderError(
            f"{path}: expected key 'item_vectors' of shape [{n}, d_item] (one row per line of "
            f"items.jsonl), found {shape}"
        )
    return table.astype(np.float32, copy=False)


def _run_optimum_export(main_export, source: str, raw_dir: Path, opset: int | None) -> None:
    """Optimum's feature-extraction export of ``source`` into ``raw_dir/model.onnx``."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings of the torch.jit trace
            main_export(
                source,
                output=raw_dir,
                task="feature-extraction",
                opset=opset,
                library_name="transformers",  # plain AutoModel, not sentence-transformers
                do_validation=False,  # our own validation below is stricter (real texts, pooled)
                device="cpu",
            )
    except ImportError:
        raise
    except Exception as exc:
        raise ItemsEncoderError(
            f"Optimum could not export the item LLM {source!r} (feature-extraction, opset "
            f"{opset or 'default'}): {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    if not (raw_dir / "model.onnx").is_file():
        raise ItemsEncoderError(
            f"Optimum exported {source!r} without a model.onnx (found "
            f"{sorted(p.name for p in raw_dir.iterdir())}); this architecture is not supported"
        )


def _add_pooling(onnx, src: Path, dst: Path) -> dict[str, Any]:
    """Append masked mean pooling to Optimum's graph: ``item_vector = sum(h*m) / max(sum(m), 1)``.

    The arithmetic is ``encode_texts``' own: mask cast to float, multiply, sum over tokens,
    divide by the token count clamped at 1.
    """
    from onnx import TensorProto, helper

    model = onnx.load(str(src))  # pulls in external data next to src, if any
    graph = model.graph
    inputs = [i.name for i in graph.input]
    outputs = {o.name: o for o in graph.output}
    if HIDDEN_NAME not in outputs or "attention_mask" not in inputs:
        raise ItemsEncoderError(
            f"Optimum's graph has inputs {inputs} and outputs {list(outputs)}; pooling needs "
            f"'attention_mask' and '{HIDDEN_NAME}'"
        )
    opset = next(
        (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        None,
    )
    if opset is None or opset < MIN_OPSET:
        raise ItemsEncoderError(f"items encoder needs opset >= {MIN_OPSET}, the export has {opset}")
    hidden_type = outputs[HIDDEN_NAME].type.tensor_type
    dims = hidden_type.shape.dim
    d_item = dims[2].dim_value if len(dims) == 3 and dims[2].HasField("dim_value") else None
    batch_dim = dims[0].dim_param if len(dims) == 3 and dims[0].dim_param else "batch_size"

    p = "lite_pool/"
    hidden = HIDDEN_NAME
    nodes = []
    if hidden_type.elem_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [hidden], [p + "hidden_f"], to=TensorProto.FLOAT))
        hidden = p + "hidden_f"
    graph.initializer.extend(
        [
            helper.make_tensor(p + "axis_last", TensorProto.INT64, [1], [-1]),
            helper.make_tensor(p + "axis_tokens", TensorProto.INT64, [1], [1]),
            helper.make_tensor(p + "one", TensorProto.FLOAT, [], [1.0]),
        ]
    )
    nodes += [
        helper.make_node("Cast", ["attention_mask"], [p + "mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", [p + "mask_f", p + "axis_last"], [p + "mask"]),  # [B,T,1]
        helper.make_node("Mul", [hidden, p + "mask"], [p + "masked"]),
        helper.make_node(
            "ReduceSum", [p + "masked", p + "axis_tokens"], [p + "sum"], keepdims=0
        ),  # [B,d]
        helper.make_node(
            "ReduceSum", [p + "mask", p + "axis_tokens"], [p + "count"], keepdims=0
        ),  # [B,1]
        helper.make_node("Max", [p + "count", p + "one"], [p + "count_c"]),
        helper.make_node("Div", [p + "sum", p + "count_c"], [OUTPUT_NAME]),
    ]
    for i, node in enumerate(nodes):
        node.name = f"{p}{i}_{node.op_type}"
    graph.node.extend(nodes)
    out_vi = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch_dim, d_item])
    graph.output.insert(0, out_vi)

    big = model.ByteSize() > EXTERNAL_DATA_THRESHOLD
    onnx.save_model(
        model,
        str(dst),
        save_as_external_data=big,
        all_tensors_to_one_file=True,
        location=f"{dst.name}.data" if big else None,
    )
    onnx.checker.check_model(str(dst))
    return {"inputs": inputs, "opset": int(opset), "d_item": d_item}


def _save_tokenizer(source: str, dst: Path, max_tokens: int) -> None:
    """Save the item LLM's tokenizer with truncation and padding built into tokenizer.json.

    The settings are the ones ``encode_texts`` passes per call (truncate at ``max_tokens``,
    pad to the longest text of the batch, the pad token ``load_item_llm`` picks).
    """
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ItemsEncoderError(
            f"could not load the item LLM's tokenizer {source!r}: {exc}"
        ) from None
    if not tok.is_fast:
        raise ItemsEncoderError(
            f"the item LLM's tokenizer {source!r} has no fast (tokenizers) version, so there is "
            "no tokenizer.json to run outside Python"
        )
    if tok.pad_token is None:  # as load_item_llm does
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.save_pretrained(str(dst))
    backend = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    backend.enable_truncation(
        max_length=max_tokens, strategy="longest_first", direction=tok.truncation_side
    )
    backend.enable_padding(
        direction=tok.padding_side,
        pad_id=tok.pad_token_id,
        pad_type_id=tok.pad_token_type_id,
        pad_token=tok.pad_token,
    )
    backend.save(str(dst / "tokenizer.json"))


def _check_parity(
    encoder: ItemsEncoder,
    texts: list[str],
    ids: list[str],
    vectors: np.ndarray,
    tolerance: float,
    max_check: int,
    batch_size: int,
    finetuned: bool = False,
) -> dict[str, Any]:
    """Encode the checkpoint's item texts with ONNX Runtime and compare with its item vectors."""
    n = len(texts)
    if n <= max_check:
        idx = np.arange(n)
    else:
        idx = np.sort(np.random.default_rng(0).choice(n, size=max_check, replace=False))
    got = encoder.encode([texts[i] for i in idx], batch_size=batch_size)
    ref = vectors[idx]
    report: dict[str, Any] = {
        "items_checked": int(len(idx)),
        "items_total": n,
        "tolerance": tolerance,
        "metric": "max |onnx - torch| / max(1, |torch|)",
    }
    if got.shape != ref.shape:
        report.update(passed=False, onnx_shape=list(got.shape), torch_shape=list(ref.shape))
        raise ItemsEncoderParityError(
            f"items encoder output {tuple(got.shape)} does not match the checkpoint's item "
            f"vectors {tuple(ref.shape)}: item_vectors.safetensors was not made by this item LLM",
            report,
        )
    abs_diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    scaled = abs_diff / np.maximum(1.0, np.abs(ref.astype(np.float64)))
    finite = bool(np.isfinite(got).all())
    row, col = np.unravel_index(int(np.argmax(scaled)), scaled.shape) if scaled.size else (0, 0)
    worst = int(idx[row]) if scaled.size else None
    report.update(
        max_abs_diff=float(abs_diff.max()) if abs_diff.size else 0.0,
        max_scaled_diff=float(scaled.max()) if scaled.size else 0.0,
        mean_abs_diff=float(abs_diff.mean()) if abs_diff.size else 0.0,
        passed=finite and (not scaled.size or float(scaled.max()) <= tolerance),
    )
    if not report["passed"]:
        report["worst"] = {
            "index": worst,
            "id": ids[worst],
            "dim": int(col),
            "onnx": float(got[row, col]),
            "torch": float(ref[row, col]),
            "text": texts[worst][:200],
        }
        n_bad = int((scaled.max(axis=1) > tolerance).sum())
        raise ItemsEncoderParityError(
            f"items encoder does not reproduce the checkpoint's item vectors: {n_bad} of "
            f"{len(idx)} checked items differ by more than {tolerance:g}; largest difference "
            f"{report['max_abs_diff']:.3g} (scaled {report['max_scaled_diff']:.3g}) at item "
            f"{worst} (id {ids[worst]!r}), dim {col}: onnx {got[row, col]:.6g} vs torch "
            f"{ref[row, col]:.6g}; text {texts[worst][:80]!r}"
            + ("" if finite else "; the ONNX output has NaN/inf")
            + (
                ". This checkpoint fine-tuned its item LLM: its item_vectors.safetensors holds "
                "the vectors from before fine-tuning (the model does not re-encode the catalog "
                "after training), so the saved item_llm/ no longer produces them"
                if finetuned
                else ""
            ),
            report,
        )
    return report


# --------------------------------------------------------------------------- encode


class ItemsEncoder:
    """An exported items encoder loaded once: ``encode(texts) -> [n, d_item]`` float32.

    Uses only ONNX Runtime and Hugging Face ``tokenizers`` (no torch, transformers or Optimum).
    """

    def __init__(self, session: Any, tokenizer: Any, output: str = OUTPUT_NAME):
        self.session = session
        self.tokenizer = tokenizer
        self.output = output
        self.input_names = [i.name for i in session.get_inputs()]
        out = session.get_outputs()[[o.name for o in session.get_outputs()].index(output)]
        self.d_item = out.shape[-1] if isinstance(out.shape[-1], int) else None
        unknown = set(self.input_names) - {
            "input_ids",
            "attention_mask",
            "token_type_ids",
            "position_ids",
        }
        if unknown:
            raise ItemsEncoderError(
                f"items encoder graph wants inputs {sorted(unknown)} that a tokenizer does not give"
            )

    @classmethod
    def from_dir(
        cls,
        export_dir: str | os.PathLike,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> ItemsEncoder:
        """Load ``items_encoder.onnx`` and ``items_tokenizer/tokenizer.json`` from ``export_dir``."""
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError(
                f"running the items encoder needs onnxruntime ({exc}): {_ORT_HINT}"
            ) from None
        from tokenizers import Tokenizer

        root = Path(export_dir)
        side = root / SIDECAR_FILE
        info = json.loads(side.read_text()) if side.is_file() else {}
        onnx_path = root / info.get("onnx", ENCODER_FILE)
        tok_path = root / info.get("tokenizer", f"{TOKENIZER_DIR}/tokenizer.json")
        for path in (onnx_path, tok_path):
            if not path.is_file():
                raise ItemsEncoderError(
                    f"{path} is missing: {root} is not a complete items-encoder export; "
                    "write one with lite_export.exporters.items_encoder.export_items_encoder"
                )
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        session = ort.InferenceSession(
            str(onnx_path), sess_options=opts, providers=list(providers or ["CPUExecutionProvider"])
        )
        tokenizer = Tokenizer.from_file(str(tok_path))
        if tokenizer.padding is None:
            raise ItemsEncoderError(f"{tok_path} has no padding set; re-export the items encoder")
        return cls(session, tokenizer, info.get("output", OUTPUT_NAME))

    def feeds(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The graph inputs for ``texts`` (int64 [B, T])."""
        encs = self.tokenizer.encode_batch(list(texts))
        feeds: dict[str, np.ndarray] = {}
        ids = np.asarray([e.ids for e in encs], dtype=np.int64)
        for name in self.input_names:
            if name == "input_ids":
                feeds[name] = ids
            elif name == "attention_mask":
                feeds[name] = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
            elif name == "token_type_ids":
                feeds[name] = np.asarray([e.type_ids for e in encs], dtype=np.int64)
            elif name == "position_ids":  # what HF models use when none is passed
                feeds[name] = np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape)
        return feeds

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Item vectors of ``texts``: masked mean of the item LLM's last hidden states. [n, d]"""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts, not one string")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = []
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            (vec,) = self.session.run([self.output], self.feeds(chunk))
            out.append(vec.astype(np.float32, copy=False))
        if not out:
            return np.zeros((0, self.d_item or 0), dtype=np.float32)
        return np.concatenate(out)


def encode_items_onnx(
    export_dir: str | os.PathLike, texts: Sequence[str], *, batch_size: int = 64
) -> np.ndarray:
    """Encode item texts with an exported items encoder (ONNX Runtime, no torch). [n, d_item]

    The refresh path: when item text changes, this gives the item LLM's vector of the new text,
    the same vector (within fp32 rounding) that ``encode_texts`` would give in PyTorch. It is
    the item-LLM vector, before the adapter: an exported artifact's table holds
    ``adapter(vector) (+ id embedding)``. For many calls keep an :class:`ItemsEncoder`.
    """
    return ItemsEncoder.from_dir(export_dir).encode(texts, batch_size=batch_size)
