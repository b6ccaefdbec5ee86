"""`lite bench` on a tiny artifact: in process and over HTTP against real `lite serve` processes,
and the load generator's bounds and accounting against a real server."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lite_export.cli import app

runner = CliRunner()

ENGINES = ["torch", "onnxruntime"]
THREADS = [1]
BATCHES = [1, 4]
HISTORIES = [5, 20]
CONCURRENCY = [1, 4]


@pytest.fixture(scope="module")
def bench_run(perf_artifact, tmp_path_factory):
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("bench")
    res = runner.invoke(
        app,
        [
            "bench",
            str(perf_artifact),
            "--engines",
            ",".join([*ENGINES, "tensorrt"]),
            "--threads",
            ",".join(map(str, THREADS)),
            "--batch-sizes",
            ",".join(map(str, BATCHES)),
            "--histories",
            ",".join(map(str, HISTORIES)),
            "--concurrency",
            ",".join(map(str, CONCURRENCY)),
            "--duration-s",
            "0.3",
            "--no-progress",
            "--out",
            str(out),
            "--name",
            "serve",  # the file stem (default "bench")
        ],
    )
    assert res.exit_code == 0, res.output
    return out, res.output, json.loads((out / "serve.json").read_text())


def test_every_grid_point_is_measured(bench_run):
    _, _, rows = bench_run
    inproc = {
        (r["engine"], r["threads"], r["history"], r["batch"])
        for r in rows
        if r["mode"] == "inprocess"
    }
    http = {
        (r["engine"], r["threads"], r["history"], r["concurrency"])
        for r in rows
        if r["mode"] == "http"
    }
    assert inproc == set(itertools.product(ENGINES, THREADS, HISTORIES, BATCHES))
    assert http == set(itertools.product(ENGINES, THREADS, HISTORIES, CONCURRENCY))
    assert len(rows) == len(inproc) + len(http)  # no duplicates
    for r in rows:
        assert r["precision"] == "fp32" and r["k"] == 10
        assert r["machine"] and r["commit"]


def test_numbers_are_sane(bench_run):
    _, _, rows = bench_run
    for r in rows:
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"], r
        assert r["throughput"] > 0, r
    for r in (r for r in rows if r["mode"] == "inprocess"):
        assert r["calls"] >= 5
        # users/s is the batch over the mean call time (mean_ms is rounded to the microsecond)
        assert r["throughput"] == pytest.approx(r["batch"] / (r["mean_ms"] / 1000), rel=1e-2)
    for r in (r for r in rows if r["mode"] == "http"):
        assert r["ok"] == r["sent"] > 0 and not r["errors"] and r["status_503"] == 0, r
        assert r["server_exit"] == 0  # SIGTERM: drained, exit 0
        assert r["p99_ms"] <= r["max_ms"]
        assert 1 <= r["mean_batch"] <= r["concurrency"], r
        # closed loop, Little's law: C clients = throughput x mean latency (the ramp-down at
        # the end and the generator's own time between requests keep it a little under C)
        in_flight = r["throughput_rps"] * r["mean_ms"] / 1000
        assert 0.5 * r["concurrency"] <= in_flight <= 1.05 * r["concurrency"], r


def test_table_json_line_and_notes(bench_run):
    out, output, rows = bench_run
    assert "in process: engine.recommend" in output and "HTTP: POST /v1/recommend" in output
    last = json.loads(output.strip().splitlines()[-1])
    assert last["rows"] == len(rows)
    assert set(last["files"]) == {
        str(out / f) for f in ("serve.json", "serve.md", "serve_inprocess.png", "serve_http.png")
    }
    if importlib.util.find_spec("tensorrt") is None:  # asked for, not installed: skipped, said so
        assert any(s.startswith("tensorrt skipped") for s in last["skipped"])
        assert "tensorrt" not in {r["engine"] for r in rows}
    md = (out / "serve.md").read_text()
    # in process, HTTP, and one HTTP-overhead row per history (B=1 and C=1 are in the grid)
    rows_per_engine = len(HISTORIES) * len(THREADS) * (len(BATCHES) + len(CONCURRENCY) + 1)
    assert md.count("| onnxruntime |") == rows_per_engine
    assert "HTTP overhead, one client" in output and "What HTTP adds for one client" in md


def test_http_overhead_rows_pair_one_client_with_the_engine_in_process(bench_run):
    _, _, rows = bench_run
    paired = [r for r in rows if "http_overhead_p50_ms" in r]
    assert len(paired) == len(ENGINES) * len(THREADS) * len(HISTORIES)
    for r in paired:
        assert r["mode"] == "http" and r["concurrency"] == 1 and r["pairs"] >= 5
        for side in ("inprocess", "paired_http"):
            assert 0 < r[f"{side}_p50_ms"] <= r[f"{side}_p99_ms"], r
        # the overhead is the paired HTTP calls' percentile minus the in-process calls'
        assert r["http_overhead_p50_ms"] == pytest.approx(
            r["paired_http_p50_ms"] - r["inprocess_p50_ms"], abs=1e-3
        )
        assert r["http_overhead_p99_ms"] == pytest.approx(
            r["paired_http_p99_ms"] - r["inprocess_p99_ms"], abs=1e-3
        )
        # the servers ran with the defaults: continuous batching
        assert r["serving"]["batching"] == "continuous" and r["serving"]["max_delay_ms"] == 0


@pytest.mark.parametrize("name", ["serve_inprocess.png", "serve_http.png"])
def test_plots_are_images(bench_run, name):
    from matplotlib.image import imread

    out, _, _ = bench_run
    data = (out / name).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(out / name)
    h, w = img.shape[:2]
    assert w > 400 and h > 200
    assert float(np.std(img[..., :3])) > 0.01  # something was drawn


@pytest.mark.parametrize(
    "args, message",
    [
        (["--engines", "nope"], "unknown engines"),
        (["--batch-sizes", "0,4"], "--batch-sizes"),
        (["--histories", "x"], "--histories"),
        (["--k", "50"], "K=20"),
        (["--no-inprocess", "--no-http"], "nothing to measure"),
        (["--name", "a/b"], "--name must be a plain file stem"),
    ],
)
def test_bad_options_are_clean_errors(perf_artifact, tmp_path, args, message):
    res = runner.invoke(app, ["bench", str(perf_artifact), "--out", str(tmp_path), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not (tmp_path / "bench.json").exists()


def test_missing_artifact_is_a_clean_error(tmp_path):
    res = runner.invoke(app, ["bench", str(tmp_path / "none"), "--no-http"])
    assert res.exit_code == 2
    assert "does not exist" in res.output


# ---------------------------------------------------------------------- the load generator
def test_load_is_bounded_in_count_and_time_and_counts_503s(perf_artifact):
    from lite_export.perf.load import ServeProcess, request_bodies, run_load, sample_histories
    from lite_export.serving.settings import ServeSettings

    ids = [json.loads(line)["id"] for line in (perf_artifact / "items.jsonl").open()]
    bodies = request_bodies(sample_histories(ids, [1] * len(ids), 10, 32), k=5)
    with ServeProcess(perf_artifact, {"engine": "onnxruntime", "threads": 1}) as srv:
        assert srv.model()["serving"]["threads"] == 1
        by_count = run_load(srv.url, bodies, concurrency=4, duration_s=60, max_requests=40)
        assert by_count.sent == by_count.ok == 40 and by_count.wall_s < 30
        by_time = run_load(srv.url, bodies, concurrency=2, duration_s=0.4, max_requests=10**6)
        assert 0 < by_time.sent < 10**6 and by_time.ok == by_time.sent
        assert 0.4 <= by_time.wall_s < 5
        opened = run_load(srv.url, bodies, rate=100, duration_s=0.5, max_requests=10**6)
        assert opened.sent == 50 and opened.ok == 50
        assert opened.wall_s >= 0.49  # the schedule is kept: 50 requests over 0.5 s
        s = opened.summary()
        assert s["load"] == "open" and s["rate_rps"] == 100
        assert 0 < s["p50_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert srv.returncode == 0
    # a server that refuses (max_queue 1, one request per batch): 503s are counted as such
    tight = {"max_queue": 1, "max_batch": 1, "max_delay_ms": 0, "threads": 1}
    ServeSettings.resolve(perf_artifact, **tight)
    with ServeProcess(perf_artifact, tight) as srv:
        res = run_load(srv.url, bodies, concurrency=24, duration_s=1.0, max_requests=600)
    s = res.summary()
    assert s["status_503"] > 0 and s["ok"] > 0
    assert s["ok"] + s["status_503"] + sum(s["errors"].values()) == s["sent"]
    assert res.latencies_ms.size == s["ok"]  # latency percentiles are of the 200s only
    with pytest.raises(ValueError, match="exactly one"):
        run_load("http://127.0.0.1:1", bodies, concurrency=1, rate=5)


def test_sample_histories_shapes():
    from lite_export.perf.load import sample_histories

    ids = [f"i{n}" for n in range(30)]
    hists = sample_histories(ids, list(range(30)), 12, 7, seed=3)
    assert len(hists) == 7 and all(len(h) == 12 == len(set(h)) for h in hists)
    assert sample_histories(ids, list(range(30)), 12, 7, seed=3) == hists
    assert all(len(h) == 30 for h in sample_histories(ids, [0] * 30, 99, 2))


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads /proc (Linux)")
def test_cpu_watch_sees_other_work():
    """A process burning one core is 'other work' unless it is one of the watched processes."""
    import subprocess
    import sys
    import time

    from lite_export.perf.load import CpuWatch

    burn = "import time\nt = time.time()\nwhile time.time() - t < 3: pass\n"
    proc = subprocess.Popen([sys.executable, "-c", burn])
    try:
        time.sleep(0.3)
        watch = CpuWatch()
        watch.start()
        time.sleep(1.0)
        seen = watch.stop()
        assert seen["other_work_cores"] >= 0.3, seen  # at least its share of the 2 cores
        assert seen["machine_busy_cores"] >= seen["other_work_cores"]
        ours = CpuWatch(proc.pid)
        ours.start()
        time.sleep(1.0)
        with_it = ours.stop()
        assert with_it["other_work_cores"] <= with_it["machine_busy_cores"] - 0.3, with_it
    finally:
        proc.kill()
        proc.wait()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file()}


def test_outputs_are_marked_and_only_lite_exports_own_are_replaced(
    bench_run, perf_artifact, tmp_path
):
    """Writing directories (SPEC §7): every output carries lite-export's marker; before any
    measurement, a file of an output's name is refused unless lite-export wrote it, and
    replaced only with --force. (An existing empty --out: the bench_run fixture's.)"""
    import shutil
    import time

    from lite_export.artifact import written_by_lite_export

    out, _, _ = bench_run
    names = ["serve.json", "serve.md", "serve_inprocess.png", "serve_http.png"]
    assert all(written_by_lite_export(out / n) for n in names)
    target = tmp_path / "b"
    shutil.copytree(out, target)
    before = _tree(target)
    args = ["bench", str(perf_artifact), "--engines", "onnxruntime", "--threads", "1"]
    args += ["--batch-sizes", "1", "--histories", "5", "--no-http", "--duration-s", "0.05"]
    args += ["--reps", "5", "--no-progress", "--out", str(target), "--name", "serve"]
    t = time.monotonic()
    res = runner.invoke(app, args)  # an earlier run's outputs, no --force
    assert res.exit_code == 2, res.output
    assert "from an earlier run; pass --force" in res.output and "serve.json" in res.output
    assert time.monotonic() - t < 20  # refused before measuring
    assert _tree(target) == before

    # a settings file the run reads is never overwritten, even when lite-export wrote it
    config = target / "serve.json"
    config.write_text(json.dumps({"_written_by": "lite tune 0.1.0 for art", "max_batch": 8}))
    res = runner.invoke(app, [*args, "--force", "--config", str(config)])
    assert res.exit_code == 2 and "is an input of this command" in res.output, res.output
    assert json.loads(config.read_text())["max_batch"] == 8

    # a file of an output's name that lite-export did not write: refused, named, kept
    (target / "serve.md").write_text("# my own notes\n")
    res = runner.invoke(app, [*args, "--force"])
    assert res.exit_code == 2, res.output
    assert "serve.md, not written by lite-export" in " ".join(res.output.split())
    assert (target / "serve.md").read_text() == "# my own notes\n"

    (target / "serve.md").write_bytes(before["serve.md"])
    res = runner.invoke(app, [*args, "--force"])
    assert res.exit_code == 0, res.output
    rows = json.loads((target / "serve.json").read_text())
    assert len(rows) == 1 and rows[0]["mode"] == "inprocess"  # the new run's single point
    assert all(written_by_lite_export(target / n) for n in names)
    assert (target / "serve_http.png").read_bytes() == before["serve_http.png"]  # not written
