"""When the matcher takes its snapshots, and how without stopping matching.

Every `every` commands or `interval` seconds (whichever first, and only when a command
was applied since the last one). The copy is taken on the event loop under the
matcher's processing lock, between two batches, as the resting orders' immutable tuples
(`OrderBook.orders`): that is the only pause matching sees (kept in `pauses`). It is
encoded and written (`SnapshotStore.write`) in a worker thread while matching goes on.
A write that fails is logged (once per outage) and tried again at the next occasion.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import anyio

from exchange.matcher._snapshots import Capture, SnapshotStore
from exchange.runtime import Outage

__all__ = ["Snapshotter"]

_log = logging.getLogger("exchange.matcher")

_T = TypeVar("_T")

_RETRY = 5.0
"""Seconds before a failed write is tried again (at the latest)."""


def _without_gc(call: Callable[[], _T]) -> _T:
    """`call()` with the cyclic GC off: the copy makes one tuple per resting order, which
    sets off collections of the whole heap (a third to half of the pause at 1e5 orders);
    none of those tuples can be in a cycle."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return call()
    finally:
        if enabled:
            gc.enable()


class Snapshotter:
    """Takes one matcher's snapshots into `store`.

    Args:
        store: where they go.
        every: commands between two (0: not by count).
        interval: seconds between two (0: not by time).
    """

    def __init__(self, store: SnapshotStore, *, every: int, interval: float) -> None:
        self.store = store
        self.every = every
        self.interval = interval
        self.seq = 0
        """The seq of the newest snapshot written or started from (0: none)."""
        self.pauses: list[float] = []
        """Seconds the loop spent taking each snapshot's copy (the matching pause)."""
        self._due = anyio.Event()
        self._lock = anyio.Lock()  # one snapshot at a time
        self._writing = Outage(_log, "writing snapshots")

    def applied(self, seq: int) -> None:
        """Tell of a new head `seq` (sets off a snapshot once `every` were applied)."""
        if self._by_count(seq):
            self._due.set()

    def _by_count(self, head: int) -> bool:
        return bool(self.every) and head - self.seq >= self.every

    async def run(
        self, head: Callable[[], int], lock: anyio.Lock, copy: Callable[[], Capture | None]
    ) -> None:
        """Take snapshots as due until cancelled (`head`: the head seq; see `take`)."""
        interval = self.interval or float("inf")
        while True:
            if not self._by_count(head()):
                with anyio.move_on_after(interval) as timer:
                    await self._due.wait()
                self._due = anyio.Event()
                if not timer.cancelled_caught and not self._by_count(head()):
                    continue  # set while the last snapshot was written: not due any more
            if head() <= self.seq:
                continue
            await self.take(lock, copy)
            if self._writing.failing:  # e.g. a full disk: not in a tight loop
                await anyio.sleep(min(interval, _RETRY))

    async def take(self, lock: anyio.Lock, copy: Callable[[], Capture | None]) -> int | None:
        """Take a snapshot now: `copy` under `lock`, then the write in a thread.

        Returns:
            Its seq; None when `copy` gave nothing, the state is the newest snapshot's
            already, or the write failed (logged).
        """
        async with self._lock:
            async with lock:  # between two batches: the copy is of one version's state
                started = time.perf_counter()
                capture = _without_gc(copy)
                pause = time.perf_counter() - started
            if capture is None or capture.seq <= self.seq:
                return None
            self.pauses.append(pause)
            started = time.perf_counter()
            try:
                await anyio.to_thread.run_sync(self.store.write, capture)
            except OSError as exc:
                self._writing.failed(f"seq={capture.seq}: {exc}")
                return None
            self._writing.worked()
            self.seq = capture.seq
        _log.info(
            "snapshot seq=%d: %d orders, loop paused %.1f ms, written in %.2f s",
            capture.seq,
            len(capture.orders),
            pause * 1000,
            time.perf_counter() - started,
        )
        return capture.seq
