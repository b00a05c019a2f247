"""How long moving a journal takes: `dex journal export` and `dex journal import`
between SQLite and NATS JetStream (one dev server, and a three-node cluster).

It fills a SQLite journal with ``--entries`` new orders (50 clients, each bound by its
first order, and one modify in ten with a requestId), then times, in one run: the
export of the SQLite file, its import into a new SQLite file, into a stream on one
server (1 replica) and on a cluster (3 replicas), and the export of the cluster's
stream. Every server is started here on free loopback ports and stopped by its PID.

Usage::

    .venv/bin/python bench/journal_move_bench.py --entries 100000 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from peers import nats_servers

from exchange.protocol import Entry, StorageUnavailable, new_entry
from exchange.sequencer import JournalBackend, open_journal
from exchange.tools import export_journal, import_journal
from orderbook_core import DEFAULT_SPEC, MarketSpec, parse_command


def _fill(journal: JournalBackend, count: int) -> None:
    spec = journal.spec
    entries: list[Entry] = []
    bindings: dict[int, str] = {}
    requests: dict[int, str] = {}
    for seq in range(1, count + 1):
        client = f"c{seq % 50}"
        if seq % 10 == 0:
            payload = {"op": "modify", "clientId": client, "orderId": f"o{seq - 50}", "price": "99"}
            requests[seq] = f"r{seq}"
        else:
            payload = {"clientId": client, "orderId": f"o{seq}", "side": "buy", "price": "100",
                       "amount": "1"}  # fmt: skip
        if seq <= 50:
            bindings[seq] = f"{seq:064x}"
        entries.append(new_entry(parse_command(payload, spec, seq=seq, ts=1_000 + seq), spec))
    journal.append(entries, bindings, requests)


def _open(location: str, spec: MarketSpec) -> JournalBackend:
    """The journal, once a new cluster has elected its JetStream leader."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return open_journal(location, spec, timeout=30)
        except StorageUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _rate(count: int, work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return round(count / (time.perf_counter() - started))


def _through_stream(
    location: str, spec: MarketSpec, servers: int, lines: list[str]
) -> dict[str, float]:
    """Import `lines` into a new stream on `location`; with 3 servers, export it back and
    check the file is the same."""
    rates: dict[str, float] = {}
    n = len(lines) - 2
    with _open(location, spec) as stream:
        rates[f"import_jetstream_r{servers}"] = _rate(n, lambda: import_journal(stream, lines))
        if servers == 3:
            back = io.StringIO()
            rates["export_jetstream_r3"] = _rate(n, lambda: export_journal(stream, back))
            assert back.getvalue() == "".join(lines), "the stream's export differs"
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--json", action="store_true", help="one JSON object, last line")
    args = parser.parse_args()
    n = args.entries
    spec = dataclasses.replace(DEFAULT_SPEC, market="MOVE-USD")
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with open_journal(f"sqlite:{root / 'a.db'}", spec) as source:
            _fill(source, n)
            out = io.StringIO()
            rates["export_sqlite"] = _rate(n, lambda: export_journal(source, out))
        lines = out.getvalue().splitlines(keepends=True)
        print(f"export file: {len(out.getvalue()) / n:.0f} bytes per entry")
        with open_journal(f"sqlite:{root / 'b.db'}", spec) as target:
            rates["import_sqlite"] = _rate(n, lambda: import_journal(target, lines))
        for servers in (1, 3):
            with nats_servers(servers, root / f"nats{servers}") as urls:
                rates.update(_through_stream(",".join(urls), spec, servers, lines))
    for name, rate in rates.items():
        print(f"{name:22} {rate:>10,.0f} entries/s")
    if args.json:
        print(json.dumps({"entries": n, "entries_per_s": rates}))


if __name__ == "__main__":
    main()
