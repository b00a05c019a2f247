"""Failover on a real three-node NATS cluster, real grapes, real workers, under load: the
stream leader's server killed, the active sequencer killed, both at once, the active
sequencer stopped (SIGSTOP, as if partitioned) and resumed, and a quorum lost and
regained. After each run: every acknowledged order is in the journal at the seq of its
acknowledgement, every order sent is there once, the matcher applied it all, and a
client's replica equals `dex replay` of the journal. Longer, seeded runs of the same
faults are in tests/chaos (`make chaos`)."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from e2e.failover import failover_rig

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]


def test_killing_the_stream_leader_the_active_sequencer_and_both_loses_nothing(
    tmp_path: Path,
) -> None:
    with failover_rig(tmp_path) as rig:
        with rig.load(clients=4) as load:
            load.wait_acked(40)
            fault, server = rig.kill_stream_leader()
            load.wait_recovered(fault)
            server.start()
            rig.wait_whole()
            load.wait_acked(load.acked() + 40)

            fault, dead = rig.kill_active_sequencer()
            load.wait_recovered(fault)
            assert rig.active_sequencer() is not dead
            rig.start_standby(0)  # the next standby
            load.wait_acked(load.acked() + 40)

            fault, server, dead = rig.kill_both()
            load.wait_recovered(fault)
            server.start()
            load.wait_acked(load.acked() + 40)
        counts = rig.check(load)
    assert counts["lost"] == counts["duplicated"] == 0
    assert [f.kind for f in rig.faults] == ["stream_leader", "sequencer", "both"]
    assert all(f.recovery_s is not None for f in rig.faults)


def test_a_stopped_active_sequencer_that_comes_back_never_writes(tmp_path: Path) -> None:
    with failover_rig(tmp_path) as rig:
        with rig.load(clients=4) as load:
            load.wait_acked(40)
            stopped = rig.active_sequencer()
            offset = len(stopped.log.read_bytes())
            os.kill(stopped.pid, signal.SIGSTOP)  # partitioned: alive, silent
            fault = rig._fault("sequencer_stopped")
            try:
                load.wait_recovered(fault)
                taker = rig.active_sequencer()
                assert taker is not stopped
                taker.wait_for_text("took the writer's lease", 10)
                took = re.findall(r"took the writer's lease of .* at seq (\d+)", taker.text())
                took_at = int(took[-1])
                load.wait_acked(load.acked() + 20)
            finally:
                os.kill(stopped.pid, signal.SIGCONT)
            stopped.wait_for_text("stepping down", 30)
            load.wait_acked(load.acked() + 40)  # and trading goes on
        assert stopped.alive()
        # What it logged as accepted after it resumed was stored before the standby took
        # over: nothing written since.
        assert all(last <= took_at for last in rig.accepted_after(stopped, offset))
        assert rig.active_sequencer() is taker
        rig.check(load)


def test_a_lost_quorum_answers_err_unavailable_and_trading_resumes(tmp_path: Path) -> None:
    with failover_rig(tmp_path) as rig:
        with rig.load(clients=2) as load:
            load.wait_acked(20)
            down = [s for s in rig.servers if s is not rig.stream_leader()]
            for server in down:  # the leader alone is no majority
                server.kill()
            fault = rig._fault("quorum")
            time.sleep(3)
            refused, acked = load.refusals["ERR_UNAVAILABLE"], load.acked()
            time.sleep(2)
            assert load.refusals["ERR_UNAVAILABLE"] > refused  # refused, and said so
            assert load.acked() == acked  # nothing acknowledged without a majority
            for server in down:
                server.start()
            load.wait_recovered(fault, timeout=90)
            load.wait_acked(load.acked() + 20)
        rig.check(load)
