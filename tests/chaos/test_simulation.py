"""The deterministic simulation of the whole exchange (tests/chaos/simulation.py).

One test per seed (``CHAOS_PROFILE=long`` runs thousands, ``CHAOS_SEED=n`` one), the
figures of the run added up at the end, and two tests of the simulation itself: a seed
replays exactly, and a matcher that skips a command is caught.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.simulation import Outcome, SimulationFailure, run_simulation, seeds, summary
from exchange.protocol import Entry, apply_entry
from orderbook_core import Event, OrderBook

_OUTCOMES: list[Outcome] = []


@pytest.fixture(scope="module", autouse=True)
def _figures(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print the added-up figures of every seed run in this module."""
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if _OUTCOMES and capture is not None:
        with capture.global_and_fixture_disabled():
            print(f"\nsimulation: {summary(_OUTCOMES)}")


@pytest.mark.parametrize("seed", seeds())
def test_seed_matches_the_model(seed: int, tmp_path: Path) -> None:
    _OUTCOMES.append(run_simulation(seed, tmp_path))


def test_a_seed_replays_exactly(tmp_path: Path) -> None:
    # Seed 3 has drops, duplicates, reordering, DHT faults and three restarts.
    first = run_simulation(3, tmp_path / "a")
    second = run_simulation(3, tmp_path / "b")
    assert sum(first.faults.values()) > 0
    assert sum(first.restarts.values()) > 0
    assert first.trace == second.trace


def test_a_matcher_that_skips_a_command_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A matcher that acknowledges seq 5 without applying it publishes versions that are
    # not the journal's replay: every seed that gets that far must say so (the checks
    # are not vacuous).
    def skip_five(book: OrderBook, entry: Entry) -> tuple[Event, ...]:
        return () if entry.seq == 5 else apply_entry(book, entry)

    monkeypatch.setattr("exchange.matcher._worker.apply_entry", skip_five)
    caught = 0
    for seed in range(6):
        try:
            outcome = run_simulation(seed, tmp_path / str(seed))
        except SimulationFailure:
            caught += 1
        else:
            assert outcome.journal < 5, f"seed {seed}: seq 5 skipped, yet no failure"
    assert caught >= 4
