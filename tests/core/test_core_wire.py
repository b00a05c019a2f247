"""parse_command (untrusted JSON to typed commands), command_to_wire and event wire forms."""

from __future__ import annotations

import json
import pickle
from decimal import Decimal
from typing import Any

import pytest
from core_support import CORE_PROFILE, Seq
from hypothesis import event as note_event
from hypothesis import given
from hypothesis import strategies as st

from orderbook_core import (
    DEFAULT_SPEC,
    CancelOrder,
    Command,
    Event,
    MarketSpec,
    ModifyOrder,
    NewOrder,
    OrderBook,
    Side,
    TimeInForce,
    Trade,
    ValidationError,
    command_to_wire,
    event_from_wire,
    event_to_wire,
    parse_command,
)
from orderbook_core.testing import (
    InvalidPayload,
    ValidPayload,
    amounts,
    commands,
    garbage_payloads,
    ids,
    invalid_payloads,
    json_values,
    prices,
    valid_payloads,
)

S = DEFAULT_SPEC


def parse(payload: object, default_order_id: str | None = None) -> Command:
    return parse_command(payload, S, seq=7, ts=70, default_order_id=default_order_id)


def base(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "clientId": "client1",
        "orderId": "client1-7",
        "side": "buy",
        "price": "100.5",
        "amount": "10",
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not ...}


# ---------------------------------------------------------------- valid payloads


def test_design_example() -> None:
    assert parse(base(tif="GTC", op="new")) == NewOrder(
        7, 70, "client1", "client1-7", Side.BUY, 10050, 10000, TimeInForce.GTC, False
    )


def test_defaults_and_aliases() -> None:
    cmd = parse(base(side=..., type="Sell", price=100, amount=2, tif="ioc", postOnly=False))
    assert cmd == NewOrder(7, 70, "client1", "client1-7", Side.SELL, 10000, 2000, TimeInForce.IOC)
    assert parse(base(side="BUY", type="buy")) == parse(base())


def test_default_order_id() -> None:
    cmd = parse(base(orderId=...), default_order_id="gen-1")
    assert isinstance(cmd, NewOrder)
    assert cmd.order_id == "gen-1"
    with pytest.raises(ValidationError, match=r"^orderId: required$"):
        parse(base(orderId=...))


def test_market_order() -> None:
    cmd = parse(base(ordType="market", price=...))
    assert isinstance(cmd, NewOrder)
    assert cmd.price is None


def test_cancel_and_modify() -> None:
    assert parse({"op": "cancel", "clientId": "c", "orderId": "o"}) == CancelOrder(7, 70, "c", "o")
    assert parse({"op": "modify", "clientId": "c", "orderId": "o", "price": "99"}) == ModifyOrder(
        7, 70, "c", "o", 9900, None
    )
    assert parse({"op": "modify", "clientId": "c", "orderId": "o", "amount": 1}) == ModifyOrder(
        7, 70, "c", "o", None, 1000
    )


def test_post_only() -> None:
    cmd = parse(base(postOnly=True))
    assert isinstance(cmd, NewOrder)
    assert cmd.post_only is True


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("payload", "field", "rule"),
    [
        ([], "payload", "must be a JSON object"),
        ("x", "payload", "must be a JSON object"),
        (base(op="delete"), "op", "must be one of"),
        (base(foo=1), "foo", "unknown field"),
        (base(postonly=True), "postonly", "unknown field"),
        ({"op": "cancel", "clientId": "c", "orderId": "o", "side": "buy"}, "side", "not allowed"),
        (base(clientId=...), "clientId", "required"),
        (base(clientId=""), "clientId", "1-64 characters"),
        (base(clientId="a" * 65), "clientId", "1-64 characters"),
        (base(clientId="bad id"), "clientId", "1-64 characters"),
        (base(clientId=5), "clientId", "must be a string"),
        (base(orderId="é"), "orderId", "1-64 characters"),
        (base(side=...), "side", "required"),
        (base(side="long"), "side", "must be one of"),
        (base(type="Sell"), "type", "conflicts with side"),
        (base(price=...), "price", "required"),
        (base(price=100.5), "price", "not a JSON float"),
        (base(price=100.0), "price", "not a JSON float"),
        (base(price=True), "price", "not a boolean"),
        (base(price=None), "price", "decimal string or an integer"),
        (base(price="NaN"), "price", "finite"),
        (base(price="-Infinity"), "price", "finite"),
        (base(price="inf"), "price", "finite"),
        (base(price="1e3"), "price", "exponent"),
        (base(price="1.5E-2"), "price", "exponent"),
        (base(price="-1"), "price", "must be > 0"),
        (base(price=-1), "price", "must be > 0"),
        (base(price="0"), "price", "must be > 0"),
        (base(price="0.00"), "price", "must be > 0"),
        (base(price=0), "price", "must be > 0"),
        (base(price=" 1"), "price", "plain decimal"),
        (base(price="1."), "price", "plain decimal"),
        (base(price=".5"), "price", "plain decimal"),
        (base(price="+1"), "price", "plain decimal"),
        (base(price="1,5"), "price", "plain decimal"),
        (base(price="1" * 65), "price", "at most 64"),
        (base(price="100.555"), "price", "not a multiple of 0.01"),
        (base(price="1000000000.01"), "price", "between"),
        (base(price=10**30), "price", "between"),
        (base(amount=...), "amount", "required"),
        (base(amount="0.0001"), "amount", "not a multiple of 0.001"),
        (base(amount="1000001"), "amount", "between"),
        (base(amount=1.5), "amount", "not a JSON float"),
        (base(amount=False), "amount", "not a boolean"),
        (base(tif="DAY"), "tif", "must be one of"),
        (base(tif=1), "tif", "must be one of"),
        (base(postOnly="yes"), "postOnly", "true or false"),
        (base(postOnly=1), "postOnly", "true or false"),
        (base(ordType="stop"), "ordType", "must be one of"),
        # Case-insensitive means ASCII case only: str.lower() maps the Kelvin sign
        # (U+212A) to "k", which once made "FO\u212a" a FOK and "mar\u212aet" a
        # market order.
        (base(tif="FO\u212a"), "tif", "must be one of"),
        (base(ordType="mar\u212aet", price=...), "ordType", "must be one of"),
        (base(side="\uff22\uff35\uff39"), "side", "must be one of"),
        (base(op="N\u0130W"), "op", "must be one of"),
        (base(ordType="market"), "price", "must be absent for a market order"),
        ({"op": "modify", "clientId": "c", "orderId": "o"}, "amount", "price and/or an amount"),
        ({"op": "cancel", "clientId": "c"}, "orderId", "required"),
        ({"op": "modify", "clientId": "c", "orderId": "o", "price": "1.001"}, "price", "multiple"),
    ],
)
def test_validation_errors(payload: object, field: str, rule: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse(payload)
    assert info.value.field == field
    assert rule in info.value.rule
    assert str(info.value) == f"{field}: {info.value.rule}"
    assert info.value.code == "ERR_VALIDATION"


def test_cancel_ignores_default_order_id() -> None:
    with pytest.raises(ValidationError, match="orderId: required"):
        parse({"op": "cancel", "clientId": "c"}, default_order_id="gen")


def test_validation_error_pickles() -> None:
    err = ValidationError("price", "must be > 0")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.field, copy.rule, str(copy)) == ("price", "must be > 0", "price: must be > 0")


# ---------------------------------------------------------------- fuzz and round trip


@CORE_PROFILE
@given(payload=garbage_payloads())
def test_parse_garbage_gives_a_command_or_a_validation_error(payload: object) -> None:
    error: ValidationError | None = None
    try:
        cmd = parse(payload, default_order_id="d")
    except ValidationError as exc:
        error = exc
    if error is not None:
        assert str(error) == f"{error.field}: {error.rule}"
    else:
        assert isinstance(cmd, NewOrder | CancelOrder | ModifyOrder)


# Any valid command: ids by the wire's rule, prices and amounts over the whole range.
COMMANDS = commands(
    S,
    client_id=ids(),
    order_id=ids(),
    price=prices(S),
    amount=amounts(S),
    seq=st.integers(0, 10**9),
    ts=st.integers(0, 10**13),
)


@CORE_PROFILE
@given(cmd=COMMANDS)
def test_command_wire_round_trip(cmd: Command) -> None:
    wire = json.loads(json.dumps(command_to_wire(cmd, S)))
    assert parse_command(wire, S, seq=cmd.seq, ts=cmd.ts) == cmd


def test_command_to_wire_shape() -> None:
    cmd = NewOrder(1, 2, "c", "o", Side.SELL, 10050, 1500, TimeInForce.FOK, False)
    assert command_to_wire(cmd, S) == {
        "op": "new",
        "clientId": "c",
        "orderId": "o",
        "side": "sell",
        "ordType": "limit",
        "price": "100.50",
        "amount": "1.500",
        "tif": "FOK",
        "postOnly": False,
    }
    with pytest.raises(TypeError):
        command_to_wire("nope", S)  # type: ignore[arg-type]


def sample_events() -> list[Event]:
    """Every event type, from a real book."""
    book = OrderBook(S)
    seq = Seq()
    events: list[Event] = []
    for cmd in (
        seq.new("a", "1", Side.SELL, 10000, 5000),
        seq.new("a", "2", Side.SELL, 10100, 5000),
        seq.new("b", "1", Side.BUY, 10100, 6000),
        seq.new("b", "2", Side.BUY, None, 1000, TimeInForce.IOC),
        seq.new("b", "3", Side.BUY, 9000, 1000),
        seq.modify("b", "3", 9100, 500),
        seq.modify("b", "3", None, 400),
        seq.cancel("b", "3"),
        seq.cancel("b", "3"),
        seq.new("b", "4", Side.BUY, None, 99000),
    ):
        events.extend(book.apply(cmd))
    return events


def test_event_wire_round_trip() -> None:
    events = sample_events()
    assert {type(e).__name__ for e in events} == {
        "OrderAccepted",
        "OrderRested",
        "Trade",
        "OrderCancelled",
        "OrderModified",
        "OrderRejected",
    }
    for event in events:
        wire = json.loads(json.dumps(event_to_wire(event, S)))
        assert event_from_wire(wire, S) == event


def test_event_wire_shape() -> None:
    trade = next(e for e in sample_events() if type(e).__name__ == "Trade")
    assert event_to_wire(trade, S) == {
        "type": "trade",
        "seq": 3,
        "tradeId": "3.1",
        "ts": 3000,
        "price": "100.00",
        "amount": "5.000",
        "takerSide": "buy",
        "makerClientId": "a",
        "makerOrderId": "1",
        "makerRemaining": "0.000",
        "takerClientId": "b",
        "takerOrderId": "1",
    }


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda w: w.update(type="nope"), "type"),
        (lambda w: w.update(extra=1), "extra"),
        (lambda w: w.pop("price"), "price"),
        (lambda w: w.update(price=1.5), "price"),
        (lambda w: w.update(price="1.001"), "price"),
        (lambda w: w.update(amount="0.0001"), "amount"),
        (lambda w: w.update(seq="1"), "seq"),
        (lambda w: w.update(tradeId=1), "tradeId"),
        (lambda w: w.update(takerSide="up"), "takerSide"),
    ],
)
def test_event_from_wire_errors(mutate: Any, field: str) -> None:
    trade = next(e for e in sample_events() if type(e).__name__ == "Trade")
    wire = event_to_wire(trade, S)
    mutate(wire)
    with pytest.raises(ValidationError) as info:
        event_from_wire(wire, S)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("makerClientId", "a" * 65),
        ("makerClientId", ""),
        ("makerOrderId", "x\u001b[31m"),
        ("takerClientId", "b c"),
        ("takerOrderId", 7),
        ("tradeId", "x\u001b[2J"),
        ("tradeId", "3.0"),
        ("tradeId", "3"),
        ("tradeId", "03.1"),
        ("tradeId", "4.1"),  # not this event's seq
        ("tradeId", 3.1),
    ],
)
def test_event_from_wire_checks_ids_and_trade_id(field: str, value: object) -> None:
    # Events are read back from the DHT, where anyone may store a version.
    trade = next(e for e in sample_events() if isinstance(e, Trade))
    wire = event_to_wire(trade, S)
    wire[field] = value
    with pytest.raises(ValidationError) as info:
        event_from_wire(wire, S)
    assert info.value.field == field


def test_event_from_wire_bool_field() -> None:
    modified = next(e for e in sample_events() if type(e).__name__ == "OrderModified")
    wire = event_to_wire(modified, S)
    wire["priorityKept"] = 1
    with pytest.raises(ValidationError, match="priorityKept: must be true or false"):
        event_from_wire(wire, S)


def test_event_from_wire_other_errors() -> None:
    with pytest.raises(ValidationError, match="payload"):
        event_from_wire([], S)
    for bad in (
        {"type": "modified", "priorityKept": 1},
        {"type": "rejected", "seq": 1, "clientId": "a", "orderId": "b", "reason": "X"},
        {"type": "cancelled", "seq": 1, "clientId": "a", "orderId": "b", "side": "buy",
         "price": None, "amount": "1", "reason": "why"},
    ):  # fmt: skip
        with pytest.raises(ValidationError):
            event_from_wire(bad, S)
    with pytest.raises(TypeError):
        event_to_wire("nope", S)  # type: ignore[arg-type]


@CORE_PROFILE
@given(obj=json_values())
def test_event_from_wire_garbage(obj: object) -> None:
    with pytest.raises(ValidationError):
        event_from_wire(obj, S)


@CORE_PROFILE
@given(case=valid_payloads(S) | invalid_payloads(S))
def test_whatever_parses_normalizes_to_itself(case: ValidPayload | InvalidPayload) -> None:
    """Any accepted payload and its normalized form parse to the same command."""
    error: ValidationError | None = None
    try:
        cmd = parse(case.payload)
    except ValidationError as exc:
        error = exc
    note_event("parsed" if error is None else f"refused: {error.field}")
    if error is None:
        assert parse(json.loads(json.dumps(command_to_wire(cmd, S)))) == cmd


@CORE_PROFILE
@given(case=valid_payloads(S))
def test_every_accepted_spelling_parses_to_its_command(case: ValidPayload) -> None:
    """Implicit op, side/type/both, any ASCII case, zeros, JSON integers, defaults."""
    command = case.command
    assert parse_command(case.payload, S, seq=command.seq, ts=command.ts) == command


@CORE_PROFILE
@given(case=invalid_payloads(S))
def test_one_broken_field_is_the_field_the_error_names(case: InvalidPayload) -> None:
    with pytest.raises(ValidationError) as info:
        parse(case.payload)
    assert info.value.field == case.field, (case, str(info.value))


def test_wire_numbers_never_use_exponent_notation() -> None:
    """str(Decimal) writes 1E-8 for a satoshi, which parse_command refuses; the wire
    forms must be plain decimals for every tick and lot size."""
    spec = MarketSpec(
        tick_size=Decimal("0.0000001"),
        lot_size=Decimal("0.00000001"),
        min_price=Decimal("0.0000001"),
        min_amount=Decimal("0.00000001"),
    )
    book = OrderBook(spec)
    book.apply(NewOrder(1, 10, "a", "1", Side.SELL, 1, 3))
    cmd = NewOrder(2, 20, "b", "1", Side.BUY, 1, 1)
    wire = command_to_wire(cmd, spec)
    assert (wire["price"], wire["amount"]) == ("0.0000001", "0.00000001")
    assert parse_command(wire, spec, seq=2, ts=20) == cmd
    modify = ModifyOrder(3, 30, "a", "1", 2, 1)
    assert parse_command(command_to_wire(modify, spec), spec, seq=3, ts=30) == modify
    for event in book.apply(cmd):
        out = event_to_wire(event, spec)
        for key in ("price", "amount", "makerRemaining"):
            assert out.get(key) is None or "E" not in out[key], out
        assert event_from_wire(out, spec) == event
