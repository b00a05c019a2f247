"""The deterministic simulation of the whole exchange (tests/chaos/simulation.py).

One test per seed (``CHAOS_PROFILE=long`` runs thousands, ``CHAOS_SEED=n`` one), the
figures of the run added up at the end, and three tests of the simulation itself: a seed
replays exactly, a matcher that skips a command is caught, and without the reader's walk
back to a flushed version some versions do not read whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.simulation import Outcome, SimulationFailure, run_simulation, seeds, summary
from exchange.protocol import Entry, InvalidVersion, apply_entry
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


def test_old_versions_need_the_walk_back_to_a_flushed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The matcher stores the book of one version per flush: the versions in between
    # read whole only through the walk back to a flushed one (`VersionReader.fetch`).
    # Without it some seeds' intermediate versions are unreadable, so the check of every
    # version in the simulation is not vacuous.
    async def no_walk(*args: object) -> object:
        raise InvalidVersion("missing page (walk back disabled)")

    monkeypatch.setattr("exchange.versions._reader.VersionReader._by_commands", no_walk)
    failed = 0
    for seed in range(16):
        try:
            run_simulation(seed, tmp_path / str(seed))
        except SimulationFailure:
            failed += 1
    assert failed >= 1
