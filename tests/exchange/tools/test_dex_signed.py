"""`dex book`, `dex head` and `dex order`/`orders`/`fills` believe a head only when the
matcher signed it, and the root too; `dex status` says whether the head it shows is."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from support.keys import MATCHER_KEY, named_key, signed_head

from exchange.protocol import Head, InvalidVersion, sign_head
from exchange.tools._network import fetch_book, fetch_verified_head, network_status
from exchange.tools._orders import from_network
from exchange.tools._remote import _print_status
from exchange.versions import VersionPublisher
from orderbook_core import DEFAULT_SPEC, NewOrder, OrderBook, Side
from transports import JSON, MemoryNetwork, MemoryTransport

pytestmark = pytest.mark.anyio


async def _fetch_book(transport: Any) -> Any:
    return await fetch_book(transport, root=None, depth=5, timeout=5)


async def _book_with_head(head_of: Any, signing_key: Any, fetch: Any = _fetch_book) -> Any:
    network = MemoryNetwork()
    book = OrderBook(DEFAULT_SPEC)
    events = book.apply(NewOrder(1, 1, "a", "a-1", Side.BUY, 100, 1000))
    async with (
        MemoryTransport(network) as matcher,
        MemoryTransport(network) as dex,
        anyio.create_task_group() as tg,
    ):
        publisher = VersionPublisher(matcher, DEFAULT_SPEC, signing_key=signing_key)
        root = await publisher.publish(book, events, seq=1, first=1)

        async def head(_: JSON) -> JSON:
            return head_of(root)

        await tg.start(matcher.serve, {"orderbook_head": head})
        outcome: Any
        try:
            outcome = await fetch(dex)
        except InvalidVersion as exc:
            outcome = exc  # raised below, out of the task group
        tg.cancel_scope.cancel()
    if isinstance(outcome, InvalidVersion):
        raise outcome
    return outcome


async def test_a_signed_head_and_root_give_the_book() -> None:
    view = await _book_with_head(lambda root: signed_head(1, root), MATCHER_KEY)
    assert (view.seq, view.ladder.orders) == (1, 1)


@pytest.mark.parametrize(
    ("head_of", "signing_key", "problem"),
    [
        (lambda root: {"seq": 1, "root": root}, MATCHER_KEY, "orderbook_head: ERR_AUTH"),
        (
            lambda root: {**signed_head(1, root), "seq": 2},
            MATCHER_KEY,
            "orderbook_head: ERR_AUTH: sig: not a valid signature",
        ),
        (lambda root: signed_head(1, root), named_key("other"), "signed by another key"),
        (lambda root: signed_head(1, root), None, "not signed by the matcher"),
        (
            lambda root: sign_head(Head(1, root), named_key("other")).to_wire(),
            MATCHER_KEY,
            "signed by another key",
        ),
    ],
)
@pytest.mark.parametrize("command", ["book", "head", "orders"])
async def test_an_unsigned_or_mismatched_head_or_root_is_refused(
    head_of: Any, signing_key: Any, problem: str, command: str
) -> None:
    with pytest.raises(InvalidVersion, match=problem):
        await _book_with_head(head_of, signing_key, _FETCHERS[command])


async def _fetch_head(transport: Any) -> Any:
    return await fetch_verified_head(transport, 5)


async def _fetch_orders(transport: Any) -> Any:
    return await from_network(transport, "a", None, timeout=5, versions=10)


_FETCHERS = {"book": _fetch_book, "head": _fetch_head, "orders": _fetch_orders}


async def test_head_gives_the_roots_book_hash_and_orders_the_clients_orders() -> None:
    found = await _book_with_head(lambda root: signed_head(1, root), MATCHER_KEY, _fetch_head)
    view = await _book_with_head(lambda root: signed_head(1, root), MATCHER_KEY)
    assert found.book == view.book_hash is not None
    assert found.to_json()["book"] == view.book_hash
    mine = await _book_with_head(lambda root: signed_head(1, root), MATCHER_KEY, _fetch_orders)
    assert list(mine.resting) == ["a-1"]
    assert (mine.history.orders["a-1"].state, mine.history.complete) == ("resting", True)


async def test_a_head_whose_root_has_another_seq_is_refused() -> None:
    with pytest.raises(InvalidVersion, match="the head says seq 2, its root says seq 1"):
        await _book_with_head(lambda root: signed_head(2, root), MATCHER_KEY, _fetch_head)


class _NoPeers:
    """A grape link that finds nobody announced: `network_status` then only asks the head."""

    url = "http://grape.test"

    async def lookup(self, name: str, *, fresh: bool = False) -> list[str]:
        return []


async def _status_with_head(head_of: Any, signing_key: Any) -> Any:
    async def fetch(transport: Any) -> Any:
        return await network_status(_NoPeers(), transport, 5)  # type: ignore[arg-type]

    return await _book_with_head(head_of, signing_key, fetch)


async def test_status_verifies_the_head_it_shows(capsys: pytest.CaptureFixture[str]) -> None:
    found = await _status_with_head(lambda root: signed_head(1, root), MATCHER_KEY)
    assert (found.head.seq, found.head_problem) == (1, None)
    _print_status(found, {"error": "no journal here"}, None)
    assert f"signed by {found.head.key} (verified)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("head_of", "problem"),
    [
        (lambda root: {"seq": 1, "root": root}, "orderbook_head: ERR_AUTH"),
        (
            lambda root: {**signed_head(1, root), "seq": 2},
            "orderbook_head: ERR_AUTH: sig: not a valid signature",
        ),
    ],
)
async def test_status_says_when_the_head_it_shows_does_not_verify(
    head_of: Any, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    found = await _status_with_head(head_of, MATCHER_KEY)
    assert found.head is not None
    assert found.head_problem.startswith(problem)
    _print_status(found, {"error": "no journal here"}, None)
    out = capsys.readouterr().out
    assert f"NOT VERIFIED: {problem}" in out
    assert "(verified)" not in out
