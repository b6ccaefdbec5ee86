"""Real `lite serve` processes on 127.0.0.1 (free ports) over the session's tiny artifact.

LITE_SERVE_TEST_ARTIFACT=DIR reuses an artifact exported like the session's one (tiny synthetic
checkpoint, --k 20) instead of training, to iterate on the serving tests quickly.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from serve_helpers import Server  # noqa: E402


@pytest.fixture(scope="session")
def serve_artifact(request) -> Path:
    """The tiny synthetic artifact (K=20, max_history 50) the servers load."""
    path = os.environ.get("LITE_SERVE_TEST_ARTIFACT")
    return Path(path) if path else Path(request.getfixturevalue("artifact"))


@pytest.fixture(scope="session")
def start_server(tmp_path_factory):
    """start_server(artifact, *args, env=None) -> a ready Server, stopped at session end."""
    servers: list[Server] = []

    def start(artifact, *args: str, env: dict | None = None, ready: bool = True) -> Server:
        log = tmp_path_factory.mktemp("serve") / "server.log"
        srv = Server(Path(artifact), list(args), log, env)
        servers.append(srv)
        return srv.start() if ready else srv

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture(scope="session")
def serve_config(tmp_path_factory) -> Path:
    """A settings file like `lite tune` writes; the shared server overrides max_batch on the CLI."""
    path = tmp_path_factory.mktemp("cfg") / "serve.json"
    path.write_text(json.dumps({"_written_by": "test", "max_batch": 4, "max-queue": 512}))
    return path


@pytest.fixture(scope="session")
def server(serve_artifact, start_server, serve_config):
    """The shared server: micro-batching with a 10 ms window, no API key."""
    return start_server(
        serve_artifact, "--config", str(serve_config), "--max-batch", "16", "--max-delay-ms", "10"
    )


@pytest.fixture(scope="session")
def artifact_v2(serve_artifact, tmp_path_factory) -> Path:
    """The session artifact with every title suffixed " (v2)": another model id, and answers
    that say which model produced them."""
    out = tmp_path_factory.mktemp("art") / "v2"
    shutil.copytree(serve_artifact, out)
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines() if line]
    with open(out / "items.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            row["title"] += " (v2)"
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    manifest = json.loads((out / "manifest.json").read_text())
    data = (out / "items.jsonl").read_bytes()
    manifest["files"]["items.jsonl"] = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


@pytest.fixture(scope="session")
def item_ids(serve_artifact) -> list[str]:
    return [
        json.loads(line)["id"]
        for line in (serve_artifact / "items.jsonl").read_text().splitlines()
        if line
    ]
