"""The process_order worker (the matcher): applies the sequenced commands, publishes versions.

It serves two names of its market (`exchange.protocol.market_names`), and ``markets``:

- ``process_order`` with payload ``{"seq": N, "ts": ms, "command": {...}}`` (from the
  submit worker). N is applied only if it is the last applied number plus one; an N
  already applied gets its recorded reply ``{"seq": N, "root": "<hash>"}`` again and
  changes nothing (at-least-once delivery, applied once); any other N is refused with
  ``ERR_SEQ_GAP: expected <n>``, which tells the sender where to resume.
- ``orderbook_head`` with payload ``null``: ``{"seq": N, "root": "<hash>" | null,
  "key": "<its public key>", "instance": "<the sequencer's public key>", "sig": "<its
  signature>"}`` (`exchange.protocol.sign_head`).

Only the sequencer feeds the matcher: every ``process_order`` request must carry the
signature of the sequencer's key (``sig``, `exchange.protocol.PROCESS_DOMAIN`), else
it is refused with ``ERR_AUTH`` before anything is looked at.

Applying one command (under a lock, so one at a time, in order):

1. decode the request (`exchange.protocol.ProcessBatch`): its shape (``ERR_BAD_REQUEST``),
   then each command (``ERR_VALIDATION``), once: with the core's validator, or, in the
   sequencer's own form, to the same result without its Decimal work (`BatchDecoder`);
   the typed entries (`exchange.protocol.Entry`) are what is applied, published and
   recorded;
2. in ``book.transaction()``: apply through the core (`apply_entry`), store the new
   version in the DHT (`VersionPublisher`), then record ``(seq, ts, command, root)`` in
   SQLite. If the DHT
   put fails, the transaction restores the book and the command is refused with
   ``ERR_UNAVAILABLE``: the submit worker retries it, and no published version ever
   shows a half-applied command. A rejected order is *not* a failure: it is an
   ``OrderRejected`` event, consumes its number and is published like any command;
3. hand the new root to the broadcaster and reply (with `linger`, the matcher's
   ``--version-linger``, a fraction of the version's time later: the sequencer's next
   run grows meanwhile, so under load versions are fewer and bigger).

The broadcaster is a task of the worker's own task group: it ``map``s the *latest* root
to ``orderbook_updated`` (per-peer results; failures are logged once per peer, never
raised), one broadcast at a time. Processing never waits for it, so a slow or dead
subscriber (dead peers stay announced forever on CLI grapes) delays nothing; roots that
come in while a broadcast is running are coalesced into the newest one (each root
document links to its ``prev``, so a client can walk back).

Restart: the worker's SQLite (`AppliedLog`) holds every applied command;
`run` loads the newest valid snapshot (`SnapshotStore`, taken every `snapshot_every`
commands or `snapshot_interval` seconds) and replays the commands after it through the
deterministic core (all of them when there is no usable snapshot), which rebuilds
exactly the book it had, and resumes at the recorded head. Nothing is applied twice
(numbers up to the head are answered from the record) and nothing is lost (the submit
worker's journal resends everything after the head). The next version links
(``prev``) to the recorded head, so the chain of versions is the one an uninterrupted
run publishes, hash for hash; and the head version is put again in the background, in
case the DHT forgot it meanwhile (a grape restarted, or evicted it).

A failure to write the record after a successful publish means the disk is failing: the
worker stops (``run`` raises) rather than go on with memory and disk disagreeing; its
restart replays what was recorded and the submit worker resends the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from exchange.matcher._applied import AppliedLog, AppliedRecord
from exchange.matcher._batch import BatchDecoder
from exchange.matcher._broadcaster import Broadcaster
from exchange.matcher._restore import HeadVersion, VersionPart, restore
from exchange.matcher._snapshots import (
    DEFAULT_SNAPSHOT_EVERY,
    DEFAULT_SNAPSHOT_INTERVAL,
    DEFAULT_SNAPSHOT_KEEP,
    Capture,
    SnapshotStore,
    snapshot_dir,
)
from exchange.matcher._snapshotter import Snapshotter
from exchange.matcher._standby import Follows, Standby
from exchange.protocol import (
    ERR_BAD_REQUEST,
    ERR_UNAVAILABLE,
    PROCESS_DOMAIN,
    PROCESS_ORDER,
    AuthFailed,
    Entry,
    Head,
    HeadRequest,
    ProcessReply,
    Refused,
    apply_entry,
    market_names,
    matcher_handlers,
    public_key_hex,
    seq_gap,
    sign_head,
    verify_object,
)
from exchange.runtime import (
    NO_METRICS,
    Metrics,
    Outage,
    TimedPuts,
    crash_point,
    observe_refusals,
    one_writer,
)
from exchange.versions import BookFlusher, VersionPublisher
from orderbook_core import DEFAULT_SPEC, Event, MarketSpec, OrderBook, canonical_json
from transports import JSON, Transport, TransportError

__all__ = ["GaveUp", "ProcessWorker"]

_log = logging.getLogger("exchange.matcher")

_T = TypeVar("_T")

_REPUBLISH_RETRY = 0.5
"""Seconds before a failed republish of the head is tried again (doubling)."""

_REPUBLISH_RETRY_MAX = 10.0

_MAX_LINGER = 0.1
"""Seconds a reply waits after a version at most (`ProcessWorker.linger`)."""

"""Failing broadcast peers remembered (so each is logged once), least recent dropped."""


class GaveUp(Exception):
    """The matcher stopped being active: it could not publish for too long."""


class ProcessWorker:
    """Serves ``process_order`` and ``orderbook_head``; broadcasts ``orderbook_updated``.

    Args:
        transport: the network to serve, publish and broadcast on.
        db_path: this worker's SQLite file (applied commands and their roots).
        spec: the market's specification.
        port: where to serve (0: a free port).
        broadcast_timeout: seconds each ``orderbook_updated`` request may take.
        republish_timeout: seconds the startup republish of the head version may take.
        metrics: told of each version, DHT put and broadcast (`exchange.runtime`).
        signing_key: the matcher's own key: every version's root and every
            ``orderbook_head`` reply is signed with it, and clients trust it (given, or
            on first use).
        sequencer_key: the only key ``process_order`` requests may be signed by; or a
            callable that returns it (None while it is not known yet: requests are
            refused with ``ERR_AUTH`` until it is), e.g. one that reads the file the
            sequencer writes at its first start.
        snapshot_every: take a snapshot once this many commands were applied since the
            last one (0: not by count).
        snapshot_interval: take one this many seconds after the last one, if a command
            was applied since (0: not by time).
        snapshot_keep: snapshots kept (`SnapshotStore`); 0: none taken (a start still
            uses the newest valid one it finds).
        snapshot_path: where the snapshots are (default ``<db_path>.snapshots``).
        standby: while another matcher holds `db_path`, follow its applied log and take
            over when it stops (`Standby`), instead of failing with `DatabaseInUse`.
        give_up_after: stop (`run` raises `GaveUp`) once storing versions has failed
            for this many seconds, so a standby takes over (0: never, retry for ever).
    """

    def __init__(
        self,
        transport: Transport,
        db_path: str | Path,
        spec: MarketSpec = DEFAULT_SPEC,
        *,
        port: int = 0,
        broadcast_timeout: float = 2.0,
        republish_timeout: float = 30.0,
        metrics: Metrics = NO_METRICS,
        sequencer_key: Ed25519PublicKey | Callable[[], Ed25519PublicKey | None],
        signing_key: Ed25519PrivateKey,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        snapshot_interval: float = DEFAULT_SNAPSHOT_INTERVAL,
        snapshot_keep: int = DEFAULT_SNAPSHOT_KEEP,
        snapshot_path: str | Path | None = None,
        standby: bool = False,
        give_up_after: float = 0.0,
    ) -> None:
        if snapshot_every < 0 or snapshot_interval < 0 or snapshot_keep < 0:
            raise ValueError("snapshot_every, snapshot_interval, snapshot_keep must be >= 0")
        self.transport = transport
        self.signing_key = signing_key
        self._sequencer_key = sequencer_key
        self.db_path = Path(db_path)
        self.spec = spec
        self.port = port
        self.republish_timeout = republish_timeout
        self.metrics = metrics
        # What the publishers put through: timed, when someone observes.
        self._dht = transport if metrics is NO_METRICS else TimedPuts(transport, metrics)
        self.book = OrderBook(spec)
        self._batches = BatchDecoder(spec)  # the sequencer's signed batches (`_batch`)
        self.head_seq = 0
        self.head_root: str | None = None
        self.publisher = VersionPublisher(self._dht, spec, signing_key=signing_key)
        self._log: AppliedLog | None = None
        self._lock = anyio.Lock()
        self.books = BookFlusher(lambda: self.publisher)  # puts the book pages, after
        # After a version, the reply waits `linger` x the version's time (at most
        # `_MAX_LINGER`), so the sequencer's next run grows meanwhile: under load, when
        # versions are slow, fewer and bigger versions (the matcher's `--version-linger`).
        self.linger = 0.0
        self._changed = anyio.Event()
        self._failed = anyio.Event()
        self._failure: BaseException | None = None
        # What is retried while it fails is logged when it starts and stops failing.
        self._storing = Outage(_log, "storing versions in the DHT")
        self._conflicts_logged: set[int] = set()
        store = SnapshotStore(
            snapshot_dir(db_path) if snapshot_path is None else snapshot_path,
            spec,
            keep=max(snapshot_keep, 1),
        )
        self.snapshotter = Snapshotter(store, every=snapshot_every, interval=snapshot_interval)
        self._snapshotting = snapshot_keep > 0 and (snapshot_every > 0 or snapshot_interval > 0)
        self._version: VersionPart | None = None
        self.standby: Follows | None = None if not standby else Standby(self.db_path, spec, store)
        # JetStream (`KVStandby.fence`): awaited with first, seq, root before anyone is told.
        self.fence: Callable[[int, int, str], Awaitable[None]] | None = None
        self.give_up_after = give_up_after
        self._failing_since: float | None = None
        self.active = anyio.Event()
        """Set once this worker serves (at once, or when a standby took over)."""
        self.restored_from: int | None = None
        """The snapshot seq the last start used (None: a replay from zero)."""
        self.republished = anyio.Event()
        """Set once the restored head version was put again (or that failed)."""
        self.broadcaster = Broadcaster(
            transport,
            market_names(spec.market).orderbook_updated,
            metrics,
            timeout=broadcast_timeout,
            root=lambda: self.head_root,
            changed=lambda: self._changed,
        )

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: TaskStatus[int] = TASK_STATUS_IGNORED) -> None:
        """Restore the state from the database, then serve until cancelled.

        Calls ``task_status.started(port)`` once both names are announced. The database
        is locked for as long as this runs (`exchange.runtime.one_writer`): one writer only.

        Raises:
            DatabaseInUse: another worker holds the database (nothing was read; a
                standby waits for it instead).
            transports.TransportError: cannot serve (listen or announce).
            sqlite3.Error: the database cannot be read, or an applied command could not
                be recorded (the worker stops; restart it).
            GaveUp: storing versions failed for `give_up_after` seconds.
        """
        with ExitStack() as stack:
            if self.standby is None:
                stack.enter_context(one_writer(self.db_path))
            else:
                await self.standby.take_over(stack)
            await self._run(task_status)

    async def _run(self, task_status: TaskStatus[int]) -> None:
        log = await anyio.to_thread.run_sync(AppliedLog, self.db_path, self.spec)
        try:
            self._log = log
            head = await anyio.to_thread.run_sync(self._restore)
            self.metrics.matcher_head(self.head_seq)
            process = observe_refusals(PROCESS_ORDER, self.process, self.metrics)
            handlers = matcher_handlers(self.spec, process, self.head, logger=_log)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._republish_head, head)
                port: int = await tg.start(partial(self.transport.serve, handlers, port=self.port))
                tg.start_soon(self.broadcaster.run, self.republished)
                tg.start_soon(self.books.run)
                if self._snapshotting:
                    seq = lambda: self.head_seq  # noqa: E731
                    tg.start_soon(self.snapshotter.run, seq, self._lock, self._copy)
                _log.info(
                    "process_order: serving on port %d, head seq=%d root=%s (db %s)",
                    port,
                    self.head_seq,
                    self.head_root,
                    self.db_path,
                )
                self.active.set()
                task_status.started(port)
                await self._failed.wait()
                assert self._failure is not None
                raise self._failure
        finally:
            self._log = None
            with anyio.CancelScope(shield=True):  # we are usually here because of a cancel
                await anyio.to_thread.run_sync(log.close)

    def _restore(self) -> HeadVersion | None:
        """Rebuild the state from the snapshots and the applied log (blocking)."""
        assert self._log is not None
        follower = None if self.standby is None else self.standby.follower
        if follower is None:
            restored = restore(self._log, self.snapshotter.store, self.spec, self.db_path)
        else:  # a standby taking over: only what came after its last look
            follower.advance(self._log)
            restored = follower.restored(self._log)
        self.book, head = restored.book, restored.head
        self.restored_from = restored.snapshot
        self.snapshotter.seq = restored.snapshot or 0
        if head is None:
            return None
        self.head_seq, self.head_root, self._version = head.seq, head.root, restored.version
        # The next version links to the recorded head, as it would without the restart.
        self.publisher = VersionPublisher(
            self._dht, self.spec, prev=head.root, signing_key=self.signing_key
        )
        return head

    async def _republish_head(self, head: HeadVersion | None) -> None:
        """Put the restored head version again, so it is readable even if the DHT forgot it.

        Runs in the background (a restart does not wait for the DHT), with a publisher of
        its own so it never touches the main publisher's state. The core and the
        publisher are deterministic, so it reproduces the recorded root exactly; a
        mismatch or a failure is logged, not raised. Sets `republished` when done: the
        broadcaster waits for it, so clients are not sent a root whose pages are missing.
        A failed republish is tried again (backing off to `_REPUBLISH_RETRY_MAX` s) until
        it works, `republished` set after the first try: the book pages of a head whose
        flush had failed before the restart are stored by nothing else, and every later
        version's flush puts only the pages it changed (the chaos simulation's seeds 836,
        1077 and 1516 read such a head's book whole at the end).
        """
        delay = _REPUBLISH_RETRY
        try:
            if head is None:
                return
            while True:
                publisher = VersionPublisher(
                    self._dht, self.spec, prev=head.prev, signing_key=self.signing_key
                )
                try:
                    with anyio.fail_after(self.republish_timeout):
                        root = await publisher.publish(
                            head.book,
                            head.events,
                            seq=head.seq,
                            first=head.first,
                            commands=head.commands,
                        )
                    break
                except (TransportError, TimeoutError) as exc:
                    _log.warning("republishing head seq=%d failed: %s", head.seq, exc)
                    self.republished.set()  # the broadcaster does not wait for the retries
                    await anyio.sleep(delay)
                    delay = min(delay * 2, _REPUBLISH_RETRY_MAX)
            if root != head.root:
                _log.error(
                    "republished head seq=%d as %s, but %s was recorded (code changed?)",
                    head.seq,
                    root,
                    head.root,
                )
        finally:
            self.republished.set()

    # ------------------------------------------------------------------ services

    async def head(self, payload: JSON) -> JSON:
        """Handle ``orderbook_head``: reply ``{"seq": N, "root": hash | None}``.

        A long poll (``{"after": N, "waitMs": M}``) is answered as soon as a version
        beyond N is recorded, or after M ms with the head as it is then.
        """
        request = HeadRequest.from_wire(payload)
        if request.after is not None:
            with anyio.move_on_after(request.wait_ms / 1000):
                while self.head_seq <= request.after:
                    await self._changed.wait()
        head = Head(self.head_seq, self.head_root, instance=self._instance())
        return sign_head(head, self.signing_key).to_wire()

    async def process(self, payload: JSON) -> JSON:
        """Handle ``process_order``: apply a run of entries, each number exactly once.

        Entries at or below the head are answered from the record (the same entry only);
        the rest must start at head + 1, and are applied in one transaction and
        published as one version covering ``first..seq``.

        Returns:
            ``{"seq": N, "root": "<hash>"}``: the version that includes the last entry N.

        Raises:
            AuthFailed: the request is not signed by the sequencer's key (ERR_AUTH).
            BadMessage: the payload is not the protocol's shape (ERR_BAD_REQUEST).
            orderbook_core.ValidationError: a command breaks a rule (nothing changed).
            Refused: ERR_SEQ_GAP (the run does not start at head + 1), ERR_BAD_REQUEST (an
                applied number resent with another command), ERR_UNAVAILABLE (the DHT did
                not store the version; nothing changed).
        """
        batch = self._batches.decode(self._verify(payload))
        async with self._lock:
            if self._failure is not None:
                raise Refused(ERR_UNAVAILABLE, "the worker is stopping")
            applied = [entry for entry in batch.entries if entry.seq <= self.head_seq]
            fresh = batch.entries[len(applied) :]
            if applied:
                reply = await self._recorded(applied)
                if not fresh:
                    return reply
            if fresh[0].seq != self.head_seq + 1:
                raise seq_gap(self.head_seq + 1)
            first, seq = fresh[0].seq, fresh[-1].seq
            started = time.perf_counter()
            try:
                with self.book.transaction():
                    events: list[Event] = []
                    for entry in fresh:
                        events.extend(apply_entry(self.book, entry))
                        crash_point("mid_batch")  # test hook: applied in memory only
                    root = await self.books.publish(
                        self.book, events, seq=seq, first=first, commands=fresh
                    )
                    crash_point("after_version_put")  # test hook: in the DHT, not recorded
                    if self.fence is not None:
                        await self.fence(first, seq, root)
                    # Published: record it even if we are cancelled now, so that memory,
                    # disk and the publisher's chain (`prev`) move on together.
                    with anyio.CancelScope(shield=True):
                        await self._record([AppliedRecord(entry, root) for entry in fresh])
            except TransportError as exc:
                self._storing.failed(f"seq={first}..{seq} not applied: {exc}")
                self._give_up_if_failing_too_long(exc)
                raise Refused(ERR_UNAVAILABLE, f"storing version {seq} failed: {exc}") from exc
            except BaseException:
                # Not applied after all (cancelled mid-publish, or a bug). If the publisher
                # got as far as the root, its next version would link to this unapplied
                # one: start a publisher afresh from the real head.
                self.publisher = VersionPublisher(
                    self._dht, self.spec, prev=self.head_root, signing_key=self.signing_key
                )
                raise
            # No checkpoint between the commit above and these lines: memory follows disk.
            self._version = VersionPart(first, self.head_root, tuple(events))
            self.head_seq, self.head_root = seq, root
            self.snapshotter.applied(seq)
            self._storing.worked()
            self._failing_since = None
            self._notify()
            self.metrics.version_published(seq, len(fresh), time.perf_counter() - started)
            flushed = await self.books.after_version()  # announced: the book's pages
        _log.info(
            "applied seq=%d..%d (%d events) root=%s puts=%d refreshes=%d",
            first,
            seq,
            len(events),
            root,
            self.publisher.last_put_count + flushed,
            self.publisher.last_refresh_count,
        )
        if self.linger:  # announced already: only the next run waits
            await anyio.sleep(min(self.linger * (time.perf_counter() - started), _MAX_LINGER))
        crash_point("before_process_reply")  # test hook: recorded, the sender not told
        return ProcessReply(seq, root).to_wire()

    def _give_up_if_failing_too_long(self, exc: TransportError) -> None:
        """Stop being the active matcher once puts have failed for `give_up_after` s,
        so that a standby (with grapes of its own) takes over (`GaveUp`)."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if self.give_up_after and now - self._failing_since >= self.give_up_after:
            failing = now - self._failing_since
            self.stop(GaveUp(f"storing versions has failed for {failing:.1f} s: {exc}"))

    def stop(self, failure: BaseException) -> None:
        """Stop serving: `run` raises `failure`."""
        self._failure = failure
        self._failed.set()

    def _known_sequencer_key(self) -> Ed25519PublicKey | None:
        """The sequencer's key, once known (then never read again)."""
        source = self._sequencer_key
        key = source if isinstance(source, Ed25519PublicKey) else source()
        if key is not None:
            self._sequencer_key = key
        return key

    def _instance(self) -> str | None:
        """The exchange instance a head names: the sequencer's public key (None: not
        known yet). Clients pin this matcher's key to it (docs/protocol.md, "Trust")."""
        key = self._known_sequencer_key()
        return None if key is None else public_key_hex(key)

    def _verify(self, payload: JSON) -> JSON:
        """The request without its ``sig``, once proven the sequencer's.

        Raises:
            AuthFailed: not signed by the sequencer's key, or that key is not known yet.
        """
        if not isinstance(payload, dict):
            raise AuthFailed("process_order payload: must be a signed object")
        key = self._known_sequencer_key()
        if key is None:
            raise AuthFailed("sig: the sequencer's key is not known yet")
        return verify_object(PROCESS_DOMAIN, payload, key, what="the sequencer")

    async def _recorded(self, entries: list[Entry]) -> JSON:
        """The reply recorded for already applied entries (the same entries only).

        The timestamp is compared too: a journal never rewrites an entry's, so equal
        commands with another `ts` come from another journal (e.g. another run that
        submitted the same payloads) and were not what this worker applied.
        """
        first, last = entries[0].seq, entries[-1].seq
        records = await self._db(partial(self._log_range, first, last))
        if [r.entry.seq for r in records] != [e.seq for e in entries]:  # pragma: no cover
            raise RuntimeError(f"seqs {first}..{last} are below the head but not recorded")
        for record, entry in zip(records, entries, strict=True):
            if canonical_json(record.entry.wire) != canonical_json(entry.wire) or (
                record.entry.ts != entry.ts
            ):
                # Two different commands under one number: the sender's journal is not the
                # one we applied (e.g. it was wiped). Refuse loudly, never answer for another;
                # once per seq in the log, as the sender resends it until it is fixed.
                if entry.seq not in self._conflicts_logged:
                    self._conflicts_logged.add(entry.seq)
                    _log.error("seq=%d was applied with a different command than resent", entry.seq)
                raise Refused(
                    ERR_BAD_REQUEST, f"seq {entry.seq} was applied with a different command"
                )
        return ProcessReply(last, records[-1].root).to_wire()

    async def _record(self, records: list[AppliedRecord]) -> None:
        """Persist applied commands; a failure stops the worker (see the module doc)."""
        try:
            await self._db(partial(self._log_append, records))
        except Exception as exc:
            _log.critical(
                "seq=%d: recording the applied commands failed: %s", records[0].entry.seq, exc
            )
            self.stop(exc)
            raise Refused(ERR_UNAVAILABLE, "the worker is stopping") from exc

    def _log_range(self, first: int, last: int) -> list[AppliedRecord]:
        assert self._log is not None
        return self._log.range(first, last)

    def _log_append(self, records: list[AppliedRecord]) -> None:
        assert self._log is not None
        self._log.append(records)

    async def _db(self, call: Callable[[], _T]) -> _T:
        return await anyio.to_thread.run_sync(call)

    # ------------------------------------------------------------------ snapshots

    async def snapshot(self) -> int | None:
        """Take a snapshot now (`Snapshotter.take`): its seq, or None (none taken)."""
        return await self.snapshotter.take(self._lock, self._copy)

    def _copy(self) -> Capture | None:
        """The state now, for a snapshot (under the lock: at a version boundary)."""
        version = self._version
        if self.head_root is None or version is None:
            return None
        orders = tuple(self.book.orders())
        return Capture(
            self.head_seq, self.head_root, version.prev, version.first, version.events, orders
        )

    # ------------------------------------------------------------------ changes

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
