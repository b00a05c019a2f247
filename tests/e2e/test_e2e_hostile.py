"""Hostile input against the real workers, over real sockets.

One exchange for the module (its own two grapes, the sequencer and the matcher as
processes). Their ports are found the way any peer finds them, through a grape lookup;
then bytes go straight to each worker's HTTP server (`transports.grenache`'s server:
bodies up to 1 MiB, heads up to 16 KiB or 100 headers, 10 s to send a request, 30 s
idle on a kept-alive connection, 1024 connections at once).

Every hostile request is answered with the protocol's error shape (HTTP 200 and
``[rid, "ERR_...", null]``, or HTTP 400/408/413/431 and ``[rid-or-null, "ERR_...",
null]``) or with a closed connection; afterwards the worker still serves a valid signed
order, and what it holds changed only by valid orders: the journal (entries and key
bindings) and the matcher's head. A property-based run sends N generated requests
(N, its seed, time and both workers' RSS are printed) and checks the same; it is
derandomized when ``CI`` is set, else ``DEX_FUZZ_SEED`` repeats a run and
``DEX_FUZZ_EXAMPLES`` sets N (default 1000). Last, the first-key race through the grape:
two keys send a new clientId's first order at once, one is bound, the other refused.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import random
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from support.keys import named_key

from e2e.harness import Exchange, running_exchange
from exchange.protocol import PROCESS_DOMAIN, public_key_hex, sign_object, sign_order
from exchange.sequencer import Journal
from transports import RemoteError
from transports.grenache import GrenacheTransport

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MAX_BODY = 1 << 20  # the workers' bound on a body (transports.grenache's default)
READ_TIMEOUT = 10.0  # seconds a request may take to arrive, from its first byte
HONEST = named_key("hostile:honest")
MALLORY = named_key("hostile:mallory")
HONEST_HEX = public_key_hex(HONEST)
Addr = tuple[str, int]


# -------------------------------------------------------------------------- the exchange


@dataclass
class Workers:
    """The running exchange, and each worker's address as the grape announces it."""

    exchange: Exchange
    sequencer: Addr
    matcher: Addr
    orders: Iterator[int]

    @property
    def sequencer_pid(self) -> int:
        assert self.exchange.submit is not None
        return self.exchange.submit.pid

    @property
    def matcher_pid(self) -> int:
        assert self.exchange.process is not None
        return self.exchange.process.pid


async def _lookup(grape: str, name: str) -> Addr:
    async with GrenacheTransport(grape=grape) as transport:
        with anyio.fail_after(20):
            while True:
                found = await transport.link.lookup(name, fresh=True)
                if found:
                    host, port = found[0].rsplit(":", 1)
                    return host, int(port)
                await anyio.sleep(0.1)


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    with running_exchange(tmp_path_factory.mktemp("hostile")) as exchange:
        sequencer = anyio.run(_lookup, exchange.grapes[0], "submit_order")
        matcher = anyio.run(_lookup, exchange.grapes[1], "process_order")
        yield Workers(exchange, sequencer, matcher, itertools.count(1))


# -------------------------------------------------------------------------- raw HTTP


@dataclass
class Response:
    status: int
    body: Any


def post(body: bytes, *, gzipped: bool = False, close: bool = True) -> bytes:
    """A whole HTTP/1.1 POST of `body`, as a Grenache client sends it."""
    return (
        b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"grc-compress: %s\r\ncontent-length: %d\r\n%s\r\n%s"
        % (
            b"gzip" if gzipped else b"none",
            len(body),
            b"connection: close\r\n" if close else b"",
            body,
        )
    )


def grenache(rid: Any, key: Any, payload: Any) -> bytes:
    return json.dumps([rid, key, payload]).encode()


def read_response(sock: socket.socket) -> Response | None:
    """The next response on `sock`; None if the server closed it (or reset it) first."""
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                assert not buf, f"the connection closed mid-response: {buf!r}"
                return None
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        match = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
        assert match, head
        length = int(match[1])
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, "the connection closed mid-body"
            rest += chunk
    except ConnectionResetError:
        assert not buf, f"reset mid-response: {buf!r}"
        return None
    body = rest[:length]
    if body.startswith(b"\x1f\x8b"):  # the reply to a gzipped request is gzipped
        body = gzip.decompress(body)
    return Response(int(head.split()[1]), json.loads(body))


def readable(sock: socket.socket, timeout: float) -> bool:
    """Whether `sock` has something to read (or was closed) within `timeout` seconds
    (poll, not select: a test with hundreds of sockets passes select's 1024)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    """Whether the server closed `sock` (within `timeout` seconds)."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def exchange_raw(addr: Addr, data: bytes, *, timeout: float = 10.0) -> tuple[Response | None, bool]:
    """Send `data` on a new connection; the response, and whether the server then closed."""
    with socket.create_connection(addr, timeout=timeout) as sock:
        try:
            for start in range(0, len(data), 1 << 16):
                if readable(sock, 0):
                    break  # answered (refused) already: stop sending
                sock.sendall(data[start : start + (1 << 16)])
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it read everything: its answer may still be there
        response = read_response(sock)
        return response, response is None or closed(sock)


def call(addr: Addr, key: str, payload: Any) -> Response:
    response, _ = exchange_raw(addr, post(grenache("rid-ok", key, payload)))
    assert response is not None
    return response


def assert_error(response: Response | None, statuses: set[int], prefix: str = "ERR_") -> None:
    """The protocol's error shape: ``[rid, "ERR_...", null]`` with one of `statuses`."""
    assert response is not None, "no response"
    assert response.status in statuses, response
    assert isinstance(response.body, list), response
    assert len(response.body) == 3, response
    error = response.body[1]
    assert isinstance(error, str), response
    assert error.startswith(prefix), response
    assert response.body[2] is None, response


def assert_ok(response: Response | None) -> None:
    """A success: HTTP 200 and ``[rid, null, data]``."""
    assert response is not None, "no response"
    assert response.status == 200, response
    assert response.body[1] is None, response


# -------------------------------------------------------------------------- what they hold


@dataclass(frozen=True)
class State:
    entries: tuple[tuple[int, str], ...]
    keys: tuple[tuple[str, str], ...]
    head: tuple[int, Any]


def state(workers: Workers) -> State:
    with Journal(workers.exchange.journal) as journal:
        entries = tuple((e.seq, json.dumps(e.wire, sort_keys=True)) for e in journal.entries())
        keys = tuple(sorted(journal.client_keys().items()))
    reply = call(workers.matcher, "orderbook_head", None)
    assert_ok(reply)
    return State(entries, keys, (reply.body[2]["seq"], reply.body[2]["root"]))


def settled(workers: Workers, timeout: float = 15.0) -> State:
    """The state once the matcher has applied everything journaled."""
    deadline = time.monotonic() + timeout
    while True:
        now = state(workers)
        head = now.entries[-1][0] if now.entries else 0
        if now.head[0] == head:
            return now
        assert time.monotonic() < deadline, f"the matcher is behind: {now.head} < {head}"
        time.sleep(0.05)


def honest_order() -> dict[str, Any]:
    return {"clientId": "honest", "side": "buy", "price": "10", "amount": "1"}


def valid_order(workers: Workers) -> dict[str, Any]:
    return sign_order({**honest_order(), "orderId": f"h{next(workers.orders)}"}, HONEST)


def assert_still_serving(workers: Workers, before: State) -> State:
    """A valid signed order goes through; the state is `before` plus that order alone."""
    order = valid_order(workers)
    reply = call(workers.sequencer, "submit_order", order)
    assert_ok(reply)
    after = settled(workers)
    assert after.entries[:-1] == before.entries
    seq, wire = after.entries[-1]
    assert seq == reply.body[2]["seq"] == len(before.entries) + 1
    assert json.loads(wire)["orderId"] == order["orderId"]
    assert after.keys == tuple(sorted({**dict(before.keys), "honest": HONEST_HEX}.items()))
    assert after.head[0] == seq
    return after


@pytest.fixture
def before(workers: Workers) -> State:
    """The state before a test's hostile input, with the honest client's key bound."""
    now = settled(workers)
    if ("honest", HONEST_HEX) not in now.keys:
        now = assert_still_serving(workers, now)
    return now


# -------------------------------------------------------------------------- bodies


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def _bodies() -> list[tuple[str, str, bytes, set[int], str]]:
    """(name, worker, body, statuses, error prefix) of every hostile body."""
    signed = sign_order({**honest_order(), "orderId": "never"}, HONEST)
    text = json.dumps(signed)
    entry = {
        "seq": 10**6,
        "ts": 1,
        "command": {"op": "cancel", "clientId": "honest", "orderId": "h1"},
    }
    bad = {400}
    ok = {200}
    return [
        (
            "malformed JSON",
            "sequencer",
            b'["r",  "submit_order", {"clientId": ',
            bad,
            "ERR_BAD_REQUEST",
        ),
        ("malformed JSON", "matcher", b'["r", "process_order", [1, 2', bad, "ERR_BAD_REQUEST"),
        ("not UTF-8", "sequencer", b'["r", "submit_order", "\xff\xfe"]', bad, "ERR_BAD_REQUEST"),
        ("empty body", "sequencer", b"", bad, "ERR_BAD_REQUEST"),
        ("not an array", "sequencer", b'{"rid": 1}', bad, "ERR_BAD_REQUEST"),
        ("short array", "matcher", b'["r", "process_order"]', bad, "ERR_BAD_REQUEST"),
        ("NaN", "sequencer", b'["r", "submit_order", {"price": NaN}]', bad, "ERR_BAD_REQUEST"),
        ("key not a string", "sequencer", grenache("r", 7, {}), bad, "ERR_BAD_REQUEST"),
        (
            "unknown service",
            "sequencer",
            grenache("r", "process_order", {}),
            ok,
            "ERR_SERVICE_UNKNOWN",
        ),
        (
            "unknown service",
            "matcher",
            grenache("r", "submit_order", signed),
            ok,
            "ERR_SERVICE_UNKNOWN",
        ),
        # wrong types, signed or not
        (
            "wrong types",
            "sequencer",
            grenache("r", "submit_order", {"clientId": 5, "side": [], "price": {}, "amount": None}),
            ok,
            "ERR_AUTH",
        ),
        (
            "wrong types, signed",
            "sequencer",
            grenache(
                "r",
                "submit_order",
                sign_order(
                    {"clientId": "honest", "orderId": "t", "side": 1, "price": [], "amount": True},
                    HONEST,
                ),
            ),
            ok,
            "ERR_VALIDATION",
        ),
        ("payload a string", "sequencer", grenache("r", "submit_order", "buy"), ok, "ERR_"),
        ("payload a list", "matcher", grenache("r", "process_order", [entry]), ok, "ERR_"),
        (
            "signature of another type",
            "sequencer",
            grenache("r", "submit_order", {**signed, "sig": 12}),
            ok,
            "ERR_AUTH",
        ),
        # unknown fields: refused, signed or not
        (
            "unknown field, signed",
            "sequencer",
            grenache(
                "r",
                "submit_order",
                sign_order({**honest_order(), "orderId": "u", "leverage": "100"}, HONEST),
            ),
            ok,
            "ERR_VALIDATION",
        ),
        (
            "unknown field added",
            "sequencer",
            grenache("r", "submit_order", {**signed, "leverage": "100"}),
            ok,
            "ERR_AUTH",
        ),
        (
            "unknown field, matcher",
            "matcher",
            grenache("r", "process_order", {**entry, "x": 1}),
            ok,
            "ERR_AUTH",
        ),
        # huge numbers
        (
            "huge price, signed",
            "sequencer",
            grenache(
                "r",
                "submit_order",
                sign_order({**honest_order(), "orderId": "p", "price": "9" * 5000}, HONEST),
            ),
            ok,
            "ERR_VALIDATION",
        ),
        (
            "huge integer amount, signed",
            "sequencer",
            grenache(
                "r",
                "submit_order",
                sign_order({**honest_order(), "orderId": "q", "amount": 10**4000}, HONEST),
            ),
            ok,
            "ERR_VALIDATION",
        ),
        (
            "integer past the parser's bound",
            "sequencer",
            b'["r", "submit_order", ' + b"9" * 5000 + b"]",
            bad,
            "ERR_BAD_REQUEST",
        ),
        ("float overflow", "sequencer", b'["r", "submit_order", {"price": 1e999}]', ok, "ERR_AUTH"),
        (
            "huge seq",
            "matcher",
            grenache("r", "process_order", {**entry, "seq": 10**300}),
            ok,
            "ERR_AUTH",
        ),
        ("huge rid", "sequencer", grenache(10**4000, "submit_order", None), ok, "ERR_"),
        # deep nesting
        (
            "nested past the parser",
            "sequencer",
            b'["r", "submit_order", ' + b"[" * 200_000 + b"]" * 200_000 + b"]",
            bad,
            "ERR_BAD_REQUEST",
        ),
        ("nested past the parser", "matcher", b"[" * 500_000, bad, "ERR_BAD_REQUEST"),
        (
            "deep object",
            "sequencer",
            grenache("r", "submit_order", {**signed, "price": _nested(800)}),
            ok | bad,
            "ERR_",
        ),
        (
            "deep object, signed",
            "sequencer",
            grenache(
                "r",
                "submit_order",
                sign_order({**honest_order(), "orderId": "d", "price": _nested(200)}, HONEST),
            ),
            ok,
            "ERR_VALIDATION",
        ),
        # duplicate keys: the last wins (as JSON.parse), and the signature covers it
        (
            "duplicate clientId",
            "sequencer",
            ('["r", "submit_order", ' + text[:-1] + ', "clientId": "mallory"}]').encode(),
            ok,
            "ERR_AUTH",
        ),
        (
            "duplicate sig",
            "sequencer",
            ('["r", "submit_order", ' + text[:-1] + ', "sig": "' + "00" * 64 + '"}]').encode(),
            ok,
            "ERR_AUTH",
        ),
        (
            "duplicate pubKey",
            "sequencer",
            (
                '["r", "submit_order", ' + text[:-1] + f', "pubKey": "{public_key_hex(MALLORY)}"}}]'
            ).encode(),
            ok,
            "ERR_AUTH",
        ),
        (
            "duplicate seq",
            "matcher",
            ('["r", "process_order", ' + json.dumps(entry)[:-1] + ', "seq": 1}]').encode(),
            ok,
            "ERR_AUTH",
        ),
        # forged, for the matcher
        (
            "entry signed by a stranger",
            "matcher",
            grenache("r", "process_order", sign_object(PROCESS_DOMAIN, entry, MALLORY)),
            ok,
            "ERR_",
        ),
    ]


def test_each_hostile_body_gets_the_error_shape_and_changes_nothing(
    workers: Workers, before: State
) -> None:
    failures = []
    for name, worker, body, statuses, prefix in _bodies():
        addr = workers.sequencer if worker == "sequencer" else workers.matcher
        response, was_closed = exchange_raw(addr, post(body))
        try:
            assert_error(response, statuses, prefix)
            assert response is not None
            if response.status == 200:
                assert response.body[0] == json.loads(body)[0]  # its rid, echoed
            assert was_closed  # every request here said connection: close
        except AssertionError as exc:
            failures.append(f"{name} ({worker}): {exc}")
    assert not failures, "\n".join(failures)
    assert state(workers) == before
    assert_still_serving(workers, before)


def test_a_refused_body_on_a_kept_alive_connection_leaves_it_serving(
    workers: Workers, before: State
) -> None:
    """An error reply (HTTP 200) keeps the connection; the next request on it is served."""
    with socket.create_connection(workers.sequencer, timeout=10) as sock:
        for payload in ({"clientId": 1}, "x", None):
            sock.sendall(post(grenache("r", "submit_order", payload), close=False))
            assert_error(read_response(sock), {200})
        sock.sendall(post(grenache("r", "submit_order", valid_order(workers)), close=False))
        reply = read_response(sock)
        assert_ok(reply)
    after = settled(workers)
    assert after.entries[:-1] == before.entries


def test_gzip_bodies_are_bounded_once_unpacked(workers: Workers, before: State) -> None:
    """A gzip bomb (4 KiB that unpack to 4 MiB), a body that is not gzip after its magic
    bytes, and a cut gzip stream: each refused, by both workers."""
    whole = gzip.compress(grenache("r", "submit_order", None))
    bodies = [
        gzip.compress(b"[" + b" " * (4 * MAX_BODY) + b"]"),
        b"\x1f\x8b" + b"not gzip" * 10,
        whole[: len(whole) // 2],
    ]
    for addr in (workers.sequencer, workers.matcher):
        for body in bodies:
            response, was_closed = exchange_raw(addr, post(body, gzipped=True))
            assert_error(response, {400}, "ERR_BAD_REQUEST")
            assert was_closed
    assert state(workers) == before
    assert_still_serving(workers, before)


# -------------------------------------------------------------------------- HTTP itself


def test_a_body_over_the_bound_is_413_and_closed(workers: Workers, before: State) -> None:
    for addr in (workers.sequencer, workers.matcher):
        # announced by Content-Length: refused before the body is read
        head = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % (MAX_BODY + 1)
        response, was_closed = exchange_raw(addr, head + b"[" * 1000)
        assert_error(response, {413}, "ERR_BODY_TOO_LARGE")
        assert was_closed
        # chunked, no length: refused as the chunks pass the bound
        with socket.create_connection(addr, timeout=10) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
            for _ in range(MAX_BODY // 65536 + 4):
                if readable(sock, 0):
                    break  # the refusal is there: stop sending
                try:
                    sock.sendall(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break
            response = read_response(sock)
            assert response is None or response.status == 413, response
            if response is not None:
                assert_error(response, {413}, "ERR_BODY_TOO_LARGE")
            assert closed(sock)
    assert state(workers) == before
    assert_still_serving(workers, before)


def test_a_head_without_end_is_431_and_closed(workers: Workers, before: State) -> None:
    for addr in (workers.sequencer, workers.matcher):
        # Just past the bound, so the server reads all of it before it refuses.
        many = b"POST / HTTP/1.1\r\n" + b"".join(
            b"x-h%03d: %s\r\n" % (i, b"v" * 50) for i in range(300)
        )
        endless = b"POST / HTTP/1.1\r\nx-endless: " + b"v" * 16_500
        few_long = b"POST / HTTP/1.1\r\n" + b"x-a: %s\r\n" % (b"v" * 9000) * 2 + b"\r\n"
        for data in (many, endless, few_long):
            response, was_closed = exchange_raw(addr, data)
            assert_error(response, {431}, "ERR_BAD_HTTP")
            assert was_closed
        over_count = b"POST / HTTP/1.1\r\n" + b"".join(b"x%d: v\r\n" % i for i in range(150))
        response, was_closed = exchange_raw(addr, over_count + b"content-length: 2\r\n\r\n[]")
        assert_error(response, {431}, "ERR_BAD_HTTP")
        for data in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 10, b"GET / SPDY/9\r\n\r\n"):
            response, was_closed = exchange_raw(addr, data)
            assert_error(response, {400}, "ERR_BAD_HTTP")
            assert was_closed
    assert state(workers) == before
    assert_still_serving(workers, before)


def test_slowloris_is_cut_off_and_others_are_served_meanwhile(
    workers: Workers, before: State
) -> None:
    """One byte a second of a request head: the server answers 408 and closes once the
    request has taken `READ_TIMEOUT`; meanwhile a valid order goes through."""
    outcome: dict[str, Any] = {}
    trickle = b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 20\r\n" + b"x" * 100

    def slow(addr: Addr, label: str) -> None:
        started = time.monotonic()
        with socket.create_connection(addr, timeout=READ_TIMEOUT + 10) as sock:
            for byte in trickle:
                try:
                    sock.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    break
                if readable(sock, 1.0):
                    break  # the server spoke (or closed)
            outcome[label] = (read_response(sock), closed(sock), time.monotonic() - started)

    threads = [
        threading.Thread(target=slow, args=(workers.sequencer, "sequencer")),
        threading.Thread(target=slow, args=(workers.matcher, "matcher")),
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    after = assert_still_serving(workers, before)  # while both trickle
    for thread in threads:
        thread.join(READ_TIMEOUT + 15)
    for label in ("sequencer", "matcher"):
        response, was_closed, took = outcome[label]
        assert_error(response, {408}, "ERR_TIMEOUT")
        assert was_closed
        assert READ_TIMEOUT - 1 <= took <= READ_TIMEOUT + 3, (label, took)
    assert settled(workers) == after


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _soft_fd_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no Max open files")


IDLE = 400
"""Idle connections per worker (its `max_connections` is 1024, its fd limit more)."""


def test_hundreds_of_idle_connections_and_others_are_served(
    workers: Workers, before: State
) -> None:
    pids = {"sequencer": workers.sequencer_pid, "matcher": workers.matcher_pid}
    baseline = {name: _fds(pid) for name, pid in pids.items()}
    for name, pid in pids.items():
        assert _soft_fd_limit(pid) > baseline[name] + IDLE + 100, (name, _soft_fd_limit(pid))
    socks: list[socket.socket] = []
    try:
        for addr in (workers.sequencer, workers.matcher):
            for i in range(IDLE):
                sock = socket.create_connection(addr, timeout=10)
                socks.append(sock)
                if i % 4 == 0:
                    sock.sendall(b"POST / HT")  # a head begun, not finished
        deadline = time.monotonic() + 10
        while any(_fds(pid) < baseline[n] + IDLE for n, pid in pids.items()):
            assert time.monotonic() < deadline, {n: _fds(p) for n, p in pids.items()}
            time.sleep(0.05)  # every connection accepted: each holds a descriptor
        after = assert_still_serving(workers, before)
    finally:
        for sock in socks:
            sock.close()
    deadline = time.monotonic() + 10
    while any(_fds(pid) > baseline[n] + 5 for n, pid in pids.items()):
        assert time.monotonic() < deadline, {n: _fds(p) for n, p in pids.items()}
        time.sleep(0.05)  # and each is given back once the client goes
    assert settled(workers) == after
    assert_still_serving(workers, after)


MAX_CONNECTIONS = 1024  # the workers' bound on connections served at once


def test_past_max_connections_idle_ones_make_room_for_new_peers(
    workers: Workers, before: State
) -> None:
    """Thousands of idle connections: past `MAX_CONNECTIONS` the connection idle the
    longest is closed to make room, so a new peer is served at once while the flood is
    still open; the worker lives and nothing it holds changes."""
    pid = workers.sequencer_pid
    baseline = _fds(pid)
    socks: list[socket.socket] = []
    try:
        for _ in range(MAX_CONNECTIONS + 100):
            socks.append(socket.create_connection(workers.sequencer, timeout=10))
        deadline = time.monotonic() + 10
        while _fds(pid) < baseline + MAX_CONNECTIONS - 10:
            assert time.monotonic() < deadline, _fds(pid)
            time.sleep(0.05)
        response, _ = exchange_raw(workers.sequencer, post(b"[]"))
        assert_error(response, {200, 400})  # answered, not shut out
        after = assert_still_serving(workers, before)  # the flood still open
    finally:
        for sock in socks:
            sock.close()
    assert workers.exchange.submit is not None
    assert "closing idle connections: 1024 open already" in workers.exchange.submit.text()
    assert settled(workers) == after


# -------------------------------------------------------------------------- fuzz

FUZZ_EXAMPLES = int(os.environ.get("DEX_FUZZ_EXAMPLES", "1000"))
FUZZ_SEED = int(os.environ.get("DEX_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
DERANDOMIZE = bool(os.environ.get("CI"))
RSS_BOUND_KIB = 64 * 1024
"""A generous bound on how much either worker's RSS may grow over the fuzz run."""

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_FIELDS = [
    "op",
    "clientId",
    "orderId",
    "side",
    "price",
    "amount",
    "ordType",
    "tif",
    "postOnly",
    "stp",
    "pubKey",
    "sig",
    "seq",
    "ts",
    "command",
    "entries",
]


@dataclass(frozen=True)
class Hostile:
    """One generated request: the worker it goes to, and its bytes."""

    worker: str
    data: bytes

    def __repr__(self) -> str:  # a failing example is printed: keep it short
        shown = self.data if len(self.data) <= 600 else self.data[:600] + b"..."
        return f"Hostile({self.worker!r}, {len(self.data)} bytes: {shown!r})"


@st.composite
def _hostile(draw: st.DrawFn) -> Hostile:
    """(worker, raw HTTP request) of one generated request, nearly always a bad one."""
    worker = draw(st.sampled_from(["sequencer", "matcher"]))
    service = "submit_order" if worker == "sequencer" else "process_order"
    kinds = ["bytes", "json", "signed", "mutated", "truncated", "header", "gzip", "big", "batch"]
    kind = draw(st.sampled_from(kinds))
    rid = draw(st.text(max_size=8) | st.integers())
    key = draw(
        st.sampled_from([service, service, service, "orderbook_head_x"]) | st.text(max_size=10)
    )
    order = {**honest_order(), "orderId": draw(st.text(min_size=1, max_size=8))}
    if kind == "bytes":
        body = draw(st.binary(max_size=200))
    elif kind == "json":
        body = json.dumps([rid, key, draw(_json)]).encode()
    elif kind == "signed":  # signed by the bound key, a field drawn (rarely a valid one)
        order[draw(st.sampled_from(_FIELDS))] = draw(_json)
        body = json.dumps([rid, key, sign_order(order, HONEST)]).encode()
    elif kind == "mutated":  # a signed order, a field changed after signing
        payload = sign_order(order, HONEST)
        payload[draw(st.sampled_from(_FIELDS))] = draw(_json)
        body = json.dumps([rid, key, payload]).encode()
    elif kind == "batch":  # a batch of signed orders (some changed after signing) and junk
        items: list[Any] = []
        for n in range(draw(st.integers(0, 4))):
            item = sign_order({**order, "orderId": f"{order['orderId']}-{n}"}, HONEST)
            if draw(st.booleans()):
                item[draw(st.sampled_from(_FIELDS))] = draw(_json)
            items.append(item if draw(st.integers(0, 3)) else draw(_json))
        body = json.dumps([rid, key, items]).encode()
    elif kind == "gzip":  # a gzipped body, or a bomb
        inner = json.dumps([rid, key, draw(_json)]).encode()
        if draw(st.booleans()):
            inner = b"[" + b" " * draw(st.integers(MAX_BODY - 8, 3 * MAX_BODY)) + b"]"
        return Hostile(worker, post(gzip.compress(inner), gzipped=True))
    elif kind == "big":  # around the bound on a body
        prefix = json.dumps([rid, key]).encode()[:-1] + b', "'
        size = draw(st.integers(MAX_BODY - 64, MAX_BODY + 64))
        body = prefix + b"a" * (size - len(prefix) - 2) + b'"]'
    elif kind == "truncated":
        whole = json.dumps([rid, service, sign_order(order, HONEST)])
        body = whole[: draw(st.integers(0, len(whole) - 1))].encode()
    else:  # a header line of junk in an otherwise whole request
        junk = draw(
            st.binary(min_size=1, max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b)
        )
        request = post(json.dumps([rid, key, draw(_json)]).encode())
        line = request.index(b"\r\n") + 2
        return Hostile(worker, request[:line] + junk + b"\r\n" + request[line:])
    return Hostile(worker, post(body))


def kind_of(request: bytes) -> str:
    """ "big" for a request of the kind that is sized around the bound."""
    return "big" if len(request) > MAX_BODY // 2 and b"grc-compress: none" in request else ""


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_fuzz_the_workers_and_they_stay_alive_bounded_and_unchanged(
    workers: Workers, before: State, capsys: pytest.CaptureFixture[str]
) -> None:
    """N generated requests (mostly hostile; now and then a valid order): each is an error
    in the protocol's shape, a closed connection, or (only at the sequencer, only for a
    validly signed order) an acknowledgement; afterwards the journal holds exactly the
    acknowledged commands more, both workers are alive, their RSS within a bound."""
    pids = {"sequencer": workers.sequencer_pid, "matcher": workers.matcher_pid}
    rss_before = {name: _rss_kib(pid) for name, pid in pids.items()}
    counts = {"requests": 0, "honest": 0, "accepted": 0, "closed": 0}
    statuses: dict[int, int] = {}
    acknowledged: dict[int, dict[str, Any]] = {}  # seq -> the order acknowledged with it

    def acknowledge(data: bytes, reply: Response) -> int:
        """Note the orders `reply` acknowledges (a batch's per order); how many."""
        body = data.partition(b"\r\n\r\n")[2]
        payload = json.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)[2]
        if not isinstance(payload, list):
            payload, results = [payload], [reply.body[2]]
        else:  # a batch: one result per order, each an acknowledgement or an error
            results = reply.body[2]
            assert isinstance(results, list), reply
            assert len(results) == len(payload), reply
        taken = 0
        for order, result in zip(payload, results, strict=True):
            if "error" in result:
                assert set(result) == {"error"}, reply
                assert result["error"].startswith("ERR_"), reply
                continue
            assert result["orderId"] == order["orderId"], reply
            acknowledged.setdefault(result["seq"], order)
            taken += 1
        return taken

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        derandomize=DERANDOMIZE,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(request=_hostile(), honest=st.integers(0, 24))
    def one(request: Hostile, honest: int) -> None:
        worker, data = request.worker, request.data
        addr = workers.sequencer if worker == "sequencer" else workers.matcher
        response, was_closed = exchange_raw(addr, data)
        counts["requests"] += 1
        if response is None:
            counts["closed"] += 1
        else:
            statuses[response.status] = statuses.get(response.status, 0) + 1
            if worker == "sequencer" and response.status == 200 and response.body[1] is None:
                # The draw made a validly signed order, or a batch (answered per order).
                counts["accepted"] += acknowledge(data, response)
            else:
                assert_error(response, {200, 400, 408, 413, 431})
            assert was_closed  # every request asks to close, or was refused
            if kind_of(data) == "big":
                big = len(data.partition(b"\r\n\r\n")[2])
                assert (response.status == 413) == (big > MAX_BODY), (big, response)
        if honest == 12:  # now and then (not 0: draws favour the ends)
            data = post(grenache("rid-ok", "submit_order", valid_order(workers)))
            reply, _ = exchange_raw(workers.sequencer, data)
            assert_ok(reply)
            assert reply is not None
            acknowledge(data, reply)
            counts["honest"] += 1

    started = time.monotonic()
    (one if DERANDOMIZE else seed(FUZZ_SEED)(one))()
    took = time.monotonic() - started
    for proc in (workers.exchange.submit, workers.exchange.process):
        assert proc is not None
        assert proc.alive(), proc.text()
    rss_after = {name: _rss_kib(pid) for name, pid in pids.items()}
    now = settled(workers)
    assert now.entries[: len(before.entries)] == before.entries
    new = dict(now.entries[len(before.entries) :])
    assert sorted(new) == sorted(acknowledged)  # nothing journaled but what was acknowledged
    for seq, payload in acknowledged.items():
        wire = json.loads(new[seq])
        assert (wire["clientId"], wire["orderId"]) == (payload["clientId"], payload["orderId"])
    bound = {str(p["clientId"]): HONEST_HEX for p in acknowledged.values()}
    assert dict(now.keys) == {**dict(before.keys), **bound}
    assert_still_serving(workers, now)
    for name in pids:
        assert rss_after[name] - rss_before[name] < RSS_BOUND_KIB, (name, rss_before, rss_after)
    with capsys.disabled():
        print(
            f"\nfuzz: N={counts['requests']} generated requests "
            f"(+{counts['honest']} valid orders between them) in {took:.1f} s, "
            f"seed={'derandomized' if DERANDOMIZE else FUZZ_SEED}; "
            f"{counts['accepted']} acknowledged (a validly signed draw), "
            f"HTTP statuses {dict(sorted(statuses.items()))}, "
            f"{counts['closed']} closed without a reply; RSS KiB before/after: "
            + ", ".join(f"{n} {rss_before[n]}/{rss_after[n]}" for n in pids)
        )


# -------------------------------------------------------------------------- first-key race

RACE_PAIRS = 20


async def _race_through_the_grape(grape: str) -> dict[str, Any]:
    """First orders of `RACE_PAIRS` new clientIds, two keys each, all sent at once."""
    outcomes: dict[str, Any] = {}

    async def send(transport: GrenacheTransport, name: str, payload: dict[str, Any]) -> None:
        try:
            outcomes[name] = await transport.request("submit_order", payload, timeout=20)
        except RemoteError as exc:
            outcomes[name] = exc.message

    async with GrenacheTransport(grape=grape) as transport, anyio.create_task_group() as tg:
        for i in range(RACE_PAIRS):
            for side in "ab":
                order_id = "first" if i % 2 else f"first-{side}"  # shared or own orderId
                order = {**honest_order(), "clientId": f"e2e-racer{i}", "orderId": order_id}
                payload = sign_order(order, named_key(f"hostile:race-{side}{i}"))
                tg.start_soon(send, transport, f"{side}{i}", payload)
    return outcomes


def test_first_key_race_end_to_end(workers: Workers, before: State) -> None:
    """Two keys send a new clientId's first order at once: one key is bound and its
    order alone journaled; the other gets ERR_AUTH."""
    outcomes = anyio.run(_race_through_the_grape, workers.exchange.grapes[0])
    after = settled(workers)
    assert after.entries[: len(before.entries)] == before.entries
    new = [json.loads(wire) for _, wire in after.entries[len(before.entries) :]]
    assert len(new) == RACE_PAIRS
    keys = dict(after.keys)
    for i in range(RACE_PAIRS):
        replies = {side: outcomes[f"{side}{i}"] for side in "ab"}
        won = [side for side, reply in replies.items() if isinstance(reply, dict)]
        assert len(won) == 1, replies
        loser = "b" if won == ["a"] else "a"
        assert str(replies[loser]).startswith("ERR_AUTH: "), replies
        winner_key = public_key_hex(named_key(f"hostile:race-{won[0]}{i}"))
        assert keys[f"e2e-racer{i}"] == winner_key
        (entry,) = [e for e in new if e["clientId"] == f"e2e-racer{i}"]
        assert entry["orderId"] == replies[won[0]]["orderId"]
    assert_still_serving(workers, after)
