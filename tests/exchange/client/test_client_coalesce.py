"""The client's coalescing of submits: what is in flight at once travels in one request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.keys import SEQUENCER_KEY

from exchange.client import ClientNode, SubmitCoalescer
from exchange.protocol import (
    AuthFailed,
    OrderRefused,
    StorageUnavailable,
    SubmitReply,
    service_handler,
)
from exchange.sequencer import Journal, SubmitWorker
from transports import JSON, MemoryNetwork, RemoteError, Transport, open_transport

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def serving(
    answer: Callable[[JSON], JSON],
) -> AsyncIterator[tuple[Transport, list[JSON]]]:
    """A fake ``submit_order`` that records each payload it gets."""
    network = MemoryNetwork()
    seen: list[JSON] = []

    async def handle(payload: JSON) -> JSON:
        seen.append(payload)
        return answer(payload)

    async with (
        open_transport("memory", network=network) as server,
        open_transport("memory", network=network) as client,
        anyio.create_task_group() as tg,
    ):
        await tg.start(server.serve, {"submit_order": service_handler("submit_order", handle)})
        yield client, seen
        tg.cancel_scope.cancel()


def echo(payload: JSON) -> JSON:
    if isinstance(payload, list):
        return [echo(item) for item in payload]
    assert isinstance(payload, dict)
    if payload.get("bad"):
        return {"error": "ERR_VALIDATION: bad: yes"}
    return {"seq": int(payload["n"]), "orderId": str(payload["n"])}


def old_sequencer(payload: JSON) -> JSON:
    """A sequencer from before batches: an array is not a signed object."""
    if not isinstance(payload, dict):
        raise AuthFailed("submit_order payload: must be a signed object")
    return echo(payload)


async def gather(coalescer: SubmitCoalescer, payloads: list[JSON]) -> list[Any]:
    results: list[Any] = [None] * len(payloads)

    async def one(index: int) -> None:
        try:
            results[index] = await coalescer.request(payloads[index], timeout=5)
        except RemoteError as exc:
            results[index] = exc.message

    async with anyio.create_task_group() as tg:
        for index in range(len(payloads)):
            tg.start_soon(one, index)
    return results


async def test_submits_made_at_once_travel_in_one_request_answered_per_order() -> None:
    async with serving(echo) as (client, seen):
        coalescer = SubmitCoalescer(client, linger=0.01)
        payloads: list[JSON] = [{"n": 1}, {"n": 2, "bad": True}, {"n": 3}]
        results = await gather(coalescer, payloads)
        assert results == [
            {"seq": 1, "orderId": "1"},
            "ERR_VALIDATION: bad: yes",
            {"seq": 3} | {"orderId": "3"},
        ]
        assert seen == [payloads]
        assert coalescer.requests == 1


async def test_a_lone_submit_goes_as_the_single_payload() -> None:
    async with serving(echo) as (client, seen):
        coalescer = SubmitCoalescer(client, linger=0)
        assert await coalescer.request({"n": 7}, timeout=5) == {"seq": 7, "orderId": "7"}
        assert seen == [{"n": 7}]


async def test_batches_are_split_within_the_limits() -> None:
    async with serving(echo) as (client, seen):
        coalescer = SubmitCoalescer(client, linger=0.01, max_orders=2)
        results = await gather(coalescer, [{"n": n} for n in range(1, 6)])
        assert [r["seq"] for r in results] == [1, 2, 3, 4, 5]
        assert sorted(len(p) if isinstance(p, list) else 1 for p in seen) == [1, 2, 2]


async def test_a_sequencer_without_batches_gets_the_orders_one_by_one() -> None:
    async with serving(old_sequencer) as (client, seen):
        coalescer = SubmitCoalescer(client, linger=0.01)
        results = await gather(coalescer, [{"n": 1}, {"n": 2}])
        assert results == [{"seq": 1, "orderId": "1"}, {"seq": 2, "orderId": "2"}]
        assert len(seen) == 3  # the batch, refused, then each alone


async def test_a_retryable_refusal_of_the_batch_reaches_every_order() -> None:
    def down(payload: JSON) -> JSON:
        raise StorageUnavailable("down")

    async with serving(down) as (client, _seen):
        coalescer = SubmitCoalescer(client, linger=0.01)
        results = await gather(coalescer, [{"n": 1}, {"n": 2}])
        assert results == ["ERR_UNAVAILABLE: storage: down"] * 2


async def test_a_node_submits_many_through_one_batch_to_a_real_sequencer(tmp_path: Path) -> None:
    network = MemoryNetwork()
    with Journal(tmp_path / "journal.db") as journal:
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            worker = SubmitWorker(server, journal, max_backoff=0.2, signing_key=SEQUENCER_KEY)
            await tg.start(worker.run)
            node = ClientNode(client, "alice", submit_linger=0.01)
            orders: list[dict[str, JSON]] = [
                {"orderId": f"a{i}", "side": "buy", "price": "100", "amount": "1"} for i in range(5)
            ]
            orders[2] = {**orders[2], "price": "1.001"}
            results = await node.submit_many(orders, timeout=5)
            assert [r.seq if isinstance(r, SubmitReply) else None for r in results] == [
                1,
                2,
                None,
                3,
                4,
            ]
            assert isinstance(results[2], OrderRefused)
            assert str(results[2]).startswith("ERR_VALIDATION: price")
            assert node.submits is not None
            assert node.submits.requests == 1
            assert [e.command.order_id for e in journal.entries()] == ["a0", "a1", "a3", "a4"]
            tg.cancel_scope.cancel()


async def test_a_node_without_linger_sends_each_alone() -> None:
    async with serving(echo) as (client, seen):
        node = ClientNode(client, "alice", submit_linger=None)
        assert node.submits is None
        assert await node.submit({"n": 1, "orderId": "x"}, timeout=5) == SubmitReply(1, "1")
        assert len(seen) == 1
        assert isinstance(seen[0], dict)
