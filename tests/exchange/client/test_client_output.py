"""The client's text lines: one per record kind, none of them a crash."""

from __future__ import annotations

import io
import json

import pytest

from exchange.client._output import Record, TextOrJsonWriter, format_text

LEVEL = {"price": "100.00", "amount": "2.000"}


@pytest.mark.parametrize(
    ("record", "text"),
    [
        (
            {"event": "started", "clientId": "a", "grape": "http://g:1"},
            "client a watching the book through http://g:1",
        ),
        (
            {"event": "submitted", "seq": 3, "orderId": "a-1"},
            "order a-1 sent: journaled by the sequencer as seq 3",
        ),
        (
            {"event": "refused", "error": "ERR_VALIDATION: x: y"},
            "order refused: ERR_VALIDATION: x: y",
        ),
        (
            {
                "event": "book",
                "seq": 4,
                "root": "r",
                "book": "0123456789abcdef",
                "bid": LEVEL,
                "ask": None,
                "complete": False,
            },
            "book v4 [0123456789ab] bid 2.000 @ 100.00 | ask - (events of the versions"
            " skipped since the last one are gone from the DHT: fills among them are not"
            " shown; the book is exact)",
        ),
        (
            {
                "event": "accepted",
                "seq": 1,
                "orderId": "a-1",
                "side": "buy",
                "price": None,
                "amount": "1.000",
            },
            "seq 1: order accepted a-1: buy 1.000 @ market",
        ),
        (
            {
                "event": "rested",
                "seq": 1,
                "orderId": "a-1",
                "side": "sell",
                "price": "9.00",
                "amount": "1.000",
            },
            "seq 1: resting a-1: sell 1.000 @ 9.00",
        ),
        (
            {
                "event": "fill",
                "seq": 2,
                "tradeId": "2.1",
                "orderId": "a-1",
                "role": "maker",
                "side": "sell",
                "price": "9.00",
                "amount": "0.500",
                "counterparty": "b",
            },
            "seq 2: a-1 sold 0.500 @ 9.00 (maker, against b)",
        ),
        (
            {
                "event": "cancelled",
                "seq": 5,
                "orderId": "a-1",
                "side": "buy",
                "price": "9.00",
                "amount": "0.500",
                "reason": "user",
            },
            "seq 5: cancelled a-1: 0.500 taken off the book",
        ),
        (
            {"event": "rejected", "seq": 6, "orderId": "a-2", "reason": "ERR_ORDER_UNKNOWN"},
            "seq 6: order a-2 rejected: no resting order of yours has this id (ERR_ORDER_UNKNOWN)",
        ),
        (
            {
                "event": "modified",
                "seq": 7,
                "orderId": "a-1",
                "side": "buy",
                "price": "9.50",
                "amount": "1.000",
                "oldPrice": "9.00",
                "oldAmount": "2.000",
                "priorityKept": False,
            },
            "seq 7: modified a-1: 1.000 @ 9.50 (was 2.000 @ 9.00)",
        ),
        ({"event": "orders", "seq": 7, "orders": []}, "my resting orders: none"),
        (
            {
                "event": "orders",
                "seq": 7,
                "orders": [
                    {"orderId": "a-1", "side": "buy", "price": "9.50", "remaining": "1.000"}
                ],
            },
            "my resting orders: a-1 buy 1.000 @ 9.50",
        ),
        ({"event": "warning", "message": "m"}, "warning: m"),
        ({"event": "done", "seq": 7, "book": None}, "done: replica at seq 7, book empty"),
        (
            {"event": "submitted", "seq": 9, "orderId": "a-1", "op": "cancel"},
            "cancel of a-1 sent: journaled by the sequencer as seq 9",
        ),
        (
            {
                "event": "rejected",
                "seq": 9,
                "orderId": "x",
                "reason": "ERR_ORDER_UNKNOWN",
                "op": "cancel",
            },
            "seq 9: cancel of x failed: no resting order of yours has this id (ERR_ORDER_UNKNOWN)",
        ),
        (
            {
                "event": "cancelled",
                "seq": 5,
                "orderId": "a-1",
                "side": "buy",
                "price": None,
                "amount": "0.500",
                "reason": "ioc",
            },
            "seq 5: a-1: 0.500 not filled, not resting (ioc)",
        ),
        (
            {
                "event": "trade",
                "seq": 4,
                "tradeId": "4.1",
                "side": "sell",
                "price": "9.00",
                "amount": "1.000",
            },
            "seq 4 trade 4.1: 1.000 @ 9.00 (sell taker)",
        ),
        (
            {
                "event": "book",
                "seq": 4,
                "root": "r",
                "book": None,
                "bid": None,
                "ask": None,
                "complete": True,
            },
            "book v4 [empty] bid - | ask -",
        ),
        (
            {"event": "done", "seq": 9, "book": "h", "outcome": "cancelled a-1"},
            "done: cancelled a-1; replica at seq 9, book h",
        ),
        ({"event": "novel", "x": 1}, '{"event": "novel", "x": 1}'),
    ],
)
def test_format_text(record: Record, text: str) -> None:
    assert format_text(record) == text


def test_writer_json_and_text_lines() -> None:
    out = io.StringIO()
    TextOrJsonWriter(out, as_json=True)({"event": "done", "seq": 1, "book": "h"})
    TextOrJsonWriter(out, as_json=False, prefix="[a] ")({"event": "warning", "message": "m"})
    first, second = out.getvalue().splitlines()
    assert json.loads(first) == {"event": "done", "seq": 1, "book": "h"}
    assert second == "[a] warning: m"
