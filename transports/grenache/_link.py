"""The Grape link: a client of one grape's HTTP API (announce, lookup, put, get).

Grape answers every call with HTTP 200 and ``JSON.stringify(result)``, errors included:
an error is a JSON *string*. So each call decides success by the type it expects
(announce → number, lookup → array, put → 40-hex string, get → object) and turns any
other JSON string into `RemoteError(message)`. Other quirks handled here:

- ``get`` of a missing item is HTTP 200 with an *empty* body → ``None``.
- A grape announces a name to the DHT nodes it found for that name (and their write
  tokens) the last time it looked, for up to 5 minutes. When those nodes are gone or
  were restarted (new node id, new tokens), the announce fails with ``"All queries
  failed"``, or ``"No nodes to query"`` when it found none (e.g. the name was first
  announced while the grape had no peers). A lookup of the name makes it look again:
  so on either answer we look the name up, then announce again, once.
- The same stale nodes make a put answer ``"No nodes to query"`` / ``"All queries
  failed"`` after the grape stored the item: such a put is checked with a get.
- Lookups are cached for `lookup_ttl` seconds (default 1 s), an empty result never is,
  and `drop_peer` removes a peer that refused a connection from the cached entry.
- Concurrent lookups of one name share one call to the grape, as grenache-nodejs-link
  does (its ``cbq``): when the cached entry expires under load, the many requests in
  flight would otherwise each ask the grape (a grape lookup is also a DHT query). A
  caller that joined asks again itself when that lookup fails; ``fresh=True`` never
  joins (it must see the grape now).
- Connections are kept alive (`ConnectionPool`); every call has a deadline.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

import anyio

from transports._base import JSON
from transports._dht import check_key, check_value, dht_key
from transports._exceptions import ProtocolError, RemoteError
from transports.grenache._errors import map_errors
from transports.grenache._http import ConnectionPool
from transports.grenache._rid import new_rid

__all__ = ["GrapeLink"]

_JSON_HEADERS = ((b"content-type", b"application/json"),)
_STALE_NODES = ("No nodes to query", "All queries failed")
"""Announce errors a lookup of the name repairs (see the module docstring)."""


def parse_grape_url(url: str) -> tuple[str, int]:
    """Split ``http://host:port`` into ``(host, port)``.

    Raises:
        ValueError: not an ``http://host:port`` URL.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise ValueError(f"grape URL must look like http://127.0.0.1:30001, not {url!r}")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"grape URL must have no path or query: {url!r}")
    return parts.hostname, parts.port


class _Flight:
    """A lookup of one name on its way to the grape, that concurrent callers wait for."""

    __slots__ = ("done", "peers")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.peers: list[str] | None = None  # the grape's answer; None if none came


class GrapeLink:
    """Client of one grape's HTTP API.

    Args:
        grape: the grape's API URL, e.g. ``"http://127.0.0.1:30001"``.
        timeout: seconds allowed for each call to the grape.
        lookup_ttl: seconds a non-empty lookup result is reused.
        pool: connection pool to use (the link does not close a pool it was given).
    """

    def __init__(
        self,
        grape: str,
        *,
        timeout: float = 5.0,
        lookup_ttl: float = 1.0,
        pool: ConnectionPool | None = None,
    ) -> None:
        self.url = grape
        self._host, self._port = parse_grape_url(grape)
        self._timeout = timeout
        self._lookup_ttl = lookup_ttl
        self._own_pool = pool is None
        self._pool = pool if pool is not None else ConnectionPool()
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._flights: dict[str, _Flight] = {}

    async def _call(self, path: str, data: JSON) -> tuple[bool, Any]:
        """POST ``{"rid", "data"}`` to `path`; return ``(empty_body, parsed_json)``.

        Raises:
            RequestTimeout, ConnectionFailed, ProtocolError: see `map_errors`.
            RemoteError: HTTP status other than 200 (e.g. 500 ERR_GRAPE_PAYLOAD_INVALID).
        """
        body = json.dumps({"rid": new_rid(), "data": data}, separators=(",", ":"))
        where = f"grape {self.url}{path}"
        with map_errors(where), anyio.fail_after(self._timeout):
            response = await self._pool.post(
                self._host, self._port, path.encode(), _JSON_HEADERS, body.encode()
            )
        text = response.body.decode("utf-8", "replace")
        if response.status != 200:
            raise RemoteError(f"{where}: HTTP {response.status}: {text[:200]}")
        if not response.body:
            return True, None
        try:
            return False, json.loads(text)
        except ValueError as exc:
            raise ProtocolError(f"{where}: reply is not JSON: {text[:200]!r}") from exc

    @staticmethod
    def _unexpected(call: str, value: Any) -> Exception:
        if isinstance(value, str):
            return RemoteError(value)
        return ProtocolError(f"grape {call}: unexpected reply {json.dumps(value)[:200]}")

    async def announce(self, name: str, port: int) -> int:
        """Announce `name` served on `port` of this host; return the DHT nodes storing it.

        Repairs a stale set of DHT nodes for the name (``No nodes to query``, ``All
        queries failed``): looks the name up, then announces again, once.

        Raises:
            RemoteError: the grape refused it (its error string).
            RequestTimeout, ConnectionFailed, ProtocolError: the grape could not be asked.
        """
        if not 0 < port < 65536:
            raise ValueError(f"port out of range: {port}")
        for attempt in range(2):
            _, result = await self._call("/announce", [name, port])
            if isinstance(result, int) and not isinstance(result, bool):
                if result >= 1:
                    return result
                raise RemoteError(f"announce of {name!r} stored on no DHT node")
            if result in _STALE_NODES and attempt == 0:
                await self.lookup(name, fresh=True)
                continue
            raise self._unexpected("announce", result)
        raise AssertionError("unreachable")

    async def lookup(self, name: str, *, fresh: bool = False) -> list[str]:
        """Return the announced peers of `name` as ``"host:port"`` strings (maybe []).

        Args:
            fresh: bypass the cache (and any lookup of the name already on its way).

        Raises:
            RemoteError: the grape answered with an error string.
            RequestTimeout, ConnectionFailed, ProtocolError: the grape could not be asked.
        """
        if fresh:
            return await self._lookup(name)
        cached = self._cache.get(name)
        if cached is not None and time.monotonic() < cached[0] and cached[1]:
            return list(cached[1])
        flight = self._flights.get(name)
        if flight is not None:  # another caller is asking the grape: share its answer
            await flight.done.wait()
            if flight.peers is not None:
                return list(flight.peers)
            return await self._lookup(name)  # it failed or was cancelled: ask ourselves
        flight = self._flights[name] = _Flight()
        try:
            flight.peers = await self._lookup(name)
        finally:
            if self._flights.get(name) is flight:
                del self._flights[name]
            flight.done.set()
        return list(flight.peers)

    async def _lookup(self, name: str) -> list[str]:
        """Ask the grape; cache a non-empty answer, forget the entry on an empty one."""
        _, result = await self._call("/lookup", name)
        if not isinstance(result, list) or not all(isinstance(p, str) for p in result):
            raise self._unexpected("lookup", result)
        if result:
            self._cache[name] = (time.monotonic() + self._lookup_ttl, list(result))
        else:
            self._cache.pop(name, None)
        return result

    def cached(self, name: str) -> list[str] | None:
        """The cached, unexpired, non-empty lookup of `name`, or None (nothing is sent)."""
        cached = self._cache.get(name)
        if cached is not None and time.monotonic() < cached[0] and cached[1]:
            return list(cached[1])
        return None

    def drop_peer(self, name: str, peer: str) -> None:
        """Forget `peer` in the cached lookup of `name` (it refused a connection)."""
        cached = self._cache.get(name)
        if cached is None:
            return
        peers = [p for p in cached[1] if p != peer]
        if peers:
            self._cache[name] = (cached[0], peers)
        else:
            del self._cache[name]

    async def put(self, value: str) -> str:
        """Store the immutable item `value`; return its key (checked against `dht_key`).

        A grape that answers ``No nodes to query`` or ``All queries failed`` may still
        have stored the item (it stores before it asks its DHT nodes): then the item is
        read back through the same grape, and the put counts as done if it is there.

        Raises:
            PayloadTooLarge: `value` is 1000 UTF-8 bytes or more (nothing is sent).
            RemoteError: the grape refused it (its error string).
            ProtocolError: the grape returned another key than sha1(bencode(value)).
            RequestTimeout, ConnectionFailed: the grape could not be asked.
        """
        check_value(value)
        _, result = await self._call("/put", {"v": value})
        expected = dht_key(value)
        if result in _STALE_NODES:
            # The grape stores the item itself before it asks its DHT nodes, so this
            # answer (for minutes after a DHT peer died or restarted) may hide a stored
            # item: readable through this grape and, once they are up, its peers. It is
            # stored if the grape gives it back; otherwise the grape's answer stands.
            if await self.get(expected) == value:
                return expected
            raise RemoteError(result)
        if not isinstance(result, str) or len(result) != 40:
            raise self._unexpected("put", result)
        if result.lower() != expected:
            raise ProtocolError(f"grape put returned key {result}, expected {expected}")
        return expected

    async def get(self, key: str) -> str | None:
        """Fetch the immutable item `key`; None when not found.

        Raises:
            ValueError: `key` is not 40 lowercase hex characters.
            ProtocolError: the value does not hash to `key` (or the reply is malformed).
            RemoteError: the grape answered with an error string.
            RequestTimeout, ConnectionFailed: the grape could not be asked.
        """
        check_key(key)
        empty, result = await self._call("/get", key)
        if empty or result is None:
            return None
        if not isinstance(result, dict):
            raise self._unexpected("get", result)
        value = result.get("v")
        if not isinstance(value, str):
            raise ProtocolError(f"grape get {key}: reply has no string 'v'")
        if dht_key(value) != key:
            raise ProtocolError(f"grape get {key}: value hashes to {dht_key(value)}")
        return value

    async def aclose(self) -> None:
        """Close the link's connections (unless the pool was given by the caller)."""
        self._cache.clear()
        if self._own_pool:
            await self._pool.aclose()
