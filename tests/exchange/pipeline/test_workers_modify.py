"""Modify through the sequencer and the matcher: applied once per requestId, replay-safe.

A captured signed modify re-sent later is answered with its first reply and moves
nothing; the same requestId on another modify is refused; every modify is signed, its
requestId too. Each test compares the matcher's book with the journal replayed through
the core.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support.exchange_rig import ExchangeRig, replay, running_exchange
from support.keys import named_key, signed

from exchange.protocol import SUBMIT_ORDER
from exchange.versions import book_hash
from orderbook_core import DEFAULT_SPEC, RestingOrder
from transports import LoopbackNetwork, MemoryNetwork, RemoteError

pytestmark = pytest.mark.anyio

SPEC = DEFAULT_SPEC


def new(client: str, order_id: str, side: str, price: str, amount: str) -> dict[str, Any]:
    return {"clientId": client, "orderId": order_id, "side": side, "price": price, "amount": amount}


def modify(client: str, order_id: str, request_id: str, **values: str) -> dict[str, Any]:
    base = {"op": "modify", "clientId": client, "orderId": order_id, "requestId": request_id}
    return base | values


def ticks(price: str) -> int:
    return SPEC.price_to_ticks(Decimal(price))


async def refusal(ex: ExchangeRig, payload: dict[str, Any]) -> str:
    """The sequencer's refusal of `payload` (signed unless it is), sent once."""
    if "sig" not in payload:
        payload = signed(payload)
    with pytest.raises(RemoteError) as refused:
        await ex.client.request(SUBMIT_ORDER, payload, timeout=5)
    return refused.value.message


async def resting(ex: ExchangeRig, client: str, order_id: str) -> RestingOrder | None:
    processor = await ex.settled()
    book, _ = replay(ex.journal)
    assert processor.book == book
    assert book_hash(processor.book) == book_hash(book)
    return processor.book.get_order(client, order_id)


async def test_a_modify_goes_through_to_the_matcher(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, MemoryNetwork()) as ex:
        await ex.submit(new("alice", "a1", "buy", "100", "5"))
        reply = await ex.submit(modify("alice", "a1", "m1", price="99.5", amount="3"))
        assert reply == {"seq": 2, "orderId": "a1"}
        order = await resting(ex, "alice", "a1")
        assert order is not None
        assert (order.price, order.remaining) == (ticks("99.5"), 3000)


async def test_a_captured_modify_re_sent_later_is_its_first_reply_and_moves_nothing(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path, MemoryNetwork()) as ex:
        await ex.submit(new("alice", "a1", "buy", "100", "5"))
        captured = signed(modify("alice", "a1", "m1", price="98"))
        first = await ex.submit(captured)
        assert first == {"seq": 2, "orderId": "a1"}
        # The owner moves the order on with a modify of its own, and trades go on.
        await ex.submit(modify("alice", "a1", "m2", price="101", amount="4"))
        await ex.submit(new("bob", "b1", "sell", "101", "1"))
        before = await resting(ex, "alice", "a1")
        head = ex.journal.head()
        assert before is not None
        assert (before.price, before.remaining) == (ticks("101"), 3000)
        # An attacker re-sends the captured modify, byte for byte.
        assert await ex.submit(captured) == first
        assert ex.journal.head() == head  # nothing queued
        after = await resting(ex, "alice", "a1")
        assert after == before  # the order did not move back to 98


async def test_the_same_request_id_on_another_modify_is_refused(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, MemoryNetwork()) as ex:
        await ex.submit(new("alice", "a1", "buy", "100", "5"))
        await ex.submit(new("alice", "a2", "buy", "100", "5"))
        await ex.submit(modify("alice", "a1", "m1", price="99"))
        before = await resting(ex, "alice", "a1")
        head = ex.journal.head()
        for other in (
            modify("alice", "a1", "m1", price="97"),  # another price
            modify("alice", "a1", "m1", price="99", amount="1"),  # another amount
            modify("alice", "a2", "m1", price="99"),  # another order
        ):
            assert (await refusal(ex, other)).startswith(
                "ERR_VALIDATION: requestId: already used by another modify (seq 3)"
            )
        assert ex.journal.head() == head
        assert await resting(ex, "alice", "a1") == before
        # Another client's requestId is its own.
        await ex.submit(new("bob", "b1", "sell", "105", "2"))
        assert await ex.submit(modify("bob", "b1", "m1", price="104")) == {
            "seq": head + 2,
            "orderId": "b1",
        }


async def test_a_modify_without_a_request_id_is_refused_and_stores_nothing(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path, MemoryNetwork()) as ex:
        await ex.submit(new("alice", "a1", "buy", "100", "5"))
        old_style = signed({"op": "modify", "clientId": "alice", "orderId": "a1", "price": "98"})
        assert (await refusal(ex, old_style)).startswith("ERR_AUTH: requestId: required")
        assert ex.journal.head() == 1
        order = await resting(ex, "alice", "a1")
        assert order is not None
        assert order.price == ticks("100")


async def test_a_request_id_is_signed(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, MemoryNetwork()) as ex:
        await ex.submit(new("alice", "a1", "buy", "100", "5"))
        captured = signed(modify("alice", "a1", "m1", price="98"))
        await ex.submit(captured)
        # Re-sent under a fresh requestId, to be applied again: the signature fails.
        assert (await refusal(ex, {**captured, "requestId": "m-fresh"})).startswith(
            "ERR_AUTH: sig: not a valid signature"
        )
        # Signed by another key (a stranger's modify of alice's order).
        forged = signed(modify("alice", "a1", "m9", price="1"), named_key("mallory"))
        assert (await refusal(ex, forged)).startswith(
            "ERR_AUTH: sig: clientId 'alice' is bound to another key"
        )
        assert ex.journal.head() == 2
        order = await resting(ex, "alice", "a1")
        assert order is not None
        assert order.price == ticks("98")


async def test_modifies_retried_through_a_lossy_network_apply_once_each(
    tmp_path: Path,
) -> None:
    network = LoopbackNetwork(seed=20261207, drop=0.15, duplicate=0.3, delay=(0.0, 0.004))
    async with running_exchange(tmp_path, network, request_timeout=0.2) as ex:
        commands: list[dict[str, Any]] = []
        for i in range(6):
            commands.append(new(f"c{i % 2}", f"o{i}", "buy" if i % 2 else "sell",
                                str(110 - i if i % 2 == 0 else 90 + i), "5"))  # fmt: skip
        for i in range(12):
            n = i % 6
            price = str((110 - n if n % 2 == 0 else 90 + n) + (i // 6 + 1))
            commands.append(
                modify(f"c{n % 2}", f"o{n}", f"m{i}", price=price, amount=str(4 - i // 6))
            )
        replies = [await ex.submit(c, timeout=0.2) for c in commands]
        # Every retry of a modify was a repeat: one entry per command, gap-free.
        assert [r["seq"] for r in replies] == list(range(1, len(commands) + 1))
        assert ex.journal.head() == len(commands)
        for n in range(6):
            order = await resting(ex, f"c{n % 2}", f"o{n}")
            assert order is not None
            base = 110 - n if n % 2 == 0 else 90 + n
            assert order.price == ticks(str(base + 2))
            assert order.remaining == 3000
        assert any("duplicate" in line for line in network.log)
