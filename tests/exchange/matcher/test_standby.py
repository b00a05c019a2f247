"""A hot standby matcher on the same database: it follows, then takes over at the head."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus
from support.keys import MATCHER_KEY, SEQUENCER_KEY, by_sequencer, verified_head

from exchange.matcher import AppliedLog, AppliedRecord, GaveUp, ProcessWorker
from exchange.protocol import DatabaseInUse, parse_entry
from exchange.runtime import one_writer
from exchange.versions import VersionReader, book_hash
from orderbook_core import DEFAULT_SPEC, OrderBook, parse_command
from transports import LoopbackNetwork, MemoryNetwork, RemoteError, Transport, open_transport

pytestmark = pytest.mark.anyio


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
]


def replay(commands: list[dict[str, Any]]) -> OrderBook:
    book = OrderBook(DEFAULT_SPEC)
    for seq, command in enumerate(commands, start=1):
        book.apply(parse_command(command, DEFAULT_SPEC, seq=seq, ts=1_000))
    return book


def worker(transport: Transport, db: Path, **options: Any) -> ProcessWorker:
    return ProcessWorker(
        transport, db, broadcast_timeout=0.5, sequencer_key=SEQUENCER_KEY.public_key(),
        signing_key=MATCHER_KEY, snapshot_every=0, snapshot_interval=0, **options,
    )  # fmt: skip


async def process(client: Transport, seq: int) -> Any:
    payload = {"seq": seq, "ts": 1_000, "command": COMMANDS[seq - 1]}
    return await client.request("process_order", by_sequencer(payload), timeout=5)


async def followed(standby: ProcessWorker, seq: int) -> None:
    assert standby.standby is not None
    for _ in range(500):  # 5 s
        follower = standby.standby.follower
        if follower is not None and follower.seq >= seq:
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"the standby did not follow up to seq {seq}")


async def test_the_standby_follows_then_takes_over_at_the_head(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "exchange.matcher")
    db = tmp_path / "p.db"
    network = MemoryNetwork()
    async with (
        open_transport("memory", network=network) as client,
        open_transport("memory", network=network) as active_net,
        open_transport("memory", network=network) as standby_net,
        anyio.create_task_group() as tg,
    ):
        active = worker(active_net, db)
        standby = worker(standby_net, db, standby=True)
        async with anyio.create_task_group() as active_group:
            await active_group.start(active.run)
            tg.start_soon(standby.run)
            assert standby.standby is not None
            with anyio.fail_after(5):
                await standby.standby.following.wait()
            for seq in (1, 2, 3):
                await process(client, seq)
            await followed(standby, 3)
            # It follows the book, and it does not serve: only the active one answers.
            assert standby.standby.follower is not None
            assert standby.standby.follower.book == active.book
            assert not standby.active.is_set()
            assert len(await client.map("orderbook_head", None, timeout=2)) == 1
            # The active one goes (as by kill -9: its lock is released); the standby takes over.
            active_group.cancel_scope.cancel()
        with anyio.fail_after(5):
            await standby.active.wait()
        assert (standby.head_seq, standby.head_root) == (active.head_seq, active.head_root)
        head = verified_head(await client.request("orderbook_head", None, timeout=5))
        assert head["seq"] == 3
        with pytest.raises(RemoteError, match="ERR_SEQ_GAP: expected 4"):
            await process(client, 5)
        last = [await process(client, seq) for seq in (4, 5, 6)][-1]
        assert book_hash(standby.book) == book_hash(replay(COMMANDS))
        version = await VersionReader(client, DEFAULT_SPEC).fetch(last["root"])
        assert version.book == standby.book
        tg.cancel_scope.cancel()
    assert "standby: taking over at seq 3" in caplog.text
    # The versions across the takeover are those of a run without one, hash for hash.
    clean_network = MemoryNetwork()
    async with (
        open_transport("memory", network=clean_network) as server,
        open_transport("memory", network=clean_network) as clean_client,
        anyio.create_task_group() as tg,
    ):
        await tg.start(worker(server, tmp_path / "clean.db").run)
        clean_last = [await process(clean_client, seq) for seq in range(1, 7)][-1]
        tg.cancel_scope.cancel()
    assert last == clean_last


async def test_a_standby_with_nobody_active_is_active_at_once(tmp_path: Path) -> None:
    network = MemoryNetwork()
    async with (
        open_transport("memory", network=network) as client,
        open_transport("memory", network=network) as server,
        anyio.create_task_group() as tg,
    ):
        standby = worker(server, tmp_path / "p.db", standby=True)
        await tg.start(standby.run)
        assert standby.standby is not None
        assert not standby.standby.following.is_set()
        assert (await process(client, 1))["seq"] == 1
        tg.cancel_scope.cancel()


async def test_without_standby_a_second_matcher_still_refuses_to_start(tmp_path: Path) -> None:
    network = MemoryNetwork()
    async with (
        open_transport("memory", network=network) as first_net,
        open_transport("memory", network=network) as second_net,
        anyio.create_task_group() as tg,
    ):
        await tg.start(worker(first_net, tmp_path / "p.db").run)
        with pytest.raises(DatabaseInUse):
            await worker(second_net, tmp_path / "p.db").run()
        tg.cancel_scope.cancel()


async def test_the_standby_waits_for_a_log_that_is_not_made_yet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "p.db"
    sqlite3.connect(db).close()  # the file, not yet its table
    network = MemoryNetwork()
    async with (
        open_transport("memory", network=network) as client,
        open_transport("memory", network=network) as server,
        anyio.create_task_group() as tg,
    ):
        standby = worker(server, db, standby=True)
        assert standby.standby is not None
        with one_writer(db):  # another matcher holds the database
            tg.start_soon(standby.run)
            with anyio.fail_after(5):
                await standby.standby.following.wait()
            await anyio.sleep(0.2)  # a few reads that find no table
            assert "reading the active matcher's applied log fails" in caplog.text
            log = AppliedLog(db, DEFAULT_SPEC)
            entry = parse_entry(1, 1_000, COMMANDS[0], DEFAULT_SPEC)
            log.append([AppliedRecord(entry, "a" * 40)])
            log.close()
            await followed(standby, 1)
        with anyio.fail_after(5):
            await standby.active.wait()
        assert standby.head_seq == 1
        with pytest.raises(RemoteError, match="ERR_SEQ_GAP: expected 2"):
            await process(client, 3)
        tg.cancel_scope.cancel()


async def test_an_active_matcher_that_cannot_publish_gives_up_to_the_standby(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "exchange.matcher")
    db = tmp_path / "p.db"
    failing, healthy = LoopbackNetwork(seed=3), MemoryNetwork()  # two sets of grapes
    gave_up: list[BaseException] = []

    async def run_active(active: ProcessWorker, *, task_status: TaskStatus[int]) -> None:
        try:
            await active.run(task_status=task_status)
        except* GaveUp as group:
            gave_up.extend(group.exceptions)

    async with (
        open_transport("loopback", network=failing) as active_net,
        open_transport("loopback", network=failing) as active_client,
        open_transport("memory", network=healthy) as standby_net,
        open_transport("memory", network=healthy) as client,
        anyio.create_task_group() as tg,
    ):
        active = worker(active_net, db, give_up_after=0.3)
        await tg.start(run_active, active)
        standby = worker(standby_net, db, standby=True)
        tg.start_soon(standby.run)
        await process(active_client, 1)
        await followed(standby, 1)
        failing.with_faults(put_fail=1.0)  # its grapes stop storing anything
        with anyio.fail_after(10):
            while not gave_up:
                with pytest.raises(RemoteError, match="ERR_UNAVAILABLE"):
                    await process(active_client, 2)
                await anyio.sleep(0.05)
            await standby.active.wait()
        assert "storing versions has failed for" in str(gave_up[0])
        assert standby.head_seq == 1
        assert (await process(client, 2))["seq"] == 2  # through the standby's grapes
        tg.cancel_scope.cancel()
    assert "standby: taking over at seq 1" in caplog.text
