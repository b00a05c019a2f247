"""The public surface: __all__ (of orderbook_core and orderbook_core.testing), the
contract names, purity, and the docs example."""

from __future__ import annotations

import ast
import re
import types
from pathlib import Path

import pytest

import orderbook_core
import orderbook_core.testing

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "orderbook_core"


@pytest.mark.parametrize(
    "module", [orderbook_core, orderbook_core.testing], ids=lambda m: m.__name__
)
def test_all_matches_the_public_names(module: types.ModuleType) -> None:
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(module.__all__) == public

    # Sorted isort-style, as ruff's RUF022 keeps it: CONSTANTS, Classes, functions.
    def style(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert list(module.__all__) == sorted(module.__all__, key=style)
    assert len(set(module.__all__)) == len(module.__all__)
    # Every public name is documented where it is defined (the API reference shows it).
    for name in module.__all__:
        value = getattr(module, name)
        if callable(value):
            assert value.__doc__, f"{module.__name__}.{name} has no docstring"


def test_contract_names_exist() -> None:
    """The names docs/contracts.md promises to the other packages."""
    for name in [
        "Side",
        "TimeInForce",
        "MarketSpec",
        "DEFAULT_SPEC",
        "NewOrder",
        "CancelOrder",
        "ModifyOrder",
        "Command",
        "OrderAccepted",
        "Trade",
        "OrderRested",
        "OrderCancelled",
        "OrderRejected",
        "OrderModified",
        "Event",
        "RejectReason",
        "RestingOrder",
        "OrderBook",
        "encode_book",
        "decode_book",
        "parse_command",
        "ValidationError",
        "command_to_wire",
        "event_to_wire",
        "event_from_wire",
    ]:
        assert hasattr(orderbook_core, name), name
    assert orderbook_core.Side.BUY.value == "buy"
    assert orderbook_core.Side.SELL.value == "sell"
    assert [t.value for t in orderbook_core.TimeInForce] == ["GTC", "IOC", "FOK"]
    assert orderbook_core.NewOrder._fields == (
        "seq", "ts", "client_id", "order_id", "side", "price", "amount", "tif", "post_only"
    )  # fmt: skip
    assert orderbook_core.CancelOrder._fields == ("seq", "ts", "client_id", "order_id")
    assert orderbook_core.ModifyOrder._fields == (
        "seq", "ts", "client_id", "order_id", "price", "amount"
    )  # fmt: skip
    assert orderbook_core.RestingOrder._fields == (
        "client_id", "order_id", "side", "price", "remaining", "seq", "ts"
    )  # fmt: skip
    for method in [
        "apply",
        "apply_batch",
        "transaction",
        "best_bid",
        "best_ask",
        "depth",
        "levels",
        "orders",
        "get_order",
        "copy",
        "from_orders",
    ]:
        assert callable(getattr(orderbook_core.OrderBook, method)), method


FORBIDDEN_IMPORTS = {
    "asyncio", "datetime", "logging", "os", "random", "secrets", "socket", "threading",
    "time", "uuid", "transports", "exchange",
}  # fmt: skip


def test_core_is_pure() -> None:
    """No I/O, clock, randomness, logging or threads: checked on the imports.

    Hypothesis is imported by `orderbook_core.testing` alone (an optional extra)."""
    for path in sorted(PACKAGE.rglob("*.py")):
        in_testing = path.relative_to(PACKAGE).parts[0] == "testing"
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in FORBIDDEN_IMPORTS, (path.name, name)
                if not in_testing:
                    assert top != "hypothesis", (path.name, name)


def test_no_float_on_the_money_path() -> None:
    pattern = re.compile(r"\bfloat\(|: float\b")
    for path in sorted(PACKAGE.rglob("*.py")):
        assert not pattern.search(path.read_text()), path.name


def test_modules_stay_small() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        assert len(path.read_text().splitlines()) <= 800, path.name


def test_docs_example_runs() -> None:
    text = (ROOT / "docs" / "core.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert blocks, "docs/core.md has no python example"
    for block in blocks:
        exec(compile(block, "docs/core.md", "exec"), {"__name__": "docs_core_example"})
