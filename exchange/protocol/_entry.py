"""A sequenced command, the one form a command has from the sequencer to every replica.

The sequencer validates a command, numbers and timestamps it (`new_entry`); from there
on it travels as an `Entry`: the typed command (which carries its seq and ts) with its
wire form as journaled, so it is neither parsed nor encoded again. Where an entry
enters a process it is decoded once, here, and its command validated by the core's
validator (`orderbook_core.parse_command`): from ``process_order``'s wire
(`entry_from_wire`), from a row of the journal or of the matcher's applied log
(`entry_from_row`), from a version's command page (`parse_entry`).

`apply_entry` is what entry N does to a book, written once: the matcher applies entries
with it, a replica follows versions with it, `dex replay` recomputes the book with it.
It is part of the protocol: every peer must get the same book from the same entries.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from exchange.protocol._errors import BadMessage, ReplayError
from exchange.protocol._fields import wire_count, wire_object
from orderbook_core import (
    Command,
    Event,
    MarketSpec,
    OrderBook,
    ValidationError,
    canonical_json,
    command_to_wire,
    parse_command,
)
from transports import JSON

__all__ = [
    "Entry",
    "apply_entry",
    "entry_from_row",
    "entry_from_wire",
    "entry_to_row",
    "entry_to_wire",
    "new_entry",
    "parse_entry",
]

_FIELDS = frozenset({"seq", "ts", "command"})


class Entry(NamedTuple):
    """Command number `seq`, timestamped `ts` (ms) by the sequencer.

    `command` is the typed command (it holds `seq` and `ts`); `wire` is its JSON object
    as the sequencer journaled it (`orderbook_core.command_to_wire`: ``op``,
    ``clientId`` and ``orderId`` always present), which the journal, ``process_order``,
    the applied log and the version's command pages carry as it is.
    """

    command: Command
    wire: dict[str, Any]

    @property
    def seq(self) -> int:
        return self.command.seq

    @property
    def ts(self) -> int:
        return self.command.ts


def new_entry(command: Command, spec: MarketSpec) -> Entry:
    """The entry of a command validated and numbered by the sequencer: its wire form is
    encoded here, once."""
    return Entry(command, command_to_wire(command, spec))


def parse_entry(seq: int, ts: int, wire: dict[str, Any], spec: MarketSpec) -> Entry:
    """Validate command `wire` as number `seq` at `ts`. O(len(wire)).

    Raises:
        orderbook_core.ValidationError: the command breaks a rule (field and rule said).
    """
    return Entry(parse_command(wire, spec, seq=seq, ts=ts), wire)


def entry_from_wire(payload: JSON, spec: MarketSpec) -> Entry:
    """An entry as ``process_order`` carries it: ``{"seq": 1.., "ts": 0.., "command": {...}}``.

    Raises:
        BadMessage: not that shape (checked first: ``ERR_BAD_REQUEST``).
        orderbook_core.ValidationError: the command breaks a rule (``ERR_VALIDATION``).
    """
    obj = wire_object(payload, "payload", _FIELDS)
    seq = wire_count(obj.get("seq"), "seq", 1)
    ts = wire_count(obj.get("ts"), "ts")
    command = obj.get("command")
    if not isinstance(command, dict):
        raise BadMessage("command: must be an object")
    return parse_entry(seq, ts, command, spec)


def entry_to_wire(entry: Entry) -> dict[str, Any]:
    """``{"seq", "ts", "command"}``: `entry_from_wire`'s input."""
    return {"seq": entry.seq, "ts": entry.ts, "command": entry.wire}


def entry_to_row(entry: Entry) -> tuple[int, int, str]:
    """``(seq, ts, command)`` as the journal and the applied log store them: the command
    as canonical JSON.

    Raises:
        TypeError, ValueError: the wire form is not JSON (nothing to store).
    """
    return entry.seq, entry.ts, canonical_json(entry.wire)


def entry_from_row(seq: int, ts: int, text: str, spec: MarketSpec, *, source: str) -> Entry:
    """The entry stored as `entry_to_row` wrote it, in `source` (what is named in errors).

    Raises:
        ReplayError: the stored command is not one (the file is not what it should be).
    """
    try:
        return parse_entry(seq, ts, json.loads(text), spec)
    except ValidationError as exc:
        raise ReplayError(f"{source} entry {seq} is not a command: {exc}") from exc


def apply_entry(book: OrderBook, entry: Entry) -> tuple[Event, ...]:
    """Apply `entry`'s command to `book` (it was validated where it was decoded).

    Returns:
        The command's events (a rejected order is an event, not an error).
    """
    return book.apply(entry.command)
