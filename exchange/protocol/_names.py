"""The names of the exchange's services on the Grenache network.

These are the only string literals of the names in the code: every service serves and
every caller calls through these constants or through `market_names`, which gives one
market's names: the default market keeps the seed's names exactly, market ``X`` has the
same names with ``:X`` appended (``submit_order:ETH-USD``).
"""

from __future__ import annotations

from typing import Final, NamedTuple

from orderbook_core import DEFAULT_SPEC, check_market

__all__ = [
    "DEFAULT_MARKET",
    "MARKETS",
    "ORDERBOOK_HEAD",
    "ORDERBOOK_UPDATED",
    "PROCESS_ORDER",
    "SUBMIT_ORDER",
    "MarketNames",
    "market_names",
]

SUBMIT_ORDER: Final = "submit_order"
"""Served by the sequencer (submit_order worker): clients submit commands here."""

PROCESS_ORDER: Final = "process_order"
"""Served by the matcher (process_order worker): the sequencer forwards the journal here."""

ORDERBOOK_HEAD: Final = "orderbook_head"
"""Served by the matcher: the latest published version, ``{"seq", "root"}``."""

ORDERBOOK_UPDATED: Final = "orderbook_updated"
"""Served by every client: the matcher pushes each new version's root hash here."""

MARKETS: Final = "markets"
"""Served by every matcher, of every market, under this one name: its market and spec
(a Grenache ``map`` over it finds every market in the network)."""

DEFAULT_MARKET: Final = DEFAULT_SPEC.market
"""The market whose names are the seed's, unsuffixed (``BTC-USD``)."""


class MarketNames(NamedTuple):
    """One market's service names."""

    market: str
    submit_order: str
    process_order: str
    orderbook_head: str
    orderbook_updated: str


def market_names(market: str = DEFAULT_MARKET) -> MarketNames:
    """The service names of `market`: the seed's for the default market, else each with
    ``:<market>`` appended.

    Raises:
        ValueError: `market` is not a market symbol (`orderbook_core.check_market`).
    """
    check_market(market)
    suffix = "" if market == DEFAULT_MARKET else f":{market}"
    return MarketNames(
        market,
        SUBMIT_ORDER + suffix,
        PROCESS_ORDER + suffix,
        ORDERBOOK_HEAD + suffix,
        ORDERBOOK_UPDATED + suffix,
    )
