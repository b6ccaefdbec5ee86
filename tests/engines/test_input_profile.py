"""Input profiles (lite_export.engines.profile): every graph call inside the profile the manifest
records, with answers identical to unconstrained calls.

The chunked exclusion is checked three ways on CPU: against an exact numpy "graph" over random
histories, through the ONNX Runtime engine on an artifact exported with a small --max-exclude
(every session call instrumented), and through the TensorRT engine's own code with a stand-in
for TensorRT's execution context that refuses out-of-profile shapes as TensorRT does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import lite_export
from lite_export.engines.profile import (
    DEFAULT_MAX_EXCLUDE,
    InputProfile,
    ProfileError,
    ShapeRange,
    run_in_profile,
)

# --- an exact stand-in for the ranking graph ------------------------------------------------------
N, K, PAD, D = 120, 10, 120, 4


class NumpyGraph:
    """scores = sum of the history's item vectors . item vectors; excluded ids at -inf; top-K
    with ONNX TopK's tie order. Records the shapes it was called with."""

    def __init__(self, seed: int = 0):
        self.w = np.random.default_rng(seed).standard_normal((N, D)).astype(np.float32)
        self.calls: list[tuple[tuple[int, int], tuple[int, int]]] = []

    def __call__(self, item_ids, exclude_ids):
        self.calls.append((item_ids.shape, exclude_ids.shape))
        h = np.zeros((item_ids.shape[0], D), np.float32)
        for r, row in enumerate(item_ids):
            h[r] = self.w[row[row != PAD]].sum(0)
        # row by row: a row's scores never depend on the batch it came in
        s = np.stack([np.append(self.w @ row, np.float32(0)) for row in h])
        np.put_along_axis(s, exclude_ids, -np.inf, 1)
        s = s[:, :N]
        idx = np.argsort(-s, axis=1, kind="stable")[:, :K]
        return np.take_along_axis(s, idx, 1), idx


def _left_pad(rows, width):
    out = np.full((len(rows), max(1, width)), PAD, np.int64)
    for r, x in enumerate(rows):
        if x:
            out[r, out.shape[1] - len(x) :] = x
    return out


def _inputs(hists, max_history=8):
    ids = _left_pad([h[-max_history:] for h in hists], max(min(len(h), max_history) for h in hists))
    return ids, _left_pad(hists, max(map(len, hists)))


def _profile(max_batch=3, max_exclude=12, min_batch=1, min_width=1, max_history=8):
    return InputProfile(
        ShapeRange((min_batch, min_width), (max_batch, max_history), (max_batch, max_history)),
        ShapeRange((min_batch, min_width), (max_batch, max_exclude), (max_batch, max_exclude)),
    )


@pytest.mark.parametrize("seed", range(6))
def test_chunked_exclusion_equals_unchunked_on_random_histories(seed):
    rng = np.random.default_rng(seed)
    graph = NumpyGraph(seed)
    for _ in range(40):
        hists = [
            [int(x) for x in rng.integers(0, N, size=rng.integers(0, 45))]
            for _ in range(rng.integers(1, 9))
        ]
        ids, exc = _inputs(hists)
        k = int(rng.integers(1, K + 1))
        ref_s, ref_i = graph(ids, exc)
        profile = _profile(max_exclude=int(rng.integers(K, 25)))
        graph.calls.clear()
        scores, indices = run_in_profile(graph, ids, exc, k, profile, PAD)
        np.testing.assert_array_equal(indices, ref_i[:, :k])
        np.testing.assert_array_equal(scores, ref_s[:, :k])
        for ids_shape, exc_shape in graph.calls:  # every call inside the profile
            assert profile.item_ids.contains(ids_shape) and profile.exclude_ids.contains(exc_shape)


def test_batches_are_split_and_padded_to_the_profile():
    graph = NumpyGraph()
    hists = [[i, i + 1, i + 2] for i in range(7)]
    ids, exc = _inputs(hists)
    ref = graph(ids, exc)
    graph.calls.clear()
    profile = _profile(max_batch=3, min_batch=2, min_width=4)
    scores, indices = run_in_profile(graph, ids, exc, 5, profile, PAD)
    np.testing.assert_array_equal(indices, ref[1][:, :5])
    # 7 rows: 3 + 3 + 1 padded to the minimum batch of 2; widths padded up to 4
    assert [c[0] for c in graph.calls] == [(3, 4), (3, 4), (2, 4)]
    assert all(c[1][1] == 4 for c in graph.calls)


def test_a_history_whose_exclusion_cannot_be_chunked_says_what_to_do():
    # a graph that ranks a history's own items first: every seen item beats every unseen one
    def seen_first(item_ids, exclude_ids):
        s = np.zeros((item_ids.shape[0], N + 1), np.float32)
        for r, row in enumerate(item_ids):
            s[r, row[row != PAD]] = 10.0 + np.arange((row != PAD).sum())
        np.put_along_axis(s, exclude_ids, -np.inf, 1)
        idx = np.argsort(-s[:, :N], axis=1, kind="stable")[:, :K]
        return np.take_along_axis(s[:, :N], idx, 1), idx

    hist = list(range(40))
    ids, exc = _inputs([hist], max_history=40)
    profile = _profile(max_exclude=12, max_history=40)
    with pytest.raises(ProfileError) as info:
        run_in_profile(seen_first, ids, exc, 10, profile, PAD)
    msg = str(info.value)
    assert "excludes 40 distinct ids" in msg and "--max-exclude" in msg
    assert "exclude_seen=False" in msg and "max [3, 12]" in msg


def test_item_ids_wider_than_the_profile_is_refused_naming_input_shape_and_profile():
    graph = NumpyGraph()
    ids, exc = _inputs([list(range(8))])
    narrow = _profile(max_history=8)
    narrow = InputProfile(
        ShapeRange((1, 1), (3, 4), (3, 5)), narrow.exclude_ids, source="model.plan"
    )
    with pytest.raises(ProfileError) as info:
        run_in_profile(graph, ids, exc, 3, narrow, PAD)
    msg = str(info.value)
    assert "input item_ids of shape [1, 8]" in msg and "model.plan" in msg
    assert "max [3, 5]" in msg and "--max-shape" in msg


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_shape": (256, 20)}, "below the model's max_history 50"),
        ({"max_exclude": 0}, "--max-exclude must be an integer >= 1"),
        ({"min_shape": (8, 1), "opt_shape": (4, 50)}, "min <= opt <= max"),
    ],
)
def test_export_profile_options_are_checked(kwargs, match):
    with pytest.raises(ProfileError, match=match):
        InputProfile.for_export(50, 1000, **kwargs)


def test_export_profile_defaults():
    p = InputProfile.for_export(50, 100_000)
    assert p.to_manifest() == {
        "item_ids": {"min": [1, 1], "opt": [16, 50], "max": [256, 50]},
        "exclude_ids": {"min": [1, 1], "opt": [16, 50], "max": [256, DEFAULT_MAX_EXCLUDE]},
    }
    # a catalog smaller than the default: no list of distinct ids is longer, nothing chunks
    assert InputProfile.for_export(50, 1000).exclude_ids.max == (256, 1000)
    lo, opt, hi = p.tensorrt_shapes()
    assert hi == {"item_ids": (256, 50), "exclude_ids": (256, DEFAULT_MAX_EXCLUDE)}


# --- the ONNX Runtime engine on an artifact exported with a small --max-exclude ------------------
MAX_EXCLUDE = 12
MAX_BATCH = 5


@pytest.fixture(scope="module")
def small_profile_artifact(trained, tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from lite_export.cli import app

    model, *_, ckpt = trained
    art = tmp_path_factory.mktemp("small-profile") / "art"
    res = CliRunner().invoke(
        app,
        [
            "export",
            str(ckpt),
            "--out",
            str(art),
            "--k",
            "20",
            "--max-exclude",
            str(MAX_EXCLUDE),
            "--max-shape",
            f"{MAX_BATCH},{model.config.max_history}",
            "--no-optimize",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "input profile: item_ids [1, 1]..[5," in res.output
    return art


def _histories(synthetic) -> list[list[str]]:
    ds, split = synthetic
    hists = [[ds.item_ids[i] for i in h] for h, _ in split.test]
    longest = sorted(hists, key=len)[-4:]
    repeated = [longest[-1][:3] * 5]  # repeats: 15 ids, 3 distinct
    return hists[:9] + longest + repeated + [[ds.item_ids[0]], []]


def test_manifest_records_every_inputs_profile(small_profile_artifact):
    manifest = json.loads((small_profile_artifact / "manifest.json").read_text())
    hist = manifest["dims"]["max_history"]
    assert manifest["profile"] == {
        "item_ids": {"min": [1, 1], "opt": [MAX_BATCH, hist], "max": [MAX_BATCH, hist]},
        "exclude_ids": {
            "min": [1, 1],
            "opt": [MAX_BATCH, MAX_EXCLUDE],
            "max": [MAX_BATCH, MAX_EXCLUDE],
        },
    }
    assert manifest["export_options"]["max_exclude"] == MAX_EXCLUDE


@pytest.mark.parametrize(("k", "exclude_seen"), [(20, True), (5, True), (7, False)])
def test_onnxruntime_engine_keeps_to_the_profile_with_identical_answers(
    small_profile_artifact, synthetic, k, exclude_seen
):
    hists = _histories(synthetic)
    assert max(map(len, hists)) > MAX_EXCLUDE and len(hists) > MAX_BATCH
    rec = lite_export.load(small_profile_artifact, engine="onnxruntime")
    free = lite_export.load(small_profile_artifact, engine="onnxruntime", enforce_profile=False)
    assert rec.info["profile"]["exclude_ids"]["max"] == [MAX_BATCH, MAX_EXCLUDE]
    assert free.info["profile"] is None
    shapes = []
    run = rec.session.run

    def recording(names, feeds):
        shapes.append({n: a.shape for n, a in feeds.items()})
        return run(names, feeds)

    rec.session = type("S", (), {"run": staticmethod(recording)})()
    got = rec.recommend(hists, k=k, exclude_seen=exclude_seen)
    ref = free.recommend(hists, k=k, exclude_seen=exclude_seen)
    assert got.ids == ref.ids
    np.testing.assert_array_equal(got.indices, ref.indices)
    np.testing.assert_allclose(got.scores, ref.scores, rtol=0, atol=1e-6)
    assert shapes and all(
        s["item_ids"][0] <= MAX_BATCH and s["exclude_ids"][1] <= MAX_EXCLUDE for s in shapes
    )


def test_an_artifact_without_a_profile_runs_as_before(small_profile_artifact, tmp_path, synthetic):
    old = Path(shutil.copytree(small_profile_artifact, tmp_path / "old"))
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["profile"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    rec = lite_export.load(old, engine="onnxruntime")
    assert rec.profile is None
    hists = _histories(synthetic)
    ref = lite_export.load(small_profile_artifact, engine="onnxruntime").recommend(hists, k=9)
    assert rec.recommend(hists, k=9).ids == ref.ids


# --- the TensorRT engine's code, with TensorRT's shape checks emulated ---------------------------
class FakeContext:
    """Like ``IExecutionContext.set_input_shape``: False outside the plan's profile."""

    def __init__(self, profile: InputProfile):
        self.profile = profile
        self.shapes: list[dict] = []

    def set_input_shape(self, name, shape):
        ok = getattr(self.profile, name).contains(shape)
        if ok:
            self.shapes.append({name: tuple(shape)})
        return ok


class FakePlan:
    """``ICudaEngine.get_tensor_profile_shape(name, 0)`` -> [min, opt, max]."""

    def __init__(self, shapes: dict):
        self.shapes = shapes

    def get_tensor_profile_shape(self, name, index):
        assert index == 0
        return [list(s) for s in self.shapes[name]]


def _fake_tensorrt_engine(artifact: Path, plan_shapes: dict):
    """The real TensorRTEngine with the device part (_load_impl, _execute) swapped for ONNX
    Runtime on CPU; profile reading, shape setting and splitting are the engine's own code."""
    from lite_export.engines.onnxruntime_engine import OnnxRuntimeEngine
    from lite_export.engines.tensorrt_engine import TensorRTEngine, plan_profile

    graph = OnnxRuntimeEngine(artifact, graph="model.onnx", enforce_profile=False).load()

    class CpuTensorRTEngine(TensorRTEngine):
        def _load_impl(self):
            self.profile = plan_profile(FakePlan(plan_shapes)) or InputProfile.from_manifest(
                self.manifest
            )
            self.context = FakeContext(plan_profile(FakePlan(plan_shapes)))

        def _execute(self, item_ids, exclude_ids):
            return graph._run(item_ids, exclude_ids)

    return CpuTensorRTEngine(artifact).load(), graph


def test_tensorrt_engine_reads_the_plans_profile_and_stays_inside_it(artifact, synthetic):
    """The session artifact has no tiny profile in its manifest; the plan's own profile rules."""
    hists = _histories(synthetic)
    hist = json.loads((artifact / "manifest.json").read_text())["dims"]["max_history"]
    plan = {
        "item_ids": [(1, 1), (4, hist), (4, hist)],
        "exclude_ids": [(1, 1), (4, 7), (4, 7)],
    }
    engine, graph = _fake_tensorrt_engine(artifact, plan)
    assert engine.profile.source == "model.plan"
    assert engine.info["profile"]["exclude_ids"]["max"] == [4, 7]
    for exclude_seen in (True, False):
        got = engine.recommend(hists, k=15, exclude_seen=exclude_seen)
        ref = graph.recommend(hists, k=15, exclude_seen=exclude_seen)
        assert got.ids == ref.ids
        np.testing.assert_allclose(got.scores, ref.scores, rtol=0, atol=1e-6)
    assert all(
        shape[1] <= 7 for s in engine.context.shapes for n, shape in s.items() if n == "exclude_ids"
    )


def test_tensorrt_refusing_a_shape_names_input_shape_and_profile(artifact):
    from lite_export.engines.tensorrt_engine import TensorRTShapeError, set_input_shapes

    profile = _profile(max_batch=4, max_exclude=7)
    with pytest.raises(TensorRTShapeError) as info:
        set_input_shapes(FakeContext(profile), {"exclude_ids": (2, 120)}, profile)
    msg = str(info.value)
    assert "input exclude_ids of shape [2, 120]" in msg
    assert "max [4, 7]" in msg and "--max-exclude" in msg
