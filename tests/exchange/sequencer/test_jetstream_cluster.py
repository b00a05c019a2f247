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
from exchange.sequencer._jetstream import JetStreamJournal
from exchange.sequencer._lease import JetStreamLease, lease_bucket
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


def _leader_of(url: str, stream: str) -> str:
    async def ask() -> str:
        nc = await nats.connect(url)
        try:
            reply = await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=2)
            leader: str = json.loads(reply.data)["cluster"]["leader"]
            return leader
        finally:
            await nc.close()

    return asyncio.run(ask())


def test_a_lease_whose_renewal_has_no_quorum_is_not_lost(tmp_path: Path) -> None:
    """Its leader alone (the other two killed) refuses the next renewal while the one
    that timed out is still proposed, and reads the key as it was, or expired: neither
    is another holder's lease, so no renewal may say "lost" (a step-down, and nothing
    left to answer ERR_UNAVAILABLE) until a quorum answers."""
    with running_nats(3, tmp_path) as servers:
        urls = ",".join(server.url for server in servers)
        journal = _open_when_ready(urls, time.monotonic() + 30)
        try:
            assert isinstance(journal, JetStreamJournal)
            lease = JetStreamLease(journal, ttl=1.5)
            assert lease.acquire()
            leader = _leader_of(servers[0].url, f"KV_{lease_bucket(journal.stream)}")
            down = [s for s in servers if s.name != leader]
            for server in down:
                server.kill()
            answers: list[bool | str] = []
            deadline = time.monotonic() + 4 * lease.ttl  # past the key's max age
            while time.monotonic() < deadline:
                try:
                    answers.append(lease.renew())
                except StorageUnavailable as exc:
                    answers.append(str(exc))
                time.sleep(lease.renew_every)
            assert False not in answers, answers
            assert not lease.valid()  # run out meanwhile: no appends
            for server in down:
                server.start()
            deadline = time.monotonic() + 30
            while True:  # once a quorum answers: renewed, or expired (lost)
                try:
                    lease.renew()
                    break
                except StorageUnavailable:
                    assert time.monotonic() < deadline, "no answer with a quorum back"
                    time.sleep(0.2)
        finally:
            journal.close()


def test_an_append_not_confirmed_and_stored_once_the_quorum_is_back_is_seen(
    tmp_path: Path,
) -> None:
    """The append times out without a quorum; the stream's leader, asked meanwhile,
    says it is not stored (it is only proposed); once the quorum is back it is stored.
    The next append must see that (StorageUnavailable: renumber), not take it for
    another writer's entry or a duplicate."""
    with running_nats(3, tmp_path) as servers:
        urls = ",".join(server.url for server in servers)
        journal = _open_when_ready(urls, time.monotonic() + 30)
        try:
            assert isinstance(journal, JetStreamJournal)
            journal.append([_order(0, 1)])
            leader = _leader_of(servers[0].url, STREAM)
            down = [s for s in servers if s.name != leader]
            for server in down:
                server.kill()
            with pytest.raises(StorageUnavailable, match="not confirmed"):
                journal.append([_order(1, 2)])
            journal.fence = lambda: False  # looks, as an append does, but sends nothing
            with pytest.raises(StorageUnavailable, match="lease has run out"):
                journal.append([_order(2, 2)])
            journal.fence = None
            for server in down:
                server.start()
            # The client of o1 retries it at once (the worker renumbers it: seq 2 again);
            # refused as a duplicate or another writer's append, it would be lost.
            deadline = time.monotonic() + 30
            while journal.head() < 2:
                assert time.monotonic() < deadline, "o1 neither stored nor found stored"
                try:
                    journal.append([_order(1, 2)])
                except StorageUnavailable:
                    time.sleep(0.05)
            journal.append([_order(2, 3)])
            assert [e.wire["orderId"] for e in journal.entries()] == ["o0", "o1", "o2"]
        finally:
            journal.close()
