"""End to end on real grapes: submit throughput, processing throughput, replica latency.

What runs (every process started here, stopped here by its PID):

- two grapes with the challenge's flags plus ``-b 127.0.0.1`` on free loopback ports
  (with ``--dht_maxValues`` raised for books that do not fit 1000 values: said in the
  output beside the figures);
- ``bin/submitOrderWorker.py`` through the first grape, ``bin/processOrderWorker.py``
  through the second, each with a fresh database (with ``--journal-servers N``, the
  sequencer's journal on N fresh NATS JetStream servers instead of SQLite: 1 a dev
  server, 3 a cluster with 3 replicas);
- R watching clients (``bin/client.py --json`` without an order): each keeps its own
  replica and prints every version it reaches;
- load processes: this script's own ``load`` subcommand (Python, the project's Grenache
  transport) and ``bench/node/submit_load.js`` (grenache-nodejs-http), submitting
  orders around a mid price so that about a third of them trade.

For each resting book size and replica count it (1) preloads the resting book (orders
far from the mid, which never trade), (2) waits for every replica to hold it, (3) runs
the throughput load: every load process submits as fast as its in-flight bound allows;
``processed_per_s`` is orders over the time from the first submit to the matcher's
head reaching the last one, ``submit_per_s`` orders over the time until the last
acknowledgement; (4) offers ``--rate`` orders/s (open loop) and measures, per order,
the time from its submit to the moment *every* replica shows a version that covers it.
Last, unless ``--no-versions``, the CPU of a one-order version at 1,000 and 100,000
resting orders (publisher and replica, `bench/versions_bench.py`, in this process), so
the JSON line has ``version_cpu_us_1k``/``_100k`` and ``puts_per_update_100k`` too.

Usage::

    .venv/bin/python bench/e2e_bench.py                      # the sweep, human summary
    .venv/bin/python bench/e2e_bench.py --quick --json       # one small run, JSON last
    .venv/bin/python bench/e2e_bench.py --markets 1,2,3 --markets-outage --markets-only --json

``--markets`` and ``--markets-outage``: many markets, one pipeline each (bench/e2e_markets.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import grape_calls
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from peers import REPO, grapes, nats_servers, node, node_env

from exchange.client import SubmitCoalescer
from exchange.protocol import ORDERBOOK_HEAD, SUBMIT_ORDER, Head, HeadRequest, sign_order
from exchange.versions import DEFAULT_REFRESH_BUDGET
from transports import RemoteError, TransportError, open_transport
from transports.grenache.testing import Grape, free_port

PY = sys.executable
NODE_LOAD = REPO / "bench" / "node" / "submit_load.js"


# ------------------------------------------------------------------------- orders


def _order(client: str, n: int, rng: random.Random, bids: range, asks: range) -> dict[str, Any]:
    side = rng.choice(("buy", "sell"))
    cents = rng.choice(bids if side == "buy" else asks)
    return {
        "clientId": client,
        "orderId": f"{client}-{n}",
        "side": side,
        "price": f"{cents // 100}.{cents % 100:02d}",
        "amount": f"{rng.randint(1, 40) / 8:.3f}",
    }


def load_order(client: str, n: int, rng: random.Random) -> dict[str, Any]:
    """An order around the mid (100): buys 99-100.5, sells 99.5-101, so some cross."""
    return _order(client, n, rng, range(9900, 10051), range(9950, 10101))


def resting_order(client: str, n: int, rng: random.Random) -> dict[str, Any]:
    """An order far from the mid (bids 50-90, asks 110-150): it rests and never trades."""
    return _order(client, n, rng, range(5000, 9001), range(11000, 15001))


# ------------------------------------------------------------------------- load (child)


async def _load(args: argparse.Namespace) -> None:
    """The ``load`` subcommand: submit `count` orders, print [seq, sent, acked] lines."""
    rng = random.Random(args.seed)
    make = resting_order if args.resting else load_order
    key = Ed25519PrivateKey.generate()  # a client of its own: signed before the clock starts
    orders = [sign_order(make(args.client, n, rng), key) for n in range(args.count)]
    records: list[tuple[int, float, float]] = []
    started = time.time()
    cpu_started = time.process_time()
    if args.batch > 1:
        await _load_batches(args, orders, records)
        json.dump(records, sys.stdout)
        _load_cpu(cpu_started, len(records))
        return
    async with open_transport("grenache", grape=args.grape) as transport:
        send: Any = transport.request
        if args.linger >= 0:  # the client library's coalescing of what is in flight
            coalescer = SubmitCoalescer(transport, linger=args.linger)

            async def send(name: str, payload: Any, *, timeout: float) -> Any:
                return await coalescer.request(payload, timeout=timeout)

        await send_orders(send, SUBMIT_ORDER, orders, records, args=args, started=started)
    json.dump(records, sys.stdout)
    _load_cpu(cpu_started, len(records))


def _load_cpu(since: float, orders: int) -> None:
    """The load's CPU while it sent and then wrote its records (signing and start-up not
    counted), on stderr: the last line of its log, which `run_loads` reads."""
    sent = (time.process_time() - since) * 1e6 / max(1, orders)
    print(json.dumps({"load_send_cpu_us_per_order": round(sent)}), file=sys.stderr)


async def send_orders(
    send: Any,
    name: str,
    orders: list[dict[str, Any]],
    records: list[tuple[int, float, float]],
    *,
    args: argparse.Namespace,
    started: float,
) -> None:
    """Send `orders` to `name`, `args.concurrency` in flight (at `args.rate` a second
    from `started`, when set), each until acknowledged; append [seq, sent, acked]."""
    pending = iter(enumerate(orders))

    async def worker() -> None:
        for i, order in pending:
            if args.rate:
                await anyio.sleep(max(0.0, started + i / args.rate - time.time()))
            sent = time.time()
            while True:
                try:
                    reply = await send(name, order, timeout=30)
                    break
                except TransportError:
                    await anyio.sleep(0.05)
            records.append((reply["seq"], sent, time.time()))

    async with anyio.create_task_group() as tg:
        for _ in range(args.concurrency):
            tg.start_soon(worker)


async def _load_batches(
    args: argparse.Namespace, orders: list[dict[str, Any]], records: list[tuple[int, float, float]]
) -> None:
    """``load --batch N``: the orders in batches of N per ``submit_order`` request, with
    as many orders in flight as the single load (``--concurrency`` // N requests)."""
    batches = iter([orders[i : i + args.batch] for i in range(0, len(orders), args.batch)])
    async with open_transport("grenache", grape=args.grape) as transport:

        async def worker() -> None:
            for batch in batches:
                sent = time.time()
                while True:
                    try:
                        reply = await transport.request(SUBMIT_ORDER, batch, timeout=30)
                        break
                    except TransportError:
                        await anyio.sleep(0.05)
                acked = time.time()
                records.extend((r["seq"], sent, acked) for r in reply if "seq" in r)

        async with anyio.create_task_group() as tg:
            for _ in range(max(1, args.concurrency // args.batch)):
                tg.start_soon(worker)


# ------------------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


def start(name: str, argv: list[str], log: Path, **kw: Any) -> Proc:
    out = open(log, "wb")  # noqa: SIM115 - closed with the process
    popen = subprocess.Popen(
        argv, cwd=REPO, stdout=kw.pop("stdout", out), stderr=out, start_new_session=True, **kw
    )
    return Proc(name, popen)


@dataclass
class Watcher:
    """A replica client; a thread reads its JSON lines and notes when each seq arrived."""

    proc: Proc
    reached: list[tuple[float, int]] = field(default_factory=list)

    def follow(self) -> None:
        assert self.proc.popen.stdout is not None
        for line in self.proc.popen.stdout:
            now = time.time()
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "book":
                self.reached.append((now, int(record["seq"])))

    @property
    def seq(self) -> int:
        return self.reached[-1][1] if self.reached else 0

    def time_of(self, seq: int) -> float | None:
        for when, reached in self.reached:
            if reached >= seq:
                return when
        return None


@contextmanager
def exchange_on_grapes(
    workdir: Path,
    max_values: int | None,
    profile: Path | None = None,
    journal_servers: int = 0,
    forward_interval: float = 0.0,
    matcher_args: tuple[str, ...] = (),
    counter_dir: Path | None = None,
) -> Iterator[tuple[list[Grape], list[Proc]]]:
    extra = ["--dht_maxValues", str(max_values)] if max_values else []
    with grapes(2, extra_args=extra, counter_dir=counter_dir) as started, ExitStack() as stack:
        submit_port, process_port = free_port(), free_port()
        journal = ["--db", str(workdir / "journal.db")]
        if journal_servers:
            urls = stack.enter_context(nats_servers(journal_servers, workdir / "nats"))
            journal += ["--journal", ",".join(urls)]

        forward = ["--forward-interval", str(forward_interval)] if forward_interval else []
        if profile:
            profile.mkdir(parents=True, exist_ok=True)

        def python(name: str) -> list[str]:
            return [PY, __file__, "profiled", str(profile / f"{name}.prof")] if profile else [PY]

        procs = [
            start("submit", [*python("submit"), "bin/submitOrderWorker.py",
                             f"grape={started[0].url}", *journal, "--port", str(submit_port),
                             *forward],
                  workdir / "submit.log"),
            start("process", [*python("process"), "bin/processOrderWorker.py",
                              f"grape={started[1].url}",
                              "--db", str(workdir / "process.db"), "--port", str(process_port),
                              *matcher_args],
                  workdir / "process.log"),
        ]  # fmt: skip

        # Every process in `procs` at exit is stopped, those the caller adds (replicas)
        # too, also when the run fails.
        def stop_all() -> None:
            for proc in reversed(procs):
                proc.stop()

        stack.callback(stop_all)
        yield started, procs


async def head_of(grape: str) -> int:
    async with open_transport("grenache", grape=grape) as transport:
        while True:
            try:
                reply = await transport.request(ORDERBOOK_HEAD, None, timeout=5)
                return Head.from_wire(reply).seq
            except TransportError:
                await anyio.sleep(0.1)


async def wait_head(grape: str, seq: int, timeout: float) -> float:
    """Long-poll the matcher until its head reaches `seq`; return the wall time then.

    A matcher that refuses long polls (an older version, measured for comparison) is
    polled every 5 ms instead.
    """
    async with open_transport("grenache", grape=grape) as transport:
        with anyio.fail_after(timeout):
            after, long_poll = -1, True
            while True:
                try:
                    wire = HeadRequest(after, 2_000).to_wire() if after >= 0 and long_poll else None
                    reply = await transport.request(ORDERBOOK_HEAD, wire, timeout=10)
                except RemoteError as exc:
                    long_poll = long_poll and not exc.message.startswith("ERR_BAD_REQUEST")
                    await anyio.sleep(0.005)
                    continue
                except TransportError:
                    await anyio.sleep(0.05)
                    continue
                if not long_poll:
                    await anyio.sleep(0.005)
                head = Head.from_wire(reply)
                if head.seq >= seq:
                    return time.time()
                after = head.seq


def run_loads(
    grape: str, workdir: Path, *, count: int, concurrency: int, rate: float = 0.0,
    resting: bool = False, node_count: int = 0, tag: str = "", batch: int = 1,
    linger: float = -1.0,
) -> tuple[list[tuple[int, float, float]], dict[str, Any] | None]:  # fmt: skip
    """Run one Python load process (and a Node one) to the end; their records (and the
    Node load's summary, with ``cpu``: both loads' CPU µs per order)."""
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    py = start(
        f"load{tag}",
        [PY, __file__, "load", "--grape", grape, "--count", str(count),
         "--concurrency", str(concurrency), "--rate", str(rate), "--client", f"py{tag}",
         "--batch", str(batch), "--linger", str(linger),
         *(["--resting"] if resting else [])],
        workdir / f"load{tag}.log", stdout=subprocess.PIPE,
    )  # fmt: skip
    node_proc = None
    if node_count:
        node_proc = start(
            f"node{tag}",
            [node(), str(NODE_LOAD), "--grape", grape, "--count", str(node_count),
             "--concurrency", str(concurrency), "--client", f"js{tag}"],
            workdir / f"node{tag}.log", stdout=subprocess.PIPE, env=node_env(),
        )  # fmt: skip
    out, _ = py.popen.communicate(timeout=600)
    if py.popen.returncode != 0:
        raise RuntimeError(f"load process failed: {(workdir / f'load{tag}.log').read_text()}")
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    records = [tuple(r) for r in json.loads(out)]
    cpu: dict[str, int] = {"python": _cpu_us(usage0, usage1, len(records))}
    for line in reversed((workdir / f"load{tag}.log").read_text().splitlines()):
        if line.startswith('{"load_send_cpu_us_per_order"'):
            cpu["python_sending"] = json.loads(line)["load_send_cpu_us_per_order"]
            break
    node_result = None
    if node_proc is not None:
        node_out, _ = node_proc.popen.communicate(timeout=600)
        usage2 = resource.getrusage(resource.RUSAGE_CHILDREN)
        node_result = json.loads(node_out.decode().strip().splitlines()[-1])
        node_records = node_result.pop("records")
        records += [tuple(r) for r in node_records]
        cpu["node"] = _cpu_us(usage1, usage2, len(node_records))
        node_result["cpu"] = cpu
    return records, node_result


def _cpu_us(before: resource.struct_rusage, after: resource.struct_rusage, orders: int) -> int:
    """CPU µs per order of the children reaped between two `getrusage` readings (their
    whole life: start-up, signing and sending)."""
    seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return round(seconds * 1e6 / max(1, orders))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# ------------------------------------------------------------------------- one config


def throughput(
    grapes: list[Grape], workdir: Path, watchers: list[Watcher], measured: dict[str, int],
    args: argparse.Namespace, node_count: int, batch: int, tag: str, linger: float = -1.0,
) -> dict[str, Any]:  # fmt: skip
    """One throughput load (`batch` orders per request) and what it cost: rates,
    submit latency, CPU µs per order of every exchange process (``total``: their sum,
    the load processes not included) and DHT puts per order (the matcher's log)."""
    g0, g1 = grapes[0].url, grapes[1].url
    process_log = workdir / "process.log"
    log_from = process_log.stat().st_size
    cpu0 = {name: cpu_seconds(pid) for name, pid in measured.items()}
    t0 = time.time()
    with grape_calls.Counting(grapes, _counter_dir(workdir, args)) as calls:
        records, node = run_loads(
            g0, workdir, count=args.orders - node_count, concurrency=args.concurrency,
            node_count=node_count, tag=tag, batch=batch, linger=linger,
        )  # fmt: skip
        last = max(r[0] for r in records)
        done = anyio.run(wait_head, g1, last, 600.0)
        deadline = time.time() + 120
        while any(w.seq < last for w in watchers) and time.time() < deadline:
            time.sleep(0.02)
    cpu = {n: cpu_seconds(pid) - cpu0[n] for n, pid in measured.items()}
    log = process_log.read_text()
    versions = sum(1 for line in log.splitlines() if " applied seq=" in line)
    with process_log.open("rb") as file:
        file.seek(log_from)
        puts = sum(int(m) for m in _PUTS_RE.findall(file.read().decode(errors="replace")))
    first_sent = min(r[1] for r in records)
    last_ack = max(r[2] for r in records)
    submit_ms = [(r[2] - r[1]) * 1000 for r in records]
    per_order = {name: round(seconds * 1e6 / len(records)) for name, seconds in cpu.items()}
    return {
        "orders": len(records),
        "processed_per_s": round(len(records) / (done - first_sent), 1),
        "submit_per_s": round(len(records) / (last_ack - first_sent), 1),
        "submit_p50_ms": round(quantile(submit_ms, 0.5), 2),
        "submit_p99_ms": round(quantile(submit_ms, 0.99), 2),
        "node_submit_per_s": round(node["rps"], 1) if node else None,
        **({"load_cpu_us_per_order": node["cpu"]} if node else {}),
        "wall_s": round(time.time() - t0, 2),
        "versions": versions,
        "cpu_us_per_order": {**per_order, "total": round(sum(cpu.values()) * 1e6 / len(records))},
        "puts_per_order": round(puts / len(records), 3),
        **({"grape_calls_per_1000": counted} if (counted := calls.report(len(records))) else {}),
    }


def _counter_dir(workdir: Path, args: argparse.Namespace) -> Path | None:
    """Where the grapes count their calls (``--count-grape-calls``), else None."""
    return workdir / "grape-counts" if getattr(args, "count_grape_calls", False) else None


# The matcher's versions, and the book pages it puts after them (`BookFlusher`).
_PUTS_RE = re.compile(r"(?: applied seq=\d+\.\.\d+ .*| flushed book pages of .*:) puts=(\d+)")


def run_config(book: int, replicas: int, args: argparse.Namespace) -> dict[str, Any]:
    max_values = None if book <= 1_000 else max(4 * book // 10, 4_000)
    with tempfile.TemporaryDirectory(prefix="dex-e2e-") as tmp:
        workdir = Path(tmp)
        if args.keep:
            workdir = args.keep
            workdir.mkdir(parents=True, exist_ok=True)
        servers = args.journal_servers
        after: tuple[str, ...] = ("--book-pages-after",) if args.book_pages_after else ()
        after += ("--book-pages-first",) if args.book_pages_first else ()
        after += () if args.book_interval is None else ("--book-interval", args.book_interval)
        after += () if args.version_linger is None else ("--version-linger", args.version_linger)
        counters = _counter_dir(workdir, args)
        with exchange_on_grapes(
            workdir, max_values, args.profile, servers, args.forward_interval, after, counters
        ) as (grapes, procs):
            g0, g1 = grapes[0].url, grapes[1].url
            anyio.run(head_of, g1)
            # 1. The resting book.
            if book:
                run_loads(g0, workdir, count=book, concurrency=64, resting=True, tag="rest")
                anyio.run(wait_head, g1, book, 600.0)
            base = anyio.run(head_of, g1)
            # 2. Replicas, caught up with the resting book.
            watchers: list[Watcher] = []
            for i in range(replicas):
                grape = (g0, g1)[i % 2]
                # Each run has a matcher key of its own: give it (the key the client
                # would otherwise trust on first use is kept in the user's key directory).
                # With --profile, the first replica runs under cProfile too.
                py = [PY, __file__, "profiled", str(args.profile / "replica0.prof")] if (
                    args.profile and i == 0) else [PY]  # fmt: skip
                proc = start(f"replica{i}", [*py, "bin/client.py", f"grape={grape}", "--json",
                                             f"--matcher-key={workdir / 'matcher.pub'}"],
                             workdir / f"replica{i}.log", stdout=subprocess.PIPE,
                             env={**os.environ, "DEX_KEY_DIR": str(workdir / "keys")})  # fmt: skip
                procs.append(proc)
                watcher = Watcher(proc)
                threading.Thread(target=watcher.follow, daemon=True).start()
                watchers.append(watcher)
            deadline = time.time() + args.catch_up
            while any(w.seq < base for w in watchers):
                if time.time() > deadline:
                    logs = "\n".join(
                        (workdir / f"replica{i}.log").read_text()[-2000:] for i in range(replicas)
                    )
                    raise TimeoutError(f"replicas did not catch up with the resting book:\n{logs}")
                time.sleep(0.05)
            # 3. Throughput: as fast as the in-flight bounds allow (single submits, then
            # with --batch N the same load in batches of N, against the same exchange).
            measured = {"grape0": grapes[0].pid, "grape1": grapes[1].pid,
                        **{p.name: p.popen.pid for p in procs}}  # fmt: skip
            node_count = args.orders // 4 if args.node else 0
            result: dict[str, Any] = {
                "book": book,
                "replicas": replicas,
                "dht_max_values": max_values or 1000,
                "journal": f"jetstream x{servers}" if servers else "sqlite",
                **throughput(grapes, workdir, watchers, measured, args, node_count, 1, "tp"),
            }
            if args.batch > 1:
                result["batched"] = {
                    "batch": args.batch,
                    **throughput(grapes, workdir, watchers, measured, args, 0, args.batch, "bt"),
                }
            if args.linger >= 0:
                result["coalesced"] = {
                    "linger_ms": args.linger * 1000,
                    **throughput(
                        grapes, workdir, watchers, measured, args, 0, 1, "co", args.linger
                    ),
                }
            # 4. Latency to every replica at an offered rate.
            if watchers and args.rate:
                count = int(args.rate * args.latency_seconds)
                log_from = (workdir / "process.log").stat().st_size
                cpu0 = {name: cpu_seconds(pid) for name, pid in measured.items()}
                with grape_calls.Counting(grapes, _counter_dir(workdir, args)) as calls:
                    lat, _ = run_loads(g0, workdir, count=count, concurrency=64,
                                       rate=args.rate, tag="lat")  # fmt: skip
                    last = max(r[0] for r in lat)
                    deadline = time.time() + 60
                    while any(w.seq < last for w in watchers) and time.time() < deadline:
                        time.sleep(0.05)
                by_process = {n: cpu_seconds(pid) - cpu0[n] for n, pid in measured.items()}
                cpu = sum(by_process.values())
                with (workdir / "process.log").open("rb") as file:
                    file.seek(log_from)
                    tail = file.read().decode(errors="replace")
                puts = sum(int(m) for m in _PUTS_RE.findall(tail))
                seen: list[float] = []
                missing = 0
                for seq, sent, _ack in lat:
                    times = [w.time_of(seq) for w in watchers]
                    if any(t is None for t in times):
                        missing += 1
                        continue
                    seen.append((max(t for t in times if t is not None) - sent) * 1000)
                result.update(
                    offered_per_s=args.rate,
                    replica_p50_ms=round(quantile(seen, 0.5), 1),
                    replica_p99_ms=round(quantile(seen, 0.99), 1),
                    replica_missing=missing,
                    # What the offered load cost: every exchange process, per order.
                    offered_cpu_us_per_order=round(cpu * 1e6 / len(lat)),
                    offered_cpu_us_by_process={
                        n: round(c * 1e6 / len(lat)) for n, c in by_process.items()
                    },
                    offered_puts_per_order=round(puts / len(lat), 3),
                    offered_versions=tail.count(" applied seq="),
                )
                if counted := calls.report(len(lat)):
                    result["offered_grape_calls_per_1000"] = counted
            for proc in procs:
                proc.stop()
    return result


# ------------------------------------------------------------------------- main


def _summary(results: list[dict[str, Any]]) -> None:
    print("book    R  processed/s  submit/s  submit p50/p99 ms  replica p50/p99 ms  (node/s)")
    for r in results:
        rep = (f"{r.get('replica_p50_ms', '-'):>7} / {r.get('replica_p99_ms', '-'):<7}"
               if "replica_p99_ms" in r else "      -          ")  # fmt: skip
        print(
            f"{r['book']:>6} {r['replicas']:>3} {r['processed_per_s']:>11} {r['submit_per_s']:>9}"
            f"  {r['submit_p50_ms']:>7} / {r['submit_p99_ms']:<7}  {rep}"
            f"  ({r['node_submit_per_s']})"
        )
    big = [r for r in results if r["dht_max_values"] > 1000]
    if big:
        print("books over 1,000 resting orders ran on grapes with --dht_maxValues raised "
              f"({', '.join(str(r['dht_max_values']) for r in big)}): they do not fit the "
              "challenge's 1000-value DHT")  # fmt: skip


def _per_version() -> dict[str, Any]:
    """One-order versions at 1,000 and 100,000 resting orders, in this process on the
    memory DHT (`bench/versions_bench.py`, 40 updates each): the publisher's CPU, the
    new items it puts, and a replica's `VersionReader.advance`."""
    import versions_bench  # bench/ is on the path of a script run from it

    settings = argparse.Namespace(
        seed=1,
        updates=40,
        warmup=3,
        fetches=0,
        refresh_budget=DEFAULT_REFRESH_BUDGET,
    )
    out: dict[str, Any] = {}
    for r in anyio.run(versions_bench.measure, [1_000, 100_000], settings):
        tag = versions_bench.label(r["orders"])
        out[f"version_cpu_us_{tag}"] = round(r["version_cpu_us"], 1)
        out[f"puts_per_update_{tag}"] = r["puts_per_update"]
        out[f"refreshes_per_update_{tag}"] = r["refreshes_per_update"]
        out[f"replica_cpu_us_{tag}"] = r["replica_cpu_us"] and round(r["replica_cpu_us"], 1)
    print(
        "one-order version, CPU µs at 1k / 100k resting orders: publish "
        f"{out['version_cpu_us_1k']:.0f} / {out['version_cpu_us_100k']:.0f}, replica "
        f"{out['replica_cpu_us_1k']:.0f} / {out['replica_cpu_us_100k']:.0f}; new items "
        f"{out['puts_per_update_1k']:g} / {out['puts_per_update_100k']:g}"
    )
    return out


def _profiled(out: str, script: str, *argv: str) -> None:
    """The ``profiled`` subcommand: run `script` under cProfile with a CPU clock (the
    process's CPU time, not the wall clock: a worker waiting in epoll costs nothing),
    written to `out` when it exits (a worker stops cleanly on SIGTERM)."""
    import cProfile
    import runpy

    sys.argv = [script, *argv]
    sys.path.insert(0, str(Path(script).resolve().parent))
    # A program without a SIGTERM handler of its own (the client) exits through this
    # one, so its profile is written too; the workers install theirs over it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        profiler.disable()
        profiler.dump_stats(out)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "profiled":
        _profiled(*sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        parser = argparse.ArgumentParser(prog="e2e_bench.py load")
        parser.add_argument("cmd")
        parser.add_argument("--grape", required=True)
        parser.add_argument("--count", type=int, required=True)
        parser.add_argument("--concurrency", type=int, default=64)
        parser.add_argument("--rate", type=float, default=0.0)
        parser.add_argument("--client", default="py")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--resting", action="store_true")
        parser.add_argument("--batch", type=int, default=1)
        parser.add_argument("--linger", type=float, default=-1.0)
        anyio.run(_load, parser.parse_args())
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", default="1000,10000,100000", help="resting book sizes")
    parser.add_argument("--replicas", default="0,3,10", help="replica counts")
    parser.add_argument("--orders", type=int, default=20_000, help="orders per throughput run")
    parser.add_argument("--concurrency", type=int, default=64, help="in flight per load process")
    parser.add_argument("--rate", type=float, default=1000, help="offered orders/s (latency)")
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument("--no-node", dest="node", action="store_false", help="no Node load")
    parser.add_argument("--quick", action="store_true", help="one small config")
    parser.add_argument(
        "--profile",
        type=Path,
        help="cProfile both workers and the first replica (CPU time) into this folder",
    )
    parser.add_argument("--keep", type=Path, help="keep databases and logs in this folder")
    parser.add_argument("--catch-up", type=float, default=300, help="replica start bound (s)")
    parser.add_argument("--json", action="store_true", help="one JSON object, last line")
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        metavar="N",
        help="also run the throughput load in batches of N orders per submit_order request"
        " (Python load only: compare with --no-node), reported under each run's 'batched'",
    )
    parser.add_argument(
        "--journal-servers",
        type=int,
        default=0,
        metavar="N",
        help="the journal on N NATS JetStream servers (1: one, 3: a cluster); default SQLite",
    )
    parser.add_argument(
        "--no-versions",
        dest="versions",
        action="store_false",
        help="skip the CPU per version at 1k and 100k resting orders (bench/versions_bench.py)",
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=-1.0,
        metavar="S",
        help="also run the throughput load through the client's coalescing of submits in"
        " flight (linger S seconds), reported under each run's 'coalesced'",
    )
    parser.add_argument(
        "--forward-interval",
        type=float,
        default=0.0,
        metavar="S",
        help="the sequencer's --forward-interval (at most one process_order request, so one"
        " version, per S seconds under load); default 0",
    )
    parser.add_argument(
        "--book-pages-after",
        action="store_true",
        help="the matcher's --book-pages-after (now its default; kept for older command lines)",
    )
    parser.add_argument(
        "--book-pages-first",
        action="store_true",
        help="the matcher's --book-pages-first (every version's book pages before its root)",
    )
    parser.add_argument(
        "--book-interval",
        metavar="S",
        help="the matcher's --book-interval (at most one flush of book pages per S seconds)",
    )
    parser.add_argument(
        "--version-linger",
        metavar="K",
        help="the matcher's --version-linger (its reply waits K x the version's time)",
    )
    parser.add_argument(
        "--count-grape-calls",
        action="store_true",
        help="count what each grape serves (API calls by kind and by asker, DHT messages)"
        " per 1,000 orders, under grape_calls_per_1000 (bench/grape_calls.py; the counting"
        " costs the grapes CPU: take CPU figures without it)",
    )
    import e2e_markets  # here: it imports this module

    e2e_markets.add_arguments(parser)
    args = parser.parse_args()
    node()  # exits with a message when `make setup` has not run
    if args.markets_only:
        markets = e2e_markets.run(args)
        if args.json:
            print(json.dumps(markets))
        return
    if args.quick:
        args.books, args.replicas, args.orders = "1000", "3", min(args.orders, 3000)
    results = []
    for book in (int(b) for b in args.books.split(",")):
        for replicas in (int(r) for r in args.replicas.split(",")):
            result = run_config(book, replicas, args)
            print(json.dumps(result), file=sys.stderr)
            results.append(result)
    _summary(results)
    per_version = _per_version() if args.versions else {}
    markets = e2e_markets.run(args) if e2e_markets.wanted(args) else {}
    if args.json:
        headline = next((r for r in results if r["replicas"] == 3), results[0])
        print(json.dumps({
            **per_version,
            "processed_per_s": headline["processed_per_s"],
            "submit_per_s": headline["submit_per_s"],
            "submit_p99_ms": headline["submit_p99_ms"],
            "replica_p99_ms": headline.get("replica_p99_ms"),
            "replicas": headline["replicas"],
            "book": headline["book"],
            "runs": results,
            "median_processed_per_s": statistics.median(r["processed_per_s"] for r in results),
            **markets,
        }))  # fmt: skip


if __name__ == "__main__":
    main()
