"""A verified version (`Version`), and the priority check on a book read whole."""

from __future__ import annotations

from dataclasses import dataclass

from exchange.protocol import InvalidVersion
from exchange.versions._root import RootDoc
from exchange.versions._tree import BookTree
from orderbook_core import Event, OrderBook, RestingOrder

__all__ = ["Version", "check_priority"]


@dataclass(frozen=True, slots=True)
class Version:
    """One verified version: its root document, its book, its events and its key.

    `book` is a fresh `OrderBook` that belongs to the caller; `key` is the root hash
    the version was fetched by; `tree` is the book's page tree, verified against the
    root's ``book`` key, also the caller's: a replica that follows later versions by
    applying their events to `book` updates it (`BookTree.update`) to check each new
    root's ``book`` in O(log n), instead of fetching the pages again.
    """

    root: RootDoc
    book: OrderBook
    events: tuple[Event, ...]
    key: str
    tree: BookTree


def check_priority(root_hash: str, root: RootDoc, orders: list[RestingOrder]) -> None:
    """Each order got its priority from a command of this version or an earlier one
    (``1 <= seq <= root.seq``), and at one price the order that trades first came
    first: seqs strictly increase along a level (the book only ever appends a
    command's order at a level's tail). `orders` are in canonical order. O(n)."""
    level: tuple[object, int] | None = None
    last_seq = 0
    for o in orders:
        if not 1 <= o.seq <= root.seq:
            raise InvalidVersion(
                f"version {root_hash}: order {o.client_id}/{o.order_id} has seq {o.seq}, "
                f"outside 1..{root.seq}"
            )
        here = (o.side, o.price)
        if here == level and o.seq <= last_seq:
            raise InvalidVersion(
                f"version {root_hash}: at price {o.price} order {o.client_id}/{o.order_id} "
                f"(seq {o.seq}) is queued after an order of seq {last_seq}"
            )
        level, last_seq = here, o.seq
