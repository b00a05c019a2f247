"""Hypothesis strategies for ``submit_order`` wire payloads: valid, invalid, garbage.

A boundary is tested three ways here: `valid_payloads` pairs each payload with the
command it must parse to (every accepted spelling), `invalid_payloads` pairs each with
the one field it breaks (the error must name it), and `garbage_payloads` is fuzz input
(the parser must answer with a command or a `ValidationError`, nothing else).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, NamedTuple

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from orderbook_core import (
    CancelOrder,
    Command,
    MarketSpec,
    ModifyOrder,
    NewOrder,
    Side,
    TimeInForce,
)
from orderbook_core.testing._strategies import _times, amounts, commands, ids, prices

__all__ = [
    "InvalidPayload",
    "ValidPayload",
    "garbage_payloads",
    "invalid_payloads",
    "json_values",
    "valid_payloads",
]


def json_values(*, max_leaves: int = 12) -> SearchStrategy[Any]:
    """Anything `json.loads` may return: null, booleans, numbers (floats include NaN
    and infinities, which Python's json reads), strings, lists and objects, nested."""
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


_KEYS = ("op", "clientId", "orderId", "side", "type", "ordType", "price", "amount", "tif",
         "postOnly")  # fmt: skip


def garbage_payloads() -> SearchStrategy[Any]:
    """Fuzz input for a ``submit_order`` parser: JSON values, and near-miss objects
    with the right keys and junk or plausible values.

    Mostly refused, now and then valid by chance: the property to test is that a
    parser returns a command or raises `ValidationError`, never anything else.
    """
    scalars = st.one_of(
        json_values(),
        st.sampled_from(["new", "cancel", "modify", "buy", "Sell", "market", "GTC", "1", "0.5"]),
        st.from_regex(r"-?[0-9]{1,4}(\.[0-9]{1,4})?([eE][0-9])?", fullmatch=True),
    )
    return json_values() | st.dictionaries(st.sampled_from(_KEYS), scalars, max_size=10)


class ValidPayload(NamedTuple):
    """A ``submit_order`` payload and the command it must parse to.

    Check: ``parse_command(p.payload, spec, seq=p.command.seq, ts=p.command.ts) ==
    p.command``.
    """

    payload: dict[str, Any]
    command: Command


class InvalidPayload(NamedTuple):
    """A ``submit_order`` payload that breaks exactly one rule, and the field it breaks.

    Check: ``parse_command(p.payload, spec, seq=1, ts=0)`` (no ``default_order_id``)
    raises `ValidationError` with ``field == p.field``.
    """

    payload: dict[str, Any]
    field: str


def _word(word: str) -> SearchStrategy[str]:
    """The spellings the wire accepts for a keyword: ASCII case is free."""
    return st.sampled_from((word.lower(), word.upper(), word.capitalize()))


def _number(units: int, unit: Decimal) -> SearchStrategy[str | int]:
    """The spellings the wire accepts for ``units * unit``: trailing or leading zeros,
    no needless zeros, or a JSON integer when it is whole."""
    exact = _times(units, unit)
    text = format(exact, "f")
    short = text.rstrip("0").rstrip(".") if "." in text else text
    padded = text + "00" if "." in text else text + ".000"
    spellings: list[str | int] = [text, short, padded, "00" + text]
    if exact.as_integer_ratio()[1] == 1:
        spellings.append(int(exact))
    return st.sampled_from(spellings)


def _spell(draw: st.DrawFn, cmd: Command, spec: MarketSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"clientId": cmd.client_id, "orderId": cmd.order_id}
    if isinstance(cmd, CancelOrder):
        out["op"] = draw(_word("cancel"))
        return out
    if isinstance(cmd, ModifyOrder):
        out["op"] = draw(_word("modify"))
        if cmd.price is not None:
            out["price"] = draw(_number(cmd.price, spec.tick_size))
        if cmd.amount is not None:
            out["amount"] = draw(_number(cmd.amount, spec.lot_size))
        return out
    if draw(st.booleans()):
        out["op"] = draw(_word("new"))  # else the default
    how = draw(st.sampled_from(("side", "type", "both")))
    if how != "type":
        out["side"] = draw(_word(cmd.side.value))
    if how != "side":
        out["type"] = draw(_word(cmd.side.value))  # the challenge's "Buy"/"Sell"
    if cmd.price is None:
        out["ordType"] = draw(_word("market"))
    else:
        if draw(st.booleans()):
            out["ordType"] = draw(_word("limit"))
        out["price"] = draw(_number(cmd.price, spec.tick_size))
    out["amount"] = draw(_number(cmd.amount, spec.lot_size))
    if cmd.tif is not TimeInForce.GTC or draw(st.booleans()):
        out["tif"] = draw(_word(cmd.tif.value))
    if cmd.post_only or draw(st.booleans()):
        out["postOnly"] = cmd.post_only
    return out


def valid_payloads(
    spec: MarketSpec, *, command: SearchStrategy[Command] | None = None
) -> SearchStrategy[ValidPayload]:
    """Valid ``submit_order`` payloads in every spelling the wire accepts.

    Each is a `ValidPayload`: the payload and the command it must parse to. The op
    may be implicit, the side given as ``side``, ``type`` or both, keywords in any
    ASCII case, numbers with extra or no trailing zeros, leading zeros or as JSON
    integers, defaults (``ordType``, ``tif``, ``postOnly``) explicit or omitted.

    Args:
        spec: the market.
        command: the commands to spell; must be valid for ``spec``. Default: any
            command, ids by the wire's rule and prices and amounts over the whole
            range.
    """
    source = command
    if source is None:
        source = commands(
            spec, client_id=ids(), order_id=ids(), price=prices(spec), amount=amounts(spec)
        )

    @st.composite
    def draw_valid(draw: st.DrawFn) -> ValidPayload:
        cmd = draw(source)
        return ValidPayload(_spell(draw, cmd, spec), cmd)

    return draw_valid()


_BAD_IDS: tuple[Any, ...] = (7, None, True, "", "a" * 65, "a b", "x\x1b[31m", "é", "a/b", ["a"])
_BAD_WORDS: dict[str, tuple[Any, ...]] = {
    "op": ("", "delete", "new ", 1, None),
    "side": ("", "up", "bid", "buy ", 1, None, True, ["buy"]),
    "ordType": ("", "stop", "mar\u212aet", 0, None),
    "tif": ("", "DAY", "gtc ", "FO\u212a", 1, None),
    "postOnly": ("true", 1, 0, None, "yes"),
}
Breaker = Callable[[st.DrawFn, dict[str, Any], Command], str]
"""Makes one field of a valid payload wrong, in place; returns that field's name."""
_UNKNOWN_KEYS = ("foo", "postonly", "Price", "client_id", "qty", "price ")
_NEW_ONLY = ("side", "type", "ordType", "tif", "postOnly")


def _bad_numbers(n_min: int, n_max: int, unit: Decimal) -> tuple[Any, ...]:
    lowest, highest = _times(n_min, unit), _times(n_max, unit)
    ok = format(lowest, "f")
    bad: list[Any] = [0, -1, "0", "-1", "-" + ok, "+" + ok, 1.5, 100.0, True, None, [], {}]
    bad += ["1e3", "1E3", "NaN", "inf", "-Infinity", "", " 1", "1.", ".5", "0x10", "1" * 65]
    bad.append(format(lowest + unit / 2, "f"))  # off the grid
    bad.append(format(highest + unit, "f"))  # above the maximum
    if n_min > 1:
        bad.append(format(lowest - unit, "f"))  # below the minimum
    return tuple(bad)


def invalid_payloads(spec: MarketSpec) -> SearchStrategy[InvalidPayload]:
    """``submit_order`` payloads that each break exactly one rule of the wire.

    Each is an `InvalidPayload`: a valid payload (from `valid_payloads`) with one
    field made wrong (a junk value, a missing required field, an unknown field, a
    field of another op, a market order with a price, a ``type`` that contradicts
    ``side``...) and the name of that field, which the `ValidationError` must give.
    """
    bad_prices = _bad_numbers(spec.min_ticks, spec.max_ticks, spec.tick_size)
    bad_amounts = _bad_numbers(spec.min_lots, spec.max_lots, spec.lot_size)

    def junk(field: str, values: tuple[Any, ...]) -> Breaker:
        def breaker(draw: st.DrawFn, p: dict[str, Any], cmd: Command) -> str:
            p[field] = draw(st.sampled_from(values))
            return field

        return breaker

    def missing(field: str) -> Breaker:
        def breaker(draw: st.DrawFn, p: dict[str, Any], cmd: Command) -> str:
            p.pop(field, None)
            return field

        return breaker

    def unknown(draw: st.DrawFn, p: dict[str, Any], cmd: Command) -> str:
        key = draw(st.sampled_from(_UNKNOWN_KEYS))
        p[key] = draw(json_values(max_leaves=3))
        return key

    def foreign(draw: st.DrawFn, p: dict[str, Any], cmd: Command) -> str:
        keys = _NEW_ONLY if isinstance(cmd, ModifyOrder) else (*_NEW_ONLY, "price", "amount")
        key = draw(st.sampled_from(keys))
        p[key] = draw(st.sampled_from(("buy", "GTC", "1", True)))
        return key

    def bad_side(draw: st.DrawFn, p: dict[str, Any], cmd: Command) -> str:
        field = "side" if "side" in p else "type"
        p[field] = draw(st.sampled_from(_BAD_WORDS["side"]))
        return field

    def no_side(draw: st.DrawFn, p: dict[str, Any], cmd: Command) -> str:
        p.pop("side", None)
        p.pop("type", None)
        return "side"

    def contradicting_type(draw: st.DrawFn, p: dict[str, Any], cmd: Command) -> str:
        assert isinstance(cmd, NewOrder)
        other = Side.SELL if cmd.side is Side.BUY else Side.BUY
        p["side"] = cmd.side.value
        p["type"] = draw(_word(other.value))
        return "type"

    def market_and_price(draw: st.DrawFn, p: dict[str, Any], cmd: Command) -> str:
        p["ordType"] = "market"
        p.setdefault("price", format(_times(spec.min_ticks, spec.tick_size), "f"))
        return "price"

    def neither(draw: st.DrawFn, p: dict[str, Any], cmd: Command) -> str:
        p.pop("price", None)
        p.pop("amount", None)
        return "amount"

    common = [
        junk("op", _BAD_WORDS["op"]),
        junk("clientId", _BAD_IDS),
        junk("orderId", _BAD_IDS),
        missing("clientId"),
        missing("orderId"),
        unknown,
    ]
    new = [
        bad_side,
        no_side,
        contradicting_type,
        junk("ordType", _BAD_WORDS["ordType"]),
        market_and_price,
        junk("price", bad_prices),
        junk("amount", bad_amounts),
        missing("amount"),
        junk("tif", _BAD_WORDS["tif"]),
        junk("postOnly", _BAD_WORDS["postOnly"]),
    ]
    modify = [junk("price", bad_prices), junk("amount", bad_amounts), neither, foreign]

    @st.composite
    def draw_invalid(draw: st.DrawFn) -> InvalidPayload:
        payload, cmd = draw(valid_payloads(spec))
        if isinstance(cmd, NewOrder):
            own = [*new, missing("price")] if cmd.price is not None else new
        elif isinstance(cmd, ModifyOrder):
            own = modify
        else:
            own = [foreign]
        breaker = draw(st.sampled_from(common + own))
        field = breaker(draw, payload, cmd)
        return InvalidPayload(payload, field)

    return draw_invalid()
