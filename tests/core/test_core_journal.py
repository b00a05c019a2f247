"""The undo log's records hold only what a command can change (orderbook_core._journal):
rollback must still restore deep levels exactly, whichever way a command changed them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from core_support import BUY, SELL, unit_spec

from orderbook_core import (
    CancelOrder,
    Command,
    ModifyOrder,
    NewOrder,
    OrderBook,
    OrderCancelled,
    SelfTradePrevention,
    TimeInForce,
    encode_book,
)


def deep_book(stp: SelfTradePrevention = SelfTradePrevention.CANCEL_MAKER) -> OrderBook:
    """Three levels a side, 40 orders each (client i % 5, so own orders sit among them)."""
    book = OrderBook(unit_spec(stp))
    seq = 0
    for level in range(3):
        for i in range(40):
            for side, price in ((BUY, 100 - level), (SELL, 110 + level)):
                seq += 1
                book.apply(NewOrder(seq, seq, f"c{i % 5}", f"o{seq}", side, price, 1 + i % 3))
    return book


def cancels_in_the_middle(seq: int) -> list[Command]:
    # 30 cancels in the middle of the bid level at 100: dead entries outnumber live ones
    # and the queue is compacted (a new deque) part way through.
    return [CancelOrder(seq + k, 0, f"c{(k + 3) % 5}", f"o{2 * (k + 3) + 1}")
            for k in range(30)]  # fmt: skip


CASES: dict[str, Callable[[int], list[Command]]] = {
    "cancel head, tail, middle": lambda s: [
        CancelOrder(s, 0, "c0", "o1"),
        CancelOrder(s + 1, 0, "c4", "o79"),
        CancelOrder(s + 2, 0, "c0", "o41"),
    ],
    "compacting cancels": cancels_in_the_middle,
    "cancel the only live order left": lambda s: [
        *cancels_in_the_middle(s),
        *[CancelOrder(s + 100 + k, 0, f"c{k % 5}", f"o{2 * k + 1}") for k in range(40)],
    ],
    "sweep two levels and rest": lambda s: [NewOrder(s, 0, "t", "t1", BUY, 111, 150)],
    "ioc partial in the middle of a level": lambda s: [
        NewOrder(s, 0, "t", "t1", SELL, 99, 70, TimeInForce.IOC)
    ],
    "market order through every level": lambda s: [NewOrder(s, 0, "t", "t1", SELL, None, 10**4)],
    "own orders in the way": lambda s: [NewOrder(s, 0, "c1", "x", BUY, 112, 200)],
    "modify: decrease in place, increase at the tail, reprice across": lambda s: [
        ModifyOrder(s, 0, "c1", "o3", None, 1),
        ModifyOrder(s + 1, 0, "c2", "o5", None, 9),
        ModifyOrder(s + 2, 0, "c3", "o7", 111, 60),
        ModifyOrder(s + 3, 0, "c3", "o7", 95, 60),
    ],
    "the same id again after it left": lambda s: [
        CancelOrder(s, 0, "c0", "o1"),
        NewOrder(s + 1, 0, "c0", "o1", SELL, 120, 5),
        NewOrder(s + 2, 0, "c9", "o1", SELL, 120, 5),
        ModifyOrder(s + 3, 0, "c0", "o1", 120, 7),
    ],
}


@pytest.mark.parametrize("stp", list(SelfTradePrevention))
@pytest.mark.parametrize("name", list(CASES))
def test_rollback_restores_deep_levels_exactly(name: str, stp: SelfTradePrevention) -> None:
    book = deep_book(stp)
    twin = deep_book(stp)
    before = encode_book(book)
    cmds = CASES[name](1000)

    def apply_and_fail() -> None:
        with book.transaction():
            for cmd in cmds:
                book.apply(cmd)
                book._check()
            raise RuntimeError("undo")

    with pytest.raises(RuntimeError):
        apply_and_fail()
    book._check()
    assert encode_book(book) == before
    # And it behaves exactly like a book that never saw those commands.
    for cmd in [*cmds, NewOrder(5000, 0, "z", "z", SELL, 1, 10**4)]:
        assert book.apply(cmd) == twin.apply(cmd)
        book._check()
    assert encode_book(book) == encode_book(twin)


def test_nested_transactions_undo_only_their_own_commands() -> None:
    book = deep_book()
    with book.transaction():
        book.apply(NewOrder(1000, 0, "t", "t1", BUY, 110, 30))
        middle = encode_book(book)

        def cancel_and_fail() -> None:
            with book.transaction():
                out = book.apply_many([tuple(c) for c in cancels_in_the_middle(2000)])
                assert all(type(events[0]) is OrderCancelled for events in out)
                assert len(book._bids[100][2]) < 40  # compacted
                raise RuntimeError("undo the inner block")

        with pytest.raises(RuntimeError):
            cancel_and_fail()
        assert encode_book(book) == middle
        book._check()
