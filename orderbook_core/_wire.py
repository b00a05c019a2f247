"""Validation of untrusted wire input, and the normalized wire form of commands/events.

Every service boundary turns a JSON-decoded value into a typed command here, or into
one :class:`ValidationError` that names the field and the rule. Inside the core the
types are then trusted.

Decisions (also in docs/core.md):

* **Unknown fields are rejected** (``"foo: unknown field"``): a typo such as
  ``"postonly"`` must not silently become a plain order.
* **Numbers** (``price``, ``amount``) are decimal strings (``"100.5"``) or JSON
  integers. Refused: JSON floats (``100.5`` unquoted: binary floats are inexact),
  booleans (``true`` is an int in Python, not a number on our wire), NaN/Infinity,
  exponent notation (``"1e3"``), signs, spaces, and strings over 64 characters.
* **Market orders** say so explicitly with ``"ordType": "market"`` and carry no
  price. A missing price on a limit order is an error, never a market order: a
  client that forgets the price must not sweep the book.
* **Side** is ``"side": "buy"|"sell"``; ``"type": "Buy"|"Sell"`` is accepted as an
  alias (both case-insensitive); giving both with different values is an error.
"""

from __future__ import annotations

from typing import Any

from orderbook_core import _codec
from orderbook_core._codec import ID_RULE
from orderbook_core._errors import ValidationError
from orderbook_core._spec import MarketSpec
from orderbook_core._types import Command, Event

__all__ = [
    "ID_RULE",
    "ValidationError",
    "command_to_wire",
    "event_from_wire",
    "event_to_wire",
    "is_identifier",
    "parse_command",
]


def is_identifier(value: object) -> bool:
    """Whether `value` obeys the id rule of clientId and orderId (`ID_RULE`)."""
    return _codec.is_identifier(value)


def parse_command(
    payload: object,
    spec: MarketSpec,
    *,
    seq: int,
    ts: int,
    default_order_id: str | None = None,
) -> Command:
    """Turn a JSON-decoded wire payload into a typed command.

    The payload is the ``submit_order`` object of docs/protocol.md (see the module docstring for
    the rules). ``seq`` and ``ts`` are the sequencer's, not the client's. Fields are
    checked in a fixed order (op, unknown fields, clientId, orderId, then the op's
    own fields), so the error for a given payload is deterministic. O(len(payload)).

    Args:
        payload: the value ``json.loads`` produced (anything at all).
        spec: the market, for tick/lot size and limits.
        seq: the command's sequence number.
        ts: the command's timestamp (ms).
        default_order_id: used when a new order has no ``orderId``.

    Returns:
        A :class:`NewOrder`, :class:`CancelOrder` or :class:`ModifyOrder`.

    Raises:
        ValidationError: the payload breaks a rule; ``field`` and ``rule`` say which.
    """
    return _codec.parse_command(payload, spec, seq=seq, ts=ts, default_order_id=default_order_id)


def command_to_wire(cmd: Command, spec: MarketSpec) -> dict[str, Any]:
    """The normalized wire payload of a command (decimal strings, explicit defaults).

    ``parse_command(command_to_wire(c, spec), spec, seq=c.seq, ts=c.ts) == c`` for
    every command whose prices and amounts are within the spec. ``seq`` and ``ts`` are
    not part of the payload (the sequencer assigns them). O(1).

    Raises:
        TypeError: ``cmd`` is not a command.
    """
    return _codec.command_to_wire(cmd, spec)


def event_to_wire(event: Event, spec: MarketSpec) -> dict[str, Any]:
    """The JSON-ready form of an event: ``{"type": "trade", "seq": 3, ...}``.

    Prices and amounts are decimal strings (a market order's price is ``null``),
    enums their values, names camelCase. O(1).

    Raises:
        TypeError: ``event`` is not an event.
    """
    return _codec.event_to_wire(event, spec)


def event_from_wire(obj: object, spec: MarketSpec) -> Event:
    """Parse :func:`event_to_wire` output back into the event. O(1).

    Raises:
        ValidationError: unknown type, missing or unknown field, or a bad value.
    """
    return _codec.event_from_wire(obj, spec)
