"""Crash points and grape faults on the real system, checked against the clients' model.

Each test is one or more seeded `chaos_run`s (see `chaos.harness`): grapes, both workers
and four live replicas (two of them push only) as processes, a market-like load from
clients that retry with the same orderId, every worker killed with SIGKILL at each crash
point in turn and restarted, and grapes killed and restarted. `CHAOS_PROFILE=long`
(``make chaos``) runs many seeds; unset or ``short`` (``make test``) one short run of
each kind. The totals are printed at the end of the module and, with
``CHAOS_REPORT=<file>``, written there as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos.harness import Load, Outcome, chaos_run, plan_for, profile, report

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LONG = profile() == "long"
CRASH_SEEDS = range(1, 21) if LONG else range(1, 2)
"""Runs killing every crash point: twice each per run when long, once when short."""
GRAPE_SEEDS = range(101, 111) if LONG else range(101, 102)
"""Runs killing grapes (two faults per run) as well as every crash point once."""

_figures: list[dict[str, Any]] = []


@pytest.fixture(scope="module", autouse=True)
def _totals(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print (and with CHAOS_REPORT, save) the module's totals: the reliability figures."""
    yield
    if not _figures:
        return
    totals = {"profile": profile(), **report(_figures)}
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # teardown output is captured otherwise
            reporter.write_line(f"\nchaos totals: {json.dumps(totals)}")
    path = os.environ.get("CHAOS_REPORT")
    if path:
        Path(path).write_text(json.dumps({"totals": totals, "runs": _figures}, indent=1) + "\n")


@pytest.mark.timeout(600 if LONG else 180)
@pytest.mark.parametrize("seed", CRASH_SEEDS)
def test_every_crash_point_loses_nothing_and_applies_once(seed: int, tmp_path: Path) -> None:
    rounds = 2 if LONG else 1
    plan = plan_for(seed, rounds=rounds, orders=300 if LONG else 100, grape_faults=0)
    outcome = chaos_run(plan, tmp_path)
    _figures.append(outcome.figures())
    assert sum(outcome.kills.values()) == len(plan.kills)
    # Each during_broadcast kill landed in a map (a subscriber of the harness holds every
    # map open longer than the kill's delay), not before or after one.
    assert outcome.kills["during_broadcast"] == rounds
    assert outcome.broadcast_kills_in_map == rounds
    _load_was_a_market(outcome)


@pytest.mark.timeout(600 if LONG else 180)
@pytest.mark.parametrize("seed", GRAPE_SEEDS)
def test_grapes_killed_and_restarted_under_load(seed: int, tmp_path: Path) -> None:
    plan = plan_for(seed, rounds=1, orders=300 if LONG else 120, grape_faults=2)
    outcome = chaos_run(plan, tmp_path)
    _figures.append(outcome.figures())
    assert outcome.grape_faults == 2
    _load_was_a_market(outcome)


def _load_was_a_market(outcome: Outcome) -> None:
    """Every kind of command was sent, orders traded, and push-only replicas were checked."""
    assert set(outcome.kinds) == set(Load.WEIGHTS), outcome.kinds
    assert outcome.oracle["trades"] > 0, outcome.oracle
    assert outcome.oracle["cancelled_self_trade"] > 0, outcome.oracle
    assert outcome.push_only_books > 0
