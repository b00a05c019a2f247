"""The first-key race: first commands of one new clientId, signed by two keys at once.

Trust on first use binds a clientId to the key of its first accepted command. When two
keys send a clientId's first command at the same moment, exactly one key is bound, its
command alone is journaled, and the other gets ``ERR_AUTH``; never two bindings, never
a success for the loser (not even the reply of the winner's command when both used the
same orderId), on both journal backends (SQLite, and JetStream on a real nats-server).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.keys import SEQUENCER_KEY, named_key
from support.nats import running_nats

from exchange.protocol import market_names, public_key_hex, sign_order
from exchange.sequencer import JournalBackend, SubmitWorker, open_journal
from orderbook_core import DEFAULT_SPEC
from transports import MemoryNetwork, RemoteError, Transport, open_transport

pytestmark = pytest.mark.anyio

PAIRS = 40
"""Racing pairs per run: every one is a new clientId with its two keys."""

SPEC = dataclasses.replace(DEFAULT_SPEC, market="RACE-USD")
SUBMIT = market_names(SPEC.market).submit_order  # a market of its own: its own names


@contextmanager
def journal_on(backend: str, tmp_path: Path) -> Iterator[JournalBackend]:
    if backend == "sqlite":
        with open_journal(f"sqlite:{tmp_path / 'journal.db'}", SPEC) as journal:
            yield journal
        return
    with running_nats(1, tmp_path) as servers, open_journal(servers[0].url, SPEC) as journal:
        yield journal


@asynccontextmanager
async def submitting(journal: JournalBackend) -> AsyncIterator[Transport]:
    network = MemoryNetwork()
    async with (
        open_transport("memory", network=network) as server,
        open_transport("memory", network=network) as client,
        anyio.create_task_group() as tg,
    ):
        worker = SubmitWorker(server, journal, SPEC, max_backoff=0.2, signing_key=SEQUENCER_KEY)
        await tg.start(worker.run)
        yield client
        tg.cancel_scope.cancel()


def first_order(client_id: str, order_id: str, key_name: str) -> dict[str, Any]:
    order = {"clientId": client_id, "orderId": order_id, "side": "buy", "price": "100",
             "amount": "1"}  # fmt: skip
    return sign_order(order, named_key(key_name), SPEC.market)


async def race(client: Transport, orders: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Send every order at once; each key name's reply, or its refusal's message."""
    outcomes: dict[str, Any] = {}

    async def send(name: str, payload: dict[str, Any]) -> None:
        try:
            outcomes[name] = await client.request(SUBMIT, payload, timeout=20)
        except RemoteError as exc:
            outcomes[name] = exc.message

    async with anyio.create_task_group() as tg:
        for name, payload in orders:
            tg.start_soon(send, name, payload)
    return outcomes


BACKENDS = ["sqlite", pytest.param("nats", marks=pytest.mark.integration)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("same_order_id", [False, True], ids=["own-ids", "same-id"])
async def test_one_key_binds_and_the_loser_gets_err_auth(
    backend: str, same_order_id: bool, tmp_path: Path
) -> None:
    """`PAIRS` new clientIds, each sent two first orders (keys a and b) at the same
    instant, all pairs at once; with ``same-id`` both orders carry the same orderId (the
    same deduplication key), with ``own-ids`` each key its own."""
    orders: list[tuple[str, dict[str, Any]]] = []
    for i in range(PAIRS):
        for side in "ab":
            order_id = "first" if same_order_id else f"first-{side}"
            orders.append((f"{side}{i}", first_order(f"racer{i}", order_id, f"race-{side}{i}")))
    with journal_on(backend, tmp_path) as journal:
        async with submitting(journal) as client:
            outcomes = await race(client, orders)
        keys = journal.client_keys()
        entries = list(journal.entries())
    by_client: dict[str, list[Any]] = {}
    for entry in entries:
        by_client.setdefault(entry.wire["clientId"], []).append(entry)
    for i in range(PAIRS):
        replies = {side: outcomes[f"{side}{i}"] for side in "ab"}
        won = [side for side, reply in replies.items() if isinstance(reply, dict)]
        assert len(won) == 1, f"racer{i}: {replies}"
        (winner,) = won
        loser = "b" if winner == "a" else "a"
        assert str(replies[loser]).startswith("ERR_AUTH: "), f"racer{i}: {replies}"
        assert keys[f"racer{i}"] == public_key_hex(named_key(f"race-{winner}{i}"))
        (entry,) = by_client[f"racer{i}"]  # the winner's order alone is journaled
        assert entry.seq == replies[winner]["seq"]
        assert entry.wire["orderId"] == replies[winner]["orderId"]
    assert len(keys) == PAIRS
    assert len(entries) == PAIRS
    assert [e.seq for e in entries] == list(range(1, PAIRS + 1))


@pytest.mark.parametrize("backend", BACKENDS)
async def test_after_the_race_only_the_bound_key_is_served(backend: str, tmp_path: Path) -> None:
    """The binding the race made holds afterwards: the winner's key goes on, the loser's
    key is refused for a new order and for a cancel, and nothing of it is stored."""
    with journal_on(backend, tmp_path) as journal:
        async with submitting(journal) as client:
            outcomes = await race(
                client,
                [(side, first_order("racer", f"o-{side}", f"race-{side}")) for side in "ab"],
            )
            winner = "a" if isinstance(outcomes["a"], dict) else "b"
            loser = "b" if winner == "a" else "a"
            again = await client.request(
                SUBMIT, first_order("racer", "next", f"race-{winner}"), timeout=10
            )
            assert again["orderId"] == "next"
            refusals = await race(
                client,
                [
                    ("new", first_order("racer", "mine", f"race-{loser}")),
                    ("repeat", first_order("racer", f"o-{winner}", f"race-{loser}")),
                    ("cancel", sign_order(
                        {"op": "cancel", "clientId": "racer", "orderId": f"o-{winner}"},
                        named_key(f"race-{loser}"),
                        SPEC.market,
                    )),
                ],
            )  # fmt: skip
        assert all(str(m).startswith("ERR_AUTH: ") for m in refusals.values()), refusals
        assert journal.client_keys() == {"racer": public_key_hex(named_key(f"race-{winner}"))}
        assert [e.wire["orderId"] for e in journal.entries()] == [f"o-{winner}", "next"]
