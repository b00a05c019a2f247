"""Transport benchmark: Grenache RPC round trips and DHT put/get over loopback.

Starts two real grapes, then measures, each for `--duration` seconds after a warm-up,
with `--concurrency` requests in flight over keep-alive connections:

- ``py_py``: Python client (GrenacheTransport) -> Python server (GrenacheTransport)
- ``node_py``: Node client (grenache-nodejs-http PeerRPCClient) -> Python server
- ``node_node``: Node client -> Node server (PeerRPCServer): the reference
- ``py_node``: Python client -> Node server
- ``put``/``get``: Python `put`/`get` per second through the grapes (same concurrency)

Every client and every server is its own OS process (the Python server is this script
with ``--serve``), so a client and its server never share an event loop. Clients look
the service up through one grape, servers announce through the other.

The machine may be shared, so the four RPC cases run in `--rounds` interleaved rounds
and the median of each number is reported, together with ``cpu_us``: the CPU time of
client and server together per round trip (from /proc and `process.cpuUsage`, split
into ``client_cpu_us`` and ``server_cpu_us``), a figure that depends much less on the
load of the machine than requests per second.

Usage::

    .venv/bin/python bench/transport_bench.py [--duration 3] [--rounds 3]
        [--concurrency 16] [--json]

With ``--json`` the last line of output is one JSON object with every number
(``py_py_rps``, ``node_py_rps``, ``node_node_rps``, ``py_py_p99_ms``, ``put_per_s``,
``get_per_s``, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from peers import NODE_SCRIPTS, REPO, grapes, node, node_env

from transports import JSON
from transports.grenache import GrenacheTransport
from transports.grenache.testing import free_port


def percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


async def closed_loop(
    call: Callable[[int], Awaitable[object]], *, concurrency: int, warmup: float, duration: float
) -> dict[str, float]:
    """Keep `concurrency` calls in flight; measure the calls that start after `warmup`."""
    latencies: list[float] = []
    errors = 0
    total = 0
    cpu0 = time.process_time()
    start = time.perf_counter()
    measure_from = start + warmup
    end = measure_from + duration
    counter = 0

    async def worker() -> None:
        nonlocal errors, counter, total
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            counter += 1
            try:
                await call(counter)
            except Exception:
                errors += 1
                continue
            total += 1
            if t0 >= measure_from:
                latencies.append((time.perf_counter() - t0) * 1000)

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / duration,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "errors": errors,
        "total": total,
        "cpu_s": time.process_time() - cpu0,
    }


# -- the Python server process --------------------------------------------------------


async def _echo(payload: JSON) -> JSON:
    return {"echo": payload}


async def serve_forever(grape: str, name: str) -> None:
    async with GrenacheTransport(grape) as transport, anyio.create_task_group() as tg:
        port = await tg.start(partial(transport.serve, {name: _echo}))
        print(json.dumps({"ready": True, "port": port}), flush=True)


@contextmanager
def process(cmd: list[str], *, env: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Start a server process; yield its ready line; stop it by PID."""
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                ready = json.loads(line)
            except ValueError:
                continue
            if isinstance(ready, dict) and ready.get("ready"):
                break
        else:
            raise RuntimeError(f"{cmd} exited before it was ready")
        yield {**ready, "pid": proc.pid}
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def node_bench(grape: str, name: str, args: argparse.Namespace) -> dict[str, float]:
    out = subprocess.run(
        [
            node(),
            str(NODE_SCRIPTS / "bench_client.js"),
            *("--grape", grape, "--name", name),
            *("--concurrency", str(args.concurrency), "--duration", str(args.duration)),
            *("--warmup", str(args.warmup)),
        ],
        cwd=REPO,
        env=node_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=args.duration + args.warmup + 60,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def py_bench(grape: str, name: str, args: argparse.Namespace) -> dict[str, float]:
    async with GrenacheTransport(grape) as client:

        async def call(i: int) -> object:
            return await client.request(name, {"bench": True, "n": 1})

        return await closed_loop(
            call, concurrency=args.concurrency, warmup=args.warmup, duration=args.duration
        )


async def dht_bench(grape: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    run = uuid.uuid4().hex[:8]
    keys: list[str] = []
    async with GrenacheTransport(grape) as client:

        async def put(i: int) -> object:
            key = await client.put(f"bench {run} {i}")
            keys.append(key)
            return key

        puts = await closed_loop(
            put, concurrency=args.concurrency, warmup=args.warmup, duration=args.duration
        )
        # Read back what was just stored (each grape keeps at most 1000 values).
        recent = keys[-900:]

        async def get(i: int) -> object:
            value = await client.get(recent[i % len(recent)])
            if value is None:
                raise LookupError("missing")
            return value

        gets = await closed_loop(
            get, concurrency=args.concurrency, warmup=args.warmup, duration=args.duration
        )
    return {"put": puts, "get": gets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all cases")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--serve", nargs=2, metavar=("GRAPE", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        anyio.run(serve_forever, *args.serve)
        return

    with grapes(2) as started:
        server_grape, client_grape = started[0].url, started[1].url
        py_name = f"bench-py-{uuid.uuid4().hex[:8]}"
        node_name = f"bench-node-{uuid.uuid4().hex[:8]}"
        py_server = [sys.executable, __file__, "--serve", server_grape, py_name]
        node_server = [
            node(),
            str(NODE_SCRIPTS / "rpc_server.js"),
            *("--grape", server_grape, "--name", node_name, "--port", str(free_port())),
        ]
        with process(py_server) as py_srv, process(node_server, env=node_env()) as node_srv:
            time.sleep(0.5)  # let the announces reach the other grape
            cases: dict[str, tuple[Callable[[], dict[str, float]], int]] = {
                "py_py": (lambda: anyio.run(py_bench, client_grape, py_name, args), py_srv["pid"]),
                "node_node": (lambda: node_bench(client_grape, node_name, args), node_srv["pid"]),
                "node_py": (lambda: node_bench(client_grape, py_name, args), py_srv["pid"]),
                "py_node": (
                    lambda: anyio.run(py_bench, client_grape, node_name, args),
                    node_srv["pid"],
                ),
            }
            runs: dict[str, list[dict[str, float]]] = {case: [] for case in cases}
            # Interleaved rounds: the machine is shared, so load drifts; every case sees
            # every phase of it, and the median is reported.
            for round_ in range(args.rounds):
                for case, (run, server_pid) in cases.items():
                    server_cpu = cpu_seconds(server_pid)
                    result = run()
                    server_cpu = cpu_seconds(server_pid) - server_cpu
                    result["client_cpu_us"] = result["cpu_s"] / result["total"] * 1e6
                    result["server_cpu_us"] = server_cpu / result["total"] * 1e6
                    result["cpu_us"] = result["client_cpu_us"] + result["server_cpu_us"]
                    runs[case].append(result)
                    print(f"round {round_ + 1} {case:10s} {format_case(result)}", flush=True)
        dht = anyio.run(dht_bench, client_grape, args)

    flat: dict[str, Any] = {
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "rounds": args.rounds,
    }
    print("median of rounds:")
    for case, results in runs.items():
        summary = {
            field: statistics.median(r[field] for r in results)
            for field in (
                "rps",
                "p50_ms",
                "p99_ms",
                "errors",
                "cpu_us",
                "client_cpu_us",
                "server_cpu_us",
            )
        }
        print(f"{case:10s} {format_case(summary)}", flush=True)
        for field, value in summary.items():
            flat[f"{case}_{field}"] = round(value, 3)
    for case in ("put", "get"):
        print(f"{case:10s} {format_case(dht[case])}", flush=True)
        flat[f"{case}_per_s"] = round(dht[case]["rps"], 1)
        flat[f"{case}_p99_ms"] = round(dht[case]["p99_ms"], 3)
    if args.json:
        print(json.dumps(flat))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def format_case(r: dict[str, float]) -> str:
    cpu = ""
    if "cpu_us" in r:
        cpu = (
            f"  cpu {r['cpu_us']:4.0f} us/req"
            f" (client {r['client_cpu_us']:4.0f} + server {r['server_cpu_us']:4.0f})"
        )
    return (
        f"{r['rps']:9.0f}/s  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms"
        f"  errors {int(r['errors'])}{cpu}"
    )


if __name__ == "__main__":
    main()
