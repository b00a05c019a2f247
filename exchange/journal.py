"""The submit worker's journal: a durable, gap-free FIFO queue of accepted commands in SQLite.

The journal is the exchange's source of truth (DESIGN principle 3): every accepted command
gets the next sequence number and is committed here *before* the client hears "accepted";
everything downstream (the process worker's book, the versions in the DHT, every client's
replica) is derived from it and can be rebuilt by replaying it.

Storage
-------
One SQLite file in WAL mode with ``synchronous=FULL``. We chose FULL over NORMAL on
purpose: in WAL mode NORMAL survives a crash of the *process* but may lose the last
committed transactions on a power loss or OS crash, and the submit worker acknowledges an
order as soon as it is committed here. An acknowledged order that vanishes would break the
promise the acknowledgement made, so each append costs one fsync of the WAL. (The process
worker's own database uses NORMAL: it can be rebuilt from this journal.)

```
journal(seq INTEGER PRIMARY KEY,    -- 1, 2, 3, ... gap-free, never deleted, never reused
        ts INTEGER,                 -- ms since the epoch, from the sequencer; non-decreasing
        client_id TEXT, op TEXT, order_id TEXT,
        dedupe INTEGER,             -- 1: (client_id, op, order_id) may appear only once
        command TEXT)               -- the validated command, normalized wire JSON
UNIQUE INDEX journal_dedupe(client_id, op, order_id) WHERE dedupe = 1
meta(key TEXT PRIMARY KEY, value INTEGER)   -- "acked": highest seq process_order confirmed
```
The unique index makes a repeated ``(clientId, orderId)`` (for one kind of command) find
the first entry instead of queueing a second one.

Sequence numbers are computed as ``max(seq) + 1`` inside a ``BEGIN IMMEDIATE``
transaction, so they are gap-free even if a commit fails (nothing is reserved before it
commits).

Threads
-------
The methods are blocking. Every method takes an internal ``threading.Lock``, so a
``Journal`` may be used from several threads (the submit worker calls it through
``anyio.to_thread.run_sync``; ``dex replay`` calls it directly). One writer process per
file: two submit workers on one journal would be two sequencers.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

__all__ = [
    "GENERATED_ORDER_ID_PREFIX",
    "Appended",
    "Journal",
    "JournalEntry",
    "generated_order_id",
]

GENERATED_ORDER_ID_PREFIX = "_"
"""Generated order ids start with this; the submit worker refuses client ids that do."""

_PAGE = 500
"""Rows fetched per query by `Journal.entries` (the lock is released between pages)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    client_id TEXT NOT NULL,
    op TEXT NOT NULL,
    order_id TEXT NOT NULL,
    dedupe INTEGER NOT NULL,
    command TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS journal_dedupe
    ON journal (client_id, op, order_id) WHERE dedupe = 1;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def generated_order_id(seq: int) -> str:
    """Return the order id the sequencer gives the command with sequence number `seq`.

    It is deterministic (a replay of the journal reproduces it; it is also stored in the
    journaled command) and cannot collide with an id a client chose: it starts with
    `GENERATED_ORDER_ID_PREFIX`, which the submit worker refuses in client-chosen ids, and
    it embeds the sequence number, which is unique.
    """
    return f"{GENERATED_ORDER_ID_PREFIX}{seq}"


class JournalEntry(NamedTuple):
    """One journaled command: its sequence number, timestamp (ms) and wire JSON."""

    seq: int
    ts: int
    command: dict[str, Any]


class Appended(NamedTuple):
    """What `Journal.append` did: the entry's `seq` and `ts`, and whether it is new.

    `is_new` is False when the `(client_id, op, order_id)` was already journaled: `seq` and
    `ts` are then the first entry's, and nothing was queued.
    """

    seq: int
    ts: int
    is_new: bool


class Journal:
    """A durable FIFO queue of accepted commands with gap-free sequence numbers.

    Args:
        path: the SQLite file; its parent directory is created if missing.

    Use as a context manager, or call `close()`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False:
        # calls come from anyio's worker threads; the lock serializes them.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT max(seq), max(ts) FROM journal").fetchone()
        except BaseException:
            self._db.close()
            raise
        self._head: int = row[0] or 0
        self._last_ts: int = row[1] or 0

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the database. Idempotent."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    def append(
        self,
        client_id: str,
        order_id: str | None,
        command_wire: dict[str, Any],
        *,
        op: str = "new",
        dedupe: bool = True,
        ts: int | None = None,
    ) -> Appended:
        """Journal one validated command, durably, unless it is a repeat.

        Args:
            client_id: the command's client.
            order_id: the client's order id, or None to generate one: the entry then gets
                `generated_order_id(seq)`, written into the stored command's "orderId".
            command_wire: the validated command as normalized wire JSON (no seq/ts).
            op: the kind of command; `(client_id, op, order_id)` is the dedupe key, so a
                cancel of order X is not mistaken for a repeat of order X.
            ts: the sequencer's timestamp in ms (default: the wall clock). Stored as
                `max(ts, previous ts)` so timestamps never go backwards along the journal.

        Returns:
            `Appended(seq, ts, is_new)`. Once it returns with `is_new`, the entry is on
            disk (fsynced).

        Raises:
            sqlite3.Error: the database failed; nothing was journaled.
        """
        if ts is None:
            ts = time.time_ns() // 1_000_000
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if order_id is not None and dedupe:
                    row = db.execute(
                        "SELECT seq, ts FROM journal"
                        " WHERE client_id = ? AND op = ? AND order_id = ? AND dedupe = 1",
                        (client_id, op, order_id),
                    ).fetchone()
                    if row is not None:
                        db.execute("ROLLBACK")
                        return Appended(row[0], row[1], False)
                # From the file, not from memory: another handle (or process) on the same
                # file may have appended since we last looked. The last entry holds the
                # highest seq and ts (ts never decreases along the journal); O(log n).
                last = db.execute(
                    "SELECT seq, ts FROM journal ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                if last is not None:
                    self._head, self._last_ts = last
                seq = self._head + 1
                ts = max(ts, self._last_ts)
                command = dict(command_wire)
                if order_id is None:
                    order_id = generated_order_id(seq)
                    command["orderId"] = order_id
                db.execute(
                    "INSERT INTO journal (seq, ts, client_id, op, order_id, dedupe, command)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (seq, ts, client_id, op, order_id, int(dedupe), _dumps(command)),
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._head = seq
            self._last_ts = ts
            return Appended(seq, ts, True)

    def mark_acked(self, seq: int) -> None:
        """Record that process_order confirmed every command up to `seq`.

        The acked mark only moves forward; it is where a restarted forwarder starts (the
        process worker answers repeats idempotently, so starting too early is harmless).
        """
        with self._lock:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('acked', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                (seq,),
            )

    # ------------------------------------------------------------------ reading

    def head(self) -> int:
        """Return the last sequence number journaled (0 when empty), as of this handle's
        last append (or opening)."""
        with self._lock:
            return self._head

    def acked(self) -> int:
        """Return the highest sequence number marked acknowledged (0 when none)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'acked'").fetchone()
        return int(row[0]) if row is not None else 0

    def get(self, seq: int) -> JournalEntry | None:
        """Return the entry with sequence number `seq`, or None if there is none."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, ts, command FROM journal WHERE seq = ?", (seq,)
            ).fetchone()
        return None if row is None else JournalEntry(row[0], row[1], json.loads(row[2]))

    def next_unacked(self) -> JournalEntry | None:
        """Return the first entry after the acked mark, or None when all are acked."""
        return self.get(self.acked() + 1)

    def entries(self, after_seq: int = 0) -> Iterator[JournalEntry]:
        """Yield the entries with `seq > after_seq`, in sequence order.

        Reads in pages and releases the lock between them, so appends may go on; entries
        appended while iterating are yielded too.
        """
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT seq, ts, command FROM journal WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, _PAGE),
                ).fetchall()
            for seq, ts, command in rows:
                yield JournalEntry(seq, ts, json.loads(command))
            if len(rows) < _PAGE:
                return
            after_seq = rows[-1][0]


def _dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, ASCII only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
