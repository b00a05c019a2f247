"""The matcher's `BatchDecoder` gives what `ProcessBatch.from_wire` gives, or its error.

It decodes the sequencer's own command forms without the validator; every entry must
still be the validated one (same command, same wire form), and every payload the
protocol refuses must be refused with the same error.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from exchange.matcher._batch import BatchDecoder
from exchange.protocol import MAX_BATCH, MAX_SEQ, BadMessage, ProcessBatch
from orderbook_core import DEFAULT_SPEC, ValidationError, command_to_wire, parse_command

SPEC = DEFAULT_SPEC


def _journaled(rng: random.Random, n: int) -> dict[str, Any]:
    """A command as the sequencer journals it (validated, then `command_to_wire`)."""
    roll = rng.random()
    if roll < 0.15:
        wire: dict[str, Any] = {"op": "cancel", "clientId": "c1", "orderId": f"c1-{n - 1}"}
    elif roll < 0.2:
        wire = {"op": "modify", "clientId": "c1", "orderId": f"c1-{n - 2}", "amount": "0.5"}
    elif roll < 0.25:
        wire = {"op": "new", "clientId": "c2", "orderId": f"c2-{n}", "side": "sell",
                "ordType": "market", "amount": "1"}  # fmt: skip
    else:
        wire = {"op": "new", "clientId": f"c{n % 3}", "orderId": f"c{n % 3}-{n}",
                "side": rng.choice(("buy", "sell")),
                "price": f"{rng.randint(9900, 10100) / 100:.2f}",
                "amount": f"{rng.randint(1, 40) / 8:.3f}",
                "tif": rng.choice(("GTC", "IOC", "FOK")),
                "postOnly": False}  # fmt: skip
    return command_to_wire(parse_command(wire, SPEC, seq=n, ts=n), SPEC)


def _same(payload: Any, decoder: BatchDecoder) -> None:
    expected = ProcessBatch.from_wire(payload, SPEC)
    got = decoder.decode(payload)
    assert got.entries == expected.entries
    assert [e.wire for e in got.entries] == [e.wire for e in expected.entries]


def test_batches_decode_as_validated() -> None:
    rng = random.Random(5)
    decoder = BatchDecoder(SPEC)
    seq = 1
    for _ in range(200):
        size = rng.choice((1, 1, 2, 5, 30))
        items = [
            {"seq": s, "ts": 1_700_000_000_000 + s, "command": _journaled(rng, s)}
            for s in range(seq, seq + size)
        ]
        seq += size
        _same(items[0] if size == 1 and rng.random() < 0.5 else {"entries": items}, decoder)


def _error(call: Any) -> tuple[type[BaseException], str]:
    with pytest.raises((BadMessage, ValidationError)) as info:
        call()
    return type(info.value), str(info.value)


GOOD = {"op": "cancel", "clientId": "a", "orderId": "a-1"}
NEW = {"op": "new", "clientId": "a", "orderId": "a-2", "side": "buy", "ordType": "limit",
       "price": "100.00", "amount": "1.000", "tif": "GTC", "postOnly": False}  # fmt: skip


@pytest.mark.parametrize(
    "payload",
    [
        [],
        "x",
        {"seq": 1, "ts": 1},
        {"seq": 1, "ts": 1, "command": GOOD, "extra": 1},
        {"seq": 0, "ts": 1, "command": GOOD},
        {"seq": True, "ts": 1, "command": GOOD},
        {"seq": MAX_SEQ + 1, "ts": 1, "command": GOOD},
        {"seq": 1, "ts": -1, "command": GOOD},
        {"seq": 1, "ts": 1, "command": [GOOD]},
        {"seq": 1, "ts": 1, "command": {**GOOD, "clientId": ""}},
        {"seq": 1, "ts": 1, "command": {**NEW, "price": "100.001"}},
        {"seq": 1, "ts": 1, "command": {**NEW, "side": "up"}},
        {"seq": 1, "ts": 1, "command": {**NEW, "postOnly": 1}},
        {"entries": []},
        {"entries": {}},
        {"entries": [{"seq": 1, "ts": 1, "command": GOOD}], "more": 1},
        {"entries": [{"seq": 1, "ts": 1, "command": GOOD}] * 2},
        {"entries": [{"seq": 2, "ts": 1, "command": GOOD}, {"seq": 1, "ts": 1, "command": GOOD}]},
        {"entries": [{"seq": 1, "ts": 1, "command": GOOD}, "x"]},
        {"entries": [{"seq": s, "ts": 1, "command": GOOD} for s in range(1, MAX_BATCH + 2)]},
    ],
)
def test_refused_as_the_protocol_refuses(payload: Any) -> None:
    decoder = BatchDecoder(SPEC)
    decoder.decode({"seq": 1, "ts": 1, "command": NEW})  # its price and amount are known
    assert _error(lambda: decoder.decode(payload)) == _error(
        lambda: ProcessBatch.from_wire(payload, SPEC)
    )
