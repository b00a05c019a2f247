"""orderbook_core.testing, as its users rely on it: the import rules, the strategies'
promises (valid means valid, sequenced means gap-free) and the two oracles."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from core_support import CORE_PROFILE, Seq, unit_spec
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from orderbook_core import (
    CancelOrder,
    Command,
    MarketSpec,
    ModifyOrder,
    NewOrder,
    OrderBook,
    Side,
    command_to_wire,
    parse_command,
)
from orderbook_core.testing import (
    QuantityLedger,
    ReferenceBook,
    amounts,
    command_streams,
    commands,
    market_specs,
    new_orders,
    prices,
)

# `find` for "this can be drawn": the first example will do (no shrinking), repeatably.
FIND = settings(
    max_examples=500,
    phases=[Phase.generate],
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# ---------------------------------------------------------------- importing


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_core_never_imports_hypothesis() -> None:
    out = run_python(
        "import sys, orderbook_core\n"
        "assert 'hypothesis' not in sys.modules, 'hypothesis imported'\n"
        "assert 'orderbook_core.testing' not in sys.modules\n"
    )
    assert out.returncode == 0, out.stderr


def test_without_hypothesis_the_error_says_which_extra_to_install() -> None:
    # sys.modules[name] = None makes `import name` raise ImportError, as if not installed.
    out = run_python(
        "import sys\n"
        "sys.modules['hypothesis'] = None\n"
        "import orderbook_core\n"
        "try:\n"
        "    import orderbook_core.testing\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('imported without hypothesis')\n"
    )
    assert out.returncode == 0, out.stderr
    assert "testing" in out.stdout
    assert 'pip install "distributed-exchange[testing]"' in out.stdout


# ---------------------------------------------------------------- value strategies


@CORE_PROFILE
@given(spec=market_specs(), data=st.data())
def test_market_specs_and_the_values_drawn_for_them(spec: MarketSpec, data: st.DataObject) -> None:
    assert 1 <= spec.min_ticks <= spec.max_ticks
    assert 1 <= spec.min_lots <= spec.max_lots
    price = data.draw(prices(spec))
    amount = data.draw(amounts(spec))
    assert spec.min_ticks <= price <= spec.max_ticks
    assert spec.min_lots <= amount <= spec.max_lots
    assert spec.price_to_ticks(spec.ticks_to_price(price)) == price
    edge = data.draw(prices(spec, invalid=True))
    assert edge in (-1, 0, spec.max_ticks + 1) or spec.min_ticks - 1 <= edge <= spec.max_ticks


def test_invalid_values_are_drawn_and_bands_are_checked() -> None:
    spec = unit_spec()  # prices 1..1000, amounts 1..10000
    assert (
        find(prices(spec, low=95, high=105, invalid=True), lambda p: p > 1000, settings=FIND)
        == 1001
    )
    assert find(amounts(spec, invalid=True), lambda a: a <= 0, settings=FIND) in (-1, 0)
    with pytest.raises(ValueError, match="low 5 > high 4"):
        prices(spec, low=5, high=4)


@CORE_PROFILE
@given(data=st.data())
def test_commands_are_valid_by_default(data: st.DataObject) -> None:
    spec = data.draw(market_specs())
    cmd = data.draw(commands(spec))
    wire = json.loads(json.dumps(command_to_wire(cmd, spec)))
    assert parse_command(wire, spec, seq=cmd.seq, ts=cmd.ts) == cmd


def test_new_orders_cover_market_post_only_and_every_side() -> None:
    spec = unit_spec()
    find(new_orders(spec), lambda o: o.price is None, settings=FIND)
    find(new_orders(spec), lambda o: o.post_only and o.side is Side.SELL, settings=FIND)
    limits = new_orders(spec, market_orders=False, price=st.just(7))
    assert find(limits, lambda o: True, settings=FIND).price == 7


# ---------------------------------------------------------------- streams


@CORE_PROFILE
@given(stream=command_streams(unit_spec(), min_size=3, max_size=20, first_seq=41))
def test_streams_are_sequenced(stream: list[Command]) -> None:
    assert 3 <= len(stream) <= 20
    assert [c.seq for c in stream] == list(range(41, 41 + len(stream)))
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(stream))


def test_streams_aim_cancels_and_modifies_at_earlier_orders() -> None:
    def hits(stream: list[Command]) -> bool:
        submitted: set[tuple[str, str]] = set()
        for cmd in stream:
            key = (cmd.client_id, cmd.order_id)
            if isinstance(cmd, CancelOrder | ModifyOrder) and key in submitted:
                return True
            if isinstance(cmd, NewOrder):
                submitted.add(key)
        return False

    # Ids from a pool of 10^6 per client: only aiming explains a hit.
    many_ids = st.integers(0, 10**6).map(str)
    find(command_streams(unit_spec(), max_size=6, order_id=many_ids), hits, settings=FIND)


# ---------------------------------------------------------------- the oracles


@CORE_PROFILE
@given(data=st.data())
def test_order_book_against_reference_on_streams(data: st.DataObject) -> None:
    """The differential test docs/testing.md describes, in its shortest form."""
    spec = data.draw(market_specs())
    book, reference, ledger = OrderBook(spec), ReferenceBook(spec), QuantityLedger()
    for cmd in data.draw(command_streams(spec, max_size=30)):
        events = book.apply(cmd)
        assert events == reference.apply(cmd)
        ledger.record(events)
    book._check()
    assert list(book.orders()) == list(reference.orders())
    for side in Side:
        assert book.levels(side) == reference.levels(side)
    assert (book.best_bid(), book.best_ask()) == (reference.best_bid(), reference.best_ask())
    assert len(book) == len(reference)
    ledger.check(book.orders())
    assert reference.to_book() == book


def test_reference_book_basics() -> None:
    seq = Seq()
    reference = ReferenceBook(unit_spec())
    assert reference.spec == unit_spec()
    reference.apply(seq.new("a", "1", Side.SELL, 100, 5))
    reference.apply(seq.new("b", "1", Side.BUY, 100, 2))
    assert reference.get_order("a", "1") == next(reference.orders(Side.SELL))
    assert reference.depth(Side.SELL, 100) == 3
    assert list(reference.orders(Side.BUY)) == []
    assert "orders=1" in repr(reference)
    assert ReferenceBook().spec.market == "BTC-USD"


def test_quantity_ledger_names_what_does_not_balance() -> None:
    book = OrderBook(unit_spec())
    seq = Seq()
    ledger = QuantityLedger()
    ledger.record(book.apply(seq.new("a", "1", Side.SELL, 100, 5)))
    ledger.record(book.apply(seq.new("b", "1", Side.BUY, 100, 2)))
    ledger.check(book.orders())
    assert ledger.traded_total == 2
    assert (ledger.submitted[("a", "1")], ledger.filled[("a", "1")]) == (5, 2)
    lost = [o._replace(remaining=o.remaining - 1) for o in book.orders()]
    with pytest.raises(AssertionError, match=r"not conserved .*\('a', '1'\), 5, 2, 0, 2\)"):
        ledger.check(lost)
    ledger.submitted.clear()
    ledger.filled.clear()
    with pytest.raises(AssertionError, match=r"in total: submitted 0 != 2 x traded 2 \+"):
        ledger.check([])


# ---------------------------------------------------------------- docs/testing.md

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def test_docs_testing_examples_run() -> None:
    """Each python block runs as written; then its state machines and test_ functions
    run as pytest would run them in a user's test file."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 2, "docs/testing.md: expected the stateful and the @given examples"
    ran: list[str] = []
    for number, block in enumerate(blocks, start=1):
        namespace: dict[str, object] = {"__name__": f"docs_testing_example_{number}"}
        exec(compile(block, str(DOC), "exec"), namespace)
        for name, value in namespace.items():
            if (
                isinstance(value, type)
                and issubclass(value, RuleBasedStateMachine)
                and value is not RuleBasedStateMachine
            ):
                run_state_machine_as_test(value, settings=value.TestCase.settings)
                ran.append(name)
            elif name.startswith("test_") and callable(value):
                value()
                ran.append(name)
    assert ran == [
        "BookAgainstReference",
        "test_replaying_a_log_gives_the_reference_book",
        "test_every_spelling_is_understood",
        "test_the_error_names_the_broken_field",
    ]
