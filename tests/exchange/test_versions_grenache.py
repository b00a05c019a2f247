"""exchange.versions on real grapes (the challenge's command: 1000 values each, LRU).

Measures what the memory DHT cannot: the time to publish and read a big book through
Grape's HTTP API with 16 puts/gets in flight, and that the current version of a book
that fits stays readable from the *other* grape through many updates.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest
from support.grapes import Grape, running_grapes

from exchange.versions import VersionPublisher, VersionReader, book_hash
from orderbook_core import DEFAULT_SPEC, CancelOrder, Command, NewOrder, OrderBook, Side
from transports.grenache import GrenacheTransport

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SPEC = DEFAULT_SPEC
MID = 1_000_000


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
        assert version.book.state_hash() == book.state_hash()
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
        assert late.book.state_hash() == book.state_hash()
    print(
        f"\nreal grapes, 3,000 orders: first publish {items} items in {publish_s:.2f} s, "
        f"cold fetch from the other grape {fetch_s:.2f} s; 200 one-order updates "
        f"{update_s / 200 * 1000:.1f} ms each on average; a late client reads the last one"
    )


async def test_ten_thousand_orders_publish_in_seconds(private_grapes: list[Grape]) -> None:
    # 10,000 orders need ~1,400 pages: more than a grape keeps, so only the publish is
    # timed here (the read-back is tested on the memory DHT, which has room).
    book = book_of(10_000, seed=3)
    async with GrenacheTransport(first_url(private_grapes)) as worker:
        publisher = VersionPublisher(worker, SPEC)
        started = time.perf_counter()
        await publisher.publish(book, (), seq=10_000, first=10_001)
        elapsed = time.perf_counter() - started
    assert elapsed < 30
    print(f"\nreal grapes, 10,000 orders: {publisher.last_put_count} items in {elapsed:.2f} s")


def first_url(grapes: list[Grape]) -> str:
    return grapes[0].url
