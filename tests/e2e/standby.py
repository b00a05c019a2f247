"""A hot standby matcher pair as processes, and what a client sees across a takeover.

```python
pair = MatcherPair(exchange, grapes=(1, 1))     # active and standby, same --db, --port
pair.start()                                    # the active ready, the standby following
with HeadWatch(exchange.grapes[0]) as heads:    # orderbook_head, asked over and over
    killed_at, head = pair.kill_active()        # kill -9; the head it had recorded
    seen_at = heads.first_beyond(head, killed_at)   # the next version, as a client sees it
    pair.start_standby()                        # a new standby for the next fault
```
The recovery of a matcher fault is ``seen_at - killed_at``: from the kill to the first
``orderbook_head`` answer of a seq beyond the dead one's last recorded version (the one
taking over first republishes that head; what counts is the *next* version), timed on
the client side, not read from a log. Every process is the harness's (`Exchange.spawn`),
stopped by its PID when the exchange closes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
from support.ports import free_port

from e2e.harness import Exchange, Proc
from exchange.client import ClientNode, ReplicaUpdate
from exchange.protocol import ORDERBOOK_HEAD, Head
from exchange.versions import Version
from transports import RemoteError, TransportError, open_transport

__all__ = [
    "FOLLOWING",
    "READY",
    "TAKING_OVER",
    "HeadWatch",
    "MatcherPair",
    "Taken",
    "TakenVersions",
    "applied_head",
]

READY = "process_order worker ready"
FOLLOWING = "standby: another matcher holds"
TAKING_OVER = "standby: taking over at seq"


def applied_head(db: Path) -> int:
    """The highest seq in the matcher's applied log (its documented table), read-only."""
    if not db.exists():
        return 0
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        try:
            (head,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM applied").fetchone()
        except sqlite3.OperationalError:  # the table is not made yet
            return 0
    return int(head)


class MatcherPair:
    """An active matcher and a ``--standby`` one on the same ``--db`` and ``--port``.

    Args:
        exchange: whose process database, workdir and grapes are used.
        grapes: the grape index of the first active matcher and of its standby; each
            new standby goes on the grape of the one that died.
        extra: more arguments for every matcher (``--give-up-after 2``...).
    """

    def __init__(
        self, exchange: Exchange, *, grapes: tuple[int, int] = (1, 1), extra: tuple[str, ...] = ()
    ) -> None:
        self.exchange = exchange
        self.port = free_port()
        self.extra = extra
        self.procs: list[Proc] = []
        """The matchers alive, oldest first: the active one, then the standby."""
        self.grape_of: dict[int, int] = {}
        self._grapes = grapes
        self.takeovers = 0

    def _spawn(self, grape: int, *, standby: bool) -> Proc:
        argv = [
            "bin/processOrderWorker.py", f"grape={self.exchange.grapes[grape]}", "--db",
            str(self.exchange.process_db), "--port", str(self.port), *self.extra,
        ]  # fmt: skip
        if standby:
            argv.append("--standby")
        proc = self.exchange.spawn("standby" if standby else "process", argv)
        self.procs.append(proc)
        self.grape_of[proc.pid] = grape
        return proc

    def start(self, timeout: float = 60.0) -> None:
        """The active matcher (ready), then the standby (following it)."""
        active = self._spawn(self._grapes[0], standby=False)
        active.wait_for_text(READY, timeout)
        self.exchange.process = active
        self.start_standby(self._grapes[1], timeout)

    def start_standby(self, grape: int | None = None, timeout: float = 60.0) -> Proc:
        """A standby on `grape` (default: the other one's), once it follows."""
        if grape is None:
            dead = [g for g in self._grapes if g not in self.grape_of.values()]
            grape = dead[0] if dead else self._grapes[1]
        proc = self._spawn(grape, standby=True)
        proc.wait_for_text(FOLLOWING, timeout)
        return proc

    @property
    def active(self) -> Proc:
        return self.procs[0]

    def kill_active(self) -> tuple[float, int]:
        """kill -9 the active matcher; when (time.time()) and the head it had recorded.

        The standby is left to take over; `wait_taken_over` waits for it to serve.
        """
        active = self.procs.pop(0)
        killed_at = time.time()
        active.kill9()
        del self.grape_of[active.pid]
        return killed_at, applied_head(self.exchange.process_db)

    def wait_taken_over(self, timeout: float = 60.0) -> Proc:
        """The standby, once it serves (it logs that it took over, then that it is ready)."""
        taker = self.active
        taker.wait_for_text(READY, timeout)
        assert TAKING_OVER in taker.text(), taker.text()
        self.exchange.process = taker
        self.takeovers += 1
        return taker

    def gone(self, proc: Proc, timeout: float = 60.0) -> None:
        """Wait for `proc` (the active one, giving up) to exit; forget it."""
        proc.popen.wait(timeout=timeout)
        self.procs.remove(proc)
        del self.grape_of[proc.pid]


class _InThread:
    """Runs `_run` under anyio in a daemon thread while the `with` block lasts; what it
    raised is kept in `errors` (the waits raise the first)."""

    _name = "background"

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(10)

    def _main(self) -> None:
        try:
            anyio.run(self._run)
        except BaseException as exc:
            self.errors.append(exc)

    async def _run(self) -> None:
        raise NotImplementedError


class HeadWatch(_InThread):
    """Asks ``orderbook_head`` through `grape` every `interval` seconds in a thread, and
    keeps when each answer came and its seq: a client's view of the published head."""

    _name = "heads"

    def __init__(self, grape: str, *, interval: float = 0.02) -> None:
        super().__init__()
        self.grape = grape
        self.interval = interval
        self.answers: list[tuple[float, int]] = []
        """(time.time() the answer came, its seq)."""
        self._lock = threading.Lock()

    async def _run(self) -> None:
        async with open_transport("grenache", grape=self.grape) as transport:
            while not self._stop.is_set():
                with suppress(TransportError, RemoteError):
                    wire: Any = await transport.request(ORDERBOOK_HEAD, None, timeout=1)
                    seq = Head.from_wire(wire).seq
                    with self._lock:
                        self.answers.append((time.time(), seq))
                await anyio.sleep(self.interval)

    def first_beyond(self, seq: int, after: float, timeout: float = 60.0) -> float:
        """When the first answer after `after` (time.time()) of a seq above `seq` came."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = [at for at, s in self.answers if at >= after and s > seq]
            if seen:
                return min(seen)
            if self.errors:
                raise self.errors[0]
            assert time.monotonic() < deadline, f"no version beyond seq {seq} in {timeout} s"
            time.sleep(0.02)


@dataclass(frozen=True)
class Taken:
    """A version a client's replica took: what its root says, and how it got there."""

    seq: int
    first: int
    root: str
    prev: str | None
    book: str | None
    complete: bool


class TakenVersions(_InThread):
    """A client (`exchange.client.ClientNode`, in a thread, through `grape`) that only
    watches, and keeps every version its replica took and every warning it gave."""

    _name = "follower"

    def __init__(self, grape: str) -> None:
        super().__init__()
        self.grape = grape
        self.taken: list[Taken] = []
        self.warnings: list[str] = []
        self.full_fetches = 0
        """Versions the replica read whole (the first one; then only if a chain broke
        or a fetch failed)."""
        self._node: ClientNode | None = None

    async def _run(self) -> None:
        async with (
            open_transport("grenache", grape=self.grape) as transport,
            anyio.create_task_group() as tg,
        ):
            node = ClientNode(
                transport, "standby-watcher", emit=self._record, on_version=self._took
            )
            await tg.start(node.run)
            self._node = node
            while not self._stop.is_set():
                self.full_fetches = node.replica.full_fetches
                await anyio.sleep(0.05)
            tg.cancel_scope.cancel()

    def _record(self, record: dict[str, Any]) -> None:
        if record.get("event") == "warning":
            self.warnings.append(str(record["message"]))

    def _took(self, update: ReplicaUpdate[Version]) -> None:
        root = update.version.root
        self.taken.append(
            Taken(root.seq, root.first, update.root_hash, root.prev, root.book, update.complete)
        )

    def wait_seq(self, seq: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.taken or self.taken[-1].seq < seq:
            if self.errors:
                raise self.errors[0]
            last = self.taken[-1].seq if self.taken else 0
            assert time.monotonic() < deadline, f"the replica is at {last}, not {seq}"
            time.sleep(0.05)

    def check_chain(self) -> None:
        """Every version taken links to the one taken before it: its ``prev`` is that
        one's root when it follows it at once, and its events were all collected when it
        skips some (the walk back along ``prev`` reached it); seqs only go up; and the
        client refused nothing it was told of."""
        for before, after in zip(self.taken, self.taken[1:], strict=False):
            assert after.seq > before.seq, (before, after)
            if after.first == before.seq + 1:
                assert after.prev == before.root, f"a broken chain taken: {before} -> {after}"
            else:
                assert after.complete, f"versions skipped, not linked: {before} -> {after}"
        refused = [w for w in self.warnings if w.startswith(("ignored", "could not walk"))]
        assert refused == [], refused
