"""The figures of docs/benchmarks.md, drawn from the benchmarks' JSON results.

Each benchmark prints one JSON object on its last line with ``--json``; that line, kept
in ``bench/results/<name>.json``, is all a chart needs, so the figures can be redrawn
(or restyled) without running a benchmark again::

    .venv/bin/python bench/core_bench.py --json | tail -1 > bench/results/core.json
    .venv/bin/python bench/transport_bench.py --duration 3 --rounds 5 --json \\
        | tail -1 > bench/results/transport.json
    .venv/bin/python bench/e2e_bench.py --books 1000,10000 --replicas 0,3 --orders 5000 \\
        --json | tail -1 > bench/results/e2e.json
    .venv/bin/python bench/charts.py          # or: make charts

It writes PNGs into ``docs/img/``: ``e2e_throughput.png`` (orders/s against replicas
and book size), ``e2e_latency.png`` (percentiles of submit and replica latency),
``core_ops.png`` (the core against the lazy-delete naive book) and ``transport.png`` (round
trips/s and CPU per round trip against Node's). A result file that is missing is
skipped, with a line saying so. Needs matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

try:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes
    from matplotlib.container import BarContainer
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter
except ImportError:  # pragma: no cover - said to the user below
    sys.exit("bench/charts.py needs matplotlib: pip install 'distributed-exchange[bench]'")

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
OUT = REPO / "docs" / "img"

# Colour-blind-safe (Okabe-Ito): ours in blue, the baseline in orange, a reference in grey.
OURS, BASE, THIRD, FOURTH = "#0072B2", "#E69F00", "#009E73", "#CC79A7"
LIGHT, GREY = "#56B4E9", "#999999"

Result = dict[str, Any]
Results = dict[str, Result]
"""Every result file read, by name (``e2e`` for ``bench/results/e2e.json``)."""


def _style() -> None:
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 110,
            "font.size": 10,
            "axes.titlesize": 11,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "axes.grid.axis": "y",
            "grid.alpha": 0.3,
            "legend.frameon": False,
        }
    )


def _label_bars(ax: Axes, bars: BarContainer, fmt: Callable[[float], str]) -> None:
    """Write each bar's value above it."""
    ax.bar_label(bars, labels=[fmt(float(b.get_height())) for b in bars], padding=2, fontsize=8)


def _thousands(value: float) -> str:
    return f"{value:,.0f}"


def _thousands_axis(ax: Axes) -> None:
    """Tick labels like 1,200 on the y axis."""
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))


_LOG_TICKS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000]


def _short(book: int) -> str:
    """1000 -> 1k, 100000 -> 100k: labels that fit under a bar."""
    return f"{book // 1000}k" if book >= 1000 and book % 1000 == 0 else f"{book:,}"


def _footnote(fig: Figure, text: str) -> None:
    fig.text(0.01, 0.01, text, fontsize=7.5, color="#555555", ha="left", va="bottom")


def _grouped(
    ax: Axes,
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[float], str]],
    fmt: Callable[[float], str],
) -> None:
    """Bars for each group (x), one per series, side by side, each with its value."""
    width = 0.8 / len(series)
    for i, (name, values, colour) in enumerate(series):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, values, width * 0.95, label=name, color=colour)
        _label_bars(ax, bars, fmt)
    ax.set_xticks(range(len(groups)), groups)


# ----------------------------------------------------------------------------- e2e


def _runs(result: Result) -> list[Result]:
    runs: list[Result] = result.get("runs") or [result]
    return sorted(runs, key=lambda r: (r["book"], r["replicas"]))


def e2e_throughput(results: Results, out: Path) -> Path:
    """Processed and acknowledged orders/s, by replica count (x) and book size (bars)."""
    runs = _runs(results["e2e"])
    books = sorted({r["book"] for r in runs})
    replicas = sorted({r["replicas"] for r in runs})
    by = {(r["book"], r["replicas"]): r for r in runs}
    colours = [OURS, BASE, THIRD, FOURTH]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, key, title in (
        (axes[0], "processed_per_s", "processed by the matcher (orders/s)"),
        (axes[1], "submit_per_s", "acknowledged by the sequencer (orders/s)"),
    ):
        series = [
            (
                f"{book:,} resting orders",
                [by[(book, n)][key] if (book, n) in by else 0.0 for n in replicas],
                colours[i % len(colours)],
            )
            for i, book in enumerate(books)
        ]
        _grouped(ax, [f"{n} replicas" for n in replicas], series, _thousands)
        ax.set_title(title)
        ax.margins(y=0.15)
        _thousands_axis(ax)
    axes[0].set_ylabel("orders per second")
    axes[0].legend(loc="upper right")
    orders = runs[0]["orders"]
    fig.suptitle(f"End to end on real grapes: throughput ({orders:,} orders a run)")
    _footnote(
        fig,
        "bench/e2e_bench.py; 2-vCPU machine shared with other work, so the "
        "figures are noisy (docs/benchmarks.md)",
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(fig, out / "e2e_throughput.png")


def e2e_latency(results: Results, out: Path) -> Path:
    """Submit latency (p50, p99) under full load per configuration, and replica latency
    against the offered rate: every ``e2e*.json`` run with replicas is a point."""
    runs = _runs(results["e2e"])
    labels = [f"{_short(r['book'])} book\n{r['replicas']} replicas" for r in runs]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1.4, 1]})
    _grouped(
        axes[0],
        labels,
        [
            ("p50", [r["submit_p50_ms"] for r in runs], OURS),
            ("p99", [r["submit_p99_ms"] for r in runs], BASE),
        ],
        lambda v: f"{v:.0f}",
    )
    axes[0].set_title("submit to acknowledgement, at full load (ms)")
    axes[0].set_ylabel("milliseconds")
    axes[0].legend(loc="upper left")
    axes[0].margins(y=0.15)
    points: dict[tuple[int, int], list[tuple[float, float, float]]] = {}
    for name, result in results.items():
        if name.startswith("e2e"):
            for r in _runs(result):
                if "replica_p99_ms" in r:
                    key = (r["book"], r["replicas"])
                    points.setdefault(key, []).append(
                        (r["offered_per_s"], r["replica_p50_ms"], r["replica_p99_ms"])
                    )
    ax = axes[1]
    if not points:
        ax.set_axis_off()
    for i, ((book, replicas), found) in enumerate(sorted(points.items())):
        found.sort()
        rates = [rate for rate, _, _ in found]
        colour = (OURS, BASE, THIRD, FOURTH)[i % 4]
        label = f"{_short(book)} book, {replicas} replicas"
        ax.plot(rates, [p50 for _, p50, _ in found], "o-", color=colour, label=f"{label}: p50")
        ax.plot(rates, [p99 for _, _, p99 in found], "s--", color=colour, label=f"{label}: p99")
    ax.set_xscale("log")
    ax.set_yscale("log")
    rates = sorted({rate for found in points.values() for rate, _, _ in found})
    ax.set_xticks(rates, [f"{rate:,.0f}" for rate in rates])
    ax.xaxis.set_minor_formatter(NullFormatter())
    values = [v for found in points.values() for _, p50, p99 in found for v in (p50, p99)]
    ticks = [t for t in _LOG_TICKS if min(values) / 2 <= t <= max(values) * 1.5]
    ax.set_yticks(ticks, [f"{t:,}" for t in ticks])
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, axis="both", alpha=0.3)
    ax.set_xlabel("orders/s offered (open loop)")
    ax.set_title("submit until every replica shows it (ms)")
    ax.legend(loc="upper left", fontsize=7.5)
    fig.suptitle("End to end on real grapes: latency percentiles")
    _footnote(
        fig,
        "bench/e2e_bench.py; 2-vCPU machine shared with other work, so the "
        "figures are noisy (docs/benchmarks.md)",
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(fig, out / "e2e_latency.png")


# ----------------------------------------------------------------------------- core


def core_ops(results: Results, out: Path) -> Path:
    """The core's messages/s beside the naive book's, and the median cost of each kind."""
    result = results["core"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1, 1.8]})
    ax = axes[0]
    bars = ax.bar(
        ["orderbook_core\n(apply)", "naive book\n(lazy delete)"],
        [result["ops_per_s"], result["baseline_ops_per_s"]],
        color=[OURS, BASE],
        width=0.6,
    )
    _label_bars(ax, bars, _thousands)
    _thousands_axis(ax)
    ax.set_title(f"whole stream ({result['messages']:,} messages), msg/s")
    ax.set_ylabel("messages per second")
    ax.margins(y=0.15)
    kinds = result["per_kind"]
    labels = {
        "gtc_rest": "GTC, rests",
        "gtc_fill": "GTC, trades",
        "ioc": "IOC",
        "cancel": "cancel",
        "modify": "modify",
    }
    _grouped(
        axes[1],
        [f"{label}\n({kinds[k]['count']:,})" for k, label in labels.items()],
        [
            ("orderbook_core", [kinds[k]["core_median_ns"] / 1000 for k in labels], OURS),
            ("naive book", [kinds[k]["baseline_median_ns"] / 1000 for k in labels], BASE),
        ],
        lambda v: f"{v:.1f}",
    )
    axes[1].set_title("median cost of one message (µs), by kind")
    axes[1].set_ylabel("microseconds")
    axes[1].legend(loc="upper left")
    axes[1].margins(y=0.2)
    memory = result.get("bytes_per_order") or {}
    naive_memory = result.get("naive_bytes_per_order") or {}
    title = f"orderbook_core against the naive book one would write: {result['ratio']:.2f}x"
    if memory:
        count = max(memory, key=int)
        title += (
            f"; bytes per resting order at {int(count):,}: "
            f"{memory[count]:.0f} (naive {naive_memory.get(count, 0):.0f})"
        )
    fig.suptitle(title)
    _footnote(
        fig,
        f"bench/core_bench.py, seed {result['seed']}, median of {result['repeat']} "
        f"interleaved runs (CPU time); CPython {result['python']}, shared 2-vCPU machine "
        f"(load {result['load_avg'][0]:.1f})",
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(fig, out / "core_ops.png")


# ----------------------------------------------------------------------------- transport


_CASES = (
    ("py_py", "Python → Python"),
    ("node_node", "Node → Node\n(reference)"),
    ("node_py", "Node → Python"),
    ("py_node", "Python → Node"),
)


def transport(results: Results, out: Path) -> Path:
    """Round trips/s per client/server pair, and the CPU each round trip costs."""
    result = results["transport"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    labels = [label for _, label in _CASES]
    colours = [GREY if case == "node_node" else OURS for case, _ in _CASES]
    bars = axes[0].bar(labels, [result[f"{c}_rps"] for c, _ in _CASES], color=colours)
    _label_bars(axes[0], bars, _thousands)
    _thousands_axis(axes[0])
    axes[0].set_title(f"round trips/s, {result['concurrency']} in flight")
    axes[0].set_ylabel("round trips per second")
    axes[0].margins(y=0.15)
    axes[0].tick_params(axis="x", labelsize=8.5)
    client = [result[f"{c}_client_cpu_us"] for c, _ in _CASES]
    server = [result[f"{c}_server_cpu_us"] for c, _ in _CASES]
    axes[1].bar(labels, client, color=OURS, label="client")
    top = axes[1].bar(labels, server, bottom=client, color=LIGHT, label="server")
    axes[1].bar_label(
        top,
        labels=[f"{c + s:.0f}" for c, s in zip(client, server, strict=True)],
        padding=2,
        fontsize=8,
    )
    axes[1].set_title("CPU per round trip (µs, client + server)")
    axes[1].set_ylabel("microseconds")
    axes[1].legend(loc="upper right")
    axes[1].margins(y=0.15)
    axes[1].tick_params(axis="x", labelsize=8.5)
    fig.suptitle(
        "Grenache RPC over loopback: Python (httptools) against grenache-nodejs-http "
        f"(put {result['put_per_s']:,.0f}/s, get {result['get_per_s']:,.0f}/s)"
    )
    _footnote(
        fig,
        f"bench/transport_bench.py, medians of {result['rounds']} rounds of "
        f"{result['duration_s']:g} s; shared 2-vCPU machine",
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(fig, out / "transport.png")


# ----------------------------------------------------------------------------- main


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})  # no version stamp: stable bytes
    plt.close(fig)
    return path


CHARTS: list[tuple[str, Callable[[Results, Path], Path]]] = [
    ("e2e", e2e_throughput),
    ("e2e", e2e_latency),
    ("core", core_ops),
    ("transport", transport),
]
"""Each chart, after the result file it needs (``e2e_latency`` also reads every other
``e2e*.json``: replica latency at other offered rates)."""


def load(folder: Path) -> Results:
    """Every ``*.json`` in `folder`: the last line of each (a benchmark's ``--json``)."""
    return {
        path.stem: json.loads(path.read_text().strip().splitlines()[-1])
        for path in sorted(folder.glob("*.json"))
    }


def main(argv: list[str] | None = None) -> int:
    """Draw every chart whose result file exists; 1 if none does."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON results")
    parser.add_argument("--out", type=Path, default=OUT, help="where the PNGs go")
    args = parser.parse_args(argv)
    _style()
    results = load(args.results)
    drawn = 0
    for needs, chart in CHARTS:
        if needs not in results:
            print(f"skipped {chart.__name__}: no {args.results / needs}.json")
            continue
        print(f"wrote {chart(results, args.out)}")
        drawn += 1
    return 0 if drawn else 1


if __name__ == "__main__":
    sys.exit(main())
