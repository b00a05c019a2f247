"""What one `GrenacheTransport.request` costs the calling process: CPU µs and, under
callgrind, instructions per request.

Starts one grape and a Node peer (grenache-nodejs-http `PeerRPCServer`,
``tests/node/rpc_server.js``), then runs a client process that sends `--count` requests,
`--concurrency` in flight, each a payload the size of a signed order, and prints its CPU
per request over the sending only (start-up and the first lookup excluded). The server
is Node so that the figure is the Python client's alone.

With ``--callgrind``, the client runs under ``valgrind --tool=callgrind`` twice, with
`--count` and 3 x `--count` requests: the difference of the two instruction counts over
the difference of requests is the instructions per request, free of start-up, and far
steadier than a CPU time on a shared machine.

Usage::

    .venv/bin/python bench/request_cost.py [--count 3000] [--concurrency 64] [--callgrind]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from peers import NODE_SCRIPTS, REPO, grapes, node, node_env
from transport_bench import process

from transports import TransportError
from transports.grenache import GrenacheTransport
from transports.grenache.testing import free_port

NAME = "request_cost_echo"
ORDER = {
    "clientId": "py",
    "orderId": "py-12345",
    "side": "buy",
    "price": "100.25",
    "amount": "1.375",
    "pubKey": "ab" * 32,
    "sig": "cd" * 64,
}


async def _client(grape: str, count: int, concurrency: int, lookup_ttl: float) -> None:
    """Child: `count` requests; print CPU µs per request while sending."""
    async with GrenacheTransport(grape, lookup_ttl=lookup_ttl) as transport:
        while True:  # the server's announce may not be visible yet
            try:
                await transport.request(NAME, ORDER, timeout=5)
                break
            except TransportError:  # not announced yet: ask again
                await anyio.sleep(0.1)
        pending = iter(range(count))
        cpu0 = time.process_time()

        async def worker() -> None:
            for _ in pending:
                await transport.request(NAME, ORDER, timeout=30)

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
        cpu = time.process_time() - cpu0
    print(json.dumps({"requests": count, "cpu_us_per_request": round(cpu * 1e6 / count, 1)}))


def _run_client(grape: str, count: int, args: argparse.Namespace, callgrind: bool) -> float:
    """Instructions (callgrind) or CPU µs per request (plain) of one client run."""
    cmd = [sys.executable, __file__, "--client", grape, "--count", str(count)]
    cmd += ["--concurrency", str(args.concurrency), "--lookup-ttl", str(args.lookup_ttl)]
    if not callgrind:
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout
        return float(json.loads(out.strip().splitlines()[-1])["cpu_us_per_request"])
    with tempfile.TemporaryDirectory() as tmp:
        out_file = Path(tmp) / "callgrind.out"
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", *cmd],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        match = re.search(r"Collected : (\d+)", run.stderr)
        if match is None:
            raise RuntimeError(f"no instruction count in callgrind's output: {run.stderr[-500:]}")
        return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="requests per client run")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--runs", type=int, default=3, help="client runs (plain CPU mode)")
    parser.add_argument("--callgrind", action="store_true", help="instructions per request")
    parser.add_argument(
        "--lookup-ttl",
        type=float,
        default=1.0,
        help="the client's lookup_ttl (default 1 s, the transport's; under callgrind the"
        " cached lookup expires every few hundred requests)",
    )
    parser.add_argument("--client", metavar="GRAPE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        anyio.run(_client, args.client, args.count, args.concurrency, args.lookup_ttl)
        return
    with grapes(1) as started:
        grape = started[0].url
        server = [node(), str(NODE_SCRIPTS / "rpc_server.js"), "--grape", grape, "--name", NAME]
        server += ["--port", str(free_port())]
        with process(server, env=node_env()):
            if args.callgrind:
                small = _run_client(grape, args.count, args, callgrind=True)
                large = _run_client(grape, 3 * args.count, args, callgrind=True)
                per = (large - small) / (2 * args.count)
                print(json.dumps({"instructions_per_request": round(per)}))
                return
            runs = [_run_client(grape, args.count, args, callgrind=False) for _ in range(args.runs)]
            runs.sort()
            print(json.dumps({"cpu_us_per_request": runs[len(runs) // 2], "runs": runs}))


if __name__ == "__main__":
    main()
