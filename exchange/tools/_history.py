"""One client's orders and fills, from the sequenced commands' events.

The journal (replayed through the core) and the versions in the DHT (their event
pages) both give, for each sequence number, the command and the events the matcher
made of it. `ClientHistory` is fed those in seq order and keeps what `dex order`,
`dex orders` and `dex fills` print: each order's life (placed, filled, rested,
modified, cancelled by whom, rejected and why) and every trade of the client, from
either side. The book tells whether an order rests now; the events tell why one does
not. Nothing here reads a file or the network: `exchange.tools._orders` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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
    RestingOrder,
    Trade,
)

__all__ = [
    "CANCELLED",
    "FILLED",
    "PENDING",
    "REJECTED",
    "RESTING",
    "UNKNOWN",
    "ClientHistory",
    "Fill",
    "OrderLife",
    "life_record",
    "open_order_record",
    "steps_json",
]

RESTING = "resting"
FILLED = "filled"
CANCELLED = "cancelled"
REJECTED = "rejected"
UNKNOWN = "unknown"
PENDING = "not resting"
"""Placed, not resting, and its end is not in the history read (a partial history)."""

_CANCELLED_BY = {
    CancelReason.USER: "by its owner",
    CancelReason.IOC: "the unfilled remainder of an IOC order",
    CancelReason.MARKET: "the unfilled remainder of a market order",
    CancelReason.SELF_TRADE: "by self-trade prevention (an order of the same client)",
}


@dataclass(frozen=True, slots=True)
class Fill:
    """One trade as one of its two sides sees it."""

    seq: int
    ts: int
    trade_id: str
    order_id: str
    side: str
    role: str
    """``maker`` (the order rested) or ``taker`` (it came in and crossed)."""
    price: int
    amount: int
    counterparty_client: str
    counterparty_order: str

    def to_json(self, spec: MarketSpec) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "tradeId": self.trade_id,
            "orderId": self.order_id,
            "side": self.side,
            "role": self.role,
            "price": str(spec.ticks_to_price(self.price)),
            "amount": str(spec.lots_to_amount(self.amount)),
            "counterpartyClientId": self.counterparty_client,
            "counterpartyOrderId": self.counterparty_order,
        }


@dataclass(slots=True)
class OrderLife:
    """What the history says of one order: its state and the steps that led there."""

    client_id: str
    order_id: str
    state: str = UNKNOWN
    side: str | None = None
    price: int | None = None
    amount: int | None = None
    """The amount it was placed with (lots), when its placing is in the history."""
    filled: int = 0
    remaining: int | None = None
    seq: int | None = None
    """The seq of the command that placed it."""
    ts: int | None = None
    reason: str | None = None
    """Why it was cancelled or rejected."""
    steps: list[dict[str, Any]] = field(default_factory=list)

    def step(self, seq: int, ts: int | None, what: str, **detail: Any) -> None:
        self.steps.append({"seq": seq, "ts": ts, "event": what, **detail})


def steps_json(steps: list[dict[str, Any]], spec: MarketSpec) -> list[dict[str, Any]]:
    out = []
    for step in steps:
        shown = dict(step)
        for key in ("price", "oldPrice"):
            if shown.get(key) is not None:
                shown[key] = str(spec.ticks_to_price(shown[key]))
        for key in ("amount", "oldAmount", "remaining"):
            if shown.get(key) is not None:
                shown[key] = str(spec.lots_to_amount(shown[key]))
        out.append(shown)
    return out


def life_record(life: OrderLife, spec: MarketSpec) -> dict[str, Any]:
    """An order's life as JSON (prices and amounts as decimal strings)."""

    def lots(value: int | None) -> str | None:
        return None if value is None else str(spec.lots_to_amount(value))

    return {
        "clientId": life.client_id,
        "orderId": life.order_id,
        "state": life.state,
        "side": life.side,
        "price": None if life.price is None else str(spec.ticks_to_price(life.price)),
        "amount": lots(life.amount),
        "filled": lots(life.filled),
        "remaining": lots(life.remaining),
        "seq": life.seq,
        "ts": life.ts,
        "reason": life.reason,
        "history": steps_json(life.steps, spec),
    }


def open_order_record(order: RestingOrder, spec: MarketSpec) -> dict[str, Any]:
    """A resting order as `dex orders` prints it."""
    return {
        "orderId": order.order_id,
        "side": str(order.side),
        "price": str(spec.ticks_to_price(order.price)),
        "remaining": str(spec.lots_to_amount(order.remaining)),
        "seq": order.seq,
        "ts": order.ts,
    }


class ClientHistory:
    """One client's orders (or one order of it) and fills, fed event by event.

    Args:
        client_id: whose orders and fills to keep.
        order_id: keep only this order's life (fills of the client are kept anyway).
    """

    def __init__(self, client_id: str, order_id: str | None = None) -> None:
        self.client_id = client_id
        self.order_id = order_id
        self.orders: dict[str, OrderLife] = {}
        self.fills: list[Fill] = []
        self.first_seq: int | None = None
        """The first seq fed: the history is complete when it is 1."""
        self.last_seq = 0

    def _mine(self, client_id: str, order_id: str) -> OrderLife | None:
        if client_id != self.client_id or (self.order_id is not None and order_id != self.order_id):
            return None
        life = self.orders.get(order_id)
        if life is None:
            life = self.orders[order_id] = OrderLife(client_id, order_id)
        return life

    def feed(
        self,
        seq: int,
        ts: int | None,
        command: Mapping[str, Any] | None,
        events: Iterable[Event],
    ) -> None:
        """The command numbered `seq` (when known) and the events it made, in order."""
        if self.first_seq is None:
            self.first_seq = seq
        self.last_seq = seq
        me = self.client_id
        for event in events:
            if isinstance(event, Trade):
                if me in (event.maker_client_id, event.taker_client_id):
                    self._trade(event)
            elif event.client_id == me:
                self._event(seq, ts, command, event)

    def _event(
        self,
        seq: int,
        ts: int | None,
        command: Mapping[str, Any] | None,
        event: OrderAccepted | OrderRested | OrderCancelled | OrderModified | OrderRejected,
    ) -> None:
        life = self._mine(event.client_id, event.order_id)
        if life is None:
            return
        if isinstance(event, OrderAccepted):
            life.state, life.side, life.price = PENDING, str(event.side), event.price
            life.amount, life.remaining, life.seq, life.ts = event.amount, event.amount, seq, ts
            life.filled, life.reason = 0, None
            tif = None if command is None else command.get("tif")
            life.step(seq, ts, "placed", side=life.side, price=event.price,
                      amount=event.amount, tif=tif)  # fmt: skip
        elif isinstance(event, OrderRested):
            life.state, life.remaining, life.price = RESTING, event.amount, event.price
            life.step(seq, ts, "rested", price=event.price, amount=event.amount)
        elif isinstance(event, OrderCancelled):
            life.state, life.remaining = CANCELLED, 0
            life.reason = _CANCELLED_BY[event.reason]
            life.step(seq, ts, "cancelled", amount=event.amount, reason=str(event.reason))
        elif isinstance(event, OrderModified):
            life.state, life.price, life.remaining = RESTING, event.price, event.amount
            life.side = str(event.side)
            life.step(seq, ts, "modified", price=event.price, amount=event.amount,
                      oldPrice=event.old_price, oldAmount=event.old_amount,
                      priorityKept=event.priority_kept)  # fmt: skip
        elif isinstance(event, OrderRejected):
            op = None if command is None else command.get("op")
            life.step(seq, ts, "rejected", op=op, reason=str(event.reason))
            if life.seq is None and op in ("new", None):
                # A new order refused by the matcher: it never entered the book. (A
                # cancel or modify refused leaves the order as it was.)
                life.state, life.reason = REJECTED, str(event.reason)
                if op is None:
                    life.reason += " (the command's kind is not in the history read)"

    def _trade(self, trade: Trade) -> None:
        maker_side = "sell" if trade.taker_side == "buy" else "buy"
        for client, order, side, role, other_client, other_order, left in (
            (trade.maker_client_id, trade.maker_order_id, maker_side, "maker",
             trade.taker_client_id, trade.taker_order_id, trade.maker_remaining),
            (trade.taker_client_id, trade.taker_order_id, str(trade.taker_side), "taker",
             trade.maker_client_id, trade.maker_order_id, None),
        ):  # fmt: skip
            if client != self.client_id:
                continue
            fill = Fill(
                trade.seq,
                trade.ts,
                trade.trade_id,
                order,
                side,
                role,
                trade.price,
                trade.amount,
                other_client,
                other_order,
            )
            self.fills.append(fill)
            life = self._mine(client, order)
            if life is None:
                continue
            life.filled += trade.amount
            if left is not None:
                life.remaining = left
            elif life.remaining is not None:
                life.remaining -= trade.amount
            if life.remaining == 0:
                life.state = FILLED
            elif life.state not in (RESTING,):
                life.state = PENDING
            life.step(trade.seq, trade.ts, "filled", tradeId=trade.trade_id, role=role,
                      price=trade.price, amount=trade.amount,
                      counterparty=f"{other_client}/{other_order}")  # fmt: skip

    def settle(self, resting: Mapping[str, RestingOrder]) -> None:
        """Take the book's word for which of the client's orders rest now (and with how
        much): `resting` maps orderId to the client's resting orders."""
        for order_id, order in resting.items():
            life = self._mine(self.client_id, order_id)
            if life is None:
                continue
            life.state, life.remaining, life.price = RESTING, order.remaining, order.price
            life.side = str(order.side)
        for life in self.orders.values():
            if life.order_id not in resting and life.state == RESTING:
                # The history says it rests, the book says not: the history is partial
                # (a walk through the DHT) and missed its end.
                life.state = PENDING

    @property
    def complete(self) -> bool:
        """Whether the history starts at the first command (seq 1) or nothing was fed."""
        return self.first_seq in (None, 1)
