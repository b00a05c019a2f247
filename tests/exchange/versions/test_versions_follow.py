"""Following versions by their commands: command pages, `VersionReader.advance`.

A replica that has a version moves to a newer one by applying the commands of the
versions in between to its own book and checking the book hash; these tests check it
ends exactly where a full read (`fetch`) ends, and that anything that does not verify
leaves its book and tree as they were.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import zlib
from typing import Any

import pytest

from exchange.protocol import Entry, InvalidVersion, apply_entry, parse_entry
from exchange.versions import (
    BookTree,
    Version,
    VersionPublisher,
    VersionReader,
    build_command_pages,
)
from exchange.versions._parse import CommandLeaf, parse_page
from orderbook_core import DEFAULT_SPEC, Event, OrderBook
from transports import MemoryNetwork, Transport, dht_key, open_transport

SPEC = DEFAULT_SPEC
TS0 = 1_764_480_000_000

pytestmark = pytest.mark.anyio


def random_commands(count: int, seed: int, *, first: int = 1) -> list[Entry]:
    """New limit orders around 100 and cancels of earlier ones (some already gone)."""
    rng = random.Random(seed)
    entries: list[Entry] = []
    ids: list[tuple[str, str]] = []
    for seq in range(first, first + count):
        if ids and rng.random() < 0.25:
            client, order = ids.pop(rng.randrange(len(ids)))
            command: dict[str, Any] = {"op": "cancel", "clientId": client, "orderId": order}
        else:
            client = f"client{rng.randrange(8)}"
            order = f"{client}-{seq}"
            ids.append((client, order))
            command = {
                "op": "new",
                "clientId": client,
                "orderId": order,
                "side": rng.choice(["buy", "sell"]),
                "price": f"{rng.randrange(9_900, 10_100) / 100:.2f}",
                "amount": f"{rng.randrange(1, 5_000) / 1000:.3f}",
            }
        entries.append(parse_entry(seq, TS0 + seq, command, SPEC))
    return entries


class Matcher:
    """The matcher's side, reduced: apply a run of commands, publish one version."""

    def __init__(self, transport: Transport) -> None:
        self.book = OrderBook(SPEC)
        self.publisher = VersionPublisher(transport, SPEC)
        self.seq = 0

    async def publish(self, entries: list[Entry], *, with_commands: bool = True) -> str:
        events: list[Event] = []
        for entry in entries:
            events.extend(apply_entry(self.book, entry))
        first, self.seq = self.seq + 1, entries[-1].seq
        return await self.publisher.publish(
            self.book,
            events,
            seq=self.seq,
            first=first,
            commands=entries if with_commands else (),
        )


def snapshot(version: Version) -> tuple[Any, ...]:
    return (list(version.book.orders()), version.tree.root, version.tree.pages())


async def test_command_pages_round_trip() -> None:
    entries = random_commands(300, seed=1)
    tree = build_command_pages(entries)
    parsed: list[Entry] = []
    for key, page in tree.pages.items():
        assert len(page.encode()) <= 999
        assert dht_key(page) == key
        item = parse_page(key, page, SPEC)
        if isinstance(item, CommandLeaf):
            parsed.extend(item.entries)
    assert sorted(parsed) == sorted(entries)


@pytest.mark.parametrize("run", [1, 7, 40])
async def test_advancing_ends_where_a_full_read_ends(run: int) -> None:
    network = MemoryNetwork()
    async with open_transport("memory", network=network) as transport:
        matcher = Matcher(transport)
        entries = random_commands(400, seed=run)
        reader = VersionReader(transport, SPEC)
        version = await reader.fetch(await matcher.publish(entries[:100]))
        for start in range(100, 400, run):
            key = await matcher.publish(entries[start : start + run])
            version, events = await reader.advance(version, key)
            assert reader.last_get_count <= 4 + run  # the root and its command pages
            assert next(e.seq for e in events) == start + 1
            full = await VersionReader(transport, SPEC).fetch(key)
            assert version.book == full.book == matcher.book
            assert version.tree.root == full.root.book
            assert version.events == full.events == tuple(events)
    assert version.tree.pages() == BookTree.from_book(matcher.book).pages()


async def held_then_published(
    transport: Transport, entries: list[Entry], held: int
) -> tuple[Matcher, VersionReader, Version, str]:
    """A reader holds the version of the first `held` entries; the rest are then
    published ten a version, unseen. Returns the matcher, the reader, the version it
    holds and the last version's key."""
    matcher = Matcher(transport)
    reader = VersionReader(transport, SPEC)
    version = await reader.fetch(await matcher.publish(entries[:held]))
    key = version.key
    for start in range(held, len(entries), 10):
        key = await matcher.publish(entries[start : start + 10])
    return matcher, reader, version, key


async def test_advancing_walks_back_over_versions_it_never_saw() -> None:
    network = MemoryNetwork()
    async with open_transport("memory", network=network) as transport:
        entries = random_commands(200, seed=3)
        matcher, reader, version, key = await held_then_published(transport, entries, 50)
        version, events = await reader.advance(version, key)
        assert version.book == matcher.book
        assert sorted({e.seq for e in events}) == list(range(51, 201))
        assert {e.seq for e in version.events} == set(range(191, 201))


async def test_versions_already_announced_are_followed_in_one_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fifteen versions behind: one apply, one tree update, one hash check."""
    updates: list[int] = []
    update = BookTree.update

    def counted(tree: BookTree, book: OrderBook, events: Any) -> Any:
        updates.append(1)
        return update(tree, book, events)

    network = MemoryNetwork()
    async with open_transport("memory", network=network) as transport:
        entries = random_commands(200, seed=5)
        matcher, reader, version, key = await held_then_published(transport, entries, 50)
        monkeypatch.setattr(BookTree, "update", counted)
        version, _ = await reader.advance(version, key)
        assert len(updates) == 1
        assert version.book == matcher.book
        assert version.tree.root == version.root.book


async def test_a_chain_longer_than_the_walk_is_refused_and_nothing_changes() -> None:
    network = MemoryNetwork()
    async with open_transport("memory", network=network) as transport:
        entries = random_commands(60, seed=4)
        matcher, reader, version, key = await held_then_published(transport, entries, 10)
        before = snapshot(version)
        with pytest.raises(InvalidVersion, match="no chain of 3 versions"):
            await reader.advance(version, key, max_walk=3)
        assert snapshot(version) == before
        assert (await reader.advance(version, key, max_walk=5))[0].book == matcher.book


async def test_a_version_without_commands_cannot_be_advanced_to() -> None:
    network = MemoryNetwork()
    async with open_transport("memory", network=network) as transport:
        matcher = Matcher(transport)
        entries = random_commands(20, seed=5)
        reader = VersionReader(transport, SPEC)
        version = await reader.fetch(await matcher.publish(entries[:10]))
        key = await matcher.publish(entries[10:], with_commands=False)
        with pytest.raises(InvalidVersion, match="carries no commands"):
            await reader.advance(version, key)
        assert (await reader.fetch(key)).book == matcher.book


async def test_a_version_that_does_not_follow_ours_is_refused() -> None:
    network = MemoryNetwork()
    async with open_transport("memory", network=network) as transport:
        entries = random_commands(20, seed=6)
        one, other = Matcher(transport), Matcher(transport)
        reader = VersionReader(transport, SPEC)
        version = await reader.fetch(await one.publish(entries[:10]))
        another_past = [parse_entry(e.seq, e.ts + 5, e.wire, SPEC) for e in entries[:10]]
        await other.publish(another_past)
        key = await other.publish(entries[10:])
        before = snapshot(version)
        with pytest.raises(InvalidVersion, match="does not follow"):
            await reader.advance(version, key)
        assert snapshot(version) == before


async def forged(
    transport: Transport, version: Version, honest: list[Entry], told: list[Entry]
) -> str:
    """A version after `version` whose root names the book `honest` gives, but whose
    command pages hold `told`: put by hand, as a stranger could."""
    matcher = Matcher(transport)
    matcher.book = version.book.copy()
    matcher.seq = version.root.seq
    matcher.publisher = VersionPublisher(transport, SPEC, prev=version.key)
    root = json.loads(await transport.get(await matcher.publish(honest)) or "")
    pages = build_command_pages(told)
    for page in pages.pages.values():
        await transport.put(page)
    root["commands"] = pages.root
    return await transport.put(json.dumps(root, sort_keys=True, separators=(",", ":")))


@pytest.mark.parametrize("case", ["amount", "side", "ts", "invalid"])
async def test_doctored_commands_are_refused_and_nothing_changes(case: str) -> None:
    network = MemoryNetwork()
    async with open_transport("memory", network=network) as transport:
        entries = random_commands(40, seed=7)
        matcher = Matcher(transport)
        reader = VersionReader(transport, SPEC)
        version = await reader.fetch(await matcher.publish(entries[:30]))
        before = snapshot(version)
        honest = entries[30:]
        doctored = list(honest)
        new = next(i for i, e in enumerate(doctored) if e.wire["op"] == "new")
        command, ts = dict(doctored[new].wire), doctored[new].ts
        if case == "amount":
            command["amount"] = "9.999"
        elif case == "side":
            command["side"] = "buy" if command["side"] == "sell" else "sell"
        elif case == "ts":
            ts += 1  # a resting order's time is in the book hash
        else:
            command["price"] = "-1"
        # Put as a stranger could: the pages carry `command` at `ts`, whatever it is.
        doctored[new] = Entry(doctored[new].command._replace(ts=ts), command)
        key = await forged(transport, version, honest, doctored)
        with pytest.raises(InvalidVersion, match=r"give book|breaks a rule"):
            await reader.advance(version, key)
        assert snapshot(version) == before
        # From the same state, the honest commands advance to the same root's book.
        honest_key = await forged(transport, version, honest, honest)
        advanced, _ = await reader.advance(version, honest_key)
        assert advanced.book == (await VersionReader(transport, SPEC).fetch(key)).book


async def test_a_reader_written_from_the_docs_reads_the_commands() -> None:
    """docs/protocol.md alone: the root's ``commands`` names CZ/CN pages (compressed
    lists of ``[seq, ts, command]`` entries), ``first..seq`` in order."""
    network = MemoryNetwork()
    async with open_transport("memory", network=network) as transport:
        entries = random_commands(120, seed=8)
        matcher = Matcher(transport)
        await matcher.publish(entries[:20])
        key = await matcher.publish(entries[20:])

        async def get(key: str) -> Any:
            text = await transport.get(key)
            assert text is not None
            data = text.encode("utf-8")
            assert hashlib.sha1(b"%d:" % len(data) + data).hexdigest() == key
            return json.loads(text)

        async def walk(key: str) -> list[Any]:
            page = await get(key)
            if page["t"] == "CZ":
                return list(json.loads(zlib.decompress(base64.b64decode(page["z"]))))
            assert page["t"] == "CN"
            return [item for child, _count in page["c"] for item in await walk(child)]

        root = await get(key)
        assert (root["format"], root["first"], root["seq"]) == ("dex-book/3", 21, 120)
        items = await walk(root["commands"])
    assert items == [[e.seq, e.ts, e.wire] for e in entries[20:]]


def zpage(kind: str, payload: bytes | str) -> str:
    text = payload if isinstance(payload, str) else base64.b64encode(payload).decode()
    return json.dumps({"t": kind, "v": 3, "z": text}, separators=(",", ":"))


@pytest.mark.parametrize(
    ("z", "why"),
    [
        ("not base64!", "not base64 of zlib"),
        (base64.b64encode(b"plain bytes").decode(), "not base64 of zlib"),
        (base64.b64encode(zlib.compress(b"[1]") + b"tail").decode(), "one zlib stream"),
        (base64.b64encode(zlib.compress(b"[" + b"1," * 40_000 + b"1]")).decode(), "at most"),
        (base64.b64encode(zlib.compress(b"[1,")).decode(), "does not hold JSON"),
        (base64.b64encode(zlib.compress(b"{}")).decode(), "non-empty list"),
        (base64.b64encode(zlib.compress(b'[[1, 2, "x"]]')).decode(), "JSON object"),
    ],
)
def test_a_hostile_compressed_leaf_is_refused(z: str, why: str) -> None:
    page = zpage("CZ", z)
    with pytest.raises(InvalidVersion, match=why):
        parse_page(dht_key(page), page, SPEC)


def test_plain_list_leaves_are_still_read() -> None:
    entries = random_commands(3, seed=9)
    plain = json.dumps({"t": "CL", "v": 3, "x": [[e.seq, e.ts, e.wire] for e in entries]})
    packed = zpage(
        "CZ", zlib.compress(json.dumps([[e.seq, e.ts, e.wire] for e in entries]).encode())
    )
    for page in (plain, packed):
        parsed = parse_page(dht_key(page), page, SPEC)
        assert isinstance(parsed, CommandLeaf)
        assert list(parsed.entries) == entries


def test_compressed_list_pages_are_few_and_each_fits() -> None:
    entries = random_commands(256, seed=10)
    tree = build_command_pages(entries)
    plain = sum(len(json.dumps([e.seq, e.ts, e.wire])) + 1 for e in entries)
    assert all(len(page) <= 999 for page in tree.pages.values())
    assert len(tree.pages) <= plain / 999 / 3  # at least 3 times fewer than plain pages
