"""Batched ``submit_order``: many signed orders in one request, answered per order.

A client that sends orders in bursts (a market maker's cancel/replace) pays the request's
own costs (HTTP, routing, JSON framing) once per batch instead of once per order. The
batch is only an envelope: each element is a complete signed ``submit_order`` payload,
verified and checked alone, and answered alone, in the same order. A bad element refuses
only itself. The envelope is checked as a whole first (a list, 1 to
`MAX_SUBMIT_ORDERS` elements, at most `MAX_SUBMIT_BYTES` of compact JSON), and refused as
a whole (``ERR_BAD_REQUEST``) before any element is looked at. docs/protocol.md
("Batches") is the specification.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from exchange.protocol._errors import BadMessage, error_string
from exchange.protocol._fields import wire_object
from exchange.protocol._messages import SubmitReply
from transports import JSON

__all__ = [
    "MAX_SUBMIT_BYTES",
    "MAX_SUBMIT_ORDERS",
    "SUBMIT_ERROR_FIELD",
    "batch_reply",
    "batch_reply_from_wire",
    "submit_batch",
    "submit_batch_bytes",
]

MAX_SUBMIT_ORDERS: Final = 256
"""The most signed orders one ``submit_order`` batch may carry."""

MAX_SUBMIT_BYTES: Final = 256 * 1024
"""The most bytes a batch may take as compact JSON (a signed order is ~300-400 bytes,
so 256 of them fit with room; the transport's own bound on a body is 1 MiB)."""

SUBMIT_ERROR_FIELD: Final = "error"
"""The field of a batch reply's element that carries that order's refusal."""


def submit_batch_bytes(orders: Sequence[JSON]) -> int:
    """The size of `orders` as compact JSON (``[a,b,...]``), the measure of the bytes
    limit: the same whatever whitespace or compression the request travelled with."""
    return len(json.dumps(orders, separators=(",", ":")))


def submit_batch(payload: JSON) -> list[JSON] | None:
    """The orders of a batched ``submit_order`` payload; None for a single order's.

    A JSON array is a batch; anything else is one order (checked by the single path, as
    the seed's payload always was).

    Raises:
        BadMessage: an empty batch, more than `MAX_SUBMIT_ORDERS` orders, or more than
            `MAX_SUBMIT_BYTES` (``ERR_BAD_REQUEST``; no order of it is looked at).
    """
    if not isinstance(payload, list):
        return None
    if not 1 <= len(payload) <= MAX_SUBMIT_ORDERS:
        raise BadMessage(
            f"orders: a batch is a list of 1 to {MAX_SUBMIT_ORDERS} signed orders,"
            f" not {len(payload)}"
        )
    size = submit_batch_bytes(payload)
    if size > MAX_SUBMIT_BYTES:
        raise BadMessage(f"orders: a batch takes at most {MAX_SUBMIT_BYTES} bytes, not {size}")
    return payload


def batch_reply(results: Sequence[JSON | Exception]) -> JSON:
    """The reply to a batch: per order, its ``{"seq", "orderId"}`` or ``{"error":
    "<CODE>: <detail>"}`` (the string a single request would have been refused with)."""
    return [
        {SUBMIT_ERROR_FIELD: error_string(result)} if isinstance(result, Exception) else result
        for result in results
    ]


def batch_reply_from_wire(reply: JSON, count: int) -> list[SubmitReply | str]:
    """Parse the reply to a batch of `count` orders: per order, its `SubmitReply` or
    its refusal (the ``"<CODE>: <detail>"`` string).

    Raises:
        BadMessage: not a list of `count` such elements.
    """
    if not isinstance(reply, list) or len(reply) != count:
        raise BadMessage(f"submit_order reply: must be a list of {count} results")
    results: list[SubmitReply | str] = []
    for item in reply:
        if isinstance(item, dict) and SUBMIT_ERROR_FIELD in item:
            obj = wire_object(item, "result", frozenset({SUBMIT_ERROR_FIELD}))
            error = obj[SUBMIT_ERROR_FIELD]
            if not isinstance(error, str):
                raise BadMessage("error: must be a string")
            results.append(error)
        else:
            results.append(SubmitReply.from_wire(item))
    return results
