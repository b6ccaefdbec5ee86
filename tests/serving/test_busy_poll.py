"""Busy polling (``lite serve --busy-poll-ms``): the loop keeps polling after a lone request,
stops under load and when off, and the server answers the same with it on."""

from __future__ import annotations

import asyncio
import time

import pytest

from lite_export.serving.busypoll import BusyPoll
from lite_export.serving.settings import ServeSettings, SettingsError


def test_polls_for_the_window_after_a_kick_and_stops():
    async def main():
        poll = BusyPoll(0.02)
        poll.kick()
        t = time.perf_counter()
        await asyncio.sleep(0.06)  # the loop polls meanwhile: the sleep's timer still fires
        assert time.perf_counter() - t < 0.5
        return poll

    poll = asyncio.run(main())
    assert 0.015 <= poll.polled_s <= 0.06, poll.polled_s
    assert not poll._on


def test_a_kick_while_polling_extends_the_window_and_may_poll_stops_it():
    async def main():
        poll = BusyPoll(0.02)
        poll.kick()
        await asyncio.sleep(0.015)
        poll.kick()  # extends to ~0.035
        await asyncio.sleep(0.05)
        long = poll.polled_s
        busy = {"on": False}
        stop = BusyPoll(10.0, lambda: not busy["on"])
        stop.kick()
        await asyncio.sleep(0.01)
        busy["on"] = True  # e.g. the engine took a batch
        await asyncio.sleep(0.01)
        return long, stop

    long, stop = asyncio.run(main())
    assert long >= 0.03
    assert not stop._on and stop.polled_s < 0.1


def test_off_never_schedules_anything():
    async def main():
        poll = BusyPoll(0.0)
        poll.kick()
        await asyncio.sleep(0.01)
        return poll

    poll = asyncio.run(main())
    assert poll.polled_s == 0 and not poll._on


@pytest.mark.parametrize("bad", [-1, 1001, "5", True])
def test_settings_refuse_a_bad_window(bad):
    with pytest.raises(SettingsError, match="busy_poll_ms must be"):
        ServeSettings(artifact="a", busy_poll_ms=bad).validate()
    assert ServeSettings(artifact="a", busy_poll_ms=10).validate() is None


def test_a_polling_server_answers_and_counts_what_it_polled(serve_artifact, start_server, item_ids):
    srv = start_server(serve_artifact, "--busy-poll-ms", "50", "--max-batch", "8")
    with srv.client() as c:
        first = [c.post("/v1/recommend", json={"history": item_ids[:3], "k": 5}) for _ in range(5)]
        assert all(r.status_code == 200 for r in first)
        assert len({tuple(i["id"] for i in r.json()["items"]) for r in first}) == 1
        assert c.get("/v1/model").json()["serving"]["busy_poll_ms"] == 50
        time.sleep(0.2)
        metrics = c.get("/metrics").text
    polled = float(
        next(
            ln.split()[-1]
            for ln in metrics.splitlines()
            if ln.startswith("lite_busy_poll_seconds ")
        )
    )
    assert 0.05 <= polled < 5, polled
