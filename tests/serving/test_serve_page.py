"""The web page at / in a real headless Chromium (Debian's, driven by Playwright; no download)."""

from __future__ import annotations

import os
import re
import shutil

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect, sync_playwright  # noqa: E402

CHROMIUM = os.environ.get("LITE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(
                f"no Chromium at {CHROMIUM}: run .ci/serve_deps.sh (apt-get install chromium)"
            )
        pytest.skip(
            f"needs Chromium ({CHROMIUM}): apt-get install chromium, or bash .ci/serve_deps.sh"
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


def test_page_builds_a_history_and_shows_the_apis_recommendations(browser, server, tmp_path):
    page = browser.new_page()
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.goto(server.url + "/")
    expect(page.locator("#model")).to_contain_text("onnxruntime", timeout=15_000)

    picked = []
    for query in ("golden", "WILD"):
        page.fill("#search", query)
        first = page.locator("#search-results li").first
        expect(first.locator(".title")).to_contain_text(query.title(), timeout=10_000)
        picked.append(first.get_attribute("data-id"))
        first.click()
    expect(page.locator("#history li")).to_have_count(2)
    assert page.locator("#history li").evaluate_all("els => els.map(e => e.dataset.id)") == picked

    with server.client() as c:
        api = c.post("/v1/recommend", json={"history": picked, "k": 10}).json()
    want = [it["title"] for it in api["items"]]
    assert len(want) == 10 and not set(it["id"] for it in api["items"]) & set(picked)
    expect(page.locator("#recs tbody td.title")).to_have_text(want, timeout=10_000)
    expect(page.locator("#recs tbody td.id")).to_have_text([it["id"] for it in api["items"]])
    expect(page.locator("#latency")).to_have_text(
        re.compile(r"^\d+\.\d ms round trip · \d+\.\d ms in server$")
    )

    # clicking a history item removes it; the answer follows
    page.locator("#history li").first.click()
    expect(page.locator("#history li")).to_have_count(1)
    with server.client() as c:
        api = c.post("/v1/recommend", json={"history": picked[1:], "k": 10}).json()
    expect(page.locator("#recs tbody td.title")).to_have_text([it["title"] for it in api["items"]])
    expect(page.locator("#score-head")).to_have_text("score")

    # an empty history: the most popular items, whose scores are training counts, said so
    page.click("#clear")
    with server.client() as c:
        api = c.post("/v1/recommend", json={"history": [], "k": 10}).json()
    assert api["score_kind"] == "popularity"
    expect(page.locator("#recs tbody td.id")).to_have_text([it["id"] for it in api["items"]])
    expect(page.locator("#score-head")).to_have_text("popularity")
    expect(page.locator("#recs tbody td.score")).to_have_text(
        [str(round(it["score"])) for it in api["items"]]
    )
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    # everything the page loaded came from the server itself (no CDN)
    assert urls and all(u.startswith(server.url) for u in urls), urls
    page.close()
