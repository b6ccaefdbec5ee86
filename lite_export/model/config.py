"""One config dataclass for the model, one for training, and their named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

# Item-LLM names that are not paths or hub ids.
TINY_RANDOM_ITEM_LLM = "tiny-random"  # a small randomly initialised BERT + word-level tokenizer
MINILM_ITEM_LLM = "all-minilm-l6-v2"  # sentence-transformers/all-MiniLM-L6-v2, shipped offline

REC_ARCHS = ("llama", "qwen2", "gpt2")
ITEM_FUSIONS = ("sum", "gate")
#: how the head's item rows are made: "id" one learned row per item (``Linear(d, N)``); "text"
#: from the item's item-LLM vector (``Linear(d_item, d + 1)``: the row and its bias), so an item
#: the model never saw has a row; "text+id" the text row plus a learned per-item residual
HEADS = ("id", "text", "text+id")


@dataclass
class LiteConfig:
    """Everything that defines a Lite-LLM4Rec network (and its SASRec peer).

    item LLM  -> adapter Linear(d_item, d_model) (+ learned item-id embedding)
              -> rec LLM (causal, fed through ``inputs_embeds``) -> head Linear(d_model, N)
    """

    # item LLM: path or hub id, "tiny-random", "all-minilm-l6-v2", or None (item ids only = SASRec)
    item_llm: str | None = TINY_RANDOM_ITEM_LLM
    item_llm_max_tokens: int = 64  # text longer than this is truncated before pooling
    item_llm_dim: int = 32  # width of the tiny random item LLM (ignored for pretrained ones)
    finetune_item_llm: bool = False  # train the item LLM too (small catalogs only)
    use_id_embedding: bool = True  # add a learned item-id embedding to the adapted text vector
    # how the adapted text vector a and the id embedding e are combined: "sum" (a + e) or "gate"
    # (g * a + (1 - g) * e, g = sigmoid(Linear(2d, d)([a; e])), learned per item and dimension)
    item_fusion: str = "sum"

    # rec LLM: a pretrained backbone (path or hub id) or one built from the fields below
    rec_llm: str | None = None
    rec_arch: str = "llama"  # llama | qwen2 | gpt2, used when rec_llm is None
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    d_ff: int = 256
    dropout: float = 0.1  # on the item embeddings fed to the rec LLM and inside it
    # dropout on each attention and MLP block's output, before the residual add (SASRec's); None:
    # the architecture's own (gpt2: ``dropout``; llama and qwen2 have none)
    resid_dropout: float | None = None
    max_history: int = 50  # positions the rec LLM sees; longer histories keep the most recent
    # the head's item rows: "id" (learned, one per training item), "text" (computed from the
    # item-LLM vector) or "text+id" (text row + learned residual); see HEADS
    head: str = "id"
    # "text+id": in training, drop each item's residual row with this probability (rescaled), so
    # the text row alone scores well, as it must for an item added after training
    head_residual_dropout: float = 0.0
    # text heads: the head also scores the cosine between the candidate's item-LLM vector and the
    # mean of the history's (both centred on the catalog mean), times a learned scale: a frozen
    # text-match term beside the learned rows, full item-LLM width, for items the model never saw.
    # The user vector and the head rows grow from d_model to d_model + d_item columns
    head_match: bool = False
    # "text+id" with head_match and head_residual_dropout: a text-only row (an item whose
    # residual training dropped this step, held out of training, or added by `lite catalog add`)
    # gets its own match scale and a bias offset, learned on the rows training drops; exports
    # freeze them into those rows, so serving is unchanged
    head_cold_scale: bool = False

    # filled when the model is bound to a catalog
    num_items: int = 0

    def __post_init__(self) -> None:
        if self.item_llm is None and not self.use_id_embedding:
            raise ValueError(
                "LiteConfig: with item_llm=None the model has no item input at all; "
                "set use_id_embedding=True (SASRec) or name an item LLM"
            )
        if self.rec_llm is None and self.rec_arch not in REC_ARCHS:
            raise ValueError(
                f"LiteConfig: rec_arch={self.rec_arch!r} is not one of {REC_ARCHS}; "
                "or pass rec_llm=PATH_OR_ID for any Hugging Face backbone"
            )
        if self.d_model % self.n_heads:
            raise ValueError(
                f"LiteConfig: d_model={self.d_model} must be divisible by n_heads={self.n_heads}"
            )
        if self.max_history < 1:
            raise ValueError(f"LiteConfig: max_history must be >= 1, got {self.max_history}")
        if self.item_fusion not in ITEM_FUSIONS:
            raise ValueError(
                f"LiteConfig: item_fusion={self.item_fusion!r} is not one of {ITEM_FUSIONS}"
            )
        if self.item_fusion == "gate" and not (self.uses_item_llm and self.use_id_embedding):
            raise ValueError(
                "LiteConfig: item_fusion='gate' mixes the item-LLM vector with the id embedding; "
                "it needs both (an item LLM and use_id_embedding=True); use 'sum' otherwise"
            )
        if self.head not in HEADS:
            raise ValueError(f"LiteConfig: head={self.head!r} is not one of {HEADS}")
        if self.head != "id" and not self.uses_item_llm:
            raise ValueError(
                f"LiteConfig: head={self.head!r} computes item rows from the item-LLM vector; "
                "it needs an item LLM (item_llm=None is SASRec, which has only head='id')"
            )
        if self.head_residual_dropout and self.head != "text+id":
            raise ValueError(
                "LiteConfig: head_residual_dropout drops the learned residual of head='text+id'; "
                f"this model has head={self.head!r}"
            )
        if self.head_match and self.head == "id":
            raise ValueError(
                "LiteConfig: head_match adds a text-match term to a text head; it needs "
                "head='text' or 'text+id' (an id head scores only the items it trained on)"
            )
        if self.head_cold_scale and not (
            self.head == "text+id" and self.head_match and self.head_residual_dropout
        ):
            raise ValueError(
                "LiteConfig: head_cold_scale learns the text-only rows' match scale from the rows "
                "whose residual training drops; it needs head='text+id', head_match=True and "
                f"head_residual_dropout > 0 (got head={self.head!r}, head_match={self.head_match}, "
                f"head_residual_dropout={self.head_residual_dropout})"
            )
        for name in ("dropout", "resid_dropout", "head_residual_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"LiteConfig: {name} must be in [0, 1), got {value}")

    @property
    def uses_item_llm(self) -> bool:
        return self.item_llm is not None

    @classmethod
    def from_name(cls, name: str, **overrides) -> LiteConfig:
        """A named preset (see ``PRESETS``) with field overrides (None values are ignored)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        values = dict(PRESETS[name]["model"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LiteConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"config has unknown fields {unknown}: it was written by a newer lite-export; "
                "upgrade lite-export to load it"
            )
        return cls(**data)


@dataclass
class TrainConfig:
    """How a model is trained (full-softmax CE at every position, AdamW, warm-up + decay)."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.02  # fraction of training spent warming up, then cosine decay to 0
    grad_clip: float = 1.0
    label_smoothing: float = 0.0  # of the cross-entropy targets (full and sampled softmax)
    patience: int = 5  # stop after this many epochs without a better validation NDCG@10
    eval_batch_size: int = 256
    loss: str = "full"  # full | sampled
    num_negatives: int = 1024  # shared uniform negatives for sampled softmax
    seed: int = 0
    # stop after the epoch that crosses this budget (on one process, mid-epoch as soon as it is
    # crossed; that partial epoch is still validated); on one process the LR schedule follows
    # wall time (so it anneals within the budget) and runs are no longer bit-reproducible
    max_train_seconds: float | None = None
    # with head_cold_scale: hold this seeded fraction of the training items out of training
    # (text-only from then on, like added items) and, after training, set the cold scale and
    # bias offset to what ranks them best on the validation users whose target they are
    cold_calibration: float = 0.0
    # the validation NDCG@10 the other users may lose to it (a fraction of the learned values')
    cold_calibration_warm_cost: float = 0.02
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.loss not in ("full", "sampled"):
            raise ValueError(f"TrainConfig: loss must be 'full' or 'sampled', got {self.loss!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("TrainConfig: epochs and batch_size must be >= 1")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(
                f"TrainConfig: label_smoothing must be in [0, 1), got {self.label_smoothing}"
            )
        if not 0.0 <= self.cold_calibration < 0.5:
            raise ValueError(
                "TrainConfig: cold_calibration is the fraction of items held out to calibrate "
                f"the cold scale, in [0, 0.5) (e.g. 0.05), got {self.cold_calibration}"
            )
        if not 0.0 <= self.cold_calibration_warm_cost < 1.0:
            raise ValueError(
                "TrainConfig: cold_calibration_warm_cost is a fraction of the other users' "
                f"validation NDCG@10, in [0, 1), got {self.cold_calibration_warm_cost}"
            )

    @classmethod
    def from_name(cls, name: str, **overrides) -> TrainConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        values = dict(PRESETS[name]["train"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, dict[str, dict]] = {
    # seconds on a laptop CPU: tests and `lite demo`
    "tiny": {
        "model": dict(
            item_llm=TINY_RANDOM_ITEM_LLM,
            item_llm_dim=32,
            d_model=64,
            n_layers=2,
            n_heads=2,
            d_ff=128,
            dropout=0.1,
            max_history=50,
        ),
        "train": dict(epochs=8, batch_size=128, lr=3e-3, patience=3),
    },
    # the real-data configuration: all-MiniLM-L6-v2 item LLM, a small Llama-style rec LLM
    "small": {
        "model": dict(
            item_llm=MINILM_ITEM_LLM,
            d_model=128,
            n_layers=2,
            n_heads=2,
            d_ff=512,
            dropout=0.2,
            max_history=200,
        ),
        "train": dict(epochs=200, batch_size=128, lr=1e-3, patience=10),
    },
    # the classic peer: learned item-id embeddings in place of the item LLM, same backbone and loss
    "sasrec": {
        "model": dict(
            item_llm=None,
            use_id_embedding=True,
            d_model=128,
            n_layers=2,
            n_heads=2,
            d_ff=512,
            dropout=0.2,
            max_history=200,
        ),
        "train": dict(epochs=200, batch_size=128, lr=1e-3, patience=10),
    },
}
