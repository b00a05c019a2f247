"""Hypothesis strategies for the core's values: valid ones, and invalid ones on purpose.

Why they look like this: a matching engine goes wrong where orders *meet*: crossing
prices, partial fills across levels, an id reused after a fill, a cancel aimed at a
live order. Uniform draws over a market's whole range almost never meet (DEFAULT_SPEC
has 10^11 price ticks), so the command strategies draw by default from a narrow band
at the bottom of the range (21 ticks, 10 lots) and from small id pools; pass your own
``price=``, ``amount=``, ``client_id=`` or ``order_id=`` strategy to change that.
`prices` and `amounts` alone draw over the whole range unless told otherwise.

Keyword arguments named after a command's fields (``client_id``, ``price``, ``seq``...)
take a strategy for that field, as `hypothesis.strategies.builds` does.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from orderbook_core import (
    CancelOrder,
    Command,
    MarketSpec,
    ModifyOrder,
    NewOrder,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

__all__ = [
    "amounts",
    "cancel_orders",
    "command_streams",
    "commands",
    "ids",
    "market_specs",
    "modify_orders",
    "new_orders",
    "prices",
]

_PRICE_BAND = 21  # ticks: wide enough for several levels, narrow enough to cross often
_AMOUNT_BAND = 10  # lots: makers and takers of similar size, so fills are partial
_CLIENTS = ("alice", "bob", "carol")
_ORDER_IDS = tuple(str(n) for n in range(1, 9))

T = TypeVar("T")


def _weighted(*choices: tuple[int, SearchStrategy[T]]) -> SearchStrategy[T]:
    """Draw from each strategy with the given odds; the first one is what shrinks are
    towards. (Not ``st.one_of(s, s, s, t)``: one_of merges repeated branches.)"""
    table = tuple(s for weight, s in choices for _ in range(weight))
    return st.sampled_from(table).flatmap(lambda s: s)


# --------------------------------------------------------------------------- values


def ids() -> SearchStrategy[str]:
    """Any valid clientId or orderId: 1-64 characters of ``[A-Za-z0-9_.-]``."""
    return st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)


def _times(n: int, unit: Decimal) -> Decimal:
    """``n * unit`` exactly, with ``unit``'s exponent, whatever the decimal context."""
    _sign, digits, exponent = unit.as_tuple()
    assert isinstance(exponent, int)
    return Decimal(f"{n * int(''.join(map(str, digits)))}E{exponent}")


_TICK_SIZES = tuple(map(Decimal, ("0.01", "1", "0.5", "5", "0.0001", "100")))
_LOT_SIZES = tuple(map(Decimal, ("0.001", "1", "0.1", "10", "0.00000001")))


def market_specs(
    *, self_trade: SearchStrategy[SelfTradePrevention] | None = None
) -> SearchStrategy[MarketSpec]:
    """Valid market specs: assorted tick and lot sizes, bounds and self-trade modes.

    Bounds are drawn in whole ticks and lots (1 to 1000 for the minimum, up to 10^9
    more for the maximum, often equal), so every spec constructs.

    Args:
        self_trade: the self-trade prevention mode; every mode by default.
    """
    modes = st.sampled_from(SelfTradePrevention) if self_trade is None else self_trade

    @st.composite
    def draw_spec(draw: st.DrawFn) -> MarketSpec:
        tick = draw(st.sampled_from(_TICK_SIZES))
        lot = draw(st.sampled_from(_LOT_SIZES))
        min_ticks = draw(st.integers(1, 1000))
        min_lots = draw(st.integers(1, 1000))
        return MarketSpec(
            market=draw(st.sampled_from(("TEST", "BTC-USD", "ETH-EUR"))),
            tick_size=tick,
            lot_size=lot,
            min_price=_times(min_ticks, tick),
            max_price=_times(min_ticks + draw(st.integers(0, 10**9)), tick),
            min_amount=_times(min_lots, lot),
            max_amount=_times(min_lots + draw(st.integers(0, 10**9)), lot),
            self_trade=draw(modes),
        )

    return draw_spec()


def _bounded(low: int, high: int, edges: set[int], invalid: bool, what: str) -> SearchStrategy[int]:
    if low > high:
        raise ValueError(f"{what}: low {low} > high {high}")
    valid = st.integers(low, high)
    if not invalid:
        return valid
    # One draw in four at the edges: zero, negative, just inside, just outside.
    return _weighted((3, valid), (1, st.sampled_from(sorted(edges))))


def prices(
    spec: MarketSpec, *, low: int | None = None, high: int | None = None, invalid: bool = False
) -> SearchStrategy[int]:
    """Limit prices in ticks, from ``low`` to ``high`` (the spec's bounds by default).

    Args:
        spec: the market.
        low: the lowest price drawn (inclusive); default ``spec.min_ticks``.
        high: the highest price drawn (inclusive); default ``spec.max_ticks``. A band
            a few ticks wide makes orders cross.
        invalid: also draw, one time in four, the edge values 0, -1, the spec's
            min and max and just past them (most of which the book rejects).

    Raises:
        ValueError: ``low > high``.
    """
    lo = spec.min_ticks if low is None else low
    hi = spec.max_ticks if high is None else high
    edges = {0, -1, spec.min_ticks - 1, spec.min_ticks, spec.max_ticks, spec.max_ticks + 1}
    return _bounded(lo, hi, edges, invalid, "prices")


def amounts(
    spec: MarketSpec, *, low: int | None = None, high: int | None = None, invalid: bool = False
) -> SearchStrategy[int]:
    """Amounts in lots, from ``low`` to ``high`` (the spec's bounds by default).

    Args:
        spec: the market.
        low: the lowest amount drawn (inclusive); default ``spec.min_lots``.
        high: the highest amount drawn (inclusive); default ``spec.max_lots``.
        invalid: also draw, one time in four, the edge values 0, -1, the spec's
            min and max and just past them (most of which the book rejects).

    Raises:
        ValueError: ``low > high``.
    """
    lo = spec.min_lots if low is None else low
    hi = spec.max_lots if high is None else high
    edges = {0, -1, spec.min_lots - 1, spec.min_lots, spec.max_lots, spec.max_lots + 1}
    return _bounded(lo, hi, edges, invalid, "amounts")


# --------------------------------------------------------------------------- commands


def _near_prices(spec: MarketSpec) -> SearchStrategy[int]:
    return prices(spec, high=min(spec.max_ticks, spec.min_ticks + _PRICE_BAND - 1))


def _near_amounts(spec: MarketSpec) -> SearchStrategy[int]:
    return amounts(spec, high=min(spec.max_lots, spec.min_lots + _AMOUNT_BAND - 1))


def _one_in(n: int) -> SearchStrategy[bool]:
    return st.integers(0, n - 1).map(lambda k: k == 0)


def _or(given: SearchStrategy[Any] | None, default: SearchStrategy[Any]) -> SearchStrategy[Any]:
    return default if given is None else given


_SEQS = st.integers(1, 10**9)
_TIFS = _weighted(
    (2, st.just(TimeInForce.GTC)), (1, st.just(TimeInForce.IOC)), (1, st.just(TimeInForce.FOK))
)
_TIMESTAMPS = st.integers(0, 10**13)


def new_orders(
    spec: MarketSpec,
    *,
    client_id: SearchStrategy[str] | None = None,
    order_id: SearchStrategy[str] | None = None,
    side: SearchStrategy[Side] | None = None,
    price: SearchStrategy[int] | None = None,
    amount: SearchStrategy[int] | None = None,
    tif: SearchStrategy[TimeInForce] | None = None,
    post_only: SearchStrategy[bool] | None = None,
    market_orders: bool = True,
    seq: SearchStrategy[int] | None = None,
    ts: SearchStrategy[int] | None = None,
) -> SearchStrategy[NewOrder]:
    """New orders: limit and market, every time in force, sometimes post-only.

    Args:
        spec: the market (for the default price and amount bands).
        client_id: default: three clients, "alice", "bob" and "carol".
        order_id: default: "1" to "8" (small pools, so ids collide and are reused).
        side: default: both.
        price: the *limit* price; default: 21 ticks from the spec's minimum.
        amount: default: 10 lots from the spec's minimum.
        tif: default: GTC half the time, IOC and FOK a quarter each.
        post_only: default: one order in five.
        market_orders: when True (default), one order in ten is a market order
            (price None) instead.
        seq: default: any sequence number from 1 to 10^9.
        ts: default: any timestamp (ms) from 0 to 10^13.
    """
    limit = _or(price, _near_prices(spec))
    return st.builds(
        NewOrder,
        seq=_or(seq, _SEQS),
        ts=_or(ts, _TIMESTAMPS),
        client_id=_or(client_id, st.sampled_from(_CLIENTS)),
        order_id=_or(order_id, st.sampled_from(_ORDER_IDS)),
        side=_or(side, st.sampled_from(Side)),
        price=_weighted((9, limit), (1, st.none())) if market_orders else limit,
        amount=_or(amount, _near_amounts(spec)),
        tif=_or(tif, _TIFS),
        post_only=_or(post_only, _one_in(5)),
    )


def cancel_orders(
    *,
    client_id: SearchStrategy[str] | None = None,
    order_id: SearchStrategy[str] | None = None,
    seq: SearchStrategy[int] | None = None,
    ts: SearchStrategy[int] | None = None,
) -> SearchStrategy[CancelOrder]:
    """Cancels; the ids default to the same small pools as `new_orders`, so they hit."""
    return st.builds(
        CancelOrder,
        seq=_or(seq, _SEQS),
        ts=_or(ts, _TIMESTAMPS),
        client_id=_or(client_id, st.sampled_from(_CLIENTS)),
        order_id=_or(order_id, st.sampled_from(_ORDER_IDS)),
    )


def modify_orders(
    spec: MarketSpec,
    *,
    client_id: SearchStrategy[str] | None = None,
    order_id: SearchStrategy[str] | None = None,
    price: SearchStrategy[int] | None = None,
    amount: SearchStrategy[int] | None = None,
    seq: SearchStrategy[int] | None = None,
    ts: SearchStrategy[int] | None = None,
) -> SearchStrategy[ModifyOrder]:
    """Modifies of the price, the amount or both (never neither: the wire cannot say it).

    ``price`` and ``amount`` are the new values; defaults as in `new_orders`. To
    also draw the no-op modify, build it yourself with ``st.none() | prices(...)``.
    """
    p = _or(price, _near_prices(spec))
    a = _or(amount, _near_amounts(spec))
    common: dict[str, SearchStrategy[Any]] = {
        "seq": _or(seq, _SEQS),
        "ts": _or(ts, _TIMESTAMPS),
        "client_id": _or(client_id, st.sampled_from(_CLIENTS)),
        "order_id": _or(order_id, st.sampled_from(_ORDER_IDS)),
    }
    return st.one_of(
        st.builds(ModifyOrder, price=p, amount=st.none(), **common),
        st.builds(ModifyOrder, price=st.none(), amount=a, **common),
        st.builds(ModifyOrder, price=p, amount=a, **common),
    )


def commands(
    spec: MarketSpec,
    *,
    client_id: SearchStrategy[str] | None = None,
    order_id: SearchStrategy[str] | None = None,
    price: SearchStrategy[int] | None = None,
    amount: SearchStrategy[int] | None = None,
    seq: SearchStrategy[int] | None = None,
    ts: SearchStrategy[int] | None = None,
) -> SearchStrategy[Command]:
    """Any command: half new orders, a quarter cancels, a quarter modifies.

    Every command drawn with the defaults (or with valid ``price``/``amount``
    strategies) is valid: ``parse_command(command_to_wire(c, spec), ...) == c``.
    Arguments as in `new_orders`, `cancel_orders` and `modify_orders`.
    """
    ids_and_time: dict[str, Any] = {
        "client_id": client_id,
        "order_id": order_id,
        "seq": seq,
        "ts": ts,
    }
    new = new_orders(spec, price=price, amount=amount, **ids_and_time)
    return _weighted(
        (2, new),
        (1, cancel_orders(**ids_and_time)),
        (1, modify_orders(spec, price=price, amount=amount, **ids_and_time)),
    )


def command_streams(
    spec: MarketSpec,
    *,
    min_size: int = 1,
    max_size: int = 50,
    client_id: SearchStrategy[str] | None = None,
    order_id: SearchStrategy[str] | None = None,
    price: SearchStrategy[int] | None = None,
    amount: SearchStrategy[int] | None = None,
    first_seq: int = 1,
) -> SearchStrategy[list[Command]]:
    """Sequenced command logs, as the sequencer would hand them to a book.

    Sequence numbers run ``first_seq, first_seq + 1, ...`` without gaps, timestamps
    never decrease, and three cancels or modifies in four aim at an order the stream
    submitted earlier as a GTC limit order (most often a recent one, which may still be
    resting, or filled or cancelled by then), so they exercise more than "unknown
    order". The length is uniform in ``min_size..max_size``; shrinks by dropping
    commands.

    Args:
        spec: the market.
        min_size: the fewest commands in a stream.
        max_size: the most commands in a stream.
        client_id: as in `new_orders`.
        order_id: as in `new_orders`.
        price: as in `new_orders`.
        amount: as in `new_orders`.
        first_seq: the first command's sequence number.
    """
    step = st.tuples(
        commands(spec, client_id=client_id, order_id=order_id, price=price, amount=amount),
        st.integers(0, 3).map(bool),  # aim a cancel/modify at an earlier order? 3 in 4
        st.integers(0, 2**16),  # ...which one, counted back from the latest
        st.integers(0, 1000),  # ms since the previous command
    )

    @st.composite
    def draw_stream(draw: st.DrawFn) -> list[Command]:
        # The length first: st.lists alone favours short lists, and orders meet in long ones.
        size = draw(st.integers(min_size, max_size))
        steps = draw(st.lists(step, min_size=size, max_size=size))
        ts = draw(st.integers(0, 10**12))
        submitted: list[tuple[str, str]] = []
        stream: list[Command] = []
        for offset, (cmd, aim, which, gap) in enumerate(steps):
            ts += gap
            cmd = cmd._replace(seq=first_seq + offset, ts=ts)
            if isinstance(cmd, NewOrder):
                if cmd.price is not None and cmd.tif is TimeInForce.GTC:  # it may rest
                    submitted.append((cmd.client_id, cmd.order_id))
            elif aim and submitted:
                target_client, target_order = submitted[-1 - which % len(submitted)]
                cmd = cmd._replace(client_id=target_client, order_id=target_order)
            stream.append(cmd)
        return stream

    return draw_stream()
