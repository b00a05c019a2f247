"""The sequencer (submit_order worker): validates, numbers and journals every command.

The one writer of the market: it gives every accepted command the next gap-free
sequence number, makes it durable in the `Journal` before it acknowledges, and forwards
the journal in order to the matcher (`exchange.matcher`).
"""

from exchange.sequencer._journal import Journal, JournalConflict
from exchange.sequencer._program import DEFAULT_JOURNAL, main
from exchange.sequencer._worker import SubmitWorker

__all__ = [
    "DEFAULT_JOURNAL",
    "Journal",
    "JournalConflict",
    "SubmitWorker",
    "main",
]
