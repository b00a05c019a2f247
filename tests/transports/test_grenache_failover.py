"""Several grapes: the choice policy alone, then `GrapeLinks` and the transport against
scripted grapes that share one "DHT" (a dict), and die, go silent or come back."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from support.fake_grape import FakeGrape, fake_grape, grape_reply
from support.ports import free_port

from transports import JSON, ConnectionFailed, RemoteError, RequestTimeout, dht_key
from transports.grenache import GrapeChoice, GrapeLink, GrapeLinks, GrenacheTransport

# -- the policy, on a clock of its own ------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_order_is_the_given_one_while_every_grape_answers() -> None:
    choice = GrapeChoice(3, clock=Clock())
    assert choice.order() == [0, 1, 2]
    assert choice.first() == 0


def test_a_failed_grape_goes_last_until_its_pause_ends_then_first_again() -> None:
    clock = Clock()
    choice = GrapeChoice(3, first_pause=1.0, max_pause=4.0, clock=clock)
    assert choice.failed(0) is True  # news: log it
    assert choice.order() == [1, 2, 0]
    assert choice.first() == 1
    assert choice.is_aside(0)
    clock.now += 1.0
    assert choice.order() == [0, 1, 2]  # its pause ended: asked first again
    assert choice.failed(0) is False  # the same outage: not news
    assert choice.order() == [1, 2, 0]
    clock.now += 1.9
    assert choice.order() == [1, 2, 0]  # the pause doubled (2 s)
    clock.now += 0.1
    assert choice.answered(0) is True  # back: news
    assert choice.order() == [0, 1, 2]
    assert choice.answered(0) is False


def test_pauses_double_up_to_the_cap_and_a_failure_seen_twice_counts_once() -> None:
    clock = Clock()
    choice = GrapeChoice(2, first_pause=1.0, max_pause=4.0, clock=clock)
    pauses = []
    for _ in range(5):
        choice.failed(1)
        choice.failed(1)  # another call saw the same outage: the pause does not double
        start = clock.now
        while choice.is_aside(1):
            clock.now += 0.5
        pauses.append(clock.now - start)
    assert pauses == [1.0, 2.0, 4.0, 4.0, 4.0]


def test_set_aside_grapes_are_still_asked_soonest_back_first() -> None:
    clock = Clock()
    choice = GrapeChoice(3, first_pause=1.0, clock=clock)
    choice.failed(0)
    choice.failed(0)
    clock.now += 1.0
    choice.failed(0)  # 2 s now
    choice.failed(2)  # 1 s
    assert choice.order() == [1, 2, 0]
    clock.now += 0.1
    choice.failed(1)  # back 0.1 s after grape 2
    assert choice.order() == [2, 1, 0]  # all aside: nobody is left out


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one"):
        GrapeChoice(0)
    with pytest.raises(ValueError, match="first_pause"):
        GrapeChoice(2, first_pause=2.0, max_pause=1.0)


# -- scripted grapes over one shared DHT ----------------------------------------------


@dataclass
class Dht:
    """What the grapes share: announced peers, stored items."""

    peers: dict[str, list[str]] = field(default_factory=dict)
    items: dict[str, str] = field(default_factory=dict)


@dataclass
class Grape:
    """A scripted grape of `dht`; `silent` makes it hold every call, `empty` makes it
    know nothing (restarted empty), `slow` delays each answer."""

    dht: Dht
    silent: bool = False
    empty: bool = False
    slow: float = 0.0
    fake: FakeGrape | None = None

    async def script(self, path: str, data: Any) -> bytes:
        if self.silent:
            await anyio.sleep_forever()
        if self.slow:
            await anyio.sleep(self.slow)
        if path == "/announce":
            peers = self.dht.peers.setdefault(data[0], [])
            if f"127.0.0.1:{data[1]}" not in peers:
                peers.append(f"127.0.0.1:{data[1]}")
            return grape_reply(1)
        if path == "/lookup":
            return grape_reply([] if self.empty else self.dht.peers.get(data, []))
        if path == "/put":
            self.dht.items[dht_key(data["v"])] = data["v"]
            return grape_reply(dht_key(data["v"]))
        if path == "/get":
            value = None if self.empty else self.dht.items.get(data)
            return grape_reply(None if value is None else {"id": "x", "token": "t", "v": value})
        return grape_reply("ERR_REQ_NOTFOUND")

    @property
    def url(self) -> str:
        assert self.fake is not None
        return self.fake.url

    def calls(self, path: str) -> int:
        assert self.fake is not None
        return sum(1 for p, _ in self.fake.calls if p == path)


@asynccontextmanager
async def grapes_of(dht: Dht, n: int) -> AsyncIterator[list[Grape]]:
    async with AsyncExitStack() as stack:
        grapes = []
        for _ in range(n):
            grape = Grape(dht)
            grape.fake = await stack.enter_async_context(fake_grape(grape.script))
            grapes.append(grape)
        yield grapes


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.anyio
@pytest.mark.fake_grape
async def test_a_dead_grape_is_passed_over_at_once_and_then_left_alone() -> None:
    dht = Dht(peers={"svc": ["127.0.0.1:4242"]})
    async with grapes_of(dht, 1) as (live,):
        links = GrapeLinks([dead_url(), live.url], lookup_ttl=0)
        try:
            with anyio.fail_after(0.5):  # refused: no waiting for failover_after
                assert await links.lookup("svc") == ["127.0.0.1:4242"]
            assert links.choice.is_aside(0)
            for _ in range(5):
                assert await links.lookup("svc") == ["127.0.0.1:4242"]
            assert links.choice.order() == [1, 0]  # asked first only once its pause ends
            assert live.calls("/lookup") == 6
        finally:
            await links.aclose()


@pytest.mark.anyio
@pytest.mark.fake_grape
async def test_a_silent_grape_gets_company_after_failover_after_and_is_set_aside() -> None:
    dht = Dht(peers={"svc": ["127.0.0.1:4242"]})
    async with grapes_of(dht, 2) as (stopped, live):
        stopped.silent = True
        links = GrapeLinks([stopped.url, live.url], failover_after=0.2, lookup_ttl=0)
        try:
            start = anyio.current_time()
            assert await links.lookup("svc") == ["127.0.0.1:4242"]
            assert 0.2 <= anyio.current_time() - start < 1.0
            assert links.choice.is_aside(0)
            start = anyio.current_time()
            key = await links.put("hello world")
            assert await links.get(key) == "hello world"
            assert anyio.current_time() - start < 0.2  # straight to the live grape
        finally:
            await links.aclose()


@pytest.mark.anyio
@pytest.mark.fake_grape
async def test_a_slow_grape_that_is_the_only_one_alive_is_waited_for() -> None:
    # A grape whose DHT peer died answers in seconds: slow is not dead.
    dht = Dht(peers={"svc": ["127.0.0.1:4242"]})
    async with grapes_of(dht, 1) as (slow,):
        slow.slow = 0.4
        links = GrapeLinks([slow.url, dead_url()], failover_after=0.1, lookup_ttl=0)
        try:
            assert await links.lookup("svc") == ["127.0.0.1:4242"]
            assert not links.choice.is_aside(0)
            assert links.choice.is_aside(1)
        finally:
            await links.aclose()


@pytest.mark.anyio
@pytest.mark.fake_grape
async def test_when_every_grape_is_slow_the_first_asked_wins_and_none_is_set_aside() -> None:
    # Every grape waits for a dead DHT node: all slow alike, none dead.
    dht = Dht(peers={"svc": ["127.0.0.1:4242"]})
    async with grapes_of(dht, 2) as (first, second):
        first.slow = second.slow = 0.4
        links = GrapeLinks([first.url, second.url], failover_after=0.1, lookup_ttl=0)
        try:
            for _ in range(2):
                assert await links.lookup("svc") == ["127.0.0.1:4242"]
            assert links.choice.order() == [0, 1]
            assert not links.choice.is_aside(0)
            assert not links.choice.is_aside(1)
        finally:
            await links.aclose()


@pytest.mark.anyio
@pytest.mark.fake_grape
async def test_a_grape_that_comes_back_is_preferred_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "transports.grenache")
    dht = Dht(peers={"svc": ["127.0.0.1:4242"]})
    async with grapes_of(dht, 2) as (first, second):
        first.silent = True
        choice = GrapeChoice(2, first_pause=0.3)
        links = GrapeLinks([first.url, second.url], failover_after=0.1, choice=choice)
        try:
            assert await links.lookup("svc", fresh=True) == ["127.0.0.1:4242"]
            assert choice.order() == [1, 0]
            first.silent = False
            await anyio.sleep(0.35)
            before = first.calls("/lookup")
            assert await links.lookup("svc", fresh=True) == ["127.0.0.1:4242"]
            assert first.calls("/lookup") == before + 1
            assert choice.order() == [0, 1]
        finally:
            await links.aclose()
    lines = [r.getMessage() for r in caplog.records if r.name == "transports.grenache"]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"grape {first.url} does not answer (no answer in ")
    assert lines[1] == f"grape {first.url} answers again"


@pytest.mark.anyio
@pytest.mark.fake_grape
async def test_an_empty_lookup_or_a_missing_item_is_asked_of_the_next_grape() -> None:
    dht = Dht(peers={"svc": ["127.0.0.1:4242"]})
    async with grapes_of(dht, 2) as (restarted, other):
        links = GrapeLinks([restarted.url, other.url], lookup_ttl=0)
        try:
            key = await links.put("hello world")
            restarted.empty = True
            assert await links.lookup("svc") == ["127.0.0.1:4242"]
            assert await links.get(key) == "hello world"
            assert await links.lookup("nobody") == []  # nobody has it: the answer stands
            assert await links.get(dht_key("nothing")) is None
            assert not links.choice.is_aside(0)  # it answered: it is not dead
        finally:
            await links.aclose()


@pytest.mark.anyio
@pytest.mark.fake_grape
async def test_an_error_string_is_tried_elsewhere_and_raised_when_nobody_does_better() -> None:
    async def refusing(path: str, data: Any) -> bytes:
        return grape_reply("ERR_GRAPE_LOOKUP")

    dht = Dht(peers={"svc": ["127.0.0.1:4242"]})
    async with fake_grape(refusing) as bad, grapes_of(dht, 1) as (good,):
        links = GrapeLinks([bad.url, good.url])
        try:
            assert await links.lookup("svc") == ["127.0.0.1:4242"]
        finally:
            await links.aclose()
        links = GrapeLinks([bad.url, dead_url()])
        try:
            with pytest.raises(RemoteError, match="ERR_GRAPE_LOOKUP"):
                await links.lookup("svc")
        finally:
            await links.aclose()


@pytest.mark.anyio
@pytest.mark.fake_grape
async def test_no_grape_at_all_is_one_error_naming_each() -> None:
    dead = [dead_url(), dead_url()]
    links = GrapeLinks(dead)
    try:
        with pytest.raises(ConnectionFailed) as info:
            await links.lookup("svc")
        assert all(url in str(info.value) for url in dead)
    finally:
        await links.aclose()
    async with grapes_of(Dht(), 1) as (stopped,):
        stopped.silent = True
        links = GrapeLinks([stopped.url, dead[0]], timeout=0.3, failover_after=0.1)
        try:
            with pytest.raises(RequestTimeout):  # a grape is there, maybe: a timeout
                await links.get(dht_key("x"))
        finally:
            await links.aclose()


@pytest.mark.anyio
@pytest.mark.fake_grape
async def test_announce_goes_through_every_grape() -> None:
    dht = Dht()
    async with grapes_of(dht, 2) as grapes:
        links = GrapeLinks([g.url for g in grapes])
        try:
            assert await links.announce("svc", 4242) == 1
            assert [g.calls("/announce") for g in grapes] == [1, 1]
        finally:
            await links.aclose()
        links = GrapeLinks([dead_url(), grapes[0].url])
        try:
            assert await links.announce("svc", 4242) == 1  # one grape is enough
        finally:
            await links.aclose()


def test_links_arguments() -> None:
    with pytest.raises(ValueError, match="at least one"):
        GrapeLinks([])
    with pytest.raises(ValueError, match="given twice"):
        GrapeLinks(["http://127.0.0.1:1", "http://127.0.0.1:1"])
    with pytest.raises(TypeError):
        GrapeLinks("http://127.0.0.1:1")
    links = GrapeLinks(["http://127.0.0.1:1", "http://127.0.0.1:2"])
    assert links.url == "http://127.0.0.1:1,http://127.0.0.1:2"


# -- the transport over several grapes -----------------------------------------------


async def echo(payload: JSON) -> JSON:
    return payload


@pytest.mark.anyio
@pytest.mark.fake_grape
async def test_one_url_is_the_one_link_of_old_and_several_are_grape_links() -> None:
    one = GrenacheTransport("http://127.0.0.1:30001")
    two = GrenacheTransport(["http://127.0.0.1:30001", "http://127.0.0.1:40001"])
    try:
        assert isinstance(one.link, GrapeLink)
        assert one.grapes == ("http://127.0.0.1:30001",)
        assert isinstance(two.link, GrapeLinks)
        assert two.grapes == ("http://127.0.0.1:30001", "http://127.0.0.1:40001")
    finally:
        await one.aclose()
        await two.aclose()


@pytest.mark.anyio
@pytest.mark.fake_grape
async def test_a_service_is_announced_through_every_grape_and_found_through_any() -> None:
    dht = Dht()
    async with (
        grapes_of(dht, 2) as (a, b),
        GrenacheTransport([a.url, b.url]) as server,
        GrenacheTransport(b.url, lookup_ttl=0) as client,
        anyio.create_task_group() as tg,
    ):
        port = await tg.start(server.serve, {"svc": echo})
        for grape in (a, b):
            assert grape.fake is not None
            assert ("/announce", ["svc", port]) in grape.fake.calls
        assert await client.request("svc", "hi", timeout=2) == "hi"
        tg.cancel_scope.cancel()


@pytest.mark.anyio
@pytest.mark.fake_grape
async def test_serving_starts_with_one_grape_dead_and_calls_go_through_the_other() -> None:
    dht = Dht()
    async with grapes_of(dht, 1) as (live,):
        dead = dead_url()
        async with (
            GrenacheTransport([dead, live.url], announce_timeout=2) as server,
            GrenacheTransport([dead, live.url]) as client,
            anyio.create_task_group() as tg,
        ):
            with anyio.fail_after(1):
                await tg.start(server.serve, {"svc": echo})
            with anyio.fail_after(1):
                assert await client.request("svc", "hi", timeout=2) == "hi"
                key = await client.put("stored")
                assert await client.get(key) == "stored"
            tg.cancel_scope.cancel()


@pytest.mark.anyio
@pytest.mark.fake_grape
async def test_a_grape_that_dies_while_serving_is_left_for_the_other() -> None:
    dht = Dht()
    async with grapes_of(dht, 1) as (survivor,):
        victim = Grape(dht)
        async with (
            GrenacheTransport(lookup_ttl=0, grape=[survivor.url]) as client,
            anyio.create_task_group() as tg,
        ):
            async with fake_grape(victim.script) as fake:
                victim.fake = fake
                server = GrenacheTransport([fake.url, survivor.url], announce_interval=0.2)
                await tg.start(server.serve, {"svc": echo})
                caller = GrenacheTransport([fake.url, survivor.url], lookup_ttl=0)
                assert await caller.request("svc", 1, timeout=2) == 1
            # The victim is gone (its connections closed): the same transports go on.
            with anyio.fail_after(1):
                assert await caller.request("svc", 2, timeout=2) == 2
                key = await caller.put("after")
                assert await client.get(key) == "after"
            await caller.aclose()
            await server.aclose()
            tg.cancel_scope.cancel()


@pytest.mark.anyio
@pytest.mark.fake_grape
async def test_waiting_for_the_announce_fails_when_no_grape_takes_it() -> None:
    async with GrenacheTransport([dead_url(), dead_url()], announce_timeout=0.5) as server:
        with pytest.raises(ConnectionFailed, match="could not announce"):
            await server.serve({"svc": echo})
