"""Commands under a root the matcher signed are decoded without a second validation.

`SignedCommands` must give exactly the entries the validator gives, for every command
the sequencer journals, and send anything else through the validator.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from support.keys import MATCHER_KEY

from exchange.protocol import Entry, InvalidVersion, apply_entry, new_entry, parse_entry
from exchange.versions import VersionPublisher, VersionReader
from exchange.versions._parse import SignedCommands, _parse_command_entry
from orderbook_core import DEFAULT_SPEC, Event, OrderBook, ValidationError, parse_command
from transports import MemoryNetwork, MemoryTransport

SPEC = DEFAULT_SPEC
TS0 = 1_764_480_000_000

pytestmark = pytest.mark.anyio


def journaled(count: int, seed: int) -> list[Entry]:
    """Commands as the sequencer journals them (normalized): every kind and option."""
    rng = random.Random(seed)
    out: list[Entry] = []
    for seq in range(1, count + 1):
        client = f"client{rng.randrange(5)}"
        order = f"{client}-{rng.randrange(40)}"
        kind = rng.random()
        payload: dict[str, Any] = {"clientId": client, "orderId": order}
        if kind < 0.2:
            payload["op"] = "cancel"
        elif kind < 0.3:
            payload.update(op="modify", amount=f"{rng.randrange(1, 900) / 1000:.3f}")
            if rng.random() < 0.5:
                payload["price"] = f"{rng.randrange(9_900, 10_100) / 100:.2f}"
        else:
            payload.update(side=rng.choice(["buy", "sell"]),
                           amount=f"{rng.randrange(1, 5_000) / 1000:.3f}",
                           tif=rng.choice(["GTC", "IOC", "FOK"]),
                           postOnly=rng.random() < 0.2)  # fmt: skip
            if rng.random() < 0.1:
                payload["ordType"] = "market"
            else:
                payload["price"] = f"{rng.randrange(9_990, 10_010) / 100:.2f}"
        out.append(new_entry(parse_command(payload, SPEC, seq=seq, ts=TS0 + seq), SPEC))
    return out


def test_journaled_commands_decode_as_the_validator_decodes_them() -> None:
    signed = SignedCommands()
    for entry in journaled(2_000, seed=3):
        mine = signed.entry(entry.seq, entry.ts, entry.wire, SPEC)
        assert mine == parse_entry(entry.seq, entry.ts, entry.wire, SPEC) == entry
        assert type(mine.command) is type(entry.command)


@pytest.mark.parametrize(
    "wire",
    [
        # Not the sequencer's form: the validator decides (and normalizes the same way).
        {"clientId": "a", "orderId": "a-1", "side": "BUY", "price": "100", "amount": "1"},
        {"op": "new", "clientId": "a", "orderId": "a-1", "side": "buy", "ordType": "limit",
         "price": "100.00", "amount": "1.000", "tif": "gtc", "postOnly": False},
        {"op": "new", "clientId": "a", "orderId": "a-1", "side": "buy", "ordType": "limit",
         "price": 100, "amount": "1.000", "tif": "GTC", "postOnly": False},
    ],
)  # fmt: skip
def test_other_forms_go_through_the_validator(wire: dict[str, Any]) -> None:
    signed = SignedCommands()
    learn = {"op": "new", "clientId": "b", "orderId": "b-1", "side": "buy", "ordType": "limit",
             "price": "100.00", "amount": "1.000", "tif": "GTC", "postOnly": False}  # fmt: skip
    signed.entry(1, TS0, learn, SPEC)  # its price and amount are known from now on
    assert signed.entry(2, TS0, wire, SPEC) == parse_entry(2, TS0, wire, SPEC)


@pytest.mark.parametrize(
    "change",
    [{"side": "sideways"}, {"tif": "GTD"}, {"postOnly": 1}, {"clientId": 7}, {"price": "0"},
     {"amount": "-1.000"}],
)  # fmt: skip
def test_what_breaks_a_rule_is_still_refused(change: dict[str, Any]) -> None:
    signed = SignedCommands()
    good = {"op": "new", "clientId": "b", "orderId": "b-1", "side": "buy", "ordType": "limit",
            "price": "100.00", "amount": "1.000", "tif": "GTC", "postOnly": False}  # fmt: skip
    signed.entry(1, TS0, good, SPEC)
    with pytest.raises(ValidationError):
        signed.entry(2, TS0, {**good, **change}, SPEC)


async def test_a_signed_reader_follows_versions_to_the_matchers_book() -> None:
    entries = journaled(600, seed=5)
    book = OrderBook(SPEC)
    async with MemoryTransport(MemoryNetwork()) as transport:
        publisher = VersionPublisher(transport, SPEC, signing_key=MATCHER_KEY)
        keys: list[str] = []
        for start in range(0, len(entries), 100):
            run = entries[start : start + 100]
            events: list[Event] = []
            for entry in run:
                events.extend(apply_entry(book, entry))
            root = await publisher.publish(
                book, events, seq=run[-1].seq, first=run[0].seq, commands=run
            )
            keys.append(root)
        reader = VersionReader(transport, SPEC, matcher_key=MATCHER_KEY.public_key())
        version = await reader.fetch(keys[0])
        for key in keys[1:]:
            version, _ = await reader.advance(version, key)
        assert list(version.book.orders()) == list(book.orders())
        assert version.tree.root == (await VersionReader(transport, SPEC).fetch(keys[-1])).root.book


def _one_by_one(items: list[Any]) -> tuple[Entry, ...] | str:
    signed = SignedCommands()
    try:
        return tuple(_parse_command_entry("k" * 40, item, SPEC, signed) for item in items)
    except InvalidVersion as exc:
        return str(exc)


def _leaf(items: list[Any]) -> tuple[Entry, ...] | str:
    try:
        return SignedCommands().entries("k" * 40, items, SPEC)
    except InvalidVersion as exc:
        return str(exc)


GOOD = {"op": "new", "clientId": "b", "orderId": "b-1", "side": "buy", "ordType": "limit",
        "price": "100.00", "amount": "1.000", "tif": "GTC", "postOnly": False}  # fmt: skip


@pytest.mark.parametrize(
    "odd",
    [
        [3, TS0, {**GOOD, "side": "sideways"}], [3, TS0, {**GOOD, "tif": "GTD"}],
        [3, TS0, {**GOOD, "postOnly": 1}], [3, TS0, {**GOOD, "clientId": 7}],
        [3, TS0, {**GOOD, "price": "0"}], [3, TS0, {**GOOD, "price": "100.10"}],
        [3, TS0, {**GOOD, "more": 1}], [3, TS0, {"op": "cancel", "clientId": "b"}],
        [3, TS0, {"op": "cancel", "clientId": "b", "orderId": "b-1", "x": 1}],
        [True, TS0, GOOD], [3, -1, GOOD], [0, TS0, GOOD], [3, TS0, [GOOD]], [3, TS0],
        "text", [3, 1.5, GOOD], [3, TS0, {**GOOD, "ordType": "market"}],
        [3, TS0, {**GOOD, "op": "modify"}], [3, TS0, {**GOOD, "side": "BUY"}],
    ],
)  # fmt: skip
def test_a_leaf_decodes_as_its_items_one_by_one(odd: Any) -> None:
    """`SignedCommands.entries` (a leaf's loop) gives what `_parse_command_entry` gives
    item by item: the same entries, or the same error."""
    cancel = [2, TS0 + 2, {"op": "cancel", "clientId": "b", "orderId": "b-1"}]
    items = [[1, TS0 + 1, GOOD], cancel, odd, [4, TS0 + 4, {**GOOD, "orderId": "b-4"}]]
    assert _leaf(items) == _one_by_one(items)


def test_journaled_leaves_decode_as_their_items_one_by_one() -> None:
    entries = journaled(2_000, seed=5)
    items: list[Any] = [[e.seq, e.ts, e.wire] for e in entries]
    decoded = _leaf(items)
    assert decoded == _one_by_one(items)
    assert decoded == tuple(parse_entry(e.seq, e.ts, e.wire, SPEC) for e in entries)
