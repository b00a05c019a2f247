"""What the live view shows, kept up to date from the client's versions and records.

`MarketState` is plain data, fed two ways: `on_version` with each verified version (the
book, and every event since the previous one: the tape is the `Trade` events of all
clients, so a watcher sees the market trade too), and `on_record` with the records the
client emits about itself (its order's progress, fills, resting orders, warnings). It
does no I/O and knows nothing of terminals: `exchange.client.view.render_market` draws
it, and tests check it directly.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from exchange.client._output import Record, describe_record
from exchange.client.view._ladder import Ladder, ladder_of
from orderbook_core import Event, MarketSpec, OrderBook, Trade

__all__ = ["MarketState", "TapeRow", "trade_time"]


@dataclass(frozen=True, slots=True)
class TapeRow:
    """One trade on the tape. `side` is the taker's: a buy lifted an ask, a sell hit a bid."""

    seq: int
    trade_id: str
    time: str
    side: str
    price: str
    amount: str
    mine: bool


def trade_time(ts_ms: int) -> str:
    """The sequencer's timestamp (ms since the epoch) as local ``HH:MM:SS``."""
    return time.strftime("%H:%M:%S", time.localtime(ts_ms / 1000))


class MarketState:
    """The market as one client sees it: its replica's ladder, the tape, its own orders.

    Args:
        spec: the market.
        client_id: whose orders and fills are "mine".
        depth: price levels a side.
        tape: trades kept on the tape (newest first).
        notes: lines kept about the client's own orders (newest last).
    """

    def __init__(
        self,
        spec: MarketSpec,
        client_id: str,
        *,
        depth: int = 8,
        tape: int = 12,
        notes: int = 6,
    ) -> None:
        self.spec = spec
        self.client_id = client_id
        self.depth = depth
        self.ladder: Ladder = ladder_of(OrderBook(spec), spec, depth)
        self.seq = 0
        self.head = 0
        self.book_hash: str | None = None
        self.versions = 0
        self.tape: deque[TapeRow] = deque(maxlen=tape)
        self.own_orders: list[Record] = []
        self.fills: deque[Record] = deque(maxlen=notes)
        self.notes: deque[str] = deque(maxlen=notes)
        self.status = "starting"
        self.warning: str | None = None

    @property
    def lag(self) -> int:
        """How many sequence numbers the replica is behind the matcher's head."""
        return max(self.head - self.seq, 0)

    def on_version(self, book: OrderBook, seq: int, head: int, events: Iterable[Event]) -> None:
        """The replica moved to `seq` (head `head`); `events` are those since the last."""
        self.ladder = ladder_of(book, self.spec, self.depth)
        self.seq = seq
        self.head = max(head, seq)
        self.versions += 1
        for event in events:
            if isinstance(event, Trade):
                self.tape.appendleft(self._tape_row(event))

    def on_head(self, head: int) -> None:
        """The matcher's head as last polled (the lag is measured against it)."""
        self.head = max(self.head, head)

    def _tape_row(self, trade: Trade) -> TapeRow:
        me = self.client_id
        return TapeRow(
            seq=trade.seq,
            trade_id=trade.trade_id,
            time=trade_time(trade.ts),
            side=str(trade.taker_side),
            price=str(self.spec.ticks_to_price(trade.price)),
            amount=str(self.spec.lots_to_amount(trade.amount)),
            mine=me in (trade.maker_client_id, trade.taker_client_id),
        )

    def on_record(self, record: Record) -> None:
        """Take in one of the client's records (the kinds of `exchange.client._output`)."""
        kind = record.get("event")
        if kind == "book":
            self.book_hash = record.get("book")
        elif kind == "started":
            self.status = f"watching through {record['grape']}"
        elif kind == "submitted":
            what = "cancel of" if record.get("op") == "cancel" else "order"
            self.status = f"{what} {record['orderId']} sent: journaled as seq {record['seq']}"
        elif kind == "refused":
            self.status = f"refused by the sequencer: {record['error']}"
        elif kind == "orders":
            self.own_orders = list(record["orders"])
        elif kind == "warning":
            self.warning = str(record["message"])
        elif kind == "done":
            self.status = str(record.get("outcome") or f"done at seq {record['seq']}")
        else:
            line = describe_record(record)
            if line is not None:
                self.notes.append(line)
                if kind == "fill":
                    self.fills.appendleft(record)
