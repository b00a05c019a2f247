"""A minimal HTTP/1.1 client on httptools and anyio: POST one body, read one body, keep-alive.

Used by the Grape link (``POST /lookup`` ...) and the peer RPC client (``POST /``). One
request at a time per connection (no pipelining); a `ConnectionPool` keeps idle
connections per ``host:port`` and opens more under concurrency. It never starts tasks.

The request is written by hand (``POST``, ``host``, ``content-length``, the caller's
headers); the response is read by llhttp through `httptools.HttpResponseParser`, so
``content-length``, chunked and read-until-close bodies are all accepted (Node's
grenache-nodejs-http server answers chunked, Grape and our server with a length).
A connection is reused only after a complete response that allows keep-alive and
nothing after it.

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
import httptools

from transports._exceptions import ConnectionFailed, ProtocolError, TransportClosed
from transports.grenache._errors import map_errors
from transports.grenache._stream import connect

__all__ = ["ConnectionPool", "Response"]

_RECEIVE_SIZE = 65536


class Response(NamedTuple):
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


_request_cache: dict[tuple[bytes, bytes, tuple[tuple[bytes, bytes], ...]], bytes] = {}


def _request_head(
    host: bytes, target: bytes, headers: tuple[tuple[bytes, bytes], ...], length: int
) -> bytes:
    """The request head for these headers; everything but the length is built once."""
    key = (host, target, headers)
    prefix = _request_cache.get(key)
    if prefix is None:
        if len(_request_cache) >= 1024:
            _request_cache.clear()
        for name, value in ((b"host", host), *headers):
            if not _token_ok(name) or b"\r" in value or b"\n" in value:
                raise ValueError(f"bad request header {name!r}: {value!r}")
        if b" " in target or b"\r" in target or b"\n" in target:
            raise ValueError(f"bad request target {target!r}")
        lines = [b"POST " + target + b" HTTP/1.1", b"host: " + host]
        lines += [name + b": " + value for name, value in headers]
        prefix = b"\r\n".join(lines) + b"\r\ncontent-length: "
        _request_cache[key] = prefix
    return b"%s%d\r\n\r\n" % (prefix, length)


def _token_ok(name: bytes) -> bool:
    return bool(name) and all(33 <= c < 127 and c not in b'()<>@,;:\\"/[]?={}' for c in name)


class _ResponseReader:
    """httptools callbacks for one response at a time on one connection."""

    __slots__ = (
        "chunks",
        "done",
        "failed",
        "headers",
        "keep_alive",
        "length_known",
        "max_size",
        "parser",
        "size",
        "started",
        "status",
        "trailing",
    )

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.max_size = 0
        self.trailing = False  # bytes arrived after a complete response
        self.failed = False
        self.reset(0)

    def reset(self, max_size: int) -> None:
        self.max_size = max_size
        self.started = False
        self.done = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.keep_alive = False
        self.length_known = False  # content-length or chunked: the body has an end

    def on_message_begin(self) -> None:
        if self.done:
            self.trailing = True
        self.started = True

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (
            name == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self.length_known = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.status = parser.get_status_code()
        self.keep_alive = parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size <= self.max_size:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim response (100 Continue): keep reading
            self.reset(self.max_size)
            return
        self.done = True

    def feed(self, data: bytes) -> None:
        """Parse received bytes; bad HTTP raises `httptools.HttpParserError` (mapped to
        `ProtocolError` by `map_errors`) unless the response was already complete."""
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self.failed = True
            if self.done:
                return  # garbage after a complete response: keep it, drop the connection
            if isinstance(exc, httptools.HttpParserUpgrade):
                raise httptools.HttpParserError("unexpected protocol upgrade") from exc
            raise


class _Connection:
    """One client connection: an anyio stream and a response parser."""

    __slots__ = ("_reader", "_stream", "idle_since", "reusable", "used")

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self._reader = _ResponseReader()
        self.idle_since = time.monotonic()
        self.used = False
        self.reusable = False

    async def post(
        self,
        host: bytes,
        target: bytes,
        headers: tuple[tuple[bytes, bytes], ...],
        body: bytes,
        max_response: int,
    ) -> Response:
        self.reusable = False
        self.used = True
        await self._stream.send(_request_head(host, target, headers, len(body)) + body)

        reader = self._reader
        reader.reset(max_response)
        while not reader.done:
            try:
                data = await self._stream.receive(_RECEIVE_SIZE)
            except anyio.EndOfStream:
                data = b""
            if not data:
                if not reader.started:
                    raise ConnectionFailed("connection closed before the response")
                if reader.status and not reader.length_known:
                    reader.done = True  # the body ends with the connection
                    break
                raise ProtocolError("connection closed in the middle of the response")
            reader.feed(data)
            if reader.size > max_response:
                raise ProtocolError(f"response body exceeds {max_response} bytes")
        self.reusable = (
            reader.keep_alive and reader.length_known and not (reader.trailing or reader.failed)
        )
        self.idle_since = time.monotonic()
        chunks = reader.chunks
        return Response(
            reader.status, reader.headers, chunks[0] if len(chunks) == 1 else b"".join(chunks)
        )

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
        self._next_sweep = time.monotonic() + idle_expiry

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
        if conn.idle_since >= self._next_sweep:
            self._sweep(conn.idle_since)
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

    def _sweep(self, now: float) -> None:
        """Queue every expired idle connection for closing, whatever its peer.

        `_take_idle` expires connections only of the peer asked for; a peer that is
        never asked again (a client that came and went: the process worker talks to
        every client once per version) would keep its connection, a file descriptor,
        for ever. Runs at most once per `idle_expiry`, from `_release`; it also drops
        the entries of peers left with no idle connection (the hot path keeps them).
        """
        self._next_sweep = now + self._idle_expiry
        horizon = now - self._idle_expiry
        for key, queue in list(self._idle.items()):
            if not queue or queue[-1].idle_since <= horizon:  # newest expired: all have
                self._expired.extend(queue)
                del self._idle[key]

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
