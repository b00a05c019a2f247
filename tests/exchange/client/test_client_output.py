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
            "order a-1 accepted by the sequencer as seq 3",
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
            "book v4 [0123456789ab] bid 2.000 @ 100.00 | ask -"
            " (some skipped events were unavailable)",
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
            "seq 1 accepted a-1: buy 1.000 @ market",
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
            "seq 1 rested a-1: sell 1.000 @ 9.00",
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
            "seq 2 fill 2.1: a-1 sold 0.500 @ 9.00 as maker against b",
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
            "seq 5 cancelled a-1: 0.500 not filled (user)",
        ),
        (
            {"event": "rejected", "seq": 6, "orderId": "a-2", "reason": "ERR_ORDER_UNKNOWN"},
            "seq 6 rejected a-2: ERR_ORDER_UNKNOWN",
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
            "seq 7 modified a-1: 1.000 @ 9.50 (was 2.000 @ 9.00)",
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
