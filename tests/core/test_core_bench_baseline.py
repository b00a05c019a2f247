"""The core benchmark's naive book has the core's semantics on the benchmark's stream.

`bench/core_bench.py` compares the core with the lazy-delete naive book
(`bench/naive_book.py`) on the stream of `bench/core_stream.py`. The comparison means
something only if both do the same work: after every message of a few short streams,
the same fills (maker, taker, price, amount, in order) and at the end the same resting
orders in the same priority. Performance is never asserted here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from core_stream import (
    CANCEL,
    LIMIT,
    compact_commands,
    make_messages,
    resting_core,
    run_core,
    run_naive,
    typed_commands,
)
from naive_book import NaiveBook

from orderbook_core import DEFAULT_SPEC, OrderBook, OrderRejected, Trade


@pytest.mark.parametrize("seed", [1, 2, 42])
def test_naive_book_and_core_fill_and_rest_alike(seed: int) -> None:
    messages = make_messages(3000, seed)
    kinds = {m[0] for m in messages}
    assert kinds == {LIMIT, CANCEL, "M"}
    assert any(m[0] == LIMIT and m[6] for m in messages)  # IOC orders are in the stream
    book, naive = OrderBook(DEFAULT_SPEC), NaiveBook()
    for cmd, m in zip(typed_commands(messages), messages, strict=True):
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
    assert resting_core(book) == list(naive.orders())
    assert len(book) == naive.resting()


def test_the_drivers_agree_and_the_batch_path_too() -> None:
    messages = make_messages(5000, 7)
    core, _ = run_core(messages)
    naive, _ = run_naive(messages)
    batch = OrderBook(DEFAULT_SPEC)
    batch.apply_compact(compact_commands(messages))
    assert resting_core(core) == list(naive.orders()) == resting_core(batch)
