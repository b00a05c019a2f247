"""The sequencer's journal: gap-free, durable, deduplicated, FIFO, thread-safe storage."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from exchange.protocol import Entry, parse_entry
from exchange.sequencer import Journal, JournalConflict
from orderbook_core import DEFAULT_SPEC


def _cmd(client: str, order: str, price: str = "100", op: str = "new") -> dict[str, Any]:
    if op == "new":
        return {"op": op, "clientId": client, "orderId": order, "side": "buy", "price": price,
                "amount": "1"}  # fmt: skip
    if op == "cancel":
        return {"op": op, "clientId": client, "orderId": order}
    return {"op": op, "clientId": client, "orderId": order, "price": price}


def _entry(seq: int, ts: int, command: dict[str, Any]) -> Entry:
    """The entry of wire `command` numbered `seq` at `ts`."""
    return parse_entry(seq, ts, command, DEFAULT_SPEC)


def _append(journal: Journal, client: str, order: str, ts: int = 1, **kw: Any) -> Entry:
    """Append one command as the next entry, as the sequencer numbers it."""
    entry = _entry(journal.head() + 1, ts, _cmd(client, order, **kw))
    journal.append([entry])
    return entry


def test_sequence_numbers_are_gap_free_from_one(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        seqs = [_append(journal, "c1", f"o{i}", ts=1000).seq for i in range(5)]
        assert seqs == [1, 2, 3, 4, 5]
        assert journal.head() == 5


def test_entries_come_back_in_fifo_order_with_their_commands(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        for i in range(3):
            _append(journal, "c1", f"o{i}", ts=10 + i, price=str(100 + i))
        entries = list(journal.entries())
        assert [e.seq for e in entries] == [1, 2, 3]
        assert [e.wire["price"] for e in entries] == ["100", "101", "102"]
        assert entries[0] == _entry(1, 10, _cmd("c1", "o0", "100"))
        assert [e.seq for e in journal.entries(after_seq=2)] == [3]
        assert journal.read(1, 1) == [entries[1]]


def test_entries_pages_through_a_long_journal(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        journal.append([_entry(i, 1, _cmd("c1", f"o{i}")) for i in range(1, 1204)])
        assert [e.seq for e in journal.entries()] == list(range(1, 1204))


def test_a_batch_is_one_append_and_all_or_nothing(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        _append(journal, "c1", "a")
        batch = [_entry(2, 1, _cmd("c1", "b")), _entry(3, 1, _cmd("c1", "a"))]
        with pytest.raises(sqlite3.IntegrityError):  # "a" repeats: the whole batch fails
            journal.append(batch)
        assert journal.head() == 1
        assert [e.seq for e in journal.entries()] == [1]


def test_entries_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "j.db"
    with Journal(path) as journal:
        _append(journal, "c1", "a", ts=5)
        _append(journal, "c2", "_2", ts=6)
        journal.mark_acked(1)
    with Journal(path) as journal:
        assert (journal.head(), journal.last_ts(), journal.acked()) == (2, 6, 1)
        assert [e.seq for e in journal.entries()] == [1, 2]
        assert _append(journal, "c1", "b", ts=7) == _entry(3, 7, _cmd("c1", "b"))


def test_journal_uses_wal_and_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path) as journal:
        # synchronous is per connection: ask the journal's own (2 = FULL).
        assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_find_returns_the_first_entry_of_a_client_order(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        first = _append(journal, "c1", "x", ts=10)
        _append(journal, "c2", "x", ts=11)
        assert journal.find("c1", "new", "x") == first
        assert journal.find("c1", "new", "y") is None
        assert journal.find("c1", "cancel", "x") is None
        with pytest.raises(sqlite3.IntegrityError):  # queued twice: refused by the index
            _append(journal, "c1", "x", ts=12, price="999")
        assert journal.head() == 2


def test_dedupe_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path) as journal:
        _append(journal, "c1", "x", ts=10)
    with Journal(path) as journal:
        assert journal.find("c1", "new", "x") == _entry(1, 10, _cmd("c1", "x"))


def test_a_cancel_is_not_a_repeat_of_the_order_it_cancels(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        _append(journal, "c1", "x", ts=1)
        cancel = _append(journal, "c1", "x", ts=2, op="cancel")
        assert journal.find("c1", "cancel", "x") == cancel
        with pytest.raises(sqlite3.IntegrityError):
            _append(journal, "c1", "x", ts=3, op="cancel")


def test_timestamps_never_go_backwards(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        _append(journal, "c1", "a", ts=100)
        with pytest.raises(JournalConflict):
            _append(journal, "c1", "b", ts=50)
        assert journal.last_ts() == 100
        assert _append(journal, "c1", "c", ts=100).seq == 2


def test_acked_mark_only_moves_forward(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        for i in range(3):
            _append(journal, "c1", f"o{i}")
        assert journal.acked() == 0
        journal.mark_acked(2)
        journal.mark_acked(1)
        assert journal.acked() == 2
        journal.mark_acked(3)
        assert journal.acked() == 3
        assert journal.get(4) is None


def test_concurrent_appends_from_threads_are_gap_free_and_complete(tmp_path: Path) -> None:
    # Writers that number for themselves race; the journal refuses every append whose
    # numbers are stale, so what is stored is always 1..n without a gap or a repeat.
    with Journal(tmp_path / "j.db") as journal:
        stored: list[Entry] = []
        lock = threading.Lock()

        def worker(client: str) -> None:
            i = 0
            while i < 25:
                entry = _entry(journal.head() + 1, 1, _cmd(client, f"o{i}"))
                try:
                    journal.append([entry])
                except JournalConflict:
                    continue  # another thread took that number: renumber, try again
                with lock:
                    stored.append(entry)
                i += 1

        threads = [threading.Thread(target=worker, args=(f"c{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(e.seq for e in stored) == list(range(1, 101))
        entries = list(journal.entries())
        assert [e.seq for e in entries] == list(range(1, 101))
        for n in range(4):  # per client, FIFO
            mine = [e.wire["orderId"] for e in entries if e.wire["clientId"] == f"c{n}"]
            assert mine == [f"o{i}" for i in range(25)]


def test_a_failed_append_journals_nothing_and_leaves_no_gap(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        _append(journal, "c1", "a")
        bad = {"op": "new", "clientId": "c1", "orderId": "b", "bad": object()}
        with pytest.raises(TypeError):
            journal.append([Entry(_entry(2, 1, _cmd("c1", "b")).command, bad)])
        assert _append(journal, "c1", "c").seq == 2
        assert [e.seq for e in journal.entries()] == [1, 2]


def test_modifies_are_never_deduplicated(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        a = _append(journal, "c1", "x", op="modify", price="5")
        b = _append(journal, "c1", "x", op="modify", price="5")
        assert (a.seq, b.seq) == (1, 2)
        assert journal.find("c1", "modify", "x") is None


def test_two_handles_on_one_file_keep_one_gap_free_sequence(tmp_path: Path) -> None:
    # A second writer on the file (a restarted worker while the old one still ran) must
    # not make the journal skip or repeat a number: an append checks the file's own last
    # entry inside its write transaction, and refuses numbers that do not follow it.
    with Journal(tmp_path / "j.db") as first, Journal(tmp_path / "j.db") as second:
        assert _append(first, "c1", "a", ts=10).seq == 1
        with pytest.raises(JournalConflict):
            second.append([_entry(1, 10, _cmd("c2", "b"))])  # its head is stale
        second.append([_entry(2, 10, _cmd("c2", "b"))])
        with pytest.raises(JournalConflict):
            _append(first, "c1", "c", ts=10)  # first still thinks it is at 1
        assert [e.seq for e in second.entries()] == [1, 2]
