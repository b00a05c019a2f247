"""A hot standby matcher on the real system: the active one killed at each crash point.

Grapes, the sequencer, an active matcher and a standby (`--standby`, the same `--db` and
`--port`), and four live replicas, as processes, under the market-like load of
`chaos.harness.Load`. The active matcher is armed to die by SIGKILL at a crash point;
the standby, armed with the next point, takes over; a new standby is started; and so on
through every matcher crash point. The run is then held to the harness's model
(`check_model`): nothing lost or duplicated, the applied log is the journal, every book a
replica showed is the oracle's at its seq, and the matcher and every replica reach the
journal's head. Takeover times (SIGKILL seen to the new one serving) are printed, not
asserted.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from functools import partial
from pathlib import Path

import anyio
import pytest
from e2e.harness import Proc
from support.grapes import restarted_grape
from support.ports import free_port

from chaos.harness import (
    BACKLOG,
    CRASH_POINTS,
    READY,
    Kill,
    Load,
    Outcome,
    Plan,
    Rig,
    _applied_head,
    _laggard,
    _settle,
    _started,
    check_model,
    map_in_flight,
    profile,
    running_rig,
    submit_until_acked,
    until,
)
from exchange.protocol import ORDERBOOK_UPDATED
from transports import open_transport

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FOLLOWING = "standby: another matcher holds"
TAKING_OVER = "standby: taking over at seq"


def _plan(seed: int) -> Plan:
    """Each matcher crash point once, on an early pass (the load is short)."""
    points = CRASH_POINTS["process"]
    kills = tuple(
        Kill("process", point, 2 + i % 3, 20 if point == "during_broadcast" else 0)
        for i, point in enumerate(points)
    )
    return Plan(seed, orders=120, kills=kills)


class Pair:
    """The active matcher and its standby, each armed with its kill when spawned."""

    def __init__(self, rig: Rig, kills: list[Kill]) -> None:
        self.rig = rig
        self.kills = kills
        self.port = free_port()
        self.argv = [
            "bin/processOrderWorker.py", f"grape={rig.grapes[1].url}", "--db",
            str(rig.process_db), "--port", str(self.port), "--verbose",
        ]  # fmt: skip
        self.armed: dict[int, Kill | None] = {}
        self.procs: list[Proc] = []
        """The matchers alive, oldest first: the active one (if any), then the standby."""
        self.takeovers: list[float] = []
        self.died = 0.0
        """When the active one was seen dead, until another serves (0: none dead)."""

    def _spawn(self, *extra: str) -> Proc:
        kill = self.kills.pop(0) if self.kills else None
        proc = self.rig.spawn("standby" if extra else "process", [*self.argv, *extra], kill)
        self.armed[proc.pid] = kill
        self.procs.append(proc)
        return proc

    async def start(self) -> None:
        active = self._spawn()
        self.rig.workers["process"] = active
        with anyio.fail_after(60):
            await until(lambda: READY["process"] in active.text())
        standby = self._spawn("--standby")
        with anyio.fail_after(60):
            await until(lambda: FOLLOWING in standby.text())

    def serving(self) -> bool:
        """Whether the matcher the harness checks is alive and the one that serves."""
        active = self.rig.workers["process"]
        return active.alive() and READY["process"] in active.text() and not self.died

    def pending(self) -> bool:
        return any(kill is not None for kill in self.armed.values()) or bool(self.kills)

    async def supervise(self, outcome: Outcome) -> None:
        """Check each matcher that dies died at its point; keep one standby running.

        A standby started while nobody holds the database (the one that just took over
        died already) is active at once: that is a takeover too.
        """
        while True:
            for proc in [p for p in self.procs if not p.alive()]:
                self.procs.remove(proc)
                kill, text = self.armed.pop(proc.pid), proc.text()
                assert kill is not None, f"a matcher died unarmed:\n{text}"
                assert proc.popen.returncode == -signal.SIGKILL, text
                assert f"crash point {kill.point} pass {kill.count}: SIGKILL" in text, text
                outcome.kills[kill.point] += 1
                if kill.point == "during_broadcast" and map_in_flight(text):
                    outcome.broadcast_kills_in_map += 1
                self.died = self.died or time.monotonic()
            serving = [p for p in self.procs if READY["process"] in p.text()]
            assert len(serving) <= 1, "two matchers serve at once"
            if serving and self.died:
                self.takeovers.append(round(time.monotonic() - self.died, 3))
                # Either standby may win the lock: the older one polls it every 50 ms, but
                # on a loaded machine the newer one's first try can come first. Both
                # follow the same log, so both take over at the same head.
                self.died = 0.0
            if serving:
                self.rig.workers["process"] = serving[0]
            if len(self.procs) < 2:
                self._spawn("--standby")
            await anyio.sleep(0.02)


def _serving_or_dead(proc: Proc) -> bool:
    return READY["process"] in proc.text() or not proc.alive()


async def _drive(rig: Rig, plan: Plan, outcome: Outcome, pair: Pair) -> None:
    await pair.start()
    await rig.start_worker("submit", None)
    watchers = [rig.start_watcher(i, push_only=push) for push in (False, True) for i in (0, 1)]
    for watcher in watchers:
        with anyio.fail_after(60):
            await until(partial(_started, watcher))
    load = Load(plan, outcome)
    max_orders = plan.orders * 20
    async with (
        open_transport("grenache", grape=rig.grapes[0].url) as first,
        open_transport("grenache", grape=rig.grapes[1].url) as second,
        open_transport("grenache", grape=rig.grapes[-1].url) as laggard,
        anyio.create_task_group() as tg,
    ):
        await tg.start(laggard.serve, {ORDERBOOK_UPDATED: _laggard})
        tg.start_soon(pair.supervise, outcome)

        async def sender(index: int) -> None:
            transport = (first, second)[index % 2]
            while len(outcome.sent) < plan.orders or (
                pair.pending() and len(outcome.sent) < max_orders
            ):
                await until(lambda: outcome.highest_ack - outcome.applied <= BACKLOG)
                order = load.next_order()
                await submit_until_acked(transport, order["key"], order["payload"], outcome)
                outcome.highest_ack = max(outcome.highest_ack, outcome.acks[order["key"]].seq)

        async def follow_applied() -> None:
            while True:
                outcome.applied = await anyio.to_thread.run_sync(_applied_head, rig)
                await anyio.sleep(0.1)

        tg.start_soon(follow_applied)
        async with anyio.create_task_group() as senders:
            for index in range(plan.senders):
                senders.start_soon(sender, index)
        assert not pair.pending(), f"planned kills never happened: {pair.armed} {pair.kills}"
        with anyio.fail_after(60):  # the takeover after the last kill
            await until(pair.serving)
        tg.cancel_scope.cancel()


@pytest.mark.timeout(300)
def test_a_standby_takes_over_at_every_crash_point(tmp_path: Path) -> None:
    plan = _plan(seed=7)
    outcome = Outcome(plan.seed)
    with running_rig(tmp_path, plan.grapes) as rig:
        pair = Pair(rig, list(plan.kills))
        anyio.run(_drive, rig, plan, outcome, pair)
        outcome.head = _settle(rig)
        check_model(rig, outcome)
    assert dict(outcome.kills) == {point: 1 for point in CRASH_POINTS["process"]}
    assert len(pair.takeovers) == len(CRASH_POINTS["process"])
    print(f"\nstandby takeovers (s, SIGKILL seen to serving): {json.dumps(pair.takeovers)}")


# ---------------------------------------------------------------------- grape faults

GIVE_UP_AFTER = "2"
"""The matchers' ``--give-up-after`` (seconds of failed puts) in the grape-fault runs."""
GAVE_UP = "stopped: storing versions has failed for"
"""What a matcher that gave up logs (at ERROR: the one error line allowed)."""


class GrapePair:
    """An active matcher and a standby, each announced through a grape of its own
    (grapes 1 and 2; grape 0 carries the sequencer, the clients and the watchers)."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.port = free_port()
        self.procs: list[Proc] = []
        """The matchers alive: the active one, then the standby."""
        self.grape_of: dict[int, int] = {}
        self.gave_up: list[Proc] = []
        self.takeovers: list[float] = []
        """Seconds from a grape's kill to the standby serving."""

    def spawn(self, grape: int, *, standby: bool) -> Proc:
        argv = [
            "bin/processOrderWorker.py", f"grape={self.rig.grapes[grape].url}", "--db",
            str(self.rig.process_db), "--port", str(self.port), "--give-up-after",
            GIVE_UP_AFTER, "--verbose", *(["--standby"] if standby else []),
        ]  # fmt: skip
        # Not named "process": check_model would refuse the ERROR line of a give-up.
        proc = self.rig.spawn("standby" if standby else "matcher", argv)
        self.procs.append(proc)
        self.grape_of[proc.pid] = grape
        return proc

    async def start(self) -> None:
        active = self.spawn(1, standby=False)
        with anyio.fail_after(60):
            await until(lambda: READY["process"] in active.text())
        self.rig.workers["process"] = active
        standby = self.spawn(2, standby=True)
        with anyio.fail_after(60):
            await until(lambda: FOLLOWING in standby.text())

    async def kill_active_grape(self) -> None:
        """kill -9 the active matcher's grape; the active one gives up (exit 1), the
        standby takes over; the grape is started again and a new standby runs on it."""
        active, standby = self.procs
        index = self.grape_of[active.pid]
        killed = time.monotonic()
        os.kill(self.rig.grapes[index].pid, signal.SIGKILL)
        with anyio.fail_after(60):
            await until(lambda: not active.alive())
        assert active.popen.returncode == 1, active.text()
        assert GAVE_UP in active.text(), active.text()
        self.procs.remove(active)
        self.gave_up.append(active)
        # As an operator would: the grape started again (until then every put through
        # the other grapes waits for the dead one, about 2 s each).
        peers = [g for i, g in enumerate(self.rig.grapes) if i != index]
        dead = self.rig.grapes[index]
        self.rig.grapes[index] = self.rig._stack.enter_context(restarted_grape(dead, peers))
        with anyio.fail_after(120):
            await until(lambda: READY["process"] in standby.text() or not standby.alive())
        assert standby.alive(), standby.text()
        assert TAKING_OVER in standby.text(), standby.text()
        self.takeovers.append(round(time.monotonic() - killed, 3))
        self.rig.workers["process"] = standby
        fresh = self.spawn(index, standby=True)
        with anyio.fail_after(60):
            await until(lambda: FOLLOWING in fresh.text() or not fresh.alive())
        assert fresh.alive(), fresh.text()


def _applied_at_least(outcome: Outcome, seq: int) -> bool:
    return outcome.applied >= seq


async def _drive_grape_faults(
    rig: Rig, plan: Plan, outcome: Outcome, pair: GrapePair, faults: list[int]
) -> None:
    await pair.start()
    await rig.start_worker("submit", None)
    watchers = [rig.start_watcher(0, push_only=push) for push in (False, True)]
    for watcher in watchers:
        with anyio.fail_after(60):
            await until(partial(_started, watcher))
    load = Load(plan, outcome)
    async with (
        open_transport("grenache", grape=rig.grapes[0].url) as transport,
        anyio.create_task_group() as tg,
    ):

        async def sender() -> None:
            while len(outcome.sent) < plan.orders or faults:
                await until(lambda: outcome.highest_ack - outcome.applied <= BACKLOG)
                order = load.next_order()
                await submit_until_acked(transport, order["key"], order["payload"], outcome)
                outcome.highest_ack = max(outcome.highest_ack, outcome.acks[order["key"]].seq)

        async def follow_applied() -> None:
            while True:
                outcome.applied = await anyio.to_thread.run_sync(_applied_head, rig)
                await anyio.sleep(0.1)

        async def grape_faults() -> None:
            while faults:
                await until(partial(_applied_at_least, outcome, faults[0]))  # at work
                await pair.kill_active_grape()
                outcome.grape_faults += 1
                faults.pop(0)

        tg.start_soon(follow_applied)
        async with anyio.create_task_group() as senders:
            for _ in range(plan.senders):
                senders.start_soon(sender)
            senders.start_soon(grape_faults)
        tg.cancel_scope.cancel()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", [18])
def test_a_standby_takes_over_when_the_active_matchers_grape_dies(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    count = 3 if profile() == "long" else 1
    orders = 80 * (count + 1)
    faults = sorted(rng.randint(20 + 80 * i, 60 + 80 * i) for i in range(count))
    plan = Plan(seed, orders=orders, kills=(), senders=4, grapes=3)
    outcome = Outcome(plan.seed)
    with running_rig(tmp_path, plan.grapes) as rig:
        pair = GrapePair(rig)
        anyio.run(_drive_grape_faults, rig, plan, outcome, pair, list(faults))
        outcome.head = _settle(rig)
        check_model(rig, outcome)
        for proc in rig.procs:
            if proc.name in ("matcher", "standby"):
                bad = [line for line in proc.text().splitlines() if (" ERROR " in line
                       and GAVE_UP not in line) or " CRITICAL " in line
                       or line.startswith("Traceback")]  # fmt: skip
                assert not bad, f"{proc.log.name}: {bad}"
    assert outcome.grape_faults == count
    assert len(pair.gave_up) == len(pair.takeovers) == count
    print(f"\ngrape faults: kill to the standby serving (s): {json.dumps(pair.takeovers)}")
