"""Shared helpers for tests/core: specs, command shorthands, the book protocol and the
Hypothesis profiles. The reference book, the quantity ledger and the strategies are
public, in `orderbook_core.testing`: the tests use them as a user would."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from hypothesis import HealthCheck, settings

from orderbook_core import (
    CancelOrder,
    Command,
    Event,
    MarketSpec,
    ModifyOrder,
    NewOrder,
    RestingOrder,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

# Hypothesis: bounded and derandomized so CI is stable and the directory stays fast.
# The long profile explores more, at random, on a market with non-unit tick and lot
# sizes and a wider band of prices (`stateful_market`): HYPOTHESIS_PROFILE=core-long,
# or CHAOS_PROFILE=long (what `make chaos` sets for the whole long run).
settings.register_profile(
    "core",
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "core-long",
    max_examples=2000,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def profile_name(environ: Mapping[str, str] = os.environ) -> str:
    """``core-long`` when the environment asks for the long run, else ``core``."""
    if environ.get("CHAOS_PROFILE") == "long":
        return "core-long"
    return environ.get("HYPOTHESIS_PROFILE", "core")


CORE_PROFILE = settings.get_profile(profile_name())
LONG_RUN = profile_name() == "core-long"


@dataclass(frozen=True)
class StatefulMarket:
    """The market the stateful tests trade on, and the bands their orders are drawn in.

    `low`..`high` is where prices crowd (in ticks) so that orders cross; amounts are
    drawn in 1..`max_lots` lots. The edges of the spec are drawn too (invalid values).
    """

    spec: MarketSpec
    low: int
    high: int
    max_lots: int

    def probes(self) -> tuple[int, int, int]:
        """Prices (ticks) at which to compare depths: the band's ends and middle."""
        return self.low, (self.low + self.high) // 2, self.high


def stateful_market(long_run: bool = LONG_RUN) -> StatefulMarket:
    """Short: tick 1, lot 1, prices 95..105 of 1..200. Long: tick 0.05, lot 0.001,
    prices 90.00..110.00 (400 ticks) of 0.05..1000, amounts up to 5 of 50."""
    if not long_run:
        spec = MarketSpec(
            market="PROP",
            tick_size=Decimal(1),
            lot_size=Decimal(1),
            min_price=Decimal(1),
            max_price=Decimal(200),
            min_amount=Decimal(1),
            max_amount=Decimal(50),
        )
        return StatefulMarket(spec, 95, 105, 10)
    spec = MarketSpec(
        market="PROP-LONG",
        tick_size=Decimal("0.05"),
        lot_size=Decimal("0.001"),
        min_price=Decimal("0.05"),
        max_price=Decimal(1000),
        min_amount=Decimal("0.001"),
        max_amount=Decimal(50),
    )
    return StatefulMarket(spec, 1800, 2200, 5000)


BUY = Side.BUY
SELL = Side.SELL
GTC = TimeInForce.GTC
IOC = TimeInForce.IOC
FOK = TimeInForce.FOK


def unit_spec(
    self_trade: SelfTradePrevention = SelfTradePrevention.CANCEL_MAKER,
) -> MarketSpec:
    """Tick 1, lot 1: prices and amounts read as plain integers in the tests."""
    return MarketSpec(
        market="TEST",
        tick_size=Decimal(1),
        lot_size=Decimal(1),
        min_price=Decimal(1),
        max_price=Decimal(1000),
        min_amount=Decimal(1),
        max_amount=Decimal(10000),
        self_trade=self_trade,
    )


class Book(Protocol):
    """What the parametrized unit suite needs from OrderBook and ReferenceBook alike."""

    def apply(self, cmd: Command) -> tuple[Event, ...]: ...
    def orders(self, side: Side | None = None) -> Iterator[RestingOrder]: ...
    def best_bid(self) -> int | None: ...
    def best_ask(self) -> int | None: ...
    def depth(self, side: Side, price: int) -> int: ...
    def levels(self, side: Side, n: int | None = None) -> list[tuple[int, int]]: ...
    def get_order(self, client_id: str, order_id: str) -> RestingOrder | None: ...
    def __len__(self) -> int: ...


class Seq:
    """Hands out increasing sequence numbers (and ts = 1000 * seq) for commands."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n

    def new(
        self,
        client_id: str,
        order_id: str,
        side: Side,
        price: int | None,
        amount: int,
        tif: TimeInForce = GTC,
        post_only: bool = False,
    ) -> NewOrder:
        s = self.next()
        return NewOrder(s, 1000 * s, client_id, order_id, side, price, amount, tif, post_only)

    def cancel(self, client_id: str, order_id: str) -> CancelOrder:
        s = self.next()
        return CancelOrder(s, 1000 * s, client_id, order_id)

    def modify(
        self, client_id: str, order_id: str, price: int | None = None, amount: int | None = None
    ) -> ModifyOrder:
        s = self.next()
        return ModifyOrder(s, 1000 * s, client_id, order_id, price, amount)
