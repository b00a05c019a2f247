"""The wire codec: checks of untrusted input and the wire form of commands and events.

The public functions here are wrapped, with their documentation, by
:mod:`orderbook_core._wire`: this module is compiled in the compiled build (mypyc keeps
no docstrings), the wrappers are not. The rules are in _wire's docstring.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Final

from orderbook_core._errors import ValidationError
from orderbook_core._spec import MarketSpec
from orderbook_core._types import (
    CancelOrder,
    CancelReason,
    Command,
    Event,
    ModifyOrder,
    NewOrder,
    OrderAccepted,
    OrderCancelled,
    OrderModified,
    OrderRejected,
    OrderRested,
    RejectReason,
    Side,
    TimeInForce,
    Trade,
)

__all__ = [
    "ID_RULE",
    "command_to_wire",
    "event_from_wire",
    "event_to_wire",
    "is_identifier",
    "parse_command",
]

_ID_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
ID_RULE: Final = "1-64 characters of [A-Za-z0-9_.-]"
"""The rule every clientId and orderId obeys, as the error messages state it."""
_TRADE_ID_RE: Final = re.compile(r"(0|[1-9][0-9]{0,30})\.[1-9][0-9]{0,30}")
_DECIMAL_RE: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_NONFINITE: Final = frozenset({"nan", "snan", "inf", "infinity"})
_MAX_NUMBER_LEN: Final = 64

_COMMON: Final = frozenset({"op", "clientId", "orderId"})
_ALLOWED: Final = {
    "new": _COMMON | {"side", "type", "ordType", "price", "amount", "tif", "postOnly"},
    "cancel": _COMMON,
    "modify": _COMMON | {"price", "amount"},
}


# --------------------------------------------------------------------------- fields


def is_identifier(value: object) -> bool:
    """The implementation of :func:`orderbook_core.is_identifier` (documented there)."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def _identifier(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    if not _ID_RE.fullmatch(value):
        raise ValidationError(field, f"must be {ID_RULE}")
    return value


def _decimal(value: object, field: str, *, allow_zero: bool = False) -> Decimal:
    """A positive (or, with ``allow_zero``, non-negative) exact Decimal from a decimal
    string or a JSON integer."""
    if isinstance(value, bool):
        raise ValidationError(field, "must be a decimal string or an integer, not a boolean")
    if isinstance(value, float):
        raise ValidationError(
            field, 'must be a decimal string or an integer, not a JSON float (send "100.5")'
        )
    if isinstance(value, int):
        if value < 0 or (value == 0 and not allow_zero):
            raise ValidationError(field, "must be > 0")
        return Decimal(value)
    if not isinstance(value, str):
        raise ValidationError(field, "must be a decimal string or an integer")
    if len(value) > _MAX_NUMBER_LEN:
        raise ValidationError(field, f"must be at most {_MAX_NUMBER_LEN} characters")
    if _DECIMAL_RE.fullmatch(value):
        number = Decimal(value)
        if number == 0 and not allow_zero:
            raise ValidationError(field, "must be > 0")
        return number
    bare = value.strip().lstrip("+-").lower()
    if bare in _NONFINITE:
        raise ValidationError(field, "must be a finite number")
    if value.startswith("-") and _DECIMAL_RE.fullmatch(value[1:]):
        raise ValidationError(field, "must be > 0")
    if "e" in bare and _DECIMAL_RE.fullmatch(bare.replace("e", "", 1).replace("-", "", 1)):
        raise ValidationError(field, "exponent notation is not allowed")
    raise ValidationError(field, 'must be a plain decimal string such as "100.5"')


def _price(value: object, spec: MarketSpec, field: str = "price") -> int:
    number = _decimal(value, field)
    try:
        ticks = spec.price_to_ticks(number)
    except ValueError:
        raise ValidationError(field, f"not a multiple of {spec.tick_size}") from None
    if not spec.min_ticks <= ticks <= spec.max_ticks:
        raise ValidationError(field, f"must be between {spec.min_price} and {spec.max_price}")
    return ticks


def _amount(value: object, spec: MarketSpec, field: str = "amount") -> int:
    number = _decimal(value, field)
    try:
        lots = spec.amount_to_lots(number)
    except ValueError:
        raise ValidationError(field, f"not a multiple of {spec.lot_size}") from None
    if not spec.min_lots <= lots <= spec.max_lots:
        raise ValidationError(field, f"must be between {spec.min_amount} and {spec.max_amount}")
    return lots


def _choice(value: object, field: str, choices: dict[str, Any]) -> Any:
    # ASCII case-insensitive only: str.lower() also folds non-ASCII letters, and the
    # Kelvin sign (U+212A) lowers to "k", so "FO\u212a" would pass as "fok".
    if isinstance(value, str) and value.isascii():
        found = choices.get(value.lower())
        if found is not None:
            return found
    names = ", ".join(f'"{c}"' for c in choices)
    raise ValidationError(field, f"must be one of {names}")


_SIDES: Final = {"buy": Side.BUY, "sell": Side.SELL}
_TIFS: Final = {"gtc": TimeInForce.GTC, "ioc": TimeInForce.IOC, "fok": TimeInForce.FOK}
_ORD_TYPES: Final = {"limit": "limit", "market": "market"}
_OPS: Final = {"new": "new", "cancel": "cancel", "modify": "modify"}


# --------------------------------------------------------------------------- commands


def _plain(number: Decimal) -> str:
    """A decimal string the validator accepts: never exponent notation, which ``str``
    gives for 7 or more decimals (``str(Decimal("0.00000001")) == "1E-8"``)."""
    return format(number, "f")


def parse_command(
    payload: object,
    spec: MarketSpec,
    *,
    seq: int,
    ts: int,
    default_order_id: str | None = None,
) -> Command:
    """The implementation of :func:`orderbook_core.parse_command` (documented there)."""
    if not isinstance(payload, dict):
        raise ValidationError("payload", "must be a JSON object")
    op = _choice(payload.get("op", "new"), "op", _OPS)
    for key in sorted(payload, key=str):
        if not isinstance(key, str) or key not in _ALLOWED[op]:
            known = key if isinstance(key, str) else repr(key)
            if isinstance(key, str) and any(key in allowed for allowed in _ALLOWED.values()):
                raise ValidationError(known, f'not allowed with op "{op}"')
            raise ValidationError(known, "unknown field")
    if "clientId" not in payload:
        raise ValidationError("clientId", "required")
    client_id = _identifier(payload["clientId"], "clientId")
    if "orderId" in payload:
        order_id = _identifier(payload["orderId"], "orderId")
    elif op == "new" and default_order_id is not None:
        order_id = _identifier(default_order_id, "orderId")
    else:
        raise ValidationError("orderId", "required")

    if op == "cancel":
        return CancelOrder(seq, ts, client_id, order_id)
    if op == "modify":
        if "price" not in payload and "amount" not in payload:
            raise ValidationError("amount", "modify needs a price and/or an amount")
        price = _price(payload["price"], spec) if "price" in payload else None
        amount = _amount(payload["amount"], spec) if "amount" in payload else None
        return ModifyOrder(seq, ts, client_id, order_id, price, amount)

    side: Side | None = None
    if "side" in payload:
        side = _choice(payload["side"], "side", _SIDES)
    if "type" in payload:
        alias = _choice(payload["type"], "type", _SIDES)
        if side is not None and alias is not side:
            raise ValidationError("type", "conflicts with side")
        side = alias
    if side is None:
        raise ValidationError("side", "required")
    ord_type = _choice(payload.get("ordType", "limit"), "ordType", _ORD_TYPES)
    if ord_type == "market":
        if "price" in payload:
            raise ValidationError("price", "must be absent for a market order")
        limit_price: int | None = None
    elif "price" not in payload:
        raise ValidationError("price", 'required (send "ordType": "market" for a market order)')
    else:
        limit_price = _price(payload["price"], spec)
    if "amount" not in payload:
        raise ValidationError("amount", "required")
    amount_lots = _amount(payload["amount"], spec)
    tif = _choice(payload.get("tif", "GTC"), "tif", _TIFS)
    post_only = payload.get("postOnly", False)
    if not isinstance(post_only, bool):
        raise ValidationError("postOnly", "must be true or false")
    return NewOrder(seq, ts, client_id, order_id, side, limit_price, amount_lots, tif, post_only)


def command_to_wire(cmd: Command, spec: MarketSpec) -> dict[str, Any]:
    """The implementation of :func:`orderbook_core.command_to_wire` (documented there)."""
    if isinstance(cmd, NewOrder):
        out: dict[str, Any] = {
            "op": "new",
            "clientId": cmd.client_id,
            "orderId": cmd.order_id,
            "side": cmd.side.value,
            "ordType": "market" if cmd.price is None else "limit",
        }
        if cmd.price is not None:
            out["price"] = _plain(spec.ticks_to_price(cmd.price))
        out["amount"] = _plain(spec.lots_to_amount(cmd.amount))
        out["tif"] = cmd.tif.value
        out["postOnly"] = cmd.post_only
        return out
    if isinstance(cmd, CancelOrder):
        return {"op": "cancel", "clientId": cmd.client_id, "orderId": cmd.order_id}
    if isinstance(cmd, ModifyOrder):
        out = {"op": "modify", "clientId": cmd.client_id, "orderId": cmd.order_id}
        if cmd.price is not None:
            out["price"] = _plain(spec.ticks_to_price(cmd.price))
        if cmd.amount is not None:
            out["amount"] = _plain(spec.lots_to_amount(cmd.amount))
        return out
    raise TypeError(f"not a command: {cmd!r}")


# --------------------------------------------------------------------------- events

# Per event: its wire "type", then (attribute, wire name, kind) for every field.
_EVENT_FIELDS: Final[dict[type[Any], tuple[str, tuple[tuple[str, str, str], ...]]]] = {
    OrderAccepted: (
        "accepted",
        (
            ("seq", "seq", "int"),
            ("client_id", "clientId", "id"),
            ("order_id", "orderId", "id"),
            ("side", "side", "side"),
            ("price", "price", "price?"),
            ("amount", "amount", "amount"),
        ),
    ),
    Trade: (
        "trade",
        (
            ("seq", "seq", "int"),
            ("trade_id", "tradeId", "trade_id"),
            ("ts", "ts", "int"),
            ("price", "price", "price"),
            ("amount", "amount", "amount"),
            ("taker_side", "takerSide", "side"),
            ("maker_client_id", "makerClientId", "id"),
            ("maker_order_id", "makerOrderId", "id"),
            ("maker_remaining", "makerRemaining", "amount"),
            ("taker_client_id", "takerClientId", "id"),
            ("taker_order_id", "takerOrderId", "id"),
        ),
    ),
    OrderRested: (
        "rested",
        (
            ("seq", "seq", "int"),
            ("client_id", "clientId", "id"),
            ("order_id", "orderId", "id"),
            ("side", "side", "side"),
            ("price", "price", "price"),
            ("amount", "amount", "amount"),
        ),
    ),
    OrderCancelled: (
        "cancelled",
        (
            ("seq", "seq", "int"),
            ("client_id", "clientId", "id"),
            ("order_id", "orderId", "id"),
            ("side", "side", "side"),
            ("price", "price", "price?"),
            ("amount", "amount", "amount"),
            ("reason", "reason", "cancel_reason"),
        ),
    ),
    OrderRejected: (
        "rejected",
        (
            ("seq", "seq", "int"),
            ("client_id", "clientId", "id"),
            ("order_id", "orderId", "id"),
            ("reason", "reason", "reject_reason"),
        ),
    ),
    OrderModified: (
        "modified",
        (
            ("seq", "seq", "int"),
            ("client_id", "clientId", "id"),
            ("order_id", "orderId", "id"),
            ("side", "side", "side"),
            ("price", "price", "price"),
            ("amount", "amount", "amount"),
            ("old_price", "oldPrice", "price"),
            ("old_amount", "oldAmount", "amount"),
            ("priority_kept", "priorityKept", "bool"),
        ),
    ),
}
_EVENT_BY_TYPE: Final = {name: (cls, fields) for cls, (name, fields) in _EVENT_FIELDS.items()}


def _to_wire(kind: str, value: Any, spec: MarketSpec) -> Any:
    if kind in ("price", "price?"):
        return None if value is None else _plain(spec.ticks_to_price(value))
    if kind == "amount":
        return _plain(spec.lots_to_amount(value))
    if kind in ("side", "cancel_reason", "reject_reason"):
        return value.value
    return value


def event_to_wire(event: Event, spec: MarketSpec) -> dict[str, Any]:
    """The implementation of :func:`orderbook_core.event_to_wire` (documented there)."""
    entry = _EVENT_FIELDS.get(type(event))
    if entry is None:
        raise TypeError(f"not an event: {event!r}")
    name, fields = entry
    out: dict[str, Any] = {"type": name}
    for attr, wire, kind in fields:
        out[wire] = _to_wire(kind, getattr(event, attr), spec)
    return out


def _from_wire(kind: str, value: object, field: str, spec: MarketSpec) -> Any:
    if kind == "int":
        if type(value) is not int:
            raise ValidationError(field, "must be an integer")
        return value
    if kind == "id":
        # Events come back from the DHT, where anyone may store a version: ids must obey
        # the same rule as on submit_order (no control characters, at most 64).
        return _identifier(value, field)
    if kind == "trade_id":
        if not (isinstance(value, str) and _TRADE_ID_RE.fullmatch(value)):
            raise ValidationError(field, 'must be "<seq>.<n>" with n >= 1')
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValidationError(field, "must be true or false")
        return value
    if kind == "side":
        return _choice(value, field, _SIDES)
    if kind == "price?" and value is None:
        return None
    if kind in ("price", "price?"):
        number = _decimal(value, field)
        try:
            return spec.price_to_ticks(number)
        except ValueError:
            raise ValidationError(field, f"not a multiple of {spec.tick_size}") from None
    if kind == "amount":
        number = _decimal(value, field, allow_zero=True)  # a maker's remaining may be 0
        try:
            return spec.amount_to_lots(number)
        except ValueError:
            raise ValidationError(field, f"not a multiple of {spec.lot_size}") from None
    enum_type = CancelReason if kind == "cancel_reason" else RejectReason
    if isinstance(value, str):
        try:
            return enum_type(value)
        except ValueError:
            pass
    raise ValidationError(field, f"must be a {enum_type.__name__} value")


def event_from_wire(obj: object, spec: MarketSpec) -> Event:
    """The implementation of :func:`orderbook_core.event_from_wire` (documented there)."""
    if not isinstance(obj, dict):
        raise ValidationError("payload", "must be a JSON object")
    name = obj.get("type")
    entry = _EVENT_BY_TYPE.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ValidationError("type", f"must be one of {', '.join(sorted(_EVENT_BY_TYPE))}")
    cls, fields = entry
    expected = {wire for _, wire, _ in fields} | {"type"}
    for key in sorted(obj, key=str):
        if key not in expected:
            raise ValidationError(str(key), "unknown field")
    values = []
    for _attr, wire, kind in fields:
        if wire not in obj:
            raise ValidationError(wire, "required")
        values.append(_from_wire(kind, obj[wire], wire, spec))
    event: Event = cls(*values)
    if isinstance(event, Trade) and event.trade_id.partition(".")[0] != str(event.seq):
        raise ValidationError("tradeId", 'must be "<seq>.<n>" with the event\'s seq')
    return event
