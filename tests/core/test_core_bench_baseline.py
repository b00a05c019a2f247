"""The core benchmark's naive book has the core's semantics on the benchmark's stream.

`bench/core_bench.py` compares the core with the lazy-delete naive book
(`bench/naive_book.py`) on the stream of `bench/core_stream.py`. The comparison means
something only if both do the same work: after every message of a few short streams,
the same fills (maker, taker, price, amount, in order) and at the end the same resting
orders in the same priority. Performance is never asserted here.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

from orderbook_core import DEFAULT_SPEC, OrderBook, OrderRejected, Trade, encode_book

# bench/ is scripts, not a package: put it on the path and import its modules by name
# (they are type-checked with bench/ itself).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
stream: Any = importlib.import_module("core_stream")
NaiveBook: Any = importlib.import_module("naive_book").NaiveBook
LIMIT, CANCEL = stream.LIMIT, stream.CANCEL


@pytest.mark.parametrize("seed", [1, 2, 42])
def test_naive_book_and_core_fill_and_rest_alike(seed: int) -> None:
    messages = stream.make_messages(3000, seed)
    kinds = {m[0] for m in messages}
    assert kinds == {LIMIT, CANCEL, "M"}
    assert any(m[0] == LIMIT and m[6] for m in messages)  # IOC orders are in the stream
    book, naive = OrderBook(DEFAULT_SPEC), NaiveBook()
    for cmd, m in zip(stream.typed_commands(messages), messages, strict=True):
        events = book.apply(cmd)
        assert not any(type(e) is OrderRejected for e in events), (m, events)
        core_fills = [
            (e.maker_order_id, e.taker_order_id, e.price, e.amount)
            for e in events
            if type(e) is Trade
        ]
        if m[0] == LIMIT:
            fills = naive.limit(m[2], m[3], m[4], m[5], m[6])
        elif m[0] == CANCEL:
            assert naive.cancel(m[2])
            fills = []
        else:
            fills = naive.modify(m[2], m[3], m[4])
        assert core_fills == fills, m
    assert stream.resting_core(book) == list(naive.orders())
    assert len(book) == naive.resting()


def test_the_drivers_agree() -> None:
    messages = stream.make_messages(5000, 7)
    core, _ = stream.run_core(messages)
    naive, _ = stream.run_naive(messages)
    assert stream.resting_core(core) == list(naive.orders())
    fields, n_fields = stream.run_core_fields(messages)
    batch, n_batch = stream.run_core_batch(messages)
    typed_batch, n_typed_batch = stream.run_core_batch(messages, compact=False)
    _, n_core = stream.run_core(messages)
    assert n_fields == n_batch == n_typed_batch == n_core
    for book in (fields, batch, typed_batch):
        assert encode_book(book) == encode_book(core)
