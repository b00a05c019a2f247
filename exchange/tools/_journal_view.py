"""Reading the sequencer's journal as an operator: `dex journal`, and the journal half of
`dex status`.

A `Journal` creates its file and tables when they are missing, which is right for the
sequencer and wrong for a tool pointed at a mistyped path or at some other SQLite file:
`open_journal` first checks, read-only, that the file exists and holds a journal, and
says so plainly otherwise (`ReplayError`, exit 2), instead of a `sqlite3` traceback.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from exchange.client.view import trade_time
from exchange.protocol import Entry, ReplayError, entry_to_wire
from exchange.sequencer import Journal
from orderbook_core import DEFAULT_SPEC, MarketSpec

__all__ = [
    "JOURNAL_HEADER",
    "entry_line",
    "entry_record",
    "file_head",
    "follow_entries",
    "open_journal",
    "orders_per_second",
    "select_entries",
]

JOURNAL_HEADER = (
    f"{'seq':>6}  {'time':8}  {'client':12} {'op':6} {'orderId':20} {'side':4} "
    f"{'price':>10} {'amount':>10} tif"
)


def open_journal(path: str | Path, spec: MarketSpec = DEFAULT_SPEC) -> Journal:
    """Open an existing journal of market `spec`, refusing anything else.

    Raises:
        ReplayError: no file at `path`, or a file that is not the sequencer's journal.
    """
    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"no journal at {path}")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            row = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'journal'"
            ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise ReplayError(f"{path} is not a journal: {exc}") from None
    if row is None:
        raise ReplayError(f"{path} is not a journal: it has no journal table")
    try:
        return Journal(path, spec)
    except sqlite3.DatabaseError as exc:
        raise ReplayError(f"{path}: cannot open the journal: {exc}") from None


def entry_record(entry: Entry, rejected: str | None = None) -> dict[str, Any]:
    """One entry as JSON: ``{"seq", "ts", "command"}``, and ``"rejected": <reason>``
    when the matcher rejected it."""
    record = entry_to_wire(entry)
    if rejected is not None:
        record["rejected"] = rejected
    return record


def entry_line(entry: Entry, rejected: str | None = None) -> str:
    """One entry as a line of the table `JOURNAL_HEADER` heads (ending with
    ``rejected: <reason>`` when the matcher rejected it)."""
    c = entry.wire
    price = c.get("price")
    return (
        f"{entry.seq:>6}  {trade_time(entry.ts):8}  {c.get('clientId', ''):12} "
        f"{c.get('op', ''):6} {c.get('orderId', ''):20} {c.get('side', '') or '':4} "
        f"{'' if price is None else price:>10} {c.get('amount', '') or '':>10} "
        f"{c.get('tif', '') if c.get('op') == 'new' else ''}"
        f"{'' if rejected is None else '  rejected: ' + rejected}"
    ).rstrip()


def _matches(entry: Entry, order: str | None, client: str | None) -> bool:
    c = entry.command
    return (order is None or c.order_id == order) and (client is None or c.client_id == client)


def select_entries(
    journal: Journal, *, tail: int, order: str | None = None, client: str | None = None
) -> list[Entry]:
    """The last `tail` entries that match the filters, oldest first. O(n) with filters,
    O(tail) without."""
    if order is None and client is None:
        head = file_head(journal)
        return journal.read(max(head - tail, 0), tail)
    matched = [e for e in journal.entries() if _matches(e, order, client)]
    return matched[-tail:] if tail else []


def follow_entries(
    journal: Journal,
    after: int,
    *,
    order: str | None = None,
    client: str | None = None,
    interval: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Entry]:
    """Yield entries appended after `after`, as they come, until interrupted."""
    while True:
        page = journal.read(after, 500)
        for entry in page:
            after = entry.seq
            if _matches(entry, order, client):
                yield entry
        if len(page) < 500:
            sleep(interval)


def file_head(journal: Journal) -> int:
    """The last seq on the file now (`Journal.head` is as of this handle's opening, and
    the sequencer appends from another process)."""
    after = journal.head()
    while page := journal.read(after, 10_000):
        after = page[-1].seq
    return after


def orders_per_second(journal: Journal, *, now_ms: int, window_ms: int = 60_000) -> float:
    """Commands journaled per second over the last `window_ms`, from their timestamps.

    Timestamps never decrease along the journal, so the first entry inside the window
    is found by bisection on seq: O(log n) reads.
    """
    head = file_head(journal)
    cutoff = now_ms - window_ms
    low, high = 1, head + 1  # the first seq with ts >= cutoff lies in [low, high]
    while low < high:
        mid = (low + high) // 2
        entry = journal.get(mid)
        if entry is not None and entry.ts >= cutoff:
            high = mid
        else:
            low = mid + 1
    return (head - low + 1) / (window_ms / 1000)
