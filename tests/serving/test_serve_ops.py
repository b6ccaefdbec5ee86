"""Operating a real `lite serve`: overload, reload under load, graceful shutdown, startup checks."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time

import httpx
import pytest
from serve_helpers import KEY, metric, model_id
from typer.testing import CliRunner

from lite_export.artifact import publish_directory
from lite_export.cli import app
from lite_export.serving.settings import ServeSettings, SettingsError


def _burst(server, n: int, body: dict, headers: dict | None = None) -> list:
    """n requests sent at once from n open connections; each result is a response or an exception."""
    clients = [server.client(timeout=30, headers=headers or {}) for _ in range(n)]
    for c in clients:
        c.get("/healthz")
    barrier = threading.Barrier(n)
    out: list = [None] * n

    def send(i: int) -> None:
        barrier.wait()
        try:
            out[i] = clients[i].post("/v1/recommend", json=body)
        except httpx.HTTPError as exc:
            out[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in clients:
        c.close()
    return out


def test_overload_gets_503_with_retry_after_and_recovers(serve_artifact, start_server, item_ids):
    # a 300 ms batching window holds requests in a queue of 4: the rest of a burst overflows
    srv = start_server(
        serve_artifact, "--max-queue", "4", "--max-batch", "64", "--max-delay-ms", "300"
    )
    out = _burst(srv, 40, {"history": item_ids[:3], "k": 5})
    errors = [r for r in out if not isinstance(r, httpx.Response)]
    assert not errors, errors  # no timeouts, no dropped connections
    codes = [r.status_code for r in out]
    assert set(codes) <= {200, 503}, codes
    refused = [r for r in out if r.status_code == 503]
    assert refused and codes.count(200) >= 4, codes
    for r in refused:
        assert r.headers["Retry-After"] == "1"
        assert "overloaded" in r.json()["detail"] and "max_queue 4" in r.json()["detail"]
    with srv.client() as c:
        assert c.get("/readyz").status_code == 200
        assert c.post("/v1/recommend", json={"history": item_ids[:3]}).status_code == 200
        text = c.get("/metrics").text
    assert metric(text, "lite_errors_total", kind="overload") == len(refused)
    assert metric(text, "lite_queue_depth") == 0


def test_reload_under_load_drops_no_request(
    serve_artifact, artifact_v2, start_server, item_ids, tmp_path
):
    v1, v2 = model_id(serve_artifact), model_id(artifact_v2)
    assert v1 != v2
    served = tmp_path / "served"  # replaced in place before SIGHUP
    shutil.copytree(serve_artifact, served)
    srv = start_server(served, "--max-delay-ms", "2", env={"LITE_API_KEY": KEY})
    key = {"X-API-Key": KEY}
    stop = threading.Event()
    seen: list[list] = [[], []]
    failures: list = []

    def load(i: int) -> None:
        with srv.client(headers=key, timeout=30) as c:
            while not stop.is_set():
                try:
                    r = c.post("/v1/recommend", json={"history": item_ids[i : i + 3], "k": 5})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append((r.status_code, r.text))
                    continue
                body = r.json()
                v2_titles = all(it["title"].endswith(" (v2)") for it in body["items"])
                seen[i].append((body["model"], v2_titles))

    def wait_for(model: str, n: int = 5) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(sum(m == model for m, _ in s[-n:]) == n for s in seen):
                return
            time.sleep(0.02)
        raise AssertionError(f"clients did not get answers from {model}")

    threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        wait_for(v1)
        with srv.client() as anon:
            r = anon.post("/admin/reload")
            assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
            r = anon.post("/admin/reload", headers={"X-API-Key": "wrong"})
            assert r.status_code == 401 and "wrong" in r.json()["detail"]
            assert anon.post("/v1/recommend", json={"history": []}).status_code == 401
            assert anon.get("/healthz").status_code == 200  # probes need no key
        # 1. SIGHUP re-reads the served directory, replaced in place by v2
        staging = tmp_path / "staging"
        shutil.copytree(artifact_v2, staging)
        publish_directory(staging, served)
        srv.send_signal(signal.SIGHUP)
        wait_for(v2)
        # 2. POST /admin/reload with another artifact
        with srv.client(headers=key, timeout=60) as c:
            r = c.post("/admin/reload", json={"artifact": str(serve_artifact)})
            assert r.status_code == 200, r.text
            assert r.json()["model"] == v1 and r.json()["previous"] == v2
            wait_for(v1)
            # 3. failed reloads keep the served model and say why
            r = c.post("/admin/reload", json={"artifact": str(tmp_path / "missing")})
            assert r.status_code == 422 and "does not exist" in r.json()["detail"]
            broken = tmp_path / "broken"
            shutil.copytree(serve_artifact, broken)
            with open(broken / "model.onnx", "r+b") as f:
                f.seek(100)
                f.write(b"\0" * 16)
            r = c.post("/admin/reload", json={"artifact": str(broken)})
            assert r.status_code == 422 and "sha256" in r.json()["detail"]
            assert f"still serving model {v1}" in r.json()["detail"]
            wait_for(v1)
            assert c.get("/v1/model").json()["id"] == v1
            text = c.get("/metrics").text
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    for s in seen:
        # every answer's titles come from the model it names (the swap is atomic) ...
        assert all(is_v2 == (m == v2) for m, is_v2 in s)
        # ... and each client saw v1, then v2, then v1 again
        phases = [m for j, (m, _) in enumerate(s) if j == 0 or s[j - 1][0] != m]
        assert phases == [v1, v2, v1], phases
    assert metric(text, "lite_reloads_total", result="ok") == 2
    assert metric(text, "lite_reloads_total", result="failed") == 2
    assert "reloaded (SIGHUP)" in srv.logs()


def test_sigterm_drains_in_flight_requests_then_exits_0(serve_artifact, start_server, item_ids):
    # requests wait 1.5 s in the batching window: SIGTERM arrives while they are in flight
    srv = start_server(serve_artifact, "--max-batch", "64", "--max-delay-ms", "1500")
    n = 8
    clients = [srv.client() for _ in range(n)]
    for c in clients:
        c.get("/healthz")
    out: list = [None] * n

    def send(i: int) -> None:
        try:
            out[i] = clients[i].post("/v1/recommend", json={"history": item_ids[i : i + 2], "k": 3})
        except httpx.HTTPError as exc:
            out[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    with srv.client() as c:
        deadline = time.monotonic() + 10
        while metric(c.get("/metrics").text, "lite_queue_depth") < n:
            assert time.monotonic() < deadline, "requests never reached the queue"
            time.sleep(0.02)
    t0 = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    time.sleep(0.4)
    with pytest.raises(httpx.ConnectError):  # no new connections while draining
        httpx.get(srv.url + "/healthz", timeout=2)
    assert all(r is None for r in out), "answered before the batching window closed"
    for t in threads:
        t.join(30)
    for c in clients:
        c.close()
    assert [getattr(r, "status_code", r) for r in out] == [200] * n
    assert all(len(r.json()["items"]) == 3 for r in out)
    assert srv.proc.wait(30) == 0
    assert time.monotonic() - t0 < 15
    assert "stopped (queue drained)" in srv.logs()


def test_a_model_that_cannot_load_exits_1_with_the_reason(serve_artifact, start_server, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(serve_artifact, broken)
    data = bytearray((broken / "items.jsonl").read_bytes())
    data[10] ^= 1  # same size, other bytes
    (broken / "items.jsonl").write_bytes(bytes(data))
    srv = start_server(broken, ready=False)
    with pytest.raises(RuntimeError, match="exited 1"):
        srv.start(timeout=60)
    assert "items.jsonl does not match its sha256" in srv.logs()


runner = CliRunner()


def test_serve_help_has_examples():
    r = runner.invoke(app, ["serve", "--help"])
    assert r.exit_code == 0 and "lite serve art" in r.output and "LITE_API_KEY" in r.output


@pytest.mark.parametrize(
    "args,env,needle",
    [
        (["--host", "0.0.0.0"], {}, "refusing to listen on 0.0.0.0 without an API key"),
        (["--engine", "openvino"], {}, "engine must be one of"),
        (["--max-batch", "0"], {}, "max_batch must be an integer"),
        (["--max-delay-ms", "-1"], {}, "max_delay_ms must be"),
    ],
)
def test_serve_refuses_bad_settings_before_binding(serve_artifact, args, env, needle):
    r = runner.invoke(app, ["serve", str(serve_artifact), *args], env={"LITE_API_KEY": None, **env})
    assert r.exit_code == 2, r.output
    assert needle in " ".join(r.output.split())


def test_serve_refuses_a_missing_artifact_and_a_bad_settings_file(tmp_path):
    r = runner.invoke(app, ["serve", str(tmp_path / "none")])
    assert r.exit_code == 2 and "does not exist" in r.output
    cfg = tmp_path / "serve.json"
    cfg.write_text(json.dumps({"max_batch": 8, "max_btach": 4}))
    r = runner.invoke(app, ["serve", str(tmp_path), "--config", str(cfg)])
    assert r.exit_code == 2 and "unknown keys ['max_btach']" in " ".join(r.output.split())


def test_settings_precedence_and_bind_rules(tmp_path):
    cfg = tmp_path / "serve.json"
    cfg.write_text(json.dumps({"max_batch": 8, "max-delay-ms": 4, "threads": 2, "_note": "tuned"}))
    s = ServeSettings.resolve("art", cfg, max_batch=64, threads=None)
    assert (s.max_batch, s.max_delay_ms, s.threads, s.port) == (64, 4.0, 2, 8000)
    s.to_file(tmp_path / "out.json")
    assert ServeSettings.resolve("art", tmp_path / "out.json").max_batch == 64
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        ServeSettings(artifact="a", host=host).check_bind()
    ServeSettings(artifact="a", host="0.0.0.0", api_key="k").check_bind()
    ServeSettings(artifact="a", host="0.0.0.0", insecure=True).check_bind()
    with pytest.raises(SettingsError, match="--insecure"):
        ServeSettings(artifact="a", host="192.168.1.5").check_bind()


def test_cli_and_package_import_no_web_framework():
    import subprocess
    import sys

    code = (
        "import sys, json\n"
        "import lite_export, lite_export.serving\n"
        "from lite_export.cli import app\n"
        "from typer.testing import CliRunner\n"
        "CliRunner().invoke(app, ['serve', '--help'])\n"
        "print(json.dumps([m for m in ('fastapi', 'uvicorn', 'starlette', 'prometheus_client')"
        " if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
