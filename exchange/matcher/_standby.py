"""A hot standby matcher on one machine: it follows the active one's applied log and
takes over, at the head, the moment the active one's database lock is free.

Exactly one is active: the one that holds the database's lock (`one_writer`, a
``flock`` the kernel drops when the holder dies, ``kill -9`` included). The standby
tries to take it every `poll` seconds; meanwhile it reads the same applied log
(read-only) and applies every version the active one recorded, so at every moment its
book is the active one's at the last recorded seq, and a takeover only applies what
came after its last look. It neither serves nor announces anything until then: only
the active one answers ``process_order`` and ``orderbook_head`` and publishes versions.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import ExitStack
from pathlib import Path
from typing import Protocol

import anyio

from exchange.matcher._applied import AppliedLog
from exchange.matcher._restore import Follower
from exchange.matcher._snapshots import SnapshotStore
from exchange.protocol import DatabaseInUse
from exchange.runtime import Outage, one_writer
from orderbook_core import MarketSpec

__all__ = ["Deposed", "Follows", "Standby"]

_log = logging.getLogger("exchange.matcher")


class Deposed(Exception):
    """This matcher is not (or no longer) the market's active one: another holds the
    lease, or wrote the market's head since this one did (JetStream, `KVStandby`)."""


class Follows(Protocol):
    """What the worker needs of a standby: `Standby`, or `KVStandby` on JetStream."""

    follower: Follower | None
    following: anyio.Event

    async def take_over(self, stack: ExitStack) -> None: ...


class Standby:
    """Follows the applied log at `db_path` until its lock can be taken.

    Args:
        db_path: the active matcher's database (this one's too, once it takes over).
        spec: the market.
        snapshots: where to start following from (the newest valid snapshot).
        poll: seconds between two tries of the lock (and two reads of the log).
    """

    def __init__(
        self, db_path: Path, spec: MarketSpec, snapshots: SnapshotStore, *, poll: float = 0.05
    ) -> None:
        self.db_path = db_path
        self.spec = spec
        self.snapshots = snapshots
        self.poll = poll
        self.follower: Follower | None = None
        """The state followed so far (None before the log was first read)."""
        self.following = anyio.Event()
        """Set once another matcher was found active and this one follows it."""
        self._log: AppliedLog | None = None
        self._reading = Outage(_log, "standby: reading the active matcher's applied log")

    async def take_over(self, stack: ExitStack) -> None:
        """Return once this process holds the database's lock (held until `stack` closes),
        following the log meanwhile.

        Raises:
            OSError: the lock file cannot be created.
            RuntimeError, ReplayError, sqlite3.Error: the log cannot be followed.
        """
        try:
            while True:
                try:
                    stack.enter_context(one_writer(self.db_path))
                except DatabaseInUse:
                    if not self.following.is_set():
                        _log.info(
                            "standby: another matcher holds %s: following its applied log "
                            "until it stops",
                            self.db_path,
                        )
                        self.following.set()
                else:
                    break
                await anyio.to_thread.run_sync(self._follow)
                await anyio.sleep(self.poll)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
        if self.follower is not None:
            _log.info("standby: taking over at seq %d", self.follower.seq)

    def _follow(self) -> None:
        try:
            if self._log is None:
                if not self.db_path.is_file():
                    return  # the active one has not made it yet
                self._log = AppliedLog(self.db_path, self.spec, read_only=True)
            if self.follower is None:
                self.follower = Follower.start(self._log, self.snapshots, self.spec, self.db_path)
            self.follower.advance(self._log)
        except sqlite3.OperationalError as exc:  # e.g. made, its table not yet: next time
            self._reading.failed(str(exc))
        else:
            self._reading.worked()
