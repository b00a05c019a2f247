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

__all__ = ["Follower", "HeadVersion", "Restored", "VersionPart", "restore"]

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


class Follower:
    """The state rebuilt from an applied log, brought forward as the log grows.

    A start makes one and advances it to the head once; a standby matcher
    (`ProcessWorker` with ``standby=True``) keeps advancing it, reading the active one's
    log, so that it is at the head when it takes over. Versions are recorded in one
    transaction each, so it never sees half of one.
    """

    def __init__(self, spec: MarketSpec, db_path: Path, snapshot: Snapshot | None = None) -> None:
        self.db_path = db_path
        self.snapshot = None if snapshot is None else snapshot.seq
        """The seq of the snapshot it started from (None: from zero)."""
        # The head version covers every trailing entry recorded with its root (a batch).
        self._events: list[Event] = []
        self._commands: list[Entry] = []
        self.book, self.seq = OrderBook(spec), 0
        self.root: str | None = None
        self._first = 1
        self._prev: str | None = None
        if snapshot is not None:
            self.book, self.seq, self.root = snapshot.book, snapshot.seq, snapshot.root
            self._first, self._prev = snapshot.first, snapshot.prev
            self._events = list(snapshot.events)

    @property
    def first(self) -> int:
        """The first seq of the head version."""
        return self._first

    @classmethod
    def start(
        cls, log: AppliedLog, snapshots: SnapshotStore, spec: MarketSpec, db_path: Path
    ) -> Follower:
        """One at the newest snapshot that agrees with `log` (at zero without one)."""
        last = log.last()
        return cls(spec, db_path, None if last is None else newest_snapshot(log, snapshots, last))

    def advance(self, log: AppliedLog) -> int:
        """Apply the records after `seq`; how many there were.

        Raises:
            RuntimeError: the applied log has a gap.
            ReplayError, sqlite3.Error: the applied log cannot be read.
        """
        count = 0
        for record in log.entries(after=self.seq):
            entry = record.entry
            if entry.seq != self.seq + 1:
                raise RuntimeError(f"{self.db_path}: applied commands have a gap at {entry.seq}")
            if record.root != self.root:  # the first entry of a version
                self._events, self._commands = [], []
                self._first, self._prev = entry.seq, self.root
            self._events.extend(apply_entry(self.book, entry))
            self._commands.append(entry)
            self.seq, self.root = entry.seq, record.root
            count += 1
        return count

    def restored(self, log: AppliedLog) -> Restored:
        """The state reached, and what republishing its head version takes."""
        root, seq, first = self.root, self.seq, self._first
        if root is None:
            return Restored(self.book, None, None, self.snapshot)
        commands = self._commands
        if not commands:  # the head version is the snapshot's: its commands are in the log
            commands = [record.entry for record in log.range(first, seq)]
        events = tuple(self._events)
        # A private copy of the book: processing may change it while the head is republished.
        head = HeadVersion(seq, first, root, self._prev, self.book.copy(), events, tuple(commands))
        return Restored(self.book, head, VersionPart(first, self._prev, events), self.snapshot)


def restore(log: AppliedLog, snapshots: SnapshotStore, spec: MarketSpec, db_path: Path) -> Restored:
    """Rebuild the book and the head version from `snapshots` and `log`.

    Raises:
        RuntimeError: the applied log has a gap.
        ReplayError, sqlite3.Error: the applied log cannot be read.
    """
    follower = Follower.start(log, snapshots, spec, db_path)
    follower.advance(log)
    return follower.restored(log)


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
