"""The market view: the ladder of a book, and the screen drawn at a fixed size."""

from __future__ import annotations

import io

from rich.console import Console

from exchange.client.view import MarketState, ladder_lines, ladder_of, render_market, trade_time
from orderbook_core import DEFAULT_SPEC, NewOrder, OrderBook, Side

SPEC = DEFAULT_SPEC
TS = 1_700_000_000_000


def book_with(*orders: tuple[str, Side, int, int]) -> tuple[OrderBook, list[object]]:
    """Apply new orders (client, side, price ticks, lots); return the book and events."""
    book = OrderBook(SPEC)
    events: list[object] = []
    for seq, (client, side, price, lots) in enumerate(orders, start=1):
        events.extend(
            book.apply(
                NewOrder(seq, 1_700_000_000_000, client, f"{client}-{seq}", side, price, lots)
            )
        )
    return book, events


BOOK, EVENTS = book_with(
    ("a", Side.SELL, 10_100, 2_000),
    ("b", Side.SELL, 10_100, 1_000),
    ("a", Side.SELL, 10_200, 6_000),
    ("c", Side.BUY, 9_900, 4_000),
    ("c", Side.BUY, 9_800, 1_500),
    ("d", Side.BUY, 10_100, 500),  # trades with a's ask
)


def draw(state: MarketState, height: int | None = None) -> str:
    console = Console(file=io.StringIO(), width=100, record=True, color_system=None)
    console.print(render_market(state, height))
    return console.export_text()


def test_ladder_of_a_book() -> None:
    ladder = ladder_of(BOOK, SPEC, depth=10)
    assert [(r.price, r.amount, r.total, r.orders) for r in ladder.asks] == [
        ("101.00", "2.500", "2.500", 2),
        ("102.00", "6.000", "8.500", 1),
    ]
    assert [(r.price, r.amount, r.total, r.orders) for r in ladder.bids] == [
        ("99.00", "4.000", "4.000", 1),
        ("98.00", "1.500", "5.500", 1),
    ]
    assert (ladder.spread, ladder.spread_bps) == ("2.00", "200.0")
    assert ladder.orders == 5


def test_ladder_lines_show_asks_above_bids_and_what_is_hidden() -> None:
    lines = ladder_lines(ladder_of(BOOK, SPEC, depth=1))
    assert lines[1] == "     ... 1 more ask level"
    assert lines[2].split()[:5] == ["ask", "101.00", "2.500", "2.500", "2"]
    assert lines[3] == "     ---- spread 2.00 (200.0 bps) ----"
    assert lines[4].split()[:2] == ["bid", "99.00"]
    assert lines[-1] == "     ... 1 more bid level"
    assert lines[4].endswith("#" * 20)  # the biggest level shown has the full bar


def test_ladder_of_an_empty_book() -> None:
    lines = ladder_lines(ladder_of(OrderBook(SPEC), SPEC))
    assert "(no asks)" in lines[1]
    assert "no spread" in lines[2]
    assert "(no bids)" in lines[3]


def test_the_screen_at_a_fixed_size() -> None:
    state = MarketState(SPEC, "d", depth=5)
    state.on_record({"event": "book", "seq": 6, "book": "ab" * 20})
    state.on_version(BOOK, 6, 9, EVENTS)  # type: ignore[arg-type]
    state.on_record(
        {
            "event": "fill",
            "seq": 6,
            "tradeId": "6.1",
            "orderId": "d-6",
            "role": "taker",
            "side": "buy",
            "price": "101.00",
            "amount": "0.500",
            "counterparty": "a",
        }
    )
    state.on_record(
        {"event": "orders", "seq": 6, "orders": []},
    )
    screen = draw(state)
    lines = screen.splitlines()
    assert lines[0] == "BTC-USD  d  v6 [abababababab]  head 9  lag 3  5 orders resting"

    def row(*start: str) -> int:
        return next(i for i, line in enumerate(lines) if line.split()[: len(start)] == [*start])

    ask_102, ask_101, bid_99 = row("ask", "102.00"), row("ask", "101.00"), row("bid", "99.00")
    spread = next(i for i, line in enumerate(lines) if "spread" in line)
    assert ask_102 < ask_101 < spread < bid_99  # asks above, highest first
    assert "200.0 bps" in lines[spread]
    assert "█" in lines[ask_102]
    # The tape: the trade, marked as this client's.
    tape = next(line for line in lines if trade_time(TS) in line)
    assert "101.00" in tape
    assert "0.500" in tape
    assert "mine" in tape
    assert "seq 6: d-6 bought 0.500 @ 101.00 (taker, against a)" in screen
    assert all(len(line) <= 100 for line in lines)


def test_a_short_terminal_shows_fewer_levels() -> None:
    state = MarketState(SPEC, "w", depth=10)
    book, events = book_with(*[("m", Side.SELL, 10_000 + i, 1_000) for i in range(10)])
    state.on_version(book, 10, 10, events)  # type: ignore[arg-type]
    assert draw(state).count("ask ") == 10
    short = draw(state, height=20)
    assert short.count("ask ") < 10
    assert "+" in short
    assert "more" in short
    assert len(short.splitlines()) <= 20
