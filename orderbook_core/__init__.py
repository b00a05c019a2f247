"""A pure, deterministic matching engine: price-time priority with exact integer ticks and lots.

Sans-I/O: :meth:`OrderBook.apply` takes a typed command and returns a tuple of typed,
immutable events; nothing here reads a clock, draws random numbers, logs or does I/O.
See docs/core.md for the matching rules and the cost of each method.

The same source may run compiled (mypyc extension modules, built by the package build
where a C compiler is available) or as plain Python; :data:`COMPILED` tells which.
"""

from importlib.machinery import EXTENSION_SUFFIXES as _EXTENSION_SUFFIXES

from orderbook_core import _book
from orderbook_core._book import OrderBook
from orderbook_core._encoding import canonical_json, decode_book, encode_book
from orderbook_core._spec import DEFAULT_SPEC, MAX_MARKET_LENGTH, MarketSpec, check_market
from orderbook_core._types import (
    COMPACT_EVENT_TYPES,
    CancelOrder,
    CancelReason,
    Command,
    CompactEvent,
    Event,
    ModifyOrder,
    NewOrder,
    OrderAccepted,
    OrderCancelled,
    OrderModified,
    OrderRejected,
    OrderRested,
    RejectReason,
    RestingOrder,
    SelfTradePrevention,
    Side,
    TimeInForce,
    Trade,
    event_from_compact,
    event_to_compact,
)
from orderbook_core._wire import (
    ID_RULE,
    ValidationError,
    command_to_wire,
    event_from_wire,
    event_to_wire,
    is_identifier,
    parse_command,
)

COMPILED: bool = _book.__file__ is not None and _book.__file__.endswith(tuple(_EXTENSION_SUFFIXES))
"""True when the matching core was loaded as compiled extension modules (docs/core.md)."""

if not OrderBook.__doc__:
    # Compiled by mypyc, which keeps no docstrings: help() gets this line (the API
    # reference reads the full text from the source).
    type.__setattr__(
        OrderBook,
        "__doc__",
        "One market's limit order book: price-time priority, pure and deterministic.",
    )

__all__ = [
    "COMPACT_EVENT_TYPES",
    "COMPILED",
    "DEFAULT_SPEC",
    "ID_RULE",
    "MAX_MARKET_LENGTH",
    "CancelOrder",
    "CancelReason",
    "Command",
    "CompactEvent",
    "Event",
    "MarketSpec",
    "ModifyOrder",
    "NewOrder",
    "OrderAccepted",
    "OrderBook",
    "OrderCancelled",
    "OrderModified",
    "OrderRejected",
    "OrderRested",
    "RejectReason",
    "RestingOrder",
    "SelfTradePrevention",
    "Side",
    "TimeInForce",
    "Trade",
    "ValidationError",
    "canonical_json",
    "check_market",
    "command_to_wire",
    "decode_book",
    "encode_book",
    "event_from_compact",
    "event_from_wire",
    "event_to_compact",
    "event_to_wire",
    "is_identifier",
    "parse_command",
]
