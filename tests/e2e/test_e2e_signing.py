"""Nobody can act for someone else: forgeries on real grapes, refused, state unchanged.

One exchange for the module (its own two grapes and both workers as processes). An
attacker is a plain Grenache peer that can reach a grape: it sends a cancel in another
client's name and a ``process_order`` of its own for the next seq. Each is refused
with ``ERR_AUTH``; the journal, the matcher's head and the book stay as they were, and
honest clients go on trading with replicas that agree with ``dex replay``. Last, the
attacker publishes a forged version far ahead and answers ``orderbook_head`` for it:
a client refuses the head and keeps its replica.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.keys import named_key
from support.node import run_node

from e2e.harness import ClientRun, Exchange, running_exchange
from exchange.client import ClientNode
from exchange.protocol import (
    PROCESS_DOMAIN,
    AuthFailed,
    Head,
    OrderRefused,
    new_entry,
    sign_head,
    sign_object,
    sign_order,
)
from exchange.sequencer import Journal
from exchange.versions import VersionPublisher
from orderbook_core import DEFAULT_SPEC, NewOrder, OrderBook, Side
from transports import RemoteError, TransportError
from transports.grenache import GrenacheTransport

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

STRANGER = named_key("stranger")


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    with running_exchange(tmp_path_factory.mktemp("signing")) as exchange:
        yield exchange


def _ok(exchange: Exchange, run: ClientRun) -> None:
    assert run.returncode == 0, f"{run.argv}\n{run.stderr}\n{run.records}"
    assert run.done["book"] == exchange.replay(upto=run.done["seq"])["book"]


async def _refusals(grape: str, requests: list[tuple[str, Any]]) -> list[str]:
    messages = []
    async with GrenacheTransport(grape=grape) as transport:
        for name, payload in requests:
            with pytest.raises(RemoteError) as info:
                await transport.request(name, payload, timeout=5)
            messages.append(info.value.message)
    return messages


async def _head(grape: str) -> Any:
    async with GrenacheTransport(grape=grape) as transport:
        return await transport.request("orderbook_head", None, timeout=5)


async def _replica(grape: str, client_id: str, order_id: str) -> tuple[int, Any, Any]:
    """A fresh replica's (seq, book hash, the resting order `order_id` or None)."""
    async with GrenacheTransport(grape=grape) as transport:
        node = ClientNode(transport, "replica")  # trusts the first matcher key it sees
        await node.fetch_head()
        await node.replica.sync()
        return node.replica.seq, node.book_hash, node.book.get_order(client_id, order_id)


def test_a_forged_cancel_is_refused_and_the_order_stays(exchange: Exchange) -> None:
    victim = exchange.run_client(
        ["clientId=victim", "type=Buy", "amount=2", "price=50", "orderId=v1"]
    )
    _ok(exchange, victim)
    before = exchange.replay()
    head = anyio.run(_head, exchange.grapes[1])
    assert head["seq"] == before["seq"]
    cancel = {"op": "cancel", "clientId": "victim", "orderId": "v1"}
    messages = anyio.run(
        _refusals,
        exchange.grapes[0],
        [
            ("submit_order", cancel),  # unsigned, as before signing
            ("submit_order", sign_order(cancel, STRANGER)),  # signed, by another key
            ("submit_order", sign_order(cancel, Ed25519PrivateKey.generate())),
        ],
    )
    assert all(m.startswith("ERR_AUTH: ") for m in messages), messages
    assert exchange.replay() == before  # nothing journaled
    assert anyio.run(_head, exchange.grapes[1]) == head  # nothing applied by the matcher
    # A fresh replica, through either grape, holds the book as it was: the order rests.
    for grape in exchange.grapes:
        seq, book, order = anyio.run(_replica, grape, "victim", "v1")
        assert (seq, book) == (before["seq"], before["book"])
        assert order is not None
        assert order.remaining == 2000, order
    # The victim's own cancel (its key, from its key file) still works.
    own = exchange.run_client(["clientId=victim", "op=cancel", "orderId=v1"])
    _ok(exchange, own)
    assert own.returncode == 0
    assert exchange.replay()["seq"] == before["seq"] + 1


def test_a_strangers_process_order_is_refused_and_the_sequencer_goes_on(
    exchange: Exchange,
) -> None:
    opener = exchange.run_client(["clientId=opener", "type=Sell", "amount=1", "price=200"])
    _ok(exchange, opener)
    before = exchange.replay()
    head = anyio.run(_head, exchange.grapes[1])
    assert head["seq"] == before["seq"]
    nxt = {
        "seq": head["seq"] + 1,
        "ts": 1,
        "command": {"op": "new", "clientId": "mallory", "orderId": "m1", "side": "buy",
                    "ordType": "limit", "price": "200.00", "amount": "1.000", "tif": "GTC",
                    "postOnly": False},
    }  # fmt: skip
    messages = anyio.run(
        _refusals,
        exchange.grapes[1],
        [
            ("process_order", nxt),  # unsigned
            ("process_order", sign_object(PROCESS_DOMAIN, nxt, STRANGER)),
            ("process_order", {"entries": [nxt]}),
        ],
    )
    assert all(m.startswith("ERR_AUTH: ") for m in messages), messages
    assert anyio.run(_head, exchange.grapes[1]) == head  # the matcher applied nothing
    # The sequencer's own command for that seq is applied, and everyone agrees.
    buyer = exchange.run_client(["clientId=buyer", "type=Buy", "amount=1", "price=200"])
    _ok(exchange, buyer)
    assert buyer.seq == head["seq"] + 1
    assert buyer.filled() == 1000
    assert anyio.run(_head, exchange.grapes[1])["seq"] == buyer.seq


def test_a_node_peer_signs_an_order_and_verifies_the_version(exchange: Exchange) -> None:
    """grenache-nodejs-http and Node's crypto only, from the formats in docs/protocol.md."""
    matcher_key = (exchange.workdir / "matcher.pub").read_text().strip()
    out = run_node(
        "signed_peer.js",
        *("--grape", exchange.grapes[0], "--clientId", "nodejs", "--orderId", "n-1"),
        *("--matcherKey", matcher_key),
        *("--instance", (exchange.workdir / "sequencer.pub").read_text().strip()),
    )
    assert out["ok"], out
    assert out["submitted"]["orderId"] == "n-1"
    assert out["forged"].startswith("ERR_AUTH: sig: not a valid signature"), out
    # Its modify, signed with its requestId, is applied once however often it is sent.
    assert out["modified"] == {"seq": out["submitted"]["seq"] + 1, "orderId": "n-1"}
    assert out["modifiedAgain"] == out["modified"]
    assert out["renamedModify"].startswith("ERR_AUTH: sig: not a valid signature"), out
    assert out["unnamedModify"].startswith("ERR_AUTH: requestId: required"), out
    # Its batch is answered per order: the tampered one refused alone, the repeat repeated.
    batch = out["batch"]
    assert batch[0] == {"seq": out["modified"]["seq"] + 1, "orderId": "n-1-b1"}, out
    assert batch[1]["error"].startswith("ERR_AUTH: sig: not a valid signature"), out
    assert batch[2] == batch[0]
    assert out["head"]["seq"] >= out["modified"]["seq"]
    assert out["head"]["instance"] == (exchange.workdir / "sequencer.pub").read_text().strip()
    assert out["root"]["seq"] == out["head"]["seq"]
    # The exchange agrees: the order is in the journal, under the Node peer's key.
    entry = exchange.replay(upto=out["submitted"]["seq"])
    assert entry["seq"] == out["submitted"]["seq"]
    with Journal(exchange.journal) as journal:
        assert journal.client_keys()["nodejs"] == out["pubKey"]


def test_a_batch_on_real_grapes_is_answered_per_order_and_replays(exchange: Exchange) -> None:
    """A client's submits made at once travel as one batch; each is answered alone."""
    orders: list[dict[str, Any]] = [
        {"orderId": f"bt-{i}", "side": "buy", "price": "0.5", "amount": "1"} for i in range(20)
    ]
    orders[3]["price"] = "0.001"  # off the tick: refused alone

    async def submit() -> tuple[list[Any], int]:
        async with GrenacheTransport(grape=exchange.grapes[0]) as transport:
            node = ClientNode(transport, "batcher", submit_linger=0.05)
            results = await node.submit_many(orders, timeout=30)
            assert node.submits is not None
            return list(results), node.submits.requests

    results, requests = anyio.run(submit)
    assert requests == 1
    assert isinstance(results[3], OrderRefused)
    assert str(results[3]).startswith("ERR_VALIDATION: price")
    taken = [r for i, r in enumerate(results) if i != 3]
    assert [r.order_id for r in taken] == [o["orderId"] for i, o in enumerate(orders) if i != 3]
    seqs = [r.seq for r in taken]
    assert seqs == list(range(seqs[0], seqs[0] + 19))
    with Journal(exchange.journal) as journal:
        stored = [journal.get(seq) for seq in seqs]
    assert [e.command.order_id if e else None for e in stored] == [r.order_id for r in taken]
    deadline = time.monotonic() + 60
    while (replica := anyio.run(_replica, exchange.grapes[1], "batcher", "bt-0"))[0] < seqs[-1]:
        assert time.monotonic() < deadline, replica
        time.sleep(0.2)
    assert replica[2] is not None
    assert replica[1] == exchange.replay(upto=replica[0])["book"]


def test_a_forged_head_is_refused_and_the_replica_stays(exchange: Exchange) -> None:
    """Last in the module: it stops the matcher (the forger then answers its name)."""
    _ok(exchange, exchange.run_client(["clientId=early", "type=Sell", "amount=1", "price=300"]))
    before = exchange.replay()
    anyio.run(_forge_the_head, exchange, before)
    exchange.start_process()  # the real matcher again, with its key from its key file
    _ok(exchange, exchange.run_client(["clientId=late", "type=Buy", "amount=1", "price=300"]))


async def _forge_the_head(exchange: Exchange, before: dict[str, Any]) -> None:
    async with (
        GrenacheTransport(grape=exchange.grapes[0]) as client,
        GrenacheTransport(grape=exchange.grapes[1]) as attacker,
        anyio.create_task_group() as tg,
    ):
        node = ClientNode(client, "honest")  # trusts the first matcher key it sees
        head = await node.fetch_head()
        await node.replica.sync()
        assert (head.seq, node.replica.seq) == (before["seq"], before["seq"])
        assert node.book_hash == before["book"]
        assert exchange.process is not None
        await anyio.to_thread.run_sync(exchange.process.stop)
        # A self-consistent version numbered far ahead, with a book of the forger's.
        book = OrderBook(DEFAULT_SPEC)
        command = NewOrder(10**9, 1, "mallory", "m-1", Side.SELL, 100, 999_000)
        events = book.apply(command)
        entry = new_entry(command, DEFAULT_SPEC)
        forged = await VersionPublisher(attacker, DEFAULT_SPEC).publish(
            book, events, seq=10**9, first=10**9, commands=[entry]
        )

        async def forged_head(_payload: Any) -> Any:
            return sign_head(Head(10**9, forged), STRANGER).to_wire()

        await tg.start(attacker.serve, {"orderbook_head": forged_head})
        # The dead matcher refuses connections; once the client's lookup names the
        # forger, its head is what answers, and it is refused.
        refusal: AuthFailed | None = None
        with anyio.fail_after(30):
            while refusal is None:
                try:
                    await node.fetch_head()
                except TransportError:
                    await anyio.sleep(0.2)
                except AuthFailed as exc:
                    refusal = exc
                else:
                    pytest.fail("a head was taken while only the forger answers")
        assert "not the matcher key this client trusts" in str(refusal)
        await node.on_updated(forged)  # and its push
        await node.replica.sync()
        assert (node.head.seq, node.replica.seq) == (before["seq"], before["seq"])
        assert node.book_hash == before["book"]
        tg.cancel_scope.cancel()
