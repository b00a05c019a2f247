"""The entry points that take a command's fields (`OrderBook.new_order`, `cancel_order`,
`modify_order`) and the compact events of `apply_many(compact=True)`: the same events,
state and encoding (so the same book hash) as `apply`, on both builds."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import pytest
from core_support import BUY, CORE_PROFILE, GTC, IOC, SELL, unit_spec
from hypothesis import given
from hypothesis import strategies as st

from orderbook_core import (
    COMPACT_EVENT_TYPES,
    COMPILED,
    CancelOrder,
    CancelReason,
    Command,
    Event,
    MarketSpec,
    ModifyOrder,
    NewOrder,
    OrderAccepted,
    OrderBook,
    OrderCancelled,
    OrderModified,
    OrderRejected,
    OrderRested,
    Trade,
    encode_book,
    event_from_compact,
    event_to_compact,
)
from orderbook_core.testing import command_streams, market_specs


@st.composite
def specs_and_streams(draw: st.DrawFn) -> tuple[MarketSpec, list[Command]]:
    spec = draw(market_specs())
    return spec, draw(command_streams(spec, max_size=80))


def by_fields(book: OrderBook, cmd: Command, keywords: bool) -> tuple[Event, ...]:
    """``cmd`` through the entry point that takes its fields (defaults left out when
    they hold, and by keyword when ``keywords``)."""
    if type(cmd) is NewOrder:
        if keywords:
            extra: dict[str, Any] = {}
            if cmd.tif is not GTC:
                extra["tif"] = cmd.tif
            if cmd.post_only is not False:
                extra["post_only"] = cmd.post_only
            return book.new_order(
                cmd.seq, cmd.ts, cmd.client_id, cmd.order_id, cmd.side, cmd.price, cmd.amount,
                **extra,
            )  # fmt: skip
        return book.new_order(*cmd)
    if type(cmd) is CancelOrder:
        return book.cancel_order(*cmd)
    assert type(cmd) is ModifyOrder
    if keywords:
        return book.modify_order(
            cmd.seq, cmd.ts, cmd.client_id, cmd.order_id, price=cmd.price, amount=cmd.amount
        )
    return book.modify_order(*cmd)


@CORE_PROFILE
@given(case=specs_and_streams(), keywords=st.booleans(), journaled=st.booleans())
def test_field_entry_points_are_apply(
    case: tuple[MarketSpec, list[Command]], keywords: bool, journaled: bool
) -> None:
    spec, stream = case
    one, other = OrderBook(spec), OrderBook(spec)
    for cmd in stream:
        expected = one.apply(cmd)
        if journaled:
            with other.transaction():
                actual = by_fields(other, cmd, keywords)
        else:
            actual = by_fields(other, cmd, keywords)
        assert actual == expected
        assert [type(e) for e in actual] == [type(e) for e in expected]
        assert type(actual) is tuple
    assert encode_book(other) == encode_book(one)
    other._check()


@CORE_PROFILE
@given(case=specs_and_streams(), split=st.integers(0, 80))
def test_field_entry_points_roll_back_in_a_transaction(
    case: tuple[MarketSpec, list[Command]], split: int
) -> None:
    spec, stream = case
    book = OrderBook(spec)
    for cmd in stream[:split]:
        by_fields(book, cmd, False)
    before = encode_book(book)

    def run_and_fail() -> None:
        with book.transaction():
            for cmd in stream[split:]:
                by_fields(book, cmd, True)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        run_and_fail()
    assert encode_book(book) == before
    book._check()


@CORE_PROFILE
@given(
    case=specs_and_streams(),
    tuples=st.booleans(),
    chunk=st.integers(1, 100),
    journaled=st.booleans(),
)
def test_compact_events_are_apply_events(
    case: tuple[MarketSpec, list[Command]], tuples: bool, chunk: int, journaled: bool
) -> None:
    spec, stream = case
    one = OrderBook(spec)
    expected = [one.apply(cmd) for cmd in stream]
    many = OrderBook(spec)
    cmds: list[tuple[Any, ...]] = [tuple(c) for c in stream] if tuples else list(stream)
    out: list[tuple[Any, ...]] = []
    for i in range(0, len(cmds), chunk):
        if journaled:
            with many.transaction():
                out.extend(many.apply_many(cmds[i : i + chunk], compact=True))
        else:
            out.extend(many.apply_many(cmds[i : i + chunk], compact=True))
    assert len(out) == len(expected)
    for compact, typed in zip(out, expected, strict=True):
        # Plain tuples, not events, that convert back to exactly apply's events.
        assert all(type(c) is tuple and type(c[1]) is tuple for c in compact)
        back = tuple(event_from_compact(c) for c in compact)
        assert back == typed
        assert [type(e) for e in back] == [type(e) for e in typed]
        assert [event_to_compact(e) for e in typed] == list(compact)
    assert encode_book(many) == encode_book(one)
    many._check()


def test_compact_event_kinds() -> None:
    kinds = (
        OrderAccepted,
        Trade,
        OrderRested,
        OrderCancelled,
        OrderRejected,
        OrderModified,
    )
    assert kinds == COMPACT_EVENT_TYPES
    book = OrderBook(unit_spec())
    ((accepted, rested),) = book.apply_many(
        [(1, 1, "a", "1", SELL, 100, 5, GTC, False)], compact=True
    )
    assert accepted == (0, (1, "a", "1", SELL, 100, 5))
    assert rested == (2, (1, "a", "1", SELL, 100, 5))
    ((_, trade, cancelled),) = book.apply_many(
        [(2, 2, "b", "1", BUY, 101, 7, IOC, False)], compact=True
    )
    assert trade == (1, (2, "2.1", 2, 100, 5, BUY, "a", "1", 0, "b", "1"))
    assert cancelled == (3, (2, "b", "1", BUY, 101, 2, "ioc"))
    ((rejected,),) = book.apply_many([(3, 3, "a", "1")], compact=True)
    assert rejected == (4, (3, "a", "1", "ERR_ORDER_UNKNOWN"))


def test_field_entry_points_refuse_wrong_types_and_change_nothing() -> None:
    book = OrderBook(unit_spec())
    book.new_order(1, 1, "a", "1", SELL, 100, 5)
    before = encode_book(book)
    with pytest.raises(TypeError, match="amount"):
        book.new_order(2, 2, "b", "1", BUY, 100, True)
    with pytest.raises(TypeError, match="price"):
        book.new_order(2, 2, "b", "1", BUY, 100.0, 1)
    with pytest.raises(TypeError, match="tif"):
        book.new_order(2, 2, "b", "1", BUY, 100, 1, "IOC")
    with pytest.raises(TypeError, match="post_only"):
        book.new_order(2, 2, "b", "1", BUY, 99, 1, GTC, 1)
    with pytest.raises(TypeError, match="side"):
        book.new_order(2, 2, "b", "1", "buy", 100, 1)
    with pytest.raises(TypeError, match="seq and ts"):
        book.new_order(2.0, 2, "b", "1", BUY, 100, 1)
    with pytest.raises(TypeError, match="price"):
        book.modify_order(2, 2, "a", "1", price=100.5)
    with pytest.raises(TypeError, match="seq and ts"):
        book.modify_order(2, "2", "a", "1", amount=3)
    assert encode_book(book) == before
    (modified,) = book.modify_order(3, 3, "a", "1", amount=3)
    assert modified == OrderModified(3, "a", "1", SELL, 100, 3, 100, 5, True)
    (cancelled,) = book.cancel_order(4, 4, "a", "1")
    assert cancelled == OrderCancelled(4, "a", "1", SELL, 100, 3, CancelReason.USER)
    (rejected,) = book.cancel_order(5, 5, "a", "1")
    assert isinstance(rejected, OrderRejected)
    assert len(book) == 0


@pytest.mark.parametrize("in_transaction", [False, True])
def test_events_are_typed_again_after_a_compact_batch_raised(in_transaction: bool) -> None:
    # apply_many(compact=True) tells the rules to build compact events for its duration
    # only: a command that raises in it must not leave the book building compact ones.
    book = OrderBook(unit_spec())
    bad = (2, 2, "b", "1", BUY, 100, 1.0, GTC, False)
    with book.transaction() if in_transaction else nullcontext(book):
        with pytest.raises(TypeError, match="amount"):
            book.apply_many([(1, 1, "a", "1", SELL, 100, 5, GTC, False), bad], compact=True)
        assert len(book) == 1
        accepted, trade = book.new_order(3, 3, "b", "2", BUY, 100, 2)
        assert type(accepted) is OrderAccepted
        assert type(trade) is Trade
        (cancelled,) = book.cancel_order(4, 4, "a", "1")
        assert type(cancelled) is OrderCancelled
        (rejected,) = book.modify_order(5, 5, "a", "1", amount=1)
        assert type(rejected) is OrderRejected
        ((again,),) = book.apply_many([(6, 6, "a", "1")])
        assert type(again) is OrderRejected


def test_field_entry_points_take_their_fields_by_name() -> None:
    # Pure Python the methods are the rules functions themselves (docs/core.md): the
    # same parameter names as the compiled methods, and no others.
    book = OrderBook(unit_spec())
    kw: dict[str, Any] = {"seq": 1, "ts": 1, "client_id": "a", "order_id": "1"}
    book.new_order(**kw, side=SELL, price=100, amount=5, tif=GTC, post_only=False)
    (modified,) = book.modify_order(**{**kw, "seq": 2}, price=None, amount=3)
    assert modified == OrderModified(2, "a", "1", SELL, 100, 3, 100, 5, True)
    (cancelled,) = book.cancel_order(**{**kw, "seq": 3})
    assert cancelled == OrderCancelled(3, "a", "1", SELL, 100, 3, CancelReason.USER)
    with pytest.raises(TypeError):
        book.cancel_order(**{**kw, "seq": 4}, compact=True)  # type: ignore[call-arg]
    if not COMPILED:  # (mypyc keeps no method docstrings)
        assert "apply(NewOrder(" in (book.new_order.__doc__ or "")
