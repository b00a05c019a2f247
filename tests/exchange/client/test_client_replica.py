"""The client's replica logic against a fake version source (no DHT, no core)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.client import Replica, ReplicaUpdate
from exchange.protocol import BadRootHash, FetchFailed, root_hash_from_wire

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class FakeRoot:
    seq: int
    first: int
    prev: str | None


@dataclass(frozen=True)
class FakeEvent:
    seq: int
    what: str


@dataclass(frozen=True)
class FakeVersion:
    root: FakeRoot
    events: tuple[Any, ...]


def h(n: int) -> str:
    return hashlib.sha1(str(n).encode()).hexdigest()


@dataclass
class FakeSource:
    versions: dict[str, FakeVersion] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    delay: dict[str, float] = field(default_factory=dict)
    fetches: list[str] = field(default_factory=list)
    root_fetches: list[str] = field(default_factory=list)
    advances: list[str] = field(default_factory=list)
    can_advance: bool = False  # the real source advances; the fallback is tested here

    def chain(self, n: int, *, per_version: int = 1) -> list[str]:
        """Versions 1..n, each covering `per_version` seqs, linked by prev."""
        prev: str | None = None
        hashes = []
        for i in range(1, n + 1):
            first, seq = (i - 1) * per_version + 1, i * per_version
            events = tuple(FakeEvent(s, f"e{s}") for s in range(first, seq + 1))
            self.versions[h(seq)] = FakeVersion(FakeRoot(seq, first, prev), events)
            prev = h(seq)
            hashes.append(prev)
        return hashes

    async def fetch_root(self, root_hash: str) -> FakeRoot:
        self.root_fetches.append(root_hash)
        return (await self._get(root_hash)).root

    async def fetch(self, root_hash: str) -> FakeVersion:
        self.fetches.append(root_hash)
        return await self._get(root_hash)

    async def advance(
        self, current: FakeVersion, root_hash: str
    ) -> tuple[FakeVersion, tuple[Any, ...]]:
        """Walk back to `current` as the real source does, collecting the events."""
        if not self.can_advance:
            raise FetchFailed("this version carries no commands")
        self.advances.append(root_hash)
        version = target = await self._get(root_hash)
        chunks = [version.events]
        while version.root.first > current.root.seq + 1:
            assert version.root.prev is not None
            version = await self._get(version.root.prev)
            chunks.append(version.events)
        if version.root.first != current.root.seq + 1:
            raise FetchFailed("does not follow")
        return target, tuple(e for chunk in reversed(chunks) for e in chunk)

    async def fetch_events(self, root_hash: str) -> tuple[FakeRoot, tuple[Any, ...]]:
        self.fetches.append(root_hash)
        version = await self._get(root_hash)
        return version.root, version.events

    async def _get(self, root_hash: str) -> FakeVersion:
        await anyio.sleep(self.delay.get(root_hash, 0))
        if root_hash in self.broken:
            raise FetchFailed(f"page of {root_hash} does not match its hash")
        try:
            return self.versions[root_hash]
        except KeyError:
            raise FetchFailed(f"missing root {root_hash}") from None


def seqs(update: ReplicaUpdate[FakeVersion] | None) -> list[int]:
    assert update is not None
    return [e.seq for e in update.events]


async def test_newer_version_replaces_replica() -> None:
    source = FakeSource()
    hashes = source.chain(2)
    replica: Replica[FakeVersion] = Replica(source)
    assert replica.seq == 0
    replica.notify(hashes[0])
    assert seqs(await replica.sync()) == [1]
    replica.notify(hashes[1])
    update = await replica.sync()
    assert update is not None
    assert update.previous_seq == 1
    assert update.complete
    assert replica.seq == 2
    assert replica.root_hash == hashes[1]


async def test_older_or_equal_seq_is_ignored() -> None:
    source = FakeSource()
    hashes = source.chain(3)
    replica: Replica[FakeVersion] = Replica(source)
    replica.notify(hashes[2])
    await replica.sync()
    assert replica.seq == 3
    replica.notify(hashes[0])
    replica.notify(hashes[1])
    assert await replica.sync() is None
    assert replica.seq == 3
    assert replica.root_hash == hashes[2]
    # Equal seq, same hash: not even fetched again.
    before = len(source.root_fetches)
    replica.notify(hashes[2])
    assert await replica.sync() is None
    assert len(source.root_fetches) == before


async def test_equal_seq_under_another_hash_is_ignored() -> None:
    source = FakeSource()
    hashes = source.chain(2)
    other = h(1000)
    source.versions[other] = FakeVersion(FakeRoot(2, 2, hashes[0]), (FakeEvent(2, "x"),))
    replica: Replica[FakeVersion] = Replica(source)
    replica.notify(hashes[1])
    await replica.sync()
    replica.notify(other)
    assert await replica.sync() is None
    assert replica.root_hash == hashes[1]


async def test_out_of_order_batch_converges_to_highest_and_fetches_it_only() -> None:
    source = FakeSource()
    hashes = source.chain(5)
    replica: Replica[FakeVersion] = Replica(source)
    for i in (3, 0, 4, 1, 2):
        replica.notify(hashes[i])
    update = await replica.sync()
    assert replica.seq == 5
    assert source.fetches[0] == hashes[4]
    # The skipped versions are walked back for their events, all of them.
    assert seqs(update) == [1, 2, 3, 4, 5]
    assert update is not None
    assert update.complete


async def test_skipped_versions_walk_is_bounded() -> None:
    source = FakeSource()
    hashes = source.chain(10)
    replica: Replica[FakeVersion] = Replica(source, max_walk=3)
    replica.notify(hashes[9])
    update = await replica.sync()
    assert update is not None
    assert not update.complete
    assert seqs(update) == [7, 8, 9, 10]
    assert replica.seq == 10


async def test_walk_stops_at_current_version() -> None:
    source = FakeSource()
    hashes = source.chain(6, per_version=2)
    replica: Replica[FakeVersion] = Replica(source)
    replica.notify(hashes[1])
    await replica.sync()
    assert replica.seq == 4
    replica.notify(hashes[5])
    update = await replica.sync()
    assert update is not None
    assert update.complete
    assert seqs(update) == [5, 6, 7, 8, 9, 10, 11, 12]
    assert hashes[1] not in source.fetches[1:]


async def test_a_replica_with_a_version_advances_instead_of_fetching() -> None:
    source = FakeSource(can_advance=True)
    hashes = source.chain(6, per_version=2)
    replica: Replica[FakeVersion] = Replica(source)
    replica.notify(hashes[1])
    await replica.sync()  # the first version is read whole: nothing to advance from
    assert (replica.full_fetches, replica.advances) == (1, 0)
    replica.notify(hashes[5])
    update = await replica.sync()
    assert update is not None
    assert update.complete
    assert seqs(update) == [5, 6, 7, 8, 9, 10, 11, 12]
    assert source.advances == [hashes[5]]
    assert hashes[5] not in source.fetches  # never read whole
    assert (replica.full_fetches, replica.advances, replica.seq) == (1, 1, 12)


async def test_versions_announced_while_busy_are_followed_in_one_advance() -> None:
    source = FakeSource(can_advance=True)
    hashes = source.chain(6, per_version=2)
    replica: Replica[FakeVersion] = Replica(source)
    replica.notify(hashes[1])
    await replica.sync()
    for root_hash in hashes[2:]:  # announced one by one while the replica was busy
        replica.notify(root_hash)
    update = await replica.sync()
    assert update is not None
    assert seqs(update) == [5, 6, 7, 8, 9, 10, 11, 12]
    assert source.advances == [hashes[5]]  # the newest only, in one step
    assert (replica.full_fetches, replica.advances, replica.seq) == (1, 1, 12)


async def test_a_replica_that_cannot_advance_fetches_the_version_whole() -> None:
    source = FakeSource(can_advance=True)
    hashes = source.chain(3)
    replica: Replica[FakeVersion] = Replica(source)
    replica.notify(hashes[0])
    await replica.sync()
    source.broken.add(hashes[1])  # the chain back is broken: advance fails
    replica.notify(hashes[2])
    update = await replica.sync()
    assert update is not None
    assert replica.seq == 3
    assert (replica.full_fetches, replica.advances) == (2, 0)
    assert hashes[2] in source.fetches


async def test_walk_through_missing_version_is_incomplete_but_replaces() -> None:
    source = FakeSource()
    hashes = source.chain(4)
    replica: Replica[FakeVersion] = Replica(source)
    replica.notify(hashes[0])
    await replica.sync()
    del source.versions[hashes[1]]  # evicted from the DHT
    replica.notify(hashes[3])
    update = await replica.sync()
    assert update is not None
    assert not update.complete
    assert seqs(update) == [3, 4]
    assert replica.seq == 4


async def test_invalid_version_leaves_replica_unchanged() -> None:
    source = FakeSource()
    hashes = source.chain(3)
    problems: list[str] = []
    replica: Replica[FakeVersion] = Replica(source, on_problem=problems.append)
    replica.notify(hashes[0])
    await replica.sync()
    source.broken.add(hashes[2])
    replica.notify(hashes[2])
    assert await replica.sync() is None
    assert replica.seq == 1
    assert replica.root_hash == hashes[0]
    assert problems
    assert hashes[2] in problems[0]


async def test_broken_best_falls_back_to_next_best() -> None:
    source = FakeSource()
    hashes = source.chain(3)
    replica: Replica[FakeVersion] = Replica(source, on_problem=lambda _: None)

    async def broken_fetch(root_hash: str) -> FakeVersion:
        if root_hash == hashes[2]:
            raise FetchFailed("tampered page")
        return await FakeSource.fetch(source, root_hash)

    source.fetch = broken_fetch  # type: ignore[method-assign]
    replica.notify(hashes[1])
    replica.notify(hashes[2])
    await replica.sync()
    assert replica.seq == 2


async def test_unknown_hash_is_ignored() -> None:
    source = FakeSource()
    replica: Replica[FakeVersion] = Replica(source, on_problem=lambda _: None)
    replica.notify(h(999))
    assert await replica.sync() is None
    assert replica.seq == 0
    assert replica.version is None


@pytest.mark.parametrize(
    "payload",
    [None, 42, "", "abc", "G" * 40, "A" * 40, "a" * 41, ["a" * 40], {"root": "a" * 40}],
)
async def test_bad_payload_is_refused_and_records_nothing(payload: object) -> None:
    source = FakeSource()
    replica: Replica[FakeVersion] = Replica(source)
    with pytest.raises(BadRootHash):
        replica.notify(payload)
    assert await replica.sync() is None
    assert source.root_fetches == []


def test_root_hash_message_is_bounded() -> None:
    with pytest.raises(BadRootHash) as info:
        root_hash_from_wire("x" * 10_000)
    assert len(str(info.value)) < 120


async def test_pending_hashes_are_bounded() -> None:
    source = FakeSource()
    replica: Replica[FakeVersion] = Replica(source, max_pending=4, on_problem=lambda _: None)
    for i in range(100):
        replica.notify(h(10_000 + i))
    await replica.sync()
    assert len(source.root_fetches) == 4


async def test_updates_during_inflight_fetch_converge_to_highest() -> None:
    source = FakeSource()
    hashes = source.chain(6)
    source.delay[hashes[1]] = 0.05
    updates: list[int] = []

    async def on_update(update: ReplicaUpdate[FakeVersion]) -> None:
        updates.append(update.seq)

    replica: Replica[FakeVersion] = Replica(source, on_update=on_update)
    async with anyio.create_task_group() as tg:
        await tg.start(replica.run)
        replica.notify(hashes[1])
        await anyio.sleep(0.01)  # the fetch of version 2 is in flight
        for i in (5, 2, 0, 3):
            replica.notify(hashes[i])
        with anyio.fail_after(5):
            await replica.wait_for(6)
        tg.cancel_scope.cancel()
    assert replica.seq == 6
    assert updates == sorted(updates)
    assert updates[-1] == 6


async def test_concurrent_syncs_are_serialized() -> None:
    source = FakeSource()
    hashes = source.chain(4)
    for hh in hashes:
        source.delay[hh] = 0.01
    replica: Replica[FakeVersion] = Replica(source)
    seen: list[int] = []

    async def sync_after(i: int) -> None:
        replica.notify(hashes[i])
        await replica.sync()
        seen.append(replica.seq)

    async with anyio.create_task_group() as tg:
        for i in (2, 0, 3, 1):
            tg.start_soon(sync_after, i)
    assert replica.seq == 4
    assert seen == sorted(seen)


# Derandomized and bounded in CI; CHAOS_PROFILE=long (`make chaos`): ten times the
# examples at random, longer chains, more notifications, deeper walks back.
LONG_RUN = os.environ.get("CHAOS_PROFILE") == "long"
CHAIN = 60 if LONG_RUN else 12


@settings(
    max_examples=1500 if LONG_RUN else 150,
    derandomize=not LONG_RUN,
    database=None,
    deadline=None,
)
@given(
    n=st.integers(1, CHAIN),
    steps=st.lists(
        st.tuples(st.integers(0, CHAIN + 3), st.booleans()),
        min_size=1,
        max_size=120 if LONG_RUN else 30,
    ),
    broken=st.sets(st.integers(0, CHAIN - 1), max_size=4 * CHAIN // 12),
    walk=st.integers(0, 20 if LONG_RUN else 5),
)
def test_property_replica_ends_at_highest_valid_and_never_goes_back(
    n: int, steps: list[tuple[int, bool]], broken: set[int], walk: int
) -> None:
    """Any interleaving of notifications (valid, unknown, broken) and syncs."""

    async def check() -> None:
        source = FakeSource()
        hashes = source.chain(n)
        source.broken = {hashes[i] for i in broken if i < n}
        replica: Replica[FakeVersion] = Replica(source, max_walk=walk, on_problem=lambda _: None)
        seen = [0]
        best = 0
        for index, sync_now in steps:
            root_hash = hashes[index] if index < n else h(50_000 + index)
            replica.notify(root_hash)
            if index < n and root_hash not in source.broken:
                best = max(best, index + 1)
            if sync_now:
                update = await replica.sync()
                if update is not None:
                    assert update.previous_seq == seen[-1]
                    assert all(seen[-1] < e.seq <= update.seq for e in update.events)
                seen.append(replica.seq)
        await replica.sync()
        seen.append(replica.seq)
        assert seen == sorted(seen)
        assert replica.seq == best

    anyio.run(check)
