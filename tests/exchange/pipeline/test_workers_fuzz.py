"""Garbage in, a clear error out: both workers' boundaries under Hypothesis.

Whatever JSON arrives, `submit_order` and `process_order` reply with data or with an
`ERR_VALIDATION`/`ERR_BAD_REQUEST` string; never `ERR_INTERNAL`, never a crash, and a
refused payload stores nothing.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.keys import SEQUENCER_KEY, client_key, signed

from exchange.protocol import BadMessage, Refused, entry_from_wire, entry_to_wire, error_string
from exchange.sequencer import Journal, SubmitWorker
from orderbook_core import DEFAULT_SPEC, ValidationError
from transports import MemoryNetwork, MemoryTransport

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_json = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    ["op", "clientId", "orderId", "side", "type", "price", "amount", "tif", "postOnly", "x"]
)
_values = st.sampled_from(
    ["buy", "Sell", "new", "cancel", "modify", "c1", "_1", "100", "0.5", "-1", "1e3", "GTC"]
)
_near_orders = st.dictionaries(_keys, _values | _scalars, max_size=8)
_payloads = _json | _near_orders
_a_command = st.just(
    {"clientId": "c1", "orderId": "o1", "side": "buy", "price": "1", "amount": "1"}
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=_payloads)
def test_submit_replies_or_refuses_cleanly(payload: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp, Journal(Path(tmp) / "j.db") as journal:
        worker = SubmitWorker(
            MemoryTransport(MemoryNetwork()), journal, clock=lambda: 1, signing_key=SEQUENCER_KEY
        )

        async def main() -> None:
            reply: Any = None
            refused: Exception | None = None
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                # Signed as a client would (or left as it is when it cannot be: a NaN
                # has no canonical JSON; then it is refused as unsigned).
                sent = payload
                if isinstance(payload, dict):
                    with contextlib.suppress(ValueError):
                        sent = signed(payload, client_key(str(payload.get("clientId"))))
                try:
                    reply = await worker.submit(sent)
                except (ValidationError, Refused) as exc:
                    refused = exc
                tg.cancel_scope.cancel()
            if refused is not None:
                assert journal.head() == 0
                if isinstance(refused, Refused):
                    assert refused.code in ("ERR_VALIDATION", "ERR_AUTH")
                    # ERR_AUTH: what cannot be signed, or a new order without its id
                    if refused.code == "ERR_AUTH":
                        assert sent is payload or "orderId" not in payload
            else:
                order_id = payload.get("orderId", "_1")
                assert reply == {"seq": 1, "orderId": order_id}
                assert journal.head() == 1
                entry = journal.get(1)
                assert entry is not None
                assert entry.wire["orderId"] == order_id

        anyio.run(main)


@settings(max_examples=200, deadline=None)
@given(
    payload=_json
    | st.fixed_dictionaries({"seq": _scalars, "ts": _scalars, "command": _json | _a_command})
)
def test_process_request_shape_is_checked(payload: Any) -> None:
    try:
        entry = entry_from_wire(payload, DEFAULT_SPEC)
    except (BadMessage, ValidationError) as exc:
        refused: Exception | None = exc
    else:
        refused = None
        seq, ts, command = entry.seq, entry.ts, entry.wire
        assert type(seq) is int
        assert seq >= 1
        assert type(ts) is int
        assert ts >= 0
        assert isinstance(command, dict)
        assert entry_to_wire(entry) == payload
    if refused is not None:
        # The shape is checked first (ERR_BAD_REQUEST), then the command (ERR_VALIDATION).
        code = "ERR_VALIDATION: " if isinstance(refused, ValidationError) else "ERR_BAD_REQUEST: "
        assert error_string(refused).startswith(code)
