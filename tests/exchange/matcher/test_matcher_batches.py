"""The matcher takes runs of entries: one transaction and one version per run; long polls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.exchange_rig import kind_of, replay_commands
from support.keys import MATCHER_KEY, SEQUENCER_KEY, by_sequencer, verified_head

from exchange.matcher import ProcessWorker
from exchange.versions import VersionReader, book_hash
from orderbook_core import DEFAULT_SPEC
from transports import JSON, LoopbackNetwork, MemoryNetwork, RemoteError, Transport, open_transport

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


def run(first: int, last: int, ts: int = 1_000) -> JSON:
    """The ``process_order`` payload of COMMANDS[first-1 .. last-1] as seqs first..last."""
    entries = [{"seq": s, "ts": ts, "command": COMMANDS[s - 1]} for s in range(first, last + 1)]
    return entries[0] if len(entries) == 1 else {"entries": entries}


@asynccontextmanager
async def matcher(
    db: Path, network: MemoryNetwork | None = None
) -> AsyncIterator[tuple[ProcessWorker, Transport]]:
    network = network if network is not None else MemoryNetwork()
    async with (
        open_transport(kind_of(network), network=network) as server,
        open_transport(kind_of(network), network=network) as client,
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
        yield worker, client
        tg.cancel_scope.cancel()


async def process(client: Transport, payload: JSON) -> Any:
    return await client.request("process_order", by_sequencer(payload), timeout=5)


async def test_a_run_is_one_version_covering_first_to_seq(tmp_path: Path) -> None:
    async with matcher(tmp_path / "p.db") as (worker, client):
        one = await process(client, run(1, 1))
        reply = await process(client, run(2, 5))
        assert reply["seq"] == 5
        assert worker.publisher.last_root == reply["root"] == worker.head_root
        version = await VersionReader(client, DEFAULT_SPEC).fetch(reply["root"])
        assert (version.root.first, version.root.seq, version.root.prev) == (2, 5, one["root"])
        assert {event.seq for event in version.events} == {2, 3, 4, 5}
        assert version.book == worker.book == replay_commands(COMMANDS[:5])
        assert version.root.book == book_hash(worker.book)


async def test_an_overlapping_run_is_answered_per_seq_and_applies_the_rest(
    tmp_path: Path,
) -> None:
    async with matcher(tmp_path / "p.db") as (worker, client):
        first = await process(client, run(1, 3))
        assert await process(client, run(2, 3)) == first  # all applied: the recorded reply
        reply = await process(client, run(2, 6))  # 2..3 applied, 4..6 new
        assert reply["seq"] == 6
        assert worker.book == replay_commands(COMMANDS)
        with pytest.raises(RemoteError, match="ERR_SEQ_GAP: expected 7"):
            await process(client, {"entries": [{"seq": 8, "ts": 1_000, "command": COMMANDS[0]}]})


async def test_an_applied_seq_resent_with_another_command_refuses_the_whole_run(
    tmp_path: Path,
) -> None:
    async with matcher(tmp_path / "p.db") as (worker, client):
        await process(client, run(1, 2))
        other = {"entries": [{"seq": 2, "ts": 1_000, "command": COMMANDS[4]},
                             {"seq": 3, "ts": 1_000, "command": COMMANDS[2]}]}  # fmt: skip
        with pytest.raises(RemoteError, match="ERR_BAD_REQUEST: seq 2 was applied with a differ"):
            await process(client, other)
        assert worker.head_seq == 2


async def test_a_failed_put_reverts_the_whole_run(tmp_path: Path) -> None:
    network = LoopbackNetwork(seed=5)
    async with matcher(tmp_path / "p.db", network) as (worker, client):
        first = await process(client, run(1, 1))
        before = worker.book.copy()
        network.with_faults(put_fail=1.0)
        with pytest.raises(RemoteError, match="ERR_UNAVAILABLE"):
            await process(client, run(2, 6))
        assert (worker.book, worker.head_seq, worker.head_root) == (before, 1, first["root"])
        network.with_faults(put_fail=0.0)
        retried = await process(client, run(2, 6))
    async with matcher(tmp_path / "clean.db") as (_, clean):
        await process(clean, run(1, 1))
        assert await process(clean, run(2, 6)) == retried  # the same version, hash for hash


async def test_restart_republishes_a_batch_head_with_the_recorded_root(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    async with matcher(db) as (_, client):
        await process(client, run(1, 2))
        head = await process(client, run(3, 6))
    async with matcher(db, MemoryNetwork()) as (worker, client):  # a DHT that forgot all
        with anyio.fail_after(5):
            await worker.republished.wait()
        version = await VersionReader(client, DEFAULT_SPEC).fetch(head["root"])
        assert (version.root.first, version.root.seq) == (3, 6)
        assert version.book == worker.book


async def test_a_long_poll_answers_when_a_version_is_recorded(tmp_path: Path) -> None:
    async with matcher(tmp_path / "p.db") as (_, client):
        await process(client, run(1, 1))
        now = verified_head(
            await client.request("orderbook_head", {"after": 0, "waitMs": 5_000}, timeout=5)
        )
        assert now["seq"] == 1  # already beyond: at once
        replies: list[Any] = []

        async def poll() -> None:
            wait = {"after": 1, "waitMs": 5_000}
            replies.append(verified_head(await client.request("orderbook_head", wait, timeout=10)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            await anyio.sleep(0.2)
            assert replies == []  # still waiting: nothing new
            reply = await process(client, run(2, 3))
        assert replies == [{"seq": 3, "root": reply["root"]}]
        with anyio.fail_after(2):  # nothing new: the head as it is, after waitMs
            timed_out = verified_head(
                await client.request("orderbook_head", {"after": 3, "waitMs": 100}, timeout=5)
            )
        assert timed_out == replies[0]
