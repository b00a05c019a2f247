"""The book's page tree built from scratch: each order's leaf entry, the leaves, the tree.

An order's leaf entry (`leaf_entry`: its encoding, its price group and its cut) is
what both builds use: `build_from_entries` here chunks a whole book, O(n) (one JSON
encoding and one sha1 per order, memoised across builds by `TreeBuilder`, plus
O(n / 20) page encodings and sha1s), and ``_tree.BookTree`` keeps the same tree up
to date in O(log n) per changed order. The format and the chunking rule are in
``_format``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from itertools import groupby
from typing import NamedTuple

from exchange.versions._format import (
    BOOK_LEAF,
    BOOK_NODE,
    MAX_ORDER_NUMBER_DIGITS,
    SIDE_CODE,
    PageTree,
    build_levels,
    chunk,
    leaf_cut,
    leaf_page,
)
from orderbook_core import OrderBook, RestingOrder, canonical_json
from transports import dht_key

__all__ = [
    "LeafEntry",
    "TreeBuilder",
    "book_hash",
    "build_book_tree",
    "build_from_entries",
    "leaf_entry",
]


class LeafEntry(NamedTuple):
    """A book leaf entry: the order's encoding, its price group, its cut (`chunk`)."""

    enc: str
    group: str  # '"s",1000123' : side and price, as in the group's head
    cut: int


def _group_items(entries: Sequence[LeafEntry]) -> list[str]:
    """The encoded price groups ``[side,price,[order,...]]`` of consecutive entries."""
    return [
        f"[{group},[{','.join([entry.enc for entry in run])}]]"
        for group, run in groupby(entries, key=_group_of)
    ]


def _group_of(entry: LeafEntry) -> str:
    return entry.group


def build_from_entries(entries: Sequence[LeafEntry]) -> PageTree:
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
    overhead = len(leaf_page(BOOK_LEAF, "o", []))
    for end in chunk(firsts, nexts, [e.cut for e in entries], overhead):
        page = leaf_page(BOOK_LEAF, "o", _group_items(entries[start:end]))
        key = dht_key(page)
        pages[key] = page
        level.append((key, end - start))
        start = end
    return build_levels(pages, level, BOOK_NODE)


def _compact_order_id(client_id: str, order_id: str) -> str | int:
    """`order_id` as stored: the integer ``n`` when it is ``f"{client_id}-{n}"``."""
    if order_id.startswith(client_id) and order_id[len(client_id) : len(client_id) + 1] == "-":
        suffix = order_id[len(client_id) + 1 :]
        if (
            0 < len(suffix) <= MAX_ORDER_NUMBER_DIGITS
            and suffix.isascii()
            and suffix.isdigit()
            and (suffix == "0" or suffix[0] != "0")
        ):
            return int(suffix)
    return order_id


_PLAIN = re.compile(r"[ !#-\[\]-~]*")
r"""Strings JSON writes as they are between quotes: printable ASCII but ``"`` and ``\``
(every id obeying the submit_order rule is one)."""


def leaf_entry(order: RestingOrder) -> LeafEntry:
    """A leaf entry's encoding, price group and cut (`chunk`). O(1).

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
    group = f'"{SIDE_CODE[side]}",{price}'
    return LeafEntry(enc, group, leaf_cut(hashlib.sha1(ident.encode("ascii")).digest()))


class TreeBuilder:
    """Builds book trees, remembering each order's encoding from the previous build.

    A one-order update then costs one JSON encoding and one sha1 for the order that
    changed, plus O(n) dictionary look-ups and O(n / 20) page hashes. The memo holds
    the orders of the last book built only, so its size is bounded by the book's.
    """

    def __init__(self) -> None:
        self._memo: dict[RestingOrder, LeafEntry] = {}

    def build_book_tree(self, book: OrderBook) -> PageTree:
        """The page tree of `book` (see `build_book_tree`). O(n)."""
        return self.build_from_orders(book.orders())

    def build_from_orders(self, orders: Iterable[RestingOrder]) -> PageTree:
        """The page tree over `orders`, which must be in canonical order. O(n)."""
        old = self._memo
        memo: dict[RestingOrder, LeafEntry] = {}
        entries: list[LeafEntry] = []
        for order in orders:
            entry = old.get(order)
            if entry is None:
                entry = leaf_entry(order)
            memo[order] = entry
            entries.append(entry)
        self._memo = memo
        return build_from_entries(entries)

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
