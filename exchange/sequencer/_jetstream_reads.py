"""The reading half of the JetStream journal (`exchange.sequencer._jetstream`): lookups,
pages of entries and the KV bucket's values, each a request on the journal's own
connection. Apart from the writing half, which adds the batch, the fencing and the
resync after an append not confirmed; the layout of the stream is described there.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from exchange.protocol import Entry, StorageUnavailable, entry_from_row
from exchange.runtime.nats_client import describe_error
from orderbook_core import MarketSpec

__all__ = ["JetStreamReads", "key_hash"]

_T = TypeVar("_T")

_PAGE = 500
"""Entries fetched per page by `JetStreamReads.entries`."""

_KEY_READS = 5
"""Watches of the client keys before `client_keys` gives up (see `_client_keys`)."""


def key_hash(*parts: str) -> str:
    """The hash in a deduplicated command's subject (and a client key's name)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


class JetStreamReads:
    """What `JetStreamJournal` reads: set up (connection, stream, bucket, head) by it."""

    spec: MarketSpec
    stream: str
    location: str
    _token: str
    _head: int
    _last_ts: int
    _js: JetStreamContext
    _kv: KeyValue

    def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run `coro` on the connection's loop and wait for it (`JetStreamJournal.call`)."""
        raise NotImplementedError

    def head(self) -> int:
        """The last sequence number stored, as of this handle's last append or opening."""
        return self._head

    def last_ts(self) -> int:
        """The timestamp of the entry at `head()` (0 when empty)."""
        return self._last_ts

    def acked(self) -> int:
        """The highest sequence number marked acknowledged (0 when none)."""
        value = self.call(self._kv_get("acked"))
        return 0 if value is None else int(value)

    async def _kv_get(self, key: str) -> bytes | None:
        try:
            return (await self._kv.get(key)).value
        except KeyNotFoundError:
            return None
        except (TimeoutError, NatsError) as exc:
            raise StorageUnavailable(f"{self.location}: {key}: {describe_error(exc)}") from exc

    def client_keys(self) -> dict[str, str]:
        """Every bound clientId and its public key. O(clients)."""
        return self.call(self._client_keys())

    async def _client_keys(self) -> dict[str, str]:
        # nats-py's watch can say "every current value delivered" (None) before it has
        # handled a value the server already sent (the consumer then reports nothing
        # pending): a missed binding would let a move drop it. So the bound keys are
        # counted from the bucket's stream, and read again until the watch saw them all.
        try:
            for _ in range(_KEY_READS):
                keys = await self._watch_keys()
                info = await self._js.stream_info(
                    f"KV_{self.stream}", subjects_filter=f"$KV.{self.stream}.key.>"
                )
                if len(keys) >= len(info.state.subjects or {}):
                    return keys
        except (TimeoutError, NatsError) as exc:
            raise StorageUnavailable(
                f"{self.location}: client keys: {describe_error(exc)}"
            ) from exc
        raise StorageUnavailable(
            f"{self.location}: client keys: the watch missed bindings {_KEY_READS} times"
        )

    async def _watch_keys(self) -> dict[str, str]:
        keys: dict[str, str] = {}
        watcher = await self._kv.watch("key.>", ignore_deletes=True)
        try:
            async for update in watcher:
                if update is None:  # every current value has been delivered
                    break
                if update.value:
                    bound = json.loads(update.value)
                    keys[bound["clientId"]] = bound["key"]
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return keys

    def modify_requests(self) -> dict[int, str]:
        """seq -> requestId of every modify appended with one (its ``Dex-Request``
        header). Reads every message up to `head()`: for moving the journal, not for
        the sequencer's path."""
        return self.call(self._modify_requests())

    async def _modify_requests(self) -> dict[int, str]:
        found: dict[int, str] = {}
        for first in range(1, self._head + 1, _PAGE):
            seqs = range(first, min(first + _PAGE, self._head + 1))
            try:
                msgs = await asyncio.gather(*(self._js.get_msg(self.stream, seq=s) for s in seqs))
            except (TimeoutError, NatsError) as exc:
                why = describe_error(exc)
                raise StorageUnavailable(f"{self.location}: requests: {why}") from exc
            for seq, msg in zip(seqs, msgs, strict=True):
                request_id = (msg.headers or {}).get("Dex-Request")
                if request_id is not None:
                    found[seq] = request_id
        return found

    def find(self, client_id: str, op: str, order_id: str) -> Entry | None:
        """The entry of a deduplicated `(client_id, op, order_id)` (for a modify,
        `order_id` is its requestId), if any: the first message on its subject."""
        return self.find_many([(client_id, op, order_id)])[0]

    def find_many(self, keys: Sequence[tuple[str, str, str]]) -> list[Entry | None]:
        """`find` for each key; the lookups go out together."""
        return self.call(self._find_many(list(keys)))

    async def _find_many(self, keys: list[tuple[str, str, str]]) -> list[Entry | None]:
        return list(await asyncio.gather(*(self._find(*key) for key in keys)))

    async def _find(self, client_id: str, op: str, order_id: str) -> Entry | None:
        subject = f"dex.{self._token}.k.{key_hash(client_id, op, order_id)}"
        try:
            msg = await self._js.get_msg(self.stream, seq=1, subject=subject, next=True)
        except NotFoundError:
            return None
        except (TimeoutError, NatsError) as exc:
            raise StorageUnavailable(f"{self.location}: find: {describe_error(exc)}") from exc
        return self._decode(msg.seq or 0, msg.headers, msg.data)

    def get(self, seq: int) -> Entry | None:
        """The entry with sequence number `seq`, or None."""
        if seq < 1:
            return None
        return self.call(self._get_or_none(seq))

    async def _get_or_none(self, seq: int) -> Entry | None:
        try:
            return await self._get(seq)
        except NotFoundError:
            return None

    async def _get(self, seq: int) -> Entry:
        try:
            msg = await self._js.get_msg(self.stream, seq=seq)
        except NotFoundError:
            raise
        except (TimeoutError, NatsError) as exc:
            raise StorageUnavailable(f"{self.location}: seq {seq}: {describe_error(exc)}") from exc
        return self._decode(seq, msg.headers, msg.data)

    def read(self, after_seq: int, limit: int) -> list[Entry]:
        """Up to `limit` entries with `seq > after_seq` and not beyond `head()`, in order;
        fetched together."""
        last = min(self._head, after_seq + limit)
        if last <= after_seq:
            return []
        return self.call(self._read(range(after_seq + 1, last + 1)))

    async def _read(self, seqs: range) -> list[Entry]:
        return list(await asyncio.gather(*(self._get(seq) for seq in seqs)))

    def entries(self, after_seq: int = 0) -> Iterator[Entry]:
        """Yield the entries with `seq > after_seq` up to `head()`, page by page."""
        while True:
            page = self.read(after_seq, _PAGE)
            yield from page
            if not page:
                return
            after_seq = page[-1].seq

    def _decode(self, seq: int, headers: dict[str, str] | None, data: bytes | None) -> Entry:
        """Raises: ReplayError: the stored command is not one."""
        ts = int((headers or {}).get("Dex-Ts", "0"))
        return entry_from_row(seq, ts, (data or b"").decode(), self.spec, source="journal")
