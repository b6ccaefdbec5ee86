"""`lite tune` against real `lite serve` processes: a reachable target writes settings that
`lite serve --config` and `lite export --triton-config` apply; an impossible one fails clearly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lite_export.cli import app
from lite_export.perf.tune import TIMED_GAIN, choose

runner = CliRunner()

SMALL = [
    "--engines",
    "onnxruntime",
    "--threads",
    "1",
    "--max-concurrency",
    "8",
    "--duration-s",
    "0.3",
    "--confirm-s",
    "0.5",
    "--history",
    "20",
    "--no-progress",
]


def _parse_pbtxt(text: str):
    from google.protobuf import text_format

    pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    return text_format.Parse(text, pb2.ModelConfig())


@pytest.fixture(scope="module")
def tuned(perf_artifact, tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    args = ["tune", str(perf_artifact), "--p99-ms", "5000", "--out", str(out), *SMALL]
    res = runner.invoke(app, [*args, "--max-batch", "4,8", "--max-delay-ms", "0,2"])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_generous_target_is_met_by_the_best_trial(tuned):
    out, output = tuned
    summary = json.loads((out / "tune.json").read_text())
    trials = json.loads((out / "tune_trials.json").read_text())
    assert summary["met"] is True and "chosen:" in output
    # stage 1: (onnxruntime, 1 thread) at max_batch 8 (nearest 32), continuous (the default);
    # stage 2 adds max_batch 4; stage 3 adds a 2 ms wait at the better batch: three settings
    keys = [tuple(sorted(t["settings"].items())) for t in trials]
    assert len(trials) == 3 == len(set(keys))
    assert [t["stage"] for t in trials] == ["engine x threads", "max_batch", "max_delay_ms"]
    for t in trials:
        assert t["met"] and t["server_exit"] == 0
        assert t["machine"] and t["commit"] and t["target_p99_ms"] == 5000
        assert t["steps"][0]["concurrency"] == 1
        for step in t["steps"]:
            assert step["ok"] == step["sent"] > 0
            assert 0 < step["p50_ms"] <= step["p95_ms"] <= step["p99_ms"] <= 5000
    # the best three were measured again with their final settings, and the best of each
    # batching mode (here among them); the best of those won (a timed wait only by TIMED_GAIN)
    confirmed = [t for t in trials if t.get("confirm_runs")]
    assert len(confirmed) == 3
    top3 = sorted(trials, key=lambda t: -t["throughput_rps"])[:3]
    assert {t["trial"] for t in confirmed} == {t["trial"] for t in top3}
    assert {t["settings"]["max_delay_ms"] > 0 for t in confirmed} == {True, False}
    chosen = summary["chosen"]
    confirm = chosen["confirm"]
    assert confirm["met"] and confirm["p99_ms"] <= 5000 and confirm["ok"] == confirm["sent"]
    best = {
        timed: max(
            (
                r
                for t in confirmed
                for r in t["confirm_runs"]
                if r["met"] and (t["settings"]["max_delay_ms"] > 0) is timed
            ),
            key=lambda r: r["throughput_rps"],
        )
        for timed in (False, True)
    }
    wait_pays = best[True]["throughput_rps"] >= TIMED_GAIN * best[False]["throughput_rps"]
    assert confirm == best[wait_pays] and chosen["trial"] == best[wait_pays]["trial"]
    won = next(t for t in trials if t["trial"] == chosen["trial"])
    for key in ("engine", "threads", "max_batch", "max_delay_ms"):
        assert chosen["settings"][key] == won["settings"][key]


def test_continuous_batching_and_a_timed_wait_are_both_measured_and_one_chosen(tuned):
    out, output = tuned
    summary = json.loads((out / "tune.json").read_text())
    batching, chosen = summary["batching"], summary["chosen"]
    mode = "timed" if chosen["settings"]["max_delay_ms"] > 0 else "continuous"
    assert batching["chosen"] == mode
    for name, wait in (("continuous", False), ("timed", True)):
        best = batching[name]
        assert best["met"] and best["measured"] == "confirmed", best
        assert (best["settings"]["max_delay_ms"] > 0) is wait
        assert best["throughput_rps"] > 0 and best["p99_ms"] <= 5000
    # the chosen mode is continuous unless a timed wait served TIMED_GAIN x more
    assert batching[mode]["throughput_rps"] == chosen["confirm"]["throughput_rps"]
    gain = batching["timed"]["throughput_rps"] / batching["continuous"]["throughput_rps"]
    assert mode == ("timed" if gain >= TIMED_GAIN else "continuous")
    # and the output says which and why: serve.json, tune.json and the printed message
    serve = json.loads((out / "serve.json").read_text())
    assert serve["_batching"] == batching["why"] and batching["why"].startswith(mode)
    assert f"batching: {batching['why']}" in summary["message"]
    assert f"batching: {mode}" in " ".join(output.split())


def _confirmed(rps: float, p99: float, delay: float, trial: int) -> tuple:
    settings = {"engine": "onnxruntime", "threads": 1, "max_batch": 8, "max_delay_ms": delay}
    run = {"throughput_rps": rps, "p99_ms": p99}
    return (rps, -p99, {"trial": trial, "settings": settings}, settings, run)


@pytest.mark.parametrize(
    "timed_rps,expected",
    [(1000.0, "continuous"), (1040.0, "continuous"), (1060.0, "timed"), (900.0, "continuous")],
)
def test_a_timed_wait_is_chosen_only_when_it_pays(timed_rps, expected):
    cont, timed = _confirmed(1000.0, 9.0, 0.0, 1), _confirmed(timed_rps, 12.0, 2.0, 2)
    (*_, run), why = choose([timed, cont])
    assert why.startswith(expected) and run["throughput_rps"] == (
        timed_rps if expected == "timed" else 1000.0
    )
    assert "max_delay_ms 2" in why  # names the other mode's best
    # one mode alone: that one, saying the other was not confirmed
    assert choose([timed])[1].startswith("timed") and "no continuous" in choose([timed])[1]
    assert choose([cont])[1].startswith("continuous") and "no timed" in choose([cont])[1]


def test_printed_table_shows_the_confirmation_runs_that_decided(tuned):
    out, output = tuned
    trials = json.loads((out / "tune_trials.json").read_text())
    chosen = json.loads((out / "tune.json").read_text())["chosen"]
    runs = [(t, run) for t in trials for run in t.get("confirm_runs", [])]
    assert len(runs) >= 3
    rows = [line for line in output.splitlines() if "│ confirm" in line]
    assert len(rows) == len(runs), output
    for row, (trial, run) in zip(rows, runs, strict=True):
        cells = [c.strip() for c in row.strip().strip("│").split("│")]
        s = trial["settings"]
        assert cells[:6] == [
            str(trial["trial"]),
            "confirm",
            s["engine"],
            str(s["threads"]),
            str(s["max_batch"]),
            f"{s['max_delay_ms']:g}" if s["max_delay_ms"] > 0 else "0 (cont.)",
        ], row
        assert cells[6] == str(run["concurrency"])
        assert cells[7] == f"{run['throughput_rps']:,.0f}"
        assert cells[9] == f"{run['p99_ms']:.2f}"
        assert cells[10] == ("yes" if run["met"] else "no") + (
            ", chosen" if run == chosen["confirm"] else ""
        )
    # exactly one run decided, and it is the one tune.json reports
    assert sum(", chosen" in r for r in rows) == 1 and chosen["confirm"]["chosen"] is True


def test_serve_json_is_what_lite_serve_runs_with(tuned, perf_artifact, tmp_path):
    from lite_export.perf.load import free_port
    from lite_export.serving.settings import ServeSettings

    out, _ = tuned
    chosen = json.loads((out / "tune.json").read_text())["chosen"]["settings"]
    settings = ServeSettings.resolve(perf_artifact, out / "serve.json")
    for key, value in chosen.items():
        assert getattr(settings, key) == value
    assert settings.max_queue >= 2 * settings.max_batch
    port = free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "lite_export.cli", "serve", str(perf_artifact)]
        + ["--config", str(out / "serve.json"), "--port", str(port), "--log-level", "warning"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        model = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/model", timeout=2) as r:
                    model = json.loads(r.read())
                    break
            except OSError:
                time.sleep(0.1)
        assert model is not None, (tmp_path / "serve.log").read_text()
        serving = model["serving"]
        for key in ("max_batch", "max_delay_ms", "max_queue", "threads"):
            assert serving[key] == chosen[key], key
        assert model["engine"] == chosen["engine"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        log.close()


def test_triton_values_reach_config_pbtxt(tuned, perf_checkpoint, tmp_path):
    out, _ = tuned
    triton = json.loads((out / "tune.json").read_text())["triton"]
    chosen = json.loads((out / "tune.json").read_text())["chosen"]["settings"]
    assert triton["max_batch_size"] == chosen["max_batch"]
    assert triton["max_queue_delay_microseconds"] == round(chosen["max_delay_ms"] * 1000)
    assert triton["preferred_batch_size"][-1] == chosen["max_batch"]
    snippet = _parse_pbtxt((out / "tune_triton.pbtxt").read_text())
    assert snippet.max_batch_size == triton["max_batch_size"]
    assert list(snippet.dynamic_batching.preferred_batch_size) == triton["preferred_batch_size"]
    # lite export applies tune.json; an explicit flag still wins over it
    art = tmp_path / "art"
    res = runner.invoke(
        app,
        ["export", str(perf_checkpoint), "--out", str(art), "--k", "20", "--format", "triton"]
        + ["--triton-config", str(out / "tune.json"), "--triton-max-queue-delay-us", "777"],
    )
    assert res.exit_code == 0, res.output
    for model in ("lite", "lite_onnx"):
        cfg = _parse_pbtxt((art / "triton" / model / "config.pbtxt").read_text())
        assert cfg.max_batch_size == triton["max_batch_size"]
        assert list(cfg.dynamic_batching.preferred_batch_size) == triton["preferred_batch_size"]
        assert cfg.dynamic_batching.max_queue_delay_microseconds == 777
    manifest = json.loads((art / "manifest.json").read_text())["triton"]
    assert manifest["max_batch_size"] == triton["max_batch_size"]
    assert manifest["max_queue_delay_microseconds"] == 777
    assert manifest["batching_from"] == str(out / "tune.json")


def test_impossible_target_fails_and_writes_nothing_misleading(perf_artifact, tmp_path):
    res = runner.invoke(
        app,
        ["tune", str(perf_artifact), "--p99-ms", "0.001", "--out", str(tmp_path), *SMALL]
        + ["--max-batch", "4", "--max-delay-ms", "0"],
    )
    assert res.exit_code == 1, res.output
    assert "no setting met p99 <= 0.001 ms" in res.output
    assert "lowest p99 measured was" in res.output
    assert not (tmp_path / "serve.json").exists()
    assert not (tmp_path / "tune_triton.pbtxt").exists()
    summary = json.loads((tmp_path / "tune.json").read_text())
    assert summary["met"] is False and "triton" not in summary and "chosen" not in summary
    (trial,) = json.loads((tmp_path / "tune_trials.json").read_text())
    assert trial["met"] is False and len(trial["steps"]) == 1  # the ladder stopped at C=1
    assert trial["steps"][0]["p99_ms"] > 0.001 and trial["server_exit"] == 0
    # and lite export refuses to take Triton values from it
    res = runner.invoke(
        app,
        ["export", "ckpt-unused", "--out", str(tmp_path / "a"), "--format", "triton"]
        + ["--triton-config", str(tmp_path / "tune.json")],
    )
    assert res.exit_code == 2 and "met no target" in res.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--triton-config", "x.json"], "apply to --format triton"),
        (["--format", "triton", "--triton-config", "missing.json"], "does not exist"),
        (["--format", "triton", "--triton-preferred-batch-sizes", "0"], "must be integers >= 1"),
    ],
)
def test_export_triton_batching_options_are_checked(tmp_path, args, message):
    res = runner.invoke(app, ["export", "ckpt-unused", "--out", str(tmp_path / "a"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_tune_bad_options(perf_artifact, tmp_path):
    res = runner.invoke(app, ["tune", str(perf_artifact), "--p99-ms", "-1", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--p99-ms" in res.output
    res = runner.invoke(
        app, ["tune", str(Path(tmp_path) / "none"), "--p99-ms", "10", "--out", str(tmp_path)]
    )
    assert res.exit_code == 2 and "does not exist" in res.output


def test_outputs_are_marked_and_only_lite_exports_own_are_replaced(tuned, perf_artifact, tmp_path):
    """Writing directories (SPEC §7): before any measurement, a file of an output's name is
    refused unless lite-export wrote it, and replaced only with --force."""
    import shutil

    from lite_export.artifact import written_by_lite_export
    from lite_export.perf.tune import TUNE_FILES

    out, _ = tuned
    assert all(written_by_lite_export(out / n) for n in TUNE_FILES)
    target = tmp_path / "t"
    shutil.copytree(out, target)
    before = {n: (target / n).read_bytes() for n in TUNE_FILES}
    args = ["tune", str(perf_artifact), "--p99-ms", "0.001", "--out", str(target), *SMALL]
    args += ["--max-batch", "4", "--max-delay-ms", "0"]
    t = time.monotonic()
    res = runner.invoke(app, args)  # an earlier run's outputs, no --force
    assert res.exit_code == 2, res.output
    assert "from an earlier run; pass --force" in res.output
    assert time.monotonic() - t < 20  # refused before measuring
    assert {n: (target / n).read_bytes() for n in TUNE_FILES} == before

    res = runner.invoke(app, [*args, "--force"])  # an impossible target: one short trial
    assert res.exit_code == 1, res.output
    summary = json.loads((target / "tune.json").read_text())
    assert summary["met"] is False and written_by_lite_export(target / "tune.json")
    assert (target / "serve.json").read_bytes() == before["serve.json"]  # left as it was
    assert "left as they were" in res.output

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "serve.json").write_text('{"max_batch": 8}\n')  # a settings file of the user's
    res = runner.invoke(app, [*args[:5], str(mine), *args[6:], "--force"])
    assert res.exit_code == 2, res.output
    assert "serve.json, not written by lite-export" in " ".join(res.output.split())
    assert (mine / "serve.json").read_text() == '{"max_batch": 8}\n'
    assert sorted(p.name for p in mine.iterdir()) == ["serve.json"]
