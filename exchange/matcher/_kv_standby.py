"""Matchers of one market on several machines, the journal on JetStream: follow the
market's head, take the lease, serve, and stop when deposed.

Every matcher with ``--journal nats://...`` starts as a standby: it holds its own
``--db`` (its own machine), reads ``matcher.head`` every `poll` seconds and applies each
version listed there that it has not (its commands read from the stream by seq,
recorded with the version's root in its own applied log, one transaction per version),
so its applied log equals the active one's, row for row. Once it is at the head and
the lease is free (absent, or run out), it takes the lease, catches up once more,
claims the head (compare-and-set: the head it caught up to, now naming its lease), and
returns: the worker then republishes the head version, announces its names and serves.
While active it renews the lease every ``ttl / 3`` (`hold`) and writes the head after
each version (`fence`); a lost lease or a refused head write is `Deposed`: the worker
stops serving and exits, having recorded nothing the market's head does not name.

A matcher the head's list of versions no longer reaches (an empty ``--db`` on a new
machine, or one restarted after a long stop) starts from the newest valid snapshot in
the object store (`ObjectSnapshots`) from which the head lists every later version,
and waits for one if there is none yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

from exchange.matcher._applied import AppliedLog, AppliedRecord
from exchange.matcher._kv_lease import MarketHead, MatcherKV
from exchange.matcher._kv_snapshots import MirroredSnapshots, ObjectSnapshots
from exchange.matcher._restore import Follower
from exchange.matcher._snapshots import SnapshotError, SnapshotStore
from exchange.matcher._standby import Deposed
from exchange.matcher._worker import ProcessWorker
from exchange.protocol import ERR_UNAVAILABLE, Refused, StorageUnavailable
from exchange.runtime import Outage, one_writer
from orderbook_core import MarketSpec

__all__ = ["KVStandby", "on_jetstream", "run_with_kv_lease"]

_log = logging.getLogger("exchange.matcher")


class KVStandby:
    """Follows the market's head on JetStream until this matcher holds the lease.

    Args:
        kv: the market's lease, head and journal (`MatcherKV`).
        db_path: this matcher's own database.
        spec: the market.
        snapshots: where following starts from (the newest valid snapshot).
        objects: the market's snapshots in the object store: where a matcher with an
            empty database starts from when the head no longer lists every version.
        poll: seconds between two reads of the head (and tries of the lease).
    """

    def __init__(
        self,
        kv: MatcherKV,
        db_path: Path,
        spec: MarketSpec,
        snapshots: SnapshotStore,
        *,
        objects: ObjectSnapshots | None = None,
        poll: float = 0.05,
    ) -> None:
        self.objects = objects
        self.kv = kv
        self.db_path = db_path
        self.spec = spec
        self.snapshots = snapshots
        self.poll = poll
        self.follower: Follower | None = None
        self.following = anyio.Event()
        """Set once another matcher was found active and this one follows it."""
        self.took = anyio.Event()
        """Set once this one holds the lease and claimed the head."""
        self.deposed = 0
        """How many times this matcher was deposed (0 or 1: it stops then)."""
        self.waiting = False
        """Whether it waits for a snapshot in the object store (logged once)."""
        self.stop: Callable[[BaseException], None] = lambda exc: None
        """Stops the worker with `exc` (set by `run_with_kv_lease`)."""

    async def take_over(self, stack: ExitStack) -> None:
        """Return once this holds the lease and the head names it (this process holds
        its own database's lock until `stack` closes), following meanwhile.

        Raises:
            DatabaseInUse: another matcher uses this --db.
            RuntimeError: this database is not the market's (beyond its head, another
                root), or lags further than the head lists versions.
            ReplayError, sqlite3.Error: the log cannot be read or written.
        """
        stack.enter_context(one_writer(self.db_path))
        log = await anyio.to_thread.run_sync(AppliedLog, self.db_path, self.spec)
        try:
            start = partial(Follower.start, log, self.snapshots, self.spec, self.db_path)
            self.follower = await anyio.to_thread.run_sync(start)
            await anyio.to_thread.run_sync(self.follower.advance, log)
            outage = Outage(_log, "standby: following the market's head on JetStream")
            while True:
                try:
                    if await anyio.to_thread.run_sync(self._try, log):
                        break
                    outage.worked()
                except StorageUnavailable as exc:
                    outage.failed(str(exc))
                await anyio.sleep(self.poll)
        finally:
            await anyio.to_thread.run_sync(log.close)
        _log.info(
            "active: %s took the matcher's lease at seq %d", self.kv.holder, self.follower.seq
        )
        self.took.set()

    def _try(self, log: AppliedLog) -> bool:
        """Follow the head; take the lease and claim the head when free (blocking)."""
        head = self.kv.read_head()
        if head is not None and self._beyond_reach(head) and not self._start_over(log, head):
            if not self.waiting:
                self.waiting = True
                _log.warning(
                    "standby: the market's head seq=%d lists versions from seq %d only:"
                    " waiting for a snapshot in the object store to start from",
                    head.seq,
                    head.versions[0][0] if head.versions else head.seq,
                )
            return False
        self._catch_up(log, head)
        if head is not None and self._seq() < head.seq:
            return False
        if not self.kv.acquire():
            if not self.following.is_set():
                _log.info(
                    "standby: %s holds the matcher's lease; following the market's head",
                    self.kv.lease_holder(),
                )
                self.following.set()
            return False
        head = self.kv.read_head()  # the last holder may have written since
        self._catch_up(log, head)
        follower = self.follower
        assert follower is not None
        first = follower.first if follower.root is not None else 0
        return self.kv.claim_head(head, first, follower.seq, follower.root)

    def _beyond_reach(self, head: MarketHead) -> bool:
        """Whether the head no longer lists the version after this one's seq."""
        follower = self.follower
        assert follower is not None
        firsts = {first for first, _seq, _root in head.versions}
        return follower.seq < head.seq and follower.seq + 1 not in firsts

    def _start_over(self, log: AppliedLog, head: MarketHead) -> bool:
        """Start from the object store (`_from_objects`); a database with records, too
        far behind to follow, is emptied first. False: no snapshot to start from (yet),
        or no object store (then `_catch_up` says why it cannot follow)."""
        follower = self.follower
        assert follower is not None
        if self.objects is None:
            return follower.seq > 0
        if follower.seq > 0:
            _log.warning(
                "standby: at seq %d, too far behind the market's head seq %d to follow it:"
                " forgetting %s's records, starting over from the object store",
                follower.seq,
                head.seq,
                self.db_path,
            )
            log.clear()
            self.follower = Follower(self.spec, self.db_path)
        return self._from_objects(log, head)

    def _from_objects(self, log: AppliedLog, head: MarketHead) -> bool:
        """Start from the newest valid snapshot in the object store from which the head
        lists every later version; False: none yet. Its own version's commands are
        recorded with its root (what a restart checks a snapshot against)."""
        if self.objects is None:
            return False
        listed = {seq: root for _first, seq, root in head.versions}
        firsts = {first for first, _seq, _root in head.versions}
        for seq in reversed(self.objects.seqs()):
            if seq > head.seq:
                continue
            if seq != head.seq and seq + 1 not in firsts:
                return False  # older ones are further back still
            data = self.objects.get(seq)
            what = f"{self.objects.bucket} snapshot {seq}"
            if data is None:
                _log.warning("%s: gone; trying an older one", what)
                continue
            try:
                snapshot = self.snapshots.parse(data, what)
                if snapshot.seq != seq or listed.get(seq, snapshot.root) != snapshot.root:
                    raise SnapshotError(f"{what}: not the market's version at seq {seq}")
            except SnapshotError as exc:
                _log.warning("%s: not used, trying an older one", exc)
                continue
            entries = self.kv.entries(snapshot.first, snapshot.seq)
            self.snapshots.adopt(data, what)
            log.append([AppliedRecord(entry, snapshot.root) for entry in entries])
            self.follower = Follower(self.spec, self.db_path, snapshot)
            _log.info("standby: starting from %s (%d orders)", what, len(snapshot.book))
            return True
        return False

    def _seq(self) -> int:
        assert self.follower is not None
        return self.follower.seq

    def _catch_up(self, log: AppliedLog, head: MarketHead | None) -> None:
        """Apply and record every version of `head` beyond this one's seq."""
        follower = self.follower
        assert follower is not None
        if head is None:
            return
        listed = {seq: root for _first, seq, root in head.versions}
        if follower.seq > head.seq or listed.get(follower.seq, follower.root) != follower.root:
            raise RuntimeError(
                f"{self.db_path}: applied up to seq {follower.seq} (root {follower.root}),"
                f" which is not the market's head seq {head.seq}: another market's or"
                " another chain's state; start this matcher with an empty --db"
            )
        pending = [v for v in head.versions if v[1] > follower.seq]
        if follower.seq < head.seq and (not pending or pending[0][0] != follower.seq + 1):
            raise RuntimeError(
                f"{self.db_path}: at seq {follower.seq}, too far behind the market's head"
                f" {head.seq} to learn its versions; start from a copy of the active"
                " matcher's --db or snapshot"
            )
        for first, seq, root in pending:
            entries = self.kv.entries(first, seq)
            log.append([AppliedRecord(entry, root) for entry in entries])
            follower.advance(log)

    async def fence(self, first: int, seq: int, root: str) -> None:
        """Write the version ``first..seq`` as the market's head: what the worker does
        before it records, replies or broadcasts it.

        Raises:
            Refused: ERR_UNAVAILABLE; the worker stops (`stop`).
        """
        try:
            await anyio.to_thread.run_sync(self.kv.write_head, first, seq, root)
        except (Deposed, StorageUnavailable) as exc:
            self.deposed += 1
            _log.error("deposed: seq=%d not published, stopping: %s", seq, exc)
            self.stop(exc)
            raise Refused(ERR_UNAVAILABLE, "this matcher is not the active one") from exc

    async def hold(self) -> None:
        """Renew the lease while active; raise `Deposed` once another holder has it."""
        await self.took.wait()
        outage = Outage(_log, "renewing the matcher's lease")
        while True:
            await anyio.sleep(self.kv.renew_every)
            try:
                held = await anyio.to_thread.run_sync(self.kv.renew)
            except StorageUnavailable as exc:
                outage.failed(f"{exc}{'' if self.kv.valid() else ' (publishing nothing)'}")
                continue
            outage.worked()
            if not held:
                self.deposed += 1
                _log.error("deposed: lost the matcher's lease of %s", self.kv.location)
                raise Deposed("lost the matcher's lease")


async def run_with_kv_lease(
    worker: ProcessWorker, standby: KVStandby, *, task_status: TaskStatus[int] = TASK_STATUS_IGNORED
) -> None:
    """`ProcessWorker.run` as one of the market's matchers on JetStream: stand by until
    this holds the lease, then serve while renewing it; raises `Deposed` (or the
    worker's failure) when it is lost. A clean stop gives the lease up at once."""
    worker.standby, worker.fence, standby.stop = standby, standby.fence, worker.stop
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(standby.hold)
            port: int = await tg.start(worker.run)
            task_status.started(port)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(standby.kv.release)


def on_jetstream(worker: ProcessWorker, kv: MatcherKV) -> KVStandby:
    """Make `worker` one of the market's matchers on JetStream (run it with
    `run_with_kv_lease`): its snapshot files also go to the object store, and it
    stands by until it holds the lease."""
    local = worker.snapshotter.store
    objects = ObjectSnapshots(kv, keep=local.keep)
    store = MirroredSnapshots(local.directory, worker.spec, objects, keep=local.keep)
    worker.snapshotter.store = store
    return KVStandby(kv, worker.db_path, worker.spec, store, objects=objects)
