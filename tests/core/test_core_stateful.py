"""Hypothesis stateful tests: the real book against the naive twin, step by step.

Random command sequences (new limit/market orders with every time in force and
post-only, cancels, modifies, bad values, reused and duplicate ids, all three
self-trade modes) go through both books. After *every* step: the events are equal,
the resting orders (in priority order) are equal, the queries agree, the real book's
``_check()`` passes (not crossed, level totals, id index, cached best prices), quantity
is conserved (``QuantityLedger``), and the state hash equals the hash of a book rebuilt
from the naive twin's orders (content, not history, decides the hash). Snapshot/restore,
failed transactions and strict batches are steps too. The twin, the ledger and the
strategies are the public ones of `orderbook_core.testing` (docs/testing.md).
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
from core_support import CORE_PROFILE, LONG_RUN, stateful_market
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from orderbook_core import (
    CancelOrder,
    Command,
    Event,
    MarketSpec,
    ModifyOrder,
    NewOrder,
    OrderBook,
    OrderRejected,
    SelfTradePrevention,
    Side,
    TimeInForce,
    decode_book,
    encode_book,
)
from orderbook_core.testing import QuantityLedger, ReferenceBook, amounts, new_orders, prices

# Tick 1, lot 1 in the derandomized CI profile; non-unit sizes and a wider band in the
# long one (core_support.stateful_market).
MARKET = stateful_market()
if LONG_RUN:  # 2,000 runs of 100 steps take minutes: beyond the per-test default
    pytestmark = pytest.mark.timeout(3600)
SPEC = MARKET.spec
CLIENTS = st.sampled_from(["a", "b", "c"])
# Mostly a small pool (duplicates, reuse after fill/cancel), sometimes a larger one
# (deeper queues, cancels from the middle of a level).
ORDER_IDS = st.sampled_from(["0", "1", "2", "3", "4", "5"]) | st.integers(0, 40).map(str)
# Prices crowd in the market's band (95..105 in CI) so orders cross; one draw in four is
# an edge (0, -1, min, max, max + 1); amounts likewise 1..max_lots with the edges.
PRICES = prices(SPEC, low=MARKET.low, high=MARKET.high, invalid=True)
AMOUNTS = amounts(SPEC, low=1, high=MARKET.max_lots, invalid=True)
OPT_PRICE = st.none() | PRICES
OPT_AMOUNT = st.none() | AMOUNTS
# Any new order: every side and time in force, post-only one in five, market one in ten.
# seq and ts are placeholders: the machine numbers each command as it applies it.
NEW_ORDERS = new_orders(
    SPEC,
    client_id=CLIENTS,
    order_id=ORDER_IDS,
    price=PRICES,
    amount=AMOUNTS,
    tif=st.sampled_from(TimeInForce),
    seq=st.just(0),
    ts=st.just(0),
)
# Plain GTC limit orders, for strict batches.
GTC_LIMITS = new_orders(
    SPEC,
    client_id=CLIENTS,
    order_id=ORDER_IDS,
    price=PRICES,
    amount=AMOUNTS,
    tif=st.just(TimeInForce.GTC),
    post_only=st.just(False),
    market_orders=False,
    seq=st.just(0),
    ts=st.just(0),
)


class Boom(Exception):
    """Raised inside a transaction to force a rollback."""


class BookVersusNaive(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.seq = 0
        self.spec = MarketSpec()
        self.book = OrderBook(self.spec)
        self.naive = ReferenceBook(self.spec)
        self.ledger = QuantityLedger()

    @initialize(mode=st.sampled_from(SelfTradePrevention))
    def choose_market(self, mode: SelfTradePrevention) -> None:
        self.spec = dataclasses.replace(SPEC, self_trade=mode)
        self.book = OrderBook(self.spec)
        self.naive = ReferenceBook(self.spec)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def run(self, cmd: Command) -> None:
        actual = self.book.apply(cmd)
        expected = self.naive.apply(cmd)
        assert actual == expected
        self.ledger.record(actual)

    @rule(order=NEW_ORDERS)
    def new_order(self, order: NewOrder) -> None:
        seq = self.next_seq()
        self.run(order._replace(seq=seq, ts=seq * 10))

    @rule(client=CLIENTS, order_id=ORDER_IDS)
    def cancel(self, client: str, order_id: str) -> None:
        seq = self.next_seq()
        self.run(CancelOrder(seq, seq * 10, client, order_id))

    @rule(client=CLIENTS, order_id=ORDER_IDS, price=OPT_PRICE, amount=OPT_AMOUNT)
    def modify(self, client: str, order_id: str, price: int | None, amount: int | None) -> None:
        seq = self.next_seq()
        self.run(ModifyOrder(seq, seq * 10, client, order_id, price, amount))

    @rule(data=st.data())
    def modify_a_live_order(self, data: st.DataObject) -> None:
        live = list(self.naive.orders())
        if not live:
            return
        target = data.draw(st.sampled_from(live))
        price = data.draw(OPT_PRICE)
        amount = data.draw(OPT_AMOUNT)
        self.modify(target.client_id, target.order_id, price, amount)

    @rule()
    def snapshot_restore_and_continue(self) -> None:
        data = encode_book(self.book)
        self.book = decode_book(data)
        assert encode_book(self.book) == data

    def draw_command(self, data: st.DataObject) -> Command:
        """Any command: new (every kind), cancel or modify, often aimed at a live order."""
        seq = self.next_seq()
        live = list(self.naive.orders())
        kind = data.draw(st.sampled_from(["new", "new", "cancel", "modify"]))
        if kind != "new" and live and data.draw(st.booleans()):
            target = data.draw(st.sampled_from(live))
            client, order_id = target.client_id, target.order_id
        else:
            client, order_id = data.draw(CLIENTS), data.draw(ORDER_IDS)
        if kind == "cancel":
            return CancelOrder(seq, seq * 10, client, order_id)
        if kind == "modify":
            return ModifyOrder(
                seq, seq * 10, client, order_id, data.draw(OPT_PRICE), data.draw(OPT_AMOUNT)
            )
        order = data.draw(NEW_ORDERS)
        return order._replace(seq=seq, ts=seq * 10, client_id=client, order_id=order_id)

    def apply_then_fail(self, n: int, nested: bool, data: st.DataObject) -> None:
        """Apply n commands (the naive twin does not see them) in a transaction; raise."""
        with self.book.transaction():
            for _ in range(n):
                self.book.apply(self.draw_command(data))
                self.book._check()
            if nested:
                # An inner transaction that commits is still undone by the outer one.
                with self.book.transaction():
                    self.book.apply(self.draw_command(data))
            raise Boom

    @rule(n=st.integers(1, 5), nested=st.booleans(), data=st.data())
    def failed_transaction_rolls_back(self, n: int, nested: bool, data: st.DataObject) -> None:
        before = encode_book(self.book)
        seq_before = self.seq
        with pytest.raises(Boom):
            self.apply_then_fail(n, nested, data)
        self.seq = seq_before
        assert encode_book(self.book) == before
        self.book._check()

    @rule(n=st.integers(1, 4), data=st.data())
    def inner_rollback_outer_commit(self, n: int, data: st.DataObject) -> None:
        with self.book.transaction():
            self.run(self.draw_command(data))
            middle = encode_book(self.book)
            seq_middle = self.seq
            with pytest.raises(Boom):
                self.apply_then_fail(n, False, data)
            self.seq = seq_middle
            assert encode_book(self.book) == middle
            self.run(self.draw_command(data))

    @rule(orders=st.lists(GTC_LIMITS, min_size=1, max_size=4))
    def strict_batch(self, orders: list[NewOrder]) -> None:
        cmds: list[Command] = []
        for order in orders:
            seq = self.next_seq()
            cmds.append(order._replace(seq=seq, ts=seq * 10))
        before = encode_book(self.book)
        trial = copy.deepcopy(self.naive)
        expected: list[Event] = []
        rejection: tuple[Event, ...] | None = None
        for cmd in cmds:
            out = trial.apply(cmd)
            if isinstance(out[-1], OrderRejected):
                rejection = out
                break
            expected.extend(out)
        actual = self.book.apply_batch(cmds, strict=True)
        if rejection is not None:
            assert actual == rejection
            assert encode_book(self.book) == before
        else:
            assert actual == tuple(expected)
            self.naive = trial
            self.ledger.record(actual)

    @invariant()
    def books_agree(self) -> None:
        self.book._check()
        orders = list(self.book.orders())
        assert orders == list(self.naive.orders())
        assert self.book.best_bid() == self.naive.best_bid()
        assert self.book.best_ask() == self.naive.best_ask()
        for side in Side:
            assert self.book.levels(side) == self.naive.levels(side)
            assert self.book.levels(side, 2) == self.naive.levels(side, 2)
            for price in MARKET.probes():
                assert self.book.depth(side, price) == self.naive.depth(side, price)
        for o in orders:
            assert self.book.get_order(o.client_id, o.order_id) == o
        assert len(self.book) == len(orders)
        bid, ask = self.book.best_bid(), self.book.best_ask()
        assert bid is None or ask is None or bid < ask
        self.ledger.check(orders)
        rebuilt = OrderBook.from_orders(self.spec, self.naive.orders())
        assert rebuilt == self.book


BookVersusNaive.TestCase.settings = CORE_PROFILE
TestBookVersusNaive = BookVersusNaive.TestCase
