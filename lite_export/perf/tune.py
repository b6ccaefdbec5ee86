"""``lite tune``: the serving settings with the highest throughput whose p99 latency meets a
target, measured over HTTP against real ``lite serve`` processes on 127.0.0.1.

**What is searched.** The settings of :class:`~lite_export.serving.settings.ServeSettings` that
change speed: ``engine``, ``threads`` (engine intra-op threads), ``max_batch`` and
``max_delay_ms`` (micro-batching). ``max_queue`` is derived, not searched (below).

**One trial** = one ``lite serve`` process with one setting, loaded by a closed-loop generator
(:mod:`lite_export.perf.load`) at concurrency 1, 2, 4, ... up to ``max_concurrency``, each step
bounded by ``duration_s`` and ``max_requests``. The ladder stops at the first step whose p99
misses the target (or that has any non-200 answer or error), then tries once the concurrency
halfway back to the last step that met it; it also stops once two steps in a row add less than
5% throughput (saturated: more clients only queue). The trial's score is the highest throughput
among the steps that met the target; its concurrency is the operating point.

**The search** is coordinate descent, one pass, so it is bounded (at most
engines x threads + |max_batch| + |max_delay_ms| trials, and never past ``max_trials`` or
``budget_s``): (1) every engine x threads at the default batching (max_batch 32, continuous,
or the candidates nearest them); (2) every max_batch with the best engine and threads; (3)
every max_delay_ms with the best of (2): 0 is continuous batching (no wait; batches form from
load), more is a timed wait for fuller batches. Settings already measured are not measured again.

**Confirmation.** The search's steps are short runs on a machine that other work shares, so
the best ``CONFIRM`` (3) trials are measured again, each on a fresh server with exactly the
settings that would be written, for ``confirm_s`` at its operating point (on a miss the
concurrency is halved and retried, at most 3 runs); so is the best trial of the other batching
mode when it is not among them, so that continuous batching and a timed wait are both confirmed
before one is chosen. The best confirmed throughput wins, but a timed wait only when it serves
at least ``TIMED_GAIN`` x the best confirmed continuous setting (:func:`choose`: the wait costs
latency at every load); only a confirmed setting is written, with the confirmation's numbers, and
``tune.json`` and ``serve.json`` say which batching won and why (``batching``).

**Outputs** (in ``out``): ``serve.json`` (``lite serve ART --config serve.json``), ``tune.json``
(the choice, its measurements and the Triton dynamic-batching values, which
``lite export --format triton --triton-config tune.json`` applies), ``tune_triton.pbtxt`` (the
same as a config.pbtxt snippet) and ``tune_trials.json`` (every trial and ladder step). When no
setting meets the target nothing but ``tune_trials.json`` and a ``tune.json`` that says so is
written, and :func:`run_tune` reports ``met = False``. These four names are checked before any
measurement: a file of one of them that lite-export did not write is never overwritten, and one
it wrote only with ``force`` (``--force``).

**Other work.** Every step records the CPU that other processes used meanwhile
(:class:`~lite_export.perf.load.CpuWatch`); when it passed half a core anywhere, the result says
so (a trial measured then may be ranked too low).

**Derived values.** ``max_queue`` = max(2 x max_batch, 2 x throughput x target), with the
trial's throughput: by Little's law about throughput x target requests fit in the target, so a
longer queue only holds requests that will miss it; past it the server answers 503 +
Retry-After at once. Triton's
``max_queue_delay_microseconds`` = max_delay_ms x 1000, ``max_batch_size`` = max_batch, and
``preferred_batch_size`` = the mean batch the server formed at the operating point (rounded,
then down to a power of two, when >= 2) and max_batch.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lite_export.perf.bench import ALL_ENGINES, default_threads, model_id, precision_of

#: candidates used as the starting point, when present (the `lite serve` defaults: continuous)
START_MAX_BATCH, START_DELAY_MS = 32, 0.0
#: what lite tune writes in its --out directory
TUNE_FILES = ("serve.json", "tune.json", "tune_triton.pbtxt", "tune_trials.json")
#: a ladder step must add this much throughput to count as progress
MIN_GAIN = 1.05
#: a timed wait is chosen over continuous batching only with this much more throughput (the wait
#: costs latency at every load; smaller gains are within the noise of a confirmation run)
TIMED_GAIN = MIN_GAIN
#: how many of the best trials are measured again before one is chosen
CONFIRM = 3
#: other work using more CPU than this (cores) during a measurement gets a warning
DISTURBED_CORES = 0.5


@dataclass
class TuneConfig:
    artifact: Path
    p99_ms: float
    out: Path
    engines: list[str] | None = None  # None: every engine that loads here
    threads: list[int] = field(default_factory=default_threads)
    max_batch: list[int] = field(default_factory=lambda: [8, 16, 32, 64])
    max_delay_ms: list[float] = field(default_factory=lambda: [0.0, 1.0, 2.0, 5.0])
    history: int = 50
    k: int = 10
    max_concurrency: int = 64
    duration_s: float = 1.5
    confirm_s: float = 4.0
    max_requests: int = 5000
    max_trials: int = 16
    budget_s: float = 900.0
    seed: int = 0
    #: replace the outputs of an earlier run in ``out`` (never a file lite-export did not write)
    force: bool = False

    def validate(self) -> None:
        if not (isinstance(self.p99_ms, int | float) and self.p99_ms > 0):
            raise ValueError(
                f"--p99-ms must be a positive number of milliseconds, got {self.p99_ms}"
            )
        if self.engines is not None:
            unknown = [e for e in self.engines if e not in ALL_ENGINES]
            if unknown or not self.engines:
                raise ValueError(f"unknown engines {unknown}; choose from {','.join(ALL_ENGINES)}")
        for name in ("threads", "max_batch"):
            values = getattr(self, name)
            if not values or min(values) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be integers >= 1, got {values}")
        if not self.max_delay_ms or min(self.max_delay_ms) < 0:
            raise ValueError(f"--max-delay-ms must be numbers >= 0, got {self.max_delay_ms}")
        if self.history < 1 or self.k < 1 or self.max_concurrency < 1:
            raise ValueError("--history, --k and --max-concurrency must be >= 1")
        if self.duration_s <= 0 or self.confirm_s <= 0 or self.max_requests < 1:
            raise ValueError("--duration-s and --confirm-s must be > 0, --max-requests >= 1")
        if self.max_trials < 1 or self.budget_s <= 0:
            raise ValueError("--max-trials must be >= 1 and --budget-s > 0")


@dataclass
class TuneResult:
    met: bool
    summary: dict
    trials: list[dict]
    files: list[Path]
    message: str


def _nearest(values: list, target):
    return min(values, key=lambda v: (abs(v - target), v))


def _ladder(max_concurrency: int) -> list[int]:
    out, c = [], 1
    while c < max_concurrency:
        out.append(c)
        c *= 2
    return [*out, max_concurrency]


def _pow2_floor(x: float) -> int:
    return 1 << int(math.floor(math.log2(x))) if x >= 1 else 1


def batching_of(settings: dict) -> str:
    """``continuous`` (max_delay_ms 0) or ``timed`` (a wait for fuller batches)."""
    return "timed" if float(settings["max_delay_ms"]) > 0 else "continuous"


def batching_choice(trials: list[dict], chosen: dict | None) -> dict:
    """Continuous batching against a timed wait, as measured: the best trial of each (search and
    confirmation numbers) and which one the run chose."""
    out: dict = {"chosen": batching_of(chosen["settings"]) if chosen else None}
    for mode in ("continuous", "timed"):
        rows = [t for t in trials if batching_of(t["settings"]) == mode]
        if not rows:
            out[mode] = None
            continue
        runs = [(t, run) for t in rows for run in t.get("confirm_runs", []) if run["met"]]
        if runs:
            t, run = max(runs, key=lambda tr: (tr[1]["throughput_rps"], -tr[1]["p99_ms"]))
            measured = {k: run[k] for k in ("concurrency", "throughput_rps", "p50_ms", "p99_ms")}
            how = "confirmed"
        else:
            met = [t for t in rows if t["met"]]
            if not met:
                out[mode] = {"trials": len(rows), "met": False}
                continue
            t = max(met, key=lambda r: (r["throughput_rps"], -r["p99_ms"]))
            measured = {k: t[k] for k in ("concurrency", "throughput_rps", "p50_ms", "p99_ms")}
            how = "search only"
        out[mode] = {
            "trials": len(rows),
            "met": True,
            "best_trial": t["trial"],
            "settings": dict(t["settings"]),
            "measured": how,
            **measured,
        }
    return out


def choose(confirmed: list[tuple]) -> tuple[tuple, str]:
    """The confirmed candidate to write, and why its batching, from ``confirmed`` entries
    ``(throughput_rps, -p99_ms, trial, settings, run)``: the best throughput at the target, but a
    timed wait only when it serves at least TIMED_GAIN x what continuous batching's best confirmed
    setting does: a wait adds latency at every load, and a gain within the noise of the
    measurement does not pay for it."""

    def best(mode: str) -> tuple | None:
        rows = [c for c in confirmed if batching_of(c[3]) == mode]
        return max(rows, key=lambda c: (c[0], c[1])) if rows else None

    cont, timed = best("continuous"), best("timed")
    if cont is None:
        return timed, (
            f"timed (max_delay_ms {timed[3]['max_delay_ms']:g}): {timed[0]:.0f} req/s at the "
            "target; no continuous setting met it when confirmed"
        )
    if timed is None:
        return cont, (
            f"continuous (max_delay_ms 0: no wait, batches form from load): {cont[0]:.0f} req/s "
            "at the target; no timed wait was confirmed to meet it"
        )
    wait = f"max_delay_ms {timed[3]['max_delay_ms']:g}"
    if timed[0] >= TIMED_GAIN * cont[0]:
        return timed, (
            f"timed ({wait}: waits for fuller batches): {timed[0]:.0f} req/s at the target, "
            f"{timed[0] / cont[0] - 1:.0%} more than continuous batching's best ({cont[0]:.0f} "
            f"req/s, p99 {-cont[1]:.2f} ms)"
        )
    return cont, (
        f"continuous (max_delay_ms 0: no wait, batches form from load): {cont[0]:.0f} req/s at "
        f"the target, p99 {-cont[1]:.2f} ms; the best timed wait ({wait}) served "
        f"{timed[0]:.0f} req/s, p99 {-timed[1]:.2f} ms, less than the {TIMED_GAIN - 1:.0%} more "
        "that would pay for its wait"
    )


def final_settings(settings: dict, throughput_rps: float, p99_ms: float) -> dict:
    """The trial's settings plus the derived max_queue (see the module docstring)."""
    queue = max(2 * settings["max_batch"], math.ceil(2 * throughput_rps * p99_ms / 1000))
    return {
        "engine": settings["engine"],
        "threads": settings["threads"],
        "max_batch": settings["max_batch"],
        "max_delay_ms": float(settings["max_delay_ms"]),
        "max_queue": int(min(queue, 1_000_000)),
    }


def triton_values(settings: dict, mean_batch: float | None) -> dict:
    """Triton dynamic-batching values equivalent to the chosen `lite serve` micro-batching."""
    mb = int(settings["max_batch"])
    preferred = {mb}
    if mean_batch and round(mean_batch) >= 2:
        preferred.add(min(mb, _pow2_floor(round(mean_batch))))
    return {
        "max_batch_size": mb,
        "preferred_batch_size": sorted(preferred),
        "max_queue_delay_microseconds": int(round(float(settings["max_delay_ms"]) * 1000)),
    }


def triton_pbtxt(values: dict, comment: str) -> str:
    from lite_export.exporters.triton_server import _dynamic_batching

    return f"# {comment}\nmax_batch_size: {values['max_batch_size']}\n" + _dynamic_batching(
        values["preferred_batch_size"], values["max_queue_delay_microseconds"]
    )


class _Tuner:
    def __init__(self, cfg: TuneConfig, bar, task, console):
        from lite_export.artifact import verify_artifact
        from lite_export.catalog import ItemCatalog
        from lite_export.perf.load import request_bodies, sample_histories

        self.cfg, self.bar, self.task, self.console = cfg, bar, task, console
        self.path = Path(cfg.artifact).resolve()
        self.manifest = verify_artifact(self.path)
        dims = self.manifest["dims"]
        if cfg.k > dims["k"]:
            raise ValueError(
                f"--k {cfg.k} is more than the K={dims['k']} {self.path} was exported with"
            )
        self.history = min(cfg.history, dims["max_history"])
        catalog = ItemCatalog.read_jsonl(self.path / "items.jsonl")
        hists = sample_histories(catalog.ids, catalog.popularity, self.history, 256, cfg.seed)
        self.bodies = request_bodies(hists, cfg.k)
        self.trials: list[dict] = []
        self.cache: dict[tuple, dict] = {}
        self.start = time.monotonic()
        self.queue = max(256, 4 * cfg.max_concurrency)  # trial servers never refuse: measure

    # ------------------------------------------------------------------ one trial
    def _key(self, s: dict) -> tuple:
        return (s["engine"], s["threads"], s["max_batch"], float(s["max_delay_ms"]))

    def out_of_budget(self) -> bool:
        return (
            len(self.trials) >= self.cfg.max_trials
            or time.monotonic() - self.start > self.cfg.budget_s
        )

    def _step(self, srv, concurrency: int, seconds: float) -> dict:
        from lite_export.perf.load import CpuWatch, batch_counters, loadavg, run_load

        load1 = loadavg()
        counters = {}
        watch = CpuWatch(srv.proc.pid)

        def on_start():
            counters["before"] = batch_counters(srv.url)
            watch.start()

        res = run_load(
            srv.url,
            self.bodies,
            concurrency=concurrency,
            duration_s=seconds,
            max_requests=self.cfg.max_requests,
            on_start=on_start,
        )
        cpu = watch.stop()
        after, before = batch_counters(srv.url), counters["before"]
        n = after[1] - before[1]
        step = res.summary()
        step["mean_batch"] = round((after[0] - before[0]) / n, 2) if n else None
        step["met"] = bool(
            res.ok == res.sent
            and res.sent > 0
            and step["p99_ms"] is not None
            and step["p99_ms"] <= self.cfg.p99_ms
        )
        step["loadavg_1m"] = load1
        step.update(cpu)
        return step

    def trial(self, settings: dict, stage: str) -> dict | None:
        from lite_export.perf.load import ServeProcess

        key = self._key(settings)
        if key in self.cache:
            return self.cache[key]
        if self.out_of_budget():
            return None
        label = (
            f"trial {len(self.trials) + 1}: {settings['engine']} t={settings['threads']} "
            f"batch={settings['max_batch']} delay={settings['max_delay_ms']:g}ms"
        )
        self.bar.update(self.task, description=label)
        started = time.monotonic()
        srv = ServeProcess(self.path, {**settings, "max_queue": self.queue}).start()
        steps = []
        try:
            best, stalled = 0.0, 0
            for c in _ladder(self.cfg.max_concurrency):
                self.bar.update(self.task, description=f"{label} C={c}")
                step = self._step(srv, c, self.cfg.duration_s)
                steps.append(step)
                if not step["met"]:
                    break
                if step["throughput_rps"] < MIN_GAIN * best:
                    stalled += 1
                    if stalled >= 2:
                        break
                else:
                    stalled = 0
                best = max(best, step["throughput_rps"])
            good = [s["concurrency"] for s in steps if s["met"]]
            if good and not steps[-1]["met"] and steps[-1]["concurrency"] - max(good) >= 2:
                # one bisection step between the last concurrency that met and the first miss
                c = (max(good) + steps[-1]["concurrency"]) // 2
                self.bar.update(self.task, description=f"{label} C={c}")
                steps.append(self._step(srv, c, self.cfg.duration_s))
        finally:
            code = srv.stop()
            srv.cleanup()
        met = [s for s in steps if s["met"]]
        op = max(met, key=lambda s: (s["throughput_rps"], -s["p99_ms"])) if met else None
        row = {
            "trial": len(self.trials) + 1,
            "stage": stage,
            "settings": dict(settings),
            "met": op is not None,
            "concurrency": op["concurrency"] if op else None,
            "throughput_rps": op["throughput_rps"] if op else 0.0,
            "p50_ms": op["p50_ms"] if op else None,
            "p95_ms": op["p95_ms"] if op else None,
            "p99_ms": op["p99_ms"] if op else None,
            "mean_batch": op["mean_batch"] if op else None,
            "lowest_p99_ms": min(
                (s["p99_ms"] for s in steps if s["p99_ms"] is not None), default=None
            ),
            "steps": steps,
            "server_exit": code,
            "seconds": round(time.monotonic() - started, 1),
        }
        self.trials.append(row)
        self.cache[key] = row
        self.bar.advance(self.task)
        return row

    def best(self, rows: list[dict | None]) -> dict | None:
        rows = [r for r in rows if r is not None]
        met = [r for r in rows if r["met"]]
        if met:
            return max(met, key=lambda r: (r["throughput_rps"], -r["p99_ms"]))
        return None

    # ------------------------------------------------------------------ confirmation
    def confirm(self, row: dict, settings: dict) -> dict | None:
        """Measure ``settings`` (the trial's, with the derived max_queue: exactly what would be
        written) on a fresh server at the trial's operating point, for ``confirm_s``; on a miss
        halve the concurrency (at most 3 runs). The first run that meets the target, or None."""
        from lite_export.perf.load import ServeProcess

        srv = ServeProcess(self.path, settings).start()
        try:
            c = row["concurrency"]
            for _ in range(3):
                self.bar.update(self.task, description=f"confirming trial {row['trial']} at C={c}")
                step = self._step(srv, c, self.cfg.confirm_s)
                step["trial"] = row["trial"]
                row.setdefault("confirm_runs", []).append(step)
                if step["met"]:
                    return step
                if c == 1:
                    break
                c = max(1, c // 2)
        finally:
            srv.stop()
            srv.cleanup()
        return None


def run_tune(cfg: TuneConfig, progress: bool = True, console=None) -> TuneResult:
    """Search, confirm and write the outputs (see the module docstring)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from lite_export import __version__
    from lite_export.artifact import WRITTEN_BY_KEY, check_output_files, written_by
    from lite_export.benchmarking import commit, machine
    from lite_export.perf.bench import BenchArtifact, BenchConfig, available_engines, require_http
    from lite_export.perf.load import loadavg
    from lite_export.serving.settings import ServeSettings

    cfg.validate()
    # before minutes of measurements: no file in out that lite-export did not write is replaced
    check_output_files(cfg.out, TUNE_FILES, force=cfg.force, sources=[cfg.artifact])
    require_http()
    console = console or Console(stderr=True)
    notes: list[str] = []
    # which engines load here (the others are skipped with a note, like lite bench)
    probe = BenchConfig(
        artifacts=[cfg.artifact],
        out=cfg.out,
        engines=cfg.engines,
        threads=cfg.threads,
        histories=[cfg.history],
        k=cfg.k,
    )
    art = BenchArtifact(Path(cfg.artifact), probe, notes)
    engines = available_engines([art], probe, notes)[art.path]
    for n in notes:
        console.print(f"[yellow]note:[/yellow] {escape(n)}")
    load_start = loadavg()
    planned = len(engines) * len(cfg.threads) + len(cfg.max_batch) + len(cfg.max_delay_ms) + 1
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed} trials"),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
    )
    with bar:
        task = bar.add_task("lite tune", total=min(planned, cfg.max_trials))
        tuner = _Tuner(cfg, bar, task, console)
        mb0 = _nearest(cfg.max_batch, START_MAX_BATCH)
        d0 = _nearest(cfg.max_delay_ms, START_DELAY_MS)
        # (1) engine x threads at the default batching
        stage1 = [
            tuner.trial(
                {"engine": e, "threads": t, "max_batch": mb0, "max_delay_ms": float(d0)},
                "engine x threads",
            )
            for e in engines
            for t in cfg.threads
        ]
        done = [r for r in stage1 if r is not None]
        lead = tuner.best(done) or (
            min(done, key=lambda r: r["lowest_p99_ms"] or math.inf) if done else None
        )
        if lead is not None:
            base = dict(lead["settings"])
            # (2) max_batch, (3) max_delay_ms
            rows2 = [tuner.trial({**base, "max_batch": mb}, "max_batch") for mb in cfg.max_batch]
            lead2 = tuner.best([lead, *rows2]) or lead
            base = dict(lead2["settings"])
            for d in cfg.max_delay_ms:
                tuner.trial({**base, "max_delay_ms": float(d)}, "max_delay_ms")
        if tuner.out_of_budget():
            notes.append(
                f"search stopped early at {len(tuner.trials)} trials (--max-trials "
                f"{cfg.max_trials}, --budget-s {cfg.budget_s:g})"
            )
        ranked = sorted(
            (r for r in tuner.trials if r["met"]),
            key=lambda r: (-r["throughput_rps"], r["p99_ms"]),
        )
        # the search's numbers are short runs on a shared machine: confirm the best CONFIRM
        # candidates with their final settings, and the best of the other batching mode, and
        # keep the best confirmed throughput
        candidates = ranked[:CONFIRM]
        for mode in ("continuous", "timed"):
            best_of_mode = next((r for r in ranked if batching_of(r["settings"]) == mode), None)
            if best_of_mode is not None and best_of_mode not in candidates:
                candidates.append(best_of_mode)
        confirmed = []
        for row in candidates:
            settings = final_settings(row["settings"], row["throughput_rps"], cfg.p99_ms)
            run = tuner.confirm(row, settings)
            if run is not None:
                confirmed.append((run["throughput_rps"], -run["p99_ms"], row, settings, run))
        chosen = confirm = tuned = None
        why = ""
        if confirmed:
            (*_, chosen, tuned, confirm), why = choose(confirmed)
            confirm["chosen"] = True  # the run that decided (trial_table marks it)
    trials = tuner.trials
    other = [
        step["other_work_cores"]
        for r in tuner.trials
        for step in [*r["steps"], *r.get("confirm_runs", [])]
        if step.get("other_work_cores") is not None
    ]
    meta = {
        "machine": machine(),
        "commit": commit(),
        "loadavg_1m_start": load_start,
        "loadavg_1m_end": loadavg(),
        "other_work_cores_median": round(float(np.median(other)), 2) if other else None,
        "other_work_cores_max": max(other) if other else None,
    }
    disturbed = ""
    if other and max(other) > DISTURBED_CORES:
        disturbed = (
            f" (other work on this machine used up to {max(other):.1f} cores during the "
            f"measurements, median {float(np.median(other)):.2f}: tune again on a quiet machine "
            "for numbers to rely on)"
        )
        notes.append(disturbed.strip(" ()"))
    for r in trials:
        r.update(
            {
                WRITTEN_BY_KEY: written_by("lite tune"),
                "what": "lite tune trial: closed-loop HTTP load against lite serve (loopback)",
                "artifact": str(art.path),
                "target_p99_ms": cfg.p99_ms,
                "history": tuner.history,
                "k": cfg.k,
                **meta,
            }
        )
    out = Path(cfg.out)
    check_output_files(out, TUNE_FILES, force=cfg.force, sources=[cfg.artifact])  # again
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "tune_trials.json", out / "tune.json"]
    files[0].write_text(json.dumps(trials, indent=1) + "\n")
    summary = {
        WRITTEN_BY_KEY: written_by("lite tune"),
        "what": "lite tune: the highest throughput whose p99 meets the target, over HTTP "
        "(closed loop, 127.0.0.1; the load generator shares the machine's cores)",
        "artifact": str(art.path),
        "model": model_id(art.path),
        "precision": precision_of(art.manifest),
        "target_p99_ms": cfg.p99_ms,
        "workload": {
            "history": tuner.history,
            "k": cfg.k,
            "histories": "sampled from the catalog by popularity",
        },
        "search": {
            "strategy": "coordinate descent: engine x threads, then max_batch, then max_delay_ms "
            "(0: continuous batching; more: a timed wait); each trial a concurrency ladder 1, 2, "
            "4, ... (stops at the first p99 miss or saturation); the best trials and the best of "
            "the other batching mode confirmed on fresh servers",
            "engines": engines,
            "threads": cfg.threads,
            "max_batch": cfg.max_batch,
            "max_delay_ms": cfg.max_delay_ms,
            "max_concurrency": cfg.max_concurrency,
            "duration_s": cfg.duration_s,
            "confirm_s": cfg.confirm_s,
            "trials": len(trials),
            "notes": notes,
        },
        "met": chosen is not None,
        **meta,
    }
    if chosen is None:
        lowest = [r for r in trials if r["lowest_p99_ms"] is not None]
        if ranked:
            why = (
                f"{len(ranked)} trial(s) met it in the search but not when confirmed on a fresh "
                f"server ({', '.join(str(s['p99_ms']) for r in ranked[:CONFIRM] for s in r.get('confirm_runs', []))} ms)"
            )
        elif lowest:
            low = min(lowest, key=lambda r: r["lowest_p99_ms"])
            s = low["settings"]
            why = (
                f"the lowest p99 measured was {low['lowest_p99_ms']:.2f} ms ({s['engine']}, "
                f"threads {s['threads']}, max_batch {s['max_batch']}, max_delay_ms "
                f"{s['max_delay_ms']:g})"
            )
        else:
            why = "no trial ran"
        message = (
            f"no setting met p99 <= {cfg.p99_ms:g} ms over {len(trials)} trial(s): {why}. "
            "Raise --p99-ms, try shorter --history, or a faster engine/host. Nothing was "
            f"written but {files[0]} and {files[1]} (met: false)"
        )
        stale = [p for p in (out / "serve.json", out / "tune_triton.pbtxt") if p.exists()]
        if stale:
            message += f"; {', '.join(map(str, stale))} left as they were, from an earlier run"
        message += disturbed
        summary["batching"] = batching_choice(trials, None)
        summary["message"] = message
        files[1].write_text(json.dumps(summary, indent=1) + "\n")
        return TuneResult(False, summary, trials, files, message)

    measured = (
        f"p99 {confirm['p99_ms']:.2f} ms <= {cfg.p99_ms:g} ms at {confirm['throughput_rps']:.0f} "
        f"req/s ({confirm['concurrency']} concurrent clients, history {tuner.history}, k "
        f"{cfg.k}) on {meta['machine']}, commit {meta['commit']}"
    )
    batching = batching_choice(trials, chosen)
    batching["why"] = why
    serve_json = {
        "_written_by": f"lite tune {__version__} for {art.path}",
        "_measured": measured,
        "_batching": why,
        "_max_queue": "2 x throughput x target: requests beyond it could not meet the target",
        **tuned,
    }
    path = out / "serve.json"
    path.write_text(json.dumps(serve_json, indent=2) + "\n")
    ServeSettings.resolve(art.path, path)  # the file lite serve will read: check it reads
    triton = triton_values(tuned, confirm.get("mean_batch"))
    pbtxt = out / "tune_triton.pbtxt"
    pbtxt.write_text(
        triton_pbtxt(
            triton,
            f"written by {written_by('lite tune')}: dynamic batching for {art.path.name}; "
            f"{measured}",
        )
    )
    summary.update(
        {
            "chosen": {
                "trial": chosen["trial"],
                "settings": tuned,
                "search": {
                    k: chosen[k]
                    for k in ("concurrency", "throughput_rps", "p50_ms", "p95_ms", "p99_ms")
                },
                "confirm": confirm,
            },
            "batching": batching,
            "serve_json": str(path),
            "triton": triton,
            "triton_pbtxt": str(pbtxt),
            "message": f"chosen: {tuned}; {measured}; batching: {why}{disturbed}",
        }
    )
    files[1].write_text(json.dumps(summary, indent=1) + "\n")
    files += [path, pbtxt]
    return TuneResult(True, summary, trials, files, summary["message"])


def trial_table(trials: list[dict], target: float):
    from rich.table import Table

    t = Table(title=f"lite tune trials (p99 target {target:g} ms)")
    for c in (
        "#",
        "stage",
        "engine",
        "threads",
        "max_batch",
        "delay ms",
        "C",
        "req/s",
        "p50",
        "p99",
        "met",
    ):
        t.add_column(c, justify="left" if c in ("stage", "engine", "met") else "right")
    for r in trials:
        s = r["settings"]
        t.add_row(
            str(r["trial"]),
            r["stage"],
            s["engine"],
            str(s["threads"]),
            str(s["max_batch"]),
            _delay(s),
            "-" if r["concurrency"] is None else str(r["concurrency"]),
            f"{r['throughput_rps']:,.0f}",
            "-" if r["p50_ms"] is None else f"{r['p50_ms']:.2f}",
            "-" if r["p99_ms"] is None else f"{r['p99_ms']:.2f}",
            "yes" if r["met"] else f"no (lowest p99 {r['lowest_p99_ms']} ms)",
        )
    runs = [(r, run) for r in trials for run in r.get("confirm_runs", [])]
    if runs:
        # the confirmation runs decided the choice: the best throughput among those that met
        t.add_section()
        for r, run in runs:
            s = r["settings"]
            met = "yes" if run["met"] else "no"
            t.add_row(
                str(r["trial"]),
                "confirm",
                s["engine"],
                str(s["threads"]),
                str(s["max_batch"]),
                _delay(s),
                str(run["concurrency"]),
                f"{run['throughput_rps']:,.0f}",
                "-" if run.get("p50_ms") is None else f"{run['p50_ms']:.2f}",
                "-" if run.get("p99_ms") is None else f"{run['p99_ms']:.2f}",
                f"{met}, chosen" if run.get("chosen") else met,
            )
        t.caption = (
            "confirm: each of the best trials measured again on a fresh server with the "
            "settings that would be written; the fastest confirmation that met the target "
            "was chosen"
        )
    return t


def _delay(settings: dict) -> str:
    d = float(settings["max_delay_ms"])
    return f"{d:g}" if d > 0 else "0 (cont.)"
