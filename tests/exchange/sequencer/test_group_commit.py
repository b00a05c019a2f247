"""Group commit: submits that arrive together share one transaction, each reply after it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.exchange_rig import running_exchange, wait_until
from support.keys import SEQUENCER_KEY, client_key, signed

from exchange.protocol import public_key_hex
from exchange.sequencer import Journal, SubmitWorker
from orderbook_core import DEFAULT_SPEC, command_to_wire, parse_command
from transports import MemoryNetwork, RemoteError, open_transport

pytestmark = pytest.mark.anyio


def order(i: int, **extra: Any) -> dict[str, Any]:
    return signed({"clientId": f"c{i % 3}", "orderId": f"o{i}", "side": "buy", "price": "100",
                   "amount": "1", **extra})  # fmt: skip


class CountingJournal(Journal):
    """Counts appends (one per transaction) and can be told to fail the next ones."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.appends: list[int] = []
        self.fail = 0

    def append(self, entries: Any, bindings: Any = None, requests: Any = None) -> None:
        if self.fail:
            self.fail -= 1
            raise sqlite3.OperationalError("disk I/O error")
        super().append(entries, bindings, requests)
        self.appends.append(len(entries))


async def test_concurrent_submits_share_commits_and_get_gap_free_numbers(tmp_path: Path) -> None:
    network = MemoryNetwork()
    with CountingJournal(tmp_path / "j.db") as journal:
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            await tg.start(
                SubmitWorker(server, journal, clock=lambda: 5, signing_key=SEQUENCER_KEY).run
            )
            replies: list[Any] = []

            async def submit(i: int) -> None:
                replies.append(await client.request("submit_order", order(i), timeout=5))

            async with anyio.create_task_group() as submits:
                for i in range(200):
                    submits.start_soon(submit, i)
            tg.cancel_scope.cancel()
        assert sorted(r["seq"] for r in replies) == list(range(1, 201))
        assert sum(journal.appends) == 200
        assert len(journal.appends) < 200  # several commands per transaction
        assert [e.seq for e in journal.entries()] == list(range(1, 201))
        # Each reply names the entry that holds its order.
        by_order = {e.wire["orderId"]: e.seq for e in journal.entries()}
        assert all(by_order[r["orderId"]] == r["seq"] for r in replies)


async def test_a_failed_commit_fails_every_queued_submit_and_leaves_no_gap(
    tmp_path: Path,
) -> None:
    network = MemoryNetwork()
    with CountingJournal(tmp_path / "j.db") as journal:
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            worker = SubmitWorker(
                server, journal, clock=lambda: 5, max_backoff=0.1, signing_key=SEQUENCER_KEY
            )
            await tg.start(worker.run)
            await client.request("submit_order", order(0), timeout=5)
            journal.fail = 1
            outcomes: list[str] = []

            async def submit(i: int) -> None:
                try:
                    reply = await client.request("submit_order", order(i), timeout=5)
                    outcomes.append(f"ok {reply['seq']}")
                except RemoteError as exc:
                    outcomes.append(exc.message.split(":")[0])

            async with anyio.create_task_group() as submits:
                for i in range(1, 4):
                    submits.start_soon(submit, i)
            assert "ERR_UNAVAILABLE" in outcomes  # the failed transaction's submits
            # The retries (same orderIds) are numbered on from the journal's real head.
            for i in range(1, 4):
                await client.request("submit_order", order(i), timeout=5)
            tg.cancel_scope.cancel()
        assert [e.seq for e in journal.entries()] == [1, 2, 3, 4]
        assert next(e.wire["orderId"] for e in journal.entries()) == "o0"


async def test_first_commands_of_new_clients_bind_their_keys_with_them(tmp_path: Path) -> None:
    # Many first commands committed together: each binding lands with its command.
    async with running_exchange(tmp_path, MemoryNetwork(), process=False) as rig:

        async def submit(i: int) -> None:
            await rig.submit(signed({**order(i), "clientId": f"new{i}"}))

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(submit, i)
        keys = rig.journal.client_keys()
        assert keys == {f"new{i}": public_key_hex(client_key(f"new{i}")) for i in range(50)}


async def test_the_forwarder_sends_runs_of_entries(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, MemoryNetwork(), process=False) as rig:
        for i in range(40):
            await rig.submit(order(i))
        sizes: list[int] = []

        async def count_runs(payload: Any) -> Any:
            entries = payload.get("entries", [payload])
            sizes.append(len(entries))
            return {"seq": entries[-1]["seq"], "root": "ab" * 20}

        async with (
            open_transport("memory", network=rig.network) as fake,
            anyio.create_task_group() as tg,
        ):
            await tg.start(fake.serve, {"process_order": count_runs})
            await wait_until(lambda: rig.submitter.forwarded == 40)
            tg.cancel_scope.cancel()
        assert sum(sizes) == 40
        assert max(sizes) > 1


async def test_a_journal_entry_is_the_normalized_command_without_its_signature(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path, MemoryNetwork(), process=False) as rig:
        payload = {"clientId": "c1", "orderId": "s1", "side": "sell", "price": "1", "amount": "2"}
        reply = await rig.submit(payload)
        entry = rig.journal.get(reply["seq"])
        assert entry is not None
        command = parse_command(payload, DEFAULT_SPEC, seq=reply["seq"], ts=0)
        assert entry.wire == command_to_wire(command, DEFAULT_SPEC)
        assert entry.wire["orderId"] == reply["orderId"] == "s1"
