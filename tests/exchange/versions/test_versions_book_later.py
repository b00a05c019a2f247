"""Book pages after the root: ``publish(..., book_later=True)``, `flush`, `BookFlusher`.

* A ``book_later`` version puts its list pages and its root only; a replica follows it
  by its commands at once (no book page read); the book's pages are owed.
* A flush puts exactly the current tree's pages not stored yet (pages owed by several
  versions once, pages gone from the tree not at all); then a cold reader reads the
  version whole, and the publisher's bookkeeping is as after plain publishes.
* A flush may run while the next version is published; a failed flush records nothing.
* A flush stores the book of the last version published whole (it waits for a publish
  under way); a cold `fetch` of a version whose book is missing reads the nearest
  stored one before it and follows by commands (a bounded walk), else waits a while.
* `BookFlusher` flushes in the background whenever kicked.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from test_versions_follow import random_commands
from versions_dht import FaultyDht

from exchange.protocol import Entry, InvalidVersion, apply_entry
from exchange.versions import (
    DEFAULT_MAX_WALK,
    BookFlusher,
    VersionPublisher,
    VersionReader,
    build_book_tree,
)
from orderbook_core import DEFAULT_SPEC, Event, OrderBook
from transports import ConnectionFailed, MemoryNetwork, Transport, open_transport

SPEC = DEFAULT_SPEC
pytestmark = pytest.mark.anyio


class Matcher:
    """Apply runs of commands to a book and publish each run as one version."""

    def __init__(self, transport: Transport) -> None:
        self.book = OrderBook(SPEC)
        self.publisher = VersionPublisher(transport, SPEC)
        self.seq = 0

    async def publish(self, entries: list[Entry], *, book_later: bool = True) -> str:
        events: list[Event] = []
        for entry in entries:
            events.extend(apply_entry(self.book, entry))
        first, self.seq = self.seq + 1, entries[-1].seq
        return await self.publisher.publish(
            self.book, events, seq=self.seq, first=first, commands=entries, book_later=book_later
        )


def runs(count: int, size: int, seed: int, first: int = 1) -> list[list[Entry]]:
    entries = random_commands(count * size, seed, first=first)
    return [entries[i : i + size] for i in range(0, len(entries), size)]


def assert_bookkeeping(publisher: VersionPublisher, book: OrderBook) -> None:
    """The tree is the book's; each of its pages is either believed stored or owed."""
    tree = publisher.tree
    assert tree is not None
    full = build_book_tree(book)
    assert tree.snapshot() == full
    stored = set(publisher._last_put) & full.pages.keys()
    owed = set(publisher._owed)
    assert owed <= full.pages.keys()
    assert not stored & owed
    assert stored | owed == full.pages.keys()


async def test_a_replica_follows_before_the_book_pages_are_put() -> None:
    async with open_transport("memory", network=MemoryNetwork()) as inner:
        dht = FaultyDht(inner)
        matcher = Matcher(dht)
        chunks = runs(12, 40, seed=1)
        key = await matcher.publish(chunks[0], book_later=False)  # everything stored
        reader = VersionReader(inner, SPEC)
        version = await reader.fetch(key)
        for chunk in chunks[1:]:
            puts = dht.puts
            key = await matcher.publish(chunk)
            # The list pages and the root only; the book's new pages are owed.
            assert dht.puts - puts == matcher.publisher.last_list_count + 1
            assert matcher.publisher.last_put_count == dht.puts - puts
            assert matcher.publisher.owed > 0
            version, _ = await reader.advance(version, key)  # no book page needed
            assert version.book == matcher.book
            assert_bookkeeping(matcher.publisher, matcher.book)
        assert matcher.publisher.last_refresh_count == 0


async def test_a_flush_puts_the_current_trees_owed_pages_once() -> None:
    async with open_transport("memory", network=MemoryNetwork()) as inner:
        dht = FaultyDht(inner)
        matcher = Matcher(dht)
        chunks = runs(10, 30, seed=2)
        await matcher.publish(chunks[0], book_later=False)
        added_total = 0
        for chunk in chunks[1:]:
            before = set(matcher.publisher.tree.pages()) if matcher.publisher.tree else set()
            key = await matcher.publish(chunk)
            assert matcher.publisher.tree is not None
            added_total += len(set(matcher.publisher.tree.pages()) - before)
        owed = set(matcher.publisher._owed)
        tree = matcher.publisher.tree
        assert tree is not None
        assert owed <= set(tree.pages())
        assert len(owed) < added_total  # pages changed twice are owed once
        puts = dht.puts
        put = await matcher.publisher.flush()
        assert put == dht.puts - puts >= len(owed)
        assert matcher.publisher.owed == 0
        assert_bookkeeping(matcher.publisher, matcher.book)
        cold = await VersionReader(inner, SPEC).fetch(key)
        assert cold.book == matcher.book
        assert await matcher.publisher.flush() == 0  # nothing owed, nothing due


async def test_a_flush_while_the_next_version_is_published() -> None:
    async with open_transport("memory", network=MemoryNetwork()) as inner:
        dht = FaultyDht(inner)
        matcher = Matcher(dht)
        chunks = runs(8, 30, seed=3)
        await matcher.publish(chunks[0], book_later=False)
        await matcher.publish(chunks[1])
        dht.blocked = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(matcher.publisher.flush)  # waits in its puts
            await anyio.sleep(0.01)
            for chunk in chunks[2:5]:
                publishing = anyio.Event()

                async def publish(
                    chunk: list[Entry] = chunk, done: anyio.Event = publishing
                ) -> None:
                    await matcher.publish(chunk)
                    done.set()

                tg.start_soon(publish)
                await anyio.sleep(0.01)
                dht.blocked.set()  # the flush and the publish both go on
                await publishing.wait()
                dht.blocked = anyio.Event()
            dht.blocked.set()
        dht.blocked = None
        assert_bookkeeping(matcher.publisher, matcher.book)
        await matcher.publisher.flush()
        assert matcher.publisher.owed == 0
        assert_bookkeeping(matcher.publisher, matcher.book)
        key = await matcher.publish(chunks[5])
        await matcher.publisher.flush()
        assert (await VersionReader(inner, SPEC).fetch(key)).book == matcher.book


async def test_a_failed_flush_records_nothing() -> None:
    async with open_transport("memory", network=MemoryNetwork()) as inner:
        dht = FaultyDht(inner)
        matcher = Matcher(dht)
        chunks = runs(4, 30, seed=4)
        await matcher.publish(chunks[0], book_later=False)
        for chunk in chunks[1:]:
            key = await matcher.publish(chunk)
        owed, stored = dict(matcher.publisher._owed), dict(matcher.publisher._last_put)
        total = matcher.publisher.put_total
        dht.fail_puts_after = dht.puts + 2
        with pytest.raises(ConnectionFailed):
            await matcher.publisher.flush()
        assert (matcher.publisher._owed, matcher.publisher._last_put) == (owed, stored)
        assert matcher.publisher.put_total == total
        dht.fail_puts_after = None
        await matcher.publisher.flush()
        assert (await VersionReader(inner, SPEC).fetch(key)).book == matcher.book


async def test_a_publish_without_book_later_puts_what_is_owed() -> None:
    async with open_transport("memory", network=MemoryNetwork()) as inner:
        matcher = Matcher(inner)
        chunks = runs(4, 30, seed=5)
        await matcher.publish(chunks[0])
        await matcher.publish(chunks[1])
        assert matcher.publisher.owed > 0
        key = await matcher.publish(chunks[2], book_later=False)
        assert matcher.publisher.owed == 0
        assert_bookkeeping(matcher.publisher, matcher.book)
        assert (await VersionReader(inner, SPEC).fetch(key)).book == matcher.book


async def test_a_chain_never_flushed_reads_from_the_empty_book_by_its_commands() -> None:
    # A fresh publisher's versions, with ``book_later`` and no flush (one that failed,
    # then was overtaken): no version of the chain has its book stored, but its first
    # version follows the empty book, so each is read by the commands from the start.
    async with open_transport("memory", network=MemoryNetwork()) as inner:
        matcher = Matcher(inner)
        keys, books = [], []
        for chunk in runs(5, 30, seed=6):
            keys.append(await matcher.publish(chunk))
            books.append(matcher.book.copy())
        assert matcher.publisher.owed > 0
        for key, book in zip(keys, books, strict=True):
            version = await VersionReader(inner, SPEC).fetch(key)
            assert version.book == book
            assert version.tree.root == version.root.book
            assert version.events == (await VersionReader(inner, SPEC).fetch_events(key))[1]


async def test_a_cold_fetch_waits_for_owed_pages_then_gives_up() -> None:
    # A version whose book is not stored, nor that of any of the 64 versions before it
    # (nor is the chain's start within reach): a cold reader can only wait for a flush.
    async with open_transport("memory", network=MemoryNetwork()) as inner:
        matcher = Matcher(inner)
        chunks = runs(DEFAULT_MAX_WALK + 2, 2, seed=6)
        await matcher.publish(chunks[0], book_later=False)
        for chunk in chunks[1:]:
            key = await matcher.publish(chunk)
        reader = VersionReader(inner, SPEC)
        with pytest.raises(InvalidVersion, match="missing page"):
            await reader.fetch(key)
        async with anyio.create_task_group() as tg:

            async def flush_later() -> None:
                await anyio.sleep(0.12)
                await matcher.publisher.flush()

            tg.start_soon(flush_later)
            version = await VersionReader(inner, SPEC).fetch(key)  # retried meanwhile
        assert version.book == matcher.book


async def test_a_cold_fetch_of_an_unflushed_version_follows_from_a_flushed_one() -> None:
    async with open_transport("memory", network=MemoryNetwork()) as inner:
        dht = FaultyDht(inner)
        matcher = Matcher(dht)
        chunks = runs(12, 30, seed=10)
        keys = [await matcher.publish(chunks[0], book_later=False)]
        books = [matcher.book.copy()]
        for i, chunk in enumerate(chunks[1:], start=1):
            keys.append(await matcher.publish(chunk))
            books.append(matcher.book.copy())
            if i == 6:  # one flush in the middle: version 6's book is stored whole
                await matcher.publisher.flush()
                assert matcher.publisher.last_flushed_root == keys[6]
        assert matcher.publisher.owed > 0
        # Every version reads whole and exactly (its events are its own pages'), from
        # the nearest version before it whose book is stored.
        for key, book in zip(keys, books, strict=True):
            reader = VersionReader(dht, SPEC)
            gets = dht.gets
            version = await reader.fetch(key)
            assert version.book == book
            assert version.tree.root == version.root.book
            assert reader.last_get_count == dht.gets - gets
            assert version.events == (await VersionReader(dht, SPEC).fetch_events(key))[1]


async def test_a_cold_fetch_walks_back_a_bounded_number_of_versions() -> None:
    async with open_transport("memory", network=MemoryNetwork()) as inner:
        matcher = Matcher(inner)
        chunks = runs(DEFAULT_MAX_WALK + 3, 2, seed=11)
        await matcher.publish(chunks[0], book_later=False)
        keys = [await matcher.publish(chunk) for chunk in chunks[1:]]
        near = await VersionReader(inner, SPEC).fetch(keys[DEFAULT_MAX_WALK - 1])
        assert near.root.seq == chunks[DEFAULT_MAX_WALK][-1].seq
        with pytest.raises(InvalidVersion, match="missing page"):
            await VersionReader(inner, SPEC).fetch(keys[-1])


async def test_a_flush_waits_for_a_publish_under_way_and_stores_its_book_whole() -> None:
    async with open_transport("memory", network=MemoryNetwork()) as inner:
        dht = FaultyDht(inner)
        matcher = Matcher(dht)
        chunks = runs(3, 30, seed=12)
        await matcher.publish(chunks[0], book_later=False)
        await matcher.publish(chunks[1])
        dht.blocked = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(matcher.publish, chunks[2])  # waits in its puts
            await anyio.sleep(0.01)
            tg.start_soon(matcher.publisher.flush)  # waits for the publish
            await anyio.sleep(0.01)
            dht.blocked.set()
        dht.blocked = None
        assert matcher.publisher.last_flushed_root == matcher.publisher.last_root
        full = build_book_tree(matcher.book)
        assert all([await inner.get(key) for key in full.pages])
        assert_bookkeeping(matcher.publisher, matcher.book)


async def test_the_flusher_puts_what_is_owed_in_the_background() -> None:
    async with open_transport("memory", network=MemoryNetwork()) as inner:
        matcher = Matcher(inner)
        flusher = BookFlusher(lambda: matcher.publisher, interval=0.01)
        chunks = runs(6, 20, seed=7)
        await matcher.publish(chunks[0], book_later=False)
        async with anyio.create_task_group() as tg:
            tg.start_soon(flusher.run)
            for chunk in chunks[1:]:
                key = await matcher.publish(chunk)
                flusher.kick()
                await anyio.lowlevel.checkpoint()
            with anyio.fail_after(5):
                await flusher.wait_idle()
            tg.cancel_scope.cancel()
        assert matcher.publisher.owed == 0
        assert 1 <= flusher.flushes <= 5
        assert flusher.failures == 0
        assert (await VersionReader(inner, SPEC).fetch(key)).book == matcher.book
        with pytest.raises(ValueError, match="interval"):
            BookFlusher(lambda: matcher.publisher, interval=-1)


async def test_after_version_flushes_at_once_unless_in_the_background() -> None:
    async with open_transport("memory", network=MemoryNetwork()) as inner:
        matcher = Matcher(inner)
        chunks = runs(3, 20, seed=8)
        await matcher.publish(chunks[0], book_later=False)
        inline = BookFlusher(lambda: matcher.publisher, background=False)
        await matcher.publish(chunks[1])
        owed = matcher.publisher.owed
        assert await inline.after_version() >= owed > 0
        assert matcher.publisher.owed == 0
        assert inline.flushes == 1
        background = BookFlusher(lambda: matcher.publisher, background=True)
        key = await matcher.publish(chunks[2])
        assert await background.after_version() == 0  # kicked: `run` puts them
        assert matcher.publisher.owed > 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(background.run)
            with anyio.fail_after(5):
                await background.wait_idle()
            tg.cancel_scope.cancel()
        assert (await VersionReader(inner, SPEC).fetch(key)).book == matcher.book


async def test_the_flushers_publish_puts_the_book_later_only_in_the_background() -> None:
    async with open_transport("memory", network=MemoryNetwork()) as inner:
        matcher = Matcher(inner)
        chunks = runs(3, 20, seed=9)
        await matcher.publish(chunks[0], book_later=False)
        plain = BookFlusher(lambda: matcher.publisher, background=False)  # --book-pages-first
        for flusher, chunk in (
            (plain, chunks[1]),
            (BookFlusher(lambda: matcher.publisher, background=True), chunks[2]),
        ):
            events: list[Event] = []
            for entry in chunk:
                events.extend(apply_entry(matcher.book, entry))
            first, matcher.seq = matcher.seq + 1, chunk[-1].seq
            key = await flusher.publish(
                matcher.book, events, seq=matcher.seq, first=first, commands=chunk
            )
            assert (matcher.publisher.owed > 0) == flusher.background
        assert await plain.after_version() > 0  # flushed at once, when something is owed
        assert (await VersionReader(inner, SPEC).fetch(key)).book == matcher.book
