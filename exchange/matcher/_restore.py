"""How the matcher rebuilds its state at start: the newest valid snapshot, then the tail.

Blocking (the worker runs it in a thread). The applied log is the record: a snapshot is
used only if it agrees with it (its root is the one recorded at its seq, and its seq is
a version boundary no later than the log's head); otherwise the next older one is
tried, and without any every recorded command is replayed from the first. Each snapshot
passed over is logged with why.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

from exchange.matcher._applied import AppliedLog, AppliedRecord
from exchange.matcher._snapshots import Snapshot, SnapshotError, SnapshotStore
from exchange.protocol import Entry, apply_entry
from orderbook_core import Event, MarketSpec, OrderBook

__all__ = ["HeadVersion", "Restored", "VersionPart", "restore"]

_log = logging.getLogger("exchange.matcher")


class VersionPart(NamedTuple):
    """The head version's own part: what a snapshot taken now must hold to republish it."""

    first: int
    prev: str | None
    events: tuple[Event, ...]


class HeadVersion(NamedTuple):
    """The restored head: what republishing its version takes."""

    seq: int
    first: int
    root: str
    prev: str | None
    book: OrderBook
    events: tuple[Event, ...]
    commands: tuple[Entry, ...]


class Restored(NamedTuple):
    """The state a start rebuilt (`head` None: nothing was applied yet)."""

    book: OrderBook
    head: HeadVersion | None
    version: VersionPart | None
    snapshot: int | None
    """The seq of the snapshot it started from (None: a replay from zero)."""


def restore(log: AppliedLog, snapshots: SnapshotStore, spec: MarketSpec, db_path: Path) -> Restored:
    """Rebuild the book and the head version from `snapshots` and `log`.

    Raises:
        RuntimeError: the applied log has a gap.
        ReplayError, sqlite3.Error: the applied log cannot be read.
    """
    last = log.last()
    snapshot = None if last is None else newest_snapshot(log, snapshots, last)
    # The head version covers every trailing entry recorded with its root (a batch).
    events: list[Event] = []
    commands: list[Entry] = []
    book, seq, root, first, prev = OrderBook(spec), 0, None, 1, None
    if snapshot is not None:
        book, seq, root = snapshot.book, snapshot.seq, snapshot.root
        first, prev, events = snapshot.first, snapshot.prev, list(snapshot.events)
    tail = False
    for record in log.entries(after=seq):
        entry = record.entry
        if entry.seq != seq + 1:
            raise RuntimeError(f"{db_path}: applied commands have a gap at {entry.seq}")
        if record.root != root:  # the first entry of a version
            events, commands, first, prev = [], [], entry.seq, root
        events.extend(apply_entry(book, entry))
        commands.append(entry)
        seq, root, tail = entry.seq, record.root, True
    start = None if snapshot is None else snapshot.seq
    if root is None:
        return Restored(book, None, None, start)
    if not tail:  # the head version is the snapshot's: its commands are in the log
        commands = [record.entry for record in log.range(first, seq)]
    # A private copy of the book: processing may change it while the head is republished.
    head = HeadVersion(seq, first, root, prev, book.copy(), tuple(events), tuple(commands))
    return Restored(book, head, VersionPart(first, prev, tuple(events)), start)


def newest_snapshot(
    log: AppliedLog, snapshots: SnapshotStore, last: AppliedRecord
) -> Snapshot | None:
    """The newest snapshot that agrees with `log`, whose last record is `last`; None:
    replay everything. Each one passed over is logged: torn or corrupt (its hash),
    another format or market, beyond the log's head (the log lost its last rows), a
    root that is not the one the log recorded at its seq, or not at a version boundary.
    """
    seqs = snapshots.seqs()
    for seq in reversed(seqs):
        try:
            if seq > last.entry.seq:
                raise SnapshotError(f"snapshot {seq}: beyond the applied head {last.entry.seq}")
            snapshot = snapshots.load(seq)
            recorded, following = log.get(seq), log.get(seq + 1)
            if recorded is None or recorded.root != snapshot.root:
                raise SnapshotError(f"snapshot {seq}: its root is not the one recorded")
            if following is not None and following.root == snapshot.root:
                raise SnapshotError(f"snapshot {seq}: not at a version boundary")
        except SnapshotError as exc:
            _log.warning("%s: not used, trying an older one", exc)
            continue
        _log.info("starting from snapshot %d (%d orders)", seq, len(snapshot.book))
        return snapshot
    if seqs:
        _log.warning("no usable snapshot: replaying every applied command")
    return None
