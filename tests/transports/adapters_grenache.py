"""The Grenache block of the contract suite: real grapes, real HTTP, Python peers.

Registered in `transport_adapters.ADAPTERS` as ``"grenache"`` (marked `integration`).
Transports alternate between the two shared grapes, so every contract case also crosses
the DHT. A dead peer is a free loopback port announced through a grape: connecting to
it is refused, as with a crashed service that stays announced.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from support.grapes import shared_grapes
from support.ports import free_port

from transports import Transport
from transports.grenache import GrapeLink, GrenacheTransport

if TYPE_CHECKING:
    from transport_adapters import Harness

__all__ = ["grenache_harness"]


@asynccontextmanager
async def grenache_harness() -> AsyncIterator[Harness]:
    """A `Harness` whose transports are `GrenacheTransport`s on two real grapes."""
    from transport_adapters import Harness  # imported late: that module imports this one

    grapes = shared_grapes()
    made = 0

    async def new_transport() -> Transport:
        nonlocal made
        grape = grapes[made % len(grapes)]
        made += 1
        return GrenacheTransport(grape.url, announce_timeout=5.0)

    async def announce_dead(name: str) -> None:
        link = GrapeLink(grapes[0].url)
        try:
            await link.announce(name, free_port())
        finally:
            await link.aclose()

    yield Harness("grenache", new_transport, announce_dead)
