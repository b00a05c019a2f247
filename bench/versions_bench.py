"""Benchmark: the CPU cost of one version of the book in the DHT, by book size.

For each size (1,000 / 10,000 / 100,000 resting orders by default) it builds a book
like a real one (100 clients, 1,000 price levels, ids ``client17`` / ``client17-1234``,
13-digit timestamps, 1 to 4,999 lots), publishes it once with `VersionPublisher` on
the memory transport, then publishes ``--updates`` one-order updates, one version
each, rotating three kinds: a new order that rests, the cancel of a random resting
order, and an IOC order that partly fills the best opposite order (its remaining
amount changes). A few warm-up updates come first and are not counted.

Per update it measures:

* ``version``: the CPU time (``time.process_time_ns``: this process, all threads) of
  ``publisher.publish(book, events, seq=, first=)``: the page trees, the root, the
  puts into the memory DHT. Applying the command to the book is not included.
* ``new``: the items that publish put for the first time (book pages, event pages,
  the root), and ``refreshes``: unchanged pages it put again to keep them resident in
  a 1000-value LRU (see docs/protocol.md, "Residency"), reported apart.
* ``replica``: what a client holding the previous version spends to follow it. With
  `VersionReader.advance` (versions that carry their commands): the whole path, i.e.
  get and check the root and the command pages, apply the command to its own book
  with the core's validator, update its `BookTree` from the events and compare the
  root's ``book``. In older code: apply the command and update the `BookTree` only
  (when `exchange.versions` has one).
* ``fetch``: the CPU of `VersionReader.fetch` of the new version by a reader that
  holds the previous one (cached pages), measured on the last ``--fetches`` updates:
  the path a client takes to start cold or to cross a gap.

Medians of the counted updates. The machine may be shared: CPU time, not wall time,
and the sizes take turns (one update of each, round after round) so that a busy
moment weighs on all of them alike. Not a timed test: run it by hand.

    .venv/bin/python bench/versions_bench.py [--sizes 1000,10000,100000]
        [--updates 200] [--warmup 3] [--fetches 5] [--seed 1] [--refresh-budget 32]
        [--json]

With ``--json`` the last line is one JSON object with, per size label (``1k``,
``10k``, ``100k``): ``version_cpu_us_<label>``, ``puts_per_update_<label>`` (median
new items), ``refreshes_per_update_<label>``, ``replica_cpu_us_<label>`` (null when
not available), ``fetch_cpu_us_<label>``, and more.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

# Run as a script from anywhere: import the checkout's packages, not an installed copy.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import exchange.protocol as protocol  # noqa: E402
import exchange.versions as versions  # noqa: E402
from exchange.versions import (  # noqa: E402
    DEFAULT_REFRESH_BUDGET,
    VersionPublisher,
    VersionReader,
)
from orderbook_core import (  # noqa: E402
    DEFAULT_SPEC,
    CancelOrder,
    Command,
    NewOrder,
    OrderBook,
    Side,
    TimeInForce,
    command_to_wire,
)
from transports import MemoryNetwork, open_transport  # noqa: E402

SPEC = DEFAULT_SPEC
MID = 1_000_000  # ticks: 10,000.00
TS0 = 1_764_000_000_000


def realistic_book(n: int, seed: int) -> OrderBook:
    """`n` resting orders over 1,000 price levels from 100 clients, realistic ids."""
    rng = random.Random(seed)
    book = OrderBook(SPEC)
    for i in range(n):
        side = Side.SELL if i % 2 else Side.BUY
        offset = rng.randrange(1, 500)
        price = MID + offset if side is Side.SELL else MID - offset
        client = f"client{rng.randrange(100)}"
        cmd = NewOrder(
            i + 1, TS0 + 37 * i, client, f"{client}-{i}", side, price, rng.randrange(1, 5000)
        )
        book.apply(cmd)
    assert len(book) == n
    return book


def one_order(book: OrderBook, seq: int, kind: int, rng: random.Random) -> Command:
    """A command that changes one resting order: rest, cancel, or partly fill one."""
    ts = TS0 + 37 * seq
    if kind == 0 or len(book) == 0:
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        offset = rng.randrange(1, 500)
        price = MID - offset if side is Side.BUY else MID + offset
        client = f"client{rng.randrange(100)}"
        return NewOrder(seq, ts, client, f"{client}-{seq}", side, price, rng.randrange(1, 5000))
    if kind == 1:
        # A random resting order: one O(n) scan, outside the measured part.
        pick = rng.randrange(len(book))
        victim = next(o for i, o in enumerate(book.orders()) if i == pick)
        return CancelOrder(seq, ts, victim.client_id, victim.order_id)
    side = Side.BUY if rng.random() < 0.5 else Side.SELL
    best = book.best_ask() if side is Side.BUY else book.best_bid()
    assert best is not None
    return NewOrder(seq, ts, "taker", f"taker-{seq}", side, best, 1, TimeInForce.IOC)


def label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def cpu_us(start_ns: int) -> float:
    return (time.process_time_ns() - start_ns) / 1000


class Market:
    """One book size: its book, publisher, reader and replica, and what was measured."""

    def __init__(self, n: int, args: argparse.Namespace) -> None:
        self.n = n
        self.args = args
        self.rng = random.Random(args.seed)
        self.book = realistic_book(n, args.seed)
        self.network = MemoryNetwork()
        self.result: dict[str, Any] = {"orders": n}
        self.version_us: list[float] = []
        self.replica_us: list[float] = []
        self.fetch_us: list[float] = []
        self.new: list[int] = []
        self.refreshes: list[int] = []

    async def setup(self, stack: AsyncExitStack) -> None:
        """Publish the book once; a reader fetches it (cold) and keeps a replica."""
        worker = await stack.enter_async_context(open_transport("memory", network=self.network))
        client = await stack.enter_async_context(open_transport("memory", network=self.network))
        self.publisher = VersionPublisher(worker, SPEC, refresh_budget=self.args.refresh_budget)
        started = time.process_time_ns()
        await self.publisher.publish(self.book, (), seq=self.n, first=self.n + 1)
        self.result["cold_publish_ms"] = cpu_us(started) / 1000
        self.result["pages"] = self.publisher.last_put_count - 1
        self.result["height"] = self.publisher.last_height
        assert self.publisher.last_root is not None
        self.reader = VersionReader(client, SPEC)
        started = time.process_time_ns()
        version = await self.reader.fetch(self.publisher.last_root)
        self.result["cold_fetch_ms"] = cpu_us(started) / 1000
        self.replica = version.book
        self.version = version
        self.advance = hasattr(self.reader, "advance")  # follows by the version's commands
        self.tree: Any = None
        book_tree = getattr(versions, "BookTree", None)
        if book_tree is not None:  # the incremental tree, when this code has it
            self.tree = getattr(version, "tree", None) or book_tree.from_book(self.replica)

    async def update(self, i: int) -> None:
        """One one-order update: publish it, follow it on the replica; measure both."""
        args = self.args
        seq = self.n + 1 + i
        cmd = one_order(self.book, seq, i % 3, self.rng)
        events = self.book.apply(cmd)
        extra: dict[str, Any] = {}
        if self.advance:
            wire = command_to_wire(cmd, SPEC)
            entry = getattr(protocol, "Entry", None)  # older code: versions.CommandEntry
            if entry is not None:
                extra["commands"] = [entry(cmd, wire)]
            else:
                extra["commands"] = [getattr(versions, "CommandEntry")(seq, cmd.ts, wire)]  # noqa: B009
        started = time.process_time_ns()
        key = await self.publisher.publish(self.book, events, seq=seq, first=seq, **extra)
        spent = cpu_us(started)
        replica_spent = None
        if self.advance:
            started = time.process_time_ns()
            self.version, _ = await self.reader.advance(self.version, key)
            replica_spent = cpu_us(started)
            self.replica = self.version.book
        root = await self.reader.fetch_root(key)
        if not self.advance and self.tree is not None:  # older code: the tree alone
            started = time.process_time_ns()
            delta = self.tree.update(self.replica, self.replica.apply(cmd))
            replica_spent = cpu_us(started)
            assert delta.root == root.book, "the replica's tree disagrees with the version"
        elif not self.advance:
            self.replica.apply(cmd)
        if i < args.warmup:
            return
        self.version_us.append(spent)
        self.new.append(self.publisher.last_put_count - self.publisher.last_refresh_count)
        self.refreshes.append(self.publisher.last_refresh_count)
        if replica_spent is not None:
            self.replica_us.append(replica_spent)
        if i >= args.warmup + args.updates - args.fetches:
            started = time.process_time_ns()
            fetched = await self.reader.fetch(key)
            self.fetch_us.append(cpu_us(started))
            assert fetched.root.book == root.book

    def summary(self) -> dict[str, Any]:
        assert self.replica == self.book
        version_us = sorted(self.version_us)
        self.result.update(
            version_cpu_us=statistics.median(version_us),
            version_cpu_us_p90=version_us[int(0.9 * (len(version_us) - 1))],
            puts_per_update=statistics.median(self.new),
            puts_per_update_mean=statistics.fmean(self.new),
            puts_per_update_max=max(self.new),
            refreshes_per_update=statistics.median(self.refreshes),
            replica_cpu_us=statistics.median(self.replica_us) if self.replica_us else None,
            fetch_cpu_us=statistics.median(self.fetch_us) if self.fetch_us else None,
            updates=len(self.version_us),
        )
        return self.result


async def measure(sizes: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Set every size up, then run the updates round-robin over the sizes, so that
    the load of a shared machine weighs on every size alike."""
    markets = [Market(n, args) for n in sizes]
    async with AsyncExitStack() as stack:
        for market in markets:
            await market.setup(stack)
            print(f"... {market.n:,} orders published and read", file=sys.stderr)
        gc.collect()
        for i in range(args.warmup + args.updates):
            for market in markets:
                await market.update(i)
    return [market.summary() for market in markets]


def report(results: list[dict[str, Any]], emit: Callable[[str], None]) -> None:
    emit(
        f"{'orders':>8} {'pages':>6} {'h':>2} {'version CPU µs':>15} {'p90':>8} "
        f"{'new items':>16} {'refreshes':>9} {'replica µs':>10} {'fetch µs':>10}"
    )
    for r in results:
        mean, worst = r["puts_per_update_mean"], r["puts_per_update_max"]
        new = f"{r['puts_per_update']:g} ({mean:.1f}, ≤{worst})"
        replica = "n/a" if r["replica_cpu_us"] is None else f"{r['replica_cpu_us']:.0f}"
        fetch = "n/a" if r["fetch_cpu_us"] is None else f"{r['fetch_cpu_us']:.0f}"
        emit(
            f"{r['orders']:>8,} {r['pages']:>6} {r['height']:>2} {r['version_cpu_us']:>15.0f} "
            f"{r['version_cpu_us_p90']:>8.0f} {new:>16} {r['refreshes_per_update']:>9g} "
            f"{replica:>10} {fetch:>10}"
        )
    emit(
        "new items: median (mean, max) items put for the first time per update (book pages,\n"
        "event and command pages, root); refreshes: unchanged pages put again (median);\n"
        "replica: VersionReader.advance (get the root and command pages, apply the command,\n"
        "update the BookTree, compare); fetch: VersionReader.fetch of the new version with\n"
        "the previous one cached. CPU time, median of the updates."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--updates", type=int, default=200, help="counted updates per size")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--fetches", type=int, default=5, help="updates also fetched by a reader")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--refresh-budget", type=int, default=DEFAULT_REFRESH_BUDGET, help="0: no refreshes"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.updates < 1 or args.warmup < 0 or args.fetches < 0:
        parser.error("need --updates >= 1, --warmup >= 0, --fetches >= 0")
    sizes = [int(s) for s in args.sizes.split(",")]

    results = anyio.run(measure, sizes, args)
    report(results, print)

    if args.json:
        out: dict[str, Any] = {
            "python": platform.python_version(),
            "incremental": hasattr(versions, "BookTree"),
            "updates": args.updates,
            "seed": args.seed,
            "refresh_budget": args.refresh_budget,
        }
        for r in results:
            tag = label(r["orders"])
            for name, value in r.items():
                if name not in ("orders", "updates"):
                    out[f"{name}_{tag}"] = round(value, 1) if isinstance(value, float) else value
        print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
