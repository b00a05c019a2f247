"""The book's structures and the primitives that keep them consistent.

:class:`BookState` is what the matching rules (:mod:`orderbook_core._rules`) act on and
the base of :class:`~orderbook_core.OrderBook`, which adds the public methods. The rules
take a ``BookState`` (a class, not a protocol) so that, compiled with mypyc, every
attribute they read is a struct field rather than a dictionary lookup; the layout of the
structures is described in :mod:`orderbook_core._book`.
"""

from __future__ import annotations

import heapq
from collections import deque
from types import FunctionType
from typing import Any, Final, final

from orderbook_core._spec import DEFAULT_SPEC, MarketSpec
from orderbook_core._types import RestingOrder, Side

__all__ = [
    "CANCEL",
    "MODIFY",
    "NEW",
    "PURE",
    "BookState",
    "JournalEntry",
    "Level",
    "LevelImage",
    "Order",
    "alloc",
    "record",
]

_BUY: Final = Side.BUY
_heappush: Final = heapq.heappush
_heappop: Final = heapq.heappop

_new: Final[Any] = tuple.__new__
_deque: Final[Any] = deque  # compiled: a static load, not a module-dict lookup


@final
class Order:
    """A resting order, mutable: a fill is one attribute store.

    Laid out like :class:`RestingOrder` (:meth:`view` gives that immutable view).
    A slotted class, not a list: compiled (mypyc), a native class whose integer
    fields are stored unboxed, so a resting order keeps no int objects alive for its
    price, remaining, seq and ts (docs/core.md, "Speed and memory").
    """

    __slots__ = ("client_id", "order_id", "price", "remaining", "seq", "side", "ts")

    # Any for the ids and the side, which the rules compare but do not check: a typed
    # field would make a compiled build refuse (or convert) what the pure one stores.
    def __init__(
        self, client_id: Any, order_id: Any, side: Any, price: int, remaining: int, seq: int,
        ts: int,
    ) -> None:  # fmt: skip
        self.client_id = client_id
        self.order_id = order_id
        self.side = side
        self.price = price
        self.remaining = remaining
        self.seq = seq
        self.ts = ts

    def view(self) -> RestingOrder:
        """The immutable :class:`RestingOrder` of this order, as it is now."""
        view: RestingOrder = _new(
            RestingOrder,
            (self.client_id, self.order_id, self.side, self.price, self.remaining, self.seq,
             self.ts),
        )  # fmt: skip
        return view

    def __repr__(self) -> str:
        return f"Order{tuple(self.view())!r}"


# Whether these modules run as plain Python (False: compiled by mypyc, where Order's
# __init__ is not a Python function). Two hot spots differ by build:
# * Pure Python, calling Order runs its __init__ in a Python frame of its own (type.__call__
#   enters the interpreter again; 3.11 inlines only Python-to-Python calls): building the
#   record by hand, alloc then seven slot stores, costs ~850 instructions less (callgrind,
#   2,400 against 1,550). Compiled, Order is a native class whose constructor is C, and
#   object.__new__ would skip its set-up: the hot paths test PURE and call Order then.
# * Pure Python, OrderBook's field entry points are the rules functions themselves (see
#   the end of _book): a method that only forwards costs a frame per command.
PURE: Final = isinstance(Order.__init__, FunctionType)
alloc: Final[Any] = object.__new__


def record(
    client_id: Any, order_id: Any, side: Any, price: int, remaining: int, seq: int, ts: int
) -> Order:
    """``Order(...)``, without the ``__init__`` frame in pure Python (see PURE)."""
    if PURE:
        order: Order = alloc(Order)
        order.client_id = client_id
        order.order_id = order_id
        order.side = side
        order.price = price
        order.remaining = remaining
        order.seq = seq
        order.ts = ts
        return order
    return Order(client_id, order_id, side, price, remaining, seq, ts)


# What a command is, for BookState._apply_journaled (a typed command's class, or a tuple's
# length, tells).
NEW: Final = 0
CANCEL: Final = 1
MODIFY: Final = 2

# A level is a plain list [total, dead, queue] (see _book's docstring).
Level = list[Any]
# Undo record of one level, taken before a command touches it (see OrderBook._preimage):
# (buy, price, level object or None, total, dead, queue object, queue length, the orders
#  whose remaining may change, their remaining amounts, how to put back popped orders).
LevelImage = tuple[
    bool, int, Level | None, int, int, Any, int, list[Order], list[int], int
]  # fmt: skip
# Undo record of one command: the order it rested (or None), then its level images.
JournalEntry = list[Any]


class BookState:
    """A book's indexes, levels and heaps, and the primitives that change them together.

    Args:
        spec: the market's tick and lot size, limits and self-trade mode.
    """

    __slots__ = (
        "_ask_heap",
        "_asks",
        "_best_ask",
        "_best_bid",
        "_bid_heap",
        "_bids",
        "_compact",
        "_index",
        "_journal",
        "_max_lots",
        "_max_ticks",
        "_min_lots",
        "_min_ticks",
        "_shared",
        "_spec",
    )

    def __init__(self, spec: MarketSpec = DEFAULT_SPEC) -> None:
        self._spec = spec
        # The spec's integer limits, copied here: read on every order (hot path).
        self._min_ticks = spec.min_ticks
        self._max_ticks = spec.max_ticks
        self._min_lots = spec.min_lots
        self._max_lots = spec.max_lots
        self._bids: dict[int, Level] = {}
        self._asks: dict[int, Level] = {}
        self._bid_heap: list[int] = []  # negated prices
        self._ask_heap: list[int] = []
        self._best_bid: int | None = None
        self._best_ask: int | None = None
        # The id index, keyed by order id alone (a (client_id, order_id) tuple key would
        # cost 56 bytes per order): the order itself, or, while live orders of several
        # clients share that order id, a dict client_id -> order. ``_shared`` counts the
        # orders beyond the first in those dicts, so len(book) is O(1).
        self._index: dict[str, Any] = {}
        self._shared = 0
        # The undo log, only while a transaction or batch is open (None otherwise, so
        # the hot path pays one "is not None" test per command).
        self._journal: list[JournalEntry] | None = None
        # Which events the rules build: compact ones only while apply_many(compact=True)
        # runs (a flag, not an argument: the rules functions then take exactly the
        # field entry points' arguments, and pure Python they are those methods).
        self._compact = False

    def _apply_journaled(self, cmd: Any, kind: int) -> tuple[Any, ...]:
        """Apply ``cmd`` in the open transaction (the undo log is JournaledState's)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ primitives
    # Used by _rules; each keeps every index consistent.

    def _rest(self, order: Order) -> None:
        """Append ``order`` to the tail of its level. O(1), O(log L) for a new level."""
        price = order.price
        if order.side is _BUY:
            level = self._bids.get(price)
            if level is None:
                self._bids[price] = [order.remaining, 0, _deque((order,))]
                heap = self._bid_heap
                if len(heap) > 2 * len(self._bids) + 64:
                    self._rebuild_heaps()
                else:
                    _heappush(heap, -price)
                best = self._best_bid
                if best is None or price > best:
                    self._best_bid = price
            else:
                queue = level[2]
                order.price = queue[0].price  # share the level's price object (one int less)
                level[0] += order.remaining
                queue.append(order)
        else:
            level = self._asks.get(price)
            if level is None:
                self._asks[price] = [order.remaining, 0, _deque((order,))]
                heap = self._ask_heap
                if len(heap) > 2 * len(self._asks) + 64:
                    self._rebuild_heaps()
                else:
                    _heappush(heap, price)
                best = self._best_ask
                if best is None or price < best:
                    self._best_ask = price
            else:
                queue = level[2]
                order.price = queue[0].price  # share the level's price object (one int less)
                level[0] += order.remaining
                queue.append(order)
        self._link(order)

    def _rebuild_heaps(self) -> None:
        """Rebuild both price heaps from the levels (drops stale entries). O(L).

        Called when a heap holds more than twice its side's levels (plus slack), so
        its stale entries (lazily deleted prices) stay O(L). A level being added
        may already be in its dict: the rebuild then includes it.
        """
        self._bid_heap[:] = [-p for p in self._bids]
        heapq.heapify(self._bid_heap)
        self._ask_heap[:] = list(self._asks)
        heapq.heapify(self._ask_heap)

    def _find(self, client_id: str, order_id: str) -> Order | None:
        """The live order with this id, or None. O(1)."""
        entry = self._index.get(order_id)
        if entry is None:
            return None
        if type(entry) is Order:
            return entry if entry.client_id == client_id else None
        found: Order | None = entry.get(client_id)
        return found

    def _link(self, order: Order) -> None:
        """Add a live order to the id index (its id must be free for its client). O(1)."""
        order_id = order.order_id
        index = self._index
        entry = index.get(order_id)
        if entry is None:
            index[order_id] = order
        elif type(entry) is Order:
            index[order_id] = {entry.client_id: entry, order.client_id: order}
            self._shared += 1
        else:
            entry[order.client_id] = order
            self._shared += 1

    def _unshare(self, bucket: dict[str, Order], order: Order) -> None:
        """Put back a shared id's dict, just popped from the index, without ``order``."""
        del bucket[order.client_id]
        self._shared -= 1
        if len(bucket) == 1:
            (self._index[order.order_id],) = bucket.values()
        else:
            self._index[order.order_id] = bucket

    def _forget(self, order: Order) -> None:
        """Remove a live order from the id index. O(1)."""
        entry = self._index.pop(order.order_id)
        if entry is not order:
            self._unshare(entry, order)

    def _drop_bid_level(self, price: int) -> None:
        """Remove an emptied bid level and refresh the cached best. O(log L) amortized."""
        bids = self._bids
        del bids[price]
        if price == self._best_bid:
            heap = self._bid_heap
            while heap and -heap[0] not in bids:
                _heappop(heap)
            self._best_bid = -heap[0] if heap else None

    def _drop_ask_level(self, price: int) -> None:
        """Remove an emptied ask level and refresh the cached best. O(log L) amortized."""
        asks = self._asks
        del asks[price]
        if price == self._best_ask:
            heap = self._ask_heap
            while heap and heap[0] not in asks:
                _heappop(heap)
            self._best_ask = heap[0] if heap else None

    def _unlink(self, order: Order) -> None:
        """Take a live order out of the book (cancel or reinsert). O(1) amortized."""
        price = order.price
        buy = order.side is _BUY
        level = (self._bids if buy else self._asks)[price]
        level[0] -= order.remaining
        order.remaining = 0
        entry = self._index.pop(order.order_id)
        if entry is not order:
            self._unshare(entry, order)
        if not level[0]:
            if buy:
                self._drop_bid_level(price)
            else:
                self._drop_ask_level(price)
            return
        queue = level[2]
        if queue[-1] is order:
            queue.pop()
        elif queue[0] is order:
            queue.popleft()
        else:
            # Cancelling from the middle: mark dead (remaining 0) and leave it; compact
            # when dead entries outnumber live ones so memory stays O(live orders).
            level[1] += 1
            if level[1] > 16 and 2 * level[1] > len(queue):
                level[2] = deque(o for o in queue if o.remaining)
                level[1] = 0
