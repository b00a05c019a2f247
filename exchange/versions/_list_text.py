"""The canonical JSON of a version's events and commands, written directly.

A version's event and command pages hold each item's `canonical_json` text. The
matcher encodes every event of every version (two to three per command), and going
through `event_to_wire` (a dict of Decimals turned into strings) then `json.dumps`
was the largest cost of its batch path after the puts (profile of the matcher at
1,000 orders/s offered). Here each event type has its text written by one f-string,
keys in sorted order, its prices and amounts looked up in a per-market memo of their
decimal strings; anything outside the exact shapes (an id JSON would escape, a field
of an unexpected type, an unknown command form) goes through
``canonical_json(event_to_wire(...))``, so the text is always the canonical one
(the tests compare both on every event type and on odd ids).
"""

from __future__ import annotations

import re
from typing import Any

from orderbook_core import (
    CancelReason,
    Event,
    MarketSpec,
    OrderAccepted,
    OrderCancelled,
    OrderModified,
    OrderRejected,
    OrderRested,
    RejectReason,
    Side,
    Trade,
    canonical_json,
    event_to_wire,
)

__all__ = ["ListText", "command_text", "list_text"]

_PLAIN = re.compile(r"[ !#-\[\]-~]*")
r"""Strings JSON writes as they are between quotes: printable ASCII but ``"`` and ``\``
(every id obeying the submit_order rule is one)."""

_plain = _PLAIN.fullmatch

_SIDE = {side: canonical_json(side.value) for side in Side}
_REASON: dict[object, str] = {r: canonical_json(r.value) for r in (*CancelReason, *RejectReason)}
_BOOL = {True: "true", False: "false"}

_NEW_KEYS = frozenset(
    ("amount", "clientId", "op", "ordType", "orderId", "postOnly", "price", "side", "tif")
)
_CANCEL_KEYS = frozenset(("clientId", "op", "orderId"))


class ListText:
    """Writes one market's events as canonical JSON, memoising price and amount text.

    ``event(e) == canonical_json(event_to_wire(e, spec))`` for every event. The memos
    hold at most `MEMO_KEPT` numbers each (cleared when full).
    """

    MEMO_KEPT = 65_536

    __slots__ = ("_amounts", "_prices", "spec")

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self._prices: dict[int, str] = {}
        self._amounts: dict[int, str] = {}

    def price(self, ticks: int) -> str:
        """``ticks`` as the JSON string of its price (``"100.50"``)."""
        text = self._prices.get(ticks)
        if text is None:
            if len(self._prices) >= self.MEMO_KEPT:
                self._prices.clear()
            text = self._prices[ticks] = f'"{format(self.spec.ticks_to_price(ticks), "f")}"'
        return text

    def amount(self, lots: int) -> str:
        """``lots`` as the JSON string of its amount (``"0.125"``)."""
        text = self._amounts.get(lots)
        if text is None:
            if len(self._amounts) >= self.MEMO_KEPT:
                self._amounts.clear()
            text = self._amounts[lots] = f'"{format(self.spec.lots_to_amount(lots), "f")}"'
        return text

    def event(self, event: Event) -> str:
        """The canonical JSON of `event`'s wire form. O(1) amortised."""
        try:
            text = self._direct(event)
        except (KeyError, TypeError):
            text = None
        return canonical_json(event_to_wire(event, self.spec)) if text is None else text

    def _direct(self, e: Event) -> str | None:
        kind = type(e)
        if kind is Trade:
            assert isinstance(e, Trade)
            if not (
                _ints(e.seq, e.ts, e.price, e.amount, e.maker_remaining)
                and _plain(e.trade_id)
                and _plain(e.maker_client_id)
                and _plain(e.maker_order_id)
                and _plain(e.taker_client_id)
                and _plain(e.taker_order_id)
            ):
                return None
            return (
                f'{{"amount":{self.amount(e.amount)},"makerClientId":"{e.maker_client_id}",'
                f'"makerOrderId":"{e.maker_order_id}",'
                f'"makerRemaining":{self.amount(e.maker_remaining)},'
                f'"price":{self.price(e.price)},"seq":{e.seq},'
                f'"takerClientId":"{e.taker_client_id}","takerOrderId":"{e.taker_order_id}",'
                f'"takerSide":{_SIDE[e.taker_side]},"tradeId":"{e.trade_id}","ts":{e.ts},'
                '"type":"trade"}'
            )
        if kind is OrderRejected:
            assert isinstance(e, OrderRejected)
            if not (type(e.seq) is int and _plain(e.client_id) and _plain(e.order_id)):
                return None
            return (
                f'{{"clientId":"{e.client_id}","orderId":"{e.order_id}",'
                f'"reason":{_REASON[e.reason]},"seq":{e.seq},"type":"rejected"}}'
            )
        if kind is OrderModified:
            assert isinstance(e, OrderModified)
            if not (
                _ints(e.seq, e.price, e.amount, e.old_price, e.old_amount)
                and type(e.priority_kept) is bool
                and _plain(e.client_id)
                and _plain(e.order_id)
            ):
                return None
            return (
                f'{{"amount":{self.amount(e.amount)},"clientId":"{e.client_id}",'
                f'"oldAmount":{self.amount(e.old_amount)},"oldPrice":{self.price(e.old_price)},'
                f'"orderId":"{e.order_id}","price":{self.price(e.price)},'
                f'"priorityKept":{_BOOL[e.priority_kept]},"seq":{e.seq},'
                f'"side":{_SIDE[e.side]},"type":"modified"}}'
            )
        if kind is OrderAccepted or kind is OrderRested or kind is OrderCancelled:
            assert isinstance(e, OrderAccepted | OrderRested | OrderCancelled)
            price = e.price
            if not (
                _ints(e.seq, e.amount)
                and (price is None or type(price) is int)
                and _plain(e.client_id)
                and _plain(e.order_id)
            ):
                return None
            price_text = "null" if price is None else self.price(price)
            head = (
                f'{{"amount":{self.amount(e.amount)},"clientId":"{e.client_id}",'
                f'"orderId":"{e.order_id}","price":{price_text},'
            )
            if kind is OrderCancelled:
                assert isinstance(e, OrderCancelled)
                return (
                    f'{head}"reason":{_REASON[e.reason]},"seq":{e.seq},'
                    f'"side":{_SIDE[e.side]},"type":"cancelled"}}'
                )
            name = "rested" if kind is OrderRested else "accepted"
            return f'{head}"seq":{e.seq},"side":{_SIDE[e.side]},"type":"{name}"}}'
        return None


def _ints(*values: object) -> bool:
    for value in values:  # noqa: SIM110 (a loop: twice as fast as all() of a generator)
        if type(value) is not int:
            return False
    return True


def command_text(wire: dict[str, Any]) -> str:
    """``canonical_json(wire)`` for a command's wire form; the sequencer's limit orders
    and cancels are written directly. O(len(wire))."""
    keys = wire.keys()
    if len(wire) == 9 and keys == _NEW_KEYS:
        amount, client, op, ord_type, order, post_only, price, side, tif = (
            wire["amount"],
            wire["clientId"],
            wire["op"],
            wire["ordType"],
            wire["orderId"],
            wire["postOnly"],
            wire["price"],
            wire["side"],
            wire["tif"],
        )
        if (
            type(post_only) is bool
            and _strs(amount, client, op, ord_type, order, price, side, tif)
            and _plain(amount)
            and _plain(client)
            and _plain(op)
            and _plain(ord_type)
            and _plain(order)
            and _plain(price)
            and _plain(side)
            and _plain(tif)
        ):
            return (
                f'{{"amount":"{amount}","clientId":"{client}","op":"{op}",'
                f'"ordType":"{ord_type}","orderId":"{order}","postOnly":{_BOOL[post_only]},'
                f'"price":"{price}","side":"{side}","tif":"{tif}"}}'
            )
    elif len(wire) == 3 and keys == _CANCEL_KEYS:
        client, op, order = wire["clientId"], wire["op"], wire["orderId"]
        if _strs(client, op, order) and _plain(client) and _plain(op) and _plain(order):
            return f'{{"clientId":"{client}","op":"{op}","orderId":"{order}"}}'
    return canonical_json(wire)


def _strs(*values: object) -> bool:
    for value in values:  # noqa: SIM110 (a loop: twice as fast as all() of a generator)
        if type(value) is not str:
            return False
    return True


def list_text(seq: object, ts: object, wire: dict[str, Any]) -> str:
    """``canonical_json([seq, ts, wire])``: a command page's item. O(len(wire))."""
    if type(seq) is int and type(ts) is int:
        return f"[{seq},{ts},{command_text(wire)}]"
    return canonical_json([seq, ts, wire])
