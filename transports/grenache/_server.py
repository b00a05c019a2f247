"""The peer RPC server: the grenache-nodejs-http protocol on h11 and anyio.

One connection is served by one task, one request at a time (HTTP/1.1 keep-alive; h11
holds back pipelined requests until the reply is sent). For each request:

1. Read the head and the body under two deadlines: `idle_timeout` for the first byte
   of a request on a kept-alive connection, then `read_timeout` for the whole request
   from that byte (so a slowloris client is cut off).
2. Refuse a body over `max_body` with 413 (from Content-Length before reading it, or as
   the chunks arrive) and close the connection.
3. Decode ``[rid, key, payload]`` (`transports._codec`); a malformed body gets HTTP 400
   and ``[rid-or-null, "ERR_BAD_REQUEST: ...", null]``.
4. Run the handler under `handler_timeout`; a `RemoteError` becomes its message, a
   timeout ``ERR_TIMEOUT``, an unknown key ``ERR_SERVICE_UNKNOWN``, anything else
   ``ERR_INTERNAL: ...`` (logged with its traceback).
5. Reply HTTP 200 with ``[rid, error-or-null, data]`` (gzipped when asked).

Bad HTTP (h11 `RemoteProtocolError`) gets the status h11 suggests and a closed
connection. Nothing a client sends can crash the accept loop: every connection task
catches its own failures.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping

import anyio
import anyio.abc
import h11

from transports._base import JSON, Handler
from transports._codec import COMPRESS_HEADER, CodecError, ServerCodec, wants_gzip
from transports._exceptions import RemoteError

__all__ = ["ServerOptions", "serve_connection"]

log = logging.getLogger("transports.grenache.server")

_RECEIVE_SIZE = 65536
_MAX_HEAD = 16384


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
        self.handler_timeout = handler_timeout
        self.codec = ServerCodec(max_size=max_body)


class _Abort(Exception):
    """Stop serving this connection (after an optional final response)."""


async def serve_connection(
    stream: anyio.abc.ByteStream, handlers: Mapping[str, Handler], options: ServerOptions
) -> None:
    """Serve one client connection until it closes, times out or misbehaves."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
    try:
        async with stream:
            while True:
                request = await _read_request(conn, stream, options)
                if request is None:
                    return
                head, body = request
                compressed = wants_gzip(_header(head, COMPRESS_HEADER))
                status, reply = await _dispatch(handlers, options, body, compressed)
                await _respond(conn, stream, options, status, reply)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
    except (_Abort, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        return
    except h11.ProtocolError as exc:
        log.debug("h11 state error: %s", exc)
        return


def _header(head: h11.Request, name: bytes) -> bytes | None:
    for key, value in head.headers:
        if key == name:
            return bytes(value)
    return None


async def _read_request(
    conn: h11.Connection, stream: anyio.abc.ByteStream, options: ServerOptions
) -> tuple[h11.Request, bytes] | None:
    """Read one complete request; None when the client closed or idled out."""
    deadline = math.inf
    head: h11.Request | None = None
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            await _refuse(conn, stream, options, exc.error_status_hint, f"ERR_BAD_HTTP: {exc}")
            raise _Abort from exc
        if event is h11.NEED_DATA:
            if conn.they_are_waiting_for_100_continue:
                continue_ = h11.InformationalResponse(status_code=100, headers=[])
                await _send(conn, stream, options, continue_)
            if deadline == math.inf:
                timeout = options.idle_timeout
            else:
                timeout = deadline - anyio.current_time()
            with anyio.move_on_after(timeout):
                try:
                    data = await stream.receive(_RECEIVE_SIZE)
                except anyio.EndOfStream:
                    data = b""
                if deadline == math.inf:
                    deadline = anyio.current_time() + options.read_timeout
                conn.receive_data(data)
                continue
            # Timed out.
            if deadline == math.inf:
                return None  # an idle keep-alive connection: close quietly
            await _refuse(conn, stream, options, 408, "ERR_TIMEOUT: request not completed")
            raise _Abort
        if isinstance(event, h11.Request):
            head = event
            length = _header(event, b"content-length")
            if length is not None and length.isdigit() and int(length) > options.max_body:
                await _refuse(conn, stream, options, 413, _too_large(options))
                raise _Abort
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > options.max_body:
                await _refuse(conn, stream, options, 413, _too_large(options))
                raise _Abort
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return head, b"".join(chunks)
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


def _too_large(options: ServerOptions) -> str:
    return f"ERR_BODY_TOO_LARGE: the bound is {options.max_body} bytes"


async def _dispatch(
    handlers: Mapping[str, Handler], options: ServerOptions, body: bytes, compressed: bool
) -> tuple[int, bytes]:
    codec = options.codec
    try:
        request = codec.request(body, compressed=compressed)
    except CodecError as exc:
        return 400, codec.error_reply(exc.rid, f"ERR_BAD_REQUEST: {exc}", compressed=compressed)
    handler = handlers.get(request.key)
    if handler is None:
        unknown = f"ERR_SERVICE_UNKNOWN: {request.key[:200]}"
        return 200, codec.reply(request.rid, unknown, None, compressed=compressed)
    error: str | None = None
    data: JSON = None
    try:
        with anyio.fail_after(options.handler_timeout):
            data = await handler(request.payload)
    except RemoteError as exc:
        error = exc.message
    except TimeoutError:
        error = f"ERR_TIMEOUT: handler took longer than {options.handler_timeout} s"
    except Exception as exc:
        log.exception("handler for %r failed", request.key)
        error = f"ERR_INTERNAL: {type(exc).__name__}: {exc}"
    return 200, codec.reply(request.rid, error, data, compressed=compressed)


async def _send(
    conn: h11.Connection, stream: anyio.abc.ByteStream, options: ServerOptions, *events: h11.Event
) -> None:
    out = b"".join(conn.send(event) or b"" for event in events)
    with anyio.fail_after(options.read_timeout):
        await stream.send(out)


async def _respond(
    conn: h11.Connection,
    stream: anyio.abc.ByteStream,
    options: ServerOptions,
    status: int,
    body: bytes,
    *,
    close: bool = False,
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    try:
        await _send(
            conn,
            stream,
            options,
            h11.Response(status_code=status, headers=headers),
            h11.Data(data=body),
            h11.EndOfMessage(),
        )
    except TimeoutError as exc:
        raise _Abort from exc


async def _refuse(
    conn: h11.Connection,
    stream: anyio.abc.ByteStream,
    options: ServerOptions,
    status: int,
    error: str,
) -> None:
    """Send a final error reply if the HTTP state still allows one; then the caller closes."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    with contextlib.suppress(h11.LocalProtocolError, anyio.BrokenResourceError, OSError):
        await _respond(
            conn, stream, options, status, options.codec.error_reply(None, error), close=True
        )
