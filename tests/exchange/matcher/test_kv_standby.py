"""Matchers of one market on JetStream (a real nats-server): one active by the lease in
the market's KV bucket, a standby with its own database that follows the head version by
version (row for row the active one's applied log), takes over at the head, and a
deposed matcher that publishes nothing clients take."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.keys import MATCHER_KEY, SEQUENCER_KEY, by_sequencer, verified_head
from support.nats import NatsServer, running_nats

from exchange.matcher import AppliedLog, Deposed, ProcessWorker, restore
from exchange.matcher import _kv_lease as kv_lease
from exchange.matcher._kv_lease import MatcherKV
from exchange.matcher._kv_standby import KVStandby, on_jetstream, run_with_kv_lease
from exchange.protocol import market_names, parse_entry
from exchange.sequencer._jetstream import JetStreamJournal
from exchange.versions import VersionReader, book_hash
from orderbook_core import DEFAULT_SPEC, MarketSpec, OrderBook, parse_command
from transports import MemoryNetwork, RemoteError, Transport, open_transport

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with running_nats(1, tmp_path_factory.mktemp("mlease")) as servers:
        yield servers[0]


def new(client: str, order_id: str, side: str, price: str, amount: str) -> dict[str, Any]:
    return {"op": "new", "clientId": client, "orderId": order_id, "side": side,
            "price": price, "amount": amount}  # fmt: skip


COMMANDS = [
    new("alice", "a1", "sell", "101", "5"),
    new("alice", "a2", "sell", "102", "5"),
    new("bob", "b1", "buy", "101", "3"),
    {"op": "cancel", "clientId": "alice", "orderId": "a2"},
    new("bob", "b2", "buy", "99", "1"),
    new("carol", "c1", "sell", "99", "0.5"),
    new("carol", "c2", "sell", "98", "0.5"),
    new("dave", "d1", "buy", "97", "2"),
    {"op": "cancel", "clientId": "bob", "orderId": "b2"},
    new("dave", "d2", "sell", "103", "1"),
]


def _spec(name: str) -> MarketSpec:
    return dataclasses.replace(DEFAULT_SPEC, market=name)


def _journal(nats: NatsServer, spec: MarketSpec) -> None:
    """The market's stream holding COMMANDS (as the sequencer appends them)."""
    with JetStreamJournal([nats.url], spec) as journal:
        entries = [parse_entry(seq, 1_000, c, spec) for seq, c in enumerate(COMMANDS, 1)]
        journal.append(entries)


def replay(spec: MarketSpec, upto: int) -> OrderBook:
    book = OrderBook(spec)
    for seq, command in enumerate(COMMANDS[:upto], start=1):
        book.apply(parse_command(command, spec, seq=seq, ts=1_000))
    return book


def worker(transport: Transport, db: Path, spec: MarketSpec) -> ProcessWorker:
    return ProcessWorker(
        transport, db, spec, broadcast_timeout=0.5, sequencer_key=SEQUENCER_KEY.public_key(),
        signing_key=MATCHER_KEY, snapshot_every=0, snapshot_interval=0,
    )  # fmt: skip


async def process(client: Transport, spec: MarketSpec, first: int, last: int) -> Any:
    entries = [{"seq": s, "ts": 1_000, "command": COMMANDS[s - 1]} for s in range(first, last + 1)]
    name = market_names(spec.market).process_order
    return await client.request(name, by_sequencer({"entries": entries}), timeout=5)


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):  # 10 s
        if condition():
            return
        await anyio.sleep(0.01)
    raise AssertionError("not reached in 10 s")


def _at(worker: ProcessWorker, seq: int) -> bool:
    follower = None if worker.standby is None else worker.standby.follower
    return follower is not None and follower.seq == seq


def rows(db: Path, spec: MarketSpec) -> list[tuple[int, str]]:
    log = AppliedLog(db, spec, read_only=True)
    try:
        return [(r.entry.seq, r.root) for r in log.entries()]
    finally:
        log.close()


async def test_the_standby_follows_row_for_row_and_takes_over_at_the_head(
    nats: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "exchange.matcher")
    spec = _spec("MS-A")
    _journal(nats, spec)
    network = MemoryNetwork()
    one = MatcherKV([nats.url], spec, ttl=1.0)
    two = MatcherKV([nats.url], spec, ttl=1.0)
    try:
        async with (
            open_transport("memory", network=network) as client,
            open_transport("memory", network=network) as active_net,
            open_transport("memory", network=network) as standby_net,
            anyio.create_task_group() as tg,
        ):
            active = worker(active_net, tmp_path / "a.db", spec)
            standby = worker(standby_net, tmp_path / "b.db", spec)
            a = KVStandby(one, active.db_path, spec, active.snapshotter.store)
            b = KVStandby(two, standby.db_path, spec, standby.snapshotter.store)
            async with anyio.create_task_group() as active_group:
                await active_group.start(run_with_kv_lease, active, a)
                tg.start_soon(run_with_kv_lease, standby, b)
                with anyio.fail_after(5):
                    await b.following.wait()
                for first, last in ((1, 2), (3, 3), (4, 5)):  # three versions
                    await process(client, spec, first, last)
                for _ in range(500):  # 5 s
                    if b.follower is not None and b.follower.seq >= 5:
                        break
                    await anyio.sleep(0.01)
                assert b.follower is not None
                assert b.follower.book == active.book
                assert not standby.active.is_set()
                # The same version boundaries: the standby's log is the active one's.
                assert rows(standby.db_path, spec) == rows(active.db_path, spec)
                assert len({root for _seq, root in rows(active.db_path, spec)}) == 3
                active_group.cancel_scope.cancel()  # a clean stop gives the lease up
            with anyio.fail_after(5):
                await standby.active.wait()
            assert (standby.head_seq, standby.head_root) == (active.head_seq, active.head_root)
            name = market_names(spec.market).orderbook_head
            head = verified_head(await client.request(name, None, timeout=5))
            assert head["seq"] == 5
            last = await process(client, spec, 6, 7)
            assert book_hash(standby.book) == book_hash(replay(spec, 7))
            version = await VersionReader(client, spec).fetch(last["root"])
            assert version.book == standby.book
            market_head = two.read_head()
            assert market_head is not None
            assert (market_head.seq, market_head.root) == (7, last["root"])
            assert market_head.holder == two.holder
            tg.cancel_scope.cancel()
    finally:
        one.close()
        two.close()
    assert "took the matcher's lease at seq 5" in caplog.text


def test_a_paused_holder_is_deposed_and_writes_no_head(nats: NatsServer) -> None:
    spec = _spec("MS-B")
    _journal(nats, spec)
    with_first = MatcherKV([nats.url], spec, ttl=1.0)
    second = MatcherKV([nats.url], spec, ttl=1.0)
    try:
        assert with_first.acquire()
        assert with_first.claim_head(None, 0, 0, None)
        with_first.write_head(1, 2, "r2")
        assert not second.acquire()  # held
        assert second.lease_holder() == with_first.holder
        time.sleep(1.0 + second.skew + 0.1)  # the first one "paused": its lease ran out
        assert not with_first.valid()
        with pytest.raises(Deposed):
            with_first.write_head(3, 3, "r3")  # by its own clock: nothing sent
        assert second.acquire()
        head = second.read_head()
        assert head is not None
        assert (head.seq, head.root) == (2, "r2")
        assert second.claim_head(head, 1, 2, "r2")
        # Even a holder that believes its lease good cannot write over the new head.
        with_first._deadline = time.monotonic() + 10  # as if its clock lied
        with pytest.raises(Deposed, match="written by"):
            with_first.write_head(3, 3, "r3")
        assert not with_first.renew()  # and its renewal says it lost the lease
        second.write_head(3, 3, "r3'")
        head = second.read_head()
        assert head is not None
        assert head.versions[-2:] == ((1, 2, "r2"), (3, 3, "r3'"))
        assert head.lease == second.lease_revision
    finally:
        with_first.close()
        second.close()


async def test_a_deposed_active_matcher_refuses_and_stops(nats: NatsServer, tmp_path: Path) -> None:
    spec = _spec("MS-C")
    _journal(nats, spec)
    network = MemoryNetwork()
    kv, thief = MatcherKV([nats.url], spec, ttl=1.0), MatcherKV([nats.url], spec, ttl=1.0)
    try:
        async with (
            open_transport("memory", network=network) as client,
            open_transport("memory", network=network) as server,
        ):
            active = worker(server, tmp_path / "a.db", spec)
            standby = KVStandby(kv, active.db_path, spec, active.snapshotter.store)
            with pytest.raises(BaseException) as caught:  # noqa: PT011, PT012
                async with anyio.create_task_group() as tg:
                    await tg.start(run_with_kv_lease, active, standby)
                    await process(client, spec, 1, 1)
                    # Another matcher takes the head over (as after this one's lease ran out).
                    head = thief.read_head()
                    kv._deadline = time.monotonic() + 30  # this one still believes it holds it
                    thief.lease_revision = 99
                    assert thief.claim_head(head, 1, 1, head.root if head else None)
                    with pytest.raises(RemoteError, match="ERR_UNAVAILABLE"):
                        await process(client, spec, 2, 2)
                    await anyio.sleep(5)
            assert caught.group_contains(Deposed)
            assert active.head_seq == 1  # seq 2 was neither recorded nor told
            assert rows(active.db_path, spec) == [(1, active.head_root)]
            assert standby.deposed == 1
    finally:
        kv.close()
        thief.close()


async def test_a_matcher_on_an_empty_database_starts_from_the_object_store(
    nats: NatsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "exchange.matcher")
    monkeypatch.setattr(kv_lease, "KEPT_VERSIONS", 2)  # the head lists 2 versions only
    spec = _spec("MS-D")
    _journal(nats, spec)
    network = MemoryNetwork()
    kvs = [MatcherKV([nats.url], spec, ttl=1.0) for _ in range(3)]
    try:
        async with (
            open_transport("memory", network=network) as client,
            open_transport("memory", network=network) as net_a,
            open_transport("memory", network=network) as net_b,
            open_transport("memory", network=network) as net_c,
            anyio.create_task_group() as tg,
        ):
            active, fresh, later = (
                worker(net, tmp_path / f"{name}.db", spec)
                for net, name in ((net_a, "a"), (net_b, "b"), (net_c, "c"))
            )
            a, b, c = (
                on_jetstream(w, kv) for w, kv in zip((active, fresh, later), kvs, strict=True)
            )
            async with anyio.create_task_group() as active_group:
                await active_group.start(run_with_kv_lease, active, a)
                for first, last in ((1, 2), (3, 3), (4, 5)):
                    await process(client, spec, first, last)
                # Versions 1..2 are no longer listed, and no snapshot yet: it waits.
                tg.start_soon(run_with_kv_lease, fresh, b)
                await _until(lambda: b.waiting)
                assert await active.snapshot() == 5  # the file, and the object
                await _until(lambda: b.follower is not None and b.follower.seq == 5)
                assert b.follower is not None
                assert b.follower.book == active.book
                assert rows(fresh.db_path, spec) == rows(active.db_path, spec)[3:]
                # A corrupt newest object: the previous one is used.
                await process(client, spec, 6, 6)
                assert a.objects is not None
                a.objects.put(6, b'{"format":"matcher-snapshot/1"}\ngarbage')
                async with anyio.create_task_group() as later_group:
                    later_group.start_soon(run_with_kv_lease, later, c)
                    await _until(lambda: c.follower is not None and c.follower.seq == 6)
                    later_group.cancel_scope.cancel()
                assert "snapshot 6: 7 bytes, header says None (torn)" in caplog.text
                assert "starting from DEX_MS-D_SNAPSHOTS snapshot 5" in caplog.text
                active_group.cancel_scope.cancel()
            with anyio.fail_after(5):
                await fresh.active.wait()
            assert (fresh.head_seq, fresh.head_root) == (active.head_seq, active.head_root)
            for seq in (7, 8, 9):
                await process(client, spec, seq, seq)
            assert book_hash(fresh.book) == book_hash(replay(spec, 9))
            assert await fresh.snapshot() == 9
            # The matcher left at seq 6 comes back: 7 is no longer listed, so it forgets
            # its records and starts over from the newest snapshot.
            again = worker(net_c, later.db_path, spec)
            async with anyio.create_task_group() as again_group:
                again_group.start_soon(run_with_kv_lease, again, on_jetstream(again, kvs[2]))
                await _until(lambda: again.standby is not None and _at(again, 9))
                again_group.cancel_scope.cancel()
            assert "forgetting" in caplog.text
            assert rows(later.db_path, spec) == rows(fresh.db_path, spec)[-1:]
            tg.cancel_scope.cancel()
        # A restart on its database starts from the snapshot it adopted.
        log = AppliedLog(fresh.db_path, spec, read_only=True)
        try:
            restored = restore(log, fresh.snapshotter.store, spec, fresh.db_path)
        finally:
            log.close()
        assert restored.snapshot == 9
        assert book_hash(restored.book) == book_hash(replay(spec, 9))
    finally:
        for kv in kvs:
            kv.close()
