"""Busy polling: keep the event loop awake for a while after each request.

A server that sleeps between requests pays, on the next one, for its CPU's wake-up: on a virtual
machine an idle vCPU halts, and the request that wakes it runs slower for a while (measured with
`lite bench`: one client on a 2-vCPU VM, ONNX Runtime, ML-1M, history 50: the server's whole
request path took ~0.6 ms longer after a 1.3 ms pause than back to back; docs/serving.md). The
fix low-latency servers use is to poll instead of sleeping for a short window (Linux's
``SO_BUSY_POLL``, DPDK, Seastar; ONNX Runtime spins its worker threads for the same reason):
:class:`BusyPoll` keeps one callback rescheduling itself on the event loop until a deadline
``window`` after the last request, so the loop polls its sockets with a zero timeout and never
blocks in ``epoll_wait``; a new request is read at once. It is for light traffic only: it starts
after a request that found the engine idle and ran alone (``ServerState.run``'s fast path) when
no two requests were in flight together for a second (``app.SOLO_S``), and stops as soon as a
request is in flight or the batcher has work. Under load it would hurt: a polling loop holds the
GIL the batcher's worker thread needs (10% fewer requests/s at saturation for the PyTorch engine
when it polled between batches), and reads each request the moment it arrives, so they run one
by one instead of in batches (ONNX Runtime, 32 clients: 1,340 instead of 1,760 requests/s). The cost is up to one core while it
polls: with requests ``window`` apart or closer it polls all the time, with sparse traffic
``window`` per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class BusyPoll:
    """Poll the running event loop for ``window_s`` seconds after each :meth:`kick`, while
    ``may_poll()`` is true. ``polled_s`` adds up the wall time spent polling."""

    def __init__(self, window_s: float, may_poll: Callable[[], bool] = lambda: True):
        self.window_s = float(window_s)
        self.may_poll = may_poll
        self.polled_s = 0.0
        self._deadline = 0.0
        self._since = 0.0
        self._on = False

    def kick(self) -> None:
        """A request finished: poll for another ``window_s`` (call on the event loop)."""
        if self.window_s <= 0:
            return
        now = time.perf_counter()
        self._deadline = now + self.window_s
        if not self._on:
            self._on = True
            self._since = now
            asyncio.get_running_loop().call_soon(self._poll)

    def _poll(self) -> None:
        now = time.perf_counter()
        if now < self._deadline and self.may_poll():
            asyncio.get_running_loop().call_soon(self._poll)  # the loop polls I/O, no wait
            return
        self._on = False
        self.polled_s += now - self._since
