"""`dex snapshot`: list the matcher's snapshots, check one against a replay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.keys import MATCHER_KEY, SEQUENCER_KEY, by_sequencer

from exchange.matcher import ProcessWorker, SnapshotStore, snapshot_dir
from exchange.protocol import parse_entry
from exchange.sequencer import Journal
from exchange.tools import main
from orderbook_core import DEFAULT_SPEC
from transports import MemoryNetwork, open_transport

pytestmark = pytest.mark.anyio


def new(client: str, order_id: str, side: str, price: str, amount: str) -> dict[str, Any]:
    return {"op": "new", "clientId": client, "orderId": order_id, "side": side,
            "price": price, "amount": amount}  # fmt: skip


COMMANDS: list[dict[str, Any]] = [
    new("bob", "b1", "sell", "100", "3"),
    new("carol", "c1", "sell", "101", "2"),
    new("alice", "a1", "buy", "100.5", "1"),  # trades 1 with b1
    {"op": "cancel", "clientId": "carol", "orderId": "c1"},
    new("dave", "d1", "buy", "99", "0.25"),
]


async def matcher_state(tmp_path: Path, commands: list[dict[str, Any]]) -> Path:
    """A matcher's database after `commands`, with a snapshot after the 2nd and the 4th."""
    db = tmp_path / "process_state.db"
    network = MemoryNetwork()
    async with (
        open_transport("memory", network=network) as server,
        open_transport("memory", network=network) as client,
        anyio.create_task_group() as tg,
    ):
        worker = ProcessWorker(
            server, db, sequencer_key=SEQUENCER_KEY.public_key(), signing_key=MATCHER_KEY,
            snapshot_every=0, snapshot_interval=0,
        )  # fmt: skip
        await tg.start(worker.run)
        for seq, command in enumerate(commands, start=1):
            payload = by_sequencer({"seq": seq, "ts": 1_000 + seq, "command": command})
            await client.request("process_order", payload, timeout=5)
            if seq in (2, 4):
                assert await worker.snapshot() == seq
        tg.cancel_scope.cancel()
    return db


def journal(path: Path, commands: list[dict[str, Any]]) -> Path:
    with Journal(path) as j:
        for seq, command in enumerate(commands, start=1):
            j.append([parse_entry(seq, 1_000 + seq, command, DEFAULT_SPEC)])
    return path


async def test_the_snapshots_are_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = await matcher_state(tmp_path, COMMANDS)
    assert main(["snapshot", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["SEQ", "ORDERS", "BYTES", "ROOT"]
    assert [line.split()[:2] for line in lines[1:]] == [["2", "2"], ["4", "1"]]
    assert main(["snapshot", "--db", str(db), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(s["seq"], s["ok"], s["orders"]) for s in listed] == [(2, True, 2), (4, True, 1)]


async def test_an_unusable_snapshot_is_shown_and_fails_the_listing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = await matcher_state(tmp_path, COMMANDS)
    path = SnapshotStore(snapshot_dir(db)).path(4)
    path.write_bytes(path.read_bytes()[:-1])
    assert main(["snapshot", "--db", str(db)]) == 1
    out = capsys.readouterr().out
    assert "UNUSABLE: snapshot 4:" in out
    assert "torn" in out


def test_no_snapshots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["snapshot", "--db", str(tmp_path / "p.db")]) == 0
    assert "no snapshots in" in capsys.readouterr().out


async def test_a_snapshot_checks_against_the_applied_log_and_the_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = await matcher_state(tmp_path, COMMANDS)
    path = journal(tmp_path / "journal.db", COMMANDS)
    assert main(["snapshot", "--db", str(db), "--check", "4"]) == 0
    assert "snapshot 4: OK: book " in capsys.readouterr().out
    assert main(["snapshot", "--db", str(db), "--check", "2", "--journal", str(path)]) == 0
    assert "= the replay of the journal" in capsys.readouterr().out
    assert main(["snapshot", "--db", str(db), "--check", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


async def test_a_mismatch_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = await matcher_state(tmp_path, COMMANDS)
    other = [*COMMANDS[:3], {"op": "cancel", "clientId": "bob", "orderId": "b1"}]
    path = journal(tmp_path / "journal.db", other)
    assert main(["snapshot", "--db", str(db), "--check", "4", "--journal", str(path)]) == 1
    assert "snapshot 4: MISMATCH: book " in capsys.readouterr().out
    # Another history's snapshot, whole and valid, in this matcher's directory.
    other_db = await matcher_state(tmp_path / "other", other)
    store = SnapshotStore(snapshot_dir(db))
    store.path(4).write_bytes(SnapshotStore(snapshot_dir(other_db)).path(4).read_bytes())
    assert main(["snapshot", "--db", str(db), "--check", "4"]) == 1
    assert "is recorded" in capsys.readouterr().out


async def test_checking_a_missing_or_unreplayable_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = await matcher_state(tmp_path, COMMANDS)
    assert main(["snapshot", "--db", str(db), "--check", "3"]) == 1
    assert "snapshot 3: MISMATCH: snapshot 3: cannot read" in capsys.readouterr().out
    short = journal(tmp_path / "journal.db", COMMANDS[:3])
    assert main(["snapshot", "--db", str(db), "--check", "4", "--journal", str(short)]) == 2
    assert "beyond the journal's head" in capsys.readouterr().err
    assert main(["snapshot", "--db", str(db), "--journal", str(short)]) == 2
