"""`OrderBook.apply_many`, the bulk entry point: the same events, state and hash as
`apply` one command at a time, from typed or compact (plain tuple) commands."""

from __future__ import annotations

from typing import Any

import pytest
from core_support import BUY, CORE_PROFILE, GTC, SELL, Seq, unit_spec
from hypothesis import given
from hypothesis import strategies as st

from orderbook_core import (
    CancelOrder,
    Command,
    Event,
    MarketSpec,
    NewOrder,
    OrderBook,
    OrderCancelled,
    OrderRejected,
    encode_book,
)
from orderbook_core.testing import command_streams, market_specs


@st.composite
def specs_and_streams(draw: st.DrawFn) -> tuple[MarketSpec, list[Command]]:
    spec = draw(market_specs())
    return spec, draw(command_streams(spec, max_size=80))


@CORE_PROFILE
@given(case=specs_and_streams(), compact=st.booleans(), chunk=st.integers(1, 100))
def test_apply_many_is_apply_one_at_a_time(
    case: tuple[MarketSpec, list[Command]], compact: bool, chunk: int
) -> None:
    spec, stream = case
    one = OrderBook(spec)
    expected: list[Event] = []
    for cmd in stream:
        expected.extend(one.apply(cmd))
    many = OrderBook(spec)
    cmds: list[tuple[Any, ...]] = [tuple(c) for c in stream] if compact else list(stream)
    actual: list[Event] = []
    for i in range(0, len(cmds), chunk):
        out = many.apply_many(cmds[i : i + chunk])
        assert len(out) == len(cmds[i : i + chunk])
        for events in out:
            actual.extend(events)
    # Equal values and the very same event types (not plain tuples).
    assert actual == expected
    assert [type(e) for e in actual] == [type(e) for e in expected]
    assert encode_book(many) == encode_book(one)
    many._check()


@CORE_PROFILE
@given(case=specs_and_streams())
def test_apply_many_in_a_transaction_journals_and_rolls_back(
    case: tuple[MarketSpec, list[Command]],
) -> None:
    spec, stream = case
    book = OrderBook(spec)
    half = len(stream) // 2
    book.apply_many(stream[:half])
    before = encode_book(book)

    def run_and_fail() -> None:
        with book.transaction():
            book.apply_many([tuple(c) for c in stream[half:]])
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        run_and_fail()
    assert encode_book(book) == before
    book._check()


def test_each_command_gets_its_own_events() -> None:
    seq = Seq()
    book = OrderBook(unit_spec())
    cmds: list[Command] = [
        seq.new("a", "1", SELL, 100, 5),
        seq.new("b", "1", BUY, 100, 3),
        seq.cancel("a", "1"),
        seq.cancel("a", "1"),
    ]
    out = book.apply_many([tuple(c) for c in cmds])
    assert [len(events) for events in out] == [2, 2, 1, 1]
    assert all(e.seq == c.seq for c, events in zip(cmds, out, strict=True) for e in events)
    assert isinstance(out[3][0], OrderRejected)


def test_compact_commands_are_validated_like_typed_ones() -> None:
    book = OrderBook(unit_spec())
    with pytest.raises(TypeError, match="not a command"):
        book.apply_many([(1, 1, "a", "1", BUY)])
    with pytest.raises(TypeError, match="not a command"):
        book.apply_many(["abcd"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="amount"):
        book.apply_many([(1, 1, "a", "1", BUY, 100, True, GTC, False)])
    with pytest.raises(TypeError, match="tif"):
        book.apply_many([(1, 1, "a", "1", BUY, 100, 1, "IOC", False)])
    # Commands before the one that raised stay applied; that one changed nothing.
    good = NewOrder(1, 1, "a", "1", BUY, 100, 1)
    with pytest.raises(TypeError):
        book.apply_many([good, (2, 2, "a", "2", "buy", 100, 1, GTC, False)])
    assert len(book) == 1
    ((cancelled,),) = book.apply_many([CancelOrder(3, 3, "a", "1")])
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.order_id == "1"
    assert len(book) == 0
