"""Lite-LLM4Rec: item LLM -> adapter -> rec LLM (inputs_embeds, causal) -> item head.

The head scores every catalog item: ``Linear(d, N)`` (``head="id"``), or rows computed from the
item-LLM vectors (``head="text"``, optionally plus a learned residual, ``"text+id"``), which a
new item gets from its text alone (:meth:`LiteLLM4Rec.head_params`).

Shapes: B users, L history positions (left-padded, so column L-1 is always the latest item),
N catalog items, D = d_model, Di = item-LLM width.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lite_export.artifact import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CheckpointError,
    publish_directory,
    read_checkpoint_meta,
)
from lite_export.catalog import ItemCatalog
from lite_export.data.batching import pad_histories
from lite_export.model.config import TINY_RANDOM_ITEM_LLM, LiteConfig
from lite_export.model.item_llm import (
    build_tiny_item_llm,
    encode_texts,
    load_item_llm,
    precompute_item_vectors,
)
from lite_export.model.metrics import mask_items
from lite_export.types import TopK

#: the text-match scale a ``head_match`` model starts from: a cosine gap of 0.5 between two
#: items is then worth 2.5 in logits, the order of the learned rows' spread early in training
MATCH_SCALE_INIT = 5.0


def build_rec_backbone_config(cfg: LiteConfig):
    """The Hugging Face config of a rec LLM built from scratch (cfg.rec_arch)."""
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    common = dict(vocab_size=1, tie_word_embeddings=False)
    if cfg.rec_arch == "gpt2":
        return GPT2Config(
            n_embd=cfg.d_model,
            n_layer=cfg.n_layers,
            n_head=cfg.n_heads,
            n_inner=cfg.d_ff,
            n_positions=max(cfg.max_history, 8),
            resid_pdrop=cfg.dropout if cfg.resid_dropout is None else cfg.resid_dropout,
            embd_pdrop=cfg.dropout,
            attn_pdrop=cfg.dropout,
            **common,
        )
    cls = LlamaConfig if cfg.rec_arch == "llama" else Qwen2Config
    return cls(
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        max_position_embeddings=max(cfg.max_history, 8),
        attention_dropout=cfg.dropout,
        rms_norm_eps=1e-6,
        **common,
    )


def _add_block_dropout(backbone: nn.Module, cfg: LiteConfig) -> None:
    """SASRec's residual dropout for backbones that have none (Llama, Qwen2): a forward hook on
    each decoder layer's attention and MLP drops their output before the residual add. It acts
    in training only, so evaluation and export see the plain backbone."""
    p = cfg.resid_dropout
    if not p or cfg.rec_arch == "gpt2" or cfg.rec_llm:
        return  # gpt2 maps it to resid_pdrop; a pretrained backbone keeps its own

    def drop(module, _inputs, output):
        if not module.training:
            return None
        if isinstance(output, tuple):
            return (F.dropout(output[0], p, True), *output[1:])
        return F.dropout(output, p, True)

    for layer in backbone.layers:
        layer.self_attn.register_forward_hook(drop)
        layer.mlp.register_forward_hook(drop)


class LiteLLM4Rec(nn.Module):
    """The model. Build with :meth:`build` (a catalog + config) or :meth:`from_pretrained`."""

    def __init__(
        self,
        config: LiteConfig,
        catalog: ItemCatalog,
        backbone: nn.Module,
        item_vectors: torch.Tensor | None = None,
        item_llm: nn.Module | None = None,
        item_tokenizer=None,
    ):
        super().__init__()
        if config.num_items != len(catalog):
            raise ValueError(
                f"config.num_items={config.num_items} but the catalog has {len(catalog)} items"
            )
        self.config = config
        self.catalog = catalog
        n, d = len(catalog), int(backbone.config.hidden_size)
        self.d_model = d
        self.backbone = backbone
        self.adapter = None
        d_item = 0
        if config.uses_item_llm:
            if item_vectors is None or item_vectors.shape[0] != n:
                raise ValueError("an item LLM model needs item_vectors with one row per item")
            d_item = item_vectors.shape[1]
            table = torch.cat([item_vectors.float(), torch.zeros(1, d_item)])  # [N+1, Di]
            self.register_buffer("item_vectors", table, persistent=False)
            self.adapter = nn.Linear(d_item, d)
        self._add_rec_llm_io(n, d, d_item)
        # the item LLM itself is kept only when it is fine-tuned or must be saved (tiny-random)
        self.item_llm = item_llm if config.finetune_item_llm else None
        # kept outside the module tree: a frozen item LLM is saved with the checkpoint, not trained
        object.__setattr__(self, "_item_llm_to_save", item_llm)
        self.item_tokenizer = item_tokenizer

    def _add_rec_llm_io(self, n: int, d: int, d_item: int = 0) -> None:
        """The item-id embedding (when configured), input dropout and the head; freezes the
        backbone's token embedding, never used (inputs arrive as ``inputs_embeds``).

        ``head`` is the learned ``Linear(d, N)`` (the whole head for ``"id"``, the residual for
        ``"text+id"``, zero-initialised there so training starts from the text rows);
        ``head_text`` maps an item-LLM vector to its head row and bias, ``Linear(d_item, d+1)``.
        """
        cfg = self.config
        self.id_embedding = nn.Embedding(n + 1, d, padding_idx=n) if cfg.use_id_embedding else None
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.fusion_gate = nn.Linear(2 * d, d) if cfg.item_fusion == "gate" else None
        self.head = nn.Linear(d, n) if cfg.head != "text" else None
        self.head_text = nn.Linear(d_item, d + 1) if cfg.head != "id" else None
        self.match_scale = None
        if cfg.head_match:  # the text-match term: its scale, and the catalog mean it centres on
            self.match_scale = nn.Parameter(torch.tensor(MATCH_SCALE_INIT))
            self.register_buffer("match_center", self.item_vectors[:-1].mean(0).clone())
        self.match_scale_cold = self.cold_bias = None
        if cfg.head_cold_scale:  # text-only rows' own match scale and bias offset
            self.match_scale_cold = nn.Parameter(torch.tensor(MATCH_SCALE_INIT))
            self.cold_bias = nn.Parameter(torch.tensor(0.0))
            # items with no learned residual: held out of training, or added after it
            self.register_buffer("text_only", torch.zeros(n, dtype=torch.bool))
        if cfg.head == "text+id":
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        # items the training loss never ranks (cold-start evaluation: held-out items)
        self.register_buffer("train_blocked", torch.zeros(n, dtype=torch.bool), persistent=False)
        # items removed from the catalog (`lite catalog remove`): scored -inf, never recommended
        retired = torch.tensor(self.catalog.retired or [False] * n, dtype=torch.bool)
        self.register_buffer("retired", retired, persistent=False)
        self._any_retired = bool(retired.any())
        _add_block_dropout(self.backbone, self.config)
        token_emb = self.backbone.get_input_embeddings()
        if token_emb is not None:
            token_emb.weight.requires_grad_(False)

    # ----------------------------------------------------------------- construction
    @classmethod
    def build(
        cls,
        config: LiteConfig,
        catalog: ItemCatalog,
        seed: int = 0,
        device: str = "cpu",
    ) -> LiteLLM4Rec:
        """A freshly initialised model for ``catalog``; item vectors are computed here, once."""
        from transformers import AutoModel

        if config.num_items == 0:
            config.num_items = len(catalog)
        torch.manual_seed(seed)
        item_vectors = item_llm = tokenizer = None
        if config.uses_item_llm:
            if not catalog.texts:
                raise ValueError("the catalog has no item texts to feed the item LLM")
            if config.item_llm == TINY_RANDOM_ITEM_LLM:
                item_llm, tokenizer = build_tiny_item_llm(catalog.texts, config.item_llm_dim, seed)
                item_vectors = encode_texts(
                    item_llm,
                    tokenizer,
                    catalog.texts,
                    config.item_llm_max_tokens,
                    desc="encoding items (tiny-random item LLM)",
                )
            elif config.finetune_item_llm:
                item_llm, tokenizer = load_item_llm(config.item_llm)
                item_vectors = encode_texts(
                    item_llm,
                    tokenizer,
                    catalog.texts,
                    config.item_llm_max_tokens,
                    device=device,
                    desc=f"encoding items ({config.item_llm})",
                ).cpu()
            else:
                item_vectors = precompute_item_vectors(
                    config.item_llm, catalog.texts, config.item_llm_max_tokens, device=device
                )
        torch.manual_seed(seed)
        if config.rec_llm:
            backbone = AutoModel.from_pretrained(config.rec_llm)
            config.d_model = int(backbone.config.hidden_size)
        else:
            backbone = AutoModel.from_config(build_rec_backbone_config(config))
        model = cls(config, catalog, backbone, item_vectors, item_llm, tokenizer)
        return model

    # ----------------------------------------------------------------- forward
    def _batch_item_vectors(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Item-LLM vectors of the ids in the batch. [B, L, Di]

        Frozen item LLM: a lookup in the precomputed table. Fine-tuned: the batch's distinct items
        are re-encoded with gradients, the pad row stays zero.
        """
        if self.item_llm is None or not self.training:
            return F.embedding(item_ids, self.item_vectors)
        pad = self.config.num_items
        uniq, inverse = torch.unique(item_ids, return_inverse=True)
        real = uniq[uniq != pad]
        texts = [self.catalog.texts[i] for i in real.tolist()]
        enc = encode_texts(
            self.item_llm,
            self.item_tokenizer,
            texts,
            self.config.item_llm_max_tokens,
            device=item_ids.device,
            grad=True,
        )
        table = torch.zeros(len(uniq), enc.shape[1], device=item_ids.device)
        table[uniq != pad] = enc
        return table[inverse]

    @torch.no_grad()
    def refresh_item_vectors(self) -> None:
        """Re-encode every item with the (fine-tuned) item LLM into the frozen table."""
        if self.item_llm is None:
            return
        was_training = self.item_llm.training
        self.item_llm.eval()
        vectors = encode_texts(
            self.item_llm,
            self.item_tokenizer,
            self.catalog.texts,
            self.config.item_llm_max_tokens,
            device=self.item_vectors.device,
            desc="re-encoding items (fine-tuned item LLM)",
        )
        self.item_llm.train(was_training)
        self.item_vectors[:-1] = vectors.to(self.item_vectors.device)

    def embed_items(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Rec-LLM input for each history position. [B, L] -> [B, L, D]"""
        text = None if self.adapter is None else self.adapter(self._batch_item_vectors(item_ids))
        ids = None if self.id_embedding is None else self.id_embedding(item_ids)
        return self.fuse_item_inputs(text, ids)

    def fuse_item_inputs(self, text: torch.Tensor | None, ids: torch.Tensor | None) -> torch.Tensor:
        """The rec-LLM input from the adapted item-LLM vector and the id embedding (either may
        be None): their sum, or with ``item_fusion="gate"`` the learned per-dimension mix."""
        if text is None or ids is None:
            return text if ids is None else ids
        if self.fusion_gate is None:
            return text + ids
        g = torch.sigmoid(self.fusion_gate(torch.cat([text, ids], dim=-1)))
        return ids + g * (text - ids)

    def head_params(
        self, rows: torch.Tensor | None = None, match: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's item rows and biases, ``W [N, d]`` and ``b [N]`` (or only ``rows``).

        ``head="id"``: the learned ``Linear(d, N)``. ``"text"``: ``head_text`` applied to each
        item's item-LLM vector. ``"text+id"``: the text row plus the learned residual, which
        training drops row by row with ``head_residual_dropout``. Items the catalog retired
        (``lite catalog remove``) get bias -inf: never recommended. With ``head_match`` (and
        ``match``) each row ends with the text-match block, ``scale *`` the item's unit centred
        item-LLM vector: ``W [N, d + Di]``, matching :meth:`user_vectors`. Exports freeze the result.
        """
        w, b, scale = self._head_rows(rows)
        if match and scale is not None:
            table = self.match_table()
            block = table[:-1] if rows is None else table[rows]
            w = torch.cat([w, scale.unsqueeze(1) * block], dim=1)
        return w, b

    def _head_rows(self, rows: torch.Tensor | None = None):
        """``W [R, d]``, ``b [R]`` and the text-match scale of each row ``[R]`` (None without
        ``head_match``). With ``head_cold_scale`` a row without a learned residual (a
        ``text_only`` item, or one whose residual this training step dropped) takes
        ``match_scale_cold`` and ``cold_bias``; the others ``match_scale``."""
        w = b = None
        plain = None  # rows scored without a learned residual
        if self.head_text is not None:
            vectors = self.item_vectors[:-1] if rows is None else self.item_vectors[rows]
            out = self.head_text(vectors)
            w, b = out[:, :-1], out[:, -1]
        if self.head is not None:
            rw = self.head.weight if rows is None else self.head.weight[rows]
            rb = self.head.bias if rows is None else self.head.bias[rows]
            if w is None:
                w, b = rw, rb
            else:
                keep = self._residual_keep(rw)
                if self.match_scale_cold is not None:
                    gone = self.text_only if rows is None else self.text_only[rows]
                    plain = gone if keep is None else gone | (keep == 0)
                if keep is not None:
                    rw, rb = rw * keep.unsqueeze(1), rb * keep
                w, b = w + rw, b + rb
        scale = None
        if self.match_scale is not None:
            scale = self.match_scale.expand(w.shape[0])
            if plain is not None:
                scale = torch.where(plain, self.match_scale_cold, scale)
                b = b + self.cold_bias * plain
        if self._any_retired:
            gone = self.retired if rows is None else self.retired[rows]
            b = b.masked_fill(gone, float("-inf"))
        return w, b, scale

    @property
    def head_width(self) -> int:
        """Columns of the user vector and of the head rows: ``d_model``, plus the item-LLM
        width with ``head_match`` (the text-match block)."""
        extra = self.item_vectors.shape[1] if self.match_scale is not None else 0
        return self.d_model + extra

    def match_table(self) -> torch.Tensor | None:
        """The text-match block's item side: each item's item-LLM vector centred on the catalog
        mean and scaled to unit length, the pad row zero. [N+1, Di]; None without ``head_match``."""
        if self.match_scale is None:
            return None
        unit = F.normalize(self.item_vectors - self.match_center, dim=-1)
        unit[-1] = 0.0
        return unit

    def _match_queries(self, item_ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """The text-match block's user side at every position: the unit vector along the sum of
        the history's match vectors so far (pads are zero rows, so they add nothing). [B, L, Di]"""
        return F.normalize(F.embedding(item_ids, table).cumsum(1), dim=-1)

    def _match_logits(self, q: torch.Tensor, table: torch.Tensor, scale, rows=None):
        """``scale * cos`` of queries ``q [T, Di]`` with every item (or ``rows``), ``scale``
        one per item. [T, N]"""
        with torch.no_grad():  # constants: only the scales learn
            cos = q @ (table[:-1] if rows is None else table[rows]).T
        return cos * scale

    def _residual_keep(self, rw: torch.Tensor) -> torch.Tensor | None:
        """Each residual row's factor in training with ``head_residual_dropout``: 0 where
        dropped, ``1 / (1 - p)`` where kept; None when nothing is dropped (eval)."""
        p = self.config.head_residual_dropout
        if not (self.training and p > 0):
            return None
        return (torch.rand(rw.shape[0], device=rw.device) >= p).to(rw.dtype) / (1 - p)

    def block_in_training(self, items) -> None:
        """Keep ``items`` (indices) out of the training loss: never a target nor a negative,
        as if they were not in the catalog yet (their rows get no gradient)."""
        self.train_blocked.zero_()
        if len(items):
            idx = torch.as_tensor(list(items), dtype=torch.long)
            self.train_blocked[idx] = True
            if self.match_scale_cold is not None:  # they will have no learned residual
                self.text_only[idx] = True

    def forward(
        self,
        item_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        num_negatives: int = 0,
        label_smoothing: float = 0.0,
    ) -> torch.Tensor:
        """Hidden state at every position, item_ids [B, L] (pad = num_items) -> [B, L, D];
        or, given next-item ``targets`` [B, L] (-100 = no target), the training loss (a scalar).

        The loss is softmax cross-entropy over the whole catalog at every position with a
        target, or sampled softmax over ``num_negatives`` shared uniform negatives when > 0.
        """
        hidden = self._hidden(item_ids, attention_mask)
        if targets is None:
            return hidden
        keep = targets != -100
        h, t = hidden[keep], targets[keep]  # [T, D], [T]
        blocked = self.train_blocked
        table = self.match_table()
        q = None if table is None else self._match_queries(item_ids, table)[keep]  # [T, Di]
        if num_negatives <= 0:
            w, b, scale = self._head_rows()
            logits = F.linear(h, w, b)
            if q is not None:
                logits = logits + self._match_logits(q, table, scale)
            if blocked.any():
                logits = logits.masked_fill(blocked, float("-inf"))
            return F.cross_entropy(logits, t, label_smoothing=label_smoothing)
        neg = torch.randint(0, self.config.num_items, (num_negatives,), device=t.device)
        w, b, scale = self._head_rows(torch.cat([t, neg]))
        n_t = t.shape[0]
        pos = (h * w[:n_t]).sum(-1, keepdim=True) + b[:n_t].unsqueeze(-1)  # [T, 1]
        negs = h @ w[n_t:].T + b[n_t:]  # [T, S]
        if q is not None:
            with torch.no_grad():
                cos_t = (q * table[t]).sum(-1, keepdim=True)
            pos = pos + scale[:n_t].unsqueeze(-1) * cos_t
            negs = negs + self._match_logits(q, table, scale[n_t:], neg)
        drop = (neg.unsqueeze(0) == t.unsqueeze(1)) | blocked[neg].unsqueeze(0)
        negs = negs.masked_fill(drop, float("-inf"))
        logits = torch.cat([pos, negs], dim=1)
        return F.cross_entropy(logits, torch.zeros_like(t), label_smoothing=label_smoothing)

    def _hidden(
        self, item_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = (item_ids != self.config.num_items).long()
        x = self.embed_items(item_ids) * attention_mask.unsqueeze(-1).to(torch.float32)
        x = self.emb_dropout(x)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # left padding -> 0..n-1
        out = self.backbone(
            inputs_embeds=x, attention_mask=attention_mask, position_ids=position_ids
        )
        return out.last_hidden_state

    def user_vectors(self, item_ids: torch.Tensor) -> torch.Tensor:
        """The hidden state at the latest item (column L-1 under left padding). [B, D]

        With ``head_match``, followed by the text-match query (the unit vector along the sum of
        the history's match vectors): ``[B, D + Di]``, the width of :meth:`head_params` rows."""
        h = self._hidden(item_ids)[:, -1]
        if self.match_scale is None:
            return h
        # only the history's match rows: the whole table is not rebuilt per batch
        rows = F.normalize(F.embedding(item_ids, self.item_vectors) - self.match_center, dim=-1)
        rows = rows * (item_ids != self.config.num_items).unsqueeze(-1)  # pads add nothing
        q = F.normalize(rows.sum(1), dim=-1)
        return torch.cat([h, q.to(h.dtype)], dim=-1)

    def score(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Scores of every catalog item. [B, L] -> [B, N]"""
        w, b = self.head_params()
        return F.linear(self.user_vectors(item_ids), w, b)

    def frozen_scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`score` with the head computed once: for evaluation passes, where the weights
        do not change between batches (a text head's rows are otherwise rebuilt per batch)."""
        with torch.no_grad():
            w, b = (t.detach() for t in self.head_params())
        return lambda item_ids: F.linear(self.user_vectors(item_ids), w, b)

    # ----------------------------------------------------------------- inference
    @torch.inference_mode()
    def recommend(self, histories: list[list[str]], k: int = 10, exclude_seen: bool = True) -> TopK:
        """Top-k external item ids and scores for each history of external ids, best first.

        Items in a user's history are excluded when ``exclude_seen``; an empty history gets the
        most-popular items (flagged in ``TopK.fallback``).
        """
        n = len(self.catalog)
        if not isinstance(k, int) or not 1 <= k <= n:
            raise ValueError(f"k must be an integer between 1 and the catalog size {n}, got {k!r}")
        if isinstance(histories, str | bytes) or not all(
            isinstance(h, list | tuple) for h in histories
        ):
            raise TypeError("histories must be a list of lists of external item ids")
        hists = self.catalog.batch_indices(histories)
        was_training = self.training
        self.eval()
        device = self.train_blocked.device
        try:
            ids = pad_histories(hists, self.config.max_history, n).to(device)
            scores = self.score(ids).float()
        finally:
            self.train(was_training)
        if exclude_seen:
            full = pad_histories(hists, max(1, max(map(len, hists), default=1)), n).to(device)
            mask_items(scores, full, n)
        top = torch.topk(scores, k, dim=-1)
        return self.catalog.to_topk(hists, top.values.cpu().numpy(), top.indices.cpu().numpy())

    # ----------------------------------------------------------------- checkpoints
    def save_pretrained(
        self,
        directory: str | os.PathLike,
        extra: dict | None = None,
        *,
        force: bool = False,
        sources=(),
        write_more: Callable[[Path], None] | None = None,
    ) -> Path:
        """Write a checkpoint directory atomically (built beside it, then renamed into place).

        config.json, model.safetensors, item_vectors.safetensors, items.jsonl and, when the item
        LLM is random or fine-tuned, item_llm/ (Hugging Face format). No pickle.

        An existing checkpoint is replaced only with ``force``; a directory that is, or
        contains, one of ``sources`` (the inputs of the run) and anything that is not a
        lite-export checkpoint are refused with :class:`~lite_export.artifact.OutputDirError`,
        whose message names where the new checkpoint was kept instead (the model is saved either
        way; callers that train check the target first, see
        :func:`~lite_export.artifact.check_output_dir`).

        ``write_more(tmp_dir)`` adds files (e.g. ``training_state/``) before the directory is
        published, so they appear atomically with the rest.
        """
        from safetensors.torch import save_file

        from lite_export import __version__

        target = Path(directory)
        target = target.resolve() if target.is_symlink() else target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            state = {
                k: v.detach().cpu().contiguous()
                for k, v in self.state_dict().items()
                if not k.startswith("item_llm.")
            }
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            if self.adapter is not None:
                save_file(
                    {"item_vectors": self.item_vectors[:-1].detach().cpu().contiguous()},
                    str(tmp / "item_vectors.safetensors"),
                )
            self.catalog.write_jsonl(tmp / "items.jsonl")
            item_llm_saved = False
            if self._item_llm_to_save is not None and (
                self.config.item_llm == TINY_RANDOM_ITEM_LLM or self.config.finetune_item_llm
            ):
                self._item_llm_to_save.save_pretrained(tmp / "item_llm", safe_serialization=True)
                self.item_tokenizer.save_pretrained(tmp / "item_llm")
                item_llm_saved = True
            meta = {
                "format": CHECKPOINT_FORMAT,
                "format_version": CHECKPOINT_VERSION,
                "lite_export_version": __version__,
                "model": self.config.to_dict(),
                "rec_llm_config": self.backbone.config.to_dict(),
                "item_llm_saved": item_llm_saved,
                **(extra or {}),
            }
            if write_more is not None:
                write_more(tmp)
            (tmp / "config.json").write_text(json.dumps(meta, indent=2, default=str))
            publish_directory(tmp, target, kind="checkpoint", force=force, sources=sources)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str = "cpu") -> LiteLLM4Rec:
        """Load a checkpoint written by :meth:`save_pretrained`; predictions are reproduced exactly."""
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel

        path = Path(directory)
        meta = read_checkpoint_meta(path)
        config = LiteConfig.from_dict(meta["model"])
        catalog = ItemCatalog.read_jsonl(_need(path, "items.jsonl"))
        rec_cfg = dict(meta["rec_llm_config"])
        backbone = AutoModel.from_config(AutoConfig.for_model(rec_cfg.pop("model_type"), **rec_cfg))
        item_vectors = item_llm = tokenizer = None
        if config.uses_item_llm:
            item_vectors = load_file(str(_need(path, "item_vectors.safetensors")))["item_vectors"]
            if meta.get("item_llm_saved"):
                item_llm, tokenizer = load_item_llm(str(path / "item_llm"))
            elif config.finetune_item_llm:
                item_llm, tokenizer = load_item_llm(config.item_llm)
        model = cls(config, catalog, backbone, item_vectors, item_llm, tokenizer)
        state = load_file(str(_need(path, "model.safetensors")))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("item_llm.")]
        if missing or unexpected:
            raise CheckpointError(
                f"{path / 'model.safetensors'} does not match its config.json "
                f"(missing {missing[:5]}, unexpected {unexpected[:5]}); re-save the checkpoint"
            )
        return model.to(device).eval()


def _need(path: Path, name: str) -> Path:
    f = path / name
    if not f.is_file():
        raise CheckpointError(
            f"checkpoint {path} is missing {name}; a checkpoint written by `lite train` "
            "holds config.json, model.safetensors, items.jsonl (and item_vectors.safetensors)"
        )
    return f
