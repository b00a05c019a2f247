"""Fixtures of the transport tests: the contract suite runs once per adapter.

`harness` is parametrized over `transport_adapters.ADAPTERS` (like anyio's
`anyio_backend`): a test that takes it runs against memory, loopback, and whatever
adapter is registered there. `make_transport` is the short form most tests want.
The `anyio_backend` fixture comes from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from transport_adapters import ADAPTERS, Harness

from transports import Transport


@pytest.fixture(
    params=[pytest.param(name, marks=adapter.marks, id=name) for name, adapter in ADAPTERS.items()]
)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """One fresh network of each adapter; its transports are closed at teardown."""
    adapter = ADAPTERS[request.param]
    async with adapter.open() as opened:
        try:
            yield opened
        finally:
            await opened.aclose()


@pytest.fixture
def make_transport(harness: Harness) -> Callable[[], Awaitable[Transport]]:
    """``await make_transport()`` makes another transport on the same network."""
    return harness.make_transport
