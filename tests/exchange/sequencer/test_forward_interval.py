"""The forwarder's bound on versions per second (`SubmitWorker(forward_interval=...)`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from support.exchange_rig import wait_until
from support.keys import SEQUENCER_KEY, signed

from exchange.sequencer import Journal, SubmitWorker
from transports import MemoryNetwork, open_transport

pytestmark = pytest.mark.anyio

INTERVAL = 0.3


def order(i: int) -> dict[str, Any]:
    return signed({"clientId": f"c{i % 3}", "orderId": f"o{i}", "side": "buy", "price": "100",
                   "amount": "1"})  # fmt: skip


async def test_runs_wait_for_the_interval_and_a_lone_command_does_not(tmp_path: Path) -> None:
    network = MemoryNetwork()
    runs: list[tuple[float, list[int]]] = []

    async def process_order(payload: Any) -> Any:
        seqs = [entry["seq"] for entry in payload.get("entries", [payload])]
        runs.append((anyio.current_time(), seqs))
        return {"seq": seqs[-1], "root": "ab" * 20}

    with Journal(tmp_path / "j.db") as journal:
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            open_transport("memory", network=network) as matcher,
            anyio.create_task_group() as tg,
        ):
            await tg.start(matcher.serve, {"process_order": process_order})
            worker = SubmitWorker(
                server, journal, signing_key=SEQUENCER_KEY, forward_interval=INTERVAL
            )
            await tg.start(worker.run)
            started = anyio.current_time()
            await client.request("submit_order", order(0), timeout=5)
            await wait_until(lambda: worker.forwarded == 1)
            # After a quiet spell the first command goes at once.
            assert runs[0][0] - started < INTERVAL
            for i in range(1, 6):  # while the interval runs: they wait and go as one
                await client.request("submit_order", order(i), timeout=5)
            await wait_until(lambda: worker.forwarded == 6)
            tg.cancel_scope.cancel()
    assert [seqs for _, seqs in runs] == [[1], [2, 3, 4, 5, 6]]
    assert runs[1][0] - runs[0][0] >= INTERVAL * 0.99


async def test_a_full_run_does_not_wait(tmp_path: Path) -> None:
    network = MemoryNetwork()
    runs: list[list[int]] = []

    async def process_order(payload: Any) -> Any:
        seqs = [entry["seq"] for entry in payload.get("entries", [payload])]
        runs.append(seqs)
        return {"seq": seqs[-1], "root": "ab" * 20}

    with Journal(tmp_path / "j.db") as journal:
        # Four commands journaled while no matcher serves.
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            await tg.start(SubmitWorker(server, journal, signing_key=SEQUENCER_KEY).run)
            for i in range(4):
                await client.request("submit_order", order(i), timeout=5)
            tg.cancel_scope.cancel()
        # A sequencer with a long interval: runs of batch_size go at once.
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as matcher,
            anyio.create_task_group() as tg,
        ):
            await tg.start(matcher.serve, {"process_order": process_order})
            worker = SubmitWorker(
                server, journal, signing_key=SEQUENCER_KEY, forward_interval=5.0, batch_size=2
            )
            await tg.start(worker.run)
            with anyio.fail_after(4):  # well under the interval
                await wait_until(lambda: worker.forwarded == 4)
            tg.cancel_scope.cancel()
    assert runs == [[1, 2], [3, 4]]


def test_the_interval_is_bounded(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal, pytest.raises(ValueError, match="forward"):
        SubmitWorker(None, journal, signing_key=SEQUENCER_KEY, forward_interval=-1)  # type: ignore[arg-type]
