"""A modify names itself by its signed ``requestId``: the submit_order worker answers a
repeat with the first reply and stores nothing, on either journal backend (SQLite and a
real JetStream server), whether the first is still queued or long committed, across a
restart of the worker."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.keys import SEQUENCER_KEY, signed
from support.nats import nats_url  # noqa: F401  (a module fixture)

from exchange.protocol import market_names
from exchange.sequencer import JournalBackend, SubmitWorker, open_journal
from orderbook_core import DEFAULT_SPEC
from transports import MemoryNetwork, RemoteError, Transport, open_transport

pytestmark = pytest.mark.anyio

_markets = itertools.count(1)
_MARKET_OF: dict[int, str] = {}
"""The market of each client's worker (a JetStream one has a market of its own: its stream)."""


@pytest.fixture(params=["sqlite", pytest.param("jetstream", marks=pytest.mark.integration)])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Any]:
    """Where a fresh journal is, and its market."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'j.db'}", DEFAULT_SPEC
    spec = dataclasses.replace(DEFAULT_SPEC, market=f"MOD{next(_markets)}-USD")
    return request.getfixturevalue("nats_url"), spec


@asynccontextmanager
async def worker_on(where: tuple[str, Any]) -> AsyncIterator[tuple[Transport, JournalBackend]]:
    """A submit worker on the journal at `where` (no matcher behind it), and a client."""
    url, spec = where
    network = MemoryNetwork()
    with open_journal(url, spec) as journal:
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            worker = SubmitWorker(
                server, journal, spec, clock=lambda: 1_000, max_backoff=0.2,
                signing_key=SEQUENCER_KEY,
            )  # fmt: skip
            await tg.start(worker.run)
            _MARKET_OF[id(client)] = spec.market
            yield client, journal
            tg.cancel_scope.cancel()


async def send(client: Transport, payload: dict[str, Any]) -> Any:
    """`payload` signed for the market `client`'s worker serves, sent to its name."""
    market = _MARKET_OF[id(client)]
    name = market_names(market).submit_order
    return await client.request(name, signed(payload, market=market), timeout=10)


async def refusal(client: Transport, payload: dict[str, Any]) -> str:
    with pytest.raises(RemoteError) as refused:
        await send(client, payload)
    return refused.value.message


NEW = {"clientId": "alice", "orderId": "a1", "side": "buy", "price": "100", "amount": "5"}


def modify(request_id: str, price: str = "99", **more: Any) -> dict[str, Any]:
    return {"op": "modify", "clientId": "alice", "orderId": "a1", "requestId": request_id,
            "price": price, **more}  # fmt: skip


async def test_a_repeated_modify_is_its_first_reply_across_a_restart(
    location: tuple[str, Any],
) -> None:
    async with worker_on(location) as (client, journal):
        await send(client, NEW)
        assert await send(client, modify("m1")) == {"seq": 2, "orderId": "a1"}
        assert await send(client, modify("m2", "98")) == {"seq": 3, "orderId": "a1"}
        assert await send(client, modify("m1")) == {"seq": 2, "orderId": "a1"}
        assert journal.head() == 3
    async with worker_on(location) as (client, journal):  # found in the journal
        assert await send(client, modify("m1")) == {"seq": 2, "orderId": "a1"}
        assert await send(client, modify("m2", "98")) == {"seq": 3, "orderId": "a1"}
        assert (await refusal(client, modify("m1", "97"))).startswith(
            "ERR_VALIDATION: requestId: already used by another modify (seq 2)"
        )
        assert journal.head() == 3
        assert [e.wire.get("price") for e in journal.entries()] == ["100.00", "99.00", "98.00"]


async def test_twins_sent_together_are_one_entry(location: tuple[str, Any]) -> None:
    async with worker_on(location) as (client, journal):
        await send(client, NEW)
        replies: list[Any] = []

        async def one() -> None:
            replies.append(await send(client, modify("m1")))

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(one)
        assert replies == [{"seq": 2, "orderId": "a1"}] * 8
        assert journal.head() == 2


async def test_a_twin_with_other_values_is_refused_while_the_first_is_queued(
    location: tuple[str, Any],
) -> None:
    async with worker_on(location) as (client, journal):
        await send(client, NEW)
        outcomes: list[Any] = []

        async def one(price: str) -> None:
            try:
                outcomes.append(await send(client, modify("m1", price)))
            except RemoteError as exc:
                outcomes.append(exc.message.partition(":")[0])

        async with anyio.create_task_group() as tg:
            for price in ("99", "98", "97"):
                tg.start_soon(one, price)
        assert sorted(map(str, outcomes)) == sorted(
            [str({"seq": 2, "orderId": "a1"})] + ["ERR_VALIDATION"] * 2
        )
        assert journal.head() == 2


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (
            {"op": "modify", "clientId": "alice", "orderId": "a1", "price": "99"},
            "ERR_AUTH: requestId: required in a signed modify",
        ),
        (modify("bad id"), "ERR_VALIDATION: requestId: must be 1-64 characters"),
        (modify(7), "ERR_VALIDATION: requestId: must be 1-64 characters"),  # type: ignore[arg-type]
        (modify("x" * 65), "ERR_VALIDATION: requestId: must be 1-64 characters"),
        (NEW | {"orderId": "a2", "requestId": "r1"}, "ERR_VALIDATION: requestId: unknown field"),
        (
            {"op": "cancel", "clientId": "alice", "orderId": "a1", "requestId": "r1"},
            "ERR_VALIDATION: requestId: unknown field",
        ),
        (modify("m1", amount="0"), "ERR_VALIDATION: amount: must be > 0"),
    ],
)
async def test_a_bad_request_id_is_refused_and_stores_nothing(
    tmp_path: Path, payload: dict[str, Any], error: str
) -> None:
    async with worker_on((f"sqlite:{tmp_path / 'j.db'}", DEFAULT_SPEC)) as (client, journal):
        await send(client, NEW)
        assert (await refusal(client, payload)).startswith(error)
        assert journal.head() == 1
        # Nothing of the refused one was kept: m1 is still free.
        assert await send(client, modify("m1")) == {"seq": 2, "orderId": "a1"}
