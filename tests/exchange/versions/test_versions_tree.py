"""exchange.versions.BookTree: the incremental page tree, against full builds.

Every test compares the incremental tree with `build_book_tree` (the reference, O(n)
build) byte for byte; `BookTree._check` also verifies its internal indexes. The
Hypothesis properties over random histories are in test_versions_props.py.
"""

from __future__ import annotations

import itertools
import random

import pytest
from versions_books import MID, realistic_book

from exchange.versions import (
    BookTree,
    book_hash,
    build_book_tree,
    touched_orders,
)
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


def random_command(book: OrderBook, seq: int, rng: random.Random) -> Command:
    """Any command: resting, crossing (fills), IOC, market, cancels, modifies."""
    roll = rng.random()
    orders = list(book.orders()) if roll >= 0.45 else []
    if not orders:
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        offset = rng.randrange(-20, 400)  # below 0: crosses the spread
        price = MID - offset if side is Side.BUY else MID + offset
        client = f"client{rng.randrange(30)}"
        tif = rng.choice([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK])
        market = rng.random() < 0.05
        return NewOrder(
            seq, seq, client, f"{client}-{seq}", side, None if market else price,
            rng.randrange(1, 6000), TimeInForce.IOC if market else tif,
        )  # fmt: skip
    victim = orders[rng.randrange(len(orders))]
    if roll < 0.75:
        return CancelOrder(seq, seq, victim.client_id, victim.order_id)
    new_price: int | None = rng.choice([None, victim.price, victim.price + rng.randrange(-5, 6)])
    amount: int | None = rng.choice([None, max(1, victim.remaining - 1), rng.randrange(1, 6000)])
    if new_price is None and amount is None:
        amount = victim.remaining + 1
    return ModifyOrder(seq, seq, victim.client_id, victim.order_id, new_price, amount)


class Undone(Exception):
    """Rolls a book transaction back."""


def check(tree: BookTree, book: OrderBook) -> None:
    """The tree is the full build of `book`, page for page."""
    assert tree.snapshot() == build_book_tree(book)
    assert list(tree.orders()) == list(book.orders())
    tree._check()


def test_an_empty_tree_is_the_empty_book() -> None:
    tree = BookTree()
    assert (tree.root, tree.height, len(tree), tree.page_count) == (None, 0, 0, 0)
    assert tree.pages() == {}
    assert tree.snapshot() == build_book_tree(OrderBook(SPEC))
    assert BookTree.from_book(OrderBook(SPEC)).root is None
    tree._check()


@pytest.mark.parametrize("n", [1, 2, 40, 700, 3000])
def test_from_book_is_the_full_build(n: int) -> None:
    book = realistic_book(n, seed=n)
    tree = BookTree.from_book(book)
    check(tree, book)
    assert tree.root == book_hash(book)
    assert len(tree) == n
    assert tree.page_count == len(tree.pages())
    some = next(iter(tree.pages()))
    assert some in tree
    assert tree.page(some) == tree.pages()[some]
    assert tree.page("0" * 40) is None
    assert "0" * 40 not in tree
    first = next(book.orders())
    assert tree.get_order(first.client_id, first.order_id) == first
    assert tree.get_order(first.client_id, "nope") is None


@pytest.mark.parametrize("n", [0, 30, 2000])
def test_updates_follow_the_book_one_command_at_a_time(n: int) -> None:
    book = realistic_book(n, seed=1)
    tree = BookTree.from_book(book)
    rng = random.Random(n)
    before = tree.pages()
    for seq in range(n + 1, n + (301 if n < 1000 else 101)):
        delta = tree.update(book, book.apply(random_command(book, seq, rng)))
        after = build_book_tree(book)
        assert delta.root == tree.root == after.root
        assert delta.height == tree.height == after.height
        # Exactly the pages the new version has and the old one had not, and back.
        assert delta.added == {k: v for k, v in after.pages.items() if k not in before}
        assert delta.removed == before.keys() - after.pages.keys()
        before = after.pages
    check(tree, book)


def test_one_update_for_a_batch_of_commands() -> None:
    book = realistic_book(3000, seed=2)
    tree = BookTree.from_book(book)
    rng = random.Random(2)
    seq = 3000
    for size in (1, 5, 50, 400):
        events: list[Event] = []
        for _ in range(size):
            seq += 1
            events.extend(book.apply(random_command(book, seq, rng)))
        tree.update(book, events)
        check(tree, book)


def test_the_book_shrinks_to_empty_and_grows_back() -> None:
    book = realistic_book(2500, seed=3)
    tree = BookTree.from_book(book)
    full = tree.snapshot()
    events: list[Event] = []
    for seq, order in enumerate(list(book.orders()), start=10_000):
        events.extend(book.apply(CancelOrder(seq, seq, order.client_id, order.order_id)))
    delta = tree.update(book, events)
    assert (delta.root, tree.height, len(tree), tree.pages()) == (None, 0, 0, {})
    assert delta.removed == full.pages.keys()
    assert delta.added == {}
    check(tree, book)
    tree.undo(delta)
    assert tree.snapshot() == full
    tree._check()
    # Grow back from empty, one order at a time, through every height.
    empty = BookTree()
    fresh = OrderBook(SPEC)
    source = realistic_book(2500, seed=4)
    for order in source.orders():
        cmd = NewOrder(order.seq, order.ts, order.client_id, order.order_id, order.side,
                       order.price, order.remaining)  # fmt: skip
        empty.update(fresh, fresh.apply(cmd))
    check(empty, fresh)
    assert empty.height >= 3


def test_undo_restores_the_exact_tree_last_update_first() -> None:
    book = realistic_book(1500, seed=5)
    tree = BookTree.from_book(book)
    rng = random.Random(5)
    snapshots = [tree.snapshot()]
    orders = [list(book.orders())]
    deltas = []
    for seq in range(1501, 1541):
        deltas.append(tree.update(book, book.apply(random_command(book, seq, rng))))
        snapshots.append(tree.snapshot())
        orders.append(list(book.orders()))
    with pytest.raises(ValueError, match="last update"):
        tree.undo(deltas[0])
    while deltas:
        tree.undo(deltas.pop())
        snapshots.pop()
        orders.pop()
        assert tree.snapshot() == snapshots[-1]
        assert list(tree.orders()) == orders[-1]
    tree._check()
    # An undone update cannot be undone again, nor one from before it.
    delta = tree.update(OrderBook.from_orders(SPEC, orders[0]), ())
    tree.undo(delta)
    with pytest.raises(ValueError, match="last update"):
        tree.undo(delta)


def test_undo_then_the_same_update_again() -> None:
    # The publisher's retry: update, undo (the put failed), update with the same events.
    book = realistic_book(1000, seed=6)
    tree = BookTree.from_book(book)
    rng = random.Random(6)

    def attempt(cmd: Command) -> None:
        with book.transaction():
            tree.undo(tree.update(book, book.apply(cmd)))
            raise Undone

    for seq in range(1001, 1061):
        cmd = random_command(book, seq, rng)
        held = book_hash(book)
        with pytest.raises(Undone):
            attempt(cmd)
        assert tree.root == held == book_hash(book)
        if seq % 25 == 0:
            tree._check()
        assert tree.update(book, book.apply(cmd)).root == book_hash(book)
    check(tree, book)


def test_missing_events_raise_and_leave_the_tree_as_it_was() -> None:
    book = realistic_book(500, seed=7)
    tree = BookTree.from_book(book)
    held = tree.snapshot()
    book.apply(NewOrder(501, 501, "x", "x-1", Side.BUY, MID - 3, 5))
    with pytest.raises(ValueError, match="do not cover"):
        tree.update(book, ())
    assert tree.snapshot() == held
    tree._check()


def test_changes_given_directly() -> None:
    book = realistic_book(800, seed=8)
    tree = BookTree.from_book(book)
    first = next(book.orders())
    smaller = first._replace(remaining=1)
    book.apply(ModifyOrder(801, 801, first.client_id, first.order_id, None, 1))
    delta = tree.apply_changes({(first.client_id, first.order_id): smaller})
    assert delta.root == book_hash(book)
    with pytest.raises(ValueError, match="given for id"):
        tree.apply_changes({("someone", "else"): smaller})
    check(tree, book)


def test_an_order_too_big_for_a_page_changes_nothing() -> None:
    book = realistic_book(200, seed=9)
    tree = BookTree.from_book(book)
    held = tree.snapshot()
    huge = RestingOrder("c" * 500, "o" * 500, Side.BUY, MID - 1, 1, 999, 999)
    with pytest.raises(ValueError, match="cannot fit"):
        tree.apply_changes({(huge.client_id, huge.order_id): huge})
    assert tree.snapshot() == held
    tree._check()


def test_from_orders_refuses_what_is_not_a_canonical_book() -> None:
    ask = RestingOrder("a", "a-1", Side.SELL, MID + 1, 5, 1, 1)
    bid = RestingOrder("b", "b-1", Side.BUY, MID - 1, 5, 2, 2)
    assert (
        BookTree.from_orders([ask, bid]).root
        == build_book_tree(OrderBook.from_orders(SPEC, [ask, bid])).root
    )
    with pytest.raises(ValueError, match="canonical order"):
        BookTree.from_orders([bid, ask])
    with pytest.raises(ValueError, match="twice"):
        BookTree.from_orders([ask, ask._replace(price=MID + 2)])
    with pytest.raises(TypeError, match="Side"):
        BookTree.from_orders([ask._replace(side="sell")])  # type: ignore[arg-type]


def test_queue_order_comes_from_the_book_not_from_seq() -> None:
    # A restored book may hold a level whose seqs do not increase (a snapshot made by
    # hand): the tree keeps the book's queue order, and new orders go to the tail.
    orders = [
        RestingOrder("a", "a-1", Side.SELL, MID + 1, 5, 9, 1),
        RestingOrder("b", "b-1", Side.SELL, MID + 1, 5, 3, 2),
    ]
    book = OrderBook.from_orders(SPEC, orders)
    tree = BookTree.from_book(book)
    tree.update(book, book.apply(NewOrder(5, 5, "c", "c-1", Side.SELL, MID + 1, 5)))
    tree.update(book, book.apply(ModifyOrder(6, 6, "a", "a-1", None, 4)))  # keeps priority
    check(tree, book)
    tree.update(book, book.apply(ModifyOrder(7, 7, "b", "b-1", None, 9)))  # goes to the tail
    check(tree, book)


def test_an_id_reused_within_one_batch() -> None:
    book = OrderBook(SPEC)
    tree = BookTree.from_book(book)
    events: list[Event] = []
    events += book.apply(NewOrder(1, 1, "m", "m-1", Side.SELL, MID + 1, 5))
    events += book.apply(NewOrder(2, 2, "t", "t-1", Side.BUY, MID + 1, 5))  # fills m-1
    events += book.apply(NewOrder(3, 3, "m", "m-1", Side.BUY, MID - 7, 2))  # the id again
    events += book.apply(NewOrder(4, 4, "m", "m-2", Side.BUY, MID - 7, 2))
    tree.update(book, events)
    check(tree, book)


def test_touched_orders_name_every_order_that_changed() -> None:
    book = realistic_book(400, seed=10)
    rng = random.Random(10)
    for seq in range(401, 1401):
        before = {(o.client_id, o.order_id): o for o in book.orders()}
        events = book.apply(random_command(book, seq, rng))
        after = {(o.client_id, o.order_id): o for o in book.orders()}
        changed = {oid for oid in before.keys() | after.keys() if before.get(oid) != after.get(oid)}
        assert changed <= touched_orders(events)


def test_reuse_gives_the_same_tree() -> None:
    book = realistic_book(1200, seed=11)
    old = BookTree.from_book(book)
    rng = random.Random(11)
    for seq in range(1201, 1221):
        book.apply(random_command(book, seq, rng))
    held = old.snapshot()
    tree = BookTree.from_book(book, reuse=old)
    check(tree, book)
    assert old.snapshot() == held  # not modified


def test_a_tree_built_from_a_copy_follows_the_original() -> None:
    # Publisher and replica: two trees, two books, the same commands: the same roots.
    book = realistic_book(2000, seed=12)
    replica = OrderBook.from_orders(SPEC, book.orders())
    mine, theirs = BookTree.from_book(book), BookTree.from_book(replica)
    rng = random.Random(12)
    for seq in range(2001, 2201):
        cmd = random_command(book, seq, rng)
        assert (
            mine.update(book, book.apply(cmd)).root
            == theirs.update(replica, replica.apply(cmd)).root
        )
    assert mine.pages() == theirs.pages()


@pytest.mark.parametrize("change", ["cancel", "shrink", "grow"])
def test_the_first_order_of_every_leaf_changes(change: str) -> None:
    # A page's end may depend on the first order of the next page (a forced split:
    # it did not fit), so changing that order may move the end of the page before.
    book = realistic_book(700, seed=13)
    tree = BookTree.from_book(book)
    firsts = [page.entries[0].order for page in tree._levels[0].pages]
    assert len(firsts) > 30

    def attempt(cmd: Command) -> None:
        with book.transaction():
            delta = tree.update(book, book.apply(cmd))
            assert delta.root == book_hash(book)
            tree.undo(delta)
            raise Undone

    for seq, order in enumerate(firsts[1:], start=10_000):
        ids = (order.client_id, order.order_id)
        if change == "cancel":
            cmd: Command = CancelOrder(seq, seq, *ids)
        elif change == "shrink":  # fewer digits, same place
            cmd = ModifyOrder(seq, seq, *ids, None, max(1, order.remaining // 100))
        else:  # more digits, to the tail of its level
            cmd = ModifyOrder(seq, seq, *ids, None, order.remaining * 100 % SPEC.max_lots + 1)
        with pytest.raises(Undone):
            attempt(cmd)
    check(tree, book)


def test_a_batch_that_changes_neighbouring_leaves() -> None:
    # In one batch: an order of leaf j is re-encoded at the same width (in place), and
    # the first order of leaf j + 1 goes, so that leaf j (which ended where that order
    # did not fit) now takes the next one. Found by search among small random books.
    found = 0
    for seed in range(400):
        rng = random.Random(seed)
        book = OrderBook(SPEC)
        for i in range(1, 80):
            client = "c" * rng.randrange(1, 40)
            side = Side.SELL if i % 2 else Side.BUY
            price = MID + rng.randrange(1, 30) if side is Side.SELL else MID - rng.randrange(1, 30)
            book.apply(NewOrder(i, i, client, f"{client}-{i}", side, price, rng.randrange(11, 99)))
        tree = BookTree.from_book(book)
        leaves = tree._levels[0].pages
        for j, (here, after) in enumerate(itertools.pairwise(leaves)):
            if here.closed or len(after.entries) < 2:
                continue
            second = after.entries[1]
            fits = 999 - len(here.text) >= (
                second.joins if second.group == here.entries[-1].group else second.opens + 1
            )
            if not fits:
                continue
            found += 1
            same, gone = here.entries[0].order, after.entries[0].order
            cmds: list[Command] = [
                ModifyOrder(900, 900, same.client_id, same.order_id, None, same.remaining - 1),
                CancelOrder(901, 901, gone.client_id, gone.order_id),
            ]
            events = [event for cmd in cmds for event in book.apply(cmd)]
            assert tree.update(book, events).root == book_hash(book), (seed, j)
            check(tree, book)
            break
        if found >= 5:
            break
    assert found >= 5
