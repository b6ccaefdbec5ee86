"""The C++ embedding (examples/cpp): `lite-recommend` gives the Python ONNX Runtime engine's answers.

The module builds the program with ``examples/cpp/build.sh`` (incremental: about a second when
nothing changed; about 20 s from scratch on 2 cores, plus fetching Debian's ONNX Runtime headers
once) against the onnxruntime wheel of this Python, then runs it on the session's tiny artifact
(``tests/conftest.py``). Without the build prerequisites (cmake, a C++ compiler, OpenSSL and
nlohmann-json headers, apt-get for the ONNX Runtime headers) the tests skip, naming what is
missing — except under CI (``CI`` set), where a missing prerequisite fails: `.ci/cpp_deps.sh`
installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import lite_export  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CPP = REPO / "examples" / "cpp"
BUILD_DIR = CPP / "build"
EXE = BUILD_DIR / "lite-recommend"
# the same graph, library and inputs on both sides: fp32 scores should agree to rounding
SCORE_ATOL = 1e-5


def _missing_prerequisites() -> list[str]:
    missing = [tool for tool in ("cmake",) if shutil.which(tool) is None]
    if not any(shutil.which(cxx) for cxx in (os.environ.get("CXX", "c++"), "g++", "clang++")):
        missing.append("a C++ compiler (g++)")
    include_dirs = [Path("/usr/include"), Path("/usr/local/include")]
    for header, package in (
        ("openssl/evp.h", "libssl-dev"),
        ("nlohmann/json.hpp", "nlohmann-json3-dev"),
    ):
        if not any((d / header).is_file() for d in include_dirs):
            missing.append(f"{header} ({package})")
    headers_here = (BUILD_DIR / "_deps/onnxruntime/include/onnxruntime_cxx_api.h").is_file() or (
        Path("/usr/include/onnxruntime/onnxruntime_cxx_api.h").is_file()
    )
    if not headers_here and not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        missing.append("apt-get and dpkg-deb (to fetch Debian's ONNX Runtime headers)")
    return missing


@pytest.fixture(scope="module")
def lite_recommend() -> Path:
    """The built lite-recommend (build.sh is incremental, so the binary is never stale)."""
    missing = _missing_prerequisites()
    if missing:
        reason = "C++ build prerequisites missing: " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must build the C++ example: run .ci/cpp_deps.sh first)")
        pytest.skip(reason + " (bash .ci/cpp_deps.sh installs them, as root or with sudo)")
    env = {**os.environ, "PYTHON": sys.executable, "JOBS": "2"}
    proc = subprocess.run(
        ["bash", str(CPP / "build.sh")], env=env, capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0:
        pytest.fail(f"examples/cpp/build.sh failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    assert EXE.is_file()
    return EXE


def _run(exe: Path, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(exe), *map(str, args)], input=stdin, capture_output=True, text=True, timeout=120
    )


def _histories(synthetic) -> list[list[str]]:
    """24 test users, the 3 longest (past max_history: truncation), one item, and an empty one."""
    ds, split = synthetic
    hists = [[ds.item_ids[i] for i in h] for h, _ in split.test]
    longest = sorted(hists, key=len)[-3:]
    assert len(longest[-1]) > ds.max_history
    return hists[:24] + longest + [[ds.item_ids[0]], []]


def _write_jsonl(path: Path, hists: list[list[str]]) -> Path:
    path.write_text("".join(json.dumps(h) + "\n" for h in hists))
    return path


@pytest.mark.parametrize("graph", [None, "model.onnx"])
@pytest.mark.parametrize(("k", "exclude_seen"), [(20, True), (7, False)])
def test_cpp_matches_python_onnxruntime(
    lite_recommend, artifact, synthetic, tmp_path, graph, k, exclude_seen
):
    hists = _histories(synthetic)
    options = {"threads": 2} | ({"graph": graph} if graph else {})
    rec = lite_export.load(artifact, engine="onnxruntime", **options)
    ref = rec.recommend(hists, k=k, exclude_seen=exclude_seen)
    args = [artifact, "--histories", _write_jsonl(tmp_path / "h.jsonl", hists), "-k", k]
    args += ["--json", "--threads", 2] + (["--graph", graph] if graph else [])
    args += [] if exclude_seen else ["--include-seen"]
    proc = _run(lite_recommend, *args)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (graph or "model.ort.onnx") in out["engine"]
    rows = out["results"]
    assert len(rows) == len(hists)
    assert [r["ids"] for r in rows] == ref.ids
    assert [r["indices"] for r in rows] == ref.indices.tolist()
    assert [r["fallback"] for r in rows] == ref.fallback
    scores = np.array([r["scores"] for r in rows], dtype=np.float32)
    np.testing.assert_allclose(scores, ref.scores, rtol=0, atol=SCORE_ATOL)
    assert [r["titles"] for r in rows] == [
        [rec.catalog.titles[i] for i in row] for row in ref.indices.tolist()
    ]


def test_cpp_runs_the_int8_catalog_graph(
    lite_recommend, int8_artifact, artifact, synthetic, tmp_path
):
    """An int8-catalog artifact (integer-matmul ranking graph) runs unchanged in C++, with the
    fp32 artifact's answers."""
    hists = _histories(synthetic)
    ref = lite_export.load(artifact, engine="onnxruntime", threads=2).recommend(hists, k=20)
    args = [int8_artifact, "--histories", _write_jsonl(tmp_path / "h.jsonl", hists), "-k", 20]
    proc = _run(lite_recommend, *args, "--json", "--threads", 2)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["results"]
    assert [r["ids"] for r in rows] == ref.ids
    scores = np.array([r["scores"] for r in rows], dtype=np.float32)
    np.testing.assert_allclose(scores, ref.scores, rtol=0, atol=SCORE_ATOL)


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_cpp_builds_the_python_engines_inputs(
    lite_recommend, artifact, synthetic, tmp_path, exclude_seen
):
    """item_ids / exclude_ids exactly as Engine.recommend builds them (pad_histories)."""
    from lite_export.data.batching import pad_histories

    hists = _histories(synthetic)
    rec = lite_export.load(artifact, engine="onnxruntime")
    idx = rec.catalog.batch_indices(hists)
    n = rec.num_items
    item_ids = pad_histories(idx, rec.max_history, n).numpy()
    if exclude_seen:
        exclude = pad_histories(idx, max(1, max(map(len, idx))), n).numpy()
    else:
        exclude = np.full((len(idx), 1), n, dtype=np.int64)
    args = [artifact, "--histories", _write_jsonl(tmp_path / "h.jsonl", hists), "--inputs"]
    proc = _run(lite_recommend, *args, *([] if exclude_seen else ["--include-seen"]))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    np.testing.assert_array_equal(np.array(out["item_ids"], dtype=np.int64), item_ids)
    np.testing.assert_array_equal(np.array(out["exclude_ids"], dtype=np.int64), exclude)
    assert item_ids.shape[1] == rec.max_history  # the long histories were cut


def test_cpp_text_output_and_positional_histories(lite_recommend, artifact):
    rec = lite_export.load(artifact, engine="onnxruntime")
    ids = rec.load().catalog.ids
    ref = rec.recommend([[ids[3], ids[5]]], k=3)
    proc = _run(lite_recommend, artifact, f"{ids[3]},{ids[5]}", "-k", 3)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "history 1 (2 items)"
    assert [line.split()[1] for line in lines[1:]] == ref.ids[0]


def test_cpp_bench_reports_batch1_latency(lite_recommend, artifact, synthetic, tmp_path):
    hists = _write_jsonl(tmp_path / "h.jsonl", _histories(synthetic)[:4])
    proc = _run(
        lite_recommend, artifact, "--histories", hists, "--bench", 25, "--warmup", 2, "--json"
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["calls"] == 25 and res["batch"] == 1 and len(res["total_ms"]) == 25
    assert 0 < res["model_p50_ms"] <= res["p50_ms"] <= res["p99_ms"]
    assert res["p50_ms"] == pytest.approx(float(np.median(res["total_ms"])))
    assert res["p99_ms"] == pytest.approx(float(np.percentile(res["total_ms"], 99)))


# ---------------------------------------------------------------- bad input: stderr + exit code
def _damaged(artifact: Path, tmp_path: Path, how: str) -> Path:
    art = Path(shutil.copytree(artifact, tmp_path / "art"))
    target = art / "model.onnx"
    if how == "flip":  # same size, one byte altered
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    elif how == "truncate":
        target.write_bytes(target.read_bytes()[:-10])
    elif how == "delete":
        target.unlink()
    elif how == "newer":
        mf = json.loads((art / "manifest.json").read_text())
        mf["format_version"] = 99
        (art / "manifest.json").write_text(json.dumps(mf))
    elif how == "layout":
        mf = json.loads((art / "manifest.json").read_text())
        mf["files"]["model.onnx"]["bytes"] = "many"
        (art / "manifest.json").write_text(json.dumps(mf))
    elif how == "bad-items":
        (art / "items.jsonl").write_text('{"index": 0, "id": "x"}\nnot json\n')
    return art


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("flip", "model.onnx does not match its sha256 in manifest.json"),
        ("truncate", "bytes but the manifest recorded"),
        ("delete", "model.onnx is missing from the artifact"),
        ("newer", "was written by a newer lite-export (artifact format 99"),
        ("layout", "manifest.json has an unexpected layout"),
    ],
)
def test_cpp_rejects_a_damaged_artifact(lite_recommend, artifact, tmp_path, how, message):
    art = _damaged(artifact, tmp_path, how)
    ids = lite_export.load(artifact, engine="onnxruntime").load().catalog.ids
    proc = _run(lite_recommend, art, ids[0])
    assert proc.returncode == 1
    assert message in proc.stderr
    assert proc.stderr.startswith("lite-recommend: error: ")
    assert proc.stdout == ""


def test_cpp_no_verify_skips_checksums_but_not_bad_items(lite_recommend, artifact, tmp_path):
    art = _damaged(artifact, tmp_path, "bad-items")
    proc = _run(lite_recommend, art, "x", "--no-verify")
    assert proc.returncode == 1
    assert "items.jsonl line 2: bad item row" in proc.stderr
    proc = _run(lite_recommend, art, "x")
    assert proc.returncode == 1
    assert "items.jsonl has " in proc.stderr and "bytes but the manifest recorded" in proc.stderr


def test_cpp_missing_artifact_and_unknown_ids(lite_recommend, artifact, tmp_path):
    proc = _run(lite_recommend, tmp_path / "none", "S0001")
    assert proc.returncode == 1
    assert "artifact directory" in proc.stderr and "does not exist" in proc.stderr
    proc = _run(lite_recommend, tmp_path, "S0001")
    assert proc.returncode == 1
    assert "has no manifest.json" in proc.stderr

    ids = lite_export.load(artifact, engine="onnxruntime").load().catalog.ids
    hists = _write_jsonl(tmp_path / "h.jsonl", [[ids[0], "nope"], ["zzz", ids[1], "nope"]])
    proc = _run(lite_recommend, artifact, "--histories", hists)
    assert proc.returncode == 1
    assert "unknown item ids: 'nope', 'zzz'. The catalog has 1000 items" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-k", "0"], "-k needs an integer between 1"),
        (["-k", "21"], "k must be an integer between 1 and 20"),
        (["-k", "ten"], "-k needs an integer"),
        (["--threads", "-1"], "--threads needs an integer between 1 and 1024"),
        (["--bench"], "--bench needs a value"),
        (["--frobnicate"], "unknown option --frobnicate"),
        (["--graph", "nope.onnx"], "nope.onnx does not exist"),
        (["--engine", "openvino"], "unknown engine 'openvino'"),
        (["--histories", "/nonexistent/h.jsonl"], "--histories: cannot read"),
        (["S0001,,S0002"], "empty item id"),
    ],
)
def test_cpp_bad_arguments_exit_2(lite_recommend, artifact, args, message):
    proc = _run(lite_recommend, artifact, "S0001", *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert proc.stdout == ""


def test_cpp_usage_errors_without_artifact_or_histories(lite_recommend, artifact, tmp_path):
    proc = _run(lite_recommend)
    assert proc.returncode == 2 and "missing ARTIFACT" in proc.stderr
    proc = _run(lite_recommend, artifact)
    assert proc.returncode == 2 and "no histories" in proc.stderr
    (tmp_path / "bad.jsonl").write_text('["S0001"]\n{"not": "a list"}\n')
    proc = _run(lite_recommend, artifact, "--histories", tmp_path / "bad.jsonl")
    assert proc.returncode == 2 and "line 2: expected a JSON array of item ids" in proc.stderr


def test_cpp_tensorrt_engine_absent_here_says_so(lite_recommend, artifact):
    proc = _run(lite_recommend, "--version")
    assert proc.returncode == 0 and "onnxruntime 1." in proc.stdout
    if "tensorrt built in" in proc.stdout:
        pytest.skip("this build has TensorRT: the plan path is exercised on GPU hosts")
    proc = _run(lite_recommend, artifact, "S0001", "--engine", "tensorrt")
    assert proc.returncode == 1
    assert "this build has no TensorRT backend" in proc.stderr


# ------------------------------------------------ the input profile (manifest.json "profile")
def _with_profile(artifact: Path, tmp_path: Path, profile: dict | None) -> Path:
    """A copy of the artifact whose manifest records ``profile`` (None: no profile, as written
    before profiles were recorded). manifest.json is not among the checksummed files."""
    art = Path(shutil.copytree(artifact, tmp_path / "art"))
    manifest = json.loads((art / "manifest.json").read_text())
    if profile is None:
        manifest.pop("profile", None)
    else:
        manifest["profile"] = profile
    (art / "manifest.json").write_text(json.dumps(manifest))
    return art


def _small_profile(artifact: Path, max_batch: int = 5, max_exclude: int = 12) -> dict:
    hist = json.loads((artifact / "manifest.json").read_text())["dims"]["max_history"]
    return {
        "item_ids": {"min": [1, 1], "opt": [max_batch, hist], "max": [max_batch, hist]},
        "exclude_ids": {
            "min": [1, 1],
            "opt": [max_batch, max_exclude],
            "max": [max_batch, max_exclude],
        },
    }


@pytest.mark.parametrize(("k", "exclude_seen"), [(20, True), (6, True), (7, False)])
def test_cpp_keeps_to_the_profile_like_python(
    lite_recommend, artifact, synthetic, tmp_path, k, exclude_seen
):
    """Batches split at 5 rows and exclusion lists chunked at 12 ids: the same answers as the
    Python engine keeping to the same profile, and as both without it."""
    art = _with_profile(artifact, tmp_path, _small_profile(artifact))
    hists = _histories(synthetic)
    assert max(map(len, hists)) > 12 and len(hists) > 5
    ref = lite_export.load(art, engine="onnxruntime", graph="model.onnx").recommend(
        hists, k=k, exclude_seen=exclude_seen
    )
    free = lite_export.load(
        art, engine="onnxruntime", graph="model.onnx", enforce_profile=False
    ).recommend(hists, k=k, exclude_seen=exclude_seen)
    assert ref.ids == free.ids
    args = [art, "--histories", _write_jsonl(tmp_path / "h.jsonl", hists), "-k", k, "--json"]
    args += ["--graph", "model.onnx"] + ([] if exclude_seen else ["--include-seen"])
    proc = _run(lite_recommend, *args)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["profile"] == {"source": "manifest.json", **_small_profile(artifact)}
    rows = out["results"]
    assert [r["ids"] for r in rows] == ref.ids
    assert [r["indices"] for r in rows] == ref.indices.tolist()
    scores = np.array([r["scores"] for r in rows], dtype=np.float32)
    np.testing.assert_allclose(scores, ref.scores, rtol=0, atol=SCORE_ATOL)


def test_cpp_chunks_exclusion_like_python_down_to_its_limit(
    lite_recommend, artifact, synthetic, tmp_path
):
    """With room for one excluded id inside the graph, a long history's top-K (k = K) cannot be
    found: Python and C++ both refuse it with the same message, and answer the short ones."""
    from lite_export.engines.profile import ProfileError

    art = _with_profile(artifact, tmp_path, _small_profile(artifact, max_exclude=1))
    long = max(_histories(synthetic), key=len)
    with pytest.raises(ProfileError) as info:
        lite_export.load(art, engine="onnxruntime").recommend([long], k=20)
    proc = _run(lite_recommend, art, ",".join(long), "-k", 20)
    assert proc.returncode == 1
    assert str(info.value).split(". Re-export")[0] in proc.stderr
    short = _histories(synthetic)[:3]
    ref = lite_export.load(art, engine="onnxruntime").recommend(short, k=3)
    proc = _run(lite_recommend, art, *(",".join(h) for h in short), "-k", 3, "--json")
    assert proc.returncode == 0, proc.stderr
    assert [r["ids"] for r in json.loads(proc.stdout)["results"]] == ref.ids


def test_cpp_profile_errors_and_artifacts_without_one(
    lite_recommend, artifact, synthetic, tmp_path
):
    hists = _histories(synthetic)
    long = max(hists, key=len)
    # a profile for histories shorter than the model reads (a plan built too small)
    small = _small_profile(artifact)
    small["item_ids"]["max"][1] = small["item_ids"]["opt"][1] = 3
    art = _with_profile(artifact, tmp_path / "a", small)
    proc = _run(lite_recommend, art, ",".join(long))
    assert proc.returncode == 1
    assert "input item_ids of shape [1, " in proc.stderr and "max [5, 3]" in proc.stderr
    assert "--max-shape" in proc.stderr
    # a malformed profile is named
    bad = _small_profile(artifact)
    bad["exclude_ids"]["max"] = [5]
    proc = _run(lite_recommend, _with_profile(artifact, tmp_path / "b", bad), long[0])
    assert proc.returncode == 1 and "profile.exclude_ids.max must be two positive" in proc.stderr
    # no profile at all (an older artifact): answers as before
    old = _with_profile(artifact, tmp_path / "c", None)
    ref = lite_export.load(artifact, engine="onnxruntime").recommend([long], k=5)
    proc = _run(lite_recommend, old, ",".join(long), "-k", 5, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["profile"] is None and out["results"][0]["ids"] == ref.ids[0]


def test_cpp_never_recommends_removed_items(lite_recommend, text_head_artifact, tmp_path):
    # `lite catalog remove`: the graph scores them -inf, and the empty-history fallback (which
    # the program orders itself from items.jsonl) skips them too
    from lite_export.catalog import ItemCatalog
    from lite_export.catalog_edit import edit_catalog

    cat = ItemCatalog.read_jsonl(text_head_artifact / "items.jsonl")
    popular = [cat.ids[i] for i in cat.most_popular(3)[0]]
    rec = lite_export.load(text_head_artifact, engine="onnxruntime")
    hist = [cat.ids[5], cat.ids[9]]
    gone = sorted(set(popular) | set(rec.recommend([hist], k=3).ids[0]))
    out = edit_catalog(text_head_artifact, tmp_path / "removed", "remove", ids=gone, log=None)
    hists = [hist, [], [gone[0]]]
    ref = lite_export.load(out, engine="onnxruntime").recommend(hists, k=10)
    proc = _run(
        lite_recommend, out, "--histories", _write_jsonl(tmp_path / "h.jsonl", hists), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["results"]
    assert [r["ids"] for r in rows] == ref.ids
    assert not set(gone) & {i for r in rows for i in r["ids"]}
