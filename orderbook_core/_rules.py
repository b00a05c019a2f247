"""The matching rules. Every decision the engine makes is in this module.

Theory of operation
-------------------
A command is handled in two phases: **validate, then mutate**. The validate phase
looks and never touches: static checks (price and amount positive and in range,
parameter combinations, a live duplicate id), then execution checks that depend on
the book (a post-only order that would cross, a FOK order that cannot fill
completely). Any failure returns a single :class:`OrderRejected` and the book is
untouched. Only then does the mutate phase run, and it cannot fail.

Matching is price-time priority. An incoming order (the *taker*) crosses when the
best opposite price is at or better than its limit (a market order has no limit).
It then trades against the best level's queue from the head, level after level,
while it crosses and has lots left. Each fill is priced at the **resting (maker)
order's price**, so a taker never trades beyond its own limit and gets any price
improvement. What is left then depends on the time in force:

* GTC limit: the remainder rests at the order's own limit price, at the tail of
  that level's queue;
* IOC limit: the remainder is cancelled (reason ``ioc``);
* FOK: checked up front; it fills completely or is rejected with nothing changed;
* market (``price=None``): never rests; the remainder is cancelled (``market``);
* post-only: must not cross; if it would, it is rejected with nothing changed;
  post-only is only valid with GTC limit orders.

Self-trade prevention applies whenever the taker reaches a resting order of the
same client; the market's :class:`SelfTradePrevention` mode decides who is
cancelled (default: the resting maker). Two orders of one client never trade.

Modify: a pure size decrease at the same price keeps time priority (done in
place). Any other change (new price, or a larger size) takes the order out and
reinserts it with the modify's ``seq``/``ts``, at the tail of its new level; if the
new price crosses, it first trades as a GTC taker, at the makers' prices.

The hot path (a limit order that rests, a cancel, a sweep) is written for speed:
events are built with ``tuple.__new__`` (half the cost of a NamedTuple's generated
``__new__``, see _types), attributes are bound to locals, and internal orders are
small slotted records (see _book; compiled, native objects with unboxed int fields).
The profiler pointed at event construction and method calls as the dominant costs, so
resting (on an existing level or a new one) is inlined into :func:`new_order`, the id
lookup into :func:`cancel_order` and :func:`modify_order` (with a modify's checks).

The three entry functions take exactly the arguments of ``OrderBook.new_order``,
``cancel_order`` and ``modify_order``, and in pure Python they are those methods (see
the end of _book): each checks for an open transaction itself, and reads which events
to build (typed, or compact for ``apply_many``) from ``book._compact``.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any, Final

from orderbook_core._state import CANCEL, MODIFY, NEW, PURE, BookState, Order, alloc, record
from orderbook_core._types import (
    CancelReason,
    OrderAccepted,
    OrderCancelled,
    OrderModified,
    OrderRejected,
    OrderRested,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
    Trade,
)

__all__ = ["cancel_order", "modify_order", "new_order"]

_heappush: Final = heapq.heappush
_new: Final[Any] = tuple.__new__  # builds a NamedTuple without its Python-level __new__
# Final aliases of the classes the hot path uses: compiled, a static load instead of a
# lookup in the module's dict each time.
_Accepted: Final[Any] = OrderAccepted
_Trade: Final[Any] = Trade
_Rested: Final[Any] = OrderRested
_Cancelled: Final[Any] = OrderCancelled
_Rejected: Final[Any] = OrderRejected
_Modified: Final[Any] = OrderModified
_deque: Final[Any] = deque
# The type checks compare with this alias, so that the checked names are not narrowed
# to int: compiled, a narrowed int is unboxed, and boxed again (a new object) into each
# event and order that carries it; the comparisons use explicitly unboxed copies.
_INT: Final[Any] = int
_BUY: Final = Side.BUY
_SELL: Final = Side.SELL
_GTC: Final = TimeInForce.GTC
_IOC: Final = TimeInForce.IOC
_FOK: Final = TimeInForce.FOK
_CANCEL_MAKER: Final = SelfTradePrevention.CANCEL_MAKER
_CANCEL_TAKER: Final = SelfTradePrevention.CANCEL_TAKER
_R: Final = RejectReason
_C_USER: Final = CancelReason.USER
_C_IOC: Final = CancelReason.IOC
_C_MARKET: Final = CancelReason.MARKET
_C_SELF: Final = CancelReason.SELF_TRADE
# A trade id's n, its decimal string (n up to 63; see _match).
_NTH: Final = tuple(str(n) for n in range(64))
# Compact events are (kind, fields): the kind indexes COMPACT_EVENT_TYPES (see _types).
_ACCEPTED: Final = 0
_TRADE: Final = 1
_RESTED: Final = 2
_CANCELLED: Final = 3
_REJECTED: Final = 4
_MODIFIED: Final = 5


def _reject(
    seq: Any, client_id: Any, order_id: Any, reason: RejectReason, compact: bool
) -> tuple[Any, ...]:
    fields: Any = (seq, client_id, order_id, reason)
    return ((_REJECTED, fields) if compact else _new(_Rejected, fields),)


def _fok_fillable(book: BookState, client_id: str, side: Side, limit: int, amount: int) -> bool:
    """Whether a FOK taker would fill ``amount`` completely. Looks, never touches.

    Mirrors :func:`_match`: orders of the same client are skipped under
    ``CANCEL_MAKER`` (they would be cancelled, not traded) and stop the taker
    otherwise. O(k + L log L) over the k crossing orders and L levels.
    """
    buy = side is _BUY
    levels = book._asks if buy else book._bids
    prices = sorted((p for p in levels if p <= limit) if buy else (p for p in levels if p >= limit))
    if not buy:
        prices.reverse()
    skip_own = book._spec.self_trade is _CANCEL_MAKER
    need = amount
    for price in prices:
        for o in levels[price][2]:
            if not o.remaining:
                continue
            if o.client_id == client_id:
                if skip_own:
                    continue
                return False
            need -= o.remaining
            if need <= 0:
                return True
    return False


def _match(
    book: BookState,
    events: list[Any],
    seq: Any,
    ts: Any,
    client_id: Any,
    order_id: Any,
    side: Any,
    price: Any,
    limit: Any,
    remaining: int,
    compact: bool,
) -> int:
    """Trade a taker against the opposite side; return the lots left.

    ``limit`` is the worst acceptable price (for a market order the market's
    extreme price, so every level qualifies); ``price`` is what the taker's own
    events report (None for a market order). Appends Trade events (and self-trade
    cancellations) to ``events``. O(1) per fill, O(log L) per emptied level.

    The numbers that go into events unchanged (seq, ts, prices) are Any: compiled, an
    ``int`` would be unboxed, then boxed again (a new int object) into each event.
    """
    buy = side is _BUY
    levels = book._asks if buy else book._bids
    index = book._index
    new = _new
    append = events.append
    fields: Any  # not a typed tuple: compiled, that is built twice (unboxed, then boxed)
    best: Any
    n = 0
    prefix = ""
    while remaining:
        best = book._best_ask if buy else book._best_bid
        if best is None or (best > limit if buy else best < limit):
            break
        level = levels[best]
        queue = level[2]
        # A level in the dict always holds a live order, so the queue is never
        # exhausted before its total reaches 0.
        while remaining:
            # Typed locals: compiled, a field read is a struct load of an unboxed int.
            o: Order = queue[0]
            maker_left: int = o.remaining
            if not maker_left:  # cancelled earlier, still queued: skip it
                queue.popleft()
                level[1] -= 1
                continue
            if o.client_id == client_id:
                stp = book._spec.self_trade
                maker_side = _SELL if buy else _BUY
                if stp is not _CANCEL_TAKER:  # cancel the resting maker
                    queue.popleft()
                    level[0] -= maker_left
                    o.remaining = 0
                    entry = index.pop(o.order_id)
                    if entry is not o:
                        book._unshare(entry, o)
                    fields = (seq, client_id, o.order_id, maker_side, best, maker_left, _C_SELF)
                    append((_CANCELLED, fields) if compact else new(_Cancelled, fields))
                if stp is not _CANCEL_MAKER:  # cancel the taker's remainder
                    fields = (seq, client_id, order_id, side, price, remaining, _C_SELF)
                    append((_CANCELLED, fields) if compact else new(_Cancelled, fields))
                    remaining = 0
                if not level[0]:
                    if buy:
                        book._drop_ask_level(best)
                    else:
                        book._drop_bid_level(best)
                    break
                continue
            fill: int
            if maker_left > remaining:
                fill = remaining
                maker_left -= fill
                o.remaining = maker_left
                remaining = 0
            else:
                fill = maker_left
                remaining -= fill
                maker_left = 0
                o.remaining = 0
                queue.popleft()
                entry = index.pop(o.order_id)
                if entry is not o:
                    book._unshare(entry, o)
            level[0] -= fill
            n += 1
            # The trade id f"{seq}.{n}", its "{seq}." formatted once per command (an
            # int's formatting is most of the cost: ~1,200 of ~1,900 instructions).
            if n == 1:
                prefix = f"{seq}."
            fields = (
                seq,
                prefix + _NTH[n] if n < 64 else f"{prefix}{n}",
                ts,
                best,
                fill,
                side,
                o.client_id,
                o.order_id,
                maker_left,
                client_id,
                order_id,
            )
            append((_TRADE, fields) if compact else new(_Trade, fields))
            if not level[0]:
                if buy:
                    book._drop_ask_level(best)
                else:
                    book._drop_bid_level(best)
                break
    return remaining


def new_order(
    book: BookState,
    seq: Any,
    ts: Any,
    client_id: Any,
    order_id: Any,
    side: Any,
    price: Any,
    amount: Any,
    tif: Any = _GTC,
    post_only: Any = False,
) -> tuple[Any, ...]:
    """Handle a :class:`NewOrder`, given its fields (see the theory of operation above).

    Check order: price, amount, parameter combinations, duplicate id, post-only
    cross, FOK fillability. The first failure is the rejection reason. The events are
    typed, or compact (see COMPACT_EVENT_TYPES) while ``book._compact`` says so. While
    a transaction is open, the command goes through the book's undo log first.
    """
    if book._journal is not None:
        cmd = (seq, ts, client_id, order_id, side, price, amount, tif, post_only)
        return book._apply_journaled(cmd, NEW)
    compact = book._compact
    # The fields are Any, checked below: compiled (mypyc), typed parameters would convert
    # a wrong type on entry (True to 1, "IOC" to an error without the field's name).
    if type(seq) is not _INT or type(ts) is not _INT:
        # A resting order stores them as ints (unboxed when compiled): refuse up front.
        raise TypeError(f"seq and ts must be ints, not {seq!r} and {ts!r}")
    # ---- validate (static). One chained comparison per number on the happy path
    # (the profiler pointed here); min_ticks/min_lots >= 1, so a value <= 0 is also
    # out of range and is told apart only when rejecting. The checks compare unboxed
    # copies (p, a); the events carry the objects (see _INT).
    if price is not None:
        if type(price) is not _INT:
            raise TypeError(f"price must be an int (ticks) or None, not {type(price).__name__}")
        p: int = price
        if not book._min_ticks <= p <= book._max_ticks:
            reason = _R.PRICE_NOT_POSITIVE if p <= 0 else _R.PRICE_OUT_OF_RANGE
            return _reject(seq, client_id, order_id, reason, compact)
    if type(amount) is not _INT:
        raise TypeError(f"amount must be an int (lots), not {type(amount).__name__}")
    a: int = amount
    if not book._min_lots <= a <= book._max_lots:
        reason = _R.AMOUNT_NOT_POSITIVE if a <= 0 else _R.AMOUNT_OUT_OF_RANGE
        return _reject(seq, client_id, order_id, reason, compact)
    if tif is not _GTC and tif is not _IOC and tif is not _FOK:
        # A plain "IOC" string would otherwise be treated as GTC without a word.
        raise TypeError(f"tif must be a TimeInForce, not {tif!r}")
    if post_only is not False:
        if post_only is not True:
            raise TypeError(f"post_only must be a bool, not {post_only!r}")
        if price is None:
            return _reject(seq, client_id, order_id, _R.POST_ONLY_MARKET, compact)
        if tif is not _GTC:
            return _reject(seq, client_id, order_id, _R.POST_ONLY_TIF, compact)
    index = book._index
    entry = index.get(order_id)  # the id index (see _state): an order or a dict
    if entry is not None and (
        entry.client_id == client_id if type(entry) is Order else client_id in entry
    ):
        return _reject(seq, client_id, order_id, _R.DUPLICATE_ORDER_ID, compact)
    # ---- validate (against the book)
    best: Any  # Any, as in _match: compiled, no unboxing and boxing again
    limit: Any
    if side is _BUY:
        best = book._best_ask
        limit = book._max_ticks if price is None else price
        crosses = best is not None and best <= limit
        own_levels = book._bids
    elif side is _SELL:
        best = book._best_bid
        limit = book._min_ticks if price is None else price
        crosses = best is not None and best >= limit
        own_levels = book._asks
    else:
        raise TypeError(f"side must be a Side, not {side!r}")
    new = _new
    # Any, not a typed tuple: compiled, that would be built twice (unboxed, then boxed).
    fields: Any = (seq, client_id, order_id, side, price, amount)  # accepted, and rested
    accepted = (_ACCEPTED, fields) if compact else new(_Accepted, fields)
    if not crosses:
        if tif is _FOK:
            return _reject(seq, client_id, order_id, _R.FOK_NOT_FILLABLE, compact)
        if price is None or tif is _IOC:
            why = _C_MARKET if price is None else _C_IOC
            fields = (seq, client_id, order_id, side, price, amount, why)
            return accepted, (_CANCELLED, fields) if compact else new(_Cancelled, fields)
        # ---- mutate: rest (the most common path; inlined for an existing level)
        level = own_levels.get(price)
        if level is None:
            # A new level (inlined: half the rests in the benchmark open a level).
            if PURE:  # record(), inlined (see _state)
                order = alloc(Order)
                order.client_id = client_id
                order.order_id = order_id
                order.side = side
                order.price = price
                order.remaining = amount
                order.seq = seq
                order.ts = ts
            else:
                order = Order(client_id, order_id, side, price, amount, seq, ts)
            own_levels[price] = [amount, 0, _deque((order,))]
            if side is _BUY:
                heap = book._bid_heap
                if len(heap) > 2 * len(own_levels) + 64:
                    book._rebuild_heaps()
                else:
                    _heappush(heap, -price)
                if book._best_bid is None or price > book._best_bid:
                    book._best_bid = price
            else:
                heap = book._ask_heap
                if len(heap) > 2 * len(own_levels) + 64:
                    book._rebuild_heaps()
                else:
                    _heappush(heap, price)
                if book._best_ask is None or price < book._best_ask:
                    book._best_ask = price
            if entry is None:
                index[order_id] = order
            else:
                book._link(order)
        else:
            # The order shares the price object of its level's head (equal by
            # definition): one int object fewer per resting order (see _book).
            queue = level[2]
            if PURE:  # record(), inlined (see _state)
                order = alloc(Order)
                order.client_id = client_id
                order.order_id = order_id
                order.side = side
                order.price = queue[0].price
                order.remaining = amount
                order.seq = seq
                order.ts = ts
            else:
                order = Order(client_id, order_id, side, queue[0].price, amount, seq, ts)
            level[0] += amount
            queue.append(order)
            if entry is None:
                index[order_id] = order
            else:
                book._link(order)
        return accepted, (_RESTED, fields) if compact else new(_Rested, fields)
    if post_only:
        return _reject(seq, client_id, order_id, _R.POST_ONLY_WOULD_CROSS, compact)
    if tif is _FOK and not _fok_fillable(book, client_id, side, limit, amount):
        return _reject(seq, client_id, order_id, _R.FOK_NOT_FILLABLE, compact)
    # ---- mutate: match, then deal with the remainder
    events: list[Any] = [accepted]
    remaining = _match(
        book, events, seq, ts, client_id, order_id, side, price, limit, amount, compact
    )
    if remaining:
        if price is None or tif is _IOC:
            why = _C_MARKET if price is None else _C_IOC
            fields = (seq, client_id, order_id, side, price, remaining, why)
            events.append((_CANCELLED, fields) if compact else new(_Cancelled, fields))
        else:  # GTC (a FOK never has a remainder here)
            # Always a new level: an own-side level at this price would have meant a
            # crossed book before this order arrived.
            book._rest(record(client_id, order_id, side, price, remaining, seq, ts))
            fields = (seq, client_id, order_id, side, price, remaining)
            events.append((_RESTED, fields) if compact else new(_Rested, fields))
    return tuple(events)


def cancel_order(
    book: BookState, seq: Any, ts: Any, client_id: Any, order_id: Any
) -> tuple[Any, ...]:
    """Handle a :class:`CancelOrder`, given its fields: remove the order's remainder.

    Orders are identified by ``(client_id, order_id)``, so only the owner can name an
    order: another client's cancel is ``ERR_ORDER_UNKNOWN`` (it does not reveal
    whether the id exists). A filled or cancelled order is unknown too. A cancel's
    ``ts`` changes nothing (it is journaled with the command).
    """
    if book._journal is not None:
        return book._apply_journaled((seq, ts, client_id, order_id), CANCEL)
    compact = book._compact
    # The id index lookup, inlined (see BookState._find).
    order: Any = book._index.get(order_id)
    if order is not None and type(order) is not Order:
        order = order.get(client_id)
    if order is None or order.client_id != client_id:
        return _reject(seq, client_id, order_id, _R.UNKNOWN_ORDER, compact)
    side, price, remaining = order.side, order.price, order.remaining
    book._unlink(order)
    fields: Any = (seq, client_id, order_id, side, price, remaining, _C_USER)
    return ((_CANCELLED, fields) if compact else _new(_Cancelled, fields),)


def modify_order(
    book: BookState,
    seq: Any,
    ts: Any,
    client_id: Any,
    order_id: Any,
    price: Any = None,
    amount: Any = None,
) -> tuple[Any, ...]:
    """Handle a :class:`ModifyOrder`, given its fields (reprice and/or resize an order).

    ``amount`` is the new *remaining* amount. Check order: unknown order, price,
    amount, no change. A pure decrease at the same price keeps priority; anything
    else is cancel + reinsert (losing priority), trading first at the makers'
    prices if the new price crosses, with self-trade prevention as for a new order.
    """
    if book._journal is not None:
        cmd = (seq, ts, client_id, order_id, price, amount)
        return book._apply_journaled(cmd, MODIFY)
    compact = book._compact
    # The fields are Any, checked below (see new_order).
    fields: Any  # see new_order
    if type(seq) is not _INT or type(ts) is not _INT:
        raise TypeError(f"seq and ts must be ints, not {seq!r} and {ts!r}")
    # The id index lookup and the checks, inlined (as in cancel_order and new_order).
    found: Any = book._index.get(order_id)
    if found is not None and type(found) is not Order:
        found = found.get(client_id)
    if found is None or found.client_id != client_id:
        return _reject(seq, client_id, order_id, _R.UNKNOWN_ORDER, compact)
    order: Order = found  # typed: compiled, its fields are struct loads
    if price is not None:
        if type(price) is not _INT:
            raise TypeError(f"price must be an int (ticks), not {type(price).__name__}")
        p: int = price
        if not book._min_ticks <= p <= book._max_ticks:
            reason = _R.PRICE_NOT_POSITIVE if p <= 0 else _R.PRICE_OUT_OF_RANGE
            return _reject(seq, client_id, order_id, reason, compact)
    if amount is not None:
        if type(amount) is not _INT:
            raise TypeError(f"amount must be an int (lots), not {type(amount).__name__}")
        a: int = amount
        if not book._min_lots <= a <= book._max_lots:
            reason = _R.AMOUNT_NOT_POSITIVE if a <= 0 else _R.AMOUNT_OUT_OF_RANGE
            return _reject(seq, client_id, order_id, reason, compact)
    side, old_price, old_amount = order.side, order.price, order.remaining
    new_price = old_price if price is None else price
    new_amount = old_amount if amount is None else amount
    if new_price == old_price and new_amount == old_amount:
        return _reject(seq, client_id, order_id, _R.MODIFY_NO_CHANGE, compact)
    if new_price == old_price and new_amount < old_amount:
        # Pure size decrease: in place, time priority kept.
        level = (book._bids if side is _BUY else book._asks)[old_price]
        level[0] -= old_amount - new_amount
        order.remaining = new_amount
        fields = (
            seq,
            client_id,
            order_id,
            side,
            new_price,
            new_amount,
            old_price,
            old_amount,
            True,
        )
        return ((_MODIFIED, fields) if compact else _new(_Modified, fields),)
    book._unlink(order)
    fields = (seq, client_id, order_id, side, new_price, new_amount, old_price, old_amount, False)
    events: list[Any] = [(_MODIFIED, fields) if compact else _new(_Modified, fields)]
    if side is _BUY:
        best = book._best_ask
        crosses = best is not None and best <= new_price
    else:
        best = book._best_bid
        crosses = best is not None and best >= new_price
    remaining = new_amount
    if crosses:
        remaining = _match(
            book, events, seq, ts, client_id, order_id, side, new_price, new_price, remaining,
            compact,
        )  # fmt: skip
    if remaining:
        book._rest(record(client_id, order_id, side, new_price, remaining, seq, ts))
        rested: Any = (seq, client_id, order_id, side, new_price, remaining)
        events.append((_RESTED, rested) if compact else _new(_Rested, rested))
    return tuple(events)
