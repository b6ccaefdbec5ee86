"""Dynamic micro-batching in front of any engine.

One worker thread takes the oldest waiting request, waits up to ``max_delay`` for more (never past
``max_batch``), and hands each request its own row of the engine's answer. A batch is split by
(model, exclude_seen) and then by history length: engines left-pad every row to the longest
history of the call and attention grows with its square, so one call over 32 ML-1M histories
(3 to 200 items read) took 79-83 ms on ONNX Runtime (1 thread), the same 32 sorted by length in
four calls 42-44 ms. The queue is bounded: a full queue refuses new requests at once (the HTTP
layer answers 503 + Retry-After) instead of letting latency grow without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable

from lite_export.serving.model import Job

#: a length bucket closes when padding would exceed this share of the real positions ...
PAD_WASTE = 1.25
#: ... plus this many positions, roughly what one more engine call costs
CALL_COST_POSITIONS = 64


def split_by_length(lengths: list[int]) -> list[list[int]]:
    """Indices grouped into engine calls: sorted by length, a call closes when padding all its
    rows to the next (longer) row would waste more than PAD_WASTE x the real positions plus
    CALL_COST_POSITIONS."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    chunks: list[list[int]] = []
    cur: list[int] = []
    total = 0
    for i in order:
        n = lengths[i]
        if cur and (len(cur) + 1) * n > PAD_WASTE * (total + n) + CALL_COST_POSITIONS:
            chunks.append(cur)
            cur, total = [], 0
        cur.append(i)
        total += n
    if cur:
        chunks.append(cur)
    return chunks


class QueueFull(Exception):
    """The bounded queue cannot take the request(s) now."""


class Closed(Exception):
    """The batcher is draining for shutdown and takes no new requests."""


def _settle(outcomes: list[tuple[asyncio.Future, object, BaseException | None]]) -> None:
    for fut, result, exc in outcomes:
        if fut.done():  # the request was cancelled (client gone, forced shutdown)
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)


def _deliver(entries: list, results: list | None, exc: BaseException | None = None) -> None:
    """Resolve futures on their event loops: one thread-safe call per loop, not per request."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for i, (_, fut, loop) in enumerate(entries):
        by_loop.setdefault(loop, []).append((fut, None if results is None else results[i], exc))
    for loop, outcomes in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, outcomes)


class MicroBatcher:
    def __init__(
        self,
        max_batch: int,
        max_delay_s: float,
        max_queue: int,
        on_batch: Callable[[int, float], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
    ):
        self.max_batch, self.max_delay_s, self.max_queue = max_batch, max_delay_s, max_queue
        self._on_batch = on_batch or (lambda size, seconds: None)
        self._on_depth = on_depth or (lambda depth: None)
        self._queue: deque[tuple[Job, asyncio.Future, asyncio.AbstractEventLoop]] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="lite-batcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def depth(self) -> int:
        return len(self._queue)

    def submit(self, jobs: list[Job]) -> list[asyncio.Future]:
        """Queue jobs (all or none) from the event loop; their futures resolve to response dicts."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in jobs]
        with self._cv:
            if self._closed:
                raise Closed
            if len(self._queue) + len(jobs) > self.max_queue:
                raise QueueFull
            self._queue.extend(zip(jobs, futures, [loop] * len(jobs), strict=True))
            depth = len(self._queue)
            self._cv.notify()
        self._on_depth(depth)
        return futures

    def close(self, timeout: float | None = None) -> None:
        """Refuse new requests, finish the queued ones, and stop the worker."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ------------------------------------------------------------------ worker
    def _next_batch(self) -> list | None:
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            if not self._queue:
                return None  # closed and drained
            deadline = time.monotonic() + self.max_delay_s
            while len(self._queue) < self.max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            depth = len(self._queue)
        self._on_depth(depth)
        return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            start = time.perf_counter()
            groups: dict[tuple[int, bool], list] = {}
            for entry in batch:
                job = entry[0]
                groups.setdefault((id(job.model), job.exclude_seen), []).append(entry)
            try:
                for entries in groups.values():
                    window = entries[0][0].model.max_history
                    lengths = [max(1, min(len(e[0].history), window)) for e in entries]
                    for chunk in split_by_length(lengths):
                        self._run_group([entries[i] for i in chunk])
            except Exception as exc:  # never let the worker die: fail this batch instead
                _deliver(batch, None, exc)
            self._on_batch(len(batch), time.perf_counter() - start)

    @staticmethod
    def _run_group(entries: list) -> None:
        jobs = [e[0] for e in entries]
        model = jobs[0].model
        k = max(j.k for j in jobs)
        try:
            top = model.engine.recommend(
                [j.history for j in jobs], k=k, exclude_seen=jobs[0].exclude_seen
            )
            results = []
            for r, job in enumerate(jobs):
                ids, scores, titles = (
                    top.ids[r][: job.k],
                    top.scores[r][: job.k],
                    top.titles[r][: job.k],
                )
                fallback = bool(top.fallback[r]) if top.fallback else False
                results.append(
                    {
                        "items": [
                            {"id": i, "score": float(s), "title": t}
                            for i, s, t in zip(ids, scores, titles, strict=True)
                        ],
                        "fallback": fallback,
                        "score_kind": "popularity" if fallback else "model",
                        "truncated": job.truncated,
                        "dropped": job.dropped,
                        "warnings": job.warnings,
                        "model": model.id,
                    }
                )
        except Exception as exc:  # an engine failure fails this group's requests, not the server
            _deliver(entries, None, exc)
            return
        _deliver(entries, results)
