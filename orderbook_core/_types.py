"""Value types of the core: enums, commands, events and the resting-order view.

Commands and events are ``typing.NamedTuple`` values: immutable, hashable, slotted
(no ``__dict__``) and cheap to build. We measured them against frozen, slotted
dataclasses on CPython 3.11: a six-field NamedTuple costs ~0.22 µs to build through
its generated ``__new__`` and ~0.10 µs through ``tuple.__new__`` (what the matching
loop uses), a frozen slotted dataclass ~0.65 µs. The hot path builds two or three
of them per order, so the choice is worth ~1 µs per operation.

Prices are integer *ticks* and amounts integer *lots* of the book's
:class:`~orderbook_core.MarketSpec`; ``seq`` and ``ts`` are inputs chosen by the
sequencer, never read from a clock.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

__all__ = [
    "COMPACT_EVENT_TYPES",
    "CancelOrder",
    "CancelReason",
    "Command",
    "CompactEvent",
    "Event",
    "ModifyOrder",
    "NewOrder",
    "OrderAccepted",
    "OrderCancelled",
    "OrderModified",
    "OrderRejected",
    "OrderRested",
    "RejectReason",
    "RestingOrder",
    "SelfTradePrevention",
    "Side",
    "TimeInForce",
    "Trade",
    "event_from_compact",
    "event_to_compact",
]


class Side(StrEnum):
    """The side of an order: ``BUY`` bids, ``SELL`` asks."""

    BUY = "buy"
    SELL = "sell"


class TimeInForce(StrEnum):
    """How long an order's unfilled remainder lives.

    ``GTC`` rests until filled or cancelled; ``IOC`` cancels whatever did not fill at
    once; ``FOK`` fills completely at once or is rejected without changing anything.
    """

    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class SelfTradePrevention(StrEnum):
    """What happens when a taker would trade with a resting order of the same client.

    ``CANCEL_MAKER`` (the default, "cancel oldest") cancels the resting order and lets
    the taker go on matching: the newest instruction is the client's current intent,
    and a stale quote must not block it. ``CANCEL_TAKER`` ("cancel newest") cancels the
    taker's remainder and leaves the resting order. ``CANCEL_BOTH`` cancels both.
    No mode ever produces a trade between two orders of one client.
    """

    CANCEL_MAKER = "cancel_maker"
    CANCEL_TAKER = "cancel_taker"
    CANCEL_BOTH = "cancel_both"


class RejectReason(StrEnum):
    """Why a command was rejected. The values are stable wire codes, grouped by area.

    A rejected command leaves the book exactly as it was.
    """

    # Price area.
    PRICE_NOT_POSITIVE = "ERR_PRICE_NOT_POSITIVE"
    PRICE_OUT_OF_RANGE = "ERR_PRICE_OUT_OF_RANGE"
    # Amount area.
    AMOUNT_NOT_POSITIVE = "ERR_AMOUNT_NOT_POSITIVE"
    AMOUNT_OUT_OF_RANGE = "ERR_AMOUNT_OUT_OF_RANGE"
    # Parameter combinations.
    POST_ONLY_MARKET = "ERR_PARAM_POST_ONLY_MARKET"
    POST_ONLY_TIF = "ERR_PARAM_POST_ONLY_TIF"
    MODIFY_NO_CHANGE = "ERR_PARAM_MODIFY_NO_CHANGE"
    # Order identity.
    DUPLICATE_ORDER_ID = "ERR_ORDER_DUPLICATE_ID"
    UNKNOWN_ORDER = "ERR_ORDER_UNKNOWN"
    # Execution conditions.
    POST_ONLY_WOULD_CROSS = "ERR_EXEC_POST_ONLY_WOULD_CROSS"
    FOK_NOT_FILLABLE = "ERR_EXEC_FOK_NOT_FILLABLE"


class CancelReason(StrEnum):
    """Why (part of) an order left the book without trading."""

    USER = "user"
    """The owner cancelled it."""
    IOC = "ioc"
    """The unfilled remainder of an IOC limit order."""
    MARKET = "market"
    """The unfilled remainder of a market order (market orders never rest)."""
    SELF_TRADE = "self_trade"
    """Self-trade prevention removed it (see :class:`SelfTradePrevention`)."""


# --------------------------------------------------------------------------- commands


class NewOrder(NamedTuple):
    """Submit a new order.

    ``price`` is in ticks, or ``None`` for a market order (which never rests);
    ``amount`` is in lots. ``(client_id, order_id)`` identifies the order while it
    lives; the pair may be reused once the order is filled or cancelled.
    """

    seq: int
    ts: int
    client_id: str
    order_id: str
    side: Side
    price: int | None
    amount: int
    tif: TimeInForce = TimeInForce.GTC
    post_only: bool = False


class CancelOrder(NamedTuple):
    """Cancel the whole remainder of one of the client's own resting orders."""

    seq: int
    ts: int
    client_id: str
    order_id: str


class ModifyOrder(NamedTuple):
    """Reprice and/or resize a resting order.

    ``price`` (ticks) or ``amount`` (lots, the new *remaining* amount) may be ``None``
    to keep the current value. A pure decrease of the amount at the same price keeps
    time priority; anything else is a cancel and reinsert with ``seq``/``ts`` of this
    command, and trades first if the new price crosses.
    """

    seq: int
    ts: int
    client_id: str
    order_id: str
    price: int | None = None
    amount: int | None = None


Command = NewOrder | CancelOrder | ModifyOrder
"""Every command the book accepts."""


# --------------------------------------------------------------------------- events


class OrderAccepted(NamedTuple):
    """A new order passed validation; trades, rest or cancel events follow."""

    seq: int
    client_id: str
    order_id: str
    side: Side
    price: int | None
    amount: int


class Trade(NamedTuple):
    """One fill between a resting maker and an incoming taker, at the maker's price.

    ``trade_id`` is ``f"{seq}.{n}"`` with ``n`` counting the command's trades from 1,
    so it is unique as long as sequence numbers are. ``maker_remaining`` is what is
    left of the maker after this fill (0 means it left the book).
    """

    seq: int
    trade_id: str
    ts: int
    price: int
    amount: int
    taker_side: Side
    maker_client_id: str
    maker_order_id: str
    maker_remaining: int
    taker_client_id: str
    taker_order_id: str


class OrderRested(NamedTuple):
    """The order (or its remainder, ``amount`` lots) now rests at ``price``."""

    seq: int
    client_id: str
    order_id: str
    side: Side
    price: int
    amount: int


class OrderCancelled(NamedTuple):
    """``amount`` lots of the order left the book (or never entered it) untraded."""

    seq: int
    client_id: str
    order_id: str
    side: Side
    price: int | None
    amount: int
    reason: CancelReason


class OrderRejected(NamedTuple):
    """The command was refused; the book is exactly as it was before it."""

    seq: int
    client_id: str
    order_id: str
    reason: RejectReason


class OrderModified(NamedTuple):
    """A resting order was modified from (old_price, old_amount) to (price, amount).

    ``priority_kept`` is true only for a pure size decrease at the same price. When it
    is false the order was taken out and reinserted: trade events may follow (a
    reprice that crosses), then an :class:`OrderRested` for what is left.
    """

    seq: int
    client_id: str
    order_id: str
    side: Side
    price: int
    amount: int
    old_price: int
    old_amount: int
    priority_kept: bool


Event = OrderAccepted | Trade | OrderRested | OrderCancelled | OrderRejected | OrderModified
"""Every event the book emits."""

COMPACT_EVENT_TYPES: tuple[type[Event], ...] = (
    OrderAccepted,
    Trade,
    OrderRested,
    OrderCancelled,
    OrderRejected,
    OrderModified,
)
"""The event types of compact events, by kind: a compact event is a plain 2-tuple
``(kind, fields)``, ``fields`` the event's fields in order, ``COMPACT_EVENT_TYPES[kind]``
its type (0 accepted, 1 trade, 2 rested, 3 cancelled, 4 rejected, 5 modified)."""

CompactEvent = tuple[int, tuple[Any, ...]]
"""A compact event, ``(kind, fields)`` (see :data:`COMPACT_EVENT_TYPES`)."""


def event_from_compact(compact: CompactEvent) -> Event:
    """The typed event of a compact event ``(kind, fields)``: equal to what
    :meth:`~orderbook_core.OrderBook.apply` returns for it, and of the same type."""
    kind, fields = compact
    event: Event = tuple.__new__(COMPACT_EVENT_TYPES[kind], fields)
    return event


def event_to_compact(event: Event) -> CompactEvent:
    """The compact form ``(kind, fields)`` of a typed event (``event_from_compact``
    inverts it)."""
    return COMPACT_EVENT_TYPES.index(type(event)), tuple(event)


class RestingOrder(NamedTuple):
    """A read-only view of an order resting in the book.

    ``seq`` and ``ts`` are those of the command that gave the order its current time
    priority (the new order, or the last modify that reinserted it).
    """

    client_id: str
    order_id: str
    side: Side
    price: int
    remaining: int
    seq: int
    ts: int
