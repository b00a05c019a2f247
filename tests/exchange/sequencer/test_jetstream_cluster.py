"""A JetStream journal on a three-node cluster: the stream leader's server is killed
(SIGKILL) mid-stream, appends go on, and nothing confirmed is lost or stored twice."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import nats
import pytest
from support.nats import running_nats

from exchange.protocol import Entry, StorageUnavailable, parse_entry
from exchange.sequencer import JournalBackend, open_journal
from orderbook_core import DEFAULT_SPEC

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STREAM = "DEX_BTC-USD"


def _open_when_ready(urls: str, deadline: float) -> JournalBackend:
    """The journal, once the cluster has elected its JetStream leader."""
    while True:
        try:
            return open_journal(urls, DEFAULT_SPEC, timeout=2.0)
        except StorageUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _stream_info(url: str) -> dict[str, object]:
    async def ask() -> dict[str, object]:
        nc = await nats.connect(url)
        try:
            reply = await nc.request(f"$JS.API.STREAM.INFO.{STREAM}", b"", timeout=2)
            info: dict[str, object] = json.loads(reply.data)
            return info
        finally:
            await nc.close()

    return asyncio.run(ask())


def _order(i: int, seq: int) -> Entry:
    command = {"op": "new", "clientId": "c1", "orderId": f"o{i}", "side": "buy",
               "price": "100", "amount": "1"}  # fmt: skip
    return parse_entry(seq, 1_000 + i, command, DEFAULT_SPEC)


def test_killing_the_stream_leader_loses_nothing(tmp_path: Path) -> None:
    with running_nats(3, tmp_path) as servers:
        urls = ",".join(server.url for server in servers)
        journal = _open_when_ready(urls, time.monotonic() + 30)
        try:
            info = _stream_info(servers[0].url)
            assert info["config"]["num_replicas"] == 3  # type: ignore[index]
            confirmed: list[Entry] = []
            i = 0
            killed = None
            deadline = time.monotonic() + 40
            while len(confirmed) < 200:
                assert time.monotonic() < deadline, f"stuck at {len(confirmed)} confirmed"
                if len(confirmed) == 100 and killed is None:
                    leader = _stream_info(servers[0].url)["cluster"]["leader"]  # type: ignore[index]
                    killed = next(s for s in servers if s.name == leader)
                    killed.kill()
                entry = _order(i, journal.head() + 1)
                try:
                    journal.append([entry])
                except StorageUnavailable:
                    if journal.head() >= entry.seq:  # stored after all: the handle saw it
                        confirmed.append(entry)
                        i += 1
                    time.sleep(0.1)
                    continue
                confirmed.append(entry)
                i += 1
            assert killed is not None
        finally:
            journal.close()
        alive = next(s for s in servers if s is not killed)
        with _open_when_ready(alive.url, time.monotonic() + 30) as reader:
            stored = list(reader.entries())
        assert stored == confirmed  # 1..200, gap-free: nothing lost, nothing twice
        assert [e.seq for e in stored] == list(range(1, 201))
