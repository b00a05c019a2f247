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
* A level is cut into chunks left to right; a chunk ends after an entry whose
  *boundary hash* has its first byte below ``BOUNDARY_BYTE_BELOW`` (probability 1/8),
  provided the chunk then has at least two entries; and a chunk is also closed before
  an entry that would push its page over ``MAX_PAGE_BYTES`` (a deterministic forced
  split). Each chunk becomes one page.
* Level k+1 is the list of ``[key, count]`` of the pages of level k, chunked the same
  way (the boundary hash of an entry is the child's key itself), until one page is
  left: the tree's root. Every chunk but a level's last has two or more entries, so
  each level is at most half the one below and the build terminates.

Why this shape: boundaries depend only on the entries next to them, never on the
history or the position, so (1) the tree is a pure function of the book's content and
its root key doubles as a state hash, and (2) inserting, removing or changing one
order re-chunks only its own neighbourhood: one or two pages per level change, about
``2 * height + 1`` new pages for a one-order update, and every other page is shared
with the previous version. An order's boundary hash covers ``[client_id, order_id,
seq]`` but not its remaining amount, so a partial fill changes exactly one leaf per
level. The events of a version are not shared between versions, so their pages are
packed greedily (forced splits only), which needs the fewest pages.

Costs: building is O(n) (one JSON encoding and one sha1 per order, memoised across
builds by `TreeBuilder`), plus O(n / 8) page encodings and sha1s. Parsing a page is
O(page size). The formats are specified in docs/protocol.md, "Versions in the DHT".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from exchange._errors import InvalidVersion
from orderbook_core import (
    Event,
    MarketSpec,
    OrderBook,
    RestingOrder,
    Side,
    event_from_wire,
    event_to_wire,
)
from transports._dht import MAX_VALUE_BYTES, dht_key, is_dht_key

__all__ = [
    "BOUNDARY_BYTE_BELOW",
    "MAX_PAGE_BYTES",
    "MAX_TREE_HEIGHT",
    "PAGE_VERSION",
    "BookLeaf",
    "BookNode",
    "EventLeaf",
    "EventNode",
    "Page",
    "PageTree",
    "TreeBuilder",
    "book_hash",
    "build_book_tree",
    "build_event_pages",
    "parse_page",
]

MAX_PAGE_BYTES = MAX_VALUE_BYTES
"""Every page is at most this many bytes (999): what every grape stores."""

BOUNDARY_BYTE_BELOW = 32
"""An entry ends a chunk when the first byte of its boundary hash is below this (1/8)."""

MAX_TREE_HEIGHT = 32
"""Deepest tree a reader accepts; each level is at most half the one below, so 32
levels cover 2**32 orders. Bounds the work a hostile root can ask for."""

PAGE_VERSION = 1
"""The ``"v"`` of every page; a change of page format changes it."""

_SEPARATORS = (",", ":")

# Page types: book leaf/node, event leaf/node.
_BOOK_LEAF = "BL"
_BOOK_NODE = "BN"
_EVENT_LEAF = "EL"
_EVENT_NODE = "EN"

_SIDE_CODE = {Side.SELL: "s", Side.BUY: "b"}
_CODE_SIDE = {"s": Side.SELL, "b": Side.BUY}


def _dumps(obj: object) -> str:
    """Canonical compact JSON: no spaces, sorted keys, ASCII only (so bytes == chars)."""
    return json.dumps(obj, separators=_SEPARATORS, sort_keys=True, ensure_ascii=True)


@dataclass(frozen=True, slots=True)
class PageTree:
    """A built tree: its root key (None when empty), every page by key, its height.

    ``height`` is the number of levels (0 for an empty tree, 1 for a single leaf).
    """

    root: str | None
    pages: dict[str, str] = field(default_factory=dict)
    height: int = 0


# --------------------------------------------------------------------------- building


def _chunk(encodings: Sequence[str], flags: Sequence[bool] | None, overhead: int) -> list[int]:
    """Cut `encodings` into chunks; return the end index of each chunk.

    A page holding entries ``e_i..e_j`` is ``prefix + ",".join(e) + suffix`` with
    ``len(prefix) + len(suffix) == overhead``. Before adding an entry to a non-empty
    chunk, close the chunk if the page would exceed `MAX_PAGE_BYTES`; after adding it,
    close the chunk if the entry's flag is set and the chunk has two or more entries.
    O(n). Encodings are ASCII, so ``len`` is the byte count.
    """
    ends: list[int] = []
    start = 0
    size = overhead
    for i, enc in enumerate(encodings):
        width = len(enc)
        if overhead + width > MAX_PAGE_BYTES:
            raise ValueError(f"entry of {width} bytes cannot fit in a page: {enc[:80]}...")
        if i > start:
            if size + 1 + width > MAX_PAGE_BYTES:
                ends.append(i)
                start = i
                size = overhead + width
            else:
                size += 1 + width
        else:
            size = overhead + width
        if flags is not None and flags[i] and i > start:
            ends.append(i + 1)
            start = i + 1
            size = overhead
    if start < len(encodings):
        ends.append(len(encodings))
    return ends


def _key_is_boundary(key: str) -> bool:
    """An interior entry ends a chunk when its child's key starts with a byte < 32."""
    return int(key[:2], 16) < BOUNDARY_BYTE_BELOW


def _node_page(kind: str, height: int, children: Sequence[str]) -> str:
    return '{"c":[' + ",".join(children) + f'],"h":{height},"t":"{kind}","v":{PAGE_VERSION}}}'


def _build(
    encodings: Sequence[str],
    flags: Sequence[bool] | None,
    leaf_kind: str,
    node_kind: str,
    leaf_key: str,
) -> PageTree:
    """Build the whole tree over one level-0 sequence. O(n)."""
    if not encodings:
        return PageTree(None, {}, 0)
    pages: dict[str, str] = {}
    prefix = f'{{"{leaf_key}":['
    suffix = f'],"t":"{leaf_kind}","v":{PAGE_VERSION}}}'
    # Level 0: leaves. `level` holds (key, count) of the pages just built.
    level: list[tuple[str, int]] = []
    start = 0
    for end in _chunk(encodings, flags, len(prefix) + len(suffix)):
        page = prefix + ",".join(encodings[start:end]) + suffix
        key = dht_key(page)
        pages[key] = page
        level.append((key, end - start))
        start = end
    height = 1
    while len(level) > 1:
        entries = [f'["{key}",{count}]' for key, count in level]
        overhead = len(_node_page(node_kind, height, []))
        child_flags = [_key_is_boundary(key) for key, _ in level]
        parents: list[tuple[str, int]] = []
        start = 0
        for end in _chunk(entries, child_flags, overhead):
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


def _order_entry(order: RestingOrder) -> tuple[str, bool]:
    """A leaf entry's encoding and whether it ends a chunk. O(1)."""
    enc = _dumps(
        [
            _SIDE_CODE[Side(order.side)],
            order.price,
            order.remaining,
            order.client_id,
            order.order_id,
            order.seq,
            order.ts,
        ]
    )
    digest = hashlib.sha1(
        _dumps([order.client_id, order.order_id, order.seq]).encode("ascii")
    ).digest()
    return enc, digest[0] < BOUNDARY_BYTE_BELOW


class TreeBuilder:
    """Builds book trees, remembering each order's encoding from the previous build.

    A one-order update then costs one JSON encoding and one sha1 for the order that
    changed, plus O(n) dictionary look-ups and O(n / 8) page hashes: about 10 ms for a
    10,000-order book instead of ~60 ms. The memo holds the orders of the last book
    built only, so its size is bounded by the book's.
    """

    def __init__(self) -> None:
        self._memo: dict[RestingOrder, tuple[str, bool]] = {}

    def build_book_tree(self, book: OrderBook) -> PageTree:
        """The page tree of `book` (see `build_book_tree`). O(n)."""
        return self.build_from_orders(book.orders())

    def build_from_orders(self, orders: Iterable[RestingOrder]) -> PageTree:
        """The page tree over `orders`, which must be in canonical order. O(n)."""
        old = self._memo
        memo: dict[RestingOrder, tuple[str, bool]] = {}
        encodings: list[str] = []
        flags: list[bool] = []
        for order in orders:
            entry = old.get(order)
            if entry is None:
                entry = _order_entry(order)
            memo[order] = entry
            encodings.append(entry[0])
            flags.append(entry[1])
        self._memo = memo
        return _build(encodings, flags, _BOOK_LEAF, _BOOK_NODE, "o")

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
    encodings = [_dumps(event_to_wire(event, spec)) for event in events]
    return _build(encodings, None, _EVENT_LEAF, _EVENT_NODE, "e")


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


Page = BookLeaf | BookNode | EventLeaf | EventNode


def _is_int(value: object) -> bool:
    return type(value) is int


def _bad(key: str, why: str) -> InvalidVersion:
    return InvalidVersion(f"page {key}: {why}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_order(key: str, item: object) -> RestingOrder:
    if not (isinstance(item, list) and len(item) == 7):
        raise _bad(key, "an order is a list of 7 items")
    side, price, remaining, client_id, order_id, seq, ts = item
    if side not in _CODE_SIDE:
        raise _bad(key, f"order side must be 's' or 'b', not {side!r}")
    for name, value in (("price", price), ("remaining", remaining)):
        if not (_is_int(value) and value > 0):
            raise _bad(key, f"order {name} must be a positive integer")
    for name, value in (("seq", seq), ("ts", ts)):
        if not _is_int(value):
            raise _bad(key, f"order {name} must be an integer")
    for name, value in (("client_id", client_id), ("order_id", order_id)):
        if not (isinstance(value, str) and value):
            raise _bad(key, f"order {name} must be a non-empty string")
    return RestingOrder(client_id, order_id, _CODE_SIDE[side], price, remaining, seq, ts)


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
        spec: the market, to decode events with `event_from_wire`.

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
            _BOOK_NODE: {"c", "h", "t", "v"},
            _EVENT_NODE: {"c", "h", "t", "v"},
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
            raise _bad(key, "a leaf has a non-empty list of orders")
        return BookLeaf(tuple(_parse_order(key, item) for item in items))
    if kind == _EVENT_LEAF:
        items = obj["e"]
        if not (isinstance(items, list) and items):
            raise _bad(key, "an event leaf has a non-empty list of events")
        return EventLeaf(tuple(_parse_event(key, item, spec) for item in items))
    height, children = _parse_children(key, obj)
    if kind == _BOOK_NODE:
        return BookNode(height, children)
    return EventNode(height, children)


def _parse_event(key: str, item: object, spec: MarketSpec) -> Event:
    if not isinstance(item, dict):
        raise _bad(key, "an event is a JSON object")
    try:
        return event_from_wire(item, spec)
    except (ValueError, TypeError, KeyError) as exc:
        raise _bad(key, f"bad event ({exc})") from None
