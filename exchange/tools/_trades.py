"""A trade as `dex` shows it (the buyer's and the seller's view), for every command.

`dex replay` and `dex demo` print trades; both take them from here, so a trade reads
the same in each.
"""

from __future__ import annotations

from typing import Any

from orderbook_core import MarketSpec, Side, Trade

__all__ = ["trade_line", "trade_record"]


def trade_record(trade: Trade, spec: MarketSpec) -> dict[str, Any]:
    """A trade as the buyer and the seller see it."""
    buyer, seller = (
        (trade.taker_client_id, trade.maker_client_id)
        if trade.taker_side == Side.BUY
        else (trade.maker_client_id, trade.taker_client_id)
    )
    return {
        "seq": trade.seq,
        "tradeId": trade.trade_id,
        "buyer": buyer,
        "seller": seller,
        "price": str(spec.ticks_to_price(trade.price)),
        "amount": str(spec.lots_to_amount(trade.amount)),
    }


def trade_line(record: dict[str, Any]) -> str:
    r = record
    return (
        f"  trade {r['tradeId']:>8}: {r['buyer']} buys {r['amount']:>8} @ {r['price']:>8}"
        f" from {r['seller']}"
    )
