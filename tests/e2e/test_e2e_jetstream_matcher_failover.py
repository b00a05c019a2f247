"""A standby matcher on another "machine" (its own grape and --db), the journal on a real
three-node NATS cluster, real grapes and workers, under a retrying load: the active
matcher killed (-9), then the new active one stopped (SIGSTOP) until the next standby
published, and resumed: it must find itself deposed and publish nothing. After the run:
every acknowledged order is journaled once at its seq, the matcher applied them all, and
a client's replica equals `dex replay`. Longer, seeded runs: tests/chaos."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.matcher_failover import matcher_failover_rig

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]


def test_a_killed_then_a_stopped_active_matcher_hand_over_to_the_standby(
    tmp_path: Path,
) -> None:
    with matcher_failover_rig(tmp_path) as rig:
        with rig.load(clients=4) as load:
            load.wait_acked(40)
            killed = rig.active_matcher()
            rig.kill_active_matcher()
            load.wait_acked(load.acked() + 30)
            rig.start_standby(1)  # a new standby on the dead one's machine, empty --db
            assert rig.active_matcher() is not killed
            rig.stop_active_matcher()
            load.wait_acked(load.acked() + 30)
        counts = rig.check(load)
    assert counts["lost"] == counts["duplicated"] == 0
    assert len(rig.recoveries) == 2
    print(f"recovery_s: {[round(r, 2) for r in rig.recoveries]}")
