"""Crashes, as real processes: kill -9 each part mid-stream, restart it, lose nothing.

The process_order worker, then the submit_order worker, then a client are killed with
SIGKILL while orders are in flight, and restarted. Afterwards every order was applied
exactly once (the journal has each `(clientId, orderId)` once, and the replicas hold the
book `dex replay` computes from it) and the replicas converged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from e2e.harness import ClientRun, Exchange, Proc, running_exchange
from exchange.sequencer import Journal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PRICES = ["99", "100", "101", "100.5", "99.5", "102"]


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    with running_exchange(tmp_path_factory.mktemp("crash")) as exchange:
        yield exchange


class Stream:
    """Numbered orders with explicit ids, so the journal can be checked for each one."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.n = 0
        self.expected: set[tuple[str, str]] = set()

    def words(self) -> list[str]:
        self.n += 1
        client = f"c{self.n % 4}"
        side = "Buy" if self.n % 2 else "Sell"
        price = PRICES[self.n % len(PRICES)]
        order_id = f"{client}-o{self.n}"
        self.expected.add((client, order_id))
        return [
            f"clientId={client}",
            f"orderId={order_id}",
            f"type={side}",
            f"amount={1 + self.n % 3}",
            f"price={price}",
        ]

    def start(self, count: int) -> list[Proc]:
        return [self.exchange.start_client(self.words(), grape=i) for i in range(count)]


def finish_all(exchange: Exchange, procs: list[Proc]) -> list[ClientRun]:
    with ThreadPoolExecutor(max_workers=max(len(procs), 1)) as pool:
        return list(pool.map(exchange.finish, procs))


def assert_done(exchange: Exchange, runs: list[ClientRun]) -> None:
    for run in runs:
        assert run.returncode == 0, f"{run.argv}\n{run.stderr}\n{run.records}"
        assert run.done["book"] == exchange.replay(upto=run.done["seq"])["book"]


def test_kill9_each_part_and_restart(exchange: Exchange) -> None:
    stream = Stream(exchange)
    assert_done(exchange, finish_all(exchange, stream.start(3)))

    # 1. The process_order worker dies while orders are in flight.
    in_flight = stream.start(3)
    assert exchange.submit is not None
    in_flight[-1].wait_for_text('"event":"submitted"', 20)  # journaled
    assert exchange.process is not None
    exchange.process.kill9()
    in_flight += stream.start(2)  # submitted (journaled) while nobody processes
    time.sleep(1.0)
    exchange.start_process()
    assert_done(exchange, finish_all(exchange, in_flight))

    # 2. The submit_order worker dies; clients keep retrying until it is back.
    exchange.submit.kill9()
    waiting = stream.start(3)
    time.sleep(1.5)
    exchange.start_submit()
    assert_done(exchange, finish_all(exchange, waiting))

    # 3. A client dies after its order was accepted; run again, it is not applied twice.
    words = stream.words()
    victim = exchange.start_client(words)
    victim.wait_for_text('"event":"submitted"', 20)
    victim.kill9()
    again = exchange.finish(exchange.start_client(words))
    submitted = next(
        json.loads(line) for line in victim.text().splitlines() if '"submitted"' in line
    )
    first_seq = submitted["seq"]
    assert again.seq == first_seq  # the same (clientId, orderId): the first reply
    assert_done(exchange, [again])
    assert_done(exchange, finish_all(exchange, stream.start(2)))

    # Nothing lost, nothing twice: the journal holds each order exactly once ...
    with Journal(exchange.journal) as journal:
        keys = [(e.wire["clientId"], e.wire["orderId"]) for e in journal.entries()]
    assert len(keys) == len(set(keys)) == stream.n
    assert set(keys) == stream.expected
    # ... and every replica, on either grape, holds the book replayed from it.
    replay = exchange.replay()
    assert replay["seq"] == stream.n
    for grape in (0, 1):
        final = exchange.watch_once(f"auditor{grape}", grape=grape)
        assert (final.done["seq"], final.done["book"]) == (replay["seq"], replay["book"])
