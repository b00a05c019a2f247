"""A deliberately naive, obviously correct reference matcher (the "naive twin").

Like exchange-core's ``OrderBookNaiveImpl``: one plain list of resting orders, scanned
linearly for everything. No levels, no heaps, no caches, no index. Its only job is to
be easy to believe, so the stateful tests can compare the real book against it after
every step. It shares the value types (commands, events) with the real book but none
of its logic:

* the best maker is found by scanning every order (best price, then earliest arrival);
* FOK fillability is decided by *simulating* the match on a deep copy and checking that
  the whole amount traded;
* post-only "would cross" is "some opposite order is at or better than my price".
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

from orderbook_core import (
    DEFAULT_SPEC,
    CancelOrder,
    CancelReason,
    Command,
    Event,
    MarketSpec,
    ModifyOrder,
    NewOrder,
    OrderAccepted,
    OrderCancelled,
    OrderModified,
    OrderRejected,
    OrderRested,
    RejectReason,
    RestingOrder,
    SelfTradePrevention,
    Side,
    TimeInForce,
    Trade,
)


@dataclass
class _Order:
    client_id: str
    order_id: str
    side: Side
    price: int
    remaining: int
    seq: int
    ts: int
    arrival: int  # time priority: smaller trades first


def _crosses(taker_side: Side, limit: int | None, maker_price: int) -> bool:
    if limit is None:
        return True
    return maker_price <= limit if taker_side is Side.BUY else maker_price >= limit


class NaiveBook:
    """The reference book. Same public surface as OrderBook for what the tests use."""

    def __init__(self, spec: MarketSpec = DEFAULT_SPEC) -> None:
        self.spec = spec
        self.book: list[_Order] = []
        self.arrivals = 0

    # -------------------------------------------------------------- helpers

    def _find(self, client_id: str, order_id: str) -> _Order | None:
        for o in self.book:
            if o.client_id == client_id and o.order_id == order_id:
                return o
        return None

    def _best_maker(self, taker_side: Side) -> _Order | None:
        best: _Order | None = None
        for o in self.book:
            if o.side is taker_side:
                continue
            if best is None:
                best = o
                continue
            better_price = o.price < best.price if o.side is Side.SELL else o.price > best.price
            if better_price or (o.price == best.price and o.arrival < best.arrival):
                best = o
        return best

    def _price_problem(self, price: int) -> RejectReason | None:
        if price <= 0:
            return RejectReason.PRICE_NOT_POSITIVE
        if not self.spec.min_ticks <= price <= self.spec.max_ticks:
            return RejectReason.PRICE_OUT_OF_RANGE
        return None

    def _amount_problem(self, amount: int) -> RejectReason | None:
        if amount <= 0:
            return RejectReason.AMOUNT_NOT_POSITIVE
        if not self.spec.min_lots <= amount <= self.spec.max_lots:
            return RejectReason.AMOUNT_OUT_OF_RANGE
        return None

    def _match(
        self,
        events: list[Event],
        seq: int,
        ts: int,
        client_id: str,
        order_id: str,
        side: Side,
        price: int | None,
        amount: int,
    ) -> tuple[int, int]:
        """Match a taker; return (lots left, lots traded)."""
        left = amount
        traded = 0
        n = 0
        mode = self.spec.self_trade
        while left > 0:
            maker = self._best_maker(side)
            if maker is None or not _crosses(side, price, maker.price):
                break
            if maker.client_id == client_id:
                if mode in (SelfTradePrevention.CANCEL_MAKER, SelfTradePrevention.CANCEL_BOTH):
                    self.book.remove(maker)
                    events.append(
                        OrderCancelled(
                            seq,
                            maker.client_id,
                            maker.order_id,
                            maker.side,
                            maker.price,
                            maker.remaining,
                            CancelReason.SELF_TRADE,
                        )
                    )
                if mode in (SelfTradePrevention.CANCEL_TAKER, SelfTradePrevention.CANCEL_BOTH):
                    events.append(
                        OrderCancelled(
                            seq, client_id, order_id, side, price, left, CancelReason.SELF_TRADE
                        )
                    )
                    left = 0
                continue
            fill = min(left, maker.remaining)
            maker.remaining -= fill
            left -= fill
            traded += fill
            n += 1
            events.append(
                Trade(
                    seq,
                    f"{seq}.{n}",
                    ts,
                    maker.price,
                    fill,
                    side,
                    maker.client_id,
                    maker.order_id,
                    maker.remaining,
                    client_id,
                    order_id,
                )
            )
            if maker.remaining == 0:
                self.book.remove(maker)
        return left, traded

    def _rest(self, client_id: str, order_id: str, side: Side, price: int, amount: int,
              seq: int, ts: int) -> None:  # fmt: skip
        self.arrivals += 1
        self.book.append(_Order(client_id, order_id, side, price, amount, seq, ts, self.arrivals))

    # -------------------------------------------------------------- commands

    def apply(self, cmd: Command) -> tuple[Event, ...]:
        if isinstance(cmd, NewOrder):
            return self._new(cmd)
        if isinstance(cmd, CancelOrder):
            return self._cancel(cmd)
        return self._modify(cmd)

    def _new(self, cmd: NewOrder) -> tuple[Event, ...]:
        seq, ts, cid, oid, side, price, amount, tif, post_only = cmd

        def reject(reason: RejectReason) -> tuple[Event, ...]:
            return (OrderRejected(seq, cid, oid, reason),)

        if price is not None and (problem := self._price_problem(price)) is not None:
            return reject(problem)
        if (problem := self._amount_problem(amount)) is not None:
            return reject(problem)
        if post_only and price is None:
            return reject(RejectReason.POST_ONLY_MARKET)
        if post_only and tif is not TimeInForce.GTC:
            return reject(RejectReason.POST_ONLY_TIF)
        if self._find(cid, oid) is not None:
            return reject(RejectReason.DUPLICATE_ORDER_ID)
        crossing = any(o.side is not side and _crosses(side, price, o.price) for o in self.book)
        if post_only and crossing:
            return reject(RejectReason.POST_ONLY_WOULD_CROSS)
        if tif is TimeInForce.FOK:
            trial = copy.deepcopy(self)
            _, traded = trial._match([], seq, ts, cid, oid, side, price, amount)
            if traded != amount:
                return reject(RejectReason.FOK_NOT_FILLABLE)
        events: list[Event] = [OrderAccepted(seq, cid, oid, side, price, amount)]
        left, _ = self._match(events, seq, ts, cid, oid, side, price, amount)
        if left > 0:
            if price is None:
                events.append(OrderCancelled(seq, cid, oid, side, None, left, CancelReason.MARKET))
            elif tif is TimeInForce.IOC:
                events.append(OrderCancelled(seq, cid, oid, side, price, left, CancelReason.IOC))
            else:
                self._rest(cid, oid, side, price, left, seq, ts)
                events.append(OrderRested(seq, cid, oid, side, price, left))
        return tuple(events)

    def _cancel(self, cmd: CancelOrder) -> tuple[Event, ...]:
        o = self._find(cmd.client_id, cmd.order_id)
        if o is None:
            return (
                OrderRejected(cmd.seq, cmd.client_id, cmd.order_id, RejectReason.UNKNOWN_ORDER),
            )
        self.book.remove(o)
        return (
            OrderCancelled(
                cmd.seq, o.client_id, o.order_id, o.side, o.price, o.remaining, CancelReason.USER
            ),
        )

    def _modify(self, cmd: ModifyOrder) -> tuple[Event, ...]:
        seq, ts, cid, oid, price, amount = cmd

        def reject(reason: RejectReason) -> tuple[Event, ...]:
            return (OrderRejected(seq, cid, oid, reason),)

        o = self._find(cid, oid)
        if o is None:
            return reject(RejectReason.UNKNOWN_ORDER)
        if price is not None and (problem := self._price_problem(price)) is not None:
            return reject(problem)
        if amount is not None and (problem := self._amount_problem(amount)) is not None:
            return reject(problem)
        new_price = o.price if price is None else price
        new_amount = o.remaining if amount is None else amount
        if (new_price, new_amount) == (o.price, o.remaining):
            return reject(RejectReason.MODIFY_NO_CHANGE)
        keep = new_price == o.price and new_amount < o.remaining
        modified = OrderModified(
            seq, cid, oid, o.side, new_price, new_amount, o.price, o.remaining, keep
        )
        if keep:
            o.remaining = new_amount
            return (modified,)
        self.book.remove(o)
        events: list[Event] = [modified]
        left, _ = self._match(events, seq, ts, cid, oid, o.side, new_price, new_amount)
        if left > 0:
            self._rest(cid, oid, o.side, new_price, left, seq, ts)
            events.append(OrderRested(seq, cid, oid, o.side, new_price, left))
        return tuple(events)

    # -------------------------------------------------------------- queries

    def orders(self, side: Side | None = None) -> Iterator[RestingOrder]:
        asks = sorted(
            (o for o in self.book if o.side is Side.SELL), key=lambda o: (o.price, o.arrival)
        )
        bids = sorted(
            (o for o in self.book if o.side is Side.BUY), key=lambda o: (-o.price, o.arrival)
        )
        chosen = asks + bids if side is None else (bids if side is Side.BUY else asks)
        for o in chosen:
            yield RestingOrder(o.client_id, o.order_id, o.side, o.price, o.remaining, o.seq, o.ts)

    def best_bid(self) -> int | None:
        return max((o.price for o in self.book if o.side is Side.BUY), default=None)

    def best_ask(self) -> int | None:
        return min((o.price for o in self.book if o.side is Side.SELL), default=None)

    def depth(self, side: Side, price: int) -> int:
        return sum(o.remaining for o in self.book if o.side is side and o.price == price)

    def levels(self, side: Side, n: int | None = None) -> list[tuple[int, int]]:
        prices = sorted({o.price for o in self.book if o.side is side}, reverse=side is Side.BUY)
        if n is not None:
            prices = prices[: max(n, 0)]
        return [(p, self.depth(side, p)) for p in prices]

    def get_order(self, client_id: str, order_id: str) -> RestingOrder | None:
        o = self._find(client_id, order_id)
        if o is None:
            return None
        return RestingOrder(o.client_id, o.order_id, o.side, o.price, o.remaining, o.seq, o.ts)

    def __len__(self) -> int:
        return len(self.book)
