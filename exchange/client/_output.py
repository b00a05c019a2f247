"""What the client shows: records (plain dicts), written as text lines or JSON lines.

Every record has an ``"event"`` key. The kinds, in the order a client usually meets them:

``started``    the client serves `orderbook_updated` (clientId)
``submitted``  the submit_order worker made the order durable (seq, orderId)
``refused``    the submit_order worker refused it (error: the ``ERR_*`` string)
``book``       the replica moved to a new verified version (seq, root, book hash, top
               of the book; ``complete: false`` when some skipped events are gone)
``accepted``, ``rested``, ``fill``, ``cancelled``, ``rejected``, ``modified``
               events of this client's own orders, from the versions it verified
``orders``     this client's resting orders, when they change
``warning``    a hash that was ignored, a worker that does not answer
``done``       with ``--once``: the order's outcome is in the replica (seq, book hash)

Prices and amounts are decimal strings, as on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["Emit", "Record", "TextOrJsonWriter"]

Record = dict[str, Any]
Emit = Callable[[Record], None]


class TextOrJsonWriter:
    """Writes each record as one line: JSON (``--json``) or short human text.

    Args:
        stream: where to write (flushed after every line, so a pipe sees it at once).
        as_json: one compact JSON object per line instead of text.
        prefix: what starts every text line, e.g. the client id.
    """

    def __init__(self, stream: TextIO, *, as_json: bool, prefix: str = "") -> None:
        self._stream = stream
        self._as_json = as_json
        self._prefix = prefix

    def __call__(self, record: Record) -> None:
        if self._as_json:
            line = json.dumps(record, separators=(",", ":"))
        else:
            line = self._prefix + format_text(record)
        self._stream.write(line + "\n")
        self._stream.flush()


def _level(level: Any) -> str:
    if not level:
        return "-"
    return f"{level['amount']} @ {level['price']}"


def format_text(record: Record) -> str:
    """Return one human-readable line for `record`."""
    kind = record.get("event")
    r = record
    if kind == "started":
        return f"client {r['clientId']} watching the book through {r['grape']}"
    if kind == "submitted":
        return f"order {r['orderId']} accepted by the sequencer as seq {r['seq']}"
    if kind == "refused":
        return f"order refused: {r['error']}"
    if kind == "book":
        gap = "" if r.get("complete", True) else " (some skipped events were unavailable)"
        book = (r["book"] or "empty")[:12]
        return f"book v{r['seq']} [{book}] bid {_level(r['bid'])} | ask {_level(r['ask'])}{gap}"
    if kind in ("accepted", "rested"):
        price = r["price"] if r["price"] is not None else "market"
        return f"seq {r['seq']} {kind} {r['orderId']}: {r['side']} {r['amount']} @ {price}"
    if kind == "fill":
        verb = "bought" if r["side"] == "buy" else "sold"
        return (
            f"seq {r['seq']} fill {r['tradeId']}: {r['orderId']} {verb} {r['amount']} @ "
            f"{r['price']} as {r['role']} against {r['counterparty']}"
        )
    if kind == "cancelled":
        return f"seq {r['seq']} cancelled {r['orderId']}: {r['amount']} not filled ({r['reason']})"
    if kind == "rejected":
        return f"seq {r['seq']} rejected {r['orderId']}: {r['reason']}"
    if kind == "modified":
        return (
            f"seq {r['seq']} modified {r['orderId']}: {r['amount']} @ {r['price']} "
            f"(was {r['oldAmount']} @ {r['oldPrice']})"
        )
    if kind == "orders":
        orders = r["orders"]
        if not orders:
            return "my resting orders: none"
        listed = ", ".join(
            f"{o['orderId']} {o['side']} {o['remaining']} @ {o['price']}" for o in orders
        )
        return f"my resting orders: {listed}"
    if kind == "warning":
        return f"warning: {r['message']}"
    if kind == "done":
        return f"done: replica at seq {r['seq']}, book {r['book'] or 'empty'}"
    return json.dumps(record)
