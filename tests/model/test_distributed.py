"""`accelerate launch` runs the trainer data-parallel: two CPU processes (gloo) both train.

On a machine without CUDA, `accelerate launch --multi_gpu --num_processes 2` starts two
torch.distributed processes that Accelerate runs as MULTI_CPU (gloo backend).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(tmp_path):
    accelerate = shutil.which("accelerate") or os.path.join(
        os.path.dirname(sys.executable), "accelerate"
    )
    ckpt = tmp_path / "ddp"
    cmd = [
        accelerate,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
        "-m",
        "lite_export.cli",
        "train",
        "--data",
        "synthetic",
        "--preset",
        "tiny",
        "--epochs",
        "3",
        "--d-model",
        "32",
        "--out",
        str(ckpt),
        "--no-progress",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "x2" in proc.stdout  # "model: ... on cpu x2"
    meta = json.loads((ckpt / "config.json").read_text())
    history = meta["train_result"]["history"]
    assert meta["train_result"]["num_processes"] == 2
    # every epoch row has one loss and one example count per rank
    assert all(len(r["rank_loss"]) == 2 for r in history)
    # the two ranks saw disjoint halves of the data (the sampler shards it)
    n_train = sum(history[0]["rank_examples"])
    assert all(abs(c - n_train / 2) <= 128 for c in history[0]["rank_examples"])
    # and each rank's loss fell
    for rank in range(2):
        assert history[-1]["rank_loss"][rank] < history[0]["rank_loss"][rank], history
