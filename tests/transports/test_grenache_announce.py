"""A grape that refuses announces, a flood of connections: serving goes on, logs stay short.

A real grape answers ``No nodes to query`` to announces for minutes when its DHT peers
are down or were restarted (and still stores the announce, so lookups find it): the
fake grape here does the same, and can be told to refuse or accept at any moment.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import pytest
from support.fake_grape import FakeGrape, fake_grape, grape_reply

from transports import JSON, ConnectionFailed
from transports.grenache import GrenacheTransport

pytestmark = [pytest.mark.anyio, pytest.mark.fake_grape]

NO_NODES = "No nodes to query"


@dataclass
class Grape:
    """A grape that stores every announce, and answers it ``No nodes to query`` while
    `refusing` is set; `announces` holds the time of each announce it got."""

    fake: FakeGrape | None = None
    refusing: bool = False
    peers: dict[str, list[str]] = field(default_factory=dict)
    announces: list[float] = field(default_factory=list)

    async def script(self, path: str, data: Any) -> bytes:
        if path == "/announce":
            self.announces.append(anyio.current_time())
            address = f"127.0.0.1:{data[1]}"
            if address not in self.peers.setdefault(data[0], []):
                self.peers[data[0]].append(address)
            return grape_reply(NO_NODES if self.refusing else 1)
        if path == "/lookup":
            return grape_reply(self.peers.get(data, []))
        return grape_reply("ERR_REQ_NOTFOUND")

    @property
    def url(self) -> str:
        assert self.fake is not None
        return self.fake.url


@asynccontextmanager
async def scripted_grape(*, refusing: bool) -> AsyncIterator[Grape]:
    grape = Grape(refusing=refusing)
    async with fake_grape(grape.script) as fake:
        grape.fake = fake
        yield grape


async def echo(payload: JSON) -> JSON:
    return payload


def transport_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "transports.grenache" and r.levelno >= logging.INFO
    ]


async def test_not_waiting_for_the_announce_serves_while_the_grape_refuses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "transports.grenache")
    async with (
        scripted_grape(refusing=True) as grape,
        GrenacheTransport(grape.url, announce_timeout=0.5, announce_interval=0.2) as server,
        GrenacheTransport(grape.url) as client,
        anyio.create_task_group() as tg,
    ):
        with anyio.fail_after(0.5):  # well before announce_timeout would have failed it
            port = await tg.start(partial(server.serve, {"svc": echo}, wait_announced=False))
        assert await client.request("svc", "hi", timeout=2) == "hi"
        await anyio.sleep(1.0)  # many retries, each refused
        tg.cancel_scope.cancel()
    assert len(grape.announces) >= 4
    # One line for the whole streak, and only info: this caller does not depend on it.
    assert transport_lines(caplog) == [
        (
            logging.INFO,
            f"announcing ['svc'] on port {port} through {grape.url} fails: {NO_NODES}"
            " (retrying with backoff; logged again once it works)",
        )
    ]


async def test_waiting_for_the_announce_still_fails_when_it_never_works() -> None:
    async with (
        scripted_grape(refusing=True) as grape,
        GrenacheTransport(grape.url, announce_timeout=0.5) as server,
    ):
        with pytest.raises(ConnectionFailed, match=f"could not announce.*{NO_NODES}"):
            await server.serve({"svc": echo})


async def test_a_refusing_grape_is_one_warning_then_one_info_with_backoff_between(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "transports.grenache")
    interval = 0.4
    async with (
        scripted_grape(refusing=False) as grape,
        GrenacheTransport(grape.url, announce_interval=interval) as server,
        GrenacheTransport(grape.url) as client,
        anyio.create_task_group() as tg,
    ):
        port = await tg.start(server.serve, {"svc": echo})
        grape.refusing = True  # from the first re-announce (1 s after the first)
        await anyio.sleep(3.0)
        assert await client.request("svc", "still served", timeout=2) == "still served"
        refused = list(grape.announces)
        grape.refusing = False
        with anyio.fail_after(2):
            while len(grape.announces) == len(refused):  # noqa: ASYNC110 - the grape's list
                await anyio.sleep(0.05)
        await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    # An attempt is an announce, the link's repair (a lookup) and one announce again.
    attempts = [t for i, t in enumerate(refused) if i == 0 or t - refused[i - 1] > 0.1]
    failed = attempts[1:]  # the first one was accepted
    assert all(t2 - t1 < 0.1 for t1, t2 in zip(refused[1::2], refused[2::2], strict=False))
    # Retries back off from 0.25 s to the announce interval, never faster.
    gaps = [b - a for a, b in itertools.pairwise(failed)]
    assert len(gaps) >= 3, refused
    assert 0.2 <= gaps[0] < 0.6, gaps  # the first retry after 0.25 s
    assert all(interval - 0.05 <= gap < interval + 0.5 for gap in gaps[1:]), gaps  # capped
    lines = transport_lines(caplog)
    where = f"['svc'] on port {port} through {grape.url}"
    assert lines[0] == (
        logging.WARNING,
        f"announcing {where} fails: {NO_NODES} (retrying with backoff; logged again once it works)",
    )
    assert len(lines) == 2, lines
    level, text = lines[1]
    assert level == logging.INFO
    assert text.startswith(f"announcing {where} works again ({len(failed)} failed attempts")


async def test_a_flood_of_connections_is_one_warning_then_one_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "transports.grenache")
    async with (
        scripted_grape(refusing=False) as grape,
        GrenacheTransport(grape.url, max_connections=1) as server,
        GrenacheTransport(grape.url) as client,
        anyio.create_task_group() as tg,
    ):
        port = await tg.start(server.serve, {"svc": echo})
        held = await anyio.connect_tcp("127.0.0.1", port)  # the one connection allowed
        async with held:
            await held.send(b"POST / HT")  # mid-request, so it holds its place
            await anyio.sleep(0.1)
            for _ in range(5):
                extra = await anyio.connect_tcp("127.0.0.1", port)
                async with extra:
                    with anyio.fail_after(2), pytest.raises(anyio.EndOfStream):
                        await extra.receive()  # closed at once
        await anyio.sleep(0.1)  # the server sees the held connection close
        assert await client.request("svc", "after", timeout=2) == "after"
        tg.cancel_scope.cancel()
    assert transport_lines(caplog) == [
        (logging.WARNING, "refusing connections: 1 open already"),
        (logging.INFO, "accepting connections again (5 refused meanwhile)"),
    ]
