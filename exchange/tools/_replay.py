"""Recompute the book from the submit worker's journal, through the core alone.

The journal is the exchange's source of truth: every other copy of the book (the process
worker's, the versions in the DHT, each client's replica) is derived from it. Replaying
it here, with nothing but `orderbook_core`, gives the book hash every honest replica at
that sequence number must hold, so anyone can check a replica without trusting a worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from exchange.protocol import Entry, ReplayError, apply_entry
from exchange.tools._journal_view import open_journal
from exchange.versions import book_hash
from orderbook_core import DEFAULT_SPEC, Event, MarketSpec, OrderBook, Trade

__all__ = ["ReplayResult", "replay_journal"]


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """The book after applying journal entries 1..`seq`."""

    seq: int
    book: OrderBook
    book_hash: str | None
    trades: tuple[Trade, ...]


def replay_journal(
    path: str | Path,
    spec: MarketSpec = DEFAULT_SPEC,
    *,
    upto: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_entry: Callable[[Entry, tuple[Event, ...]], None] | None = None,
) -> ReplayResult:
    """Apply every journal entry in sequence order, up to `upto` (default: the head).

    Each entry is read (its command validated, `exchange.protocol.entry_from_row`) and
    applied (`exchange.protocol.apply_entry`) exactly as the matcher does. Entries
    appended while replaying are not included: the result is the book at the head seen
    at the start.

    Args:
        path: the submit worker's journal (SQLite); it is not created if missing.
        spec: the market.
        upto: stop after this sequence number.
        progress: called with ``(seq, upto)`` every 1000 entries and at the end.
        on_entry: called with each entry and the events the core made of it (what
            `dex order`, `dex orders` and `dex fills` read).

    Returns:
        The sequence number reached, the book, its `book_hash` and the trades made.

    Raises:
        ReplayError: the file does not exist or is not a journal, `upto` is beyond the
            head, sequence numbers have a gap, or an entry is not a valid command.
    """
    book = OrderBook(spec)
    trades: list[Trade] = []
    seq = 0
    with open_journal(path, spec) as journal:
        head = journal.head()
        if upto is None:
            upto = head
        elif upto > head:
            raise ReplayError(f"--upto {upto} is beyond the journal's head {head}")
        for entry in journal.entries():
            if entry.seq > upto:
                break
            if entry.seq != seq + 1:
                raise ReplayError(f"gap in the journal: seq {entry.seq} after {seq}")
            events = apply_entry(book, entry)
            trades.extend(e for e in events if isinstance(e, Trade))
            if on_entry is not None:
                on_entry(entry, events)
            seq = entry.seq
            if progress is not None and seq % 1000 == 0:
                progress(seq, upto)
    if progress is not None:
        progress(seq, upto)
    return ReplayResult(seq, book, book_hash(book), tuple(trades))
