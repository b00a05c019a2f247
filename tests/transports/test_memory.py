"""What the memory adapter adds to the contract: its registry, its knobs, its lifecycle."""

from __future__ import annotations

import math
import random

import anyio
import pytest
from anyio.abc import TaskStatus
from transport_adapters import serving

from transports import (
    JSON,
    ConnectionFailed,
    MemoryNetwork,
    MemoryTransport,
    NoPeersError,
    RemoteError,
    RequestTimeout,
    TransportClosed,
    dht_key,
)

pytestmark = pytest.mark.anyio


async def echo(payload: JSON) -> JSON:
    return payload


def node(network: MemoryNetwork) -> MemoryTransport:
    return MemoryTransport(network)


async def test_addresses_and_explicit_ports() -> None:
    network = MemoryNetwork()
    async with node(network) as first, node(network) as second:
        async with serving(first, {"a": echo}) as port_a, serving(second, {"a": echo}, port=7):
            assert port_a == 1
            assert network.peers("a") == ["memory:1", "memory:7"]
            with pytest.raises(ConnectionFailed, match="in use"):
                await second.serve({"b": echo}, port=7)
        assert network.peers("a") == []


@pytest.mark.parametrize("seed", [0, 1, 42])
async def test_peer_choice_is_deterministic_per_seed(seed: int) -> None:
    async def choices(network: MemoryNetwork) -> list[JSON]:
        async with node(network) as client, node(network) as one, node(network) as two:

            async def as_one(payload: JSON) -> JSON:
                return 1

            async def as_two(payload: JSON) -> JSON:
                return 2

            async with serving(one, {"x": as_one}), serving(two, {"x": as_two}):
                return [await client.request("x", None, timeout=5) for _ in range(30)]

    first = await choices(MemoryNetwork(seed=seed))
    assert first == await choices(MemoryNetwork(seed=seed))
    assert first == await choices(MemoryNetwork(rng=random.Random(seed)))
    assert set(first) == {1, 2}


async def test_announce_dead_makes_requests_fail_and_map_report_it() -> None:
    network = MemoryNetwork()
    dead = network.announce_dead("svc")
    async with node(network) as client:
        with pytest.raises(ConnectionFailed, match="refused"):
            await client.request("svc", 1, timeout=1)
        async with node(network) as live, serving(live, {"svc": echo}):
            results = await client.map("svc", 1, timeout=1)
    assert [result.peer for result in results] == [dead, "memory:2"]
    assert results[0].error is not None
    assert results[0].error.startswith("ERR_CONNECTION")
    assert results[1].data == 1
    network.unannounce(dead)
    assert network.peers("svc") == []


async def test_stopped_server_is_unannounced_by_default() -> None:
    network = MemoryNetwork()
    async with node(network) as server, node(network) as client:
        async with serving(server, {"svc": echo}):
            pass
        with pytest.raises(NoPeersError):
            await client.request("svc", 1, timeout=1)


async def test_keep_dead_peers_keeps_a_stopped_server_announced_like_grape() -> None:
    network = MemoryNetwork(keep_dead_peers=True)
    async with node(network) as server, node(network) as client:
        async with serving(server, {"svc": echo}):
            assert await client.request("svc", 1, timeout=1) == 1
        assert network.peers("svc") == ["memory:1"]
        with pytest.raises(ConnectionFailed):
            await client.request("svc", 1, timeout=1)
        # Serving again takes a new address; the dead one stays announced.
        async with serving(server, {"svc": echo}):
            results = await client.map("svc", 2, timeout=1)
    assert [result.ok for result in results] == [False, True]


async def test_set_down_by_name_and_by_address() -> None:
    network = MemoryNetwork()
    async with node(network) as server, node(network) as client, serving(server, {"svc": echo}):
        network.set_down("svc")
        with pytest.raises(ConnectionFailed):
            await client.request("svc", 1, timeout=1)
        network.set_down("memory:1", False)
        assert await client.request("svc", 1, timeout=1) == 1
        network.set_down("memory:1")
        assert [result.ok for result in await client.map("svc", 1, timeout=1)] == [False]
        network.set_down("svc", False)
        assert await client.request("svc", 1, timeout=1) == 1


async def test_a_callers_timeout_does_not_cancel_the_handler() -> None:
    network = MemoryNetwork()
    finished = anyio.Event()

    async def slow(payload: JSON) -> JSON:
        await anyio.sleep(0.1)
        finished.set()
        return payload

    async with node(network) as server, node(network) as client, serving(server, {"s": slow}):
        with pytest.raises(RequestTimeout):
            await client.request("s", 1, timeout=0.02)
        with anyio.fail_after(5):
            await finished.wait()


async def test_stopping_the_server_fails_in_flight_requests_at_once() -> None:
    network = MemoryNetwork()
    entered = anyio.Event()
    cancelled = False

    async def stuck(payload: JSON) -> JSON:
        nonlocal cancelled
        entered.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled = True
            raise
        raise AssertionError("unreachable")

    async def stop_when_entered(scope: anyio.CancelScope) -> None:
        await entered.wait()
        scope.cancel()

    serve_scope = anyio.CancelScope()

    async def run_server(
        server: MemoryTransport, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        with serve_scope:  # cancels serve only, not the caller below
            await server.serve({"stuck": stuck}, task_status=task_status)

    async with (
        node(network) as server,
        node(network) as client,
        anyio.create_task_group() as task_group,
    ):
        with anyio.fail_after(5):
            await task_group.start(run_server, server)
        task_group.start_soon(stop_when_entered, serve_scope)
        with pytest.raises(ConnectionFailed, match="stopped"):
            await client.request("stuck", 1, timeout=5)
    assert cancelled


async def test_aclose_stops_serve_and_fails_waiting_requests() -> None:
    network = MemoryNetwork()
    server, client = node(network), node(network)

    async def stuck(payload: JSON) -> JSON:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def close_soon() -> None:
        await anyio.sleep(0.05)
        await client.aclose()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as task_group:
            await task_group.start(server.serve, {"stuck": stuck})
            task_group.start_soon(close_soon)
            with pytest.raises(TransportClosed):
                await client.request("stuck", 1, timeout=5)
            await server.aclose()  # serve returns by itself: the task group can exit
    assert network.peers("stuck") == []


@pytest.mark.parametrize("timeout", [0, -1, math.inf, math.nan])
async def test_timeouts_must_be_positive_and_finite(timeout: float) -> None:
    async with node(MemoryNetwork()) as client:
        with pytest.raises(ValueError, match="timeout"):
            await client.request("x", 1, timeout=timeout)
        with pytest.raises(ValueError, match="timeout"):
            await client.map("x", 1, timeout=timeout)


async def test_service_names_are_non_empty_str() -> None:
    async with node(MemoryNetwork()) as client:
        with pytest.raises(ValueError, match="non-empty"):
            await client.request("", 1, timeout=1)
        with pytest.raises(TypeError):
            await client.request(7, 1, timeout=1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="non-empty"):
            await client.serve({"": echo})


async def test_reply_errors_have_stable_codes() -> None:
    network = MemoryNetwork()

    async def not_json(payload: JSON) -> JSON:
        return {"x": object()}

    async def empty_error(payload: JSON) -> JSON:
        raise RemoteError("")

    async with (
        node(network) as server,
        node(network) as client,
        serving(server, {"not_json": not_json, "empty": empty_error}),
    ):
        with pytest.raises(RemoteError, match=r"^ERR_REPLY_ENCODE: not a JSON value"):
            await client.request("not_json", 1, timeout=1)
        with pytest.raises(RemoteError, match=r"^ERR_UNKNOWN$"):
            await client.request("empty", 1, timeout=1)


async def test_a_remote_error_from_a_nested_call_passes_through() -> None:
    network = MemoryNetwork()

    async def inner(payload: JSON) -> JSON:
        raise RemoteError("ERR_SEQ_GAP: expected 2")

    async with node(network) as server, node(network) as client:

        async def outer(payload: JSON) -> JSON:
            return await server.request("inner", payload, timeout=1)

        async with serving(server, {"inner": inner, "outer": outer}):
            with pytest.raises(RemoteError, match=r"^ERR_SEQ_GAP: expected 2$"):
                await client.request("outer", 1, timeout=1)


async def test_dht_is_shared_and_bounded_like_a_grape() -> None:
    network = MemoryNetwork(max_values=2)
    async with node(network) as writer, node(network) as reader:
        first, second = await writer.put("first"), await writer.put("second")
        assert await reader.get(first) == "first"  # now "second" is least recently used
        third = await writer.put("third")
        assert network.dht_size() == 2
        assert await reader.get(second) is None
        assert await reader.get(first) == "first"
        assert await reader.get(third) == "third"
        assert third == dht_key("third")
    with pytest.raises(ValueError, match="max_values"):
        MemoryNetwork(max_values=0)


async def test_map_on_a_transport_closed_meanwhile_raises() -> None:
    network = MemoryNetwork()
    server, client = node(network), node(network)

    async def close_client(payload: JSON) -> JSON:
        await client.aclose()
        return payload

    async with server, serving(server, {"close": close_client}):
        with pytest.raises(TransportClosed):
            await client.map("close", 1, timeout=1)
