"""The Open Inference Protocol (KServe v2) of a real `lite serve`: tritonclient.http and raw HTTP,
JSON and binary tensors, the protocol's errors; and one client against `lite serve` and a real
Triton Inference Server, with the same requests and the same answers."""

from __future__ import annotations

import contextlib
import gzip
import json
import struct
import zlib

import numpy as np
import pytest
from serve_helpers import KEY, metric, model_id

import lite_export

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

INFER = "/v2/models/lite/infer"
METADATA = {
    "name": "lite",
    "versions": ["1"],
    "platform": "lite-export",
    "inputs": [
        {"name": "HISTORY", "datatype": "BYTES", "shape": [-1, -1]},
        {"name": "K", "datatype": "INT32", "shape": [-1, 1]},
        {"name": "EXCLUDE_SEEN", "datatype": "BOOL", "shape": [-1, 1]},
    ],
    "outputs": [
        {"name": "ITEM_IDS", "datatype": "BYTES", "shape": [-1, -1]},
        {"name": "SCORES", "datatype": "FP32", "shape": [-1, -1]},
    ],
}


@pytest.fixture(scope="module")
def engine(serve_artifact):
    return lite_export.load(serve_artifact, engine="onnxruntime")


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def triton(server):
    c = httpclient.InferenceServerClient(server.url.removeprefix("http://"), concurrency=4)
    yield c
    c.close()


def tc_infer(
    client,
    history: list[str],
    k: int | None = None,
    exclude_seen: bool | None = None,
    binary: bool = True,
    rows: int = 1,
    **kw,
):
    """tritonclient.http as a Triton user calls the `lite` model (binary tensors by default)."""
    hist = np.array([[h.encode() for h in history]] * rows, dtype=np.object_)
    hist = hist.reshape(rows, len(history))
    inputs = [httpclient.InferInput("HISTORY", list(hist.shape), "BYTES")]
    inputs[0].set_data_from_numpy(hist, binary_data=binary)
    if k is not None:
        inputs.append(httpclient.InferInput("K", [1, 1], "INT32"))
        inputs[-1].set_data_from_numpy(np.array([[k]], dtype=np.int32), binary_data=binary)
    if exclude_seen is not None:
        inputs.append(httpclient.InferInput("EXCLUDE_SEEN", [1, 1], "BOOL"))
        inputs[-1].set_data_from_numpy(np.array([[exclude_seen]]), binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput("ITEM_IDS", binary_data=binary),
        httpclient.InferRequestedOutput("SCORES", binary_data=binary),
    ]
    return client.infer("lite", inputs, outputs=outputs, **kw)


def ids_of(res) -> list[list[str]]:
    return [
        [b.decode() if isinstance(b, bytes) else b for b in row] for row in res.as_numpy("ITEM_IDS")
    ]


# ---------------------------------------------------------------------- health and metadata
def test_health_metadata_and_readiness(triton, client):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("lite") and triton.is_model_ready("lite", "1")
    assert not triton.is_model_ready("nope") and not triton.is_model_ready("lite", "2")
    assert triton.get_model_metadata("lite") == METADATA
    assert triton.get_model_metadata("lite", "1") == METADATA
    server = triton.get_server_metadata()
    assert server["name"] == "lite-export" and "binary_tensor_data" in server["extensions"]
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    r = client.get("/v2/models/nope")
    assert r.status_code == 404 and "unknown model: 'nope'" in r.json()["error"]
    with pytest.raises(InferenceServerException, match="unknown model: 'nope'"):
        triton.get_model_metadata("nope")


# ---------------------------------------------------------------------- answers
CASES = [  # (history slice, k, exclude_seen); None: the input is left out
    (slice(0, 3), None, None),
    (slice(5, 6), 20, False),
    (slice(100, 160), 5, True),  # longer than max_history (50): the most recent 50 are read
    (slice(0, 0), 7, None),  # empty: the most popular items
]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_matches_the_engine_and_v1(triton, client, engine, item_ids, binary):
    for part, k, excl in CASES:
        hist = item_ids[part]
        res = tc_infer(triton, hist, k, excl, binary=binary)
        ref = engine.recommend([hist], k=k or 10, exclude_seen=True if excl is None else excl)
        assert ids_of(res) == ref.ids, (part, k, excl)
        assert res.as_numpy("SCORES").dtype == np.float32
        np.testing.assert_allclose(res.as_numpy("SCORES"), ref.scores, atol=1e-5)
        assert res.get_response()["model_name"] == "lite"
        v1 = client.post(
            "/v1/recommend",
            json={"history": hist, "k": k or 10, "exclude_seen": True if excl is None else excl},
        ).json()
        assert [i["id"] for i in v1["items"]] == ref.ids[0]


def test_several_histories_in_one_request(triton, engine, item_ids):
    res = tc_infer(triton, item_ids[10:13], 4, rows=1)
    two = np.array([[h.encode() for h in item_ids[10:13]], [h.encode() for h in item_ids[20:23]]])
    inp = httpclient.InferInput("HISTORY", [2, 3], "BYTES")
    inp.set_data_from_numpy(two.astype(np.object_))
    k = httpclient.InferInput("K", [1, 1], "INT32")
    k.set_data_from_numpy(np.array([[4]], dtype=np.int32))
    both = triton.infer("lite", [inp, k])  # no outputs named: all, binary
    ref = engine.recommend([item_ids[10:13], item_ids[20:23]], k=4)
    assert both.as_numpy("ITEM_IDS").shape == (2, 4) and ids_of(both) == ref.ids
    assert ids_of(res)[0] == ref.ids[0]
    np.testing.assert_allclose(both.as_numpy("SCORES"), ref.scores, atol=1e-5)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(triton, engine, item_ids, algorithm):
    res = tc_infer(triton, item_ids[:4], 3, request_compression_algorithm=algorithm)
    assert ids_of(res) == engine.recommend([item_ids[:4]], k=3).ids


def test_raw_json_request_like_curl(client, engine, item_ids):
    body = {
        "id": "req-7",
        "inputs": [
            # nested data (row-major) is accepted as well as flat
            {"name": "HISTORY", "shape": [1, 2], "datatype": "BYTES", "data": [item_ids[:2]]},
            {"name": "K", "shape": [1, 1], "datatype": "INT64", "data": [[3]]},
            {"name": "EXCLUDE_SEEN", "shape": [1, 1], "datatype": "BOOL", "data": [False]},
        ],
        "outputs": [{"name": "SCORES"}, {"name": "ITEM_IDS"}],
    }
    r = client.post(INFER, content=json.dumps(body))  # no Content-Type, as tritonclient sends
    assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    out = r.json()
    ref = engine.recommend([item_ids[:2]], k=3, exclude_seen=False)
    assert out["id"] == "req-7" and out["model_version"] == "1"
    assert [o["name"] for o in out["outputs"]] == ["SCORES", "ITEM_IDS"]  # in the order asked
    scores, ids = out["outputs"]
    assert ids["shape"] == [1, 3] and ids["data"] == ref.ids[0]
    np.testing.assert_allclose(scores["data"], ref.scores[0], atol=1e-5)
    # one output binary, the other JSON: the binary part follows the JSON header
    body["outputs"] = [{"name": "ITEM_IDS", "parameters": {"binary_data": True}}]
    r = client.post(INFER, json=body)
    n = int(r.headers["inference-header-content-length"])
    head, raw = json.loads(r.content[:n]), r.content[n:]
    assert r.headers["content-type"] == "application/octet-stream"
    assert head["outputs"][0]["parameters"]["binary_data_size"] == len(raw)
    got, pos = [], 0
    while pos < len(raw):
        (size,) = struct.unpack_from("<I", raw, pos)
        got.append(raw[pos + 4 : pos + 4 + size].decode())
        pos += 4 + size
    assert got == ref.ids[0]


def test_lenient_parameter_drops_unknown_ids(triton, engine, item_ids):
    res = tc_infer(triton, [item_ids[0], "no-such-item"], 3, parameters={"lenient": True})
    assert ids_of(res) == engine.recommend([[item_ids[0]]], k=3).ids


# ---------------------------------------------------------------------- errors
def H(data, shape=None, datatype="BYTES", **extra):
    return {
        "name": "HISTORY",
        "shape": shape or [1, len(data)],
        "datatype": datatype,
        "data": data,
        **extra,
    }


def K(value, shape=(1, 1)):
    return {"name": "K", "shape": list(shape), "datatype": "INT32", "data": value}


def _binary(header: dict, raw: bytes) -> tuple[bytes, dict]:
    head = json.dumps(header).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


S1 = "S0001"
BIG = json.dumps({"inputs": [H(["S0001"] * 150_000)]})  # ~1.2 MB
BAD = [
    # (name, body: dict | bytes, headers, path, status, text the error must contain)
    ("malformed JSON", b'{"inputs": [', {}, INFER, 400, "not valid JSON"),
    ("not UTF-8", b'{"inputs": ["\xff"]}', {}, INFER, 400, "not valid JSON"),
    ("not an object", b"[1]", {}, INFER, 400, "JSON object"),
    ("no inputs", {}, {}, INFER, 400, "'inputs'"),
    (
        "unknown input",
        {"inputs": [H([S1]), {**K([1]), "name": "FOO"}]},
        {},
        INFER,
        400,
        "unexpected inference input 'FOO'",
    ),
    (
        "history as INT32",
        {"inputs": [H([1], datatype="INT32")]},
        {},
        INFER,
        400,
        "data-type is 'INT32'",
    ),
    ("history 1-D", {"inputs": [H([S1, S1], shape=[2])]}, {}, INFER, 400, "shape [B, L]"),
    (
        "element count",
        {"inputs": [H([S1], shape=[1, 3])]},
        {},
        INFER,
        400,
        "holds 3 elements, data has 1",
    ),
    ("bad shape", {"inputs": [H([S1], shape=[1, -1])]}, {}, INFER, 400, "non-negative"),
    ("ids not strings", {"inputs": [H([1, 2])]}, {}, INFER, 400, "item ids are strings"),
    ("no HISTORY", {"inputs": [K([3])]}, {}, INFER, 400, "'HISTORY' is required"),
    (
        "no data",
        {"inputs": [{"name": "HISTORY", "shape": [1, 1], "datatype": "BYTES"}]},
        {},
        INFER,
        400,
        "has no data",
    ),
    ("twice", {"inputs": [H([S1]), H([S1])]}, {}, INFER, 400, "given twice"),
    ("K above K", {"inputs": [H([S1]), K([50])]}, {}, INFER, 400, "between 1 and 20"),
    ("K zero", {"inputs": [H([S1]), K([0])]}, {}, INFER, 400, "between 1 and 20"),
    ("K float", {"inputs": [H([S1]), K([1.5])]}, {}, INFER, 400, "one integer"),
    (
        "K per row differs",
        {"inputs": [H([S1, S1], shape=[2, 1]), K([3, 4], (2, 1))]},
        {},
        INFER,
        400,
        "same for every history",
    ),
    (
        "EXCLUDE_SEEN not bool",
        {
            "inputs": [
                H([S1]),
                {"name": "EXCLUDE_SEEN", "shape": [1, 1], "datatype": "BOOL", "data": [1]},
            ]
        },
        {},
        INFER,
        400,
        "one boolean",
    ),
    (
        "unknown ids",
        {"inputs": [H([S1, "no-such-item"])]},
        {},
        INFER,
        400,
        "unknown item ids: 'no-such-item'",
    ),
    (
        "unknown ids in a row",
        {"inputs": [H([S1, "zz"], shape=[2, 1])]},
        {},
        INFER,
        400,
        "HISTORY row 1: unknown item ids: 'zz'",
    ),
    (
        "unknown output",
        {"inputs": [H([S1])], "outputs": [{"name": "NOPE"}]},
        {},
        INFER,
        400,
        "unexpected inference output 'NOPE'",
    ),
    (
        "classification",
        {
            "inputs": [H([S1])],
            "outputs": [{"name": "ITEM_IDS", "parameters": {"classification": 3}}],
        },
        {},
        INFER,
        400,
        "classification",
    ),
    (
        "shared memory",
        {"inputs": [H([S1], parameters={"shared_memory_region": "r"})]},
        {},
        INFER,
        400,
        "shared memory",
    ),
    (
        "lenient not bool",
        {"inputs": [H([S1])], "parameters": {"lenient": "yes"}},
        {},
        INFER,
        400,
        "lenient",
    ),
    (
        "binary past the end",
        *_binary(
            {
                "inputs": [
                    {
                        "name": "HISTORY",
                        "shape": [1, 1],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": 100},
                    }
                ]
            },
            b"\x01\x00\x00\x00a",
        ),
        INFER,
        400,
        "runs past",
    ),
    (
        "binary element past its data",
        *_binary(
            {
                "inputs": [
                    {
                        "name": "HISTORY",
                        "shape": [1, 1],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": 5},
                    }
                ]
            },
            b"\x09\x00\x00\x00a",
        ),
        INFER,
        400,
        "runs past its data",
    ),
    (
        "binary count",
        *_binary(
            {
                "inputs": [
                    {
                        "name": "HISTORY",
                        "shape": [1, 2],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": 5},
                    }
                ]
            },
            b"\x01\x00\x00\x00a",
        ),
        INFER,
        400,
        "expected 2 BYTES elements",
    ),
    ("binary not claimed", *_binary({"inputs": [H([S1])]}, b"junk"), INFER, 400, "no input claims"),
    (
        "bad header length",
        json.dumps({"inputs": [H([S1])]}).encode(),
        {"Inference-Header-Content-Length": "abc"},
        INFER,
        400,
        "Inference-Header-Content-Length",
    ),
    ("bad gzip", b"not gzip", {"Content-Encoding": "gzip"}, INFER, 400, "not valid gzip"),
    (
        "gzip bomb",
        gzip.compress(b" " * 2_000_000),
        {"Content-Encoding": "gzip"},
        INFER,
        413,
        "inflates to more than",
    ),
    ("brotli", b"{}", {"Content-Encoding": "br"}, INFER, 415, "not supported"),
    ("oversized body", BIG.encode(), {}, INFER, 413, "limited to 1000000 bytes"),
    (
        "unknown model",
        {"inputs": [H([S1])]},
        {},
        "/v2/models/nope/infer",
        404,
        "unknown model: 'nope'",
    ),
    (
        "unknown version",
        {"inputs": [H([S1])]},
        {},
        "/v2/models/lite/versions/7/infer",
        404,
        "version 7",
    ),
]


@pytest.mark.parametrize("name,body,headers,path,status,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_the_protocols_error(client, name, body, headers, path, status, needle):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post(path, content=content, headers=headers)
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert set(r.json()) == {"error"}, r.text[:500]
    assert needle in r.json()["error"], r.json()["error"]


def test_wrong_method_and_errors_through_tritonclient(client, triton, item_ids):
    r = client.get(INFER)
    assert r.status_code == 405 and "use POST" in r.json()["error"]
    with pytest.raises(InferenceServerException) as exc:
        tc_infer(triton, [item_ids[0], "no-such-item"], 5)
    assert exc.value.status() == "400"
    assert "unknown item ids: 'no-such-item'" in exc.value.message()
    with pytest.raises(InferenceServerException, match="between 1 and 20"):
        tc_infer(triton, item_ids[:2], 50)
    assert triton.is_model_ready("lite")  # still serving


def test_no_server_error_and_metrics_count_the_fast_path(client, item_ids):
    for *_, path, _status, _needle in BAD[:6]:
        client.post(path, content=b"{}")
    client.post(INFER, json={"inputs": [H(item_ids[:2])]})
    client.post("/v1/recommend", json={"history": item_ids[:2]})
    text = client.get("/metrics").text
    route = "/v2/models/{name}/infer"
    assert metric(text, "lite_requests_total", route=route, method="POST", status="200") >= 1
    assert metric(text, "lite_requests_total", route=route, method="POST", status="400") >= 1
    assert (
        metric(text, "lite_requests_total", route="/v1/recommend", method="POST", status="200") >= 1
    )
    server_errors = [
        line
        for line in text.splitlines()
        if line.startswith("lite_requests_total{") and 'status="5' in line
    ]
    assert all('route="/readyz"' in line for line in server_errors), server_errors


# ---------------------------------------------------------------------- the API key
@pytest.fixture(scope="module")
def keyed_server(serve_artifact, start_server):
    """Default settings (continuous batching) and an API key."""
    return start_server(serve_artifact, env={"LITE_API_KEY": KEY})


def test_api_key_guards_the_fast_path_and_continuous_is_the_default(keyed_server, item_ids):
    body = {"history": item_ids[:2], "k": 3}
    v2 = {"inputs": [H(item_ids[:2]), K([3])]}
    with keyed_server.client() as c:
        r = c.post("/v1/recommend", json=body)
        assert r.status_code == 401 and "missing X-API-Key" in r.json()["detail"]
        r = c.post(INFER, json=v2)
        assert r.status_code == 401 and "missing X-API-Key" in r.json()["error"]
        wrong = {"X-API-Key": "nope"}
        assert c.post("/v1/recommend", json=body, headers=wrong).status_code == 401
        assert c.post(INFER, json=v2, headers=wrong).status_code == 401
        assert c.get("/v2/models/lite", headers=wrong).status_code == 401
        ok = {"X-API-Key": KEY}
        assert c.post("/v1/recommend", json=body, headers=ok).status_code == 200
        assert c.post(INFER, json=v2, headers=ok).status_code == 200
        serving = c.get("/v1/model", headers=ok).json()["serving"]
    assert serving["batching"] == "continuous" and serving["max_delay_ms"] == 0
    tc = httpclient.InferenceServerClient(keyed_server.url.removeprefix("http://"))
    try:
        assert tc.is_server_ready()  # health needs no key
        res = tc_infer(tc, item_ids[:2], 3, headers={"X-API-Key": KEY})
        assert res.as_numpy("ITEM_IDS").shape == (1, 3)
        with pytest.raises(InferenceServerException, match="X-API-Key"):
            tc_infer(tc, item_ids[:2], 3)
    finally:
        tc.close()


# ---------------------------------------------------------------------- one client, two servers
def _history_ids(artifact) -> list[list[str]]:
    ids = [json.loads(line)["id"] for line in (artifact / "items.jsonl").read_text().splitlines()]
    return [ids[:3], [ids[9]], ids[:79], []]


@pytest.mark.slow
def test_one_client_works_against_lite_serve_and_triton(
    triton_server, server, serve_artifact, start_server
):
    """The same tritonclient.http code, the same requests, against a real Triton Inference Server
    serving the exported `lite` model and against `lite serve` of the same artifact."""
    art = triton_server.artifact
    lite = server if model_id(serve_artifact) == model_id(art) else start_server(art)
    urls = {"triton": triton_server.url, "lite serve": lite.url.removeprefix("http://")}
    clients = {name: httpclient.InferenceServerClient(u, concurrency=8) for name, u in urls.items()}
    hists = _history_ids(art)
    answers: dict[str, list] = {name: [] for name in clients}
    errors: dict[str, list] = {name: [] for name in clients}
    try:
        for name, c in clients.items():
            assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("lite")
            meta = c.get_model_metadata("lite")
            assert {k: meta[k] for k in ("name", "versions", "inputs", "outputs")} == {
                k: METADATA[k] for k in ("name", "versions", "inputs", "outputs")
            }, name
            for h in hists:
                for k, excl, binary in ((10, None, True), (None, None, True), (5, False, False)):
                    res = tc_infer(c, h, k, excl, binary=binary)
                    answers[name].append((ids_of(res), res.as_numpy("SCORES")))
            pending = [tc_infer_async(c, h, 10) for h in hists for _ in range(4)]
            for req in pending:
                res = req.get_result(timeout=60)
                answers[name].append((ids_of(res), res.as_numpy("SCORES")))
            for bad in ([hists[0][0], "no-such-item"], 50):
                with pytest.raises(InferenceServerException) as exc:
                    if isinstance(bad, list):
                        tc_infer(c, bad, 5)
                    else:
                        tc_infer(c, hists[0], bad)
                errors[name].append((exc.value.status(), exc.value.message()))
            assert c.is_model_ready("lite")  # still serving after the errors
    finally:
        for c in clients.values():
            c.close()
    pairs = zip(answers["lite serve"], answers["triton"], strict=True)
    for n, ((l_ids, l_scores), (t_ids, t_scores)) in enumerate(pairs):
        assert l_ids == t_ids, n
        np.testing.assert_allclose(l_scores, t_scores, atol=1e-5)
    # the same messages; lite serve says 400 where Triton's python model says 500
    (t_unknown, t_k), (l_unknown, l_k) = errors["triton"], errors["lite serve"]
    for _status, message in (t_unknown, l_unknown):
        assert message.startswith("unknown item ids: 'no-such-item'"), message
    for _status, message in (t_k, l_k):
        assert "between 1 and 20" in message, message
    assert l_unknown[0] == l_k[0] == "400"
    assert t_unknown[0] == t_k[0] == "500"


def tc_infer_async(client, history, k):
    hist = np.array([[h.encode() for h in history]], dtype=np.object_).reshape(1, len(history))
    inputs = [httpclient.InferInput("HISTORY", list(hist.shape), "BYTES")]
    inputs[0].set_data_from_numpy(hist)
    inputs.append(httpclient.InferInput("K", [1, 1], "INT32"))
    inputs[1].set_data_from_numpy(np.array([[k]], dtype=np.int32))
    return client.async_infer("lite", inputs)


def test_body_encodings_roundtrip_without_a_server():
    """The codec alone: deflate and gzip bodies decode; identity passes through."""
    from lite_export.serving.oip import decode_body

    raw = b'{"inputs": []}'
    assert decode_body(raw, None, 100) == raw
    assert decode_body(gzip.compress(raw), "gzip", 100) == raw
    assert decode_body(zlib.compress(raw), "deflate", 100) == raw


def test_the_decoder_refuses_any_json_with_a_protocol_error():
    """Whatever JSON arrives (shaped like a request or not), parse_infer answers or raises
    ProtocolError (a 400), never another exception (a 5xx)."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    from lite_export.serving.oip import ProtocolError, parse_infer

    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
    values = st.recursive(
        scalars | st.sampled_from(["HISTORY", "K", "EXCLUDE_SEEN", "BYTES", "INT32", "BOOL"]),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "name",
                        "shape",
                        "datatype",
                        "data",
                        "parameters",
                        "inputs",
                        "outputs",
                        "id",
                        "binary_data_size",
                        "binary_data",
                        "binary_data_output",
                        "lenient",
                    ]
                )
                | st.text(max_size=3),
                inner,
                max_size=5,
            )
        ),
        max_leaves=25,
    )

    valid = [
        {"name": "HISTORY", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]},
        {"name": "K", "shape": [1, 1], "datatype": "INT32", "data": [3]},
    ]
    inputs = (
        st.just(valid)
        | st.lists(st.just(valid[0]) | st.just(valid[1]) | values, max_size=3)
        | st.lists(st.dictionaries(st.sampled_from(list(valid[0])), values), max_size=2)
    )
    docs = values | st.fixed_dictionaries(
        {"inputs": inputs},
        optional={
            "outputs": values
            | st.lists(
                st.dictionaries(st.sampled_from(["name", "parameters"]), values), max_size=2
            ),
            "parameters": values
            | st.dictionaries(st.sampled_from(["binary_data_output", "lenient"]), values),
            "id": values,
        },
    )

    @hypothesis.settings(max_examples=600, deadline=None, database=None)
    @hypothesis.given(docs, st.binary(max_size=16), st.none() | st.integers(-2, 600))
    def check(doc, tail, header):
        head = json.dumps(doc).encode()
        body = head + tail if header is not None else head
        with contextlib.suppress(ProtocolError):
            parse_infer(body, None if header is None else str(header))

    check()
