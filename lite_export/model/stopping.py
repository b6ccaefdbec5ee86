"""Stopping a training run on SIGINT/SIGTERM without losing it.

While :meth:`StopRequest.install` is active, the first SIGINT (Ctrl-C) or SIGTERM does not
kill the process: once training has started (:attr:`StopRequest.armed`) it records a request
that the trainer honours after the current step (or evaluation batch), then saves the best
checkpoint so far with the state needed to continue (``lite train --resume``) and exits with
128 + the signal number (130, 143), as shells do. A second signal aborts at once, saving
nothing. Before training starts there is nothing to save, so the first signal aborts at once.

Several processes (``accelerate launch``) agree on the stop: the trainer all-reduces the
request after every step, so every rank stops after the same step (no rank waits for another
in a collective that never comes), even when only one rank got the signal. Evaluation passes
are cut short only on one process; several processes agree at the end of the pass.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator

#: a repeat of a signal within this many seconds counts as one (a launcher that forwards the
#: Ctrl-C the terminal already sent to the whole process group; ``accelerate launch`` starts
#: its ranks in sessions of their own and forwards it once, then waits
#: TORCH_ELASTIC_SHUTDOWN_TIMEOUT seconds, default 30, for them to save and exit)
REPEAT_WINDOW_S = 1.0

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(Exception):
    """An evaluation pass ended early because a stop was requested (see :class:`StopRequest`)."""


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopRequest:
    """A stop flag set by SIGINT/SIGTERM (via :meth:`install`) or by :meth:`request`.

    The trainer calls :meth:`should_stop` after every training step (``where="step"``) and
    every evaluation batch (``where="eval"``); tests override it to stop at a chosen point.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.armed = False  # True while there is work to save (training and after)
        self.aborted: int | None = None  # the signal that aborted at once
        self._first = 0.0

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def request(self, signum: int = signal.SIGINT) -> None:
        if self.signum is None:
            self.signum, self._first = int(signum), time.monotonic()

    def should_stop(self, where: str = "step", **at) -> bool:
        """Whether to stop now; ``where`` and ``at`` (epoch, step) say where the caller is."""
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        """The shell's code for death by the signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + (self.aborted or self.signum or 0)

    def _handle(self, signum: int, frame) -> None:
        now = time.monotonic()
        if self.signum is not None and now - self._first < REPEAT_WINDOW_S:
            return  # the same stop delivered twice (terminal + launcher)
        if not self.armed or self.signum is not None:
            self.aborted = signum
            self.signum = self.signum or signum
            raise KeyboardInterrupt
        self.request(signum)
        key = "Ctrl-C" if signum == signal.SIGINT else signal_name(signum)
        print(
            f"\n{signal_name(signum)} received: stopping after the current step and saving the "
            f"best checkpoint so far with its training state (press {key} again to abort "
            "without saving)",
            file=sys.stderr,
            flush=True,
        )

    @contextlib.contextmanager
    def install(self) -> Iterator[StopRequest]:
        """Handle SIGINT and SIGTERM in this scope (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.getsignal(s) for s in SIGNALS}
        for s in SIGNALS:
            signal.signal(s, self._handle)
        try:
            yield self
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


def agree(accelerator, code: float, *more: float) -> list[float]:
    """The maximum of ``[code, *more]`` over all processes (no collective on one process)."""
    values = [float(code), *map(float, more)]
    if accelerator is None or accelerator.num_processes == 1:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()
