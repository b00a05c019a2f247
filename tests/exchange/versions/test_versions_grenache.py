"""exchange.versions on real grapes (the challenge's command: 1000 values each, LRU).

Measures what the memory DHT cannot: the time to publish and read a big book through
Grape's HTTP API with 16 puts/gets in flight, that the current version stays readable
from the *other* grape through many updates, and that a 10,000-order book fits: a
client that starts after it is published reads it from the other grape, and a
one-order update then puts a bounded number of items.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest
from support.grapes import Grape, running_grapes
from versions_books import MID, realistic_book

from exchange.versions import DEFAULT_REFRESH_BUDGET, VersionPublisher, VersionReader, book_hash
from exchange.versions._format import UPDATE_PAGES_BOUND
from orderbook_core import DEFAULT_SPEC, CancelOrder, Command, NewOrder, OrderBook, Side
from transports.grenache import GrenacheTransport

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SPEC = DEFAULT_SPEC


@pytest.fixture(scope="module")
def private_grapes() -> Iterator[list[Grape]]:
    with running_grapes(2) as grapes:
        yield grapes


def book_of(n: int, seed: int) -> OrderBook:
    rng = random.Random(seed)
    book = OrderBook(SPEC)
    for i in range(n):
        side = Side.SELL if i % 2 else Side.BUY
        offset = rng.randrange(1, 500)
        price = MID + offset if side is Side.SELL else MID - offset
        book.apply(NewOrder(i + 1, i, f"client{i % 97}", f"o{i}", side, price, 1 + i % 9))
    return book


def one_order(book: OrderBook, seq: int, rng: random.Random) -> Command:
    if rng.random() < 0.5:
        return NewOrder(seq, seq, "late", f"l{seq}", Side.BUY, MID - rng.randrange(1, 500), 1)
    orders = list(book.orders())
    victim = orders[rng.randrange(len(orders))]
    return CancelOrder(seq, seq, victim.client_id, victim.order_id)


async def test_publish_and_read_through_real_grapes(private_grapes: list[Grape]) -> None:
    first, second = private_grapes
    book = book_of(3_000, seed=1)
    async with GrenacheTransport(first.url) as worker, GrenacheTransport(second.url) as client:
        publisher = VersionPublisher(worker, SPEC)
        started = time.perf_counter()
        key = await publisher.publish(book, (), seq=3_000, first=3_001)
        publish_s = time.perf_counter() - started
        items = publisher.last_put_count

        reader = VersionReader(client, SPEC)
        started = time.perf_counter()
        version = await reader.fetch(key)
        fetch_s = time.perf_counter() - started
        assert version.book == book
        assert version.root.book == book_hash(book)

        rng = random.Random(2)
        update_s = 0.0
        for seq in range(3_001, 3_201):
            events = book.apply(one_order(book, seq, rng))
            started = time.perf_counter()
            key = await publisher.publish(book, events, seq=seq, first=seq)
            update_s += time.perf_counter() - started
        # A new client, long after: the current version is still all there.
        late = await VersionReader(client, SPEC).fetch(key)
        assert late.book == book
    print(
        f"\nreal grapes, 3,000 orders: first publish {items} items in {publish_s:.2f} s, "
        f"cold fetch from the other grape {fetch_s:.2f} s; 200 one-order updates "
        f"{update_s / 200 * 1000:.1f} ms each on average; a late client reads the last one"
    )


async def test_ten_thousand_orders_fit_and_read_back_from_the_other_grape(
    private_grapes: list[Grape],
) -> None:
    # The challenge's grapes keep 1000 values each (LRU) and every put lands on both:
    # the book must fit in well under 1000 items for a late client to read it.
    first, second = private_grapes
    book = realistic_book(10_000, seed=3)
    async with GrenacheTransport(first.url) as worker, GrenacheTransport(second.url) as client:
        publisher = VersionPublisher(worker, SPEC)
        started = time.perf_counter()
        key = await publisher.publish(book, (), seq=10_000, first=10_001)
        publish_s = time.perf_counter() - started
        items = publisher.last_put_count
        assert items <= 701  # pages and the root

        reader = VersionReader(client, SPEC)  # a client that starts afterwards
        started = time.perf_counter()
        version = await reader.fetch(key)
        fetch_s = time.perf_counter() - started
        assert version.root.book == book_hash(book) == book_hash(version.book)
        assert version.book == book
        assert reader.last_get_count == items

        seq = 10_001
        client_id = "client100"
        events = book.apply(NewOrder(seq, seq, client_id, f"{client_id}-1", Side.BUY, MID - 7, 3))
        key = await publisher.publish(book, events, seq=seq, first=seq)
        new = publisher.last_put_count - publisher.last_refresh_count
        assert new <= UPDATE_PAGES_BOUND + 2  # changed book pages, one event page, the root
        assert publisher.last_refresh_count <= DEFAULT_REFRESH_BUDGET
        version = await reader.fetch(key)
        assert reader.last_get_count <= UPDATE_PAGES_BOUND + 2
        assert version.book == book
        assert version.events == events
        late = await VersionReader(client, SPEC).fetch(key)
        assert late.book == book
    print(
        f"\nreal grapes, 10,000 orders: {items} items published in {publish_s:.2f} s, "
        f"read from the other grape in {fetch_s:.2f} s; a one-order update put {new} new "
        f"items + {publisher.last_refresh_count} refreshes"
    )
