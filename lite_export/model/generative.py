"""The generative peer of the paper: an LLM that writes the next item's id with beam search.

P5-style (Geng et al. 2022; the baseline family Lite-LLM4Rec is compared against): the user's
history is written as item-id tokens, a decoder LM is trained with next-token cross-entropy,
and inference is Hugging Face ``generate`` with beam search constrained by a prefix trie, so
every beam names an item that exists. The ranking is the beam order.

Our concrete form (same harness, same leave-one-out split as Lite-LLM4Rec):

* **Vocabulary** (13 tokens): ``PAD``, ``BOS``, ``SEP`` and the ten digits. Item index ``i`` is
  written as its decimal digits, zero-padded to ``W = len(str(N - 1))``, followed by ``SEP``:
  a history ``[12, 7]`` of a 100-item catalog is ``BOS 1 2 SEP 0 7 SEP``.
* **Backbone**: ``LlamaForCausalLM`` from config (random init), the same width, depth, heads and
  FFN as the rec LLM of the Lite-LLM4Rec it is compared with.
* **Training**: every user's most recent ``max_history + 1`` training items, right-padded;
  next-token CE on every non-pad token after ``BOS`` (all digits and separators of every item).
* **Inference**: the prompt is ``BOS`` + the most recent ``max_history`` items; ``generate``
  runs ``num_beams`` beams for ``W`` new tokens (the digits; no sampling, no EOS), and a
  per-user prefix trie (``prefix_allowed_tokens_fn``) allows only digit paths that lead to an
  item of the catalog **that is not in the user's history**. Banning history items in the trie
  (rather than dropping them from a longer beam list) keeps the protocol of the rest of the
  harness — history masked — with exactly ``num_beams`` candidates per user.
* **Ranking**: beams sorted by their beam score (sum of token log-probabilities, not
  renormalised over the allowed tokens, as HF's constrained decoding does). The target's rank is
  its position in that list; a target outside the list is a miss at every K <= ``num_beams``.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from lite_export.catalog import ItemCatalog
from lite_export.data.base import LeaveOneOutSplit
from lite_export.model.metrics import DEFAULT_KS, metrics_from_ranks
from lite_export.types import TopK

PAD, BOS, SEP = 0, 1, 2
DIGIT0 = 3  # token of digit d is DIGIT0 + d
VOCAB_SIZE = DIGIT0 + 10


class ItemIdCodec:
    """Item index <-> fixed-width decimal digit tokens (+ SEP), for a catalog of ``num_items``."""

    def __init__(self, num_items: int):
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        self.num_items = num_items
        self.width = len(str(num_items - 1))

    def digits(self, item: int) -> tuple[int, ...]:
        if not 0 <= item < self.num_items:
            raise ValueError(f"item index {item} outside 0..{self.num_items - 1}")
        return tuple(int(c) for c in str(item).zfill(self.width))

    def encode_item(self, item: int) -> list[int]:
        return [DIGIT0 + d for d in self.digits(item)] + [SEP]

    def encode_history(self, items: Sequence[int]) -> list[int]:
        """``BOS`` + every item's digit tokens and ``SEP``."""
        out = [BOS]
        for i in items:
            out += self.encode_item(i)
        return out

    def decode(self, tokens: Sequence[int]) -> int | None:
        """The item index of ``W`` digit tokens; None when they are not digits or not an item."""
        if len(tokens) != self.width or any(not DIGIT0 <= t < VOCAB_SIZE for t in tokens):
            return None
        value = int("".join(str(t - DIGIT0) for t in tokens))
        return value if value < self.num_items else None


class PrefixTrie:
    """The digit-prefix trie of a catalog; answers which tokens may come next, with bans.

    ``allowed(prefix, banned)`` returns the digit tokens ``t`` such that ``prefix + [t]`` is the
    prefix of at least one catalog item not in ``banned`` (a :meth:`ban_counts` of the user's
    history). A prefix of full width, or one no item extends, allows nothing.
    """

    def __init__(self, codec: ItemIdCodec):
        self.codec = codec
        self.count: Counter = Counter()  # prefix (tuple of digits) -> items under it
        for i in range(codec.num_items):
            d = codec.digits(i)
            for j in range(codec.width + 1):
                self.count[d[:j]] += 1

    def ban_counts(self, items: Sequence[int]) -> Counter:
        banned: Counter = Counter()
        for i in set(items):
            d = self.codec.digits(i)
            for j in range(self.codec.width + 1):
                banned[d[:j]] += 1
        return banned

    def allowed(self, prefix: Sequence[int], banned: Counter | None = None) -> list[int]:
        """Allowed next tokens after the generated digit tokens ``prefix`` (token ids)."""
        if len(prefix) >= self.codec.width:
            return []
        digits = tuple(t - DIGIT0 for t in prefix)
        out = []
        for d in range(10):
            key = digits + (d,)
            left = self.count.get(key, 0) - (banned.get(key, 0) if banned else 0)
            if left > 0:
                out.append(DIGIT0 + d)
        return out


@dataclass
class GenerativeConfig:
    """The generative peer's network: a Llama decoder over the 13-token id vocabulary."""

    num_items: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    d_ff: int = 256
    dropout: float = 0.1
    max_history: int = 50  # items in the prompt (each W + 1 tokens)
    num_beams: int = 20

    def to_dict(self) -> dict:
        return asdict(self)


class GenerativeRecommender(nn.Module):
    """A P5-style recommender: item-id tokens in, constrained beam search out."""

    def __init__(self, config: GenerativeConfig, catalog: ItemCatalog | None = None, seed: int = 0):
        super().__init__()
        from transformers import LlamaConfig, LlamaForCausalLM

        if catalog is not None and len(catalog) != config.num_items:
            raise ValueError(
                f"config.num_items={config.num_items} but the catalog has {len(catalog)} items"
            )
        self.config = config
        self.catalog = catalog
        self.codec = ItemIdCodec(config.num_items)
        self.trie = PrefixTrie(self.codec)
        max_tokens = 1 + (config.max_history + 1) * (self.codec.width + 1)
        torch.manual_seed(seed)
        self.lm = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=VOCAB_SIZE,
                hidden_size=config.d_model,
                intermediate_size=config.d_ff,
                num_hidden_layers=config.n_layers,
                num_attention_heads=config.n_heads,
                num_key_value_heads=config.n_heads,
                max_position_embeddings=max_tokens,
                attention_dropout=config.dropout,
                rms_norm_eps=1e-6,
                pad_token_id=PAD,
                bos_token_id=BOS,
                eos_token_id=SEP,
                tie_word_embeddings=False,
            )
        )

    # ----------------------------------------------------------------- training
    def training_batch(self, sequences: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Right-padded token ids, attention mask and labels (pad = -100) of item sequences."""
        rows = [self.codec.encode_history(s[-(self.config.max_history + 1) :]) for s in sequences]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), PAD, dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = torch.as_tensor(row)
        mask = (ids != PAD).long()
        labels = ids.masked_fill(mask == 0, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.lm(**batch).loss

    # ----------------------------------------------------------------- inference
    def _prompts(self, histories: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.codec.encode_history(h[-self.config.max_history :]) for h in histories]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), PAD, dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, width - len(row) :] = torch.as_tensor(row)  # left padding for generate
        return ids, (ids != PAD).long()

    @torch.inference_mode()
    def generate_items(
        self, histories: Sequence[Sequence[int]], num_beams: int | None = None
    ) -> list[list[int]]:
        """Beam-ordered item indices per history (internal indices), history items banned.

        Returns ``num_beams`` distinct items per user, fewer only when the catalog minus the
        history has fewer items than beams.
        """
        beams = num_beams or self.config.num_beams
        was_training = self.training
        self.eval()
        ids, mask = self._prompts(histories)
        ids, mask = ids.to(self.lm.device), mask.to(self.lm.device)
        prompt_len = ids.shape[1]
        banned = [self.trie.ban_counts(h) for h in histories]

        def allowed(batch_id: int, sent: torch.Tensor) -> list[int]:
            return self.trie.allowed(sent[prompt_len:].tolist(), banned[batch_id]) or [PAD]

        try:
            out = self.lm.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=self.codec.width,
                min_new_tokens=self.codec.width,
                num_beams=beams,
                num_return_sequences=beams,
                do_sample=False,
                early_stopping=False,
                length_penalty=1.0,
                prefix_allowed_tokens_fn=allowed,
                return_dict_in_generate=True,
                output_scores=True,
                pad_token_id=PAD,
                eos_token_id=None,
                bos_token_id=BOS,
            )
        finally:
            self.train(was_training)
        seqs = out.sequences[:, prompt_len:].view(len(histories), beams, -1).tolist()
        scores = out.sequences_scores.view(len(histories), beams).tolist()
        result = []
        for hist, rows, sc in zip(histories, seqs, scores, strict=True):
            seen, items = set(hist), []
            for _, toks in sorted(zip(sc, rows, strict=True), key=lambda p: -p[0]):
                item = self.codec.decode(toks)
                # a beam may be invalid only when fewer items than beams are left (-inf beams)
                if item is not None and item not in seen:
                    seen.add(item)
                    items.append(item)
            result.append(items)
        return result

    def recommend(self, histories: list[list[str]], k: int = 20, exclude_seen: bool = True) -> TopK:
        """Top-k external ids by beam order (``k`` beams); history items are always excluded."""
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if self.catalog is None:
            raise ValueError("this GenerativeRecommender was built without a catalog")
        if not exclude_seen:
            raise ValueError("the generative peer always bans history items in its trie")
        hists = self.catalog.batch_indices(histories)
        items = self.generate_items(hists, num_beams=k)
        idx = np.full((len(hists), k), -1, dtype=np.int64)
        sc = np.full((len(hists), k), -np.inf, dtype=np.float32)
        for r, row in enumerate(items):
            idx[r, : len(row)] = row[:k]
            sc[r, : len(row)] = -np.arange(len(row[:k]), dtype=np.float32)  # beam rank as score
        return TopK(
            ids=[[self.catalog.ids[i] for i in row[:k]] for row in items],
            scores=sc,
            indices=idx,
            fallback=[False] * len(hists),
            titles=[[self.catalog.titles[i] for i in row[:k]] for row in items],
        )


def train_generative(
    model: GenerativeRecommender,
    split: LeaveOneOutSplit,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    seed: int = 0,
    max_train_seconds: float | None = None,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Train on ``split.train`` (next-token CE), AdamW + linear warm-up (2%) + cosine decay
    (over steps, or over wall time under ``max_train_seconds`` when that comes first).

    A fixed number of epochs (or until ``max_train_seconds``): no per-epoch validation, because
    one beam-search pass over the validation users costs more than an epoch. Returns the loss
    per epoch, epochs run and seconds.
    """
    seqs = [s for s in split.train if len(s) >= 2]
    if not seqs:
        raise ValueError("no training sequences with at least 2 items; check the data set")
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(seqs) / batch_size)
    total = max(1, steps_per_epoch * epochs)
    warmup = max(1, int(0.02 * total))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    start = time.perf_counter()

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if max_train_seconds:  # under a time budget the decay follows wall time too
            progress = max(progress, (time.perf_counter() - start) / max_train_seconds)
        return max(0.5 * (1 + math.cos(math.pi * min(1.0, progress))), 1e-3)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    device = next(model.parameters()).device
    history = []
    model.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(seqs), generator=gen).tolist()
        loss_sum, n = 0.0, 0
        for b in range(0, len(order), batch_size):
            batch = model.training_batch([seqs[i] for i in order[b : b + batch_size]])
            loss = model.loss({k: v.to(device) for k, v in batch.items()})
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            loss_sum += loss.item() * len(batch["input_ids"])
            n += len(batch["input_ids"])
            if max_train_seconds and time.perf_counter() - start > max_train_seconds:
                break  # the budget ends mid-epoch (one epoch can be longer than the budget)
        elapsed = time.perf_counter() - start
        history.append(
            {
                "epoch": epoch,
                "loss": loss_sum / n,
                "examples": n,  # < len(seqs) when the time budget ended the epoch early
                "seconds": round(elapsed, 3),
            }
        )
        if log:
            log(f"generative epoch {epoch:>3}/{epochs}  loss {loss_sum / n:.4f}  ({elapsed:.1f}s)")
        if max_train_seconds and elapsed > max_train_seconds:
            if log:
                log(f"stopping: training time budget of {max_train_seconds:.0f}s reached")
            break
    model.eval()
    return {
        "history": history,
        "epochs_run": len(history),
        "train_seconds": time.perf_counter() - start,
    }


def evaluate_generative(
    model: GenerativeRecommender,
    examples: Sequence[tuple[list[int], int]],
    batch_size: int = 64,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict:
    """Recall/NDCG@K of the beam ranking on (history, target) examples (history items banned).

    A target not among the ``num_beams`` beams is a miss; K above ``num_beams`` is refused.
    """
    if max(ks) > model.config.num_beams:
        raise ValueError(f"K up to {max(ks)} needs at least that many beams, got {model.config}")
    ranks = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        lists = model.generate_items([h for h, _ in chunk])
        for items, (_, target) in zip(lists, chunk, strict=True):
            ranks.append(items.index(target) if target in items else model.config.num_items)
    out = metrics_from_ranks(ranks, ks)
    out["users"] = len(examples)
    return out
