"""The run book end to end, as real processes on two real grapes.

One exchange for the whole module (two grapes with the challenge's flags plus
``-b 127.0.0.1``; the submit_order worker on the first grape, the process_order worker
on the second), and clients that are real `bin/client.py` processes. The tests run in
file order and share the book; each checks its replicas against `dex replay`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from support.keys import signed

from e2e.harness import ClientRun, Exchange, Proc, running_exchange
from exchange.protocol import PROCESS_DOMAIN, sign_object
from exchange.runtime import load_or_create_key
from transports import RemoteError
from transports.grenache import GrenacheTransport

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    with running_exchange(tmp_path_factory.mktemp("runbook")) as exchange:
        yield exchange


def assert_agrees_with_replay(exchange: Exchange, runs: list[ClientRun]) -> None:
    """Every client exited 0, and its replica's book is the replay's at the same seq."""
    for run in runs:
        assert run.returncode == 0, f"{run.argv}\n{run.stderr}\n{run.records}"
        done = run.done
        assert done["book"] == exchange.replay(upto=done["seq"])["book"], run.argv


def ensure_history(exchange: Exchange) -> None:
    """At least one version exists (a watcher only prints a book once there is one)."""
    if exchange.replay()["seq"] == 0:
        run = exchange.run_client(["clientId=opener", "type=Buy", "amount=0.001", "price=1"])
        assert run.returncode == 0, run.stderr


def test_concurrent_buyers_fill_exactly_the_resting_sell(exchange: Exchange) -> None:
    """First in the module, on an empty book: nothing else can trade with these orders."""
    base = exchange.replay()
    (seller,) = exchange.run_clients([["clientId=seller", "type=Sell", "amount=10", "price=100"]])
    assert seller.returncode == 0, seller.stderr
    buyers = exchange.run_clients(
        [
            ["clientId=buyerA", "type=Buy", "amount=7", "price=100"],
            ["clientId=buyerB", "type=Buy", "amount=7", "price=100"],
        ]
    )
    assert_agrees_with_replay(exchange, [seller, *buyers])
    fills = [b.filled() for b in buyers]
    assert sum(fills) == 10_000, fills  # exactly 10, in lots of 0.001
    assert sorted(fills) == [3_000, 7_000]
    assert all(f["counterparty"] == "seller" for b in buyers for f in b.of("fill"))
    # The second buyer's remaining 4 rests; the seller's order is gone.
    final = exchange.watch_once("auditor1")
    assert final.done["book"] == exchange.replay()["book"]
    assert final.done["seq"] == exchange.replay()["seq"] == base["seq"] + 3
    assert exchange.replay()["orders"] == base["orders"] + 1


def test_five_clients_crossing_and_resting(exchange: Exchange) -> None:
    orders = [
        ["clientId=client1", "type=Sell", "amount=5", "price=101"],
        ["clientId=client2", "type=Sell", "amount=2.5", "price=102.5"],
        ["clientId=client3", "type=Buy", "amount=3", "price=99"],
        ["clientId=client4", "type=Buy", "amount=1.25", "price=98.5", "tif=GTC"],
        ["clientId=client5", "side=sell", "amount=2", "price=99"],
    ]
    first = exchange.run_clients(orders)
    assert_agrees_with_replay(exchange, first)
    # Then takers that cross what rests: the challenge's form, on either grape.
    second = exchange.run_clients(
        [
            ["clientId=client1", "type=Buy", "amount=1", "price=101"],
            ["clientId=client3", "type=Sell", "amount=2", "price=98.5", "tif=IOC"],
            ["clientId=client5", "type=Buy", "amount=10", "price=103", "tif=IOC"],
        ]
    )
    assert_agrees_with_replay(exchange, second)
    assert any(run.of("fill") for run in first + second)
    for run in first + second:
        assert run.of("accepted"), run.records
    # Every replica, asked at the end, holds the replay's book.
    replay = exchange.replay()
    for grape in (0, 1):
        final = exchange.watch_once(f"auditor{grape + 2}", grape=grape)
        assert (final.done["seq"], final.done["book"]) == (replay["seq"], replay["book"])


def _wait_for_book(proc: Proc, timeout: float = 20) -> None:
    proc.wait_for_text('"event":"book"', timeout)


def test_dead_client_does_not_block_processing(exchange: Exchange) -> None:
    ensure_history(exchange)
    watcher = exchange.start_watcher("doomed")
    _wait_for_book(watcher)
    watcher.kill9()  # it stays announced on both grapes, for ever
    started = time.monotonic()
    runs = exchange.run_clients(
        [
            ["clientId=after1", "type=Buy", "amount=1", "price=90"],
            ["clientId=after2", "type=Sell", "amount=1", "price=110"],
        ]
    )
    assert_agrees_with_replay(exchange, runs)
    runs += [exchange.run_client(["clientId=after3", "type=Sell", "amount=0.5", "price=90"])]
    assert_agrees_with_replay(exchange, runs[-1:])
    assert time.monotonic() - started < 20
    assert exchange.process is not None
    assert exchange.process.alive()


async def _errors_for(transport: GrenacheTransport, name: str, payload: object) -> str:
    with pytest.raises(RemoteError) as info:
        await transport.request(name, payload, timeout=5)
    return info.value.message


@pytest.mark.anyio
async def test_bad_input_at_each_boundary_changes_nothing(
    exchange: Exchange, tmp_path: Path
) -> None:
    await anyio.to_thread.run_sync(ensure_history, exchange)
    watcher = exchange.start_watcher("witness", grape=1)
    await anyio.to_thread.run_sync(_wait_for_book, watcher)
    before = await anyio.to_thread.run_sync(exchange.replay)
    async with GrenacheTransport(grape=exchange.grapes[0]) as transport:
        head = await transport.request("orderbook_head", None, timeout=5)
        assert head["seq"] == before["seq"]

        # submit_order: unsigned; signed, but a missing field, a price off the tick.
        evil = {"clientId": "evil", "orderId": "e0", "side": "buy", "amount": "1"}
        bad_submits = [
            (42, "ERR_AUTH: submit_order payload: must be a signed object"),
            ({**evil, "price": "1"}, "ERR_AUTH: pubKey: required"),
            (signed({"side": "buy", "price": "1", "amount": "1", "clientId": None}),
             "ERR_VALIDATION: clientId: "),
            (signed({**evil, "price": "1.001"}), "ERR_VALIDATION: price: "),
            (signed({**evil, "price": "1", "side": "up"}), "ERR_VALIDATION: side"),
        ]  # fmt: skip
        for payload, expected in bad_submits:
            assert (await _errors_for(transport, "submit_order", payload)).startswith(expected)

        # process_order: not the shape, a gap, a command the core refuses.
        good = {"clientId": "evil", "orderId": "e1", "side": "buy", "price": "1", "amount": "1"}
        nxt = head["seq"] + 1
        # Signed with the sequencer's own key (an operator's test), the other checks
        # still hold; unsigned, nothing gets past the signature.
        sequencer = load_or_create_key(exchange.workdir / "sequencer.key")
        bad_process: list[tuple[object, str]] = [
            ("nonsense", "ERR_AUTH"),
            ({"seq": nxt, "ts": 1, "command": good}, "ERR_AUTH"),
        ]
        for shape in (
            ({"seq": "one", "ts": 1, "command": good}, "ERR_BAD_REQUEST"),
            ({"seq": nxt + 5, "ts": 1, "command": good}, "ERR_SEQ_GAP"),
            ({"seq": nxt, "ts": 1, "command": {**good, "price": "-1"}}, "ERR_VALIDATION"),
        ):
            bad_process.append((sign_object(PROCESS_DOMAIN, shape[0], sequencer), shape[1]))
        for payload, code in bad_process:
            message = await _errors_for(transport, "process_order", payload)
            assert message.startswith(code + ": "), message

        # orderbook_updated to every announced client: live ones refuse, dead ones fail.
        for payload in (42, None, "not-a-hash", "A" * 40, {"root": head["root"]}):
            results = await transport.map("orderbook_updated", payload, timeout=5)
            assert results
            assert not any(r.ok for r in results), results
            refused = [r for r in results if (r.error or "").startswith("ERR_BAD_REQUEST: ")]
            assert refused, results

        assert await transport.request("orderbook_head", None, timeout=5) == head
    assert await anyio.to_thread.run_sync(exchange.replay) == before
    # The witness saw no new version and no problem, and it still works.
    log = [json.loads(line) for line in watcher.text().splitlines() if line.startswith("{")]
    assert not [r for r in log if r["event"] == "warning"]
    assert max(r["seq"] for r in log if r["event"] == "book") == before["seq"]
    run = await anyio.to_thread.run_sync(
        lambda: exchange.run_client(["clientId=honest", "type=Buy", "amount=1", "price=95"])
    )
    assert_agrees_with_replay(exchange, [run])
    await anyio.to_thread.run_sync(lambda: watcher.wait_for_text(f'"seq":{run.seq},', 20))
