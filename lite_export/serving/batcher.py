"""Batching in front of any engine: continuous by default, a timed wait on request.

One worker thread runs the engine. **Continuous** (``max_delay`` 0, the default): a request that
finds the engine free runs at once, alone; what arrives while a batch runs waits in the queue
and is the next batch (up to ``max_batch``), so batches form from load and never from a timer,
the way continuous-batching servers do. **Timed** (``max_delay`` > 0, opt-in): the worker takes
the oldest request and waits up to ``max_delay`` for more (never past ``max_batch``), trading
latency for fuller batches. Each request gets its own row of the engine's answer. A batch is
split by (model, exclude_seen) and then by history length: engines left-pad every row to the
longest history of the call and attention grows with its square, so one call over 32 ML-1M
histories (3 to 200 items read) took 79-83 ms on ONNX Runtime (1 thread), the same 32 sorted by
length in four calls 42-44 ms. The queue is bounded: a full queue refuses new requests at once
(the HTTP layer answers 503 + Retry-After) instead of letting latency grow without limit.
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


def answer(jobs: list[Job]) -> list[dict]:
    """One engine call for jobs of one model and one ``exclude_seen``: the response dicts (each
    job's own k of the call's max k). Engine errors propagate."""
    model = jobs[0].model
    k = max(j.k for j in jobs)
    top = model.engine.recommend([j.history for j in jobs], k=k, exclude_seen=jobs[0].exclude_seen)
    results = []
    for r, job in enumerate(jobs):
        ids, scores, titles = top.ids[r][: job.k], top.scores[r][: job.k], top.titles[r][: job.k]
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
    return results


class MicroBatcher:
    """The engine's one queue and worker thread (see the module docstring).

    In continuous mode a lone request may also run on the caller's thread (:meth:`claim`,
    :meth:`run_claimed`): when the engine is idle and nothing is queued, handing the request to
    the worker and the answer back costs two thread wake-ups (0.1-0.3 ms on 2 busy cores) and
    buys nothing, since there is nothing to batch it with. The engine still runs one call at a
    time: a claim holds it like a worker batch does.
    """

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
        self._busy = False  # the engine is running a batch (worker) or a claimed call
        self._thread = threading.Thread(target=self._run, name="lite-batcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def idle(self) -> bool:
        """Continuous batching with the engine free and nothing queued (a hint: see claim)."""
        return not (self._busy or self._queue or self.max_delay_s > 0 or self._closed)

    @property
    def working(self) -> bool:
        """The engine is running a batch or a claimed call, or requests wait for it."""
        return self._busy or bool(self._queue)

    def claim(self) -> bool:
        """Take the idle engine for one call on this thread (continuous mode, nothing queued);
        :meth:`run_claimed` makes the call and gives the engine back."""
        if self.max_delay_s > 0:
            return False
        with self._cv:
            if self._closed or self._busy or self._queue:
                return False
            self._busy = True
            return True

    def run_claimed(self, job: Job) -> dict:
        """The answer to one job, computed on this thread after a successful :meth:`claim`."""
        start = time.perf_counter()
        try:
            return answer([job])[0]
        finally:
            self._release()
            self._on_batch(1, time.perf_counter() - start)

    def _release(self) -> None:
        with self._cv:
            self._busy = False
            if self._queue:
                self._cv.notify()

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
            while not (self._queue and not self._busy):
                if self._closed and not self._queue:
                    return None  # closed and drained
                self._cv.wait()
            if self.max_delay_s > 0:  # timed: wait for a fuller batch (opt-in)
                deadline = time.monotonic() + self.max_delay_s
                while len(self._queue) < self.max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
            # continuous: what is queued now (what arrived while the last batch ran) is the batch
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            depth = len(self._queue)
            self._busy = True
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
            finally:
                self._release()
            self._on_batch(len(batch), time.perf_counter() - start)

    @staticmethod
    def _run_group(entries: list) -> None:
        try:
            results = answer([e[0] for e in entries])
        except Exception as exc:  # an engine failure fails this group's requests, not the server
            _deliver(entries, None, exc)
            return
        _deliver(entries, results)
