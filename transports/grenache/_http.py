"""A minimal HTTP/1.1 client on h11 and anyio: POST one body, read one body, keep-alive.

Used by the Grape link (``POST /lookup`` ...) and the peer RPC client (``POST /``). One
request at a time per connection (no pipelining); a `ConnectionPool` keeps idle
connections per ``host:port`` and opens more under concurrency. It never starts tasks.

Deadlines belong to the caller: `ConnectionPool.post` must run under ``fail_after``.
Failures are translated by `map_errors` (the adapter's one place for that).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from typing import NamedTuple

import anyio
import anyio.abc
import h11

from transports._exceptions import ConnectionFailed, ProtocolError, TransportClosed
from transports.grenache._errors import map_errors
from transports.grenache._stream import connect

__all__ = ["ConnectionPool", "Response"]

_RECEIVE_SIZE = 65536
_END = h11.EndOfMessage()


class Response(NamedTuple):
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


_request_cache: dict[tuple[bytes, bytes, tuple[tuple[bytes, bytes], ...], int], h11.Request] = {}


def _request_head(
    host: bytes, target: bytes, headers: tuple[tuple[bytes, bytes], ...], length: int
) -> h11.Request:
    """The h11 request event for these headers, built once and reused.

    h11 events are immutable values, and validating headers is a good part of building
    one (measured: ~30 us of a ~150 us round trip), so equal heads share one object.
    """
    key = (host, target, headers, length)
    head = _request_cache.get(key)
    if head is None:
        if len(_request_cache) >= 1024:
            _request_cache.clear()
        head = h11.Request(
            method=b"POST",
            target=target,
            headers=[(b"host", host), (b"content-length", str(length).encode()), *headers],
        )
        _request_cache[key] = head
    return head


class _Connection:
    """One client connection: an anyio stream driven by an h11 state machine."""

    __slots__ = ("_h11", "_stream", "idle_since", "used")

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self._h11 = h11.Connection(h11.CLIENT)
        self.idle_since = time.monotonic()
        self.used = False

    @property
    def reusable(self) -> bool:
        return self._h11.our_state is h11.IDLE and self._h11.their_state is h11.IDLE

    async def post(
        self,
        host: bytes,
        target: bytes,
        headers: tuple[tuple[bytes, bytes], ...],
        body: bytes,
        max_response: int,
    ) -> Response:
        conn = self._h11
        out = conn.send(_request_head(host, target, headers, len(body))) or b""
        out += conn.send(h11.Data(data=body)) or b""
        out += conn.send(_END) or b""
        self.used = True
        await self._stream.send(out)

        status = 0
        response_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await self._stream.receive(_RECEIVE_SIZE)
                except anyio.EndOfStream:
                    data = b""
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                response_headers = list(event.headers)
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > max_response:
                    raise ProtocolError(f"response body exceeds {max_response} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionFailed("connection closed before the response")
            # InformationalResponse (100 Continue): keep reading.
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        self.idle_since = time.monotonic()
        return Response(status, response_headers, b"".join(chunks))

    async def aclose(self) -> None:
        await self._stream.aclose()


class ConnectionPool:
    """Keep-alive connections to many ``host:port`` addresses.

    Args:
        max_idle: idle connections kept per address (more may be open while busy).
        idle_expiry: seconds after which an idle connection is not reused; keep it below
            the servers' keep-alive timeout (Node's default is 5 s) to avoid the race
            where the server closes a connection as we reuse it.
        max_response: bound on a response body, in bytes.
    """

    def __init__(
        self, *, max_idle: int = 64, idle_expiry: float = 4.0, max_response: int = 1 << 20
    ) -> None:
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}
        self._max_idle = max_idle
        self._idle_expiry = idle_expiry
        self._max_response = max_response
        self._closed = False
        self._expired: list[_Connection] = []  # closed by the next release

    async def post(
        self,
        host: str,
        port: int,
        target: bytes,
        headers: tuple[tuple[bytes, bytes], ...],
        body: bytes,
    ) -> Response:
        """POST `body` to ``http://host:port{target}``; run under ``fail_after``.

        A reused keep-alive connection that turns out closed by the server (no response
        byte) is replaced by a fresh one once.

        Raises:
            ConnectFailed: no connection could be made (nothing was sent).
            ConnectionFailed, ProtocolError, RequestTimeout: see `map_errors`.
            TransportClosed: the pool is closed.
        """
        if self._closed:
            raise TransportClosed("connection pool is closed")
        where = f"{host}:{port}"
        host_header = where.encode()
        conn = self._take_idle(host, port)
        if conn is not None:
            try:
                with map_errors(where):
                    response = await conn.post(
                        host_header, target, headers, body, self._max_response
                    )
            except ConnectionFailed:
                await self._discard(conn)  # stale keep-alive connection: retry below
            except BaseException:
                await self._discard(conn)
                raise
            else:
                await self._release(host, port, conn)
                return response
        with map_errors(where, connecting=True):
            stream = await connect(host, port)
        conn = _Connection(stream)
        try:
            with map_errors(where):
                response = await conn.post(host_header, target, headers, body, self._max_response)
        except BaseException:
            await self._discard(conn)
            raise
        await self._release(host, port, conn)
        return response

    def _take_idle(self, host: str, port: int) -> _Connection | None:
        """Pop the most recently used live idle connection (synchronous: hot path)."""
        queue = self._idle.get((host, port))
        if not queue:
            return None
        conn = queue.pop()
        if time.monotonic() - conn.idle_since < self._idle_expiry:
            return conn
        # The most recent one expired, so all have: close them (without waiting).
        queue.append(conn)
        self._expired.extend(queue)
        queue.clear()
        return None

    async def _release(self, host: str, port: int, conn: _Connection) -> None:
        if self._expired:
            expired, self._expired = self._expired, []
            for old in expired:
                await self._discard(old)
        if self._closed or not conn.reusable:
            await self._discard(conn)
            return
        queue = self._idle.get((host, port))
        if queue is None:
            queue = self._idle[(host, port)] = deque()
        if len(queue) >= self._max_idle:
            await self._discard(conn)
            return
        queue.append(conn)

    @staticmethod
    async def _discard(conn: _Connection) -> None:
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(OSError, anyio.BrokenResourceError):
                await conn.aclose()

    async def forget(self, host: str, port: int) -> None:
        """Close the idle connections to one address (e.g. a peer that went away)."""
        for conn in self._idle.pop((host, port), ()):
            await self._discard(conn)

    async def aclose(self) -> None:
        """Close every idle connection; later posts raise `TransportClosed`."""
        self._closed = True
        idle, self._idle = self._idle, {}
        expired, self._expired = self._expired, []
        for conn in [*expired, *(c for queue in idle.values() for c in queue)]:
            await self._discard(conn)
