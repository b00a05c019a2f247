"""A client's replica of the published book: replaced only by verified, newer versions.

Theory of operation
-------------------
`orderbook_updated` brings a root hash, nothing else; the hash says nothing about
which version it names until its root document is fetched. Hashes can arrive out of
order (the process worker's `map` requests race), twice, while a fetch is in flight,
or never (a dropped request), and any peer can send one. So:

* `notify()` only checks the hash's shape and records it; the request handler returns
  at once and never waits on the DHT.
* A *bound* says how far the replica may move: the highest sequence number the
  matcher's ``orderbook_head`` vouched for (`raise_bound`). Anyone can put a
  self-consistent version in the DHT and call ``orderbook_updated``; one numbered far
  ahead would otherwise pin the replica on a forged book for good. A version beyond the
  bound is *held*, not taken, and `wait_held` tells the owner, which asks the head
  again and raises the bound; held versions the new bound covers are then taken.
  Before any bound is set (no head known yet), nothing can be checked and versions
  are taken as they come.
* One task at a time (`sync()`, under a lock) drains the recorded hashes: it reads the
  root of each (small, one `get`), drops those whose `seq` is not above the replica's,
  and moves to the highest one (falling back to the next highest if it does not
  verify). Every hash is verified by the source (`VersionSource`); a version that
  fails verification changes nothing.
* Moving is cheap when the replica has a version: the source *advances* it
  (`VersionSource.advance`: apply the commands of the versions in between to the
  replica's own book and check the resulting book hash against the new root, O(log n)
  per changed order), and the events are those the replica computed. Only the first
  version, or one the chain back to ours does not reach, is fetched whole
  (`VersionSource.fetch`: every book page, O(n)); then, when it skips versions the
  replica never saw (`first > seq + 1`), the events it missed are collected by walking
  the `prev` roots back (events only, not their books), at most `max_walk` versions;
  the update says whether they are complete.

Whatever order hashes arrive in, the replica ends at the highest sequence number it
was told about (and that verified), and its sequence number never goes down.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

from exchange.protocol import FetchFailed, root_hash_from_wire

__all__ = [
    "Replica",
    "ReplicaUpdate",
    "RootLike",
    "VersionLike",
    "VersionSource",
]


class RootLike(Protocol):
    """What the replica reads of a version's root document."""

    @property
    def seq(self) -> int: ...

    @property
    def first(self) -> int: ...

    @property
    def prev(self) -> str | None: ...


R_co = TypeVar("R_co", bound=RootLike, covariant=True)


class VersionLike(Protocol[R_co]):
    """A verified version: its root document, its book, the events it added."""

    @property
    def root(self) -> R_co: ...

    @property
    def events(self) -> tuple[Any, ...]: ...


V = TypeVar("V", bound=VersionLike[RootLike])


class VersionSource(Protocol[V]):
    """Where versions come from; every method verifies every hash it fetches.

    All raise `FetchFailed` (and nothing else on purpose) when the hash names nothing,
    content does not match its hash, or the network fails.
    """

    async def fetch_root(self, root_hash: str) -> RootLike: ...

    async def fetch(self, root_hash: str) -> V: ...

    async def advance(self, current: V, root_hash: str) -> tuple[V, tuple[Any, ...]]:
        """Move `current` (the replica's version) to the newer `root_hash`, cheaply.

        Returns the new version and the events of every seq after `current`'s. Takes
        over `current`'s state: on `FetchFailed` it must be as before (the replica
        then falls back to `fetch`).
        """
        ...

    async def fetch_events(self, root_hash: str) -> tuple[RootLike, tuple[Any, ...]]:
        """The root and events of a version, without its book (for the walk back)."""
        ...


@dataclass(frozen=True, slots=True)
class ReplicaUpdate(Generic[V]):
    """The replica moved from `previous_seq` to `version.root.seq`.

    `events` are the events of every sequence number in `(previous_seq, seq]` that
    could be collected, oldest first; `complete` is False when some could not (the
    walk back hit its bound or a version that is gone from the DHT).
    """

    root_hash: str
    version: V
    previous_seq: int
    events: tuple[Any, ...]
    complete: bool

    @property
    def seq(self) -> int:
        return self.version.root.seq


class Replica(Generic[V]):
    """The latest verified version this client was told about.

    Args:
        source: fetches and verifies versions.
        max_walk: how many skipped versions to fetch, at most, to collect missed events.
        max_pending: how many unprocessed hashes to keep; beyond it the oldest are
            dropped (a flood of bogus hashes cannot grow memory).
        on_update: awaited after each replacement, inside the sync lock (so updates
            are reported in order).
        on_problem: called with a message when a notified hash could not be used.
        max_held: how many versions beyond the bound to hold, at most (newest kept).

    Attributes:
        advances: moves made by applying commands (`VersionSource.advance`).
        full_fetches: moves made by reading a version whole (`VersionSource.fetch`).
    """

    def __init__(
        self,
        source: VersionSource[V],
        *,
        max_walk: int = 32,
        max_pending: int = 64,
        on_update: Callable[[ReplicaUpdate[V]], Awaitable[None]] | None = None,
        on_problem: Callable[[str], None] | None = None,
        max_held: int = 16,
    ) -> None:
        self._source = source
        self._bound: int | None = None
        self._held: dict[str, int] = {}  # root hash -> seq, beyond the bound
        self._max_held = max_held
        self._held_changed = anyio.Event()
        self._last_held = 0
        self._holds = 0  # versions held so far, and as many as `wait_held` reported
        self._holds_seen = 0
        self._max_walk = max_walk
        self._max_pending = max_pending
        self._on_update = on_update
        self._on_problem = on_problem
        self._version: V | None = None
        self._root_hash: str | None = None
        self._pending: dict[str, None] = {}  # insertion-ordered set, oldest first
        self._lock = anyio.Lock()
        self._wakeup = anyio.Event()
        self._changed = anyio.Event()
        self.advances = 0
        self.full_fetches = 0

    @property
    def seq(self) -> int:
        """The replica's sequence number: 0 before the first version."""
        return 0 if self._version is None else self._version.root.seq

    @property
    def root_hash(self) -> str | None:
        return self._root_hash

    @property
    def version(self) -> V | None:
        return self._version

    @property
    def bound(self) -> int | None:
        """The highest seq the replica may move to (None: no head known yet)."""
        return self._bound

    def notify(self, payload: object) -> str:
        """Record a root hash to look at; return it. Never waits.

        Raises:
            BadRootHash: `payload` is not a 40-hex string (nothing is recorded).
        """
        root_hash = root_hash_from_wire(payload)
        if root_hash != self._root_hash:
            self._pending.pop(root_hash, None)
            self._pending[root_hash] = None
            while len(self._pending) > self._max_pending:
                del self._pending[next(iter(self._pending))]
            self._wakeup.set()
        return root_hash

    def raise_bound(self, seq: int) -> None:
        """Allow versions up to `seq` (the matcher's head vouched for it). Never waits.

        Held versions that `seq` now covers are looked at again. The bound never goes
        down.
        """
        if self._bound is not None and seq <= self._bound:
            return
        self._bound = seq
        covered = [h for h, held_seq in self._held.items() if held_seq <= seq]
        for root_hash in covered:
            del self._held[root_hash]
            self._pending[root_hash] = None
        if covered:
            self._wakeup.set()

    async def wait_held(self) -> int:
        """Wait until a version beyond the bound is newly held; return its seq.

        Only a new hold wakes it: a forged version held for good does not keep the
        owner asking the head again and again. A hold made since the last return counts
        as new, even if nobody was waiting then (the owner was busy asking the head for
        the previous one): a node that follows by pushes alone once missed the hold of
        the last version pushed and kept it held for good.
        """
        while self._holds == self._holds_seen:
            await self._held_changed.wait()
        self._holds_seen = self._holds
        return self._last_held

    def _hold(self, root_hash: str, seq: int) -> None:
        if root_hash in self._held:
            return
        self._held[root_hash] = seq
        self._last_held = seq
        self._holds += 1
        while len(self._held) > self._max_held:
            del self._held[min(self._held, key=self._held.__getitem__)]
        self._held_changed.set()
        self._held_changed = anyio.Event()

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        """Sync whenever a hash is notified, until cancelled."""
        task_status.started()
        while True:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
            await self.sync()

    async def wait_for(self, seq: int) -> None:
        """Return once the replica's sequence number is `seq` or more."""
        while self.seq < seq:
            await self._changed.wait()

    async def sync(self) -> ReplicaUpdate[V] | None:
        """Process every recorded hash; return the last update made, if any."""
        last: ReplicaUpdate[V] | None = None
        async with self._lock:
            while self._pending:
                batch = list(reversed(self._pending))  # newest first
                self._pending.clear()
                update = await self._sync_batch(batch)
                if update is not None:
                    last = update
        return last

    async def _sync_batch(self, hashes: list[str]) -> ReplicaUpdate[V] | None:
        candidates: list[tuple[int, str]] = []
        for root_hash in hashes:
            if root_hash == self._root_hash:
                continue
            try:
                root = await self._source.fetch_root(root_hash)
            except FetchFailed as exc:
                self._problem(f"ignored root {root_hash}: {exc}")
                continue
            if root.seq <= self.seq:
                continue
            if self._bound is not None and root.seq > self._bound:
                self._problem(f"held root {root_hash}: seq {root.seq} is ahead of the head")
                self._hold(root_hash, root.seq)  # until the head vouches for it
                continue
            candidates.append((root.seq, root_hash))
        # Highest first; fall back to the next one if the best fails to verify.
        for _, root_hash in sorted(candidates, reverse=True):
            update = await self._advance(root_hash)
            if update is not None:
                return update
            try:
                version = await self._source.fetch(root_hash)
            except FetchFailed as exc:
                self._problem(f"ignored version {root_hash}: {exc}")
                continue
            if version.root.seq <= self.seq:
                continue
            self.full_fetches += 1
            return await self._replace(root_hash, version)
        return None

    async def _advance(self, root_hash: str) -> ReplicaUpdate[V] | None:
        """Follow to `root_hash` from our version by its commands; None if it cannot."""
        current = self._version
        if current is None:
            return None
        try:
            version, events = await self._source.advance(current, root_hash)
        except FetchFailed:
            return None  # the caller reads the version whole
        # No await before the version is ours: `current` was taken over.
        previous_seq = current.root.seq
        self._version = version
        self._root_hash = root_hash
        self.advances += 1
        return await self._updated(ReplicaUpdate(root_hash, version, previous_seq, events, True))

    async def _replace(self, root_hash: str, version: V) -> ReplicaUpdate[V]:
        previous_seq = self.seq
        events, complete = await self._collect_events(version, previous_seq)
        self._version = version
        self._root_hash = root_hash
        return await self._updated(
            ReplicaUpdate(root_hash, version, previous_seq, events, complete)
        )

    async def _updated(self, update: ReplicaUpdate[V]) -> ReplicaUpdate[V]:
        self._changed.set()
        self._changed = anyio.Event()
        if self._on_update is not None:
            await self._on_update(update)
        return update

    async def _collect_events(self, version: V, previous_seq: int) -> tuple[tuple[Any, ...], bool]:
        chunks = [version.events]
        root = version.root
        steps = 0
        while root.first > previous_seq + 1:
            prev = root.prev
            if prev is None or prev == self._root_hash or steps >= self._max_walk:
                # prev == our own root means the versions in between are ours already;
                # a chain that ends early or a walk cut short means events are missing.
                complete = prev is not None and prev == self._root_hash
                return self._flatten(chunks, previous_seq), complete
            try:
                root, events = await self._source.fetch_events(prev)
            except FetchFailed as exc:
                self._problem(f"could not walk back to {prev}: {exc}")
                return self._flatten(chunks, previous_seq), False
            steps += 1
            chunks.append(events)
        return self._flatten(chunks, previous_seq), True

    @staticmethod
    def _flatten(chunks: list[tuple[Any, ...]], previous_seq: int) -> tuple[Any, ...]:
        out: list[Any] = []
        for chunk in reversed(chunks):
            out.extend(e for e in chunk if _event_seq(e) > previous_seq)
        return tuple(out)

    def _problem(self, message: str) -> None:
        if self._on_problem is not None:
            self._on_problem(message)


def _event_seq(event: Any) -> int:
    seq = getattr(event, "seq", None)
    return seq if isinstance(seq, int) else 0
