"""The "flat text" ablation of Lite-LLM4Rec: the rec LLM reads every history item's text tokens.

Lite-LLM4Rec is hierarchical: an item LLM condenses each item's text into one vector, and the rec
LLM sees one position per item. The ablation the paper measures against removes that hierarchy:
the item texts are tokenised and laid end to end, and the rec LLM reads the tokens themselves,
``sum(len(tokens(item)))`` positions per user instead of ``len(history)``.

Everything else is Lite-LLM4Rec's: the same rec LLM (built from the same config), the same
``Linear(d, N)`` head, loss, trainer, evaluation and ``recommend``. Concretely:

* each item's text is tokenised with the item LLM's tokenizer (no special tokens), truncated to
  ``max_item_tokens``; an item's tokens are embedded with the item LLM's own (frozen) token
  embedding table and an ``adapter Linear(d_item, d)``; the learned item-id embedding, when the
  config uses one, is added to every token of its item (so this differs from Lite-LLM4Rec only
  in the hierarchy);
* a user's tokens are packed (no padding between items) and left-padded per batch; positions
  count real tokens only;
* the hidden state at each item's **last token** stands for that item, so ``_hidden`` returns
  ``[B, L, D]`` exactly as Lite-LLM4Rec does and the head, loss and ranking are unchanged.

This is a research model for ``benchmarks/reproduce_paper.py``: it trains and ranks in PyTorch;
it is not exported or saved.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from lite_export.catalog import ItemCatalog
from lite_export.model.config import TINY_RANDOM_ITEM_LLM, LiteConfig
from lite_export.model.lite_llm4rec import LiteLLM4Rec, build_rec_backbone_config


def item_token_table(
    tokenizer, texts: list[str], max_item_tokens: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokenise every item text once into a compact vocabulary.

    Returns ``vocab`` (the tokenizer ids used, ``[V]``; compact id ``j + 1`` is ``vocab[j]``,
    compact id 0 is padding), ``tokens [N + 1, T]`` (compact ids, left-aligned, the last row is
    the pad item's: all 0) and ``lengths [N + 1]`` (at least 1 per real item: an empty text gets
    the tokenizer's unknown token).
    """
    if max_item_tokens < 1:
        raise ValueError(f"max_item_tokens must be >= 1, got {max_item_tokens}")
    enc = tokenizer(
        list(texts), add_special_tokens=False, truncation=True, max_length=max_item_tokens
    )
    rows = [ids or [tokenizer.unk_token_id] for ids in enc["input_ids"]]
    vocab = sorted({t for row in rows for t in row})
    compact = {t: j + 1 for j, t in enumerate(vocab)}
    width = max(map(len, rows), default=1)
    tokens = torch.zeros(len(rows) + 1, width, dtype=torch.long)
    lengths = torch.zeros(len(rows) + 1, dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor([compact[t] for t in row])
        lengths[i] = len(row)
    return torch.tensor(vocab, dtype=torch.long), tokens, lengths


class FlatTextLite(LiteLLM4Rec):
    """Lite-LLM4Rec with the item LLM's pooling removed: the rec LLM reads the item tokens."""

    def __init__(
        self,
        config: LiteConfig,
        catalog: ItemCatalog,
        backbone: nn.Module,
        token_vectors: torch.Tensor,
        item_tokens: torch.Tensor,
        item_lengths: torch.Tensor,
    ):
        nn.Module.__init__(self)
        n = len(catalog)
        if config.head != "id":
            raise ValueError(
                f"the flat-text ablation has no pooled item vectors to build head={config.head!r} "
                "rows from; it supports head='id' only"
            )
        if config.num_items != n or item_tokens.shape[0] != n + 1:
            raise ValueError(
                f"config.num_items={config.num_items}, catalog {n} items and item_tokens "
                f"{tuple(item_tokens.shape)} rows (expected N + 1) must agree"
            )
        self.config = config
        self.catalog = catalog
        self.backbone = backbone
        self.d_model = d = int(backbone.config.hidden_size)
        table = torch.cat([torch.zeros(1, token_vectors.shape[1]), token_vectors.float()])
        self.register_buffer("token_vectors", table, persistent=False)  # [V + 1, Di], row 0 pad
        self.register_buffer("item_tokens", item_tokens, persistent=False)  # [N + 1, T]
        self.register_buffer("item_lengths", item_lengths, persistent=False)  # [N + 1]
        self.adapter = nn.Linear(token_vectors.shape[1], d)
        self._add_rec_llm_io(n, d)
        self.item_llm = None
        object.__setattr__(self, "_item_llm_to_save", None)
        self.item_tokenizer = None

    @classmethod
    def build(
        cls,
        config: LiteConfig,
        catalog: ItemCatalog,
        seed: int = 0,
        device: str = "cpu",
        max_item_tokens: int = 24,
    ) -> FlatTextLite:
        """A fresh model: the item LLM's tokenizer and token embeddings, a rec LLM from config."""
        from transformers import AutoModel

        from lite_export.model.item_llm import build_tiny_item_llm, load_item_llm

        if not config.uses_item_llm:
            raise ValueError(
                "the flat-text ablation needs an item LLM (its tokenizer and embeddings)"
            )
        if not catalog.texts:
            raise ValueError("the catalog has no item texts to tokenise")
        config = replace(config, num_items=len(catalog))
        if config.item_llm == TINY_RANDOM_ITEM_LLM:
            item_llm, tokenizer = build_tiny_item_llm(catalog.texts, config.item_llm_dim, seed)
        else:
            item_llm, tokenizer = load_item_llm(config.item_llm)
        vocab, tokens, lengths = item_token_table(tokenizer, catalog.texts, max_item_tokens)
        token_vectors = item_llm.get_input_embeddings().weight.detach()[vocab].float()
        del item_llm
        # positions are tokens now: the backbone's position range covers L items x T tokens
        backbone_cfg = replace(config, max_history=config.max_history * tokens.shape[1])
        torch.manual_seed(seed)
        backbone = AutoModel.from_config(build_rec_backbone_config(backbone_cfg))
        return cls(config, catalog, backbone, token_vectors, tokens, lengths).to(device)

    def pack(self, item_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Item ids ``[B, L]`` (left-padded) -> packed token ids ``[B, S]`` (0 = pad, left
        padding), the item owning each token ``[B, S]`` (pad = N), the index of each item's last
        token ``[B, L']`` and ``first``, the first column of ``item_ids`` holding any item
        (``L' = L - first``; the leading all-pad columns are skipped)."""
        n = self.config.num_items
        has_item = (item_ids != n).any(0)
        first = (
            int(has_item.to(torch.int8).argmax()) if bool(has_item.any()) else item_ids.shape[1] - 1
        )
        ids = item_ids[:, first:]
        lengths = self.item_lengths[ids]  # [B, L'], pad items 0
        total = lengths.sum(1)
        width = max(int(total.max()), 1)
        ends = lengths.cumsum(1) + (width - total).unsqueeze(1)  # exclusive end of each item
        t = torch.arange(self.item_tokens.shape[1], device=ids.device)
        valid = t < lengths.unsqueeze(-1)  # [B, L', T]
        pos = (ends - lengths).unsqueeze(-1) + t
        rows = torch.arange(ids.shape[0], device=ids.device)[:, None, None].expand_as(pos)
        tokens = torch.zeros(ids.shape[0], width, dtype=torch.long, device=ids.device)
        owner = torch.full_like(tokens, n)
        tokens[rows[valid], pos[valid]] = self.item_tokens[ids][valid]
        owner[rows[valid], pos[valid]] = ids.unsqueeze(-1).expand_as(pos)[valid]
        return tokens, owner, (ends - 1).clamp(min=0), first

    def _hidden(
        self, item_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        tokens, owner, last, first = self.pack(item_ids)
        mask = (tokens != 0).long()
        ids = None if self.id_embedding is None else self.id_embedding(owner)
        x = self.fuse_item_inputs(self.adapter(F.embedding(tokens, self.token_vectors)), ids)
        x = self.emb_dropout(x * mask.unsqueeze(-1).to(x.dtype))
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        hidden = self.backbone(
            inputs_embeds=x, attention_mask=mask, position_ids=position_ids
        ).last_hidden_state  # [B, S, D]
        per_item = hidden.gather(1, last.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        out = hidden.new_zeros(item_ids.shape[0], item_ids.shape[1], hidden.shape[-1])
        out[:, first:] = per_item
        return out

    def tokens_per_user(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Positions the rec LLM reads for each row of ``item_ids`` (Lite-LLM4Rec: one per item)."""
        return self.item_lengths[item_ids].sum(1)

    def save_pretrained(self, directory, extra=None, **kwargs):
        raise NotImplementedError(
            "FlatTextLite is the paper's flat-text ablation (benchmarks/reproduce_paper.py); "
            "it is not saved or exported. Train Lite-LLM4Rec with `lite train` to deploy."
        )
