"""Benchmark: orderbook_core against the naive book one would write, same stream, one run.

The stream is issue 22's (``bench/core_stream.py``, seeded): 200,000 messages, 80%
limit orders around the mid (a fifth of them IOC), 12% cancels, 8% modifies. The
baseline (``bench/naive_book.py``) is a ``SortedDict`` of ``deque`` levels with lazy
deletion: a cancel marks the order dead in O(1), matching skips dead orders.

What is measured, each as the median of ``--repeat`` interleaved runs on fresh books,
in CPU seconds of the process (``ratio_wall`` is ``ratio`` from wall-clock medians):

* ``ratio``: messages per second of the core through its fastest public one-at-a-time
  path (each message becomes a call of ``OrderBook.new_order``, ``cancel_order`` or
  ``modify_order`` with the command's fields, which returns the same typed events as
  ``apply``) over the naive book's (each message becomes a method call that returns
  its fills);
* ``ratio_apply``: the same through ``OrderBook.apply`` (each message becomes a typed
  command, ``NewOrder``/``CancelOrder``/``ModifyOrder``, first);
* ``batch_ratio``: ``apply`` time over ``apply_many`` time from the same messages
  (plain-tuple commands in chunks of 64, compact events out); ``batch_ratio_fields``
  the field entry points' time over it; ``batch_ratio_typed_events`` apply over
  ``apply_many`` returning typed events; ``batch_ratio_prebuilt`` apply over
  ``apply_many(compact=True)`` on the same prebuilt typed commands;
* per message kind (each message timed alone with ``perf_counter_ns``, the books in
  lockstep): the median ns of a GTC order that rests, one that trades, an IOC, a
  cancel, a modify (the core through the field entry points, and through apply);
* ``bytes_per_order``: tracemalloc, what the book keeps alive per resting order once
  ``--memory-orders`` orders rest (ids and numbers included; see
  :func:`bytes_per_order`), for the core and the naive book, and
  (``bytes_per_order_compiled``) for the compiled core;
* ``history_ratio``: the old measurement (90% GTC / 10% cancels against the old
  baseline whose cancel is an O(queue) ``deque.remove``), kept as history only.

At the end the two books must hold the same resting orders in the same priority.
Not a timed test: ``python bench/core_bench.py`` (or ``make bench``).

    python bench/core_bench.py [--messages 200000] [--seed 42] [--repeat 5]
                               [--memory-orders 100000,1000000] [--json]

With ``--json`` the last line is one JSON object (keys above, ``ops_per_s``,
``baseline_ops_per_s``, ...).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Run as a script from anywhere: import the checkout's packages, not an installed copy
# (or, with CORE_BENCH_SITE set, the compiled build unpacked there: see --compiled).
ROOT = Path(__file__).resolve().parent.parent
SITE = os.environ.get("CORE_BENCH_SITE", "")
sys.path[:0] = [*([SITE] if SITE else []), str(ROOT), str(ROOT / "bench")]

from core_stream import (  # noqa: E402
    CANCEL,
    LIMIT,
    LOT,
    MID,
    Message,
    make_messages,
    resting_core,
    run_core,
    run_core_batch,
    run_core_fields,
    run_naive,
    typed_commands,
)
from naive_book import NaiveBook  # noqa: E402
from naive_book_eager import EagerNaiveBook  # noqa: E402

import orderbook_core  # noqa: E402
from orderbook_core import (  # noqa: E402
    DEFAULT_SPEC,
    CancelOrder,
    Command,
    NewOrder,
    OrderBook,
    Side,
)

# Throughput is timed in CPU seconds of this (single-threaded) process: on a machine
# shared with other work, wall time also counts the moments the process waited for a
# core. Wall-clock times of the same runs are reported beside them.
clock = time.process_time


def interleaved(
    runners: dict[str, Callable[[], float]], repeat: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Run each runner ``repeat`` times, alternating them (and the order of each round).

    Returns what each run reported (CPU seconds) and each run's wall-clock seconds.
    """
    times: dict[str, list[float]] = {name: [] for name in runners}
    wall: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for i in range(repeat):
        for name in names if i % 2 == 0 else reversed(names):
            start = time.perf_counter()
            times[name].append(runners[name]())
            wall[name].append(time.perf_counter() - start)
    return times, wall


def timed(fn: Callable[[], object]) -> float:
    start = clock()
    fn()
    return clock() - start


KINDS = ("gtc_rest", "gtc_fill", "ioc", "cancel", "modify")


def cost_per_kind(messages: list[Message]) -> dict[str, Any]:
    """Time each message alone in both books, grouped by kind (and, for GTC, outcome)."""
    clock = time.perf_counter_ns
    overhead = min(
        int(statistics.median(-clock() + clock() for _ in range(1000))) for _ in range(5)
    )
    book = OrderBook(DEFAULT_SPEC)
    by_apply = OrderBook(DEFAULT_SPEC)
    naive = NaiveBook()
    core: dict[str, list[int]] = {k: [] for k in KINDS}
    base: dict[str, list[int]] = {k: [] for k in KINDS}
    applied: dict[str, list[int]] = {k: [] for k in KINDS}
    one = [None]
    for seq, m in enumerate(messages, 1):
        one[0] = m  # type: ignore[call-overload]
        t0 = clock()
        run_core_fields(one, book, seq)  # type: ignore[arg-type]
        t1 = clock()
        _, fills = run_naive(one, naive)  # type: ignore[arg-type]
        t2 = clock()
        run_core(one, by_apply, seq)  # type: ignore[arg-type]
        t3 = clock()
        if m[0] == LIMIT:
            kind = "ioc" if m[6] else "gtc_fill" if fills else "gtc_rest"
        else:
            kind = "cancel" if m[0] == CANCEL else "modify"
        core[kind].append(t1 - t0 - overhead)
        base[kind].append(t2 - t1 - overhead)
        applied[kind].append(t3 - t2 - overhead)
    out: dict[str, Any] = {"timer_overhead_ns": overhead}
    for kind in KINDS:
        c, b = statistics.median(core[kind]), statistics.median(base[kind])
        out[kind] = {
            "count": len(core[kind]),
            "core_median_ns": round(c),
            "apply_median_ns": round(statistics.median(applied[kind])),
            "baseline_median_ns": round(b),
            "ratio": round(b / c, 3),
        }
    return out


def resting_commands(n: int, seed: int) -> tuple[list[Command], list[tuple[Any, ...]]]:
    """``n`` orders that all rest: bids below the mid, asks above, over 1,000 levels.

    Every id, price, amount, seq and ts is a fresh object, as after ``parse_command``.
    """
    rng = random.Random(seed)
    cmds: list[Command] = []
    naive: list[tuple[Any, ...]] = []
    for seq in range(1, n + 1):
        is_buy = seq % 2 == 0
        price = MID - 1 - rng.randrange(500) if is_buy else MID + 1 + rng.randrange(500)
        amount = rng.randint(1, 100) * LOT
        oid = str(seq)
        side = Side.BUY if is_buy else Side.SELL
        cmds.append(NewOrder(seq, 1_700_000_000_000 + seq, f"c{oid}", oid, side, price, amount))
        naive.append((str(seq), is_buy, int(str(price)), int(str(amount))))
    return cmds, naive


def bytes_per_order(n: int, seed: int, core_only: bool = False) -> dict[str, float]:
    """tracemalloc: bytes per resting order, for the core and the naive book.

    ``core``: everything the book keeps alive, ids and numbers included (the commands
    are built under tracing, applied, then dropped). ``core_structures``: only what
    the book allocates itself (commands built before tracing and kept). ``naive``: the
    naive book, everything it keeps alive, measured like ``core``.
    """
    out: dict[str, float] = {}

    def traced(fn: Callable[[], object]) -> float:
        gc.collect()
        tracemalloc.start()
        try:
            keep = fn()
            gc.collect()
            size = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        del keep
        return round(size / n, 1)

    def core_all() -> object:
        cmds, _ = resting_commands(n, seed)
        book = OrderBook(DEFAULT_SPEC)
        apply = book.apply
        for cmd in cmds:
            apply(cmd)
        del cmds, cmd
        assert len(book) == n
        return book

    def naive_all() -> object:
        _, args = resting_commands(n, seed)
        naive = NaiveBook()
        limit = naive.limit
        for a in args:
            limit(*a)
        del args, a
        assert naive.resting() == n
        return naive

    out["core"] = traced(core_all)
    if core_only:
        return out
    out["naive"] = traced(naive_all)
    cmds, _ = resting_commands(n, seed)

    def core_own() -> object:
        book = OrderBook(DEFAULT_SPEC)
        apply = book.apply
        for cmd in cmds:
            apply(cmd)
        return book

    out["core_structures"] = traced(core_own)
    return out


def history(n: int, seed: int, repeat: int) -> dict[str, Any]:
    """The old measurement: 90% GTC, 10% cancels, against the O(queue)-cancel baseline."""
    # The old bench's stream generator, unchanged but for the names.
    rng = random.Random(seed)
    tracker = EagerNaiveBook()
    resting: list[str] = []  # ids resting right now (swap-remove via position map)
    position: dict[str, int] = {}

    def forget(oid: str) -> None:
        i = position.pop(oid)
        last = resting.pop()
        if last != oid:
            resting[i] = last
            position[last] = i

    commands: list[Command] = []
    ops: list[tuple[Any, ...]] = []
    for seq in range(1, n + 1):
        if resting and rng.random() < 0.10:
            oid = resting[rng.randrange(len(resting))]
            forget(oid)
            tracker.cancel(oid)
            commands.append(CancelOrder(seq, seq, f"c{oid}", oid))
            ops.append((oid,))
            continue
        oid, is_buy = str(seq), rng.random() < 0.5
        price, amount = MID + rng.randint(-5, 5), rng.randint(1, 100) * LOT
        for maker_id, _taker, _price, _amount in tracker.limit(oid, is_buy, price, amount):
            if maker_id not in tracker.index:
                forget(maker_id)
        if oid in tracker.index:
            position[oid] = len(resting)
            resting.append(oid)
        side = Side.BUY if is_buy else Side.SELL
        commands.append(NewOrder(seq, seq, f"c{oid}", oid, side, price, amount))
        ops.append((oid, is_buy, price, amount))

    def core() -> None:
        apply = OrderBook(DEFAULT_SPEC).apply
        for cmd in commands:
            apply(cmd)

    def eager() -> None:
        book = EagerNaiveBook()
        for op in ops:
            if len(op) == 4:
                book.limit(*op)
            else:
                book.cancel(op[0])

    times, _ = interleaved({"core": lambda: timed(core), "eager": lambda: timed(eager)}, repeat)
    return {
        "messages": n,
        "history_ratio": round(
            statistics.median(times["eager"]) / statistics.median(times["core"]), 3
        ),
    }


DEFAULT_SITE = ROOT / "build" / "compiled" / "site"


def build_compiled() -> None:
    """Build the compiled wheel of this checkout and unpack it (as make test-compiled)."""
    out = ROOT / "build" / "compiled"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(ROOT)], check=True, cwd=ROOT,
    )  # fmt: skip
    (wheel,) = out.glob("distributed_exchange-*.whl")
    subprocess.run(
        [sys.executable, "-m", "zipfile", "-e", str(wheel), str(DEFAULT_SITE)], check=True
    )


def compiled_run(args: argparse.Namespace) -> dict[str, Any] | None:
    """The throughput runs again in a subprocess that imports the compiled build.

    The subprocess interleaves the compiled core and the same pure-Python naive book
    itself, so ``ratio_compiled`` is fair under load as ``ratio`` is. None when there
    is no compiled build at ``--compiled``.
    """
    site = Path(args.compiled)
    if not any(site.glob("orderbook_core/_book.*.so")) and not any(
        site.glob("orderbook_core/_book.*.pyd")
    ):
        if site != DEFAULT_SITE:
            return None
        build_compiled()
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--throughput-only",
        "--messages", str(args.messages), "--seed", str(args.seed),
        "--repeat", str(args.repeat), "--memory-orders", args.memory_orders,
    ]  # fmt: skip
    env = {**os.environ, "CORE_BENCH_SITE": str(site)}
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    if not result["compiled"]:
        raise RuntimeError(f"{site} did not load as the compiled build")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", "--ops", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--memory-orders", default="100000",
        help="comma-separated resting-order counts for bytes_per_order ('' to skip)",
    )  # fmt: skip
    parser.add_argument("--no-history", action="store_true", help="skip the old ratio")
    parser.add_argument(
        "--compiled", nargs="?", default=str(DEFAULT_SITE), const=str(DEFAULT_SITE),
        help="the unpacked compiled build (make test-compiled makes it; at the default place "
        "it is built if missing) for ratio_compiled; '' to skip",
    )  # fmt: skip
    parser.add_argument(
        "--throughput-only", action="store_true",
        help="only the interleaved throughput runs (what the compiled subprocess runs)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)

    messages = make_messages(args.messages, args.seed)
    typed = typed_commands(messages)
    final: dict[str, Any] = {}

    def core() -> float:
        start = clock()
        final["core"], _ = run_core(messages)
        return clock() - start

    def fields() -> float:
        start = clock()
        final["fields"], _ = run_core_fields(messages)
        return clock() - start

    def batch() -> float:
        start = clock()
        final["batch"], _ = run_core_batch(messages)
        return clock() - start

    def batch_typed() -> float:
        start = clock()
        final["batch_typed"], _ = run_core_batch(messages, compact=False)
        return clock() - start

    def naive() -> float:
        start = clock()
        final["naive"], _ = run_naive(messages)
        return clock() - start

    def prebuilt_apply() -> float:
        book = OrderBook(DEFAULT_SPEC)
        apply = book.apply
        start = clock()
        for cmd in typed:
            apply(cmd)
        return clock() - start

    def prebuilt_many() -> float:
        book = OrderBook(DEFAULT_SPEC)
        apply_many = book.apply_many
        chunks = [typed[i : i + 64] for i in range(0, len(typed), 64)]
        start = clock()
        for chunk in chunks:
            apply_many(chunk, compact=True)
        return clock() - start

    runners = {
        "core": core,
        "fields": fields,
        "naive": naive,
        "batch": batch,
        "batch_typed": batch_typed,
        "prebuilt_apply": prebuilt_apply,
        "prebuilt_many": prebuilt_many,
    }
    times, wall = interleaved(runners, args.repeat)
    expected = list(final["naive"].orders())
    if resting_core(final["core"]) != expected:
        print("ERROR: the core and the naive book disagree at the end", file=sys.stderr)
        return 1
    for name in ("batch", "batch_typed", "fields"):
        if final[name] != final["core"]:
            print(f"ERROR: {name} and apply disagree at the end", file=sys.stderr)
            return 1
    med = {name: statistics.median(t) for name, t in times.items()}
    n = args.messages
    throughput: dict[str, Any] = {
        "compiled": orderbook_core.COMPILED,
        "ratio": round(med["naive"] / med["fields"], 3),
        "ratio_apply": round(med["naive"] / med["core"], 3),
        "ratio_prebuilt_apply": round(med["naive"] / med["prebuilt_apply"], 3),
        "batch_ratio": round(med["core"] / med["batch"], 3),
        "batch_ratio_fields": round(med["fields"] / med["batch"], 3),
        "batch_ratio_typed_events": round(med["core"] / med["batch_typed"], 3),
        "batch_ratio_prebuilt": round(med["prebuilt_apply"] / med["prebuilt_many"], 3),
        "runs_cpu_s": {name: [round(x, 4) for x in t] for name, t in times.items()},
    }
    if args.throughput_only:
        # Bytes per resting order of this build too (compiled, a resting order keeps
        # its integers unboxed: the figure differs from the pure build's).
        throughput["bytes_per_order"] = {
            str(count): bytes_per_order(count, args.seed, core_only=True)["core"]
            for count in (int(c) for c in args.memory_orders.split(",") if c)
        }
        print(json.dumps(throughput, sort_keys=True))
        return 0
    compiled = compiled_run(args) if args.compiled else None
    kinds = cost_per_kind(messages)
    memory = {}
    for count in (int(c) for c in args.memory_orders.split(",") if c):
        memory[str(count)] = bytes_per_order(count, args.seed)
    hist = None if args.no_history else history(args.messages, args.seed, 3)
    result: dict[str, Any] = {
        "compiled": orderbook_core.COMPILED,
        "ratio_compiled": None if compiled is None else compiled["ratio"],
        "ratio_apply_compiled": None if compiled is None else compiled["ratio_apply"],
        "batch_ratio": throughput["batch_ratio"],
        "batch_ratio_fields": throughput["batch_ratio_fields"],
        "batch_ratio_typed_events": throughput["batch_ratio_typed_events"],
        "batch_ratio_fields_compiled": None if compiled is None else compiled["batch_ratio_fields"],
        "batch_ratio_prebuilt": throughput["batch_ratio_prebuilt"],
        "batch_ratio_compiled": None if compiled is None else compiled["batch_ratio"],
        "batch_ratio_prebuilt_compiled": (
            None if compiled is None else compiled["batch_ratio_prebuilt"]
        ),
        "compiled_runs_cpu_s": None if compiled is None else compiled["runs_cpu_s"],
        "messages": n,
        "seed": args.seed,
        "repeat": args.repeat,
        "kinds": {k: sum(1 for m in messages if m[0] == k) for k in ("L", "C", "M")},
        "resting_at_end": len(final["core"]),
        "ops_per_s": round(n / med["fields"]),
        "apply_ops_per_s": round(n / med["core"]),
        "baseline_ops_per_s": round(n / med["naive"]),
        "ratio": throughput["ratio"],
        "ratio_apply": throughput["ratio_apply"],
        "ratio_prebuilt_apply": throughput["ratio_prebuilt_apply"],
        "ratio_wall": round(
            statistics.median(wall["naive"]) / statistics.median(wall["fields"]), 3
        ),
        "runs_cpu_s": {name: [round(x, 4) for x in t] for name, t in times.items()},
        "runs_wall_s": {name: [round(x, 4) for x in wall[name]] for name in times},
        "per_kind": kinds,
        "bytes_per_order": {k: v["core"] for k, v in memory.items()},
        "bytes_per_order_compiled": None if compiled is None else compiled["bytes_per_order"],
        "naive_bytes_per_order": {k: v["naive"] for k, v in memory.items()},
        "core_structures_bytes_per_order": {k: v["core_structures"] for k, v in memory.items()},
        "history": hist,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(f"orderbook_core bench: {n} messages (seed {args.seed}): {result['kinds']}, "
          f"{result['resting_at_end']} resting at the end; medians of {args.repeat}")  # fmt: skip
    print(f"  core, new_order & co.      {n / med['fields']:>12,.0f} msg/s")
    print(f"  core, apply (typed cmds)   {n / med['core']:>12,.0f} msg/s")
    print(f"  naive lazy-delete book     {n / med['naive']:>12,.0f} msg/s")
    print(f"  ratio (new_order & co.)    {result['ratio']:>12.3f}")
    print(f"  ratio_apply                {result['ratio_apply']:>12.3f}")
    print(f"  core, bulk (apply_many)    {n / med['batch']:>12,.0f} msg/s")
    print(f"  batch ratio (apply_many compact / apply, from the same messages) "
          f"{result['batch_ratio']:.3f}; over new_order & co. "
          f"{result['batch_ratio_fields']:.3f}; typed events "
          f"{result['batch_ratio_typed_events']:.3f}; on the same prebuilt commands "
          f"{result['batch_ratio_prebuilt']:.3f}")  # fmt: skip
    if compiled is not None:
        c = compiled
        print(f"  compiled core: ratio_compiled {c['ratio']:.3f} (apply "
              f"{c['ratio_apply']:.3f}), batch ratio {c['batch_ratio']:.3f} (over new_order "
              f"& co. {c['batch_ratio_fields']:.3f}, prebuilt {c['batch_ratio_prebuilt']:.3f}),"
              f" bytes per resting order {c['bytes_per_order']}")  # fmt: skip
    else:
        print("  compiled core: not measured (no compiled build; make test-compiled)")
    print("  per message kind (median ns, each timed alone, timer overhead removed):")
    print(f"    {'kind':<10}{'count':>8}{'core':>8}{'apply':>8}{'naive':>8}{'ratio':>8}")
    for kind in KINDS:
        k = kinds[kind]
        print(f"    {kind:<10}{k['count']:>8}{k['core_median_ns']:>8}{k['apply_median_ns']:>8}"
              f"{k['baseline_median_ns']:>8}{k['ratio']:>8.3f}")  # fmt: skip
    for orders, mem in memory.items():
        print(f"  bytes per resting order at {int(orders):,}: core {mem['core']} "
              f"({mem['core_structures']} without ids and numbers), "
              f"naive {mem['naive']}")  # fmt: skip
    if hist is not None:
        print(f"  history: the old ratio (O(queue)-cancel baseline, 90/10 stream) "
              f"{hist['history_ratio']:.3f}; not comparable, kept as history")  # fmt: skip
    print(f"  load average {result['load_avg']}")
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
