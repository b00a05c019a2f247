"""How long a round of DHT puts through a grape takes, by puts in flight.

A version's pages are put through one grape, a bounded number at a time
(`exchange.versions` `DEFAULT_CONCURRENCY`); the grape answers each put only after
its DHT peers did, so a put's wall time is mostly waiting. This puts `--puts` fresh
pages of ~600 bytes per round through the first of two grapes started here, with
1..N in flight, and prints each width's median wall time per round and the grapes'
CPU per put.

Usage: .venv/bin/python bench/put_latency.py [--rounds 10] [--puts 100] [--widths 16,64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import anyio
from e2e_bench import cpu_seconds
from peers import grapes

from exchange.versions._bounded import run_bounded
from transports import open_transport


async def _rounds(url: str, pids: list[int], args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {}
    widths = [int(w) for w in args.widths.split(",")]
    times: dict[int, list[float]] = {w: [] for w in widths}
    cpu: dict[int, float] = dict.fromkeys(widths, 0.0)
    async with open_transport("grenache", grape=url) as transport:
        for r in range(args.rounds):
            for width in widths:  # interleaved, so drift hits every width alike
                values = [
                    f"{r}-{width}-{i}-{os.urandom(4).hex()}" + "x" * 600 for i in range(args.puts)
                ]

                async def put(value: str) -> None:
                    await transport.put(value)

                before = sum(cpu_seconds(p) for p in pids)
                t0 = time.perf_counter()
                await run_bounded(values, put, width)
                times[width].append(time.perf_counter() - t0)
                cpu[width] += sum(cpu_seconds(p) for p in pids) - before
    for width in widths:
        out[str(width)] = {
            "round_ms_median": round(statistics.median(times[width]) * 1000, 1),
            "round_ms_min": round(min(times[width]) * 1000, 1),
            "grape_cpu_us_per_put": round(cpu[width] * 1e6 / (args.rounds * args.puts)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--puts", type=int, default=100)
    parser.add_argument("--widths", default="1,4,16,32,64")
    args = parser.parse_args()
    with grapes(2) as started:
        result = anyio.run(_rounds, started[0].url, [g.pid for g in started], args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
