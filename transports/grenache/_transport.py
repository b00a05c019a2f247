"""`GrenacheTransport`: the `Transport` interface over real grapes and HTTP peers."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial

import anyio
import anyio.abc
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

from transports._base import DEFAULT_TIMEOUT, JSON, Handler, PeerResult, Transport
from transports._codec import MAX_BODY_BYTES, ClientCodec, CodecError
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
from transports.grenache._errors import ConnectFailed, map_errors
from transports.grenache._http import ConnectionPool
from transports.grenache._link import GrapeLink
from transports.grenache._links import GrapeLinks
from transports.grenache._rid import new_rid
from transports.grenache._server import ServerOptions, Watchdog, serve_connection
from transports.grenache._stream import listen

__all__ = ["GrenacheTransport"]

log = logging.getLogger("transports.grenache")

_SERVICE_UNKNOWN = "ERR_SERVICE_UNKNOWN"
"""What our server answers for a name it does not serve (the handler never ran)."""

# Lookups right after an announce may come back empty: retry after these pauses (s).
_EMPTY_LOOKUP_RETRIES = (0.05, 0.1, 0.2, 0.25)

_FAST_PERIOD = 10.0
"""Seconds after the first successful announce during which names are re-announced
every `_FAST_INTERVAL` (a lookup through another grape can lag the first announces)."""
_FAST_INTERVAL = 1.0
_RETRY_FIRST = 0.25
"""Seconds before the first retry of a failed announce; doubles per failure, capped at
the transport's `announce_interval`."""


_peer_cache: dict[str, tuple[str, int]] = {}


def _split_peer(peer: str) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``, memoized (it runs on every request)."""
    address = _peer_cache.get(peer)
    if address is not None:
        return address
    host, sep, port = peer.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ProtocolError(f"grape returned a malformed peer address {peer!r}")
    if len(_peer_cache) >= 4096:
        _peer_cache.clear()
    address = _peer_cache[peer] = (host, int(port))
    return address


def _check_timeout(timeout: float) -> None:
    if not 0 < timeout < math.inf:
        raise ValueError(f"timeout must be positive and finite, not {timeout!r}")


class _Announcer:
    """Keeps `names` announced on `port` through one grape, for as long as it runs.

    There is no unannounce in Grape, and an announce may be refused for minutes (a grape
    whose DHT peers are down or restarted answers ``No nodes to query``), so this loop
    never gives up and never raises for a grape's failure: it retries with backoff and
    logs one line when announcing starts failing and one when it works again. `loud`
    makes the first a warning (the caller depends on being found); otherwise it is info.
    """

    def __init__(
        self, link: GrapeLink, names: list[str], port: int, *, interval: float, loud: bool
    ) -> None:
        self._link = link
        self._names = names
        self._port = port
        self._interval = interval
        self._level = logging.WARNING if loud else logging.INFO

    async def run(self, *, announced: bool) -> None:
        """Announce forever; `announced`: the names were just announced (wait first)."""
        failures = 0
        failing_since = 0.0
        fast_until = anyio.current_time() + _FAST_PERIOD if announced else None
        pause = _FAST_INTERVAL if announced else 0.0
        while True:
            await anyio.sleep(pause)
            error = await self._announce_all()
            now = anyio.current_time()
            if error is not None:
                if not failures:
                    failing_since = now
                    log.log(
                        self._level,
                        "announcing %s on port %d through %s fails: %s (retrying with"
                        " backoff; logged again once it works)",
                        self._names,
                        self._port,
                        self._link.url,
                        error,
                    )
                else:
                    log.debug("announce retry %d failed: %s", failures, error)
                failures += 1
                pause = min(self._interval, _RETRY_FIRST * 2 ** min(failures - 1, 16))
                continue
            if failures:
                log.info(
                    "announcing %s on port %d through %s works again (%d failed attempts"
                    " over %.0f s)",
                    self._names,
                    self._port,
                    self._link.url,
                    failures,
                    now - failing_since,
                )
                failures = 0
            if fast_until is None:
                fast_until = now + _FAST_PERIOD
            pause = _FAST_INTERVAL if now < fast_until else self._interval

    async def _announce_all(self) -> TransportError | None:
        """Announce every name once; the first failure (the others are still tried)."""
        error: TransportError | None = None
        for name in self._names:
            try:
                await self._link.announce(name, self._port)
            except TransportError as exc:
                error = error or exc
        return error


class GrenacheTransport(Transport):
    """RPC with grenache-nodejs-http peers, discovery and DHT items through grapes.

    Args:
        grape: URL of the grape's HTTP API on this host (announces are stored with the
            grape's view of our IP, so use the local grape), or several URLs, the
            preferred first: names are then announced through every one, and lookups,
            puts and gets go on through another grape when one stops answering
            (`GrapeLinks`).
        grape_timeout: deadline of each call to a grape (announce, lookup, put, get).
        failover_after: with several grapes, seconds a grape may stay silent before the
            next one is asked too (a refused connection moves on at once).
        compress: send requests gzipped (``grc-compress: gzip``).
        max_body: bound in bytes on request and reply bodies, both directions (and on
            their decompressed size).
        lookup_ttl: seconds a non-empty lookup result is reused.
        announce_interval: seconds between re-announces once serving has settled (the
            first 10 s re-announce every second), and the longest pause between the
            retries of a failed announce.
        announce_timeout: how long `serve` keeps trying its first announce, when it
            waits for it (``wait_announced=True``, the default).
        read_timeout: server: seconds allowed to receive one whole request (from its
            first byte), and to send one reply.
        idle_timeout: server: seconds a kept-alive connection may sit idle.
        handler_timeout: server: seconds a handler may run (None: no bound); past it
            the caller gets ``ERR_TIMEOUT``.
        max_connections: server: connections served at once; past it the connection
            idle the longest is closed to make room, or, when none is idle, the new one
            (each costs a file descriptor and a task).
        host: the address servers listen on.
    """

    def __init__(
        self,
        grape: str | Sequence[str] = "http://127.0.0.1:30001",
        *,
        grape_timeout: float = 5.0,
        failover_after: float = 1.0,
        compress: bool = False,
        max_body: int = MAX_BODY_BYTES,
        lookup_ttl: float = 1.0,
        announce_interval: float = 5.0,
        announce_timeout: float = 10.0,
        read_timeout: float = 10.0,
        idle_timeout: float = 30.0,
        handler_timeout: float | None = 30.0,
        max_connections: int = 1024,
        host: str = "127.0.0.1",
    ) -> None:
        self._pool = ConnectionPool(max_response=max_body)
        urls = [grape] if isinstance(grape, str) else list(grape)
        self._link: GrapeLink | GrapeLinks
        if len(urls) == 1:  # one grape: exactly the link of old, nothing in between
            self._link = GrapeLink(
                urls[0], timeout=grape_timeout, lookup_ttl=lookup_ttl, pool=self._pool
            )
            self._grape_links: tuple[GrapeLink, ...] = (self._link,)
        else:
            self._link = GrapeLinks(
                urls,
                timeout=grape_timeout,
                failover_after=failover_after,
                lookup_ttl=lookup_ttl,
                pool=self._pool,
            )
            self._grape_links = self._link.links
        self._codec = ClientCodec(compress=compress, max_size=max_body)
        self._server_options = ServerOptions(
            max_body=max_body,
            read_timeout=read_timeout,
            idle_timeout=idle_timeout,
            handler_timeout=handler_timeout,
        )
        self._announce_interval = announce_interval
        self._announce_timeout = announce_timeout
        self._host = host
        self._max_connections = max_connections
        self._closed = False
        # Cancel scopes of running serve() calls and in-flight calls, cancelled by aclose().
        self._active: set[anyio.CancelScope] = set()

    @property
    def link(self) -> GrapeLink | GrapeLinks:
        """The Grape client this transport uses (announce, lookup, put, get): the
        `GrapeLink` of its one grape, or the `GrapeLinks` over its several grapes."""
        return self._link

    @property
    def grapes(self) -> tuple[str, ...]:
        """The URLs of the grapes this transport uses, the preferred first."""
        return tuple(link.url for link in self._grape_links)

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosed("the Grenache transport is closed")

    @contextmanager
    def _until_closed(self) -> Iterator[anyio.CancelScope]:
        """Run the block until it ends or `aclose()` cancels it (then: TransportClosed)."""
        self._check_open()
        scope = anyio.CancelScope()
        self._active.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._active.discard(scope)
        if scope.cancelled_caught:
            raise TransportClosed("the Grenache transport was closed during the call")

    # -- serving ------------------------------------------------------------------------

    async def serve(
        self,
        handlers: Mapping[str, Handler],
        *,
        port: int = 0,
        wait_announced: bool = True,
        task_status: TaskStatus[int] = TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port``, announce every name, then serve until cancelled.

        See `Transport.serve`. By default the first announce of every name must succeed
        within `announce_timeout` before `task_status.started(port)`; with
        ``wait_announced=False``, `started` comes once listening and the announces go on
        in the background. Either way, once serving, announcing never stops `serve`:
        every name is re-announced every second for 10 s after its first success, then
        every `announce_interval`; a failure is retried after a pause that doubles from
        0.25 s up to `announce_interval`. The log says when announcing starts failing
        and when it works again, never once per failure (a warning, or only info for a
        caller that opted out of waiting for it).

        With several grapes, every name is announced through every grape, each grape
        with its own retries and log lines; the first announce counts as done once each
        name is announced through at least one grape (a grape that is down when the
        service starts gets the names as soon as it answers).

        Raises:
            TransportClosed: the transport is closed.
            ConnectionFailed: cannot listen, or (waiting for the announce) no announce
                succeeded within `announce_timeout`.
        """
        self._check_open()
        handlers = dict(handlers)  # a snapshot: later changes to the mapping are ignored
        names = list(handlers)
        options = self._server_options
        with map_errors(f"listen on {self._host}:{port}"):
            listener = await listen(self._host, port)

        watchdog = Watchdog(tick=max(0.01, min(0.1, options.read_timeout / 5)))

        connections = 0
        refused = 0
        evicted = 0
        max_connections = self._max_connections

        async def handle(stream: anyio.abc.ByteStream) -> None:
            nonlocal connections, refused, evicted
            if connections >= max_connections:
                if watchdog.evict_idle():  # an idle one makes room (it closes at once)
                    if not evicted:  # once per overload, not once per connection
                        log.warning("closing idle connections: %d open already", connections)
                    evicted += 1
                else:
                    if not refused:
                        log.warning("refusing connections: %d open already", connections)
                    refused += 1
                    await stream.aclose()
                    return
            elif evicted:
                log.info("below the connection bound again (%d idle ones closed)", evicted)
                evicted = 0
            if refused:
                log.info("accepting connections again (%d refused meanwhile)", refused)
                refused = 0
            connections += 1
            try:
                await serve_connection(stream, handlers, options, watchdog)
            except Exception:  # a bug must not take the whole server down
                log.exception("peer connection failed")
            finally:
                connections -= 1

        started = False
        try:
            with self._until_closed():
                async with listener:
                    bound = listener.port
                    announced = [False] * len(self._grape_links)
                    if wait_announced:
                        announced = await self._first_announce(names, bound)
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(watchdog.run)
                        tg.start_soon(listener.serve, handle)
                        task_status.started(bound)
                        started = True
                        for link, done in zip(self._grape_links, announced, strict=True):
                            announcer = _Announcer(
                                link,
                                names,
                                bound,
                                interval=self._announce_interval,
                                loud=wait_announced,
                            )
                            tg.start_soon(partial(announcer.run, announced=done))
        except TransportClosed:
            if not started:
                raise  # closed before it was serving: tg.start() must not hang or lie
            # aclose() stops serving: a normal end

    async def _first_announce(self, names: list[str], port: int) -> list[bool]:
        """Announce every name through every grape until each name is announced
        through one; return, for each grape, whether it took every name."""
        links = self._grape_links
        done: list[set[str]] = [set() for _ in links]
        last: dict[int, Exception] = {}  # each grape's last failure
        with anyio.move_on_after(self._announce_timeout):
            async with anyio.create_task_group() as tg:

                def progress() -> None:
                    if all(any(name in d for d in done) for name in names):
                        tg.cancel_scope.cancel()  # each name is found through a grape

                for index in range(len(links)):
                    tg.start_soon(self._announce_through, index, names, port, done, last, progress)
            return [len(d) == len(names) for d in done]
        if len(links) == 1:
            reason = str(last.get(0, "no answer"))
        else:
            reason = "; ".join(f"{links[i].url}: {exc}" for i, exc in sorted(last.items()))
        raise ConnectionFailed(f"could not announce {names} via {self._link.url}: {reason}")

    async def _announce_through(
        self,
        index: int,
        names: list[str],
        port: int,
        done: list[set[str]],
        last: dict[int, Exception],
        progress: Callable[[], None],
    ) -> None:
        """Announce `names` through grape `index` until it took them all (into `done`;
        `progress` after each success)."""
        link = self._grape_links[index]
        while True:
            for name in names:
                if name in done[index]:
                    continue
                try:
                    await link.announce(name, port)
                except TransportError as exc:
                    last[index] = exc
                else:
                    done[index].add(name)
                    progress()
            if len(done[index]) == len(names):
                return
            await anyio.sleep(0.2)

    # -- calling ------------------------------------------------------------------------

    async def _lookup(self, name: str, *, fresh: bool = False) -> list[str]:
        peers = await self._link.lookup(name, fresh=fresh)
        for pause in _EMPTY_LOOKUP_RETRIES:
            if peers:
                break
            await anyio.sleep(pause)
            peers = await self._link.lookup(name, fresh=True)
        return peers

    async def _call(self, peer: str, name: str, payload: JSON) -> JSON:
        """One RPC to one peer; no deadline of its own (the caller's applies)."""
        host, port = _split_peer(peer)
        rid = new_rid()
        body = self._codec.request(rid, name, payload)
        try:
            response = await self._pool.post(host, port, b"/", self._codec.headers, body)
        except ConnectFailed:
            self._link.drop_peer(name, peer)
            raise
        try:
            reply = self._codec.reply(response.body, rid=rid)
        except CodecError as exc:
            if response.status != 200:
                text = response.body[:200].decode("utf-8", "replace")
                raise ProtocolError(f"peer {peer}: HTTP {response.status}: {text}") from exc
            raise ProtocolError(f"peer {peer}: {exc}") from exc
        if reply.error is not None:
            raise RemoteError(reply.error)
        return reply.data

    async def request(self, name: str, payload: JSON, *, timeout: float = DEFAULT_TIMEOUT) -> JSON:
        """Send `payload` to one random peer serving `name`; see `Transport.request`.

        A peer that refuses the connection, or answers ``ERR_SERVICE_UNKNOWN`` (the
        request surely was not handled: a dead peer's address, now another process's),
        is dropped from the lookup cache and another announced peer is tried, within
        the same deadline; if none serves `name`, `NoPeersError`.
        """
        _check_timeout(timeout)
        self._check_open()
        # One cancel scope serves as both the deadline and the hook aclose() cancels
        # (a scope per request is a measurable cost; two would be twice that).
        scope = anyio.CancelScope(deadline=anyio.current_time() + timeout)
        self._active.add(scope)
        try:
            with scope, map_errors(f"request {name!r}"):
                return await self._request(name, payload)
        finally:
            self._active.discard(scope)
        if self._closed:
            raise TransportClosed("the Grenache transport was closed during the call")
        raise RequestTimeout(f"request {name!r}: no reply within {timeout} s")

    async def _request(self, name: str, payload: JSON) -> JSON:
        # The cached lookup without a coroutine: it is there for nearly every request.
        peers = self._link.cached(name) or await self._lookup(name)
        if not peers:
            raise NoPeersError(f"no peer is announced for {name!r}")
        last: TransportError | None = None
        # Each peer in a random order (one uniformly random peer first, as Node's
        # `request` picks); a single peer needs no shuffle.
        for peer in peers if len(peers) == 1 else random.sample(peers, len(peers)):
            try:
                return await self._call(peer, name, payload)
            except ConnectFailed as exc:
                last = exc
            except RemoteError as exc:
                # The address is announced for `name` but what listens there now does
                # not serve it (a dead peer's port, taken over by another process): no
                # handler ran, so try the next peer, as for a refused connection.
                if not exc.message.startswith(_SERVICE_UNKNOWN):
                    raise
                self._link.drop_peer(name, peer)
                last = NoPeersError(f"peer {peer} does not serve {name!r}: {exc.message}")
        assert last is not None
        raise last

    async def request_peer(
        self, peer: str, name: str, payload: JSON, *, timeout: float = DEFAULT_TIMEOUT
    ) -> JSON:
        """Send `payload` under `name` to the one peer at `peer` (``"host:port"``),
        whatever it is announced for: for tools that check a given peer (`dex status`).

        Raises:
            RemoteError: the peer's error string (``ERR_SERVICE_UNKNOWN: <name>`` when
                it does not serve `name`: its server answered, no handler ran).
            RequestTimeout: no reply within `timeout`.
            TransportError: the peer could not be reached.
        """
        _check_timeout(timeout)
        self._check_open()
        with self._until_closed(), map_errors(f"peer {peer}"):
            with anyio.move_on_after(timeout):
                return await self._call(peer, name, payload)
        raise RequestTimeout(f"peer {peer}: no reply to {name!r} within {timeout} s")

    async def map(
        self, name: str, payload: JSON, *, timeout: float = DEFAULT_TIMEOUT
    ) -> list[PeerResult]:
        """Send `payload` to every announced peer of `name`; see `Transport.map`.

        The lookup is always fresh (a `map` is meant to reach *every* peer, including
        one announced a moment ago); it refreshes the cache `request` uses. Each peer
        gets its own rid and deadline; failures become results with `error`
        set to the peer's error string, ``ERR_TIMEOUT``, ``ERR_CONNECTION: ...`` or
        ``ERR_PROTOCOL: ...``. Results are in lookup order.

        Raises:
            TransportClosed: the transport is closed.
            TransportError: the grape could not be asked (not a peer failure).
        """
        _check_timeout(timeout)
        self._check_open()
        self._codec.request("", name, payload)  # a payload JSON cannot carry: nothing sent
        with map_errors(f"map {name!r}"), anyio.fail_after(timeout):
            peers = await self._lookup(name, fresh=True)
        results: list[PeerResult] = [PeerResult(peer, error="ERR_TIMEOUT") for peer in peers]

        async def one(index: int, peer: str) -> None:
            try:
                with map_errors(f"peer {peer}"), anyio.fail_after(timeout):
                    data = await self._call(peer, name, payload)
            except TransportError as exc:
                results[index] = PeerResult(peer, error=peer_error(exc))
            else:
                results[index] = PeerResult(peer, data=data)

        with self._until_closed():
            async with anyio.create_task_group() as tg:
                for index, peer in enumerate(peers):
                    tg.start_soon(one, index, peer)
        return results

    # -- DHT ----------------------------------------------------------------------------

    async def put(self, value: str) -> str:
        """Store an immutable item through the grape; see `Transport.put`."""
        key = ""
        with self._until_closed():
            key = await self._link.put(value)
        return key

    async def get(self, key: str) -> str | None:
        """Fetch an immutable item through the grape; see `Transport.get`.

        Raises:
            ValueError: `key` is not 40 lowercase hex characters.
            ProtocolError: the returned value does not hash to `key`.
            TransportError: the grape could not be asked.
        """
        value: str | None = None
        with self._until_closed():
            value = await self._link.get(key)
        return value

    async def aclose(self) -> None:
        """Stop this transport's `serve` calls (they return), fail its in-flight calls
        with `TransportClosed`, close every kept-alive connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for scope in list(self._active):
            scope.cancel()
        await self._link.aclose()
        await self._pool.aclose()
