"""The process_order worker: exactly-once application, gaps, DHT failures, restarts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.keys import MATCHER_KEY, SEQUENCER_KEY, by_sequencer, verified_head

import exchange.matcher._broadcaster as matcher_broadcaster
from exchange.matcher import ProcessWorker
from exchange.protocol import HeadRequest
from exchange.versions import VersionReader, book_hash
from orderbook_core import DEFAULT_SPEC, OrderBook, OrderRejected, parse_command
from transports import (
    JSON,
    LoopbackNetwork,
    MemoryNetwork,
    PeerResult,
    RemoteError,
    Transport,
    TransportKind,
    open_transport,
)

pytestmark = pytest.mark.anyio


@dataclass
class Rig:
    network: MemoryNetwork
    client: Transport
    worker: ProcessWorker

    async def process(self, seq: int, command: dict[str, Any], ts: int = 1_000) -> Any:
        payload = {"seq": seq, "ts": ts, "command": command}
        return await self.client.request("process_order", by_sequencer(payload), timeout=5)

    async def head(self) -> Any:
        return verified_head(await self.client.request("orderbook_head", None, timeout=5))


@asynccontextmanager
async def running(db: Path, network: MemoryNetwork | None = None) -> AsyncIterator[Rig]:
    network = network if network is not None else MemoryNetwork()
    kind: TransportKind = "loopback" if isinstance(network, LoopbackNetwork) else "memory"
    async with (
        open_transport(kind, network=network) as server,
        open_transport(kind, network=network) as client,
        anyio.create_task_group() as tg,
    ):
        worker = ProcessWorker(
            server,
            db,
            broadcast_timeout=0.5,
            sequencer_key=SEQUENCER_KEY.public_key(),
            signing_key=MATCHER_KEY,
        )
        await tg.start(worker.run)
        yield Rig(network, client, worker)
        tg.cancel_scope.cancel()


def new(client: str, order_id: str, side: str, price: str, amount: str) -> dict[str, Any]:
    return {
        "op": "new",
        "clientId": client,
        "orderId": order_id,
        "side": side,
        "price": price,
        "amount": amount,
    }


COMMANDS = [
    new("alice", "a1", "sell", "101", "5"),
    new("alice", "a2", "sell", "102", "5"),
    new("bob", "b1", "buy", "101", "3"),
    {"op": "cancel", "clientId": "alice", "orderId": "a2"},
    new("bob", "b2", "buy", "99", "1"),
]


def replay(commands: list[dict[str, Any]]) -> OrderBook:
    book = OrderBook(DEFAULT_SPEC)
    for seq, command in enumerate(commands, start=1):
        book.apply(parse_command(command, DEFAULT_SPEC, seq=seq, ts=1_000))
    return book


async def test_applies_in_order_and_reports_the_head(tmp_path: Path) -> None:
    async with running(tmp_path / "p.db") as rig:
        assert await rig.head() == {"seq": 0, "root": None}
        roots = []
        for seq, command in enumerate(COMMANDS, start=1):
            reply = await rig.process(seq, command)
            assert reply["seq"] == seq
            roots.append(reply["root"])
        assert len(set(roots)) == len(roots)
        assert await rig.head() == {"seq": 5, "root": roots[-1]}
        assert rig.worker.book == replay(COMMANDS)
        # The published version is the book the worker holds, readable from the DHT.
        version = await VersionReader(rig.client, DEFAULT_SPEC).fetch(roots[-1])
        assert version.book == rig.worker.book
        assert version.root.seq == 5


async def test_reapplying_a_number_returns_the_recorded_outcome(tmp_path: Path) -> None:
    async with running(tmp_path / "p.db") as rig:
        first = await rig.process(1, COMMANDS[0])
        second = await rig.process(2, COMMANDS[1])
        before = rig.worker.book.copy()
        assert await rig.process(1, COMMANDS[0]) == first
        assert await rig.process(2, COMMANDS[1]) == second
        assert rig.worker.book == before
        assert await rig.head() == second


async def test_the_same_number_with_another_command_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path / "p.db") as rig:
        await rig.process(1, COMMANDS[0])
        with pytest.raises(RemoteError) as info:
            await rig.process(1, COMMANDS[1])
        assert info.value.message.startswith("ERR_BAD_REQUEST: seq 1 was applied")


async def test_a_gap_is_refused_with_the_expected_number(tmp_path: Path) -> None:
    async with running(tmp_path / "p.db") as rig:
        with pytest.raises(RemoteError) as info:
            await rig.process(2, COMMANDS[1])
        assert info.value.message == "ERR_SEQ_GAP: expected 1"
        await rig.process(1, COMMANDS[0])
        with pytest.raises(RemoteError) as info:
            await rig.process(7, COMMANDS[1])
        assert info.value.message == "ERR_SEQ_GAP: expected 2"
        assert (await rig.head())["seq"] == 1


async def test_a_rejected_order_consumes_its_number_and_is_published(tmp_path: Path) -> None:
    async with running(tmp_path / "p.db") as rig:
        await rig.process(1, COMMANDS[0])
        # Cancelling an unknown order is a business outcome, not an error.
        reply = await rig.process(2, {"op": "cancel", "clientId": "bob", "orderId": "nope"})
        assert reply["seq"] == 2
        version = await VersionReader(rig.client, DEFAULT_SPEC).fetch(reply["root"])
        assert [type(e) for e in version.events] == [OrderRejected]


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (None, "ERR_AUTH: process_order payload: must be a signed object"),
        ({"seq": 1, "ts": 1}, "ERR_BAD_REQUEST: command: must be an object"),
        ({"seq": "1", "ts": 1, "command": COMMANDS[0]}, "ERR_BAD_REQUEST: seq: must be"),
        ({"seq": True, "ts": 1, "command": COMMANDS[0]}, "ERR_BAD_REQUEST: seq: must be"),
        ({"seq": 0, "ts": 1, "command": COMMANDS[0]}, "ERR_BAD_REQUEST: seq: must be"),
        ({"seq": 1, "ts": -1, "command": COMMANDS[0]}, "ERR_BAD_REQUEST: ts: must be"),
        ({"seq": 1, "ts": 1.5, "command": COMMANDS[0]}, "ERR_BAD_REQUEST: ts: must be"),
        ({"seq": 1, "ts": 1, "command": {}, "x": 1}, "ERR_BAD_REQUEST: x: unknown field"),
        (
            {"seq": 1, "ts": 1, "command": {**COMMANDS[0], "price": "1.001"}},
            "ERR_VALIDATION: price: not a multiple of 0.01",
        ),
    ],
)
async def test_bad_payloads_are_refused_and_change_nothing(
    tmp_path: Path, payload: JSON, error: str
) -> None:
    async with running(tmp_path / "p.db") as rig:
        with pytest.raises(RemoteError) as info:
            await rig.client.request("process_order", by_sequencer(payload), timeout=5)
        assert info.value.message.startswith(error)
        assert await rig.head() == {"seq": 0, "root": None}
        assert rig.worker.book == OrderBook(DEFAULT_SPEC)


async def test_orderbook_head_takes_null(tmp_path: Path) -> None:
    async with running(tmp_path / "p.db") as rig:
        with pytest.raises(RemoteError) as info:
            await rig.client.request("orderbook_head", {"x": 1}, timeout=5)
        assert info.value.message.startswith("ERR_BAD_REQUEST")


async def test_a_failed_dht_put_reverts_the_book_and_refuses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "exchange")
    network = LoopbackNetwork(seed=7)
    async with running(tmp_path / "p.db", network) as rig:
        first = await rig.process(1, COMMANDS[0])
        before = rig.worker.book.copy()
        network.with_faults(put_fail=1.0)
        for _ in range(5):  # as the submit worker retries
            with pytest.raises(RemoteError) as info:
                await rig.process(2, COMMANDS[2])
            assert info.value.message.startswith("ERR_UNAVAILABLE: storing version 2 failed")
        assert rig.worker.book == before
        assert await rig.head() == first
        # Five refusals, one line when storing started failing (and none per refusal).
        storing = [r for r in caplog.records if "storing versions in the DHT" in r.getMessage()]
        assert [r.levelno for r in storing] == [logging.WARNING]
        assert "refused" not in caplog.text
        # The retry, once the DHT works again, publishes exactly what a clean run would.
        network.with_faults(put_fail=0.0)
        second = await rig.process(2, COMMANDS[2])
        storing = [r for r in caplog.records if "storing versions in the DHT" in r.getMessage()]
        assert [r.levelno for r in storing] == [logging.WARNING, logging.INFO]
        assert "works again, after 5 failed attempts" in storing[1].getMessage()
    async with running(tmp_path / "clean.db") as clean:
        await clean.process(1, COMMANDS[0])
        assert await clean.process(2, COMMANDS[2]) == second


async def test_dead_and_slow_subscribers_do_not_block_processing(tmp_path: Path) -> None:
    network = MemoryNetwork(keep_dead_peers=True)
    got: list[str] = []
    arrived = anyio.Event()
    network.announce_dead("orderbook_updated")

    async def slow(payload: JSON) -> JSON:
        await anyio.sleep_forever()

    async def fast(payload: JSON) -> JSON:
        got.append(payload)
        arrived.set()
        return None

    async with (
        open_transport("memory", network=network) as slow_peer,
        open_transport("memory", network=network) as fast_peer,
        anyio.create_task_group() as tg,
    ):
        await tg.start(slow_peer.serve, {"orderbook_updated": slow})
        await tg.start(fast_peer.serve, {"orderbook_updated": fast})
        async with running(tmp_path / "p.db", network) as rig:
            with anyio.fail_after(2):  # far less than one slow broadcast per command
                for seq in range(1, 21):
                    reply = await rig.process(seq, new("c", f"o{seq}", "buy", "10", "1"))
            with anyio.fail_after(5):
                while not got or got[-1] != reply["root"]:
                    await arrived.wait()
                    arrived = anyio.Event()
            # Broadcasts were coalesced: fewer maps than versions, the last one included.
            assert rig.worker.broadcaster.broadcasts < 20
        tg.cancel_scope.cancel()


async def _broadcasts_reach(worker: ProcessWorker, count: int) -> None:
    for _ in range(500):  # 5 s
        if worker.broadcaster.broadcasts >= count:
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"only {worker.broadcaster.broadcasts} broadcasts, expected {count}")


def _sample_maps(worker: ProcessWorker, samples: list[list[str]]) -> Any:
    """Make the worker's maps reach only the next sample's peers, as a grape's lookup of
    a name with over 100 peers returns a random 100 of them."""
    full_map = worker.transport.map
    pending = iter(samples)

    async def sampled(name: str, payload: JSON, *, timeout: float) -> list[PeerResult]:
        keep = set(next(pending))
        return [r for r in await full_map(name, payload, timeout=timeout) if r.peer in keep]

    return sampled


async def test_a_dead_peer_is_logged_once_whatever_each_lookup_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, "exchange.matcher")
    network = MemoryNetwork(keep_dead_peers=True)
    dead = [network.announce_dead("orderbook_updated") for _ in range(4)]
    # Each peer drops out of some maps and comes back in later ones.
    samples = [dead[:2], dead[2:], dead[1:3], dead, dead[::2], dead]
    async with running(tmp_path / "p.db", network) as rig:
        monkeypatch.setattr(rig.worker.transport, "map", _sample_maps(rig.worker, samples))
        for seq in range(1, len(samples) + 1):
            await rig.process(seq, new("c", f"o{seq}", "buy", "10", "1"))
            await _broadcasts_reach(rig.worker, seq)
    logged = [r.getMessage() for r in caplog.records if "orderbook_updated: memory" in r.message]
    # One warning per dead peer, though each was missing from a map and came back.
    assert sorted(line.split()[1] for line in logged) == sorted(dead), logged


async def test_the_memory_of_failing_peers_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Clients come and go for ever: the dead ones remembered must not grow without bound.
    monkeypatch.setattr(matcher_broadcaster, "_FAILING_PEERS_KEPT", 3)
    network = MemoryNetwork(keep_dead_peers=True)
    dead = [network.announce_dead("orderbook_updated") for _ in range(5)]
    async with running(tmp_path / "p.db", network) as rig:
        await rig.process(1, COMMANDS[0])
        await _broadcasts_reach(rig.worker, 1)
        assert list(rig.worker.broadcaster.failing_peers) == dead[-3:]  # the least recent dropped


async def test_restart_resumes_from_the_database(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    async with running(db) as rig:
        for seq, command in enumerate(COMMANDS[:3], start=1):
            await rig.process(seq, command)
        head = await rig.head()
        state = rig.worker.book.copy()
    async with running(db) as rig:
        assert await rig.head() == head
        assert rig.worker.book == state
        assert await rig.process(3, COMMANDS[2]) == head  # already applied: recorded
        with pytest.raises(RemoteError, match="ERR_SEQ_GAP: expected 4"):
            await rig.process(5, COMMANDS[4])
        for seq in (4, 5):
            last = await rig.process(seq, COMMANDS[seq - 1])
        # The versions after a restart are the versions a run without one publishes.
        async with running(tmp_path / "clean.db") as clean:
            for seq, command in enumerate(COMMANDS, start=1):
                clean_last = await clean.process(seq, command)
        assert last == clean_last
        assert book_hash(rig.worker.book) == book_hash(replay(COMMANDS))


async def test_restart_republishes_the_head_version(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "p.db"
    async with running(db) as rig:
        for seq, command in enumerate(COMMANDS[:2], start=1):
            head = await rig.process(seq, command)
    fresh = MemoryNetwork()  # a DHT that forgot everything, as after a grape restart
    async with running(db, fresh) as rig:
        with anyio.fail_after(5):
            await rig.worker.republished.wait()
        assert "republished head" not in caplog.text  # the same root, as recorded
        version = await VersionReader(rig.client, DEFAULT_SPEC).fetch(head["root"])
        assert version.root.seq == 2
        assert version.book == rig.worker.book


async def test_a_failed_republish_of_the_head_is_tried_again_until_it_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "p.db"
    async with running(db) as rig:
        for seq, command in enumerate(COMMANDS[:2], start=1):
            head = await rig.process(seq, command)
    fresh = LoopbackNetwork(seed=8)  # a DHT that forgot everything, and refuses puts
    fresh.with_faults(put_fail=1.0)
    async with running(db, fresh) as rig:
        with anyio.fail_after(5):
            await rig.worker.republished.wait()  # the first try: nothing waits for more
        assert "republishing head seq=2 failed" in caplog.text
        fresh.with_faults(put_fail=0.0)
        reader = VersionReader(rig.client, DEFAULT_SPEC)
        for _ in range(200):  # 10 s: the retries back off from 0.5 s
            if await rig.client.get(head["root"]) is not None:
                break
            await anyio.sleep(0.05)
        version = await reader.fetch(head["root"])
        assert version.book == rig.worker.book


async def test_unexpected_failures_become_err_internal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path / "p.db") as rig:

        async def broken(*args: Any, **kwargs: Any) -> str:
            raise ZeroDivisionError("boom")

        rig.worker.publisher.publish = broken  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR), pytest.raises(RemoteError) as info:
            await rig.process(1, COMMANDS[0])
        assert info.value.message == "ERR_INTERNAL: ZeroDivisionError"
        assert "unexpected failure" in caplog.text
        assert rig.worker.book == OrderBook(DEFAULT_SPEC)
        assert await rig.head() == {"seq": 0, "root": None}


async def test_a_cancelled_application_leaves_no_trace(tmp_path: Path) -> None:
    network = LoopbackNetwork(seed=1)
    async with running(tmp_path / "p.db", network) as rig:
        await rig.process(1, COMMANDS[0])
        before = rig.worker.book.copy()
        network.with_faults(delay=(0.02, 0.02))  # DHT puts now take a while
        payload = {"seq": 2, "ts": 1_000, "command": COMMANDS[2]}
        with anyio.move_on_after(0.01):  # within the version's one round of puts
            await rig.worker.process(by_sequencer(payload))
            pytest.fail("the publish should have been cancelled")
        assert rig.worker.book == before
        assert rig.worker.head_seq == 1
        network.with_faults(delay=(0.0, 0.0))
        second = await rig.process(2, COMMANDS[2])
    # The chain of versions is the one an undisturbed run publishes.
    async with running(tmp_path / "clean.db") as clean:
        await clean.process(1, COMMANDS[0])
        assert await clean.process(2, COMMANDS[2]) == second


async def test_a_lingering_reply_comes_after_the_version_is_announced(tmp_path: Path) -> None:
    # `linger`: the version is recorded and announced first; only the reply waits (so
    # the sequencer's next run grows), at most K x the version's time.
    network = LoopbackNetwork(seed=1)
    async with running(tmp_path / "p.db", network) as rig:
        rig.worker.linger = 1.0
        network.with_faults(delay=(0.02, 0.02))  # a version takes a while
        replied = anyio.Event()

        async def process() -> None:
            await rig.worker.process(by_sequencer({"seq": 1, "ts": 1_000, "command": COMMANDS[0]}))
            replied.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(process)
            await rig.worker.head(HeadRequest(0, 2_000).to_wire())  # a long poll
            assert rig.worker.head_seq == 1
            assert not replied.is_set()  # announced, the reply lingers
        network.with_faults(delay=(0.0, 0.0))
        assert (await rig.head())["seq"] == 1
