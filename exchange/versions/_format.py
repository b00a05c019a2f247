"""The page format of a version's trees: limits, page kinds, page text, the chunking rule.

Theory of operation
-------------------
A DHT value holds at most 999 bytes and the challenge's grapes keep about 1000 values,
so a book is stored as a tree of small *pages*, each stored under its own DHT key
(``dht_key(page)``, sha1 of the bencoded string). A page names its children by key, so
the root key commits to the whole tree (a Merkle tree) and a client verifies each page
by recomputing its key.

The tree over the book is a *prolly tree* (content-defined chunking, as in Noms/Dolt):

* Level 0 is the book's canonical order sequence (asks ascending by price, then bids
  descending, FIFO within a level: ``OrderBook.orders()``). One entry per order.
* A level is cut into chunks left to right. A chunk is closed before an entry that
  would push its page over ``MAX_PAGE_BYTES`` (a forced split), and after an entry
  that is a *boundary* once the chunk has two entries or more. Each chunk becomes one
  page. A book leaf groups its orders by side and price (``[side, price, [[remaining,
  clientId, orderId, seq, ts], ...]]``) and stores an order id ``f"{clientId}-{n}"``
  as the integer ``n``: about 45 bytes per order with realistic ids, so a full leaf
  holds about 20 orders.
* In a leaf, whether an order is a boundary depends on its *boundary hash* (sha1 of
  ``[clientId, orderId, seq]``) and on how full the page is: the first 11 bits of the
  hash, a number ``b`` in 0..2047, must be below ``size - LEAF_BOUNDARY_FROM``, where
  ``size`` is the page's length with the order in it. Never below 400 bytes, then more
  and more likely, about 29% for a full page.
* Level k+1 is the list of ``[key, count]`` of the pages of level k, chunked the same
  way but a child is a boundary when its key's first byte is below
  ``BOUNDARY_BYTE_BELOW`` (1/32), whatever the size, until one page is left: the
  tree's root. Every chunk but a level's last has two or more entries, so each level
  is at most half the one below and the build terminates.

Why this shape: boundaries depend only on the entries' content and the chunk they are
in, never on the history, so (1) the tree is a pure function of the book's content and
its root key doubles as a state hash, and (2) inserting, removing or changing one
order re-chunks only its own neighbourhood, from its leaf to where the new chunking
meets the old one again, and every other page is shared with the previous version.

Density against update cost: leaves must be nearly full (a 10,000-order book must stay
well inside a grape's 1000 values), and full pages end at forced splits, which move
when the bytes before them change, so an update re-chunks until a chunk ends where an
old one did. With boundaries 1 in 32 whatever the size (page format 2), half the leaves
ended at a forced split and a one-order update changed 1.9 leaves on average; the size
ramp makes a nearly full page likely to end at a boundary of its own (92% of leaves),
which an edit before it does not move: 1.3 leaves, for ~2% more pages (measured on
realistic 10,000-order books; docs/protocol.md has the whole tree's numbers). An
order's boundary hash covers ``[client_id, order_id, seq]`` but not its remaining
amount, so a partial fill that keeps the encoding's length moves no boundary. The
events and commands of a version are not shared between versions, so their pages are
packed greedily and compressed (zlib, base64 in the page: 4 to 5 times fewer pages).

What is here is what every writer and reader of pages agrees on: the constants and
page kinds, a page's text (`leaf_page`, `node_page`), the boundary rule (`leaf_cut`,
`node_cut`) and the chunking it drives (`chunk`), and the interior levels over a
level of leaves (`build_levels`). The book's leaves are built in ``_book_pages``
(and kept up to date in O(log n) per changed order by ``_tree``), the event and
command lists in ``_list_pages``; ``_parse`` parses and checks one page. The formats
are specified in docs/protocol.md, "Versions in the DHT".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from orderbook_core import Side
from transports import MAX_VALUE_BYTES, dht_key

__all__ = [
    "BOOK_LEAF",
    "BOOK_NODE",
    "BOUNDARY_BYTE_BELOW",
    "CODE_SIDE",
    "COMMAND_LEAF",
    "COMMAND_NODE",
    "COMMAND_ZLEAF",
    "EVENT_LEAF",
    "EVENT_NODE",
    "EVENT_ZLEAF",
    "LEAF_BOUNDARY_BITS",
    "LEAF_BOUNDARY_FROM",
    "MAX_LIST_LEAF_TEXT",
    "MAX_ORDER_NUMBER",
    "MAX_ORDER_NUMBER_DIGITS",
    "MAX_PAGE_BYTES",
    "MAX_TREE_HEIGHT",
    "PAGE_VERSION",
    "SIDE_CODE",
    "UPDATE_PAGES_BOUND",
    "PageTree",
    "build_levels",
    "chunk",
    "leaf_cut",
    "leaf_page",
    "node_cut",
    "node_page",
]

MAX_PAGE_BYTES = MAX_VALUE_BYTES
"""Every page is at most this many bytes (999): what every grape stores."""

BOUNDARY_BYTE_BELOW = 8
"""A node's child ends a chunk when the first byte of its key is below this (1/32)."""

LEAF_BOUNDARY_BITS = 11
"""An order's boundary number is the first 11 bits of its boundary hash: 0..2047."""

LEAF_BOUNDARY_FROM = 400
"""An order ends a chunk (of two orders or more) when its boundary number is below the
page's length with it, minus this: never in a page of 400 bytes or less."""

MAX_TREE_HEIGHT = 32
"""Deepest tree a reader accepts; each level is at most half the one below, so 32
levels cover 2**32 orders. Bounds the work a hostile root can ask for."""

UPDATE_PAGES_BOUND = 40
"""The book pages a one-order update is expected to change, at most: a statistical
bound, not an enforced one. Measured on 10,000-order books (realistic ids, height 4)
over 4 x 3,000 random new bids and cancels: mean 5.0, median 4, p99 12 to 15, worst 21
to 33. A change re-chunks from its leaf until the new chunking meets the old one, so
the tail is geometric; the tests assert this bound. See docs/protocol.md, "Canonical
tree"."""

PAGE_VERSION = 3
"""The ``"v"`` of every page; a change of page format or chunking changes it. Version 1
had one ``[side, price, remaining, clientId, orderId, seq, ts]`` per order and 1/8
boundaries; version 2 grouped a leaf's orders by side and price and stored
``clientId-<n>`` order ids as the integer ``n``, with 1/32 boundaries everywhere;
version 3 has the same pages with leaf boundaries that depend on the page's size."""

MAX_ORDER_NUMBER_DIGITS = 15
"""An order id ``f"{clientId}-{n}"`` is stored as the integer ``n`` when ``n`` has at
most 15 digits (below 2**53: exact in every JSON reader) and no leading zero."""
MAX_ORDER_NUMBER = 10**MAX_ORDER_NUMBER_DIGITS


# Page types: book leaf/node, event leaf/node, command leaf/node.
BOOK_LEAF = "BL"
BOOK_NODE = "BN"
EVENT_LEAF = "EL"
EVENT_NODE = "EN"
COMMAND_LEAF = "CL"
COMMAND_NODE = "CN"
# Compressed list leaves: ``"z"`` holds the leaf's list as zlib-compressed JSON text,
# base64-encoded. The writer writes only these; the plain EL/CL forms are still read.
EVENT_ZLEAF = "EZ"
COMMAND_ZLEAF = "CZ"

MAX_LIST_LEAF_TEXT = 65_536
"""The most bytes a compressed list leaf may expand to: bounds what a hostile page can
make a reader allocate (the writer's leaves expand to 3 to 6 KB)."""

SIDE_CODE = {Side.SELL: "s", Side.BUY: "b"}
CODE_SIDE = {"s": Side.SELL, "b": Side.BUY}


@dataclass(frozen=True, slots=True)
class PageTree:
    """A built tree: its root key (None when empty), every page by key, its height.

    ``height`` is the number of levels (0 for an empty tree, 1 for a single leaf).
    """

    root: str | None
    pages: dict[str, str] = field(default_factory=dict)
    height: int = 0


# --------------------------------------------------------------------------- chunking


def chunk(
    first_widths: Sequence[int],
    next_widths: Sequence[int],
    cuts: Sequence[int] | None,
    overhead: int,
) -> list[int]:
    """Cut a level into chunks; return the end index of each chunk.

    A page of a chunk is ``overhead`` bytes plus the widths of its entries: entry ``i``
    costs ``first_widths[i]`` as a chunk's first entry and ``next_widths[i]`` after
    entry ``i - 1`` in the same chunk (commas and, in a book leaf, the price group it
    opens included). Before adding an entry to a non-empty chunk, close the chunk if
    the page would exceed `MAX_PAGE_BYTES`; after adding it, close the chunk if it has
    two entries or more and its page is now longer than the entry's cut (`leaf_cut`,
    `node_cut`; None: no boundaries). O(n).
    """
    ends: list[int] = []
    start = 0
    size = overhead
    for i, first in enumerate(first_widths):
        if overhead + first > MAX_PAGE_BYTES:
            raise ValueError(f"entry {i} of {first} bytes cannot fit in a page")
        if i > start:
            width = next_widths[i]
            if size + width > MAX_PAGE_BYTES:
                ends.append(i)
                start = i
                size = overhead + first
            else:
                size += width
        else:
            size = overhead + first
        if cuts is not None and i > start and size > cuts[i]:
            ends.append(i + 1)
            start = i + 1
            size = overhead
    if start < len(first_widths):
        ends.append(len(first_widths))
    return ends


def leaf_cut(digest: bytes) -> int:
    """An order ends its chunk when the page is then longer than this: its boundary
    number (the digest's first `LEAF_BOUNDARY_BITS` bits) plus `LEAF_BOUNDARY_FROM`."""
    number = int.from_bytes(digest[:2], "big") >> (16 - LEAF_BOUNDARY_BITS)
    return number + LEAF_BOUNDARY_FROM


def node_cut(key: str) -> int:
    """A child ends its chunk at once (0) when its key is a boundary, never (the page
    limit) otherwise: node boundaries do not depend on the size."""
    return 0 if _key_is_boundary(key) else MAX_PAGE_BYTES


def _key_is_boundary(key: str) -> bool:
    """An interior entry ends a chunk when its child's key starts with a byte below
    `BOUNDARY_BYTE_BELOW`."""
    return int(key[:2], 16) < BOUNDARY_BYTE_BELOW


def node_page(kind: str, height: int, children: Sequence[str]) -> str:
    """The text of a node page of `kind` over its children's encoded ``[key, count]``."""
    return '{"c":[' + ",".join(children) + f'],"h":{height},"t":"{kind}","v":{PAGE_VERSION}}}'


def leaf_page(kind: str, field_name: str, items: Sequence[str]) -> str:
    """The text of a leaf page of `kind` whose `field_name` lists the encoded `items`."""
    return f'{{"{field_name}":[' + ",".join(items) + f'],"t":"{kind}","v":{PAGE_VERSION}}}'


def build_levels(pages: dict[str, str], level: list[tuple[str, int]], node_kind: str) -> PageTree:
    """Build the interior levels over `level` (the leaves' ``(key, count)``). O(len)."""
    height = 1
    while len(level) > 1:
        entries = [f'["{key}",{count}]' for key, count in level]
        widths = [len(entry) for entry in entries]
        overhead = len(node_page(node_kind, height, []))
        cuts = [node_cut(key) for key, _ in level]
        parents: list[tuple[str, int]] = []
        start = 0
        for end in chunk(widths, [w + 1 for w in widths], cuts, overhead):
            page = node_page(node_kind, height, entries[start:end])
            key = dht_key(page)
            pages[key] = page
            parents.append((key, sum(count for _, count in level[start:end])))
            start = end
        assert len(parents) < len(level), "a level must shrink"
        level = parents
        height += 1
    for page in pages.values():
        assert len(page) <= MAX_PAGE_BYTES, page[:80]
        assert page.isascii(), page[:80]
    return PageTree(level[0][0], pages, height)
