"""Where the sequencer's CPU goes, per order: a reproducible profile of the real path.

Two grapes, ``bin/submitOrderWorker.py`` (SQLite journal) and ``bin/processOrderWorker.py``
as processes, as `bench/e2e_bench.py` runs them; one load process (its ``load``
subcommand: signed orders over the project's Grenache transport, ``--batch N`` orders per
request). Two runs of the same load on fresh exchanges:

1. without a profiler: the sequencer's CPU µs per order from /proc (user + system),
   the figure to compare, and its journal commits (from its log): at one order per
   request what a commit costs (fsync, wake-ups) is shared by fewer orders;
2. under cProfile with a CPU clock (`bench/e2e_bench.py`'s ``profiled``): its own CPU
   per order for the functions that cost most, and rolled up by what they do
   (signature verification, JSON, HTTP, journal, validation, event loop...). cProfile's
   overhead inflates every figure of this run: read it for shares, the first run for
   the total. The CPU of the journal's thread is charged to whatever the event loop
   runs meanwhile; start-up (imports) is in it too, a few ms in all.

Usage::

    .venv/bin/python bench/sequencer_profile.py                 # 3,000 single submits
    .venv/bin/python bench/sequencer_profile.py --batch 16      # in batches of 16
    .venv/bin/python bench/sequencer_profile.py --rate 1000     # offered: 1,000 orders/s
    .venv/bin/python bench/sequencer_profile.py --json          # one JSON object, last line
    .venv/bin/python bench/sequencer_profile.py --in-process --rate 1000 \
        --commit-interval 0                                     # one process, see below

``--in-process``: one process, no grapes: a `SubmitWorker` on SQLite behind the real
Grenache server code (`serve_connection`), `--concurrency` raw keep-alive clients
sending pre-built signed requests (open loop at ``--rate``, or each as fast as its
replies come), and a stand-in matcher that acknowledges every ``process_order`` at
once. It prints the whole process's CPU per order (the clients' included), the
journal's commits and the submit latency: the commit path's setting
(``--commit-interval``; the program's default unless given) compared without the other
processes' noise.
"""

from __future__ import annotations

import argparse
import json
import pstats
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus
from e2e_bench import cpu_seconds, exchange_on_grapes, head_of, run_loads, wait_head

CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("ed25519 verify", ("'verify' of", "ed25519", "crypto_sign", "_sodium")),
    ("canonical json (signed bytes)", ("canonical_json", "_signing.py")),
    # (the transport's codec; the core's own `_codec.py` is its validator)
    ("json encode/decode", ("json/", "{built-in method _json", "transports/_codec.py")),
    ("validation (core)", ("orderbook_core/", "_submitted.py", "_fields.py")),
    ("journal (sqlite, fsync)", ("_journal.py", "sqlite3", "'commit' of", "'execute")),
    ("http server/client", ("transports/grenache/", "h11", "http")),
    ("sequencer logic", ("exchange/sequencer/", "exchange/protocol/")),
    ("threads (to_thread)", ("threading.py", "_thread", "to_thread", "concurrent/")),
    ("event loop (asyncio, anyio)", ("asyncio/", "anyio/", "selectors.py", "select")),
    ("logging", ("logging/",)),
]


def category(key: tuple[str, int, str]) -> str:
    filename, _line, name = key
    text = f"{filename}:{name}"
    for label, needles in CATEGORIES:
        if any(needle in text for needle in needles):
            return label
    return "other"


def run(
    orders: int, batch: int, concurrency: int, profile: Path | None, rate: float = 0.0
) -> dict[str, Any]:
    """One load on a fresh exchange; the sequencer's CPU per order (and its profile)."""
    with tempfile.TemporaryDirectory(prefix="dex-seqprof-") as tmp:
        workdir = Path(tmp)
        with exchange_on_grapes(workdir, None, profile) as (grapes, procs):
            g0, g1 = grapes[0].url, grapes[1].url
            anyio.run(head_of, g1)
            submit = next(p for p in procs if p.name == "submit")
            cpu0 = cpu_seconds(submit.popen.pid)
            records, _ = run_loads(
                g0,
                workdir,
                count=orders,
                concurrency=concurrency,
                batch=batch,
                tag="prof",
                rate=rate,
            )
            anyio.run(wait_head, g1, max(r[0] for r in records), 600.0)
            cpu = cpu_seconds(submit.popen.pid) - cpu0
            for proc in procs:
                proc.stop()  # cProfile writes its file on the way out
            # one "accepted seq=a..b" line per commit (and the start-up's none)
            log = (workdir / "submit.log").read_text(errors="replace")
    orders = len(records)
    commits = log.count(" accepted seq=")
    return {
        "orders": orders,
        "cpu_us_per_order": round(cpu * 1e6 / orders, 1),
        "commits": commits,
        "orders_per_commit": round(orders / max(1, commits), 1),
    }


def top_costs(path: Path, orders: int, top: int) -> dict[str, Any]:
    stats = pstats.Stats(str(path))
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]  # pstats' own table
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in entries.values())
    rolled: dict[str, float] = defaultdict(float)
    rows = []
    for key, (_cc, calls, tottime, cumtime, _callers) in entries.items():
        rolled[category(key)] += tottime
        rows.append((tottime, cumtime, calls, key))
    rows.sort(reverse=True)
    per = 1e6 / orders
    return {
        "profiled_us_per_order": round(total * per, 1),
        "categories": {
            label: {"us_per_order": round(t * per, 1), "share": round(t / total, 3)}
            for label, t in sorted(rolled.items(), key=lambda item: -item[1])
        },
        "functions": [
            {
                "function": f"{Path(key[0]).name}:{key[1]}({key[2]})",
                "self_us_per_order": round(tottime * per, 2),
                "cum_us_per_order": round(cumtime * per, 2),
                "calls_per_order": round(calls / orders, 2),
            }
            for tottime, cumtime, calls, key in rows[:top]
        ],
    }


def json_codecs(loops: int) -> dict[str, dict[str, float]]:
    """µs per order of the JSON work on the sequencer's path, by library: decoding the
    request body, encoding the reply body, and the canonical JSON of the signed bytes
    (sorted keys). stdlib as the transport and the signing use it (one encoder and one
    decoder built once); orjson and msgspec when installed (they are not dependencies)."""
    import timeit

    body, reply, payload = _signed_order_body()
    decoder = json.JSONDecoder()
    encoder = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    canonical = json.JSONEncoder(
        sort_keys=True, ensure_ascii=True, separators=(",", ":"), allow_nan=False
    )
    cases: dict[str, dict[str, Any]] = {
        "stdlib json": {
            "decode request": lambda: decoder.decode(body.decode()),
            "encode reply": lambda: encoder.encode(reply).encode(),
            "canonical (json.dumps per call)": lambda: json.dumps(
                payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
            ),
            "canonical (one encoder)": lambda: canonical.encode(payload),
        }
    }
    try:
        import orjson  # type: ignore[import-not-found,unused-ignore]  # installed by hand

        cases["orjson"] = {
            "decode request": lambda: orjson.loads(body),
            "encode reply": lambda: orjson.dumps(reply),
            "canonical": lambda: orjson.dumps(payload, option=orjson.OPT_SORT_KEYS),
        }
    except ImportError:
        pass
    try:
        import msgspec  # type: ignore[import-not-found,unused-ignore]  # installed by hand

        sorted_encoder = msgspec.json.Encoder(order="sorted")
        cases["msgspec"] = {
            "decode request": lambda: msgspec.json.decode(body),
            "encode reply": lambda: msgspec.json.encode(reply),
            "canonical": lambda: sorted_encoder.encode(payload),
        }
    except ImportError:
        pass
    out: dict[str, dict[str, float]] = {}
    for library, ops in cases.items():
        out[library] = {
            op: round(min(timeit.repeat(fn, number=loops, repeat=5)) * 1e6 / loops, 2)
            for op, fn in ops.items()
        }
    return out


async def linger_cost(orders: int) -> dict[str, float]:
    """Median ms from submit to reply of a lone order (one at a time), in one process on
    the memory transport against a real sequencer (SQLite journal, fsync), with the
    client's coalescing off and with its default linger: what the linger costs an order
    that has no company."""
    import statistics
    import time

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from exchange.client import DEFAULT_LINGER, ClientNode
    from exchange.sequencer import Journal, SubmitWorker
    from transports import MemoryNetwork, open_transport

    out: dict[str, float] = {}
    network = MemoryNetwork()
    with tempfile.TemporaryDirectory() as tmp, Journal(Path(tmp) / "journal.db") as journal:
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            await tg.start(
                SubmitWorker(server, journal, signing_key=Ed25519PrivateKey.generate()).run
            )
            rounds = (("off", None), ("default", DEFAULT_LINGER)) * 2  # interleaved
            for turn, (label, linger) in enumerate(rounds):
                node = ClientNode(client, f"lone-{turn}", submit_linger=linger)
                times = []
                for n in range(orders):
                    order = {"orderId": f"o-{n}", "side": "buy", "price": "1"}
                    started = time.perf_counter()
                    await node.submit({**order, "amount": "1"})
                    times.append((time.perf_counter() - started) * 1000)
                out[f"linger_{label}_ms_{turn // 2 + 1}"] = round(statistics.median(times), 2)
            tg.cancel_scope.cancel()
    return out


def _signed_order_body() -> tuple[bytes, Any, dict[str, Any]]:
    """A request body as the load sends it, its reply, and the payload signed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from exchange.protocol import SUBMIT_ORDER, sign_order

    order = {"clientId": "py-load", "orderId": "py-load-1234", "side": "buy"}
    payload = sign_order(
        {**order, "price": "100.25", "amount": "1.125"}, Ed25519PrivateKey.generate()
    )
    rid = "7b0d7a4e-6c43-4d8e-9b1f-0f8f3d6b5a21"
    body = json.dumps([rid, SUBMIT_ORDER, payload], separators=(",", ":")).encode()
    return body, [rid, None, {"seq": 123456, "orderId": "py-load-1234"}], payload


async def in_process(
    orders: int, concurrency: int, rate: float, commit_interval: float
) -> dict[str, Any]:
    """`--in-process`: see the module docstring."""
    import resource
    import time
    import uuid

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from exchange.protocol import SUBMIT_ORDER, sign_order
    from exchange.sequencer import Journal, SubmitWorker
    from transports import JSON, Handler, Transport
    from transports.grenache._server import ServerOptions, Watchdog, serve_connection
    from transports.grenache._stream import listen

    key = Ed25519PrivateKey.generate()
    requests = []
    for i in range(orders):
        side = "buy" if i % 2 else "sell"
        order = {"clientId": "c1", "orderId": f"o{i}", "side": side, "price": str(100 + i % 7)}
        body = json.dumps(
            [str(uuid.UUID(int=i)), SUBMIT_ORDER, sign_order({**order, "amount": "1.5"}, key)],
            separators=(",", ":"),
        ).encode()
        head = b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ngrc-compress: none\r\n"
        requests.append(head + b"content-length: %d\r\n\r\n%s" % (len(body), body))

    class Local(Transport):
        """Serves on loopback with the Grenache server code; announces nothing."""

        async def serve(
            self,
            handlers: Mapping[str, Handler],
            *,
            port: int = 0,
            wait_announced: bool = True,
            task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
        ) -> None:
            options = ServerOptions(
                max_body=1 << 20, read_timeout=30, idle_timeout=60, handler_timeout=None
            )
            watchdog = Watchdog()
            listener = await listen("127.0.0.1", 0)
            async with anyio.create_task_group() as tg:
                tg.start_soon(watchdog.run)
                task_status.started(listener.port)
                await listener.serve(lambda s: serve_connection(s, handlers, options, watchdog))

        async def request(self, name: str, payload: JSON, *, timeout: float = 5) -> JSON:
            assert isinstance(payload, dict)  # process_order: acknowledged at once
            last = payload.get("entries", [payload])[-1]
            return {"seq": last["seq"], "root": "ab" * 20}

        async def map(self, name: str, payload: JSON, *, timeout: float = 5) -> Any:
            raise NotImplementedError

        async def put(self, value: str) -> str:
            raise NotImplementedError

        async def get(self, key: str) -> str | None:
            return None

        async def aclose(self) -> None:
            pass

    commits = 0

    class Counted(Journal):
        def append(self, *args: Any, **kwargs: Any) -> None:
            nonlocal commits
            commits += 1
            super().append(*args, **kwargs)

    latencies: list[float] = []
    start = 0.0

    async def client(port: int, k: int) -> None:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            for j, request in enumerate(requests[k::concurrency]):
                if rate:
                    await anyio.sleep(max(0.0, start + (j * concurrency + k) / rate - time.time()))
                sent = time.perf_counter()
                await stream.send(request)
                data = b""
                while True:
                    data += await stream.receive()
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = head.partition(b"content-length: ")[2].partition(b"\r\n")[0]
                    if length and len(body) >= int(length):
                        assert b'"seq"' in body, body
                        break
                latencies.append(time.perf_counter() - sent)

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    with (
        tempfile.TemporaryDirectory(prefix="dex-seqprof-") as tmp,
        Counted(Path(tmp) / "journal.db") as journal,
    ):
        worker = SubmitWorker(
            Local(),
            journal,
            signing_key=Ed25519PrivateKey.generate(),
            commit_interval=commit_interval,
        )
        async with anyio.create_task_group() as tg:
            port = await tg.start(worker.run)
            cpu0, commits = cpu(), 0
            start = time.time() + 0.05
            async with anyio.create_task_group() as clients:
                for k in range(concurrency):
                    clients.start_soon(client, port, k)
            used = cpu() - cpu0
            tg.cancel_scope.cancel()
    latencies.sort()
    return {
        "orders": orders,
        "process_cpu_us_per_order": round(used * 1e6 / orders, 1),
        "commits": commits,
        "submit_p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "submit_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=1, help="orders per submit_order request")
    parser.add_argument("--concurrency", type=int, default=64, help="orders in flight")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="orders/s offered (open loop; 0: flat out)"
    )
    parser.add_argument("--top", type=int, default=25, help="functions shown")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--json", action="store_true", help="one JSON object, last line")
    parser.add_argument(
        "--codecs", action="store_true", help="only time the JSON libraries on the path"
    )
    parser.add_argument(
        "--linger-cost", action="store_true", help="only time a lone submit, linger off/on"
    )
    parser.add_argument(
        "--in-process", action="store_true", help="one process, no grapes (docstring)"
    )
    parser.add_argument("--commit-interval", type=float, default=None, help="with --in-process")
    args = parser.parse_args()
    if args.in_process:
        from exchange.sequencer._program import DEFAULT_COMMIT_INTERVAL

        interval = args.commit_interval
        result = anyio.run(
            in_process,
            args.orders,
            args.concurrency,
            args.rate,
            DEFAULT_COMMIT_INTERVAL if interval is None else interval,
        )
        print(", ".join(f"{k} {v}" for k, v in result.items()))
        if args.json:
            print(json.dumps(result))
        return
    if args.linger_cost:
        cost = anyio.run(linger_cost, 300)
        print(", ".join(f"{k} {v}" for k, v in cost.items()))
        if args.json:
            print(json.dumps(cost))
        return
    if args.codecs:
        codecs = json_codecs(20_000)
        for library, ops in codecs.items():
            print(f"{library}: " + ", ".join(f"{op} {us} µs" for op, us in ops.items()))
        if args.json:
            print(json.dumps({"json_us_per_order": codecs}))
        return
    plain = run(args.orders, args.batch, args.concurrency, None, args.rate)
    print(
        f"sequencer CPU: {plain['cpu_us_per_order']} µs/order"
        f" ({plain['orders']} orders, batch {args.batch}, rate {args.rate or 'flat out'},"
        f" no profiler; {plain['commits']} commits, {plain['orders_per_commit']} orders each)"
    )
    out: dict[str, Any] = {"batch": args.batch, "rate": args.rate, **plain}
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="dex-seqprof-out-") as folder:
            run(args.orders, args.batch, args.concurrency, Path(folder), args.rate)
            out.update(top_costs(Path(folder) / "submit.prof", plain["orders"], args.top))
        print(f"under cProfile: {out['profiled_us_per_order']} µs/order of own time; by kind:")
        for label, row in out["categories"].items():
            print(f"  {row['us_per_order']:>8.1f} µs  {row['share']:>6.1%}  {label}")
        print("top functions (self µs/order, cumulative µs/order, calls/order):")
        for row in out["functions"]:
            print(
                f"  {row['self_us_per_order']:>8.2f} {row['cum_us_per_order']:>9.2f}"
                f" {row['calls_per_order']:>7.2f}  {row['function']}"
            )
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
