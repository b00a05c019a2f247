"""The adapters the transport contract suite runs against, one block each.

Each adapter is an async context manager that sets up one network (for Grenache: real
grapes) and yields a `Harness`: a way to make transports attached to that network, and
a way to announce a dead peer. `conftest.py` parametrizes the `harness` fixture over
`ADAPTERS`, so adding an adapter to the suite is adding one block here (see
docs/transports.md, "How to add an adapter").

Named `transport_adapters`, not `adapters`: test directories have no `__init__.py`, so
pytest imports this as a top-level module and a generic name could collide.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import pytest
from support.examples import load_example

from transports import (
    Handler,
    LoopbackNetwork,
    LoopbackTransport,
    MemoryNetwork,
    MemoryTransport,
    Transport,
)

__all__ = ["ADAPTERS", "Adapter", "Harness", "serving", "unique_name"]


@dataclass
class Harness:
    """One network under test.

    Attributes:
        kind: the adapter's name, e.g. "memory".
        new_transport: makes a transport attached to the network (not yet tracked).
        announce_dead: announces a peer for a name that refuses every connection, as a
            grape keeps a dead service announced.
        transports: every transport made by `make_transport`, closed at teardown.
    """

    kind: str
    new_transport: Callable[[], Awaitable[Transport]]
    announce_dead: Callable[[str], Awaitable[None]]
    transports: list[Transport] = field(default_factory=list)

    async def make_transport(self) -> Transport:
        """Make a transport on this network; the fixture closes it at teardown."""
        transport = await self.new_transport()
        self.transports.append(transport)
        return transport

    async def aclose(self) -> None:
        """Close every transport made here (each one once, errors propagate)."""
        with anyio.fail_after(10):
            for transport in self.transports:
                await transport.aclose()


@dataclass(frozen=True)
class Adapter:
    """How to open a `Harness`, and the pytest marks its tests carry."""

    open: Callable[[], AbstractAsyncContextManager[Harness]]
    marks: tuple[Any, ...] = ()


def unique_name(prefix: str) -> str:
    """A service name no other test uses (real grapes remember names for ever)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def serving(
    transport: Transport, handlers: Mapping[str, Handler], *, port: int = 0
) -> AsyncIterator[int]:
    """Run `transport.serve(handlers)` in a task group for the block; yield its port."""
    async with anyio.create_task_group() as task_group:
        with anyio.fail_after(10):
            bound: int = await task_group.start(partial(transport.serve, handlers, port=port))
        yield bound
        task_group.cancel_scope.cancel()


# -- memory ------------------------------------------------------------------------------


@asynccontextmanager
async def memory_harness() -> AsyncIterator[Harness]:
    network = MemoryNetwork(seed=0)

    async def new_transport() -> Transport:
        return MemoryTransport(network)

    async def announce_dead(name: str) -> None:
        network.announce_dead(name)

    yield Harness("memory", new_transport, announce_dead)


# -- loopback ----------------------------------------------------------------------------


@asynccontextmanager
async def loopback_harness() -> AsyncIterator[Harness]:
    # No faults: the contract holds on a healthy network; faults have their own tests.
    # A little delay makes the contract cases meet real scheduling, not instant replies.
    network = LoopbackNetwork(seed=0, delay=(0.0, 0.002))

    async def new_transport() -> Transport:
        return LoopbackTransport(network)

    async def announce_dead(name: str) -> None:
        network.announce_dead(name)

    yield Harness("loopback", new_transport, announce_dead)


# -- metered: examples/custom_transport.py, an application's own adapter ------------------


@asynccontextmanager
async def metered_harness() -> AsyncIterator[Harness]:
    # The example wraps any transport; around memory ones, the contract must still hold
    # through the wrapper (it may add behaviour, never change a result or an exception).
    metered: Callable[[Transport], Transport] = load_example("custom_transport").MeteredTransport
    network = MemoryNetwork(seed=0)

    async def new_transport() -> Transport:
        return metered(MemoryTransport(network))

    async def announce_dead(name: str) -> None:
        network.announce_dead(name)

    yield Harness("metered", new_transport, announce_dead)


ADAPTERS: dict[str, Adapter] = {
    "memory": Adapter(memory_harness),
    "loopback": Adapter(loopback_harness),
    "metered": Adapter(metered_harness),
}
"""Adapter name -> how to open it. Add a block above and an entry here to add one,
e.g. ``"grenache": Adapter(grenache_harness, marks=(pytest.mark.integration,))``."""

# -- grenache: real grapes; the harness lives in adapters_grenache.py (its owner's file) --

from adapters_grenache import grenache_harness  # noqa: E402

ADAPTERS["grenache"] = Adapter(grenache_harness, marks=(pytest.mark.integration,))
