"""What the client shows: records (plain dicts), written as text lines or JSON lines.

Every record has an ``"event"`` key. The kinds, in the order a client usually meets them:

``started``    the client serves `orderbook_updated` (clientId)
``submitted``  the submit_order worker made the command durable (seq, orderId, op)
``refused``    the submit_order worker refused it (error: the ``ERR_*`` string)
``book``       the replica moved to a new verified version (seq, root, book hash, top
               of the book; ``complete: false`` when events of versions skipped while
               running are gone from the DHT, so some fills may not be shown)
``trade``      text only: a trade of anyone, from the versions it verified (the tape)
``accepted``, ``rested``, ``fill``, ``cancelled``, ``rejected``, ``modified``
               events of this client's own orders, from the versions it verified
``orders``     this client's resting orders, when they change
``warning``    a hash that was ignored, a worker that does not answer
``done``       with ``--once``: the order's outcome is in the replica (seq, book hash,
               outcome)

Prices and amounts are decimal strings, as on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["REJECT_TEXT", "Emit", "Record", "TextOrJsonWriter", "describe_record", "format_text"]

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


REJECT_TEXT = {
    "ERR_ORDER_UNKNOWN": "no resting order of yours has this id",
    "ERR_ORDER_DUPLICATE_ID": "you already have a resting order with this id",
    "ERR_EXEC_POST_ONLY_WOULD_CROSS": "post-only, and it would have traded on arrival",
    "ERR_EXEC_FOK_NOT_FILLABLE": "fill-or-kill, and the book could not fill all of it",
    "ERR_PARAM_MODIFY_NO_CHANGE": "the modify changes nothing",
}
"""What each of the matcher's reject codes means to the trader (others: the code)."""


def describe_record(record: Record) -> str | None:
    """A short sentence for a record of the client's own orders, or None for others."""
    r = record
    kind = r.get("event")
    if kind in ("accepted", "rested"):
        price = r["price"] if r.get("price") is not None else "market"
        verb = "order accepted" if kind == "accepted" else "resting"
        return f"seq {r['seq']}: {verb} {r['orderId']}: {r['side']} {r['amount']} @ {price}"
    if kind == "fill":
        verb = "bought" if r["side"] == "buy" else "sold"
        return (
            f"seq {r['seq']}: {r['orderId']} {verb} {r['amount']} @ {r['price']} "
            f"({r['role']}, against {r['counterparty']})"
        )
    if kind == "cancelled":
        if r.get("reason") == "user":
            return f"seq {r['seq']}: cancelled {r['orderId']}: {r['amount']} taken off the book"
        return (
            f"seq {r['seq']}: {r['orderId']}: {r['amount']} not filled, not resting ({r['reason']})"
        )
    if kind == "rejected":
        what = "cancel of" if r.get("op") == "cancel" else "order"
        verb = "failed" if r.get("op") == "cancel" else "rejected"
        reason = REJECT_TEXT.get(r["reason"], r["reason"])
        return f"seq {r['seq']}: {what} {r['orderId']} {verb}: {reason} ({r['reason']})"
    if kind == "modified":
        return (
            f"seq {r['seq']}: modified {r['orderId']}: {r['amount']} @ {r['price']} "
            f"(was {r['oldAmount']} @ {r['oldPrice']})"
        )
    return None


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
        what = f"cancel of {r['orderId']}" if r.get("op") == "cancel" else f"order {r['orderId']}"
        return f"{what} sent: journaled by the sequencer as seq {r['seq']}"
    if kind == "refused":
        return f"order refused: {r['error']}"
    if kind == "book":
        gap = ""
        if not r.get("complete", True):
            gap = (
                " (events of the versions skipped since the last one are gone from the DHT:"
                " fills among them are not shown; the book is exact)"
            )
        book = (r["book"] or "empty")[:12]
        return f"book v{r['seq']} [{book}] bid {_level(r['bid'])} | ask {_level(r['ask'])}{gap}"
    if kind == "trade":
        verb = "buy" if r["side"] == "buy" else "sell"
        return f"seq {r['seq']} trade {r['tradeId']}: {r['amount']} @ {r['price']} ({verb} taker)"
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
        outcome = r.get("outcome")
        where = f"replica at seq {r['seq']}, book {r['book'] or 'empty'}"
        return f"done: {outcome}; {where}" if outcome else f"done: {where}"
    described = describe_record(record)
    return described if described is not None else json.dumps(record)
