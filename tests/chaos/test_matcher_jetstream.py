"""Seeded matcher failover runs on a real three-node NATS cluster (``make chaos`` only).

Each seed draws a sequence of faults of the active matcher (killed with ``kill -9``, or
stopped with ``SIGSTOP`` until a standby published, then resumed: it must be deposed
and publish nothing) and the load between them, against `e2e.matcher_failover`'s rig
(the sequencer on JetStream, matchers on two grapes each with its own --db, clients
that re-send until acknowledged). After each fault the dead or deposed matcher is
started again on its machine's --db, as a standby. Then: acknowledged = journaled =
applied, no duplicate, and a replica equal to ``dex replay``. The short profile
(``make test``) skips them: tests/e2e/test_e2e_jetstream_matcher_failover.py runs each
fault once there.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.matcher_failover import matcher_failover_rig

from chaos.harness import profile, report_failover_totals

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LONG = profile() == "long"
SEEDS = range(301, 304)
FAULTS_PER_RUN = 5

_figures: list[dict[str, Any]] = []


@pytest.fixture(scope="module", autouse=True)
def _totals(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print the module's totals (`report_failover_totals`)."""
    yield
    report_failover_totals(request, "matcher failover chaos", _figures)


@pytest.mark.skipif(not LONG, reason="make chaos only (CHAOS_PROFILE=long)")
@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", SEEDS)
def test_seeded_matcher_faults_lose_nothing(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    kinds = [rng.choice(("kill", "stop")) for _ in range(FAULTS_PER_RUN)]
    recoveries: list[tuple[str, float]] = []
    with matcher_failover_rig(tmp_path) as rig:
        with rig.load(clients=rng.randint(2, 6), seed=seed) as load:
            for kind in kinds:
                load.wait_acked(load.acked() + rng.randint(10, 120))
                active = rig.active_matcher()
                fault = rig.kill_active_matcher if kind == "kill" else rig.stop_active_matcher
                seconds = fault()
                recoveries.append((kind, seconds))
                rig.restart(active)
            load.wait_acked(load.acked() + 40)
        counts = rig.check(load)
    _figures.append({"seed": seed, **counts, "recovery_s": recoveries})
    assert counts["lost"] == counts["duplicated"] == 0
