"""The journal on NATS JetStream: the `JournalBackend` replicated by the server's Raft.

Imported only for ``--journal nats://...`` (it needs the ``jetstream`` extra, nats-py).

Layout
------
One stream per market, ``DEX_<market>`` (file storage; 3 replicas when the server is in
a cluster, 1 on a single dev server; deletes and purges denied, no limits), holding one
message per command, so the stream's sequence *is* the exchange's ``seq``: gap-free,
never reused. The message's body is the command's canonical wire JSON, its header
``Dex-Ts`` the sequencer's timestamp, ``Dex-Key`` the public key the command binds
its clientId to, if it does, and ``Dex-Request`` a modify's requestId (the subject
holds only its hash; the header lets the journal be exported). Its subject says
whether it may repeat:
``dex.<market>.k.<h>`` for a new order or a cancel, ``h`` a hash of ``(clientId, op,
orderId)``, and for a modify with its requestId, ``h`` a hash of ``(clientId, "modify",
requestId)``, published with ``Nats-Expected-Last-Subject-Sequence: 0`` (refused if the
key is stored already, however long ago); ``dex.<market>.m`` for a modify appended
without a requestId (as every modify was before request ids; never deduplicated).
`find` is the first message on a key's subject: one lookup, no index to keep in step
with the stream. Beside the stream, a KV bucket ``DEX_<market>`` holds the
acked mark (``acked``) and the client keys (``key.<hash of clientId>``).

Writing
-------
One `append` is one atomic batch (all stored, or none; up to 1,000 messages): plain
publishes carrying ``Nats-Batch-Id`` and ``Nats-Batch-Sequence``, the first also
``Nats-Expected-Last-Sequence: <head>``, the last ``Nats-Batch-Commit: 1`` as a request
whose reply is the ack. The expected last sequence is the fencing: when anybody else has
appended, the server refuses the whole batch (``wrong last sequence``) and `append`
raises `JournalConflict`: the single writer is enforced by the server, never by a local
lock. A clientId's key is bound before its command is published, with a KV *create*
(compare-and-set on "absent"): of two writers racing to bind one clientId, exactly one
wins, and a command is never stored without its key bound (a key may be bound whose
command then failed to store; its client's retry, same key, binds it again harmlessly).

An append the server did not confirm (timeout, no quorum, connection lost) raises
`exchange.protocol.StorageUnavailable`. It may still have been stored; the next append
first looks: if the stream holds exactly that batch, this handle's head moves past it and
the append raises `StorageUnavailable` again (its numbers are stale: the caller renumbers
from `head()`); if it holds anything else, `JournalConflict`; if nothing yet (a server
without its quorum still answers, and stores the batch once the quorum is back), the
append goes on, and looks again if it is refused (still not there: `StorageUnavailable`).

Threads
-------
The methods are blocking and thread-safe, like SQLite's: the nats-py client lives on an
event loop of its own, on a thread of its own (`exchange.runtime.nats_client.NatsClient`),
and each call waits for its coroutine there; appends are serialized by a lock. The
reading methods (lookups, pages of entries, the KV bucket's values) are in
`exchange.sequencer._jetstream_reads`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any, Self, TypeVar

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from exchange.protocol import Entry, StorageUnavailable, entry_to_row
from exchange.runtime.nats_client import NatsClient, describe_error, stream_name
from exchange.sequencer._backend import DuplicateEntry, JournalConflict
from exchange.sequencer._jetstream_reads import JetStreamReads, key_hash
from orderbook_core import DEFAULT_SPEC, MarketSpec

__all__ = ["MAX_BATCH_MESSAGES", "JetStreamJournal", "describe_error", "stream_name"]

_log = logging.getLogger("exchange.sequencer.jetstream")

_T = TypeVar("_T")

MAX_BATCH_MESSAGES = 1000
"""The most messages one atomic batch may hold (the server's limit)."""

_ERR_WRONG_LAST_SEQUENCE = 10071
_ERR_WRONG_LAST_SUBJECT_SEQUENCE = 10164
_ERR_STREAM_NOT_FOUND = 10059


class JetStreamJournal(JetStreamReads):
    """A durable, gap-free FIFO queue of accepted commands on a JetStream stream.

    Args:
        servers: the NATS URLs (``nats://host:port``), any of the cluster's.
        spec: the market: names the stream and validates the commands read back.
        replicas: the stream's replicas when it is created (default: 3 when the server
            is in a cluster, else 1).
        timeout: seconds to wait for any one answer of the server.

    Raises:
        StorageUnavailable: no server answered, or JetStream is not enabled.
    """

    max_append = MAX_BATCH_MESSAGES

    def __init__(
        self,
        servers: Sequence[str],
        spec: MarketSpec = DEFAULT_SPEC,
        *,
        replicas: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        if not servers:
            raise ValueError("no NATS server given")
        self.servers = list(servers)
        self.spec = spec
        self.stream = stream_name(spec.market)
        self.location = f"{','.join(self.servers)} stream {self.stream}"
        self.timeout = timeout
        self._token = re.sub(r"[^A-Za-z0-9_-]", "_", spec.market)
        self._head = 0
        self._last_ts = 0
        self._suspect: list[Entry] | None = None  # an append not confirmed, maybe stored
        self._write_lock = threading.Lock()
        self.fence: Callable[[], bool] | None = None
        """Asked just before each append is sent, when set (a writer's lease, `valid`):
        False refuses the append with `StorageUnavailable`, nothing sent."""
        self._client = NatsClient(
            self.servers,
            location=self.location,
            log=_log,
            thread=f"nats-{self.stream}",
            replicas=replicas,
            timeout=timeout,
        )
        try:
            self.call(self._open())
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ lifecycle

    def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run `coro` on the client's loop and wait for it (from any other thread): how
        the writer's lease (`exchange.sequencer._lease`) shares this connection."""
        return self._client.call(coro)

    async def _open(self) -> None:
        self._js = self._client.jetstream
        replicas = self.replicas
        info = await self._api(f"STREAM.INFO.{self.stream}", None, missing_ok=True)
        if info is None:
            config = {
                "name": self.stream,
                "subjects": [f"dex.{self._token}.>"],
                "storage": "file",
                "num_replicas": replicas,
                "retention": "limits",
                "discard": "new",
                "allow_atomic": True,
                "deny_delete": True,
                "deny_purge": True,
                "allow_direct": False,
                "description": f"the exchange's journal of market {self.spec.market}",
            }
            info = await self._api(f"STREAM.CREATE.{self.stream}", config)
            _log.info("created stream %s (%d replicas)", self.stream, replicas)
        assert info is not None
        self._head = int(info["state"]["last_seq"])
        if self._head:
            self._last_ts = (await self._get(self._head)).ts
        try:
            self._kv: KeyValue = await self._client.key_value(self.stream)
        except (NatsError, TimeoutError) as exc:
            raise StorageUnavailable(f"{self.location}: KV bucket: {describe_error(exc)}") from exc

    async def _api(
        self, what: str, config: dict[str, Any] | None, *, missing_ok: bool = False
    ) -> dict[str, Any] | None:
        """One JetStream API request; its reply, or None for a missing stream when
        `missing_ok`. The API by subject, since the client's types may lack new fields."""
        body = b"" if config is None else json.dumps(config).encode()
        try:
            reply = await self._client.nc.request(f"$JS.API.{what}", body, timeout=self.timeout)
        except (TimeoutError, NatsError) as exc:
            raise StorageUnavailable(f"{self.location}: {what}: {describe_error(exc)}") from exc
        answer: dict[str, Any] = json.loads(reply.data)
        error = answer.get("error")
        if error is not None:
            if missing_ok and error.get("err_code") == _ERR_STREAM_NOT_FOUND:
                return None
            raise StorageUnavailable(f"{self.location}: {what}: {error.get('description')}")
        return answer

    def close(self) -> None:
        """Close the connection and stop the client's thread. Idempotent."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def jetstream(self) -> JetStreamContext:
        """The client's JetStream context (use it on the client's loop, through `call`)."""
        return self._client.jetstream

    @property
    def replicas(self) -> int:
        """The replicas of what this creates (given, else 3 in a cluster, else 1)."""
        return self._client.replicas

    def refresh(self) -> int:
        """Read the stream's head again, as a standby taking over does (another writer
        appended since); return it. Raises `StorageUnavailable`."""
        with self._write_lock:
            return self.call(self._refresh())

    async def _refresh(self) -> int:
        info = await self._api(f"STREAM.INFO.{self.stream}", None)
        assert info is not None
        head = int(info["state"]["last_seq"])
        last_ts = (await self._get(head)).ts if head else 0
        self._head, self._last_ts, self._suspect = head, last_ts, None
        return head

    def writing(self) -> AbstractContextManager[object]:
        """Nothing to hold: the server fences writers (expected last sequence)."""
        return nullcontext()

    # ------------------------------------------------------------------ writing

    def append(
        self,
        entries: Sequence[Entry],
        bindings: Mapping[int, str] | None = None,
        requests: Mapping[int, str] | None = None,
    ) -> None:
        """Store `entries` as one atomic batch; see `JournalBackend.append`."""
        if not entries:
            return
        if len(entries) > MAX_BATCH_MESSAGES:
            raise ValueError(f"{len(entries)} entries: one append takes {MAX_BATCH_MESSAGES}")
        with self._write_lock:
            self.call(self._append(list(entries), dict(bindings or {}), dict(requests or {})))

    async def _append(
        self, entries: list[Entry], bindings: dict[int, str], requests: dict[int, str]
    ) -> None:
        if self._suspect is not None:
            await self._resync()
        expected, last_ts = self._head + 1, self._last_ts
        for entry in entries:
            if entry.seq != expected or entry.ts < last_ts:
                raise JournalConflict(
                    f"{self.location}: entry {entry.seq} (ts {entry.ts}) does not follow"
                    f" seq {expected - 1} (ts {last_ts})"
                )
            expected, last_ts = entry.seq + 1, entry.ts
        subjects = [self._subject(entry, requests.get(entry.seq)) for entry in entries]
        keyed = [s for s in subjects if not s.endswith(".m")]
        if len(set(keyed)) != len(keyed):
            raise DuplicateEntry(f"{self.location}: a key repeats within the batch")
        by_seq = {entry.seq: entry for entry in entries}
        await asyncio.gather(
            *(self._bind(by_seq[seq].command.client_id, key) for seq, key in bindings.items())
        )
        # The last moment before anything is sent: a writer whose lease ran out (it was
        # paused, or cut off) sends nothing. Bindings made above are harmless (see above).
        if self.fence is not None and not self.fence():
            raise StorageUnavailable(f"{self.location}: this writer's lease has run out")
        nc = self._client.nc
        batch_id = uuid.uuid4().hex
        last = len(entries)
        try:
            for i, (entry, subject) in enumerate(zip(entries, subjects, strict=True), 1):
                _seq, ts, text = entry_to_row(entry)
                headers = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(i)}
                headers["Dex-Ts"] = str(ts)
                if entry.seq in bindings:
                    headers["Dex-Key"] = bindings[entry.seq]
                if entry.seq in requests:
                    headers["Dex-Request"] = requests[entry.seq]
                if not subject.endswith(".m"):
                    headers["Nats-Expected-Last-Subject-Sequence"] = "0"
                if i == 1:
                    headers["Nats-Expected-Last-Sequence"] = str(self._head)
                if i < last:
                    await nc.publish(subject, text.encode(), headers=headers)
                    continue
                headers["Nats-Batch-Commit"] = "1"
                reply = await nc.request(
                    subject, text.encode(), headers=headers, timeout=self.timeout
                )
        except (TimeoutError, NatsError) as exc:
            self._suspect = entries
            raise StorageUnavailable(
                f"{self.location}: append of seq {entries[0].seq}..{entries[-1].seq} not"
                f" confirmed: {describe_error(exc)}"
            ) from exc
        answer = json.loads(reply.data)
        error = answer.get("error")
        if error is not None:
            code, text = error.get("err_code"), error.get("description")
            wrong_last = (_ERR_WRONG_LAST_SEQUENCE, _ERR_WRONG_LAST_SUBJECT_SEQUENCE)
            if self._suspect is not None and code in wrong_last:
                await self._resync()  # the append not confirmed, stored since? (raises)
                # Not yet: the server refuses while it is still proposed (its keys are
                # "in process"), so neither a duplicate nor another writer's, yet.
                raise StorageUnavailable(
                    f"{self.location}: append refused ({text}) while seq"
                    f" {self._suspect[0].seq}.., not confirmed, may still be stored"
                )
            if code == _ERR_WRONG_LAST_SEQUENCE:
                # The same code for the stream's last sequence and a subject's: look.
                info = await self._api(f"STREAM.INFO.{self.stream}", None)
                assert info is not None
                stored = int(info["state"]["last_seq"])
                if stored != self._head:
                    raise JournalConflict(
                        f"{self.location}: the stream is at seq {stored}, not {self._head}:"
                        " another writer appended"
                    )
                raise DuplicateEntry(f"{self.location}: a deduplicated key is stored already")
            if code == _ERR_WRONG_LAST_SUBJECT_SEQUENCE:
                raise DuplicateEntry(f"{self.location}: a deduplicated key is stored already")
            raise StorageUnavailable(f"{self.location}: append refused: {text}")
        if int(answer.get("seq", 0)) != entries[-1].seq:
            raise JournalConflict(
                f"{self.location}: the stream stored seq {answer.get('seq')}, not {entries[-1].seq}"
            )
        # Stored after `_head`: the suspect was not, and no longer can be (it expected
        # the same last sequence).
        self._head, self._last_ts, self._suspect = entries[-1].seq, entries[-1].ts, None

    async def _resync(self) -> None:
        """Find out whether the last unconfirmed append was stored after all.

        Not stored *yet* proves nothing: a server that lost its quorum still answers
        STREAM.INFO, and stores the append it was given once the quorum is back. So the
        suspect is kept until an append after it is stored (then it never will be) or
        refused (then this looks again)."""
        suspect = self._suspect
        assert suspect is not None
        info = await self._api(f"STREAM.INFO.{self.stream}", None)
        assert info is not None
        stored = int(info["state"]["last_seq"])
        if stored == self._head:
            return
        found = [await self._get(seq) for seq in range(self._head + 1, stored + 1)]
        if found != suspect:
            raise JournalConflict(
                f"{self.location}: the stream is at seq {stored}, not {self._head}:"
                " another writer appended"
            )
        self._suspect = None
        self._head, self._last_ts = stored, found[-1].ts
        raise StorageUnavailable(
            f"{self.location}: seq {suspect[0].seq}..{stored} were stored after all;"
            f" the journal is at seq {stored}"
        )

    async def _bind(self, client_id: str, public_key: str) -> None:
        """Bind `client_id` to `public_key` unless it is bound already (to it)."""
        key = f"key.{key_hash(client_id)}"
        value = json.dumps({"clientId": client_id, "key": public_key}).encode()
        try:
            await self._kv.create(key, value)
            return
        except KeyWrongLastSequenceError:
            pass
        except (TimeoutError, NatsError) as exc:
            raise StorageUnavailable(f"{self.location}: binding: {describe_error(exc)}") from exc
        bound = await self._kv_get(key)
        if bound is None or json.loads(bound)["key"] != public_key:
            raise DuplicateEntry(f"{self.location}: clientId {client_id!r} is bound already")

    def mark_acked(self, seq: int) -> None:
        """Record the acked mark; it only moves forward (compare-and-set)."""
        self.call(self._mark_acked(seq))

    async def _mark_acked(self, seq: int) -> None:
        try:
            while True:
                try:
                    current = await self._kv.get("acked")
                except KeyNotFoundError:
                    try:
                        await self._kv.create("acked", str(seq).encode())
                        return
                    except KeyWrongLastSequenceError:
                        continue
                if current.value is not None and int(current.value) >= seq:
                    return
                try:
                    await self._kv.update("acked", str(seq).encode(), last=current.revision)
                    return
                except KeyWrongLastSequenceError:
                    continue
        except (TimeoutError, NatsError) as exc:
            raise StorageUnavailable(f"{self.location}: acked: {describe_error(exc)}") from exc

    def _subject(self, entry: Entry, request_id: str | None) -> str:
        command = entry.wire
        op = command["op"]
        if op == "modify":
            if request_id is None:
                return f"dex.{self._token}.m"
            return f"dex.{self._token}.k.{key_hash(command['clientId'], op, request_id)}"
        return f"dex.{self._token}.k.{key_hash(command['clientId'], op, command['orderId'])}"
