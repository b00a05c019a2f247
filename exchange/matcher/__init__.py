"""The matcher (process_order worker): applies the journal in order, publishes versions.

It applies each sequenced command through `orderbook_core` exactly once
(`apply_entry`), stores the new version of the book in the DHT (`exchange.versions`),
records it in its `AppliedLog`, and tells every client ``orderbook_updated``.
"""

from exchange.matcher._applied import AppliedEntry, AppliedLog
from exchange.matcher._apply import EntryLike, apply_entry
from exchange.matcher._program import DEFAULT_STATE, main
from exchange.matcher._worker import ProcessWorker

__all__ = [
    "DEFAULT_STATE",
    "AppliedEntry",
    "AppliedLog",
    "EntryLike",
    "ProcessWorker",
    "apply_entry",
    "main",
]
