"""The process worker's own SQLite: every applied command with its outcome.

```
applied(seq INTEGER PRIMARY KEY,   -- 1, 2, 3, ... exactly the journal's numbers, no gap
        ts INTEGER,                -- the sequencer's timestamp the command was applied with
        command TEXT,              -- the command's wire JSON as received (canonical form)
        root TEXT)                 -- the root hash of the version published for it
```
A row is written only *after* its version was stored in the DHT, in one transaction, so
the table's last row is always a published version. On restart the worker replays the
commands, in order, through the deterministic core: the book it gets is the book it had.
We keep no snapshots: replay costs O(commands) once per restart (~µs per command), which
is fine at this scale, and a replay cannot disagree with the history the way a snapshot
written by an older version of the code could. Snapshots + tail would be the next step.

Durability: WAL with ``synchronous=NORMAL``. Losing the last rows in a power failure is
harmless here: the worker then restarts at an older head, answers the next command with
``ERR_SEQ_GAP: expected <n>``, and the submit worker, whose journal *is* fsynced, resends
from ``n``; the deterministic core reproduces the same versions and the same hashes.

The class is blocking; the worker calls it through ``anyio.to_thread.run_sync``, one call
at a time. It is not shared between threads concurrently.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["AppliedRecord", "ProcessStore", "canonical_json"]

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
    """One applied command: its number, timestamp, canonical wire JSON and version root."""

    seq: int
    ts: int
    command: str
    root: str


def canonical_json(obj: Any) -> str:
    """The canonical JSON text of a wire value: sorted keys, no spaces, ASCII only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


class ProcessStore:
    """The applied-commands table of one process worker.

    Args:
        path: the SQLite file; its parent directory is created if missing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
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

    def head(self) -> AppliedRecord | None:
        """Return the last applied record, or None when nothing was applied."""
        row = self._db.execute(
            "SELECT seq, ts, command, root FROM applied ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return None if row is None else AppliedRecord(*row)

    def get(self, seq: int) -> AppliedRecord | None:
        """Return the record of `seq`, or None if it was not applied."""
        row = self._db.execute(
            "SELECT seq, ts, command, root FROM applied WHERE seq = ?", (seq,)
        ).fetchone()
        return None if row is None else AppliedRecord(*row)

    def records(self) -> Iterator[AppliedRecord]:
        """Yield every record in sequence order (in pages)."""
        after = 0
        while True:
            rows = self._db.execute(
                "SELECT seq, ts, command, root FROM applied WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, _PAGE),
            ).fetchall()
            for row in rows:
                yield AppliedRecord(*row)
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]

    def record(self, entry: AppliedRecord) -> None:
        """Store one applied command, in one transaction.

        Raises:
            sqlite3.IntegrityError: `entry.seq` is already recorded.
            sqlite3.Error: the database failed; nothing was stored.
        """
        with self._db:  # BEGIN ... COMMIT, or ROLLBACK on error
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO applied (seq, ts, command, root) VALUES (?, ?, ?, ?)", tuple(entry)
            )
