"""``benchmarks/bench_gpu_e2e.py`` runs on CPU as a smoke test and writes rows with exactly the
keys of ``benchmarks/results/gpu_e2e.json``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_gpu_e2e import KEYS as ROW_KEYS  # noqa: E402

#: the row keys the results file promises, as the committed H200 run has them
KEYS = set(ROW_KEYS)


def test_cpu_quick_smoke_run(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/bench_gpu_e2e.py"),
            "--device",
            "cpu",
            "--quick",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads((tmp_path / "gpu_e2e.json").read_text())
    assert rows and all(set(r) == KEYS for r in rows), rows[0]
    committed = json.loads((REPO / "benchmarks/results/gpu_e2e.json").read_text())
    assert committed and all(set(r) == KEYS for r in committed)
    engines = {r["engine"] for r in rows}
    assert {"torch (fp32)", "torch+static (fp32)", "torch:core (fp32)"} <= engines
    assert all(r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"] for r in rows)
    md = (tmp_path / "gpu_e2e.md").read_text()
    assert "| engine | items | d | history | batch |" in md
    assert "matches_eager=True" in md and "matches_eager=False" not in md
    assert "Host work alone" in md
    assert json.loads(proc.stdout.strip().splitlines()[-1])["problems"] == 0
