"""The directly written event and command texts are exactly `canonical_json`'s.

`ListText.event` and `list_text` write a version's list items without `json.dumps`;
every item must still be the canonical text, byte for byte (the pages' keys depend on
it), whatever the event type, the ids, the amounts or the market.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.versions._list_text import ListText, command_text, list_text
from orderbook_core import (
    DEFAULT_SPEC,
    CancelReason,
    Event,
    MarketSpec,
    OrderAccepted,
    OrderBook,
    OrderCancelled,
    OrderModified,
    OrderRejected,
    OrderRested,
    RejectReason,
    Side,
    Trade,
    canonical_json,
    command_to_wire,
    event_to_wire,
    parse_command,
)

SPEC = DEFAULT_SPEC
ODD_SPEC = MarketSpec(
    market="ETH-EUR",
    tick_size=Decimal("0.5"),
    lot_size=Decimal("10"),
    min_price=Decimal("0.5"),
    max_price=Decimal("100000"),
    min_amount=Decimal("10"),
    max_amount=Decimal("1000000"),
)


def _canonical(event: Event, spec: MarketSpec) -> str:
    return canonical_json(event_to_wire(event, spec))


def _played_events(seed: int, count: int) -> list[Event]:
    """Events of a random run on the core: rests, trades, cancels, rejects, modifies."""
    rng = random.Random(seed)
    book = OrderBook(SPEC)
    events: list[Event] = []
    live: list[tuple[str, str]] = []
    for n in range(1, count + 1):
        client = f"c{n % 5}"
        roll = rng.random()
        if live and roll < 0.15:
            c, o = live.pop(rng.randrange(len(live)))
            wire: dict[str, Any] = {"op": "cancel", "clientId": c, "orderId": o}
        elif live and roll < 0.25:
            c, o = rng.choice(live)
            wire = {"op": "modify", "clientId": c, "orderId": o,
                    "amount": f"{rng.randint(1, 40) / 8:.3f}"}  # fmt: skip
            if rng.random() < 0.5:
                wire["price"] = f"{rng.randint(9900, 10100) / 100:.2f}"
        else:
            wire = {"op": "new", "clientId": client, "orderId": f"{client}-{n}",
                    "side": rng.choice(("buy", "sell")),
                    "amount": f"{rng.randint(1, 40) / 8:.3f}"}  # fmt: skip
            if rng.random() < 0.1:
                wire["type"] = "market"
            else:
                wire["price"] = f"{rng.randint(9900, 10100) / 100:.2f}"
                wire["tif"] = rng.choice(("GTC", "GTC", "GTC", "IOC", "FOK"))
            live.append((client, wire["orderId"]))
        try:
            command = parse_command(wire, SPEC, seq=n, ts=1_700_000_000_000 + n)
        except ValueError:
            continue
        events.extend(book.apply(command))
    return events


def test_played_events_are_canonical() -> None:
    text = ListText(SPEC)
    events = _played_events(7, 3000)
    kinds = {type(e) for e in events}
    assert kinds >= {OrderAccepted, Trade, OrderRested, OrderCancelled, OrderRejected}
    for event in events:
        assert text.event(event) == _canonical(event, SPEC)


IDS = st.text(min_size=1, max_size=12)


@given(
    client=IDS,
    order=IDS,
    seq=st.integers(1, 10**12),
    ticks=st.integers(1, 10**9),
    lots=st.integers(0, 10**9),
    side=st.sampled_from(list(Side)),
    odd=st.booleans(),
)
def test_any_event_is_canonical(
    client: str, order: str, seq: int, ticks: int, lots: int, side: Side, odd: bool
) -> None:
    spec = ODD_SPEC if odd else SPEC
    text = ListText(spec)
    events: list[Event] = [
        OrderAccepted(seq, client, order, side, ticks, lots),
        OrderAccepted(seq, client, order, side, None, lots),
        OrderRested(seq, client, order, side, ticks, lots),
        OrderCancelled(seq, client, order, side, ticks, lots, CancelReason.SELF_TRADE),
        OrderCancelled(seq, client, order, side, None, lots, CancelReason.MARKET),
        OrderRejected(seq, client, order, RejectReason.PRICE_OUT_OF_RANGE),
        OrderModified(seq, client, order, side, ticks, lots, ticks + 1, lots + 3, True),
        Trade(seq, f"{seq}.2", 17, ticks, lots, side, client, order, 0, order, client),
    ]
    for event in events:
        assert text.event(event) == _canonical(event, spec)
        assert text.event(event) == _canonical(event, spec)  # memoised


def test_odd_ids_fall_back() -> None:
    text = ListText(SPEC)
    for client in ('a"b', "back\\slash", "é", "tab\t", "\u2028"):
        event = OrderRested(3, client, "o-1", Side.BUY, 10000, 125)
        assert text.event(event) == _canonical(event, SPEC)


def test_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ListText, "MEMO_KEPT", 4)
    text = ListText(SPEC)
    for ticks in range(1, 20):
        event = OrderRested(ticks, "c", "c-1", Side.SELL, ticks, ticks)
        assert text.event(event) == _canonical(event, SPEC)
    assert len(text._prices) <= 4
    assert len(text._amounts) <= 4


def test_commands_are_canonical() -> None:
    rng = random.Random(3)
    for n in range(1, 500):
        new: dict[str, Any] = {"op": "new", "clientId": "py1", "orderId": f"py1-{n}",
                "side": rng.choice(("buy", "sell")), "price": f"{rng.randint(1, 999)}.25",
                "amount": "1.5", "tif": rng.choice(("GTC", "IOC")),
                "postOnly": rng.random() < 0.5}  # fmt: skip
        command = parse_command(new, SPEC, seq=n, ts=n)
        for form in (new, command_to_wire(command, SPEC)):
            assert command_text(form) == canonical_json(form)
            assert list_text(n, 5 * n, form) == canonical_json([n, 5 * n, form])
    odd: list[dict[str, Any]] = [
        {"op": "cancel", "clientId": "a", "orderId": "b"},
        {"op": "cancel", "clientId": 'a"', "orderId": "b"},
        {"op": "cancel", "clientId": "a", "orderId": 5},
        {"op": "modify", "clientId": "a", "orderId": "b", "amount": "2"},
        {
            "op": "new",
            "clientId": "a",
            "orderId": "b",
            "side": "buy",
            "ordType": "market",
            "amount": "1",
            "tif": "IOC",
            "postOnly": False,
        },
        {
            "op": "new",
            "clientId": "a",
            "orderId": "b",
            "side": "buy",
            "ordType": "limit",
            "price": 3,
            "amount": "1",
            "tif": "GTC",
            "postOnly": False,
        },
        {
            "op": "new",
            "clientId": "a",
            "orderId": "b",
            "side": "buy",
            "ordType": "limit",
            "price": "3",
            "amount": "1",
            "tif": "GTC",
            "postOnly": 0,
        },
    ]
    for wire in odd:
        assert command_text(wire) == canonical_json(wire)
        assert list_text(1, 2, wire) == canonical_json([1, 2, wire])
    assert list_text(True, 2, {"op": "x"}) == canonical_json([True, 2, {"op": "x"}])
