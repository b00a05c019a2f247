"""The levels of a `BookTree` and how one is re-chunked around edits (see ``_tree``).

Level 0 holds `OrderEntry` values (an order, its position, its leaf encoding), level
k + 1 the `TreePage` values of level k; a `Level` is one level's pages in order. The
chunkers are the streaming twins of `_format.chunk` (the same rule, entry by entry),
and `rechunk` replays the rule only where edits are, until the new chunking meets the
old one again.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Any, NamedTuple

from exchange.versions._book_pages import leaf_entry
from exchange.versions._format import (
    BOOK_LEAF,
    BOOK_NODE,
    MAX_PAGE_BYTES,
    leaf_page,
    node_cut,
    node_page,
)
from orderbook_core import RestingOrder, Side
from transports import dht_key

__all__ = [
    "LEAF_OVERHEAD",
    "NODE_OVERHEAD",
    "Edit",
    "LeafChunker",
    "Level",
    "NodeChunker",
    "OrderEntry",
    "Position",
    "Run",
    "TreePage",
    "entry_with",
    "make_leaf",
    "make_node",
    "new_entry",
    "position",
    "position_of",
    "rechunk",
    "refilled",
]

Position = tuple[int, int, int]
"""Where an order sits in canonical order: ``(side, ±price, ordinal)``."""

LEAF_OVERHEAD = len(leaf_page(BOOK_LEAF, "o", []))
_LEAF_TAIL = "]]" + leaf_page(BOOK_LEAF, "o", [])[len('{"o":[') :]  # ']]],"t":"BL","v":3}'
NODE_OVERHEAD = [len(node_page(BOOK_NODE, h, [])) for h in range(64)]


class OrderEntry(NamedTuple):
    """A level-0 entry: an order, where it sits, and its leaf encoding.

    ``opens`` is what it adds to a page when it opens a price group
    (``[group,[enc]]``), ``joins`` when it continues the previous order's (``,enc``).
    """

    pos: Position
    enc: str
    group: str
    cut: int  # the chunk ends after it if its page is then longer (`_format.chunk`)
    order: RestingOrder
    opens: int
    joins: int


class TreePage:
    """One page of the tree: immutable once made. ``pos`` is its first order's."""

    __slots__ = ("closed", "count", "cut", "entries", "key", "pos", "ref", "sizes", "text")

    def __init__(
        self, entries: tuple[Any, ...], text: str, count: int, sizes: list[int] | None = None
    ) -> None:
        self.entries = entries  # tuple[OrderEntry, ...] in a leaf, tuple[TreePage, ...] in a node
        # A leaf's page length with its first 1, 2, ... entries (`leaf_sizes`), if known.
        self.sizes = sizes
        self.pos: Position = entries[0].pos
        self.text = text
        self.key = dht_key(text)
        self.count = count
        self.ref = f'["{self.key}",{count}]'  # this page's entry in its parent
        self.cut = node_cut(self.key)  # as an entry of its parent
        # Whether the page ended at a boundary of its own (then its end does not
        # depend on the entry after it).
        self.closed = len(entries) >= 2 and len(text) > entries[-1].cut


def leaf_text(entries: Sequence[OrderEntry], head: str = "", done: int = 0) -> str:
    """The BL page of `entries`: `_format.leaf_page` of their price groups (as
    ``_book_pages`` writes them), in one pass (the profiler's pick: a leaf is
    re-encoded on most updates).

    `head`, when given, is the text of a page of ``entries[:done]`` without its
    `_LEAF_TAIL` (``done >= 1``; `leaf_head`): it is reused as it is.
    """
    if not done:
        first = entries[0]
        head = '{"o":[[' + first.group + ",[" + first.enc
        done = 1
    group = entries[done - 1].group
    parts = [head]
    for entry in entries[done:]:
        if entry.group == group:
            parts.append("," + entry.enc)
        else:
            group = entry.group
            parts.append("]],[" + group + ",[" + entry.enc)
    parts.append(_LEAF_TAIL)
    return "".join(parts)


def leaf_head(page: TreePage, done: int) -> str:
    """The text of the page of ``page.entries[:done]`` without its `_LEAF_TAIL`: a
    prefix of `page`'s own text (``1 <= done``). O(done) the first time (`leaf_sizes`),
    then O(1) plus the copy."""
    return page.text[: leaf_sizes(page)[done - 1] - len(_LEAF_TAIL)]


def leaf_sizes(page: TreePage) -> list[int]:
    """A leaf's page length with its first 1, 2, ... entries; computed once."""
    sizes = page.sizes
    if sizes is None:
        entries = page.entries
        size = LEAF_OVERHEAD + entries[0].opens
        sizes = [size]
        group = entries[0].group
        for entry in entries[1:]:
            size += entry.joins if entry.group == group else entry.opens + 1
            group = entry.group
            sizes.append(size)
        page.sizes = sizes
    return sizes


def make_leaf(
    entries: Sequence[OrderEntry],
    sizes: list[int] | None = None,
    head: str = "",
    done: int = 0,
) -> TreePage:
    """The leaf page of `entries` (a chunk). O(len(entries)).

    `sizes`: the page's lengths with its first 1, 2, ... entries, if known; `head` and
    `done`: see `leaf_text`.
    """
    return TreePage(tuple(entries), leaf_text(entries, head, done), len(entries), sizes)


def make_node(children: Sequence[TreePage], height: int) -> TreePage:
    """The node page of height `height` over `children` (a chunk). O(len(children))."""
    text = node_page(BOOK_NODE, height, [child.ref for child in children])
    return TreePage(tuple(children), text, sum([child.count for child in children]))


def position(order: RestingOrder, ordinal: int) -> Position:
    """Where `order` sits, given its arrival number within its price level."""
    if order.side is Side.SELL:
        return (0, order.price, ordinal)
    if order.side is Side.BUY:
        return (1, -order.price, ordinal)
    raise TypeError(f"side must be a Side, not {order.side!r}")


def new_entry(order: RestingOrder, ordinal: int) -> OrderEntry:
    """The level-0 entry of `order` (encoded and hashed: O(its size))."""
    enc, group, cut = leaf_entry(order)
    return entry_with(position(order, ordinal), enc, group, cut, order)


def refilled(entry: OrderEntry, order: RestingOrder) -> OrderEntry:
    """`entry`'s order with another remaining amount (a fill, a size decrease): same
    position, same boundary number (it does not cover the amount), same encoding but
    its first number. O(its size), no hash."""
    remaining = order.remaining
    if type(remaining) is not int:
        return new_entry(order, entry.pos[2])
    enc = entry.enc
    enc = f"[{remaining}{enc[enc.index(',') :]}"
    return entry_with(entry.pos, enc, entry.group, entry.cut, order)


def entry_with(pos: Position, enc: str, group: str, cut: int, order: RestingOrder) -> OrderEntry:
    """The level-0 entry of an order already encoded.

    Raises:
        ValueError: the order cannot fit in a page (ids far beyond the id rule).
    """
    opens = len(group) + len(enc) + 5
    if LEAF_OVERHEAD + opens > MAX_PAGE_BYTES:
        raise ValueError(f"order {order.client_id}/{order.order_id} cannot fit in a page")
    return OrderEntry(pos, enc, group, cut, order, opens, len(enc) + 1)


def position_of(item: Any) -> Position:
    """The position of an entry of any level (the sort key of every level)."""
    return item.pos  # type: ignore[no-any-return]


class Level:
    """One level's pages in order, and their positions for bisection."""

    __slots__ = ("pages", "positions")

    def __init__(self, pages: list[TreePage]) -> None:
        self.pages = pages
        self.positions = [page.pos for page in pages]

    def __len__(self) -> int:
        return len(self.pages)

    def find(self, pos: Position) -> int:
        """The index of the page `pos` belongs in (the first page's if before it)."""
        return max(bisect_right(self.positions, pos) - 1, 0)

    def splice(self, start: int, stop: int, pages: list[TreePage]) -> None:
        """Replace pages ``start:stop`` with `pages`. O(1) for as many pages as it
        replaces, else a memmove of the level's pointers (~3 µs for 6,500 pages)."""
        self.pages[start:stop] = pages
        self.positions[start:stop] = [page.pos for page in pages]


# --------------------------------------------------------------------------- chunkers
# The streaming twins of `_format.chunk` (same rule, entry by entry): a chunk closes
# before an entry that would push its page over MAX_PAGE_BYTES, and after an entry when
# it has two entries or more and its page is longer than the entry's cut.


class Chunker:
    """The state of a level's chunking: the open chunk, its page's size, pages made.

    ``known`` holds old pages by position: a chunk that comes out with exactly an old
    page's entries is that page (not encoded and hashed again).
    """

    __slots__ = ("chunk", "known", "pages", "size")

    def __init__(self) -> None:
        self.chunk: list[Any] = []
        self.pages: list[TreePage] = []
        self.known: dict[Position, TreePage] = {}
        self.size = 0

    def resume(self, page: TreePage) -> None:
        """Take `page` as the open chunk, as if its entries had just been pushed.

        Exact because a chunk's size *is* its page's length. For a page that did not
        end at a boundary of its own (it ended where the next entry did not fit).
        """
        self.chunk = list(page.entries)
        self.size = len(page.text)
        self.known[page.pos] = page

    def close(self) -> None:
        if self.chunk:
            page = self.known.get(self.chunk[0].pos)
            if page is None or page.entries != tuple(self.chunk):
                page = self._make(self.chunk)
            self.pages.append(page)
            self.chunk = []

    def _make(self, chunk: list[Any]) -> TreePage:
        raise NotImplementedError


class LeafChunker(Chunker):
    """Chunks level 0. Keeps the page length after each entry of the open chunk
    (``sizes``) and, when the chunk starts with entries of an old page, that page's
    text for them (``head``, ``done``): the new page reuses both."""

    __slots__ = ("done", "group", "head", "sizes")

    def __init__(self) -> None:
        super().__init__()
        self.group = ""
        self.sizes: list[int] = []
        self.head = ""
        self.done = 0

    def resume(self, page: TreePage) -> None:
        super().resume(page)
        self.group = page.entries[-1].group
        self.sizes = list(leaf_sizes(page))
        self.head = page.text[: len(page.text) - len(_LEAF_TAIL)]
        self.done = len(page.entries)

    def resume_prefix(self, page: TreePage, done: int) -> None:
        """Take ``page.entries[:done]`` as the open chunk (``1 <= done < len``), as if
        pushed from the page's start: none of them closed the page, so none closes the
        chunk (the same entries from the same start, each followed by the same entry
        but the last, which is not the page's last)."""
        sizes = leaf_sizes(page)
        self.chunk = list(page.entries[:done])
        self.sizes = sizes[:done]
        self.size = sizes[done - 1]
        self.group = page.entries[done - 1].group
        self.head = page.text[: self.size - len(_LEAF_TAIL)]
        self.done = done
        self.known[page.pos] = page

    def close(self) -> None:
        if self.chunk:
            chunk = self.chunk
            page = self.known.get(chunk[0].pos)
            if page is None or page.entries != tuple(chunk):
                page = make_leaf(chunk, self.sizes, self.head, self.done)
            self.pages.append(page)
            self.chunk = []
            self.sizes = []
            self.done = 0

    def push(self, entry: OrderEntry) -> None:
        self.extend((entry,))

    def extend(self, entries: Sequence[OrderEntry]) -> None:
        """Push `entries` in order. The profiler's hottest loop when a leaf is
        re-chunked: kept flat, its state in locals."""
        chunk, sizes, size, group = self.chunk, self.sizes, self.size, self.group
        for entry in entries:
            if chunk:
                size += entry.joins if entry.group == group else entry.opens + 1
                if size > MAX_PAGE_BYTES:
                    self.close()
                    chunk, sizes = self.chunk, self.sizes
                    size = LEAF_OVERHEAD + entry.opens
            else:
                size = LEAF_OVERHEAD + entry.opens
            chunk.append(entry)
            sizes.append(size)
            group = entry.group
            if size > entry.cut and len(chunk) >= 2:
                self.close()
                chunk, sizes = self.chunk, self.sizes
        self.size, self.group = size, group

    def closes_before(self, entry: OrderEntry) -> bool:
        """Whether the open chunk would close before `entry` (it does not fit)."""
        width = entry.joins if entry.group == self.group else entry.opens + 1
        return bool(self.chunk) and self.size + width > MAX_PAGE_BYTES


class NodeChunker(Chunker):
    __slots__ = ("height", "overhead")

    def __init__(self, height: int) -> None:
        super().__init__()
        self.height = height
        self.overhead = NODE_OVERHEAD[height]

    def push(self, entry: TreePage) -> None:
        self.extend((entry,))

    def extend(self, entries: Sequence[TreePage]) -> None:
        """Push `entries` in order (flat, like `LeafChunker.extend`)."""
        chunk, size, overhead = self.chunk, self.size, self.overhead
        for entry in entries:
            width = len(entry.ref)
            if chunk:
                size += width + 1
                if size > MAX_PAGE_BYTES:
                    self.close()
                    chunk = self.chunk
                    size = overhead + width
            else:
                size = overhead + width
            chunk.append(entry)
            if size > entry.cut and len(chunk) >= 2:
                self.close()
                chunk = self.chunk
        self.size = size

    def closes_before(self, entry: TreePage) -> bool:
        """Whether the open chunk would close before `entry` (it does not fit)."""
        return bool(self.chunk) and self.size + len(entry.ref) + 1 > MAX_PAGE_BYTES

    def _make(self, chunk: list[Any]) -> TreePage:
        return make_node(chunk, self.height)


Edit = tuple[Position, Any]  # (position, new entry or None to delete)


def same_widths(page: TreePage, edits: Sequence[Edit], height: int) -> TreePage | None:
    """`page` with `edits` applied, when they only replace entries by entries of the
    same width that end the chunk where the old ones did: then every chunk of the level
    ends where it did and only this page changes (a partial fill of a leaf's order,
    most often the new key of a child in a node). None otherwise. O(entries in the
    page)."""
    entries = page.entries
    text = page.text
    count = page.count
    last = len(entries) - 1
    for pos, new in edits:
        if new is None:
            return None
        at = bisect_left(entries, pos, key=position_of)
        if at == last + 1 or entries[at].pos != pos:
            return None
        was = entries[at]
        if height:
            if len(new.ref) != len(was.ref):
                return None
            size = NODE_OVERHEAD[height] + sum([len(e.ref) for e in entries[: at + 1]]) + at
        else:
            if len(new.enc) != len(was.enc):
                return None
            size = _leaf_size(entries, at)
        # Widths are equal, so sizes are too: only this entry's own decision may
        # differ. Before the last it must stay "go on"; at the last, a boundary of the
        # old page must stay one (a forced split or the level's end stays anyway).
        if at:
            ends = size > new.cut
            if (ends and at < last) or (not ends and at == last and page.closed):
                return None
        if height:
            # A child's ``["key",count]`` is unique in the page (keys are): swap it.
            text = text.replace(was.ref, new.ref, 1)
            count += new.count - was.count
        entries = (*entries[:at], new, *entries[at + 1 :])
    if height:
        return TreePage(entries, text, count)
    return make_leaf(entries)


def _leaf_size(entries: Sequence[OrderEntry], upto: int) -> int:
    """The length of a leaf page of ``entries[: upto + 1]``."""
    size = LEAF_OVERHEAD + entries[0].opens
    for i in range(1, upto + 1):
        entry = entries[i]
        size += entry.joins if entry.group == entries[i - 1].group else entry.opens + 1
    return size


def merge(entries: Sequence[Any], edits: Sequence[Edit]) -> list[Any]:
    """`entries` (sorted by position) with `edits` (sorted too) applied."""
    out: list[Any] = []
    i, n = 0, len(entries)
    for pos, new in edits:
        while i < n and entries[i].pos < pos:
            out.append(entries[i])
            i += 1
        if i < n and entries[i].pos == pos:
            i += 1
        elif new is None:
            raise AssertionError(f"no entry at {pos} to delete")
        if new is not None:
            out.append(new)
    out.extend(entries[i:])
    return out


Run = tuple[int, list[TreePage], list[TreePage]]
"""A re-chunked run: the index of its first old page, the old pages, the new ones."""


def rechunk(level: Level, k: int, edits: list[Edit]) -> list[Run]:
    """Re-chunk level `k` (`level`) around `edits`, sorted by position, left to right.

    Returns, per run: the index of its first old page, the old pages it replaces
    (consecutive) and the pages that replace them.
    """
    pages = level.pages
    n = len(pages)

    def chunker() -> LeafChunker | NodeChunker:
        return LeafChunker() if k == 0 else NodeChunker(k)

    if n == 0:
        fresh = chunker()
        fresh.extend([entry for _, entry in edits])
        fresh.close()
        return [(0, [], fresh.pages)]
    where = [level.find(pos) for pos, _ in edits]
    runs: list[Run] = []
    i, m = 0, len(edits)
    while i < m:
        j = where[i]
        lo = i
        while i < m and where[i] == j:
            i += 1
        # Not when the next run would start with this page (it resumes it, below).
        shared = i < m and where[i] == j + 1 and edits[i][0] == pages[j + 1].pos
        same = None if shared and not pages[j].closed else same_widths(pages[j], edits[lo:i], k)
        if same is not None:
            runs.append((j, [pages[j]], [same]))
            continue
        i = lo
        out = chunker()
        start = j
        skip = 0  # entries of the first page taken as they are, not pushed again
        if j > 0 and edits[i][0] == pages[j].pos:
            # The page's first entry changes: the page before may end elsewhere,
            # unless it ended at a boundary of its own.
            before = pages[j - 1]
            if not before.closed:
                out.resume(before)
                start = j - 1
        elif k == 0:
            # The entries before the first edit chunk as they did: the page's text
            # and sizes for them are reused (`LeafChunker.resume_prefix`).
            page = pages[j]
            skip = bisect_left(page.entries, edits[i][0], key=position_of)
            if skip >= len(page.entries):  # the edit is after the page's last entry
                skip = len(page.entries)
                if page.closed:
                    out.known[page.pos] = page
                    out.pages.append(page)
                else:
                    out.resume(page)
            elif skip:
                assert isinstance(out, LeafChunker)
                out.resume_prefix(page, skip)
        while True:
            page = pages[j]
            out.known[page.pos] = page
            lo = i
            while i < m and where[i] == j:
                i += 1
            if skip:
                out.extend(merge(page.entries[skip:], edits[lo:i]))
                skip = 0
            elif lo == i:
                out.extend(page.entries)
            else:
                out.extend(merge(page.entries, edits[lo:i]))
            j += 1
            if j == n:
                out.close()
                break
            if i == m or where[i] > j:
                # The next page has no edit: in sync again if a chunk ends here.
                if not out.chunk:
                    break
                if out.closes_before(pages[j].entries[0]):
                    out.close()
                    break
        runs.append((start, pages[start:j], out.pages))
    return runs
