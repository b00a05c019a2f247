"""The client node on the memory transport: real versions, real verification, real RPC."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.keys import MATCHER_KEY, SEQUENCER_KEY, SEQUENCER_PUBLIC, named_key, signed_head

from exchange.client import ClientNode, NotAcknowledged, new_order_id, parse_client_args, run_client
from exchange.client._output import Record
from exchange.protocol import (
    AuthFailed,
    Head,
    OrderRefused,
    SubmitReply,
    new_entry,
    public_key_hex,
    sign_head,
)
from exchange.tools import replay_journal
from exchange.versions import VersionPublisher, book_hash
from orderbook_core import DEFAULT_SPEC, NewOrder, OrderBook, Side
from transports import JSON, MemoryNetwork, MemoryTransport, RemoteError, ServiceError

pytestmark = pytest.mark.anyio

SPEC = DEFAULT_SPEC


@dataclass
class Market:
    """A book published version by version, as the process worker would."""

    transport: MemoryTransport
    publisher: VersionPublisher
    book: OrderBook = field(default_factory=lambda: OrderBook(SPEC))
    seq: int = 0
    roots: list[str] = field(default_factory=list)
    books: list[str | None] = field(default_factory=list)

    async def order(self, client: str, side: Side, price: int, amount: int) -> str:
        """Apply one new order (prices in ticks, amounts in lots) and publish it."""
        self.seq += 1
        command = NewOrder(
            self.seq, 1000 + self.seq, client, f"{client}-{self.seq}", side, price, amount
        )
        events = self.book.apply(command)
        entry = new_entry(command, SPEC)
        root = await self.publisher.publish(
            self.book, events, seq=self.seq, first=self.seq, commands=[entry]
        )
        self.roots.append(root)
        self.books.append(book_hash(self.book))
        return root


TRUSTED = MATCHER_KEY.public_key()
"""The matcher key the nodes here are given (the market publishes with it)."""


@pytest.fixture
def network() -> MemoryNetwork:
    return MemoryNetwork(seed=1)


@pytest.fixture
async def market(network: MemoryNetwork) -> AsyncIterator[Market]:
    async with MemoryTransport(network) as transport:
        yield Market(transport, VersionPublisher(transport, SPEC, signing_key=MATCHER_KEY))


class Records(list[Record]):
    def kinds(self) -> list[str]:
        return [r["event"] for r in self]

    def of(self, kind: str) -> list[Record]:
        return [r for r in self if r["event"] == kind]


@pytest.fixture
def records() -> Records:
    return Records()


@pytest.fixture
async def node(network: MemoryNetwork, records: Records) -> AsyncIterator[ClientNode]:
    async with MemoryTransport(network) as transport:
        yield ClientNode(
            transport,
            "alice",
            SPEC,
            emit=records.append,
            head_interval=0.05,
            matcher_key=TRUSTED,
        )


async def test_replica_follows_published_versions(market: Market, node: ClientNode) -> None:
    await market.order("bob", Side.SELL, 10_100, 5_000)
    await market.order("alice", Side.BUY, 10_000, 2_000)
    for root in market.roots:
        await node.on_updated(root)
        await node.replica.sync()
    assert node.replica.seq == 2
    assert node.book_hash == market.books[-1]
    assert node.book == market.book
    assert [o.order_id for o in node.own_orders()] == ["alice-2"]
    bid, ask = node.top_of_book()
    assert bid == {"price": "100.00", "amount": "2.000"}
    assert ask == {"price": "101.00", "amount": "5.000"}


async def test_older_or_equal_version_is_ignored(market: Market, node: ClientNode) -> None:
    for i in range(3):
        await market.order("bob", Side.SELL, 10_100 + i, 1_000)
    await node.on_updated(market.roots[2])
    await node.replica.sync()
    await node.on_updated(market.roots[0])
    await node.on_updated(market.roots[1])
    await node.on_updated(market.roots[2])
    assert await node.replica.sync() is None
    assert node.replica.seq == 3
    assert node.book_hash == market.books[2]


async def test_skipped_versions_still_report_own_events(
    market: Market, node: ClientNode, records: Records
) -> None:
    await market.order("alice", Side.SELL, 10_000, 3_000)
    await market.order("bob", Side.BUY, 10_000, 1_000)  # fills 1 of alice's 3
    await market.order("carol", Side.BUY, 9_000, 1_000)
    await node.on_updated(market.roots[-1])  # only the newest hash arrives
    update = await node.replica.sync()
    assert update is not None
    assert update.complete
    assert records.of("accepted")[0]["orderId"] == "alice-1"
    assert records.of("rested")[0]["amount"] == "3.000"
    (fill,) = records.of("fill")
    assert fill["role"] == "maker"
    assert fill["side"] == "sell"
    assert fill["amount"] == "1.000"
    assert fill["counterparty"] == "bob"
    assert [t.trade_id for t in node.fills] == ["2.1"]
    assert records.of("orders")[-1]["orders"] == [
        {"orderId": "alice-1", "side": "sell", "price": "100.00", "remaining": "2.000"}
    ]


class TamperingTransport(MemoryTransport):
    """Answers `get` for some keys with other content, as a lying DHT node would."""

    tampered: dict[str, str]

    def __init__(self, network: MemoryNetwork) -> None:
        super().__init__(network)
        self.tampered = {}

    async def get(self, key: str) -> str | None:
        if key in self.tampered:
            return self.tampered[key]
        return await super().get(key)


async def test_tampered_page_or_root_leaves_replica_unchanged(
    market: Market, network: MemoryNetwork, records: Records
) -> None:
    await market.order("bob", Side.SELL, 10_100, 1_000)
    await market.order("bob", Side.SELL, 10_200, 1_000)
    async with TamperingTransport(network) as transport:
        node = ClientNode(transport, "alice", SPEC, emit=records.append, matcher_key=TRUSTED)
        await node.on_updated(market.roots[0])
        await node.replica.sync()
        assert node.replica.seq == 1
        root_text = await transport.get(market.roots[1])
        assert root_text is not None
        # 1. The root itself is replaced by other (valid-looking) content.
        transport.tampered[market.roots[1]] = root_text.replace('"seq":2', '"seq":9')
        await node.on_updated(market.roots[1])
        assert await node.replica.sync() is None
        # 2. The root is genuine but its command page is not (so the replica cannot
        # advance by the commands), and neither is a book page (so reading the version
        # whole fails too).
        del transport.tampered[market.roots[1]]
        book_root, commands = json.loads(root_text)["book"], json.loads(root_text)["commands"]
        for key, old, new in ((book_root, "10200", "10300"), (commands, '"CZ"', '"CL"')):
            page = await transport.get(key)
            assert page is not None
            assert old in page
            transport.tampered[key] = page.replace(old, new)
        node.replica.notify(market.roots[1])
        assert await node.replica.sync() is None
        assert node.replica.seq == 1
        assert node.book_hash == market.books[0]
        assert len(records.of("warning")) == 2
        # Once the commands are genuine, the replica advances by them: it reads no book
        # page, so the tampered one does not matter.
        del transport.tampered[commands]
        node.replica.notify(market.roots[1])
        await node.replica.sync()
        assert node.replica.seq == 2
        assert node.book_hash == market.books[1]
        assert (node.replica.full_fetches, node.replica.advances) == (1, 1)


async def test_a_forged_version_far_ahead_of_the_head_cannot_pin_the_replica(
    market: Market, network: MemoryNetwork, node: ClientNode, records: Records
) -> None:
    # Anyone can put a self-consistent version in the DHT and call orderbook_updated.
    # One numbered 10**9, if taken, would leave no real version ever "newer": the replica
    # would show the forger's book for good. The matcher's head bounds it.
    async def head(_: JSON) -> JSON:
        return signed_head(market.seq, market.roots[-1] if market.roots else None)

    await market.order("bob", Side.SELL, 10_100, 1_000)
    async with MemoryTransport(network) as worker, anyio.create_task_group() as tg:
        await tg.start(worker.serve, {"orderbook_head": head})
        await node.fetch_head()
        await node.replica.sync()
        assert node.replica.seq == 1
        # Signed by another key, or not at all: refused outright.
        for signing_key, problem in (
            (named_key("forger"), "signed by another key than the matcher's"),
            (None, "not signed by the matcher"),
        ):
            publisher = VersionPublisher(market.transport, SPEC, signing_key=signing_key)
            forger = Market(market.transport, publisher, seq=10**9 - 1)
            await node.on_updated(await forger.order("mallory", Side.SELL, 100, 999_000))
            assert await node.replica.sync() is None
            assert node.replica.seq == 1
            assert problem in records.of("warning")[-1]["message"]
        # Even one the matcher's key signed (a key that leaked) cannot run ahead of it.
        publisher = VersionPublisher(market.transport, SPEC, signing_key=MATCHER_KEY)
        forger = Market(market.transport, publisher, seq=10**9 - 1)
        await node.on_updated(await forger.order("mallory", Side.SELL, 100, 999_000))
        assert await node.replica.sync() is None
        assert node.replica.seq == 1
        assert "ahead of the head" in records.of("warning")[-1]["message"]
        # A real version, notified before the client polled the head, is held until the
        # head is asked again (the node's own task does that at once), then taken.
        await node.on_updated(await market.order("bob", Side.SELL, 10_200, 1_000))
        await node.replica.sync()
        assert node.replica.seq == 1
        await node.fetch_head()
        await node.replica.sync()
        assert (node.replica.seq, node.book_hash) == (2, market.books[-1])
        tg.cancel_scope.cancel()


async def test_unknown_hash_leaves_replica_unchanged(market: Market, node: ClientNode) -> None:
    await market.order("bob", Side.SELL, 10_100, 1_000)
    await node.on_updated(market.roots[0])
    await node.replica.sync()
    await node.on_updated("0" * 40)
    assert await node.replica.sync() is None
    assert node.replica.seq == 1


@pytest.mark.parametrize("payload", [None, 7, "xyz", "F" * 40, {"root": "a" * 40}, ["a" * 40]])
async def test_bad_orderbook_updated_payload_is_refused_over_rpc(
    network: MemoryNetwork, market: Market, payload: JSON
) -> None:
    await market.order("bob", Side.SELL, 10_100, 1_000)
    async with MemoryTransport(network) as transport, anyio.create_task_group() as tg:
        node = ClientNode(transport, "alice", SPEC, head_interval=3600, matcher_key=TRUSTED)
        await tg.start(node.run)
        await market.transport.request("orderbook_updated", market.roots[0])
        with anyio.fail_after(5):
            await node.wait_for_seq(1)
        with pytest.raises(RemoteError) as info:
            await market.transport.request("orderbook_updated", payload)
        assert info.value.message.startswith("ERR_BAD_REQUEST: ")
        assert "root hash" in info.value.message
        assert node.replica.seq == 1
        assert node.book_hash == market.books[0]
        tg.cancel_scope.cancel()


async def test_running_node_converges_when_updates_race(
    network: MemoryNetwork, market: Market
) -> None:
    for i in range(8):
        await market.order("bob", Side.SELL, 10_100 + i, 1_000)
    async with MemoryTransport(network) as transport, anyio.create_task_group() as tg:
        node = ClientNode(transport, "alice", SPEC, head_interval=3600, matcher_key=TRUSTED)
        await tg.start(node.run)
        async with anyio.create_task_group() as senders:
            for i in (3, 7, 0, 5, 6, 1, 2, 4, 7, 3):
                senders.start_soon(market.transport.request, "orderbook_updated", market.roots[i])
        with anyio.fail_after(5):
            await node.wait_for_seq(8)
        assert node.book_hash == market.books[-1]
        tg.cancel_scope.cancel()


async def test_catches_up_through_orderbook_head(network: MemoryNetwork, market: Market) -> None:
    await market.order("bob", Side.SELL, 10_100, 1_000)
    await market.order("bob", Side.SELL, 10_200, 1_000)

    async def head(_payload: JSON) -> JSON:
        return signed_head(market.seq, market.roots[-1])

    async with (
        MemoryTransport(network) as worker,
        MemoryTransport(network) as transport,
        anyio.create_task_group() as tg,
    ):
        await tg.start(worker.serve, {"orderbook_head": head})
        node = ClientNode(transport, "late", SPEC, head_interval=0.05)
        await tg.start(node.run)
        with anyio.fail_after(5):
            await node.wait_for_seq(2)
        assert node.head.seq == 2
        # A new version nobody announces is still picked up by polling.
        await market.order("bob", Side.SELL, 10_300, 1_000)
        with anyio.fail_after(5):
            await node.wait_for_seq(3)
        tg.cancel_scope.cancel()


async def test_a_push_only_node_asks_the_head_again_until_it_answers(
    network: MemoryNetwork, market: Market
) -> None:
    # No long poll, no plain poll for an hour: only a push moves this node. The head it
    # asks for a pushed version goes unanswered three times (a matcher restarting): the
    # version must not stay held until a next push that may never come.
    await market.order("bob", Side.SELL, 10_100, 1_000)
    asked: list[int] = []
    down = anyio.Event()

    async def head(_payload: JSON) -> JSON:
        asked.append(market.seq)
        if down.is_set() and len(asked) <= 4:
            raise ServiceError("ERR_UNAVAILABLE: restarting")
        return signed_head(market.seq, market.roots[-1])

    async with (
        MemoryTransport(network) as worker,
        MemoryTransport(network) as transport,
        anyio.create_task_group() as tg,
    ):
        await tg.start(worker.serve, {"orderbook_head": head})
        node = ClientNode(transport, "pushed", SPEC, head_interval=3600, long_poll_ms=0)
        await tg.start(node.run)
        with anyio.fail_after(5):
            await node.wait_for_seq(1)
        down.set()
        await node.on_updated(await market.order("bob", Side.SELL, 10_200, 1_000))
        with anyio.fail_after(10):
            await node.wait_for_seq(2)
        assert (node.replica.seq, node.book_hash) == (2, market.books[-1])
        assert len(asked) == 5  # the first head, three unanswered, the one that answered
        tg.cancel_scope.cancel()


async def test_a_version_held_while_the_head_is_being_asked_is_not_forgotten(
    network: MemoryNetwork, market: Market
) -> None:
    # A push-only node: version 3 is pushed (and held) while the node is still asking
    # the head for version 2. That head covers 2 only; 3 must be asked about in turn.
    await market.order("bob", Side.SELL, 10_100, 1_000)
    asked: list[int] = []

    async def head(_payload: JSON) -> JSON:
        seq, root = market.seq, market.roots[-1]  # the head when the request arrives
        asked.append(seq)
        if len(asked) == 2:  # the first head asked for a held version: slow
            await anyio.sleep(0.5)
        return signed_head(seq, root)

    async with (
        MemoryTransport(network) as worker,
        MemoryTransport(network) as transport,
        anyio.create_task_group() as tg,
    ):
        await tg.start(worker.serve, {"orderbook_head": head})
        node = ClientNode(transport, "pushed", SPEC, head_interval=3600, long_poll_ms=0)
        await tg.start(node.run)
        with anyio.fail_after(5):
            await node.wait_for_seq(1)
        await node.on_updated(await market.order("bob", Side.SELL, 10_200, 1_000))
        await anyio.sleep(0.1)  # the node is asking the head, slowly
        await node.on_updated(await market.order("bob", Side.SELL, 10_300, 1_000))
        with anyio.fail_after(10):
            await node.wait_for_seq(3)
        assert (node.replica.seq, node.book_hash) == (3, market.books[-1])
        assert asked[:2] == [1, 2]
        tg.cancel_scope.cancel()


@dataclass
class FakeSubmit:
    """A submit_order worker that fails the first `fail_first` requests."""

    fail_first: int = 0
    refuse: str | None = None
    transient: str = "ERR_UNAVAILABLE: process worker down"
    seen: list[Any] = field(default_factory=list)

    async def __call__(self, payload: JSON) -> JSON:
        self.seen.append(payload)
        if self.refuse is not None:
            raise ServiceError(self.refuse)
        if len(self.seen) <= self.fail_first:
            raise ServiceError(self.transient)
        return {"seq": 41, "orderId": payload["orderId"]}


async def submit_to(network: MemoryNetwork, fake: FakeSubmit) -> SubmitReply:
    """Alice submits one buy through `fake`, served as `submit_order` on `network`."""
    async with (
        MemoryTransport(network) as worker,
        MemoryTransport(network) as transport,
        anyio.create_task_group() as tg,
    ):
        await tg.start(worker.serve, {"submit_order": fake})
        node = ClientNode(transport, "alice", SPEC)
        submitted = await node.submit({"side": "buy", "price": "1", "amount": "1"}, timeout=5)
        tg.cancel_scope.cancel()
    return submitted


async def test_submit_retries_with_the_same_order_id(network: MemoryNetwork) -> None:
    fake = FakeSubmit(fail_first=2)
    submitted = await submit_to(network, fake)
    assert submitted.seq == 41
    assert len(fake.seen) == 3
    assert len({p["orderId"] for p in fake.seen}) == 1
    assert fake.seen[0]["clientId"] == "alice"


async def test_submit_retries_when_the_server_timed_the_handler_out(
    network: MemoryNetwork,
) -> None:
    # The Grenache server answers ERR_TIMEOUT for a handler that ran past its bound (a
    # stalled disk under the journal): the order may or may not be journaled, so it is
    # not "refused" (it could still trade); a retry with the same orderId gets the first
    # reply, or journals it once.
    fake = FakeSubmit(fail_first=1, transient="ERR_TIMEOUT: handler took longer than 30.0 s")
    submitted = await submit_to(network, fake)
    assert submitted.seq == 41
    assert len(fake.seen) == 2
    assert len({p["orderId"] for p in fake.seen}) == 1


async def test_submit_refused_and_timeout(network: MemoryNetwork) -> None:
    fake = FakeSubmit(refuse="ERR_VALIDATION: price: not a multiple of 0.01")
    async with MemoryTransport(network) as transport:
        node = ClientNode(transport, "alice", SPEC)
        with pytest.raises(TimeoutError, match="submit_order not accepted within"):
            await node.submit({"side": "buy", "price": "1", "amount": "1"}, timeout=0.3)
        async with MemoryTransport(network) as worker, anyio.create_task_group() as tg:
            await tg.start(worker.serve, {"submit_order": fake})
            with pytest.raises(OrderRefused, match="ERR_VALIDATION: price"):
                await node.submit({"side": "buy", "price": "1.001", "amount": "1"})
            tg.cancel_scope.cancel()


async def test_a_submit_not_acknowledged_says_whether_it_may_have_been_taken(
    network: MemoryNetwork,
) -> None:
    """Exit 3 (not sent) and exit 5 (may still execute) rest on this (issue 16)."""
    async with MemoryTransport(network) as transport:
        node = ClientNode(transport, "alice", SPEC)
        order = {"side": "buy", "price": "1", "amount": "1"}
        with pytest.raises(NotAcknowledged) as nobody:
            await node.submit(order, timeout=0.3)
        assert not nobody.value.maybe_taken  # no peer: surely not sent

        async def silent(_payload: JSON) -> JSON:
            await anyio.sleep_forever()
            return None

        async with MemoryTransport(network) as worker, anyio.create_task_group() as tg:
            await tg.start(worker.serve, {"submit_order": silent})
            with pytest.raises(NotAcknowledged) as lost:
                await node.submit(order, timeout=0.3)
            tg.cancel_scope.cancel()
        assert lost.value.maybe_taken  # it reached a worker that never answered


def test_new_order_id_shape() -> None:
    for client in ("client1", "_x", "." * 64, "a" * 64):
        order_id = new_order_id(client)
        assert 1 <= len(order_id) <= 64
        assert not order_id.startswith("_")
    assert new_order_id("c1") != new_order_id("c1")


# ---------------------------------------------------------------- the whole program


@asynccontextmanager
async def _exchange(network: MemoryNetwork, workdir: Path) -> AsyncIterator[None]:
    """Both real workers on `network`, until the block ends."""
    from exchange.matcher import ProcessWorker
    from exchange.sequencer import Journal, SubmitWorker

    with Journal(workdir / "journal.sqlite") as journal:
        async with (
            MemoryTransport(network) as submit_t,
            MemoryTransport(network) as process_t,
            anyio.create_task_group() as tg,
        ):
            await tg.start(
                ProcessWorker(
                    process_t,
                    workdir / "process.sqlite",
                    SPEC,
                    sequencer_key=SEQUENCER_PUBLIC,
                    signing_key=MATCHER_KEY,
                ).run
            )
            await tg.start(SubmitWorker(submit_t, journal, SPEC, signing_key=SEQUENCER_KEY).run)
            yield
            tg.cancel_scope.cancel()


async def test_run_client_once_json_ends_with_done(network: MemoryNetwork, tmp_path: Path) -> None:
    workdir = tmp_path
    out = io.StringIO()
    async with _exchange(network, workdir):
        async with MemoryTransport(network) as transport:
            sell = parse_client_args(
                ["clientId=bob", "type=Sell", "amount=3", "price=100", "--once", "--json"]
            )
            assert await run_client(sell, transport, io.StringIO(), head_interval=0.05) == 0
        async with MemoryTransport(network) as transport:
            args = parse_client_args(
                ["clientId=alice", "type=Buy", "amount=1", "price=100", "--once", "--json"]
            )
            status = await run_client(args, transport, out, head_interval=0.05)
    assert status == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    kinds = [r["event"] for r in lines]
    assert kinds[0] == "started"
    assert "submitted" in kinds
    assert "accepted" in kinds
    fill = next(r for r in lines if r["event"] == "fill")
    assert fill["role"] == "taker"
    assert fill["counterparty"] == "bob"
    done = lines[-1]
    assert done["event"] == "done"
    assert done["seq"] == 2
    replay = replay_journal(workdir / "journal.sqlite", SPEC)
    assert (replay.seq, replay.book_hash) == (2, done["book"])
    assert [o.remaining for o in replay.book.orders()] == [2_000]


async def test_run_client_bad_order_is_a_usage_error(
    network: MemoryNetwork, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse_client_args(["clientId=alice", "type=Buy", "amount=1", "price=100.001"])
    async with MemoryTransport(network) as transport:
        assert await run_client(args, transport, io.StringIO()) == 2
    assert "bad order: price" in capsys.readouterr().err


async def _head_now() -> JSON:
    return signed_head(0, None)


async def test_run_client_refused_order_exits_1(network: MemoryNetwork) -> None:
    fake = FakeSubmit(refuse="ERR_VALIDATION: amount: too large")
    out = io.StringIO()
    async with MemoryTransport(network) as worker, anyio.create_task_group() as tg:
        head = lambda _payload: _head_now()  # noqa: E731
        await tg.start(worker.serve, {"submit_order": fake, "orderbook_head": head})
        args = parse_client_args(["clientId=a", "type=Buy", "amount=1", "price=1", "--once"])
        async with MemoryTransport(network) as transport:
            assert await run_client(args, transport, out, head_interval=3600) == 1
        tg.cancel_scope.cancel()
    assert "order refused: ERR_VALIDATION: amount: too large" in out.getvalue()


async def test_run_client_times_out_without_workers(
    network: MemoryNetwork, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse_client_args(["clientId=a", "--once", "--timeout=0.5"])
    async with MemoryTransport(network) as transport:
        assert await run_client(args, transport, io.StringIO(), head_interval=0.05) == 3
    assert "orderbook_head" in capsys.readouterr().err


async def test_heads_are_taken_only_from_the_matcher_key_trusted_on_first_use(
    market: Market, network: MemoryNetwork
) -> None:
    await market.order("bob", Side.SELL, 10_100, 1_000)
    replies: list[JSON] = [signed_head(market.seq, market.roots[-1])]

    async def head(_: JSON) -> JSON:
        return replies[-1]

    trusted: list[str] = []
    async with (
        MemoryTransport(network) as worker,
        MemoryTransport(network) as transport,
        anyio.create_task_group() as tg,
    ):
        await tg.start(worker.serve, {"orderbook_head": head})
        node = ClientNode(transport, "alice", SPEC, on_matcher_key=lambda k: trusted.append(
            public_key_hex(k)))  # fmt: skip
        assert (await node.fetch_head()).seq == 1
        assert trusted == [public_key_hex(MATCHER_KEY)]  # recorded, once
        await node.replica.sync()
        assert node.replica.seq == 1
        forger = named_key("forger")
        for forged in (
            {"seq": 10**9, "root": market.roots[-1]},  # unsigned
            sign_head(Head(10**9, market.roots[-1]), forger).to_wire(),  # another key
            {**signed_head(1, market.roots[-1]), "seq": 10**9},  # the matcher's, altered
        ):
            replies.append(forged)
            with pytest.raises(AuthFailed):
                await node.fetch_head()
            assert node.head.seq == 1  # the bound and the replica are as they were
            assert node.replica.seq == 1
        assert trusted == [public_key_hex(MATCHER_KEY)]
        tg.cancel_scope.cancel()


async def test_a_given_matcher_key_refuses_any_other_from_the_first_head(
    market: Market, network: MemoryNetwork
) -> None:
    await market.order("bob", Side.SELL, 10_100, 1_000)

    async def head(_: JSON) -> JSON:
        return sign_head(Head(market.seq, market.roots[-1]), named_key("impostor")).to_wire()

    async with (
        MemoryTransport(network) as worker,
        MemoryTransport(network) as transport,
        anyio.create_task_group() as tg,
    ):
        await tg.start(worker.serve, {"orderbook_head": head})
        node = ClientNode(transport, "alice", SPEC, matcher_key=MATCHER_KEY.public_key())
        with pytest.raises(AuthFailed, match="not the matcher key this client trusts"):
            await node.fetch_head()
        assert node.head.seq == 0
        tg.cancel_scope.cancel()
