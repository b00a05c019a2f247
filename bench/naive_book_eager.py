"""History: the core benchmark's first baseline, kept to report the old ratio.

It cancels with an O(queue) ``deque.remove``, which made the core look 2.2x faster than
it was against a sensible naive book; ``naive_book.py`` (lazy deletion) is the baseline
now. This one is only run for the "history" line of ``bench/core_bench.py``: a
SortedDict of price to a deque of ``[order_id, remaining]`` per side and an id dict.
"""

from __future__ import annotations

from collections import deque

from sortedcontainers import SortedDict

# (maker order id, taker order id, price, amount)
Fill = tuple[str, str, int, int]


class EagerNaiveBook:
    """The old baseline: cancels remove the entry from its deque (O(queue))."""

    def __init__(self) -> None:
        self.bids = SortedDict()  # price -> deque of [order_id, remaining]
        self.asks = SortedDict()
        self.index: dict[str, tuple[bool, int, list[object]]] = {}

    def limit(self, order_id: str, is_buy: bool, price: int, amount: int) -> list[Fill]:
        """Match a GTC limit order, rest the remainder; return the fills."""
        fills: list[Fill] = []
        book = self.asks if is_buy else self.bids
        while amount and book:
            best, queue = book.peekitem(0 if is_buy else -1)
            if (best > price) if is_buy else (best < price):
                break
            while amount and queue:
                maker = queue[0]
                fill = min(amount, maker[1])
                maker[1] -= fill
                amount -= fill
                fills.append((maker[0], order_id, best, fill))
                if not maker[1]:
                    queue.popleft()
                    del self.index[maker[0]]
            if not queue:
                del book[best]
        if amount:
            entry: list[object] = [order_id, amount]
            own = self.bids if is_buy else self.asks
            queue = own.get(price)
            if queue is None:
                queue = own[price] = deque()
            queue.append(entry)
            self.index[order_id] = (is_buy, price, entry)
        return fills

    def cancel(self, order_id: str) -> bool:
        """Cancel a resting order; False if it is not resting."""
        found = self.index.pop(order_id, None)
        if found is None:
            return False
        is_buy, price, entry = found
        book = self.bids if is_buy else self.asks
        queue = book[price]
        queue.remove(entry)
        if not queue:
            del book[price]
        return True

    def resting(self) -> int:
        return len(self.index)
