"""A modify on real grapes: client -> sequencer -> matcher -> replica, and its replay.

One exchange for the module (its own two grapes and both workers as processes). A
client rests an order and modifies it with ``bin/client op=modify``; its replica, a
watcher's and the matcher's head agree with ``dex replay``. Then an attacker who
captured that signed modify re-sends it, byte for byte, through a grape: it is
answered with the first reply, and the journal, the matcher's head and every replica
stay as they were. The same requestId on another modify is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from e2e.harness import ClientRun, Exchange, running_exchange
from exchange.protocol import sign_order
from exchange.runtime import load_or_create_key
from transports import RemoteError
from transports.grenache import GrenacheTransport

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    with running_exchange(tmp_path_factory.mktemp("modify")) as exchange:
        yield exchange


def _ok(exchange: Exchange, run: ClientRun) -> None:
    assert run.returncode == 0, f"{run.argv}\n{run.stderr}\n{run.records}"
    assert run.done["book"] == exchange.replay(upto=run.done["seq"])["book"]


async def _send(grape: str, payload: dict[str, Any]) -> Any:
    async with GrenacheTransport(grape=grape) as transport:
        return await transport.request("submit_order", payload, timeout=10)


async def _refused(grape: str, payload: dict[str, Any]) -> str:
    with pytest.raises(RemoteError) as info:
        await _send(grape, payload)
    return info.value.message


async def _head(grape: str) -> Any:
    async with GrenacheTransport(grape=grape) as transport:
        return await transport.request("orderbook_head", None, timeout=5)


def _resting(book: dict[str, Any]) -> list[tuple[str, str]]:
    return [(level["price"], level["amount"]) for level in book["bids"]]


def test_a_modify_goes_through_and_a_captured_one_changes_nothing(
    exchange: Exchange, tmp_path: Path
) -> None:
    key_file = tmp_path / "alice.key"
    alice = ["clientId=alice", f"--key-file={key_file}"]
    _ok(exchange, exchange.run_client([*alice, "type=Buy", "amount=5", "price=100", "orderId=a1"]))
    words = ["op=modify", "orderId=a1", "price=98", "amount=4", "requestId=r1"]
    modified = exchange.run_client([*alice, *words])
    _ok(exchange, modified)
    assert modified.done["outcome"].startswith("order a1: modified to 4.000 at 98.00")
    assert _resting(exchange.replay()) == [("98.00", "4.000")]
    # The owner moves on; a watcher's replica is the journal's book.
    _ok(exchange, exchange.run_client([*alice, "op=modify", "orderId=a1", "price=99"]))
    before = exchange.replay()
    assert _resting(before) == [("99.00", "4.000")]
    watched = exchange.watch_once("watcher")
    assert watched.done["book"] == before["book"]
    head = anyio.run(_head, exchange.grapes[1])
    assert head["seq"] == before["seq"]
    # The capture: the very payload bin/client signed (Ed25519 signatures are
    # deterministic, so signing the same fields with the same key gives the same bytes).
    captured = sign_order(
        {"clientId": "alice", "op": "modify", "orderId": "a1", "price": "98", "amount": "4",
         "requestId": "r1"},
        load_or_create_key(key_file),
    )  # fmt: skip
    reply = anyio.run(_send, exchange.grapes[0], captured)
    assert reply == {"seq": modified.seq, "orderId": "a1"}  # its first reply
    message = anyio.run(_refused, exchange.grapes[0], {**captured, "price": "97"})
    assert message.startswith("ERR_AUTH: sig: not a valid signature")
    other = exchange.run_client([*alice, "op=modify", "orderId=a1", "price=97", "requestId=r1"])
    assert other.returncode == 1, other.records
    assert "ERR_VALIDATION: requestId: already used by another modify" in str(other.records)
    # Nothing moved: journal, matcher, replicas.
    after = exchange.replay()
    assert after == before
    assert anyio.run(_head, exchange.grapes[1]) == head
    watched = exchange.watch_once("watcher")
    assert (watched.done["seq"], watched.done["book"]) == (before["seq"], before["book"])
