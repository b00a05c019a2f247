"""The submit_order worker: the exchange's sequencer.

It serves ``submit_order``. Each payload is validated once, by the core's wire
validator, numbered with the next gap-free sequence number, timestamped (an
`exchange.protocol.Entry` from then on) and committed to its journal (a
`JournalBackend`: the SQLite `Journal`, fsynced, or a JetStream stream, stored on a
majority of its servers) *before* the reply ``{"seq": N, "orderId": "..."}`` goes out. A bad
payload gets ``ERR_VALIDATION: <field>: <rule>`` and stores nothing; a repeated
``(clientId, orderId)`` gets the first reply back and queues nothing.

Signatures
----------
Every payload is signed by its client (`exchange.protocol.verify_order`). A clientId is
bound to the key of its first accepted command, and that binding is committed with the
command (trust on first use); every later command of that clientId must be signed by
the same key, else ``ERR_AUTH`` and nothing is stored. A signed new order must name its
``orderId``: the signature covers it, so a replay is a repeat, never a second order.
A signed modify must name its ``requestId`` (unique per client) for the same reason: a
modify re-sent later is a repeat, never applied again, and the same requestId on another
modify is refused.
Bindings are checked when a payload arrives and again when it is numbered (no await
between that check and queueing), so two first commands with different keys cannot
both bind. Each ``process_order`` request is signed with the sequencer's own key, the
only one the matcher takes.

Group commit
------------
Numbering happens in the event loop, with no await between choosing a number and
queueing the entry, so numbers are handed out in the order payloads are validated. A
committer task writes everything queued since its last commit in one transaction (one
fsync), then wakes each submit whose entry it stored: every reply still goes out after
its own commit. The transaction (its fsync) runs in a worker thread, never on the
event loop; while commits come closer than `commit_interval` and the last one held
several entries, each waits until that long after the previous one began, so that it
covers more requests (and one thread hop and fsync serve them all).
If a commit fails, nothing of it is stored, so the entries queued after
it (numbered beyond it) are failed too and numbering restarts at the journal's head:
no gap is ever written. The failed submits get ``ERR_UNAVAILABLE`` and their clients
retry with the same orderId. A commit that finds the journal moved on without it
(`JournalConflict`: another sequencer appended) ends its writing: it steps down, says
so in its log (`SteppedDown`), and stands by if it has a lease (`_standby.py`), else exits.

Dedupe: a new order or a cancel is looked up by ``(clientId, op, orderId)``, a modify
by ``(clientId, "modify", requestId)``, among the queued entries, then in the journal.
Journal lookups are batched too: one task looks up every key asked for since its last
trip in one thread call. A journal only this worker writes (SQLite) has its keys
scanned into memory at start (`exchange.sequencer._seen`, a Bloom filter): a key it
never held skips the trip. An entry committed while a lookup runs is
noted for that lookup, so an entry is always found: queued, noted, or on disk.

Batches: a ``submit_order`` payload that is a JSON array of signed payloads is answered
per payload, as if they came one by one (`submit_many`, `exchange.sequencer._batch`).

The forwarder (`exchange.sequencer._forwarder`) sends the journal to ``process_order``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.protocol import (
    ERR_UNAVAILABLE,
    MAX_BATCH,
    AuthFailed,
    Entry,
    Refused,
    SubmitReply,
    market_names,
    new_entry,
)
from exchange.runtime import NO_METRICS, Metrics, crash_point
from exchange.sequencer._backend import (
    JournalBackend,
    JournalConflict,
    SteppedDown,
    WriterLease,
)
from exchange.sequencer._batch import submit_each, submit_handler
from exchange.sequencer._forwarder import Forwarder
from exchange.sequencer._seen import ScansKeys, SeenKeys, load_seen
from exchange.sequencer._standby import run_with_lease
from exchange.sequencer._submitted import DedupeKey, is_modify
from orderbook_core import (
    DEFAULT_SPEC,
    Command,
    MarketSpec,
)
from transports import JSON, Transport

__all__ = ["SteppedDown", "SubmitWorker"]

_log = logging.getLogger("exchange.sequencer")

_T = TypeVar("_T")

_RECENT = 4096
"""Entries committed last that the forwarder takes from memory, not from the journal."""


@dataclass(eq=False)
class _Queued:
    """An entry numbered and waiting for its commit, with the submits waiting on it."""

    entry: Entry
    key: DedupeKey | None
    binding: str | None = None
    """The public key this entry binds its clientId to (its first command), if any."""
    committed: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None

    def reply(self) -> JSON:
        return SubmitReply(self.entry.seq, self.entry.command.order_id).to_wire()


@dataclass(eq=False)
class _Lookup:
    """A dedupe key to look up in the journal, and what was found."""

    key: DedupeKey
    done: anyio.Event = field(default_factory=anyio.Event)
    found: Entry | None = None
    error: BaseException | None = None


class SubmitWorker(Forwarder):
    """Serves ``submit_order`` and forwards the journal to ``process_order``.

    Args:
        transport: the network to serve and call on.
        journal: the durable queue; the worker does not close it.
        spec: the market's specification (tick and lot sizes) for validation: the
            journal's.
        port: where to serve (0: a free port).
        seed: seeds the retry jitter, so a test run is reproducible.
        request_timeout: seconds to wait for one ``process_order`` reply.
        backoff: the first retry delay in seconds; it doubles per failure.
        max_backoff: the cap of the retry delay in seconds.
        idle_check: when the queue is empty, ask ``orderbook_head`` this often (seconds)
            whether the matcher fell behind (e.g. lost its state).
        clock: returns the sequencer's timestamp in ms (default: the wall clock).
        batch_size: the most journal entries one ``process_order`` request carries.
        forward_interval: seconds from one ``process_order`` request to the next, at
            least, unless it is a full batch (see `forward`: a bound on versions per
            second; 0, the default: none).
        metrics: told of each commit, refusal and acknowledgement (`exchange.runtime`).
        signing_key: the sequencer's key: every ``process_order`` request is signed
            with it (the matcher takes no other).
        commit_interval: seconds from the start of one commit to the next, at least,
            while commits follow each other closer than that and the last one held
            several entries (see `_pace`); the first commit after a quiet spell, and
            every commit of a lone client sending one order at a time, go at once.
            0, the default: no bound.
        lease: for a journal several sequencers share (JetStream): the worker is a
            standby until it holds this lease, active while it does, and a standby
            again when it loses it or finds another writer's entries (see `run`).
            None (SQLite): active from the start, and stepping down ends `run`.
    """

    def __init__(
        self,
        transport: Transport,
        journal: JournalBackend,
        spec: MarketSpec = DEFAULT_SPEC,
        *,
        port: int = 0,
        seed: int = 0,
        request_timeout: float = 5.0,
        backoff: float = 0.05,
        max_backoff: float = 0.5,
        idle_check: float = 5.0,
        clock: Callable[[], int] | None = None,
        batch_size: int = 256,
        forward_interval: float = 0.0,
        metrics: Metrics = NO_METRICS,
        signing_key: Ed25519PrivateKey,
        lease: WriterLease | None = None,
        commit_interval: float = 0.0,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}, not {batch_size}")
        if not 0 <= forward_interval <= 10:
            raise ValueError(f"forward_interval must be 0..10 seconds, not {forward_interval}")
        if not 0 <= commit_interval <= 1:
            raise ValueError(f"commit_interval must be 0..1 seconds, not {commit_interval}")
        if journal.spec != spec:
            raise ValueError(f"the journal's market {journal.spec} is not {spec}")
        self.batch_size = batch_size
        self.forward_interval = forward_interval
        self.transport = transport
        self.journal = journal
        self.spec = spec
        self.names = market_names(spec.market)
        self.port = port
        self.request_timeout = request_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.idle_check = idle_check
        self.metrics = metrics
        self.signing_key = signing_key
        self.lease = lease
        self.commit_interval = commit_interval
        self._commit_started = -math.inf  # anyio's clock
        self._last_commit_size = 0
        self._clock = clock or _wall_clock_ms
        self._random = random.Random(seed)
        # Numbering state: what the next entry gets, if the queue commits.
        self._next_seq = journal.head() + 1
        self._last_ts = journal.last_ts()
        self._queue: list[_Queued] = []
        self._queued_keys: dict[DedupeKey, _Queued] = {}
        # clientId -> public key (hex): the journal's bindings, plus those queued.
        self._client_keys: dict[str, str] = journal.client_keys()
        self._lookups: list[_Lookup] = []
        self._lookups_changed = anyio.Event()
        self._noted: dict[DedupeKey, Entry] | None = None
        self._queue_changed = anyio.Event()
        self._appended = anyio.Event()
        self._recent: deque[Entry] = deque(maxlen=_RECENT)  # consecutive seqs
        # The deduplicated keys committed last: a lookup that read the journal just
        # before a commit landed, and resumed after it settled, finds its key here.
        self._committed_keys: OrderedDict[DedupeKey, Entry] = OrderedDict()
        # Every key the journal may hold (`_seen.py`), once scanned; meanwhile the keys
        # queued since the scan began, and every lookup goes to the journal.
        self._seen: SeenKeys | None = None
        self._seen_pending: list[DedupeKey] | None = None
        self.forwarded = 0
        """The highest sequence number process_order has acknowledged in this run."""

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: TaskStatus[int] = TASK_STATUS_IGNORED) -> None:
        """Serve ``submit_order``, commit and forward, until cancelled.

        Calls ``task_status.started(port)`` once ``submit_order`` is announced. The
        journal's writer lock, if it has one (SQLite's file), is held for as long as this
        runs; a JetStream journal's server fences writers itself.

        Raises:
            DatabaseInUse: another worker holds the journal.
            SteppedDown: another writer appended to the journal; this one stopped
                (without a lease; with one, it stands by again).
            transports.TransportError: cannot serve (listen or announce).

        With a `lease`, it first stands by (serves and announces nothing) until it takes
        the lease, then catches up from the journal (its head, client keys, acked mark),
        serves and forwards as above, and calls ``task_status.started`` the first time.
        When it loses the lease (a renewal finds another holder's, or none) or an append
        is refused (another writer appended), it steps down: stops serving, logs it,
        counts it (`Metrics.stepped_down`) and stands by again. While its lease has run
        out unrenewed (paused, no answer from NATS) it appends nothing: ERR_UNAVAILABLE.
        When cancelled it gives the lease up, so a standby takes over at once.
        """
        if self.lease is None:
            await self.run_active(task_status=task_status)
        else:
            await run_with_lease(self, self.lease, task_status)

    async def run_active(self, *, task_status: TaskStatus[int] = TASK_STATUS_IGNORED) -> None:
        """Serve, commit and forward (the active sequencer), until cancelled or stepped
        down (`SteppedDown`)."""
        submit = submit_handler(self.submit, self.submit_many, self.metrics, logger=_log)
        handlers = {self.names.submit_order: submit}
        with self.journal.writing():
            async with anyio.create_task_group() as tg:
                if isinstance(self.journal, ScansKeys):
                    self._seen, self._seen_pending = None, []  # before anything is queued
                    tg.start_soon(self._load_seen, self.journal)
                tg.start_soon(self._commit_loop)
                tg.start_soon(self._lookup_loop)
                serve = partial(self.transport.serve, handlers, port=self.port)
                port: int = await tg.start(serve)
                tg.start_soon(self.forward)
                _log.info(
                    "submit_order: serving on port %d (journal %s)", port, self.journal.location
                )
                task_status.started(port)

    async def _load_seen(self, journal: ScansKeys) -> None:
        """Scan the journal's keys (`_seen.py`); lookups skip the journal from then on
        for the keys it never held."""
        try:
            seen = await anyio.to_thread.run_sync(load_seen, journal)
        except Exception as exc:  # every lookup goes to the journal, as without a scan
            _log.warning("scanning the journal's dedupe keys failed: %s", exc)
            self._seen_pending = None
            return
        for key in self._seen_pending or ():
            seen.add(key)
        self._seen, self._seen_pending = seen, None
        _log.debug("dedupe keys scanned: %d", len(seen))

    async def catch_up(self) -> None:
        """Before an active spell (a standby that took the lease, which read the journal's
        head): numbering, client keys and the entries in memory start from the journal."""
        self._client_keys = await anyio.to_thread.run_sync(self.journal.client_keys)
        self._next_seq = self.journal.head() + 1
        self._last_ts = self.journal.last_ts()
        self._queue, self._queued_keys, self._lookups = [], {}, []
        self._recent.clear()
        self._queue_changed, self._lookups_changed = anyio.Event(), anyio.Event()

    # ------------------------------------------------------------------ submit_order

    async def submit(self, payload: JSON) -> JSON:
        """Handle one ``submit_order`` request: validate, number, commit, reply.

        Returns:
            ``{"seq": N, "orderId": "..."}`` once the command is durable.

        Raises:
            AuthFailed: unsigned, badly signed, signed by a key other than the one the
                clientId is bound to, a new order without its orderId, a modify without
                its requestId (ERR_AUTH).
            orderbook_core.ValidationError: the payload breaks a rule (nothing stored).
            Refused: ERR_VALIDATION for a new order's id in the reserved namespace, a
                requestId not on a modify, or one used by another modify.
            sqlite3.Error, StorageUnavailable, Refused: the commit failed (nothing stored;
                ERR_UNAVAILABLE for a journal that could not store it).
        """
        (result,) = await submit_each(self, [payload])  # a batch of one: one path
        if isinstance(result, Exception):
            raise result
        return result

    async def submit_many(self, payloads: Sequence[JSON]) -> list[JSON | Exception]:
        """Handle a batch of ``submit_order`` payloads: per payload, what `submit` would
        have answered had they come one by one, in order (`exchange.sequencer._batch`)."""
        return await submit_each(self, payloads)

    async def _look_up_many(self, keys: Sequence[DedupeKey]) -> list[Entry | None]:
        """What the journal holds for each key (None: nothing), all in the lookup task's
        next trip; a key committed while the trip ran is found too."""
        if not keys:
            return []
        seen = self._seen
        if seen is not None:
            # A key never queued nor in the journal at start is not in the journal.
            maybe = [key for key in keys if key in seen]
            if len(maybe) < len(keys):
                found = dict(zip(maybe, await self._look_up_many(maybe), strict=True))
                return [found.get(key) or self._committed_keys.get(key) for key in keys]
        done = anyio.Event()  # one for them all: they are answered in one trip
        lookups = [_Lookup(key, done) for key in keys]
        self._lookups.extend(lookups)
        self._lookups_changed.set()
        await done.wait()
        for lookup in lookups:
            if lookup.error is not None:
                raise lookup.error
        return [lookup.found or self._committed_keys.get(lookup.key) for lookup in lookups]

    def _binding(self, client_id: str, public_key: str) -> str | None:
        """The key `client_id`'s command binds it to (None: bound already, to this key).

        Raises:
            AuthFailed: `client_id` is bound to another key.
        """
        bound = self._client_keys.get(client_id)
        if bound is None:
            return public_key
        if bound != public_key:
            raise AuthFailed(f"sig: clientId {client_id!r} is bound to another key")
        return None

    async def _lookup_loop(self) -> None:
        """Look up every key asked for since the last trip, in one thread call."""
        while True:
            if not self._lookups:
                await self._lookups_changed.wait()
                self._lookups_changed = anyio.Event()
                continue
            batch, self._lookups = self._lookups, []
            noted: dict[DedupeKey, Entry] = {}
            self._noted = noted  # the committer notes what it commits meanwhile
            try:
                found = await anyio.to_thread.run_sync(
                    self.journal.find_many, [lookup.key for lookup in batch]
                )
            except Exception as exc:
                for lookup in batch:
                    lookup.error = exc
                found = [None] * len(batch)
            finally:
                self._noted = None
            for lookup, entry in zip(batch, found, strict=True):
                lookup.found = entry or noted.get(lookup.key)
                lookup.done.set()

    def _enqueue(
        self, command: Command, key: DedupeKey | None, binding: str | None = None
    ) -> _Queued:
        """Number and timestamp `command` and queue it for the next commit."""
        seq = self._next_seq
        ts = max(self._clock(), self._last_ts)
        queued = _Queued(new_entry(command._replace(seq=seq, ts=ts), self.spec), key, binding)
        if binding is not None:
            self._client_keys[command.client_id] = binding
        self._next_seq, self._last_ts = seq + 1, ts
        self._queue.append(queued)
        if key is not None:
            self._queued_keys[key] = queued
            # Seen from now on, stored or not: a commit whose outcome is unknown may
            # have stored it.
            if self._seen is not None:
                self._seen.add(key)
            elif self._seen_pending is not None:
                self._seen_pending.append(key)
        self._queue_changed.set()
        return queued

    async def _wait(self, queued: _Queued) -> JSON:
        await queued.committed.wait()
        if queued.error is not None:
            raise queued.error
        return queued.reply()

    async def _commit_loop(self) -> None:
        """Commit whatever is queued, one transaction at a time, forever."""
        while True:
            if not self._queue:
                await self._queue_changed.wait()
                self._queue_changed = anyio.Event()
                continue
            if self.commit_interval:
                await self._pace()
            limit = self.journal.max_append
            batch, self._queue = self._queue[:limit], self._queue[limit:]
            self._last_commit_size = len(batch)
            started = time.perf_counter()
            try:
                await self._append(batch)
            except Exception as exc:
                self.metrics.commit_failed(len(batch))
                # Nothing of `batch` is stored, so nothing numbered after it may be.
                failed, self._queue = batch + self._queue, []
                # The journal's head: batch[0] - 1, unless an earlier commit that was not
                # confirmed turned out to be stored (then numbering goes on after it).
                self._next_seq = self.journal.head() + 1
                self._last_ts = self.journal.last_ts()
                for queued in failed:  # their bindings were not stored either
                    if queued.binding is not None:
                        del self._client_keys[queued.entry.command.client_id]
                _log.error("journal commit of seq %d.. failed: %s", batch[0].entry.seq, exc)
                if isinstance(exc, JournalConflict):
                    _log.error(
                        "stepping down: another writer appended to %s", self.journal.location
                    )
                    self._settle(failed, Refused(ERR_UNAVAILABLE, "the sequencer stepped down"))
                    self.metrics.stepped_down()
                    raise SteppedDown(str(exc)) from exc
                self._settle(failed, exc)
                continue
            crash_point("after_journal_commit")  # test hook: durable, nobody told yet
            self.metrics.committed(batch[-1].entry.seq, len(batch), time.perf_counter() - started)
            if self._noted is not None:
                self._noted.update((q.key, q.entry) for q in batch if q.key is not None)
            _log.info("accepted seq=%d..%d", batch[0].entry.seq, batch[-1].entry.seq)
            if _log.isEnabledFor(logging.DEBUG):
                for queued in batch:
                    command = queued.entry.wire
                    _log.debug(
                        "accepted seq=%d client=%s order=%s op=%s",
                        queued.entry.seq,
                        command["clientId"],
                        command["orderId"],
                        command["op"],
                    )
            if self._recent and self._recent[-1].seq + 1 != batch[0].entry.seq:
                self._recent.clear()  # others were stored between: keep it consecutive
            self._recent.extend(queued.entry for queued in batch)
            self._remember_keys(batch)
            self._settle(batch, None)
            self._appended.set()
            self._appended = anyio.Event()

    async def _pace(self) -> None:
        """While commits come closer than `commit_interval` and the last one had company
        (several entries: others are sending too), wait until that long after the last
        one began: under a steady trickle each commit, with its fsync and wake-ups, then
        covers several requests; under a burst the queue has grown meanwhile anyway.
        Nothing waits after a quiet spell, nor for a lone client that sends one order at
        a time (each of its commits holds one entry: it would only wait for itself).
        Every reply still goes out after its own commit."""
        now = anyio.current_time()
        wait = self._commit_started + self.commit_interval - now
        if wait > 0 and self._last_commit_size > 1:
            await anyio.sleep(wait)
            now += wait
        self._commit_started = now

    async def _append(self, batch: list[_Queued]) -> None:
        """Store `batch` in the journal, in one transaction, from a worker thread: the
        commit waits for an fsync (or a network round trip), which must not block the
        event loop that reads and checks the next requests meanwhile."""
        entries = [queued.entry for queued in batch]
        bindings = {q.entry.seq: q.binding for q in batch if q.binding is not None}
        requests = {q.entry.seq: q.key[2] for q in batch if q.key and is_modify(q.entry)}
        await anyio.to_thread.run_sync(self.journal.append, entries, bindings, requests)

    def _remember_keys(self, batch: list[_Queued]) -> None:
        """Keep the last `_RECENT` committed keys: from their commit on, a key is in
        `_queued_keys` until settled and here after, with no await in between, so a
        twin never misses both (and is never appended twice: ERR_INTERNAL)."""
        keys = self._committed_keys
        for queued in batch:
            if queued.key is not None:
                keys[queued.key] = queued.entry
        while len(keys) > max(_RECENT, len(batch)):  # the last commit whole
            keys.popitem(last=False)

    def _settle(self, batch: list[_Queued], error: BaseException | None) -> None:
        for queued in batch:
            queued.error = error
            if queued.key is not None:
                self._queued_keys.pop(queued.key, None)
            queued.committed.set()


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000
