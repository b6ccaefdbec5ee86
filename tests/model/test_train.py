import pytest
import torch

from lite_export.model.config import LiteConfig, TrainConfig
from lite_export.model.workflow import most_popular_metrics


def test_training_beats_most_popular_by_a_clear_margin(trained, synthetic):
    _, result, test, _ = trained
    _, split = synthetic
    pop = most_popular_metrics(split)
    assert result.epochs_run >= 1
    # the loss falls and the model is several times better than most-popular on held-out users
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < losses[0]
    assert test["ndcg@10"] > 2.5 * pop["ndcg@10"], (test, pop)
    assert test["recall@10"] > 2.0 * pop["recall@10"], (test, pop)


def test_training_is_deterministic_under_a_seed(synthetic):
    from accelerate import Accelerator

    from lite_export.model.workflow import DataSpec, train_checkpoint

    ds, split = synthetic
    small = (
        ds,
        type(split)(split.train[:300], split.valid[:100], split.test[:100], split.popularity),
    )

    def run(seed):
        (
            _,
            result,
            test,
        ) = train_checkpoint(
            DataSpec("synthetic"),
            LiteConfig.from_name("tiny", d_model=32, d_ff=64, max_history=20),
            TrainConfig.from_name("tiny", epochs=2, seed=seed),
            None,
            accelerator=Accelerator(cpu=True),
            progress=False,
            log=None,
            data=small,
        )
        return [r["loss"] for r in result.history], test

    a, b, c = run(0), run(0), run(1)
    assert a == b
    assert a[0] != c[0]


def test_train_config_validation():
    with pytest.raises(ValueError, match="loss must be"):
        TrainConfig(loss="bpr")
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig.from_name("huge")


def test_sampled_softmax_training_runs(synthetic):
    from accelerate import Accelerator

    from lite_export.model.workflow import DataSpec, train_checkpoint

    ds, split = synthetic
    small = (
        ds,
        type(split)(split.train[:200], split.valid[:50], split.test[:50], split.popularity),
    )
    _, result, test = train_checkpoint(
        DataSpec("synthetic"),
        LiteConfig.from_name("tiny", d_model=32, d_ff=64, max_history=20),
        TrainConfig.from_name("tiny", epochs=1, loss="sampled", num_negatives=64),
        None,
        accelerator=Accelerator(cpu=True),
        progress=False,
        log=None,
        data=small,
    )
    assert torch.isfinite(torch.tensor(result.history[0]["loss"]))
    assert 0.0 <= test["ndcg@10"] <= 1.0


def test_lr_schedule_warms_up_then_decays_and_follows_a_time_budget():
    import time

    from lite_export.model.train import _lr_factor

    clock = {"start": time.perf_counter()}
    f = [_lr_factor(s, total=100, warmup=0.1, budget=None, clock=clock) for s in range(101)]
    assert f[0] < f[5] < f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert f[100] == pytest.approx(0.0, abs=1e-9)
    # under a time budget that is already spent, the schedule is at its end whatever the step
    spent = {"start": time.perf_counter() - 10.0}
    assert _lr_factor(1, total=100, warmup=0.1, budget=5.0, clock=spent) == pytest.approx(
        0.0, abs=1e-9
    )
    half = {"start": time.perf_counter() - 5.0}
    assert _lr_factor(1, total=100, warmup=0.0, budget=10.0, clock=half) == pytest.approx(
        0.5, abs=0.02
    )


def test_finetuned_item_llm_vectors_are_refreshed_and_saved(synthetic, tmp_path):
    from accelerate import Accelerator

    from lite_export.model.item_llm import encode_texts
    from lite_export.model.lite_llm4rec import LiteLLM4Rec
    from lite_export.model.workflow import DataSpec, train_checkpoint

    ds, split = synthetic
    small = (
        ds,
        type(split)(split.train[:100], split.valid[:20], split.test[:20], split.popularity),
    )
    cfg = LiteConfig.from_name("tiny", d_model=32, d_ff=64, max_history=20)
    cfg.finetune_item_llm = True
    model, _, _ = train_checkpoint(
        DataSpec("synthetic"),
        cfg,
        TrainConfig.from_name("tiny", epochs=1, lr=1e-2),
        tmp_path / "ft",
        accelerator=Accelerator(cpu=True),
        progress=False,
        log=None,
        data=small,
    )
    fresh = encode_texts(
        model.item_llm, model.item_tokenizer, model.catalog.texts, cfg.item_llm_max_tokens
    )
    torch.testing.assert_close(model.item_vectors[:-1], fresh)
    loaded = LiteLLM4Rec.from_pretrained(tmp_path / "ft")
    torch.testing.assert_close(loaded.item_vectors, model.item_vectors)


def test_a_time_budget_shorter_than_an_epoch_stops_mid_epoch(synthetic):
    from accelerate import Accelerator

    from lite_export.model.lite_llm4rec import LiteLLM4Rec
    from lite_export.model.train import train_model
    from lite_export.model.workflow import catalog_of

    ds, split = synthetic
    model = LiteLLM4Rec.build(
        LiteConfig.from_name("tiny", d_model=32, d_ff=64, max_history=20), catalog_of(ds, split)
    )
    cfg = TrainConfig.from_name("tiny", epochs=3, batch_size=16, max_train_seconds=1e-6)
    result = train_model(
        model, split, cfg, accelerator=Accelerator(cpu=True), progress=False, log=None
    )
    # one batch, then the budget is spent: that partial epoch is validated and training ends
    assert result.epochs_run == 1 and len(result.history) == 1
    assert sum(result.history[0]["rank_examples"]) == 16 < sum(len(s) >= 2 for s in split.train)
    assert result.best_epoch == 1 and "ndcg@10" in result.best_valid
