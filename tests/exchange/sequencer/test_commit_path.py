"""The commit path: every commit in a worker thread (never on the event loop), every
reply after its own commit, and a bound on commits per second while they come close
together (`commit_interval`)."""

from __future__ import annotations

import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.keys import SEQUENCER_KEY, signed

from exchange.sequencer import Journal, SubmitWorker
from transports import MemoryNetwork, open_transport

pytestmark = pytest.mark.anyio


def order(i: int) -> dict[str, Any]:
    return signed({"clientId": f"c{i % 3}", "orderId": f"o{i}", "side": "buy", "price": "100",
                   "amount": "1"})  # fmt: skip


class RecordingJournal(Journal):
    """Records each append: its size, whether it ran on the event loop's thread and when
    it began (monotonic: anyio's clock on asyncio). (A failed commit:
    test_group_commit.py.)"""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.appends: list[tuple[int, bool, float]] = []  # (entries, on the loop, time)
        self.loop_thread = threading.get_ident()

    def append(self, entries: Any, bindings: Any = None, requests: Any = None) -> None:
        on_loop = threading.get_ident() == self.loop_thread
        self.appends.append((len(entries), on_loop, time.monotonic()))
        super().append(entries, bindings, requests)


async def submit_all(client: Any, orders: range) -> list[Any]:
    replies: list[Any] = []

    async def submit(i: int) -> None:
        replies.append(await client.request("submit_order", order(i), timeout=10))

    async with anyio.create_task_group() as submits:
        for i in orders:
            submits.start_soon(submit, i)
    return replies


async def test_commits_run_in_a_thread_and_every_reply_follows_its_commit(
    tmp_path: Path,
) -> None:
    network = MemoryNetwork()
    with RecordingJournal(tmp_path / "j.db") as journal:
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            worker = SubmitWorker(server, journal, signing_key=SEQUENCER_KEY)
            await tg.start(worker.run)
            replies = [await client.request("submit_order", order(0), timeout=10)]
            replies += await submit_all(client, range(1, 200))
            tg.cancel_scope.cancel()
        assert sorted(r["seq"] for r in replies) == list(range(1, 201))
        assert [e.seq for e in journal.entries()] == list(range(1, 201))
        by_order = {e.wire["orderId"]: e.seq for e in journal.entries()}
        assert all(by_order[r["orderId"]] == r["seq"] for r in replies)
        # The commit (its fsync) never blocks the event loop: always a worker thread.
        assert not any(on_loop for _, on_loop, _ in journal.appends)
        assert journal.appends[0][0] == 1


async def test_close_commits_wait_for_the_interval_unless_alone(tmp_path: Path) -> None:
    interval = 0.5
    network = MemoryNetwork()
    with RecordingJournal(tmp_path / "j.db") as journal:
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            worker = SubmitWorker(
                server,
                journal,
                signing_key=SEQUENCER_KEY,
                commit_interval=interval,
            )
            await tg.start(worker.run)
            lone: list[float] = []

            async def one(i: int) -> None:
                started = anyio.current_time()
                await client.request("submit_order", order(i), timeout=10)
                lone.append(anyio.current_time() - started)

            # A client alone, one order at a time: its commits hold one entry each, so
            # none waits for the interval (it would only wait for itself).
            for i in range(3):
                await one(i)
            # Others are sending (a commit of several): a trickle that follows within
            # the interval waits for it, and goes as one commit.
            await client.request("submit_order", [order(i) for i in range(3, 7)], timeout=10)
            async with anyio.create_task_group() as trickle:
                for i in range(7, 12):
                    trickle.start_soon(
                        partial(client.request, timeout=10), "submit_order", order(i)
                    )
                    await anyio.sleep(0.01)
            await anyio.sleep(interval * 2)  # a quiet spell: the next one goes at once
            await one(12)
            tg.cancel_scope.cancel()
        assert all(seconds < interval for seconds in lone)
        assert [size for size, _, _ in journal.appends] == [1, 1, 1, 4, 5, 1]
        starts = [at for _, _, at in journal.appends]
        assert starts[4] - starts[3] >= interval * 0.99
        assert [e.seq for e in journal.entries()] == list(range(1, 14))


def test_the_commit_interval_is_bounded(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        for bad in (-0.1, 1.5):
            with pytest.raises(ValueError, match="commit_interval"):
                SubmitWorker(object(), journal, signing_key=SEQUENCER_KEY, commit_interval=bad)  # type: ignore[arg-type]
