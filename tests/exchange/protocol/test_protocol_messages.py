"""The typed messages: each shape round-trips, and every malformed one names its field."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.protocol import (
    MAX_BATCH,
    MAX_WAIT_MS,
    ORDERBOOK_HEAD,
    ORDERBOOK_UPDATED,
    PROCESS_ORDER,
    SUBMIT_ORDER,
    BadMessage,
    BadRootHash,
    Head,
    HeadRequest,
    ProcessBatch,
    ProcessReply,
    SubmitReply,
    expected_seq,
    parse_entry,
    root_hash_from_wire,
    seq_gap,
)
from orderbook_core import DEFAULT_SPEC

ROOT = "ab" * 20
COMMAND = {"op": "new", "clientId": "c1", "orderId": "o1", "side": "buy", "price": "1",
           "amount": "1"}  # fmt: skip


def entry(seq: int) -> dict[str, Any]:
    return {"seq": seq, "ts": 1_000, "command": COMMAND}


def test_the_service_names_are_the_challenges() -> None:
    assert (SUBMIT_ORDER, PROCESS_ORDER, ORDERBOOK_HEAD, ORDERBOOK_UPDATED) == (
        "submit_order", "process_order", "orderbook_head", "orderbook_updated"
    )  # fmt: skip


def test_replies_round_trip() -> None:
    assert SubmitReply.from_wire({"seq": 3, "orderId": "o1"}) == SubmitReply(3, "o1")
    assert SubmitReply(3, "o1").to_wire() == {"seq": 3, "orderId": "o1"}
    assert ProcessReply.from_wire({"seq": 3, "root": ROOT}).to_wire() == {"seq": 3, "root": ROOT}
    assert Head.from_wire({"seq": 0, "root": None}) == Head(0, None)
    assert Head(4, ROOT).to_wire() == {"seq": 4, "root": ROOT}


@pytest.mark.parametrize(
    ("reply", "field"),
    [
        (None, "submit_order reply"),
        ({"seq": 0, "orderId": "o"}, "seq"),
        ({"seq": True, "orderId": "o"}, "seq"),
        ({"seq": 1, "orderId": 5}, "orderId"),
        ({"seq": 1, "orderId": "o", "x": 1}, "x"),
    ],
)
def test_a_bad_submit_reply_names_its_field(reply: Any, field: str) -> None:
    with pytest.raises(BadMessage, match=f"^{field}"):
        SubmitReply.from_wire(reply)


@pytest.mark.parametrize(
    "reply",
    [{"seq": 1, "root": None}, {"seq": 0, "root": ROOT}, {"seq": -1, "root": None},
     {"seq": 1, "root": "AB" * 20}, [1, ROOT]],
)  # fmt: skip
def test_a_bad_head_is_refused(reply: Any) -> None:
    with pytest.raises(BadMessage):
        Head.from_wire(reply)


def test_a_single_entry_and_a_run_both_parse_to_a_batch() -> None:
    single = ProcessBatch.from_wire(entry(5), DEFAULT_SPEC)
    assert single == ProcessBatch((parse_entry(5, 1_000, COMMAND, DEFAULT_SPEC),))
    assert single.to_wire() == entry(5)  # a run of one keeps the single form on the wire
    run = ProcessBatch.from_wire({"entries": [entry(5), entry(6), entry(7)]}, DEFAULT_SPEC)
    assert (run.first, run.last, len(run.entries)) == (5, 7, 3)
    assert run.to_wire() == {"entries": [entry(5), entry(6), entry(7)]}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"entries": []}, "entries"),
        ({"entries": [entry(1), entry(3)]}, "entries: seq 3 does not follow 1"),
        ({"entries": [entry(2), entry(1)]}, "entries: seq 1 does not follow 2"),
        ({"entries": [entry(i) for i in range(1, MAX_BATCH + 2)]}, "entries"),
        ({"entries": [entry(1)], "seq": 1}, "seq: unknown field"),
        ({"entries": [{"seq": 1, "ts": -1, "command": {}}]}, "ts"),
        ({"seq": 1, "ts": 1, "command": []}, "command"),
        ({"seq": 2**53, "ts": 1, "command": {}}, "seq"),
    ],
)
def test_a_bad_batch_names_what_is_wrong(payload: Any, message: str) -> None:
    with pytest.raises(BadMessage, match=f"^{message}"):
        ProcessBatch.from_wire(payload, DEFAULT_SPEC)


def test_head_requests() -> None:
    assert HeadRequest.from_wire(None) == HeadRequest()
    assert HeadRequest().to_wire() is None
    assert HeadRequest.from_wire({"after": 4, "waitMs": 250}) == HeadRequest(4, 250)
    assert HeadRequest(4, 250).to_wire() == {"after": 4, "waitMs": 250}
    for bad in ({"after": -1}, {"after": 1, "waitMs": MAX_WAIT_MS + 1}, {"waitMs": 5}, 7):
        with pytest.raises(BadMessage):
            HeadRequest.from_wire(bad)


def test_root_hashes_and_seq_gaps() -> None:
    assert root_hash_from_wire(ROOT) == ROOT
    with pytest.raises(BadRootHash):
        root_hash_from_wire(ROOT.upper())
    gap = seq_gap(17)
    assert str(gap) == "ERR_SEQ_GAP: expected 17"
    assert expected_seq(str(gap)) == 17
    assert expected_seq("ERR_UNAVAILABLE: expected 17") is None


@given(st.integers(1, 2**53 - MAX_BATCH), st.integers(1, 50), st.integers(0, 2**53 - 1))
def test_runs_round_trip(first: int, size: int, ts: int) -> None:
    commands = [{**COMMAND, "orderId": f"o{i}"} for i in range(size)]
    wire = {"entries": [{"seq": first + i, "ts": ts, "command": commands[i]} for i in range(size)]}
    batch = ProcessBatch.from_wire(wire, DEFAULT_SPEC)
    assert ProcessBatch.from_wire(batch.to_wire(), DEFAULT_SPEC) == batch
    assert (batch.first, batch.last) == (first, first + size - 1)
