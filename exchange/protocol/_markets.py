"""The ``markets`` reply: which market a matcher serves, its spec and its signed head.

Every matcher answers ``markets`` under the one unsuffixed name, so a Grenache ``map``
over it lists every market in the network (`dex markets`). The head in it is the same
signed head ``orderbook_head`` answers; the spec is informative (a client reads the
tick and lot of the versions it follows from their roots).
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any, Final, NamedTuple, Self

from exchange.protocol._errors import BadMessage, service_handler
from exchange.protocol._fields import wire_object
from exchange.protocol._messages import Head
from exchange.protocol._names import MARKETS, ORDERBOOK_HEAD, PROCESS_ORDER, market_names
from orderbook_core import MarketSpec, check_market
from transports import JSON, Handler

__all__ = ["SPEC_FIELDS", "MarketInfo", "matcher_handlers", "spec_to_wire"]

SPEC_FIELDS: Final = (
    ("tickSize", "tick_size"),
    ("lotSize", "lot_size"),
    ("minPrice", "min_price"),
    ("maxPrice", "max_price"),
    ("minAmount", "min_amount"),
    ("maxAmount", "max_amount"),
)
"""The spec's decimal fields on the wire, and their `MarketSpec` attributes."""


def spec_to_wire(spec: MarketSpec) -> dict[str, str]:
    """`spec` as ``{"tickSize": "0.01", ..., "selfTrade": "cancel_maker"}``."""
    wire = {name: str(getattr(spec, attr)) for name, attr in SPEC_FIELDS}
    wire["selfTrade"] = str(spec.self_trade.value)
    return wire


class MarketInfo(NamedTuple):
    """One matcher's answer to ``markets``."""

    market: str
    spec: dict[str, str]
    head: Head

    @classmethod
    def of(cls, spec: MarketSpec, head: Head) -> Self:
        return cls(spec.market, spec_to_wire(spec), head)

    def to_wire(self) -> JSON:
        wire: dict[str, Any] = {
            "market": self.market,
            "spec": dict(self.spec),
            "head": self.head.to_wire_object(),
        }
        return wire

    @classmethod
    def from_wire(cls, reply: JSON) -> Self:
        """Raises: BadMessage: not ``{"market": symbol, "spec": {...}, "head": head}``."""
        obj = wire_object(reply, "markets reply", frozenset({"market", "spec", "head"}))
        try:
            market = check_market(obj.get("market"))
        except ValueError as exc:
            raise BadMessage(str(exc)) from None
        spec = obj.get("spec")
        names = {name for name, _attr in SPEC_FIELDS} | {"selfTrade"}
        if not isinstance(spec, dict) or set(spec) != names:
            raise BadMessage(f"spec: must have exactly the fields {sorted(names)}")
        for name, _attr in SPEC_FIELDS:
            if not _decimal(spec[name]):
                raise BadMessage(f"spec.{name}: must be a decimal string")
        return cls(
            market, {str(k): str(v) for k, v in spec.items()}, Head.from_wire(obj.get("head"))
        )


def _decimal(value: object) -> bool:
    try:
        return isinstance(value, str) and Decimal(value).is_finite()
    except InvalidOperation:
        return False


def matcher_handlers(
    spec: MarketSpec, process: Handler, head: Handler, *, logger: logging.Logger
) -> dict[str, Handler]:
    """What a matcher of `spec`'s market serves: its market's ``process_order`` and
    ``orderbook_head`` (`process`, `head`), and ``markets`` (answered from `head`), each
    wrapped by `service_handler`."""

    async def markets(_payload: JSON) -> JSON:
        return MarketInfo.of(spec, Head.from_wire(await head(None))).to_wire()

    names = market_names(spec.market)
    return {
        names.process_order: service_handler(PROCESS_ORDER, process, logger=logger),
        names.orderbook_head: service_handler(ORDERBOOK_HEAD, head, logger=logger),
        MARKETS: service_handler(MARKETS, markets, logger=logger),
    }
