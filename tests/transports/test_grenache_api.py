"""The public surface of `transports.grenache` and how the factory builds it."""

from __future__ import annotations

import importlib
import inspect

import pytest

import transports.grenache
from transports import Transport, open_transport
from transports.grenache import GrapeLink, GrenacheTransport


def test_all_names_exist_and_every_public_name_is_listed() -> None:
    module = transports.grenache
    for name in module.__all__:
        assert hasattr(module, name), name
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public - {"annotations"} == set(module.__all__)


@pytest.mark.anyio
async def test_open_transport_builds_a_grenache_transport() -> None:
    transport = open_transport("grenache", grape="http://127.0.0.1:30001", lookup_ttl=2.0)
    async with transport:
        assert isinstance(transport, GrenacheTransport)
        assert isinstance(transport, Transport)
        assert isinstance(transport.link, GrapeLink)
        assert transport.link.url == "http://127.0.0.1:30001"


def test_bad_options_fail_early() -> None:
    with pytest.raises(TypeError):
        open_transport("grenache", grape="http://127.0.0.1:30001", no_such_option=1)
    with pytest.raises(ValueError, match="grape URL"):
        GrenacheTransport("127.0.0.1:30001")


def test_the_adapter_is_imported_lazily() -> None:
    # `import transports` must not need httptools: the package's __init__ never imports us.
    source = inspect.getsource(importlib.import_module("transports"))
    assert "grenache import" not in source


@pytest.mark.anyio
@pytest.mark.integration
async def test_request_peer_asks_one_given_peer() -> None:
    """What `dex status` relies on: a name the peer does not serve is answered by its
    server (``ERR_SERVICE_UNKNOWN``, no handler run); a free port refuses."""
    import anyio
    from support.grapes import shared_grapes
    from support.ports import free_port

    from transports import RemoteError, TransportError

    calls: list[object] = []

    async def echo(payload: object) -> object:
        calls.append(payload)
        return payload

    grape = shared_grapes()[0].url
    async with (
        GrenacheTransport(grape, announce_timeout=5.0) as server,
        GrenacheTransport(grape) as client,
        anyio.create_task_group() as tg,
    ):
        port = await tg.start(server.serve, {"test_request_peer_echo": echo})
        peer = f"127.0.0.1:{port}"
        assert await client.request_peer(peer, "test_request_peer_echo", [1]) == [1]
        with pytest.raises(RemoteError, match=r"^ERR_SERVICE_UNKNOWN: dex_status_probe"):
            await client.request_peer(peer, "dex_status_probe", None)
        assert calls == [[1]]
        with pytest.raises(TransportError):
            await client.request_peer(f"127.0.0.1:{free_port()}", "x", None, timeout=2)
        tg.cancel_scope.cancel()
