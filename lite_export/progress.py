"""Progress of long steps: rich bars in a terminal, a log line every few seconds elsewhere.

One helper for every long step: item-LLM encoding, training epochs, validation passes, the test
evaluation, `lite eval` and export validation. Where stderr is a terminal, each task is a rich
progress bar (nested tasks share one live display); where it is not (a log file, a pipe, CI),
a task writes a line to stderr every ``LITE_PROGRESS_INTERVAL`` seconds (default 5) once it
has run that long, and a last line when it ends::

    epoch 2/20: 96/480 steps (20%) in 41s, 2.3 steps/s, ETA 2m47s, loss 6.1234
    epoch 2/20: done, 480 steps in 3m25s (2.3 steps/s), loss 6.0012

A task shorter than the interval prints nothing. ``enabled(False)`` (what ``--no-progress``
sets) silences every task in its scope. Importing this module imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import sys
import time
from collections.abc import Iterator

INTERVAL_ENV = "LITE_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 5.0

_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("lite_progress", default=True)


@contextlib.contextmanager
def enabled(flag: bool) -> Iterator[None]:
    """Show progress in this scope only if ``flag`` (and the enclosing scope shows it)."""
    token = _enabled.set(bool(flag) and _enabled.get())
    try:
        yield
    finally:
        _enabled.reset(token)


def is_enabled() -> bool:
    return _enabled.get()


def plural(n: float, word: str, many: str | None = None) -> str:
    """``1 epoch``, ``2 epochs``, ``0 epochs`` (``many`` for irregular plurals)."""
    return f"{n:g} {word if n == 1 else (many or word + 's')}"


def duration(seconds: float) -> str:
    """``7s``, ``1m28s``, ``2h05m``."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _rate(r: float) -> str:
    return f"{r:.0f}" if r >= 10 else f"{r:.1f}" if r >= 1 else f"{r:.2f}"


def interval() -> float:
    """Seconds between log lines (``LITE_PROGRESS_INTERVAL``, default 5)."""
    raw = os.environ.get(INTERVAL_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(
            f"{INTERVAL_ENV}={raw!r}: it must be a number of seconds >= 0 (the time between "
            "progress lines when stderr is not a terminal); unset it for the default 5"
        )
    return value


class Task:
    """One counted step. ``advance(n, info=...)`` after each unit; ``close()`` at the end (or use
    it as a context manager). ``info`` is a short text shown beside the count (e.g. the loss)."""

    def __init__(self, description: str, total: int | None, unit: str, info: str = ""):
        self.description = description
        self.total = total
        self.unit = unit
        self.info = info
        self.done = 0
        self.start = time.perf_counter()

    def advance(self, n: int = 1, info: str | None = None) -> None:
        self.done += n
        if info is not None:
            self.info = info

    def close(self) -> None:
        pass

    def __enter__(self) -> Task:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _LogTask(Task):
    def __init__(self, *args, every: float, stream=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.every = every
        self.stream = stream
        self.last = self.start
        self.lines = 0
        self.closed = False

    def advance(self, n: int = 1, info: str | None = None) -> None:
        super().advance(n, info)
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            self._write(self.line(now))

    def line(self, now: float | None = None) -> str:
        now = time.perf_counter() if now is None else now
        spent = now - self.start
        units = self.unit + "s"
        rate = self.done / spent if spent > 0 else 0.0
        if self.total:
            pct = 100.0 * self.done / self.total
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            text = (
                f"{self.description}: {self.done}/{self.total} {units} ({pct:.0f}%) in "
                f"{duration(spent)}, {_rate(rate)} {units}/s, ETA {duration(eta)}"
            )
        else:
            text = (
                f"{self.description}: {self.done} {units} in {duration(spent)}, "
                f"{_rate(rate)} {units}/s"
            )
        return text + (f", {self.info}" if self.info else "")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.lines:
            spent = time.perf_counter() - self.start
            rate = self.done / spent if spent > 0 else 0.0
            units = self.unit + "s"
            if self.total and self.done < self.total:
                what = f"stopped at {self.done}/{self.total} {units} after {duration(spent)}"
            else:
                what = f"done, {plural(self.done, self.unit)} in {duration(spent)}"
            self._write(
                f"{self.description}: {what} ({_rate(rate)} {units}/s)"
                + (f", {self.info}" if self.info else "")
            )

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        print(text, file=stream, flush=True)
        self.lines += 1


class _Live:
    """The one rich live display that terminal tasks share (started and stopped as needed)."""

    progress = None
    open_tasks = 0

    @classmethod
    def acquire(cls):
        if cls.progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            cls.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
                transient=True,
                # prints to stdout go above the bars only when stdout is the same terminal
                redirect_stdout=sys.stdout.isatty(),
            )
            cls.progress.start()
        cls.open_tasks += 1
        return cls.progress

    @classmethod
    def release(cls) -> None:
        cls.open_tasks -= 1
        if cls.open_tasks <= 0 and cls.progress is not None:
            cls.progress.stop()
            cls.progress, cls.open_tasks = None, 0


class _BarTask(Task):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.progress = _Live.acquire()
        units = self.unit + ("" if self.total == 1 else "s")
        self.id = self.progress.add_task(
            self.description, total=self.total, unit=units, info=self.info
        )
        self.closed = False

    def advance(self, n: int = 1, info: str | None = None) -> None:
        super().advance(n, info)
        self.progress.update(self.id, advance=n, info=self.info)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.progress.remove_task(self.id)
        _Live.release()


def _stderr_is_terminal() -> bool:
    from rich.console import Console

    return Console(stderr=True).is_terminal


def task(
    description: str, total: int | None, unit: str = "step", info: str = "", stream=None
) -> Task:
    """Start a progress task: a rich bar in a terminal, log lines otherwise, nothing when
    progress is disabled in this scope (see :func:`enabled`). ``unit`` is singular."""
    if not _enabled.get():
        return Task(description, total, unit, info)
    if stream is None and _stderr_is_terminal():
        return _BarTask(description, total, unit, info)
    return _LogTask(description, total, unit, info, every=interval(), stream=stream)
