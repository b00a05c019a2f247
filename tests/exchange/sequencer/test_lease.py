"""The writer's lease on a real nats-server: one holder at a time, a dead holder's lease
expires and a standby takes it, a paused holder finds its own lease run out and the
journal refuses its appends, and sequencers sharing a stream hand over without losing
or repeating an answer."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry
from support.exchange_rig import wait_until
from support.keys import SEQUENCER_KEY, signed
from support.nats import NatsServer, running_nats

from exchange.protocol import DEFAULT_MARKET, StorageUnavailable, market_names, parse_entry
from exchange.runtime import NullMetrics
from exchange.runtime._prometheus import metrics_for
from exchange.sequencer import SubmitWorker, open_journal, open_lease
from exchange.sequencer._jetstream import JetStreamJournal
from orderbook_core import DEFAULT_SPEC, MarketSpec
from transports import MemoryNetwork, open_transport

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with running_nats(1, tmp_path_factory.mktemp("lease")) as servers:
        yield servers[0]


def _spec(name: str) -> MarketSpec:
    return dataclasses.replace(DEFAULT_SPEC, market=name)


def _entry(i: int, seq: int, spec: MarketSpec) -> Any:
    command = {"op": "new", "clientId": "c1", "orderId": f"o{i}", "side": "buy",
               "price": "100", "amount": "1"}  # fmt: skip
    return parse_entry(seq, 1_000 + i, command, spec)


def test_a_sqlite_journal_has_no_lease(tmp_path: Path) -> None:
    with open_journal(f"sqlite:{tmp_path / 'j.db'}") as journal:
        assert open_lease(journal, ttl=1.0) is None


def test_one_holder_at_a_time_and_a_dead_holders_lease_expires(nats: NatsServer) -> None:
    spec = _spec("LEASE-A")
    with open_journal(nats.url, spec) as one, open_journal(nats.url, spec) as two:
        first, second = open_lease(one, ttl=1.0), open_lease(two, ttl=1.0)
        assert first is not None
        assert second is not None
        assert first.acquire()
        assert first.valid()
        assert not second.acquire()
        assert not second.valid()
        assert second.current() == first.holder
        assert first.renew()
        assert first.valid()
        # The holder stops renewing (dead, or paused): its own clock gives up first...
        time.sleep(0.8)  # ttl 1 s, margin 0.25 s: past its own deadline
        assert not first.valid()
        with pytest.raises(StorageUnavailable, match="lease has run out"):
            one.append([_entry(1, 1, spec)])
        # ... then the server expires the key and the standby takes it.
        deadline = time.monotonic() + 10
        while not second.acquire():
            assert time.monotonic() < deadline, "the lease never expired"
            time.sleep(0.05)
        assert second.valid()
        assert second.current() == second.holder
        assert not first.renew()  # another holder's revision: lost, for good
        two.append([_entry(1, 1, spec)])
        assert two.head() == 1


def test_a_released_lease_is_taken_at_once_and_the_taker_reads_the_head(
    nats: NatsServer,
) -> None:
    spec = _spec("LEASE-B")
    with open_journal(nats.url, spec) as one, open_journal(nats.url, spec) as two:
        first, second = open_lease(one, ttl=30.0), open_lease(two, ttl=30.0)
        assert first is not None
        assert second is not None
        assert first.acquire()
        one.append([_entry(1, 1, spec), _entry(2, 2, spec)])
        assert two.head() == 0  # opened before those appends
        first.release()
        assert not first.valid()
        assert second.current() is None
        assert second.acquire()
        assert two.head() == 2
        assert two.last_ts() == 1_002
        two.append([_entry(3, 3, spec)])
        with pytest.raises(StorageUnavailable):  # no lease any more: refused before sending
            one.append([_entry(4, 3, spec)])


class _Steps(NullMetrics):
    def __init__(self) -> None:
        self.step_downs = 0
        self.active: list[bool] = []

    def stepped_down(self) -> None:
        self.step_downs += 1

    def sequencer_active(self, active: bool) -> None:
        self.active.append(active)


def order(i: int, market: str | None = None) -> dict[str, Any]:
    return signed({"clientId": "alice", "orderId": f"o{i}", "side": "buy", "price": "100",
                   "amount": "1"}, market=market)  # fmt: skip


def submit_name(spec: MarketSpec) -> str:
    """The market's own submit_order (each test has a market of its own: its stream)."""
    return market_names(spec.market).submit_order


@pytest.mark.anyio
async def test_the_standby_serves_only_once_the_active_one_is_gone(nats: NatsServer) -> None:
    spec = _spec("LEASE-C")
    network = MemoryNetwork()
    with open_journal(nats.url, spec) as one, open_journal(nats.url, spec) as two:
        lease_a, lease_b = open_lease(one, ttl=1.0), open_lease(two, ttl=1.0)
        steps = _Steps()
        async with (
            open_transport("memory", network=network) as server_a,
            open_transport("memory", network=network) as server_b,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            a = SubmitWorker(server_a, one, spec, signing_key=SEQUENCER_KEY, lease=lease_a)
            b = SubmitWorker(
                server_b, two, spec, signing_key=SEQUENCER_KEY, lease=lease_b, metrics=steps
            )
            async with anyio.create_task_group() as a_group:
                await a_group.start(a.run)
                b_started = anyio.Event()

                async def run_b() -> None:
                    await tg.start(b.run)
                    b_started.set()

                tg.start_soon(run_b)
                first = [
                    await client.request(submit_name(spec), order(i, market=spec.market), timeout=5)
                    for i in range(3)
                ]
                assert [r["seq"] for r in first] == [1, 2, 3]
                await anyio.sleep(1.5)  # longer than the ttl: a renews, b stands by
                assert not b_started.is_set()
                assert steps.active == []
                a_group.cancel_scope.cancel()  # a stops (and gives the lease up)
            with anyio.fail_after(10):
                await b_started.wait()
            assert steps.active == [True]
            again = await client.request(submit_name(spec), order(1, market=spec.market), timeout=5)
            assert again == first[1]  # a repeat: the first answer
            assert (
                await client.request(submit_name(spec), order(3, market=spec.market), timeout=5)
            )["seq"] == 4
            tg.cancel_scope.cancel()
    with open_journal(nats.url, spec) as journal:
        assert [e.wire["orderId"] for e in journal.entries()] == ["o0", "o1", "o2", "o3"]


@pytest.mark.anyio
async def test_an_active_sequencer_that_loses_its_lease_steps_down_and_counts_it(
    nats: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    spec = _spec("LEASE-D")
    network = MemoryNetwork()
    with open_journal(nats.url, spec) as journal:
        assert isinstance(journal, JetStreamJournal)
        lease = open_lease(journal, ttl=1.0)
        assert lease is not None
        steps = _Steps()
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            worker = SubmitWorker(
                server, journal, spec, signing_key=SEQUENCER_KEY, lease=lease, metrics=steps
            )
            await tg.start(worker.run)
            assert (
                await client.request(submit_name(spec), order(0, market=spec.market), timeout=5)
            )["seq"] == 1

            async def steal() -> None:  # as if it expired and another sequencer took it
                kv = await journal.jetstream.key_value(f"{journal.stream}_LEASE")
                await kv.delete("holder")

            await anyio.to_thread.run_sync(journal.call, steal())
            # Counted as it steps down, while still marked active: wait for it to be
            # marked active again (after False), not for the True it had before.
            await wait_until(lambda: steps.step_downs == 1 and steps.active[-2:] == [False, True])
            # It stepped down, stood by, took the free lease again and serves on.
            assert steps.step_downs == 1
            assert steps.active == [True, False, True]
            assert (
                await client.request(submit_name(spec), order(1, market=spec.market), timeout=5)
            )["seq"] == 2
            tg.cancel_scope.cancel()
    assert "stepping down: lost the writer's lease" in caplog.text


def test_the_step_downs_and_the_active_gauge_are_exported() -> None:
    registry = CollectorRegistry()
    metrics = metrics_for("sequencer", registry)
    market = {"market": DEFAULT_MARKET}
    assert registry.get_sample_value("dex_sequencer_active", market) == 0
    metrics.sequencer_active(True)
    assert registry.get_sample_value("dex_sequencer_active", market) == 1
    metrics.stepped_down()
    metrics.sequencer_active(False)
    assert registry.get_sample_value("dex_sequencer_step_downs_total", market) == 1
    assert registry.get_sample_value("dex_sequencer_active", market) == 0
