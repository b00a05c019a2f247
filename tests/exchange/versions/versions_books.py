"""Books shared by the versions tests (memory DHT and real grapes alike)."""

from __future__ import annotations

import random

from orderbook_core import DEFAULT_SPEC, NewOrder, OrderBook, Side

MID = 1_000_000
"""The middle price in ticks (10,000.00 with the default tick of 0.01)."""


def realistic_book(n: int, seed: int) -> OrderBook:
    """`n` resting orders over 1,000 price levels from 100 clients, with the ids a real
    client sends ("client17", "client17-1234"), 13-digit ms timestamps, 1..4,999 lots."""
    rng = random.Random(seed)
    book = OrderBook(DEFAULT_SPEC)
    for i in range(n):
        side = Side.SELL if i % 2 else Side.BUY
        offset = rng.randrange(1, 500)
        price = MID + offset if side is Side.SELL else MID - offset
        client = f"client{rng.randrange(100)}"
        ts = 1_764_000_000_000 + 37 * i
        order = NewOrder(i + 1, ts, client, f"{client}-{i}", side, price, rng.randrange(1, 5000))
        book.apply(order)
    assert len(book) == n
    return book
