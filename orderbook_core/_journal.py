"""The undo log: what a command may touch, recorded before it runs, and the rollback.

While a transaction or batch is open (:meth:`OrderBook.transaction`), every command is
applied through :meth:`JournaledState._apply_journaled`, which first records an undo
record (:meth:`JournaledState._preimage`): images of the levels the command may touch,
holding only what can change, never a copy of a whole level it does not consume.
:meth:`JournaledState._rollback` replays the records newest first and restores the book
exactly (the same canonical encoding, the same behaviour afterwards).
"""

from __future__ import annotations

import heapq
from typing import Any, Final

from orderbook_core._rules import cancel_order, modify_order, new_order
from orderbook_core._state import CANCEL, MODIFY, NEW, BookState, JournalEntry, Order
from orderbook_core._types import (
    OrderRested,
    Side,
)

__all__ = ["CANCEL", "MODIFY", "NEW", "JournaledState"]

_BUY: Final = Side.BUY
_heappush: Final = heapq.heappush
_heappop: Final = heapq.heappop
# A compact OrderRested's kind (COMPACT_EVENT_TYPES).
_RESTED: Final = 2
# How a level image puts back orders popped from its queue (see JournaledState._rollback).
_PUT_HEAD: Final = 0
_PUT_TAIL: Final = 1


class JournaledState(BookState):
    """A book's state plus its undo log (the base of :class:`~orderbook_core.OrderBook`)."""

    __slots__ = ()  # the journal itself is BookState._journal

    def _apply_journaled(self, cmd: Any, kind: int) -> tuple[Any, ...]:
        """apply, in a transaction: record the command's undo record first.

        ``cmd`` is a typed command or the tuple of its fields (the entry points that
        take fields, apply_many), ``kind`` says which: NEW, CANCEL or MODIFY. The
        events are compact while apply_many(compact=True) runs (``_compact``).
        """
        journal = self._journal
        assert journal is not None
        fields: tuple[Any, ...] = cmd
        entry = self._preimage(fields, kind)
        journal.append(entry)
        # The rules functions send a command here while a journal is open: detached for
        # the call, so that they apply it (they never read the journal otherwise).
        self._journal = None
        try:
            if kind == NEW:
                seq, ts, client_id, order_id, side, price, amount, tif, post_only = fields
                events = new_order(
                    self, seq, ts, client_id, order_id, side, price, amount, tif, post_only
                )
            elif kind == CANCEL:
                seq, ts, client_id, order_id = fields
                events = cancel_order(self, seq, ts, client_id, order_id)
            else:
                seq, ts, client_id, order_id, price, amount = fields
                events = modify_order(self, seq, ts, client_id, order_id, price, amount)
        finally:
            self._journal = journal
        last = events[-1]
        if self._compact:
            if last[0] == _RESTED:
                entry[0] = self._find(last[1][1], last[1][2])
        elif type(last) is OrderRested:
            entry[0] = self._find(last[1], last[2])
        return events

    def _preimage(self, cmd: Any, kind: int) -> JournalEntry:
        """The undo record of ``cmd``, taken before it runs: images of what it may touch.

        Which levels a command can touch, and how, follows from the rules: a cancel
        removes one order from its level (from the tail or the head, or marks it dead);
        a new order appends to its own level at its price (or opens it) and takes from
        the head of the opposite levels it crosses, best first, until the other
        clients' lots reach its amount; a modify does the first, then the other two at
        its new price and amount. So an image holds the level's counters, its queue
        object and length, and only the orders that may leave or change: the one
        removed, or the head of a crossed level up to the order that completes the
        taker (never a copy of a whole level it does not consume). The order the
        command rests, if any, is added to the record afterwards (see :meth:`apply`).
        Over-approximating is harmless. A malformed command (which apply then refuses
        with TypeError) may give a meaningless record; nothing is mutated before that.
        O(orders taken + L log L) for a crossing order, O(1) otherwise.
        """
        entry: JournalEntry = [None]
        fields: tuple[Any, ...] = cmd
        if kind == NEW:
            buy = fields[4] is _BUY
            price = fields[5]
            if price is not None:
                self._image_level(entry, buy, price, None)
            self._image_crossing(entry, buy, price, fields[6], fields[2])
        else:
            order = self._find(fields[2], fields[3])
            if order is not None:
                buy = order.side is _BUY
                self._image_level(entry, buy, order.price, order)
                if kind == MODIFY:
                    price = order.price if fields[4] is None else fields[4]
                    amount = order.remaining if fields[5] is None else fields[5]
                    if price != order.price:
                        self._image_level(entry, buy, price, None)
                    self._image_crossing(entry, buy, price, amount, fields[2])
        return entry

    def _image_level(self, entry: JournalEntry, buy: bool, price: Any, order: Any) -> None:
        """Image a level that may gain an order at its tail, or lose ``order``."""
        level = (self._bids if buy else self._asks).get(price)
        if level is None:
            entry.append((buy, price, None, 0, 0, None, 0, [], [], _PUT_HEAD))
            return
        queue = level[2]
        if order is None:
            entry.append(
                (buy, price, level, level[0], level[1], queue, len(queue), [], [], _PUT_HEAD)
            )
        else:
            # _unlink pops the order from the tail in preference to the head.
            put = _PUT_TAIL if queue[-1] is order else _PUT_HEAD
            entry.append(
                (
                    buy,
                    price,
                    level,
                    level[0],
                    level[1],
                    queue,
                    len(queue),
                    [order],
                    [order.remaining],
                    put,
                )
            )

    def _image_crossing(
        self, entry: JournalEntry, buy: bool, limit: Any, amount: Any, client_id: Any
    ) -> None:
        """Image the heads of the opposite levels a taker may reach, best first."""
        if buy:
            levels, best = self._asks, self._best_ask
            if best is None or (limit is not None and best > limit):
                return
        else:
            levels, best = self._bids, self._best_bid
            if best is None or (limit is not None and best < limit):
                return
        if limit is None:
            prices = sorted(levels, reverse=not buy)
        elif buy:
            prices = sorted(p for p in levels if p <= limit)
        else:
            prices = sorted((p for p in levels if p >= limit), reverse=True)
        covered = 0
        for price in prices:
            level = levels[price]
            queue = level[2]
            orders: list[Order] = []
            remaining: list[int] = []
            for o in queue:
                orders.append(o)
                left = o.remaining
                remaining.append(left)
                if left and o.client_id != client_id:
                    covered += left
                    if covered >= amount:
                        break
            entry.append(
                (not buy, price, level, level[0], level[1], queue, len(queue), orders, remaining,
                 _PUT_HEAD)
            )  # fmt: skip
            if covered >= amount:
                return

    def _rollback(self, mark: int) -> None:
        """Undo every journaled command after ``mark``, newest first. Exact."""
        journal = self._journal
        assert journal is not None
        while len(journal) > mark:
            entry = journal.pop()
            rested = entry[0]
            if rested is not None:
                # The state is exactly the one the command left: its order is the tail.
                levels = self._bids if rested.side is _BUY else self._asks
                levels[rested.price][2].pop()
                self._forget(rested)
            for i in range(len(entry) - 1, 0, -1):
                # Any: an image of a malformed command (refused with TypeError) holds
                # whatever it held, and must not make the rollback raise.
                image: tuple[Any, ...] = entry[i]
                buy, price, level, total, dead, queue, n, orders, remaining, put = image
                levels = self._bids if buy else self._asks
                if level is None:
                    levels.pop(price, None)
                    continue
                missing = n - len(queue)
                if missing:  # orders popped from the queue object: put them back
                    if put == _PUT_TAIL:
                        queue.append(orders[0])
                    else:
                        queue.extendleft(reversed(orders[:missing]))
                for o, left in zip(orders, remaining, strict=True):
                    if left and not o.remaining:
                        o.remaining = left
                        self._link(o)
                    else:
                        o.remaining = left
                level[0], level[1], level[2] = total, dead, queue
                levels[price] = level
                if buy:
                    _heappush(self._bid_heap, -price)  # a duplicate entry is harmless (lazy)
                else:
                    _heappush(self._ask_heap, price)
        for levels, heap, sign in (
            (self._bids, self._bid_heap, -1),
            (self._asks, self._ask_heap, 1),
        ):
            while heap and sign * heap[0] not in levels:
                _heappop(heap)
            best = sign * heap[0] if heap else None
            if sign < 0:
                self._best_bid = best
            else:
                self._best_ask = best
