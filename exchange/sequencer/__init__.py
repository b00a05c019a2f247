"""The sequencer (submit_order worker): validates, numbers and journals every command.

The one writer of the market: it gives every accepted command the next gap-free
sequence number, makes it durable in the `Journal` before it acknowledges, and forwards
the journal in order to the matcher (`exchange.matcher`).
"""

from exchange.sequencer._journal import (
    GENERATED_ORDER_ID_PREFIX,
    Journal,
    JournalConflict,
    JournalEntry,
    generated_order_id,
)
from exchange.sequencer._program import DEFAULT_JOURNAL, main
from exchange.sequencer._worker import SubmitWorker

__all__ = [
    "DEFAULT_JOURNAL",
    "GENERATED_ORDER_ID_PREFIX",
    "Journal",
    "JournalConflict",
    "JournalEntry",
    "SubmitWorker",
    "generated_order_id",
    "main",
]
