"""`OrderBook.apply_compact` is `apply` in a loop: same events, same book, same errors.

Random sequenced streams (every kind of command, bad values, duplicate and reused ids,
every self-trade mode) go once through `apply`, one command at a time, and once through
`apply_compact` as plain tuples, cut into batches at random points; the events (rows
turned back into typed events) and the canonical encodings must be equal after every
batch, and the book's invariants hold. Malformed rows raise the same TypeError as
`apply`, with the commands before them applied; inside a transaction a batch goes
through `apply` and is undone exactly.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
from core_support import BUY, CORE_PROFILE, GTC, SELL, stateful_market, unit_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from orderbook_core import (
    CancelOrder,
    Command,
    Event,
    MarketSpec,
    ModifyOrder,
    NewOrder,
    OrderAccepted,
    OrderBook,
    OrderRested,
    SelfTradePrevention,
    encode_book,
)
from orderbook_core.testing import amounts, command_streams, prices

MARKET = stateful_market()
CLIENTS = st.sampled_from(["a", "b", "c"])
ORDER_IDS = st.sampled_from(["0", "1", "2", "3", "4", "5"]) | st.integers(0, 40).map(str)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[MarketSpec, list[Command], list[int]]:
    """A market (any self-trade mode), a stream, and where to cut it into batches."""
    mode = draw(st.sampled_from(SelfTradePrevention))
    spec = dataclasses.replace(MARKET.spec, self_trade=mode)
    stream = draw(
        command_streams(
            spec,
            max_size=120,
            client_id=CLIENTS,
            order_id=ORDER_IDS,
            price=prices(spec, low=MARKET.low, high=MARKET.high, invalid=True),
            amount=amounts(spec, low=1, high=MARKET.max_lots, invalid=True),
        )
    )
    cuts = draw(st.lists(st.integers(0, len(stream)), max_size=4, unique=True))
    return spec, stream, sorted({0, len(stream), *cuts})


def typed(rows: list[tuple[Any, ...]]) -> list[Event]:
    return [row[0]._make(row[1:]) for row in rows]


@settings(CORE_PROFILE)
@given(scenarios())
def test_apply_compact_gives_the_events_and_book_of_apply(
    scenario: tuple[MarketSpec, list[Command], list[int]],
) -> None:
    spec, stream, cuts = scenario
    one, batch = OrderBook(spec), OrderBook(spec)
    for start, stop in itertools.pairwise(cuts):
        expected: list[Event] = []
        for cmd in stream[start:stop]:
            expected.extend(one.apply(cmd))
        rows = batch.apply_compact([tuple(cmd) for cmd in stream[start:stop]])
        assert all(type(row) is tuple for row in rows)
        events = typed(rows)
        assert events == expected
        # Equal values of the same types (an int is not a bool, an enum not its string).
        for got, want in zip(events, expected, strict=True):
            assert type(got) is type(want)
            assert [type(x) for x in got] == [type(x) for x in want]
        assert encode_book(batch) == encode_book(one)
        batch._check()


@settings(CORE_PROFILE)
@given(scenarios())
def test_apply_compact_inside_a_transaction_is_the_same_and_rolls_back(
    scenario: tuple[MarketSpec, list[Command], list[int]],
) -> None:
    spec, stream, cuts = scenario
    half = cuts[len(cuts) // 2]
    one, batch = OrderBook(spec), OrderBook(spec)
    batch.apply_compact([tuple(cmd) for cmd in stream[:half]])
    for cmd in stream[:half]:
        one.apply(cmd)
    before = encode_book(batch)

    def undone() -> None:
        with batch.transaction():
            batch.apply_compact([tuple(cmd) for cmd in stream[half:]])
            raise RuntimeError("undo")

    with pytest.raises(RuntimeError):
        undone()
    assert encode_book(batch) == before
    with batch.transaction():
        rows = batch.apply_compact(stream[half:])  # NamedTuple commands are rows too
    expected = [e for cmd in stream[half:] for e in one.apply(cmd)]
    assert typed(rows) == expected
    assert encode_book(batch) == encode_book(one)
    batch._check()


BAD_ROWS: list[tuple[tuple[Any, ...], str]] = [
    ((3, 3, "a", "z", BUY, 100.0, 5, GTC, False), "price must be an int"),
    ((3, 3, "a", "z", BUY, 100, "5", GTC, False), "amount must be an int"),
    ((3, 3, "a", "z", "buy", 100, 5, GTC, False), "side must be a Side"),
    ((3, 3, "a", "z", BUY, 100, 5, "GTC", False), "tif must be a TimeInForce"),
    ((3, 3, "a", "z", BUY, 100, 5, GTC, 1), "post_only must be a bool"),
    ((3, 3, "a", "x", 100.0, None), "price must be an int"),
]


@pytest.mark.parametrize(("row", "message"), BAD_ROWS)
def test_a_malformed_row_raises_what_apply_raises(row: tuple[Any, ...], message: str) -> None:
    spec = unit_spec()
    first = [
        NewOrder(1, 1, "a", "x", SELL, 105, 5, GTC, False),
        NewOrder(2, 2, "b", "y", BUY, 95, 5, GTC, False),
    ]
    one, batch = OrderBook(spec), OrderBook(spec)
    for cmd in first:
        one.apply(cmd)
    kinds: dict[int, Any] = {9: NewOrder, 6: ModifyOrder}
    kind = kinds[len(row)]
    with pytest.raises(TypeError, match=message) as from_apply:
        one.apply(kind._make(row))
    with pytest.raises(TypeError, match=message) as from_batch:
        batch.apply_compact([tuple(c) for c in first] + [row, (4, 4, "b", "y")])
    assert str(from_batch.value) == str(from_apply.value)
    # Like apply in a loop: what came before the bad row is applied, nothing after it.
    assert encode_book(batch) == encode_book(one)


@pytest.mark.parametrize("row", [(), (1, 1, "a"), (1, 1, "a", "x", 5), tuple(range(10))])
def test_a_row_of_another_length_is_refused(row: tuple[Any, ...]) -> None:
    book = OrderBook(unit_spec())
    with pytest.raises(TypeError, match="not a command row"):
        book.apply_compact([row])
    assert len(book) == 0
    with pytest.raises(TypeError, match="not a command row"), book.transaction():
        book.apply_compact([row])


def test_rows_read_back_as_typed_events() -> None:
    book = OrderBook(unit_spec())
    rows = book.apply_compact(
        [(1, 10, "a", "x", SELL, 105, 5, GTC, False), (2, 20, "a", "x"), (3, 30, "a", "x")]
    )
    assert rows[0] == (OrderAccepted, 1, "a", "x", SELL, 105, 5)
    assert rows[1] == (OrderRested, 1, "a", "x", SELL, 105, 5)
    assert [type(e).__name__ for e in typed(rows)] == [
        "OrderAccepted",
        "OrderRested",
        "OrderCancelled",
        "OrderRejected",
    ]
    assert book.apply_compact([]) == []
    assert isinstance(CancelOrder(1, 1, "a", "b"), tuple)
