"""Shared helpers for tests/core: specs, command shorthands, the book protocol, the
quantity-conservation ledger and the Hypothesis profiles."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
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
    OrderAccepted,
    OrderCancelled,
    OrderModified,
    RestingOrder,
    SelfTradePrevention,
    Side,
    TimeInForce,
    Trade,
)

# Hypothesis: bounded and derandomized so CI is stable and the directory stays fast.
# HYPOTHESIS_PROFILE=core-long explores more, locally.
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
CORE_PROFILE = settings.get_profile(os.environ.get("CORE_HYPOTHESIS_PROFILE", "core"))

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
    """What the parametrized unit suite needs from OrderBook and NaiveBook alike."""

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


class Ledger:
    """Quantity conservation, checked from the event stream alone.

    Definitions, per order key ``(client_id, order_id)`` accumulated over all its
    lives (an id may be reused once its order is gone), in lots:

    * ``submitted``: the amount of every :class:`OrderAccepted`, plus the new
      ``amount`` of every :class:`OrderModified` (a modify withdraws the old
      remainder and submits the new one, whether or not priority is kept);
    * ``cancelled``: the amount of every :class:`OrderCancelled` (owner, IOC, market,
      self-trade), plus the ``old_amount`` of every :class:`OrderModified`;
    * ``filled``: the amount of every :class:`Trade` the order took part in, as maker
      or as taker;
    * ``resting``: what the book holds for it now (0 if absent).

    Invariant per key: ``submitted == filled + cancelled + resting``. Summed over all
    keys each trade is counted twice (maker and taker), so in total:
    ``sum(submitted) == 2 * sum(trade amounts) + sum(cancelled) + sum(resting)``.
    """

    def __init__(self) -> None:
        self.submitted: dict[tuple[str, str], int] = defaultdict(int)
        self.cancelled: dict[tuple[str, str], int] = defaultdict(int)
        self.filled: dict[tuple[str, str], int] = defaultdict(int)
        self.traded_total = 0

    def record(self, events: Iterable[Event]) -> None:
        for e in events:
            if isinstance(e, OrderAccepted):
                self.submitted[(e.client_id, e.order_id)] += e.amount
            elif isinstance(e, OrderModified):
                self.submitted[(e.client_id, e.order_id)] += e.amount
                self.cancelled[(e.client_id, e.order_id)] += e.old_amount
            elif isinstance(e, OrderCancelled):
                self.cancelled[(e.client_id, e.order_id)] += e.amount
            elif isinstance(e, Trade):
                self.filled[(e.maker_client_id, e.maker_order_id)] += e.amount
                self.filled[(e.taker_client_id, e.taker_order_id)] += e.amount
                self.traded_total += e.amount

    def check(self, resting_orders: Iterable[RestingOrder]) -> None:
        resting: dict[tuple[str, str], int] = defaultdict(int)
        for o in resting_orders:
            resting[(o.client_id, o.order_id)] += o.remaining
        keys = set(self.submitted) | set(self.filled) | set(self.cancelled) | set(resting)
        for key in keys:
            assert self.submitted[key] == self.filled[key] + self.cancelled[key] + resting[key], (
                key,
                self.submitted[key],
                self.filled[key],
                self.cancelled[key],
                resting[key],
            )
        total = sum(self.submitted.values())
        assert total == 2 * self.traded_total + sum(self.cancelled.values()) + sum(resting.values())
