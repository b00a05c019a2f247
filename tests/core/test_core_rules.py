"""One unit suite for every matching rule, run against the real book and the reference
book (`orderbook_core.testing.ReferenceBook`, the naive twin).

Each test that mutates also checks, where it matters, that rejections leave the book
exactly as it was, and the real book's invariant checker runs after every command.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from core_support import BUY, FOK, GTC, IOC, SELL, Book, Seq, unit_spec

from orderbook_core import (
    CancelReason,
    Command,
    Event,
    MarketSpec,
    OrderAccepted,
    OrderBook,
    OrderCancelled,
    OrderModified,
    OrderRejected,
    OrderRested,
    RejectReason,
    RestingOrder,
    SelfTradePrevention,
    Trade,
    encode_book,
)
from orderbook_core.testing import QuantityLedger, ReferenceBook

Factory = Callable[[MarketSpec], Book]


@pytest.fixture(params=["real", "naive"])
def make_book(request: pytest.FixtureRequest) -> Factory:
    if request.param == "real":
        return OrderBook
    return ReferenceBook


class Harness:
    """A book plus a sequence counter, checking invariants after every command."""

    def __init__(self, factory: Factory, spec: MarketSpec | None = None) -> None:
        self.book = factory(spec or unit_spec())
        self.seq = Seq()
        self.ledger = QuantityLedger()

    def run(self, cmd: Command) -> tuple[Event, ...]:
        before = list(self.book.orders())
        events = self.book.apply(cmd)
        if isinstance(self.book, OrderBook):
            self.book._check()
        if any(isinstance(e, OrderRejected) for e in events):
            assert len(events) == 1
            assert list(self.book.orders()) == before
        self.ledger.record(events)
        self.ledger.check(self.book.orders())
        return events

    def new(self, cid: str, oid: str, side: object, price: int | None, amount: int,
            tif: object = GTC, post_only: bool = False) -> tuple[Event, ...]:  # fmt: skip
        return self.run(self.seq.new(cid, oid, side, price, amount, tif, post_only))  # type: ignore[arg-type]

    def cancel(self, cid: str, oid: str) -> tuple[Event, ...]:
        return self.run(self.seq.cancel(cid, oid))

    def modify(
        self, cid: str, oid: str, price: int | None = None, amount: int | None = None
    ) -> tuple[Event, ...]:
        return self.run(self.seq.modify(cid, oid, price, amount))

    def resting(self) -> list[tuple[str, int, int]]:
        """(order_id, price, remaining) in canonical order."""
        return [(o.order_id, o.price, o.remaining) for o in self.book.orders()]


@pytest.fixture
def h(make_book: Factory) -> Harness:
    return Harness(make_book)


def trades(events: tuple[Event, ...]) -> list[tuple[str, int, int]]:
    """(maker order id, price, amount) of each trade."""
    return [(e.maker_order_id, e.price, e.amount) for e in events if isinstance(e, Trade)]


def rejected(events: tuple[Event, ...]) -> RejectReason | None:
    return events[0].reason if isinstance(events[0], OrderRejected) else None


# ---------------------------------------------------------------- price-time priority


def test_resting_order_events(h: Harness) -> None:
    events = h.new("a", "1", BUY, 100, 5)
    assert events == (
        OrderAccepted(1, "a", "1", BUY, 100, 5),
        OrderRested(1, "a", "1", BUY, 100, 5),
    )
    assert h.book.get_order("a", "1") == RestingOrder("a", "1", BUY, 100, 5, 1, 1000)


def test_price_priority_then_time_priority(h: Harness) -> None:
    h.new("a", "s1", SELL, 102, 1)
    h.new("a", "s2", SELL, 101, 1)
    h.new("a", "s3", SELL, 101, 1)
    h.new("a", "s4", SELL, 100, 1)
    events = h.new("b", "t", BUY, 102, 4)
    assert trades(events) == [("s4", 100, 1), ("s2", 101, 1), ("s3", 101, 1), ("s1", 102, 1)]


def test_trade_event_fields_and_ids(h: Harness) -> None:
    h.new("a", "m1", SELL, 100, 3)
    h.new("a", "m2", SELL, 100, 3)
    events = h.new("b", "t", BUY, 100, 4)
    assert events[1:] == (
        Trade(3, "3.1", 3000, 100, 3, BUY, "a", "m1", 0, "b", "t"),
        Trade(3, "3.2", 3000, 100, 1, BUY, "a", "m2", 2, "b", "t"),
    )
    assert h.resting() == [("m2", 100, 2)]


@pytest.mark.parametrize("taker_side", [BUY, SELL])
def test_trade_is_at_the_makers_price_in_both_directions(h: Harness, taker_side: object) -> None:
    if taker_side is BUY:
        h.new("a", "m", SELL, 100, 5)
        events = h.new("b", "t", BUY, 105, 5)
    else:
        h.new("a", "m", BUY, 100, 5)
        events = h.new("b", "t", SELL, 95, 5)
    assert trades(events) == [("m", 100, 5)]


def test_marketable_limit_never_walks_past_its_own_price(h: Harness) -> None:
    h.new("a", "s1", SELL, 100, 2)
    h.new("a", "s2", SELL, 101, 2)
    h.new("a", "s3", SELL, 102, 2)
    events = h.new("b", "t", BUY, 101, 10)
    assert trades(events) == [("s1", 100, 2), ("s2", 101, 2)]
    assert events[-1] == OrderRested(4, "b", "t", BUY, 101, 6)
    assert h.book.best_bid() == 101
    assert h.book.best_ask() == 102


def test_sell_side_marketable_limit_never_walks_past_its_own_price(h: Harness) -> None:
    h.new("a", "b1", BUY, 100, 2)
    h.new("a", "b2", BUY, 99, 2)
    h.new("a", "b3", BUY, 98, 2)
    events = h.new("b", "t", SELL, 99, 10)
    assert trades(events) == [("b1", 100, 2), ("b2", 99, 2)]
    assert events[-1] == OrderRested(4, "b", "t", SELL, 99, 6)


def test_gtc_remainder_rests_at_its_own_limit_price(h: Harness) -> None:
    h.new("a", "s", SELL, 100, 1)
    events = h.new("b", "t", BUY, 103, 3)
    assert events[-1] == OrderRested(2, "b", "t", BUY, 103, 2)
    assert h.book.levels(BUY) == [(103, 2)]


def test_partly_filled_maker_keeps_its_place_between_two_aggressors(h: Harness) -> None:
    h.new("a", "m1", SELL, 100, 10)
    h.new("a", "m2", SELL, 100, 10)
    assert trades(h.new("b", "t1", BUY, 100, 4)) == [("m1", 100, 4)]
    # m1 was partly filled: it must still be first in the queue.
    assert trades(h.new("c", "t2", BUY, 100, 8)) == [("m1", 100, 6), ("m2", 100, 2)]
    assert h.resting() == [("m2", 100, 8)]


def test_single_5000_fill_sweep(h: Harness) -> None:
    for i in range(5000):
        h.ledger.record(h.book.apply(h.seq.new("m", str(i), SELL, 100 + i % 7, 1)))
    events = h.run(h.seq.new("t", "big", BUY, 200, 5001))
    fills = [e for e in events if isinstance(e, Trade)]
    assert len(fills) == 5000
    assert [f.price for f in fills] == sorted(f.price for f in fills)
    assert fills[0].maker_order_id == "0"
    assert [f.trade_id for f in fills[:2]] == ["5001.1", "5001.2"]
    assert events[-1] == OrderRested(5001, "t", "big", BUY, 200, 1)
    assert h.book.best_ask() is None
    assert len(h.book) == 1


# ---------------------------------------------------------------- time in force


def test_ioc_remainder_is_cancelled_never_rested(h: Harness) -> None:
    h.new("a", "s", SELL, 100, 2)
    events = h.new("b", "t", BUY, 100, 5, IOC)
    assert trades(events) == [("s", 100, 2)]
    assert events[-1] == OrderCancelled(2, "b", "t", BUY, 100, 3, CancelReason.IOC)
    assert h.book.get_order("b", "t") is None
    assert h.book.best_bid() is None


def test_ioc_that_does_not_cross_is_cancelled_whole(h: Harness) -> None:
    events = h.new("b", "t", BUY, 100, 5, IOC)
    assert events == (
        OrderAccepted(1, "b", "t", BUY, 100, 5),
        OrderCancelled(1, "b", "t", BUY, 100, 5, CancelReason.IOC),
    )
    assert len(h.book) == 0


def test_fok_fills_completely(h: Harness) -> None:
    h.new("a", "s1", SELL, 100, 2)
    h.new("a", "s2", SELL, 101, 3)
    events = h.new("b", "t", BUY, 101, 5, FOK)
    assert trades(events) == [("s1", 100, 2), ("s2", 101, 3)]
    assert len(h.book) == 0


@pytest.mark.parametrize("limit", [100, 101])
def test_fok_that_cannot_fill_changes_nothing(h: Harness, limit: int) -> None:
    h.new("a", "s1", SELL, 100, 2)
    h.new("a", "s2", SELL, 101, 2)
    before = h.resting()
    events = h.new("b", "t", BUY, limit, 5, FOK)
    assert rejected(events) is RejectReason.FOK_NOT_FILLABLE
    assert h.resting() == before


def test_fok_on_empty_book_is_rejected(h: Harness) -> None:
    assert rejected(h.new("b", "t", SELL, 100, 1, FOK)) is RejectReason.FOK_NOT_FILLABLE


def test_fok_market_order(h: Harness) -> None:
    h.new("a", "s1", SELL, 100, 2)
    assert rejected(h.new("b", "t", BUY, None, 3, FOK)) is RejectReason.FOK_NOT_FILLABLE
    assert trades(h.new("b", "t", BUY, None, 2, FOK)) == [("s1", 100, 2)]


# ---------------------------------------------------------------- market orders


def test_market_order_sweeps_and_never_rests(h: Harness) -> None:
    h.new("a", "s1", SELL, 100, 2)
    h.new("a", "s2", SELL, 500, 2)
    events = h.new("b", "t", BUY, None, 10)
    assert trades(events) == [("s1", 100, 2), ("s2", 500, 2)]
    assert events[-1] == OrderCancelled(3, "b", "t", BUY, None, 6, CancelReason.MARKET)
    assert len(h.book) == 0


def test_market_order_on_empty_book_is_cancelled(h: Harness) -> None:
    events = h.new("b", "t", SELL, None, 10)
    assert events == (
        OrderAccepted(1, "b", "t", SELL, None, 10),
        OrderCancelled(1, "b", "t", SELL, None, 10, CancelReason.MARKET),
    )


# ---------------------------------------------------------------- post-only


def test_post_only_that_would_cross_is_rejected_and_changes_nothing(h: Harness) -> None:
    h.new("a", "s", SELL, 100, 2)
    before = h.resting()
    assert rejected(h.new("b", "p", BUY, 100, 1, GTC, True)) is RejectReason.POST_ONLY_WOULD_CROSS
    assert h.resting() == before


def test_post_only_that_does_not_cross_rests(h: Harness) -> None:
    h.new("a", "s", SELL, 100, 2)
    events = h.new("b", "p", BUY, 99, 1, GTC, True)
    assert events[-1] == OrderRested(2, "b", "p", BUY, 99, 1)


@pytest.mark.parametrize(
    ("price", "tif", "reason"),
    [
        (None, GTC, RejectReason.POST_ONLY_MARKET),
        (100, IOC, RejectReason.POST_ONLY_TIF),
        (100, FOK, RejectReason.POST_ONLY_TIF),
    ],
)
def test_post_only_parameter_combinations(
    h: Harness, price: int | None, tif: object, reason: RejectReason
) -> None:
    assert rejected(h.new("b", "p", BUY, price, 1, tif, True)) is reason


# ---------------------------------------------------------------- cancel


def test_cancel_the_head_of_a_queue_then_sweep(h: Harness) -> None:
    for i in range(3):
        h.new("a", f"m{i}", SELL, 100, 1)
    h.cancel("a", "m0")
    assert trades(h.new("b", "t", BUY, 100, 5)) == [("m1", 100, 1), ("m2", 100, 1)]
    assert h.resting() == [("t", 100, 3)]


def test_cancel_the_middle_of_a_queue_then_sweep(h: Harness) -> None:
    for i in range(3):
        h.new("a", f"m{i}", SELL, 100, 1)
    assert h.cancel("a", "m1") == (OrderCancelled(4, "a", "m1", SELL, 100, 1, CancelReason.USER),)
    assert h.book.depth(SELL, 100) == 2
    assert trades(h.new("b", "t", BUY, 100, 5)) == [("m0", 100, 1), ("m2", 100, 1)]


def test_cancel_many_from_the_middle_then_sweep(h: Harness) -> None:
    for i in range(60):
        h.new("a", f"m{i}", SELL, 100, 1)
    for i in range(1, 59):
        h.cancel("a", f"m{i}")
    h.new("a", "late", SELL, 100, 1)
    assert trades(h.new("b", "t", BUY, 100, 3)) == [
        ("m0", 100, 1),
        ("m59", 100, 1),
        ("late", 100, 1),
    ]


def test_no_phantom_best_price_after_cancelling_the_best_level(h: Harness) -> None:
    h.new("a", "s1", SELL, 100, 1)
    h.new("a", "s2", SELL, 102, 1)
    h.new("a", "b1", BUY, 98, 1)
    h.new("a", "b2", BUY, 97, 1)
    h.cancel("a", "s1")
    h.cancel("a", "b1")
    assert (h.book.best_bid(), h.book.best_ask()) == (97, 102)
    assert h.book.depth(SELL, 100) == 0
    assert h.book.levels(SELL) == [(102, 1)]
    # A buy at 100 must not trade with the cancelled ask.
    assert trades(h.new("b", "t", BUY, 101, 1)) == []
    assert h.book.best_bid() == 101


def test_only_the_owner_can_cancel(h: Harness) -> None:
    h.new("a", "1", SELL, 100, 1)
    assert rejected(h.cancel("b", "1")) is RejectReason.UNKNOWN_ORDER
    assert h.book.get_order("a", "1") is not None


def test_partial_fill_then_cancel_then_modify(h: Harness) -> None:
    h.new("a", "m", SELL, 100, 10)
    h.new("b", "t", BUY, 100, 4)
    assert h.cancel("a", "m") == (OrderCancelled(3, "a", "m", SELL, 100, 6, CancelReason.USER),)
    assert rejected(h.modify("a", "m", amount=3)) is RejectReason.UNKNOWN_ORDER
    assert rejected(h.cancel("a", "m")) is RejectReason.UNKNOWN_ORDER


def test_partial_fill_then_modify(h: Harness) -> None:
    h.new("a", "m", SELL, 100, 10)
    h.new("b", "t", BUY, 100, 4)
    events = h.modify("a", "m", amount=2)
    assert events == (OrderModified(3, "a", "m", SELL, 100, 2, 100, 6, True),)


def test_cancel_or_modify_after_a_full_fill_is_rejected(h: Harness) -> None:
    h.new("a", "m", SELL, 100, 5)
    h.new("b", "t", BUY, 100, 5)
    assert rejected(h.cancel("a", "m")) is RejectReason.UNKNOWN_ORDER
    assert rejected(h.modify("a", "m", price=101)) is RejectReason.UNKNOWN_ORDER
    assert rejected(h.cancel("b", "t")) is RejectReason.UNKNOWN_ORDER


def test_cancel_unknown_order(h: Harness) -> None:
    assert h.cancel("a", "nope") == (OrderRejected(1, "a", "nope", RejectReason.UNKNOWN_ORDER),)


# ---------------------------------------------------------------- ids


def test_duplicate_live_id_is_rejected(h: Harness) -> None:
    h.new("a", "1", SELL, 100, 1)
    assert rejected(h.new("a", "1", BUY, 90, 1)) is RejectReason.DUPLICATE_ORDER_ID
    # The same order id from another client is a different order.
    assert h.new("b", "1", BUY, 90, 1)[-1] == OrderRested(3, "b", "1", BUY, 90, 1)


def test_id_reuse_after_cancel(h: Harness) -> None:
    h.new("a", "1", SELL, 100, 1)
    h.cancel("a", "1")
    assert h.new("a", "1", SELL, 101, 2)[-1] == OrderRested(3, "a", "1", SELL, 101, 2)


def test_id_reuse_after_fill(h: Harness) -> None:
    h.new("a", "1", SELL, 100, 1)
    h.new("b", "x", BUY, 100, 1)
    assert h.new("a", "1", SELL, 101, 2)[-1] == OrderRested(3, "a", "1", SELL, 101, 2)
    # and the taker's id too (an IOC taker's id is free at once)
    assert h.new("b", "x", BUY, 50, 1)[-1] == OrderRested(4, "b", "x", BUY, 50, 1)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("price", "amount", "reason"),
    [
        (0, 1, RejectReason.PRICE_NOT_POSITIVE),
        (-5, 1, RejectReason.PRICE_NOT_POSITIVE),
        (1001, 1, RejectReason.PRICE_OUT_OF_RANGE),
        (100, 0, RejectReason.AMOUNT_NOT_POSITIVE),
        (100, -1, RejectReason.AMOUNT_NOT_POSITIVE),
        (100, 10001, RejectReason.AMOUNT_OUT_OF_RANGE),
        (-1, -1, RejectReason.PRICE_NOT_POSITIVE),  # price is checked first
    ],
)
def test_bad_prices_and_amounts_are_rejected(
    h: Harness, price: int, amount: int, reason: RejectReason
) -> None:
    h.new("a", "s", SELL, 100, 1)
    assert h.new("b", "x", BUY, price, amount) == (OrderRejected(2, "b", "x", reason),)
    assert h.resting() == [("s", 100, 1)]


@pytest.mark.parametrize(
    ("price", "amount", "reason"),
    [
        (0, None, RejectReason.PRICE_NOT_POSITIVE),
        (5000, None, RejectReason.PRICE_OUT_OF_RANGE),
        (None, 0, RejectReason.AMOUNT_NOT_POSITIVE),
        (None, 10001, RejectReason.AMOUNT_OUT_OF_RANGE),
        (None, None, RejectReason.MODIFY_NO_CHANGE),
        (100, 3, RejectReason.MODIFY_NO_CHANGE),
    ],
)
def test_bad_modifies_are_rejected(
    h: Harness, price: int | None, amount: int | None, reason: RejectReason
) -> None:
    h.new("a", "m", SELL, 100, 3)
    assert rejected(h.modify("a", "m", price, amount)) is reason
    assert h.resting() == [("m", 100, 3)]


def test_bad_market_amount_is_rejected(h: Harness) -> None:
    assert rejected(h.new("a", "m", BUY, None, 0)) is RejectReason.AMOUNT_NOT_POSITIVE


# ---------------------------------------------------------------- modify


def test_size_decrease_at_same_price_keeps_priority(h: Harness) -> None:
    h.new("a", "m1", SELL, 100, 5)
    h.new("a", "m2", SELL, 100, 5)
    assert h.modify("a", "m1", amount=2) == (
        OrderModified(3, "a", "m1", SELL, 100, 2, 100, 5, True),
    )
    assert h.book.get_order("a", "m1") == RestingOrder("a", "m1", SELL, 100, 2, 1, 1000)
    assert trades(h.new("b", "t", BUY, 100, 3)) == [("m1", 100, 2), ("m2", 100, 1)]


def test_size_increase_loses_priority(h: Harness) -> None:
    h.new("a", "m1", SELL, 100, 5)
    h.new("a", "m2", SELL, 100, 5)
    events = h.modify("a", "m1", amount=6)
    assert events == (
        OrderModified(3, "a", "m1", SELL, 100, 6, 100, 5, False),
        OrderRested(3, "a", "m1", SELL, 100, 6),
    )
    assert h.book.get_order("a", "m1") == RestingOrder("a", "m1", SELL, 100, 6, 3, 3000)
    assert trades(h.new("b", "t", BUY, 100, 6)) == [("m2", 100, 5), ("m1", 100, 1)]


def test_repricing_one_of_two_same_price_orders_leaves_the_other(h: Harness) -> None:
    h.new("a", "m1", SELL, 100, 5)
    h.new("a", "m2", SELL, 100, 5)
    h.modify("a", "m1", price=101)
    assert h.resting() == [("m2", 100, 5), ("m1", 101, 5)]
    assert h.book.levels(SELL) == [(100, 5), (101, 5)]
    # and repricing back puts it behind m2
    h.modify("a", "m1", price=100)
    assert h.resting() == [("m2", 100, 5), ("m1", 100, 5)]


def test_modify_into_a_cross_trades_at_the_makers_prices(h: Harness) -> None:
    h.new("a", "s1", SELL, 100, 2)
    h.new("a", "s2", SELL, 101, 2)
    h.new("b", "bid", BUY, 95, 5)
    events = h.modify("b", "bid", price=105)
    assert events[0] == OrderModified(4, "b", "bid", BUY, 105, 5, 95, 5, False)
    assert trades(events) == [("s1", 100, 2), ("s2", 101, 2)]
    assert events[-1] == OrderRested(4, "b", "bid", BUY, 105, 1)


def test_modify_into_a_cross_that_fills_completely_does_not_rest(h: Harness) -> None:
    h.new("a", "s1", SELL, 100, 5)
    h.new("b", "bid", BUY, 95, 3)
    events = h.modify("b", "bid", price=100)
    assert trades(events) == [("s1", 100, 3)]
    assert not isinstance(events[-1], OrderRested)
    assert h.book.get_order("b", "bid") is None


# ---------------------------------------------------------------- self-trade prevention


def stp_harness(factory: Factory, mode: SelfTradePrevention) -> Harness:
    return Harness(factory, unit_spec(mode))


def test_stp_default_is_cancel_maker() -> None:
    assert MarketSpec().self_trade is SelfTradePrevention.CANCEL_MAKER


def test_stp_cancel_maker(make_book: Factory) -> None:
    h = stp_harness(make_book, SelfTradePrevention.CANCEL_MAKER)
    h.new("a", "own", SELL, 100, 2)
    h.new("x", "other", SELL, 100, 2)
    events = h.new("a", "t", BUY, 100, 3)
    assert events[1] == OrderCancelled(3, "a", "own", SELL, 100, 2, CancelReason.SELF_TRADE)
    assert trades(events) == [("other", 100, 2)]
    assert events[-1] == OrderRested(3, "a", "t", BUY, 100, 1)


def test_stp_cancel_taker(make_book: Factory) -> None:
    h = stp_harness(make_book, SelfTradePrevention.CANCEL_TAKER)
    h.new("x", "other", SELL, 100, 1)
    h.new("a", "own", SELL, 100, 2)
    events = h.new("a", "t", BUY, 100, 3)
    assert trades(events) == [("other", 100, 1)]
    assert events[-1] == OrderCancelled(3, "a", "t", BUY, 100, 2, CancelReason.SELF_TRADE)
    assert h.resting() == [("own", 100, 2)]


def test_stp_cancel_both(make_book: Factory) -> None:
    h = stp_harness(make_book, SelfTradePrevention.CANCEL_BOTH)
    h.new("a", "own", SELL, 100, 2)
    h.new("x", "other", SELL, 100, 2)
    events = h.new("a", "t", BUY, 100, 3)
    assert events[1:] == (
        OrderCancelled(3, "a", "own", SELL, 100, 2, CancelReason.SELF_TRADE),
        OrderCancelled(3, "a", "t", BUY, 100, 3, CancelReason.SELF_TRADE),
    )
    assert h.resting() == [("other", 100, 2)]


@pytest.mark.parametrize(
    ("mode", "fillable"),
    [
        (SelfTradePrevention.CANCEL_MAKER, True),
        (SelfTradePrevention.CANCEL_TAKER, False),
        (SelfTradePrevention.CANCEL_BOTH, False),
    ],
)
def test_stp_and_fok(make_book: Factory, mode: SelfTradePrevention, fillable: bool) -> None:
    h = stp_harness(make_book, mode)
    h.new("a", "own", SELL, 100, 2)
    h.new("x", "other", SELL, 101, 3)
    before = h.resting()
    events = h.new("a", "t", BUY, 101, 3, FOK)
    if fillable:
        assert trades(events) == [("other", 101, 3)]
    else:
        assert rejected(events) is RejectReason.FOK_NOT_FILLABLE
        assert h.resting() == before


def test_stp_during_modify(make_book: Factory) -> None:
    h = stp_harness(make_book, SelfTradePrevention.CANCEL_MAKER)
    h.new("a", "ask", SELL, 100, 2)
    h.new("a", "bid", BUY, 90, 2)
    events = h.modify("a", "bid", price=100)
    assert events[1] == OrderCancelled(3, "a", "ask", SELL, 100, 2, CancelReason.SELF_TRADE)
    assert events[-1] == OrderRested(3, "a", "bid", BUY, 100, 2)


# ---------------------------------------------------------------- queries


def test_queries(h: Harness) -> None:
    h.new("a", "s1", SELL, 103, 1)
    h.new("a", "s2", SELL, 101, 2)
    h.new("a", "s3", SELL, 101, 3)
    h.new("a", "b1", BUY, 99, 4)
    h.new("a", "b2", BUY, 98, 5)
    h.new("a", "b3", BUY, 97, 6)
    assert (h.book.best_bid(), h.book.best_ask()) == (99, 101)
    assert h.book.depth(SELL, 101) == 5
    assert h.book.depth(BUY, 101) == 0
    assert h.book.levels(SELL, 1) == [(101, 5)]
    assert h.book.levels(SELL) == [(101, 5), (103, 1)]
    assert h.book.levels(BUY, 2) == [(99, 4), (98, 5)]
    assert h.book.levels(BUY, 0) == []
    assert [o.order_id for o in h.book.orders()] == ["s2", "s3", "s1", "b1", "b2", "b3"]
    assert [o.order_id for o in h.book.orders(BUY)] == ["b1", "b2", "b3"]
    assert [o.order_id for o in h.book.orders(SELL)] == ["s2", "s3", "s1"]
    assert h.book.get_order("a", "s3") == RestingOrder("a", "s3", SELL, 101, 3, 3, 3000)
    assert h.book.get_order("b", "s3") is None
    assert len(h.book) == 6


def test_empty_book_queries(h: Harness) -> None:
    assert (h.book.best_bid(), h.book.best_ask()) == (None, None)
    assert h.book.levels(BUY) == h.book.levels(SELL) == []
    assert list(h.book.orders()) == []


# ---------------------------------------------------------------- real book only


def test_rejection_leaves_encoding_byte_identical() -> None:
    book = OrderBook(unit_spec())
    seq = Seq()
    book.apply(seq.new("a", "s", SELL, 100, 5))
    book.apply(seq.new("a", "b", BUY, 90, 5))
    before = encode_book(book)
    for cmd in (
        seq.new("c", "p", BUY, 100, 1, GTC, True),
        seq.new("c", "f", BUY, 100, 6, FOK),
        seq.new("a", "s", BUY, 10, 1),
        seq.cancel("c", "zzz"),
        seq.modify("a", "s", 100, 5),
    ):
        assert isinstance(book.apply(cmd)[0], OrderRejected)
        assert encode_book(book) == before


def test_programming_errors_raise() -> None:
    book = OrderBook(unit_spec())
    seq = Seq()
    with pytest.raises(TypeError):
        book.apply(("not", "a", "command"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        book.apply(seq.new("a", "1", BUY, 100.5, 1))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        book.apply(seq.new("a", "1", BUY, 100, True))
    with pytest.raises(TypeError):
        book.apply(seq.new("a", "1", "buy", 100, 1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="post_only"):
        book.apply(seq.new("a", "1", BUY, 100, 1, GTC, "false"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tif"):
        book.apply(seq.new("a", "1", BUY, 100, 1, "IOC"))  # type: ignore[arg-type]
    assert len(book) == 0
    book.apply(seq.new("a", "1", BUY, 100, 1))
    with pytest.raises(TypeError):
        book.apply(seq.modify("a", "1", price=100.5))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        book.apply(seq.modify("a", "1", amount=2.0))  # type: ignore[arg-type]
    # The queries too: a plain "buy" (equal to Side.BUY, but not it) used to be read as
    # the sell side, so levels("buy") answered with the asks.
    for query in (
        lambda: book.levels("buy"),  # type: ignore[arg-type]
        lambda: book.depth("buy", 100),  # type: ignore[arg-type]
        lambda: book.orders("buy"),  # type: ignore[arg-type]
        lambda: book.levels("bid"),  # type: ignore[arg-type]
    ):
        with pytest.raises(TypeError, match="side"):
            query()
    assert book.levels(BUY) == [(100, 1)]
    assert book.depth(BUY, 100) == 1


def test_check_detects_corruption() -> None:
    book = OrderBook(unit_spec())
    seq = Seq()
    book.apply(seq.new("a", "1", BUY, 100, 1))
    book._check()
    book._bids[100][0] = 7  # corrupt a level total
    with pytest.raises(AssertionError, match="total"):
        book._check()


@pytest.mark.parametrize("side", [BUY, SELL])
def test_heap_compaction_keeps_best_prices_right(side: object) -> None:
    book = OrderBook(unit_spec())
    seq = Seq()
    # Create and empty many non-best levels so stale heap entries pile up.
    best, others = (1000, range(300, 500)) if side is BUY else (1, range(500, 700))
    book.apply(seq.new("a", "best", side, best, 1))  # type: ignore[arg-type]
    for round_ in range(5):
        for p in others:
            book.apply(seq.new("a", f"{round_}-{p}", side, p, 1))  # type: ignore[arg-type]
        for p in others:
            book.apply(seq.cancel("a", f"{round_}-{p}"))
        book._check()
    heap = book._bid_heap if side is BUY else book._ask_heap
    assert len(heap) <= 2 * 1 + 64 + 200
    book.apply(seq.cancel("a", "best"))
    book._check()
    assert book.best_bid() is None
    assert book.best_ask() is None


def test_fok_skips_cancelled_entries(h: Harness) -> None:
    for i in range(3):
        h.new("a", f"m{i}", SELL, 100, 1)
    h.cancel("a", "m1")  # dead entry in the middle of the queue
    assert rejected(h.new("b", "t", BUY, 100, 3, FOK)) is RejectReason.FOK_NOT_FILLABLE
    assert trades(h.new("b", "t", BUY, 100, 2, FOK)) == [("m0", 100, 1), ("m2", 100, 1)]


def test_apply_batch_and_ledger_example() -> None:
    book = OrderBook(unit_spec())
    seq = Seq()
    ledger = QuantityLedger()
    cmds = [seq.new("a", "1", SELL, 100, 5), seq.new("b", "2", BUY, 100, 3)]
    events = book.apply_batch(cmds)
    ledger.record(events)
    ledger.check(book.orders())
    assert [type(e) for e in events] == [OrderAccepted, OrderRested, OrderAccepted, Trade]


def test_orders_may_be_iterated_while_applying() -> None:
    book = OrderBook(unit_spec())
    seq = Seq()
    for i in range(5):
        book.apply(seq.new("a", str(i), SELL, 100 + i % 2, 1))
    for o in book.orders():
        book.apply(seq.cancel(o.client_id, o.order_id))
    assert len(book) == 0
    book._check()
