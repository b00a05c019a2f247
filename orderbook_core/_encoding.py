"""Canonical encoding of a whole book, its decoding, and the one canonical JSON.

The encoding is a pure function of the book's *content*: the market spec and the
resting orders in canonical order (asks ascending, bids descending, time priority
within a level). It never looks at internal layout (heaps, cancelled entries still
queued, dict order), so two books that hold the same orders in the same priority
encode to the same bytes, whatever history led to them, and compare equal.

Format ``orderbook-core/1``: compact JSON (no spaces, keys sorted, ASCII only) ::

    {"asks":[[price,[[clientId,orderId,remaining,seq,ts],...]],...],
     "bids":[...same, bids descending...],
     "format":"orderbook-core/1",
     "spec":{"lotSize":"0.001","market":"BTC-USD","maxAmount":"1000000",...}}

Prices are ticks and remaining amounts lots (integers); spec decimals are strings
with trailing zeros removed, so equal specs encode equally.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from orderbook_core._book import OrderBook
from orderbook_core._spec import MarketSpec
from orderbook_core._types import RestingOrder, SelfTradePrevention, Side

__all__ = ["FORMAT", "canonical_json", "decode_book", "encode_book"]

FORMAT = "orderbook-core/1"

_SPEC_FIELDS = (
    ("lotSize", "lot_size"),
    ("maxAmount", "max_amount"),
    ("maxPrice", "max_price"),
    ("minAmount", "min_amount"),
    ("minPrice", "min_price"),
    ("tickSize", "tick_size"),
)


def canonical_json(value: Any) -> str:
    """The one canonical JSON text of a wire value: sorted keys, no spaces, ASCII only.

    Everything the project hashes, dedupes or compares as text (the book encoding, the
    journal's commands, the pages and roots of a version) goes through this function,
    so two equal values always give the same bytes.

    Raises:
        ValueError: `value` holds NaN or an infinity (not JSON).
        TypeError: `value` holds something JSON cannot carry.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def _canonical_decimal(value: Decimal) -> str:
    """Plain notation, no exponent, no trailing zeros: exact and context-free."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _spec_to_json(spec: MarketSpec) -> dict[str, str]:
    out = {wire: _canonical_decimal(getattr(spec, attr)) for wire, attr in _SPEC_FIELDS}
    out["market"] = spec.market
    out["selfTrade"] = spec.self_trade.value
    return out


def _side_to_json(book: OrderBook, side: Side) -> list[Any]:
    out: list[Any] = []
    current: list[Any] | None = None
    price = None
    for o in book.orders(side):
        if o.price != price:
            price = o.price
            current = []
            out.append([price, current])
        assert current is not None
        current.append([o.client_id, o.order_id, o.remaining, o.seq, o.ts])
    return out


def encode_book(book: OrderBook) -> bytes:
    """The canonical bytes of ``book``. O(n + L log L).

    Args:
        book: the book to encode.

    Returns:
        Compact, key-sorted ASCII JSON (format ``orderbook-core/1``).
    """
    doc = {
        "asks": _side_to_json(book, Side.SELL),
        "bids": _side_to_json(book, Side.BUY),
        "format": FORMAT,
        "spec": _spec_to_json(book.spec),
    }
    return canonical_json(doc).encode()


def _fail(rule: str) -> ValueError:
    return ValueError(f"not a canonical {FORMAT} book: {rule}")


def _int(value: object, what: str) -> int:
    if type(value) is not int:
        raise _fail(f"{what} must be an integer")
    return value


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _fail(f"{what} must be a string")
    return value


def _decode_spec(obj: object) -> MarketSpec:
    if not isinstance(obj, dict):
        raise _fail("spec must be an object")
    expected = {wire for wire, _ in _SPEC_FIELDS} | {"market", "selfTrade"}
    if set(obj) != expected:
        raise _fail(f"spec keys must be {sorted(expected)}")
    kwargs: dict[str, Any] = {}
    for wire, attr in _SPEC_FIELDS:
        text = _str(obj[wire], f"spec.{wire}")
        try:
            kwargs[attr] = Decimal(text)
        except InvalidOperation:
            raise _fail(f"spec.{wire} must be a decimal string") from None
    try:
        return MarketSpec(
            market=_str(obj["market"], "spec.market"),
            self_trade=SelfTradePrevention(_str(obj["selfTrade"], "spec.selfTrade")),
            **kwargs,
        )
    except (ValueError, TypeError) as exc:
        raise _fail(f"spec: {exc}") from None


def decode_book(data: bytes) -> OrderBook:
    """Rebuild a book from :func:`encode_book` output. O(n + L log L).

    Decoding then encoding gives the same bytes back; the decoded book behaves
    exactly like the encoded one for every later command.

    Args:
        data: the canonical bytes.

    Returns:
        A new :class:`OrderBook`.

    Raises:
        ValueError: ``data`` is not a well-formed, consistent, canonical encoding
            (bad JSON, wrong structure, duplicate ids, crossed or mis-sorted book,
            or bytes that differ from the canonical re-encoding).
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(f"invalid JSON ({exc})") from None
    if not isinstance(doc, dict) or set(doc) != {"asks", "bids", "format", "spec"}:
        raise _fail("top level must be an object with asks, bids, format, spec")
    if doc["format"] != FORMAT:
        raise _fail(f"format must be {FORMAT!r}")
    spec = _decode_spec(doc["spec"])
    orders: list[RestingOrder] = []
    for key, side in (("asks", Side.SELL), ("bids", Side.BUY)):
        levels = doc[key]
        if not isinstance(levels, list):
            raise _fail(f"{key} must be a list")
        for level in levels:
            if not (isinstance(level, list) and len(level) == 2 and isinstance(level[1], list)):
                raise _fail(f"{key}: a level is [price, [orders...]]")
            price = _int(level[0], f"{key} price")
            if not level[1]:
                raise _fail(f"{key}: empty level {price}")
            for entry in level[1]:
                if not (isinstance(entry, list) and len(entry) == 5):
                    raise _fail(f"{key}: an order is [clientId, orderId, remaining, seq, ts]")
                client_id = _str(entry[0], "clientId")
                order_id = _str(entry[1], "orderId")
                remaining = _int(entry[2], "remaining")
                seq = _int(entry[3], "seq")
                ts = _int(entry[4], "ts")
                orders.append(RestingOrder(client_id, order_id, side, price, remaining, seq, ts))
    try:
        book = OrderBook.from_orders(spec, orders)
    except (ValueError, TypeError) as exc:
        raise _fail(str(exc)) from None
    if encode_book(book) != data:
        raise _fail("bytes differ from the canonical encoding (order, spacing or duplicates)")
    return book
