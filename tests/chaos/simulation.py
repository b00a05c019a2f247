"""A deterministic simulation of the whole exchange, checked against a model.

In the spirit of FoundationDB's simulation testing: the real sequencer, matcher and
client nodes run in one process on the loopback transport (real Grenache bytes), with
faults, peer outages and worker restarts drawn from one seed, and what they did is then
compared with a model of what they must do.

Why a failing seed reproduces
-----------------------------
Everything that could differ between two runs is taken away or drawn from the seed:

* **Time is virtual** (`VirtualTimeLoop`): the event loop's clock starts at 0 and,
  whenever no task is ready, jumps to the next timer instead of sleeping. Timeouts,
  backoffs, long polls and network delays cost no real time, and a run does not
  depend on how fast the machine is.
* **No threads** (`inline_threads`): the workers' SQLite calls, which normally go to
  worker threads, run inline on the loop after a seeded "disk" delay, so the
  interleaving of tasks is the event loop's FIFO order alone; and a cancelled task
  group wakes its tasks in the order they started (`ordered_cancellation`), not in
  the order of their addresses in memory.
* **Faults, peer choice and request ids** come from the `LoopbackNetwork`'s seeded
  streams; the scenario (clients, orders, think times, fault rates, when which worker
  restarts or which peer goes down) from ``random.Random(f"scenario:{seed}")``; the
  order ids are chosen by the scenario, not by `secrets`.

So ``CHAOS_SEED=<n>`` runs the same history again, and a failure prints the seed, the
scenario, the simulation's own log and the tail of ``network.log``.

The model
---------
After the chaos window the network heals (no faults, every peer up), every client
finishes its script and every replica catches up to the journal's head, all within a
bound of virtual time: a client or replica that never gets there *hangs*, which is a
failure. Then:

* the journal is gap-free (1..head) and holds each ``(clientId, op, orderId)`` once (a
  modify's ``(clientId, "modify", requestId)``, from the journal's ``modify_requests``):
  nothing a client retried with the same orderId (requestId) was journaled twice,
  acknowledged or not, and everything in it was sent by a client;
* every acknowledged submit is in the journal at the acknowledged seq, and a repeat of
  an acknowledged payload got the same reply;
* a payload refused as invalid is not in the journal;
* the matcher's applied log is the journal, entry for entry (seq, ts, command): each
  command applied exactly once, in seq order;
* the journal replayed (`exchange.tools.replay_journal`, i.e. `apply_entry` on
  `orderbook_core`) equals the independent `ReferenceBook` oracle, event for event and
  book for book;
* the published versions, walked back from the head by ``prev``, cover ``1..head``
  without a gap or an overlap; each one's book is the replay's book at its seq, and
  their events together are the model's events;
* every replica holds the journal's head with exactly the replayed book and its book
  hash, its seq never went down, and when every update it saw was complete, its own
  events are exactly the model's events for its client.

A restart here stops a worker cleanly: its task group is cancelled and a new worker
starts on the same SQLite file, recovering from it. Process-level crashes (SIGKILL at
named points, on real grapes) are the rest of tests/chaos.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import selectors
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator, MutableSet
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
from anyio._backends import _asyncio as anyio_asyncio
from anyio.abc import TaskGroup, TaskStatus
from support.keys import MATCHER_KEY, SEQUENCER_KEY, SEQUENCER_PUBLIC, named_key

from exchange.client import ClientNode, ReplicaUpdate
from exchange.matcher import AppliedLog, ProcessWorker, apply_entry
from exchange.protocol import ORDERBOOK_UPDATED, Entry, OrderRefused
from exchange.sequencer import Journal, SubmitWorker
from exchange.tools import replay_journal
from exchange.versions import Version, VersionReader, book_hash
from orderbook_core import (
    DEFAULT_SPEC,
    Event,
    MarketSpec,
    OrderBook,
    Trade,
    canonical_json,
    event_to_wire,
    parse_command,
)
from orderbook_core.testing import ReferenceBook
from transports import FaultPlan, LoopbackNetwork, open_transport

__all__ = [
    "CHAOS_PROFILE",
    "Outcome",
    "Scenario",
    "SimulationFailure",
    "VirtualTimeLoop",
    "inline_threads",
    "run_simulation",
    "scenario",
    "seeds",
    "summary",
]

_T = TypeVar("_T")

CHAOS_PROFILE = os.environ.get("CHAOS_PROFILE", "short")
"""``short`` (default, `make test`): a few dozen seeds; ``long``: thousands."""

SHORT_SEEDS = 32
LONG_SEEDS = 2000

SPEC: MarketSpec = DEFAULT_SPEC
"""BTC-USD: tick 0.01, lot 0.001, so every price and amount crosses the wire as a decimal."""

CHAOS_WINDOW = 30.0
"""Virtual seconds during which faults, outages and restarts happen."""

LIVENESS = 600.0
"""Virtual seconds after the network heals within which every client and replica must be
done: beyond it, something hangs."""


def seeds() -> list[int]:
    """The seeds this run checks: ``CHAOS_SEED`` alone, or the profile's range."""
    one = os.environ.get("CHAOS_SEED")
    if one is not None:
        return [int(one)]
    if CHAOS_PROFILE == "long":
        return list(range(int(os.environ.get("CHAOS_SEEDS", LONG_SEEDS))))
    if CHAOS_PROFILE != "short":
        raise ValueError(f"CHAOS_PROFILE must be short or long, not {CHAOS_PROFILE!r}")
    return list(range(SHORT_SEEDS))


class SimulationFailure(AssertionError):
    """The system broke the model (or hung) for a seed; the message says how to rerun."""


# --------------------------------------------------------------------------- virtual time


class _Clock:
    now = 0.0


class _VirtualSelector(selectors.SelectSelector):
    """Never sleeps: with nothing ready it moves the clock to the next timer."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:
            # No timer and nothing ready: with no threads, nothing can ever wake the loop.
            raise SimulationFailure("deadlock: no task is ready and no timer is set")
        self._clock.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose clock is virtual: it jumps to the next timer when idle.

    Only for code that waits on timers and on other tasks, never on file descriptors
    or threads (see `inline_threads`).
    """

    def __init__(self) -> None:
        self._clock = _Clock()
        super().__init__(_VirtualSelector(self._clock))

    def time(self) -> float:
        return self._clock.now


class _OrderedSet(MutableSet[_T]):
    """A set that iterates in insertion order (a dict underneath)."""

    def __init__(self) -> None:
        self._items: dict[_T, None] = {}

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[_T]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, value: _T) -> None:
        self._items[value] = None

    def discard(self, value: _T) -> None:
        self._items.pop(value, None)


@contextlib.contextmanager
def ordered_cancellation() -> Iterator[None]:
    """Make anyio deliver a cancellation to tasks in the order they were started.

    anyio keeps a cancel scope's tasks and child scopes in sets of objects hashed by
    their address, so the order in which a cancelled task group's tasks wake up (a
    worker stopped for a restart, a server's handlers) changes from run to run. Giving
    each scope insertion-ordered sets instead makes that order, too, a function of the
    seed. (anyio's asyncio backend; the determinism test notices if this stops working.)
    """
    scope_class: Any = anyio_asyncio.CancelScope
    original = scope_class.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._tasks = _OrderedSet()
        self._child_scopes = _OrderedSet()

    scope_class.__init__ = __init__
    try:
        yield
    finally:
        scope_class.__init__ = original


@contextlib.contextmanager
def inline_threads(disk_delay: Callable[[], float]) -> Iterator[None]:
    """Run ``anyio.to_thread.run_sync`` calls inline, each after `disk_delay()` seconds.

    The workers' SQLite calls then take virtual time and happen in an order fixed by the
    event loop alone. As with a real worker thread, a call that started is not
    cancelled: it completes and the cancellation is seen afterwards.
    """

    async def run_sync(
        func: Callable[..., _T],
        *args: object,
        abandon_on_cancel: bool = False,
        cancellable: bool | None = None,
        limiter: object = None,
    ) -> _T:
        await anyio.lowlevel.checkpoint()
        with anyio.CancelScope(shield=True):
            delay = disk_delay()
            if delay:
                await anyio.sleep(delay)
        return func(*args)

    original = anyio.to_thread.run_sync
    anyio.to_thread.run_sync = run_sync
    try:
        yield
    finally:
        anyio.to_thread.run_sync = original


# --------------------------------------------------------------------------- scenario


@dataclass(frozen=True)
class Action:
    """Something the simulation does to the exchange at a virtual time."""

    at: float
    kind: str  # "restart", "down" or "dht_outage"
    target: str  # "sequencer", "matcher", "client<i>" or "dht"
    duration: float = 0.0
    """How long a peer is down or the DHT fails; for a client's restart, how long after
    the start of its next submit it is killed."""
    lose: int = 0
    """On a matcher restart: how many of its last recorded versions its database loses
    (as a power failure may with ``synchronous=NORMAL``; see `exchange.matcher.AppliedLog`)."""


@dataclass(frozen=True)
class Step:
    """One thing a client does: submit a new order, cancel or modify one, or send garbage."""

    think: float  # virtual seconds to wait first
    payload: dict[str, Any]
    patience: float | None  # submit timeout: None = until the liveness bound
    retry_later: bool  # after giving up (patience ran out), send it again at the end
    repeat: bool  # after the reply, send the same payload again (same reply expected)
    invalid: bool = False


@dataclass(frozen=True)
class Scenario:
    """Everything about one simulated run, drawn from its seed."""

    seed: int
    faults: FaultPlan
    keep_dead_peers: bool
    disk_delay: float
    actions: tuple[Action, ...]
    scripts: tuple[tuple[Step, ...], ...]

    def describe(self) -> str:
        lines = [
            f"seed {self.seed}: {len(self.scripts)} clients, "
            f"{sum(len(s) for s in self.scripts)} steps, keep_dead_peers={self.keep_dead_peers},"
            f" disk delay <= {self.disk_delay * 1000:.1f} ms",
            f"faults: {self.faults}",
        ]
        lines += [
            f"  t={a.at:7.3f} {a.kind} {a.target}"
            + (
                f" {a.duration * 1000:.0f} ms into its next submit"
                if a.kind == "restart" and a.target.startswith("client")
                else f" for {a.duration:.3f} s"
                if a.duration
                else ""
            )
            + (f", losing its last {a.lose} recorded versions" if a.lose else "")
            for a in self.actions
        ]
        return "\n".join(lines)


def _rate(rng: random.Random, high: float) -> float:
    """A fault rate: off half the time, else uniform up to `high`."""
    return 0.0 if rng.random() < 0.5 else round(rng.uniform(0.0, high), 3)


def scenario(seed: int) -> Scenario:
    """Draw the scenario of `seed`: fault rates, outages, restarts, client scripts."""
    rng = random.Random(f"scenario:{seed}")
    delay_high = rng.choice([0.0, 0.002, 0.05, 0.3])
    faults = FaultPlan(
        drop_request=_rate(rng, 0.15),
        drop_reply=_rate(rng, 0.15),
        duplicate=_rate(rng, 0.2),
        delay=(0.0, delay_high),
        reorder=_rate(rng, 0.3),
        put_fail=_rate(rng, 0.2),
        get_fail=_rate(rng, 0.15),
        get_miss=_rate(rng, 0.15),
    )
    n_clients = rng.randint(1, 3)
    targets = ["sequencer", "matcher"] + [f"client{i}" for i in range(n_clients)]
    actions: list[Action] = []
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        target = rng.choice(["sequencer", "matcher", "client"])
        at = rng.uniform(0, CHAOS_WINDOW)
        if target == "client":
            # Killed 0 to 200 ms after it next starts a submit: mid-request, usually.
            target = f"client{rng.randrange(n_clients)}"
            actions.append(Action(at, "restart", target, rng.uniform(0, 0.2)))
            continue
        lose = rng.choice([0, 0, 1, 2]) if target == "matcher" else 0
        actions.append(Action(at, "restart", target, lose=lose))
    for _ in range(rng.choice([0, 0, 1, 2])):
        duration = rng.uniform(0.1, 10.0)
        actions.append(Action(rng.uniform(0, CHAOS_WINDOW), "down", rng.choice(targets), duration))
    if rng.random() < 0.3:
        duration = rng.uniform(0.5, 10.0)
        actions.append(Action(rng.uniform(0, CHAOS_WINDOW), "dht_outage", "dht", duration))
    actions.sort(key=lambda a: a.at)
    scripts = tuple(_script(rng, f"c{i}", rng.randint(3, 14)) for i in range(n_clients))
    return Scenario(
        seed=seed,
        faults=faults,
        keep_dead_peers=rng.random() < 0.5,
        disk_delay=rng.choice([0.0, 0.001, 0.01]),
        actions=tuple(actions),
        scripts=scripts,
    )


def _script(rng: random.Random, client: str, n: int) -> tuple[Step, ...]:
    steps: list[Step] = []
    live: list[str] = []  # this client's new orders, not cancelled yet
    mid = 10_000  # ticks: 100.00
    for i in range(n):
        think = rng.uniform(0, 2 * CHAOS_WINDOW / n)
        patience = rng.uniform(0.5, 6.0) if rng.random() < 0.15 else None
        retry_later = patience is not None and rng.random() < 0.5
        repeat = rng.random() < 0.15
        roll = rng.random()
        if roll < 0.2 and live:
            target = live.pop(rng.randrange(len(live)))
            payload: dict[str, Any] = {"clientId": client, "op": "cancel", "orderId": target}
            steps.append(Step(think, payload, patience, retry_later, repeat))
            continue
        if roll < 0.3 and live:
            # A modify of a live order, under a requestId of its own (retries keep it).
            payload = {
                "clientId": client,
                "op": "modify",
                "orderId": rng.choice(live),
                "requestId": f"{client}-m{i}",
            }
            how = rng.choice(["price", "amount", "both"])
            if how != "amount":
                payload["price"] = str(SPEC.ticks_to_price(mid + rng.randint(-500, 500)))
            if how != "price":
                payload["amount"] = str(SPEC.lots_to_amount(rng.randint(1, 9999)))
            steps.append(Step(think, payload, patience, retry_later, repeat))
            continue
        order_id = f"{client}-{i}"
        side = rng.choice(["buy", "sell"])
        # A wide band (+-5.00) so some orders rest deep and others cross several levels.
        offset = rng.randint(-500, 500)
        payload = {
            "clientId": client,
            "orderId": order_id,
            "side": side,
            "amount": str(SPEC.lots_to_amount(rng.choice([1, 7, 250, 1000, rng.randint(1, 9999)]))),
        }
        kind = rng.random()
        if kind < 0.1:
            payload["ordType"] = "market"
        else:
            payload["price"] = str(SPEC.ticks_to_price(mid + offset))
            if kind < 0.2:
                payload["tif"] = "IOC"
            elif kind < 0.3:
                payload["tif"] = "FOK"
            elif kind < 0.4:
                payload["postOnly"] = True
        invalid = roll > 0.95
        if invalid:
            payload["price"] = "100.001"  # not on the 0.01 tick
            payload.pop("ordType", None)
        else:
            live.append(order_id)
        steps.append(Step(think, payload, patience, retry_later, repeat, invalid))
    return tuple(steps)


# --------------------------------------------------------------------------- running


@dataclass
class Outcome:
    """What one seed did: the figures `docs/reliability.md` adds up, and a trace."""

    seed: int
    submits: int = 0
    modifies: int = 0
    """Of `submits`, those of a modify (each of its retries counts as one submit too)."""
    acked: int = 0
    refused_invalid: int = 0
    given_up: int = 0
    repeats: int = 0
    journal: int = 0
    trades: int = 0
    restarts: Counter[str] = field(default_factory=Counter)
    downs: int = 0
    dht_outages: int = 0
    rows_lost: int = 0
    killed_mid_submit: int = 0
    journaled_unacked: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    replicas: int = 0
    messages: int = 0
    delayed: int = 0
    answered_from_journal: int = 0
    book_hash: str | None = None
    trace: list[str] = field(default_factory=list)


class _Restartable:
    """A worker in its own cancel scope, so the simulation can stop and restart it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.scope: anyio.CancelScope | None = None
        self.done: anyio.Event | None = None
        self.address: str | None = None
        self.worker: Any = None

    async def stop(self) -> None:
        assert self.scope is not None
        assert self.done is not None
        self.scope.cancel()
        await self.done.wait()
        self.worker = None


class _Simulation:
    """One seed's run: the workers, the clients, the chaos, and what the clients saw."""

    def __init__(self, plan: Scenario, directory: Path) -> None:
        self.plan = plan
        self.directory = directory
        self.network = LoopbackNetwork(
            plan.seed, faults=plan.faults, keep_dead_peers=plan.keep_dead_peers
        )
        self.outcome = Outcome(plan.seed)
        self.sequencer = _Restartable("sequencer")
        self.matcher = _Restartable("matcher")
        self.nodes: list[ClientNode] = []
        self.node_addresses: list[str] = []
        self.acks: dict[tuple[str, str, str], tuple[int, str]] = {}
        self.sent: set[tuple[str, str, str]] = set()
        self.invalid: set[tuple[str, str, str]] = set()
        self.unacked: set[tuple[str, str, str]] = set()
        self.replica_seqs: list[list[int]] = []
        self.complete: list[bool] = []
        n = len(plan.scripts)
        self.node_scopes: list[anyio.CancelScope | None] = [None] * n
        self.node_done: list[anyio.Event] = [anyio.Event() for _ in range(n)]
        self.node_ready: list[anyio.Event] = [anyio.Event() for _ in range(n)]
        self.submitting: list[anyio.CancelScope | None] = [None] * n
        self.submit_started: list[anyio.Event] = [anyio.Event() for _ in range(n)]
        self.healed = anyio.Event()
        self.tg: TaskGroup | None = None
        self.head_root: str | None = None

    def note(self, text: str) -> None:
        text = text.replace(str(self.directory), "<dir>")  # the same trace in any directory
        self.outcome.trace.append(f"t={anyio.current_time():9.3f} {text}")

    # -- workers --------------------------------------------------------------------

    async def start_sequencer(self) -> None:
        assert self.tg is not None
        await self.tg.start(self._run_sequencer)

    async def _run_sequencer(self, *, task_status: TaskStatus[None]) -> None:
        holder = self.sequencer
        holder.scope, holder.done = anyio.CancelScope(), anyio.Event()
        try:
            with holder.scope, Journal(self.directory / "journal.db") as journal:
                async with (
                    open_transport("loopback", network=self.network) as transport,
                    anyio.create_task_group() as tg,
                ):
                    worker = SubmitWorker(
                        transport,
                        journal,
                        SPEC,
                        seed=self.plan.seed,
                        request_timeout=5.0,
                        backoff=0.05,
                        max_backoff=2.0,
                        idle_check=5.0,
                        batch_size=8,
                        clock=lambda: int(anyio.current_time() * 1000),
                        signing_key=SEQUENCER_KEY,
                    )
                    port = await tg.start(worker.run)
                    holder.worker, holder.address = worker, f"loopback:{port}"
                    self.note(
                        f"sequencer serving at {holder.address} (journal head {journal.head()})"
                    )
                    task_status.started()
        finally:
            holder.done.set()

    async def start_matcher(self) -> None:
        assert self.tg is not None
        await self.tg.start(self._run_matcher)

    async def _run_matcher(self, *, task_status: TaskStatus[None]) -> None:
        holder = self.matcher
        holder.scope, holder.done = anyio.CancelScope(), anyio.Event()
        try:
            with holder.scope:
                async with (
                    open_transport("loopback", network=self.network) as transport,
                    anyio.create_task_group() as tg,
                ):
                    worker = ProcessWorker(
                        transport,
                        self.directory / "process.db",
                        SPEC,
                        broadcast_timeout=2.0,
                        sequencer_key=SEQUENCER_PUBLIC,
                        signing_key=MATCHER_KEY,
                    )
                    port = await tg.start(worker.run)
                    holder.worker, holder.address = worker, f"loopback:{port}"
                    self.note(f"matcher serving at {holder.address} (head {worker.head_seq})")
                    task_status.started()
        finally:
            holder.done.set()

    async def restart(self, holder: _Restartable, lose: int = 0) -> None:
        self.note(f"restart {holder.name}: stopping")
        await holder.stop()
        self.outcome.restarts[holder.name] += 1
        if lose:
            lost = _lose_tail(self.directory / "process.db", lose)
            self.outcome.rows_lost += lost
            self.note(f"the matcher's database lost its last {lose} versions ({lost} rows)")
        await (self.start_sequencer() if holder is self.sequencer else self.start_matcher())

    # -- clients --------------------------------------------------------------------

    async def _run_node(self, index: int, *, task_status: TaskStatus[None]) -> None:
        """Run client `index`'s node (again, after a restart: same key, fresh replica)."""
        client_id = f"c{index}"
        seqs: list[int] = [0]
        first_run = len(self.nodes) == index
        if first_run:
            self.replica_seqs.append(seqs)
            self.complete.append(True)
        else:
            self.replica_seqs[index] = seqs
            self.complete[index] = True

        def on_version(update: ReplicaUpdate[Version]) -> None:
            seqs.append(update.seq)
            if not update.complete:
                self.complete[index] = False

        scope, done = anyio.CancelScope(), anyio.Event()
        self.node_scopes[index], self.node_done[index] = scope, done
        try:
            with scope:
                async with open_transport("loopback", network=self.network) as transport:
                    node = ClientNode(
                        transport,
                        client_id,
                        SPEC,
                        emit=partial(self._client_record, client_id),
                        on_version=on_version,
                        head_interval=0.5,
                        long_poll_ms=10_000,
                        request_timeout=5.0,
                        fetch_timeout=10.0,
                        # The client's key file: the same key in every run of the client.
                        signing_key=named_key(f"simulation:{self.plan.seed}:{client_id}"),
                        matcher_key=MATCHER_KEY.public_key(),
                    )
                    before = set(self.network.peers(ORDERBOOK_UPDATED))
                    async with anyio.create_task_group() as tg:
                        await tg.start(node.run)
                        (address,) = set(self.network.peers(ORDERBOOK_UPDATED)) - before
                        if first_run:
                            self.nodes.append(node)
                            self.node_addresses.append(address)
                        else:
                            self.nodes[index], self.node_addresses[index] = node, address
                        self.note(f"{client_id} serving at {address}")
                        self.node_ready[index].set()
                        task_status.started()
        finally:
            done.set()

    async def restart_client(self, index: int, delay: float) -> None:
        """Kill client `index` `delay` s after its next submit starts (or 10 s from now,
        if none does), and run it again: it sends what it was sending again."""
        assert self.tg is not None
        with anyio.move_on_after(10.0):
            await self.submit_started[index].wait()
            await anyio.sleep(delay)
        scope = self.node_scopes[index]
        assert scope is not None
        self.note(f"restart c{index}: killing it")
        self.node_ready[index] = anyio.Event()
        submitting = self.submitting[index]
        if submitting is not None:
            submitting.cancel()
        scope.cancel()
        await self.node_done[index].wait()
        self.outcome.restarts["client"] += 1
        await self.tg.start(self._run_node, index)

    def _client_record(self, client_id: str, record: dict[str, Any]) -> None:
        if record.get("event") == "warning":
            self.note(f"{client_id}: warning: {record.get('message')}")

    async def client_script(self, index: int) -> None:
        retries: list[Step] = []
        for step in self.plan.scripts[index]:
            await anyio.sleep(step.think)
            if not await self.submit_surviving_restarts(index, step) and step.retry_later:
                retries.append(step)
        await self.healed.wait()
        for step in retries:
            self.note(f"c{index} retries {_key(step.payload)} with the same orderId")
            await self.submit_surviving_restarts(
                index, replace(step, patience=None, retry_later=False)
            )

    async def submit_surviving_restarts(self, index: int, step: Step) -> bool:
        """Submit `step`; if the client is killed meanwhile, its next run sends it again
        (same orderId, same key), as `bin/client.py orderId=...` run again does."""
        while True:
            await self.node_ready[index].wait()
            with anyio.CancelScope() as scope:
                self.submitting[index] = scope
                self.submit_started[index].set()
                self.submit_started[index] = anyio.Event()
                try:
                    return await self.submit(self.nodes[index], step)
                finally:
                    self.submitting[index] = None
            self.outcome.killed_mid_submit += 1
            self.note(f"c{index} was killed while submitting {_key(step.payload)}")

    async def submit(self, node: ClientNode, step: Step) -> bool:
        """Submit as the client program does (retrying, same orderId); record what came."""
        key = _key(step.payload)
        self.outcome.submits += 1
        self.outcome.modifies += key[1] == "modify"
        self.sent.add(key)
        patience = LIVENESS + CHAOS_WINDOW if step.patience is None else step.patience
        try:
            reply = await node.submit(step.payload, timeout=patience)
        except OrderRefused as exc:
            if not step.invalid or not str(exc).startswith("ERR_VALIDATION"):
                raise SimulationFailure(f"{key} refused: {exc}") from None
            self.outcome.refused_invalid += 1
            self.invalid.add(key)
            return True
        except TimeoutError:
            if step.patience is None:
                raise SimulationFailure(f"client hangs: {key} never acknowledged") from None
            self.outcome.given_up += 1
            self.unacked.add(key)
            self.note(f"{node.client_id} gave up on {key} after {patience:.3f} s")
            return False
        if step.invalid:
            raise SimulationFailure(f"invalid {key} accepted as seq {reply.seq}")
        got = (reply.seq, reply.order_id)
        if key in self.acks and self.acks[key] != got:
            raise SimulationFailure(f"{key} acknowledged as {self.acks[key]}, then as {got}")
        self.acks[key] = got
        self.unacked.discard(key)
        self.outcome.acked += 1
        if step.repeat:
            self.outcome.repeats += 1
            try:
                again = await node.submit(step.payload, timeout=LIVENESS + CHAOS_WINDOW)
            except (OrderRefused, TimeoutError) as exc:
                raise SimulationFailure(f"{key} repeated: {exc}") from None
            if (again.seq, again.order_id) != got:
                raise SimulationFailure(f"{key} repeated: {got}, then {again}")
        return True

    # -- chaos ----------------------------------------------------------------------

    def _address_of(self, target: str) -> str | None:
        if target == "sequencer":
            return self.sequencer.address
        if target == "matcher":
            return self.matcher.address
        return self.node_addresses[int(target.removeprefix("client"))]

    async def chaos(self) -> None:
        """Play the scenario's actions, then heal the network."""
        assert self.tg is not None
        for action in self.plan.actions:
            await anyio.sleep(max(0.0, action.at - anyio.current_time()))
            if action.kind == "restart" and action.target.startswith("client"):
                index = int(action.target.removeprefix("client"))
                await self.restart_client(index, action.duration)
            elif action.kind == "restart":
                holder = self.sequencer if action.target == "sequencer" else self.matcher
                await self.restart(holder, action.lose)
            elif action.kind == "down":
                address = self._address_of(action.target)
                assert address is not None
                self.outcome.downs += 1
                self.note(f"{action.target} ({address}) down for {action.duration:.3f} s")
                self.tg.start_soon(self._down, address, action.duration)
            else:
                self.outcome.dht_outages += 1
                self.note(f"DHT outage (every put fails) for {action.duration:.3f} s")
                self.tg.start_soon(self._dht_outage, action.duration)
        await anyio.sleep(max(0.0, CHAOS_WINDOW - anyio.current_time()))
        self.network.faults = FaultPlan()
        for address in (self.sequencer.address, self.matcher.address, *self.node_addresses):
            if address is not None:
                self.network.set_down(address, False)
        self.note("healed: no faults, every peer up")
        self.healed.set()

    async def _down(self, address: str, duration: float) -> None:
        self.network.set_down(address)
        await anyio.sleep(duration)
        if not self.healed.is_set():
            self.network.set_down(address, False)
            self.note(f"{address} up again")

    async def _dht_outage(self, duration: float) -> None:
        base = self.plan.faults.put_fail
        self.network.with_faults(put_fail=1.0)
        await anyio.sleep(duration)
        if not self.healed.is_set():
            self.network.with_faults(put_fail=base)
            self.note("DHT outage over")

    # -- the whole run ----------------------------------------------------------------

    async def main(self) -> None:
        async with anyio.create_task_group() as tg:
            self.tg = tg
            await self.start_sequencer()
            await self.start_matcher()
            for index in range(len(self.plan.scripts)):
                await tg.start(self._run_node, index)
            tg.start_soon(self.chaos)
            with anyio.fail_after(CHAOS_WINDOW + LIVENESS):
                async with anyio.create_task_group() as clients:
                    for index in range(len(self.plan.scripts)):
                        clients.start_soon(self.client_script, index)
                await self.healed.wait()
                await self.converged()
            tg.cancel_scope.cancel()

    async def converged(self) -> None:
        """Wait until the matcher and every replica hold the journal's head."""
        sequencer = self.sequencer.worker
        assert isinstance(sequencer, SubmitWorker)
        head = sequencer.journal.head()
        while True:
            matcher = self.matcher.worker
            if isinstance(matcher, ProcessWorker) and matcher.head_seq == head:
                break
            await anyio.sleep(0.1)
        for node in self.nodes:
            await node.wait_for_seq(head)
        self.head_root = matcher.head_root
        self.note(f"converged at seq {head}")


def _lose_tail(path: Path, versions: int) -> int:
    """Delete the last `versions` recorded versions from a stopped matcher's database.

    Whole versions: each is one SQLite transaction, and WAL loses whole transactions.

    Returns:
        How many applied commands were lost.
    """
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        roots = db.execute(
            "SELECT root, MIN(seq) FROM applied GROUP BY root ORDER BY MIN(seq) DESC LIMIT ?",
            (versions,),
        ).fetchall()
        if not roots:
            return 0
        keep = roots[-1][1] - 1
        lost = db.execute("DELETE FROM applied WHERE seq > ?", (keep,)).rowcount
    return int(lost)


def _key(payload: dict[str, Any]) -> tuple[str, str, str]:
    """What the sequencer deduplicates a command by: a modify by its requestId."""
    op = str(payload.get("op", "new"))
    name = payload["requestId"] if op == "modify" else payload["orderId"]
    return (str(payload["clientId"]), op, str(name))


def _journal_key(entry: Entry, requests: dict[int, str]) -> tuple[str, str, str]:
    """`_key` of a journaled command; a modify's requestId is in the journal's
    ``modify_requests`` (`requests`: seq -> requestId), not in the command."""
    if entry.wire.get("op") == "modify":
        request_id = requests.get(entry.seq)
        _expect(request_id is not None, f"seq {entry.seq}: a modify without a requestId")
        return _key({**entry.wire, "requestId": request_id})
    return _key(dict(entry.wire))


def _modify_requests(path: Path) -> dict[int, str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT seq, request_id FROM modify_requests").fetchall()
    return {int(seq): str(request_id) for seq, request_id in rows}


def _own(event: Event, client_id: str) -> bool:
    """Whether `event` is one the client node reports as its own."""
    if isinstance(event, Trade):
        return client_id in (event.maker_client_id, event.taker_client_id)
    return bool(event_to_wire(event, SPEC).get("clientId") == client_id)


# --------------------------------------------------------------------------- the model


def _check(sim: _Simulation) -> None:
    """Compare what happened with the model (the module's docstring lists the rules)."""
    directory, outcome = sim.directory, sim.outcome
    with Journal(directory / "journal.db") as journal:
        entries = list(journal.entries())
    seqs = [e.seq for e in entries]
    _expect(seqs == list(range(1, len(entries) + 1)), f"journal seqs have a gap: {seqs}")
    outcome.journal = len(entries)
    requests = _modify_requests(directory / "journal.db")
    keys = Counter(_journal_key(e, requests) for e in entries)
    twice = [k for k, n in keys.items() if n > 1]
    _expect(not twice, f"journaled more than once: {twice}")
    strangers = set(keys) - sim.sent
    _expect(not strangers, f"journaled but never sent: {strangers}")
    refused = set(keys) & sim.invalid
    _expect(not refused, f"refused as invalid but journaled: {refused}")
    outcome.journaled_unacked = len(set(keys) & (sim.unacked - set(sim.acks)))
    by_seq = {e.seq: e for e in entries}
    for key, (seq, order_id) in sim.acks.items():
        entry = by_seq.get(seq)
        _expect(
            entry is not None
            and _journal_key(entry, requests) == key
            and order_id == entry.wire["orderId"],
            f"acknowledged {key} as seq {seq}, journal has {entry}",
        )
    outcome.faults.update(_faults(sim.network.log))
    outcome.messages = sum(1 for line in sim.network.log if " request " in line)
    if sim.plan.faults.delay[1] > 0:  # requests of a seed with delays (until it heals)
        outcome.delayed = outcome.messages
    outcome.answered_from_journal = sum(1 for line in outcome.trace if "repeat of seq=" in line)

    log = AppliedLog(directory / "process.db")
    try:
        applied = list(log.entries())
    finally:
        log.close()
    _expect(
        [(a.entry.seq, a.entry.ts, canonical_json(a.entry.wire)) for a in applied]
        == [(e.seq, e.ts, canonical_json(e.wire)) for e in entries],
        f"applied log ({len(applied)} entries) is not the journal ({len(entries)} entries)",
    )

    replay = replay_journal(directory / "journal.db", SPEC)
    reference = ReferenceBook(SPEC)
    model_events: list[Event] = []
    for entry in entries:
        command = parse_command(dict(entry.wire), SPEC, seq=entry.seq, ts=entry.ts)
        model_events.extend(reference.apply(command))
    _expect(reference.to_book() == replay.book, "the replay differs from the reference book")
    _expect(
        tuple(e for e in model_events if isinstance(e, Trade)) == replay.trades,
        "the replay's trades differ from the reference book's",
    )
    _check_versions(sim, entries, model_events)
    outcome.trades = len(replay.trades)
    outcome.trace.append(f"journal: {len(entries)} entries, {len(replay.trades)} trades")
    outcome.book_hash = replay.book_hash

    for node, seen, complete in zip(sim.nodes, sim.replica_seqs, sim.complete, strict=True):
        name = node.client_id
        _expect(seen == sorted(seen), f"{name}'s replica went back: {seen}")
        _expect(node.replica.seq == replay.seq, f"{name} at {node.replica.seq}, not {replay.seq}")
        _expect(node.book == replay.book, f"{name}'s replica differs from the replay")
        _expect(node.book_hash == book_hash(replay.book), f"{name}'s book hash differs")
        if complete:
            mine = [e for e in model_events if _own(e, name)]
            _expect(node.own_events == mine, f"{name}'s own events differ from the model's")
        outcome.replicas += 1


def _check_versions(sim: _Simulation, entries: list[Entry], model: list[Event]) -> None:
    """Walk the published versions back from the head: together they are the journal.

    The versions tile ``1..head`` (``first..seq``, linked by ``prev``), their events are
    the model's events, and each version's book is the replay's book at its seq.
    """
    versions = anyio.run(_published, sim.network, sim.head_root)
    book = OrderBook(SPEC)
    events: list[Event] = []
    seq = 0
    for version in versions:
        root = version.root
        _expect(root.first == seq + 1, f"version {root.first}..{root.seq} follows seq {seq}")
        for entry in entries[root.first - 1 : root.seq]:
            apply_entry(book, entry)
        seq = root.seq
        _expect(version.book == book, f"version {root.first}..{seq}'s book is not the replay's")
        events.extend(version.events)
    _expect(seq == len(entries), f"the versions end at seq {seq}, the journal at {len(entries)}")
    _expect(events == model, "the published events are not the model's")


async def _published(network: LoopbackNetwork, head: str | None) -> list[Version]:
    """Every version from the first to `head`, read back (the network has healed)."""
    versions: list[Version] = []
    async with open_transport("loopback", network=network) as transport:
        reader = VersionReader(transport, SPEC)
        while head is not None:
            version = await reader.fetch(head)
            versions.append(version)
            head = version.root.prev
    return versions[::-1]


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise SimulationFailure(message)


_FAULT_KINDS = (
    "drop_request",
    "drop_reply",
    "duplicate",
    "reorder",
    "put_fail",
    "get_fail",
    "get_miss",
)


def _faults(log: list[str]) -> Counter[str]:
    """Faults injected, by kind, from the network's log lines."""
    counts: Counter[str] = Counter()
    for line in log:
        _, _, flags = line.rpartition(": ")
        counts.update(flag for flag in flags.split() if flag in _FAULT_KINDS)
    return counts


class _TraceHandler(logging.Handler):
    """Puts the workers' and clients' log lines into the trace, at their virtual time."""

    def __init__(self, sim: _Simulation) -> None:
        super().__init__(logging.INFO)
        self._sim = sim

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(RuntimeError):  # no loop: not during the run
            self._sim.note(f"{record.name}: {record.levelname.lower()}: {record.getMessage()}")


@contextlib.contextmanager
def _traced_logs(sim: _Simulation) -> Iterator[None]:
    """Send the exchange's log lines to the trace only (they are expected, and many)."""
    logger = logging.getLogger("exchange")
    handler = _TraceHandler(sim)
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def run_simulation(seed: int, directory: Path) -> Outcome:
    """Run the scenario of `seed` in `directory` (SQLite files) and check the model.

    Returns:
        The figures of the run, and its trace (for the determinism test).

    Raises:
        SimulationFailure: the model was broken, something hung, or a worker crashed;
            the message holds the seed, the scenario, the trace and the network log.
    """
    plan = scenario(seed)
    sim = _Simulation(plan, directory)
    disk = random.Random(f"disk:{seed}")
    try:
        with (
            _traced_logs(sim),
            ordered_cancellation(),
            inline_threads(lambda: disk.uniform(0, plan.disk_delay)),
        ):
            anyio.run(
                sim.main, backend="asyncio", backend_options={"loop_factory": VirtualTimeLoop}
            )
            _check(sim)
    except Exception as exc:
        raise SimulationFailure(_report(sim, _leaf(exc))) from exc
    sim.outcome.trace.extend(sim.network.log)
    sim.outcome.trace.append(f"book hash {sim.outcome.book_hash}")
    return sim.outcome


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def summary(outcomes: list[Outcome]) -> str:
    """The figures of many seeds, added up: what docs/reliability.md records."""
    total: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    restarts: Counter[str] = Counter()
    for o in outcomes:
        for name in ("submits", "modifies", "acked", "refused_invalid", "given_up", "repeats",
                     "journal", "trades", "downs", "dht_outages", "replicas", "messages", "delayed",
                     "answered_from_journal", "rows_lost", "killed_mid_submit",
                     "journaled_unacked"):  # fmt: skip
            total[name] += getattr(o, name)
        faults.update(o.faults)
        restarts.update(o.restarts)
    return (
        f"{len(outcomes)} seeds met the model: {total['submits']} submits"
        f" ({total['modifies']} of them modifies; {total['acked']} acknowledged,"
        f" {total['repeats']} repeated after the reply, {total['given_up']} given up,"
        f" {total['refused_invalid']} refused as invalid; {total['answered_from_journal']}"
        f" retries answered from the journal; {total['killed_mid_submit']} submits cut by a"
        f" client's restart and sent again), {total['journal']} journal entries (of them"
        f" {total['journaled_unacked']} given up and never acknowledged, each once),"
        f" {total['trades']} trades; {total['messages']} requests ({total['delayed']} in"
        " seeds with random delays); faults: "
        + ", ".join(f"{k} {faults[k]}" for k in _FAULT_KINDS)
        + f"; peer outages {total['downs']}, DHT outages {total['dht_outages']};"
        f" restarts: sequencer {restarts['sequencer']}, matcher {restarts['matcher']},"
        f" client {restarts['client']}"
        f" ({total['rows_lost']} applied rows lost on the way);"
        f" {total['replicas']} replicas checked: 0 lost, 0 duplicated, all equal to the replay"
    )


def _report(sim: _Simulation, exc: BaseException) -> str:
    """Everything needed to understand and rerun a failing seed."""
    parts = [
        f"simulation seed {sim.plan.seed} failed: {type(exc).__name__}: {exc}",
        f"rerun: CHAOS_SEED={sim.plan.seed} .venv/bin/python -m pytest"
        " tests/chaos/test_simulation.py",
        sim.plan.describe(),
        "-- simulation log --",
        *sim.outcome.trace,
        f"-- network log (last 200 of {len(sim.network.log)}) --",
        *sim.network.log[-200:],
    ]
    return "\n".join(parts)
