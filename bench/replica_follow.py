"""Benchmark: a replica's CPU per command while it follows signed versions.

Publishes (memory DHT, the matcher's signing key) a resting book of ``--book`` orders
far from the mid, then ``--versions`` versions of ``--per-version`` commands each like
bench/e2e_bench.py's load (limit orders around the mid, about a third of them trading,
and cancels). Then, round after round, a fresh `VersionReader` that requires the
matcher's signature reads the first version whole and follows the rest with
`VersionReader.advance` (get the roots and command pages, decode the commands, apply
them, update the book's page tree and check its hash against the signed root), in the
two ways a reader can decode the commands, taking turns (A, B, A, B ...):

* ``signed``: as shipped (`SignedCommands`: the sequencer's form decoded directly);
* ``validated``: every command through the core's validator, as before.

It prints the CPU µs (this process) per command followed, per round and the medians,
and the ratio per pair. Not a timed test: run it by hand.

    .venv/bin/python bench/replica_follow.py [--book 1000] [--versions 100]
        [--per-version 50] [--rounds 7] [--json] [--only signed|validated] [--publish]
        [--stride 1]

``--stride N`` follows every N-th version (N versions in one `advance`, as a replica
that finds N new versions announced when it looks). ``--publish`` (with ``--only``)
adds ``publish_us_per_command``: the CPU µs per command of applying and publishing the
versions after the first, as the matcher does (its network and its applied log aside),
one fresh memory DHT per round.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from exchange.protocol import Entry, apply_entry, parse_entry  # noqa: E402
from exchange.versions import VersionPublisher, VersionReader  # noqa: E402
from orderbook_core import DEFAULT_SPEC, Event, OrderBook  # noqa: E402
from transports import MemoryNetwork, Transport, open_transport  # noqa: E402

SPEC = DEFAULT_SPEC
TS0 = 1_764_000_000_000


def _order(rng: random.Random, client: str, n: int, bids: range, asks: range) -> dict[str, Any]:
    side = rng.choice(("buy", "sell"))
    cents = rng.choice(bids if side == "buy" else asks)
    return {"clientId": client, "orderId": f"{client}-{n}", "side": side,
            "price": f"{cents // 100}.{cents % 100:02d}",
            "amount": f"{rng.randint(1, 40) / 8:.3f}"}  # fmt: skip


def commands(book: int, count: int, seed: int) -> list[Entry]:
    """The resting book's orders, then the load: orders around the mid and cancels."""
    rng = random.Random(seed)
    out: list[Entry] = []
    live: list[tuple[str, str]] = []
    for n in range(book + count):
        client = f"py{n % 7}"
        if n < book:
            wire = _order(rng, client, n, range(5000, 9001), range(11000, 15001))
        elif live and rng.random() < 0.15:
            c, o = live.pop(rng.randrange(len(live)))
            wire = {"op": "cancel", "clientId": c, "orderId": o}
        else:
            wire = _order(rng, client, n, range(9900, 10051), range(9950, 10101))
            live.append((client, wire["orderId"]))
        seq = n + 1
        entry = parse_entry(seq, TS0 + seq, wire, SPEC)
        # As the sequencer journals it: the normalized wire form.
        out.append(parse_entry(seq, TS0 + seq, _normalized(entry), SPEC))
    return out


def _normalized(entry: Entry) -> dict[str, Any]:
    from orderbook_core import command_to_wire

    return command_to_wire(entry.command, SPEC)


async def publish(
    transport: Transport, key: Ed25519PrivateKey, args: argparse.Namespace
) -> tuple[list[str], float]:
    """The roots, and the CPU seconds of applying and publishing every version after the
    first (the matcher's share, without its network and its log)."""
    entries = commands(args.book, args.versions * args.per_version, args.seed)
    book = OrderBook(SPEC)
    publisher = VersionPublisher(transport, SPEC, signing_key=key)
    runs = [entries[: args.book]]
    rest = entries[args.book :]
    runs += [rest[i : i + args.per_version] for i in range(0, len(rest), args.per_version)]
    roots = []
    started = 0.0
    for i, run in enumerate(runs):
        if i == 1:
            gc.collect()
            started = time.process_time()
        events: list[Event] = []
        for entry in run:
            events.extend(apply_entry(book, entry))
        roots.append(
            await publisher.publish(book, events, seq=run[-1].seq, first=run[0].seq, commands=run)
        )
    return roots, time.process_time() - started


async def follow(
    transport: Transport, key: Ed25519PrivateKey, roots: list[str], mode: str, stride: int = 1
) -> float:
    """CPU seconds of following roots[1:] from roots[0] with a fresh reader, every
    `stride`-th root (the last always): `stride` versions in one step each time."""
    reader = VersionReader(transport, SPEC, matcher_key=key.public_key())
    if mode == "validated":
        reader._signed = None  # the decoding before SignedCommands
    version = await reader.fetch(roots[0])
    gc.collect()
    started = time.process_time()
    steps = roots[stride::stride]
    if steps[-1] != roots[-1]:
        steps.append(roots[-1])
    for root in steps:
        version, _ = await reader.advance(version, root)
    return time.process_time() - started


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    key = Ed25519PrivateKey.generate()
    n = args.versions * args.per_version
    published: list[float] = []
    for _ in range(args.rounds if args.publish else 0):
        async with open_transport("memory", network=MemoryNetwork()) as transport:
            published.append((await publish(transport, key, args))[1] * 1e6 / n)
    async with open_transport("memory", network=MemoryNetwork()) as transport:
        roots, _ = await publish(transport, key, args)
        modes = (args.only,) if args.only else ("signed", "validated")
        if not args.only:
            await follow(transport, key, roots, "signed")  # warm-up
        per: dict[str, list[float]] = {mode: [] for mode in ("signed", "validated")}
        for _ in range(args.rounds):
            for mode in modes:
                cpu = await follow(transport, key, roots, mode, args.stride)
                per[mode].append(cpu * 1e6 / n)
    if args.only:
        out: dict[str, Any] = {"mode": args.only, "us_per_command": per[args.only]}
        if args.publish:
            out["publish_us_per_command"] = published
        return out
    ratios = [a / b for a, b in zip(per["signed"], per["validated"], strict=True)]
    return {
        "book": args.book,
        "per_version": args.per_version,
        "versions": args.versions,
        "signed_us_per_command": [round(x, 1) for x in per["signed"]],
        "validated_us_per_command": [round(x, 1) for x in per["validated"]],
        "signed_median": round(statistics.median(per["signed"]), 1),
        "validated_median": round(statistics.median(per["validated"]), 1),
        "ratio_median": round(statistics.median(ratios), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--book", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=100)
    parser.add_argument("--per-version", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--stride",
        type=int,
        default=1,
        help="follow every N-th version only (N versions in one step: a replica that"
        " was N behind when it looked)",
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="with --only: also the matcher's CPU per command (apply and publish each"
        " version to the memory DHT; --rounds rounds, before the follows)",
    )
    parser.add_argument(
        "--only",
        choices=("signed", "validated"),
        help="one way only, no warm-up (e.g. under valgrind --tool=callgrind with --rounds"
        " 1: the two runs differ only in the decoding)",
    )
    args = parser.parse_args()
    result = anyio.run(main_async, args)
    if args.json or args.only:
        print(json.dumps(result))
        return
    print(f"following {args.versions} versions of {args.per_version} commands on a "
          f"{args.book}-order book, CPU µs per command (rounds):")  # fmt: skip
    print(f"  signed    {result['signed_us_per_command']}  median {result['signed_median']}")
    print(f"  validated {result['validated_us_per_command']}  median "
          f"{result['validated_median']}")  # fmt: skip
    print(f"  ratio signed / validated, median of pairs: {result['ratio_median']}")


if __name__ == "__main__":
    main()
