"""The market as a trader sees it: the ladder, the spread, the tape, their own orders.

`ladder_of` and `ladder_lines` turn any `OrderBook` into a ladder (used by the client,
`dex book` and `dex replay`); `MarketState` is what the live view shows, fed by a
`ClientNode`'s ``on_version``; `LiveMarket` draws it on a terminal with rich (the
``tui`` extra), and `render_market` is the drawing itself. Without rich, or when the output is not a
terminal, the client prints plain lines instead (`exchange.client._output`).
"""

from exchange.client.view._ladder import Ladder, LevelRow, ladder_lines, ladder_of
from exchange.client.view._live import LiveMarket, rich_available
from exchange.client.view._market import MarketState, TapeRow, trade_time

__all__ = [
    "Ladder",
    "LevelRow",
    "LiveMarket",
    "MarketState",
    "TapeRow",
    "ladder_lines",
    "ladder_of",
    "render_market",
    "rich_available",
    "trade_time",
]


def render_market(state: MarketState, height: int | None = None) -> object:
    """Draw `state` as one rich renderable, in `height` rows if given (needs rich)."""
    from exchange.client.view._render import render_market as render

    return render(state, height)
