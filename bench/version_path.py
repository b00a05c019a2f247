"""Benchmark harness for instruction counts of the per-version path, under callgrind.

Makes the same commands as bench/replica_follow.py (a resting book of 1,000 orders,
then ``--commands`` orders and cancels around the mid), then runs one stage more per
mode, so that the difference of two modes' instruction counts is one stage:

* ``base``: the commands, the first version (the resting book) published;
* ``publish``: and the rest applied and published, ``--per-version`` commands a
  version, as the matcher does (memory DHT, signed roots): ``publish`` minus ``base``;
* ``fetch``: and a signed reader reads the first version whole;
* ``follow``: and it follows the rest with `VersionReader.advance` (every
  ``--stride``-th version): ``follow`` minus ``fetch``.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/version_path.py follow [--per-version 34] [--stride 1]

Not a timed test: instruction counts do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from replica_follow import SPEC, commands  # noqa: E402

from exchange.protocol import apply_entry  # noqa: E402
from exchange.versions import VersionPublisher, VersionReader  # noqa: E402
from orderbook_core import Event, OrderBook  # noqa: E402
from transports import MemoryNetwork, open_transport  # noqa: E402


async def run(mode: str, per_version: int, total: int, stride: int) -> int:
    entries = commands(1000, total, 1)
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    async with open_transport("memory", network=MemoryNetwork()) as transport:
        book = OrderBook(SPEC)
        publisher = VersionPublisher(transport, SPEC, signing_key=key)
        runs = [entries[:1000]]
        runs += [entries[i : i + per_version] for i in range(1000, len(entries), per_version)]
        roots: list[str] = []
        for run in runs[: 1 if mode == "base" else None]:
            events: list[Event] = []
            for entry in run:
                events.extend(apply_entry(book, entry))
            roots.append(
                await publisher.publish(
                    book, events, seq=run[-1].seq, first=run[0].seq, commands=run
                )
            )
        if mode in ("fetch", "follow"):
            reader = VersionReader(transport, SPEC, matcher_key=key.public_key())
            version = await reader.fetch(roots[0])
            if mode == "follow":
                steps = roots[stride::stride]
                if steps[-1] != roots[-1]:
                    steps.append(roots[-1])
                for root in steps:
                    version, _ = await reader.advance(version, root)
                assert version.tree.root == version.root.book
        return len(roots)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("base", "publish", "fetch", "follow"))
    parser.add_argument("--per-version", type=int, default=34)
    parser.add_argument("--commands", type=int, default=2040)
    parser.add_argument("--stride", type=int, default=1)
    args = parser.parse_args()
    versions = anyio.run(run, args.mode, args.per_version, args.commands, args.stride)
    print(f"{args.mode}: {versions} versions")


if __name__ == "__main__":
    main()
