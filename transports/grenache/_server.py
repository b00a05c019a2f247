"""The peer RPC server: the grenache-nodejs-http protocol on h11 and anyio.

One connection is served by one task, one request at a time (HTTP/1.1 keep-alive; h11
holds back pipelined requests until the reply is sent). For each request:

1. Read the head and the body under two deadlines: `idle_timeout` for the first byte
   of a request on a kept-alive connection, then `read_timeout` for the whole request
   from that byte (so a slowloris client is cut off: HTTP 408 if the state allows it,
   then the connection is closed).
2. Refuse a body over `max_body` with 413 (from Content-Length before reading it, or as
   the chunks arrive) and close the connection.
3. Decode ``[rid, key, payload]`` (`transports._codec`); a malformed body gets HTTP 400
   and ``[rid-or-null, "ERR_BAD_REQUEST: ...", null]``.
4. Run the handler under `handler_timeout`; a `RemoteError` becomes its message, a
   timeout ``ERR_TIMEOUT`` (and the connection is closed after that reply), an unknown
   key ``ERR_SERVICE_UNKNOWN``, anything else ``ERR_INTERNAL: ...`` (logged).
5. Reply HTTP 200 with ``[rid, error-or-null, data]`` (gzipped when asked), within
   `read_timeout` (a client that stops reading is cut off).

Bad HTTP (h11 `RemoteProtocolError`) gets the status h11 suggests and a closed
connection. Nothing a client sends can crash the accept loop: every connection task
catches its own failures.

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
from collections.abc import Callable, Mapping

import anyio
import anyio.abc
import h11

from transports._base import JSON, Handler
from transports._codec import COMPRESS_HEADER, CodecError, ServerCodec, wants_gzip
from transports._exceptions import RemoteError

__all__ = ["ServerOptions", "Watchdog", "serve_connection"]

log = logging.getLogger("transports.grenache.server")

_RECEIVE_SIZE = 65536
_MAX_HEAD = 16384
_MAX_HEADERS = 100
_END = h11.EndOfMessage()
_ERROR_CODEC = ServerCodec()

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

    def add(self, watched: _Watched) -> None:
        self._watched.add(watched)

    def discard(self, watched: _Watched) -> None:
        self._watched.discard(watched)


class _Abort(Exception):
    """Stop serving this connection (after an optional final response)."""


async def serve_connection(
    stream: anyio.abc.ByteStream,
    handlers: Mapping[str, Handler],
    options: ServerOptions,
    watchdog: Watchdog,
) -> None:
    """Serve one client connection until it closes, times out or misbehaves."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
    async with stream:
        with anyio.CancelScope() as scope:
            watched = _Watched(scope)
            watchdog.add(watched)
            try:
                await _serve(conn, stream, handlers, options, watched)
            except (_Abort, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return
            except h11.ProtocolError as exc:
                log.debug("h11 state error: %s", exc)
                return
            finally:
                watchdog.discard(watched)
        if not scope.cancelled_caught:
            return
        # Late: tell the client why, if HTTP still allows a response, then close.
        with anyio.move_on_after(min(1.0, options.read_timeout)), contextlib.suppress(Exception):
            if watched.phase == _READ:
                await _refuse(conn, stream, 408, "ERR_TIMEOUT: request not completed in time")
            elif watched.phase == _HANDLE:
                error = f"ERR_TIMEOUT: handler took longer than {options.handler_timeout} s"
                body = options.codec.error_reply(watched.rid, error)
                await _respond(conn, stream, 200, body, close=True)


async def _serve(
    conn: h11.Connection,
    stream: anyio.abc.ByteStream,
    handlers: Mapping[str, Handler],
    options: ServerOptions,
    watched: _Watched,
) -> None:
    clock = _clock()
    while True:
        watched.phase = _IDLE
        watched.deadline = clock() + options.idle_timeout
        request = await _read_request(conn, stream, options, watched, clock)
        if request is None:
            return
        head, body = request
        compressed = wants_gzip(_header(head, COMPRESS_HEADER))
        watched.phase = _HANDLE
        watched.deadline = clock() + options.handler_timeout
        status, reply = await _dispatch(handlers, options, body, compressed, watched)
        watched.phase = _WRITE
        watched.deadline = clock() + options.read_timeout
        await _respond(conn, stream, status, reply)
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
            return
        conn.start_next_cycle()


def _clock() -> Callable[[], float]:
    """anyio's clock, fetched once: on asyncio it is the loop's `time` (anyio's own
    `current_time()` looks the backend up on every call)."""
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:
        return anyio.current_time


def _header(head: h11.Request, name: bytes) -> bytes | None:
    for key, value in head.headers:
        if key == name:
            return bytes(value)
    return None


async def _read_request(
    conn: h11.Connection,
    stream: anyio.abc.ByteStream,
    options: ServerOptions,
    watched: _Watched,
    clock: Callable[[], float],
) -> tuple[h11.Request, bytes] | None:
    """Read one complete request; None when the client closed the connection."""
    head: h11.Request | None = None
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            await _refuse(conn, stream, exc.error_status_hint, f"ERR_BAD_HTTP: {exc}")
            raise _Abort from exc
        if event is h11.NEED_DATA:
            if conn.they_are_waiting_for_100_continue:
                continue_ = h11.InformationalResponse(status_code=100, headers=[])
                await stream.send(conn.send(continue_) or b"")
            try:
                data = await stream.receive(_RECEIVE_SIZE)
            except anyio.EndOfStream:
                data = b""
            if watched.phase == _IDLE:
                watched.phase = _READ
                watched.deadline = clock() + options.read_timeout
            conn.receive_data(data)
        elif isinstance(event, h11.Request):
            head = event
            if len(event.headers) > _MAX_HEADERS:
                # h11 bounds an *incomplete* head; a complete one read in one chunk
                # (up to 64 KiB) is bounded here.
                await _refuse(conn, stream, 431, f"ERR_BAD_HTTP: over {_MAX_HEADERS} headers")
                raise _Abort
            length = _header(event, b"content-length")
            if length is not None and length.isdigit() and int(length) > options.max_body:
                await _refuse(conn, stream, 413, _too_large(options))
                raise _Abort
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > options.max_body:
                await _refuse(conn, stream, 413, _too_large(options))
                raise _Abort
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return head, b"".join(chunks)
        else:  # ConnectionClosed, or PAUSED (cannot happen: we reply before reading on)
            return None


def _too_large(options: ServerOptions) -> str:
    return f"ERR_BODY_TOO_LARGE: the bound is {options.max_body} bytes"


async def _dispatch(
    handlers: Mapping[str, Handler],
    options: ServerOptions,
    body: bytes,
    compressed: bool,
    watched: _Watched,
) -> tuple[int, bytes]:
    codec = options.codec
    try:
        request = codec.request(body, compressed=compressed)
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


async def _respond(
    conn: h11.Connection,
    stream: anyio.abc.ByteStream,
    status: int,
    body: bytes,
    *,
    close: bool = False,
) -> None:
    out = conn.send(_response_head(status, len(body), close)) or b""
    out += conn.send(h11.Data(data=body)) or b""
    out += conn.send(_END) or b""
    await stream.send(out)


_response_cache: dict[tuple[int, int, bool], h11.Response] = {}


def _response_head(status: int, length: int, close: bool) -> h11.Response:
    """The h11 response event, built once per (status, length, close) and reused.

    h11 events are immutable; building one validates every header, a measurable part
    of serving a small request.
    """
    key = (status, length, close)
    head = _response_cache.get(key)
    if head is None:
        if len(_response_cache) >= 1024:
            _response_cache.clear()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(length).encode()),
        ]
        if close:
            headers.append((b"connection", b"close"))
        head = h11.Response(status_code=status, headers=headers)
        _response_cache[key] = head
    return head


async def _refuse(
    conn: h11.Connection, stream: anyio.abc.ByteStream, status: int, error: str
) -> None:
    """Send a final error reply if the HTTP state still allows one; the caller closes."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    with contextlib.suppress(h11.LocalProtocolError, anyio.BrokenResourceError, OSError):
        body = _ERROR_CODEC.error_reply(None, error)
        await _respond(conn, stream, status, body, close=True)
