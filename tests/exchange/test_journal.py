"""The submit worker's journal: gap-free, durable, deduplicated, FIFO, thread-safe."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from exchange.journal import Appended, Journal, JournalEntry, generated_order_id


def _cmd(client: str, order: str | None, price: str = "100") -> dict[str, Any]:
    wire: dict[str, Any] = {"clientId": client, "side": "buy", "price": price, "amount": "1"}
    if order is not None:
        wire["orderId"] = order
    return wire


def test_sequence_numbers_are_gap_free_from_one(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        seqs = [journal.append("c1", f"o{i}", _cmd("c1", f"o{i}"), ts=1000).seq for i in range(5)]
        assert seqs == [1, 2, 3, 4, 5]
        assert journal.head() == 5


def test_entries_come_back_in_fifo_order_with_their_commands(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        for i in range(3):
            journal.append("c1", f"o{i}", _cmd("c1", f"o{i}", price=str(100 + i)), ts=10 + i)
        entries = list(journal.entries())
        assert [e.seq for e in entries] == [1, 2, 3]
        assert [e.command["price"] for e in entries] == ["100", "101", "102"]
        assert entries[0] == JournalEntry(1, 10, _cmd("c1", "o0", "100"))
        assert [e.seq for e in journal.entries(after_seq=2)] == [3]


def test_entries_pages_through_a_long_journal(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        for i in range(1203):
            journal.append("c1", f"o{i}", _cmd("c1", f"o{i}"), ts=1)
        assert [e.seq for e in journal.entries()] == list(range(1, 1204))


def test_entries_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "j.db"
    with Journal(path) as journal:
        journal.append("c1", "a", _cmd("c1", "a"), ts=5)
        journal.append("c2", None, _cmd("c2", None), ts=6)
        journal.mark_acked(1)
    with Journal(path) as journal:
        assert journal.head() == 2
        assert journal.acked() == 1
        assert [e.seq for e in journal.entries()] == [1, 2]
        assert journal.append("c1", "b", _cmd("c1", "b"), ts=7) == Appended(3, 7, True)


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


def test_repeated_client_order_returns_first_entry_and_queues_nothing(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        first = journal.append("c1", "x", _cmd("c1", "x", "100"), ts=10)
        journal.append("c2", "x", _cmd("c2", "x"), ts=11)
        again = journal.append("c1", "x", _cmd("c1", "x", "999"), ts=12)
        assert first == Appended(1, 10, True)
        assert again == Appended(1, 10, False)
        assert journal.head() == 2
        assert [e.command["clientId"] for e in journal.entries()] == ["c1", "c2"]


def test_dedupe_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path) as journal:
        journal.append("c1", "x", _cmd("c1", "x"), ts=10)
    with Journal(path) as journal:
        assert journal.append("c1", "x", _cmd("c1", "x"), ts=20) == Appended(1, 10, False)


def test_a_cancel_is_not_a_repeat_of_the_order_it_cancels(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        journal.append("c1", "x", _cmd("c1", "x"), ts=1)
        cancel = {"op": "cancel", "clientId": "c1", "orderId": "x"}
        assert journal.append("c1", "x", cancel, op="cancel", ts=2) == Appended(2, 2, True)
        assert journal.append("c1", "x", cancel, op="cancel", ts=3) == Appended(2, 2, False)


def test_generated_order_ids_are_stored_and_unique(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        a = journal.append("c1", None, _cmd("c1", None), ts=1)
        b = journal.append("c1", None, _cmd("c1", None), ts=1)
        assert (a.seq, a.is_new, b.seq, b.is_new) == (1, True, 2, True)
        ids = [e.command["orderId"] for e in journal.entries()]
        assert ids == [generated_order_id(1), generated_order_id(2)]
        assert ids[0] != ids[1]


def test_timestamps_never_go_backwards(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        journal.append("c1", "a", _cmd("c1", "a"), ts=100)
        assert journal.append("c1", "b", _cmd("c1", "b"), ts=50).ts == 100
        assert journal.append("c1", "c", _cmd("c1", "c")).ts > 100  # the wall clock


def test_acked_mark_only_moves_forward(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        for i in range(3):
            journal.append("c1", f"o{i}", _cmd("c1", f"o{i}"), ts=1)
        assert journal.next_unacked() == journal.get(1)
        journal.mark_acked(2)
        journal.mark_acked(1)
        assert journal.acked() == 2
        entry = journal.next_unacked()
        assert entry is not None
        assert entry.seq == 3
        journal.mark_acked(3)
        assert journal.next_unacked() is None
        assert journal.get(4) is None


def test_concurrent_appends_from_threads_are_gap_free_and_complete(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        results: list[Appended] = []
        lock = threading.Lock()

        def worker(client: str) -> None:
            for i in range(25):
                appended = journal.append(client, f"o{i}", _cmd(client, f"o{i}"), ts=1)
                # Every thread also repeats one order: it must not be queued twice.
                journal.append(client, "o0", _cmd(client, "o0"), ts=1)
                with lock:
                    results.append(appended)

        threads = [threading.Thread(target=worker, args=(f"c{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(r.seq for r in results) == list(range(1, 101))
        assert all(r.is_new for r in results)
        entries = list(journal.entries())
        assert [e.seq for e in entries] == list(range(1, 101))
        # Per client, FIFO: each thread's orders are journaled in the order it sent them.
        for n in range(4):
            mine = [e.command["orderId"] for e in entries if e.command["clientId"] == f"c{n}"]
            assert mine == [f"o{i}" for i in range(25)]


def test_a_failed_append_journals_nothing_and_leaves_no_gap(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        journal.append("c1", "a", _cmd("c1", "a"), ts=1)
        with pytest.raises(TypeError):
            journal.append("c1", "b", {"bad": object()}, ts=1)
        assert journal.append("c1", "c", _cmd("c1", "c"), ts=1).seq == 2
        assert [e.seq for e in journal.entries()] == [1, 2]


def test_entries_without_dedupe_are_always_queued(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        modify = {"op": "modify", "clientId": "c1", "orderId": "x", "price": "5"}
        a = journal.append("c1", "x", modify, op="modify", dedupe=False, ts=1)
        b = journal.append("c1", "x", modify, op="modify", dedupe=False, ts=1)
        assert (a, b) == (Appended(1, 1, True), Appended(2, 1, True))


def test_two_handles_on_one_file_keep_one_gap_free_sequence(tmp_path: Path) -> None:
    # The module doc promises seq = max(seq) + 1 *inside* the write transaction; the
    # code used a head cached when the file was opened. A second writer on the file (a
    # restarted worker while the old one still ran) then made every later append of the
    # first fail with IntegrityError (ERR_INTERNAL to every client) until its restart.
    with Journal(tmp_path / "j.db") as first, Journal(tmp_path / "j.db") as second:
        assert first.append("c1", "a", _cmd("c1", "a"), ts=10).seq == 1
        assert second.append("c2", "b", _cmd("c2", "b"), ts=5) == Appended(2, 10, True)
        assert first.append("c1", "c", _cmd("c1", "c"), ts=7) == Appended(3, 10, True)
        assert first.head() == 3
        assert first.append("c2", "b", _cmd("c2", "b"), ts=20) == Appended(2, 10, False)
        assert [e.seq for e in second.entries()] == [1, 2, 3]
