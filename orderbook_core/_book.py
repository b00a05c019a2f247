"""The book facade: the indexes, the queries, transactions and the invariant checker.

The matching *decisions* live in :mod:`orderbook_core._rules`; the structures they act
on, and the primitives that keep them consistent, in :mod:`orderbook_core._state` (the
base class of the book); this module adds the public methods.

Data structures (why they look like this is in docs/core.md):

* an order is a mutable slotted record, :class:`~orderbook_core._state.Order`, laid out
  like :class:`RestingOrder` (``client_id, order_id, side, price, remaining, seq, ts``),
  so a fill is one attribute store and a view is ``order.view()``;
* each side is a ``dict`` from price (ticks) to a *level* ``[total, dead, queue]``:
  ``total`` is the sum of the live orders' remaining lots, ``queue`` a ``deque`` of
  orders in time priority, ``dead`` the number of cancelled orders still sitting in the
  queue (a cancel in the middle of a queue marks the order dead, ``remaining = 0``, in
  O(1); dead entries are skipped when they reach the head and the queue is compacted
  when they outnumber the live ones);
* each side has a binary heap of its prices (bids negated) with lazy deletion, and the
  best price is cached: the hot path needs only the best price, and ``heapq`` is C;
* an id index maps ``(client_id, order_id)`` to the live order (keyed by order id,
  see :class:`~orderbook_core._state.BookState`);
* while a transaction or batch is open, an undo log holds, per command, what it may
  change (see :mod:`orderbook_core._journal`).

A level exists if and only if its total is positive, and it is then in the heap.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Final, Literal, overload

from orderbook_core._journal import CANCEL, MODIFY, NEW, JournaledState
from orderbook_core._rules import cancel_order as _cancel
from orderbook_core._rules import modify_order as _modify
from orderbook_core._rules import new_order as _new_order
from orderbook_core._spec import MarketSpec
from orderbook_core._state import PURE, Level, Order
from orderbook_core._types import (
    CancelOrder,
    Command,
    CompactEvent,
    Event,
    ModifyOrder,
    NewOrder,
    OrderRejected,
    RestingOrder,
    Side,
    TimeInForce,
)

__all__ = ["OrderBook"]

_BUY: Final = Side.BUY
_SELL: Final = Side.SELL
_GTC: Final = TimeInForce.GTC
_heappush: Final = heapq.heappush
_heappop: Final = heapq.heappop


# What apply_many takes: a typed command or a plain tuple of its fields.
_COMMAND_TYPES: frozenset[type] = frozenset((tuple, NewOrder, CancelOrder, ModifyOrder))
# A compact command's kind, by its number of fields.
_KINDS: dict[int, int] = {9: NEW, 4: CANCEL, 6: MODIFY}


class _Transaction:
    """The context :meth:`OrderBook.transaction` returns (a class: cheaper than a
    generator-based context manager, and the matcher opens one per command)."""

    __slots__ = ("book", "mark", "outermost")

    def __init__(self, book: OrderBook) -> None:
        self.book = book
        self.mark = 0
        self.outermost = False

    def __enter__(self) -> OrderBook:
        book = self.book
        journal = book._journal
        if journal is None:
            journal = book._journal = []
            self.outermost = True
        self.mark = len(journal)
        return book

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        book = self.book
        try:
            if exc_type is not None:
                book._rollback(self.mark)
        finally:
            if self.outermost:
                book._journal = None
                self.outermost = False


class OrderBook(JournaledState):
    """One market's limit order book: price-time priority, pure and deterministic.

    Every public method is sans-I/O: commands in, a tuple of events out, no clock, no
    randomness, no logging. The same book and the same command always give the same
    events and the same next state.

    Args:
        spec: the market's tick and lot size, limits and self-trade mode.
    """

    __slots__ = ()  # every field is the BookState's

    # ------------------------------------------------------------------ commands

    def apply(self, cmd: Command) -> tuple[Event, ...]:
        """Apply one command and return what happened.

        A rejection is an :class:`OrderRejected` event (the only event returned) and
        leaves the book exactly as it was.

        Complexity: O(1) to rest, cancel or modify in place (amortized; O(log L) more
        when a price level appears or empties, L = number of levels); a sweep adds
        O(1) per fill. FOK checks are O(k + L log L) over the k crossing orders.

        Args:
            cmd: a :data:`Command` (prices in ticks, amounts in lots).

        Returns:
            The events, in the order they happened.

        Raises:
            TypeError: ``cmd`` is not a command, a price or amount is not an int, or
                a side or time in force is not the enum (programming errors: the
                wire validator produces exactly these types). Nothing has changed.
        """
        kind = type(cmd)
        if self._journal is not None:
            if kind is NewOrder:
                return self._apply_journaled(cmd, NEW)
            if kind is CancelOrder:
                return self._apply_journaled(cmd, CANCEL)
            if kind is ModifyOrder:
                return self._apply_journaled(cmd, MODIFY)
            raise TypeError(f"not a command: {cmd!r}")
        # Unpacked as Any: compiled, typed locals would convert a wrong type (see _rules).
        fields: tuple[Any, ...] = cmd
        if kind is NewOrder:
            seq, ts, client_id, order_id, side, price, amount, tif, post_only = fields
            return _new_order(
                self, seq, ts, client_id, order_id, side, price, amount, tif, post_only
            )
        if kind is CancelOrder:
            return _cancel(self, fields[0], fields[1], fields[2], fields[3])
        if kind is ModifyOrder:
            seq, ts, client_id, order_id, price, amount = fields
            return _modify(self, seq, ts, client_id, order_id, price, amount)
        raise TypeError(f"not a command: {cmd!r}")

    def new_order(
        self,
        seq: Any,
        ts: Any,
        client_id: Any,
        order_id: Any,
        side: Any,
        price: Any,
        amount: Any,
        tif: Any = _GTC,
        post_only: Any = False,
    ) -> tuple[Event, ...]:
        """``apply(NewOrder(seq, ts, client_id, order_id, side, price, amount, tif,
        post_only))``, without building the command: the fastest way to submit one.

        The fields are those of :class:`NewOrder`, with the same types (``seq``, ``ts``
        int; ``side`` a :class:`Side`; ``price`` int ticks or None for a market order;
        ``amount`` int lots; ``tif`` a :class:`TimeInForce`; ``post_only`` a bool).
        Same validation, events, next state and journaling as :meth:`apply` (a property
        test holds it to apply on random streams, pure and compiled).

        Raises:
            TypeError: as :meth:`apply`, for a field of the wrong type.
        """
        return _new_order(self, seq, ts, client_id, order_id, side, price, amount, tif, post_only)

    def cancel_order(self, seq: Any, ts: Any, client_id: Any, order_id: Any) -> tuple[Event, ...]:
        """``apply(CancelOrder(seq, ts, client_id, order_id))`` without building the
        command (same validation, events, state and journaling; see :meth:`new_order`)."""
        return _cancel(self, seq, ts, client_id, order_id)

    def modify_order(
        self,
        seq: Any,
        ts: Any,
        client_id: Any,
        order_id: Any,
        price: Any = None,
        amount: Any = None,
    ) -> tuple[Event, ...]:
        """``apply(ModifyOrder(seq, ts, client_id, order_id, price, amount))`` without
        building the command (same validation, events, state and journaling; see
        :meth:`new_order`). None keeps the value; ``amount`` is the new remaining."""
        return _modify(self, seq, ts, client_id, order_id, price, amount)

    def apply_batch(self, cmds: Iterable[Command], *, strict: bool = False) -> tuple[Event, ...]:
        """Apply commands in order, all or nothing.

        If any step raises, the book is restored exactly (byte-identical encoding) and
        the exception propagates. With ``strict=True`` a rejection also aborts the
        batch: the book is restored and the result is that one :class:`OrderRejected`.

        Complexity: the commands' cost, plus for each command a copy of the levels it
        may touch (see :meth:`transaction`).

        Returns:
            The events of every command, concatenated.
        """
        txn = _Transaction(self)
        with txn:
            events: list[Event] = []
            for cmd in cmds:
                out = self.apply(cmd)
                if strict and type(out[-1]) is OrderRejected:
                    self._rollback(txn.mark)
                    return out
                events.extend(out)
            return tuple(events)

    @overload
    def apply_many(
        self, cmds: Iterable[tuple[Any, ...]], *, compact: Literal[False] = False
    ) -> list[tuple[Event, ...]]: ...

    @overload
    def apply_many(
        self, cmds: Iterable[tuple[Any, ...]], *, compact: Literal[True]
    ) -> list[tuple[CompactEvent, ...]]: ...

    @overload
    def apply_many(
        self, cmds: Iterable[tuple[Any, ...]], *, compact: bool
    ) -> list[tuple[Event, ...]] | list[tuple[CompactEvent, ...]]: ...

    def apply_many(
        self, cmds: Iterable[tuple[Any, ...]], *, compact: bool = False
    ) -> list[tuple[Any, ...]]:
        """Apply many commands, one after the other; the entry point for bulk callers.

        Each command is handled exactly as :meth:`apply` handles it (same validation,
        same events, same next state and hash), but commands may come in compact form:
        a typed command or a plain tuple of the same fields in the same order, all of
        them: 9 fields ``(seq, ts, client_id, order_id, side, price, amount, tif,
        post_only)`` are a :class:`NewOrder`, 4 a :class:`CancelOrder`, 6 a
        :class:`ModifyOrder` (``side`` and ``tif`` are the enums, as for apply). No
        typed command is built. The result holds, for each command, the tuple of
        events apply would have returned, in the same order as the commands; with
        ``compact=True``, each event in compact form, a plain ``(kind, fields)``
        (:data:`COMPACT_EVENT_TYPES`, :func:`event_from_compact`), which is cheaper
        to build than the typed event.

        Not all-or-nothing (that is :meth:`apply_batch`): if a command raises, the
        commands before it stay applied, that one changes nothing, and the exception
        propagates. In a transaction, each command is journaled as by apply.

        Complexity: the commands' cost. In CPython, chunks of tens to hundreds of
        commands are faster than one huge call: events kept alive in a long result
        lose the allocator's reuse of freed tuples (docs/core.md).

        Raises:
            TypeError: a command has another number of fields, or a field of the wrong
                type (as :meth:`apply`).
        """
        out: list[tuple[Any, ...]] = []
        append = out.append
        # Any, checked below: compiled, a typed loop variable would refuse a non-tuple
        # with mypyc's own message before the check could name it.
        items: Iterable[Any] = cmds
        # The rules read which events to build from the book (see BookState._compact).
        self._compact = compact
        try:
            if self._journal is not None:
                # In a transaction: the same undo records as apply, without typed commands.
                for cmd in items:
                    if type(cmd) not in _COMMAND_TYPES:
                        raise TypeError(f"not a command: {cmd!r}")
                    kind = _KINDS.get(len(cmd))
                    if kind is None:
                        raise TypeError(f"not a command: {cmd!r}")
                    append(self._apply_journaled(cmd, kind))
                return out
            for cmd in items:
                if type(cmd) is not tuple and type(cmd) not in _COMMAND_TYPES:
                    raise TypeError(f"not a command: {cmd!r}")
                fields: tuple[Any, ...] = cmd
                n = len(fields)
                if n == 9:
                    seq, ts, client_id, order_id, side, price, amount, tif, post_only = fields
                    append(
                        _new_order(
                            self, seq, ts, client_id, order_id, side, price, amount, tif,
                            post_only,
                        )
                    )  # fmt: skip
                elif n == 4:
                    append(_cancel(self, fields[0], fields[1], fields[2], fields[3]))
                elif n == 6:
                    seq, ts, client_id, order_id, price, amount = fields
                    append(_modify(self, seq, ts, client_id, order_id, price, amount))
                else:
                    raise TypeError(f"not a command: {cmd!r}")
        finally:
            self._compact = False
        return out

    def transaction(self) -> AbstractContextManager[OrderBook]:
        """A context in which an exception restores the exact prior state.

        ``with book.transaction(): ...`` applies commands (and does anything else);
        if the block raises, the book is put back exactly as it was on entry (same
        canonical encoding, same hash, same behaviour afterwards) and the exception
        propagates. Transactions nest; an inner rollback undoes only its own block.

        Complexity: an undo log, not a copy of the book. O(1) on entry; while open,
        each command first records the levels it may touch (its own level, and the
        opposite levels it can trade against, up to the one that would complete it),
        O(orders in those levels + L log L); a rollback costs the same again.
        """
        return _Transaction(self)

    # ------------------------------------------------------------------ queries

    @property
    def spec(self) -> MarketSpec:
        """The market specification this book was built with."""
        return self._spec

    def best_bid(self) -> int | None:
        """The highest bid price in ticks, or None. O(1) (cached)."""
        return self._best_bid

    def best_ask(self) -> int | None:
        """The lowest ask price in ticks, or None. O(1) (cached)."""
        return self._best_ask

    def _side_levels(self, side: Side) -> dict[int, Level]:
        # A plain "buy" equals Side.BUY but is not it: refuse it, as apply does, rather
        # than answer for the other side.
        if side is _BUY:
            return self._bids
        if side is _SELL:
            return self._asks
        raise TypeError(f"side must be a Side, not {side!r}")

    def depth(self, side: Side, price: int) -> int:
        """Total lots resting on ``side`` at ``price`` (0 if none). O(1).

        Raises:
            TypeError: ``side`` is not a :class:`Side`.
        """
        level = self._side_levels(side).get(price)
        return 0 if level is None else int(level[0])

    def levels(self, side: Side, n: int | None = None) -> list[tuple[int, int]]:
        """The best ``n`` levels of ``side`` (all if None) as (price, total lots).

        Best first: bids descending, asks ascending. O(L log L), L = levels of side.

        Raises:
            TypeError: ``side`` is not a :class:`Side`.
        """
        book = self._side_levels(side)
        prices = sorted(book, reverse=side is _BUY)
        if n is not None:
            prices = prices[: max(n, 0)]
        return [(p, int(book[p][0])) for p in prices]

    def orders(self, side: Side | None = None) -> Iterator[RestingOrder]:
        """Every resting order in canonical order.

        Asks ascending then bids descending (one side only if ``side`` is given),
        and within a level in time priority (the order that trades first, first).
        The views are taken when this is called, so the caller may apply commands
        while iterating. O(n + L log L).

        Raises:
            TypeError: ``side`` is neither None nor a :class:`Side`.
        """
        sides = (_SELL, _BUY) if side is None else (side,)
        out: list[RestingOrder] = []
        for s in sides:
            book = self._side_levels(s)
            for price in sorted(book, reverse=s is _BUY):
                out.extend([order.view() for order in book[price][2] if order.remaining])
        return iter(out)

    def get_order(self, client_id: str, order_id: str) -> RestingOrder | None:
        """The resting order with this id, or None (filled, cancelled, unknown). O(1)."""
        order = self._find(client_id, order_id)
        return None if order is None else order.view()

    def __len__(self) -> int:
        """The number of resting orders. O(1)."""
        return len(self._index) + self._shared

    def copy(self) -> OrderBook:
        """An independent book with the same content: equal, and it behaves the same.

        O(n log n). The book's content is its spec and resting orders in priority, so
        this is `from_orders` of them.
        """
        return OrderBook.from_orders(self._spec, self.orders())

    def __eq__(self, other: object) -> bool:
        """Books are equal when their canonical encodings are. O(n + L log L)."""
        if not isinstance(other, OrderBook):
            return NotImplemented
        return self._spec == other._spec and list(self.orders()) == list(other.orders())

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"<OrderBook {self._spec.market} orders={len(self)} "
            f"bid={self._best_bid} ask={self._best_ask}>"
        )

    @classmethod
    def from_orders(cls, spec: MarketSpec, orders: Iterable[RestingOrder]) -> OrderBook:
        """Build a book holding ``orders`` (a restore from a snapshot). O(n + L log L).

        Orders enter their level's queue in the order given, so pass them in priority
        order (as :meth:`orders` yields them).

        Raises:
            ValueError: a duplicate id, a non-positive or out-of-range price or
                amount, a bad side, or a crossed result.
            TypeError: a price, amount, seq or ts that is not an int.
        """
        book = cls(spec)
        for o in orders:
            client_id, order_id, side, price, remaining, seq, ts = o
            for name, value in (
                ("price", price),
                ("remaining", remaining),
                ("seq", seq),
                ("ts", ts),
            ):
                if type(value) is not int:
                    raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if not (isinstance(client_id, str) and isinstance(order_id, str)):
                raise TypeError("client_id and order_id must be str")
            if book._find(client_id, order_id) is not None:
                raise ValueError(f"duplicate order id {(client_id, order_id)!r}")
            if not spec.min_ticks <= price <= spec.max_ticks:
                raise ValueError(f"price {price} out of range")
            if not 0 < remaining <= spec.max_lots:
                # Above max_lots is impossible too: new orders and modifies are capped.
                raise ValueError(f"remaining must be in 1..{spec.max_lots}, not {remaining}")
            book._rest(Order(client_id, order_id, Side(side), price, remaining, seq, ts))
        bid, ask = book._best_bid, book._best_ask
        if bid is not None and ask is not None and bid >= ask:
            raise ValueError(f"crossed book: bid {book._best_bid} >= ask {book._best_ask}")
        return book

    # ------------------------------------------------------------------ transactions

    # ------------------------------------------------------------------ checking

    def _check(self) -> None:
        """Verify every invariant; O(n + L log L). Tests call it after every step.

        Checks each structure, then their agreement: every level is non-empty and its
        total equals its live orders; dead counts are right; orders sit on the right
        side and price; the id index holds exactly the live orders; the heaps hold
        every live price; the cached best prices are right; the book is not crossed.

        Raises:
            AssertionError: with a dump of the internals.
        """
        try:
            self._check_inner()
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self._dump()}") from None

    def _check_inner(self) -> None:
        spec = self._spec
        live: dict[tuple[str, str], Order] = {}
        for side, book, heap, sign in (
            (_BUY, self._bids, self._bid_heap, -1),
            (_SELL, self._asks, self._ask_heap, 1),
        ):
            heap_prices = {sign * p for p in heap}
            for price, level in book.items():
                total, dead, queue = level
                assert type(price) is int, f"price key {price!r} is not an int"
                assert spec.min_ticks <= price <= spec.max_ticks, f"price {price} out of range"
                assert isinstance(queue, deque), "queue is not a deque"
                assert total > 0, f"empty level {side} {price} (total {total})"
                assert price in heap_prices, f"level {side} {price} missing from heap"
                live_sum = 0
                dead_seen = 0
                for o in queue:
                    assert type(o) is Order, f"malformed order {o!r}"
                    if o.remaining == 0:
                        dead_seen += 1
                        continue
                    assert o.remaining > 0, f"negative remaining {o!r}"
                    assert o.side is side, f"order on wrong side {o!r}"
                    assert o.price == price, f"order at wrong level {o!r} (level {price})"
                    key = (o.client_id, o.order_id)
                    assert key not in live, f"order {key} appears twice"
                    live[key] = o
                    live_sum += o.remaining
                assert live_sum == total, f"level {side} {price}: total {total} != {live_sum}"
                assert dead_seen == dead, f"level {side} {price}: dead {dead} != {dead_seen}"
        indexed = self._indexed()
        assert live.keys() == indexed.keys(), "id index does not match the book"
        for key, o in live.items():
            assert indexed[key] is o, f"id index points elsewhere for {key}"
        for order_id, entry in self._index.items():
            if type(entry) is Order:
                assert entry.order_id == order_id, f"order {entry!r} indexed under {order_id!r}"
            else:
                assert len(entry) > 1, f"id {order_id!r}: a dict of {len(entry)} orders"
                for client_id, o in entry.items():
                    assert (o.client_id, o.order_id) == (client_id, order_id), (
                        f"{o!r} filed wrongly"
                    )
        assert len(self) == len(live), f"len {len(self)} != {len(live)} live orders"
        best_bid = max(self._bids) if self._bids else None
        best_ask = min(self._asks) if self._asks else None
        assert self._best_bid == best_bid, f"cached best bid {self._best_bid} != {best_bid}"
        assert self._best_ask == best_ask, f"cached best ask {self._best_ask} != {best_ask}"
        if best_bid is not None and best_ask is not None:
            assert best_bid < best_ask, f"crossed book: {best_bid} >= {best_ask}"

    def _indexed(self) -> dict[tuple[str, str], Order]:
        """The id index as (client_id, order_id) -> order, entry by entry (checks)."""
        out: dict[tuple[str, str], Order] = {}
        for order_id, entry in self._index.items():
            orders = [entry] if type(entry) is Order else list(entry.values())
            for o in orders:
                out[(o.client_id, order_id)] = o
        return out

    def _dump(self) -> str:
        lines = [repr(self)]
        for name, book in (("asks", self._asks), ("bids", self._bids)):
            for price in sorted(book):
                total, dead, queue = book[price]
                lines.append(f"  {name} {price}: total={total} dead={dead} {list(queue)!r}")
        lines.append(f"  bid_heap={self._bid_heap!r} ask_heap={self._ask_heap!r}")
        lines.append(f"  index={sorted(self._indexed())!r} shared={self._shared}")
        return "\n".join(lines)


if PURE:
    # Pure Python, the field entry points are the rules functions themselves: the methods
    # above only forward, and a Python frame per command is ~630 instructions (callgrind;
    # ~3.5% of new_order's). Same signature, same behaviour (the journal is checked in
    # the rules); compiled, the forwarding call is a C call and the methods stay.
    for _name, _rule in (
        ("new_order", _new_order),
        ("cancel_order", _cancel),
        ("modify_order", _modify),
    ):
        _rule.__doc__ = getattr(OrderBook, _name).__doc__
        setattr(OrderBook, _name, _rule)
