"""The sequencer's journal: a durable, gap-free FIFO queue of accepted commands in SQLite.

The default `exchange.sequencer.JournalBackend` (``--journal sqlite:PATH``); the
JetStream one keeps the same promises on a replicated stream.

The journal is the exchange's source of truth: every accepted command is committed here
under its sequence number *before* the client hears "accepted"; everything downstream
(the matcher's book, the versions in the DHT, every client's replica) is derived from it
and can be rebuilt by replaying it. It is storage only: the sequencer
(`exchange.sequencer.SubmitWorker`) numbers, timestamps and settles each command; the
journal checks that what it is given continues its sequence, and stores it.

Storage
-------
One SQLite file in WAL mode with ``synchronous=FULL``, chosen over NORMAL on purpose: in
WAL mode NORMAL survives a crash of the *process* but may lose the last committed
transactions on a power loss or OS crash, and the sequencer acknowledges a command as
soon as it is committed here. One `append` is one transaction and one fsync, whatever
the number of entries in it (the sequencer's group commit).

```
journal(seq INTEGER PRIMARY KEY,    -- 1, 2, 3, ... gap-free, never deleted, never reused
        ts INTEGER,                 -- ms since the epoch, from the sequencer; non-decreasing
        client_id TEXT, op TEXT, order_id TEXT,
        dedupe INTEGER,             -- 1: (client_id, op, order_id) may appear only once
        command TEXT)               -- the command's wire JSON (canonical)
UNIQUE INDEX journal_dedupe(client_id, op, order_id) WHERE dedupe = 1
meta(key TEXT PRIMARY KEY, value INTEGER)   -- "acked": highest seq process_order confirmed
client_keys(client_id TEXT PRIMARY KEY,      -- trust on first use: each clientId's key,
            public_key TEXT, seq INTEGER)    -- bound by its first accepted command (seq)
modify_requests(client_id TEXT, request_id TEXT, seq INTEGER,  -- a modify's requestId
                PRIMARY KEY (client_id, request_id))
```
The unique index lets `find` answer a repeated ``(clientId, orderId)`` (for one kind of
command) with the first entry; ``modify_requests`` does the same for a modify's
``(clientId, requestId)`` (the request id is not part of the command: the matcher and
every replica never see it). A modify's row has ``dedupe = 0``: two modifies of one
order are both meant. Modifies journaled before request ids existed have no
``modify_requests`` row (the table is created empty when an older journal is opened),
and their rows are read exactly as before.
A clientId's key binding is written in the same transaction as the command that made
it, so the journal never holds a command of a client without the key it was signed by.

Threads
-------
The methods are blocking. Every method takes an internal ``threading.Lock``, so a
``Journal`` may be used from several threads (the sequencer calls it through
``anyio.to_thread.run_sync``; ``dex replay`` calls it directly).

Entries are `exchange.protocol.Entry` values, stored and read with the protocol's row
encoding (`entry_to_row`, `entry_from_row`): a command read back is validated once,
there, and a read raises `exchange.protocol.ReplayError` for one that is not a command.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Self

from exchange.protocol import Entry, entry_from_row, entry_to_row
from exchange.runtime import one_writer
from exchange.sequencer._backend import DuplicateEntry, JournalConflict
from orderbook_core import DEFAULT_SPEC, MarketSpec

__all__ = ["Journal", "JournalConflict"]

_PAGE = 500
"""Rows fetched per query by `Journal.entries` (the lock is released between pages)."""

_KEY_PAGE = 5000
"""Rows fetched per query by `Journal.dedupe_keys` (the lock is released between pages)."""

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
CREATE TABLE IF NOT EXISTS client_keys (
    client_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS modify_requests (
    client_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (client_id, request_id)
);
"""


def _columns(entry: Entry) -> tuple[int, int, str, str, str, int, str]:
    seq, ts, text = entry_to_row(entry)
    command = entry.wire
    op = command["op"]
    return (seq, ts, command["clientId"], op, command["orderId"], int(op != "modify"), text)


class Journal:
    """A durable FIFO queue of accepted commands with gap-free sequence numbers.

    Args:
        path: the SQLite file; its parent directory is created if missing.
        spec: the market, which the commands read back are validated with.

    Use as a context manager, or call `close()`.
    """

    max_append = sys.maxsize
    """One transaction takes any number of entries."""

    def __init__(self, path: str | Path, spec: MarketSpec = DEFAULT_SPEC) -> None:
        self.path = Path(path)
        self.spec = spec
        self.location = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False:
        # calls come from anyio's worker threads; the lock serializes them.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._head, self._last_ts = self._last()
        except BaseException:
            self._db.close()
            raise

    def _last(self) -> tuple[int, int]:
        row = self._db.execute("SELECT seq, ts FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, 0) if row is None else (row[0], row[1])

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the database. Idempotent."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def writing(self) -> AbstractContextManager[object]:
        """The file's writer lock (`exchange.runtime.one_writer`), for a worker's life.

        Raises:
            DatabaseInUse: another worker holds it.
        """
        return one_writer(self.path)

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
        entries: Sequence[Entry],
        bindings: Mapping[int, str] | None = None,
        requests: Mapping[int, str] | None = None,
    ) -> None:
        """Store `entries` durably, in one transaction (one fsync). O(k log n).

        Args:
            entries: consecutive sequence numbers starting at `head() + 1`, with
                non-decreasing timestamps not below `last_ts()`.
            bindings: seq -> public key (64 hex) for the entries that bind their
                clientId to a key (its first accepted command), stored with them.
            requests: seq -> requestId for the modifies among `entries`, stored with them
                (a ``(clientId, requestId)`` only once).

        Raises:
            JournalConflict: the entries do not continue the sequence on the file (another
                handle or process appended); nothing was stored.
            DuplicateEntry: (a `sqlite3.IntegrityError`) an entry repeats a deduplicated
                key, or a binding a bound clientId; nothing stored.
            sqlite3.Error: the database failed; nothing was stored.
        """
        if not entries:
            return
        rows = [_columns(entry) for entry in entries]
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                # From the file, not from memory: another handle may have appended.
                head, last_ts = self._last()
                expected = head + 1
                for entry in entries:
                    if entry.seq != expected or entry.ts < last_ts:
                        raise JournalConflict(
                            f"{self.path}: entry {entry.seq} (ts {entry.ts}) does not follow"
                            f" seq {expected - 1} (ts {last_ts})"
                        )
                    expected, last_ts = entry.seq + 1, entry.ts
                db.executemany(
                    "INSERT INTO journal (seq, ts, client_id, op, order_id, dedupe, command)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                by_seq = {entry.seq: entry for entry in entries}
                db.executemany(
                    "INSERT INTO client_keys (client_id, public_key, seq) VALUES (?, ?, ?)",
                    [(by_seq[s].command.client_id, key, s) for s, key in (bindings or {}).items()],
                )
                db.executemany(
                    "INSERT INTO modify_requests (client_id, request_id, seq) VALUES (?, ?, ?)",
                    [(by_seq[s].command.client_id, r, s) for s, r in (requests or {}).items()],
                )
                db.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise DuplicateEntry(str(exc)) from exc
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._head, self._last_ts = entries[-1].seq, entries[-1].ts

    def mark_acked(self, seq: int) -> None:
        """Record that process_order confirmed every command up to `seq`.

        The acked mark only moves forward; it is where a restarted forwarder starts (the
        matcher answers repeats idempotently, so starting too early is harmless).
        """
        with self._lock:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('acked', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                (seq,),
            )

    # ------------------------------------------------------------------ reading

    def head(self) -> int:
        """The last sequence number journaled (0 when empty), as of this handle's last
        append (or opening)."""
        with self._lock:
            return self._head

    def last_ts(self) -> int:
        """The timestamp of the last entry (0 when empty); the next may not be lower."""
        with self._lock:
            return self._last_ts

    def client_keys(self) -> dict[str, str]:
        """Every bound clientId and its public key (64 hex). O(clients)."""
        with self._lock:
            rows = self._db.execute("SELECT client_id, public_key FROM client_keys").fetchall()
        return dict(rows)

    def modify_requests(self) -> dict[int, str]:
        """seq -> requestId of every modify appended with one. O(modifies)."""
        with self._lock:
            rows = self._db.execute("SELECT seq, request_id FROM modify_requests").fetchall()
        return dict(rows)

    def acked(self) -> int:
        """The highest sequence number marked acknowledged (0 when none)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'acked'").fetchone()
        return int(row[0]) if row is not None else 0

    def find(self, client_id: str, op: str, order_id: str) -> Entry | None:
        """The entry of a deduplicated `(client_id, op, order_id)`, if any (for a modify,
        `order_id` is its requestId). O(log n)."""
        return self.find_many([(client_id, op, order_id)])[0]

    def find_many(self, keys: Sequence[tuple[str, str, str]]) -> list[Entry | None]:
        """`find` for each `(client_id, op, order_id)`, under one lock hold. O(k log n)."""
        with self._lock:
            rows = [
                self._db.execute(
                    "SELECT j.seq, j.ts, j.command FROM modify_requests r"
                    " JOIN journal j ON j.seq = r.seq"
                    " WHERE r.client_id = ? AND r.request_id = ?",
                    (client_id, key_id),
                ).fetchone()
                if op == "modify"
                else self._db.execute(
                    "SELECT seq, ts, command FROM journal"
                    " WHERE client_id = ? AND op = ? AND order_id = ? AND dedupe = 1",
                    (client_id, op, key_id),
                ).fetchone()
                for client_id, op, key_id in keys
            ]
        return [None if r is None else self._entry(*r) for r in rows]

    def get(self, seq: int) -> Entry | None:
        """The entry with sequence number `seq`, or None if there is none. O(log n)."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, ts, command FROM journal WHERE seq = ?", (seq,)
            ).fetchone()
        return None if row is None else self._entry(*row)

    def read(self, after_seq: int, limit: int) -> list[Entry]:
        """Up to `limit` entries with `seq > after_seq`, in order. O(limit + log n)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, ts, command FROM journal WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [self._entry(*row) for row in rows]

    def entries(self, after_seq: int = 0) -> Iterator[Entry]:
        """Yield the entries with `seq > after_seq`, in sequence order.

        Reads in pages and releases the lock between them, so appends may go on; entries
        appended while iterating are yielded too.
        """
        while True:
            page = self.read(after_seq, _PAGE)
            yield from page
            if len(page) < _PAGE:
                return
            after_seq = page[-1].seq

    def dedupe_keys(self) -> Iterator[tuple[str, str, str]]:
        """Yield every deduplicated key `find` answers: ``(client_id, op, order_id)`` of
        the deduplicated entries, ``(client_id, "modify", request_id)`` of the modifies.

        Reads in pages (`_KEY_PAGE` rows) and releases the lock between them; keys
        appended while iterating may or may not be yielded.
        """
        queries = (
            "SELECT seq, client_id, op, order_id FROM journal"
            " WHERE seq > ? AND dedupe = 1 ORDER BY seq LIMIT ?",
            "SELECT rowid, client_id, 'modify', request_id FROM modify_requests"
            " WHERE rowid > ? ORDER BY rowid LIMIT ?",
        )
        for query in queries:
            after = 0
            while True:
                with self._lock:
                    rows = self._db.execute(query, (after, _KEY_PAGE)).fetchall()
                for _, client_id, op, key_id in rows:
                    yield client_id, op, key_id
                if len(rows) < _KEY_PAGE:
                    break
                after = rows[-1][0]

    def _entry(self, seq: int, ts: int, text: str) -> Entry:
        """Raises: ReplayError: the stored command is not one."""
        return entry_from_row(seq, ts, text, self.spec, source="journal")
