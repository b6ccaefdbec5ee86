"""``lite demo``: the whole job on the built-in synthetic catalog in one command.

Train a tiny model (seconds), evaluate it, export a validated artifact, load it back (checksums
verified) and check that its recommendations equal the checkpoint's, then serve it over HTTP on
127.0.0.1, ask it for a few users' recommendations, and keep serving until Ctrl-C.
``--no-serve`` stops after the in-process checks; with only the base install (no ``onnx``
extra) it trains, evaluates and recommends, and says what the export needs.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
import urllib.request
from pathlib import Path

#: the export and its validation (the `onnx` extra)
EXPORT_MODULES = ("onnx", "onnxscript", "onnxruntime")
#: `lite serve` (the `serve` extra)
SERVE_MODULES = ("fastapi", "uvicorn", "prometheus_client", "fastapi_offline")
#: top-K of the artifact vs the checkpoint: scores within the fp32 export tolerance
TOLERANCE = 1e-4


def missing(modules) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def users_table(title: str, ids, titles, scores, caption: str | None = None):
    from rich.table import Table

    table = Table(title=title, caption=caption)
    table.add_column("#", justify="right")
    table.add_column("item")
    table.add_column("title")
    table.add_column("score", justify="right")
    for r, (i, t, s) in enumerate(zip(ids, titles, scores, strict=True), 1):
        table.add_row(str(r), i, t, f"{s:.3f}")
    return table


def compare(model, engine, histories: list[list[str]], k: int = 10) -> dict:
    """The artifact's top-k against the checkpoint's on the same histories."""
    import numpy as np

    ref = model.recommend(histories, k=k)
    got = engine.recommend(histories, k=k)
    diff = float(np.abs(np.asarray(ref.scores) - np.asarray(got.scores)).max())
    same = sum(a == b for a, b in zip(ref.ids, got.ids, strict=True))
    # identical ids, or (ties) the same scores position by position
    return {
        "users": len(histories),
        "identical_rows": int(same),
        "max_abs_score_diff": diff,
        "ok": diff <= TOLERANCE,
        "k": k,
    }


def post(url: str, body: dict, timeout: float = 30.0) -> tuple[dict, float, str]:
    """(JSON answer, client latency in ms, the server's Server-Timing header)."""
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        data = json.loads(r.read())
        timing = r.headers.get("Server-Timing", "")
    return data, (time.perf_counter() - t) * 1000.0, timing


def wait_ready(url: str, timeout: float = 180.0, alive=lambda: True) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def curl_body(history: list[str], k: int) -> str:
    """The JSON body of a POST /v1/recommend, as query_server sends it and prints it for curl."""
    return json.dumps({"history": history, "k": k})


def query_server(url: str, users: list[tuple[str, list[str], str]], console, k: int = 5) -> None:
    """Ask the running server for each user's top-k and print them with their latency."""
    if not wait_ready(url):
        console.print(f"[red]the server at {url} did not become ready[/red]")
        return
    for user, hist, last in users:
        data, ms, timing = post(url + "/v1/recommend", {"history": hist, "k": k})
        items = data["items"]
        server = timing.split("dur=")[-1] if "dur=" in timing else "?"
        console.print(
            users_table(
                f"user {user}: last items {last}",
                [i["id"] for i in items],
                [i["title"] for i in items],
                [i["score"] for i in items],
                caption=f"POST /v1/recommend: {ms:.1f} ms round trip (server {server} ms)",
            )
        )
    # the first table's request, exactly: same history, same k, so curl prints the same items
    example = curl_body(users[0][1], k)
    console.print(
        f"\n[bold green]serving[/bold green] {url}  (page: {url}/, API docs: {url}/docs)\n"
        f"  # user {users[0][0]}'s request (the first table above):\n"
        f"  curl -s {url}/v1/recommend -H 'Content-Type: application/json' -d '{example}'\n"
        "Ctrl-C to stop",
        soft_wrap=True,
    )
    sys.stdout.flush()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_until_interrupted(artifact: Path, port: int, users, console) -> int:
    """Serve the artifact in this process (run_server: SIGINT/SIGTERM drain and return 0),
    querying it from a thread once it is ready."""
    from lite_export.serving import ServeSettings, run_server

    settings = ServeSettings.resolve(artifact, port=port, log_level="warning")
    url = f"http://127.0.0.1:{port}"
    thread = threading.Thread(
        target=query_server, args=(url, users, console), name="lite-demo-client", daemon=True
    )
    thread.start()
    return run_server(settings)


def recommend_tables(engine_or_model, ds, users, console, k: int = 5, what: str = "") -> None:
    hists = [u[1] for u in users]
    t = time.perf_counter()
    top = engine_or_model.recommend(hists, k=k)
    ms = (time.perf_counter() - t) * 1000.0
    for (user, _hist, last), ids, scores in zip(users, top.ids, top.scores, strict=True):
        console.print(
            users_table(
                f"user {user}: last items {last}",
                ids,
                [ds.item_titles[ds.index_of(i)] for i in ids],
                scores,
                caption=f"{what}: {ms:.1f} ms for the {len(users)} users" if what else None,
            )
        )


def sample_users(ds, split, which=(0, 1, 2)) -> list[tuple[str, list[str], str]]:
    """(user id, history of external ids, its last three titles) of some test users."""
    out = []
    for u in which:
        hist = [ds.item_ids[i] for i in split.test[u][0]]
        last = "; ".join(ds.item_titles[ds.index_of(i)] for i in hist[-3:])
        out.append((ds.user_ids[u], hist, last))
    return out
