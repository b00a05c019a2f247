"""Benchmark: orderbook_core against a minimal naive baseline, same stream, same process.

Workload (fixed seed): N operations, about 90% GTC limit orders (price 100.00 +- 5
ticks uniform, amount 1 to 100 whole units, sides 50/50) and about 10% cancels aimed
at an order resting at that moment (uniformly among the resting ones). Every order
has its own client id, so self-trade prevention never fires and both books see the
same book state at every step (checked at the end).

Both books run the same pre-generated stream through their public API: OrderBook.apply
with typed NamedTuple commands (events built and returned), the baseline's
``limit``/``cancel`` methods with plain arguments. Throughput is the median of
``--repeat`` runs, alternating the two books, each run on fresh books. A separate
pass times every operation alone to give the cost per kind (rest, cancel, aggressive
sweep). Not a timed test: run ``python bench/core_bench.py`` (or ``make bench``).

    python bench/core_bench.py [--ops 200000] [--seed 42] [--repeat 5] [--json]

With ``--json`` the last line is one JSON object with at least ``ops_per_s``,
``baseline_ops_per_s`` and ``ratio``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

# Run as a script from anywhere: import the checkout's packages, not an installed copy.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from naive_book import NaiveBook  # noqa: E402

from orderbook_core import (  # noqa: E402
    DEFAULT_SPEC,
    CancelOrder,
    Command,
    NewOrder,
    OrderBook,
    Side,
    Trade,
)

# Baseline operations: (order_id, is_buy, price, amount) for a limit, (order_id,) for a cancel.
BaselineOp = tuple[Any, ...]


def make_stream(n_ops: int, seed: int) -> tuple[list[Command], list[BaselineOp]]:
    """Generate the operation stream, tracking what rests to aim the cancels."""
    rng = random.Random(seed)
    mid = DEFAULT_SPEC.price_to_ticks(Decimal(100))
    lot = DEFAULT_SPEC.amount_to_lots(Decimal(1))
    tracker = NaiveBook()
    resting: list[str] = []  # ids resting right now (swap-remove via position map)
    position: dict[str, int] = {}

    def forget(order_id: str) -> None:
        i = position.pop(order_id)
        last = resting.pop()
        if last != order_id:
            resting[i] = last
            position[last] = i

    commands: list[Command] = []
    baseline: list[BaselineOp] = []
    for seq in range(1, n_ops + 1):
        if resting and rng.random() < 0.10:
            order_id = resting[rng.randrange(len(resting))]
            forget(order_id)
            tracker.cancel(order_id)
            commands.append(CancelOrder(seq, seq, f"c{order_id}", order_id))
            baseline.append((order_id,))
            continue
        order_id = str(seq)
        is_buy = rng.random() < 0.5
        price = mid + rng.randint(-5, 5)
        amount = rng.randint(1, 100) * lot
        for maker_id, _taker, _price, _amount in tracker.limit(order_id, is_buy, price, amount):
            if maker_id not in tracker.index:
                forget(maker_id)
        if order_id in tracker.index:
            position[order_id] = len(resting)
            resting.append(order_id)
        side = Side.BUY if is_buy else Side.SELL
        commands.append(NewOrder(seq, seq, f"c{order_id}", order_id, side, price, amount))
        baseline.append((order_id, is_buy, price, amount))
    return commands, baseline


def run_core(commands: list[Command]) -> tuple[float, OrderBook]:
    book = OrderBook(DEFAULT_SPEC)
    apply = book.apply
    start = time.perf_counter()
    for cmd in commands:
        apply(cmd)
    return time.perf_counter() - start, book


def run_baseline(ops: list[BaselineOp]) -> tuple[float, NaiveBook]:
    book = NaiveBook()
    limit, cancel = book.limit, book.cancel
    start = time.perf_counter()
    for op in ops:
        if len(op) == 4:
            limit(*op)
        else:
            cancel(op[0])
    return time.perf_counter() - start, book


def cost_per_kind(commands: list[Command], baseline: list[BaselineOp]) -> dict[str, Any]:
    """Time each operation alone (perf_counter_ns), grouped by what it did in the core."""
    clock = time.perf_counter_ns
    overhead = min(
        int(statistics.median(-clock() + clock() for _ in range(1000))) for _ in range(5)
    )
    book = OrderBook(DEFAULT_SPEC)
    naive = NaiveBook()
    samples: dict[str, list[int]] = {"rest": [], "cancel": [], "sweep": []}
    baseline_samples: dict[str, list[int]] = {"rest": [], "cancel": [], "sweep": []}
    fills = 0
    for cmd, op in zip(commands, baseline, strict=True):
        t0 = clock()
        events = book.apply(cmd)
        t1 = clock()
        if len(op) == 4:
            naive.limit(*op)
        else:
            naive.cancel(op[0])
        t2 = clock()
        if isinstance(cmd, CancelOrder):
            kind = "cancel"
        else:
            n = sum(1 for e in events if type(e) is Trade)
            fills += n
            kind = "sweep" if n else "rest"
        samples[kind].append(t1 - t0 - overhead)
        baseline_samples[kind].append(t2 - t1 - overhead)
    out: dict[str, Any] = {"timer_overhead_ns": overhead, "fills": fills}
    # The baseline cancels with an O(queue) deque.remove, which dominates its time on
    # this workload; this ratio leaves cancels out so the limit-order paths compare alone.
    core_limit = sum(samples["rest"]) + sum(samples["sweep"])
    base_limit = sum(baseline_samples["rest"]) + sum(baseline_samples["sweep"])
    out["ratio_excluding_cancels"] = round(base_limit / core_limit, 3)
    for kind in samples:
        out[kind] = {
            "count": len(samples[kind]),
            "core_mean_ns": round(statistics.fmean(samples[kind])),
            "core_median_ns": round(statistics.median(samples[kind])),
            "baseline_mean_ns": round(statistics.fmean(baseline_samples[kind])),
            "baseline_median_ns": round(statistics.median(baseline_samples[kind])),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)

    commands, baseline = make_stream(args.ops, args.seed)
    n_cancel = sum(1 for c in commands if isinstance(c, CancelOrder))
    core_times: list[float] = []
    baseline_times: list[float] = []
    runners: list[tuple[list[float], Callable[[], tuple[float, Any]]]] = [
        (core_times, lambda: run_core(commands)),
        (baseline_times, lambda: run_baseline(baseline)),
    ]
    final: dict[str, Any] = {}
    for _ in range(args.repeat):
        for times, runner in runners:
            elapsed, book = runner()
            times.append(elapsed)
            final[type(book).__name__] = book
    core_book: OrderBook = final["OrderBook"]
    naive_book: NaiveBook = final["NaiveBook"]
    # Sanity: both books end in the same state (same resting ids and amounts).
    core_resting = sorted((o.order_id, o.remaining) for o in core_book.orders())
    naive_resting = sorted(
        (str(entry[0]), int(str(entry[1]))) for _, _, entry in naive_book.index.values()
    )
    if core_resting != naive_resting:
        print("ERROR: the two books disagree at the end of the stream", file=sys.stderr)
        return 1

    core_ops = args.ops / statistics.median(core_times)
    baseline_ops = args.ops / statistics.median(baseline_times)
    kinds = cost_per_kind(commands, baseline)
    result = {
        "ops": args.ops,
        "seed": args.seed,
        "repeat": args.repeat,
        "cancels": n_cancel,
        "resting_at_end": len(core_book),
        "ops_per_s": round(core_ops),
        "baseline_ops_per_s": round(baseline_ops),
        "ratio": round(core_ops / baseline_ops, 3),
        "core_runs_s": [round(t, 4) for t in core_times],
        "baseline_runs_s": [round(t, 4) for t in baseline_times],
        "per_kind": kinds,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(f"orderbook_core bench: {args.ops} ops (seed {args.seed}), {n_cancel} cancels, "
          f"{kinds['fills']} fills, {len(core_book)} resting at the end")  # fmt: skip
    print(f"  orderbook_core   {core_ops:>12,.0f} ops/s   (median of {args.repeat})")
    print(f"  naive baseline   {baseline_ops:>12,.0f} ops/s   (median of {args.repeat})")
    print(f"  ratio            {core_ops / baseline_ops:>12.3f}")
    print("  cost per operation kind (ns, one op timed alone, timer overhead removed):")
    print(f"    {'kind':<8}{'count':>8}{'core mean':>12}{'core med':>10}"
          f"{'base mean':>12}{'base med':>10}")  # fmt: skip
    for kind in ("rest", "cancel", "sweep"):
        k = kinds[kind]
        print(f"    {kind:<8}{k['count']:>8}{k['core_mean_ns']:>12}{k['core_median_ns']:>10}"
              f"{k['baseline_mean_ns']:>12}{k['baseline_median_ns']:>10}")  # fmt: skip
    print(f"  ratio on limit orders alone (rest + sweep, from the per-op timings): "
          f"{kinds['ratio_excluding_cancels']:.3f}")  # fmt: skip
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
