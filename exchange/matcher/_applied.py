"""The matcher's own log: every applied command with the version that published it.

```
applied(seq INTEGER PRIMARY KEY,   -- 1, 2, 3, ... exactly the journal's numbers, no gap
        ts INTEGER,                -- the sequencer's timestamp the command was applied with
        command TEXT,              -- the command's wire JSON as received (canonical)
        root TEXT)                 -- the root hash of the version that includes it
```
It is the twin of the sequencer's `Journal`, downstream of it: a row is written only
*after* its version was stored in the DHT, so the last row is always a published
version. On restart the matcher replays the commands, in order, through the
deterministic core: the book it gets is the book it had. A snapshot
(`exchange.matcher.SnapshotStore`) shortens that to the commands after it; it is used
only where its root is the one recorded here at its seq, so this log stays the record.

Durability: WAL with ``synchronous=NORMAL``. Losing the last rows in a power failure is
harmless: the matcher then restarts at an older head, answers the next command with
``ERR_SEQ_GAP: expected <n>``, and the sequencer, whose journal *is* fsynced, resends
from ``n``; the deterministic core reproduces the same versions and the same hashes.

Entries are stored and read with the protocol's row encoding (`entry_to_row`,
`entry_from_row`, as the journal's; the command's canonical JSON written by
`exchange.versions.command_text`, the same text without `json.dumps`): a command read
back is validated once, there.

Blocking; the matcher calls it through ``anyio.to_thread.run_sync``, one call at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from exchange.protocol import Entry, entry_from_row
from exchange.versions import command_text
from orderbook_core import DEFAULT_SPEC, MarketSpec

__all__ = ["AppliedLog", "AppliedRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS applied (
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    command TEXT NOT NULL,
    root TEXT NOT NULL
);
"""

_PAGE = 1000


class AppliedRecord(NamedTuple):
    """One applied entry and the root of the version that includes it."""

    entry: Entry
    root: str


class AppliedLog:
    """The applied-commands table of one matcher.

    Args:
        path: the SQLite file; its parent directory is created if missing.
        spec: the market, which the commands read back are validated with.
        read_only: open an existing file for reading only (`dex snapshot`).
    """

    def __init__(
        self, path: str | Path, spec: MarketSpec = DEFAULT_SPEC, *, read_only: bool = False
    ) -> None:
        self.path = Path(path)
        self.spec = spec
        if read_only:  # an operator's tool beside a running matcher: never write
            if not self.path.is_file():
                raise sqlite3.OperationalError(f"{self.path}: no such file")
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        """Close the database. Idempotent."""
        self._db.close()

    def get(self, seq: int) -> AppliedRecord | None:
        """The record of `seq`, or None if it was not applied. O(log n)."""
        row = self._db.execute(
            "SELECT seq, ts, command, root FROM applied WHERE seq = ?", (seq,)
        ).fetchone()
        return None if row is None else self._record(*row)

    def range(self, first: int, last: int) -> list[AppliedRecord]:
        """The records of seqs `first..last` that were applied, in order. O(k + log n)."""
        rows = self._db.execute(
            "SELECT seq, ts, command, root FROM applied WHERE seq BETWEEN ? AND ? ORDER BY seq",
            (first, last),
        ).fetchall()
        return [self._record(*row) for row in rows]

    def last(self) -> AppliedRecord | None:
        """The record of the highest seq applied, or None if none was. O(log n)."""
        row = self._db.execute(
            "SELECT seq, ts, command, root FROM applied ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return None if row is None else self._record(*row)

    def entries(self, after: int = 0) -> Iterator[AppliedRecord]:
        """Yield every record of a seq above `after` in sequence order (read in pages)."""
        while True:
            rows = self._db.execute(
                "SELECT seq, ts, command, root FROM applied WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, _PAGE),
            ).fetchall()
            for row in rows:
                yield self._record(*row)
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]

    def append(self, records: Sequence[AppliedRecord]) -> None:
        """Store applied entries, in one transaction. O(k log n).

        Raises:
            sqlite3.IntegrityError: a seq is already recorded (nothing stored).
            sqlite3.Error: the database failed; nothing was stored.
        """
        # `entry_to_row`'s row, the command's canonical JSON written directly.
        rows = [(entry.seq, entry.ts, command_text(entry.wire), root) for entry, root in records]
        with self._db:  # BEGIN ... COMMIT, or ROLLBACK on error
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO applied (seq, ts, command, root) VALUES (?, ?, ?, ?)", rows
            )

    def clear(self) -> None:
        """Forget every record: a matcher on JetStream too far behind the market's head
        to follow it starts over from a snapshot (the market's record is the stream)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM applied")

    def _record(self, seq: int, ts: int, text: str, root: str) -> AppliedRecord:
        """Raises: ReplayError: the stored command is not one."""
        return AppliedRecord(entry_from_row(seq, ts, text, self.spec, source="applied"), root)
