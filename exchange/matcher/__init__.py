"""The matcher (process_order worker): applies the journal in order, publishes versions.

It applies each sequenced command through `orderbook_core` exactly once
(`apply_entry`, re-exported from `exchange.protocol`: replicas apply the same way),
stores the new version of the book in the DHT (`exchange.versions`), records it in its
`AppliedLog`, and tells every client ``orderbook_updated``.
"""

from exchange.matcher._applied import AppliedLog, AppliedRecord
from exchange.matcher._program import DEFAULT_STATE, main
from exchange.matcher._worker import ProcessWorker
from exchange.protocol import apply_entry

__all__ = [
    "DEFAULT_STATE",
    "AppliedLog",
    "AppliedRecord",
    "ProcessWorker",
    "apply_entry",
    "main",
]
