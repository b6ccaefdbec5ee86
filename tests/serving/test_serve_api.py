"""The HTTP API of a real `lite serve` process: answers, bad input, micro-batching, metrics."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from serve_helpers import metric, model_id

import lite_export


@pytest.fixture(scope="module")
def engine(serve_artifact):
    return lite_export.load(serve_artifact, engine="onnxruntime")


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


def test_healthz_answers_before_readyz_turns_ready(server):
    # /healthz answers as soon as the port is bound; /readyz is 503 while the engine loads
    assert (200, 503) in server.startup, server.startup
    assert server.startup[-1] == (200, 200)


def test_model_summary_and_settings_from_file_and_flags(client, serve_artifact):
    m = client.get("/v1/model").json()
    assert m["id"] == model_id(serve_artifact)
    assert m["format_version"] == 1 and m["engine"] == "onnxruntime"
    assert m["dims"]["k"] == m["max_k"] == 20 and m["max_history"] == 50
    assert m["precision"] == "fp32" and "model.onnx" in m["files"]
    # serve.json said max_batch 4 and max-queue 512; the --max-batch flag wins
    assert m["serving"]["max_batch"] == 16 and m["serving"]["max_queue"] == 512
    assert m["serving"]["api_key"] is False


def test_recommend_matches_the_engine(client, engine, item_ids):
    cases = [
        (item_ids[:3], 10, True),
        (item_ids[5:6], 20, False),
        (item_ids[100:160], 5, True),  # longer than max_history (50): truncated
        ([], 7, True),  # fallback
    ]
    for hist, k, excl in cases:
        r = client.post("/v1/recommend", json={"history": hist, "k": k, "exclude_seen": excl})
        assert r.status_code == 200, r.text
        body = r.json()
        ref = engine.recommend([hist], k=k, exclude_seen=excl)
        assert [i["id"] for i in body["items"]] == ref.ids[0]
        np.testing.assert_allclose(
            [i["score"] for i in body["items"]], ref.scores[0], rtol=1e-5, atol=1e-5
        )
        titles = [engine.catalog.titles[engine.catalog.ids.index(i["id"])] for i in body["items"]]
        assert [i["title"] for i in body["items"]] == titles
        assert body["fallback"] is (not hist)
        assert body["truncated"] is (len(hist) > 50)
        assert body["dropped"] == []
        timing = dict(m.strip().split(";dur=") for m in r.headers["Server-Timing"].split(","))
        assert 0 < float(timing["total"]) <= float(timing["app"])
    long = client.post("/v1/recommend", json={"history": item_ids[100:160], "k": 5}).json()
    assert any("most recent 50" in w for w in long["warnings"])
    # every item of a long history stays excluded, not only the window the model reads
    assert not set(i["id"] for i in long["items"]) & set(item_ids[100:160])


def test_lenient_drops_unknown_ids_and_flags_fallback(client, item_ids):
    r = client.post(
        "/v1/recommend", json={"history": ["nope", item_ids[0], "nada"], "k": 3, "lenient": True}
    )
    assert r.status_code == 200
    body = r.json()
    assert body["dropped"] == ["nope", "nada"] and not body["fallback"]
    assert "dropped 2 unknown" in body["warnings"][0]
    only_unknown = client.post("/v1/recommend", json={"history": ["nope"], "lenient": True}).json()
    assert only_unknown["fallback"] is True and only_unknown["dropped"] == ["nope"]


def test_batch_answers_in_order(client, item_ids):
    reqs = [
        {"history": item_ids[:2], "k": 3},
        {"history": [], "k": 2},
        {"history": item_ids[10:12], "k": 5, "exclude_seen": False},
    ]
    r = client.post("/v1/recommend/batch", json={"requests": reqs})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    singles = [client.post("/v1/recommend", json=q).json() for q in reqs]
    assert [[i["id"] for i in x["items"]] for x in results] == [
        [i["id"] for i in x["items"]] for x in singles
    ]
    assert [x["fallback"] for x in results] == [False, True, False]
    assert client.post("/v1/recommend/batch", json={"requests": []}).json() == {"results": []}


def test_every_answer_says_what_its_scores_are(client, serve_artifact, item_ids):
    popularity = {
        row["id"]: row["popularity"]
        for row in map(json.loads, (serve_artifact / "items.jsonl").read_text().splitlines())
    }
    model = client.post("/v1/recommend", json={"history": item_ids[:3], "k": 5}).json()
    assert model["fallback"] is False and model["score_kind"] == "model"
    fallback = client.post("/v1/recommend", json={"history": [], "k": 5}).json()
    assert fallback["fallback"] is True and fallback["score_kind"] == "popularity"
    # a fallback's scores are the training interaction counts, most popular first
    counts = [popularity[i["id"]] for i in fallback["items"]]
    assert [i["score"] for i in fallback["items"]] == counts == sorted(counts, reverse=True)
    # the batch form: each result says so for itself
    reqs = [{"history": []}, {"history": item_ids[:2]}, {"history": ["nope"], "lenient": True}]
    results = client.post("/v1/recommend/batch", json={"requests": reqs}).json()["results"]
    assert [r["score_kind"] for r in results] == ["popularity", "model", "popularity"]
    assert [r["fallback"] for r in results] == [True, False, True]
    # and the OpenAPI schema documents both meanings of score
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    score = schemas["Item"]["properties"]["score"]["description"]
    assert "score_kind" in score and '"model"' in score and '"popularity"' in score
    kind = schemas["RecommendResponse"]["properties"]["score_kind"]
    assert kind["enum"] == ["model", "popularity"] and "popularity" in kind["description"]
    assert "score_kind" in schemas["RecommendResponse"]["required"]
    k = schemas["RecommendRequest"]["properties"]["k"]
    assert "maximum" not in k and "max_k" in k["description"]  # the artifact's K is the bound


def test_items_search(client, item_ids):
    r = client.get("/v1/items", params={"q": "GOLDEN", "limit": 5}).json()
    assert 0 < len(r["items"]) <= 5
    assert all("golden" in i["title"].lower() for i in r["items"])
    exact = client.get("/v1/items", params={"q": item_ids[7]}).json()["items"]
    assert exact[0]["id"] == item_ids[7]
    popular = client.get("/v1/items", params={"limit": 3}).json()["items"]
    pops = [i["popularity"] for i in popular]
    assert pops == sorted(pops, reverse=True) and len(popular) == 3


BIG = json.dumps({"history": ["S0001"] * 150_000})  # ~1.2 MB


def _chunks(data: bytes):
    for i in range(0, len(data), 65536):
        yield data[i : i + 65536]


J = {"Content-Type": "application/json"}
BAD = [
    # (name, method, path, request kwargs, status, text the detail must contain)
    (
        "unknown ids",
        "POST",
        "/v1/recommend",
        {"json": {"history": ["S0001", "nope", "ñ"]}},
        422,
        "unknown item ids: 'nope', 'ñ'",
    ),
    (
        "k zero",
        "POST",
        "/v1/recommend",
        {"json": {"history": [], "k": 0}},
        422,
        "body.k: Input should be greater than or equal to 1",
    ),
    (
        "k above K",
        "POST",
        "/v1/recommend",
        {"json": {"history": [], "k": 21}},
        422,
        "k must be between 1 and 20",
    ),
    (
        "k zero names K",
        "POST",
        "/v1/recommend",
        {"json": {"history": [], "k": 0}},
        422,
        "(k is an integer from 1 to 20, the K this artifact was exported with)",
    ),
    # the artifact's K (20) is the bound, never a schema constant
    (
        "k above the schema's old bound",
        "POST",
        "/v1/recommend",
        {"json": {"history": [], "k": 5000}},
        422,
        "k must be between 1 and 20 (the K this artifact was exported with",
    ),
    (
        "k huge",
        "POST",
        "/v1/recommend",
        {"json": {"history": [], "k": 10**30}},
        422,
        "k must be between 1 and 20",
    ),
    (
        "k string",
        "POST",
        "/v1/recommend",
        {"json": {"history": [], "k": "10"}},
        422,
        "body.k: Input should be a valid integer",
    ),
    ("k bool", "POST", "/v1/recommend", {"json": {"history": [], "k": True}}, 422, "body.k"),
    ("k float", "POST", "/v1/recommend", {"json": {"history": [], "k": 1.5}}, 422, "body.k"),
    (
        "k NaN",
        "POST",
        "/v1/recommend",
        {"content": '{"history": [], "k": NaN}', "headers": J},
        422,
        "body.k",
    ),
    (
        "history string",
        "POST",
        "/v1/recommend",
        {"json": {"history": "S0001"}},
        422,
        "history is a list of item ids as strings",
    ),
    (
        "history ints",
        "POST",
        "/v1/recommend",
        {"json": {"history": [1, 2]}},
        422,
        "body.history[0]: Input should be a valid string",
    ),
    ("history null", "POST", "/v1/recommend", {"json": {"history": None}}, 422, "body.history"),
    (
        "history missing",
        "POST",
        "/v1/recommend",
        {"json": {"k": 3}},
        422,
        "body.history: Field required",
    ),
    (
        "misspelt field",
        "POST",
        "/v1/recommend",
        {"json": {"histroy": []}},
        422,
        "unknown field 'histroy'",
    ),
    (
        "exclude_seen string",
        "POST",
        "/v1/recommend",
        {"json": {"history": [], "exclude_seen": "yes"}},
        422,
        "exclude_seen is true or false",
    ),
    (
        "malformed JSON",
        "POST",
        "/v1/recommend",
        {"content": '{"history": [', "headers": J},
        400,
        "not valid JSON",
    ),
    (
        "deeply nested JSON",
        "POST",
        "/v1/recommend",
        {"content": "[" * 100_000 + "]" * 100_000, "headers": J},
        400,
        "could not be parsed",
    ),
    (
        "not UTF-8",
        "POST",
        "/v1/recommend",
        {"content": b'{"history": ["\xff"]}', "headers": J},
        400,
        "could not be parsed",
    ),
    ("body is a list", "POST", "/v1/recommend", {"json": ["S0001"]}, 422, "must be a JSON object"),
    ("no body", "POST", "/v1/recommend", {"headers": J}, 422, "body is missing"),
    (
        "text body",
        "POST",
        "/v1/recommend",
        {"content": "history=S0001", "headers": {"Content-Type": "text/plain"}},
        415,
        "Content-Type: application/json",
    ),
    (
        "oversized body",
        "POST",
        "/v1/recommend",
        {"content": BIG, "headers": J},
        413,
        "limited to 1000000 bytes",
    ),
    (
        "oversized stream",
        "POST",
        "/v1/recommend",
        {"content": _chunks, "headers": J},
        413,
        "limited to 1000000 bytes",
    ),
    ("wrong method", "GET", "/v1/recommend", {}, 405, "use POST"),
    ("unknown route", "GET", "/v2/recommend", {}, 404, "/docs"),
    (
        "limit zero",
        "GET",
        "/v1/items",
        {"params": {"limit": 0}},
        422,
        "limit is an integer from 1 to 100",
    ),
    ("limit text", "GET", "/v1/items", {"params": {"limit": "all"}}, 422, "query.limit"),
    ("query too long", "GET", "/v1/items", {"params": {"q": "x" * 201}}, 422, "query.q"),
    (
        "batch not a list",
        "POST",
        "/v1/recommend/batch",
        {"json": {"requests": {"history": []}}},
        422,
        "requests is a list",
    ),
    (
        "batch unknown ids",
        "POST",
        "/v1/recommend/batch",
        {"json": {"requests": [{"history": []}, {"history": ["zz"]}]}},
        422,
        "requests[1]: unknown item ids: 'zz'",
    ),
    (
        "batch k above K",
        "POST",
        "/v1/recommend/batch",
        {"json": {"requests": [{"history": [], "k": 99}]}},
        422,
        "requests[0]: k must be between 1 and 20",
    ),
    (
        "batch k above the schema's old bound",
        "POST",
        "/v1/recommend/batch",
        {"json": {"requests": [{"history": []}, {"history": [], "k": 4097}]}},
        422,
        "requests[1]: k must be between 1 and 20",
    ),
    (
        "batch over max-queue",
        "POST",
        "/v1/recommend/batch",
        {"json": {"requests": [{"history": []}] * 600}},
        422,
        "split it",
    ),
    (
        "batch over limit",
        "POST",
        "/v1/recommend/batch",
        {"json": {"requests": [{"history": []}] * 1025}},
        422,
        "at most 1024",
    ),
    (
        "reload bad field",
        "POST",
        "/admin/reload",
        {"json": {"path": "/tmp"}},
        422,
        "unknown field 'path'",
    ),
    (
        "reload missing dir",
        "POST",
        "/admin/reload",
        {"json": {"artifact": "/nonexistent/art"}},
        422,
        "reload failed, still serving model",
    ),
]


@pytest.mark.parametrize("name,method,path,kwargs,status,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_4xx_that_says_what_to_fix(
    client, name, method, path, kwargs, status, needle
):
    kwargs = dict(kwargs)
    if callable(kwargs.get("content")):
        kwargs["content"] = kwargs["content"](BIG.encode())
    r = client.request(method, path, **kwargs)
    assert r.status_code == status, (r.status_code, r.text[:500])
    detail = r.json()["detail"]
    assert needle in detail, detail
    if name == "unknown ids":
        assert r.json()["unknown_ids"] == ["nope", "ñ"]


def test_server_stays_healthy_after_bad_input(client, item_ids):
    for _name, method, path, kwargs, *_ in BAD[:12]:
        client.request(method, path, **kwargs)
    assert client.get("/readyz").status_code == 200
    assert client.post("/v1/recommend", json={"history": item_ids[:2]}).status_code == 200
    text = client.get("/metrics").text
    server_errors = [
        line
        for line in text.splitlines()
        if line.startswith("lite_requests_total{") and 'status="5' in line
    ]
    # the only 5xx: /readyz said 503 while the model was loading
    assert all('route="/readyz"' in line for line in server_errors), server_errors
    assert (
        metric(text, "lite_requests_total", route="/v1/recommend", method="POST", status="422") > 0
    )
    assert metric(text, "lite_errors_total", kind="unknown_items") >= 1
    assert metric(text, "lite_errors_total", kind="internal") == 0


def test_concurrent_requests_are_batched(server, engine, item_ids):
    n = 24
    reqs = [
        {"history": item_ids[i : i + 1 + i % 7], "k": 1 + i % 20, "exclude_seen": i % 3 != 0}
        for i in range(n)
    ]
    clients = [server.client() for _ in range(n)]
    for c in clients:  # connections open before the burst
        c.get("/healthz")
    with server.client() as c:
        before = c.get("/metrics").text
    barrier = threading.Barrier(n)
    out: list = [None] * n

    def send(i: int) -> None:
        barrier.wait()
        out[i] = clients[i].post("/v1/recommend", json=reqs[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with server.client() as c:
        after = c.get("/metrics").text
    for c in clients:
        c.close()

    def delta(name: str, **labels) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert [r.status_code for r in out] == [200] * n
    batches, rows = delta("lite_batch_size_count"), delta("lite_batch_size_sum")
    singles = delta("lite_batch_size_bucket", le="1.0")
    assert rows == n
    assert batches < n and singles < batches, (batches, singles)  # at least one batch of 2+
    # every request got its own row: same answer as the engine on that history alone
    for q, r in zip(reqs, out, strict=True):
        ref = engine.recommend([q["history"]], k=q["k"], exclude_seen=q["exclude_seen"])
        assert [i["id"] for i in r.json()["items"]] == ref.ids[0]


def test_page_docs_and_metrics_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower()
    assert client.get(docs.text.split('<script src="')[1].split('"')[0]).status_code == 200
    text = client.get("/metrics").text
    for name in (
        "lite_request_duration_seconds_bucket",
        "lite_batch_size_bucket",
        "lite_queue_depth",
        "lite_requests_total",
        "lite_model_info",
    ):
        assert name in text, name
    assert metric(text, "lite_ready") == 1


def test_serve_says_listening_once_the_model_is_ready(serve_artifact):
    """One line with the URL, printed only when /readyz answers 200; uvicorn's own "running"
    line (printed before the model loads) is not shown."""
    import subprocess

    import httpx
    from serve_helpers import free_port, lite_command

    port = free_port()
    proc = subprocess.Popen(
        [*lite_command(), "serve", str(serve_artifact), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "listening" in line:
                # the instant it is printed, the server is bound and the model ready
                assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
                break
        else:
            raise AssertionError("lite serve exited without a listening line:\n" + "".join(lines))
        url = f"http://127.0.0.1:{port}"
        assert line.startswith(f"lite serve: ready, listening on {url} ("), line
        assert "K 20" in line and f"docs {url}/docs" in line
        before = "".join(lines[:-1])
        assert "Uvicorn running on" not in before and "listening" not in before
    finally:
        proc.terminate()
        rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, "".join(lines) + rest
    out = "".join(lines) + rest
    assert out.count("listening") == 1 and "Uvicorn running on" not in out
