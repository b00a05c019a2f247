"""The matcher (process_order worker): applies the journal in order, publishes versions.

It applies each sequenced command through `orderbook_core` exactly once
(`apply_entry`, re-exported from `exchange.protocol`: replicas apply the same way),
stores the new version of the book in the DHT (`exchange.versions`), records it in its
`AppliedLog`, and tells every client ``orderbook_updated``. Every so many commands it
writes a snapshot of its state (`SnapshotStore`), so a restart replays only the tail.
"""

from exchange.matcher._applied import AppliedLog, AppliedRecord
from exchange.matcher._program import DEFAULT_STATE, main
from exchange.matcher._restore import Restored, restore
from exchange.matcher._snapshots import (
    DEFAULT_SNAPSHOT_EVERY,
    DEFAULT_SNAPSHOT_INTERVAL,
    DEFAULT_SNAPSHOT_KEEP,
    SNAPSHOT_FORMAT,
    Capture,
    Snapshot,
    SnapshotError,
    SnapshotInfo,
    SnapshotStore,
    snapshot_dir,
)
from exchange.matcher._standby import Deposed
from exchange.matcher._worker import GaveUp, ProcessWorker
from exchange.protocol import apply_entry

__all__ = [
    "DEFAULT_SNAPSHOT_EVERY",
    "DEFAULT_SNAPSHOT_INTERVAL",
    "DEFAULT_SNAPSHOT_KEEP",
    "DEFAULT_STATE",
    "SNAPSHOT_FORMAT",
    "AppliedLog",
    "AppliedRecord",
    "Capture",
    "Deposed",
    "GaveUp",
    "ProcessWorker",
    "Restored",
    "Snapshot",
    "SnapshotError",
    "SnapshotInfo",
    "SnapshotStore",
    "apply_entry",
    "main",
    "restore",
    "snapshot_dir",
]
