"""Applying one journal entry to a book: the one way a command reaches the core.

The matcher applies entries with it, a replica follows versions by applying their
commands with it, `dex replay` recomputes the book with it, and the tests check all
three against it, so "what entry N does to the book" is written once. It is part of
the protocol: every peer must get the same book from the same entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from orderbook_core import Event, OrderBook, parse_command

__all__ = ["EntryLike", "apply_entry"]


class EntryLike(Protocol):
    """A sequenced command: a journal entry, a `process_order` request, a log entry."""

    @property
    def seq(self) -> int: ...

    @property
    def ts(self) -> int: ...

    @property
    def command(self) -> Mapping[str, Any]: ...


def apply_entry(book: OrderBook, entry: EntryLike) -> tuple[Event, ...]:
    """Validate `entry`'s command with the core's validator and apply it to `book`.

    Returns:
        The command's events (a rejected order is an event, not an error).

    Raises:
        orderbook_core.ValidationError: the command breaks a rule; `book` is unchanged.
    """
    command = parse_command(dict(entry.command), book.spec, seq=entry.seq, ts=entry.ts)
    return book.apply(command)
