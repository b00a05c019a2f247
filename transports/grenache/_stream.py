"""Byte streams for the Grenache adapter: anyio's interface, a faster asyncio body.

Why this module exists (measured, see docs/benchmarks.md): anyio's asyncio
`SocketStream.receive` resumes and pauses reading on every call, i.e. two
``epoll_ctl`` system calls and an extra event-loop turn per receive. For small RPCs
that dominates: a plain asyncio `Protocol` echo does ~3x the round trips per second of
an anyio stream echo on this machine. So on asyncio we implement `anyio.abc.ByteStream`
(and `anyio.abc.Listener`) over an `asyncio.Protocol` that keeps reading into a bounded
buffer; the rest of the adapter sees an ordinary anyio stream, cancel scopes and task
groups included. Under any other backend (trio) the plain anyio streams are used.

Guarantees: `receive` raises `EndOfStream` at EOF, `BrokenResourceError` on a reset,
`ClosedResourceError` after our own `aclose`; `send` waits while the transport's write
buffer is above its high-water mark (back pressure); reading pauses while more than
`_READ_HIGH` bytes are buffered and unread (so a flood costs bounded memory).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
import anyio.abc

__all__ = ["connect", "listen"]

log = logging.getLogger("transports.grenache.server")

_READ_HIGH = 256 * 1024
_READ_LOW = 64 * 1024

# accept() failures that say nothing about the listening socket: out of file
# descriptors or kernel memory (wait, connections will close), or a connection that
# died in the backlog (skip it). None of them may end `serve` (that would take the
# whole worker down); asyncio's own servers pause and retry in the same way.
_ACCEPT_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_SKIPPED = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.ECONNRESET})
_ACCEPT_PAUSE = 0.1
"""Seconds to wait before accepting again when the process is out of descriptors."""


async def _accept_loop(
    accept: Callable[[], Any], start: Callable[[Any], None], *, port: int
) -> None:
    """Accept connections for ever, handing each to `start`.

    Raises:
        OSError: accept failed for a reason that will not go away (e.g. the socket was
            closed); exhaustion and per-connection failures are waited out or skipped.
    """
    exhausted = False
    while True:
        try:
            stream = await accept()
        except OSError as exc:
            if exc.errno in _ACCEPT_SKIPPED:
                continue
            if exc.errno not in _ACCEPT_EXHAUSTED:
                raise
            if not exhausted:  # once per episode, not ten times a second
                log.warning("port %d: cannot accept connections (%s); retrying", port, exc.strerror)
            exhausted = True
            await anyio.sleep(_ACCEPT_PAUSE)
            continue
        if exhausted:
            log.info("port %d: accepting connections again", port)
            exhausted = False
        start(stream)


def _asyncio_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # another anyio backend
        return None


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.reading_paused = False
        self.eof = False
        self.exception: BaseException | None = None
        self.read_waiter: asyncio.Future[None] | None = None
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > _READ_HIGH and not self.reading_paused and self.transport:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.exception = exc
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writer()

    def _wake_reader(self) -> None:
        waiter = self.read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _AsyncioStream(anyio.abc.ByteStream):
    """`anyio.abc.ByteStream` over `_Protocol` (asyncio only)."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._closed = False

    def _raise_unreadable(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._protocol.exception is not None:
            raise anyio.BrokenResourceError from self._protocol.exception
        raise anyio.EndOfStream

    async def receive(self, max_bytes: int = 65536) -> bytes:
        protocol = self._protocol
        if not protocol.chunks:
            if protocol.eof or self._closed:
                self._raise_unreadable()
            waiter = self._loop.create_future()
            protocol.read_waiter = waiter
            try:
                await waiter
            finally:
                protocol.read_waiter = None
            if not protocol.chunks:
                self._raise_unreadable()
        chunk = protocol.chunks.popleft()
        if len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            protocol.chunks.appendleft(rest)
        protocol.buffered -= len(chunk)
        if protocol.reading_paused and protocol.buffered < _READ_LOW:
            protocol.reading_paused = False
            self._transport.resume_reading()
        return chunk

    async def send(self, item: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        protocol = self._protocol
        if protocol.exception is not None or self._transport.is_closing():
            raise anyio.BrokenResourceError from protocol.exception
        self._transport.write(item)
        while protocol.write_paused:
            waiter = self._loop.create_future()
            protocol.drain_waiter = waiter
            try:
                await waiter
            finally:
                protocol.drain_waiter = None
            if protocol.exception is not None or self._transport.is_closing():
                raise anyio.BrokenResourceError from protocol.exception

    async def send_eof(self) -> None:
        self._transport.write_eof()

    def close_now(self) -> None:
        """Close without awaiting (idempotent); `aclose` is this plus a checkpoint."""
        if not self._closed:
            self._closed = True
            self._transport.close()
            self._protocol._wake_reader()

    async def aclose(self) -> None:
        self.close_now()
        await anyio.lowlevel.checkpoint()

    @property
    def extra_attributes(self) -> dict[Any, Callable[[], Any]]:
        return {}


async def connect(host: str, port: int) -> anyio.abc.ByteStream:
    """Open a TCP connection (TCP_NODELAY, as both asyncio and anyio set it).

    Raises:
        OSError: the connection could not be made.
    """
    loop = _asyncio_loop()
    if loop is None:
        return await anyio.connect_tcp(host, port)
    transport, protocol = await loop.create_connection(_Protocol, host, port)
    assert isinstance(transport, asyncio.Transport)
    return _AsyncioStream(transport, protocol)


class _AsyncioListener(anyio.abc.Listener[anyio.abc.ByteStream]):
    """A TCP listener whose connections are `_AsyncioStream`s."""

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock
        self._loop = asyncio.get_running_loop()
        self.port: int = sock.getsockname()[1]

    async def accept(self) -> _AsyncioStream:
        conn, _ = await self._loop.sock_accept(self._socket)
        try:
            transport, protocol = await self._loop.connect_accepted_socket(_Protocol, conn)
        except BaseException:
            conn.close()
            raise
        assert isinstance(transport, asyncio.Transport)
        return _AsyncioStream(transport, protocol)

    async def serve(
        self,
        handler: Callable[[anyio.abc.ByteStream], Any],
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        # Streams whose handler has not finished: a task cancelled before its first
        # step never runs its own cleanup, so whatever is left is closed here.
        live: set[_AsyncioStream] = set()

        async def run(stream: _AsyncioStream) -> None:
            try:
                await handler(stream)
            finally:
                live.discard(stream)
                stream.close_now()

        try:
            async with anyio.create_task_group() as tg:

                def start(stream: _AsyncioStream) -> None:
                    live.add(stream)
                    (task_group or tg).start_soon(run, stream)

                await _accept_loop(self.accept, start, port=self.port)
        finally:
            for stream in live:
                stream.close_now()

    async def aclose(self) -> None:
        self._socket.close()
        await anyio.lowlevel.checkpoint()

    @property
    def extra_attributes(self) -> dict[Any, Callable[[], Any]]:
        return {}


class _AnyioListener(anyio.abc.Listener[anyio.abc.ByteStream]):
    """anyio's own TCP listener, for backends other than asyncio."""

    def __init__(self, listener: anyio.abc.Listener[anyio.abc.SocketStream]) -> None:
        self._listener = listener
        self.port: int = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def serve(
        self,
        handler: Callable[[anyio.abc.ByteStream], Any],
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        # anyio's own `serve` ends on the first accept error; accept ourselves instead.
        listeners = getattr(self._listener, "listeners", [self._listener])
        async with anyio.create_task_group() as tg:

            def start(stream: anyio.abc.SocketStream) -> None:
                (task_group or tg).start_soon(handler, stream)

            for listener in listeners:
                tg.start_soon(partial(_accept_loop, listener.accept, start, port=self.port))

    async def aclose(self) -> None:
        await self._listener.aclose()

    @property
    def extra_attributes(self) -> dict[Any, Callable[[], Any]]:
        return {}


async def listen(host: str, port: int) -> _AsyncioListener | _AnyioListener:
    """Listen on ``host:port`` (0 = a free port); `.port` is the bound port.

    Raises:
        OSError: cannot listen there (e.g. the port is taken).
    """
    if _asyncio_loop() is None:
        return _AnyioListener(await anyio.create_tcp_listener(local_host=host, local_port=port))
    sock = socket.create_server((host, port), backlog=512)
    sock.setblocking(False)
    return _AsyncioListener(sock)
