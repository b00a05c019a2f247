"""The submit_order worker on a JetStream journal (a real nats-server): acknowledged means
stored, a repeat is answered across restarts, no quorum means ERR_UNAVAILABLE, and a
worker that finds another writer's entries steps down."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.keys import SEQUENCER_KEY, signed
from support.nats import NatsServer, running_nats

from exchange.protocol import Refused, market_names
from exchange.sequencer import SteppedDown, SubmitWorker, open_journal
from orderbook_core import DEFAULT_SPEC, MarketSpec
from transports import MemoryNetwork, RemoteError, open_transport

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    with running_nats(1, tmp_path) as servers:
        yield servers[0]


def _spec(name: str) -> MarketSpec:
    return dataclasses.replace(DEFAULT_SPEC, market=name)


def order(i: int, client: str = "alice", market: str | None = None) -> dict[str, Any]:
    return signed({"clientId": client, "orderId": f"o{i}", "side": "buy", "price": "100",
                   "amount": "1"}, market=market)  # fmt: skip


def submit_name(spec: MarketSpec) -> str:
    """The market's own submit_order (each test has a market of its own: its stream)."""
    return market_names(spec.market).submit_order


async def test_acknowledged_orders_are_in_the_stream_and_repeats_survive_a_restart(
    nats: NatsServer,
) -> None:
    spec = _spec("ACK-USD")
    network = MemoryNetwork()
    replies = []
    for round_ in range(2):  # the second worker is a restart on the same stream
        with open_journal(nats.url, spec) as journal:
            async with (
                open_transport("memory", network=network) as server,
                open_transport("memory", network=network) as client,
                anyio.create_task_group() as tg,
            ):
                worker = SubmitWorker(
                    server, journal, spec, max_backoff=0.2, signing_key=SEQUENCER_KEY
                )
                await tg.start(worker.run)
                replies.append(
                    [
                        await client.request(
                            submit_name(spec), order(i, market=spec.market), timeout=5
                        )
                        for i in range(5)
                    ]
                )
                tg.cancel_scope.cancel()
        if round_ == 0:
            assert [r["seq"] for r in replies[0]] == [1, 2, 3, 4, 5]
    assert replies[1] == replies[0]  # every repeat: the first answer, nothing stored twice
    with open_journal(nats.url, spec) as journal:
        assert [e.wire["orderId"] for e in journal.entries()] == [f"o{i}" for i in range(5)]
        assert list(journal.client_keys()) == ["alice"]


async def test_no_quorum_is_err_unavailable_and_trading_resumes(nats: NatsServer) -> None:
    spec = _spec("DOWN-USD")
    network = MemoryNetwork()
    with open_journal(nats.url, spec, timeout=1.0) as journal:
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            worker = SubmitWorker(server, journal, spec, max_backoff=0.2, signing_key=SEQUENCER_KEY)
            await tg.start(worker.run)
            assert (
                await client.request(submit_name(spec), order(0, market=spec.market), timeout=5)
            )["seq"] == 1
            nats.kill()
            with pytest.raises(RemoteError, match=r"^ERR_UNAVAILABLE: storage: "):
                await client.request(submit_name(spec), order(1, market=spec.market), timeout=10)
            nats.start()  # the same store: the stream is back
            with anyio.fail_after(30):
                while True:
                    try:
                        reply = await client.request(
                            submit_name(spec), order(1, market=spec.market), timeout=5
                        )
                        break
                    except RemoteError as exc:
                        if not exc.message.startswith("ERR_UNAVAILABLE"):
                            raise
                        await anyio.sleep(0.2)
            assert reply["seq"] == 2
            tg.cancel_scope.cancel()
    with open_journal(nats.url, spec) as journal:
        assert [e.wire["orderId"] for e in journal.entries()] == ["o0", "o1"]


async def test_a_worker_that_finds_another_writer_steps_down(
    nats: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    spec = _spec("TWO-USD")
    network = MemoryNetwork()
    with open_journal(nats.url, spec) as first, open_journal(nats.url, spec) as second:
        async with (
            open_transport("memory", network=network) as server_a,
            open_transport("memory", network=network) as server_b,
        ):
            a = SubmitWorker(server_a, first, spec, signing_key=SEQUENCER_KEY)
            b = SubmitWorker(server_b, second, spec, signing_key=SEQUENCER_KEY)  # seq 0: stale
            refused: list[str] = []
            done = anyio.Event()

            async def submit_to_b() -> None:
                try:
                    await b.submit(order(1, "bob", spec.market))
                except Refused as exc:
                    refused.append(str(exc))
                finally:
                    done.set()

            async with anyio.create_task_group() as tg:
                await tg.start(a.run)
                assert (await a.submit(order(0, market=spec.market)))["seq"] == 1
                stopped: list[BaseException] = []
                try:
                    async with anyio.create_task_group() as b_group:
                        await b_group.start(b.run)
                        tg.start_soon(submit_to_b)
                        await anyio.sleep(10)  # b's run ends its group first
                except* SteppedDown as group:
                    stopped.extend(group.exceptions)
                with anyio.fail_after(5):
                    await done.wait()
                assert (await a.submit(order(2, market=spec.market)))[
                    "seq"
                ] == 2  # the writer goes on
                tg.cancel_scope.cancel()
    assert refused == ["ERR_UNAVAILABLE: the sequencer stepped down"]
    assert len(stopped) == 1
    assert "stepping down" in caplog.text
    with open_journal(nats.url, spec) as journal:
        assert [e.wire["orderId"] for e in journal.entries()] == ["o0", "o2"]
