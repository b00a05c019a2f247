"""Batched ``submit_order``: a list of signed orders in one request, answered per order.

A batch must answer and journal exactly what the same orders sent one by one would
have: the property test at the end checks that on random mixes of good, bad and
repeated orders.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.keys import SEQUENCER_KEY, named_key, signed

from exchange.protocol import MAX_SUBMIT_BYTES, MAX_SUBMIT_ORDERS, submit_batch_bytes
from exchange.runtime import NO_METRICS, Metrics, NullMetrics
from exchange.sequencer import Journal, SubmitWorker
from transports import MemoryNetwork, RemoteError, Transport, open_transport


@dataclass
class Rig:
    client: Transport
    journal: Journal

    async def request(self, payload: Any) -> Any:
        return await self.client.request("submit_order", payload, timeout=5)

    async def refused(self, payload: Any) -> str:
        with pytest.raises(RemoteError) as caught:
            await self.request(payload)
        return caught.value.message

    async def one(self, payload: Any) -> Any:
        """One request's answer as a batch element: the reply, or ``{"error": ...}``."""
        try:
            return await self.request(payload)
        except RemoteError as exc:
            return {"error": exc.message}

    def journaled(self) -> list[tuple[int, int, Any]]:
        return [(e.seq, e.ts, e.wire) for e in self.journal.entries()]


class Refusals(NullMetrics):
    def __init__(self) -> None:
        self.codes: list[str] = []

    def refused(self, service: str, code: str) -> None:
        self.codes.append(code)


@asynccontextmanager
async def running(path: Path, metrics: Metrics = NO_METRICS) -> AsyncIterator[Rig]:
    network = MemoryNetwork()
    with Journal(path / "journal.db") as journal:
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            worker = SubmitWorker(
                server,
                journal,
                clock=lambda: 1_000,
                max_backoff=0.2,
                signing_key=SEQUENCER_KEY,
                metrics=metrics,
            )
            await tg.start(worker.run)
            yield Rig(client, journal)
            tg.cancel_scope.cancel()


def new(order_id: str, client: str = "alice", **fields: Any) -> dict[str, Any]:
    payload = {"clientId": client, "orderId": order_id, "side": "buy", "price": "100"}
    return signed({**payload, "amount": "1", **fields})


def modify(order_id: str, request_id: str, price: str, client: str = "alice") -> dict[str, Any]:
    return signed(
        {"op": "modify", "clientId": client, "orderId": order_id, "requestId": request_id}
        | {"price": price}
    )


@pytest.mark.anyio
async def test_a_batch_is_answered_per_order_and_a_bad_one_refuses_only_itself(
    tmp_path: Path,
) -> None:
    tampered = {**new("a3"), "price": "101"}  # signed for 100
    async with running(tmp_path) as rig:
        reply = await rig.request(
            [new("a1"), new("a2", price="1.001"), tampered, "not an order", new("a4")]
        )
        assert reply[0] == {"seq": 1, "orderId": "a1"}
        assert reply[1] == {"error": "ERR_VALIDATION: price: not a multiple of 0.01"}
        assert reply[2]["error"].startswith("ERR_AUTH: sig: not a valid signature")
        assert reply[3]["error"].startswith("ERR_AUTH: submit_order payload: must be")
        assert reply[4] == {"seq": 2, "orderId": "a4"}
        assert len(reply) == 5
        assert [wire["orderId"] for _, _, wire in rig.journaled()] == ["a1", "a4"]


@pytest.mark.anyio
async def test_each_refused_order_of_a_batch_is_counted_by_its_code(tmp_path: Path) -> None:
    metrics = Refusals()
    async with running(tmp_path, metrics) as rig:
        await rig.request([new("a1"), new("a2", price="1.001"), "x", new("a3", amount="0")])
        assert metrics.codes == ["ERR_VALIDATION", "ERR_AUTH", "ERR_VALIDATION"]
        await rig.refused([])
        assert metrics.codes[-1] == "ERR_BAD_REQUEST"


@pytest.mark.anyio
async def test_the_single_order_payload_is_answered_as_before(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        assert await rig.request(new("a1")) == {"seq": 1, "orderId": "a1"}
        assert await rig.request([new("a2")]) == [{"seq": 2, "orderId": "a2"}]
        assert (await rig.refused("text")).startswith("ERR_AUTH: submit_order payload")


@pytest.mark.anyio
async def test_repeats_inside_one_batch_and_across_batches_get_the_first_reply(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as rig:
        first = await rig.request([new("a1"), new("a1"), modify("a1", "r1", "99")])
        assert first == [{"seq": 1, "orderId": "a1"}] * 2 + [{"seq": 2, "orderId": "a1"}]
        again = await rig.request(
            [modify("a1", "r1", "99"), new("a1"), modify("a1", "r1", "98"), new("a2")]
        )
        assert again[:2] == [{"seq": 2, "orderId": "a1"}, {"seq": 1, "orderId": "a1"}]
        assert again[2]["error"].startswith("ERR_VALIDATION: requestId: already used")
        assert again[3] == {"seq": 3, "orderId": "a2"}
        inside = await rig.request([modify("a2", "r2", "97"), modify("a2", "r2", "96")])
        assert inside[0] == {"seq": 4, "orderId": "a2"}
        assert inside[1]["error"].startswith("ERR_VALIDATION: requestId: already used")
        assert [seq for seq, _, _ in rig.journaled()] == [1, 2, 3, 4]


@pytest.mark.anyio
async def test_two_first_commands_of_a_client_in_one_batch_bind_the_first_key(
    tmp_path: Path,
) -> None:
    other = signed({**new("c2", "carol"), "sig": None, "pubKey": None}, named_key("x"))
    async with running(tmp_path) as rig:
        reply = await rig.request([new("c1", "carol"), other, new("c3", "carol")])
        assert reply[0] == {"seq": 1, "orderId": "c1"}
        assert reply[1] == {"error": "ERR_AUTH: sig: clientId 'carol' is bound to another key"}
        assert reply[2] == {"seq": 2, "orderId": "c3"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "payload",
    [
        [],
        [new(f"a{i}") for i in range(MAX_SUBMIT_ORDERS + 1)],
        [new("a1", clientId="x" * 64)] + ["y" * (MAX_SUBMIT_BYTES // 2)] * 2,
    ],
    ids=["empty", "too-many", "too-many-bytes"],
)
async def test_a_batch_beyond_its_limits_is_refused_as_a_whole(
    tmp_path: Path, payload: Any
) -> None:
    async with running(tmp_path) as rig:
        message = await rig.refused(payload)
        assert message.startswith("ERR_BAD_REQUEST: orders: a batch ")
        assert rig.journaled() == []


@pytest.mark.anyio
async def test_a_batch_at_its_limits_is_taken(tmp_path: Path) -> None:
    orders = [new(f"a{i}") for i in range(MAX_SUBMIT_ORDERS)]
    assert submit_batch_bytes(orders) <= MAX_SUBMIT_BYTES
    async with running(tmp_path) as rig:
        reply = await rig.request(orders)
        assert [r["seq"] for r in reply] == list(range(1, MAX_SUBMIT_ORDERS + 1))


@pytest.mark.anyio
@pytest.mark.parametrize("element", [None, 1, 2.5, True, "o", [], [{"clientId": "alice"}], {}])
async def test_an_element_of_the_wrong_type_refuses_only_itself(
    tmp_path: Path, element: Any
) -> None:
    async with running(tmp_path) as rig:
        reply = await rig.request([element, new("a1")])
        assert reply[0]["error"].startswith("ERR_AUTH: ")
        assert reply[1] == {"seq": 1, "orderId": "a1"}


# ---------------------------------------------------------------------- the property

_CLIENTS = ("alice", "bob")
_IDS = ("o1", "o2", "o3")


@st.composite
def commands(draw: st.DrawFn) -> dict[str, Any] | str:
    client = draw(st.sampled_from(_CLIENTS))
    order_id = draw(st.sampled_from(_IDS))
    kind = draw(st.sampled_from(["new", "new", "cancel", "modify", "bad", "badsig", "other-key"]))
    if kind == "new":
        side = draw(st.sampled_from(["buy", "sell"]))
        price = draw(st.sampled_from(["99", "100", "101"]))
        return new(order_id, client, side=side, price=price)
    if kind == "cancel":
        return signed({"op": "cancel", "clientId": client, "orderId": order_id})
    if kind == "modify":
        request_id = draw(st.sampled_from(["r1", "r2"]))
        return modify(order_id, request_id, draw(st.sampled_from(["98", "99"])), client)
    if kind == "bad":
        return new(order_id, client, amount="0")
    if kind == "other-key":
        payload = {"clientId": client, "orderId": order_id, "side": "buy", "price": "100"}
        return signed(payload | {"amount": "1"}, named_key("stranger"))
    return {**new(order_id, client), "amount": "2"}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(commands(), min_size=1, max_size=12), st.integers(1, 12))
def test_a_batch_answers_and_journals_as_the_same_orders_one_by_one(
    orders: list[Any], size: int
) -> None:
    async def both() -> None:
        with tempfile.TemporaryDirectory() as one_dir, tempfile.TemporaryDirectory() as many_dir:
            async with running(Path(one_dir)) as one:
                singly = [await one.one(order) for order in orders]
                journal_one = one.journaled()
            async with running(Path(many_dir)) as many:
                batched: list[Any] = []
                for start in range(0, len(orders), size):
                    batched += await many.request(orders[start : start + size])
                journal_many = many.journaled()
        assert batched == singly
        assert journal_many == journal_one

    anyio.run(both)
