"""The sequencer's forwarder: the journal, in order, to ``process_order``.

A forwarder task sends the journal to ``process_order`` strictly in sequence order
and retries each entry (exponential backoff, capped, with jitter from a seeded RNG)
until the matcher acknowledges it; an entry is never skipped or reordered. When the
matcher answers ``ERR_SEQ_GAP: expected <n>`` (it restarted from an older state, or
lost it), the forwarder rewinds and resends from ``n - 1``: the matcher confirms
``n - 1`` only if it applied that very entry, so a state from another journal is not
built upon. The entries this worker committed last are still in memory, as committed:
the forwarder takes them from there, and reads the journal for the others (after a
restart, a rewind or a long outage), where they are decoded and checked again.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections import deque

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.protocol import (
    PROCESS_DOMAIN,
    BadMessage,
    Entry,
    Head,
    MarketNames,
    ProcessBatch,
    ProcessReply,
    StorageUnavailable,
    expected_seq,
    sign_object,
)
from exchange.runtime import Metrics, Outage, crash_point
from exchange.sequencer._backend import JournalBackend
from transports import RemoteError, Transport, TransportError

__all__ = ["Forwarder"]

_log = logging.getLogger("exchange.sequencer")

_ACK_PERSIST_EVERY = 64
"""Persist the acked mark at least every this many commands (and whenever idle)."""

_READ_AHEAD = 512
"""Journal entries the forwarder reads at once, at least."""


class Forwarder:
    """The forwarding half of `SubmitWorker`, which sets these up (see its arguments)
    and tells it of each commit (`_recent`, `_appended`)."""

    transport: Transport
    journal: JournalBackend
    metrics: Metrics
    signing_key: Ed25519PrivateKey
    batch_size: int
    forward_interval: float
    names: MarketNames
    request_timeout: float
    backoff: float
    max_backoff: float
    idle_check: float
    forwarded: int
    _random: random.Random
    _recent: deque[Entry]
    _appended: anyio.Event

    async def forward(self) -> None:
        """Send the journal to ``process_order`` in sequence order, forever.

        Starts after the journal's acked mark and sends runs of consecutive entries, up
        to `batch_size` per request, one request at a time: while the matcher works on
        one run, the next one grows, so the request rate adapts to the matcher's speed.
        With `forward_interval`, a run shorter than `batch_size` waits until that long
        after the previous request was sent, growing meanwhile: under load each version
        covers more commands (fewer DHT puts per order) for up to that much latency; the
        first command after a quiet spell goes at once. Runs until cancelled; never
        raises for a network failure or a refusal (it logs and retries the same run).
        """
        failures = 0
        outage = Outage(_log, "forwarding to process_order")  # logs state changes only
        while True:
            try:
                acked = await anyio.to_thread.run_sync(self.journal.acked)
                break
            except StorageUnavailable as exc:  # the journal's store is down: wait for it
                outage.failed(f"reading the acked mark: {exc}")
                failures = await self._sleep_backoff(failures)
        self.metrics.journal_head(self.journal.head(), acked)
        persisted = acked
        next_seq = acked + 1
        ahead: list[Entry] = []
        sent_at = -math.inf  # when the last request was sent (anyio's clock)
        while True:
            if not ahead or ahead[0].seq != next_seq or len(ahead) < self.batch_size:
                appended = self._appended  # taken before reading: an append after it wakes us
                limit = max(self.batch_size, _READ_AHEAD)
                try:
                    ahead = self._committed(next_seq, limit) or await anyio.to_thread.run_sync(
                        self.journal.read, next_seq - 1, limit
                    )
                    if not ahead and persisted < acked:
                        await anyio.to_thread.run_sync(self.journal.mark_acked, acked)
                        persisted = acked
                except StorageUnavailable as exc:
                    outage.failed(f"reading the journal from seq {next_seq}: {exc}")
                    failures = await self._sleep_backoff(failures)
                    ahead = []
                    continue
                if not ahead:
                    with anyio.move_on_after(self.idle_check):
                        await appended.wait()
                        continue
                    next_seq = await self._check_head(next_seq)
                    continue
            if len(ahead) < self.batch_size and self.forward_interval:
                wait = sent_at + self.forward_interval - anyio.current_time()
                if wait > 0:
                    await anyio.sleep(wait)  # let the run grow, then read it again
                    continue
            run = ahead[: self.batch_size]
            batch = ProcessBatch(tuple(run))
            request = sign_object(PROCESS_DOMAIN, batch.to_wire_object(), self.signing_key)
            sent_at = anyio.current_time()
            try:
                reply = await self.transport.request(
                    self.names.process_order, request, timeout=self.request_timeout
                )
                confirmed = ProcessReply.from_wire(reply)
                if confirmed.seq != batch.last:
                    raise BadMessage(f"seq: {confirmed.seq}, expected {batch.last}")
            except RemoteError as exc:
                self.metrics.forward_failed(exc.message.partition(":")[0])
                expected = expected_seq(exc.message)
                if expected is not None and 1 <= expected < next_seq:
                    _log.warning("process_order expects seq %d; resending from there", expected)
                    next_seq = _rewind(expected)
                    failures = 0
                    continue
                outage.failed(f"refused seq={batch.first}..: {exc.message}")
                failures = await self._sleep_backoff(failures)
                continue
            except (TransportError, BadMessage) as exc:
                outage.failed(f"seq={batch.first}..{batch.last}: {type(exc).__name__}: {exc}")
                self.metrics.forward_failed(
                    "bad_reply" if isinstance(exc, BadMessage) else "transport"
                )
                failures = await self._sleep_backoff(failures)
                continue
            crash_point("after_forward_ack")  # test hook: applied, the ack not yet marked
            _log.debug("forwarded seq=%d..%d root=%s", batch.first, batch.last, confirmed.root)
            outage.worked()
            failures = 0
            del ahead[: len(run)]
            acked = max(acked, batch.last)
            self.forwarded = max(self.forwarded, batch.last)
            self.metrics.forwarded(acked)
            next_seq = batch.last + 1
            if acked - persisted >= _ACK_PERSIST_EVERY:
                try:
                    await anyio.to_thread.run_sync(self.journal.mark_acked, acked)
                    persisted = acked
                except StorageUnavailable as exc:  # kept in memory; written when it works
                    _log.warning("persisting the acked mark %d failed: %s", acked, exc)

    def _committed(self, seq: int, limit: int) -> list[Entry]:
        """Up to `limit` entries from `seq` on, as this worker committed them; [] when
        `seq` is not among those it holds. Commits are consecutive (a failed one is not
        held, and numbering restarts at its first seq), so the entries are too."""
        recent = self._recent
        if not recent or not recent[0].seq <= seq <= recent[-1].seq:
            return []
        start = seq - recent[0].seq
        return list(itertools.islice(recent, start, start + limit))

    async def _check_head(self, next_seq: int) -> int:
        """While idle, ask ``orderbook_head`` whether the matcher fell behind.

        A matcher that lost its state (or restarted from an older copy) would otherwise
        learn about the missing commands only with the next submitted one.

        Returns:
            Where to resume forwarding: `next_seq`, or the matcher's head + 1 if lower.
        """
        try:
            reply = await self.transport.request(
                self.names.orderbook_head, None, timeout=self.request_timeout
            )
            head = Head.from_wire(reply)
        except (TransportError, BadMessage) as exc:
            _log.debug("orderbook_head failed: %s", exc)
            return next_seq
        if head.seq < next_seq - 1:
            _log.warning("process_order is at seq %d; resending from %d", head.seq, head.seq + 1)
            return _rewind(head.seq + 1)
        return next_seq

    async def _sleep_backoff(self, failures: int) -> int:
        """Sleep before retry number `failures + 1`; return the new failure count."""
        delay = min(self.max_backoff, self.backoff * 2 ** min(failures, 30))
        await anyio.sleep(delay * (0.5 + 0.5 * self._random.random()))
        return failures + 1


def _rewind(expected: int) -> int:
    """Where to resume when the matcher expects `expected` next.

    One entry earlier: the matcher answers ``expected - 1`` from its record only if it
    applied that very entry (same command, same timestamp), so a matcher whose state
    comes from another journal is refused loudly before anything of this journal is
    applied on top of it.
    """
    return max(1, expected - 1)
