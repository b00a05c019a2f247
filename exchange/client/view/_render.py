"""Draw a `MarketState` with rich: the ladder with depth bars, the tape, your orders.

Imported only when rich is installed (the ``tui`` extra); without it the client prints
plain lines. `render_market` returns one renderable, so tests draw it on a recording
`rich.console.Console` of a fixed width and read the text.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from exchange.client.view._ladder import Ladder, LevelRow
from exchange.client.view._market import MarketState

__all__ = ["render_market"]

BAR_CELLS = 16
"""Cells of the longest depth bar."""


def _bar(lots: int, most: int, style: str) -> Text:
    if most <= 0 or lots <= 0:
        return Text("")
    cells = max(1, round(BAR_CELLS * lots / most))
    return Text("█" * cells, style=style)


def _ladder_table(ladder: Ladder, levels: int) -> Table:
    table = Table(title="book", box=None, pad_edge=False, expand=False, title_justify="left")
    table.add_column("", width=3)
    table.add_column("price", justify="right")
    table.add_column("amount", justify="right")
    table.add_column("total", justify="right")
    table.add_column("#", justify="right")
    table.add_column("depth", width=BAR_CELLS, no_wrap=True)
    most = ladder.max_lots

    def add(side: str, row: LevelRow, style: str) -> None:
        table.add_row(
            Text(side, style=style),
            Text(row.price, style=style),
            row.amount,
            row.total,
            str(row.orders),
            _bar(row.lots, most, style),
        )

    asks, bids = ladder.asks[:levels], ladder.bids[:levels]
    hidden = ladder.ask_levels - len(asks)
    if hidden:
        table.add_row("", Text(f"+{hidden} more", style="dim"), "", "", "", "")
    for row in reversed(asks):
        add("ask", row, "red")
    if not ladder.asks:
        table.add_row("", Text("no asks", style="dim"), "", "", "", "")
    if ladder.spread is not None:
        table.add_row(
            "",
            Text(ladder.spread, style="bold yellow"),
            Text("spread", style="yellow"),
            Text(f"{ladder.spread_bps} bps", style="yellow"),
            "",
            "",
        )
    else:
        table.add_row("", "", Text("no spread", style="yellow"), "", "", "")
    for row in bids:
        add("bid", row, "green")
    if not ladder.bids:
        table.add_row("", Text("no bids", style="dim"), "", "", "", "")
    hidden = ladder.bid_levels - len(bids)
    if hidden:
        table.add_row("", Text(f"+{hidden} more", style="dim"), "", "", "", "")
    return table


def _tape_table(state: MarketState) -> Table:
    table = Table(title="trades", box=None, pad_edge=False, title_justify="left")
    table.add_column("time")
    table.add_column("price", justify="right")
    table.add_column("amount", justify="right")
    table.add_column("")
    for row in state.tape:
        style = "green" if row.side == "buy" else "red"
        mark = "mine" if row.mine else ""
        table.add_row(row.time, Text(row.price, style=style), row.amount, Text(mark, "bold"))
    if not state.tape:
        table.add_row(Text("none yet", style="dim"), "", "", "")
    return table


MAX_OWN_ORDERS = 8
"""Own resting orders listed, at most (a market maker may have hundreds)."""


def _orders_table(state: MarketState) -> Table:
    table = Table(title="my resting orders", box=None, pad_edge=False, title_justify="left")
    table.add_column("order")
    table.add_column("side")
    table.add_column("price", justify="right")
    table.add_column("remaining", justify="right")
    for order in state.own_orders[:MAX_OWN_ORDERS]:
        style = "green" if order["side"] == "buy" else "red"
        table.add_row(
            order["orderId"],
            Text(order["side"], style=style),
            str(order["price"]),
            str(order["remaining"]),
        )
    if not state.own_orders:
        table.add_row(Text("none", style="dim"), "", "", "")
    more = len(state.own_orders) - MAX_OWN_ORDERS
    if more > 0:
        table.add_row(Text(f"+{more} more", style="dim"), "", "", "")
    return table


def _header(state: MarketState) -> Text:
    text = Text()
    text.append(f"{state.spec.market}", style="bold")
    text.append(f"  {state.client_id}")
    book = (state.book_hash or "empty")[:12]
    text.append(f"  v{state.seq} [{book}]")
    text.append(f"  head {state.head}")
    lag = state.lag
    text.append(f"  lag {lag}", style="yellow" if lag else "green")
    text.append(f"  {state.ladder.orders} orders resting")
    return text


def _levels_that_fit(state: MarketState, height: int | None) -> int:
    """Levels a side that leave room for the rest of the screen in `height` rows."""
    if height is None:
        return state.depth
    orders = max(1, min(len(state.own_orders), MAX_OWN_ORDERS + 1))
    rest = 2 + 2 + 1 + 2 + 1 + orders + (len(state.notes) + 1 if state.notes else 0) + 2
    rest += 1 if state.warning else 0
    return max(2, min(state.depth, (height - rest) // 2 - 1))


def render_market(state: MarketState, height: int | None = None) -> RenderableType:
    """The whole screen: header, ladder beside the tape, your orders, what happened.

    Args:
        state: what to draw.
        height: rows available (the terminal's); the ladder shows fewer levels to fit.
    """
    top = Table.grid(padding=(0, 4))
    top.add_column()
    top.add_column()
    levels = _levels_that_fit(state, height)
    top.add_row(_ladder_table(state.ladder, levels), _tape_table(state))
    parts: list[RenderableType] = [_header(state), Text(""), top, Text(""), _orders_table(state)]
    if state.notes:
        parts.append(Text(""))
        parts.extend(Text(line) for line in state.notes)
    parts.append(Text(""))
    parts.append(Text(state.status, style="bold"))
    if state.warning:
        parts.append(Text(f"warning: {state.warning}", style="yellow"))
    return Group(*parts)
