"""Test your code against the core: Hypothesis strategies and a reference book.

For users of `orderbook_core` who write property-based or differential tests (a book
of their own, a replica, a service that feeds a book): `ReferenceBook` is the oracle,
a deliberately naive matcher to compare against after every step; `QuantityLedger`
checks that no lot is created or lost; the strategies draw market specs, prices,
amounts, ids, commands, sequenced command streams, and ``submit_order`` payloads that
are valid, invalid in exactly one field, or garbage. docs/testing.md shows a stateful
test built from them.

Needs Hypothesis: ``pip install "distributed-exchange[testing]"``. `orderbook_core`
itself never imports this package (it stays pure and dependency-free).
"""

try:
    import hypothesis as _hypothesis  # noqa: F401  (fail here, with the fix in the message)
except ImportError as exc:  # pragma: no cover - tested in a subprocess without hypothesis
    raise ImportError(
        "orderbook_core.testing needs Hypothesis; install the 'testing' extra: "
        'pip install "distributed-exchange[testing]"',
        name=__name__,
    ) from exc

from orderbook_core.testing._ledger import QuantityLedger
from orderbook_core.testing._payloads import (
    InvalidPayload,
    ValidPayload,
    garbage_payloads,
    invalid_payloads,
    json_values,
    valid_payloads,
)
from orderbook_core.testing._reference import ReferenceBook
from orderbook_core.testing._strategies import (
    amounts,
    cancel_orders,
    command_streams,
    commands,
    ids,
    market_specs,
    modify_orders,
    new_orders,
    prices,
)

__all__ = [
    "InvalidPayload",
    "QuantityLedger",
    "ReferenceBook",
    "ValidPayload",
    "amounts",
    "cancel_orders",
    "command_streams",
    "commands",
    "garbage_payloads",
    "ids",
    "invalid_payloads",
    "json_values",
    "market_specs",
    "modify_orders",
    "new_orders",
    "prices",
    "valid_payloads",
]
