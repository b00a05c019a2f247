"""The matcher's snapshots: start time with and without them, their pause, their cost.

Three measures, all in one process (no network: the matcher's own code paths):

- **start** (``ready_s`` / ``replay_s``): a synthetic applied log of N commands (a
  seeded mix: passive orders on both sides, cancels, crossing orders; one version per
  100 commands, stand-in roots) is rebuilt by the matcher's start
  (`exchange.matcher.restore`, what `ProcessWorker.run` runs before serving):
  once from zero (no snapshot), once from a snapshot taken ``--tail`` commands before
  the head (default: the default ``--snapshot-every``, the worst case) plus that tail.
  Both are CPU seconds of the whole process (`time.process_time`), best of
  ``--repeat``; wall seconds are printed beside them.
- **pause**: a book of ``--resting`` orders; the copy the matcher takes on the event
  loop (`OrderBook.orders`, the only time matching waits), and the write in its
  worker thread, during which a 1 ms ticker on the loop measures how late it runs
  (the GIL is shared: matching slows, it does not stop).
- **throughput** (``snapshot_throughput_ratio``): a `ProcessWorker` on the memory
  transport, started on a book of ``--resting`` orders, applies ``--commands``
  commands in batches of ``--batch`` (each a version put in the in-memory DHT) with
  the default snapshots (every ``--every``) and with none; interleaved pairs, CPU
  seconds per command; the ratio is commands per CPU second with over without
  (median of the pairs).

Usage::

    .venv/bin/python bench/snapshot_bench.py --json        # JSON object on the last line
    .venv/bin/python bench/snapshot_bench.py --sizes 10000,100000 --pairs 2
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.matcher import (
    DEFAULT_SNAPSHOT_EVERY,
    AppliedLog,
    AppliedRecord,
    Capture,
    ProcessWorker,
    SnapshotStore,
    restore,
    snapshot_dir,
)
from exchange.protocol import PROCESS_DOMAIN, Entry, apply_entry, parse_entry, sign_object
from orderbook_core import DEFAULT_SPEC, OrderBook
from transports import MemoryNetwork, open_transport

_VERSION = 100
"""Commands per version in the synthetic applied log."""


class Flow:
    """A deterministic stream of valid commands that leaves a growing book resting.

    Per command: 55% a passive limit order (below the mid for bids, above for asks),
    30% a cancel of an order placed earlier (maybe already gone: a rejection, still a
    command), 15% a small crossing order. About a third of the commands stay resting.
    """

    def __init__(self, seed: int = 1, passive_only: bool = False) -> None:
        self.rnd = random.Random(seed)
        self.passive_only = passive_only
        self.placed: list[tuple[str, str]] = []
        self.n = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        rnd, self.n = self.rnd, self.n + 1
        client = f"c{rnd.randrange(200)}"
        roll = 0.0 if self.passive_only else rnd.random()
        if roll < 0.55 or not self.placed:  # passive
            side = rnd.choice(("buy", "sell"))
            offset = 1 + rnd.randrange(5000)
            price = 100_000 - offset if side == "buy" else 100_000 + offset
            order_id = f"o{self.n}"
            self.placed.append((client, order_id))
            amount = str(1 + rnd.randrange(50))
            return {"op": "new", "clientId": client, "orderId": order_id, "side": side,
                    "price": f"{price / 100:.2f}", "amount": amount}  # fmt: skip
        if roll < 0.85:
            owner, order_id = self.placed[rnd.randrange(len(self.placed))]
            return {"op": "cancel", "clientId": owner, "orderId": order_id}
        side = rnd.choice(("buy", "sell"))
        limit = "1100" if side == "buy" else "900"
        return {"op": "new", "clientId": client, "orderId": f"x{self.n}", "side": side,
                "price": limit, "amount": "0.5", "tif": "IOC"}  # fmt: skip


def entries(flow: Flow, first: int, count: int) -> list[Entry]:
    seqs = range(first, first + count)
    return [parse_entry(seq, 1_000 + seq, next(flow), DEFAULT_SPEC) for seq in seqs]


def synthetic_state(directory: Path, commands: int, snapshot_at: int | None) -> Path:
    """An applied log of `commands` (stand-in roots), a snapshot at `snapshot_at`."""
    db = directory / "process_state.db"
    log = AppliedLog(db, DEFAULT_SPEC)
    flow, book = Flow(), OrderBook(DEFAULT_SPEC)
    prev: str | None = None
    for first in range(1, commands + 1, _VERSION):
        batch = entries(flow, first, min(_VERSION, commands - first + 1))
        events = [event for entry in batch for event in apply_entry(book, entry)]
        root = f"{batch[-1].seq:040x}"
        log.append([AppliedRecord(entry, root) for entry in batch])
        if snapshot_at is not None and batch[-1].seq == snapshot_at:
            store = SnapshotStore(snapshot_dir(db), DEFAULT_SPEC)
            store.write(
                Capture(snapshot_at, root, prev, first, tuple(events), tuple(book.orders()))
            )
        prev = root
    log.close()
    return db


def _timed(call: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Best CPU and wall seconds of `repeat` calls, and the last result."""
    cpu, wall, result = [], [], None
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        result = call()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return min(cpu), min(wall), result


def measure_start(size: int, tail: int, repeat: int) -> dict[str, Any]:
    snapshot_at = max(_VERSION, (size - tail) // _VERSION * _VERSION)
    with tempfile.TemporaryDirectory() as tmp:
        db = synthetic_state(Path(tmp), size, snapshot_at)
        log = AppliedLog(db, DEFAULT_SPEC)
        store = SnapshotStore(snapshot_dir(db), DEFAULT_SPEC)
        empty = SnapshotStore(Path(tmp) / "none", DEFAULT_SPEC)
        replay_cpu, replay_wall, full = _timed(
            lambda: restore(log, empty, DEFAULT_SPEC, db), repeat
        )
        ready_cpu, ready_wall, quick = _timed(lambda: restore(log, store, DEFAULT_SPEC, db), repeat)
        log.close()
        snapshot_bytes = store.path(snapshot_at).stat().st_size
    assert (quick.snapshot, full.snapshot) == (snapshot_at, None)
    assert (quick.book, quick.head) == (full.book, full.head)
    return {"commands": size, "snapshot_at": snapshot_at, "resting": len(full.book),
            "snapshot_bytes": snapshot_bytes, "replay_s": round(replay_cpu, 3),
            "ready_s": round(ready_cpu, 3), "replay_wall_s": round(replay_wall, 3),
            "ready_wall_s": round(ready_wall, 3)}  # fmt: skip


def resting_book(resting: int) -> OrderBook:
    flow, book = Flow(seed=2, passive_only=True), OrderBook(DEFAULT_SPEC)
    for entry in entries(flow, 1, resting):
        apply_entry(book, entry)
    return book


async def measure_pause(resting: int, repeat: int) -> dict[str, Any]:
    book = resting_book(resting)
    copies = []
    for _ in range(repeat):  # as `Snapshotter.take` does it: the cyclic GC off
        gc.disable()
        started = time.perf_counter()
        orders = tuple(book.orders())
        copies.append(time.perf_counter() - started)
        gc.enable()
        del orders
    capture = Capture(resting, "0" * 40, None, resting, (), tuple(book.orders()))
    lags: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = SnapshotStore(Path(tmp), DEFAULT_SPEC)
        done = anyio.Event()

        async def tick() -> None:
            while not done.is_set():
                started = time.perf_counter()
                await anyio.sleep(0.001)
                lags.append(time.perf_counter() - started - 0.001)

        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            started = time.perf_counter()
            await anyio.to_thread.run_sync(store.write, capture)
            write = time.perf_counter() - started
            done.set()
    return {"resting": resting, "copy_ms": round(statistics.median(copies) * 1000, 1),
            "copy_ms_max": round(max(copies) * 1000, 1), "write_s": round(write, 3),
            "loop_lag_ms_max_during_write": round(max(lags) * 1000, 1),
            "loop_lag_ms_median_during_write": round(statistics.median(lags) * 1e3, 2)}  # fmt: skip


async def _run_worker(
    seed_dir: Path, commands: int, batch: int, every: int, resting: int
) -> tuple[float, float, int]:
    """CPU and wall seconds for `commands` after a warm-up batch; snapshots taken."""
    sequencer = Ed25519PrivateKey.from_private_bytes(b"s" * 32)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "process_state.db"
        shutil.copy(seed_dir / "process_state.db", db)
        shutil.copytree(snapshot_dir(seed_dir / "process_state.db"), snapshot_dir(db))
        network = MemoryNetwork()
        async with (
            open_transport("memory", network=network) as server,
            anyio.create_task_group() as tg,
        ):
            worker = ProcessWorker(
                server, db, sequencer_key=sequencer.public_key(),
                signing_key=Ed25519PrivateKey.from_private_bytes(b"m" * 32),
                snapshot_every=every, snapshot_interval=0, snapshot_keep=3 if every else 0,
            )  # fmt: skip
            await tg.start(worker.run)
            await worker.republished.wait()
            flow = Flow(seed=3)
            flow.n = resting + 1  # ids not used by the seed
            seq = resting

            async def send(count: int) -> None:
                nonlocal seq
                run = [
                    {"seq": seq + 1 + i, "ts": 10**6, "command": next(flow)} for i in range(count)
                ]
                await worker.process(sign_object(PROCESS_DOMAIN, {"entries": run}, sequencer))
                seq += count

            await send(batch)  # warm-up: the first version builds the whole page tree
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(commands // batch):
                await send(batch)
            # The last snapshot's write is part of the cost: wait for it.
            while every and seq - worker.snapshotter.seq >= every:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            taken = len(worker.snapshotter.pauses)
            tg.cancel_scope.cancel()
    return cpu, wall, taken


async def measure_throughput(
    resting: int, commands: int, batch: int, every: int, pairs: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        seed = Path(tmp)
        db = seed / "process_state.db"
        log = AppliedLog(db, DEFAULT_SPEC)
        flow, book = Flow(seed=2, passive_only=True), OrderBook(DEFAULT_SPEC)
        run = entries(flow, 1, resting)
        for entry in run:
            apply_entry(book, entry)
        log.append([AppliedRecord(entry, "f" * 40) for entry in run])  # one version
        log.close()
        SnapshotStore(snapshot_dir(db), DEFAULT_SPEC).write(
            Capture(resting, "f" * 40, None, 1, (), tuple(book.orders()))
        )
        with_s, without_s, ratios, taken = [], [], [], 0
        for _ in range(pairs):  # interleaved: A, B, A, B ...
            cpu_with, _, taken = await _run_worker(seed, commands, batch, every, resting)
            cpu_without, _, _ = await _run_worker(seed, commands, batch, 0, resting)
            with_s.append(cpu_with)
            without_s.append(cpu_without)
            ratios.append(cpu_without / cpu_with)
    return {"resting": resting, "commands": commands, "batch": batch, "every": every,
            "snapshots_per_run": taken, "pairs": pairs,
            "cpu_us_per_command_with": round(statistics.median(with_s) / commands * 1e6, 1),
            "cpu_us_per_command_without": round(statistics.median(without_s) / commands * 1e6, 1),
            "pair_ratios": [round(r, 3) for r in ratios],
            "snapshot_throughput_ratio": round(statistics.median(ratios), 3)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="journaled commands")
    every = DEFAULT_SNAPSHOT_EVERY
    parser.add_argument("--tail", type=int, default=every, help="commands after the snapshot")
    parser.add_argument("--repeat", type=int, default=2, help="starts timed per size (best)")
    parser.add_argument("--resting", type=int, default=100_000, help="resting orders")
    # 3.5 intervals: three snapshots fall in each run, each a few batches after its mark.
    parser.add_argument("--commands", type=int, default=3 * every + every // 2, help="a run")
    parser.add_argument("--batch", type=int, default=100, help="commands a version")
    parser.add_argument("--every", type=int, default=every, help="snapshot every (throughput)")
    parser.add_argument("--pairs", type=int, default=5, help="interleaved throughput pairs")
    parser.add_argument("--json", action="store_true", help="a JSON object on the last line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # the stand-in roots make republishing complain
    starts = []
    for size in (int(s) for s in args.sizes.split(",")):
        starts.append(measure_start(size, args.tail, args.repeat))
        print("start", json.dumps(starts[-1]), file=sys.stderr, flush=True)
    pause = anyio.run(measure_pause, args.resting, 5)
    print("pause", json.dumps(pause), file=sys.stderr, flush=True)
    throughput = anyio.run(
        measure_throughput, args.resting, args.commands, args.batch, args.every, args.pairs
    )
    print("throughput", json.dumps(throughput), file=sys.stderr, flush=True)
    result = {
        "ready_s": {str(s["commands"]): s["ready_s"] for s in starts},
        "replay_s": {str(s["commands"]): s["replay_s"] for s in starts},
        "snapshot_throughput_ratio": throughput["snapshot_throughput_ratio"],
        "starts": starts,
        "pause": pause,
        "throughput": throughput,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for s in starts:
            tail = s["commands"] - s["snapshot_at"]
            print(f"{s['commands']:>9} commands ({s['resting']} resting): replay "
                  f"{s['replay_s']} s, snapshot + {tail} tail {s['ready_s']} s")  # fmt: skip
        lag = pause["loop_lag_ms_max_during_write"]
        print(f"pause at {pause['resting']} resting: copy {pause['copy_ms']} ms on the loop, "
              f"write {pause['write_s']} s in a thread (loop lag max {lag} ms)")  # fmt: skip
        print(f"throughput with/without snapshots: {throughput['snapshot_throughput_ratio']} "
              f"(pairs {throughput['pair_ratios']})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
