"""exchange.versions: the publisher's incremental tree, its transactions, replicas.

* Every published version's tree is the full build of the book, through failed puts
  (the DHT kept none of the attempt), retries, cancelled publishes, batches of
  commands, and updates whose events are missing (the publisher rebuilds).
* A failed or cancelled publish leaves the publisher exactly as it was.
* Refreshes are the oldest pages of the current version, at most the budget.
* A replica follows versions by applying their commands to its own book and updating
  the tree the reader gave it: the same roots, with no page read.
* `run_bounded`: as many workers as calls that block, at most the limit.
"""

from __future__ import annotations

import random

import anyio
import anyio.lowlevel
import pytest
from versions_books import MID, realistic_book
from versions_dht import FaultyDht

from exchange.versions import (
    BookTree,
    VersionPublisher,
    VersionReader,
    book_hash,
    build_book_tree,
    build_event_pages,
)
from exchange.versions._bounded import run_bounded
from orderbook_core import (
    DEFAULT_SPEC,
    CancelOrder,
    Command,
    Event,
    ModifyOrder,
    NewOrder,
    OrderBook,
    Side,
)
from transports import ConnectionFailed, MemoryNetwork, open_transport

pytestmark = pytest.mark.anyio

SPEC = DEFAULT_SPEC


def some_command(book: OrderBook, seq: int, rng: random.Random) -> Command:
    """A resting order, a crossing one, a cancel or a modify."""
    roll = rng.random()
    orders = list(book.orders()) if roll > 0.5 else []
    if not orders:
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        offset = rng.randrange(-10, 400)
        price = MID - offset if side is Side.BUY else MID + offset
        client = f"client{rng.randrange(40)}"
        return NewOrder(seq, seq, client, f"{client}-{seq}", side, price, rng.randrange(1, 5000))
    victim = orders[rng.randrange(len(orders))]
    if roll > 0.8:
        return ModifyOrder(seq, seq, victim.client_id, victim.order_id, None, victim.remaining + 1)
    return CancelOrder(seq, seq, victim.client_id, victim.order_id)


def assert_current(publisher: VersionPublisher, book: OrderBook) -> None:
    """The publisher's tree is the book's full build; it believes resident exactly the
    version's pages."""
    tree = publisher.tree
    assert tree is not None
    full = build_book_tree(book)
    assert tree.snapshot() == full
    resident = set(publisher._last_put)
    assert full.pages.keys() <= resident
    assert resident - full.pages.keys() == publisher._event_keys


async def test_failed_puts_retries_and_more_updates_give_the_full_build() -> None:
    book = realistic_book(1500, seed=1)
    rng = random.Random(1)
    async with open_transport("memory", network=MemoryNetwork()) as inner:
        dht = FaultyDht(inner)
        dht.lose_failed_attempt = True  # the DHT kept none of a failed attempt's puts
        publisher = VersionPublisher(dht, SPEC)
        key = await publisher.publish(book, (), seq=1500, first=1501)
        reader = VersionReader(inner, SPEC)
        await reader.fetch(key)

        async def attempt(cmds: list[Command], seq: int, first: int) -> None:
            with book.transaction():  # as the process worker does
                events = [e for cmd in cmds for e in book.apply(cmd)]
                await publisher.publish(book, events, seq=seq, first=first)

        seq = 1500
        failures = 0
        for round_ in range(40):
            cmds = [some_command(book, seq + 1 + i, rng) for i in range(1 + round_ % 3)]
            first, seq = seq + 1, seq + len(cmds)
            state = (publisher.last_root, publisher.put_total, dict(publisher._last_put))
            held = book_hash(book)
            if round_ % 4 == 1:
                # The put fails: the worker rolls the book back; the publisher is as before.
                dht.fail_puts_after = dht.puts + rng.randrange(0, 4)
                dht.begin_attempt()
                with pytest.raises(ConnectionFailed):
                    await attempt(cmds, seq, first)
                failures += 1
                dht.fail_puts_after = None
                assert (publisher.last_root, publisher.put_total, publisher._last_put) == (
                    state[0],
                    state[1],
                    state[2],
                )
                assert publisher.tree is not None
                assert publisher.tree.root == held == book_hash(book)
            events = [e for cmd in cmds for e in book.apply(cmd)]
            key = await publisher.publish(book, events, seq=seq, first=first)
            assert_current(publisher, book)
            version = await reader.fetch(key)  # everything it needs is in the DHT
            assert version.book == book
            assert version.tree.root == version.root.book
        assert failures == 10
        assert publisher.full_builds == 0
        cold = await VersionReader(inner, SPEC).fetch(key)
        assert cold.book == book


async def test_a_failed_first_publish_keeps_no_tree() -> None:
    book = realistic_book(500, seed=2)
    async with open_transport("memory", network=MemoryNetwork()) as inner:
        dht = FaultyDht(inner)
        publisher = VersionPublisher(dht, SPEC)
        dht.fail_puts_after = 5
        with pytest.raises(ConnectionFailed):
            await publisher.publish(book, (), seq=500, first=501)
        assert (publisher.tree, publisher.last_root, publisher.put_total) == (None, None, 0)
        dht.fail_puts_after = None
        key = await publisher.publish(book, (), seq=500, first=501)
        assert_current(publisher, book)
        assert (await VersionReader(inner, SPEC).fetch(key)).book == book


async def test_a_cancelled_publish_leaves_the_publisher_as_it_was() -> None:
    book = realistic_book(1000, seed=3)
    async with open_transport("memory", network=MemoryNetwork()) as inner:
        dht = FaultyDht(inner)
        publisher = VersionPublisher(dht, SPEC)
        await publisher.publish(book, (), seq=1000, first=1001)
        state = (publisher.last_root, publisher.put_total, dict(publisher._last_put))
        held = book_hash(book)
        cmd = NewOrder(1001, 1001, "x", "x-1", Side.BUY, MID - 3, 5)
        dht.blocked = anyio.Event()  # every put waits
        with anyio.move_on_after(0.05), book.transaction():
            await publisher.publish(book, book.apply(cmd), seq=1001, first=1001)
        assert book_hash(book) == held  # the transaction rolled the book back
        assert publisher.tree is not None
        assert publisher.tree.root == held
        assert (publisher.last_root, publisher.put_total, publisher._last_put) == state
        dht.blocked = None
        key = await publisher.publish(book, book.apply(cmd), seq=1001, first=1001)
        assert_current(publisher, book)
        assert (await VersionReader(inner, SPEC).fetch(key)).book == book


async def test_one_version_for_a_batch_of_commands() -> None:
    book = realistic_book(2000, seed=4)
    rng = random.Random(4)
    async with open_transport("memory", network=MemoryNetwork()) as transport:
        publisher = VersionPublisher(transport, SPEC)
        reader = VersionReader(transport, SPEC)
        await publisher.publish(book, (), seq=2000, first=2001)
        seq = 2000
        for size in (2, 10, 100, 400):
            events: list[Event] = []
            first = seq + 1
            for _ in range(size):
                seq += 1
                events.extend(book.apply(some_command(book, seq, rng)))
            key = await publisher.publish(book, events, seq=seq, first=first)
            assert_current(publisher, book)
            version = await reader.fetch(key)
            assert (version.root.first, version.root.seq) == (first, seq)
            assert version.events == tuple(events)


async def test_missing_events_make_the_publisher_rebuild() -> None:
    book = realistic_book(800, seed=5)
    async with open_transport("memory", network=MemoryNetwork()) as transport:
        publisher = VersionPublisher(transport, SPEC)
        await publisher.publish(book, (), seq=800, first=801)
        book.apply(NewOrder(801, 801, "x", "x-1", Side.BUY, MID - 3, 5))
        key = await publisher.publish(book, (), seq=801, first=802)  # the events not given
        assert publisher.full_builds == 1
        assert_current(publisher, book)
        assert (await VersionReader(transport, SPEC).fetch(key)).book == book


async def test_refreshes_are_the_oldest_pages_of_the_version() -> None:
    book = realistic_book(1000, seed=6)
    rng = random.Random(6)
    async with open_transport("memory", network=MemoryNetwork()) as transport:
        publisher = VersionPublisher(transport, SPEC, residency_window=40, refresh_budget=5)
        await publisher.publish(book, (), seq=1000, first=1001)
        refreshes = 0
        for seq in range(1001, 1151):
            before, total = dict(publisher._last_put), publisher.put_total
            events = book.apply(some_command(book, seq, rng))
            await publisher.publish(book, events, seq=seq, first=seq)
            assert_current(publisher, book)
            now = publisher._last_put
            # The oldest pages of the new version not put within the window, at most 5.
            expected = [
                key
                for key, when in sorted(before.items(), key=lambda item: item[1])
                if total - when > 40 and key in now
            ][:5]
            refreshed = [key for key in before if now.get(key, -1) > before[key]]
            assert sorted(refreshed) == sorted(expected)
            assert publisher.last_refresh_count == len(refreshed)
            assert publisher.last_new_count == publisher.last_put_count - len(refreshed)
            assert publisher.last_new_count >= len(build_event_pages(events, SPEC).pages) + 1
            refreshes += len(refreshed)
        assert refreshes > 100  # the test saw refreshes


async def test_a_replica_follows_versions_without_reading_pages() -> None:
    book = realistic_book(5000, seed=7)
    rng = random.Random(7)
    async with (
        open_transport("memory", network=MemoryNetwork()) as worker,
    ):
        publisher = VersionPublisher(worker, SPEC)
        key = await publisher.publish(book, (), seq=5000, first=5001)
        reader = VersionReader(worker, SPEC)
        version = await reader.fetch(key)  # cold start: pages read once
        replica, tree = version.book, version.tree
        assert isinstance(tree, BookTree)
        assert tree.root == version.root.book
        for seq in range(5001, 5201):
            cmd = some_command(book, seq, rng)
            key = await publisher.publish(book, book.apply(cmd), seq=seq, first=seq)
            root, events = await reader.fetch_events(key)  # root and event pages only
            # The replica's own deterministic book gives the same events...
            assert replica.apply(cmd) == events
            # ...and its tree, updated from them, the version's book hash.
            assert tree.update(replica, events).root == root.book
        assert replica == book


async def test_run_bounded_adds_workers_only_for_calls_that_block() -> None:
    in_flight = most = 0

    async def call(item: int) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if item >= 0:
            await anyio.sleep(0.001)  # blocks: the pool grows
        in_flight -= 1

    await run_bounded(list(range(100)), call, 7)
    assert most == 7
    most = 0
    await run_bounded([-1] * 100, call, 7)  # never blocks: the caller's task alone
    assert most == 1
    await run_bounded([], call, 7)
    with pytest.raises(ValueError, match="limit"):
        await run_bounded([1], call, 0)


async def test_run_bounded_raises_the_first_failure_and_cancels_the_rest() -> None:
    started: list[int] = []
    finished: list[int] = []

    async def call(item: int) -> None:
        started.append(item)
        if item == 5:
            raise ConnectionFailed("boom")
        await anyio.sleep(0.01 if item < 5 else 10)
        finished.append(item)

    with pytest.raises(ConnectionFailed, match="boom"):  # itself, not an ExceptionGroup
        await run_bounded(list(range(50)), call, 8)
    assert 5 in started
    assert all(item < 5 for item in finished)
