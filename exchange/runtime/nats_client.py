"""One NATS connection on an event loop and a thread of its own, for blocking callers:
what the sequencer's JetStream journal and the matcher's KV lease share.

Imported explicitly (``from exchange.runtime.nats_client import NatsClient``), never by
``exchange.runtime`` itself: it needs nats-py (the ``jetstream`` extra), which a
worker without ``--journal nats://...`` never loads.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import nats
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from exchange.protocol import StorageUnavailable

__all__ = ["NatsClient", "describe_error", "stream_name"]

_T = TypeVar("_T")


def stream_name(market: str) -> str:
    """The stream (and KV bucket) of `market`: ``DEX_`` and the market's name, with every
    character a stream name may not hold replaced by ``_``."""
    return "DEX_" + re.sub(r"[^A-Za-z0-9_-]", "_", market)


def describe_error(exc: BaseException) -> str:
    """A NATS client error in words, for a log line or an ERR_UNAVAILABLE."""
    if isinstance(exc, (NatsTimeout, asyncio.TimeoutError)):
        return "no answer in time (no quorum, or the server is unreachable)"
    if isinstance(exc, NoRespondersError):
        return "no responders (JetStream unavailable)"
    return str(exc) or type(exc).__name__


class NatsClient:
    """A nats-py client on its own loop and thread; blocking, thread-safe `call`s.

    Connects on construction; once connected it reconnects forever (logged once per
    disconnection and reconnection on `log`).

    Args:
        servers: the NATS URLs (``nats://host:port``), any of the cluster's.
        location: where this is, for error messages.
        log: the owner's logger.
        thread: the name of the client's thread.
        replicas: the replicas of what the owner creates (default: 3 when the server is
            in a cluster, else 1).
        timeout: seconds to wait for the first connection, and for any one answer.

    Raises:
        StorageUnavailable: no server answered.
    """

    def __init__(
        self,
        servers: Sequence[str],
        *,
        location: str,
        log: logging.Logger,
        thread: str,
        replicas: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.servers = list(servers)
        self.location = location
        self.timeout = timeout
        self._log = log
        self._replicas = replicas
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=thread, daemon=True)
        self._thread.start()
        self._nc: NATS | None = None
        try:
            self.call(self._connect())
        except BaseException:
            self.close()
            raise

    def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run `coro` on the client's loop and wait for it (from any other thread)."""
        if self._closed:
            coro.close()
            raise StorageUnavailable(f"{self.location}: closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _connect(self) -> None:
        log = self._log

        async def quiet(exc: Exception) -> None:
            log.debug("nats: %s", exc)

        async def disconnected() -> None:
            log.warning("nats: disconnected from %s", ",".join(self.servers))

        async def reconnected() -> None:
            log.info("nats: reconnected")

        try:
            # Reconnects forever once connected; the first connection waits `timeout`.
            self._nc = await asyncio.wait_for(
                nats.connect(
                    self.servers,
                    connect_timeout=min(2.0, self.timeout),
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.25,
                    error_cb=quiet,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                ),
                self.timeout,
            )
        except Exception as exc:
            raise StorageUnavailable(
                f"cannot reach NATS at {','.join(self.servers)}: {describe_error(exc)}"
            ) from exc
        self._js = self._nc.jetstream(timeout=self.timeout)

    def close(self) -> None:
        """Close the connection and stop the client's thread. Idempotent."""
        if self._closed:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(2 * self.timeout)
        except Exception as exc:  # closing: nothing left to do about it
            self._log.debug("nats close: %s", exc)
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self.timeout)
        if not self._thread.is_alive():
            self._loop.close()

    async def _shutdown(self) -> None:
        """Close the client, then end whatever it left running on the loop."""
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.close(), self.timeout)
            except Exception as exc:
                self._log.debug("nats close: %s", exc)
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def nc(self) -> NATS:
        """The connected client (use it on the client's loop, through `call`)."""
        assert self._nc is not None
        return self._nc

    @property
    def jetstream(self) -> JetStreamContext:
        """The client's JetStream context (use it on the client's loop, through `call`)."""
        return self._js

    @property
    def replicas(self) -> int:
        """The replicas of what the owner creates (3 in a cluster, else 1, unless given)."""
        return self._replicas or (3 if self.nc._server_info.get("cluster") else 1)

    async def key_value(self, bucket: str) -> KeyValue:
        """The KV bucket `bucket`, created if absent (history 1, file storage, `replicas`).

        Raises: the client's errors, as they come (the owner words them)."""
        try:
            return await self._js.key_value(bucket)
        except BucketNotFoundError:
            return await self._js.create_key_value(
                KeyValueConfig(
                    bucket=bucket, history=1, replicas=self.replicas, storage=StorageType.FILE
                )
            )
