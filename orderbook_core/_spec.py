"""Per-market specification: tick size, lot size, limits and the conversions.

The core works in integers: a price is a whole number of *ticks* and an amount a whole
number of *lots*. Decimal exists only at the edges, and every conversion here is exact:
it uses integer arithmetic on ``Decimal.as_integer_ratio`` and the string constructor of
``Decimal``, so the result never depends on the caller's ``decimal`` context (precision,
rounding, traps). Floats are rejected with ``TypeError``: a binary float cannot hold most
decimal prices exactly (``0.1 + 0.2 != 0.3``), so accepting one would make the book's
state depend on how a client printed a number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from orderbook_core._types import SelfTradePrevention

__all__ = ["DEFAULT_SPEC", "MAX_MARKET_LENGTH", "MarketSpec", "check_market"]

MAX_MARKET_LENGTH: Final = 20
"""The longest market symbol."""

_MARKET_RE: Final = re.compile(r"^[A-Z0-9](?:[A-Z0-9-]{0,18}[A-Z0-9])?$")


def check_market(symbol: object) -> str:
    """Return `symbol` if it is a market symbol: 1 to 20 upper-case letters, digits and
    ``-``, starting and ending with a letter or digit (``BTC-USD``).

    The one rule for every market name: it goes into service names (``submit_order:X``),
    file names and signed payloads, so it holds no separator any of them uses.

    Raises:
        ValueError: anything else.
    """
    if not isinstance(symbol, str) or not _MARKET_RE.match(symbol):
        raise ValueError(
            f"market {symbol!r}: must be 1 to {MAX_MARKET_LENGTH} upper-case letters, "
            "digits and '-', starting and ending with a letter or digit"
        )
    return symbol


def _ratio(value: Decimal, what: str) -> tuple[int, int]:
    """Return ``value`` as an exact (numerator, denominator) pair.

    Raises:
        TypeError: ``value`` is not a Decimal (floats and ints are refused here).
        ValueError: ``value`` is NaN or infinite.
    """
    if not isinstance(value, Decimal):
        if isinstance(value, float):
            raise TypeError(f"{what} must be a Decimal, not a float (floats are inexact)")
        raise TypeError(f"{what} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{what} must be finite, not {value}")
    return value.as_integer_ratio()


def _exact_units(value: Decimal, unit: Decimal, what: str) -> int:
    """``value / unit`` as an int, exactly, or ValueError if not a whole multiple."""
    vn, vd = _ratio(value, what)
    un, ud = unit.as_integer_ratio()
    num, den = vn * ud, vd * un
    if num % den:
        raise ValueError(f"{what} {value} is not a multiple of {unit}")
    return num // den


def _scale(units: int, unit: Decimal) -> Decimal:
    """``units * unit`` as a Decimal, exactly, with ``unit``'s exponent (so it prints
    with a fixed number of decimals: 10050 ticks of 0.01 is ``Decimal("100.50")``)."""
    if type(units) is not int:
        raise TypeError(f"expected an int, not {type(units).__name__}")
    _sign, digits, exponent = unit.as_tuple()
    assert isinstance(exponent, int)  # unit is finite (checked in MarketSpec)
    coefficient = units * int("".join(map(str, digits)))
    if exponent >= 0:
        return Decimal(coefficient * 10**exponent)
    return Decimal(f"{coefficient}E{exponent}")


@dataclass(frozen=True)
class MarketSpec:
    """How one market counts: tick and lot size, price and amount limits, STP mode.

    ``min_price``/``max_price`` and ``min_amount``/``max_amount`` are inclusive and must
    be whole multiples of the tick and lot size. The derived integer bounds
    (``min_ticks``...) are what the book checks on every order.

    Raises:
        ValueError: a size is not positive, or a limit is off its grid or inverted.
    """

    market: str = "BTC-USD"
    tick_size: Decimal = Decimal("0.01")
    lot_size: Decimal = Decimal("0.001")
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal("1000000000")
    min_amount: Decimal = Decimal("0.001")
    max_amount: Decimal = Decimal("1000000")
    self_trade: SelfTradePrevention = SelfTradePrevention.CANCEL_MAKER
    min_ticks: int = field(init=False, repr=False, compare=False)
    max_ticks: int = field(init=False, repr=False, compare=False)
    min_lots: int = field(init=False, repr=False, compare=False)
    max_lots: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_market(self.market)
        for name in ("tick_size", "lot_size"):
            size = getattr(self, name)
            _ratio(size, name)
            if size <= 0:
                raise ValueError(f"{name} must be > 0, not {size}")
        bounds = {
            "min_ticks": _exact_units(self.min_price, self.tick_size, "min_price"),
            "max_ticks": _exact_units(self.max_price, self.tick_size, "max_price"),
            "min_lots": _exact_units(self.min_amount, self.lot_size, "min_amount"),
            "max_lots": _exact_units(self.max_amount, self.lot_size, "max_amount"),
        }
        if not 1 <= bounds["min_ticks"] <= bounds["max_ticks"]:
            raise ValueError("need 0 < min_price <= max_price")
        if not 1 <= bounds["min_lots"] <= bounds["max_lots"]:
            raise ValueError("need 0 < min_amount <= max_amount")
        for name, value in bounds.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "self_trade", SelfTradePrevention(self.self_trade))

    def price_to_ticks(self, price: Decimal) -> int:
        """Convert a price to whole ticks, exactly. O(1).

        Raises:
            TypeError: ``price`` is not a Decimal (a float is refused: inexact).
            ValueError: ``price`` is NaN, infinite or not a multiple of the tick size.
        """
        return _exact_units(price, self.tick_size, "price")

    def ticks_to_price(self, ticks: int) -> Decimal:
        """Convert ticks to a Decimal price with the tick size's exponent. O(1).

        Raises:
            TypeError: ``ticks`` is not an int.
        """
        return _scale(ticks, self.tick_size)

    def amount_to_lots(self, amount: Decimal) -> int:
        """Convert an amount to whole lots, exactly. O(1).

        Raises:
            TypeError: ``amount`` is not a Decimal (a float is refused: inexact).
            ValueError: ``amount`` is NaN, infinite or not a multiple of the lot size.
        """
        return _exact_units(amount, self.lot_size, "amount")

    def lots_to_amount(self, lots: int) -> Decimal:
        """Convert lots to a Decimal amount with the lot size's exponent. O(1).

        Raises:
            TypeError: ``lots`` is not an int.
        """
        return _scale(lots, self.lot_size)


DEFAULT_SPEC = MarketSpec()
"""BTC-USD, tick 0.01, lot 0.001, self-trade prevention ``CANCEL_MAKER``."""
