"""A resting order is a slotted record (orderbook_core._state.Order; compiled, its ints
are unboxed): seq and ts must be ints, refused before anything changes."""

from __future__ import annotations

from typing import Any

import pytest
from core_support import BUY, SELL, unit_spec

from orderbook_core import ModifyOrder, NewOrder, OrderBook, RestingOrder, encode_book


@pytest.mark.parametrize(("seq", "ts"), [(1.0, 0), ("2", 0), (3, None), (4, True), (True, 5)])
@pytest.mark.parametrize("price", [90, 100])  # rests, or trades first
def test_a_seq_or_ts_that_is_not_an_int_is_refused_before_anything_changes(
    seq: Any, ts: Any, price: int
) -> None:
    book = OrderBook(unit_spec())
    book.apply(NewOrder(1, 1, "a", "1", SELL, 100, 2))
    before = encode_book(book)
    with pytest.raises(TypeError, match="seq and ts"):
        book.apply(NewOrder(seq, ts, "b", "1", BUY, price, 5))
    with pytest.raises(TypeError, match="seq and ts"):
        book.apply(ModifyOrder(seq, ts, "a", "1", 99, 3))
    assert encode_book(book) == before
    book._check()


def test_the_view_is_the_resting_order_as_it_is_now() -> None:
    book = OrderBook(unit_spec())
    book.apply(NewOrder(7, 70, "a", "x", SELL, 100, 5))
    book.apply(NewOrder(8, 80, "b", "y", BUY, 100, 2))
    view = book.get_order("a", "x")
    assert view == RestingOrder("a", "x", SELL, 100, 3, 7, 70)
    assert type(view) is RestingOrder
    assert list(book.orders()) == [view]
    (order,) = book._asks[100][2]
    assert repr(order) == "Order('a', 'x', <Side.SELL: 'sell'>, 100, 3, 7, 70)"
