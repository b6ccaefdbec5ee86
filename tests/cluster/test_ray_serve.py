"""`lite serve --cluster ray`: the lite serve HTTP API as a Ray Serve application over a sharded
catalog, on the session's local Ray cluster (127.0.0.1), against single-process recommend()."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from tests.cluster.topk_check import assert_same_topk

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def serve_url(ray_cluster):
    from ray import serve

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.delete("lite")


def _deploy(artifact, url, **args):
    import httpx
    from ray import serve

    from lite_export.cluster.ray_app import APP_NAME, build

    serve.run(build({"artifact": str(artifact), **args}), name=APP_NAME, route_prefix="/")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url + "/readyz", timeout=10)
            if r.status_code == 200:
                return r.json()["model"]
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the Ray Serve application never became ready")


def _topk(rows, k):
    from lite_export.types import TopK

    return TopK(
        ids=[[i["id"] for i in r["items"]] for r in rows],
        scores=np.array([[i["score"] for i in r["items"]] for r in rows], np.float32),
        indices=np.zeros((len(rows), k), np.int64),
    )


@pytest.mark.parametrize("shards", [1, 2, 3])  # 3: an uneven split of the catalog
def test_sharded_app_answers_what_single_process_recommend_does(tiny_artifact, serve_url, shards):
    import httpx

    import lite_export

    _deploy(tiny_artifact, serve_url, shards=shards)
    ref = lite_export.load(tiny_artifact, engine="onnxruntime")
    ids = ref.catalog.ids
    histories = [ids[:5], ids[10:11], ids[20:45], ids[3:4] * 4, ids[::7][:50]]
    with httpx.Client(base_url=serve_url, timeout=60) as c:
        model = c.get("/v1/model").json()
        assert model["engine"] == "ray" and len(model["engine_info"]["shards"]) == shards
        bounds = model["engine_info"]["shards"]
        assert bounds[0][0] == 0 and bounds[-1][1] == len(ids)
        assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1
        for exclude_seen in (True, False):
            body = {
                "requests": [
                    {"history": h, "k": 20, "exclude_seen": exclude_seen} for h in histories
                ]
            }
            r = c.post("/v1/recommend/batch", json=body)
            assert r.status_code == 200, r.text
            got = _topk(r.json()["results"], 20)
            want = ref.recommend(histories, k=20, exclude_seen=exclude_seen)
            assert_same_topk(got, want)
            if exclude_seen:
                for h, row in zip(histories, got.ids, strict=True):
                    assert not set(h) & set(row)
        # the Open Inference Protocol route, one row
        infer = {
            "inputs": [
                {"name": "HISTORY", "shape": [1, 5], "datatype": "BYTES", "data": histories[0]},
                {"name": "K", "shape": [1], "datatype": "INT32", "data": [10]},
            ]
        }
        r = c.post("/v2/models/lite/infer", json=infer)
        assert r.status_code == 200, r.text
        out = {o["name"]: o["data"] for o in r.json()["outputs"]}
        assert out["ITEM_IDS"] == ref.recommend([histories[0]], k=10).ids[0]
        # an empty history: the most-popular fallback, as in lite serve
        r = c.post("/v1/recommend", json={"history": [], "k": 3})
        assert r.json()["fallback"] is True
        assert [i["id"] for i in r.json()["items"]] == ref.recommend([[]], k=3).ids[0]


def test_client_mistakes_get_a_4xx_and_a_reload_elsewhere_names_the_rollout(
    tiny_artifact, serve_url, tmp_path
):
    import httpx

    _deploy(tiny_artifact, serve_url, shards=2)
    with httpx.Client(base_url=serve_url, timeout=60) as c:
        r = c.post("/v1/recommend", json={"history": ["no-such-item"], "k": 5})
        assert r.status_code == 422 and "unknown item ids: 'no-such-item'" in r.json()["detail"]
        r = c.post("/v1/recommend", json={"history": [], "k": 10_000})
        assert r.status_code == 422 and "k must be between 1 and 20" in r.text
        r = c.post("/admin/reload", json={"artifact": str(tmp_path / "other")})
        assert r.status_code == 422
        assert "--cluster ray --address" in r.json()["detail"] and "still serving" in r.text
        assert c.get("/readyz").status_code == 200  # still serving


def test_the_local_cluster_talks_over_loopback_only(ray_cluster, serve_url, tiny_artifact):
    """Every TCP connection of the cluster's processes is 127.0.0.1 <-> 127.0.0.1, and every
    listening socket is bound to loopback, except the one Ray Serve 2.60 opens in each replica
    for inter-deployment gRPC on [::] (hard-coded there); its peers reach it at 127.0.0.1."""
    import psutil

    _deploy(tiny_artifact, serve_url, shards=2)
    ray_pids = {
        p.pid
        for p in psutil.process_iter(["name", "cmdline"])
        if "ray" in " ".join(p.info["cmdline"] or [])[:400] or (p.info["name"] or "") == "raylet"
    }
    loopback = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
    seen = 0
    for conn in psutil.net_connections(kind="tcp"):
        if conn.pid not in ray_pids:
            continue
        seen += 1
        if conn.status == psutil.CONN_LISTEN:
            if conn.laddr.ip in loopback:
                continue
            name = psutil.Process(conn.pid).name()
            assert conn.laddr.ip in ("::", "0.0.0.0") and name.startswith("ray::ServeRepl"), (
                conn,
                name,
            )
        elif conn.raddr:
            assert conn.laddr.ip in loopback and conn.raddr.ip in loopback, conn
    assert seen > 10  # the cluster's own sockets were looked at


def test_build_takes_serve_run_style_arguments_and_refuses_unknown_ones(tiny_artifact):
    from lite_export.cluster.ray_app import split_args

    options, settings = split_args(
        {"artifact": str(tiny_artifact), "shards": "3", "max_batch": "16", "access_log": "true"}
    )
    assert options["shards"] == 3 and settings.max_batch == 16 and settings.access_log is True
    with pytest.raises(ValueError, match=r"unknown arguments \['shard'\]"):
        split_args({"artifact": str(tiny_artifact), "shard": 2})
    with pytest.raises(ValueError, match="replicas must be a positive integer"):
        split_args({"artifact": str(tiny_artifact), "replicas": 0})
    with pytest.raises(ValueError, match="needs artifact=PATH"):
        split_args({})


def test_cli_refuses_cluster_options_that_do_not_fit(tiny_artifact):
    from typer.testing import CliRunner

    from lite_export.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["serve", str(tiny_artifact), "--shards", "2"])
    assert r.exit_code == 2 and "need --cluster ray" in r.output
    r = runner.invoke(app, ["serve", str(tiny_artifact), "--cluster", "spark"])
    assert r.exit_code == 2 and "use --cluster ray" in r.output
    r = runner.invoke(app, ["serve", str(tiny_artifact), "--cluster", "ray", "--shards", "0"])
    assert r.exit_code == 2 and "shards must be a positive integer" in r.output
    r = runner.invoke(app, ["serve", str(tiny_artifact), "--cluster", "ray", "--engine", "torch"])
    assert r.exit_code == 2 and "--engine does not apply" in r.output
    r = runner.invoke(app, ["serve", str(tiny_artifact), "--cluster", "ray", "--shards", "5000"])
    assert r.exit_code == 2 and "each shard needs at least one item" in r.output


def test_the_serve_config_in_the_docs_is_valid_and_names_the_apps_deployments(tiny_artifact):
    """docs/cluster.md's Serve config parses with Ray Serve's own schema, and each deployment it
    configures is one that build() makes."""
    import re
    from pathlib import Path

    import yaml
    from ray.serve.schema import ServeDeploySchema

    from lite_export.cluster.ray_app import build

    text = (Path(__file__).resolve().parents[2] / "docs" / "cluster.md").read_text()
    (block,) = re.findall(r"```yaml\n(.*?)```", text, re.S)
    config = ServeDeploySchema.model_validate(yaml.safe_load(block))
    (app_config,) = config.applications
    assert app_config.import_path == "lite_export.cluster.ray_app:build"
    shards = app_config.args["shards"]
    app = build({**app_config.args, "artifact": str(tiny_artifact), "api_key": None})
    ingress = app._bound_deployment
    names = {ingress.name}
    for arg in ingress.init_args:  # the bound deployments the ingress was given
        for child in arg if isinstance(arg, list) else [arg]:
            if hasattr(child, "_bound_deployment"):
                names.add(child._bound_deployment.name)
    assert names == {"Ingress", "UserEncoder", *(f"CatalogShard{s}" for s in range(shards))}
    assert {d.name for d in app_config.deployments} == names
