"""The transport interface: RPC between named services, and an immutable-item DHT.

Modelled on httpx's `AsyncBaseTransport`: a handful of async methods, `aclose()`, and
`async with`. Payloads are JSON values (what `json.loads` returns). Adapters: `memory`,
`loopback`, `grenache`; choose one with `transports.open_transport()`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeAlias

from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

__all__ = ["DEFAULT_TIMEOUT", "JSON", "Handler", "PeerResult", "Transport"]

JSON: TypeAlias = Any
"""A JSON value: None, bool, int, float, str, list of JSON, dict of str to JSON."""

Handler: TypeAlias = Callable[[JSON], Awaitable[JSON]]
"""Serves one request: takes the payload, returns the reply data.

Raises `RemoteError`/`ServiceError(message)` to reply with that error string."""

DEFAULT_TIMEOUT = 10.0
"""Seconds; every request has a deadline, never an infinite wait."""


@dataclass(frozen=True, slots=True)
class PeerResult:
    """One peer's answer to a `map`: exactly one of `data`/`error` is meaningful.

    `error` is None on success; otherwise the peer's error string, or a description of
    the transport failure (e.g. "ERR_TIMEOUT", "ERR_CONNECTION: ...").
    """

    peer: str
    data: JSON = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the peer answered with data, not an error."""
        return self.error is None


class Transport(ABC):
    """RPC and DHT over one network. Use with `async with` or call `aclose()`."""

    @abstractmethod
    async def serve(
        self,
        handlers: Mapping[str, Handler],
        *,
        port: int = 0,
        wait_announced: bool = True,
        task_status: TaskStatus[int] = TASK_STATUS_IGNORED,
    ) -> None:
        """Serve every name in `handlers` until cancelled.

        Listens (on 127.0.0.1:`port`, 0 = a free port), announces each name and keeps
        re-announcing it, then calls `task_status.started(port)` once the names can be
        found. Runs in the caller's task group: cancel it to stop serving.

        With ``wait_announced=False``, `task_status.started(port)` is called as soon as
        requests can be served, and the names are announced in the background, retried
        with backoff for as long as `serve` runs: a network that refuses announces never
        stops it. For callers that can do their work without being found (a client that
        polls for what it would be told); adapters whose announce cannot fail treat it
        like the default.

        Each request runs its handler in a task of `serve`'s own task group, so a
        caller's timeout never cancels a handler, and stopping `serve` cancels the
        handlers still running (their callers see `ConnectionFailed` or a timeout).
        A handler's `RemoteError` becomes the reply's error string, verbatim; any other
        exception becomes ``"ERR_INTERNAL: <type>: <message>"``; reply data that JSON
        cannot carry becomes an error too (never a success).

        Whether a name stays announced after `serve` stops is the network's business:
        memory and loopback forget it, a grape remembers it (a dead peer).

        Raises:
            TransportClosed: the transport is closed.
            ConnectionFailed: cannot listen, or (unless ``wait_announced=False``) cannot
                announce.
        """

    @abstractmethod
    async def request(self, name: str, payload: JSON, *, timeout: float = DEFAULT_TIMEOUT) -> JSON:
        """Send `payload` to one peer serving `name` and return its reply data.

        The peer is chosen at random among those announced (as the Node client does).
        At most one reply is returned, even when the network delivered the request
        twice; a timeout says nothing about whether the handler ran (at-least-once).

        Raises:
            TransportClosed: the transport is closed.
            ValueError: `timeout` is not a positive, finite number of seconds.
            NoPeersError: nobody serves `name`.
            RequestTimeout: no reply within `timeout` seconds.
            RemoteError: the peer replied with an error string.
            ConnectionFailed, ProtocolError: the network or the peer broke the exchange.
            ProtocolError: `payload` is not a JSON value (nothing is sent).
            PayloadTooLarge: the encoded request exceeds the adapter's body bound.
        """

    @abstractmethod
    async def map(
        self, name: str, payload: JSON, *, timeout: float = DEFAULT_TIMEOUT
    ) -> list[PeerResult]:
        """Send `payload` to every peer announced for `name`, concurrently.

        Returns one `PeerResult` per announced peer (dead or slow peers give a result with
        `error` set); it never fails as a whole because of one peer. An empty list means
        nobody is announced. `timeout` bounds each peer, and so the whole call. The
        order of the results is unspecified; match them by `PeerResult.peer`.

        Raises:
            TransportClosed: the transport is closed.
            ValueError: `timeout` is not a positive, finite number of seconds.
            ProtocolError: `payload` is not a JSON value (nothing is sent).
        """

    @abstractmethod
    async def put(self, value: str) -> str:
        """Store an immutable item; return its key, sha1 of the bencoded value (40 hex).

        The key is `transports.dht_key(value)`; storing the same value twice is harmless.
        A stored item may later be evicted (a grape keeps a bounded LRU of values).

        Raises:
            TransportClosed: the transport is closed.
            TypeError: `value` is not a str (Grape would store "[object Object]").
            PayloadTooLarge: `value` is 1000 characters or UTF-8 bytes or more (nothing
                is sent; see `transports.check_value`).
            TransportError: the DHT did not store it.
        """

    @abstractmethod
    async def get(self, key: str) -> str | None:
        """Fetch an immutable item by key; `None` when it is not found.

        Raises:
            TransportClosed: the transport is closed.
            TypeError, ValueError: `key` is not 40 lowercase hex characters (see
                `transports.check_key`; nothing is sent).
            TransportError: the DHT could not be asked.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections; later calls raise `TransportClosed`. Idempotent.

        Cancel a running `serve` yourself: memory and loopback also stop it (and fail
        their waiting requests with `TransportClosed`), other adapters need not.
        """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
