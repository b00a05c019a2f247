"""MarketSpec: exact Decimal <-> ticks/lots conversions, float rejection, limits."""

from __future__ import annotations

import decimal
from decimal import Decimal

import pytest
from core_support import CORE_PROFILE
from hypothesis import given
from hypothesis import strategies as st

from orderbook_core import DEFAULT_SPEC, MarketSpec, SelfTradePrevention

S = DEFAULT_SPEC


def test_default_spec() -> None:
    assert (S.market, S.tick_size, S.lot_size) == ("BTC-USD", Decimal("0.01"), Decimal("0.001"))
    assert S.self_trade is SelfTradePrevention.CANCEL_MAKER
    assert (S.min_ticks, S.max_ticks) == (1, 100_000_000_000)
    assert (S.min_lots, S.max_lots) == (1, 1_000_000_000)


@pytest.mark.parametrize(
    ("price", "ticks"),
    [("100.5", 10050), ("100.50", 10050), ("0.01", 1), ("1E+2", 10000), ("123456789.99", None)],
)
def test_price_to_ticks(price: str, ticks: int | None) -> None:
    expected = ticks if ticks is not None else 12345678999
    assert S.price_to_ticks(Decimal(price)) == expected


def test_conversions_print_with_the_grid_exponent() -> None:
    assert str(S.ticks_to_price(10050)) == "100.50"
    assert str(S.ticks_to_price(1)) == "0.01"
    assert str(S.lots_to_amount(1500)) == "1.500"
    coarse = MarketSpec(tick_size=Decimal("1E+1"), min_price=Decimal(10))
    assert str(coarse.ticks_to_price(3)) == "30"
    assert coarse.price_to_ticks(Decimal(30)) == 3


@pytest.mark.parametrize("bad", ["100.555", "0.001", "-0.005"])
def test_off_tick_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match=r"not a multiple of 0\.01"):
        S.price_to_ticks(Decimal(bad))


def test_off_lot_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"not a multiple of 0\.001"):
        S.amount_to_lots(Decimal("0.0005"))


def test_floats_are_refused() -> None:
    with pytest.raises(TypeError, match="not a float"):
        S.price_to_ticks(100.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a float"):
        S.amount_to_lots(0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not str"):
        S.price_to_ticks("100.5")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        S.ticks_to_price(1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        S.lots_to_amount(True)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_non_finite_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="finite"):
        S.price_to_ticks(Decimal(bad))


def test_conversions_ignore_the_decimal_context() -> None:
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        ctx.traps[decimal.Inexact] = True
        assert S.price_to_ticks(Decimal("123456789.99")) == 12345678999
        assert S.ticks_to_price(12345678999) == Decimal("123456789.99")


@CORE_PROFILE
@given(ticks=st.integers(1, 10**15))
def test_ticks_round_trip(ticks: int) -> None:
    assert S.price_to_ticks(S.ticks_to_price(ticks)) == ticks
    assert S.amount_to_lots(S.lots_to_amount(ticks)) == ticks


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tick_size": Decimal(0)},
        {"lot_size": Decimal("-0.1")},
        {"tick_size": Decimal("NaN")},
        {"min_price": Decimal("0.005")},
        {"min_price": Decimal(10), "max_price": Decimal(5)},
        {"min_amount": Decimal(0)},
        {"min_amount": Decimal(5), "max_amount": Decimal(1)},
        {"self_trade": "sometimes"},
    ],
)
def test_bad_specs(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages
        MarketSpec(**kwargs)  # type: ignore[arg-type]


def test_float_spec_is_refused() -> None:
    with pytest.raises(TypeError):
        MarketSpec(tick_size=0.01)  # type: ignore[arg-type]


def test_spec_is_frozen_and_hashable() -> None:
    with pytest.raises(AttributeError):
        S.market = "ETH-USD"  # type: ignore[misc]
    assert hash(S) == hash(MarketSpec())
