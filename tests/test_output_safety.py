"""Writing directories never loses a user's work (SPEC §7 "Writing directories").

Every writer: (a) a directory that is not lite-export's own, with a user file in it, is refused
and the file survives; (b) the command's own input is refused even with --force and stays
unchanged; (c) so is a directory that contains the input; (d) lite-export's own directory of
the right kind is replaced with --force; (e) without --force it is refused; (f) an existing
empty directory is used. The writers of files in a directory (lite tune, lite bench) are
tested beside their own tests (tests/perf), the items encoder in tests/exporters.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lite_export.artifact import (
    OutputDirError,
    OutputExistsError,
    check_output_dir,
    check_output_files,
    directory_kind,
    publish_directory,
    verify_artifact,
    written_by,
    written_by_lite_export,
)
from lite_export.cli import app

runner = CliRunner()


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative paths): equal snapshots, unchanged tree."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def user_dir(path: Path) -> Path:
    """A directory of the user's: notes.txt and data/ with two files."""
    (path / "data").mkdir(parents=True)
    (path / "notes.txt").write_text("my notes")
    (path / "data" / "a.csv").write_text("1,2\n")
    (path / "data" / "b.csv").write_text("3,4\n")
    return path


def assert_user_files_survive(path: Path) -> None:
    assert (path / "notes.txt").read_text() == "my notes"
    assert sorted(p.name for p in (path / "data").iterdir()) == ["a.csv", "b.csv"]


def fake_checkpoint(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"format": "lite-export-checkpoint"}))
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """The synthetic catalog's tiny network with seeded, untrained weights (no training: the
    rules are about directories, not about what the model learned)."""
    from lite_export.data import leave_one_out, load_dataset
    from lite_export.model.config import LiteConfig
    from lite_export.model.lite_llm4rec import LiteLLM4Rec
    from lite_export.model.workflow import catalog_of

    ds = load_dataset("synthetic")
    cfg = LiteConfig.from_name("tiny", max_history=ds.max_history)
    model = LiteLLM4Rec.build(cfg, catalog_of(ds, leave_one_out(ds)), seed=0)
    return Path(model.save_pretrained(tmp_path_factory.mktemp("safety") / "ckpt"))


@pytest.fixture(scope="module")
def art(ckpt) -> Path:
    """A K=5 artifact of ``ckpt``, exported into an existing empty directory (rule f)."""
    pytest.importorskip("onnxruntime")
    from lite_export.exporters.onnx import ExportOptions, export_artifact

    out = ckpt.parent / "art"
    out.mkdir()
    return export_artifact(ckpt, out, ExportOptions(k=5, optimize=False), log=None)


# --------------------------------------------------------------------------- the mechanism
def test_check_output_dir_rules(tmp_path):
    somedir = user_dir(tmp_path / "somedir")
    with pytest.raises(OutputDirError) as info:
        check_output_dir(somedir, "artifact", force=True)
    assert not isinstance(info.value, OutputExistsError)
    msg = str(info.value)
    assert f"{somedir} is not a lite-export artifact: it holds" in msg
    assert "notes.txt" in msg and "data/ (2 entries)" in msg
    assert "choose another --out, or move it away yourself" in msg
    assert_user_files_survive(somedir)

    assert check_output_dir(tmp_path / "new", "artifact") == tmp_path / "new"  # nothing there
    (tmp_path / "empty").mkdir()
    assert check_output_dir(tmp_path / "empty", "checkpoint") == tmp_path / "empty"

    ck = fake_checkpoint(tmp_path / "ck")
    assert directory_kind(ck) == "checkpoint" and directory_kind(somedir) is None
    with pytest.raises(OutputExistsError, match="pass --force to replace it") as info:
        check_output_dir(ck, "checkpoint")
    assert isinstance(info.value, FileExistsError) and isinstance(info.value, ValueError)
    assert check_output_dir(ck, "checkpoint", force=True) == ck
    with pytest.raises(OutputDirError, match="is a lite-export checkpoint, not an artifact"):
        check_output_dir(ck, "artifact", force=True)

    # the command's input, a directory holding it, or a link to it: refused even with force
    with pytest.raises(OutputDirError, match="is an input of this command.*even with --force"):
        check_output_dir(ck, "checkpoint", force=True, sources=[ck])
    with pytest.raises(OutputDirError, match=f"contains {ck}, an input of this command"):
        check_output_dir(tmp_path, "checkpoint", force=True, sources=[ck])
    (tmp_path / "link").symlink_to(ck)
    with pytest.raises(OutputDirError, match="is an input of this command"):
        check_output_dir(tmp_path / "link", "checkpoint", force=True, sources=[ck])
    # a link to lite-export's own directory: the directory it points to is what is written
    assert check_output_dir(tmp_path / "link", "checkpoint", force=True) == ck.resolve()

    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputDirError, match="is a file, not a lite-export artifact"):
        check_output_dir(tmp_path / "file", "artifact", force=True)
    with pytest.raises(OutputDirError, match="is a file, not a directory"):
        check_output_dir(tmp_path / "file" / "sub", "artifact", force=True)
    with pytest.raises(ValueError, match="kind must be one of"):
        check_output_dir(tmp_path / "x", "model")


def test_publish_directory_replaces_only_its_own_kind_and_keeps_the_new_tree(tmp_path):
    def staged(version: int) -> Path:
        tmp = tmp_path / f".stage{version}"
        tmp.mkdir()
        meta = {"format": "lite-export-checkpoint", "version": version}
        (tmp / "config.json").write_text(json.dumps(meta))
        return tmp

    ck = fake_checkpoint(tmp_path / "ck")
    assert publish_directory(staged(1), ck) == ck
    assert json.loads((ck / "config.json").read_text())["version"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no old or staging dirs left

    somedir = user_dir(tmp_path / "somedir")
    with pytest.raises(OutputDirError, match="is not a lite-export checkpoint") as info:
        publish_directory(staged(2), somedir)
    assert_user_files_survive(somedir)
    kept = Path(str(info.value).rsplit(" is in ", 1)[1])
    assert kept.parent == tmp_path and kept.name.startswith("somedir.new-")
    assert json.loads((kept / "config.json").read_text())["version"] == 2  # nothing lost

    with pytest.raises(OutputExistsError, match="pass --force"):
        publish_directory(staged(3), ck, force=False)
    assert json.loads((ck / "config.json").read_text())["version"] == 1
    with pytest.raises(OutputDirError, match="is an input of this command"):
        publish_directory(staged(4), ck, sources=[ck])
    (tmp_path / "empty").mkdir()
    publish_directory(staged(5), tmp_path / "empty")
    assert directory_kind(tmp_path / "empty") == "checkpoint"


def test_written_by_markers(tmp_path):
    mark = written_by("lite bench")
    assert mark.startswith("lite-export ") and mark.endswith("(lite bench)")
    cases = {
        "ours.json": json.dumps({"_written_by": mark, "x": 1}),
        "rows.json": json.dumps([{"_written_by": mark}, {"_written_by": mark}]),
        "ours.md": f"<!-- written by {mark} -->\n# lite bench\n",
        "ours.pbtxt": f"# written by {written_by('lite tune')}: dynamic batching\n",
        # the unmarked outputs of earlier versions
        "legacy.json": json.dumps([{"what": "lite bench: in process, engine.recommend"}]),
        "legacy.md": "# lite bench (host, commit abc)\n\nrows\n",
        "legacy.pbtxt": "# lite tune: dynamic batching for art; p99 1 ms\nmax_batch_size: 8\n",
    }
    theirs = {
        "user.json": json.dumps({"max_batch": 8}),
        "mixed.json": json.dumps([{"_written_by": mark}, {"mine": True}]),
        "empty.json": "[]",
        "broken.json": "{",
        "user.md": "# lite bench notes of mine\n",
        "user.pbtxt": "max_batch_size: 8\n",
        "plain.txt": "hello\n",
    }
    for name, text in {**cases, **theirs}.items():
        (tmp_path / name).write_text(text)
    for name in cases:
        assert written_by_lite_export(tmp_path / name), name
    for name in theirs:
        assert not written_by_lite_export(tmp_path / name), name
    assert not written_by_lite_export(tmp_path / "missing.json")
    assert not written_by_lite_export(tmp_path)  # a directory


def test_png_marker_is_the_software_text_chunk(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    FigureCanvasAgg(fig)
    fig.subplots().plot([1, 2], [3, 4])
    fig.savefig(tmp_path / "ours.png", metadata={"Software": written_by("lite bench")})
    fig.savefig(tmp_path / "theirs.png")  # matplotlib's own Software text
    fig.savefig(tmp_path / "unicode.png", metadata={"Software": "lite-export ünïcode"})  # iTXt
    assert written_by_lite_export(tmp_path / "ours.png")
    assert written_by_lite_export(tmp_path / "unicode.png")
    assert not written_by_lite_export(tmp_path / "theirs.png")
    (tmp_path / "fake.png").write_bytes(b"not a png")
    assert not written_by_lite_export(tmp_path / "fake.png")


def test_check_output_files_rules(tmp_path):
    names = ["bench.json", "bench.md"]
    (tmp_path / "bench.json").write_text('{"mine": 1}')
    with pytest.raises(OutputDirError, match="holds bench.json, not written by lite-export"):
        check_output_files(tmp_path, names, force=True)
    assert (tmp_path / "bench.json").read_text() == '{"mine": 1}'
    (tmp_path / "bench.json").write_text(json.dumps({"_written_by": written_by("lite bench")}))
    with pytest.raises(
        OutputExistsError, match="holds bench.json from an earlier run; pass --force"
    ):
        check_output_files(tmp_path, names)
    assert check_output_files(tmp_path, names, force=True) == [tmp_path / n for n in names]
    with pytest.raises(OutputDirError, match="is an input of this command"):
        check_output_files(tmp_path, names, force=True, sources=[tmp_path / "bench.json"])
    (tmp_path / "bench.md").mkdir()
    with pytest.raises(OutputDirError, match=r"bench.md/ \(a directory\)"):
        check_output_files(tmp_path, names, force=True)
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputDirError, match="is a file, not a directory"):
        check_output_files(tmp_path / "f", names)
    assert check_output_files(tmp_path / "new", names) == [tmp_path / "new" / n for n in names]


# --------------------------------------------------------------------------- lite export
def _export(ckpt: Path, out: Path, *extra: str):
    return runner.invoke(
        app, ["export", str(ckpt), "--out", str(out), "--k", "3", "--no-optimize", *extra]
    )


@pytest.mark.parametrize("fmt", ["onnx", "triton", "tensorrt"])
def test_export_refuses_a_directory_of_the_users_even_with_force(ckpt, tmp_path, fmt):
    somedir = user_dir(tmp_path / "somedir")
    t = time.monotonic()
    res = _export(ckpt, somedir, "--force", "--format", fmt)
    assert res.exit_code == 2, res.output
    assert "is not a lite-export artifact: it holds" in res.output
    assert "data/ (2 entries)" in res.output and "notes.txt" in res.output
    assert time.monotonic() - t < 30  # refused before the export
    assert_user_files_survive(somedir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["somedir"]


def test_export_refuses_its_checkpoint_and_a_directory_holding_it(ckpt, tmp_path):
    from lite_export.model.lite_llm4rec import LiteLLM4Rec

    before = snapshot(ckpt)
    res = _export(ckpt, ckpt, "--force")
    assert res.exit_code == 2, res.output
    assert "is an input of this command" in res.output and "even with --force" in res.output
    res = _export(ckpt, ckpt.parent, "--force")
    assert res.exit_code == 2, res.output
    assert f"contains {ckpt}, an input of this command" in " ".join(res.output.split())
    link = tmp_path / "link"
    link.symlink_to(ckpt)
    res = _export(ckpt, link, "--force")
    assert res.exit_code == 2 and "is an input of this command" in res.output, res.output
    # a checkpoint is not an artifact: another checkpoint is refused too
    other = tmp_path / "other-ckpt"
    shutil.copytree(ckpt, other)
    res = _export(ckpt, other, "--force")
    assert res.exit_code == 2 and "is a lite-export checkpoint, not an artifact" in res.output
    assert snapshot(ckpt) == before == snapshot(other)
    LiteLLM4Rec.from_pretrained(ckpt)  # still loads


def test_export_replaces_an_artifact_only_with_force(ckpt, art, tmp_path):
    target = tmp_path / "art"
    shutil.copytree(art, target)
    before = snapshot(target)
    res = _export(ckpt, target)
    assert res.exit_code == 2, res.output
    assert "already holds a lite-export artifact; pass --force" in res.output
    assert snapshot(target) == before
    res = _export(ckpt, target, "--force")
    assert res.exit_code == 0, res.output
    manifest = verify_artifact(target)
    assert manifest["dims"]["k"] == 3  # the new export (the old one had K=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no temporary dirs left


def test_a_failed_forced_export_leaves_the_old_artifact(ckpt, art, tmp_path, monkeypatch):
    import lite_export.exporters.onnx as onnx_export

    target = tmp_path / "art"
    shutil.copytree(art, target)
    before = snapshot(target)
    monkeypatch.setitem(onnx_export.TOLERANCE, "fp32", -1.0)  # nothing can pass
    with pytest.raises(onnx_export.ExportValidationError):
        onnx_export.export_artifact(
            ckpt, target, onnx_export.ExportOptions(k=3, optimize=False), force=True, log=None
        )
    assert snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_export_refuses_a_directory_holding_its_other_inputs(ckpt, art, tmp_path):
    target = tmp_path / "art"
    shutil.copytree(art, target)
    (target / "timing.cache").write_bytes(b"tactics")
    res = _export(ckpt, target, "--force", "--timing-cache", str(target / "timing.cache"))
    assert res.exit_code == 2, res.output
    assert "an input of this command" in " ".join(res.output.split())
    assert (target / "timing.cache").read_bytes() == b"tactics"


# --------------------------------------------------------------------------- lite train
def _train(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lite_export.cli", "train", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_train_refuses_before_training(ckpt, tmp_path):
    """Every refusal comes at once: nothing is loaded or trained (rules a, b, c, e)."""
    somedir = user_dir(tmp_path / "somedir")
    data = user_dir(tmp_path / "ml")  # stands in for a data directory
    own = tmp_path / "ckpt"
    shutil.copytree(ckpt, own)
    before = snapshot(own)
    cases = [
        (["--out", str(somedir), "--force"], "is not a lite-export checkpoint: it holds"),
        (
            ["--data", "ml-100k", "--data-dir", str(data), "--out", str(data), "--force"],
            "is an input",
        ),
        (
            ["--data", "ml-100k", "--data-dir", str(data / "data"), "--out", str(data), "--force"],
            "an input of this command",
        ),
        (["--out", str(own)], "already holds a lite-export checkpoint; pass --force"),
    ]
    for args, message in cases:
        t = time.monotonic()
        proc = _train(*args, timeout=120)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in " ".join(proc.stderr.split()), (args, proc.stderr)
        assert "data synthetic" not in proc.stdout and "epoch" not in proc.stdout.lower()
        assert time.monotonic() - t < 60, args  # refused at once, not after training
    assert_user_files_survive(somedir)
    assert_user_files_survive(data)
    assert snapshot(own) == before


@pytest.mark.slow
def test_train_force_replaces_a_checkpoint(ckpt, tmp_path):
    from lite_export.model.lite_llm4rec import LiteLLM4Rec

    own = tmp_path / "ckpt"
    shutil.copytree(ckpt, own)
    assert "train_result" not in json.loads((own / "config.json").read_text())
    proc = _train("--out", str(own), "--force", "--epochs", "1", "--max-train-seconds", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((own / "config.json").read_text())
    assert meta["train_result"]["epochs_run"] == 1  # the new, trained checkpoint
    LiteLLM4Rec.from_pretrained(own)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_save_pretrained_never_loses_the_users_files_nor_the_model(ckpt, tmp_path):
    from lite_export.model.lite_llm4rec import LiteLLM4Rec

    model = LiteLLM4Rec.from_pretrained(ckpt)
    somedir = user_dir(tmp_path / "somedir")
    with pytest.raises(OutputDirError, match="is not a lite-export checkpoint") as info:
        model.save_pretrained(somedir, force=True)
    assert_user_files_survive(somedir)
    kept = Path(str(info.value).rsplit(" is in ", 1)[1])
    LiteLLM4Rec.from_pretrained(kept)  # the model was saved there instead

    own = tmp_path / "own"
    shutil.copytree(ckpt, own)
    with pytest.raises(OutputExistsError, match="pass --force"):
        model.save_pretrained(own, extra={"v": 2})
    assert "v" not in json.loads((own / "config.json").read_text())
    model.save_pretrained(own, extra={"v": 3}, force=True)
    assert json.loads((own / "config.json").read_text())["v"] == 3
    with pytest.raises(OutputDirError, match="an input of this command"):
        model.save_pretrained(tmp_path, force=True, sources=[own])
    (tmp_path / "empty").mkdir()
    model.save_pretrained(tmp_path / "empty")
    assert directory_kind(tmp_path / "empty") == "checkpoint"


# --------------------------------------------------------------------------- lite demo
def _demo(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lite_export.cli", "demo", "--no-serve", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_demo_refuses_before_training(ckpt, art, tmp_path):
    root = tmp_path / "d"
    user_dir(root / "ckpt")
    proc = _demo("--out", str(root), "--force", timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "ckpt is not a lite-export checkpoint: it holds" in " ".join(proc.stderr.split())
    assert "NDCG" not in proc.stdout
    assert_user_files_survive(root / "ckpt")

    shutil.rmtree(root)
    shutil.copytree(ckpt, root / "ckpt")
    user_dir(root / "artifact")
    proc = _demo("--out", str(root), "--force", timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "artifact is not a lite-export artifact" in " ".join(proc.stderr.split())
    assert_user_files_survive(root / "artifact")

    shutil.rmtree(root / "artifact")
    shutil.copytree(art, root / "artifact")
    before = snapshot(root)
    proc = _demo("--out", str(root), timeout=120)  # an earlier demo's outputs, no --force
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "already holds a lite-export checkpoint; pass --force" in proc.stderr
    assert snapshot(root) == before


@pytest.mark.slow
def test_demo_force_replaces_its_outputs(ckpt, art, tmp_path):
    pytest.importorskip("onnxruntime")
    root = tmp_path / "d"
    (root / "ckpt").mkdir(parents=True)  # empty: used as is
    shutil.copytree(art, root / "artifact")  # an earlier demo's artifact: replaced (--force)
    (root / "keep.txt").write_text("mine")  # beside them: never touched
    proc = _demo("--out", str(root), "--force", "--epochs", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "identical to the checkpoint's for 32/32 test users" in proc.stdout
    assert json.loads((root / "ckpt" / "config.json").read_text())["train_result"]
    manifest = verify_artifact(root / "artifact")
    assert manifest["dims"]["k"] == 20  # the demo's export (the old artifact had K=5)
    assert Path(manifest["source_checkpoint"]) == (root / "ckpt").resolve()
    assert (root / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in root.iterdir()) == ["artifact", "ckpt", "keep.txt"]


# --------------------------------------------------------------------------- Triton repository
def test_triton_repository_rules(art, tmp_path):
    from lite_export.artifact import TRITON_REPOSITORY_MARKER
    from lite_export.exporters.triton_server import write_model_repository

    somedir = user_dir(tmp_path / "somedir")
    with pytest.raises(OutputDirError, match="is not a lite-export Triton model repository"):
        write_model_repository(art, somedir, force=True)
    assert_user_files_survive(somedir)

    before = snapshot(art)
    with pytest.raises(OutputDirError, match="is an input of this command"):
        write_model_repository(art, art, force=True)
    with pytest.raises(OutputDirError, match="an input of this command"):
        write_model_repository(art, art.parent, force=True)
    other = tmp_path / "other"
    shutil.copytree(art, other)
    with pytest.raises(OutputDirError, match="is a lite-export artifact, not a Triton"):
        write_model_repository(art, other, force=True)
    assert snapshot(art) == before
    verify_artifact(art)

    repo = tmp_path / "repo"
    repo.mkdir()  # empty: used
    write_model_repository(art, repo, max_batch_size=4)
    marker = json.loads((repo / TRITON_REPOSITORY_MARKER).read_text())
    assert marker["format"] == "lite-export-triton-repository"
    assert marker["artifact"] == str(art.resolve()) and "lite" in marker["models"]
    assert directory_kind(repo) == "triton-repository"
    before = snapshot(repo)
    with pytest.raises(OutputExistsError, match="pass --force"):
        write_model_repository(art, repo, max_batch_size=8)
    assert snapshot(repo) == before
    write_model_repository(art, repo, max_batch_size=8, force=True)
    assert "max_batch_size: 8" in (repo / "lite_onnx" / "config.pbtxt").read_text()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    # the same model repository without the marker (e.g. copied by hand): not replaced
    os.remove(repo / TRITON_REPOSITORY_MARKER)
    with pytest.raises(OutputDirError, match="is not a lite-export Triton model repository"):
        write_model_repository(art, repo, force=True)


def test_json_out_never_overwrites_a_file_lite_export_did_not_write(ckpt, tmp_path):
    """`--json FILE` of lite eval / lite train: a checkpoint's config.json or a user's file is
    refused before any work; a metrics file lite-export wrote earlier is replaced."""
    before = snapshot(ckpt)
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "numbers"}')
    for target in (ckpt / "config.json", mine, tmp_path):
        r = runner.invoke(app, ["eval", str(ckpt), "--json", str(target)])
        assert r.exit_code == 2, r.output
        assert f"--json {target}" in r.output and "choose another --json path" in r.output
    r = runner.invoke(
        app, ["train", "--out", str(tmp_path / "new"), "--json", str(mine), "--epochs", "1"]
    )
    assert r.exit_code == 2 and "was not written by lite-export" in r.output, r.output
    assert not (tmp_path / "new").exists()
    assert snapshot(ckpt) == before and mine.read_text() == '{"my": "numbers"}'

    ours = tmp_path / "metrics.json"
    r = runner.invoke(app, ["eval", str(ckpt), "--json", str(ours), "--no-progress"])
    assert r.exit_code == 0, r.output
    first = json.loads(ours.read_text())
    assert written_by_lite_export(ours) and first["split"] == "test"
    r = runner.invoke(app, ["eval", str(ckpt), "--json", str(ours), "--split", "valid"])
    assert r.exit_code == 0, r.output
    assert json.loads(ours.read_text())["split"] == "valid"
