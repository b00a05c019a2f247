"""The page trees of a version: build them (pure) and parse one page (pure, validating).

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

Costs: building is O(n) (one JSON encoding and one sha1 per order, memoised across
builds by `TreeBuilder`), plus O(n / 20) page encodings and sha1s; `_tree.BookTree`
keeps the same tree up to date in O(log n) per changed order. Parsing a page is
O(page size). The formats are specified in docs/protocol.md, "Versions in the DHT".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any, NamedTuple, Protocol

from exchange.protocol import Entry, InvalidVersion, parse_entry
from orderbook_core import (
    ID_RULE,
    Event,
    MarketSpec,
    OrderBook,
    RestingOrder,
    Side,
    ValidationError,
    canonical_json,
    event_from_wire,
    event_to_wire,
    is_identifier,
)
from transports import MAX_VALUE_BYTES, dht_key, is_dht_key

__all__ = [
    "BOUNDARY_BYTE_BELOW",
    "LEAF_BOUNDARY_BITS",
    "LEAF_BOUNDARY_FROM",
    "MAX_LIST_LEAF_TEXT",
    "MAX_PAGE_BYTES",
    "MAX_TREE_HEIGHT",
    "PAGE_VERSION",
    "UPDATE_PAGES_BOUND",
    "BookLeaf",
    "BookNode",
    "CommandLeaf",
    "CommandNode",
    "EventLeaf",
    "EventNode",
    "Page",
    "PageTree",
    "TreeBuilder",
    "book_hash",
    "build_book_tree",
    "build_command_pages",
    "build_event_pages",
    "parse_page",
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

_MAX_ORDER_NUMBER_DIGITS = 15
"""An order id ``f"{clientId}-{n}"`` is stored as the integer ``n`` when ``n`` has at
most 15 digits (below 2**53: exact in every JSON reader) and no leading zero."""
_MAX_ORDER_NUMBER = 10**_MAX_ORDER_NUMBER_DIGITS


# Page types: book leaf/node, event leaf/node, command leaf/node.
_BOOK_LEAF = "BL"
_BOOK_NODE = "BN"
_EVENT_LEAF = "EL"
_EVENT_NODE = "EN"
_COMMAND_LEAF = "CL"
_COMMAND_NODE = "CN"
# Compressed list leaves: ``"z"`` holds the leaf's list as zlib-compressed JSON text,
# base64-encoded. The writer writes only these; the plain EL/CL forms are still read.
_EVENT_ZLEAF = "EZ"
_COMMAND_ZLEAF = "CZ"
_PLAIN_LEAF = {_EVENT_ZLEAF: _EVENT_LEAF, _COMMAND_ZLEAF: _COMMAND_LEAF}
_LIST_FIELD = {_EVENT_LEAF: "e", _COMMAND_LEAF: "x"}

MAX_LIST_LEAF_TEXT = 65_536
"""The most bytes a compressed list leaf may expand to: bounds what a hostile page can
make a reader allocate (the writer's leaves expand to 3 to 6 KB)."""

_ZLIB_LEVEL = 6
_Z_FULL_ENOUGH = 0.92
"""A leaf whose compressed text fills this share of the budget is not grown further."""
_Z_BUDGET = (MAX_PAGE_BYTES - len('{"t":"EZ","v":3,"z":""}')) // 4 * 3
"""Compressed bytes whose base64 text fits in a page beside the page's other fields."""

_SIDE_CODE = {Side.SELL: "s", Side.BUY: "b"}
_CODE_SIDE = {"s": Side.SELL, "b": Side.BUY}


@dataclass(frozen=True, slots=True)
class PageTree:
    """A built tree: its root key (None when empty), every page by key, its height.

    ``height`` is the number of levels (0 for an empty tree, 1 for a single leaf).
    """

    root: str | None
    pages: dict[str, str] = field(default_factory=dict)
    height: int = 0


# --------------------------------------------------------------------------- building


def _chunk(
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
    two entries or more and its page is now longer than the entry's cut (`_leaf_cut`,
    `_node_cut`; None: no boundaries). O(n).
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


def _leaf_cut(digest: bytes) -> int:
    """An order ends its chunk when the page is then longer than this: its boundary
    number (the digest's first `LEAF_BOUNDARY_BITS` bits) plus `LEAF_BOUNDARY_FROM`."""
    number = int.from_bytes(digest[:2], "big") >> (16 - LEAF_BOUNDARY_BITS)
    return number + LEAF_BOUNDARY_FROM


def _node_cut(key: str) -> int:
    """A child ends its chunk at once (0) when its key is a boundary, never (the page
    limit) otherwise: node boundaries do not depend on the size."""
    return 0 if _key_is_boundary(key) else MAX_PAGE_BYTES


def _key_is_boundary(key: str) -> bool:
    """An interior entry ends a chunk when its child's key starts with a byte below
    `BOUNDARY_BYTE_BELOW`."""
    return int(key[:2], 16) < BOUNDARY_BYTE_BELOW


def _node_page(kind: str, height: int, children: Sequence[str]) -> str:
    return '{"c":[' + ",".join(children) + f'],"h":{height},"t":"{kind}","v":{PAGE_VERSION}}}'


def _leaf_page(kind: str, field_name: str, items: Sequence[str]) -> str:
    return f'{{"{field_name}":[' + ",".join(items) + f'],"t":"{kind}","v":{PAGE_VERSION}}}'


class _Entry(NamedTuple):
    """A book leaf entry: the order's encoding, its price group, its cut (`_chunk`)."""

    enc: str
    group: str  # '"s",1000123' : side and price, as in the group's head
    cut: int


class _Grouped(Protocol):
    """What `_group_items` reads of an entry (`_Entry` here, `_tree._Order` there)."""

    @property
    def enc(self) -> str: ...
    @property
    def group(self) -> str: ...


def _group_items(entries: Sequence[_Grouped]) -> list[str]:
    """The encoded price groups ``[side,price,[order,...]]`` of consecutive entries."""
    return [
        f"[{group},[{','.join([entry.enc for entry in run])}]]"
        for group, run in groupby(entries, key=_group_of)
    ]


def _group_of(entry: _Grouped) -> str:
    return entry.group


def _build_levels(pages: dict[str, str], level: list[tuple[str, int]], node_kind: str) -> PageTree:
    """Build the interior levels over `level` (the leaves' ``(key, count)``). O(len)."""
    height = 1
    while len(level) > 1:
        entries = [f'["{key}",{count}]' for key, count in level]
        widths = [len(entry) for entry in entries]
        overhead = len(_node_page(node_kind, height, []))
        cuts = [_node_cut(key) for key, _ in level]
        parents: list[tuple[str, int]] = []
        start = 0
        for end in _chunk(widths, [w + 1 for w in widths], cuts, overhead):
            page = _node_page(node_kind, height, entries[start:end])
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


def _build_book(entries: Sequence[_Entry]) -> PageTree:
    """Build the book tree over the canonical order entries. O(n)."""
    if not entries:
        return PageTree(None, {}, 0)
    firsts: list[int] = []
    nexts: list[int] = []
    previous = None
    for entry in entries:
        # A group costs '[' + group + ',[' + orders + ']]'; orders are comma-separated,
        # groups too.
        opened = len(entry.group) + len(entry.enc) + 5
        firsts.append(opened)
        nexts.append(len(entry.enc) + 1 if entry.group == previous else opened + 1)
        previous = entry.group
    pages: dict[str, str] = {}
    level: list[tuple[str, int]] = []
    start = 0
    overhead = len(_leaf_page(_BOOK_LEAF, "o", []))
    for end in _chunk(firsts, nexts, [e.cut for e in entries], overhead):
        page = _leaf_page(_BOOK_LEAF, "o", _group_items(entries[start:end]))
        key = dht_key(page)
        pages[key] = page
        level.append((key, end - start))
        start = end
    return _build_levels(pages, level, _BOOK_NODE)


def _build_list(encodings: Sequence[str], zleaf: str, node: str) -> PageTree:
    """Build a list's tree (events, commands): compressed leaves, no boundaries.

    Each leaf holds the longest run of items (from where the previous leaf ended) whose
    compressed JSON array fits, as found by `_fitting_run`. A version's lists are never
    shared with another version, so nothing is lost by packing; compression makes 4 to
    5 times fewer pages than plain JSON (events and commands repeat their keys and
    ids), and pages are what a grape spends its CPU on. O(n) compressions of a page's
    worth of text, a few per page.
    """
    if not encodings:
        return PageTree(None, {}, 0)
    pages: dict[str, str] = {}
    level: list[tuple[str, int]] = []
    start, guess = 0, 16
    while start < len(encodings):
        count, data = _fitting_run(encodings, start, guess)
        page = f'{{"t":"{zleaf}","v":{PAGE_VERSION},"z":"{base64.b64encode(data).decode()}"}}'
        key = dht_key(page)
        pages[key] = page
        level.append((key, count))
        start, guess = start + count, count
    return _build_levels(pages, level, node)


def _deflate(items: Sequence[str]) -> bytes:
    return zlib.compress(("[" + ",".join(items) + "]").encode("ascii"), _ZLIB_LEVEL)


def _fitting_run(encodings: Sequence[str], start: int, guess: int) -> tuple[int, bytes]:
    """How many items from `start` make one compressed leaf, and its compressed text.

    Starts from `guess` (the previous leaf's count: lists are alike along a version)
    and moves the count in proportion to how far the compressed size is from the
    budget, within the bounds found so far: one or two compressions a page, most
    often. A leaf filled to `_Z_FULL_ENOUGH` of the budget is taken; the search is
    deterministic, so the same list gives the same pages.

    Raises:
        ValueError: one item alone does not fit (ids far beyond the id rule).
    """
    left = len(encodings) - start
    fits, fit_data = 0, b""
    too_many = left + 1
    n = max(1, min(guess, left))
    while True:
        data = _deflate(encodings[start : start + n])
        if len(data) <= _Z_BUDGET:
            fits, fit_data = n, data
            if n == left or len(data) >= _Z_FULL_ENOUGH * _Z_BUDGET:
                break
        else:
            too_many = n
        if too_many - fits <= 1:
            break
        scaled = int(n * _Z_BUDGET * (_Z_FULL_ENOUGH + 1) / 2 / len(data))
        n = min(max(scaled, fits + 1), too_many - 1)
    if fits == 0:
        raise ValueError(f"a list item of {len(encodings[start])} bytes does not fit in a page")
    return fits, fit_data


def _compact_order_id(client_id: str, order_id: str) -> str | int:
    """`order_id` as stored: the integer ``n`` when it is ``f"{client_id}-{n}"``."""
    if order_id.startswith(client_id) and order_id[len(client_id) : len(client_id) + 1] == "-":
        suffix = order_id[len(client_id) + 1 :]
        if (
            0 < len(suffix) <= _MAX_ORDER_NUMBER_DIGITS
            and suffix.isascii()
            and suffix.isdigit()
            and (suffix == "0" or suffix[0] != "0")
        ):
            return int(suffix)
    return order_id


_PLAIN = re.compile(r"[ !#-\[\]-~]*")
r"""Strings JSON writes as they are between quotes: printable ASCII but ``"`` and ``\``
(every id obeying the submit_order rule is one)."""


def _order_entry(order: RestingOrder) -> _Entry:
    """A leaf entry's encoding, price group and cut (`_chunk`). O(1).

    The encodings are `canonical_json`'s, written directly when every id is plain
    ASCII and every number an int (the profiler's pick: ~4x faster than json.dumps
    for the build of a whole book); anything else goes through `canonical_json`.
    """
    client_id, order_id, side, price, remaining, seq, ts = order
    if (
        type(remaining) is int
        and type(seq) is int
        and type(ts) is int
        and type(price) is int
        and isinstance(client_id, str)
        and isinstance(order_id, str)
        and _PLAIN.fullmatch(client_id)
        and _PLAIN.fullmatch(order_id)
    ):
        compact = _compact_order_id(client_id, order_id)
        stored = f'"{order_id}"' if isinstance(compact, str) else str(compact)
        enc = f'[{remaining},"{client_id}",{stored},{seq},{ts}]'
        ident = f'["{client_id}","{order_id}",{seq}]'
    else:
        compact = _compact_order_id(client_id, order_id)
        enc = canonical_json([remaining, client_id, compact, seq, ts])
        ident = canonical_json([client_id, order_id, seq])
    group = f'"{_SIDE_CODE[side]}",{price}'
    return _Entry(enc, group, _leaf_cut(hashlib.sha1(ident.encode("ascii")).digest()))


class TreeBuilder:
    """Builds book trees, remembering each order's encoding from the previous build.

    A one-order update then costs one JSON encoding and one sha1 for the order that
    changed, plus O(n) dictionary look-ups and O(n / 20) page hashes. The memo holds
    the orders of the last book built only, so its size is bounded by the book's.
    """

    def __init__(self) -> None:
        self._memo: dict[RestingOrder, _Entry] = {}

    def build_book_tree(self, book: OrderBook) -> PageTree:
        """The page tree of `book` (see `build_book_tree`). O(n)."""
        return self.build_from_orders(book.orders())

    def build_from_orders(self, orders: Iterable[RestingOrder]) -> PageTree:
        """The page tree over `orders`, which must be in canonical order. O(n)."""
        old = self._memo
        memo: dict[RestingOrder, _Entry] = {}
        entries: list[_Entry] = []
        for order in orders:
            entry = old.get(order)
            if entry is None:
                entry = _order_entry(order)
            memo[order] = entry
            entries.append(entry)
        self._memo = memo
        return _build_book(entries)

    def book_hash(self, book: OrderBook) -> str | None:
        """The root key of `book`'s tree, None when the book is empty. O(n)."""
        return self.build_book_tree(book).root


def build_book_tree(book: OrderBook) -> PageTree:
    """The content-addressed page tree of `book`. Pure; O(n) for n resting orders.

    Returns:
        The tree: its root key (None for an empty book), every page by key (each page at
        most `MAX_PAGE_BYTES` ASCII bytes), and its height.
    """
    return TreeBuilder().build_book_tree(book)


def book_hash(book: OrderBook) -> str | None:
    """The root key of `book`'s page tree: a pure function of the book's content.

    Two books with the same resting orders (same ids, sides, prices, remaining amounts,
    priority ``seq``/``ts``, in the same canonical order) have the same hash, whatever
    history built them. None for an empty book. O(n).
    """
    return build_book_tree(book).root


def build_event_pages(events: Sequence[Event], spec: MarketSpec) -> PageTree:
    """The page tree of a version's events, in order, encoded with `event_to_wire`.

    Leaves are packed greedily (a version's events are never shared with another
    version, so content-defined boundaries would only add pages). O(len(events)).

    Raises:
        ValueError: one event's encoding cannot fit in a page (it cannot happen with ids
            of at most 64 characters).
    """
    encodings = [canonical_json(event_to_wire(event, spec)) for event in events]
    return _build_list(encodings, _EVENT_ZLEAF, _EVENT_NODE)


def build_command_pages(entries: Sequence[Entry]) -> PageTree:
    """The page tree of a version's commands, in seq order: ``[seq, ts, command]`` each.

    The matcher's input, exactly (journal entries, their commands' wire forms as
    journaled); a replica applies them to its own book (`exchange.protocol.apply_entry`,
    as the matcher did) and gets the matcher's events and book, since the core is
    deterministic. Packed greedily like the events. O(len(entries)).

    Raises:
        ValueError: one command's encoding cannot fit in a page (the sequencer's
            validator bounds every field, so it cannot happen with its commands).
    """
    encodings = [canonical_json([e.seq, e.ts, e.wire]) for e in entries]
    return _build_list(encodings, _COMMAND_ZLEAF, _COMMAND_NODE)


# --------------------------------------------------------------------------- parsing


class BookLeaf(NamedTuple):
    """A parsed book leaf: its orders, in canonical order."""

    orders: tuple[RestingOrder, ...]


class BookNode(NamedTuple):
    """A parsed book node: its height (>= 1) and its ``(key, order count)`` children."""

    height: int
    children: tuple[tuple[str, int], ...]


class EventLeaf(NamedTuple):
    """A parsed event leaf: its events, in order."""

    events: tuple[Event, ...]


class EventNode(NamedTuple):
    """A parsed event node: its height (>= 1) and its ``(key, event count)`` children."""

    height: int
    children: tuple[tuple[str, int], ...]


class CommandLeaf(NamedTuple):
    """A parsed command leaf: its entries, in seq order, their commands validated."""

    entries: tuple[Entry, ...]


class CommandNode(NamedTuple):
    """A parsed command node: its height (>= 1) and its ``(key, entry count)`` children."""

    height: int
    children: tuple[tuple[str, int], ...]


Page = BookLeaf | BookNode | EventLeaf | EventNode | CommandLeaf | CommandNode


def _is_int(value: object) -> bool:
    return type(value) is int


def _bad(key: str, why: str) -> InvalidVersion:
    return InvalidVersion(f"page {key}: {why}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_group(key: str, item: object) -> list[RestingOrder]:
    if not (isinstance(item, list) and len(item) == 3):
        raise _bad(key, "a price group is a list [side, price, orders]")
    side, price, orders = item
    if side not in _CODE_SIDE:
        raise _bad(key, f"order side must be 's' or 'b', not {side!r}")
    if not (_is_int(price) and price > 0):
        raise _bad(key, "order price must be a positive integer")
    if not (isinstance(orders, list) and orders):
        raise _bad(key, "a price group has a non-empty list of orders")
    return [_parse_order(key, _CODE_SIDE[side], price, order) for order in orders]


def _parse_order(key: str, side: Side, price: int, item: object) -> RestingOrder:
    if not (isinstance(item, list) and len(item) == 5):
        raise _bad(key, "an order is a list of 5 items")
    remaining, client_id, order_id, seq, ts = item
    if not (_is_int(remaining) and remaining > 0):
        raise _bad(key, "order remaining must be a positive integer")
    for name, value in (("seq", seq), ("ts", ts)):
        if not _is_int(value):
            raise _bad(key, f"order {name} must be an integer")
    # Anyone can store a version whose tree is canonical for the orders it lists, so the
    # ids are checked against the submit_order rule: no control characters or other
    # bytes a client would print, and at most 64 characters once expanded.
    if not is_identifier(client_id):
        raise _bad(key, f"order client_id must be {ID_RULE}")
    if _is_int(order_id) and 0 <= order_id < _MAX_ORDER_NUMBER:
        order_id = f"{client_id}-{order_id}"
    elif not isinstance(order_id, str):
        raise _bad(key, "order order_id must be a string or an integer in 0..10**15-1")
    if not is_identifier(order_id):
        raise _bad(key, f"order order_id must be {ID_RULE}")
    return RestingOrder(client_id, order_id, side, price, remaining, seq, ts)


def _parse_children(key: str, obj: dict[str, Any]) -> tuple[int, tuple[tuple[str, int], ...]]:
    height, children = obj.get("h"), obj.get("c")
    if not (type(height) is int and 1 <= height <= MAX_TREE_HEIGHT):
        raise _bad(key, f"node height must be an integer in 1..{MAX_TREE_HEIGHT}")
    if not (isinstance(children, list) and children):
        raise _bad(key, "a node has a non-empty list of children")
    parsed: list[tuple[str, int]] = []
    for child in children:
        if not (isinstance(child, list) and len(child) == 2):
            raise _bad(key, "a child is a [key, count] pair")
        child_key, count = child
        if not is_dht_key(child_key):
            raise _bad(key, "a child key must be 40 lowercase hex characters")
        if not (_is_int(count) and count >= 1):
            raise _bad(key, "a child count must be a positive integer")
        parsed.append((child_key, count))
    return height, tuple(parsed)


def parse_page(key: str, text: str, spec: MarketSpec) -> Page:
    """Check that `text` is the page stored under `key` and parse it.

    Verifies the content against the key (``dht_key(text) == key``), the size bound,
    the JSON shape of its type and the type of every field. It does not check the
    page's place in a tree (heights, counts, order): the reader does. O(len(text)).

    Args:
        key: the DHT key the page was fetched under.
        text: the value the DHT returned.
        spec: the market, to decode events (`event_from_wire`) and validate commands.

    Raises:
        InvalidVersion: the content does not match the key, or is not a valid page.
    """
    if not isinstance(text, str) or dht_key(text) != key:
        raise _bad(key, "content does not match its hash")
    if len(text.encode("utf-8")) > MAX_PAGE_BYTES:
        raise _bad(key, f"larger than {MAX_PAGE_BYTES} bytes")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise _bad(key, f"not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise _bad(key, "not a JSON object")
    kind = obj.get("t")
    if obj.get("v") != PAGE_VERSION or not _is_int(obj.get("v")):
        raise _bad(key, f"page version must be {PAGE_VERSION}")
    expected = (
        {
            _BOOK_LEAF: {"o", "t", "v"},
            _EVENT_LEAF: {"e", "t", "v"},
            _COMMAND_LEAF: {"x", "t", "v"},
            _EVENT_ZLEAF: {"z", "t", "v"},
            _COMMAND_ZLEAF: {"z", "t", "v"},
            _BOOK_NODE: {"c", "h", "t", "v"},
            _EVENT_NODE: {"c", "h", "t", "v"},
            _COMMAND_NODE: {"c", "h", "t", "v"},
        }.get(kind)
        if isinstance(kind, str)
        else None
    )
    if expected is None:
        raise _bad(key, f"unknown page type {kind!r}")
    if set(obj) != expected:
        raise _bad(key, f"a {kind} page has exactly the keys {sorted(expected)}")
    if kind == _BOOK_LEAF:
        items = obj["o"]
        if not (isinstance(items, list) and items):
            raise _bad(key, "a leaf has a non-empty list of price groups")
        return BookLeaf(tuple(order for item in items for order in _parse_group(key, item)))
    if kind in _PLAIN_LEAF:
        kind = _PLAIN_LEAF[kind]
        obj = {_LIST_FIELD[kind]: _inflate(key, obj["z"])}
    if kind == _EVENT_LEAF:
        items = obj["e"]
        if not (isinstance(items, list) and items):
            raise _bad(key, "an event leaf has a non-empty list of events")
        return EventLeaf(tuple(_parse_event(key, item, spec) for item in items))
    if kind == _COMMAND_LEAF:
        items = obj["x"]
        if not (isinstance(items, list) and items):
            raise _bad(key, "a command leaf has a non-empty list of commands")
        return CommandLeaf(tuple(_parse_command_entry(key, item, spec) for item in items))
    height, children = _parse_children(key, obj)
    if kind == _BOOK_NODE:
        return BookNode(height, children)
    if kind == _COMMAND_NODE:
        return CommandNode(height, children)
    return EventNode(height, children)


def _inflate(key: str, text: object) -> object:
    """The JSON value compressed in a list leaf's ``"z"``, at most `MAX_LIST_LEAF_TEXT`."""
    if not isinstance(text, str):
        raise _bad(key, '"z" must be a base64 string')
    try:
        data = base64.b64decode(text, validate=True)
        inflater = zlib.decompressobj()
        plain = inflater.decompress(data, MAX_LIST_LEAF_TEXT)
    except (binascii.Error, zlib.error) as exc:
        raise _bad(key, f'"z" is not base64 of zlib data ({exc})') from None
    if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
        raise _bad(key, f'"z" is not one zlib stream of at most {MAX_LIST_LEAF_TEXT} bytes')
    try:
        return json.loads(plain.decode("utf-8"), parse_constant=_reject_constant)
    except ValueError as exc:
        raise _bad(key, f'"z" does not hold JSON ({exc})') from None


def _parse_command_entry(key: str, item: object, spec: MarketSpec) -> Entry:
    if not (isinstance(item, list) and len(item) == 3):
        raise _bad(key, "a command is a list [seq, ts, command]")
    seq, ts, command = item
    if not (_is_int(seq) and seq >= 1 and _is_int(ts) and ts >= 0):
        raise _bad(key, "a command's seq must be an integer >= 1 and its ts >= 0")
    if not isinstance(command, dict):
        raise _bad(key, "a command is a JSON object")
    try:
        return parse_entry(seq, ts, command, spec)
    except ValidationError as exc:
        raise _bad(key, f"command {seq} breaks a rule ({exc})") from None


def _parse_event(key: str, item: object, spec: MarketSpec) -> Event:
    if not isinstance(item, dict):
        raise _bad(key, "an event is a JSON object")
    try:
        return event_from_wire(item, spec)
    except (ValueError, TypeError, KeyError) as exc:
        raise _bad(key, f"bad event ({exc})") from None
