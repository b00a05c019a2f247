"""exchange.versions, properties (Hypothesis).

* History independence: books with the same content, reached by different histories,
  have the same page tree, book hash and state hash.
* Size: every page fits in a DHT value (<= 999 bytes) however long the ids (64
  characters, the wire's limit) and however large the numbers; pages parse back to
  exactly the book's orders, and the worst-case event fits in an event page.
* Parsers: arbitrary text, and arbitrary JSON, given to `decode_root` and `parse_page`
  give a result or `InvalidVersion`, never another exception.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import string
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.protocol import InvalidVersion
from exchange.versions import (
    MAX_PAGE_BYTES,
    TreeBuilder,
    VersionPublisher,
    VersionReader,
    book_hash,
    build_book_tree,
    build_event_pages,
    decode_root,
)
from exchange.versions._format import UPDATE_PAGES_BOUND
from exchange.versions._parse import BookLeaf, BookNode, parse_page
from orderbook_core import (
    DEFAULT_SPEC,
    CancelOrder,
    CancelReason,
    Command,
    Event,
    MarketSpec,
    ModifyOrder,
    NewOrder,
    OrderBook,
    OrderCancelled,
    OrderModified,
    RestingOrder,
    Side,
    TimeInForce,
    Trade,
)
from transports import MemoryNetwork, dht_key, open_transport

SPEC = DEFAULT_SPEC
MID = 1_000_000
LONG_RUN = os.environ.get("CHAOS_PROFILE") == "long"
"""The long run (`make chaos`): more examples, at random, wider prices and markets with
other tick and lot sizes. Otherwise a bounded, derandomized run: CI stays deterministic."""


def profile(examples: int, long_examples: int) -> settings:
    """`examples` derandomized in CI; `long_examples` at random in the long run."""
    return settings(
        max_examples=long_examples if LONG_RUN else examples,
        derandomize=not LONG_RUN,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


PROPS = profile(40, 400)

ID_ALPHABET = string.ascii_letters + string.digits + "_.-"
ids = st.one_of(
    st.text(ID_ALPHABET, min_size=64, max_size=64),
    st.text(ID_ALPHABET, min_size=1, max_size=64),
)

# One planned order: side, distance from MID in ticks, lots, client, kept at the end?
planned = st.tuples(
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(1, 40),
    st.integers(1, 50),
    st.sampled_from(["a", "b", "c"]),
    st.booleans(),
    st.integers(0, 5),
)


def _price(side: Side, offset: int) -> int:
    return MID + offset if side is Side.SELL else MID - offset


def _plain_book(plan: list[tuple[Side, int, int, str, bool, int]]) -> OrderBook:
    book = OrderBook(SPEC)
    for seq, (side, offset, lots, client, _, _) in enumerate(plan, start=1):
        book.apply(NewOrder(seq, seq, client, f"o{seq}", side, _price(side, offset), lots))
    return book


@PROPS
@given(st.lists(planned, max_size=120))
def test_equal_content_from_different_histories_has_one_hash(
    plan: list[tuple[Side, int, int, str, bool, int]],
) -> None:
    # History A places only the orders that are kept. History B also places orders
    # that it cancels later, and places the kept ones bigger, then shrinks them with a
    # modify (a pure decrease keeps time priority). Sequence numbers are shared, so
    # the kept orders end up identical, priority included.
    direct, noisy = OrderBook(SPEC), OrderBook(SPEC)
    cancels: list[tuple[str, str]] = []
    shrinks: list[tuple[str, str, int]] = []
    for seq, (side, offset, lots, client, kept, extra) in enumerate(plan, start=1):
        order_id = f"o{seq}"
        price = _price(side, offset)
        if kept:
            direct.apply(NewOrder(seq, seq * 10, client, order_id, side, price, lots))
            noisy.apply(NewOrder(seq, seq * 10, client, order_id, side, price, lots + extra))
            if extra:
                shrinks.append((client, order_id, lots))
        else:
            noisy.apply(NewOrder(seq, seq * 10, client, order_id, side, price, lots))
            cancels.append((client, order_id))
    seq = len(plan)
    for client, order_id, lots in shrinks:
        seq += 1
        noisy.apply(ModifyOrder(seq, seq, client, order_id, None, lots))
    for client, order_id in cancels:
        seq += 1
        noisy.apply(CancelOrder(seq, seq, client, order_id))
    restored = OrderBook.from_orders(SPEC, direct.orders())

    assert list(noisy.orders()) == list(direct.orders())  # same content, by construction
    builder = TreeBuilder()  # one memo across books must not matter either
    trees = [builder.build_book_tree(b) for b in (noisy, direct, restored)]
    assert trees[0] == trees[1] == trees[2] == build_book_tree(direct)
    assert book_hash(noisy) == book_hash(direct) == trees[0].root
    assert noisy == direct


@st.composite
def extreme_books(draw: st.DrawFn) -> OrderBook:
    """Books of orders with long ids and extreme numbers, uncrossed by construction."""
    n = draw(st.integers(1, 80))
    split = draw(st.integers(SPEC.min_ticks + 1, SPEC.max_ticks))
    orders: list[RestingOrder] = []
    seen: set[tuple[str, str]] = set()
    for _ in range(n):
        client, order_id = draw(ids), draw(ids)
        if len(client) <= 45 and draw(st.booleans()):
            # "<clientId>-<n>": stored as the integer n when n has at most 15 digits.
            order_id = f"{client}-{draw(st.integers(0, 10**17))}"
        if (client, order_id) in seen:
            continue
        seen.add((client, order_id))
        side = draw(st.sampled_from([Side.BUY, Side.SELL]))
        if side is Side.SELL:
            price = draw(st.integers(split, SPEC.max_ticks))
        else:
            price = draw(st.integers(SPEC.min_ticks, split - 1))
        remaining = draw(st.integers(1, SPEC.max_lots))
        seq = draw(st.integers(0, 2**53))
        ts = draw(st.integers(0, 2**53))
        orders.append(RestingOrder(client, order_id, side, price, remaining, seq, ts))
    # Canonical order: asks ascending, bids descending, then priority.
    orders.sort(key=lambda o: (o.side is Side.BUY, -o.price if o.side is Side.BUY else o.price))
    return OrderBook.from_orders(SPEC, orders)


@PROPS
@given(extreme_books())
def test_every_page_fits_a_dht_value_and_parses_back(book: OrderBook) -> None:
    tree = build_book_tree(book)
    leaves: dict[str, tuple[RestingOrder, ...]] = {}
    nodes: dict[str, BookNode] = {}
    for key, page in tree.pages.items():
        assert len(page.encode("utf-8")) <= MAX_PAGE_BYTES
        parsed = parse_page(key, page, SPEC)
        if isinstance(parsed, BookLeaf):
            leaves[key] = parsed.orders
        else:
            assert isinstance(parsed, BookNode)
            nodes[key] = parsed

    def walk(key: str) -> list[RestingOrder]:
        if key in leaves:
            return list(leaves[key])
        return [o for child, _ in nodes[key].children for o in walk(child)]

    assert tree.root is not None
    assert walk(tree.root) == list(book.orders())


def test_the_largest_events_fit_an_event_page() -> None:
    big = SPEC.max_lots
    events: list[Event] = []
    for n in range(30):  # ids of 64 characters that do not compress (sha-256 hex)
        long_a = hashlib.sha256(b"a%d" % n).hexdigest()
        long_b = hashlib.sha256(b"b%d" % n).hexdigest()
        events += [
            Trade(2**53, f"{2**53}.{2**20}", 2**53, SPEC.max_ticks, big, Side.BUY, long_a,
                  long_b, big, long_b, long_a),
            OrderModified(2**53, long_a, long_b, Side.SELL, SPEC.max_ticks, big,
                          SPEC.max_ticks, big, False),
            OrderCancelled(2**53, long_a, long_b, Side.SELL, SPEC.max_ticks, big,
                           CancelReason.SELF_TRADE),
        ]  # fmt: skip
    tree = build_event_pages(events, SPEC)
    assert tree.height >= 2
    assert all(len(page) <= MAX_PAGE_BYTES for page in tree.pages.values())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)


garbage = st.one_of(
    st.text(max_size=300),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {
            "t": st.sampled_from(["BL", "BN", "EL", "EN", "CL", "CN", "x"]),
            "v": st.sampled_from([1, 2, 3]),
        },
        optional={
            "o": json_values,
            "c": json_values,
            "e": json_values,
            "h": json_values,
            "x": json_values,
        },
    ).map(json.dumps),
    st.fixed_dictionaries(
        {"format": st.sampled_from(["dex-book/1", "dex-book/2", "dex-book/3"])},
        optional={
            k: json_values
            for k in (
                "market",
                "seq",
                "first",
                "prev",
                "book",
                "events",
                "commands",
                "key",
                "sig",
                "tick",
                "lot",
            )
        },
    ).map(json.dumps),
)


@profile(300, 3000)
@given(garbage)
def test_parsers_raise_only_invalid_version(text: str) -> None:
    with contextlib.suppress(InvalidVersion):
        decode_root(text)
    with contextlib.suppress(InvalidVersion):
        parse_page(dht_key(text), text, SPEC)
    with pytest.raises(InvalidVersion, match="does not match its hash"):
        parse_page("0" * 40, text, SPEC)


# --------------------------------------------------------------------------- the docs


def _doc_key(value: str) -> str:
    data = value.encode("utf-8")
    return hashlib.sha1(str(len(data)).encode() + b":" + data).hexdigest()


def _doc_chunks(
    entries: list[str],
    ends_chunk: Callable[[int, int], bool],
    page_len: Callable[[list[str]], int],
) -> list[list[str]]:
    """Chunk a level as the docs say: `page_len(chunk)` is the length of a chunk's
    page, `ends_chunk(i, size)` whether entry `i` is a boundary in a page of `size`."""
    chunks: list[list[str]] = []
    chunk: list[str] = []
    for i, entry in enumerate(entries):
        if chunk and page_len([*chunk, entry]) > 999:
            chunks.append(chunk)
            chunk = []
        chunk.append(entry)
        if len(chunk) >= 2 and ends_chunk(i, page_len(chunk)):
            chunks.append(chunk)
            chunk = []
    if chunk:
        chunks.append(chunk)
    return chunks


def _doc_leaf(orders: list[RestingOrder]) -> str:
    """A BL page of `orders`, built as the docs say: price groups of [side, price, [...]]."""
    dumps = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
    groups: list[list[Any]] = []
    for o in orders:
        side = "s" if o.side == "sell" else "b"
        if not groups or groups[-1][:2] != [side, o.price]:
            groups.append([side, o.price, []])
        order_id: str | int = o.order_id
        prefix = o.client_id + "-"
        number = o.order_id[len(prefix) :]
        if (
            o.order_id.startswith(prefix)
            and re.fullmatch("0|[1-9][0-9]{0,14}", number)
        ):  # fmt: skip
            order_id = int(number)
        groups[-1][2].append([o.remaining, o.client_id, order_id, o.seq, o.ts])
    return dumps({"o": groups, "t": "BL", "v": 3})


def doc_book_hash(orders: list[RestingOrder]) -> str | None:
    """The book hash computed from docs/protocol.md's "Canonical tree", independently."""
    if not orders:
        return None
    dumps = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
    # An order's boundary number: the first 11 bits of sha1('["<clientId>","<orderId>",<seq>]').
    numbers = [
        int.from_bytes(hashlib.sha1(dumps([o.client_id, o.order_id, o.seq]).encode()).digest()[:2])
        >> 5
        for o in orders
    ]
    by_id = {str(i): o for i, o in enumerate(orders)}
    level: list[tuple[str, int]] = []
    chunks = _doc_chunks(
        list(by_id),
        lambda i, size: numbers[i] < size - 400,
        lambda ids: len(_doc_leaf([by_id[i] for i in ids])),
    )
    for chunk in chunks:
        level.append((_doc_key(_doc_leaf([by_id[i] for i in chunk])), len(chunk)))
    height = 1
    while len(level) > 1:
        counts = {f'["{key}",{count}]': count for key, count in level}
        entries = list(counts)
        boundary = [int(key[:2], 16) < 8 for key, _ in level]
        tail = f'],"h":{height},"t":"BN","v":3}}'

        def node_len(chunk: list[str], tail: str = tail) -> int:
            return len('{"c":[' + ",".join(chunk) + tail)

        def child_ends(i: int, size: int, boundary: list[bool] = boundary) -> bool:
            return boundary[i]

        parents = []
        for chunk in _doc_chunks(entries, child_ends, node_len):
            page = '{"c":[' + ",".join(chunk) + tail
            parents.append((_doc_key(page), sum(counts[entry] for entry in chunk)))
        level = parents
        height += 1
    return level[0][0]


@PROPS
@given(st.one_of(extreme_books(), st.lists(planned, max_size=300).map(_plain_book)))
def test_the_documented_algorithm_gives_the_book_hash(book: OrderBook) -> None:
    assert doc_book_hash(list(book.orders())) == book_hash(book)


# --------------------------------------------------------------------------- publish/read

# One step: (kind, side, distance from MID, lots, which resting order, tif). The long
# run spreads prices over 2,000 ticks and amounts up to a million lots.
steps = st.tuples(
    st.sampled_from(["limit", "limit", "limit", "market", "cancel", "modify"]),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(-200, 2000) if LONG_RUN else st.integers(-5, 30),
    st.integers(1, 10**6) if LONG_RUN else st.integers(1, 30),
    st.integers(0, 10_000),
    st.sampled_from(list(TimeInForce)),
)


def _market(name: str, size: str, top: int) -> MarketSpec:
    """A market whose tick and lot are both `size`, prices and amounts up to `top`."""
    return MarketSpec(
        market=name,
        tick_size=Decimal(size),
        lot_size=Decimal(size),
        min_price=Decimal(size),
        max_price=Decimal(top),
        min_amount=Decimal(size),
        max_amount=Decimal(top),
    )


# Every one holds MID +- 2000 ticks and a million lots. Pages write prices and amounts
# as decimals of the market's sizes, so the long run reads back other sizes too.
MARKETS = (
    st.sampled_from(
        [
            DEFAULT_SPEC,
            _market("ETH-EUR", "0.25", 10**7),
            _market("SAT", "1E-8", 100),
            _market("BIG", "100", 10**12),
        ]
    )
    if LONG_RUN
    else st.just(SPEC)
)


Step = tuple[str, Side, int, int, int, TimeInForce]


def _command(book: OrderBook, seq: int, step: Step) -> Command:
    kind, side, offset, lots, pick, tif = step
    resting = list(book.orders())
    if kind in ("cancel", "modify") and resting:
        target = resting[pick % len(resting)]
        if kind == "cancel":
            return CancelOrder(seq, seq, target.client_id, target.order_id)
        return ModifyOrder(seq, seq, target.client_id, target.order_id, None, lots)
    price = None if kind == "market" else _price(side, offset)
    return NewOrder(seq, seq, f"c{pick % 3}", f"o{seq}", side, price, lots, tif)


@profile(25, 1000)
@given(st.lists(steps, min_size=1, max_size=60), MARKETS)
def test_every_published_version_reads_back_exactly(plan: list[Step], spec: MarketSpec) -> None:
    async def run() -> None:
        network = MemoryNetwork()
        async with (
            open_transport("memory", network=network) as worker,
            open_transport("memory", network=network) as client,
        ):
            book = OrderBook(spec)
            publisher = VersionPublisher(worker, spec)
            reader = VersionReader(client, spec)
            key = await publisher.publish(book, (), seq=0, first=1)
            for seq, step in enumerate(plan, start=1):
                previous = key
                events = book.apply(_command(book, seq, step))
                key = await publisher.publish(book, events, seq=seq, first=seq)
                version = await reader.fetch(key)
                assert version.root.prev == previous
                assert version.events == events
                assert list(version.book.orders()) == list(book.orders())
                assert version.root.book == book_hash(book)
                # Book pages, event pages, the root; a small book has no refreshes.
                events_pages = len(build_event_pages(events, spec).pages)
                assert publisher.last_put_count <= UPDATE_PAGES_BOUND + events_pages + 1
            cold = await VersionReader(client, spec).fetch(key)
            assert cold.book == book

    anyio.run(run)
