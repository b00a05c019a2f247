"""exchange.versions: page trees, root documents, publisher and reader on the memory DHT.

Scale and residency tests are in test_versions_scale.py, Hypothesis properties in
test_versions_props.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import zlib
from decimal import Decimal
from typing import Any

import pytest
from versions_dht import FaultyDht

import exchange.versions
from exchange.protocol import ExchangeError, InvalidVersion
from exchange.versions import (
    DEFAULT_REFRESH_BUDGET,
    ROOT_FORMAT,
    RootDoc,
    VersionPublisher,
    VersionReader,
    book_hash,
    build_book_tree,
    build_event_pages,
    decode_root,
    encode_root,
)
from exchange.versions._format import UPDATE_PAGES_BOUND
from exchange.versions._parse import BookLeaf, BookNode, EventLeaf, parse_page
from orderbook_core import (
    DEFAULT_SPEC,
    CancelOrder,
    Event,
    MarketSpec,
    NewOrder,
    OrderBook,
    OrderRejected,
    RejectReason,
    RestingOrder,
    Side,
    event_to_wire,
)
from transports import (
    ConnectionFailed,
    MemoryNetwork,
    Transport,
    dht_key,
    open_transport,
)

SPEC = DEFAULT_SPEC
MID = 1_000_000  # ticks: 10,000.00


def random_book(n: int, seed: int, *, levels: int = 300) -> tuple[OrderBook, list[Event]]:
    """A book of `n` resting orders (asks above MID, bids at or below), and its events."""
    rng = random.Random(seed)
    book = OrderBook(SPEC)
    events: list[Event] = []
    for i in range(n):
        side = Side.SELL if rng.random() < 0.5 else Side.BUY
        offset = rng.randrange(1, levels)
        price = MID + offset if side is Side.SELL else MID - offset
        client = f"c{rng.randrange(40)}"
        # Half the ids are "<clientId>-<n>", which a leaf stores as the integer n.
        order_id = f"{client}-{i}" if i % 2 else f"o{i}"
        cmd = NewOrder(i + 1, 1_764_000_000_000 + i, client, order_id, side, price, 7)
        events.extend(book.apply(cmd))
    assert len(book) == n
    return book, events


def root_text(**changes: Any) -> str:
    """A valid root document's text, with some fields changed (or removed with None)."""
    doc: dict[str, Any] = {
        "format": ROOT_FORMAT,
        "market": "BTC-USD",
        "seq": 5,
        "first": 5,
        "prev": None,
        "book": None,
        "events": None,
        "commands": None,
        "tick": "0.01",
        "lot": "0.001",
        "key": None,
        "sig": None,
    }
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v != "<absent>"}, separators=(",", ":"))


@pytest.fixture
def network() -> MemoryNetwork:
    return MemoryNetwork()


# --------------------------------------------------------------------------- pure part


def test_public_names_match_all() -> None:
    public = {name for name in dir(exchange.versions) if not name.startswith("_")}
    assert public == set(exchange.versions.__all__)


def test_invalid_version_is_an_exchange_error() -> None:
    assert issubclass(InvalidVersion, ExchangeError)


def test_empty_book_has_no_tree() -> None:
    tree = build_book_tree(OrderBook(SPEC))
    assert (tree.root, tree.pages, tree.height) == (None, {}, 0)
    assert book_hash(OrderBook(SPEC)) is None
    assert build_event_pages((), SPEC).root is None


def test_one_order_is_one_leaf() -> None:
    book, _ = random_book(1, seed=1)
    tree = build_book_tree(book)
    assert tree.height == 1
    assert list(tree.pages) == [tree.root]
    page = tree.pages[tree.root or ""]
    assert page.startswith('{"o":[["')  # one price group
    assert page.endswith(']]],"t":"BL","v":3}')


@pytest.mark.parametrize("n", [1, 40, 700])
def test_pages_are_small_canonical_json_under_their_key(n: int) -> None:
    book, _ = random_book(n, seed=n)
    tree = build_book_tree(book)
    assert tree.root == book_hash(book)
    assert tree.root in tree.pages
    leaves: list[RestingOrder] = []
    for key, page in tree.pages.items():
        assert dht_key(page) == key
        assert len(page.encode()) <= 999
        obj = json.loads(page)
        assert json.dumps(obj, separators=(",", ":"), sort_keys=True) == page
        parsed = parse_page(key, page, SPEC)
        if isinstance(parsed, BookLeaf):
            leaves.extend(parsed.orders)
    assert sorted(leaves) == sorted(book.orders())


def test_leaves_in_tree_order_are_the_canonical_order() -> None:
    book, _ = random_book(500, seed=3)
    tree = build_book_tree(book)
    assert tree.height >= 3

    def walk(key: str) -> list[RestingOrder]:
        page = parse_page(key, tree.pages[key], SPEC)
        if isinstance(page, BookLeaf):
            return list(page.orders)
        assert isinstance(page, BookNode)
        out: list[RestingOrder] = []
        for child, count in page.children:
            below = walk(child)
            assert len(below) == count
            out.extend(below)
        return out

    assert walk(tree.root or "") == list(book.orders())


@pytest.mark.parametrize(
    ("client_id", "order_id", "stored"),
    [
        ("client17", "client17-1234", 1234),
        ("c", "c-0", 0),
        ("c", "c-" + "9" * 15, 10**15 - 1),
        ("c", "c-" + "1" * 16, "c-" + "1" * 16),  # 16 digits: may not be below 2**53
        ("c", "c-007", "c-007"),  # a leading zero would not survive the round trip
        ("c", "c-", "c-"),
        ("c", "c--1", "c--1"),
        ("c", "c-1.5", "c-1.5"),
        ("c", "c1", "c1"),
        ("c", "d-1", "d-1"),
        ("client1", "client17-1", "client17-1"),
    ],
)
def test_order_ids_of_the_form_client_dash_n_are_stored_as_n(
    client_id: str, order_id: str, stored: str | int
) -> None:
    order = RestingOrder(client_id, order_id, Side.SELL, MID, 5, 1, 2)
    tree = build_book_tree(OrderBook.from_orders(SPEC, [order]))
    page = tree.pages[tree.root or ""]
    assert json.loads(page)["o"] == [["s", MID, [[5, client_id, stored, 1, 2]]]]
    assert parse_page(tree.root or "", page, SPEC) == BookLeaf((order,))


def test_a_leaf_groups_orders_by_side_and_price() -> None:
    orders = [
        RestingOrder("a", "a-1", Side.SELL, MID + 1, 5, 1, 10),
        RestingOrder("b", "x", Side.SELL, MID + 1, 6, 2, 11),
        RestingOrder("a", "a-2", Side.SELL, MID + 2, 7, 3, 12),
        RestingOrder("c", "c-3", Side.BUY, MID, 8, 4, 13),
    ]
    tree = build_book_tree(OrderBook.from_orders(SPEC, orders))
    assert tree.pages[tree.root or ""] == (
        '{"o":[["s",1000001,[[5,"a",1,1,10],[6,"b","x",2,11]]],["s",1000002,[[7,"a",2,3,12]]],'
        '["b",1000000,[[8,"c",3,4,13]]]],"t":"BL","v":3}'
    )


def test_book_hash_is_history_independent_and_content_sensitive() -> None:
    book, _ = random_book(200, seed=4)
    restored = OrderBook.from_orders(SPEC, book.orders())
    assert book_hash(restored) == book_hash(book)
    first = next(book.orders())
    book.apply(NewOrder(10_000, 1, "taker", "t1", Side.BUY, first.price, 1))  # partial fill
    assert book_hash(book) != book_hash(restored)


def test_event_pages_round_trip() -> None:
    _, events = random_book(300, seed=5)
    tree = build_event_pages(events, SPEC)
    assert tree.height >= 2
    parsed: list[Event] = []
    for key, page in tree.pages.items():
        assert len(page.encode()) <= 999
        item = parse_page(key, page, SPEC)
        if isinstance(item, EventLeaf):
            parsed.extend(item.events)
    assert sorted(parsed, key=repr) == sorted(events, key=repr)


def test_root_round_trip() -> None:
    root = RootDoc(
        market="BTC-USD",
        seq=9,
        first=7,
        prev="a" * 40,
        book="b" * 40,
        events=None,
        commands="c" * 40,
        tick="0.01",
        lot="0.001",
    )
    text = encode_root(root)
    assert json.loads(text)["format"] == "dex-book/3"
    assert len(text) < 1000
    assert decode_root(text) == root


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '"dex-book/1"',
        root_text(format="dex-book/1"),
        root_text(commands="<absent>"),
        root_text(commands="xyz"),
        root_text(tick="<absent>"),
        root_text(extra=1),
        root_text(seq=-1),
        root_text(seq=True),
        root_text(seq=1.5),
        root_text(first=7),
        root_text(prev="A" * 40),
        root_text(book="abc"),
        root_text(events=12),
        root_text(tick="1e-2"),
        root_text(lot="0"),
        root_text(market=""),
        '{"seq": NaN}',
    ],
)
def test_decode_root_rejects_what_is_not_a_root(text: str) -> None:
    with pytest.raises(InvalidVersion, match="root document"):
        decode_root(text)


def test_encode_root_refuses_a_bad_field() -> None:
    bad = RootDoc(
        market="BTC-USD",
        seq=1,
        first=3,
        prev=None,
        book=None,
        events=None,
        commands=None,
        tick="1",
        lot="1",
    )
    with pytest.raises(ValueError, match="first"):
        encode_root(bad)


# --------------------------------------------------------------------------- publish and read


@pytest.mark.anyio
async def test_round_trip(network: MemoryNetwork) -> None:
    book, events = random_book(250, seed=6)
    async with (
        open_transport("memory", network=network) as worker,
        open_transport("memory", network=network) as client,
    ):
        publisher = VersionPublisher(worker, SPEC)
        key = await publisher.publish(book, events, seq=250, first=1)
        assert publisher.last_root == key
        version = await VersionReader(client, SPEC).fetch(key)
    assert version.key == key
    assert (version.root.seq, version.root.first, version.root.prev) == (250, 1, None)
    assert version.root.book == book_hash(book)
    assert list(version.book.orders()) == list(book.orders())
    assert version.book == book
    assert version.events == tuple(events)


@pytest.mark.anyio
async def test_empty_version_round_trip(network: MemoryNetwork) -> None:
    async with open_transport("memory", network=network) as transport:
        key = await VersionPublisher(transport, SPEC).publish(OrderBook(SPEC), (), seq=0, first=1)
        version = await VersionReader(transport, SPEC).fetch(key)
        root = await VersionReader(transport, SPEC).fetch_root(key)
    assert (version.root.book, version.root.events) == (None, None)
    assert len(version.book) == 0
    assert version.events == ()
    assert root == version.root


@pytest.mark.anyio
async def test_one_order_update_shares_unchanged_pages(network: MemoryNetwork) -> None:
    book, events = random_book(1500, seed=7)
    async with open_transport("memory", network=network) as transport:
        publisher = VersionPublisher(transport, SPEC)
        reader = VersionReader(transport, SPEC)
        first_key = await publisher.publish(book, events, seq=1500, first=1)
        assert (
            publisher.last_put_count
            == len(build_book_tree(book).pages) + len(build_event_pages(events, SPEC).pages) + 1
        )
        await reader.fetch(first_key)
        rng = random.Random(7)
        worst_put = worst_get = 0
        for i in range(40):
            seq = 1501 + i
            if i % 2:
                victim = rng.choice(list(book.orders()))
                cmd: NewOrder | CancelOrder = CancelOrder(
                    seq, seq, victim.client_id, victim.order_id
                )
            else:
                cmd = NewOrder(seq, seq, "new", f"n{i}", Side.BUY, MID - rng.randrange(1, 300), 3)
            key = await publisher.publish(book, book.apply(cmd), seq=seq, first=seq)
            bound = UPDATE_PAGES_BOUND + 2  # book pages, one event page, the root
            # The first publish (4,500 items) is past the 300-put residency window, so
            # each update also refreshes up to DEFAULT_REFRESH_BUDGET unchanged pages.
            assert publisher.last_refresh_count <= DEFAULT_REFRESH_BUDGET
            assert publisher.last_put_count - publisher.last_refresh_count <= bound
            version = await reader.fetch(key)
            assert reader.last_get_count <= bound
            assert version.root.prev is not None
            assert version.book == book
            worst_put = max(worst_put, publisher.last_put_count - publisher.last_refresh_count)
            worst_get = max(worst_get, reader.last_get_count)
    print(f"\none-order update, 1500 orders, height {publisher.last_height}: ")
    print(f"at most {worst_put} puts (+ refreshes) and {worst_get} gets (bound {bound})")


@pytest.mark.anyio
async def test_versions_link_back_and_events_alone(network: MemoryNetwork) -> None:
    book, events = random_book(50, seed=8)
    async with open_transport("memory", network=network) as transport:
        publisher = VersionPublisher(transport, SPEC, prev="f" * 40)
        first = await publisher.publish(book, events, seq=50, first=1)
        more = book.apply(NewOrder(51, 51, "x", "x1", Side.BUY, MID - 1, 1))
        second = await publisher.publish(book, more, seq=51, first=51)
        reader = VersionReader(transport, SPEC)
        root, got = await reader.fetch_events(second)
        assert (root.prev, got) == (first, more)
        assert (await reader.fetch_root(first)).prev == "f" * 40


@pytest.mark.anyio
async def test_tampered_page_is_rejected_and_the_replica_kept(network: MemoryNetwork) -> None:
    book, events = random_book(400, seed=9)
    async with open_transport("memory", network=network) as inner:
        dht = FaultyDht(inner)
        publisher = VersionPublisher(dht, SPEC)
        reader = VersionReader(dht, SPEC)
        replica = await reader.fetch(await publisher.publish(book, events, seq=400, first=1))
        held = replica.book.copy()
        before = set(build_book_tree(book).pages)
        more = book.apply(NewOrder(401, 401, "x", "x1", Side.SELL, MID + 5, 2))
        key = await publisher.publish(book, more, seq=401, first=401)
        changed = sorted(set(build_book_tree(book).pages) - before)
        victim = changed[-1]
        text = await inner.get(victim)
        assert text is not None
        dht.tampered[victim] = text.replace('"x1"', '"x2"') if '"x1"' in text else text + " "
        with pytest.raises(InvalidVersion, match="does not match its hash"):
            await reader.fetch(key)
        assert replica.book == held  # what the caller holds is untouched
        assert (await reader.fetch(replica.key)).book == held
        del dht.tampered[victim]
        dht.tampered[key] = root_text()  # a valid root, but not the one under `key`
        with pytest.raises(InvalidVersion, match="does not match its hash"):
            await VersionReader(dht, SPEC).fetch(key)  # (`reader` has the root cached)
        del dht.tampered[key]
        assert (await reader.fetch(key)).book == book


def leaf(*orders: tuple[Any, ...]) -> str:
    """A book leaf of `orders` given as (side, price, remaining, client, order, seq, ts),
    consecutive orders of one side and price in one price group."""
    groups: list[list[Any]] = []
    for side, price, *rest in orders:
        if not groups or groups[-1][:2] != [side, price]:
            groups.append([side, price, []])
        groups[-1][2].append(rest)
    return json.dumps({"o": groups, "t": "BL", "v": 3}, separators=(",", ":"))


def node(height: int, *children: tuple[str, int], kind: str = "BN") -> str:
    body = {"c": [list(c) for c in children], "h": height, "t": kind, "v": 3}
    return json.dumps(body, separators=(",", ":"))


def event_leaf(*seqs: int) -> str:
    events = [OrderRejected(seq, "c1", "o1", RejectReason.UNKNOWN_ORDER) for seq in seqs]
    body = {"e": [event_to_wire(event, SPEC) for event in events], "t": "EL", "v": 3}
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


ASK = ("s", MID + 1, 5, "c1", "o1", 1, 100)
BID = ("b", MID - 1, 5, "c2", "o2", 2, 100)


async def forge(transport: Transport, case: str) -> str:
    """Store a forged version whose every item is under its true key; return its root."""

    async def put(text: str) -> str:
        return await transport.put(text)

    book: str | None = None
    events: str | None = None
    if case == "not json":
        return await put("hello world")
    if case == "not an object":
        return await put("[1,2,3]")
    if case == "other format":
        return await put(root_text(format="dex-book/0"))
    if case == "other market":
        return await put(root_text(market="ETH-USD"))
    if case == "other tick size":
        return await put(root_text(tick="0.1"))
    if case == "missing page":
        book = dht_key("never stored")
    elif case == "root names a root":
        book = await put(root_text())
    elif case == "events page as book":
        book = await put(event_leaf(5))
    elif case == "empty leaf":
        book = await put(leaf())
    elif case == "bids before asks":
        book = await put(leaf(BID, ASK))
    elif case == "crossed book":
        book = await put(leaf(("s", MID - 5, 5, "c1", "o1", 1, 1), BID))
    elif case == "duplicate id":
        book = await put(leaf(ASK, ("s", MID + 2, 5, "c1", "o1", 3, 1)))
    elif case == "float price":
        book = await put(leaf(("s", MID + 0.5, 5, "c1", "o1", 1, 1)))
    elif case == "client id breaks the id rule":
        book = await put(leaf(("s", MID + 1, 5, "c\u001b[2J", "o1", 1, 1)))
    elif case == "order id breaks the id rule":
        book = await put(leaf(("s", MID + 1, 5, "c1", "o 1", 1, 1)))
    elif case == "expanded order id over 64 characters":
        # "<60 x c>-123456789012345" is 76 characters: no client could submit it.
        book = await put(leaf(("s", MID + 1, 5, "c" * 60, 123456789012345, 1, 1)))
    elif case == "event id breaks the id rule":
        rejected = OrderRejected(5, "c1", "o1", RejectReason.UNKNOWN_ORDER)
        wire = {**event_to_wire(rejected, SPEC), "orderId": "o1\n"}
        events = await put(json.dumps({"e": [wire], "t": "EL", "v": 3}, sort_keys=True))
    elif case == "order seq after the root's seq":
        book = await put(leaf(("s", MID + 1, 5, "c1", "o1", 6, 100)))
    elif case == "time priority disagrees with seq":
        # At one price the order that trades first must be the one that came first.
        book = await put(
            leaf(("s", MID + 1, 5, "c1", "o1", 3, 100), ("s", MID + 1, 5, "c2", "o2", 2, 90))
        )
    elif case == "remaining above max amount":
        book = await put(leaf(("s", MID + 1, SPEC.max_lots + 1, "c1", "o1", 1, 1)))
    elif case == "order number too big":
        book = await put(leaf(("s", MID + 1, 5, "c1", 10**15, 1, 1)))
    elif case == "count mismatch":
        book = await put(node(1, (await put(leaf(ASK)), 1), (await put(leaf(BID)), 2)))
    elif case == "height mismatch":
        book = await put(node(2, (await put(leaf(ASK)), 1), (await put(leaf(BID)), 1)))
    elif case == "not the canonical chunking":
        # Valid leaves in canonical order, but two orders fit one leaf: the canonical
        # tree of this book is a single leaf, so this root is not its book hash.
        book = await put(node(1, (await put(leaf(ASK)), 1), (await put(leaf(BID)), 1)))
    elif case == "event outside first..seq":
        events = await put(event_leaf(99))
    elif case == "no events for a command":
        # Every command has at least one event (a rejection, at least), so a root that
        # covers commands 5..5 must carry events: here it names none.
        return await put(root_text(book=None, events=None))
    elif case == "a command of first..seq without events":
        return await put(root_text(first=3, events=await put(event_leaf(3, 5))))
    elif case == "events out of order":
        return await put(root_text(first=4, events=await put(event_leaf(5, 4))))
    else:  # pragma: no cover
        raise AssertionError(case)
    if case == "not the canonical chunking":
        assert book != await put(leaf(ASK, BID))
    # Without events the root covers no command (first = seq + 1), so that the only
    # defect of a forgery is the one its case names.
    return await put(root_text(book=book, events=events, first=5 if events else 6))


FORGERIES = [
    "not json",
    "not an object",
    "other format",
    "other market",
    "other tick size",
    "missing page",
    "root names a root",
    "events page as book",
    "empty leaf",
    "bids before asks",
    "crossed book",
    "duplicate id",
    "float price",
    "order number too big",
    "remaining above max amount",
    "order seq after the root's seq",
    "time priority disagrees with seq",
    "client id breaks the id rule",
    "order id breaks the id rule",
    "expanded order id over 64 characters",
    "event id breaks the id rule",
    "count mismatch",
    "height mismatch",
    "not the canonical chunking",
    "event outside first..seq",
    "no events for a command",
    "a command of first..seq without events",
    "events out of order",
]


@pytest.mark.anyio
@pytest.mark.parametrize("case", FORGERIES)
async def test_forged_versions_are_rejected(network: MemoryNetwork, case: str) -> None:
    async with open_transport("memory", network=network) as transport:
        key = await forge(transport, case)
        reader = VersionReader(transport, SPEC)
        with pytest.raises(InvalidVersion) as info:
            await reader.fetch(key)
    print(f"{case}: {info.value}")
    if case == "missing page":
        assert "missing page" in str(info.value)


@pytest.mark.anyio
@pytest.mark.parametrize("key", ["", "xyz", "A" * 40, "a" * 41, dht_key("absent")])
async def test_not_a_version_key(network: MemoryNetwork, key: str) -> None:
    async with open_transport("memory", network=network) as transport:
        with pytest.raises(InvalidVersion):
            await VersionReader(transport, SPEC).fetch(key)


@pytest.mark.anyio
async def test_a_reader_of_another_market_rejects_the_version(network: MemoryNetwork) -> None:
    book, events = random_book(10, seed=10)
    other = MarketSpec(market="ETH-USD")
    async with open_transport("memory", network=network) as transport:
        key = await VersionPublisher(transport, SPEC).publish(book, events, seq=10, first=1)
        with pytest.raises(InvalidVersion, match="market"):
            await VersionReader(transport, other).fetch(key)
        with pytest.raises(ValueError, match="market"):
            await VersionPublisher(transport, other).publish(book, events, seq=10, first=1)


@pytest.mark.anyio
async def test_failed_publish_changes_nothing_and_a_retry_republishes(
    network: MemoryNetwork,
) -> None:
    book, events = random_book(600, seed=11)
    async with open_transport("memory", network=network) as inner:
        dht = FaultyDht(inner)
        publisher = VersionPublisher(dht, SPEC)
        first = await publisher.publish(book, events, seq=600, first=1)
        assert 1 < dht.max_in_flight <= 16  # concurrent, and bounded
        state = (publisher.last_root, publisher.put_total, publisher.last_put_count)
        more = book.apply(NewOrder(601, 601, "x", "x1", Side.BUY, MID - 3, 1))
        more += book.apply(NewOrder(602, 602, "y", "y1", Side.SELL, MID + 299, 1))
        dht.fail_puts_after = dht.puts + 3
        dht.begin_attempt()
        dht.lose_failed_attempt = True  # the DHT kept none of the attempt's puts
        with pytest.raises(ConnectionFailed):  # the error itself, not an ExceptionGroup
            await publisher.publish(book, more, seq=602, first=601)
        assert (publisher.last_root, publisher.put_total, publisher.last_put_count) == state
        assert dht.hidden
        dht.fail_puts_after = None
        second = await publisher.publish(book, more, seq=602, first=601)
        assert second != first
        version = await VersionReader(dht, SPEC).fetch(second)
        assert version.book == book
        assert version.root.prev == first


@pytest.mark.anyio
async def test_missing_page_can_appear_later(network: MemoryNetwork) -> None:
    book, events = random_book(100, seed=12)
    async with open_transport("memory", network=network) as inner:
        dht = FaultyDht(inner)
        key = await VersionPublisher(dht, SPEC).publish(book, events, seq=100, first=1)
        hidden = build_book_tree(book).root
        assert hidden is not None
        dht.hidden.add(hidden)
        reader = VersionReader(dht, SPEC)
        with pytest.raises(InvalidVersion, match=f"missing page {hidden}"):
            await reader.fetch(key)
        dht.hidden.clear()
        assert (await reader.fetch(key)).book == book


@pytest.mark.anyio
async def test_a_tiny_cache_still_reads_correctly(network: MemoryNetwork) -> None:
    book, events = random_book(300, seed=13)
    async with open_transport("memory", network=network) as transport:
        publisher = VersionPublisher(transport, SPEC)
        reader = VersionReader(transport, SPEC, cache_pages=5, concurrency=2)
        key = await publisher.publish(book, events, seq=300, first=1)
        assert (await reader.fetch(key)).book == book
        assert reader.cached_pages <= 5
        assert (await reader.fetch(key)).events == tuple(events)


async def doc_reader(transport: Transport, root_key: str) -> tuple[list[Any], list[Any]]:
    """A reader written from docs/protocol.md alone: raw JSON, no exchange code.

    Returns the orders as (side, Decimal price, Decimal remaining, clientId, orderId,
    seq, ts) and the events as JSON objects.
    """

    async def get(key: str) -> Any:
        text = await transport.get(key)
        assert text is not None
        data = text.encode("utf-8")
        assert hashlib.sha1(b"%d:" % len(data) + data).hexdigest() == key
        return json.loads(text)

    async def walk(key: str | None, leaf_field: str) -> list[Any]:
        if key is None:
            return []
        page = await get(key)
        if "z" in page:  # a compressed list leaf: base64 of zlib-compressed JSON
            return list(json.loads(zlib.decompress(base64.b64decode(page["z"]))))
        if "c" not in page:
            return list(page[leaf_field])
        return [item for child, _count in page["c"] for item in await walk(child, leaf_field)]

    root = await get(root_key)
    assert root["format"] == "dex-book/3"
    tick, lot = Decimal(root["tick"]), Decimal(root["lot"])
    orders = [
        # An integer order id n stands for "<clientId>-<n>".
        (side, price * tick, remaining * lot, client, f"{client}-{order}"
         if isinstance(order, int) else order, seq, ts)
        for side, price, group in await walk(root["book"], "o")
        for remaining, client, order, seq, ts in group
    ]  # fmt: skip
    return orders, await walk(root["events"], "e")


@pytest.mark.anyio
async def test_a_reader_written_from_the_docs_reads_a_version(network: MemoryNetwork) -> None:
    book, events = random_book(600, seed=14)
    async with open_transport("memory", network=network) as transport:
        key = await VersionPublisher(transport, SPEC).publish(book, events, seq=600, first=1)
        orders, wire_events = await doc_reader(transport, key)
    assert orders == [
        (
            "s" if o.side is Side.SELL else "b",
            SPEC.ticks_to_price(o.price),
            SPEC.lots_to_amount(o.remaining),
            o.client_id,
            o.order_id,
            o.seq,
            o.ts,
        )
        for o in book.orders()
    ]
    assert wire_events == [event_to_wire(event, SPEC) for event in events]
