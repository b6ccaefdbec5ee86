import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lite_export.cli import app

runner = CliRunner()


@pytest.mark.parametrize("cmd", [[], ["train"], ["eval"], ["demo"], ["bench"], ["tune"]])
def test_help_shows_usage_examples(cmd):
    result = runner.invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0, result.output
    if cmd:
        assert "Examples" in result.output or "Example" in result.output
        assert f"lite {cmd[0]}" in result.output


def test_eval_writes_json_and_matches_training_metrics(trained, tmp_path):
    _, _, test, ckpt = trained
    out = tmp_path / "m.json"
    result = runner.invoke(app, ["eval", str(ckpt), "--json", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["metrics"]["ndcg@10"] == pytest.approx(test["ndcg@10"], abs=1e-9)
    assert data["most_popular"]["ndcg@10"] < data["metrics"]["ndcg@10"]


def test_eval_missing_checkpoint_is_a_clean_error(tmp_path):
    result = runner.invoke(app, ["eval", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_train_bad_data_dir_is_a_clean_error(tmp_path):
    result = runner.invoke(
        app, ["train", "--data", "ml-1m", "--data-dir", str(tmp_path), "--out", str(tmp_path / "c")]
    )
    assert result.exit_code == 2
    assert "MovieLens-1M" in result.output and "movies.dat" in result.output
    assert not (tmp_path / "c").exists()


def test_demo_no_serve_runs_end_to_end(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lite_export.cli",
            "demo",
            "--no-serve",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "most-popular" in proc.stdout and "NDCG@10" in proc.stdout
    assert (tmp_path / "d" / "ckpt" / "model.safetensors").exists()
    # exported, loaded back (checksums) and compared with the checkpoint
    assert "identical to the checkpoint's for 32/32 test users" in proc.stdout
    assert (tmp_path / "d" / "artifact" / "manifest.json").exists()
    assert "serve it with: lite serve" in proc.stdout


def test_env_lists_versions():
    result = runner.invoke(app, ["env"])
    assert result.exit_code == 0
    assert "torch" in result.output and "lite-export" in result.output


# ---------------------------------------------------------------------- a first run that explains itself
BLOCK_HEAVY = '''
import sys

class _Blocked:
    """Importing these fails: a command that imports them before checking its paths crashes."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "onnx", "onnxruntime", "transformers"}:
            raise ImportError(f"{name} is blocked by the test's sitecustomize")
        return None

sys.meta_path.insert(0, _Blocked())
'''


def _lite_without_runtimes(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    """`lite ARGS` in a fresh interpreter where torch, onnx, onnxruntime and transformers
    cannot be imported (a sitecustomize on PYTHONPATH installs a meta-path finder)."""
    import os

    site = tmp_path / "blocked"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCK_HEAVY)
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = subprocess.run(
        [sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True
    )
    assert probe.returncode != 0 and "blocked" in probe.stderr  # the block is in force
    return subprocess.run(
        [sys.executable, "-m", "lite_export.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["train", "--data", "ml-1m", "--data-dir", "{nope}", "--out", "{tmp}/c"],
            "--data-dir {nope} does not exist",
        ),
        (["eval", "{nope}"], "checkpoint directory {nope} does not exist"),
        (["eval", "{tmp}", "--data-dir", "{nope}"], "{tmp} is missing config.json"),
        (["export", "{nope}", "--out", "{tmp}/a"], "checkpoint directory {nope} does not exist"),
        (["serve", "{nope}"], "artifact directory {nope} does not exist"),
        (["bench", "{nope}"], "artifact directory {nope} does not exist"),
        (["tune", "{nope}", "--p99-ms", "10"], "artifact directory {nope} does not exist"),
    ],
    ids=["train", "eval", "eval-not-a-checkpoint", "export", "serve", "bench", "tune"],
)
def test_missing_paths_are_reported_before_the_heavy_imports(tmp_path, args, message):
    fill = {"nope": str(tmp_path / "nope"), "tmp": str(tmp_path)}
    proc = _lite_without_runtimes([a.format(**fill) for a in args], tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message.format(**fill) in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "cmd", [["serve"], ["bench"], ["tune", "--p99-ms", "10"]], ids=["serve", "bench", "tune"]
)
def test_a_checkpoint_given_for_an_artifact_says_to_export_it(trained, tmp_path, cmd):
    *_, ckpt = trained
    proc = _lite_without_runtimes([cmd[0], str(ckpt), *cmd[1:]], tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = " ".join(proc.stderr.split())  # unwrapped
    assert f"{ckpt} is a training checkpoint" in err
    assert f"lite export {ckpt} --out ART" in err


@pytest.mark.parametrize("cmd", [["eval"], ["export", "--out", "x"]], ids=["eval", "export"])
def test_an_artifact_given_for_a_checkpoint_names_its_checkpoint(trained, artifact, tmp_path, cmd):
    *_, ckpt = trained
    proc = _lite_without_runtimes([cmd[0], str(artifact), *cmd[1:]], tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = " ".join(proc.stderr.split())
    assert f"{artifact} is an exported artifact" in err
    assert f"pass the one it was exported from, {ckpt.resolve()}" in err
    assert not (tmp_path / "x").exists()


def test_an_artifact_whose_checkpoint_is_gone_says_so(artifact, tmp_path):
    import shutil

    from lite_export.artifact import CheckpointError, read_checkpoint_meta

    moved = tmp_path / "art"
    shutil.copytree(artifact, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["source_checkpoint"] = str(tmp_path / "deleted-ckpt")
    (moved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="deleted-ckpt \\(no longer there\\)"):
        read_checkpoint_meta(moved)
    del manifest["source_checkpoint"]
    (moved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="the directory that `lite train --out` wrote"):
        read_checkpoint_meta(moved)


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    from lite_export import __version__

    result = runner.invoke(app, [flag])
    assert result.exit_code == 0, result.output
    assert result.output == f"lite-export {__version__}\n"


def test_env_lists_every_extra_with_installed_versions_and_the_commit():
    from importlib import metadata
    from pathlib import Path

    result = runner.invoke(app, ["env"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    rows = {line.split()[0]: line.split(None, 1)[1] for line in lines if not line[:1].isspace()}
    dist = metadata.distribution("lite-export")
    extras = dist.metadata.get_all("Provides-Extra")
    assert {"onnx", "serve", "gpu", "test"} <= set(extras)
    assert [k for k in rows if k.startswith("[")] == ["[base]", *[f"[{e}]" for e in extras]]
    # every package line: the version importlib.metadata reports, or "not installed"
    group, seen = None, {}
    for line in lines:
        if line.startswith("["):
            group = line.split()[0].strip("[]")
        elif line.startswith("  "):
            name, version = line.split(None, 1)
            try:
                want = metadata.version(name)
            except metadata.PackageNotFoundError:
                want = "not installed"
            assert version.split(" (declared")[0] == want, line
            seen.setdefault(group, []).append(name)
    assert "torch" in seen["base"] and "onnxruntime" in seen["onnx"]
    assert "onnxruntime-gpu" in seen["gpu"] and "fastapi" in seen["serve"]
    for name in ("python", "platform", "cuda"):
        assert rows[name]
    # this checkout (editable install): its commit, -dirty when tracked files changed
    repo = Path(__file__).resolve().parents[1]

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    sha = git("rev-parse", "--short=12", "HEAD")
    dirty = "-dirty" if git("status", "--porcelain", "--untracked-files=no") else ""
    assert rows["lite-export"].endswith(f"({repo}, git {sha}{dirty})"), rows["lite-export"]


def test_source_commit_of_a_checkout(tmp_path):
    from lite_export.envinfo import source_commit

    repo = tmp_path / "src"
    repo.mkdir()
    assert source_commit(repo) == "unknown"  # not a git checkout
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "f.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "f.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    sha = subprocess.run(
        [*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert source_commit(repo) == sha
    (repo / "f.py").write_text("x = 2\n")
    assert source_commit(repo) == f"{sha}-dirty"
    (repo / "sub").mkdir()
    assert source_commit(repo / "sub") == "unknown"  # inside a checkout, not its top
