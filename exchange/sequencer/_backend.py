"""What the sequencer needs of its journal, whatever stores it: the `JournalBackend`.

Two backends keep this promise: `Journal` (one SQLite file, the default) and
`JetStreamJournal` (a NATS JetStream stream, replicated by the server's Raft; imported
only when asked for). `open_journal` picks one from a ``--journal`` value.

The methods are blocking and thread-safe, as SQLite's are: the worker calls them through
``anyio.to_thread.run_sync`` (so a slow disk or network never stalls its event loop),
and the tools call them directly. A network backend runs its own client on its own
thread; the worker does not know which one it has.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Protocol, Self

from exchange.protocol import Entry
from orderbook_core import MarketSpec

__all__ = ["DuplicateEntry", "JournalBackend", "JournalConflict", "SteppedDown", "WriterLease"]


class JournalConflict(Exception):
    """An append does not continue the journal's sequence: another writer appended (or
    the entries' numbers or timestamps are wrong). Nothing was stored."""


class SteppedDown(Exception):
    """The worker stopped writing: its journal was appended to by another writer, or
    it lost its writer's lease."""


class DuplicateEntry(sqlite3.IntegrityError):
    """An append repeats a deduplicated ``(clientId, op, orderId)``, or binds a clientId
    already bound to another key. Nothing was stored.

    A `sqlite3.IntegrityError`, which is what the SQLite backend raised before there was
    another backend (and still is, for code that catches that)."""


class JournalBackend(Protocol):
    """A durable, gap-free FIFO queue of accepted commands: the exchange's source of truth.

    Sequence numbers start at 1 and have no gaps; an entry is never changed or removed.
    Every method may raise `exchange.protocol.StorageUnavailable` when the store cannot
    be reached (nothing was stored then), and a read `exchange.protocol.ReplayError` for
    a stored command that is not one.
    """

    spec: MarketSpec
    """The market; the commands read back are validated with it."""

    location: str
    """Where the entries are, for logs (a file path, or servers and stream)."""

    max_append: int
    """The most entries one `append` takes."""

    def append(
        self,
        entries: Sequence[Entry],
        bindings: Mapping[int, str] | None = None,
        requests: Mapping[int, str] | None = None,
    ) -> None:
        """Store `entries` durably, all or none, before returning.

        Args:
            entries: consecutive sequence numbers from `head() + 1`, with non-decreasing
                timestamps not below `last_ts()`; at most `max_append`.
            bindings: seq -> public key (64 hex) for the entries whose clientId is bound
                by them (its first accepted command); a binding is made at most once
                for a clientId across every writer, and never after its command is stored.
            requests: seq -> requestId of the modifies among `entries`: each
                ``(clientId, requestId)`` is deduplicated like a new order's ``orderId``
                (`find` with op ``"modify"``). A modify without one is stored as before
                request ids existed (never deduplicated).

        Raises:
            JournalConflict: the entries do not continue the stored sequence (another
                writer appended): this handle's writer must stop writing.
            DuplicateEntry: an entry repeats a deduplicated key (or a modify's
                requestId), or a binding a clientId
                bound to another key.
            StorageUnavailable: the store did not confirm; nothing of `entries` is
                stored, or, if it was after all, `head()` says so before the next append.
        """
        ...

    def mark_acked(self, seq: int) -> None:
        """Record that process_order confirmed every command up to `seq`; the mark only
        moves forward."""
        ...

    def head(self) -> int:
        """The last sequence number stored (0 when empty), as of this handle's last
        append, failed append, or opening."""
        ...

    def last_ts(self) -> int:
        """The timestamp of the entry at `head()` (0 when empty); the next may not be lower."""
        ...

    def acked(self) -> int:
        """The highest sequence number marked acknowledged (0 when none)."""
        ...

    def client_keys(self) -> dict[str, str]:
        """Every bound clientId and its public key (64 hex)."""
        ...

    def modify_requests(self) -> dict[int, str]:
        """seq -> requestId of every modify appended with one (what `find` answers for
        op ``"modify"``), so a move to another store keeps them."""
        ...

    def find(self, client_id: str, op: str, order_id: str) -> Entry | None:
        """The entry of a deduplicated `(client_id, op, order_id)`, if any, however long
        ago it was stored: a new order or a cancel by its orderId, a modify (op
        ``"modify"``) by the requestId it was appended with."""
        ...

    def find_many(self, keys: Sequence[tuple[str, str, str]]) -> list[Entry | None]:
        """`find` for each `(client_id, op, order_id)`, in one go."""
        ...

    def get(self, seq: int) -> Entry | None:
        """The entry with sequence number `seq`, or None if there is none."""
        ...

    def read(self, after_seq: int, limit: int) -> list[Entry]:
        """Up to `limit` entries with `seq > after_seq`, in order (none beyond `head()` is
        promised)."""
        ...

    def entries(self, after_seq: int = 0) -> Iterator[Entry]:
        """Yield the entries with `seq > after_seq`, in sequence order, page by page."""
        ...

    def writing(self) -> AbstractContextManager[object]:
        """Held by a writer for as long as it writes: a local lock where the store needs
        one (SQLite's file), nothing where the server fences writers itself."""
        ...

    def close(self) -> None:
        """Release the store. Idempotent."""
        ...

    def __enter__(self) -> Self:
        """The journal itself; `close` at the end of the block."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class WriterLease(Protocol):
    """Which of several sequencers on one shared journal may write: the active one holds
    the lease, the standbys wait for it (`exchange.sequencer._lease` keeps it in
    JetStream). Blocking and thread-safe, like the journal; a SQLite journal needs none
    (its lock file is the single writer)."""

    holder: str
    """Who this is, for logs."""

    poll: float
    """Seconds between a standby's attempts to take the lease."""

    @property
    def renew_every(self) -> float:
        """Seconds between renewals while holding it."""
        ...

    def valid(self) -> bool:
        """Whether this holds the lease now, by its own clock."""
        ...

    def acquire(self) -> bool:
        """Take the lease if nobody holds it, then read the journal's head again; True
        if this holds it now. Raises `StorageUnavailable` when the store is down."""
        ...

    def renew(self) -> bool:
        """Extend the lease; False when lost. Raises `StorageUnavailable` when the store
        did not answer (the lease stands until `valid` says otherwise)."""
        ...

    def release(self) -> None:
        """Give the lease up at once; never raises."""
        ...

    def current(self) -> str | None:
        """Who holds the lease now (None: nobody). Raises `StorageUnavailable`."""
        ...
