"""The matcher's snapshots in the JetStream object store, beside the journal's stream, so
that a matcher on a fresh machine (an empty ``--db``) starts from one.

Bucket ``DEX_<market>_SNAPSHOTS``, one object per snapshot, ``snapshot-<seq, 12
digits>``, holding the very bytes of the snapshot file (`SnapshotStore`): the same
header, content hash and size, checked the same way when read back, so a torn or
corrupt object is passed over for the previous one. Every matcher of the market that
writes a snapshot file also puts it there (`MirroredSnapshots`); only the newest
``keep`` objects are kept. An upload that fails is logged and costs nothing else: the
file is the matcher's own record, the object a convenience for others.

Blocking, like `MatcherKV`, whose connection it uses.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from nats.errors import Error as NatsError
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from exchange.matcher._kv_lease import MatcherKV
from exchange.matcher._snapshots import Capture, SnapshotStore
from exchange.protocol import StorageUnavailable
from exchange.runtime.nats_client import describe_error
from orderbook_core import MarketSpec

__all__ = ["MirroredSnapshots", "ObjectSnapshots"]

_log = logging.getLogger("exchange.matcher")

_T = TypeVar("_T")

_NAME = re.compile(r"snapshot-(\d{12})")


class ObjectSnapshots:
    """The snapshot objects of one market (`MatcherKV`'s connection and market)."""

    def __init__(self, kv: MatcherKV, *, keep: int = 3) -> None:
        self.kv = kv
        self.keep = max(1, keep)
        self.bucket = f"{kv.stream}_SNAPSHOTS"
        self._store: ObjectStore | None = None

    async def _open(self) -> ObjectStore:
        if self._store is None:
            js = self.kv.jetstream
            try:
                self._store = await js.object_store(self.bucket)
            except BucketNotFoundError:
                config = ObjectStoreConfig(
                    bucket=self.bucket,
                    replicas=self.kv.replicas,
                    storage=StorageType.FILE,
                    description="the matchers' snapshots",
                )
                self._store = await js.create_object_store(self.bucket, config=config)
        return self._store

    def put(self, seq: int, data: bytes) -> None:
        """Store the snapshot at `seq`, then drop all but the newest `keep`.

        Raises:
            StorageUnavailable: the server did not store it.
        """
        self._run(self._put(seq, data), f"put snapshot {seq}")

    async def _put(self, seq: int, data: bytes) -> None:
        store = await self._open()
        await store.put(f"snapshot-{seq:012d}", data)
        for old in (await self._seqs())[: -self.keep]:
            await store.delete(f"snapshot-{old:012d}")

    def seqs(self) -> list[int]:
        """The seqs that have an object, oldest first (not checked).

        Raises:
            StorageUnavailable: the server did not answer.
        """
        return self._run(self._seqs(), "list snapshots")

    async def _seqs(self) -> list[int]:
        store = await self._open()
        try:
            infos = await store.list()
        except NotFoundError:  # an empty bucket
            return []
        names = [info.name for info in infos if not info.deleted]
        return sorted(int(m.group(1)) for name in names if name and (m := _NAME.fullmatch(name)))

    def get(self, seq: int) -> bytes | None:
        """The snapshot's bytes (None: no such object).

        Raises:
            StorageUnavailable: the server did not answer.
        """
        return self._run(self._get(seq), f"get snapshot {seq}")

    async def _get(self, seq: int) -> bytes | None:
        store = await self._open()
        try:
            result = await store.get(f"snapshot-{seq:012d}")
        except (ObjectNotFoundError, NotFoundError):
            return None
        return result.data

    def _run(self, coro: Coroutine[Any, Any, _T], what: str) -> _T:
        async def guarded() -> _T:
            try:
                return await asyncio.wait_for(coro, 4 * self.kv.timeout)
            except (NatsError, TimeoutError) as exc:
                raise StorageUnavailable(f"{self.bucket}: {what}: {describe_error(exc)}") from exc

        return self.kv.call(guarded())


class MirroredSnapshots(SnapshotStore):
    """A `SnapshotStore` whose every snapshot file is also put in the object store."""

    def __init__(
        self, directory: Path, spec: MarketSpec, objects: ObjectSnapshots, *, keep: int = 3
    ) -> None:
        super().__init__(directory, spec, keep=keep)
        self.objects = objects

    def write(self, capture: Capture) -> Path:
        path = super().write(capture)
        try:
            self.objects.put(capture.seq, path.read_bytes())
        except (StorageUnavailable, OSError) as exc:
            _log.warning(
                "snapshot seq=%d: not put in %s: %s", capture.seq, self.objects.bucket, exc
            )
        return path
