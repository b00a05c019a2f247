"""A journal written before modifies carried a requestId still replays to the same book.

The file is built here with the old schema and rows exactly as the old sequencer wrote
them (no ``modify_requests`` table; a modify's row ``dedupe = 0``, its command without a
requestId). `GOLDEN_HASH` is what ``dex replay`` printed for this very file with the
code of before the change; it must print the same now, and after a current sequencer has
opened the file and gone on appending (deduplicated) modifies to it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.keys import SEQUENCER_KEY, signed

from exchange.sequencer import Journal, SubmitWorker
from exchange.tools import main, replay_journal
from transports import MemoryNetwork, open_transport

_OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    client_id TEXT NOT NULL,
    op TEXT NOT NULL,
    order_id TEXT NOT NULL,
    dedupe INTEGER NOT NULL,
    command TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS journal_dedupe
    ON journal (client_id, op, order_id) WHERE dedupe = 1;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS client_keys (
    client_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    seq INTEGER NOT NULL
);
"""

OLD_COMMANDS: list[dict[str, Any]] = [
    {"op": "new", "clientId": "alice", "orderId": "a1", "side": "buy", "ordType": "limit",
     "price": "100.00", "amount": "5.000", "tif": "GTC", "postOnly": False},
    {"op": "new", "clientId": "bob", "orderId": "b1", "side": "sell", "ordType": "limit",
     "price": "103.00", "amount": "2.000", "tif": "GTC", "postOnly": False},
    {"op": "modify", "clientId": "alice", "orderId": "a1", "price": "101.00"},
    {"op": "modify", "clientId": "alice", "orderId": "a1", "price": "101.00"},  # a repeat
    {"op": "modify", "clientId": "bob", "orderId": "b1", "price": "101.00", "amount": "3.000"},
    {"op": "modify", "clientId": "alice", "orderId": "a1", "amount": "4.000"},
    {"op": "new", "clientId": "carol", "orderId": "c1", "side": "buy", "ordType": "limit",
     "price": "99.50", "amount": "1.000", "tif": "GTC", "postOnly": False},
    {"op": "modify", "clientId": "carol", "orderId": "c1", "price": "99.00"},
    {"op": "modify", "clientId": "dave", "orderId": "d9", "price": "99.00"},  # unknown
]  # fmt: skip

GOLDEN_HASH = "3ba0c4ee1b8f81c319bfe8d5078eb97cf947895c"
"""``dex replay --db <the file> --json``'s ``book`` before requestIds existed."""


def write_old_journal(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(_OLD_SCHEMA)
    db.executemany(
        "INSERT INTO journal (seq, ts, client_id, op, order_id, dedupe, command)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (seq, 1_000 + seq, c["clientId"], c["op"], c["orderId"], int(c["op"] != "modify"),
             json.dumps(c, sort_keys=True, separators=(",", ":")))
            for seq, c in enumerate(OLD_COMMANDS, start=1)
        ],
    )  # fmt: skip
    db.commit()
    db.close()


def replayed_hash(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["replay", "--db", str(path), "--json"]) == 0
    return str(json.loads(capsys.readouterr().out)["book"])


def test_an_old_journal_replays_to_the_same_book(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.sqlite"
    write_old_journal(path)
    assert replayed_hash(path, capsys) == GOLDEN_HASH
    result = replay_journal(path)
    assert result.seq == len(OLD_COMMANDS)


@pytest.mark.anyio
async def test_a_sequencer_goes_on_on_an_old_journal_and_its_past_replays_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.sqlite"
    write_old_journal(path)
    head = len(OLD_COMMANDS)
    network = MemoryNetwork()
    with Journal(path) as journal:
        assert [e.wire for e in journal.entries()] == OLD_COMMANDS  # read as they were
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            worker = SubmitWorker(server, journal, max_backoff=0.2, signing_key=SEQUENCER_KEY)
            await tg.start(worker.run)
            modify = signed({"op": "modify", "clientId": "alice", "orderId": "a1",
                             "price": "102", "requestId": "m1"})  # fmt: skip
            first = await client.request("submit_order", modify, timeout=5)
            assert first == {"seq": head + 1, "orderId": "a1"}
            assert await client.request("submit_order", modify, timeout=5) == first
            tg.cancel_scope.cancel()
        assert journal.head() == head + 1
    assert replay_journal(path, upto=head).book_hash == GOLDEN_HASH
    assert replayed_hash(path, capsys) != GOLDEN_HASH  # the new modify moved a1
