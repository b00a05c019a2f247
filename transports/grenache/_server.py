"""The peer RPC server: the grenache-nodejs-http protocol on httptools and anyio.

HTTP parsing is llhttp (Node's own parser, in C) through `httptools`: h11, pure Python,
cost about as much CPU per request as Node's whole server (see docs/benchmarks.md).
The parser only reports what it reads (callbacks on `_RequestReader`); the HTTP rules
this server needs are the few lines around it: bounds, keep-alive, `100 Continue`, and a
hand-written response (status line, ``content-type``, ``content-length``).

One connection is served by one task, one request at a time (HTTP/1.1 keep-alive).
Pipelined requests that arrive together are parsed together and queued; they are
answered in order, and nothing more is read while one is queued. For each request:

1. Read the head and the body under two deadlines: `idle_timeout` for the first byte
   of a request on a kept-alive connection, then `read_timeout` for the whole request
   from that byte (so a slowloris client is cut off: HTTP 408, then the connection is
   closed).
2. Refuse a head over 16 KiB or with over 100 headers with 431, a body over `max_body`
   with 413 (from Content-Length before reading it, or as the chunks arrive), bytes
   that are not HTTP/1.x with 400; each with the error array
   ``[null, "ERR_...", null]``, then close the connection.
3. Decode ``[rid, key, payload]`` (`transports._codec`); a malformed body gets HTTP 400
   and ``[rid-or-null, "ERR_BAD_REQUEST: ...", null]``.
4. Run the handler under `handler_timeout`; a `RemoteError` becomes its message, a
   timeout ``ERR_TIMEOUT`` (and the connection is closed after that reply), an unknown
   key ``ERR_SERVICE_UNKNOWN``, anything else ``ERR_INTERNAL: ...`` (logged).
5. Reply HTTP 200 with ``[rid, error-or-null, data]`` (gzipped when asked), within
   `read_timeout` (a client that stops reading is cut off). The connection is kept open
   unless the client asked otherwise (``connection: close``, or HTTP/1.0).

Nothing a client sends can crash the accept loop: every connection task catches its own
failures.

Deadlines: rather than a cancel scope with a timer per phase of every request (three
per request, measured at ~15% of a small request's CPU), each connection has one cancel
scope and a `deadline` number that the phases overwrite; a `Watchdog` task per server
checks every connection each `tick` (default 0.1 s) and cancels the late ones. So
timeouts fire up to one tick late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from typing import NamedTuple

import anyio
import anyio.abc
import httptools

from transports._base import JSON, Handler
from transports._codec import COMPRESS_HEADER, CodecError, ServerCodec, wants_gzip
from transports._exceptions import RemoteError

__all__ = ["ServerOptions", "Watchdog", "serve_connection"]

log = logging.getLogger("transports.grenache.server")

_RECEIVE_SIZE = 65536
_MAX_HEAD = 16384
_MAX_HEADERS = 100
_ERROR_CODEC = ServerCodec()
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    431: b"Request Header Fields Too Large",
}

# Phases of a connection, for the watchdog and for what to do when one runs late.
_IDLE, _READ, _HANDLE, _WRITE = range(4)


class ServerOptions:
    """Limits of a peer RPC server (seconds and bytes)."""

    __slots__ = ("codec", "handler_timeout", "idle_timeout", "max_body", "read_timeout")

    def __init__(
        self,
        *,
        max_body: int,
        read_timeout: float,
        idle_timeout: float,
        handler_timeout: float | None,
    ) -> None:
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.handler_timeout = math.inf if handler_timeout is None else handler_timeout
        self.codec = ServerCodec(max_size=max_body)


class _Watched:
    """A connection's deadline, phase and cancel scope, as the watchdog sees them."""

    __slots__ = ("deadline", "phase", "rid", "scope")

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.scope = scope
        self.deadline = math.inf
        self.phase = _IDLE
        self.rid: JSON = None


class Watchdog:
    """Cancels connections that passed their deadline; run `run()` in the server's group.

    Args:
        tick: seconds between checks (the worst-case lateness of a timeout).
    """

    def __init__(self, *, tick: float = 0.1) -> None:
        self.tick = tick
        self._watched: set[_Watched] = set()

    async def run(self) -> None:
        """Check every `tick` seconds until cancelled."""
        while True:
            await anyio.sleep(self.tick)
            now = anyio.current_time()
            for watched in list(self._watched):
                if watched.deadline <= now:
                    watched.scope.cancel()

    def evict_idle(self) -> bool:
        """Close the connection idle the longest (kept alive, no request begun), to make
        room for a new one; return False when no connection is idle.

        HTTP lets a server close a kept-alive connection between requests at any time,
        so a flood of idle connections cannot shut other peers out: only connections in
        the middle of a request (each bounded by `read_timeout`) hold their place.
        O(connections); called only at capacity.
        """
        idle = [w for w in self._watched if w.phase == _IDLE and not w.scope.cancel_called]
        if not idle:
            return False
        min(idle, key=lambda w: w.deadline).scope.cancel()
        return True

    def add(self, watched: _Watched) -> None:
        self._watched.add(watched)

    def discard(self, watched: _Watched) -> None:
        self._watched.discard(watched)


class _Abort(Exception):
    """Stop serving this connection (after an optional final response)."""


class _Request(NamedTuple):
    body: bytes
    compressed: bool
    keep_alive: bool


class _RequestReader:
    """httptools callbacks for one connection: complete requests queue up in `ready`.

    The first problem found (bad HTTP, a bound passed) is kept in `error` as
    ``(status, message)``; the requests completed before it are still served, then the
    server refuses with it and closes.
    """

    __slots__ = (
        "body_size",
        "chunks",
        "compressed",
        "error",
        "expect_continue",
        "head_bytes",
        "head_done",
        "head_size",
        "header_count",
        "in_message",
        "keep_alive",
        "max_body",
        "parser",
        "ready",
    )

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.parser = httptools.HttpRequestParser(self)
        self.ready: deque[_Request] = deque()
        self.error: tuple[int, str] | None = None
        self.in_message = False
        self.head_done = False
        self.head_bytes = 0  # bytes received while a head was incomplete
        self._reset()

    def _reset(self) -> None:
        self.head_size = 0
        self.header_count = 0
        self.compressed = False
        self.expect_continue = False
        self.keep_alive = False
        self.chunks: list[bytes] = []
        self.body_size = 0

    def feed(self, data: bytes) -> None:
        """Parse received bytes (never raises: problems land in `error`)."""
        if self.error is not None:
            return
        if not self.head_done:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "ERR_BAD_HTTP: protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            detail = str(exc) or type(exc).__name__
            self._fail(400, f"ERR_BAD_HTTP: {detail}")
        if not self.head_done and self.head_bytes > _MAX_HEAD:
            self._fail(431, f"ERR_BAD_HTTP: request head over {_MAX_HEAD} bytes")

    def _fail(self, status: int, message: str) -> None:
        if self.error is None:
            self.error = (status, message)

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_message = True
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        self.head_size += len(name) + len(value) + 4
        name = name.lower()
        if name == COMPRESS_HEADER:
            self.compressed = wants_gzip(value)
        elif name == b"content-length":
            if value.strip().isdigit() and int(value) > self.max_body:
                self._fail(413, _too_large(self.max_body))
        elif name == b"expect" and value.strip().lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        self.head_done = True
        self.head_bytes = 0
        if self.header_count > _MAX_HEADERS:
            self._fail(431, f"ERR_BAD_HTTP: over {_MAX_HEADERS} headers")
        elif self.head_size > _MAX_HEAD:
            self._fail(431, f"ERR_BAD_HTTP: request head over {_MAX_HEAD} bytes")
        parser = self.parser
        self.keep_alive = parser.should_keep_alive() and parser.get_http_version() == "1.1"

    def on_body(self, body: bytes) -> None:
        self.expect_continue = False
        if self.error is not None:
            return
        self.body_size += len(body)
        if self.body_size > self.max_body:
            self._fail(413, _too_large(self.max_body))
            self.chunks = []
            return
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        self.head_done = False
        self.head_bytes = 0
        if self.error is None:
            chunks = self.chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self.ready.append(_Request(body, self.compressed, self.keep_alive))
        self._reset()


async def serve_connection(
    stream: anyio.abc.ByteStream,
    handlers: Mapping[str, Handler],
    options: ServerOptions,
    watchdog: Watchdog,
) -> None:
    """Serve one client connection until it closes, times out or misbehaves."""
    async with stream:
        with anyio.CancelScope() as scope:
            watched = _Watched(scope)
            watchdog.add(watched)
            try:
                await _serve(stream, handlers, options, watched)
            except (_Abort, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return
            finally:
                watchdog.discard(watched)
        if not scope.cancelled_caught:
            return
        # Late: tell the client why, if HTTP still allows a response, then close.
        with anyio.move_on_after(min(1.0, options.read_timeout)), contextlib.suppress(Exception):
            if watched.phase == _READ:
                await _refuse(stream, 408, "ERR_TIMEOUT: request not completed in time")
            elif watched.phase == _HANDLE:
                error = f"ERR_TIMEOUT: handler took longer than {options.handler_timeout} s"
                body = options.codec.error_reply(watched.rid, error)
                await stream.send(_response(200, body, close=True))


async def _serve(
    stream: anyio.abc.ByteStream,
    handlers: Mapping[str, Handler],
    options: ServerOptions,
    watched: _Watched,
) -> None:
    clock = _clock()
    reader = _RequestReader(options.max_body)
    while True:
        watched.phase = _IDLE
        watched.deadline = clock() + options.idle_timeout
        request = await _read_request(reader, stream, options, watched, clock)
        if request is None:
            return
        watched.phase = _HANDLE
        watched.deadline = clock() + options.handler_timeout
        status, reply = await _dispatch(handlers, options, request, watched)
        watched.phase = _WRITE
        watched.deadline = clock() + options.read_timeout
        await stream.send(_response(status, reply, close=not request.keep_alive))
        if not request.keep_alive:
            return


def _clock() -> Callable[[], float]:
    """anyio's clock, fetched once: on asyncio it is the loop's `time` (anyio's own
    `current_time()` looks the backend up on every call)."""
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:
        return anyio.current_time


async def _read_request(
    reader: _RequestReader,
    stream: anyio.abc.ByteStream,
    options: ServerOptions,
    watched: _Watched,
    clock: Callable[[], float],
) -> _Request | None:
    """The next complete request; None when the client closed the connection.

    Raises:
        _Abort: the request was refused (the refusal has been sent, if possible).
    """
    ready = reader.ready
    while not ready:
        if reader.error is not None:
            await _refuse(stream, *reader.error)
            raise _Abort
        if reader.expect_continue:
            reader.expect_continue = False
            await stream.send(_CONTINUE)
        try:
            data = await stream.receive(_RECEIVE_SIZE)
        except anyio.EndOfStream:
            if reader.in_message or (reader.head_bytes and not reader.head_done):
                await _refuse(stream, 400, "ERR_BAD_HTTP: connection closed mid-request")
                raise _Abort from None
            return None
        if watched.phase == _IDLE:
            watched.phase = _READ
            watched.deadline = clock() + options.read_timeout
        reader.feed(data)
    return ready.popleft()


def _too_large(max_body: int) -> str:
    return f"ERR_BODY_TOO_LARGE: the bound is {max_body} bytes"


async def _dispatch(
    handlers: Mapping[str, Handler],
    options: ServerOptions,
    http_request: _Request,
    watched: _Watched,
) -> tuple[int, bytes]:
    codec = options.codec
    compressed = http_request.compressed
    try:
        request = codec.request(http_request.body, compressed=compressed)
    except CodecError as exc:
        return 400, codec.error_reply(exc.rid, f"ERR_BAD_REQUEST: {exc}", compressed=compressed)
    watched.rid = request.rid
    handler = handlers.get(request.key)
    if handler is None:
        unknown = f"ERR_SERVICE_UNKNOWN: {request.key[:200]}"
        return 200, codec.reply(request.rid, unknown, None, compressed=compressed)
    error: str | None = None
    data: JSON = None
    try:
        data = await handler(request.payload)
    except RemoteError as exc:
        error = exc.message
    except Exception as exc:
        log.exception("handler for %r failed", request.key)
        error = f"ERR_INTERNAL: {type(exc).__name__}: {exc}"
    return 200, codec.reply(request.rid, error, data, compressed=compressed)


def _response(status: int, body: bytes, *, close: bool = False) -> bytes:
    """A whole HTTP/1.1 response: status line, JSON content type, length, body."""
    return b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        status,
        _REASONS.get(status, b""),
        len(body),
        b"connection: close\r\n" if close else b"",
        body,
    )


async def _refuse(stream: anyio.abc.ByteStream, status: int, error: str) -> None:
    """Send a final error response (the caller closes the connection)."""
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await stream.send(_response(status, _ERROR_CODEC.error_reply(None, error), close=True))
