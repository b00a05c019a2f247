"""exchange.versions.BookTree, properties (Hypothesis): incremental = full rebuild.

For random books of several sizes (empty, one order, a few levels, thousands of orders,
orders with 64-character ids and extreme numbers) and random histories of commands
(orders that rest, cross and fill, partial fills, IOC and market orders, cancels,
modifies that keep or lose priority or move the price, batches of several commands,
a book emptied at once), the tree updated from each batch's events has exactly the
pages and the root a full build of the book has, after every batch; and an update
undone (a failed publish) then redone leaves the same tree as an update done once.
"""

from __future__ import annotations

import contextlib
import os
import random
import string

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from exchange.versions import BookTree, book_hash, build_book_tree, touched_orders
from orderbook_core import (
    DEFAULT_SPEC,
    CancelOrder,
    Command,
    Event,
    ModifyOrder,
    NewOrder,
    OrderBook,
    RestingOrder,
    Side,
    TimeInForce,
)

SPEC = DEFAULT_SPEC
MID = 1_000_000
# Derandomized in CI; at random, ten times as many, in the long run (CHAOS_PROFILE=long,
# `make chaos`); NEX=<n> sets the number by hand.
LONG_RUN = os.environ.get("CHAOS_PROFILE") == "long"
PROPS = settings(
    max_examples=int(os.environ.get("NEX", "400" if LONG_RUN else "40")),
    derandomize=not LONG_RUN,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

KINDS = (
    "rest",
    "rest",
    "rest",
    "cross",
    "fill",
    "market",
    "cancel",
    "cancel",
    "shrink",
    "grow",
    "move",
    "ioc",
    "edge",
    "edge",
    "edge",
    "edge",
)
# (kind index, side, distance from MID in ticks, lots, which resting order); kind
# index len(KINDS) empties the book in one batch (rare: one value in 13 * 4).
changes = st.tuples(
    st.integers(0, 4 * len(KINDS)),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(1, 60),
    st.integers(1, 4000),
    st.integers(0, 10**6),
)
Change = tuple[int, Side, int, int, int]
batches = st.lists(
    st.tuples(st.lists(changes, min_size=1, max_size=4), st.booleans()), min_size=8, max_size=30
)


def seeded_book(n: int, seed: int) -> OrderBook:
    """`n` orders from 20 clients over 120 price levels (many orders share a level and
    a leaf) or, for odd seeds, 1,000 levels (most orders open a price group)."""
    rng = random.Random(seed)
    book = OrderBook(SPEC)
    spread = 500 if seed % 2 else 60
    for i in range(n):
        side = Side.SELL if rng.random() < 0.5 else Side.BUY
        offset = rng.randrange(1, spread)
        price = MID + offset if side is Side.SELL else MID - offset
        client = f"client{rng.randrange(20)}"
        order_id = f"{client}-{i}" if i % 3 else f"free.{i}"
        book.apply(NewOrder(i + 1, 1_764_000_000_000 + i, client, order_id, side, price,
                            rng.randrange(1, 5000)))  # fmt: skip
    return book


def commands(book: OrderBook, tree: BookTree, seq: int, change: Change) -> list[Command]:
    """The commands of one change (several only to empty the book).

    An "edge" change cancels or resizes the first order of a leaf of `tree`: the page
    before may end where that order did not fit, so it is where re-chunking must start
    one page early.
    """
    kind_index, side, offset, lots, pick = change
    resting = list(book.orders())
    if kind_index == len(KINDS):
        return [
            CancelOrder(seq + i, seq + i, o.client_id, o.order_id) for i, o in enumerate(resting)
        ]
    kind = KINDS[kind_index % len(KINDS)]
    client = f"client{pick % 20}"
    if kind == "edge" and tree.height:
        leaves = tree._levels[0].pages
        first = leaves[pick % len(leaves)].entries[0].order
        if first == book.get_order(first.client_id, first.order_id):
            ids = (first.client_id, first.order_id)
            if lots % 3 == 0:
                return [CancelOrder(seq, seq, *ids)]
            return [ModifyOrder(seq, seq, *ids, None, max(1, first.remaining // (lots % 1000 + 1)))]
    if kind in ("cancel", "shrink", "grow", "move") and resting:
        target = resting[pick % len(resting)]
        ids = (target.client_id, target.order_id)
        if kind == "cancel":
            return [CancelOrder(seq, seq, *ids)]
        if kind == "shrink":  # keeps time priority (or cancels a 1-lot order)
            if target.remaining == 1:
                return [CancelOrder(seq, seq, *ids)]
            return [ModifyOrder(seq, seq, *ids, None, max(1, target.remaining - lots))]
        if kind == "grow":  # loses time priority: to the level's tail
            return [ModifyOrder(seq, seq, *ids, None, target.remaining + lots)]
        step = offset if target.side is Side.BUY else -offset  # toward the other side
        return [ModifyOrder(seq, seq, *ids, target.price + step // 4 - 7, None)]
    if kind == "fill":  # a small taker at the best opposite price: a partial fill
        best = book.best_ask() if side is Side.BUY else book.best_bid()
        if best is not None:
            return [NewOrder(seq, seq, "taker", f"t{seq}", side, best, 1 + lots % 3,
                             TimeInForce.IOC)]  # fmt: skip
    if kind == "market":
        return [NewOrder(seq, seq, client, f"m{seq}", side, None, lots, TimeInForce.IOC)]
    cross = kind in ("cross", "ioc")
    distance = -(offset % 8) if cross else offset
    price = MID - distance if side is Side.BUY else MID + distance
    tif = TimeInForce.IOC if kind == "ioc" else TimeInForce.GTC
    return [NewOrder(seq, seq, client, f"{client}-{seq}", side, price, lots, tif)]


class Rollback(Exception):
    """Rolls a book transaction back."""


def run_history(book: OrderBook, plan: list[tuple[list[Change], bool]]) -> None:
    """Follow `plan` with a tree, checking it against a full build after every batch."""
    tree = BookTree.from_book(book)
    assert tree.snapshot() == build_book_tree(book)
    seq = max((o.seq for o in book.orders()), default=0) + 10
    for batch, fail_first in plan:
        cmds: list[Command] = []
        for change in batch:
            cmds.extend(commands(book, tree, seq + len(cmds), change))
        if fail_first:
            # A publish that fails: the worker rolls the book back, the tree is undone.
            held, orders = tree.snapshot(), list(book.orders())
            with contextlib.suppress(Rollback), book.transaction():
                tree.undo(tree.update(book, [e for cmd in cmds for e in book.apply(cmd)]))
                raise Rollback
            assert tree.snapshot() == held
            assert list(book.orders()) == orders
        events: list[Event] = []
        for cmd in cmds:
            events.extend(book.apply(cmd))
        seq += len(cmds) + 1
        delta = tree.update(book, events)
        full = build_book_tree(book)
        assert delta.root == full.root
        assert tree.pages() == full.pages
    tree._check()


@PROPS
@given(st.sampled_from([0, 1, 2, 12, 150, 1500]), st.integers(0, 2**32), batches)
def test_incremental_tree_is_the_full_build(
    n: int, seed: int, plan: list[tuple[list[Change], bool]]
) -> None:
    event(f"{n} orders")
    event(f"{len(plan) // 10 * 10}+ batches")
    run_history(seeded_book(n, seed), plan)


ID_ALPHABET = string.ascii_letters + string.digits + "_.-"
long_ids = st.text(ID_ALPHABET, min_size=60, max_size=64)


@st.composite
def extreme_books(draw: st.DrawFn) -> OrderBook:
    """Up to 60 orders with 60-64 character ids, huge amounts, seqs and timestamps,
    and queues whose seqs do not increase (a restored snapshot may have any)."""
    n = draw(st.integers(0, 60))
    split = draw(st.integers(SPEC.min_ticks + 100, SPEC.max_ticks - 100))
    orders: list[RestingOrder] = []
    seen: set[tuple[str, str]] = set()
    for _ in range(n):
        client, order_id = draw(long_ids), draw(long_ids)
        if (client, order_id) in seen:
            continue
        seen.add((client, order_id))
        side = draw(st.sampled_from([Side.BUY, Side.SELL]))
        low, high = (split, split + 50) if side is Side.SELL else (split - 50, split - 1)
        price = draw(st.integers(low, high))
        remaining = draw(st.integers(1, SPEC.max_lots))
        seq, ts = draw(st.integers(0, 2**53)), draw(st.integers(0, 2**53))
        orders.append(RestingOrder(client, order_id, side, price, remaining, seq, ts))
    orders.sort(key=lambda o: (o.side is Side.BUY, -o.price if o.side is Side.BUY else o.price))
    return OrderBook.from_orders(SPEC, orders)


# (cancel?, which order, new order's side, distance from the spread, lots, ids)
extreme_changes = st.lists(
    st.tuples(st.booleans(), st.integers(0, 10**6), st.sampled_from([Side.BUY, Side.SELL]),
              st.integers(-3, 60), st.integers(1, SPEC.max_lots), long_ids, long_ids),
    max_size=30,
)  # fmt: skip


@PROPS
@given(extreme_books(), extreme_changes)
def test_incremental_tree_of_extreme_orders(
    book: OrderBook, plan: list[tuple[bool, int, Side, int, int, str, str]]
) -> None:
    tree = BookTree.from_book(book)
    for seq, (cancel, pick, side, distance, lots, client, order_id) in enumerate(plan, 2**53 + 1):
        resting = list(book.orders())
        if cancel and resting:
            target = resting[pick % len(resting)]
            cmd: Command = CancelOrder(seq, seq, target.client_id, target.order_id)
        else:
            ask, bid = book.best_ask(), book.best_bid()
            base = (ask if side is Side.SELL else bid) or MID
            price = base + distance if side is Side.SELL else base - distance
            cmd = NewOrder(seq, seq, client, order_id, side, price, lots)
        events = book.apply(cmd)
        assert touched_orders(events) >= {
            (o.client_id, o.order_id) for o in set(resting) ^ set(book.orders())
        }
        assert tree.update(book, events).root == book_hash(book)
    assert tree.snapshot() == build_book_tree(book)
    tree._check()
