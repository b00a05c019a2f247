"""The loopback adapter: real Grenache bodies, and faults that repeat with their seed."""

from __future__ import annotations

import time

import anyio
import pytest
from transport_adapters import serving

from transports import (
    JSON,
    ConnectionFailed,
    FaultPlan,
    LoopbackNetwork,
    LoopbackTransport,
    MemoryNetwork,
    PayloadTooLarge,
    ProtocolError,
    RemoteError,
    RequestTimeout,
    dht_key,
)
from transports._codec import decode_request
from transports._loopback import _Wire

pytestmark = pytest.mark.anyio


class Recorder:
    """A handler that records every payload it is called with."""

    def __init__(self) -> None:
        self.calls: list[JSON] = []

    async def __call__(self, payload: JSON) -> JSON:
        self.calls.append(payload)
        return {"echo": payload}


async def outcomes(
    network: LoopbackNetwork, count: int, timeout: float = 0.03
) -> tuple[list[str], int]:
    """Send `count` requests one after another; describe what each caller saw.

    The timeout is short for speed where every request is meant to time out; tests that
    compare outcomes pass a longer one, so a slow machine does not turn "ok" into "timeout".
    """
    seen: list[str] = []
    recorder = Recorder()
    async with (
        LoopbackTransport(network) as server,
        LoopbackTransport(network) as client,
        serving(server, {"svc": recorder}),
    ):
        for index in range(count):
            try:
                reply = await client.request("svc", index, timeout=timeout)
            except RequestTimeout:
                seen.append("timeout")
            else:
                seen.append(f"ok {reply['echo']}")
    return seen, len(recorder.calls)


async def test_same_seed_same_faults() -> None:
    def network(seed: int) -> LoopbackNetwork:
        return LoopbackNetwork(seed, drop=0.25, duplicate=0.3)

    first, second, other = network(7), network(7), network(8)
    assert await outcomes(first, 10, 0.1) == await outcomes(second, 10, 0.1)
    assert first.log == second.log
    assert "timeout" in (await outcomes(other, 10, 0.1))[0]
    assert other.log != first.log
    assert any("drop_request" in line for line in first.log)
    assert any("duplicate" in line for line in first.log)


async def test_dropped_request_times_out_and_the_handler_never_runs() -> None:
    network = LoopbackNetwork(drop_request=1.0)
    seen, calls = await outcomes(network, 2)
    assert seen == ["timeout", "timeout"]
    assert calls == 0
    assert network.log == [
        "#1 request svc -> loopback:1: drop_request",
        "#2 request svc -> loopback:1: drop_request",
    ]


async def test_dropped_reply_times_out_after_the_handler_ran() -> None:
    seen, calls = await outcomes(LoopbackNetwork(drop_reply=1.0), 2)
    assert seen == ["timeout", "timeout"]
    assert calls == 2


async def test_duplicate_runs_the_handler_twice_and_replies_once() -> None:
    seen, calls = await outcomes(LoopbackNetwork(duplicate=1.0), 3)
    assert seen == ["ok 0", "ok 1", "ok 2"]
    assert calls == 6


async def test_faults_can_change_mid_test() -> None:
    network = LoopbackNetwork(drop=1.0)
    network.with_faults(drop_request=0.0, drop_reply=0.0)
    assert await outcomes(network, 1) == (["ok 0"], 1)
    network.faults = FaultPlan(drop_reply=1.0)
    assert await outcomes(network, 1) == (["timeout"], 1)


async def test_a_down_peer_refuses_connections_and_map_reports_it() -> None:
    network = LoopbackNetwork()
    recorder = Recorder()
    async with (
        LoopbackTransport(network) as up,
        LoopbackTransport(network) as down,
        LoopbackTransport(network) as client,
        serving(up, {"svc": recorder}) as up_port,
        serving(down, {"svc": recorder}) as down_port,
    ):
        network.set_down(f"loopback:{down_port}")
        results = await client.map("svc", "hi", timeout=1)
        by_peer = {result.peer: result for result in results}
        assert by_peer[f"loopback:{up_port}"].data == {"echo": "hi"}
        error = by_peer[f"loopback:{down_port}"].error
        assert error is not None
        assert error.startswith("ERR_CONNECTION")

        network.set_down("svc")
        with pytest.raises(ConnectionFailed):
            await client.request("svc", 1, timeout=1)
        network.set_down("svc", False)
        assert await client.request("svc", 1, timeout=1) == {"echo": 1}
    assert recorder.calls == ["hi", 1]


async def arrival_order(network: LoopbackNetwork, count: int) -> list[JSON]:
    """Fire `count` requests concurrently, in order; return the order handlers saw."""
    recorder = Recorder()
    async with (
        LoopbackTransport(network) as server,
        LoopbackTransport(network) as client,
        serving(server, {"svc": recorder}),
    ):
        with anyio.fail_after(5):
            async with anyio.create_task_group() as task_group:
                for index in range(count):
                    task_group.start_soon(client.request, "svc", index)
    return recorder.calls


async def test_reorder_delivers_concurrent_requests_out_of_order_deterministically() -> None:
    in_order = list(range(8))
    assert await arrival_order(LoopbackNetwork(3), 8) == in_order
    reordered = await arrival_order(LoopbackNetwork(3, reorder=0.5), 8)
    assert reordered != in_order
    assert sorted(reordered) == in_order
    assert await arrival_order(LoopbackNetwork(3, reorder=0.5), 8) == reordered


async def test_delay_applies_to_request_and_reply() -> None:
    network = LoopbackNetwork(delay=(0.05, 0.05))
    async with (
        LoopbackTransport(network) as server,
        LoopbackTransport(network) as client,
        serving(server, {"svc": Recorder()}),
    ):
        started = time.monotonic()
        await client.request("svc", 1, timeout=2)
        assert time.monotonic() - started >= 0.09
        with pytest.raises(RequestTimeout):
            await client.request("svc", 1, timeout=0.03)


async def test_dht_faults_fail_put_and_get_or_miss() -> None:
    network = LoopbackNetwork(put_fail=1.0)
    async with LoopbackTransport(network) as node:
        with pytest.raises(RemoteError, match="All queries failed"):
            await node.put("value")
        network.with_faults(put_fail=0.0)
        assert await node.get(dht_key("value")) is None  # the failed put stored nothing
        key = await node.put("value")
        network.with_faults(get_miss=1.0)
        assert await node.get(key) is None
        network.with_faults(get_miss=0.0, get_fail=1.0)
        with pytest.raises(RemoteError):
            await node.get(key)
        network.with_faults(get_fail=0.0)
        assert await node.get(key) == "value"
    assert [line.split(" ", 1)[1] for line in network.log] == [
        "put: put_fail",
        "get: get_miss",
        "get: get_fail",
    ]


async def test_messages_are_grenache_bodies() -> None:
    network = LoopbackNetwork()
    wire = network._encode_request("submit_order", {"side": "buy"})
    assert isinstance(wire, _Wire)
    request = decode_request(wire.body)
    assert (request.rid, request.key, request.payload) == (
        wire.rid,
        "submit_order",
        {"side": "buy"},
    )
    assert network._decode_request(wire) == ("submit_order", {"side": "buy"})


async def test_gzip_bodies_round_trip() -> None:
    network = LoopbackNetwork(compress=True)
    async with (
        LoopbackTransport(network) as server,
        LoopbackTransport(network) as client,
        serving(server, {"svc": Recorder()}),
    ):
        assert await client.request("svc", "x" * 10_000, timeout=1) == {"echo": "x" * 10_000}


async def test_bodies_over_max_size_are_refused() -> None:
    network = LoopbackNetwork(max_size=200)

    async def big_reply(payload: JSON) -> JSON:
        return "y" * 500

    async with (
        LoopbackTransport(network) as server,
        LoopbackTransport(network) as client,
        serving(server, {"svc": Recorder(), "big": big_reply}),
    ):
        with pytest.raises(PayloadTooLarge):
            await client.request("svc", "x" * 500, timeout=1)
        with pytest.raises(RemoteError, match="ERR_REPLY_TOO_LARGE"):
            await client.request("big", None, timeout=1)


class WrongRidNetwork(LoopbackNetwork):
    """Answers every request with somebody else's rid."""

    def _encode_reply(self, request: object, error: str | None, data: JSON) -> object:
        assert isinstance(request, _Wire)
        return super()._encode_reply(_Wire("other-rid", request.name, request.body), error, data)


async def test_a_reply_with_another_rid_is_a_protocol_error() -> None:
    network = WrongRidNetwork()
    async with (
        LoopbackTransport(network) as server,
        LoopbackTransport(network) as client,
        serving(server, {"svc": Recorder()}),
    ):
        with pytest.raises(ProtocolError, match="rid"):
            await client.request("svc", 1, timeout=1)


def test_fault_plans_are_checked() -> None:
    with pytest.raises(ValueError, match="probability"):
        FaultPlan(drop_request=1.5)
    with pytest.raises(ValueError, match="delay"):
        FaultPlan(delay=(0.2, 0.1))
    with pytest.raises(ValueError, match="either"):
        LoopbackNetwork(faults=FaultPlan(), drop=0.1)
    plan = FaultPlan(duplicate=0.5)
    assert LoopbackNetwork(faults=plan).faults is plan
    assert LoopbackNetwork(drop=0.2, drop_reply=0.0).faults == FaultPlan(drop_request=0.2)


def test_loopback_transport_needs_a_loopback_network() -> None:
    with pytest.raises(TypeError, match="LoopbackNetwork"):
        LoopbackTransport(MemoryNetwork())  # type: ignore[arg-type]


async def test_same_seed_same_faults_under_concurrency() -> None:
    async def run(seed: int) -> tuple[list[tuple[str, str | None]], list[str]]:
        plan = FaultPlan(
            drop_request=0.3, drop_reply=0.3, duplicate=0.3, reorder=0.3, reorder_hold=0.01
        )
        network = LoopbackNetwork(seed, faults=plan)
        seen: list[tuple[str, str | None]] = []
        async with LoopbackTransport(network) as client:
            servers = [LoopbackTransport(network) for _ in range(3)]
            async with (
                servers[0],
                servers[1],
                servers[2],
                serving(servers[0], {"svc": Recorder()}),
                serving(servers[1], {"svc": Recorder()}),
                serving(servers[2], {"svc": Recorder()}),
            ):
                for round_ in range(4):
                    results = await client.map("svc", round_, timeout=0.25)
                    seen += sorted((result.peer, result.error) for result in results)
        return seen, sorted(network.log)

    first = await run(11)
    assert first == await run(11)
    assert any(error == "ERR_TIMEOUT" for _, error in first[0])
