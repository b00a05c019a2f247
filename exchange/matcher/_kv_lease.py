"""Which of several matchers of a market on JetStream is active, and where it is: two keys
in the market's KV bucket (``DEX_<market>``, beside the journal's stream).

``matcher.lease`` = ``{"holder", "until"}``: the active matcher rewrites it every
``ttl / 3`` with a compare-and-set on the revision it wrote last; a standby takes it by
compare-and-set once ``until`` (wall clock) plus `skew` has passed, or creates it when
it is absent. The holder counts its lease from *before* it sent the write, by its own
monotonic clock, and keeps it for ``ttl - margin`` only: a holder that was paused
(``SIGSTOP``) finds its deadline passed before any standby could have taken the key, and
writes no head.

``matcher.head`` = ``{"seq", "root", "lease", "holder", "versions"}``: the active one
writes it, with compare-and-set on the revision it wrote last, after each version is in
the DHT and *before* it records, replies or broadcasts it; a refusal means another
matcher took over (`Deposed`). ``lease`` is the revision of the lease its writer held;
``versions`` the last `KEPT_VERSIONS` versions as ``[first, seq, root]``, which is how a
standby learns the version boundaries (a matter of the active one's batching, not of the
journal) and so keeps an applied log equal to the active one's, row for row.

Blocking and thread-safe: the nats-py client lives on an event loop of its own, on a
thread of its own (`exchange.runtime.nats_client.NatsClient`, as the sequencer's journal's);
each call waits for its coroutine.
Imported only for ``--journal nats://...`` (nats-py, the ``jetstream`` extra).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Coroutine, Sequence
from typing import Any, NamedTuple, TypeVar

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from exchange.matcher._standby import Deposed
from exchange.protocol import Entry, StorageUnavailable, entry_from_row
from exchange.runtime.nats_client import NatsClient, describe_error, stream_name
from orderbook_core import MarketSpec

__all__ = [
    "DEFAULT_LEASE_SKEW",
    "DEFAULT_LEASE_TTL",
    "HEAD_KEY",
    "KEPT_VERSIONS",
    "LEASE_KEY",
    "Deposed",
    "MarketHead",
    "MatcherKV",
]

_log = logging.getLogger("exchange.matcher.lease")

_T = TypeVar("_T")

DEFAULT_LEASE_TTL = 3.0
"""Seconds a matcher's lease lives without renewal."""
DEFAULT_LEASE_SKEW = 0.25
"""Seconds a standby waits beyond the lease's ``until``: a bound on the clocks' skew."""
KEPT_VERSIONS = 256
"""Versions listed in ``matcher.head``: how far a standby may lag and still follow."""
LEASE_KEY = "matcher.lease"
HEAD_KEY = "matcher.head"


class MarketHead(NamedTuple):
    """``matcher.head`` as read: the active matcher's head and its last versions."""

    seq: int
    root: str | None
    lease: int
    holder: str
    versions: tuple[tuple[int, int, str], ...]
    """``(first, seq, root)`` of the last versions, oldest first."""
    revision: int

    def value(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "root": self.root,
            "lease": self.lease,
            "holder": self.holder,
            "versions": [list(v) for v in self.versions],
        }


class MatcherKV:
    """The lease and head of one market's matchers, and its journal's commands by seq.

    Args:
        servers: the NATS URLs, any of the cluster's.
        spec: the market (names the stream and the bucket).
        ttl: seconds the lease lives unrenewed.
        skew: seconds a standby waits beyond the lease's ``until`` (clock skew bound).
        timeout: seconds to wait for any one answer of the server.
        holder: this matcher's name in the lease (default: host, PID and a random tag).

    Raises:
        StorageUnavailable: no server answered, or the bucket cannot be opened.
    """

    def __init__(
        self,
        servers: Sequence[str],
        spec: MarketSpec,
        *,
        ttl: float = DEFAULT_LEASE_TTL,
        skew: float = DEFAULT_LEASE_SKEW,
        timeout: float = 5.0,
        holder: str | None = None,
    ) -> None:
        if ttl <= 0 or skew < 0:
            raise ValueError(f"the lease's ttl must be positive, not {ttl}")
        self.servers = list(servers)
        self.spec = spec
        self.stream = stream_name(spec.market)
        self.location = f"{','.join(self.servers)} bucket {self.stream}"
        self.ttl, self.skew, self.timeout = ttl, skew, timeout
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_revision = 0
        self._deadline = 0.0  # time.monotonic() until which this holds the lease
        self._head_revision = 0
        self._versions: deque[tuple[int, int, str]] = deque(maxlen=KEPT_VERSIONS)
        self._client = NatsClient(
            self.servers,
            location=self.location,
            log=_log,
            thread=f"nats-matcher-{self.stream}",
            timeout=timeout,
        )
        try:
            self._kv: KeyValue = self.call(self._open())
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ lifecycle

    def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run `coro` on the client's loop and wait for it (from any other thread)."""
        return self._client.call(coro)

    async def _open(self) -> KeyValue:
        self._js = self._client.jetstream
        try:
            return await self._client.key_value(self.stream)
        except Exception as exc:
            raise StorageUnavailable(f"cannot open {self.location}: {describe_error(exc)}") from exc

    def close(self) -> None:
        """Close the connection and stop the client's thread. Idempotent."""
        self._client.close()

    @property
    def jetstream(self) -> JetStreamContext:
        """The client's JetStream context (use it on the client's loop, through `call`)."""
        return self._client.jetstream

    @property
    def replicas(self) -> int:
        """The replicas of what this creates (3 in a cluster, else 1)."""
        return self._client.replicas

    # ------------------------------------------------------------------ the lease

    @property
    def margin(self) -> float:
        """How long before its ``until`` this holder gives its lease up."""
        return max(0.2, self.ttl / 4)

    @property
    def renew_every(self) -> float:
        return self.ttl / 3

    def valid(self) -> bool:
        """Whether this holds the lease now (by its own clock, counted cautiously)."""
        return self.lease_revision != 0 and time.monotonic() < self._deadline

    def acquire(self) -> bool:
        """Take the lease if it is absent or has run out; True if this holds it now.

        Raises:
            StorageUnavailable: the server did not answer (nothing is held then).
        """
        return self.call(self._acquire())

    def renew(self) -> bool:
        """Extend the lease; False if another holder has it (deposed).

        Raises:
            StorageUnavailable: no answer; the lease stands until `valid` says otherwise.
        """
        return self.lease_revision != 0 and self.call(self._renew())

    def release(self) -> None:
        """Give the lease up at once (a clean stop: a standby need not wait). Never raises."""
        revision, self.lease_revision = self.lease_revision, 0
        if revision == 0 or self._client.closed:
            return
        try:
            self.call(asyncio.wait_for(self._kv.delete(LEASE_KEY, last=revision), self.timeout))
        except Exception as exc:  # it runs out by itself
            _log.debug("lease release: %s", exc)

    def lease_holder(self) -> str | None:
        """Who holds the lease, if it has not run out (None: nobody).

        Raises:
            StorageUnavailable: the server did not answer.
        """
        return self.call(self._lease_holder())

    async def _lease_holder(self) -> str | None:
        entry = await self._get(LEASE_KEY)
        if entry is None:
            return None
        value = json.loads(entry[0])
        return str(value["holder"]) if value["until"] + self.skew > time.time() else None

    def _lease_value(self) -> bytes:
        until = time.time() + self.ttl
        return json.dumps({"holder": self.holder, "until": until}).encode()

    async def _acquire(self) -> bool:
        try:
            current = await self._get(LEASE_KEY)
            sent = time.monotonic()
            try:
                if current is None:
                    revision = await asyncio.wait_for(
                        self._kv.create(LEASE_KEY, self._lease_value()), self.timeout
                    )
                else:
                    value = json.loads(current[0])
                    if value["until"] + self.skew > time.time() and value["holder"] != self.holder:
                        return False
                    revision = await asyncio.wait_for(
                        self._kv.update(LEASE_KEY, self._lease_value(), last=current[1]),
                        self.timeout,
                    )
            except (KeyWrongLastSequenceError, KeyNotFoundError):
                return False  # another standby was quicker
        except (NatsError, TimeoutError) as exc:
            raise StorageUnavailable(f"{self.location}: lease: {describe_error(exc)}") from exc
        self.lease_revision, self._deadline = revision, sent + self.ttl - self.margin
        return True

    async def _renew(self) -> bool:
        sent = time.monotonic()
        try:
            revision = await asyncio.wait_for(
                self._kv.update(LEASE_KEY, self._lease_value(), last=self.lease_revision),
                self.timeout,
            )
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            current = await self._get(LEASE_KEY)
            if current is not None and json.loads(current[0])["holder"] == self.holder:
                self.lease_revision = current[1]  # an earlier renewal of ours landed late
                return await self._renew()
            self.lease_revision = 0
            return False
        except (NatsError, TimeoutError) as exc:
            raise StorageUnavailable(f"{self.location}: lease: {describe_error(exc)}") from exc
        self.lease_revision, self._deadline = revision, sent + self.ttl - self.margin
        return True

    async def _get(self, key: str) -> tuple[bytes, int] | None:
        try:
            entry = await asyncio.wait_for(self._kv.get(key), self.timeout)
        except KeyNotFoundError:
            return None
        except (NatsError, TimeoutError) as exc:
            raise StorageUnavailable(f"{self.location}: {key}: {describe_error(exc)}") from exc
        if not entry.value:
            return None
        return entry.value, entry.revision or 0

    # ------------------------------------------------------------------ the head

    def read_head(self) -> MarketHead | None:
        """``matcher.head`` now (None: no matcher published a version on JetStream yet).

        Raises:
            StorageUnavailable: the server did not answer.
        """
        return self.call(self._read_head())

    async def _read_head(self) -> MarketHead | None:
        entry = await self._get(HEAD_KEY)
        if entry is None:
            return None
        value = json.loads(entry[0])
        versions = tuple((int(f), int(s), str(r)) for f, s, r in value["versions"])
        return MarketHead(
            int(value["seq"]),
            value["root"],
            int(value["lease"]),
            str(value["holder"]),
            versions,
            entry[1],
        )

    def claim_head(self, head: MarketHead | None, first: int, seq: int, root: str | None) -> bool:
        """Write the head as this lease holder's, unchanged; False if it changed since it
        was read. `head` is as read; None (absent): `first`, `seq`, `root` are this
        matcher's own head version.

        Raises:
            Deposed: this does not hold the lease (any more).
            StorageUnavailable: the server did not answer.
        """
        if head is None:
            head = MarketHead(seq, root, 0, "", () if root is None else ((first, seq, root),), 0)
        self._versions = deque(head.versions, maxlen=KEPT_VERSIONS)
        claimed = head._replace(lease=self.lease_revision, holder=self.holder)
        return self.call(self._write_head(claimed, head.revision))

    def write_head(self, first: int, seq: int, root: str) -> None:
        """Publish the version ``first..seq`` as the market's head (compare-and-set on
        the revision this wrote last); retried while the lease holds, when unanswered.

        Raises:
            Deposed: the lease ran out, or another matcher wrote the head since.
            StorageUnavailable: no answer for as long as the lease held.
        """
        self._versions.append((first, seq, root))
        head = MarketHead(
            seq, root, self.lease_revision, self.holder, tuple(self._versions), self._head_revision
        )
        while True:
            if not self.valid():
                self._versions.pop()
                raise Deposed(f"{self.location}: this matcher's lease has run out")
            try:
                if self.call(self._write_head(head, self._head_revision)):
                    return
            except StorageUnavailable as exc:
                _log.warning("writing the head seq=%d: %s; again", seq, exc)
                time.sleep(0.05)  # an error answered at once: not in a tight loop
                continue
            mine = self.read_head()
            if mine is not None and mine.value() == head.value():  # a retry's first try landed
                self._head_revision = mine.revision
                return
            self._versions.pop()
            raise Deposed(
                f"{self.location}: the head was written by {mine.holder if mine else 'nobody'}"
                f" at seq {mine.seq if mine else 0}"
            )

    async def _write_head(self, head: MarketHead, last: int) -> bool:
        data = json.dumps(head.value()).encode()
        try:
            if last == 0:
                revision = await asyncio.wait_for(self._kv.create(HEAD_KEY, data), self.timeout)
            else:
                revision = await asyncio.wait_for(
                    self._kv.update(HEAD_KEY, data, last=last), self.timeout
                )
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            return False
        except (NatsError, TimeoutError) as exc:
            raise StorageUnavailable(f"{self.location}: head: {describe_error(exc)}") from exc
        self._head_revision = revision
        return True

    # ------------------------------------------------------------------ the journal

    def entries(self, first: int, last: int) -> list[Entry]:
        """The journal's entries ``first..last`` (read from the stream, fetched together).

        Raises:
            StorageUnavailable: the server did not answer, or an entry is missing.
            ReplayError: a stored command is not one.
        """
        return self.call(self._entries(first, last))

    async def _entries(self, first: int, last: int) -> list[Entry]:
        entries: list[Entry] = []
        for start in range(first, last + 1, 200):
            seqs = range(start, min(last, start + 199) + 1)
            entries.extend(await asyncio.gather(*(self._entry(seq) for seq in seqs)))
        return entries

    async def _entry(self, seq: int) -> Entry:
        try:
            msg = await self._js.get_msg(self.stream, seq=seq)
        except (TimeoutError, NatsError) as exc:
            raise StorageUnavailable(f"{self.location}: seq {seq}: {describe_error(exc)}") from exc
        ts = int((msg.headers or {}).get("Dex-Ts", "0"))
        text = (msg.data or b"").decode()
        return entry_from_row(seq, ts, text, self.spec, source=self.stream)
