"""Which of several sequencers on one JetStream journal writes: a lease in a KV bucket.

Exactly one sequencer is *active* (serves ``submit_order``, appends, forwards); the
others are standbys that wait for the lease. The lease is the key ``holder`` of the KV
bucket ``DEX_<market>_LEASE``, whose entries expire ``ttl`` seconds after they were
written (the bucket's max age, set when the bucket is created): the active sequencer
rewrites it every ``ttl / 3`` with a compare-and-set on the revision it wrote last, a
standby tries to *create* it every `poll` seconds, which succeeds only once the key is
gone (expired, or deleted by a holder that stopped cleanly). Why a KV key and not a
consumer or a Raft group of our own: it is the compare-and-set the journal already
uses for client keys, replicated like the stream, and a dead holder's key disappears
by itself, with no process of ours left to clean up.

Safety does not rest on the expiry alone. The holder counts its lease from *before*
it sent the write that took or renewed it (the server's expiry counts from after it
stored it), and keeps it for ``ttl - margin`` only: a holder that was paused
(``SIGSTOP``, a long GC, a partition) finds, when it resumes, that its own deadline has
passed before any standby could have taken the key, and the journal's `fence` refuses
its appends. Behind that, the stream's expected-last-sequence fencing refuses any
append of a writer whose head is stale.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from typing import Any

from nats.errors import Error as NatsError
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from exchange.protocol import StorageUnavailable
from exchange.runtime.nats_client import describe_error
from exchange.sequencer._jetstream import JetStreamJournal

__all__ = ["DEFAULT_LEASE_TTL", "JetStreamLease", "lease_bucket"]

_log = logging.getLogger("exchange.sequencer.lease")

DEFAULT_LEASE_TTL = 3.0
"""Seconds a lease lives without renewal (when the bucket is created): a standby takes
over at most this long (plus `poll`) after the active sequencer died."""

_KEY = "holder"
_BARRIER = "barrier"
"""A key written only to learn that the bucket has a quorum (`JetStreamLease._barrier`)."""


def lease_bucket(stream: str) -> str:
    """The KV bucket of the lease of the journal `stream`."""
    return f"{stream}_LEASE"


class JetStreamLease:
    """The writer's lease of one JetStream journal; blocking and thread-safe like it.

    Args:
        journal: the journal whose writer this lease chooses (its connection is used).
        ttl: the entries' max age when this creates the bucket; an existing bucket's
            own max age wins (it is the one the server expires by), and a different
            `ttl` is logged.
        poll: seconds between a standby's attempts to take the lease.
        holder: who holds it, for logs (default: host, PID and a random tag).

    Raises:
        StorageUnavailable: the bucket cannot be opened or created.
    """

    def __init__(
        self,
        journal: JetStreamJournal,
        *,
        ttl: float = DEFAULT_LEASE_TTL,
        poll: float | None = None,
        holder: str | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"the lease's ttl must be positive, not {ttl}")
        self.journal = journal
        self.bucket = lease_bucket(journal.stream)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._revision = 0
        self._deadline = 0.0  # time.monotonic() until which this holds the lease
        self.ttl = ttl
        self._kv: KeyValue = journal.call(self._open(ttl))
        self.poll = poll if poll is not None else min(0.25, self.ttl / 6)
        journal.fence = self.valid

    async def _open(self, ttl: float) -> KeyValue:
        js = self.journal.jetstream
        try:
            try:
                kv = await js.key_value(self.bucket)
            except BucketNotFoundError:
                kv = await js.create_key_value(
                    KeyValueConfig(
                        bucket=self.bucket,
                        history=1,
                        ttl=ttl,
                        replicas=self.journal.replicas,
                        storage=StorageType.FILE,
                        description="which sequencer writes the journal",
                    )
                )
            status = await kv.status()
        except (NatsError, TimeoutError) as exc:
            raise StorageUnavailable(
                f"{self.journal.location}: lease bucket: {describe_error(exc)}"
            ) from exc
        self.ttl = float(status.ttl or ttl)
        if abs(self.ttl - ttl) > 1e-3:
            _log.warning("lease: bucket %s expires after %gs, not %gs", self.bucket, self.ttl, ttl)
        return kv

    @property
    def margin(self) -> float:
        """How long before the server could expire it this holder gives its lease up."""
        return max(0.2, self.ttl / 4)

    @property
    def renew_every(self) -> float:
        """Seconds between renewals while holding it."""
        return self.ttl / 3

    def valid(self) -> bool:
        """Whether this holds the lease now (by its own clock, counted cautiously)."""
        return self._revision != 0 and time.monotonic() < self._deadline

    def acquire(self) -> bool:
        """Take the lease if nobody holds it, then read the journal's head again (the
        last holder appended since this looked); True if this holds it now.

        Raises:
            StorageUnavailable: the server did not answer (nothing is held then).
        """
        if not self.journal.call(self._write(create=True)):
            return False
        try:
            self.journal.refresh()
        except BaseException:
            self.release()
            raise
        return True

    def renew(self) -> bool:
        """Extend the lease; False if it was lost (another holder took it).

        Raises:
            StorageUnavailable: the server did not answer, or refused the update of a
                lease that still names this holder (an earlier write in flight); the
                lease stands until `valid` says otherwise.
        """
        if self._revision == 0:
            return False
        return self.journal.call(self._write(create=False))

    def release(self) -> None:
        """Give the lease up at once (a standby takes it without waiting for it to
        expire). Never raises: a lease not released expires."""
        revision, self._revision = self._revision, 0
        if revision == 0:
            return
        try:
            self.journal.call(self._delete(revision))
        except Exception as exc:  # it expires by itself
            _log.debug("lease release: %s", exc)

    def current(self) -> str | None:
        """Who holds the lease, as the server says (None: nobody).

        Raises:
            StorageUnavailable: the server did not answer.
        """
        return self.journal.call(self._current())

    async def _write(self, *, create: bool) -> bool:
        value = json.dumps({"holder": self.holder, "ttl": self.ttl}).encode()
        timeout = max(0.2, self.ttl / 3)
        renewal = not create  # False from here is a step-down: decide it on a quorum
        try:
            for _attempt in range(2):
                sent = time.monotonic()
                try:
                    if create:
                        revision = await asyncio.wait_for(self._kv.create(_KEY, value), timeout)
                    else:
                        revision = await asyncio.wait_for(
                            self._kv.update(_KEY, value, last=self._revision), timeout
                        )
                except (KeyWrongLastSequenceError, KeyNotFoundError):
                    # Another holder's, or an earlier write of ours whose answer was
                    # lost (a timeout): then renew that revision, counted from now.
                    if renewal:
                        await self._barrier(timeout)
                    mine = await self._mine()
                    if mine is None:
                        self._revision = 0
                        return False
                    self._revision, create = mine, False
                    continue
                self._revision, self._deadline = revision, sent + self.ttl - self.margin
                return True
        except (NatsError, TimeoutError) as exc:
            raise StorageUnavailable(
                f"{self.journal.location}: lease: {describe_error(exc)}"
            ) from exc
        # Refused twice, yet the key names this holder: not lost. Without a quorum the
        # leader refuses a write while an earlier one on the key is still proposed (a
        # renewal that timed out), and serves the revision before it. Undecided, like a
        # timeout: `valid` runs out meanwhile, and a later renewal says whose it is.
        raise StorageUnavailable(
            f"{self.journal.location}: lease: revision {self._revision} is this holder's,"
            " but its update is refused (an earlier write not yet stored: no quorum?)"
        )

    async def _barrier(self, timeout: float) -> None:
        """Write to the lease's bucket and wait until it is stored, before reading the
        lease to decide a renewal's refusal. A server alone (the others down: no quorum)
        still answers reads, from its own copy, where the key may have expired or an
        earlier write of ours may still be pending; once this write is stored, a quorum
        answers and every write before it is applied. No quorum: it times out, and the
        renewal stays undecided (`StorageUnavailable`), not lost."""
        await asyncio.wait_for(self._kv.put(_BARRIER, self.holder.encode()), timeout)

    async def _mine(self) -> int | None:
        """The lease's revision if it names this holder, else None."""
        try:
            entry = await asyncio.wait_for(self._kv.get(_KEY), max(0.2, self.ttl / 3))
        except KeyNotFoundError:  # expired (or deleted) meanwhile
            return None
        if not entry.value or json.loads(entry.value).get("holder") != self.holder:
            return None
        return entry.revision

    async def _delete(self, revision: int) -> None:
        await asyncio.wait_for(self._kv.delete(_KEY, last=revision), max(0.2, self.ttl / 3))

    async def _current(self) -> str | None:
        try:
            entry = await self._kv.get(_KEY)
        except KeyNotFoundError:
            return None
        except (NatsError, TimeoutError) as exc:
            raise StorageUnavailable(
                f"{self.journal.location}: lease: {describe_error(exc)}"
            ) from exc
        if not entry.value:
            return None
        holder: Any = json.loads(entry.value).get("holder")
        return str(holder)
