"""Latency against throughput (p50 solid, p99 dashed), one line per engine and precision.

matplotlib's object API with the Agg canvas: no pyplot, no change to the process's backend.
"""

from __future__ import annotations

from pathlib import Path

LABELS = {"batch": "B", "concurrency": "C", "rate_rps": "rate "}


def plot_curves(rows: list[dict], path: Path, point_key: str = "batch") -> Path:
    """One panel per (threads, history): each engine+precision's points (one per batch size,
    concurrency or rate) from low to high load, p50 and p99 latency against throughput."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator

    plain = FuncFormatter(lambda v, _: f"{v:g}")

    threads = sorted({r["threads"] for r in rows})
    hists = sorted({r["history"] for r in rows})
    series = sorted({(r["engine"], r["precision"]) for r in rows})
    colors = {s: f"C{i % 10}" for i, s in enumerate(series)}
    fig = Figure(figsize=(5.2 * len(hists), 3.8 * len(threads)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(threads), len(hists), squeeze=False)
    unit = rows[0].get("throughput_unit", "per s")
    for i, t in enumerate(threads):
        for j, h in enumerate(hists):
            ax = axes[i][j]
            for s in series:
                pts = sorted(
                    (
                        r
                        for r in rows
                        if (r["engine"], r["precision"]) == s
                        and r["threads"] == t
                        and r["history"] == h
                        and r.get("p50_ms") is not None
                        and r["throughput"] > 0
                    ),
                    key=lambda r: r[point_key],
                )
                if not pts:
                    continue
                x = [r["throughput"] for r in pts]
                name = f"{s[0]} {s[1]}"
                ax.plot(x, [r["p50_ms"] for r in pts], "-o", color=colors[s], label=f"{name} p50")
                ax.plot(x, [r["p99_ms"] for r in pts], "--x", color=colors[s], label=f"{name} p99")
                for r in pts:
                    ax.annotate(
                        f"{LABELS.get(point_key, '')}{r[point_key]:g}",
                        (r["throughput"], r["p50_ms"]),
                        textcoords="offset points",
                        xytext=(3, -10),
                        fontsize=7,
                        color=colors[s],
                    )
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(plain)
                axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
            ax.set_title(f"threads {t}, history {h}", fontsize=10)
            ax.set_xlabel(f"throughput ({unit})")
            ax.set_ylabel("latency (ms)")
            ax.grid(True, which="both", alpha=0.3)
            if ax.has_data():
                ax.legend(fontsize=7)
    first = rows[0]
    mode = "in process (engine.recommend)" if first["mode"] == "inprocess" else "HTTP (lite serve)"
    fig.suptitle(
        f"lite bench, {mode}: {Path(first['artifact']).name}, k={first.get('k')} — "
        f"{first.get('machine', '')}, commit {first.get('commit', '')}",
        fontsize=10,
    )
    path = Path(path)
    from lite_export.artifact import written_by

    # the PNG's Software text chunk marks it as lite-export's (lite bench --force may replace it)
    fig.savefig(path, dpi=110, metadata={"Software": written_by("lite bench")})
    return path
