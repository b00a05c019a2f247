"""The core benchmark's message stream and the drivers that feed it to each book.

The stream (issue 22): ``n`` messages, seeded; 80% limit orders around the mid (price
100.00 +- 5 ticks, 1 to 100 whole units, sides 50/50), a fifth of them IOC; 12% cancels
and 8% modifies, each aimed at an order resting at that moment (uniformly among them;
when nothing rests, a limit order is drawn instead). A modify always moves the price
(a new price in the same band), so in the core it is a cancel and reinsert that loses
priority, exactly the naive book's "cancel plus new". Every order has its own client
id, so self-trade prevention never fires. Under these rules both books must end with
the same resting orders, in the same priority, after the same fills (tested by
``tests/core/test_core_bench_baseline.py``).

A message is a plain tuple, the form a caller would have before choosing a book:
``("L", client_id, order_id, is_buy, price, amount, ioc)``, ``("C", client_id,
order_id)`` or ``("M", client_id, order_id, price, amount)``; prices in ticks, amounts in
lots of ``DEFAULT_SPEC``.

The drivers take messages through each book's public API, one at a time, and keep what
comes back (the number of fills for the naive book, of events for the core), so both
pay for building their input and returning their output: ``run_core`` through
``OrderBook.apply`` (a typed command per message), ``run_core_fields`` through the entry
points that take the fields (``new_order``, ``cancel_order``, ``modify_order``: no
command built); ``run_core_batch`` does the same through the core's bulk entry point,
``OrderBook.apply_many``, in chunks, with compact events by default.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from naive_book import NaiveBook

from orderbook_core import (
    DEFAULT_SPEC,
    CancelOrder,
    CancelReason,
    Event,
    ModifyOrder,
    NewOrder,
    OrderAccepted,
    OrderBook,
    OrderCancelled,
    OrderModified,
    OrderRejected,
    OrderRested,
    RejectReason,
    Side,
    TimeInForce,
)

Message = tuple[Any, ...]

LIMIT, CANCEL, MODIFY = "L", "C", "M"
MID = DEFAULT_SPEC.price_to_ticks(Decimal(100))
LOT = DEFAULT_SPEC.amount_to_lots(Decimal(1))
BAND = 5


def make_messages(n: int, seed: int) -> list[Message]:
    """The seeded stream of ``n`` messages (see the module docstring)."""
    rng = random.Random(seed)
    tracker = NaiveBook()
    live: list[str] = []  # order ids resting right now (swap-remove via position map)
    position: dict[str, int] = {}
    where: dict[str, int] = {}  # order id -> its price

    def forget(order_id: str) -> None:
        i = position.pop(order_id)
        last = live.pop()
        if last != order_id:
            live[i] = last
            position[last] = i

    def settle(order_id: str, fills: list[tuple[str, str, int, int]]) -> None:
        for maker_id, _taker, _price, _amount in fills:
            if maker_id not in tracker.index:
                forget(maker_id)
        if order_id in tracker.index and order_id not in position:
            position[order_id] = len(live)
            live.append(order_id)

    out: list[Message] = []
    for seq in range(1, n + 1):
        r = rng.random()
        if live and r < 0.12:
            order_id = live[rng.randrange(len(live))]
            forget(order_id)
            tracker.cancel(order_id)
            out.append((CANCEL, f"c{order_id}", order_id))
            continue
        if live and r < 0.20:
            order_id = live[rng.randrange(len(live))]
            old = where[order_id]
            price = old
            while price == old:
                price = MID + rng.randint(-BAND, BAND)
            amount = rng.randint(1, 100) * LOT
            where[order_id] = price
            forget(order_id)
            settle(order_id, tracker.modify(order_id, price, amount))
            out.append((MODIFY, f"c{order_id}", order_id, price, amount))
            continue
        order_id = str(seq)
        is_buy = rng.random() < 0.5
        price = MID + rng.randint(-BAND, BAND)
        amount = rng.randint(1, 100) * LOT
        ioc = rng.random() < 0.2
        where[order_id] = price
        settle(order_id, tracker.limit(order_id, is_buy, price, amount, ioc))
        out.append((LIMIT, f"c{order_id}", order_id, is_buy, price, amount, ioc))
    return out


_SIDES = (Side.SELL, Side.BUY)
_TIFS = (TimeInForce.GTC, TimeInForce.IOC)


def run_core(
    messages: list[Message], book: OrderBook | None = None, start: int = 1
) -> tuple[OrderBook, int]:
    """Feed ``messages`` to the core through ``OrderBook.apply``; (book, events seen).

    ``start`` is the first message's seq (and ts).
    """
    book = OrderBook(DEFAULT_SPEC) if book is None else book
    apply = book.apply
    sides, tifs = _SIDES, _TIFS
    n = 0
    for seq, m in enumerate(messages, start):
        kind = m[0]
        if kind == LIMIT:
            _, cid, oid, is_buy, price, amount, ioc = m
            n += len(apply(NewOrder(seq, seq, cid, oid, sides[is_buy], price, amount, tifs[ioc])))
        elif kind == CANCEL:
            n += len(apply(CancelOrder(seq, seq, m[1], m[2])))
        else:
            _, cid, oid, price, amount = m
            n += len(apply(ModifyOrder(seq, seq, cid, oid, price, amount)))
    return book, n


def run_core_fields(
    messages: list[Message], book: OrderBook | None = None, start: int = 1
) -> tuple[OrderBook, int]:
    """Feed ``messages`` to the core through ``new_order``/``cancel_order``/
    ``modify_order`` (the fields, no typed command); (book, events seen)."""
    book = OrderBook(DEFAULT_SPEC) if book is None else book
    return book, _feed_fields(book, messages, start)


def _feed_fields(book: Any, messages: list[Message], start: int) -> int:
    """The loop of `run_core_fields` and `run_floor`: each message a call of the
    book's field entry points; the events seen."""
    new_order, cancel_order, modify_order = book.new_order, book.cancel_order, book.modify_order
    sides, tifs = _SIDES, _TIFS
    n = 0
    for seq, m in enumerate(messages, start):
        kind = m[0]
        if kind == LIMIT:
            _, cid, oid, is_buy, price, amount, ioc = m
            n += len(new_order(seq, seq, cid, oid, sides[is_buy], price, amount, tifs[ioc]))
        elif kind == CANCEL:
            n += len(cancel_order(seq, seq, m[1], m[2]))
        else:
            _, cid, oid, price, amount = m
            n += len(modify_order(seq, seq, cid, oid, price, amount))
    return n


def run_core_batch(
    messages: list[Message], book: OrderBook | None = None, chunk: int = 64, compact: bool = True
) -> tuple[OrderBook, int]:
    """Feed ``messages`` to the core through ``OrderBook.apply_many``; (book, events seen).

    Each message becomes the compact command, a plain tuple of the typed command's
    fields (all of them), and every ``chunk`` commands go in one call, as a replayed
    journal or a matcher's batch would; the events come back compact (``compact``) or
    typed.
    """
    book = OrderBook(DEFAULT_SPEC) if book is None else book
    apply_many = book.apply_many
    sides, tifs = _SIDES, _TIFS
    n = 0
    rows: list[tuple[Any, ...]] = []
    add = rows.append
    for seq, m in enumerate(messages, 1):
        kind = m[0]
        if kind == LIMIT:
            _, cid, oid, is_buy, price, amount, ioc = m
            add((seq, seq, cid, oid, sides[is_buy], price, amount, tifs[ioc], False))
        elif kind == CANCEL:
            add((seq, seq, m[1], m[2]))
        else:
            _, cid, oid, price, amount = m
            add((seq, seq, cid, oid, price, amount))
        if len(rows) == chunk:
            for events in apply_many(rows, compact=compact):
                n += len(events)
            rows.clear()
    for events in apply_many(rows, compact=compact):
        n += len(events)
    return book, n


def run_naive(messages: list[Message], book: NaiveBook | None = None) -> tuple[NaiveBook, int]:
    """Feed ``messages`` to the naive book through its methods; (book, fills seen)."""
    book = NaiveBook() if book is None else book
    limit, cancel, modify = book.limit, book.cancel, book.modify
    n = 0
    for _seq, m in enumerate(messages, 1):
        kind = m[0]
        if kind == LIMIT:
            _, _cid, oid, is_buy, price, amount, ioc = m
            n += len(limit(oid, is_buy, price, amount, ioc))
        elif kind == CANCEL:
            n += cancel(m[2])
        else:
            _, _cid, oid, price, amount = m
            n += len(modify(oid, price, amount))
    return book, n


def typed_commands(messages: list[Message]) -> list[NewOrder | CancelOrder | ModifyOrder]:
    """The typed commands ``run_core`` builds, built once (for apply on prebuilt commands)."""
    out: list[NewOrder | CancelOrder | ModifyOrder] = []
    for seq, m in enumerate(messages, 1):
        kind = m[0]
        if kind == LIMIT:
            _, cid, oid, is_buy, price, amount, ioc = m
            out.append(NewOrder(seq, seq, cid, oid, _SIDES[is_buy], price, amount, _TIFS[ioc]))
        elif kind == CANCEL:
            out.append(CancelOrder(seq, seq, m[1], m[2]))
        else:
            _, cid, oid, price, amount = m
            out.append(ModifyOrder(seq, seq, cid, oid, price, amount))
    return out


def resting_core(book: OrderBook) -> list[tuple[str, bool, int, int]]:
    """The core's resting orders as the naive book lists them, in canonical order."""
    return [(o.order_id, o.side is Side.BUY, o.price, o.remaining) for o in book.orders()]


_new: Any = tuple.__new__
_GTC, _IOC, _BUY, _USER = TimeInForce.GTC, TimeInForce.IOC, Side.BUY, CancelReason.USER
_PRICE_RANGE, _AMOUNT_RANGE = RejectReason.PRICE_OUT_OF_RANGE, RejectReason.AMOUNT_OUT_OF_RANGE


class FloorBook:
    """A measuring stub, not a book: what the field entry points cost with the core's
    validation and typed events and nothing else (no levels, no matching, no index
    updates). ``run_core_fields(messages, FloorBook())`` under callgrind, minus the
    stream alone, gives the floor of the one-at-a-time typed path in pure Python.

    Each message pays what ``OrderBook`` pays before and after its book work: a method
    call with the fields, the type and range checks of ``new_order`` (or a modify's),
    one id lookup, and the typed events of the common outcome, built as the core builds
    them (``tuple.__new__``): a new order rests (accepted, rested), a cancel succeeds
    (cancelled), a modify reinserts (modified, rested).
    """

    __slots__ = ("_index", "_max_lots", "_max_ticks", "_min_lots", "_min_ticks")

    def __init__(self) -> None:
        spec = DEFAULT_SPEC
        self._index: dict[str, Any] = {}
        self._min_ticks, self._max_ticks = spec.min_ticks, spec.max_ticks
        self._min_lots, self._max_lots = spec.min_lots, spec.max_lots

    def _reject(self, seq: int, cid: str, oid: str, reason: RejectReason) -> tuple[Event, ...]:
        return (_new(OrderRejected, (seq, cid, oid, reason)),)

    def new_order(
        self, seq: Any, ts: Any, cid: Any, oid: Any, side: Any, price: Any, amount: Any,
        tif: Any = _GTC, post_only: Any = False,
    ) -> tuple[Event, ...]:  # fmt: skip
        if type(seq) is not int or type(ts) is not int:
            raise TypeError("seq and ts must be ints")
        if price is not None:
            if type(price) is not int:
                raise TypeError("price must be an int")
            if not self._min_ticks <= price <= self._max_ticks:
                return self._reject(seq, cid, oid, _PRICE_RANGE)
        if type(amount) is not int:
            raise TypeError("amount must be an int")
        if not self._min_lots <= amount <= self._max_lots:
            return self._reject(seq, cid, oid, _AMOUNT_RANGE)
        if tif is not _GTC and tif is not _IOC:
            raise TypeError("tif must be a TimeInForce")
        if post_only is not False:
            raise TypeError("post_only must be a bool")
        self._index.get(oid)
        fields = (seq, cid, oid, side, price, amount)
        return _new(OrderAccepted, fields), _new(OrderRested, fields)

    def cancel_order(self, seq: Any, ts: Any, cid: Any, oid: Any) -> tuple[Event, ...]:
        self._index.get(oid)
        fields = (seq, cid, oid, _BUY, MID, LOT, _USER)
        return (_new(OrderCancelled, fields),)

    def modify_order(
        self, seq: Any, ts: Any, cid: Any, oid: Any, price: Any = None, amount: Any = None
    ) -> tuple[Event, ...]:
        if type(seq) is not int or type(ts) is not int:
            raise TypeError("seq and ts must be ints")
        self._index.get(oid)
        if type(price) is not int or not self._min_ticks <= price <= self._max_ticks:
            return self._reject(seq, cid, oid, _PRICE_RANGE)
        if type(amount) is not int or not self._min_lots <= amount <= self._max_lots:
            return self._reject(seq, cid, oid, _AMOUNT_RANGE)
        fields = (seq, cid, oid, _BUY, price, amount, MID, LOT, False)
        rested = (seq, cid, oid, _BUY, price, amount)
        return _new(OrderModified, fields), _new(OrderRested, rested)


def run_floor(messages: list[Message], start: int = 1) -> tuple[FloorBook, int]:
    """``run_core_fields``'s loop, on a :class:`FloorBook`; (stub, events seen)."""
    book = FloorBook()
    return book, _feed_fields(book, messages, start)
