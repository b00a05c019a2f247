"""Canonical encoding, state hash, snapshot/restore, transactions and determinism."""

from __future__ import annotations

import hashlib
import json
import random
from decimal import Decimal

import pytest
from core_support import BUY, CORE_PROFILE, FOK, IOC, SELL, Seq, unit_spec
from hypothesis import given
from hypothesis import strategies as st

from orderbook_core import (
    DEFAULT_SPEC,
    CancelOrder,
    Command,
    MarketSpec,
    ModifyOrder,
    NewOrder,
    OrderBook,
    OrderRejected,
    RestingOrder,
    SelfTradePrevention,
    Side,
    TimeInForce,
    decode_book,
    encode_book,
    event_to_wire,
)


def random_log(seed: int, n: int, spec: MarketSpec | None = None) -> list[Command]:
    """A reproducible command log exercising every command kind."""
    spec = spec or unit_spec()
    rng = random.Random(seed)
    log: list[Command] = []
    for seq in range(1, n + 1):
        client = rng.choice("abcd")
        oid = str(rng.randrange(30))
        roll = rng.random()
        if roll < 0.15:
            log.append(CancelOrder(seq, seq, client, oid))
        elif roll < 0.25:
            price = rng.choice([None, rng.randint(95, 105)])
            amount = rng.choice([None, rng.randint(1, 20)])
            log.append(ModifyOrder(seq, seq, client, oid, price, amount))
        else:
            log.append(
                NewOrder(
                    seq,
                    seq,
                    client,
                    oid,
                    rng.choice(list(Side)),
                    None if rng.random() < 0.05 else rng.randint(95, 105),
                    rng.randint(1, 20),
                    rng.choice(list(TimeInForce)),
                    rng.random() < 0.1,
                )
            )
    return log


def event_stream(book: OrderBook, log: list[Command]) -> bytes:
    lines = []
    for cmd in log:
        for event in book.apply(cmd):
            lines.append(json.dumps(event_to_wire(event, book.spec), sort_keys=True))
    return "\n".join(lines).encode()


# ---------------------------------------------------------------- encoding


def test_encoding_shape() -> None:
    book = OrderBook(DEFAULT_SPEC)
    seq = Seq()
    book.apply(seq.new("a", "1", SELL, 10100, 5))
    book.apply(seq.new("a", "2", SELL, 10000, 6))
    book.apply(seq.new("b", "3", BUY, 9900, 7))
    assert encode_book(book) == (
        b'{"asks":[[10000,[["a","2",6,2,2000]]],[10100,[["a","1",5,1,1000]]]],'
        b'"bids":[[9900,[["b","3",7,3,3000]]]],"format":"orderbook-core/1",'
        b'"spec":{"lotSize":"0.001","market":"BTC-USD","maxAmount":"1000000",'
        b'"maxPrice":"1000000000","minAmount":"0.001","minPrice":"0.01",'
        b'"selfTrade":"cancel_maker","tickSize":"0.01"}}'
    )


def test_equal_books_have_equal_hashes_whatever_the_history() -> None:
    a = OrderBook(unit_spec())
    a.apply(NewOrder(1, 1, "x", "1", SELL, 100, 5))
    a.apply(NewOrder(3, 3, "x", "3", SELL, 100, 5))

    b = OrderBook(unit_spec())
    b.apply(NewOrder(1, 1, "x", "1", SELL, 100, 9))
    b.apply(NewOrder(2, 2, "x", "2", SELL, 100, 5))  # cancelled from the middle below
    b.apply(NewOrder(3, 3, "x", "3", SELL, 100, 5))
    b.apply(CancelOrder(4, 4, "x", "2"))
    b.apply(ModifyOrder(5, 5, "x", "1", None, 5))  # size decrease keeps seq 1
    b.apply(NewOrder(6, 6, "y", "9", BUY, 90, 1))
    b.apply(NewOrder(7, 7, "z", "1", SELL, 90, 1))  # fills y/9 completely

    assert encode_book(a) == encode_book(b)
    assert a == b
    assert a == b
    b.apply(NewOrder(8, 8, "x", "4", BUY, 1, 1))
    assert a != b
    assert a != b


def test_spec_is_part_of_the_state() -> None:
    a = OrderBook(unit_spec())
    b = OrderBook(unit_spec(SelfTradePrevention.CANCEL_TAKER))
    assert a != b
    assert a != b
    assert a != "not a book"


def test_equal_specs_encode_equally() -> None:
    a = MarketSpec(tick_size=Decimal("0.010"), min_price=Decimal("0.01"))
    b = MarketSpec(tick_size=Decimal("0.01"), min_price=Decimal("0.0100"))
    assert a == b
    assert OrderBook(a) == OrderBook(b)


def test_decode_round_trip_and_continue() -> None:
    log = random_log(seed=1, n=600)
    whole = OrderBook(unit_spec())
    head = OrderBook(unit_spec())
    event_stream(head, log[:300])
    restored = decode_book(encode_book(head))
    restored._check()
    assert restored == head
    assert encode_book(restored) == encode_book(head)
    event_stream(whole, log[:300])
    assert event_stream(whole, log[300:]) == event_stream(restored, log[300:])
    assert whole == restored


def test_from_orders_round_trip() -> None:
    book = OrderBook(unit_spec())
    event_stream(book, random_log(seed=2, n=300))
    copy = OrderBook.from_orders(book.spec, book.orders())
    copy._check()
    assert copy == book


@pytest.mark.parametrize(
    ("orders", "error"),
    [
        ([RestingOrder("a", "1", BUY, 10, 1, 1, 1)] * 2, "duplicate"),
        ([RestingOrder("a", "1", BUY, 0, 1, 1, 1)], "out of range"),
        ([RestingOrder("a", "1", BUY, 10, 0, 1, 1)], "remaining"),
        # No command can leave more than max_amount resting (new and modify check it),
        # so a snapshot or a version in the DHT that says so is not a book of this market.
        ([RestingOrder("a", "1", BUY, 10, 10_001, 1, 1)], "remaining"),
        ([RestingOrder("a", "1", SELL, 1001, 1, 1, 1)], "out of range"),
        (
            [RestingOrder("a", "1", BUY, 10, 1, 1, 1), RestingOrder("a", "2", SELL, 10, 1, 1, 1)],
            "crossed",
        ),
    ],
)
def test_from_orders_rejects_inconsistent_input(orders: list[RestingOrder], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        OrderBook.from_orders(unit_spec(), orders)


def test_from_orders_rejects_wrong_types() -> None:
    with pytest.raises(TypeError):
        OrderBook.from_orders(unit_spec(), [RestingOrder("a", "1", BUY, 10, 1.5, 1, 1)])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        OrderBook.from_orders(unit_spec(), [RestingOrder("a", 1, BUY, 10, 1, 1, 1)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a valid Side"):
        OrderBook.from_orders(unit_spec(), [RestingOrder("a", "1", "up", 10, 1, 1, 1)])  # type: ignore[arg-type]


GOOD = encode_book(OrderBook.from_orders(unit_spec(), [RestingOrder("a", "1", BUY, 10, 1, 1, 1)]))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        GOOD.replace(b'"orderbook-core/1"', b'"orderbook-core/2"'),
        GOOD.replace(b'"bids":[[10,[["a","1",1,1,1]]]]', b'"bids":[[10,[]]]'),
        GOOD.replace(b'"bids":[[10,[["a","1",1,1,1]]]]', b'"bids":[[10,[["a","1",1,1]]]]'),
        GOOD.replace(b'"bids":[[10,[["a","1",1,1,1]]]]', b'"bids":[[10,[["a","1",1.5,1,1]]]]'),
        GOOD.replace(b'"bids":[[10,[["a","1",1,1,1]]]]', b'"bids":[[10,[[1,"1",1,1,1]]]]'),
        GOOD.replace(b'"bids":[[10,[["a","1",1,1,1]]]]', b'"bids":{}'),
        GOOD.replace(b'"bids":[[10,[["a","1",1,1,1]]]]', b'"bids":[10]'),
        GOOD.replace(b'"asks":[]', b'"asks":[[5,[["b","1",1,1,1]]]]'),  # crossed
        GOOD.replace(b'"bids":[[10,[["a","1",1,1,1]]]]', b'"bids":[[10,[["a","1",10001,1,1]]]]'),
        GOOD.replace(b'"tickSize":"1"', b'"tickSize":"x"'),
        GOOD.replace(b'"tickSize":"1"', b'"tickSize":"0"'),
        GOOD.replace(b'"tickSize":"1"', b'"tickSize":1'),
        GOOD.replace(b'"selfTrade":"cancel_maker"', b'"selfTrade":"nope"'),
        GOOD.replace(b'"market":"TEST",', b""),
        GOOD[: GOOD.index(b'"spec":')] + b'"spec":[]}',
        GOOD.replace(b",", b", "),  # not canonical spacing
        GOOD + b" ",
    ],
)
def test_decode_rejects_bad_input(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a canonical"):
        decode_book(data)


def test_decode_rejects_non_canonical_order() -> None:
    book = OrderBook(unit_spec())
    book.apply(NewOrder(1, 1, "a", "1", BUY, 10, 1))
    book.apply(NewOrder(2, 2, "a", "2", BUY, 11, 1))
    data = encode_book(book)
    swapped = data.replace(
        b'[[11,[["a","2",1,2,2]]],[10,[["a","1",1,1,1]]]]',
        b'[[10,[["a","1",1,1,1]]],[11,[["a","2",1,2,2]]]]',
    )
    assert swapped != data
    with pytest.raises(ValueError, match="canonical"):
        decode_book(swapped)


@CORE_PROFILE
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_decode_garbage_raises_value_error_only(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is checked above
        decode_book(data)


# ---------------------------------------------------------------- transactions


def test_apply_batch_rolls_back_on_exception_byte_identical() -> None:
    book = OrderBook(unit_spec())
    event_stream(book, random_log(seed=3, n=200))
    before = encode_book(book)
    cmds: list[Command] = [
        NewOrder(1000, 0, "z", "1", BUY, 105, 50),  # sweeps part of the book
        CancelOrder(1001, 0, "a", "1"),
        NewOrder(1002, 0, "z", "2", SELL, 95, 50),
        NewOrder(1003, 0, "z", "3", SELL, 100.5, 1),  # type: ignore[arg-type]
    ]
    with pytest.raises(TypeError):
        book.apply_batch(cmds)
    book._check()
    assert encode_book(book) == before


def test_apply_batch_strict_rolls_back_on_rejection() -> None:
    book = OrderBook(unit_spec())
    book.apply(NewOrder(1, 0, "a", "1", SELL, 100, 5))
    before = encode_book(book)
    batch: list[Command] = [
        NewOrder(2, 0, "b", "1", BUY, 100, 2),  # trades
        NewOrder(3, 0, "b", "2", BUY, 90, 2),  # rests
        NewOrder(4, 0, "b", "2", BUY, 80, 2),  # duplicate id: rejected
    ]
    out = book.apply_batch(batch, strict=True)
    assert len(out) == 1
    assert isinstance(out[0], OrderRejected)
    assert encode_book(book) == before
    # not strict: the rejection is just an event
    out = book.apply_batch(batch)
    assert isinstance(out[-1], OrderRejected)
    assert book.depth(SELL, 100) == 3


def fail_inside(book: OrderBook, cmd: Command, exc: Exception) -> None:
    with book.transaction() as same:
        assert same is book
        book.apply(cmd)
        raise exc


def test_transaction_rolls_back_and_nests() -> None:
    book = OrderBook(unit_spec())
    event_stream(book, random_log(seed=4, n=200))
    outer_before = encode_book(book)
    with book.transaction():
        book.apply(NewOrder(900, 0, "t", "1", BUY, 105, 30))
        inner_before = encode_book(book)
        with pytest.raises(KeyError):
            fail_inside(book, NewOrder(901, 0, "t", "2", SELL, 95, 30), KeyError("boom"))
        assert encode_book(book) == inner_before
        book._check()
    assert encode_book(book) != outer_before  # the outer block committed
    with pytest.raises(RuntimeError):
        fail_inside(book, NewOrder(902, 0, "t", "3", SELL, 95, 30), RuntimeError())
    assert encode_book(book) == inner_before


# ---------------------------------------------------------------- determinism


def test_replaying_a_log_gives_byte_identical_events_and_hash() -> None:
    log = random_log(seed=5, n=2000)
    first, second = OrderBook(unit_spec()), OrderBook(unit_spec())
    stream1 = event_stream(first, log)
    stream2 = event_stream(second, log)
    assert stream1 == stream2
    assert first == second


def test_golden_replay() -> None:
    """Pins the behaviour: a change here is a change to the matching rules or formats."""
    for mode, spec in (
        ("maker", unit_spec()),
        ("taker", unit_spec(SelfTradePrevention.CANCEL_TAKER)),
    ):
        book = OrderBook(spec)
        stream = event_stream(book, random_log(seed=6, n=1000))
        digest = (
            hashlib.sha256(stream).hexdigest()[:16],
            hashlib.sha256(encode_book(book)).hexdigest()[:16],
        )
        assert digest == GOLDEN[mode], (mode, digest)


GOLDEN = {
    "maker": ("1dd38c19611ba895", "dd4d2308013e378b"),
    "taker": ("ea964d6f5998d3f5", "22faf5d92cad7ac6"),
}


def test_the_book_owns_no_shared_state() -> None:
    a, b = OrderBook(unit_spec()), OrderBook(unit_spec())
    a.apply(NewOrder(1, 0, "x", "1", BUY, 10, 1))
    assert len(b) == 0
    assert b.best_bid() is None


def test_ioc_fok_in_log_helpers() -> None:
    # keep the module's imports honest: IOC and FOK appear in the random logs
    kinds = {c.tif for c in random_log(seed=7, n=200) if isinstance(c, NewOrder)}
    assert {IOC, FOK} <= kinds
