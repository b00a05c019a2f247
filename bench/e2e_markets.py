"""Many markets on real grapes: what n markets cost per order, and one market's outage.

Run through ``bench/e2e_bench.py --markets 1,2,3 [--markets-outage [K]] [--json]``
(its other runs too, unless ``--markets-only``). Every process is started here and
stopped here by its PID.

**Cost per order** (``--markets``), for each n, in one run: two fresh grapes, shared by
the n markets as in production, and for each market MKT1..MKTn its own sequencer
(``bin/submitOrderWorker.py --market MKTi`` through the first grape) and matcher
(``bin/processOrderWorker.py --market MKTi`` through the second), one process each with
files of its own. The load is ``--orders`` orders in all, split evenly over the markets,
one load process per market (this module's ``load`` subcommand: orders signed for its
market, sent to its market's ``submit_order``), each with ``--concurrency`` orders in
flight, all starting at the same instant (with ``--markets-each``, ``--orders`` to each
market instead: every market's book then grows as the one market's does, where a split
load gives n books 1/n the size). Measured over that load:

- ``orders_per_s``: all orders over the time from the first submit to the moment the last
  market's matcher head covers its last order;
- ``cpu_us_per_order``: CPU microseconds per order summed over the exchange's processes
  (both grapes, every sequencer and matcher; not the load processes), and by role;
- ``p99_ms``: the submit → acknowledgement p99 over all orders (closed loop, so mostly
  queueing: the throughput load keeps ``--concurrency`` in flight per market);
- ``idle_cpu_ms_per_s``: before the load, the CPU the same processes take idle
  (announcing, polling), in ms per second, over ``--markets-idle`` seconds.

With ``--markets-repeat R`` the n are run R times interleaved (1, 2, 3, 1, 2, 3, ...)
and each figure is the median.

**Outage isolation** (``--markets-outage K``, K = 2 or 3): K markets, each offered
``--outage-rate`` orders/s (open loop) for ``--outage-seconds``; market A (MKT1) has a
replica client (``bin/client.py market=MKT1``). A's latency per order is from its submit
to A's replica showing a version that covers it. Runs alternate without and with an
outage (``--outage-pairs`` pairs): in the outage run, B's matcher (MKT2) is stopped
with SIGSTOP a quarter into the offered window and continued (SIGCONT) at its end, and
B has caught up before the next run starts. Reported: A's p99 over the orders A sent in that window
(from a quarter in to the end; the same window in the runs without), without and with
(medians over the pairs), their ratio, and each pair's ratio; each run's p99 over all
of A's orders; and the CPU µs per order of the exchange's processes at that offered rate
(``cpu_us_per_order``: the median of the runs without the outage).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from e2e_bench import PY, Proc, Watcher, cpu_seconds, load_order, quantile, send_orders, start
from peers import grapes

from exchange.protocol import Head, HeadRequest, market_names, sign_order
from transports import RemoteError, TransportError, open_transport
from transports.grenache.testing import Grape, free_port

__all__ = ["add_arguments", "market_symbols", "run", "wanted"]

SCRIPT = Path(__file__).resolve()
_PUTS_RE = re.compile(r" applied seq=\d+\.\.\d+ .* puts=(\d+)")
START_DELAY = 2.0
"""Seconds between starting the load processes and their common first submit (they
sign their orders before it), plus 100 µs per order each signs."""


def market_symbols(n: int) -> list[str]:
    """The benchmark's markets: MKT1..MKTn (never the default market, so every market
    serves the same kind of names, with ``:MKTi`` appended)."""
    return [f"MKT{i + 1}" for i in range(n)]


# ------------------------------------------------------------------------- load (child)


async def _load(args: argparse.Namespace) -> None:
    """The ``load`` subcommand: `count` orders for `market` from `start_at` on; prints
    [seq, sent, acked] per order as JSON."""
    rng = random.Random(args.seed)
    key = Ed25519PrivateKey.generate()  # a client of its own: signed before the clock starts
    orders = [
        sign_order(load_order(args.client, n, rng), key, args.market) for n in range(args.count)
    ]
    name = market_names(args.market).submit_order
    records: list[tuple[int, float, float]] = []
    async with open_transport("grenache", grape=args.grape) as transport:
        await anyio.sleep(max(0.0, args.start_at - time.time()))
        started = time.time()
        await send_orders(transport.request, name, orders, records, args=args, started=started)
    json.dump(records, sys.stdout)


# ------------------------------------------------------------------------- processes


@dataclass
class Market:
    """One market's two worker processes."""

    symbol: str
    submit: Proc
    process: Proc


def _wait_ready(procs: list[Proc], logs: list[Path], timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    for proc, log in zip(procs, logs, strict=True):
        while "worker ready" not in log.read_text(errors="replace"):
            if proc.popen.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{proc.name} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)


@contextmanager
def markets_on_grapes(
    workdir: Path, symbols: list[str]
) -> Iterator[tuple[list[Grape], list[Market]]]:
    """Two grapes and a sequencer and a matcher per market, ready; all stopped at exit."""
    with grapes(2) as started, ExitStack() as stack:
        procs: list[Proc] = []
        logs: list[Path] = []

        def stop_all() -> None:
            for proc in reversed(procs):
                if proc.popen.poll() is None:
                    os.kill(proc.popen.pid, signal.SIGCONT)  # one stopped by the outage run
                proc.stop()

        stack.callback(stop_all)
        markets = []
        for symbol in symbols:
            pair = []
            for role, script, grape, db in (
                ("submit", "bin/submitOrderWorker.py", started[0].url, "journal"),
                ("process", "bin/processOrderWorker.py", started[1].url, "process"),
            ):
                log = workdir / f"{role}-{symbol}.log"
                argv = [
                    PY,
                    script,
                    f"grape={grape}",
                    "--market",
                    symbol,
                    "--db",
                    str(workdir / f"{db}-{symbol}.db"),
                    "--port",
                    str(free_port()),
                ]
                pair.append(start(f"{role}-{symbol}", argv, log))
                procs.append(pair[-1])
                logs.append(log)
            markets.append(Market(symbol, pair[0], pair[1]))
        _wait_ready(procs, logs)
        yield started, markets


def _start_loads(
    grape: str,
    workdir: Path,
    symbols: list[str],
    *,
    count: int,
    concurrency: int,
    rate: float,
    tag: str,
) -> tuple[list[Proc], float]:
    """One load process per market, all to start submitting at the returned wall time."""
    start_at = time.time() + START_DELAY + count * 1e-4
    loads = [
        start(
            f"load-{tag}-{symbol}",
            [
                PY,
                str(SCRIPT),
                "load",
                "--grape",
                grape,
                "--market",
                symbol,
                "--count",
                str(count),
                "--concurrency",
                str(concurrency),
                "--rate",
                str(rate),
                "--client",
                f"py{tag}{i}",
                "--seed",
                str(i + 1),
                "--start-at",
                str(start_at),
            ],
            workdir / f"load-{tag}-{symbol}.log",
            stdout=subprocess.PIPE,
        )
        for i, symbol in enumerate(symbols)
    ]
    return loads, start_at


def _records(load: Proc, workdir: Path) -> list[tuple[int, float, float]]:
    out, _ = load.popen.communicate(timeout=900)
    if load.popen.returncode != 0:
        raise RuntimeError(f"{load.name} failed: {(workdir / f'{load.name}.log').read_text()}")
    return [(int(r[0]), float(r[1]), float(r[2])) for r in json.loads(out)]


async def _head(transport: Any, symbol: str, after: int) -> int:
    name = market_names(symbol).orderbook_head
    wire = HeadRequest(after, 2_000).to_wire() if after >= 0 else None
    while True:
        try:
            return Head.from_wire(await transport.request(name, wire, timeout=10)).seq
        except (TransportError, RemoteError):
            await anyio.sleep(0.05)


async def wait_heads(grape: str, targets: dict[str, int], timeout: float) -> dict[str, float]:
    """Long-poll each market's matcher until its head reaches its target seq; return the
    wall time each did."""
    done: dict[str, float] = {}
    async with open_transport("grenache", grape=grape) as transport:

        async def one(symbol: str, seq: int) -> None:
            head = await _head(transport, symbol, -1)
            while head < seq:
                head = await _head(transport, symbol, head)
            done[symbol] = time.time()

        with anyio.fail_after(timeout):
            async with anyio.create_task_group() as tg:
                for symbol, seq in targets.items():
                    tg.start_soon(one, symbol, seq)
    return done


# ------------------------------------------------------------------------- cost per order


def cost_run(n: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """n markets under the throughput load: rate, CPU µs per order, submit p99."""
    symbols = market_symbols(n)
    with markets_on_grapes(workdir, symbols) as (started, markets):
        measured = {
            "grapes": [g.pid for g in started],
            "submit": [m.submit.popen.pid for m in markets],
            "process": [m.process.popen.pid for m in markets],
        }
        # The fixed cost: every exchange process idle (announcing, polling) for a while.
        idle0 = {role: [cpu_seconds(pid) for pid in pids] for role, pids in measured.items()}
        time.sleep(args.markets_idle)
        idle = {
            role: round(
                sum(cpu_seconds(pid) - c for pid, c in zip(pids, idle0[role], strict=True))
                * 1e3
                / args.markets_idle,
                1,
            )
            for role, pids in measured.items()
        }
        per_market = args.orders if args.markets_each else args.orders // n
        loads, start_at = _start_loads(
            started[0].url,
            workdir,
            symbols,
            count=per_market,
            concurrency=args.concurrency,
            rate=0.0,
            tag=f"n{n}",
        )
        time.sleep(max(0.0, start_at - time.time() - 0.05))
        cpu0 = {role: [cpu_seconds(pid) for pid in pids] for role, pids in measured.items()}
        records = {
            symbol: _records(load, workdir) for symbol, load in zip(symbols, loads, strict=True)
        }
        targets = {symbol: max(r[0] for r in recs) for symbol, recs in records.items()}
        done = anyio.run(wait_heads, started[1].url, targets, 600.0)
        cpu = {
            role: sum(cpu_seconds(pid) - c for pid, c in zip(pids, cpu0[role], strict=True))
            for role, pids in measured.items()
        }
    every = [r for recs in records.values() for r in recs]
    orders = len(every)
    matcher_logs = "".join((workdir / f"process-{s}.log").read_text() for s in symbols)
    sequencer_logs = "".join((workdir / f"submit-{s}.log").read_text() for s in symbols)
    first = min(r[1] for r in every)
    submit_ms = [(r[2] - r[1]) * 1000 for r in every]
    by_role = {role: round(seconds * 1e6 / orders) for role, seconds in cpu.items()}
    return {
        "n": n,
        "orders": orders,
        "orders_per_market": per_market,
        "orders_per_s": round(orders / (max(done.values()) - first), 1),
        "cpu_us_per_order": round(sum(cpu.values()) * 1e6 / orders),
        "cpu_us_per_order_by_role": by_role,
        "p99_ms": round(quantile(submit_ms, 0.99), 1),
        "p50_ms": round(quantile(submit_ms, 0.5), 1),
        # What per-order costs follow: orders per journal commit and per version.
        "orders_per_commit": round(orders / max(1, sequencer_logs.count(" accepted seq=")), 1),
        "orders_per_version": round(orders / max(1, matcher_logs.count(" applied seq=")), 1),
        "puts_per_order": round(sum(map(int, _PUTS_RE.findall(matcher_logs))) / orders, 3),
        "idle_cpu_ms_per_s": {**idle, "total": round(sum(idle.values()), 1)},
        "market_orders_per_s": {
            s: round(len(records[s]) / (done[s] - min(r[1] for r in records[s])), 1)
            for s in symbols
        },
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One n's figures over its repeats: the medians (each run kept under ``runs``)."""
    if len(runs) == 1:
        return runs[0]
    keys = (
        "orders_per_s",
        "cpu_us_per_order",
        "p99_ms",
        "p50_ms",
        "orders_per_commit",
        "orders_per_version",
        "puts_per_order",
    )
    merged = {k: runs[0][k] for k in ("n", "orders", "orders_per_market")}
    merged.update({k: round(statistics.median(r[k] for r in runs), 3) for k in keys})
    for group in ("cpu_us_per_order_by_role", "idle_cpu_ms_per_s"):
        merged[group] = {
            part: round(statistics.median(r[group][part] for r in runs), 1)
            for part in runs[0][group]
        }
    merged["runs"] = runs
    return merged


# ------------------------------------------------------------------------- outage


def outage_runs(k: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Market A's submit → replica p99 at an offered rate, without and with B's matcher
    stopped, alternating."""
    symbols = market_symbols(k)
    rate, seconds = args.outage_rate, args.outage_seconds
    runs: list[dict[str, Any]] = []
    with markets_on_grapes(workdir, symbols) as (started, markets):
        a, b = markets[0], markets[1]
        pids = [g.pid for g in started] + [
            proc.popen.pid for m in markets for proc in (m.submit, m.process)
        ]
        replica = start(
            "replica-A",
            [
                PY,
                "bin/client.py",
                f"grape={started[0].url}",
                "--json",
                f"market={a.symbol}",
                f"--matcher-key={workdir / f'matcher-{a.symbol}.pub'}",
            ],
            workdir / "replica-A.log",
            stdout=subprocess.PIPE,
            env={**os.environ, "DEX_KEY_DIR": str(workdir / "keys")},
        )
        try:
            watcher = Watcher(replica)
            threading.Thread(target=watcher.follow, daemon=True).start()
            # A warm-up: every market trades a little, A's replica follows.
            _offered(started, workdir, symbols, watcher, pids, rate, 1.0, "warm", None)
            for pair in range(args.outage_pairs):
                for stopped in (None, b):
                    tag = f"{'out' if stopped else 'ok'}{pair}"
                    run = _offered(
                        started, workdir, symbols, watcher, pids, rate, seconds, tag, stopped
                    )
                    runs.append({"outage": stopped is not None, **run})
        finally:
            replica.stop()
    without = [r["a_window_p99_ms"] for r in runs if not r["outage"]]
    with_outage = [r["a_window_p99_ms"] for r in runs if r["outage"]]
    p99_without, p99_with = statistics.median(without), statistics.median(with_outage)
    return {
        "markets": k,
        "offered_per_s_per_market": rate,
        "seconds": seconds,
        "stopped": f"{b.symbol}'s matcher (SIGSTOP at {seconds / 4:g} s, SIGCONT at {seconds:g} s)",
        "a_p99_ms_without": p99_without,
        "a_p99_ms_with": p99_with,
        "p99_ratio": round(p99_with / p99_without, 3),
        # What the offered load costs, every market and the grapes, without the outage.
        "cpu_us_per_order": statistics.median(
            r["cpu_us_per_order"] for r in runs if not r["outage"]
        ),
        "pair_ratios": [round(w / o, 3) for o, w in zip(without, with_outage, strict=True)],
        "runs": runs,
    }


def _offered(
    started: list[Grape],
    workdir: Path,
    symbols: list[str],
    watcher: Watcher,
    pids: list[int],
    rate: float,
    seconds: float,
    tag: str,
    stopped: Market | None,
) -> dict[str, Any]:
    """Every market offered `rate` orders/s for `seconds`; `stopped`'s matcher stopped
    from a quarter in to the end. A's latencies, and the CPU per order of the exchange's
    processes (`pids`), every market caught up."""
    count = max(1, int(rate * seconds))
    loads, start_at = _start_loads(
        started[0].url, workdir, symbols, count=count, concurrency=64, rate=rate, tag=tag
    )
    timers = []
    if stopped is not None:
        # Continued at the end of the offered window, not after the loads: B's own load
        # ends only once B's sequencer has answered it all.
        pid = stopped.process.popen.pid
        for at, signum in ((seconds / 4, signal.SIGSTOP), (seconds, signal.SIGCONT)):
            timer = threading.Timer(start_at + at - time.time(), os.kill, (pid, signum))
            timer.start()
            timers.append(timer)
    try:
        time.sleep(max(0.0, start_at - time.time() - 0.05))
        cpu0 = sum(cpu_seconds(pid) for pid in pids)
        records = {s: _records(load, workdir) for s, load in zip(symbols, loads, strict=True)}
    finally:
        for timer in timers:
            timer.cancel()
        if stopped is not None:
            time.sleep(0.01)
            os.kill(stopped.process.popen.pid, signal.SIGCONT)
    a = records[symbols[0]]
    last = max(r[0] for r in a)
    deadline = time.time() + 60
    while watcher.seq < last and time.time() < deadline:
        time.sleep(0.02)
    seen, window, missing = [], [], 0
    for seq, sent, _acked in a:
        when = watcher.time_of(seq)
        if when is None:
            missing += 1
            continue
        seen.append((when - sent) * 1000)
        if start_at + seconds / 4 <= sent < start_at + seconds:
            window.append(seen[-1])  # sent while B's matcher is (or would be) stopped
    # Every market (B too, after its outage) caught up before the next run.
    targets = {s: max(r[0] for r in recs) for s, recs in records.items()}
    done = anyio.run(wait_heads, started[1].url, targets, 300.0)
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu0
    submit_ms = {s: [(r[2] - r[1]) * 1000 for r in recs] for s, recs in records.items()}
    return {
        "a_p50_ms": round(quantile(seen, 0.5), 1),
        "a_p99_ms": round(quantile(seen, 0.99), 1),
        "a_window_p99_ms": round(quantile(window, 0.99), 1),
        "a_missing": missing,
        "cpu_us_per_order": round(cpu * 1e6 / sum(len(recs) for recs in records.values())),
        "a_submit_p99_ms": round(quantile(submit_ms[symbols[0]], 0.99), 1),
        "b_submit_p99_ms": round(quantile(submit_ms[symbols[1]], 0.99), 1),
        # B's matcher caught up with B's last order this long after the offered window
        # (the proof that the outage happened: its backlog applied after SIGCONT).
        "b_head_after_window_s": round(done[symbols[1]] - (start_at + seconds), 2),
    }


# ------------------------------------------------------------------------- the e2e_bench hooks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the markets runs, on `bench/e2e_bench.py`'s parser."""
    parser.add_argument(
        "--markets",
        metavar="N,N",
        help="also run n markets for each n (e.g. 1,2,3): a sequencer and a matcher process"
        " per market on shared grapes, --orders split over them; adds 'markets' to the JSON",
    )
    parser.add_argument(
        "--markets-repeat", type=int, default=1, metavar="R", help="each n R times (medians)"
    )
    parser.add_argument(
        "--markets-idle",
        type=float,
        default=3.0,
        metavar="S",
        help="seconds the n markets' processes are measured idle first (3)",
    )
    parser.add_argument(
        "--markets-each",
        action="store_true",
        help="--orders to each market (n times the orders, every market's book as big as"
        " the one market's) instead of --orders split over the n markets",
    )
    parser.add_argument(
        "--markets-only", action="store_true", help="only the markets runs (no sweep, versions)"
    )
    parser.add_argument(
        "--markets-outage",
        type=int,
        nargs="?",
        const=3,
        default=0,
        metavar="K",
        help="also K markets (2-3, default 3) at --outage-rate: market A's p99 with and"
        " without B's matcher stopped; adds 'markets_outage' to the JSON",
    )
    parser.add_argument(
        "--outage-rate", type=float, default=100.0, help="orders/s offered per market (100)"
    )
    parser.add_argument("--outage-seconds", type=float, default=10.0, help="per run (10)")
    parser.add_argument("--outage-pairs", type=int, default=2, help="runs without/with (2)")


def wanted(args: argparse.Namespace) -> bool:
    return bool(args.markets or args.markets_outage)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The markets runs asked for: ``{"markets": [...], "markets_outage": {...}}``."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dex-markets-") as tmp:
        root = args.keep or Path(tmp)
        if args.markets:
            ns = [int(n) for n in args.markets.split(",")]
            runs: dict[int, list[dict[str, Any]]] = {n: [] for n in ns}
            for repeat in range(args.markets_repeat):
                for n in ns:
                    workdir = root / f"markets-{n}-{repeat}"
                    workdir.mkdir(parents=True, exist_ok=True)
                    result = cost_run(n, args, workdir)
                    print(json.dumps(result), file=sys.stderr)
                    runs[n].append(result)
            out["markets"] = [_median_run(runs[n]) for n in ns]
            base = out["markets"][0]["cpu_us_per_order"]
            for entry in out["markets"]:
                entry["cpu_ratio"] = round(entry["cpu_us_per_order"] / base, 3)
            _cost_summary(out["markets"])
        if args.markets_outage:
            if not 2 <= args.markets_outage <= 3:
                raise SystemExit("--markets-outage: 2 or 3 markets")
            workdir = root / "outage"
            workdir.mkdir(parents=True, exist_ok=True)
            out["markets_outage"] = outage_runs(args.markets_outage, args, workdir)
            o = out["markets_outage"]
            print(
                f"outage: {o['markets']} markets at {o['offered_per_s_per_market']:g}/s each;"
                f" A's replica p99 {o['a_p99_ms_without']} ms without, {o['a_p99_ms_with']} ms"
                f" with {o['stopped']}: ratio {o['p99_ratio']} (pairs {o['pair_ratios']});"
                f" CPU µs per order at that rate {o['cpu_us_per_order']}"
            )
    return out


def _cost_summary(entries: list[dict[str, Any]]) -> None:
    print(
        "markets  orders/s  CPU µs/order (grapes+submit+process)  ratio  submit p99 ms"
        "  orders/version  idle CPU ms/s"
    )
    for e in entries:
        role = e["cpu_us_per_order_by_role"]
        parts = f"{role['grapes']:g}+{role['submit']:g}+{role['process']:g}"
        print(
            f"{e['n']:>7} {e['orders_per_s']:>9} {e['cpu_us_per_order']:>8} ({parts})"
            f"  {e['cpu_ratio']:>18}  {e['p99_ms']:>8}  {e['orders_per_version']:>14}"
            f"  {e['idle_cpu_ms_per_s']['total']:>13}"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        parser = argparse.ArgumentParser(prog="e2e_markets.py load")
        parser.add_argument("cmd")
        parser.add_argument("--grape", required=True)
        parser.add_argument("--market", required=True)
        parser.add_argument("--count", type=int, required=True)
        parser.add_argument("--concurrency", type=int, default=64)
        parser.add_argument("--rate", type=float, default=0.0)
        parser.add_argument("--client", default="py")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--start-at", type=float, default=0.0)
        anyio.run(_load, parser.parse_args())
        return
    sys.exit("run through bench/e2e_bench.py --markets 1,2,3 (see its --help)")


if __name__ == "__main__":
    main()
