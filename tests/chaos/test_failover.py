"""Seeded failover runs on a real three-node NATS cluster (``make chaos`` only).

Each seed draws a sequence of faults (the stream leader's server killed, the active
sequencer killed, both at once, the active sequencer stopped and resumed) and the load
between them, runs them against `e2e.failover`'s rig (two grapes, an active and a
standby sequencer on one JetStream journal, the matcher, clients that re-send until
acknowledged), then checks acknowledged = journaled = applied, no duplicate, and a
replica equal to ``dex replay``. The short profile (``make test``) skips them: the e2e
tests (tests/e2e/test_e2e_jetstream_failover.py) run each fault once there.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.failover import FAULTS, failover_rig

from chaos.harness import profile, report_failover_totals

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LONG = profile() == "long"
SEEDS = range(201, 206)
FAULTS_PER_RUN = 6

_figures: list[dict[str, Any]] = []


@pytest.fixture(scope="module", autouse=True)
def _totals(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print the module's totals (`report_failover_totals`)."""
    yield
    report_failover_totals(request, "failover chaos", _figures)


@pytest.mark.skipif(not LONG, reason="make chaos only (CHAOS_PROFILE=long)")
@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", SEEDS)
def test_seeded_faults_on_the_cluster_lose_nothing(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    kinds = [rng.choice(FAULTS) for _ in range(FAULTS_PER_RUN)]
    with failover_rig(tmp_path) as rig:
        with rig.load(clients=rng.randint(2, 6), seed=seed) as load:
            for kind in kinds:
                load.wait_acked(load.acked() + rng.randint(10, 120))
                rig.inject(kind, load)
            load.wait_acked(load.acked() + 40)
        counts = rig.check(load)
    _figures.append(
        {"seed": seed, **counts, "recovery_s": [(f.kind, f.recovery_s) for f in rig.faults]}
    )
    assert counts["lost"] == counts["duplicated"] == 0
