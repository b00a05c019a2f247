"""Parse one page of a version's trees and check it: pure, validating, O(page size).

A page comes from the DHT, which anyone can write to, so everything is checked: its
content against its key, its size, the JSON shape of its kind and the type of every
field (`parse_page`). Its place in a tree (heights, counts, order) is the reader's
to check. The format is ``_format``'s; docs/protocol.md, "Versions in the DHT".
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any, NamedTuple

from exchange.protocol import Entry, InvalidVersion, parse_entry
from exchange.versions._format import (
    BOOK_LEAF,
    BOOK_NODE,
    CODE_SIDE,
    COMMAND_LEAF,
    COMMAND_NODE,
    COMMAND_ZLEAF,
    EVENT_LEAF,
    EVENT_NODE,
    EVENT_ZLEAF,
    MAX_LIST_LEAF_TEXT,
    MAX_ORDER_NUMBER,
    MAX_PAGE_BYTES,
    MAX_TREE_HEIGHT,
    PAGE_VERSION,
)
from orderbook_core import (
    ID_RULE,
    CancelOrder,
    Event,
    MarketSpec,
    NewOrder,
    RestingOrder,
    Side,
    TimeInForce,
    ValidationError,
    event_from_wire,
    is_identifier,
)
from transports import dht_key, is_dht_key

__all__ = [
    "BookLeaf",
    "BookNode",
    "CommandLeaf",
    "CommandNode",
    "EventLeaf",
    "EventNode",
    "Page",
    "SignedCommands",
    "parse_page",
]

_PLAIN_LEAF = {EVENT_ZLEAF: EVENT_LEAF, COMMAND_ZLEAF: COMMAND_LEAF}
_LIST_FIELD = {EVENT_LEAF: "e", COMMAND_LEAF: "x"}


class BookLeaf(NamedTuple):
    """A parsed book leaf: its orders, in canonical order."""

    orders: tuple[RestingOrder, ...]


class BookNode(NamedTuple):
    """A parsed book node: its height (>= 1) and its ``(key, order count)`` children."""

    height: int
    children: tuple[tuple[str, int], ...]


class EventLeaf(NamedTuple):
    """A parsed event leaf: its events, in order."""

    events: tuple[Event, ...]


class EventNode(NamedTuple):
    """A parsed event node: its height (>= 1) and its ``(key, event count)`` children."""

    height: int
    children: tuple[tuple[str, int], ...]


class CommandLeaf(NamedTuple):
    """A parsed command leaf: its entries, in seq order, their commands validated."""

    entries: tuple[Entry, ...]


class CommandNode(NamedTuple):
    """A parsed command node: its height (>= 1) and its ``(key, entry count)`` children."""

    height: int
    children: tuple[tuple[str, int], ...]


Page = BookLeaf | BookNode | EventLeaf | EventNode | CommandLeaf | CommandNode


def _is_int(value: object) -> bool:
    return type(value) is int


def _bad(key: str, why: str) -> InvalidVersion:
    return InvalidVersion(f"page {key}: {why}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_group(key: str, item: object) -> list[RestingOrder]:
    if not (isinstance(item, list) and len(item) == 3):
        raise _bad(key, "a price group is a list [side, price, orders]")
    side, price, orders = item
    if side not in CODE_SIDE:
        raise _bad(key, f"order side must be 's' or 'b', not {side!r}")
    if not (_is_int(price) and price > 0):
        raise _bad(key, "order price must be a positive integer")
    if not (isinstance(orders, list) and orders):
        raise _bad(key, "a price group has a non-empty list of orders")
    return [_parse_order(key, CODE_SIDE[side], price, order) for order in orders]


def _parse_order(key: str, side: Side, price: int, item: object) -> RestingOrder:
    if not (isinstance(item, list) and len(item) == 5):
        raise _bad(key, "an order is a list of 5 items")
    remaining, client_id, order_id, seq, ts = item
    if not (_is_int(remaining) and remaining > 0):
        raise _bad(key, "order remaining must be a positive integer")
    for name, value in (("seq", seq), ("ts", ts)):
        if not _is_int(value):
            raise _bad(key, f"order {name} must be an integer")
    # Anyone can store a version whose tree is canonical for the orders it lists, so the
    # ids are checked against the submit_order rule: no control characters or other
    # bytes a client would print, and at most 64 characters once expanded.
    if not is_identifier(client_id):
        raise _bad(key, f"order client_id must be {ID_RULE}")
    if _is_int(order_id) and 0 <= order_id < MAX_ORDER_NUMBER:
        order_id = f"{client_id}-{order_id}"
    elif not isinstance(order_id, str):
        raise _bad(key, "order order_id must be a string or an integer in 0..10**15-1")
    if not is_identifier(order_id):
        raise _bad(key, f"order order_id must be {ID_RULE}")
    return RestingOrder(client_id, order_id, side, price, remaining, seq, ts)


def _parse_children(key: str, obj: dict[str, Any]) -> tuple[int, tuple[tuple[str, int], ...]]:
    height, children = obj.get("h"), obj.get("c")
    if not (type(height) is int and 1 <= height <= MAX_TREE_HEIGHT):
        raise _bad(key, f"node height must be an integer in 1..{MAX_TREE_HEIGHT}")
    if not (isinstance(children, list) and children):
        raise _bad(key, "a node has a non-empty list of children")
    parsed: list[tuple[str, int]] = []
    for child in children:
        if not (isinstance(child, list) and len(child) == 2):
            raise _bad(key, "a child is a [key, count] pair")
        child_key, count = child
        if not is_dht_key(child_key):
            raise _bad(key, "a child key must be 40 lowercase hex characters")
        if not (_is_int(count) and count >= 1):
            raise _bad(key, "a child count must be a positive integer")
        parsed.append((child_key, count))
    return height, tuple(parsed)


class SignedCommands:
    """Decodes the commands of pages under a root the matcher signed, cheaply.

    Such commands were validated by the sequencer and applied by the matcher, whose
    signature covers them (root, then page keys): running the core's validator on each
    again proves nothing more. A command in the exact form the sequencer journals
    (``command_to_wire``: a limit order or a cancel) is decoded here from its fields,
    its price and amount strings looked up among those the validator already turned
    into ticks and lots; anything else (market orders, modifies, a string not seen yet)
    goes through the validator, which teaches it its price and amount. Only for a
    reader that requires the matcher's signature on every root.

    With ``check_ids`` it also holds both ids to the id rule (else the validator
    decodes the command, and refuses it): then a command is decoded exactly as the
    validator decodes it, or refused as it refuses it (the matcher's `BatchDecoder`).
    """

    _UNITS_KEPT = 65_536

    def __init__(self, *, check_ids: bool = False) -> None:
        self._ticks: dict[str, int] = {}
        self._lots: dict[str, int] = {}
        self._check_ids = check_ids

    def entry(self, seq: int, ts: int, command: dict[str, Any], spec: MarketSpec) -> Entry:
        """The entry of `command`, numbered `seq` at `ts`.

        Raises:
            orderbook_core.ValidationError: it went through the validator and broke a rule.
        """
        entry = self._decode(seq, ts, command)
        if entry is None:
            entry = parse_entry(seq, ts, command, spec)
            self._learn(entry)
        return entry

    def entries(self, key: str, items: list[Any], spec: MarketSpec) -> tuple[Entry, ...]:
        """The entries of a command leaf's `items` (``[seq, ts, command]`` each), as
        `_parse_command_entry` gives them one by one: the plain shapes decoded here in
        one loop (the decode above, inlined: a replica's largest cost of a page), any
        other item through `_parse_command_entry` itself (same entry, same error).

        Raises:
            InvalidVersion: an item is not a command, or breaks a rule.
        """
        out: list[Entry] = []
        append = out.append
        ticks, lots, sides, tifs = self._ticks, self._lots, _EXACT_SIDES, _EXACT_TIFS
        plain = not self._check_ids
        for item in items:
            if plain and type(item) is list and len(item) == 3:
                seq, ts, command = item
                if (
                    type(seq) is int
                    and type(ts) is int
                    and type(command) is dict
                    and seq >= 1
                    and ts >= 0
                    and type(client := command.get("clientId")) is str
                    and type(order := command.get("orderId")) is str
                ):
                    op = command.get("op")
                    if op == "cancel" and len(command) == 3:
                        append(Entry(CancelOrder(seq, ts, client, order), command))
                        continue
                    side, tif = command.get("side"), command.get("tif")
                    price, amount = command.get("price"), command.get("amount")
                    if (
                        op == "new"
                        and len(command) == 9
                        and command.get("ordType") == "limit"
                        and type(side) is str
                        and type(price) is str
                        and type(amount) is str
                        and type(tif) is str
                        and type(post_only := command.get("postOnly")) is bool
                        and side in sides
                        and tif in tifs
                        and (t := ticks.get(price)) is not None
                        and (n := lots.get(amount)) is not None
                    ):
                        new = NewOrder(
                            seq, ts, client, order, sides[side], t, n, tifs[tif], post_only
                        )
                        append(Entry(new, command))
                        continue
            append(_parse_command_entry(key, item, spec, self))
        return tuple(out)

    def _decode(self, seq: int, ts: int, command: dict[str, Any]) -> Entry | None:
        client, order = command.get("clientId"), command.get("orderId")
        if type(client) is not str or type(order) is not str:
            return None
        if self._check_ids and not (is_identifier(client) and is_identifier(order)):
            return None
        op = command.get("op")
        if op == "cancel":
            return (
                Entry(CancelOrder(seq, ts, client, order), command) if len(command) == 3 else None
            )
        if op != "new" or len(command) != 9 or command.get("ordType") != "limit":
            return None
        side, price, amount = command.get("side"), command.get("price"), command.get("amount")
        tif, post_only = command.get("tif"), command.get("postOnly")
        if not (type(side) is str and type(price) is str and type(amount) is str):
            return None
        if type(tif) is not str or type(post_only) is not bool:
            return None
        sides, tifs = _EXACT_SIDES, _EXACT_TIFS
        ticks, lots = self._ticks.get(price), self._lots.get(amount)
        if ticks is None or lots is None or side not in sides or tif not in tifs:
            return None
        new = NewOrder(seq, ts, client, order, sides[side], ticks, lots, tifs[tif], post_only)
        return Entry(new, command)

    def _learn(self, entry: Entry) -> None:
        command, wire = entry.command, entry.wire
        if not isinstance(command, NewOrder) or command.price is None:
            return
        price, amount = wire.get("price"), wire.get("amount")
        if type(price) is str and type(amount) is str:
            if len(self._ticks) >= self._UNITS_KEPT or len(self._lots) >= self._UNITS_KEPT:
                self._ticks.clear()
                self._lots.clear()
            self._ticks[price] = command.price
            self._lots[amount] = command.amount


_PAGE_KEYS = {
    BOOK_LEAF: frozenset({"o", "t", "v"}),
    EVENT_LEAF: frozenset({"e", "t", "v"}),
    COMMAND_LEAF: frozenset({"x", "t", "v"}),
    EVENT_ZLEAF: frozenset({"z", "t", "v"}),
    COMMAND_ZLEAF: frozenset({"z", "t", "v"}),
    BOOK_NODE: frozenset({"c", "h", "t", "v"}),
    EVENT_NODE: frozenset({"c", "h", "t", "v"}),
    COMMAND_NODE: frozenset({"c", "h", "t", "v"}),
}
"""Each page type's keys, exactly."""

_EXACT_SIDES = {side.value: side for side in Side}
_EXACT_TIFS = {tif.value: tif for tif in TimeInForce}


def parse_page(
    key: str, text: str, spec: MarketSpec, *, signed: SignedCommands | None = None
) -> Page:
    """Check that `text` is the page stored under `key` and parse it.

    Verifies the content against the key (``dht_key(text) == key``), the size bound,
    the JSON shape of its type and the type of every field. It does not check the
    page's place in a tree (heights, counts, order): the reader does. O(len(text)).

    Args:
        key: the DHT key the page was fetched under.
        text: the value the DHT returned.
        spec: the market, to decode events (`event_from_wire`) and validate commands.
        signed: given when the page is reached from a root the matcher signed (and
            only then): its commands are decoded without the validator where they
            are in the sequencer's form (`SignedCommands`).

    Raises:
        InvalidVersion: the content does not match the key, or is not a valid page.
    """
    if not isinstance(text, str) or dht_key(text) != key:
        raise _bad(key, "content does not match its hash")
    if len(text.encode("utf-8")) > MAX_PAGE_BYTES:
        raise _bad(key, f"larger than {MAX_PAGE_BYTES} bytes")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise _bad(key, f"not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise _bad(key, "not a JSON object")
    kind = obj.get("t")
    if obj.get("v") != PAGE_VERSION or not _is_int(obj.get("v")):
        raise _bad(key, f"page version must be {PAGE_VERSION}")
    expected = _PAGE_KEYS.get(kind) if isinstance(kind, str) else None
    if expected is None:
        raise _bad(key, f"unknown page type {kind!r}")
    if obj.keys() != expected:
        raise _bad(key, f"a {kind} page has exactly the keys {sorted(expected)}")
    if kind == BOOK_LEAF:
        items = obj["o"]
        if not (isinstance(items, list) and items):
            raise _bad(key, "a leaf has a non-empty list of price groups")
        return BookLeaf(tuple(order for item in items for order in _parse_group(key, item)))
    if kind in _PLAIN_LEAF:
        kind = _PLAIN_LEAF[kind]
        obj = {_LIST_FIELD[kind]: _inflate(key, obj["z"])}
    if kind == EVENT_LEAF:
        items = obj["e"]
        if not (isinstance(items, list) and items):
            raise _bad(key, "an event leaf has a non-empty list of events")
        return EventLeaf(tuple(_parse_event(key, item, spec) for item in items))
    if kind == COMMAND_LEAF:
        items = obj["x"]
        if not (isinstance(items, list) and items):
            raise _bad(key, "a command leaf has a non-empty list of commands")
        if signed is not None:
            return CommandLeaf(signed.entries(key, items, spec))
        return CommandLeaf(tuple(_parse_command_entry(key, item, spec, signed) for item in items))
    height, children = _parse_children(key, obj)
    if kind == BOOK_NODE:
        return BookNode(height, children)
    if kind == COMMAND_NODE:
        return CommandNode(height, children)
    return EventNode(height, children)


def _inflate(key: str, text: object) -> object:
    """The JSON value compressed in a list leaf's ``"z"``, at most `MAX_LIST_LEAF_TEXT`."""
    if not isinstance(text, str):
        raise _bad(key, '"z" must be a base64 string')
    try:
        data = base64.b64decode(text, validate=True)
        inflater = zlib.decompressobj()
        plain = inflater.decompress(data, MAX_LIST_LEAF_TEXT)
    except (binascii.Error, zlib.error) as exc:
        raise _bad(key, f'"z" is not base64 of zlib data ({exc})') from None
    if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
        raise _bad(key, f'"z" is not one zlib stream of at most {MAX_LIST_LEAF_TEXT} bytes')
    try:
        return json.loads(plain.decode("utf-8"), parse_constant=_reject_constant)
    except ValueError as exc:
        raise _bad(key, f'"z" does not hold JSON ({exc})') from None


def _parse_command_entry(
    key: str, item: object, spec: MarketSpec, signed: SignedCommands | None
) -> Entry:
    if not (isinstance(item, list) and len(item) == 3):
        raise _bad(key, "a command is a list [seq, ts, command]")
    seq, ts, command = item
    if not (_is_int(seq) and seq >= 1 and _is_int(ts) and ts >= 0):
        raise _bad(key, "a command's seq must be an integer >= 1 and its ts >= 0")
    if not isinstance(command, dict):
        raise _bad(key, "a command is a JSON object")
    try:
        if signed is not None:
            return signed.entry(seq, ts, command, spec)
        return parse_entry(seq, ts, command, spec)
    except ValidationError as exc:
        raise _bad(key, f"command {seq} breaks a rule ({exc})") from None


def _parse_event(key: str, item: object, spec: MarketSpec) -> Event:
    if not isinstance(item, dict):
        raise _bad(key, "an event is a JSON object")
    try:
        return event_from_wire(item, spec)
    except (ValueError, TypeError, KeyError) as exc:
        raise _bad(key, f"bad event ({exc})") from None
