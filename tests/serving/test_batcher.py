"""The batcher with a real engine: continuous batching (no idle wait; what arrives during a batch
is the next batch), the opt-in timed wait, and the engine held by one call at a time.

Functional checks only (which engine calls happen, with how many requests): how fast is measured
by `lite bench`, never here. The engine's recommend is wrapped to record each call's batch size
and, where a test needs the engine busy, to hold its first call until the test releases it.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from lite_export.serving.batcher import Closed, MicroBatcher
from lite_export.serving.model import ModelHandle

WAIT_S = 60  # a bound on waiting for a worker that is due to act now, never a speed check


@pytest.fixture(scope="module")
def handle(serve_artifact):
    return ModelHandle.load(serve_artifact, "onnxruntime", threads=1, warmup_batch=1)


class Recorder:
    """engine.recommend, recording the batch size of every call; ``hold()`` makes the next call
    wait until ``release()``."""

    def __init__(self, handle):
        self.engine = handle.engine
        self.original = self.engine.recommend
        self.calls: list[int] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.engine.recommend = self

    def __call__(self, histories, k, exclude_seen):
        self.calls.append(len(histories))
        self.entered.set()
        assert self.gate.wait(WAIT_S)
        return self.original(histories, k=k, exclude_seen=exclude_seen)

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def restore(self) -> None:
        self.gate.set()
        del self.engine.recommend


@pytest.fixture
def recorder(handle):
    rec = Recorder(handle)
    yield rec
    rec.restore()


def jobs(handle, n: int, start: int = 0):
    ids = handle.catalog.ids
    # equal lengths and exclude_seen: one engine call per batch (no split by length)
    return [handle.prepare(ids[start + i : start + i + 3], 5, True, False) for i in range(n)]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, WAIT_S))


def test_continuous_runs_a_lone_request_and_batches_what_arrives_meanwhile(handle, recorder):
    async def main():
        b = MicroBatcher(max_batch=4, max_delay_s=0.0, max_queue=64)
        b.start()
        try:
            recorder.hold()
            (first,) = b.submit(jobs(handle, 1))
            # the engine was idle: the lone request is in the engine now, with no other
            await asyncio.to_thread(recorder.entered.wait, WAIT_S)
            assert recorder.calls == [1]
            later = b.submit(jobs(handle, 6, start=10))  # arrive while the engine is busy
            assert recorder.calls == [1] and b.depth == 6
            recorder.release()
            answers = [await first, *[await f for f in later]]
            # what arrived during the first call ran as the next batches, max_batch at a time
            assert recorder.calls == [1, 4, 2]
            assert all(len(a["items"]) == 5 for a in answers)
        finally:
            b.close(WAIT_S)

    run(main())


def test_answers_are_each_requests_own(handle, recorder):
    """Batched rows are answered as the engine answers each history alone."""

    async def main():
        b = MicroBatcher(max_batch=8, max_delay_s=0.0, max_queue=64)
        b.start()
        try:
            recorder.hold()
            (first,) = b.submit(jobs(handle, 1))
            await asyncio.to_thread(recorder.entered.wait, WAIT_S)
            js = jobs(handle, 5, start=20)
            futures = b.submit(js)
            recorder.release()
            await first
            got = [await f for f in futures]
        finally:
            b.close(WAIT_S)
        assert recorder.calls == [1, 5]
        for job, answer in zip(js, got, strict=True):
            ref = recorder.original([job.history], k=5, exclude_seen=True)
            assert [i["id"] for i in answer["items"]] == ref.ids[0]

    run(main())


def test_timed_wait_is_opt_in_and_waits_for_a_fuller_batch(handle, recorder):
    async def main():
        # a 60 s window: nothing runs until max_batch requests are there
        b = MicroBatcher(max_batch=3, max_delay_s=60.0, max_queue=64)
        b.start()
        try:
            futures = b.submit(jobs(handle, 2))
            await asyncio.sleep(0.05)
            assert recorder.calls == [] and not any(f.done() for f in futures)
            assert not b.claim()  # no request skips the wait in timed mode
            futures += b.submit(jobs(handle, 1, start=5))
            for f in futures:
                await f
            assert recorder.calls == [3]
        finally:
            b.close(WAIT_S)

    run(main())


def test_a_claim_holds_the_engine_like_a_batch(handle, recorder):
    async def main():
        b = MicroBatcher(max_batch=8, max_delay_s=0.0, max_queue=64)
        b.start()
        try:
            assert b.idle and b.claim()
            assert not b.claim() and not b.idle  # one call at a time
            (queued,) = b.submit(jobs(handle, 1, start=3))
            await asyncio.sleep(0.05)
            assert recorder.calls == [] and not queued.done()  # the worker waits for the claim
            (job,) = jobs(handle, 1)
            answer = b.run_claimed(job)
            assert len(answer["items"]) == 5
            await queued
            assert recorder.calls == [1, 1]
        finally:
            b.close(WAIT_S)

    run(main())


def test_close_drains_the_queue_then_refuses(handle, recorder):
    async def main():
        b = MicroBatcher(max_batch=2, max_delay_s=0.0, max_queue=64)
        b.start()
        recorder.hold()
        futures = b.submit(jobs(handle, 5))
        await asyncio.to_thread(recorder.entered.wait, WAIT_S)
        closing = asyncio.create_task(asyncio.to_thread(b.close, WAIT_S))
        await asyncio.sleep(0.05)
        with pytest.raises(Closed):
            b.submit(jobs(handle, 1))
        assert not b.claim()
        recorder.release()
        for f in futures:
            await f
        await closing
        assert sum(recorder.calls) == 5

    run(main())
