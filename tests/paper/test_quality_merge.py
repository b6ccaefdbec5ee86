"""benchmarks/quality.py: seed spread and the paired bootstrap of the merge step."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(model, seed, ndcg, valid, ranks_file=None, dropout=0.5):
    # the model config is partial, as in runs recorded before a setting existed
    metrics = {f"{m}@{k}": ndcg for m in ("recall", "ndcg") for k in (5, 20)}
    return {
        "dataset": "d",
        "model": model,
        **metrics,
        "ndcg@10": ndcg,
        "recall@10": ndcg * 2,
        "train_seconds": 1.0,
        "epochs": 1,
        "machine": "m",
        "valid_ndcg@10": valid,
        "config": {"model": {"dropout": dropout}, "train": {"seed": seed}, "best_epoch": seed},
        "seed": seed,
        "ranks_file": ranks_file,
    }


def test_paired_bootstrap_matches_the_mean_difference_and_brackets_it():
    q = _module()
    rng = np.random.default_rng(0)
    b = rng.integers(0, 50, 4000)
    a = np.where(rng.random(4000) < 0.3, 0, b)  # model a moves 30% of users to rank 0
    res = q.paired_bootstrap(a.tolist(), b.tolist(), draws=2000)
    hit_a, hit_b = a < 10, b < 10
    exact = (
        np.where(hit_a, 1 / np.log2(a + 2.0), 0).mean()
        - np.where(hit_b, 1 / np.log2(b + 2.0), 0).mean()
    )
    assert res["ndcg@10"]["diff"] == pytest.approx(exact, abs=1e-5)
    assert res["recall@10"]["diff"] == pytest.approx(hit_a.mean() - hit_b.mean(), abs=1e-5)
    lo, hi = res["ndcg@10"]["ci95"]
    assert 0 < lo < exact < hi  # a real gain: the interval excludes 0
    same = q.paired_bootstrap(b.tolist(), b.tolist(), draws=200)
    assert same["ndcg@10"] == {"diff": 0.0, "ci95": [0.0, 0.0]}
    with pytest.raises(ValueError, match="not the same users"):
        q.paired_bootstrap([1, 2], [1])


def test_merge_reports_the_seed_spread_and_the_paired_difference(tmp_path):
    q = _module()
    (tmp_path / "ranks").mkdir()
    for name, ranks in (("lite", [0, 1, 20]), ("sas", [5, 30, 20])):
        (tmp_path / "ranks" / f"{name}.json").write_text(json.dumps(ranks))
    newer = _run("Lite-LLM4Rec", 0, 0.30, 0.31, "ranks/lite.json")
    newer["config"]["model"]["resid_dropout"] = None  # written out at its default
    runs = [
        newer,
        # recorded before runs had a "seed" field and before resid_dropout existed
        {k: v for k, v in _run("Lite-LLM4Rec", 1, 0.20, 0.29).items() if k != "seed"},
        _run("Lite-LLM4Rec", 0, 0.90, 0.10, dropout=0.2),  # worse on validation: not chosen
        _run("SASRec", 0, 0.10, 0.20, "ranks/sas.json"),
    ]
    chosen = q.annotate(q.select(runs), runs, [tmp_path])
    lite = next(r for r in chosen if r["model"] == "Lite-LLM4Rec")
    assert lite["ndcg@10"] == 0.30  # selected on validation, not on test
    assert lite["seed_spread"]["seeds"] == 2
    assert lite["seed_spread"]["ndcg@10"]["mean"] == pytest.approx(0.25)
    assert lite["seed_spread"]["ndcg@10"]["std"] == pytest.approx(0.0707107, abs=1e-5)
    (pair,) = lite["vs_sasrec"]
    assert pair["seed"] == 0
    assert pair["recall@10"]["diff"] == pytest.approx(1 / 3, abs=1e-5)  # 2 hits vs 1
    text = q.render(chosen)
    assert "| d | Lite-LLM4Rec | 2 | 0.2500 ± 0.0707 |" in text
    assert "| d | 0 | +" in text


def test_cold_start_rows_are_selected_per_split_and_rendered_apart():
    q = _module()
    runs = [_run("Lite-LLM4Rec", 0, 0.05, 0.06), _run("SASRec", 0, 0.04, 0.05)]
    for which, ndcg in (("cold", 0.02), ("warm", 0.05)):
        for valid, model in ((0.03, "text-cosine"), (0.055, "Lite-LLM4Rec (head text+id)")):
            runs.append(
                _run(model, 0, ndcg, valid)
                | {"split": which, "users": 7, "cold_items": 0.1, "cold_seed": 0}
            )
    chosen = q.annotate(q.select(runs), runs, [])
    assert [(r["model"], r.get("split", "all")) for r in chosen] == [
        ("SASRec", "all"),
        ("Lite-LLM4Rec", "all"),
        ("text-cosine", "cold"),
        ("Lite-LLM4Rec (head text+id)", "cold"),
        ("text-cosine", "warm"),
        ("Lite-LLM4Rec (head text+id)", "warm"),
    ]
    assert all("seed_spread" not in r for r in chosen if r.get("split"))
    text = q.render(chosen)
    main, cold = text.split("Cold start: 10% of the items (seed 0)")
    assert "text-cosine" not in main and "| cold | d | Lite-LLM4Rec (head text+id) | 7 |" in cold


def test_by_target_splits_ranks_by_held_out_target():
    from types import SimpleNamespace

    q = _module()
    split = SimpleNamespace(cold_items=[3], test=[([1], 3), ([2], 4), ([1, 2], 3)])
    out = q.by_target(split, [0, 50, 12])
    (cold, n_cold), (warm, n_warm) = out["cold"], out["warm"]
    assert (n_cold, n_warm) == (2, 1)
    assert cold["recall@10"] == 0.5 and cold["recall@20"] == 1.0 and warm["recall@20"] == 0.0


def test_merging_again_into_the_same_folder_keeps_each_run_once(tmp_path, monkeypatch):
    q = _module()
    new, out = tmp_path / "new", tmp_path / "results"
    new.mkdir()
    runs = [_run("Lite-LLM4Rec", 0, 0.3, 0.31), _run("SASRec", 0, 0.1, 0.2)]
    (new / "quality_runs.json").write_text(json.dumps(runs))
    for _ in range(2):  # the results folder is itself one of the merged folders
        argv = ["quality.py", "--merge", str(out), str(new), "--out", str(out)]
        monkeypatch.setattr("sys.argv", argv)
        q.main()
    assert json.loads((out / "quality_runs.json").read_text()) == runs
