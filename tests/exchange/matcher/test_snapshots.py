"""Matcher snapshots: the files (torn, corrupt, missing, old format) and starts from them."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.keys import MATCHER_KEY, SEQUENCER_KEY, by_sequencer

from exchange.matcher import (
    Capture,
    ProcessWorker,
    SnapshotError,
    SnapshotStore,
    snapshot_dir,
)
from exchange.matcher._snapshotter import Snapshotter
from exchange.runtime._crashpoints import ENV_VAR
from exchange.versions import VersionReader, book_hash
from orderbook_core import DEFAULT_SPEC, MarketSpec, OrderBook, parse_command
from transports import JSON, MemoryNetwork, Transport, open_transport

pytestmark = pytest.mark.anyio


def new(client: str, order_id: str, side: str, price: str, amount: str) -> dict[str, Any]:
    return {"op": "new", "clientId": client, "orderId": order_id, "side": side,
            "price": price, "amount": amount}  # fmt: skip


COMMANDS = [
    new("alice", "a1", "sell", "101", "5"),
    new("alice", "a2", "sell", "102", "5"),
    new("bob", "b1", "buy", "101", "3"),
    {"op": "cancel", "clientId": "alice", "orderId": "a2"},
    new("bob", "b2", "buy", "99", "1"),
    new("carol", "c1", "sell", "99", "0.5"),
    new("carol", "c2", "sell", "103", "2"),
    new("dave", "d1", "buy", "100", "4"),
    new("dave", "d2", "buy", "104", "1"),
    new("erin", "e1", "sell", "98", "1"),
]


def replay(commands: list[dict[str, Any]]) -> OrderBook:
    book = OrderBook(DEFAULT_SPEC)
    for seq, command in enumerate(commands, start=1):
        book.apply(parse_command(command, DEFAULT_SPEC, seq=seq, ts=1_000))
    return book


def payload(first: int, last: int) -> JSON:
    """The ``process_order`` payload of COMMANDS[first-1 .. last-1]: one version."""
    entries = [{"seq": s, "ts": 1_000, "command": COMMANDS[s - 1]} for s in range(first, last + 1)]
    return entries[0] if len(entries) == 1 else {"entries": entries}


class Rig:
    def __init__(self, worker: ProcessWorker, client: Transport) -> None:
        self.worker, self.client = worker, client

    async def process(self, first: int, last: int | None = None) -> Any:
        message = by_sequencer(payload(first, first if last is None else last))
        return await self.client.request("process_order", message, timeout=5)


@asynccontextmanager
async def running(
    db: Path, network: MemoryNetwork | None = None, **options: Any
) -> AsyncIterator[Rig]:
    network = network if network is not None else MemoryNetwork()
    async with (
        open_transport("memory", network=network) as server,
        open_transport("memory", network=network) as client,
        anyio.create_task_group() as tg,
    ):
        worker = ProcessWorker(
            server,
            db,
            broadcast_timeout=0.5,
            sequencer_key=SEQUENCER_KEY.public_key(),
            signing_key=MATCHER_KEY,
            **options,
        )
        await tg.start(worker.run)
        yield Rig(worker, client)
        tg.cancel_scope.cancel()


# Versions: 1, 2, 3..4 (a batch), 5, 6..7 (a batch), 8, 9, 10.
VERSIONS = [(1, 1), (2, 2), (3, 4), (5, 5), (6, 7), (8, 8), (9, 9), (10, 10)]


MANUAL: dict[str, Any] = {"snapshot_every": 0, "snapshot_interval": 0}
"""Snapshots only when a test takes one (`ProcessWorker.snapshot`)."""


async def fill(db: Path, upto: int) -> dict[str, Any]:
    """Apply the versions up to seq `upto`, with a snapshot after each (3 kept)."""
    reply: dict[str, Any] = {}
    async with running(db, **MANUAL) as rig:
        for first, last in VERSIONS:
            if last > upto:
                break
            reply = await rig.process(first, last)
            await rig.worker.snapshot()
    return reply


def capture(seq: int = 3) -> tuple[Capture, OrderBook]:
    book = replay(COMMANDS[:seq])
    events = book.apply(parse_command(COMMANDS[seq], DEFAULT_SPEC, seq=seq + 1, ts=1_000))
    return Capture(seq + 1, "r" * 64, "p" * 64, seq, events, tuple(book.orders())), book


# ---------------------------------------------------------------------- the files


def test_a_snapshot_reads_back_as_written(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snaps")
    taken, book = capture()
    path = store.write(taken)
    assert path == store.path(4)
    assert store.seqs() == [4]
    snapshot = store.load(4)
    assert (snapshot.seq, snapshot.root, snapshot.prev, snapshot.first) == (
        4,
        "r" * 64,
        "p" * 64,
        3,
    )
    assert snapshot.events == taken.events
    assert snapshot.book == book
    assert [info.error for info in store.infos()] == [None]


def test_only_the_newest_are_kept_and_leftovers_removed(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=2)
    (tmp_path / "snapshot-000000000002.snap.tmp").write_bytes(b"half a snap")  # a crash
    for seq in (1, 2, 3):
        taken, _ = capture(seq)
        store.write(taken)
    assert store.seqs() == [3, 4]
    assert sorted(os.listdir(tmp_path)) == [store.path(3).name, store.path(4).name]


def _written(tmp_path: Path) -> tuple[SnapshotStore, Path]:
    store = SnapshotStore(tmp_path)
    return store, store.write(capture()[0])


def test_a_corrupt_snapshot_fails_its_hash(tmp_path: Path) -> None:
    store, path = _written(tmp_path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01  # one bit, in the book
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="hash mismatch"):
        store.load(4)


def test_a_torn_snapshot_is_detected(tmp_path: Path) -> None:
    store, path = _written(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SnapshotError, match="torn"):
        store.load(4)
    path.write_bytes(data[:20])  # not even the whole header
    with pytest.raises(SnapshotError, match="torn"):
        store.load(4)
    path.write_bytes(b"")
    with pytest.raises(SnapshotError, match="no header"):
        store.load(4)


def test_a_missing_snapshot_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="cannot read"):
        SnapshotStore(tmp_path).load(7)


def test_an_old_format_is_refused(tmp_path: Path) -> None:
    store, path = _written(tmp_path)
    header, rest = path.read_bytes().split(b"\n", 1)
    old = json.loads(header) | {"format": "matcher-snapshot/0"}
    path.write_bytes(json.dumps(old).encode() + b"\n" + rest)
    with pytest.raises(SnapshotError, match="format 'matcher-snapshot/0'"):
        store.load(4)
    info = store.infos()[0]
    assert "format" in str(info.error)


def test_a_snapshot_of_another_market_is_refused(tmp_path: Path) -> None:
    _written(tmp_path)
    other = MarketSpec(market="ETH-USD")
    with pytest.raises(SnapshotError, match="another market"):
        SnapshotStore(tmp_path, other).load(4)


def test_a_snapshot_renamed_to_another_seq_is_refused(tmp_path: Path) -> None:
    store, path = _written(tmp_path)
    path.rename(store.path(9))
    with pytest.raises(SnapshotError, match="holds seq 4"):
        store.load(9)


_CRASHING_WRITER = """
import sys
from pathlib import Path
from exchange.matcher import Capture, SnapshotStore
from orderbook_core import DEFAULT_SPEC, OrderBook, parse_command
book = OrderBook(DEFAULT_SPEC)
store = SnapshotStore(Path(sys.argv[1]))
for seq in (1, 2):
    cmd = {"op": "new", "clientId": "a", "orderId": str(seq), "side": "sell",
           "price": "100", "amount": "1"}
    events = book.apply(parse_command(cmd, DEFAULT_SPEC, seq=seq, ts=1))
    store.write(Capture(seq, str(seq) * 64, None, seq, events, tuple(book.orders())))
    print(seq, flush=True)
"""


def test_a_crash_while_writing_leaves_the_previous_snapshot(tmp_path: Path) -> None:
    env = dict(os.environ) | {ENV_VAR: "mid_snapshot_write:2"}
    run = subprocess.run(
        [sys.executable, "-c", _CRASHING_WRITER, str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert run.stdout.split() == ["1"]
    store = SnapshotStore(tmp_path)
    assert store.seqs() == [1]  # the torn second one is only a temporary file
    assert any(name.endswith(".tmp") for name in os.listdir(tmp_path))
    assert store.load(1).seq == 1
    store.prune()
    assert os.listdir(tmp_path) == [store.path(1).name]


# ---------------------------------------------------------------------- starts


async def test_a_start_from_a_snapshot_equals_a_replay_from_zero(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    await fill(db, 7)
    store = SnapshotStore(snapshot_dir(db))
    assert store.seqs() == [4, 5, 7]  # one per version, the newest 3 kept
    # The same applied log, without the snapshots: a replay from zero.
    shutil.copy(db, tmp_path / "zero.db")
    results = []
    for name in ("p.db", "zero.db"):
        async with running(tmp_path / name) as rig:
            start = (rig.worker.restored_from, rig.worker.head_seq, rig.worker.head_root)
            hash_at_start = book_hash(rig.worker.book)
            after = [await rig.process(first, last) for first, last in VERSIONS[5:]]
            results.append((start, hash_at_start, after, book_hash(rig.worker.book)))
    (from_snapshot, *rest), (from_zero, *rest_zero) = results
    assert (from_snapshot[0], from_zero[0]) == (7, None)
    assert from_snapshot[1:] == from_zero[1:]
    assert rest == rest_zero  # the same book hash, the same next versions
    assert rest[2] == book_hash(replay(COMMANDS))


async def test_a_start_from_a_snapshot_plus_a_tail(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    await fill(db, 5)
    async with running(db, snapshot_keep=0) as rig:  # no more snapshots: a tail
        for first, last in VERSIONS[4:6]:
            await rig.process(first, last)
    async with running(db) as rig:
        assert rig.worker.restored_from == 5
        assert rig.worker.head_seq == 8
        assert rig.worker.book == replay(COMMANDS[:8])
        last = await rig.process(9)
    async with running(tmp_path / "clean.db") as clean:
        for first, last_seq in VERSIONS[:7]:
            clean_last = await clean.process(first, last_seq)
    assert last == clean_last


async def test_a_corrupt_newest_snapshot_falls_back_to_the_previous(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "p.db"
    await fill(db, 7)
    store = SnapshotStore(snapshot_dir(db))
    data = bytearray(store.path(7).read_bytes())
    data[-5] ^= 0x20
    store.path(7).write_bytes(bytes(data))
    caplog.set_level(logging.INFO, "exchange.matcher")
    async with running(db) as rig:
        assert rig.worker.restored_from == 5
        assert rig.worker.book == replay(COMMANDS[:7])
        assert rig.worker.head_seq == 7
    assert "snapshot 7: content hash mismatch (corrupt): not used" in caplog.text
    assert "starting from snapshot 5" in caplog.text


async def test_without_a_usable_snapshot_everything_is_replayed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "p.db"
    await fill(db, 7)
    store = SnapshotStore(snapshot_dir(db))
    for seq in store.seqs():
        store.path(seq).write_bytes(store.path(seq).read_bytes()[:-3])  # all torn
    async with running(db, snapshot_keep=0) as rig:
        assert rig.worker.restored_from is None
        assert rig.worker.book == replay(COMMANDS[:7])
    assert "no usable snapshot: replaying every applied command" in caplog.text


async def test_a_snapshot_beyond_the_applied_head_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "p.db"
    await fill(db, 2)
    saved = tmp_path / "p2.db"
    shutil.copy(db, saved)  # the applied log at seq 2 ...
    await fill(db, 4)  # ... and a snapshot at seq 4
    os.replace(saved, db)  # as if the log lost its last rows (synchronous=NORMAL)
    async with running(db, snapshot_keep=0) as rig:
        assert rig.worker.restored_from == 2
        assert rig.worker.head_seq == 2
    assert "snapshot 4: beyond the applied head 2" in caplog.text


async def test_a_snapshot_whose_root_is_not_the_recorded_one_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "p.db"
    await fill(db, 4)
    other = tmp_path / "other"
    (other / "p.db.snapshots").mkdir(parents=True)
    # Another market history's snapshot at the same seq, in this matcher's directory.
    async with running(other / "p.db", **MANUAL) as rig:
        await rig.process(1, 1)
        await rig.process(2, 3)
        await rig.process(4, 4)
        await rig.worker.snapshot()
    store = SnapshotStore(snapshot_dir(db))
    shutil.copy(SnapshotStore(snapshot_dir(other / "p.db")).path(4), store.path(4))
    async with running(db, snapshot_keep=0) as rig:
        assert rig.worker.restored_from == 2
        assert rig.worker.book == replay(COMMANDS[:4])
    assert "snapshot 4: its root is not the one recorded" in caplog.text


async def test_the_head_version_is_republished_from_a_snapshot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "p.db"
    head = await fill(db, 7)  # the head version 6..7 is the snapshot's
    fresh = MemoryNetwork()  # a DHT that forgot everything
    async with running(db, fresh) as rig:
        assert rig.worker.restored_from == 7
        with anyio.fail_after(5):
            await rig.worker.republished.wait()
        assert "republished head" not in caplog.text  # the same root, as recorded
        version = await VersionReader(rig.client, DEFAULT_SPEC).fetch(head["root"])
        assert (version.root.seq, version.book) == (7, rig.worker.book)


async def snapshot_reaches(worker: ProcessWorker, seq: int) -> None:
    for _ in range(500):  # 5 s
        if worker.snapshotter.seq >= seq:
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"snapshot at {worker.snapshotter.seq}, expected {seq}")


async def test_snapshots_are_taken_by_count_and_by_time(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    store = SnapshotStore(snapshot_dir(db))
    async with running(db, snapshot_every=3, snapshot_interval=0) as rig:
        for first, last in VERSIONS[:3]:  # seqs 1..4: one snapshot, at 4
            await rig.process(first, last)
        await snapshot_reaches(rig.worker, 4)
        assert store.seqs() == [4]
        assert len(rig.worker.snapshotter.pauses) == 1
    async with running(db, snapshot_every=0, snapshot_interval=0.05) as rig:
        await rig.process(5)
        await snapshot_reaches(rig.worker, 5)
        assert store.seqs() == [4, 5]


async def test_a_failing_snapshot_write_does_not_stop_matching(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "p.db"
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the snapshot directory should be")
    async with running(db, snapshot_every=1, snapshot_path=blocked) as rig:
        await rig.process(1)
        assert await rig.worker.snapshot() is None
        reply = await rig.process(2)
        assert reply["seq"] == 2
    assert "writing snapshots fails" in caplog.text


class _SlowStore(SnapshotStore):
    """Holds each write until the test lets it go."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.release = threading.Event()
        self.written: list[int] = []

    def write(self, capture: Capture) -> Path:
        assert self.release.wait(5)
        self.written.append(capture.seq)
        return self.path(capture.seq)


async def test_commands_applied_during_a_write_do_not_set_off_another(tmp_path: Path) -> None:
    store = _SlowStore(tmp_path)
    snapshotter = Snapshotter(store, every=10, interval=0)
    head = 0
    lock = anyio.Lock()

    def copy() -> Capture:
        return Capture(head, "r" * 40, None, head, (), ())

    async with anyio.create_task_group() as tg:
        tg.start_soon(snapshotter.run, lambda: head, lock, copy)
        head = 10
        snapshotter.applied(head)  # due: the write starts, and waits
        await anyio.sleep(0.05)
        for head in range(11, 16):  # applied while it is written
            snapshotter.applied(head)
        store.release.set()
        await snapshot_reaches_seq(snapshotter, 10)
        await anyio.sleep(0.1)
        assert store.written == [10]  # not 15: only 5 since the last one
        head = 20
        snapshotter.applied(head)
        await snapshot_reaches_seq(snapshotter, 20)
        tg.cancel_scope.cancel()
    assert store.written == [10, 20]


async def snapshot_reaches_seq(snapshotter: Snapshotter, seq: int) -> None:
    for _ in range(500):  # 5 s
        if snapshotter.seq >= seq:
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"snapshot at {snapshotter.seq}, expected {seq}")
