"""The Grape link against a scripted grape: result types, quirks, cache, keep-alive."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from support.fake_grape import fake_grape, grape_reply
from support.ports import free_port

from transports import (
    ConnectionFailed,
    PayloadTooLarge,
    ProtocolError,
    RemoteError,
    RequestTimeout,
    dht_key,
)
from transports.grenache import GrapeLink

pytestmark = [pytest.mark.anyio, pytest.mark.fake_grape]

HELLO_KEY = "6d33adc2b6b2c14c3036feefb7fedbca1a880527"


async def test_announce_number_and_error_string() -> None:
    async def script(path: str, data: Any) -> bytes:
        return grape_reply(2 if data[0] == "good" else "ERR_GRAPE_ANNOUNCE")

    async with fake_grape(script) as grape:
        link = GrapeLink(grape.url)
        try:
            assert await link.announce("good", 4242) == 2
            with pytest.raises(RemoteError) as info:
                await link.announce("bad", 4242)
            assert info.value.message == "ERR_GRAPE_ANNOUNCE"
            assert grape.calls[0] == ("/announce", ["good", 4242])
        finally:
            await link.aclose()


@pytest.mark.parametrize("stale", ["No nodes to query", "All queries failed"])
async def test_stale_dht_nodes_are_repaired_by_a_lookup(stale: str) -> None:
    # "All queries failed" is what a grape answered for minutes to a name it had announced
    # before its DHT peer was restarted; a lookup of the name refreshes its nodes.
    repaired = False

    async def script(path: str, data: Any) -> bytes:
        nonlocal repaired
        if path == "/lookup":
            repaired = True
            return grape_reply([])
        return grape_reply(1 if repaired else stale)

    async with fake_grape(script) as grape:
        link = GrapeLink(grape.url)
        try:
            assert await link.announce("svc", 4242) == 1
        finally:
            await link.aclose()
        assert [path for path, _ in grape.calls] == ["/announce", "/lookup", "/announce"]


async def test_lookup_cache_is_brief_never_empty_and_drops_refused_peers() -> None:
    peers: list[str] = []

    async def script(path: str, data: Any) -> bytes:
        return grape_reply(list(peers))

    async with fake_grape(script) as grape:
        link = GrapeLink(grape.url, lookup_ttl=0.3)
        try:
            assert await link.lookup("svc") == []
            assert await link.lookup("svc") == []
            assert len(grape.calls) == 2  # an empty result is never cached
            peers[:] = ["127.0.0.1:1", "127.0.0.1:2"]
            assert await link.lookup("svc") == peers
            assert await link.lookup("svc") == peers
            assert len(grape.calls) == 3  # cached
            link.drop_peer("svc", "127.0.0.1:1")
            assert await link.lookup("svc") == ["127.0.0.1:2"]
            assert await link.lookup("svc", fresh=True) == peers
            await anyio.sleep(0.35)
            await link.lookup("svc")
            assert len(grape.calls) == 5  # expired
        finally:
            await link.aclose()


async def test_concurrent_lookups_share_one_call_to_the_grape() -> None:
    # As grenache-nodejs-link does: when the cached entry is missing or expired, the
    # requests in flight wait for one lookup instead of each asking the grape.
    release = anyio.Event()
    fail_next = False

    async def script(path: str, data: Any) -> bytes:
        nonlocal fail_next
        await release.wait()
        if fail_next:
            fail_next = False
            return grape_reply("ERR_GRAPE_LOOKUP")
        return grape_reply(["127.0.0.1:1"])

    async with fake_grape(script) as grape:
        link = GrapeLink(grape.url, lookup_ttl=0.2)
        results: list[list[str]] = []
        errors: list[str] = []

        async def one() -> None:
            try:
                results.append(await link.lookup("svc"))
            except RemoteError as exc:
                errors.append(exc.message)

        try:
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(one)
                await anyio.sleep(0.05)
                release.set()
            assert results == [["127.0.0.1:1"]] * 20
            assert len(grape.calls) == 1

            # A lookup that fails is not shared: each caller that waited asks itself.
            await anyio.sleep(0.25)  # the entry expired
            release = anyio.Event()
            fail_next = True
            results.clear()
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(one)
                await anyio.sleep(0.05)
                release.set()
            assert errors == ["ERR_GRAPE_LOOKUP"]
            assert results == [["127.0.0.1:1"]] * 2
            assert len(grape.calls) == 1 + 3

            # fresh=True never joins a lookup in flight, nor uses the cache.
            await link.lookup("svc", fresh=True)
            assert len(grape.calls) == 5
        finally:
            await link.aclose()


async def test_lookup_error_string() -> None:
    async def script(path: str, data: Any) -> bytes:
        return grape_reply("ERR_GRAPE_LOOKUP")

    async with fake_grape(script) as grape:
        link = GrapeLink(grape.url)
        try:
            with pytest.raises(RemoteError, match="ERR_GRAPE_LOOKUP"):
                await link.lookup("svc")
        finally:
            await link.aclose()


async def test_put_and_get_results_are_checked() -> None:
    store: dict[str, str] = {}
    lie = False

    async def script(path: str, data: Any) -> bytes:
        if path == "/put":
            key = "0" * 40 if lie else dht_key(data["v"])
            store[key] = data["v"]
            return grape_reply(key)
        value = store.get(data)
        if value is None:
            return b""  # a grape's "not found"
        return grape_reply({"id": "ab" * 20, "token": "00", "v": "tampered" if lie else value})

    async with fake_grape(script) as grape:
        link = GrapeLink(grape.url)
        try:
            assert await link.put("hello world") == HELLO_KEY
            assert await link.get(HELLO_KEY) == "hello world"
            assert await link.get("1" * 40) is None
            lie = True
            with pytest.raises(ProtocolError):
                await link.get(HELLO_KEY)
            with pytest.raises(ProtocolError):
                await link.put("other")
            with pytest.raises(ValueError, match="not a DHT key"):
                await link.get("not a key")
            calls = len(grape.calls)
            with pytest.raises(PayloadTooLarge):
                await link.put("x" * 1000)
            assert len(grape.calls) == calls  # refused before sending
        finally:
            await link.aclose()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (grape_reply("v must be less than 1000 bytes in put()"), RemoteError),
        (grape_reply({"not": "a key"}), ProtocolError),
        (b"<html>", ProtocolError),
        ((500, b"ERR_GRAPE_PAYLOAD_INVALID"), RemoteError),
    ],
)
async def test_put_failures(reply: bytes | tuple[int, bytes], error: type[Exception]) -> None:
    async def script(path: str, data: Any) -> bytes | tuple[int, bytes]:
        return reply

    async with fake_grape(script) as grape:
        link = GrapeLink(grape.url)
        try:
            with pytest.raises(error):
                await link.put("v")
        finally:
            await link.aclose()


@pytest.mark.parametrize("stale", ["No nodes to query", "All queries failed"])
@pytest.mark.parametrize("stored", [True, False])
async def test_a_put_refused_for_stale_nodes_counts_if_the_grape_kept_the_item(
    stale: str, stored: bool
) -> None:
    # A grape whose DHT peer died or restarted answers puts so for minutes, yet it stored
    # the item first (measured): the link reads it back and counts the put as done.
    kept: dict[str, str] = {}

    async def script(path: str, data: Any) -> bytes:
        if path == "/put":
            if stored:
                kept[dht_key(data["v"])] = data["v"]
            return grape_reply(stale)
        value = kept.get(data)
        return b"" if value is None else grape_reply({"id": "ab" * 20, "v": value})

    async with fake_grape(script) as grape:
        link = GrapeLink(grape.url)
        try:
            if stored:
                assert await link.put("hello world") == HELLO_KEY
            else:
                with pytest.raises(RemoteError) as info:
                    await link.put("hello world")
                assert info.value.message == stale
        finally:
            await link.aclose()
        assert [path for path, _ in grape.calls] == ["/put", "/get"]


async def test_connections_are_kept_alive() -> None:
    async def script(path: str, data: Any) -> bytes:
        return grape_reply(["127.0.0.1:1"])

    async with fake_grape(script) as grape:
        link = GrapeLink(grape.url, lookup_ttl=0)
        try:
            for _ in range(20):
                await link.lookup("svc")
        finally:
            await link.aclose()
        assert len(grape.calls) == 20
        assert grape.connections == 1


async def test_unreachable_and_silent_grapes() -> None:
    link = GrapeLink(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(ConnectionFailed):
            await link.lookup("svc")
    finally:
        await link.aclose()

    async def script(path: str, data: Any) -> bytes:
        await anyio.sleep(5)
        return b""

    async with fake_grape(script) as grape:
        link = GrapeLink(grape.url, timeout=0.2)
        try:
            with pytest.raises(RequestTimeout):
                await link.lookup("svc")
        finally:
            await link.aclose()


def test_grape_url_is_checked() -> None:
    for bad in ("127.0.0.1:30001", "https://127.0.0.1:1", "http://127.0.0.1", "http://h:1/x"):
        with pytest.raises(ValueError, match="grape URL"):
            GrapeLink(bad)
