"""One writer per database: a second worker on the same file refuses to start.

The lock is an OS lock (`flock`) on ``<db>.lock``: held for the worker's life, dropped by
the kernel when the process ends however it ends, never taken by readers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from support.exchange_rig import wait_until
from support.keys import MATCHER_KEY, SEQUENCER_KEY, SEQUENCER_PUBLIC, by_sequencer, signed

from exchange.matcher import ProcessWorker
from exchange.protocol import DatabaseInUse
from exchange.runtime import lock_path, one_writer
from exchange.sequencer import Journal, SubmitWorker
from exchange.tools import main as dex
from transports import MemoryNetwork, open_transport

REPO = Path(__file__).resolve().parents[2]

HOLD = """
import sys, time
from exchange.runtime import one_writer
with one_writer(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    db = tmp_path / "data" / "w.db"
    with one_writer(db) as path:
        assert path == lock_path(db) == tmp_path / "data" / "w.db.lock"
        with pytest.raises(DatabaseInUse) as info, one_writer(db):
            pass
        assert str(info.value) == (
            f"{db} is in use by another worker (pid {os.getpid()}), which holds {path}:"
            " stop that one first, or give this one another --db"
        )
    with one_writer(db):  # released when the block ended; the lock file stays
        assert path.exists()


def test_the_lock_dies_with_its_process_even_by_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(DatabaseInUse, match=rf"\(pid {holder.pid}\)"), one_writer(db):
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
    with one_writer(db):  # no stale lock: the kernel dropped it with the process
        pass


@pytest.mark.anyio
async def test_a_second_process_worker_on_one_database_refuses_and_the_first_goes_on(
    tmp_path: Path,
) -> None:
    network = MemoryNetwork()
    db = tmp_path / "process.db"
    async with (
        open_transport("memory", network=network) as first_net,
        open_transport("memory", network=network) as second_net,
        open_transport("memory", network=network) as client,
        anyio.create_task_group() as tg,
    ):
        first = ProcessWorker(
            first_net, db, sequencer_key=SEQUENCER_PUBLIC, signing_key=MATCHER_KEY
        )
        await tg.start(first.run)
        second = ProcessWorker(
            second_net, db, sequencer_key=SEQUENCER_PUBLIC, signing_key=MATCHER_KEY
        )
        with pytest.raises(DatabaseInUse, match=r"process\.db is in use by another worker"):
            await second.run()
        assert len(network.peers("process_order")) == 1  # the second never served
        command = {"clientId": "a", "orderId": "a1", "side": "buy", "price": "1", "amount": "1"}
        reply = await client.request(
            "process_order", by_sequencer({"seq": 1, "ts": 1, "command": command})
        )
        assert reply["seq"] == 1
        assert first.head_seq == 1
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_second_submit_worker_on_one_journal_refuses_and_readers_still_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.db"
    network = MemoryNetwork()
    with Journal(path) as journal, Journal(path) as again:
        async with (
            open_transport("memory", network=network) as first_net,
            open_transport("memory", network=network) as second_net,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            await tg.start(SubmitWorker(first_net, journal, signing_key=SEQUENCER_KEY).run)
            with pytest.raises(DatabaseInUse, match=r"journal\.db is in use by another worker"):
                await SubmitWorker(second_net, again, signing_key=SEQUENCER_KEY).run()
            order = {"clientId": "a", "orderId": "a1", "side": "buy", "price": "1", "amount": "1"}
            assert (await client.request("submit_order", signed(order)))["seq"] == 1
            # Readers take no lock: dex journal and dex replay work while the worker runs.
            await wait_until(lambda: journal.head() == 1)
            capsys.readouterr()
            assert dex(["journal", "--db", str(path), "--json"]) == 0
            assert '"orderId":"a1"' in capsys.readouterr().out
            assert dex(["replay", "--db", str(path), "--json"]) == 0
            assert '"seq":1' in capsys.readouterr().out
            tg.cancel_scope.cancel()
