"""The sequencer (submit_order worker): validates, numbers and journals every command.

The one writer of the market: it gives every accepted command the next gap-free
sequence number, makes it durable in its journal (a `JournalBackend`: the SQLite
`Journal` by default, or a NATS JetStream stream) before it acknowledges, and forwards
the journal in order to the matcher (`exchange.matcher`). The JetStream backend is in
its own module, imported only when `open_journal` is given a ``nats://`` URL; so is
the writer's lease (`open_lease`) that lets a standby sequencer share that journal.
"""

from exchange.sequencer._backend import (
    DuplicateEntry,
    JournalBackend,
    JournalConflict,
    WriterLease,
)
from exchange.sequencer._journal import Journal
from exchange.sequencer._open import open_journal, open_lease
from exchange.sequencer._program import DEFAULT_JOURNAL, main
from exchange.sequencer._worker import SteppedDown, SubmitWorker

__all__ = [
    "DEFAULT_JOURNAL",
    "DuplicateEntry",
    "Journal",
    "JournalBackend",
    "JournalConflict",
    "SteppedDown",
    "SubmitWorker",
    "WriterLease",
    "main",
    "open_journal",
    "open_lease",
]
