"""`QuantityLedger`: quantity conservation, checked from the event stream alone."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from orderbook_core import (
    Event,
    OrderAccepted,
    OrderCancelled,
    OrderModified,
    RestingOrder,
    Trade,
)

__all__ = ["QuantityLedger"]

_Key = tuple[str, str]


class QuantityLedger:
    """Proves no lot is created or lost: feed it every event, then check the book.

    A second oracle beside `ReferenceBook`, and one that needs no model of the rules:
    it catches a book that agrees with a wrong reference. Definitions, per order key
    ``(client_id, order_id)`` accumulated over all its lives (an id may be reused once
    its order is gone), in lots:

    * ``submitted``: the amount of every `OrderAccepted`, plus the new ``amount`` of
      every `OrderModified` (a modify withdraws the old remainder and submits the new
      one, whether or not priority is kept);
    * ``cancelled``: the amount of every `OrderCancelled` (owner, IOC, market,
      self-trade), plus the ``old_amount`` of every `OrderModified`;
    * ``filled``: the amount of every `Trade` the order took part in, maker or taker;
    * ``resting``: what the book holds for it now (0 if absent).

    Invariant per key: ``submitted == filled + cancelled + resting``. Summed over all
    keys each trade counts twice (maker and taker), so in total
    ``sum(submitted) == 2 * traded_total + sum(cancelled) + sum(resting)``.
    """

    def __init__(self) -> None:
        self.submitted: dict[_Key, int] = defaultdict(int)
        """Lots submitted per order key."""
        self.cancelled: dict[_Key, int] = defaultdict(int)
        """Lots cancelled (or withdrawn by a modify) per order key."""
        self.filled: dict[_Key, int] = defaultdict(int)
        """Lots traded per order key, as maker or taker."""
        self.traded_total = 0
        """Lots traded in all, each trade counted once."""

    def record(self, events: Iterable[Event]) -> None:
        """Account for events, in any grouping (one command's, or a batch's). O(len)."""
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
        """Check both invariants against the orders a book holds now. O(keys).

        Raises:
            AssertionError: a key (or the total) does not balance; the message holds
                the key and its four quantities.
        """
        resting: dict[_Key, int] = defaultdict(int)
        for o in resting_orders:
            resting[(o.client_id, o.order_id)] += o.remaining
        keys = set(self.submitted) | set(self.filled) | set(self.cancelled) | set(resting)
        for key in sorted(keys):
            balance = (
                key,
                self.submitted[key],
                self.filled[key],
                self.cancelled[key],
                resting[key],
            )
            if self.submitted[key] != self.filled[key] + self.cancelled[key] + resting[key]:
                raise AssertionError(
                    f"quantity not conserved (key, submitted, filled, cancelled, resting): "
                    f"{balance}"
                )
        total = sum(self.submitted.values())
        rest = sum(self.cancelled.values()) + sum(resting.values())
        if total != 2 * self.traded_total + rest:
            raise AssertionError(
                f"quantity not conserved in total: submitted {total} != "
                f"2 x traded {self.traded_total} + cancelled and resting {rest}"
            )
