"""What one Grape API call costs the grapes themselves, in CPU: put, get, lookup, announce.

The exchange's throughput on the challenge's grapes is bounded by the grapes' own work
(Node processes on the same cores): every version puts its new pages, every replica
gets them, workers announce and look up. This measures the grapes' CPU per call (from
/proc, both grapes, the work of the DHT included), `--calls` calls per kind, 16 in
flight, through the project's `GrapeLink`.

Usage: .venv/bin/python bench/grape_cost.py [--calls 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Awaitable, Callable

import anyio
from e2e_bench import cpu_seconds
from peers import grapes

from transports.grenache import GrapeLink
from transports.grenache.testing import Grape


async def _measure(
    started: list[Grape], calls: int, call: Callable[[int], Awaitable[object]]
) -> tuple[float, float]:
    """(grape CPU µs per call, summed over the grapes; wall seconds)."""
    before = [cpu_seconds(g.pid) for g in started]
    t0 = time.perf_counter()
    limit = anyio.Semaphore(16)

    async def one(i: int) -> None:
        async with limit:
            await call(i)

    async with anyio.create_task_group() as tg:
        for i in range(calls):
            tg.start_soon(one, i)
    wall = time.perf_counter() - t0
    cpu = sum(cpu_seconds(g.pid) - b for g, b in zip(started, before, strict=True))
    return cpu * 1e6 / calls, wall


async def _run(started: list[Grape], calls: int) -> dict[str, float]:
    link = GrapeLink(started[1].url)
    keys: list[str] = []
    tag = uuid.uuid4().hex[:8]

    async def put(i: int) -> None:
        keys.append(await link.put(f"grape-cost-{tag}-{i}"))

    async def get(i: int) -> None:
        await link.get(keys[i])

    async def announce(i: int) -> None:
        await link.announce(f"grape-cost-{tag}", 4242)

    async def lookup(i: int) -> None:
        await link.lookup(f"grape-cost-{tag}", fresh=True)

    result: dict[str, float] = {}
    for name, call in (("put", put), ("get", get), ("announce", announce), ("lookup", lookup)):
        cpu, wall = await _measure(started, calls, call)
        result[f"{name}_cpu_us"] = round(cpu)
        result[f"{name}_per_s"] = round(calls / wall)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per kind")
    parser.add_argument("--json", action="store_true", help="one JSON object, last line")
    args = parser.parse_args()
    with grapes(2) as started:
        result = anyio.run(_run, started, args.calls)
    for kind in ("put", "get", "announce", "lookup"):
        print(
            f"{kind:9} {result[f'{kind}_cpu_us']:>6} µs of grape CPU per call"
            f"  ({result[f'{kind}_per_s']}/s, 16 in flight)"
        )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
