"""The peer RPC server and client over real sockets; discovery from a scripted grape.

Bad input of every kind gets an error reply or a closed connection within the server's
timeouts, never a hang or a crash, and a well-behaved client is served meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import anyio.abc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.fake_grape import FakeGrape, fake_grape, grape_reply
from support.ports import free_port

from transports import (
    JSON,
    ConnectionFailed,
    NoPeersError,
    PeerResult,
    ProtocolError,
    RemoteError,
    RequestTimeout,
    ServiceError,
    TransportClosed,
)
from transports.grenache import GrenacheTransport, _stream

# Real sockets, but a scripted grape (no node): `fake_grape`, not `integration`.
pytestmark = [pytest.mark.anyio, pytest.mark.fake_grape]

READ_TIMEOUT = 0.5
IDLE_TIMEOUT = 1.0


@dataclass
class Rig:
    grape: FakeGrape
    server: GrenacheTransport
    client: GrenacheTransport
    port: int
    peers: dict[str, list[str]] = field(default_factory=dict)

    async def raw(self, data: bytes, *, wait: float = 3.0, eof: bool = False) -> bytes:
        """Send raw bytes on a fresh connection (then EOF if `eof`); return every byte
        received until the server closes."""
        stream = await anyio.connect_tcp("127.0.0.1", self.port)
        async with stream:
            await stream.send(data)
            if eof:
                await stream.send_eof()
            return await read_until_closed(stream, wait)


async def read_until_closed(stream: anyio.abc.ByteStream, wait: float) -> bytes:
    out = b""
    with anyio.fail_after(wait):
        while True:
            try:
                out += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
                return out


def post(body: bytes, *, headers: bytes = b"", close: bool = True) -> bytes:
    extra = b"connection: close\r\n" if close else b""
    return (
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n" % len(body)
        + extra
        + headers
        + b"\r\n"
        + body
    )


def parse_response(raw: bytes) -> tuple[int, Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else None


async def echo(payload: JSON) -> JSON:
    if payload == "fail":
        raise ServiceError("ERR_APP: failed on purpose")
    if payload == "crash":
        raise KeyError("boom")
    if isinstance(payload, dict) and "sleep" in payload:
        await anyio.sleep(payload["sleep"])
    return {"echo": payload}


@asynccontextmanager
async def rig(**options: Any) -> AsyncIterator[Rig]:
    peers: dict[str, list[str]] = {}

    async def script(path: str, data: Any) -> bytes:
        if path == "/announce":
            peers.setdefault(data[0], [])
            address = f"127.0.0.1:{data[1]}"
            if address not in peers[data[0]]:
                peers[data[0]].append(address)
            return grape_reply(1)
        if path == "/lookup":
            return grape_reply(peers.get(data, []))
        return grape_reply("ERR_REQ_NOTFOUND")

    async with fake_grape(script) as grape:
        settings: dict[str, Any] = {
            "read_timeout": READ_TIMEOUT,
            "idle_timeout": IDLE_TIMEOUT,
            "handler_timeout": 1.0,
            "lookup_ttl": 0.0,
            **options,
        }
        async with (
            GrenacheTransport(grape.url, **settings) as server,
            GrenacheTransport(grape.url, **settings) as client,
            anyio.create_task_group() as tg,
        ):
            port = await tg.start(partial(server.serve, {"echo": echo}))
            yield Rig(grape, server, client, port, peers)
            tg.cancel_scope.cancel()


async def test_request_map_and_errors() -> None:
    async with rig() as r:
        assert await r.client.request("echo", [1, "a"]) == {"echo": [1, "a"]}
        assert await r.client.map("echo", 5) == [
            PeerResult(f"127.0.0.1:{r.port}", data={"echo": 5})
        ]
        with pytest.raises(RemoteError) as info:
            await r.client.request("echo", "fail")
        assert info.value.message == "ERR_APP: failed on purpose"
        with pytest.raises(RemoteError, match=r"ERR_INTERNAL: KeyError"):
            await r.client.request("echo", "crash")
        with pytest.raises(RemoteError, match="ERR_TIMEOUT"):
            await r.client.request("echo", {"sleep": 5})  # handler_timeout = 1 s
        with pytest.raises(RequestTimeout):
            await r.client.request("echo", {"sleep": 0.5}, timeout=0.1)
        with pytest.raises(NoPeersError):
            await r.client.request("nobody", 1)
        assert await r.client.map("nobody", 1) == []
        # The server announced its name through the grape before serve() was ready.
        assert ("/announce", ["echo", r.port]) in r.grape.calls


async def test_compressed_requests() -> None:
    async with rig(compress=True) as r:
        assert await r.client.request("echo", "z" * 5000) == {"echo": "z" * 5000}
    async with rig() as r:
        body = gzip.compress(b'["rid-1","echo",{"a":1}]')
        raw = await r.raw(post(body, headers=b"grc-compress: gzip\r\n"))
        _head, _, reply = raw.partition(b"\r\n\r\n")
        assert json.loads(gzip.decompress(reply)) == ["rid-1", None, {"echo": {"a": 1}}]


async def test_unknown_service_and_rid_echo() -> None:
    async with rig() as r:
        status, reply = parse_response(await r.raw(post(b'[42,"other",null]')))
        assert status == 200
        assert reply == [42, "ERR_SERVICE_UNKNOWN: other", None]


async def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    async with rig() as r:
        stream = await anyio.connect_tcp("127.0.0.1", r.port)
        async with stream:
            for i in range(3):
                await stream.send(post(b'["r%d","echo",%d]' % (i, i), close=False))
                data = b""
                while not data.endswith(b"]"):
                    data += await stream.receive()
                assert parse_response(data) == (200, [f"r{i}", None, {"echo": i}])
            # Pipelined: both answered in order.
            await stream.send(post(b'["a","echo",1]', close=False) + post(b'["b","echo",2]'))
            raw = await read_until_closed(stream, 3)
            assert raw.count(b"HTTP/1.1 200") == 2
            assert raw.index(b'"a"') < raw.index(b'"b"')


async def test_chunked_request_body() -> None:
    async with rig() as r:
        body = b'["c","echo","chunked"]'
        raw = await r.raw(
            b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        )
        assert parse_response(raw) == (200, ["c", None, {"echo": "chunked"}])


BAD_BODIES = [
    pytest.param(b"\x00\xff garbage", 400, None, id="garbage-body"),
    pytest.param(b'["r1","echo",{"a":', 400, None, id="truncated-json"),
    pytest.param(b'{"rid":"r","key":"echo"}', 400, None, id="object"),
    pytest.param(b'["r2","echo"]', 400, "r2", id="two-items"),
    pytest.param(b'["r3","echo",1,2]', 400, "r3", id="four-items"),
    pytest.param(b'["r4",{"k":1},1]', 400, "r4", id="key-not-string"),
    pytest.param(b"[]", 400, None, id="empty-array"),
    pytest.param(b"", 400, None, id="empty-body"),
]


@pytest.mark.parametrize(("body", "status", "rid"), BAD_BODIES)
async def test_malformed_bodies_get_an_error_array(body: bytes, status: int, rid: Any) -> None:
    async with rig() as r:
        got_status, reply = parse_response(await r.raw(post(body)))
        assert got_status == status
        assert isinstance(reply, list)
        assert len(reply) == 3
        assert reply[0] == rid
        assert isinstance(reply[1], str)
        assert reply[1].startswith("ERR_BAD_REQUEST: ")
        assert reply[2] is None
        # ...and the server still serves.
        assert await r.client.request("echo", 1) == {"echo": 1}


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x16\x03\x01\x02\x00garbage\r\n\r\n", id="not-http"),
        pytest.param(b"POST / HTTP/1.1\r\nbad header line\r\n\r\n", id="bad-header"),
        pytest.param(b"POST / HTTP/1.1\r\ncontent-length: x\r\n\r\n", id="bad-length"),
        pytest.param(
            b"GET / HTTP/1.1\r\nhost: x\r\n" + b"a: b\r\n" * 5000 + b"\r\n", id="huge-head"
        ),
        pytest.param(b"GET / HTTP/1.1\r\nx: " + b"y" * 200_000, id="endless-header"),
    ],
)
async def test_bad_http_gets_an_error_status_or_a_close(data: bytes) -> None:
    async with rig() as r:
        start = time.monotonic()
        raw = await r.raw(data)
        assert time.monotonic() - start < READ_TIMEOUT + 1
        if raw:
            assert raw.startswith(b"HTTP/1.1 4")
        assert await r.client.request("echo", 2) == {"echo": 2}


async def test_ten_megabyte_body_is_refused_quickly() -> None:
    async with rig() as r:
        stream = await anyio.connect_tcp("127.0.0.1", r.port)
        async with stream:
            size = 10 * 1024 * 1024
            await stream.send(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % size)
            # Refused from Content-Length: the reply comes before we send the body.
            raw = await read_until_closed(stream, 3)
        assert parse_response(raw)[0] == 413
        assert b"ERR_BODY_TOO_LARGE" in raw

        # The same without a length: chunks are counted as they arrive.
        stream = await anyio.connect_tcp("127.0.0.1", r.port)
        async with stream:
            await stream.send(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
            with pytest.raises((anyio.BrokenResourceError, OSError)):  # noqa: PT012
                with anyio.fail_after(5):
                    for _ in range(160):
                        await stream.send(chunk)
        assert await r.client.request("echo", 3) == {"echo": 3}


async def test_slowloris_is_cut_off_while_others_are_served() -> None:
    async with rig() as r:
        slow = await anyio.connect_tcp("127.0.0.1", r.port)
        idle = await anyio.connect_tcp("127.0.0.1", r.port)
        async with slow, idle:
            start = time.monotonic()
            await slow.send(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-le")
            for i in range(5):  # others are served while the slow request hangs
                assert await r.client.request("echo", i) == {"echo": i}
            raw = await read_until_closed(slow, READ_TIMEOUT + 2)
            assert time.monotonic() - start < READ_TIMEOUT + 1.5
            assert raw == b"" or raw.startswith(b"HTTP/1.1 408")
            # A connection that never sends a byte is closed after the idle timeout.
            assert await read_until_closed(idle, IDLE_TIMEOUT + 2) == b""


async def test_many_concurrent_clients() -> None:
    async with rig() as r:
        results: list[JSON] = []

        async def one(i: int) -> None:
            results.append(await r.client.request("echo", i))

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(one, i)
        assert sorted(x["echo"] for x in results) == list(range(50))


async def test_map_with_a_dead_peer_and_request_failover() -> None:
    async with rig() as r:
        dead = f"127.0.0.1:{free_port()}"
        live = f"127.0.0.1:{r.port}"
        r.peers["echo"].insert(0, dead)
        results = await r.client.map("echo", "hi")
        assert len(results) == 2
        by_peer = {result.peer: result for result in results}
        assert by_peer[live] == PeerResult(live, data={"echo": "hi"})
        assert str(by_peer[dead].error).startswith("ERR_CONNECTION")
        # request never fails because of a refusing peer while a live one is announced.
        for i in range(10):
            assert await r.client.request("echo", i) == {"echo": i}


async def test_request_skips_a_peer_that_does_not_serve_the_name() -> None:
    # Grapes keep a dead peer's address announced for ever; once another process (say a
    # client node, which serves only orderbook_updated) binds that port, it answers
    # ERR_SERVICE_UNKNOWN. That is not the service's answer (a client would report its
    # order "refused"): the handler certainly did not run, so it is a peer to skip, like
    # one that refuses the connection.
    async with rig() as r, anyio.create_task_group() as tg:
        other = GrenacheTransport(r.grape.url, lookup_ttl=0.0)
        async with other:
            port = await tg.start(partial(other.serve, {"other": echo}))
            stale = f"127.0.0.1:{port}"
            r.peers["echo"].insert(0, stale)
            for i in range(20):
                assert await r.client.request("echo", i) == {"echo": i}
            # Nobody serving it at all: that is "no peer", not the service's answer.
            r.peers["echo"] = [stale]
            with pytest.raises(NoPeersError, match="ERR_SERVICE_UNKNOWN"):
                await r.client.request("echo", "x")
            tg.cancel_scope.cancel()


async def test_idle_connections_to_peers_never_called_again_are_closed() -> None:
    # The process worker calls every client once per version; a client that exits is
    # never called again. Its kept-alive connection (a file descriptor) and the pool's
    # per-peer entry must not stay for ever: an idle sweep closes them.
    async with rig() as r, anyio.create_task_group() as tg:
        pool = r.client._pool
        pool._idle_expiry = 0.1
        pool._next_sweep = 0.0
        gone = GrenacheTransport(r.grape.url, lookup_ttl=0.0)
        async with gone:
            port = await tg.start(partial(gone.serve, {"once": echo}))
            assert await r.client.request("once", 1) == {"echo": 1}
            assert ("127.0.0.1", port) in pool._idle
            await anyio.sleep(0.2)
            for i in range(3):  # other traffic (here: the grape and the rig's server)
                assert await r.client.request("echo", i) == {"echo": i}
            assert ("127.0.0.1", port) not in pool._idle
            assert len(pool._idle) <= 2, "only the peers still in use keep an entry"
            tg.cancel_scope.cancel()


async def test_closed_transport() -> None:
    async with rig() as r:
        await r.client.aclose()
        await r.client.aclose()
        for call in (
            r.client.request("echo", 1),
            r.client.map("echo", 1),
            r.client.put("v"),
            r.client.get("0" * 40),
        ):
            with pytest.raises(TransportClosed):
                await call


async def test_reply_from_a_non_grenache_server_is_a_protocol_error() -> None:
    async def not_grenache(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(b'HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n{"a":1}')

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with rig() as r, listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, not_grenache)
        r.peers["weird"] = [f"127.0.0.1:{port}"]
        with pytest.raises(ProtocolError):
            await r.client.request("weird", 1)
        tg.cancel_scope.cancel()


async def test_aclose_fails_inflight_calls_and_stops_serving() -> None:
    async with rig() as r:
        failed: list[BaseException] = []

        async def slow_call() -> None:
            try:
                await r.client.request("echo", {"sleep": 0.8})
            except TransportClosed as exc:
                failed.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow_call)
            await anyio.sleep(0.2)
            await r.client.aclose()
        assert len(failed) == 1
        await r.server.aclose()
        await anyio.sleep(0.05)
        with pytest.raises(OSError, match=r"connect|refused"):
            await anyio.connect_tcp("127.0.0.1", r.port)


async def test_serve_fails_when_the_grape_refuses_every_announce() -> None:
    async def script(path: str, data: Any) -> bytes:
        return grape_reply("ERR_GRAPE_ANNOUNCE")

    async with fake_grape(script) as grape, GrenacheTransport(grape.url, announce_timeout=0.5) as t:
        start = time.monotonic()
        with pytest.raises(ConnectionFailed, match="ERR_GRAPE_ANNOUNCE"):
            await t.serve({"x": echo})
        assert time.monotonic() - start < 2


async def test_serve_on_a_closed_transport() -> None:
    async def script(path: str, data: Any) -> bytes:
        return grape_reply(1)

    async with fake_grape(script) as grape:
        t = GrenacheTransport(grape.url)
        await t.aclose()
        with pytest.raises(TransportClosed):
            await t.serve({"x": echo})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bodies=st.lists(st.binary(max_size=3000), min_size=3, max_size=6),
    raw=st.binary(min_size=1, max_size=3000),
)
async def test_fuzz_the_server_with_garbage(bodies: list[bytes], raw: bytes) -> None:
    async with rig() as r:
        for body in bodies:
            reply = await r.raw(post(body), wait=READ_TIMEOUT + 2)
            status, data = parse_response(reply)
            assert status in (200, 400)
            assert isinstance(data, list)
            assert len(data) == 3
            assert data[1] is None or isinstance(data[1], str)
        answer = await r.raw(raw, wait=1.0, eof=True)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 ")
        assert await r.client.request("echo", "still here") == {"echo": "still here"}


async def test_past_the_limit_the_longest_idle_connection_makes_room() -> None:
    """A flood of idle connections cannot shut other peers out: HTTP lets a server
    close a kept-alive connection between requests, so the one idle the longest goes."""
    async with rig(max_connections=2) as r:
        first = await anyio.connect_tcp("127.0.0.1", r.port)
        await anyio.sleep(0.05)
        second = await anyio.connect_tcp("127.0.0.1", r.port)
        async with first, second:
            await anyio.sleep(0.05)
            assert await r.client.request("echo", 3) == {"echo": 3}  # served at once
            with anyio.fail_after(3), pytest.raises(anyio.EndOfStream):
                await first.receive()  # the longest idle: closed
            await second.send(post(b'["r","echo",2]'))  # the other still serves
            with anyio.fail_after(3):
                assert b'"echo":2' in await second.receive()


async def test_past_the_limit_connections_mid_request_hold_their_place() -> None:
    async with rig(max_connections=2) as r:
        first = await anyio.connect_tcp("127.0.0.1", r.port)
        second = await anyio.connect_tcp("127.0.0.1", r.port)
        async with first, second:
            await first.send(b"POST / HT")  # a request begun: not idle
            await second.send(b"POST / HT")
            await anyio.sleep(0.05)
            assert await r.raw(post(b'["r","echo",1]')) == b""  # the third: closed
        # Once they are gone, requests are served again.
        await anyio.sleep(0.05)
        assert await r.client.request("echo", 4) == {"echo": 4}


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ECONNABORTED])
async def test_accept_failures_do_not_stop_the_server(
    code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Out of file descriptors (EMFILE: easy to reach with `ulimit -n 1024` and the
    # default max_connections of 1024) or a connection aborted in the backlog must not
    # end `serve` with the OSError, and the worker with it.
    failures = 3
    real_accept = _stream._AsyncioListener.accept

    async def accept(self: Any) -> Any:
        nonlocal failures
        if failures:
            failures -= 1
            raise OSError(code, os.strerror(code))
        return await real_accept(self)

    monkeypatch.setattr(_stream._AsyncioListener, "accept", accept)
    async with rig() as r:
        with anyio.fail_after(5):
            assert await r.client.request("echo", "after") == {"echo": "after"}
        assert failures == 0


async def test_expect_100_continue_and_http_1_0() -> None:
    async with rig() as r:
        stream = await anyio.connect_tcp("127.0.0.1", r.port)
        async with stream:
            body = b'["e","echo","waited"]'
            await stream.send(
                b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n" % len(body)
                + b"expect: 100-continue\r\nconnection: close\r\n\r\n"
            )
            interim = b""
            with anyio.fail_after(3):
                while b"\r\n\r\n" not in interim:
                    interim += await stream.receive()
            assert interim.startswith(b"HTTP/1.1 100 ")
            await stream.send(body)
            raw = await read_until_closed(stream, 3)
        assert parse_response(raw) == (200, ["e", None, {"echo": "waited"}])
        # HTTP/1.0 without keep-alive: answered, then the connection is closed.
        body = b'["h","echo",10]'
        raw = await r.raw(b"POST / HTTP/1.0\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        assert parse_response(raw) == (200, ["h", None, {"echo": 10}])
        assert b"connection: close" in raw.lower()


async def test_pipelined_requests_before_bad_http_are_answered() -> None:
    async with rig() as r:
        raw = await r.raw(post(b'["p","echo",1]', close=False) + b"NOT HTTP AT ALL\r\n\r\n")
        first, _, rest = raw.partition(b"]")
        assert parse_response(first + b"]") == (200, ["p", None, {"echo": 1}])
        assert rest.startswith(b"HTTP/1.1 400")
        assert b"ERR_BAD_HTTP" in rest
        # Upgrades are refused the same way, and the server still serves.
        raw = await r.raw(
            b"GET / HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
            + b"\x81\x05hello"
        )
        assert raw == b"" or raw.startswith(b"HTTP/1.1 4")
        assert await r.client.request("echo", 5) == {"echo": 5}


def _reply_to(request: bytes, template: bytes) -> bytes:
    """`template` with ``{rid}`` replaced by the request's rid (as JSON)."""
    body = request.partition(b"\r\n\r\n")[2]
    rid = json.dumps(json.loads(body)[0]).encode()
    return template.replace(b"{rid}", rid)


async def _read_request(stream: anyio.abc.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += await stream.receive()
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param(b"CHUNKED", "ok", id="chunked"),  # as Node's server replies
        pytest.param(b'HTTP/1.1 200 OK\r\n\r\n[{rid},null,"ok"]', "ok", id="until-close"),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n"
            b'[{rid},null,"ok"]',
            "ok",
            id="after-100-continue",
        ),
        pytest.param(b"SPDY/3 200 OK\r\n\r\n", ProtocolError, id="not-http"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2000000\r\n\r\n" + b"x" * 1_100_000,
            ProtocolError,
            id="too-large",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n[{rid},",
            ProtocolError,
            id="truncated",
        ),
        pytest.param(b"", ConnectionFailed, id="closed-at-once"),
    ],
)
async def test_client_reads_every_response_framing(template: bytes, expected: Any) -> None:
    async def peer(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            request = await _read_request(stream)
            if template == b"CHUNKED":
                body = _reply_to(request, b'[{rid},null,"ok"]')
                reply = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                for part in (body[:3], body[3:]):  # the rid split across two chunks
                    reply += b"%x\r\n%s\r\n" % (len(part), part)
                reply += b"0\r\n\r\n"
            else:
                reply = _reply_to(request, template) if b"{rid}" in template else template
                length = len(_reply_to(request, b'[{rid},null,"ok"]'))
                reply = reply.replace(b"{len}", str(length).encode())
            with contextlib.suppress(anyio.BrokenResourceError, OSError):
                await stream.send(reply)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with rig() as r, listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, peer)
        r.peers["framed"] = [f"127.0.0.1:{port}"]
        if isinstance(expected, type):
            with pytest.raises(expected):
                await r.client.request("framed", 1, timeout=3)
        else:
            assert await r.client.request("framed", 1, timeout=3) == expected
        tg.cancel_scope.cancel()
