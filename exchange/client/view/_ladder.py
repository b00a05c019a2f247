"""The book as a ladder: a few price levels a side, best first, with running totals.

What a trader reads first on any exchange screen: asks above, bids below, the spread
between them. `ladder_of` takes it from an `OrderBook` (a replica's, a replay's, one
read from the DHT), so the client, `dex book` and `dex replay` print the same thing.
Prices and amounts are the market's decimal strings, never floats.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from orderbook_core import MarketSpec, OrderBook, Side

__all__ = ["Ladder", "LevelRow", "ladder_lines", "ladder_of"]

BAR_WIDTH = 20
"""Characters of the longest depth bar in plain text."""


@dataclass(frozen=True, slots=True)
class LevelRow:
    """One price level: its price, what rests there, and the running total from the best.

    `lots` and `total_lots` are the integer amounts (for bars); `orders` is how many
    orders rest at the level.
    """

    price: str
    amount: str
    total: str
    orders: int
    lots: int
    total_lots: int

    def to_json(self) -> dict[str, Any]:
        return {"price": self.price, "amount": self.amount, "orders": self.orders}


@dataclass(frozen=True, slots=True)
class Ladder:
    """The best `depth` levels of each side (best first) and the spread between them."""

    bids: tuple[LevelRow, ...]
    asks: tuple[LevelRow, ...]
    bid_levels: int
    """How many bid levels the book has in all (the ladder may show fewer)."""
    ask_levels: int
    orders: int
    """How many orders rest in the whole book."""
    spread: str | None
    """Best ask minus best bid, or None when a side is empty."""
    spread_bps: str | None
    """The spread in basis points of the mid price, one decimal."""

    @property
    def max_lots(self) -> int:
        """The biggest level shown, either side: bars are scaled to it."""
        return max((row.lots for row in (*self.bids, *self.asks)), default=0)

    def to_json(self) -> dict[str, Any]:
        return {
            "bids": [row.to_json() for row in self.bids],
            "asks": [row.to_json() for row in self.asks],
            "spread": self.spread,
        }


def ladder_of(book: OrderBook, spec: MarketSpec, depth: int = 10) -> Ladder:
    """The ladder of `book`: `depth` levels a side. O(n + L log L), n orders, L levels."""
    rows: dict[Side, tuple[LevelRow, ...]] = {}
    counts: dict[Side, int] = {}
    for side in (Side.BUY, Side.SELL):
        levels = book.levels(side)
        counts[side] = len(levels)
        shown = levels[:depth]
        wanted = {price for price, _ in shown}
        per_price = Counter(o.price for o in book.orders(side) if o.price in wanted)
        total = 0
        out = []
        for price, lots in shown:
            total += lots
            out.append(
                LevelRow(
                    price=str(spec.ticks_to_price(price)),
                    amount=str(spec.lots_to_amount(lots)),
                    total=str(spec.lots_to_amount(total)),
                    orders=per_price[price],
                    lots=lots,
                    total_lots=total,
                )
            )
        rows[side] = tuple(out)
    spread = spread_bps = None
    bid, ask = book.best_bid(), book.best_ask()
    if bid is not None and ask is not None:
        spread_d = spec.ticks_to_price(ask - bid)
        mid = (spec.ticks_to_price(ask) + spec.ticks_to_price(bid)) / 2
        spread = str(spread_d)
        spread_bps = str((spread_d / mid * 10_000).quantize(Decimal("0.1")))
    return Ladder(
        bids=rows[Side.BUY],
        asks=rows[Side.SELL],
        bid_levels=counts[Side.BUY],
        ask_levels=counts[Side.SELL],
        orders=len(book),
        spread=spread,
        spread_bps=spread_bps,
    )


def _bar(lots: int, most: int, width: int = BAR_WIDTH) -> str:
    if most <= 0 or lots <= 0:
        return ""
    return "#" * max(1, round(width * lots / most))


def ladder_lines(ladder: Ladder) -> list[str]:
    """The ladder as plain text: asks highest first down to the best, spread, bids.

    Every line fits 80 columns; the bar after each level is its amount, scaled to the
    biggest level shown.
    """
    most = ladder.max_lots
    lines = [f"{'':4} {'price':>12} {'amount':>12} {'total':>12} {'orders':>6}"]

    def row(side: str, level: LevelRow) -> str:
        return (
            f"{side:4} {level.price:>12} {level.amount:>12} {level.total:>12} "
            f"{level.orders:>6}  {_bar(level.lots, most)}".rstrip()
        )

    hidden_asks = ladder.ask_levels - len(ladder.asks)
    if hidden_asks:
        lines.append(f"     ... {hidden_asks} more ask level{'s' * (hidden_asks != 1)}")
    lines.extend(row("ask", level) for level in reversed(ladder.asks))
    if not ladder.asks:
        lines.append("     (no asks)")
    if ladder.spread is not None:
        lines.append(f"     ---- spread {ladder.spread} ({ladder.spread_bps} bps) ----")
    else:
        lines.append("     ---- no spread: one side is empty ----")
    lines.extend(row("bid", level) for level in ladder.bids)
    if not ladder.bids:
        lines.append("     (no bids)")
    hidden_bids = ladder.bid_levels - len(ladder.bids)
    if hidden_bids:
        lines.append(f"     ... {hidden_bids} more bid level{'s' * (hidden_bids != 1)}")
    return lines
