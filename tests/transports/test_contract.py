"""The promises of `transports.Transport`, checked against every adapter.

Each test takes the `harness` (or `make_transport`) fixture, so it runs once per entry
of `transport_adapters.ADAPTERS`. Tests here use only the public interface; anything
adapter-specific belongs in that adapter's own test module. Service names are unique
per test because real grapes remember every announce.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from functools import partial

import anyio
import pytest
from transport_adapters import Harness, serving, unique_name

from transports import (
    JSON,
    NoPeersError,
    PayloadTooLarge,
    ProtocolError,
    RemoteError,
    RequestTimeout,
    Transport,
    TransportClosed,
    TransportError,
    check_key,
    check_value,
    dht_key,
    is_dht_key,
)

pytestmark = pytest.mark.anyio

MakeTransport = Callable[[], Awaitable[Transport]]

PAYLOADS: list[JSON] = [
    None,
    True,
    False,
    0,
    -17,
    2**53,
    10**30,
    1.5,
    -0.25,
    "",
    "plain",
    'ünïcødé ✓ 𝄞 \n\t"quoted" \\ \u0000',
    [],
    [1, "two", None, [3.5, {"four": False}]],
    {},
    {"side": "buy", "price": "100.5", "nested": {"a": [1, 2, {"b": None}]}, "": 0},
]


async def echo(payload: JSON) -> JSON:
    return payload


async def never(payload: JSON) -> JSON:
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


# -- request --------------------------------------------------------------------------


async def test_round_trip_of_every_json_type(make_transport: MakeTransport) -> None:
    server, client = await make_transport(), await make_transport()
    name = unique_name("echo")
    async with serving(server, {name: echo}):
        for payload in PAYLOADS:
            assert await client.request(name, payload, timeout=5) == payload


async def test_handler_sees_a_copy_and_caller_gets_a_copy(make_transport: MakeTransport) -> None:
    server, client = await make_transport(), await make_transport()
    name = unique_name("mutate")
    kept: list[JSON] = []

    async def mutate(payload: JSON) -> JSON:
        kept.append(payload)
        payload["seen"] = True
        return payload

    sent: dict[str, JSON] = {"items": [1]}
    async with serving(server, {name: mutate}):
        reply = await client.request(name, sent, timeout=5)
        reply["items"].append(2)
    assert sent == {"items": [1]}
    assert kept == [{"items": [1], "seen": True}]


async def test_one_transport_can_call_itself(make_transport: MakeTransport) -> None:
    node = await make_transport()
    name = unique_name("self")
    async with serving(node, {name: echo}):
        assert await node.request(name, "me", timeout=5) == "me"


async def test_request_to_unknown_name_raises_no_peers(make_transport: MakeTransport) -> None:
    client = await make_transport()
    with anyio.fail_after(10), pytest.raises(NoPeersError):
        await client.request(unique_name("nobody"), 1, timeout=1)


@pytest.mark.parametrize(
    "message", ["ERR_SEQ_GAP: expected 4, got 6", "ERR_VALIDATION: price: ≤ 0 is not allowed"]
)
async def test_remote_error_message_is_exact(make_transport: MakeTransport, message: str) -> None:
    server, client = await make_transport(), await make_transport()
    name = unique_name("refuse")

    async def refuse(payload: JSON) -> JSON:
        raise RemoteError(message)

    async with serving(server, {name: refuse}):
        with pytest.raises(RemoteError) as caught:
            await client.request(name, {}, timeout=5)
    assert caught.value.message == message
    assert str(caught.value) == message


async def test_handler_crash_is_an_internal_error_never_a_success(
    make_transport: MakeTransport,
) -> None:
    server, client = await make_transport(), await make_transport()
    name = unique_name("crash")

    async def crash(payload: JSON) -> JSON:
        return {"ratio": 1 / payload}

    async with serving(server, {name: crash}):
        assert await client.request(name, 4, timeout=5) == {"ratio": 0.25}
        with pytest.raises(RemoteError) as caught:
            await client.request(name, 0, timeout=5)
    assert caught.value.message.startswith("ERR_INTERNAL")
    assert "ZeroDivisionError" in caught.value.message


async def test_reply_that_is_not_json_is_an_error(make_transport: MakeTransport) -> None:
    server, client = await make_transport(), await make_transport()
    name = unique_name("bad-reply")

    async def bad_reply(payload: JSON) -> JSON:
        return {"set": {1, 2}}

    async with serving(server, {name: bad_reply}):
        with pytest.raises(RemoteError):
            await client.request(name, None, timeout=5)


async def test_payload_that_is_not_json_is_refused(make_transport: MakeTransport) -> None:
    server, client = await make_transport(), await make_transport()
    name = unique_name("echo")
    async with serving(server, {name: echo}):
        for payload in [{1, 2}, object(), math.nan, {"x": math.inf}]:
            with pytest.raises(ProtocolError):
                await client.request(name, payload, timeout=5)


async def test_timeout_is_raised_within_its_bound(make_transport: MakeTransport) -> None:
    server, client = await make_transport(), await make_transport()
    name = unique_name("never")
    async with serving(server, {name: never}):
        started = time.monotonic()
        with pytest.raises(RequestTimeout):
            await client.request(name, None, timeout=0.2)
        elapsed = time.monotonic() - started
    assert 0.15 <= elapsed < 2.0


async def test_concurrent_requests_are_served_concurrently(make_transport: MakeTransport) -> None:
    server, client = await make_transport(), await make_transport()
    name = unique_name("gate")
    count = 12
    arrived = 0
    all_in = anyio.Event()

    async def gate(payload: JSON) -> JSON:
        # Every handler waits until all requests are in flight: only concurrent serving
        # lets any of them finish.
        nonlocal arrived
        arrived += 1
        if arrived == count:
            all_in.set()
        await all_in.wait()
        return payload * 2

    replies: dict[int, JSON] = {}

    async def call(index: int) -> None:
        replies[index] = await client.request(name, index, timeout=5)

    async with serving(server, {name: gate}):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as task_group:
                for index in range(count):
                    task_group.start_soon(call, index)
    assert replies == {index: index * 2 for index in range(count)}


async def test_request_spreads_over_peers(make_transport: MakeTransport) -> None:
    client = await make_transport()
    first, second = await make_transport(), await make_transport()
    name = unique_name("who")

    async def as_first(payload: JSON) -> JSON:
        return "first"

    async def as_second(payload: JSON) -> JSON:
        return "second"

    async with serving(first, {name: as_first}), serving(second, {name: as_second}):
        seen = {await client.request(name, None, timeout=5) for _ in range(40)}
    assert seen == {"first", "second"}


# -- serve ----------------------------------------------------------------------------


async def test_serve_reports_its_port_and_stops_on_cancel(make_transport: MakeTransport) -> None:
    server, client = await make_transport(), await make_transport()
    name = unique_name("stop")
    async with anyio.create_task_group() as task_group:
        with anyio.fail_after(10):
            port = await task_group.start(server.serve, {name: echo})
        assert isinstance(port, int)
        assert 0 < port < 65536
        assert await client.request(name, "up", timeout=5) == "up"
        task_group.cancel_scope.cancel()
    # Memory forgets the name; a real grape keeps it announced and the port refuses.
    with pytest.raises((NoPeersError, TransportError)) as caught:
        await client.request(name, "down", timeout=1)
    assert not isinstance(caught.value, RemoteError)


async def test_serve_not_waiting_for_the_announce_is_found_all_the_same(
    make_transport: MakeTransport,
) -> None:
    server, client = await make_transport(), await make_transport()
    name = unique_name("background")
    async with anyio.create_task_group() as task_group:
        with anyio.fail_after(10):
            port = await task_group.start(partial(server.serve, {name: echo}, wait_announced=False))
        assert 0 < port < 65536
        # Readiness came before the announce; the announce follows at once.
        with anyio.fail_after(10):
            while True:
                try:
                    assert await client.request(name, "up", timeout=5) == "up"
                    break
                except NoPeersError:
                    await anyio.sleep(0.1)
        task_group.cancel_scope.cancel()


async def test_one_serve_serves_several_names(make_transport: MakeTransport) -> None:
    server, client = await make_transport(), await make_transport()
    upper, lower = unique_name("upper"), unique_name("lower")

    async def to_upper(payload: JSON) -> JSON:
        return str(payload).upper()

    async def to_lower(payload: JSON) -> JSON:
        return str(payload).lower()

    async with serving(server, {upper: to_upper, lower: to_lower}):
        assert await client.request(upper, "Ab", timeout=5) == "AB"
        assert await client.request(lower, "Ab", timeout=5) == "ab"


# -- map ------------------------------------------------------------------------------


async def test_map_to_n_peers_returns_n_results(make_transport: MakeTransport) -> None:
    client = await make_transport()
    servers = [await make_transport() for _ in range(3)]
    name = unique_name("tag")

    def tagger(tag: int) -> Callable[[JSON], Awaitable[JSON]]:
        async def handler(payload: JSON) -> JSON:
            return {"tag": tag, "payload": payload}

        return handler

    async with (
        serving(servers[0], {name: tagger(0)}),
        serving(servers[1], {name: tagger(1)}),
        serving(servers[2], {name: tagger(2)}),
    ):
        results = await client.map(name, {"n": 1}, timeout=5)
    assert len(results) == 3
    assert all(result.ok for result in results)
    assert sorted(result.data["tag"] for result in results) == [0, 1, 2]
    assert all(result.data["payload"] == {"n": 1} for result in results)
    assert len({result.peer for result in results}) == 3


async def test_map_with_a_dead_peer_returns_live_replies_and_an_error(harness: Harness) -> None:
    client, live = await harness.make_transport(), await harness.make_transport()
    name = unique_name("half")
    await harness.announce_dead(name)
    async with serving(live, {name: echo}):
        started = time.monotonic()
        results = await client.map(name, "ping", timeout=1)
        elapsed = time.monotonic() - started
    assert len(results) == 2
    good = [result for result in results if result.ok]
    bad = [result for result in results if not result.ok]
    assert [result.data for result in good] == ["ping"]
    assert len(bad) == 1
    assert isinstance(bad[0].error, str)
    assert bad[0].error
    assert bad[0].data is None
    assert elapsed < 3


async def test_map_reports_each_peers_own_error(make_transport: MakeTransport) -> None:
    client, good, bad = await make_transport(), await make_transport(), await make_transport()
    name = unique_name("mixed")

    async def refuse(payload: JSON) -> JSON:
        raise RemoteError("ERR_NOPE: not today")

    async with serving(good, {name: echo}), serving(bad, {name: refuse}):
        results = await client.map(name, 7, timeout=5)
    assert sorted((result.data, result.error) for result in results if result.ok) == [(7, None)]
    assert [result.error for result in results if not result.ok] == ["ERR_NOPE: not today"]


async def test_map_with_a_slow_peer_times_out_that_peer_only(make_transport: MakeTransport) -> None:
    client, quick, slow = await make_transport(), await make_transport(), await make_transport()
    name = unique_name("slow")
    async with serving(quick, {name: echo}), serving(slow, {name: never}):
        started = time.monotonic()
        results = await client.map(name, 1, timeout=0.3)
        elapsed = time.monotonic() - started
    assert sorted(result.ok for result in results) == [False, True]
    assert elapsed < 2


async def test_map_with_no_peers_returns_empty(make_transport: MakeTransport) -> None:
    client = await make_transport()
    with anyio.fail_after(10):
        assert await client.map(unique_name("nobody"), 1, timeout=1) == []


# -- DHT ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["hello world", "", '{"format": "dex-book/1"}', "é" * 499, "x" * 999, "𝄞" * 249]
)
async def test_put_then_get_round_trips(harness: Harness, value: str) -> None:
    writer, reader = await harness.make_transport(), await harness.make_transport()
    key = await writer.put(value)
    assert key == dht_key(value)
    assert await reader.get(key) == value
    assert await writer.get(key) == value


async def test_put_is_idempotent(make_transport: MakeTransport) -> None:
    node = await make_transport()
    value = unique_name("same")
    assert await node.put(value) == await node.put(value)
    assert await node.get(dht_key(value)) == value


async def test_get_missing_is_none(make_transport: MakeTransport) -> None:
    node = await make_transport()
    assert await node.get(dht_key(unique_name("never stored"))) is None


@pytest.mark.parametrize(
    "value",
    ["x" * 1000, "é" * 500, "𝄞" * 250, "x" * 5000],
    ids=["1000-chars", "1000-bytes-2-byte", "1000-bytes-4-byte", "5000-chars"],
)
async def test_put_too_large_is_refused_and_nothing_is_stored(
    make_transport: MakeTransport, value: str
) -> None:
    node = await make_transport()
    with pytest.raises(PayloadTooLarge):
        await node.put(value)
    assert await node.get(dht_key(value)) is None


@pytest.mark.parametrize("value", [42, None, b"bytes", {"v": "x"}, ["x"]])
async def test_put_of_non_str_is_a_type_error(make_transport: MakeTransport, value: object) -> None:
    node = await make_transport()
    with pytest.raises(TypeError):
        await node.put(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["", "abc", "G" * 40, "6D33ADC2B6B2C14C3036FEEFB7FEDBCA1A880527"])
async def test_get_with_a_malformed_key_is_a_value_error(
    make_transport: MakeTransport, key: str
) -> None:
    node = await make_transport()
    with pytest.raises(ValueError, match="DHT key"):
        await node.get(key)


# -- closing --------------------------------------------------------------------------


async def test_use_after_aclose_raises_transport_closed(make_transport: MakeTransport) -> None:
    node = await make_transport()
    await node.aclose()
    await node.aclose()  # idempotent
    name = unique_name("closed")
    with pytest.raises(TransportClosed):
        await node.request(name, 1, timeout=1)
    with pytest.raises(TransportClosed):
        await node.map(name, 1, timeout=1)
    with pytest.raises(TransportClosed):
        await node.put("x")
    with pytest.raises(TransportClosed):
        await node.get(dht_key("x"))
    with pytest.raises(TransportClosed):
        await node.serve({name: echo})


async def test_async_with_closes(make_transport: MakeTransport) -> None:
    node = await make_transport()
    async with node as entered:
        assert entered is node
    with pytest.raises(TransportClosed):
        await node.put("x")


# -- the shared DHT rules (pure, not per adapter) -------------------------------------


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("hello world", "6d33adc2b6b2c14c3036feefb7fedbca1a880527"),
        ("", hashlib.sha1(b"0:").hexdigest()),
        ("é", hashlib.sha1(b"2:\xc3\xa9").hexdigest()),
    ],
)
def test_dht_key_is_sha1_of_the_bencoded_value(value: str, key: str) -> None:
    assert dht_key(value) == key
    assert is_dht_key(key)


def test_check_value_bounds() -> None:
    for ok in ["", "x" * 999, "é" * 499 + "x", "𝄞" * 249 + "xyz"]:
        assert check_value(ok) is ok
    for too_large in ["x" * 1000, "é" * 500, "𝄞" * 250, "x" * 998 + "é"]:
        with pytest.raises(PayloadTooLarge):
            check_value(too_large)
    with pytest.raises(TypeError):
        check_value(b"bytes")
    with pytest.raises(TypeError):
        dht_key(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="surrogate"):
        check_value("\ud800")


def test_check_key() -> None:
    key = dht_key("x")
    assert check_key(key) is key
    for bad in ["", key[:-1], key + "0", key.upper(), "z" * 40]:
        assert not is_dht_key(bad)
        with pytest.raises(ValueError, match="DHT key"):
            check_key(bad)
    with pytest.raises(TypeError):
        check_key(None)
    assert not is_dht_key(None)
