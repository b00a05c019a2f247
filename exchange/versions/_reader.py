"""Read versions from the DHT: fetch only the pages not cached, verify everything.

Theory of operation
-------------------
A client is told a root key by anyone (`orderbook_updated` is unauthenticated), and the
DHT may return anything, or nothing. So `VersionReader.fetch` trusts no byte:

1. The root document is fetched, its key recomputed (``dht_key(text) == key``) and its
   fields validated (`decode_root`); its market, tick and lot must be the reader's.
2. Each tree (book, events) is walked level by level from its root page. A level's
   pages are fetched concurrently (16 at a time), except those already in the page
   cache; every fetched page's key is recomputed and its JSON shape checked
   (`parse_page`, which also holds every id to the submit_order id rule, and every
   command to the core's validator: `exchange.protocol.parse_entry`; a reader that
   requires the matcher's signature on every root decodes the commands in the
   sequencer's own form without the validator, `SignedCommands`: the matcher's
   signature covers them and it applied them validated). Every page
   of a level must be of the tree's kind and the level's height (so leaves are all at
   one depth), and each child's count must equal what its parent says.
3. The book is rebuilt from the leaves' orders (`OrderBook.from_orders`: no duplicate
   id, no crossed book, prices in range) and its page tree recomputed: its root key
   must be the root document's ``book``. This proves the tree is *the* canonical tree
   of that book (right order, right chunk boundaries), so the key is a state hash.
   Every order's ``seq`` must lie in ``1..seq`` and increase along each price level
   (time priority is arrival order).
4. Events are parsed with `event_from_wire`; their ``seq`` must run through
   ``first..seq`` in order, every command with at least one event (each command
   gives one at least, a rejection included).

The matcher stores a version's book pages after its root, at most once per flush
interval (``BookFlusher``; replicas that follow by commands never read them), so each
flush stores one version's book whole. A book page missing: the fetch reads the nearest
version before it (at most `DEFAULT_MAX_WALK` back) whose book is stored and follows by
commands (as `advance` below) to the version asked for; when none is, it tries again a
few times over ~1.5 s. Any failure raises `InvalidVersion` before anything is returned:
the caller's replica is never touched by a bad version. Pages are cached by key (they
are immutable, and a verified page stays valid forever) in an LRU of bounded size, so an
update that changed one order costs a few gets (the changed pages and the root: about 7
on a 10,000-order book), not the whole book.

The tree rebuilt in step 3 is a `BookTree`, handed over with the version. A replica
then follows with `VersionReader.advance`: it reads only the roots and *command* pages
of the new versions, applies the commands to its own book with the core (as the
matcher did: the core is deterministic), updates the tree from the events
(`BookTree.update`, O(log n) per changed order) and compares its root with the new
root's ``book``. It reads book pages again (`fetch`) only to start cold, or when the
chain back to its version is longer than its bound or does not verify.

Costs: a fetch of a version whose pages are all cached is O(n): rebuild the book and
its tree (the orders' encodings are reused from the previous fetch's tree): ~0.1 s of
CPU for 10,000 orders, ~1 s for 100,000 (bench/versions_bench.py); a cold fetch of
10,000 orders with realistic ids is ~650 gets.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchange.protocol import Entry, InvalidVersion, apply_entry
from exchange.versions._bounded import DEFAULT_CONCURRENCY, run_bounded
from exchange.versions._parse import (
    BookLeaf,
    BookNode,
    CommandLeaf,
    CommandNode,
    EventLeaf,
    EventNode,
    Page,
    SignedCommands,
    parse_page,
)
from exchange.versions._root import RootDoc, decode_root, spec_fields, verify_root
from exchange.versions._tree import BookTree
from exchange.versions._version import Version, check_priority
from exchange.versions._walk import walk_tree
from orderbook_core import Event, MarketSpec, OrderBook, RestingOrder
from transports import Transport, check_key, dht_key

__all__ = [
    "DEFAULT_CACHE_PAGES",
    "DEFAULT_MAX_PAGES",
    "DEFAULT_MAX_WALK",
    "Version",
    "VersionReader",
]

DEFAULT_CACHE_PAGES = 100_000
"""Pages kept in a reader's cache (at most ~1 KB each, so ~100 MB at worst)."""

DEFAULT_MAX_PAGES = 200_000
"""Most pages one fetch will visit: bounds the work a hostile root can cause."""

DEFAULT_MAX_WALK = 64
"""Most versions `VersionReader.advance` walks back through to reach the caller's."""


_BOOK_RETRIES = (0.05, 0.1, 0.2, 0.4, 0.8)
"""Pauses (s) before reading a version's book again when neither it nor one before it is
stored whole: the matcher puts book pages after announcing versions (`BookFlusher`), at
most one flush per interval, later when a flush failed and is tried again."""


class _MissingPage(InvalidVersion):
    """A page is not in the DHT (yet, perhaps)."""


class VersionReader:
    """Fetches and verifies versions of one market's book, caching pages by key.

    Args:
        transport: where to get pages.
        spec: the market; a root of another market (or tick or lot size) is invalid.
        cache_pages: how many verified pages to keep (least recently used go first).
        concurrency: gets in flight at once.
        max_pages: the most pages one fetch may visit.
        matcher_key: the matcher's public key, or a callable that returns it (None while
            it is not known: every root is then refused). Each root must be signed by
            it (`verify_root`), else `InvalidVersion`. Not given: roots are taken
            signed or not (tools and tests that read their own versions).

    Attributes:
        last_get_count: how many gets the last fetch issued (cache misses).
    """

    def __init__(
        self,
        transport: Transport,
        spec: MarketSpec,
        *,
        cache_pages: int = DEFAULT_CACHE_PAGES,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_pages: int = DEFAULT_MAX_PAGES,
        matcher_key: Ed25519PublicKey | Callable[[], Ed25519PublicKey | None] | None = None,
    ) -> None:
        self._matcher_key = matcher_key
        if cache_pages < 0 or concurrency < 1 or max_pages < 1:
            raise ValueError("need cache_pages >= 0, concurrency >= 1, max_pages >= 1")
        self._transport = transport
        self._spec = spec
        self._cache_size = cache_pages
        self._concurrency = concurrency
        self._max_pages = max_pages
        self._cache: OrderedDict[str, Page | RootDoc] = OrderedDict()
        # The tree of the last book rebuilt: its orders' encodings are reused.
        self._tree: BookTree | None = None
        self._expected_spec = spec_fields(spec)
        # Every root must be the matcher's: its commands need no second validation.
        self._signed = None if matcher_key is None else SignedCommands()
        self.last_get_count = 0

    @property
    def cached_pages(self) -> int:
        """How many pages (and roots) the cache holds."""
        return len(self._cache)

    async def fetch_root(self, root_hash: str) -> RootDoc:
        """Fetch and verify a version's root document only (one get, or none if cached).

        Raises:
            InvalidVersion: `root_hash` is not a key, names nothing, or names something
                that is not a root document of this market.
            transports.TransportError: the DHT could not be asked.
        """
        self.last_get_count = 0
        return await self._root(root_hash)

    async def fetch(self, root_hash: str) -> Version:
        """Fetch, verify and rebuild the version named by `root_hash`.

        Gets only the pages not in the cache. O(n) in the book's size plus the gets.
        When a book page of the version is missing (its book was not flushed), reads
        the nearest version before it whose book is stored, then the commands from
        there (`DEFAULT_MAX_WALK` versions at most): the same version, verified alike.

        Returns:
            The version, with a new `OrderBook` the caller owns.

        Raises:
            InvalidVersion: anything is missing ("missing page ..."; it may appear later,
                so retrying can help) or invalid (bad hash, format, tree, book, events).
            transports.TransportError: the DHT could not be asked.
        """
        self.last_get_count = 0
        root = await self._root(root_hash)
        for pause in (*_BOOK_RETRIES, None):
            try:
                book, tree, orders = await self._book(root_hash, root)
                break
            except _MissingPage as exc:
                missing = exc
            try:  # not flushed (yet, or ever): the nearest flushed version, then commands
                return await self._by_commands(root_hash, root)
            except _MissingPage:
                pass
            if pause is None:
                raise missing
            await anyio.sleep(pause)  # an outage, or no flush yet since a start: wait a bit
        check_priority(root_hash, root, orders)
        events = await self._events(root_hash, root)
        return Version(root, book, events, root_hash, tree)

    async def _book(
        self, root_hash: str, root: RootDoc
    ) -> tuple[OrderBook, BookTree, list[RestingOrder]]:
        """The version's book read from its pages, checked against its ``book`` key."""
        leaves = await self._walk(root.book, BookLeaf, BookNode, "book")
        orders: list[RestingOrder] = []
        for leaf in leaves:
            assert isinstance(leaf, BookLeaf)
            orders.extend(leaf.orders)
        try:
            book = OrderBook.from_orders(self._spec, orders)
        except (ValueError, TypeError) as exc:
            raise InvalidVersion(f"version {root_hash}: not a valid book ({exc})") from None
        try:
            # The leaves' orders, not `book.orders()` (the same list when they are in
            # canonical order, which `from_orders` checks): one O(n) pass less.
            tree = BookTree.from_orders(orders, reuse=self._tree)
        except (ValueError, TypeError) as exc:
            raise InvalidVersion(f"version {root_hash}: not a canonical book ({exc})") from None
        self._tree = tree
        rebuilt = tree.root
        if rebuilt != root.book:
            raise InvalidVersion(
                f"version {root_hash}: the book's pages are not its canonical tree "
                f"(rebuilt {rebuilt}, root says {root.book})"
            )
        return book, tree, orders

    async def _by_commands(self, root_hash: str, root: RootDoc) -> Version:
        """The version from the nearest one before it whose book is stored, by commands.

        The matcher stores the book of one version per flush (`BookFlusher`): the
        versions in between are read as a replica follows them (`advance`: their
        commands, applied and checked against each root's ``book``). At most
        `DEFAULT_MAX_WALK` versions back; the events are the version's own pages,
        which must be those the commands gave.

        Raises:
            _MissingPage: no such version within the walk, or a page of the way is
                missing.
            InvalidVersion: the way there does not verify.
        """
        key, here = root_hash, root
        for _ in range(DEFAULT_MAX_WALK):
            if here.prev is None:  # the chain's start: from the empty book before it
                return await self._from_start(root_hash, root)
            key = here.prev
            here = await self._root(key)
            try:
                book, tree, orders = await self._book(key, here)
            except _MissingPage:
                continue
            check_priority(key, here, orders)
            gets = self.last_get_count
            base = Version(here, book, (), key, tree)
            version, _ = await self.advance(base, root_hash, max_walk=DEFAULT_MAX_WALK)
            self.last_get_count += gets
            events = await self._events(root_hash, root)
            if events != version.events:
                raise InvalidVersion(f"version {root_hash}: its events are not its commands'")
            return Version(root, version.book, events, root_hash, version.tree)
        raise _MissingPage(
            f"version {root_hash}: a book page is missing, and so is one of each version "
            f"up to {DEFAULT_MAX_WALK} before it"
        )

    async def _from_start(self, root_hash: str, root: RootDoc) -> Version:
        """The version from the empty book, by the commands of every version of its
        chain up to it (at most `DEFAULT_MAX_WALK`): for a chain none of whose books
        before it is stored, its first one's included (a flush that failed and was
        overtaken). The book the commands give must hash to the root's ``book``, and
        the version's own event pages must be its commands' events.

        Raises:
            _MissingPage: the chain is longer, or its first version does not start at 1.
            InvalidVersion: the way there does not verify.
        """
        chain = [(root_hash, root)]  # newest first
        key, here = root_hash, root
        while here.prev is not None:
            if len(chain) > DEFAULT_MAX_WALK:
                raise _MissingPage(f"version {root_hash}: a book page is missing")
            key, after = here.prev, here
            here = await self._root(key)
            if here.seq != after.first - 1:
                raise InvalidVersion(
                    f"version {key}: seq {here.seq}, but the version after it starts at "
                    f"{after.first}"
                )
            chain.append((key, here))
        if here.first != 1 or any(r.commands is None and r.first <= r.seq for _, r in chain):
            raise _MissingPage(f"version {root_hash}: a book page is missing")
        chunks = [await self._commands(k, r) for k, r in chain]
        book = OrderBook(self._spec)
        events: list[Event] = []
        for chunk in reversed(chunks):
            for entry in chunk:
                events.extend(apply_entry(book, entry))
        tree = BookTree.from_orders(list(book.orders()))
        if tree.root != root.book:
            raise InvalidVersion(
                f"version {root_hash}: its commands give book {tree.root}, "
                f"the root says {root.book}"
            )
        own = await self._events(root_hash, root)
        if own != tuple(event for event in events if event.seq >= root.first):
            raise InvalidVersion(f"version {root_hash}: its events are not its commands'")
        return Version(root, book, own, root_hash, tree)

    async def advance(
        self, current: Version, root_hash: str, *, max_walk: int = DEFAULT_MAX_WALK
    ) -> tuple[Version, tuple[Event, ...]]:
        """Follow `current` to the newer version `root_hash` by applying its commands.

        Reads the roots and command pages of the versions after `current` (walking
        ``prev`` back from `root_hash` until it links to ``current.key``, at most
        `max_walk` versions), applies the commands to ``current.book`` with the core
        (`apply_entry`, as the matcher did), updates ``current.tree`` from their events
        and checks its root against the new root's ``book``. The core is deterministic,
        so a match proves the book is the matcher's; no book page is read. O(k log n)
        for k changed orders, plus the gets of the roots and command pages.

        `current` must be the last version this reader's caller verified (from `fetch`
        or `advance`); its book and tree are taken over: on success they are the new
        version's; on any failure its tree is as before and ``current.book`` is a book
        equal to the one before (rebuilt when the commands had been applied: the old
        object is then spent, so read the book through ``current``).

        Returns:
            The new version, and the events of every command after ``current``'s seq
            (the version's own `events` are only those of its ``first..seq``).

        Raises:
            InvalidVersion: the chain does not link back to `current` within
                `max_walk` versions, a version carries no commands, a page is missing
                or invalid, a command breaks a rule, or the book it gives is not the
                root's (``fetch`` can still read the version from its pages).
            transports.TransportError: the DHT could not be asked.
        """
        self.last_get_count = 0
        since = current.root.seq
        root = await self._root(root_hash)
        if root.seq <= since:
            raise InvalidVersion(f"version {root_hash}: seq {root.seq} is not after {since}")
        chunks: list[tuple[Entry, ...]] = []
        key, here = root_hash, root
        while True:
            chunks.append(await self._commands(key, here))
            if here.first <= since + 1:
                break
            if here.prev is None or len(chunks) > max_walk:
                raise InvalidVersion(
                    f"version {root_hash}: no chain of {max_walk} versions back to seq {since}"
                )
            key, after = here.prev, here
            here = await self._root(key)
            if here.seq != after.first - 1:
                raise InvalidVersion(
                    f"version {key}: seq {here.seq}, but the version after it starts at "
                    f"{after.first}"
                )
        if here.first != since + 1 or here.prev != current.key:
            raise InvalidVersion(f"version {root_hash}: does not follow {current.key}")
        book, tree = current.book, current.tree
        events: list[Event] = []
        # No transaction (its undo log was 18% of a replica's follow): on any failure the
        # tree is as before (`update` leaves it so, or it is undone), and the book is
        # rebuilt from the tree's orders (`_put_back`). Nothing below awaits.
        try:
            for chunk in reversed(chunks):  # validated when their pages were parsed
                for entry in chunk:
                    events.extend(apply_entry(book, entry))
            try:
                delta = tree.update(book, events)
            except ValueError as exc:  # cannot happen with the core's own events
                raise InvalidVersion(f"version {root_hash}: {exc}") from None
            if delta.root != root.book:
                tree.undo(delta)
                raise InvalidVersion(
                    f"version {root_hash}: its commands give book {delta.root}, "
                    f"the root says {root.book}"
                )
        except BaseException:
            self._put_back(current)
            raise
        own = tuple(event for event in events if event.seq >= root.first)
        return Version(root, book, own, root_hash, tree), tuple(events)

    def _put_back(self, current: Version) -> None:
        """Make `current` its version again after its book took commands that failed.

        Its tree is that version's (verified against its root's ``book`` key when it
        was read or followed), so its orders are that book's, in canonical order: the
        book is rebuilt from them (as `fetch` builds one from its leaves) and becomes
        ``current.book``; the object that took the commands is spent. O(n), on a
        failure only (a root the matcher signed whose book its commands do not give,
        or a stranger's version for a reader that does not require signatures).
        """
        book = OrderBook.from_orders(self._spec, current.tree.orders())
        object.__setattr__(current, "book", book)  # frozen: replaced here only

    async def fetch_commands(self, root_hash: str) -> tuple[RootDoc, tuple[Entry, ...]]:
        """Fetch and verify a version's root and commands (``first..seq``) only.

        Raises:
            InvalidVersion: as `fetch`, or the version carries no commands.
            transports.TransportError: the DHT could not be asked.
        """
        self.last_get_count = 0
        root = await self._root(root_hash)
        return root, await self._commands(root_hash, root)

    async def fetch_events(self, root_hash: str) -> tuple[RootDoc, tuple[Event, ...]]:
        """Fetch and verify a version's root and events only, not its book.

        For a client that missed versions and walks ``prev`` back to collect their
        events: an old version's book pages may be gone from the DHT, its events are
        all it needs.

        Raises:
            InvalidVersion, transports.TransportError: as `fetch`.
        """
        self.last_get_count = 0
        root = await self._root(root_hash)
        return root, await self._events(root_hash, root)

    # ------------------------------------------------------------------ internals

    async def _root(self, root_hash: str) -> RootDoc:
        try:
            check_key(root_hash)
        except (TypeError, ValueError) as exc:
            raise InvalidVersion(f"not a version key: {exc}") from None
        cached = self._cached(root_hash)
        if isinstance(cached, RootDoc):
            return cached
        if cached is not None:
            raise InvalidVersion(f"{root_hash} names a page, not a root document")
        text = await self._get(root_hash)
        if dht_key(text) != root_hash:
            raise InvalidVersion(f"root document {root_hash}: content does not match its hash")
        root = decode_root(text)
        if self._matcher_key is not None:
            key = self._matcher_key
            trusted = key if isinstance(key, Ed25519PublicKey) else key()
            if trusted is None:
                raise InvalidVersion("root document: the matcher's key is not known yet")
            verify_root(root, trusted)
        actual = {"market": root.market, "tick": root.tick, "lot": root.lot}
        if actual != self._expected_spec:
            raise InvalidVersion(
                f"root document {root_hash}: market {actual}, expected {self._expected_spec}"
            )
        self._store(root_hash, root)
        return root

    async def _commands(self, root_hash: str, root: RootDoc) -> tuple[Entry, ...]:
        """The version's commands: exactly one per number of ``first..seq``, in order."""
        if root.commands is None:
            if root.first == root.seq + 1:
                return ()
            raise InvalidVersion(f"version {root_hash}: carries no commands")
        leaves = await self._walk(root.commands, CommandLeaf, CommandNode, "commands")
        entries: list[Entry] = []
        for leaf in leaves:
            assert isinstance(leaf, CommandLeaf)
            entries.extend(leaf.entries)
        if [entry.seq for entry in entries] != list(range(root.first, root.seq + 1)):
            raise InvalidVersion(
                f"version {root_hash}: its commands are not exactly {root.first}..{root.seq}"
            )
        return tuple(entries)

    async def _events(self, root_hash: str, root: RootDoc) -> tuple[Event, ...]:
        leaves = await self._walk(root.events, EventLeaf, EventNode, "events")
        events: list[Event] = []
        for leaf in leaves:
            assert isinstance(leaf, EventLeaf)
            events.extend(leaf.events)
        # Every command has at least one event (a rejection is one), and the events are
        # in the order they happened: so their seqs run through first..seq, in order,
        # each at least once (none at all when first == seq + 1).
        following = root.first  # the seq the next command's first event must have
        for event in events:
            if not root.first <= event.seq <= root.seq:
                raise InvalidVersion(
                    f"version {root_hash}: event of seq {event.seq} outside "
                    f"{root.first}..{root.seq}"
                )
            if event.seq == following:
                following += 1
            elif event.seq != following - 1:
                raise InvalidVersion(
                    f"version {root_hash}: event of seq {event.seq} out of order "
                    f"(expected {following - 1} or {following})"
                )
        if following != root.seq + 1:
            raise InvalidVersion(
                f"version {root_hash}: command {following} (of {root.first}..{root.seq}) "
                "has no events"
            )
        return tuple(events)

    async def _walk(
        self,
        top: str | None,
        leaf_type: type[BookLeaf] | type[EventLeaf] | type[CommandLeaf],
        node_type: type[BookNode] | type[EventNode] | type[CommandNode],
        what: str,
    ) -> list[Page]:
        """Fetch a whole tree level by level; return its leaves in order (`walk_tree`)."""
        return await walk_tree(self._load, top, leaf_type, node_type, what, self._max_pages)

    async def _load(self, keys: list[str]) -> dict[str, Page]:
        """The pages under `keys`: from the cache, or fetched (concurrently) and parsed."""
        found: dict[str, Page] = {}
        missing: list[str] = []
        for key in dict.fromkeys(keys):
            cached = self._cached(key)
            if cached is None:
                missing.append(key)
            elif isinstance(cached, RootDoc):
                raise InvalidVersion(f"{key} names a root document, not a page")
            else:
                found[key] = cached

        async def get(key: str) -> None:
            page = parse_page(key, await self._get(key), self._spec, signed=self._signed)
            found[key] = page
            self._store(key, page)

        await run_bounded(missing, get, self._concurrency)
        return found

    async def _get(self, key: str) -> str:
        self.last_get_count += 1
        text = await self._transport.get(key)
        if text is None:
            raise _MissingPage(f"missing page {key}")
        if not isinstance(text, str):
            raise InvalidVersion(f"page {key}: not a string")
        return text

    def _cached(self, key: str) -> Page | RootDoc | None:
        item = self._cache.get(key)
        if item is not None:
            self._cache.move_to_end(key)
        return item

    def _store(self, key: str, item: Page | RootDoc) -> None:
        if self._cache_size == 0:
            return
        self._cache[key] = item
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
