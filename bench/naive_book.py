"""The benchmark's baseline: the order book one writes in an afternoon (not the reference).

A ``SortedDict`` of price to a ``deque`` of entries per side, and an id dict. A cancel
is lazy: it marks the entry dead (remaining 0) through the id dict in O(1) and leaves it
queued; matching skips dead entries when they reach the head of a level and drops a
level whose queue runs empty. A modify is a cancel plus a new order (always losing
priority). No validation, no events, no self-trade prevention, no transactions: the
least a correct price-time matcher needs. ``bench/core_bench.py`` runs the same message
stream through it and through ``orderbook_core``; ``tests/core/test_core_bench_baseline.py``
checks that both end with the same resting orders and the same fills.

An entry is a list ``[order_id, remaining, is_buy, price]``; a fill is a tuple
``(maker order id, taker order id, price, amount)``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from sortedcontainers import SortedDict

Fill = tuple[str, str, int, int]


class NaiveBook:
    """Lazy-delete price-time book: SortedDict of deques, cancels mark entries dead."""

    __slots__ = ("asks", "bids", "index")

    def __init__(self) -> None:
        self.bids = SortedDict()  # price -> deque of entries, best = highest
        self.asks = SortedDict()  # price -> deque of entries, best = lowest
        self.index: dict[str, list[Any]] = {}

    def limit(
        self, order_id: str, is_buy: bool, price: int, amount: int, ioc: bool = False
    ) -> list[Fill]:
        """Match a limit order at its limit price, rest the remainder unless IOC."""
        fills: list[Fill] = []
        book = self.asks if is_buy else self.bids
        index = self.index
        while amount and book:
            best, queue = book.peekitem(0 if is_buy else -1)
            if (best > price) if is_buy else (best < price):
                break
            while amount and queue:
                maker = queue[0]
                left = maker[1]
                if not left:  # cancelled: skip it
                    queue.popleft()
                    continue
                if left > amount:
                    maker[1] = left - amount
                    fills.append((maker[0], order_id, best, amount))
                    amount = 0
                else:
                    maker[1] = 0
                    amount -= left
                    fills.append((maker[0], order_id, best, left))
                    queue.popleft()
                    del index[maker[0]]
            if not queue:
                del book[best]
        if amount and not ioc:
            entry: list[Any] = [order_id, amount, is_buy, price]
            own = self.bids if is_buy else self.asks
            queue = own.get(price)
            if queue is None:
                own[price] = deque((entry,))
            else:
                queue.append(entry)
            index[order_id] = entry
        return fills

    def cancel(self, order_id: str) -> bool:
        """Cancel a resting order (mark it dead); False if it is not resting."""
        entry = self.index.pop(order_id, None)
        if entry is None:
            return False
        entry[1] = 0
        return True

    def modify(self, order_id: str, price: int, amount: int) -> list[Fill]:
        """Cancel plus a new GTC order with the same id; nothing if it is not resting."""
        entry = self.index.pop(order_id, None)
        if entry is None:
            return []
        entry[1] = 0
        return self.limit(order_id, entry[2], price, amount)

    def orders(self) -> Iterator[tuple[str, bool, int, int]]:
        """Live orders as (order_id, is_buy, price, remaining): asks ascending, then bids
        descending, time priority within a level (the core's canonical order)."""
        for book, reverse in ((self.asks, False), (self.bids, True)):
            for price in reversed(book) if reverse else book:
                for entry in book[price]:
                    if entry[1]:
                        yield entry[0], entry[2], price, entry[1]

    def resting(self) -> int:
        """The number of live orders."""
        return len(self.index)
