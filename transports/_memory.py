"""The memory adapter: every transport in one process, attached to one `MemoryNetwork`.

Theory of operation
-------------------
A `MemoryNetwork` is the whole world: a registry (service name -> announced peer
addresses), the listening servers (address -> server), and the DHT (key -> value).
A `MemoryTransport` is one node attached to it.

`serve` binds a server at address ``memory:<port>``, announces its names and then runs
an accept loop in a task group it owns: each request arrives on a memory stream and its
handler runs in its own task *in the server's task group*, not in the caller's task. So,
as on a real network, a caller's timeout does not cancel the handler, and stopping the
server (cancelling `serve`) cancels its handlers and fails their callers with
`ConnectionFailed`.

Each request is a message: the caller encodes it, the network carries it, the server
decodes it, and the reply comes back the same way. The encoding and the carrying are
hooks on the network (`_encode_request`, `_transmit`, ...). This module's hooks copy
payloads through JSON text (so caller and handler never share mutable state, and a
value JSON cannot carry fails here as it would on the wire) and deliver at once; the
loopback adapter overrides them to encode real Grenache bodies and inject faults.

Differences from Grape, on purpose: a name stays announced exactly while its `serve`
runs (Grape keeps dead peers announced; use `MemoryNetwork(keep_dead_peers=True)` or
`announce_dead` to get that), and a lookup sees an announce at once.
"""

from __future__ import annotations

import json
import math
import random
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from transports._base import DEFAULT_TIMEOUT, JSON, Handler, PeerResult, Transport
from transports._dht import check_key, check_value, dht_key
from transports._exceptions import (
    ConnectionFailed,
    NoPeersError,
    ProtocolError,
    RemoteError,
    RequestTimeout,
    TransportClosed,
    TransportError,
    peer_error,
)

__all__ = ["MemoryNetwork", "MemoryTransport"]


def internal_error(exc: BaseException) -> str:
    """The error string a server replies with when a handler raised `exc` unexpectedly."""
    return f"ERR_INTERNAL: {type(exc).__name__}: {exc}"


def check_timeout(timeout: float) -> float:
    """Refuse a timeout that is not a positive, finite number of seconds."""
    if not (0 < timeout < math.inf):
        raise ValueError(f"timeout must be positive and finite, not {timeout!r}")
    return timeout


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"service names are str, not {type(name).__name__}")
    if not name:
        raise ValueError("service names are non-empty")
    return name


class _Pending:
    """The caller's side of one exchange: the first reply or failure wins."""

    __slots__ = ("done", "error", "event", "reply")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.done = False
        self.reply: object = None
        self.error: TransportError | None = None

    def resolve(self, reply: object) -> None:
        if not self.done:
            self.done, self.reply = True, reply
            self.event.set()

    def fail(self, error: TransportError) -> None:
        if not self.done:
            self.done, self.error = True, error
            self.event.set()


@dataclass(eq=False, slots=True)
class _Call:
    """One delivered request: its message, its caller, and what the network decided."""

    message: object
    pending: _Pending
    fate: object = None


@dataclass(eq=False)
class _Server:
    """A listening address: its handlers and the stream its accept loop reads."""

    address: str
    port: int
    handlers: dict[str, Handler]
    send: MemoryObjectSendStream[_Call]
    receive: MemoryObjectReceiveStream[_Call]
    task_group: TaskGroup | None = None


class MemoryNetwork:
    """One in-process world shared by `MemoryTransport` instances.

    Args:
        seed: seeds the random choice of a peer in `request` (ignored with `rng`).
        rng: the random source for peer choice; same seed, same choices.
        keep_dead_peers: keep a stopped server's names announced, as Grape does (its
            address then refuses connections); by default they are unannounced.
        max_values: keep at most this many DHT values, evicting the least recently
            used one, as a grape does (1000 with the challenge's flags); None = no bound.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        rng: random.Random | None = None,
        keep_dead_peers: bool = False,
        max_values: int | None = None,
    ) -> None:
        if max_values is not None and max_values < 1:
            raise ValueError("max_values must be at least 1")
        self.random = rng if rng is not None else random.Random(seed)
        self.keep_dead_peers = keep_dead_peers
        self.max_values = max_values
        self._announced: dict[str, list[str]] = {}
        self._servers: dict[str, _Server] = {}
        self._down: set[str] = set()
        self._dht: OrderedDict[str, str] = OrderedDict()
        self._next_port = 1

    # -- registry ---------------------------------------------------------------------

    def peers(self, name: str) -> list[str]:
        """Return the addresses announced for `name`, in announce order (live or not)."""
        return list(self._announced.get(name, ()))

    def announce_dead(self, name: str) -> str:
        """Announce a peer for `name` that refuses every connection; return its address.

        Models what a CLI grape does after a service dies: its address stays announced
        forever, so `request` may pick it (`ConnectionFailed`) and `map` reports it.
        """
        address = self._address(self._allocate_port(0))
        self._announce(_check_name(name), address)
        return address

    def unannounce(self, address: str) -> None:
        """Remove `address` from every name it is announced for (no-op if unknown)."""
        for name in list(self._announced):
            addresses = self._announced[name]
            if address in addresses:
                addresses.remove(address)
                if not addresses:
                    del self._announced[name]

    def set_down(self, peer_or_name: str, down: bool = True) -> None:
        """Make a peer refuse connections (`ConnectionFailed`), or bring it back.

        Args:
            peer_or_name: an address (``memory:3``), or a service name meaning every
                address announced for it right now.
            down: True to cut it off, False to restore it.
        """
        addresses = self._announced.get(peer_or_name, [peer_or_name])
        for address in addresses:
            if down:
                self._down.add(address)
            else:
                self._down.discard(address)

    def _address(self, port: int) -> str:
        return f"memory:{port}"

    def _allocate_port(self, port: int) -> int:
        if port == 0:
            while self._address(self._next_port) in self._servers or any(
                self._address(self._next_port) in peers for peers in self._announced.values()
            ):
                self._next_port += 1
            port = self._next_port
            self._next_port += 1
            return port
        if not (0 < port < 65536):
            raise ValueError(f"port must be 0..65535, not {port}")
        if self._address(port) in self._servers:
            raise ConnectionFailed(f"address in use: {self._address(port)}")
        return port

    def _announce(self, name: str, address: str) -> None:
        addresses = self._announced.setdefault(name, [])
        if address not in addresses:
            addresses.append(address)

    def _bind(self, port: int, handlers: dict[str, Handler]) -> _Server:
        port = self._allocate_port(port)
        send, receive = anyio.create_memory_object_stream[_Call](math.inf)
        server = _Server(self._address(port), port, handlers, send, receive)
        self._servers[server.address] = server
        for name in handlers:
            self._announce(name, server.address)
        return server

    def _unbind(self, server: _Server) -> None:
        if self._servers.get(server.address) is server:
            del self._servers[server.address]
        if not self.keep_dead_peers:
            self.unannounce(server.address)

    def _pick(self, name: str) -> str:
        addresses = self._announced.get(name)
        if not addresses:
            raise NoPeersError(f"no peer serves {name!r}")
        return self.random.choice(addresses)

    def _server(self, address: str) -> _Server:
        server = self._servers.get(address)
        if server is None or address in self._down:
            raise ConnectionFailed(f"connection refused: {address}")
        return server

    # -- messages: hooks the loopback network overrides --------------------------------

    def _encode_request(self, name: str, payload: JSON) -> object:
        """Caller side: turn `(name, payload)` into a message, or raise ProtocolError."""
        return (name, _dumps(payload))

    def _decode_request(self, message: object) -> tuple[str, JSON]:
        """Server side: the name and a private copy of the payload."""
        name, text = cast(tuple[str, str], message)
        return name, json.loads(text)

    def _encode_reply(self, request: object, error: str | None, data: JSON) -> object:
        """Server side: the reply message; data JSON cannot carry becomes an error."""
        if error is not None:
            return (error, None)
        try:
            return (None, _dumps(data))
        except ProtocolError as exc:
            # Same string as the Grenache server codec sends for such data.
            return (f"ERR_REPLY_ENCODE: not a JSON value: {exc.__cause__}", None)

    def _decode_reply(self, request: object, reply: object) -> JSON:
        """Caller side: the reply data, or raise RemoteError with the peer's string."""
        error, text = cast(tuple[str | None, str], reply)
        if error is not None:
            raise RemoteError(error)
        return json.loads(text)

    async def _transmit(self, address: str, name: str, message: object, pending: _Pending) -> None:
        """Caller side: deliver a request to `address` (may return before the reply).

        Raises:
            ConnectionFailed: nobody listens at `address`, or it is down.
        """
        self._server(address).send.send_nowait(_Call(message, pending))

    async def _transmit_reply(self, call: _Call, reply: object) -> None:
        """Server side: deliver the reply to the caller."""
        call.pending.resolve(reply)

    # -- DHT ---------------------------------------------------------------------------

    async def _put(self, value: str) -> str:
        key = dht_key(value)
        self._store(key, value)
        return key

    async def _get(self, key: str) -> str | None:
        return self._load(key)

    def _store(self, key: str, value: str) -> None:
        self._dht[key] = value
        self._dht.move_to_end(key)
        if self.max_values is not None:
            while len(self._dht) > self.max_values:
                self._dht.popitem(last=False)

    def _load(self, key: str) -> str | None:
        value = self._dht.get(key)
        if value is not None:
            self._dht.move_to_end(key)
        return value

    def dht_size(self) -> int:
        """Return how many values the DHT holds now."""
        return len(self._dht)


def _dumps(value: JSON) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"ERR_ENCODE: not a JSON value: {exc}") from exc


class MemoryTransport(Transport):
    """A transport attached to a `MemoryNetwork`; many may share one network.

    Args:
        network: the world this node lives in.
    """

    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network
        self._closed = False
        self._servers: set[_Server] = set()
        self._pending: set[_Pending] = set()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosed(f"{type(self).__name__} is closed")

    # -- RPC -----------------------------------------------------------------------------

    async def serve(
        self,
        handlers: Mapping[str, Handler],
        *,
        port: int = 0,
        wait_announced: bool = True,
        task_status: TaskStatus[int] = TASK_STATUS_IGNORED,
    ) -> None:
        """Serve every name in `handlers` at ``memory:<port>`` until cancelled.

        The names are announced before `task_status.started(port)` and unannounced when
        `serve` ends (unless the network keeps dead peers). `aclose()` stops it too:
        `serve` then returns. Handlers run in this task's task group. An announce here
        cannot fail, so `wait_announced` changes nothing.

        Raises:
            TransportClosed: the transport is closed.
            ConnectionFailed: `port` is already in use on the network.
        """
        self._check_open()
        table = {_check_name(name): handler for name, handler in handlers.items()}
        server = self.network._bind(port, table)
        self._servers.add(server)
        try:
            async with anyio.create_task_group() as task_group:
                server.task_group = task_group
                task_status.started(server.port)
                async for call in server.receive:
                    task_group.start_soon(self._handle, server, call)
        finally:
            self._servers.discard(server)
            self.network._unbind(server)
            server.send.close()
            # Requests that arrived but were never picked up: the connection drops.
            while True:
                try:
                    call = server.receive.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
                call.pending.fail(ConnectionFailed(f"{server.address} stopped serving"))
            server.receive.close()

    async def _handle(self, server: _Server, call: _Call) -> None:
        network = self.network
        settled = False
        try:
            try:
                name, payload = network._decode_request(call.message)
            except ProtocolError as exc:
                # A real server drops a connection it cannot parse; so do we.
                call.pending.fail(exc)
                settled = True
                return
            handler = server.handlers.get(name)
            error: str | None = None
            data: JSON = None
            if handler is None:
                error = f"ERR_SERVICE_UNKNOWN: {name}"
            else:
                try:
                    data = await handler(payload)
                except RemoteError as exc:
                    error = exc.message or "ERR_UNKNOWN"
                except Exception as exc:
                    error = internal_error(exc)
            reply = network._encode_reply(call.message, error, data)
            settled = True
            await network._transmit_reply(call, reply)
        finally:
            if not settled:
                # Cancelled mid-handler (the server stopped): the connection breaks.
                call.pending.fail(ConnectionFailed(f"{server.address} stopped serving"))

    async def request(self, name: str, payload: JSON, *, timeout: float = DEFAULT_TIMEOUT) -> JSON:
        """Send `payload` to one peer serving `name`, chosen by the network's `random`.

        Raises:
            TransportClosed: the transport is (or gets) closed.
            NoPeersError: nobody is announced for `name` (raised at once).
            RequestTimeout: no reply within `timeout` seconds.
            RemoteError: the handler raised `RemoteError`, or crashed ("ERR_INTERNAL: ...").
            ConnectionFailed: the chosen peer is dead, down, or stopped mid-request.
            ProtocolError: `payload` is not a JSON value (nothing is sent).
        """
        self._check_open()
        check_timeout(timeout)
        address = self.network._pick(_check_name(name))
        message = self.network._encode_request(name, payload)
        return await self._exchange(address, name, message, timeout)

    async def _exchange(self, address: str, name: str, message: object, timeout: float) -> JSON:
        pending = _Pending()
        self._pending.add(pending)
        try:
            with anyio.fail_after(timeout):
                await self.network._transmit(address, name, message, pending)
                await pending.event.wait()
        except TimeoutError:
            raise RequestTimeout(
                f"no reply from {address} for {name!r} within {timeout} s"
            ) from None
        finally:
            self._pending.discard(pending)
        if pending.error is not None:
            raise pending.error
        return self.network._decode_reply(message, pending.reply)

    async def map(
        self, name: str, payload: JSON, *, timeout: float = DEFAULT_TIMEOUT
    ) -> list[PeerResult]:
        """Send `payload` to every peer announced for `name`, concurrently.

        Returns one `PeerResult` per announced peer, in announce order; a peer that
        fails gives `error` ("ERR_TIMEOUT", "ERR_CONNECTION: ...", or its own string).

        Raises:
            TransportClosed: the transport is (or gets) closed.
            ProtocolError: `payload` is not a JSON value (nothing is sent).
        """
        self._check_open()
        check_timeout(timeout)
        addresses = self.network.peers(_check_name(name))
        # Encode every message before sending any, so a bad payload sends nothing.
        messages = [self.network._encode_request(name, payload) for _ in addresses]
        results: list[PeerResult | None] = [None] * len(addresses)

        async def one(index: int) -> None:
            address = addresses[index]
            try:
                data = await self._exchange(address, name, messages[index], timeout)
            except TransportError as exc:
                results[index] = PeerResult(address, error=peer_error(exc))
            else:
                results[index] = PeerResult(address, data=data)

        async with anyio.create_task_group() as task_group:
            for index in range(len(addresses)):
                task_group.start_soon(one, index)
        self._check_open()
        return [result for result in results if result is not None]

    # -- DHT -----------------------------------------------------------------------------

    async def put(self, value: str) -> str:
        """Store `value` in the network's DHT; return `dht_key(value)`.

        Raises:
            TransportClosed: the transport is closed.
            TypeError: `value` is not a str.
            PayloadTooLarge: `value` has 1000 or more characters or UTF-8 bytes.
            TransportError: the DHT did not store it (loopback fault injection only).
        """
        self._check_open()
        return await self.network._put(check_value(value))

    async def get(self, key: str) -> str | None:
        """Fetch the value stored under `key`; None when it is not (or no longer) there.

        Raises:
            TransportClosed: the transport is closed.
            TypeError, ValueError: `key` is not 40 lowercase hex characters.
            TransportError: the DHT could not be asked (loopback fault injection only).
        """
        self._check_open()
        return await self.network._get(check_key(key))

    async def aclose(self) -> None:
        """Close: stop this transport's servers and fail its waiting requests. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for pending in list(self._pending):
            pending.fail(TransportClosed(f"{type(self).__name__} was closed"))
        for server in list(self._servers):
            # Stops the accept loop; `serve` unannounces in its `finally` and returns.
            server.send.close()
            if server.task_group is not None:
                server.task_group.cancel_scope.cancel()
        await anyio.lowlevel.checkpoint()
