"""The id index, keyed by order id alone (orderbook_core._state): clients that use the
same order id at once share one entry, and stay apart in every operation."""

from __future__ import annotations

import pytest
from core_support import BUY, SELL, Seq, unit_spec

from orderbook_core import OrderBook, OrderRejected


def test_clients_sharing_an_order_id_stay_apart() -> None:
    """The id index is keyed by order id; clients reusing one id share an entry."""
    seq = Seq()
    book = OrderBook(unit_spec())
    for client in ("a", "b", "c"):
        book.apply(seq.new(client, "1", SELL, 100, 1))
    assert len(book) == 3
    book._check()
    assert isinstance(book.apply(seq.new("b", "1", SELL, 101, 1))[0], OrderRejected)
    # A buy of 2 takes a's and b's orders (time priority), c's stays.
    book.apply(seq.new("d", "9", BUY, 100, 2))
    assert [o.client_id for o in book.orders()] == ["c"]
    assert len(book) == 1
    book._check()

    def reuse_then_fail() -> None:
        with book.transaction():
            book.apply(seq.new("a", "1", SELL, 100, 1))
            book.apply(seq.cancel("c", "1"))
            raise RuntimeError

    with pytest.raises(RuntimeError):
        reuse_then_fail()
    assert [o.client_id for o in book.orders()] == ["c"]
    book._check()
    assert book.get_order("c", "1") is not None
    assert book.get_order("a", "1") is None
