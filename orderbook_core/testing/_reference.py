"""`ReferenceBook`: a deliberately naive, obviously correct matcher to test against.

Like exchange-core's ``OrderBookNaiveImpl`` beside its real book: one plain list of
resting orders, scanned linearly for everything. No levels, no heaps, no caches, no
index. Its only job is to be easy to believe, so a differential test can compare
:class:`~orderbook_core.OrderBook` (or a book of your own) against it after every step.
It shares the value types (commands, events) with the real book but none of its logic:

* the best maker is found by scanning every order (best price, then earliest arrival);
* FOK fillability is decided by *simulating* the match on a deep copy and checking
  that the whole amount traded;
* post-only "would cross" is "some opposite order is at or better than my price".

Every method is O(n) or worse on purpose: use it on books of tens of orders, in tests.
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
    OrderBook,
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

__all__ = ["ReferenceBook"]


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

    def view(self) -> RestingOrder:
        return RestingOrder(
            self.client_id, self.order_id, self.side, self.price, self.remaining, self.seq, self.ts
        )


def _crosses(taker_side: Side, limit: int | None, maker_price: int) -> bool:
    if limit is None:
        return True
    return maker_price <= limit if taker_side is Side.BUY else maker_price >= limit


class ReferenceBook:
    """The oracle: same commands in, same events and queries out as `OrderBook`.

    It implements the rules of docs/core.md (price-time priority, the maker's price,
    GTC/IOC/FOK, post-only, market orders, cancel, modify, self-trade prevention and
    every reject reason) for **valid typed commands**: it does not repeat `OrderBook`'s
    type checks (a float price is a programming error there, undefined here). It has
    no transactions or batches: to check those, ``copy.deepcopy`` the reference first.

    Args:
        spec: the market; its bounds decide the price and amount reject reasons.
    """

    def __init__(self, spec: MarketSpec = DEFAULT_SPEC) -> None:
        self._spec = spec
        self._book: list[_Order] = []
        self._arrivals = 0

    @property
    def spec(self) -> MarketSpec:
        """The market specification this book was built with."""
        return self._spec

    # -------------------------------------------------------------- helpers

    def _find(self, client_id: str, order_id: str) -> _Order | None:
        for o in self._book:
            if o.client_id == client_id and o.order_id == order_id:
                return o
        return None

    def _best_maker(self, taker_side: Side) -> _Order | None:
        best: _Order | None = None
        for o in self._book:
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
        if not self._spec.min_ticks <= price <= self._spec.max_ticks:
            return RejectReason.PRICE_OUT_OF_RANGE
        return None

    def _amount_problem(self, amount: int) -> RejectReason | None:
        if amount <= 0:
            return RejectReason.AMOUNT_NOT_POSITIVE
        if not self._spec.min_lots <= amount <= self._spec.max_lots:
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
        mode = self._spec.self_trade
        while left > 0:
            maker = self._best_maker(side)
            if maker is None or not _crosses(side, price, maker.price):
                break
            if maker.client_id == client_id:
                if mode in (SelfTradePrevention.CANCEL_MAKER, SelfTradePrevention.CANCEL_BOTH):
                    self._book.remove(maker)
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
                self._book.remove(maker)
        return left, traded

    def _rest(self, client_id: str, order_id: str, side: Side, price: int, amount: int,
              seq: int, ts: int) -> None:  # fmt: skip
        self._arrivals += 1
        self._book.append(_Order(client_id, order_id, side, price, amount, seq, ts, self._arrivals))

    # -------------------------------------------------------------- commands

    def apply(self, cmd: Command) -> tuple[Event, ...]:
        """Apply one command and return its events, as `OrderBook.apply` must.

        Args:
            cmd: a `NewOrder`, `CancelOrder` or `ModifyOrder` (ticks and lots).

        Returns:
            The events in the order they happened; a rejection is one `OrderRejected`
            and changes nothing.
        """
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
        crossing = any(o.side is not side and _crosses(side, price, o.price) for o in self._book)
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
        self._book.remove(o)
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
        self._book.remove(o)
        events: list[Event] = [modified]
        left, _ = self._match(events, seq, ts, cid, oid, o.side, new_price, new_amount)
        if left > 0:
            self._rest(cid, oid, o.side, new_price, left, seq, ts)
            events.append(OrderRested(seq, cid, oid, o.side, new_price, left))
        return tuple(events)

    # -------------------------------------------------------------- queries

    def orders(self, side: Side | None = None) -> Iterator[RestingOrder]:
        """Every resting order in canonical order, as `OrderBook.orders` gives them.

        Asks ascending then bids descending (one side only if ``side`` is given), each
        level in time priority. The views are taken when this is called.
        """
        asks = sorted(
            (o for o in self._book if o.side is Side.SELL), key=lambda o: (o.price, o.arrival)
        )
        bids = sorted(
            (o for o in self._book if o.side is Side.BUY), key=lambda o: (-o.price, o.arrival)
        )
        chosen = asks + bids if side is None else (bids if side is Side.BUY else asks)
        return iter([o.view() for o in chosen])

    def best_bid(self) -> int | None:
        """The highest bid price in ticks, or None."""
        return max((o.price for o in self._book if o.side is Side.BUY), default=None)

    def best_ask(self) -> int | None:
        """The lowest ask price in ticks, or None."""
        return min((o.price for o in self._book if o.side is Side.SELL), default=None)

    def depth(self, side: Side, price: int) -> int:
        """Total lots resting on ``side`` at ``price`` (0 if none)."""
        return sum(o.remaining for o in self._book if o.side is side and o.price == price)

    def levels(self, side: Side, n: int | None = None) -> list[tuple[int, int]]:
        """The best ``n`` levels of ``side`` (all if None) as (price, total lots), best first."""
        prices = sorted({o.price for o in self._book if o.side is side}, reverse=side is Side.BUY)
        if n is not None:
            prices = prices[: max(n, 0)]
        return [(p, self.depth(side, p)) for p in prices]

    def get_order(self, client_id: str, order_id: str) -> RestingOrder | None:
        """The resting order with this id, or None (filled, cancelled, unknown)."""
        o = self._find(client_id, order_id)
        return None if o is None else o.view()

    def to_book(self) -> OrderBook:
        """The `OrderBook` with this content, for comparing with ``==``.

        Built by the real book's `OrderBook.from_orders`: books are equal when their
        canonical encodings are, a function of the content alone, so a book that agrees
        with this one order for order is equal to it, whatever history led to it.
        """
        return OrderBook.from_orders(self._spec, self.orders())

    def __len__(self) -> int:
        """The number of resting orders."""
        return len(self._book)

    def __repr__(self) -> str:
        return f"<ReferenceBook {self._spec.market} orders={len(self._book)}>"
