"""The matcher's snapshots: its state at one applied seq, so a restart replays only the tail.

A snapshot is taken at a version boundary (between two ``process_order`` batches) and
holds what the matcher needs to carry on from there as if it had replayed everything:
the book, the seq and root of the version that ends there, and that version's ``prev``,
first seq and events (what republishing the head version takes when no command came
after the snapshot; its commands are in the applied log). The applied log stays the
record: a snapshot is only a shortcut through it, and is used only if its root is the
one the log holds at its seq.

Files, in ``<db>.snapshots/`` beside the matcher's SQLite file (``--db``), one per
snapshot, ``snapshot-<seq, 12 digits>.snap``::

    {"format":"matcher-snapshot/1","sha256":"<hex>","size":N}\\n   header, one line
    {"events":[...],"first":F,"prev":"<root>"|null,"root":"<root>","seq":S,"spec":{...}}\\n
    [[clientId,orderId,side,price,remaining,seq,ts],...]          the resting orders

``sha256`` and ``size`` cover everything after the header line. ``spec`` is the market
as the core's book encoding writes it (`orderbook_core.encode_book`); the orders are the
book's content in priority (`OrderBook.orders`, prices in ticks, amounts in lots), read
back with `OrderBook.from_orders`. Not the core's whole-book encoding itself: building a
book to encode it, and decoding it with its canonical re-check, cost several times more
(see docs/benchmarks.md, "Matcher snapshots"), and the hash already guards the bytes.

A file is written to a temporary name, fsynced, then renamed (and the directory
fsynced), so a crash leaves either the whole file or a temporary one, which is ignored
and removed; a file that is torn or corrupt anyway (disk, copy) fails its hash and the
previous snapshot is used. Only the newest ``keep`` are kept.

Blocking: the matcher calls `SnapshotStore.write` in a worker thread, with a `Capture`
taken on the event loop (the orders as immutable tuples: the book keeps changing).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange.runtime import crash_point
from orderbook_core import (
    DEFAULT_SPEC,
    Event,
    MarketSpec,
    OrderBook,
    RestingOrder,
    ValidationError,
    canonical_json,
    encode_book,
    event_from_wire,
    event_to_wire,
)

__all__ = [
    "DEFAULT_SNAPSHOT_EVERY",
    "DEFAULT_SNAPSHOT_INTERVAL",
    "DEFAULT_SNAPSHOT_KEEP",
    "SNAPSHOT_FORMAT",
    "Capture",
    "Snapshot",
    "SnapshotError",
    "SnapshotInfo",
    "SnapshotStore",
    "snapshot_dir",
]

SNAPSHOT_FORMAT = "matcher-snapshot/1"

DEFAULT_SNAPSHOT_EVERY = 25_000
"""Commands applied between two snapshots (at most; 0: not by count)."""

DEFAULT_SNAPSHOT_INTERVAL = 60.0
"""Seconds between two snapshots while commands come in (at most; 0: not by time)."""

DEFAULT_SNAPSHOT_KEEP = 3
"""Snapshots kept; 0 turns snapshots off (none written; any found is still used)."""

_NAME = re.compile(r"snapshot-(\d{12})\.snap")
_TMP_SUFFIX = ".tmp"


class SnapshotError(Exception):
    """A snapshot file that cannot be used: torn, corrupt, another format or market."""


@dataclass(frozen=True, slots=True)
class Capture:
    """The matcher's state at a version boundary, taken on the loop (no encoding yet).

    Attributes:
        seq: the last applied seq; root: the root of the version that ends there;
        prev: that version's ``prev``; first: its first seq; events: its events;
        orders: the resting orders in priority (`OrderBook.orders`), immutable.
    """

    seq: int
    root: str
    prev: str | None
    first: int
    events: tuple[Event, ...]
    orders: Sequence[RestingOrder]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot read back: the state after applying 1..`seq` (see `Capture`)."""

    seq: int
    root: str
    prev: str | None
    first: int
    events: tuple[Event, ...]
    book: OrderBook


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """One snapshot file as `SnapshotStore.infos` finds it (`error`: why it is unusable)."""

    seq: int
    path: Path
    size: int
    root: str | None
    orders: int | None
    error: str | None


def snapshot_dir(db_path: str | Path) -> Path:
    """Where the matcher whose SQLite file is `db_path` keeps its snapshots."""
    path = Path(db_path)
    return path.with_name(path.name + ".snapshots")


class SnapshotStore:
    """The snapshot files of one matcher.

    Args:
        directory: where they are (created on the first write).
        spec: the market: a snapshot of another one is refused.
        keep: how many to keep after each write (at least 1).
    """

    def __init__(
        self, directory: str | Path, spec: MarketSpec = DEFAULT_SPEC, *, keep: int = 3
    ) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.directory = Path(directory)
        self.spec = spec
        self.keep = keep
        self._spec_json = json.loads(encode_book(OrderBook(spec)))["spec"]

    def path(self, seq: int) -> Path:
        """The file of the snapshot at `seq`."""
        return self.directory / f"snapshot-{seq:012d}.snap"

    def seqs(self) -> list[int]:
        """The seqs that have a snapshot file, oldest first (not checked)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for name in names if (m := _NAME.fullmatch(name)))

    def write(self, capture: Capture) -> Path:
        """Encode and store `capture`, then drop all but the newest `keep`. Blocking.

        Raises:
            OSError: the file could not be written (nothing replaced; older ones kept).
        """
        state = {
            "events": [event_to_wire(event, self.spec) for event in capture.events],
            "first": capture.first,
            "prev": capture.prev,
            "root": capture.root,
            "seq": capture.seq,
            "spec": self._spec_json,
        }
        body = canonical_json(state).encode() + b"\n" + _orders_json(capture.orders)
        header = {
            "format": SNAPSHOT_FORMAT,
            "sha256": hashlib.sha256(body).hexdigest(),
            "size": len(body),
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(capture.seq)
        tmp = path.with_name(path.name + _TMP_SUFFIX)
        with open(tmp, "wb") as out:
            out.write(canonical_json(header).encode() + b"\n")
            out.flush()
            crash_point("mid_snapshot_write")  # test hook: a torn temporary file
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        self._sync_directory()
        self.prune()
        return path

    def prune(self) -> None:
        """Remove all but the newest `keep` snapshots, and leftover temporary files."""
        for seq in self.seqs()[: -self.keep]:
            self.path(seq).unlink(missing_ok=True)
        for name in os.listdir(self.directory):
            if name.endswith(_TMP_SUFFIX):
                (self.directory / name).unlink(missing_ok=True)

    def load(self, seq: int) -> Snapshot:
        """Read and check the snapshot at `seq`. Blocking; O(orders).

        Raises:
            SnapshotError: missing, torn, corrupt, another format, market or seq.
        """
        try:
            data = self.path(seq).read_bytes()
        except OSError as exc:
            raise SnapshotError(f"snapshot {seq}: cannot read: {exc}") from exc
        snapshot = self.parse(data, f"snapshot {seq}")
        if snapshot.seq != seq:
            raise SnapshotError(f"snapshot {seq}: holds seq {snapshot.seq}")
        return snapshot

    def parse(self, data: bytes, what: str) -> Snapshot:
        """Check and decode a snapshot file's bytes (`what` names it in errors).

        Raises:
            SnapshotError: torn, corrupt, another format or market.
        """
        state, orders = _verified_body(data, what)
        try:
            if state.get("spec") != self._spec_json:
                raise ValueError(f"a snapshot of another market (spec {state.get('spec')})")
            return _snapshot(state, orders, self.spec)
        except (ValueError, TypeError, KeyError, ValidationError) as exc:
            raise SnapshotError(f"{what}: {exc}") from exc

    def adopt(self, data: bytes, what: str) -> Snapshot:
        """Check a snapshot's bytes from elsewhere (another matcher's, from the object
        store) and keep them as this store's file of their seq. Blocking.

        Raises:
            SnapshotError: not a valid snapshot of this market (nothing written).
            OSError: the file could not be written.
        """
        snapshot = self.parse(data, what)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(snapshot.seq)
        tmp = path.with_name(path.name + _TMP_SUFFIX)
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        self._sync_directory()
        return snapshot

    def infos(self) -> list[SnapshotInfo]:
        """Every snapshot file, oldest first, each checked (`load`). Blocking."""
        infos = []
        for seq in self.seqs():
            path = self.path(seq)
            size = path.stat().st_size if path.exists() else 0
            try:
                snapshot = self.load(seq)
            except SnapshotError as exc:
                infos.append(SnapshotInfo(seq, path, size, None, None, str(exc)))
            else:
                infos.append(SnapshotInfo(seq, path, size, snapshot.root, len(snapshot.book), None))
        return infos

    def _sync_directory(self) -> None:
        """Make the rename durable (POSIX; a no-op where directories cannot be opened)."""
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:  # pragma: no cover - e.g. Windows
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _verified_body(data: bytes, what: str) -> tuple[Any, bytes]:
    """The state object and the book bytes of a snapshot file, its header checked."""
    line, newline, body = data.partition(b"\n")
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not newline or not isinstance(header, dict):
        raise SnapshotError(f"{what}: no header (torn, or not a snapshot)")
    if header.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"{what}: format {header.get('format')!r}, not {SNAPSHOT_FORMAT!r}")
    if header.get("size") != len(body):
        raise SnapshotError(f"{what}: {len(body)} bytes, header says {header.get('size')} (torn)")
    if header.get("sha256") != hashlib.sha256(body).hexdigest():
        raise SnapshotError(f"{what}: content hash mismatch (corrupt)")
    text, newline, orders = body.partition(b"\n")
    try:
        state = json.loads(text)
    except ValueError as exc:
        raise SnapshotError(f"{what}: bad state line: {exc}") from exc
    if not newline or not isinstance(state, dict):
        raise SnapshotError(f"{what}: bad state line")
    return state, orders


_CHUNK = 1000
"""Orders encoded per call: one C call holds the GIL, and the event loop waits for it."""


def _orders_json(orders: Sequence[RestingOrder]) -> bytes:
    """``canonical_json(list(orders))``, in chunks (a `RestingOrder` is a JSON array)."""
    parts = [canonical_json(orders[i : i + _CHUNK])[1:-1] for i in range(0, len(orders), _CHUNK)]
    return f"[{','.join(parts)}]".encode()


def _snapshot(state: dict[str, Any], orders: bytes, spec: MarketSpec) -> Snapshot:
    """Raises: ValueError, TypeError, KeyError, ValidationError: not a valid state."""
    seq, first, root, prev = state["seq"], state["first"], state["root"], state["prev"]
    if not (type(seq) is int and type(first) is int and 1 <= first <= seq):
        raise ValueError("seq and first must be integers, 1 <= first <= seq")
    if not isinstance(root, str) or not (prev is None or isinstance(prev, str)):
        raise ValueError("root must be a string, prev a string or null")
    if not isinstance(state["events"], list):
        raise ValueError("events must be a list")
    events = tuple(event_from_wire(obj, spec) for obj in state["events"])
    rows = json.loads(orders)
    if not (isinstance(rows, list) and all(isinstance(r, list) and len(r) == 7 for r in rows)):
        raise ValueError("orders: a list of [clientId, orderId, side, price, remaining, seq, ts]")
    book = OrderBook.from_orders(spec, map(RestingOrder._make, rows))
    return Snapshot(seq, root, prev, first, events, book)
