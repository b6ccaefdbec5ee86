"""A catalog change reaches a running `lite serve` without dropping a request."""

from __future__ import annotations

import json
import threading
import time

import httpx
from serve_helpers import model_id

KEY = "catalog-test-key"


def test_reload_to_an_edited_catalog_under_load(text_head_artifact, start_server, tmp_path):
    from lite_export.catalog_edit import NewItem, edit_catalog

    old_ids = [
        json.loads(line)["id"]
        for line in (text_head_artifact / "items.jsonl").read_text().splitlines()
    ]
    new = [NewItem("NEW-1", "Title: Starfall Odyssey. Genres: Sci-Fi.", "Starfall")]
    edited = edit_catalog(text_head_artifact, tmp_path / "edited", "add", items=new, log=None)
    v1, v2 = model_id(text_head_artifact), model_id(edited)
    srv = start_server(text_head_artifact, "--max-delay-ms", "2", env={"LITE_API_KEY": KEY})
    key = {"X-API-Key": KEY}
    stop = threading.Event()
    seen: list[list[str]] = [[], []]
    failures: list = []

    def load(i: int) -> None:
        with srv.client(headers=key, timeout=30) as c:
            while not stop.is_set():
                try:
                    r = c.post("/v1/recommend", json={"history": old_ids[i : i + 4], "k": 5})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append((r.status_code, r.text))
                    continue
                seen[i].append(r.json()["model"])

    def wait_for(model: str, n: int = 5) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(s[-n:] == [model] * n for s in seen):
                return
            time.sleep(0.02)
        raise AssertionError(f"clients did not get answers from {model}")

    threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        wait_for(v1)
        with srv.client(headers=key, timeout=60) as c:
            before = c.post("/v1/recommend", json={"history": ["NEW-1"]})
            assert before.status_code in (400, 422) and "NEW-1" in before.text  # not yet known
            r = c.post("/admin/reload", json={"artifact": str(edited)})
            assert r.status_code == 200, r.text
            assert r.json()["model"] == v2 and r.json()["previous"] == v1
            wait_for(v2)
            after = c.post("/v1/recommend", json={"history": ["NEW-1"], "k": 5})
            assert after.status_code == 200, after.text
            assert after.json()["model"] == v2
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    for s in seen:  # each client saw the old catalog, then the new one, never back
        phases = [m for j, m in enumerate(s) if j == 0 or s[j - 1] != m]
        assert phases == [v1, v2], phases
