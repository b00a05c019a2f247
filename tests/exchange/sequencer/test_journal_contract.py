"""The journal's promises (`exchange.sequencer.JournalBackend`), the same tests for each
backend: SQLite and NATS JetStream (a real single dev server)."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.nats import nats_url, running_nats  # noqa: F401  (a module fixture)

from exchange.protocol import Entry, StorageUnavailable, parse_entry
from exchange.sequencer import DuplicateEntry, JournalBackend, JournalConflict, open_journal
from orderbook_core import DEFAULT_SPEC, MarketSpec

Opener = Callable[[], JournalBackend]
"""Opens another handle on the same journal."""

KEY_A, KEY_B = "a" * 64, "b" * 64

_markets = itertools.count(1)


@pytest.fixture(params=["sqlite", pytest.param("jetstream", marks=pytest.mark.integration)])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens handles on one fresh journal (closed at the end of the test)."""
    opened: list[JournalBackend] = []
    if request.param == "sqlite":
        location, spec = f"sqlite:{tmp_path / 'j.db'}", DEFAULT_SPEC
    else:
        location = request.getfixturevalue("nats_url")
        spec = dataclasses.replace(DEFAULT_SPEC, market=f"T{next(_markets)}-USD")

    def open_one() -> JournalBackend:
        journal = open_journal(location, spec)
        opened.append(journal)
        return journal

    yield open_one
    for journal in opened:
        journal.close()


def _cmd(client: str, order: str, op: str = "new", price: str = "100") -> dict[str, Any]:
    if op == "new":
        return {"op": op, "clientId": client, "orderId": order, "side": "buy", "price": price,
                "amount": "1"}  # fmt: skip
    if op == "cancel":
        return {"op": op, "clientId": client, "orderId": order}
    return {"op": op, "clientId": client, "orderId": order, "price": price}


def _entry(journal: JournalBackend, seq: int, ts: int, command: dict[str, Any]) -> Entry:
    return parse_entry(seq, ts, command, journal.spec)


def _append(journal: JournalBackend, client: str, order: str, ts: int = 1, **kw: Any) -> Entry:
    entry = _entry(journal, journal.head() + 1, ts, _cmd(client, order, **kw))
    journal.append([entry])
    return entry


def test_appended_entries_read_back_in_order_and_survive_reopening(opener: Opener) -> None:
    journal = opener()
    assert (journal.head(), journal.last_ts(), journal.acked()) == (0, 0, 0)
    batch = [_entry(journal, i, 10 + i, _cmd("c1", f"o{i}", price=str(100 + i))) for i in (1, 2, 3)]
    journal.append(batch)
    _append(journal, "c2", "x", ts=20, op="modify")
    assert (journal.head(), journal.last_ts()) == (4, 20)
    again = opener()
    assert (again.head(), again.last_ts()) == (4, 20)
    entries = list(again.entries())
    assert entries[:3] == batch
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert again.read(1, 2) == batch[1:]
    assert again.get(2) == batch[1]
    assert again.get(5) is None


def test_a_batch_with_a_repeat_is_refused_whole(opener: Opener) -> None:
    journal = opener()
    first = _append(journal, "c1", "a")
    batch = [_entry(journal, 2, 1, _cmd("c1", "b")), _entry(journal, 3, 1, _cmd("c1", "a"))]
    with pytest.raises(DuplicateEntry):
        journal.append(batch)
    twice = [_entry(journal, 2, 1, _cmd("c1", "b")), _entry(journal, 3, 1, _cmd("c1", "b"))]
    with pytest.raises(DuplicateEntry):
        journal.append(twice)
    assert journal.head() == 1
    assert list(opener().entries()) == [first]
    assert _append(journal, "c1", "b").seq == 2  # the journal goes on where it was


def test_find_answers_a_repeat_with_the_first_entry_across_reopening(opener: Opener) -> None:
    journal = opener()
    first = _append(journal, "c1", "x", ts=10)
    other = _append(journal, "c2", "x", ts=11)
    _append(journal, "c1", "x", ts=12, op="modify", price="101")
    _append(journal, "c1", "x", ts=12, op="modify", price="102")  # a modify may repeat
    cancel = _append(journal, "c1", "x", ts=13, op="cancel")
    again = opener()
    assert again.find("c1", "new", "x") == first
    assert again.find_many([("c2", "new", "x"), ("c1", "cancel", "x"), ("c1", "new", "y")]) == [
        other,
        cancel,
        None,
    ]


def test_a_modify_is_found_by_its_request_id_across_reopening(opener: Opener) -> None:
    journal = opener()
    _append(journal, "c1", "x")
    first = _entry(journal, 2, 1, _cmd("c1", "x", op="modify", price="101"))
    journal.append([first], None, {2: "m1"})
    old_style = _append(journal, "c1", "x", op="modify", price="101")  # as before request ids
    other = _entry(journal, 4, 1, _cmd("c2", "y", op="modify", price="99"))
    journal.append([other], None, {4: "m1"})  # another client's m1
    again = opener()
    assert again.find("c1", "modify", "m1") == first
    assert again.find_many([("c2", "modify", "m1"), ("c1", "modify", "m2")]) == [other, None]
    assert again.find("c1", "new", "m1") is None  # a requestId is no orderId
    assert old_style.seq == 3
    assert again.modify_requests() == {2: "m1", 4: "m1"}  # what an export carries
    assert list(again.entries()) == list(journal.entries())


def test_a_repeated_request_id_is_refused_whole(opener: Opener) -> None:
    journal = opener()
    _append(journal, "c1", "x")
    journal.append(
        [_entry(journal, 2, 1, _cmd("c1", "x", op="modify", price="101"))], None, {2: "m1"}
    )
    with pytest.raises(DuplicateEntry):  # the same (clientId, requestId), however long ago
        journal.append(
            [_entry(journal, 3, 1, _cmd("c1", "x", op="modify", price="102"))], None, {3: "m1"}
        )
    twice = [_entry(journal, s, 1, _cmd("c1", "x", op="modify", price="103")) for s in (3, 4)]
    with pytest.raises(DuplicateEntry):  # twice within one batch
        journal.append(twice, None, {3: "m2", 4: "m2"})
    assert journal.head() == 2
    assert opener().find("c1", "modify", "m2") is None
    journal.append(twice, None, {3: "m2", 4: "m3"})
    assert journal.head() == 4


def test_the_acked_mark_only_moves_forward_and_is_kept(opener: Opener) -> None:
    journal = opener()
    for i in range(3):
        _append(journal, "c1", f"o{i}")
    journal.mark_acked(2)
    journal.mark_acked(1)
    assert journal.acked() == 2
    journal.mark_acked(3)
    assert opener().acked() == 3


def test_client_keys_are_bound_with_their_command_once(opener: Opener) -> None:
    journal = opener()
    journal.append([_entry(journal, 1, 1, _cmd("alice", "a"))], {1: KEY_A})
    journal.append([_entry(journal, 2, 1, _cmd("alice", "b"))])
    assert opener().client_keys() == {"alice": KEY_A}
    with pytest.raises(DuplicateEntry):  # alice is bound: nothing of the batch is stored
        journal.append([_entry(journal, 3, 1, _cmd("alice", "c"))], {3: KEY_B})
    assert journal.head() == 2
    assert opener().client_keys() == {"alice": KEY_A}


def test_timestamps_and_numbers_must_follow(opener: Opener) -> None:
    journal = opener()
    _append(journal, "c1", "a", ts=100)
    with pytest.raises(JournalConflict):
        journal.append([_entry(journal, 2, 50, _cmd("c1", "b"))])
    with pytest.raises(JournalConflict):
        journal.append([_entry(journal, 3, 100, _cmd("c1", "b"))])
    assert journal.head() == 1


def test_a_second_writer_is_refused(opener: Opener) -> None:
    first, second = opener(), opener()
    _append(first, "c1", "a")
    with pytest.raises(JournalConflict):  # its numbers are stale: the store says no
        _append(second, "c2", "b")
    assert [e.wire["orderId"] for e in opener().entries()] == ["a"]


def test_racing_key_binds_have_exactly_one_winner(opener: Opener) -> None:
    handles = [opener(), opener()]
    keys = [KEY_A, KEY_B]
    outcomes: list[str] = ["", ""]
    start = threading.Barrier(2)

    def bind(i: int) -> None:
        journal = handles[i]
        start.wait()
        try:
            journal.append([_entry(journal, 1, 1, _cmd("bob", f"o{i}"))], {1: keys[i]})
            outcomes[i] = "won"
        except (JournalConflict, DuplicateEntry) as exc:
            outcomes[i] = type(exc).__name__

    threads = [threading.Thread(target=bind, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes).count("won") == 1, outcomes
    winner = outcomes.index("won")
    reader = opener()
    assert reader.client_keys() == {"bob": keys[winner]}
    assert [e.wire["orderId"] for e in reader.entries()] == [f"o{winner}"]


@pytest.mark.integration
def test_an_unreachable_nats_server_is_named(tmp_path: Path) -> None:
    from support.ports import free_port

    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(StorageUnavailable, match=url):
        open_journal(url, DEFAULT_SPEC, timeout=1.0)


@pytest.mark.integration
def test_an_append_the_server_cannot_store_is_not_confirmed(tmp_path: Path) -> None:
    spec: MarketSpec = dataclasses.replace(DEFAULT_SPEC, market="DOWN-USD")
    with running_nats(1, tmp_path) as servers:
        journal = open_journal(servers[0].url, spec, timeout=1.0)
        try:
            _append(journal, "c1", "a")
            servers[0].kill()
            with pytest.raises(StorageUnavailable):
                _append(journal, "c1", "b")
            assert journal.head() == 1
        finally:
            journal.close()


def test_client_keys_reads_again_when_a_watch_misses_a_binding(
    opener: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nats-py's watch can end before a value the server already sent: the keys are
    counted from the stream, and a short read is read again."""
    journal = opener()
    journal.append([_entry(journal, 1, 1, _cmd("alice", "a"))], {1: KEY_A})
    journal.append([_entry(journal, 2, 1, _cmd("bob", "b"))], {2: KEY_B})
    reader = opener()
    watch = getattr(reader, "_watch_keys", None)
    if watch is None:
        pytest.skip("only a JetStream journal reads its keys through a watch")
    calls = 0

    async def short_first(*args: Any) -> dict[str, str]:
        nonlocal calls
        calls += 1
        keys: dict[str, str] = await watch(*args)
        return dict(list(keys.items())[:1]) if calls == 1 else keys

    monkeypatch.setattr(reader, "_watch_keys", short_first)
    assert reader.client_keys() == {"alice": KEY_A, "bob": KEY_B}
    assert calls == 2
