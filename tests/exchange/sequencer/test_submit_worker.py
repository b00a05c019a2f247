"""The submit_order worker on the memory transport: validation, sequencing, dedupe.

Payloads are signed by their client's test key here (`support.keys`); what signing
itself refuses is tested in test_submit_auth.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.keys import SEQUENCER_KEY, signed

from exchange.sequencer import Journal, SubmitWorker
from transports import MemoryNetwork, RemoteError, Transport, open_transport

pytestmark = pytest.mark.anyio


@dataclass
class Rig:
    client: Transport
    journal: Journal
    worker: SubmitWorker

    async def submit(self, payload: Any) -> Any:
        if isinstance(payload, dict) and "clientId" in payload:
            payload = signed(payload)
        return await self.client.request("submit_order", payload, timeout=5)


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Rig]:
    """A submit worker with no process worker behind it (its forwarder just retries)."""
    network = MemoryNetwork()
    with Journal(tmp_path / "journal.db") as journal:
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            worker = SubmitWorker(
                server, journal, clock=lambda: 1_000, max_backoff=0.2, signing_key=SEQUENCER_KEY
            )
            await tg.start(worker.run)
            yield Rig(client, journal, worker)
            tg.cancel_scope.cancel()


def order(client: str = "alice", **fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"clientId": client, "side": "buy", "price": "100", "amount": "1"}
    payload.update(fields)
    return payload


async def test_accepted_order_replies_seq_and_order_id_and_is_journaled(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        assert await rig.submit(order(orderId="a1")) == {"seq": 1, "orderId": "a1"}
        assert await rig.submit(order("bob", orderId="b1", side="sell")) == {
            "seq": 2,
            "orderId": "b1",
        }
        entries = list(rig.journal.entries())
        assert [e.seq for e in entries] == [1, 2]
        assert entries[0].ts == 1_000
        # The journal holds the normalized command, ready for the process worker.
        assert entries[0].wire == {
            "op": "new",
            "clientId": "alice",
            "orderId": "a1",
            "side": "buy",
            "ordType": "limit",
            "price": "100.00",
            "amount": "1.000",
            "tif": "GTC",
            "postOnly": False,
        }


async def test_a_signed_new_order_without_an_order_id_is_refused(tmp_path: Path) -> None:
    # Its replay would be a second order: the orderId is what makes it a repeat.
    async with running(tmp_path) as rig:
        with pytest.raises(RemoteError) as info:
            await rig.submit(order())
        assert info.value.message.startswith("ERR_AUTH: orderId: required")
        assert rig.journal.head() == 0


async def test_client_ids_in_the_generated_namespace_are_refused(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        with pytest.raises(RemoteError) as info:
            await rig.submit(order(orderId="_5"))
        assert info.value.message.startswith("ERR_VALIDATION: orderId: must not start with '_'")
        assert rig.journal.head() == 0
        # Cancelling a generated order (journaled before orders were signed) by its id
        # is fine: only new orders may not take such an id.
        assert await rig.submit({"op": "cancel", "clientId": "alice", "orderId": "_1"}) == {
            "seq": 1,
            "orderId": "_1",
        }


async def test_repeated_order_gets_the_first_reply_and_queues_nothing(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        first = await rig.submit(order(orderId="a1"))
        await rig.submit(order(orderId="a2"))
        again = await rig.submit(order(orderId="a1", price="101"))
        assert again == first == {"seq": 1, "orderId": "a1"}
        assert rig.journal.head() == 2


async def test_cancel_and_modify_are_sequenced(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        await rig.submit(order(orderId="a1"))
        cancel = {"op": "cancel", "clientId": "alice", "orderId": "a1"}
        assert await rig.submit(cancel) == {"seq": 2, "orderId": "a1"}
        assert await rig.submit(cancel) == {"seq": 2, "orderId": "a1"}  # a repeat
        modify = {"op": "modify", "clientId": "alice", "orderId": "a1", "price": "99"}
        assert await rig.submit({**modify, "requestId": "m1"}) == {"seq": 3, "orderId": "a1"}
        assert await rig.submit({**modify, "requestId": "m1"}) == {"seq": 3, "orderId": "a1"}
        assert await rig.submit({**modify, "requestId": "m2"}) == {"seq": 4, "orderId": "a1"}
        assert rig.journal.head() == 4


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (
            {"side": "buy", "price": "1", "amount": "1", "clientId": None},
            "ERR_VALIDATION: clientId",
        ),
        (order(price="100.001"), "ERR_VALIDATION: price: not a multiple of 0.01"),
        (order(price=100.5), "ERR_VALIDATION: price: must be a decimal string or an integer"),
        (order(amount="-1"), "ERR_VALIDATION: amount: must be > 0"),
        (order(side="up"), "ERR_VALIDATION: side: must be one of"),
        (order(clientId="bad id"), "ERR_VALIDATION: clientId: must be 1-64 characters"),
        (order(postonly=True), "ERR_VALIDATION: postonly: unknown field"),
        ({"op": "cancel", "clientId": "alice"}, "ERR_VALIDATION: orderId: required"),
    ],
)
async def test_invalid_payloads_get_a_validation_error_and_store_nothing(
    tmp_path: Path, payload: Any, error: str
) -> None:
    async with running(tmp_path) as rig:
        with pytest.raises(RemoteError) as info:
            await rig.submit(payload)
        assert info.value.message.startswith(error)
        assert rig.journal.head() == 0
        # The worker goes on serving.
        assert await rig.submit(order(orderId="ok")) == {"seq": 1, "orderId": "ok"}


async def test_concurrent_submissions_get_distinct_gap_free_numbers(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        replies: list[Any] = []

        async def submit(i: int) -> None:
            replies.append(await rig.submit(order(orderId=f"o{i}")))

        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(submit, i)
        assert sorted(r["seq"] for r in replies) == list(range(1, 31))
        for reply in replies:
            entry = rig.journal.get(reply["seq"])
            assert entry is not None
            assert entry.wire["orderId"] == reply["orderId"]


async def test_journal_survives_a_restart_of_the_worker(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        await rig.submit(order(orderId="a1"))
    async with running(tmp_path) as rig:
        assert await rig.submit(order(orderId="a1")) == {"seq": 1, "orderId": "a1"}
        assert await rig.submit(order(orderId="a2")) == {"seq": 2, "orderId": "a2"}
