"""Where a client's replica gets versions: the DHT, through the verifying reader."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchange.protocol import FetchFailed, InvalidVersion
from exchange.versions import RootDoc, Version, VersionReader
from orderbook_core import Event, MarketSpec
from transports import Transport, TransportError

__all__ = ["DhtVersionSource"]

_T = TypeVar("_T")


class DhtVersionSource:
    """Reads versions from the DHT through `VersionReader`, which verifies every hash.

    Every failure (missing item, content that does not hash to its key, bad format,
    another market, network error, timeout) becomes `FetchFailed`: the replica then
    keeps what it has.

    Args:
        transport: where to get DHT items.
        spec: the market the versions must be of.
        timeout: seconds one fetch may take (a cold fetch of a big book is many gets).
        matcher_key: the key every root must be signed by, or a callable that returns
            it (None while unknown: roots are refused); see `VersionReader`.
    """

    def __init__(
        self,
        transport: Transport,
        spec: MarketSpec,
        *,
        timeout: float = 10.0,
        matcher_key: Ed25519PublicKey | Callable[[], Ed25519PublicKey | None] | None = None,
    ) -> None:
        self.reader = VersionReader(transport, spec, matcher_key=matcher_key)
        self._timeout = timeout

    async def fetch_root(self, root_hash: str) -> RootDoc:
        return await self._guard(self.reader.fetch_root(root_hash))

    async def fetch(self, root_hash: str) -> Version:
        return await self._guard(self.reader.fetch(root_hash))

    async def advance(self, current: Version, root_hash: str) -> tuple[Version, tuple[Event, ...]]:
        return await self._guard(self.reader.advance(current, root_hash))

    async def fetch_events(self, root_hash: str) -> tuple[RootDoc, tuple[Event, ...]]:
        return await self._guard(self.reader.fetch_events(root_hash))

    async def _guard(self, call: Awaitable[_T]) -> _T:
        try:
            with anyio.fail_after(self._timeout):
                return await call
        except TimeoutError:
            raise FetchFailed(f"no answer from the DHT within {self._timeout} s") from None
        except (InvalidVersion, TransportError) as exc:
            raise FetchFailed(str(exc) or type(exc).__name__) from exc
