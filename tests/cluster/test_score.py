"""`lite score`: every user of a file scored to Parquet, locally and with Ray Data (plain and
sharded), the same rows either way; bad lines reported and skipped; the output written
atomically."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from lite_export.cli_score import score
from lite_export.cluster.score import BadLineError, ScoreError, score_file
from tests.cluster.topk_check import assert_same_topk

pq = pytest.importorskip("pyarrow.parquet")

app = typer.Typer()
app.command("score")(score)


@app.command("version")
def _version() -> None:  # a second command, so that `score` is a subcommand as in `lite`
    pass


def quiet(message: str) -> None:
    pass


def item_ids(artifact) -> list[str]:
    with open(Path(artifact) / "items.jsonl") as f:
        return [json.loads(line)["id"] for line in f if line.strip()]


def user_lines(artifact, n: int, seed: int = 0) -> list[str]:
    """``n`` users: histories of 0..60 items (the artifact keeps the last 50), every fifth one
    with ``"exclude_seen": false``, some with integer user ids."""
    rng = random.Random(seed)
    ids = item_ids(artifact)
    lines = []
    for u in range(n):
        row = {
            "user": u if u % 4 == 1 else f"u{u}",
            "history": rng.sample(ids, rng.choice([0, 1, 3, 20, 60])),
        }
        if u % 5 == 2:
            row["exclude_seen"] = False
        lines.append(json.dumps(row))
    return lines


BAD = [
    "not json",
    "[1, 2]",
    '{"history": []}',
    '{"user": true, "history": []}',
    '{"user": "b1"}',
    '{"user": "b2", "history": "S0001"}',
    '{"user": "b3", "history": [null]}',
    '{"user": "b4", "history": ["no-such-item"]}',
    '{"user": "b5", "history": [], "exclude_seen": "no"}',
]
#: words each BAD line's message must contain
BAD_WORDS = [
    "not valid JSON",
    "JSON array",
    'no "user"',
    '"user" must be',
    'no "history"',
    '"history" must be a list',
    '"history" item 0',
    "unknown item ids 'no-such-item'",
    '"exclude_seen" must be true or false',
]


def read_recs(path) -> dict:
    table = pq.read_table(path)
    return {name: table[name].to_pylist() for name in table.column_names} | {"schema": table.schema}


def as_topk(recs: dict, k: int):
    """The Parquet rows as (users, TopK-like ids/scores), checking k rows a user, ranks 1..k."""
    n = len(recs["user"]) // k
    assert len(recs["user"]) == n * k
    assert recs["rank"] == list(range(1, k + 1)) * n
    users = recs["user"][::k]
    assert all(recs["user"][i * k : (i + 1) * k] == [users[i]] * k for i in range(n))
    ids = [recs["item_id"][i * k : (i + 1) * k] for i in range(n)]
    scores = np.asarray(recs["score"], np.float32).reshape(n, k)
    return users, SimpleNamespace(ids=ids, scores=scores)


@pytest.fixture(scope="module")
def users_file(tiny_artifact, tmp_path_factory) -> Path:
    """40 good users with the BAD lines and a blank line between them."""
    good = user_lines(tiny_artifact, 40)
    lines = good[:5] + [""] + BAD[:4] + good[5:30] + BAD[4:] + good[30:]
    path = tmp_path_factory.mktemp("users") / "users.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def local_recs(tiny_artifact, users_file, tmp_path_factory):
    """(summary, Parquet rows, warnings) of the local path, k=7, batches of 8."""
    out = tmp_path_factory.mktemp("recs") / "local.parquet"
    warnings: list[str] = []
    summary = score_file(
        tiny_artifact, users_file, out, k=7, batch_size=8, progress=False, warn=warnings.append
    )
    return summary, read_recs(out), warnings


def test_local_output_equals_engine_recommend_for_every_user(tiny_artifact, users_file, local_recs):
    import pyarrow as pa

    import lite_export

    summary, recs, _ = local_recs
    assert recs["schema"] == pa.schema(
        [
            ("user", pa.string()),
            ("rank", pa.int32()),
            ("item_id", pa.string()),
            ("score", pa.float32()),
        ]
    )
    rows = [json.loads(line) for line in user_lines(tiny_artifact, 40)]
    users, got = as_topk(recs, 7)
    assert users == [str(r["user"]) for r in rows]  # input order, ints written as strings
    assert summary["users"] == 40 and summary["rows"] == 280 and summary["skipped"] == len(BAD)
    engine = lite_export.load(tiny_artifact)
    for i, row in enumerate(rows):  # one user at a time: no batching in the reference
        want = engine.recommend([row["history"]], k=7, exclude_seen=row.get("exclude_seen", True))
        assert_same_topk(
            SimpleNamespace(ids=got.ids[i : i + 1], scores=got.scores[i : i + 1]), want
        )
        if row.get("exclude_seen", True) and row["history"]:
            assert not set(got.ids[i]) & set(row["history"])
        if not row["history"]:  # the most-popular fallback
            assert got.ids[i] == want.ids[0]


def test_bad_lines_are_reported_with_their_line_numbers_and_skipped(users_file, local_recs):
    *_, warnings = local_recs
    lines = users_file.read_text().splitlines()
    numbers = [n for n, line in enumerate(lines, 1) if line in BAD]
    assert len(warnings) == len(BAD)
    for message, number, words in zip(warnings, numbers, BAD_WORDS, strict=True):
        assert message.startswith(f"{users_file}:{number}: "), message
        assert words in message, message
    assert "items.jsonl" in warnings[BAD.index('{"user": "b4", "history": ["no-such-item"]}')]


def test_past_twenty_bad_lines_only_their_count_is_shown(tiny_artifact, tmp_path):
    src = tmp_path / "many.jsonl"
    src.write_text("\n".join(["oops"] * 25 + user_lines(tiny_artifact, 2)) + "\n")
    warnings: list[str] = []
    summary = score_file(
        tiny_artifact, src, tmp_path / "r.parquet", k=3, progress=False, warn=warnings.append
    )
    assert summary["skipped"] == 25 and summary["users"] == 2
    assert len(warnings) == 21 and warnings[19].startswith(f"{src}:20: ")
    assert "5 more bad lines not shown (25 bad lines in all" in warnings[20]


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if ".tmp-" in p.name]


def test_strict_stops_at_the_first_bad_line_and_writes_nothing(tiny_artifact, users_file, tmp_path):
    out = tmp_path / "recs.parquet"
    with pytest.raises(BadLineError, match=rf"{users_file.name}:7: not valid JSON"):
        score_file(tiny_artifact, users_file, out, strict=True, batch_size=2, progress=False)
    assert not out.exists() and no_temp_files(tmp_path)
    result = CliRunner().invoke(
        app,
        ["score", str(tiny_artifact), "--histories", str(users_file), "--out", str(out)]
        + ["--strict", "--no-progress"],
    )
    assert result.exit_code == 2, result.output
    assert "lite score: " in result.output and ":7: not valid JSON" in result.output
    assert not out.exists() and no_temp_files(tmp_path)


def test_an_existing_target_survives_a_failing_run_and_is_replaced_only_with_force(
    tiny_artifact, users_file, tmp_path
):
    out = tmp_path / "recs.parquet"
    out.write_bytes(b"earlier results")
    with pytest.raises(ScoreError, match="exists; pass --force"):
        score_file(tiny_artifact, users_file, out, progress=False)
    # a failure after batches were written (the first bad line is line 7; batches of 2)
    with pytest.raises(BadLineError):
        score_file(
            tiny_artifact, users_file, out, strict=True, force=True, batch_size=2, progress=False
        )
    assert out.read_bytes() == b"earlier results" and no_temp_files(tmp_path)
    summary = score_file(
        tiny_artifact, users_file, out, k=2, force=True, progress=False, warn=quiet
    )
    assert summary["users"] == 40 and len(read_recs(out)["user"]) == 80
    assert no_temp_files(tmp_path)


def test_force_never_replaces_a_directory(tiny_artifact, users_file, tmp_path):
    target = tmp_path / "recs.parquet"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ScoreError, match="is a directory.*never replaced"):
        score_file(tiny_artifact, users_file, target, force=True, progress=False)
    assert (target / "keep.txt").read_text() == "mine"
    with pytest.raises(ScoreError, match="an input of this command"):
        score_file(tiny_artifact, users_file, users_file, force=True, progress=False)


def test_k_and_other_options_out_of_range_are_refused(tiny_artifact, users_file, tmp_path):
    out = tmp_path / "r.parquet"
    for k in (0, 21):
        with pytest.raises(ScoreError, match=rf"-k must be between 1 and 20, got {k}.*K=20"):
            score_file(tiny_artifact, users_file, out, k=k, progress=False)
    with pytest.raises(ScoreError, match="--batch-size must be an integer >= 1"):
        score_file(tiny_artifact, users_file, out, batch_size=0, progress=False)
    with pytest.raises(ScoreError, match="use --shards 1000 or fewer"):
        score_file(tiny_artifact, users_file, out, shards=1001, progress=False)
    with pytest.raises(ScoreError, match="--cluster must be 'ray'"):
        score_file(tiny_artifact, users_file, out, cluster="spark", progress=False)
    with pytest.raises(ScoreError, match="does not exist"):
        score_file(tiny_artifact, tmp_path / "none.jsonl", out, progress=False)
    base = ["score", str(tiny_artifact), "--histories", str(users_file), "--out", str(out)]
    result = CliRunner().invoke(app, [*base, "-k", "21"])
    assert result.exit_code == 2 and "lite score: -k must be between 1 and 20" in result.output
    result = CliRunner().invoke(app, [*base, "--actors", "2"])
    assert result.exit_code == 2 and "need --cluster ray" in result.output
    assert not out.exists()


def test_the_command_prints_a_summary(tiny_artifact, users_file, tmp_path):
    out = tmp_path / "r.parquet"
    result = CliRunner().invoke(
        app,
        ["score", str(tiny_artifact), "--histories", str(users_file), "--out", str(out)]
        + ["-k", "3", "--shards", "2", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert "scored 40 users (120 rows) locally, 2 shards" in result.output
    assert f"skipped {len(BAD)} bad lines" in result.output and "users/s" in result.output
    assert f"{users_file}:7: not valid JSON" in result.output  # stderr, mixed in by CliRunner


def test_sharded_local_path_matches_the_plain_one(tiny_artifact, users_file, local_recs, tmp_path):
    out = tmp_path / "r.parquet"
    score_file(tiny_artifact, users_file, out, k=7, shards=3, progress=False, warn=quiet)
    users, got = as_topk(read_recs(out), 7)
    want_users, want = as_topk(local_recs[1], 7)
    assert users == want_users
    assert_same_topk(got, want)


def test_importing_score_imports_no_runtime():
    code = (
        "import sys, json, lite_export.cluster.score, lite_export.cli_score; "
        "print(json.dumps([m for m in ('ray', 'pyarrow', 'onnxruntime', 'torch') "
        "if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_cluster_ray_without_ray_says_what_to_install(tiny_artifact, users_file, tmp_path):
    from lite_export.cluster import INSTALL_RAY

    code = (
        "import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
        "from lite_export.cluster.score import score_file\n"
        "try:\n"
        f"    score_file({str(tiny_artifact)!r}, {str(users_file)!r}, {str(tmp_path / 'r.pq')!r},"
        " cluster='ray', progress=False, warn=lambda m: None)\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert INSTALL_RAY in out.stdout, out.stdout + out.stderr
    assert no_temp_files(tmp_path) and not (tmp_path / "r.pq").exists()


@pytest.mark.parametrize("shards", [None, 1, 2, 3])
def test_ray_data_output_equals_the_local_output(
    ray_cluster, tiny_artifact, users_file, local_recs, tmp_path, shards
):
    _, want_recs, want_warnings = local_recs
    out = tmp_path / "ray.parquet"
    warnings: list[str] = []
    summary = score_file(
        tiny_artifact,
        users_file,
        out,
        k=7,
        batch_size=8,
        cluster="ray",
        shards=shards,
        progress=False,
        warn=warnings.append,
    )
    assert summary["path"] == "ray" and summary["users"] == 40 and summary["rows"] == 280
    assert warnings == want_warnings  # the same bad lines, in the same order
    recs = read_recs(out)
    assert recs["schema"] == want_recs["schema"]
    users, got = as_topk(recs, 7)
    want_users, want = as_topk(want_recs, 7)
    assert users == want_users
    assert_same_topk(got, want)
    assert no_temp_files(tmp_path)
    # the session's cluster is left running, and Ray Data's settings as they were
    assert ray_cluster.is_initialized()
    assert not ray_cluster.data.DataContext.get_current().execution_options.preserve_order
