"""The book's page tree, kept up to date order by order: `BookTree`.

Theory of operation
-------------------
`build_book_tree` (``_book_pages``) chunks every level of the canonical tree from scratch,
O(n). `BookTree` keeps the levels of that same tree and, when orders change, re-chunks
only around them: a version that changes k orders costs O(k log n) and gives the very
pages, byte for byte, and the root that a full build of the new book gives (the tests
check it after every step of random histories).

Structure. Level 0 is the book's orders in canonical order, each with its leaf
encoding; level k+1 is the list of level k's pages (``_levels``). Every entry has a
*position*, the position of the first order under it: ``(side, price, ordinal)`` with
asks (0) before bids (1), the price negated for bids, then an internal arrival number.
An order keeps its ordinal while it keeps its time priority (a partial fill, a size
decrease) and gets the next one when it enters a level, always at the level's tail; so
position order is the book's queue order without relying on ``seq`` (a restored book
may have any). Each level is a `Level`: its pages in a list and their positions in a
parallel list, so the page an order belongs in is a bisection, O(log n), and a run of
re-chunked pages is put in place by a slice assignment (no move at all when it keeps
the number of pages, else a memmove of the level's pointers, ~3 µs for 6,500 leaves).
Measured against `sortedcontainers.SortedKeyList` for the levels (bench workload, tree
update alone, median): 179 against 235 µs at 1,000 orders, 284 against 385 µs at
100,000, 391 against 490 µs at 1,000,000: its ``add``/``remove`` and positional access
are Python code on every update, where a list's splice is one C call.

Re-chunking a level. Chunking runs left to right, and a chunk's end depends only on the
entries from the chunk's start up to the entry after its end (a forced split looks at
the entry that does not fit). So after edits (insert, replace, delete) a level is
re-chunked from the start of the first edited page, or of the page before it when the
edit changes the page's first entry and the page before ended at a forced split (its
end depended on that entry; it is resumed, not re-pushed: a chunk's size is its page's
length), and forward until a new chunk ends exactly where an old page ended, with no
edit in the page that follows: from there the entries are the old ones and the chunker
starts afresh, so every later page is the old page. Edits far
apart give separate runs. The pages a run replaced and the ones it made become the
edits of the level above (deletes and inserts keyed by their first order's position);
pages that come out identical are kept and do not propagate. A level that shrinks to
one page is the root (the levels above it go); one that grows past one page gets a new
level above it.

Cost. A run covers the edited pages (the one before too when it ended at a forced
split the edit may move) and the following pages until the chunkings meet again (0 to
2 more on average), each re-encoded and hashed (about 20 entries a page); an entry
replaced by one of the same width re-encodes its page only (most node levels). Plus
O(log n) bisections: O(k log n) for k changed orders, O(log n) for one (~0.2 to 0.4 ms
of CPU from 1,000 to 1,000,000 orders). Building a tree from a whole book is O(n).

Undo. `update` returns a `TreeDelta`: the pages it added and removed, and what undoing
it takes; `undo` restores the tree exactly (last update first). The publisher updates,
puts, and undoes if a put fails; a replica updates, compares the root with the
version's ``book`` key, and undoes on a mismatch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import count, pairwise
from typing import Any

from exchange.versions._book_pages import build_from_entries, leaf_entry
from exchange.versions._format import PageTree, chunk
from exchange.versions._levels import (
    LEAF_OVERHEAD,
    NODE_OVERHEAD,
    Edit,
    Level,
    OrderEntry,
    Position,
    TreePage,
    entry_with,
    make_leaf,
    make_node,
    new_entry,
    position,
    rechunk,
    refilled,
)
from orderbook_core import (
    Event,
    OrderBook,
    OrderRejected,
    RestingOrder,
    Trade,
)

__all__ = ["BookTree", "OrderId", "TreeDelta", "touched_orders"]

OrderId = tuple[str, str]
"""An order's identity: ``(client_id, order_id)``."""


def touched_orders(events: Iterable[Event]) -> set[OrderId]:
    """The orders a version's events may have changed in the book. O(len(events)).

    Every change of a resting order is named by an event: a rest (`OrderRested`), a
    fill (`Trade`: the maker's remaining changed or it left), a cancel
    (`OrderCancelled`, user or self-trade), a modify (`OrderModified`). Accepted orders
    and takers are included too (a taker may rest afterwards); rejections change
    nothing. The set may hold orders that are not (or no longer) in the book.
    """
    ids: set[OrderId] = set()
    for event in events:
        if type(event) is Trade:
            ids.add((event.maker_client_id, event.maker_order_id))
            ids.add((event.taker_client_id, event.taker_order_id))
        elif type(event) is not OrderRejected:
            ids.add((event.client_id, event.order_id))  # type: ignore[union-attr]
    return ids


# --------------------------------------------------------------------------- the tree


class TreeDelta:
    """What one `BookTree.update` changed, and how to undo it.

    Attributes:
        root: the tree's root key after the update (the book hash; None when empty).
        height: the tree's height after it.
        added: the pages the tree has now and did not have before, by key (text).
        removed: the keys of the pages it no longer has.
    """

    __slots__ = (
        "_after",
        "_before",
        "_log",
        "_orders",
        "_ordinal",
        "added",
        "height",
        "removed",
        "root",
    )

    def __init__(
        self,
        root: str | None,
        height: int,
        added: dict[str, str],
        removed: frozenset[str],
        log: list[tuple[Any, ...]],
        orders: dict[OrderId, OrderEntry | None],
        ordinal: int,
        before: int,
        after: int,
    ) -> None:
        self.root = root
        self.height = height
        self.added = added
        self.removed = removed
        self._log = log
        self._orders = orders
        self._ordinal = ordinal
        self._before = before
        self._after = after

    def __repr__(self) -> str:
        return f"<TreeDelta root={self.root} +{len(self.added)} -{len(self.removed)} pages>"


class BookTree:
    """The canonical page tree of a book, updated in O(log n) per changed order.

    Holds exactly the tree `build_book_tree` builds for the same orders (same pages,
    same root key: the book hash), plus the indexes that let an update re-chunk only
    where orders changed. Mutable; not thread-safe. Build one with `from_book` (cold
    start: a publisher's first version, a replica after reading a version's pages),
    then follow the book with `update` after each version's events.

    A new `BookTree()` is the tree of an empty book.
    """

    def __init__(self) -> None:
        self._levels: list[Level] = []  # level k: its pages, in order
        self._by_key: dict[str, TreePage] = {}
        self._orders: dict[OrderId, OrderEntry] = {}
        self._ordinal = 0  # the next arrival number
        self._version = 0  # which state the tree is in, for undo
        self._serial = count(1)

    # ------------------------------------------------------------------ building

    @classmethod
    def from_book(cls, book: OrderBook, *, reuse: BookTree | None = None) -> BookTree:
        """The tree of `book`. O(n) for n resting orders (plus the book's O(L log L)).

        `reuse`: see `from_orders`.
        """
        return cls.from_orders(book.orders(), reuse=reuse)

    @classmethod
    def from_orders(
        cls, orders: Iterable[RestingOrder], *, reuse: BookTree | None = None
    ) -> BookTree:
        """The tree of a book holding `orders`, given in canonical order. O(n).

        Args:
            orders: the book's orders, in canonical order.
            reuse: another tree (e.g. of the previous version), not modified: the
                encodings of the orders it holds unchanged are taken from it, which
                halves a rebuild when few orders changed (100,000 orders: 0.6-0.7 s
                of CPU against 1.1-1.4 s).

        Raises:
            ValueError: the orders are not in canonical order (asks by price
                ascending, then bids by price descending), an id repeats, or an order
                cannot fit in a page.
            TypeError: an order's side is not a `Side`.
        """
        tree = cls()
        known = {} if reuse is None else reuse._orders
        entries: list[OrderEntry] = []
        for i, order in enumerate(orders):
            was = known.get((order.client_id, order.order_id))
            if was is not None and was.order == order:
                entries.append(entry_with(position(order, i), was.enc, was.group, was.cut, order))
            else:
                entries.append(new_entry(order, i))
        for before, after in pairwise(entries):
            if before.pos >= after.pos:
                raise ValueError(f"orders not in canonical order at {after.order}")
        for entry in entries:
            order = entry.order
            tree._orders[(order.client_id, order.order_id)] = entry
        if len(tree._orders) != len(entries):
            raise ValueError("an order id appears twice")
        tree._ordinal = len(entries)
        if not entries:
            return tree
        firsts: list[int] = []
        nexts: list[int] = []
        previous = None
        for entry in entries:
            firsts.append(entry.opens)
            nexts.append(entry.joins if entry.group == previous else entry.opens + 1)
            previous = entry.group
        pages: list[TreePage] = []
        start = 0
        for end in chunk(firsts, nexts, [e.cut for e in entries], LEAF_OVERHEAD):
            pages.append(make_leaf(entries[start:end]))
            start = end
        tree._levels.append(Level(pages))
        height = 1
        while len(pages) > 1:
            widths = [len(page.ref) for page in pages]
            cuts = [page.cut for page in pages]
            parents: list[TreePage] = []
            start = 0
            for end in chunk(widths, [w + 1 for w in widths], cuts, NODE_OVERHEAD[height]):
                parents.append(make_node(pages[start:end], height))
                start = end
            pages = parents
            tree._levels.append(Level(pages))
            height += 1
        for level in tree._levels:
            for page in level.pages:
                tree._by_key[page.key] = page
        return tree

    # ------------------------------------------------------------------ queries

    @property
    def root(self) -> str | None:
        """The root page's key: the book hash (None for an empty book). O(1)."""
        return self._levels[-1].pages[0].key if self._levels else None

    @property
    def height(self) -> int:
        """The number of levels: 0 when empty, 1 for a single leaf. O(1)."""
        return len(self._levels)

    def __len__(self) -> int:
        """The number of orders in the tree. O(1)."""
        return len(self._orders)

    @property
    def page_count(self) -> int:
        """The number of pages. O(height)."""
        return sum(len(level) for level in self._levels)

    def __contains__(self, key: object) -> bool:
        """Whether a page of the tree has this key. O(1)."""
        return key in self._by_key

    def page(self, key: str) -> str | None:
        """The text of the tree's page under `key`, or None. O(1)."""
        page = self._by_key.get(key)
        return None if page is None else page.text

    def pages(self) -> dict[str, str]:
        """Every page, by key. O(pages)."""
        return {key: page.text for key, page in self._by_key.items()}

    def snapshot(self) -> PageTree:
        """The tree as `build_book_tree` returns it. O(pages)."""
        return PageTree(self.root, self.pages(), self.height)

    def get_order(self, client_id: str, order_id: str) -> RestingOrder | None:
        """The order with this id as the tree holds it, or None. O(1)."""
        entry = self._orders.get((client_id, order_id))
        return None if entry is None else entry.order

    def orders(self) -> Iterator[RestingOrder]:
        """The orders in canonical order. O(n)."""
        if not self._levels:
            return iter(())
        return (entry.order for page in self._levels[0].pages for entry in page.entries)

    # ------------------------------------------------------------------ updating

    def update(self, book: OrderBook, events: Iterable[Event]) -> TreeDelta:
        """Follow `book` after `events`: the tree becomes `book`'s tree.

        `book` is the book after the events and the tree held the book before them:
        the events must be all of them (those of every command since the tree last
        matched the book, e.g. a version's ``first..seq``). Only the orders the events
        name are looked at (`touched_orders`), so the cost is O(k log n) for k changed
        orders, whatever the book's size n.

        Returns:
            What changed, with the new root (compare it with a version's ``book``).

        Raises:
            ValueError: afterwards the tree does not hold as many orders as `book`
                (events were missing); the tree is left as it was.
        """
        return self.update_orders(book, touched_orders(events))

    def update_orders(self, book: OrderBook, ids: Iterable[OrderId]) -> TreeDelta:
        """Like `update`, given the ids of every order that may have changed.

        O(k log n) for k ids. Raises ValueError as `update` does.
        """
        delta = self.apply_changes({oid: book.get_order(*oid) for oid in ids})
        if len(self._orders) != len(book):
            held = len(self._orders)
            self.undo(delta)
            raise ValueError(
                f"the tree would hold {held} orders, the book {len(book)}: "
                "the events do not cover every change"
            )
        return delta

    def apply_changes(self, changes: Mapping[OrderId, RestingOrder | None]) -> TreeDelta:
        """Set each order of `changes` to its new state (None: it left the book).

        An order that kept its side, price, ``seq`` and ``ts`` keeps its place (a fill
        or a size decrease); any other new state enters at the tail of its price level,
        as the book puts it; orders new in one call enter in ``seq`` order. O(k log n).

        Raises:
            ValueError: a new state's ids are not its key's, or an order cannot fit in
                a page (ids far beyond the submit_order rule); the tree is unchanged.
            TypeError: a side is not a `Side`; the tree is unchanged.
        """
        saved = {oid: self._orders.get(oid) for oid in changes}
        final: dict[OrderId, OrderEntry | None] = {}
        edits: dict[Position, OrderEntry | None] = {}
        entering: list[tuple[int, OrderId, RestingOrder]] = []
        for oid, new in changes.items():
            if new is not None and (new.client_id, new.order_id) != oid:
                raise ValueError(f"order {new} given for id {oid}")
            old = saved[oid]
            if old is None:
                if new is not None:
                    entering.append((new.seq, oid, new))
                continue
            kept = old.order
            if new == kept:
                continue
            if new is not None and (new.side, new.price, new.seq, new.ts) == (
                kept.side,
                kept.price,
                kept.seq,
                kept.ts,
            ):
                final[oid] = edits[old.pos] = refilled(old, new)
                continue
            final[oid] = edits[old.pos] = None
            if new is not None:
                entering.append((new.seq, oid, new))
        ordinal = self._ordinal
        entering.sort(key=lambda item: (item[0], item[1]))
        for _, oid, new in entering:
            entry = new_entry(new, ordinal)
            ordinal += 1
            final[oid] = edits[entry.pos] = entry

        log: list[tuple[Any, ...]] = []
        delta = TreeDelta(None, 0, {}, frozenset(), log, saved, self._ordinal, self._version, 0)
        for oid, state in final.items():
            if state is None:
                del self._orders[oid]
            else:
                self._orders[oid] = state
        self._ordinal = ordinal
        added: dict[str, str] = {}
        removed: set[str] = set()
        try:
            self._edit(sorted(edits.items()), log, added, removed)
        except BaseException:
            self._rollback(delta)
            raise
        self._version = delta._after = next(self._serial)
        delta.root = self.root
        delta.height = self.height
        delta.added = {key: text for key, text in added.items() if key not in removed}
        delta.removed = frozenset(removed - added.keys())
        return delta

    def undo(self, delta: TreeDelta) -> None:
        """Put the tree back as it was before the update that gave `delta`.

        O(size of the delta). Updates are undone last first.

        Raises:
            ValueError: `delta` is not the tree's last update (or was undone already).
        """
        if delta._after != self._version:
            raise ValueError("not the last update of this tree")
        self._rollback(delta)

    # ------------------------------------------------------------------ internals

    def _rollback(self, delta: TreeDelta) -> None:
        """Undo `delta`'s log, order index, ordinal and version."""
        for op in reversed(delta._log):
            if op[0] == "level":
                _, k, start, made, replaced, gone, came = op
                self._levels[k].splice(start, start + made, replaced)
                for page in came:
                    del self._by_key[page.key]
                for page in gone:
                    self._by_key[page.key] = page
            elif op[0] == "push":
                self._levels.pop()
            elif op[0] == "pop":
                self._levels.append(op[1])
            else:  # "drop": levels that went from the top
                self._levels.extend(op[1])
                for level in op[1]:
                    for page in level.pages:
                        self._by_key[page.key] = page
        for oid, entry in delta._orders.items():
            if entry is None:
                self._orders.pop(oid, None)
            else:
                self._orders[oid] = entry
        self._ordinal = delta._ordinal
        self._version = delta._before

    def _edit(
        self,
        edits: list[Edit],
        log: list[tuple[Any, ...]],
        added: dict[str, str],
        removed: set[str],
    ) -> None:
        """Apply `edits` to level 0 and carry the page changes up. O(k log n)."""
        k = 0
        while edits:
            if k == len(self._levels):
                self._levels.append(Level([]))
                log.append(("push",))
                if k > 0:  # a new level over every page of the one below
                    edits = [(page.pos, page) for page in self._levels[k - 1].pages]
            level = self._levels[k]
            upward: dict[Position, TreePage | None] = {}
            # Right to left, so that the runs' start indexes stay valid.
            for start, replaced, made in reversed(rechunk(self._levels[k], k, edits)):
                old = {page.key: page for page in replaced}
                new_keys = {page.key for page in made}
                made = [old.get(page.key, page) for page in made]  # unchanged: the old page
                level.splice(start, start + len(replaced), made)
                gone = [page for page in replaced if page.key not in new_keys]
                came = [page for page in made if page.key not in old]
                for page in gone:
                    del self._by_key[page.key]
                    removed.add(page.key)
                    upward[page.pos] = None
                for page in came:
                    self._by_key[page.key] = page
                    added[page.key] = page.text
                    upward[page.pos] = page
                log.append(("level", k, start, len(made), replaced, gone, came))
            if len(level) <= 1:
                if len(self._levels) > k + 1:
                    dropped = self._levels[k + 1 :]
                    del self._levels[k + 1 :]
                    for above in dropped:
                        for page in above.pages:
                            del self._by_key[page.key]
                            removed.add(page.key)
                    log.append(("drop", dropped))
                if not level:
                    self._levels.pop()
                    log.append(("pop", level))
                return
            edits = sorted(upward.items())
            k += 1

    def _check(self) -> None:
        """Verify every invariant, and that the tree is the full build's. O(n).

        For tests; raises AssertionError with what differs.
        """
        orders = list(self.orders())
        full = build_from_entries([leaf_entry(order) for order in orders])
        assert full.root == self.root, (full.root, self.root)
        assert full.height == self.height, (full.height, self.height)
        assert full.pages == self.pages(), "pages differ from a full build"
        assert len(orders) == len(self._orders)
        for k, level in enumerate(self._levels):
            assert level.positions == [page.pos for page in level.pages]
            assert len(level) >= 1
            assert (len(level) == 1) == (k == len(self._levels) - 1), "top is one page"
            positions = [page.pos for page in level.pages]
            assert positions == sorted(positions)
            for page in level.pages:
                assert self._by_key[page.key] is page
                assert page.pos == page.entries[0].pos
                assert [e.pos for e in page.entries] == sorted(e.pos for e in page.entries)
                if k > 0:
                    assert page.count == sum(child.count for child in page.entries)
            if k > 0:
                below = [child for page in level.pages for child in page.entries]
                assert below == self._levels[k - 1].pages, f"level {k} is not over level {k - 1}"
        assert len(self._by_key) == self.page_count
        for page in self._levels[0].pages if self._levels else ():
            for entry in page.entries:
                order = entry.order
                assert self._orders[(order.client_id, order.order_id)] is entry
                assert entry.pos[2] < self._ordinal
