"""Whole-system chaos runs: real grapes, both workers and live clients as processes.

One run (`chaos_run`) is driven by a seed: the orders, which crash point kills which
worker on which pass (``DEX_CRASH_AT``, `exchange.runtime.crash_point`), and when a grape
is killed and started again. The load (`Load`) looks like a market: ten clients, limit
orders over 61 ticks, post-only, IOC, FOK and market orders, cancels, modifies (a new
price and/or amount, some pure decreases that keep priority, each with a fresh signed
``requestId``), and orders sent against the sender's own resting orders (self-trade
prevention), amounts from 0.010 to 1.000 (two orders of magnitude). While the load
runs, a supervisor restarts every worker that died, checking it died by SIGKILL at the
point it was armed for (and, for ``during_broadcast``, whether the matcher's log shows a
``map`` started and not ended).
Clients submit with explicit orderIds (a modify with its requestId) and retry a failed
request with the *same* payload until it is acknowledged, as `bin/client.py` would.

After the run, `check_model` holds the system to a model built from the client side:

- every acknowledged command is in the journal at the seq of its ack, as sent; every
  command sent is there exactly once, retried or not, by its key (`journal_key`: a
  modify's is its ``(clientId, requestId)``); seqs have no gap;
- the matcher's applied log is the journal, entry for entry (same command and ts), in
  seq order: each command applied exactly once;
- every book a live replica showed is the book of the oracle at its seq: the naive
  `orderbook_core.testing.ReferenceBook`, fed the acknowledged journal through a
  converter of its own (`reference_command`), never `exchange.protocol.apply_entry`
  (the code under test); the last book is the head, and ``dex replay`` run as a
  process gives the oracle's head book. Two replicas per grape run through every kill:
  one follows the head as the client does (long polls), the other is push only
  (`exchange.client.PUSH_ONLY_ENV`), so a push lost under a crash leaves it behind and
  fails the run;
- no client hangs: every submit is acknowledged, every replica reaches the head,
  within generous timeouts (a hang fails the run; no timing is asserted).

`CHAOS_PROFILE` (``short``, the default, in ``make test``; ``long`` in ``make chaos``)
says how many runs, orders and kills; docs/reliability.md has the figures.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from e2e.harness import PYTHON, REPO, Proc, _env
from support.grapes import Grape, grape_call, restarted_grape, running_grapes

from exchange.client import PUSH_ONLY_ENV
from exchange.matcher import AppliedLog
from exchange.protocol import (
    ORDERBOOK_UPDATED,
    RETRYABLE_CODES,
    SUBMIT_ORDER,
    SubmitReply,
    sign_order,
)
from exchange.sequencer import Journal
from exchange.versions import book_hash
from orderbook_core import (
    DEFAULT_SPEC,
    CancelOrder,
    CancelReason,
    Command,
    ModifyOrder,
    NewOrder,
    OrderCancelled,
    OrderRejected,
    Side,
    TimeInForce,
    Trade,
    canonical_json,
)
from orderbook_core.testing import ReferenceBook
from transports import JSON, RemoteError, Transport, TransportError, open_transport

CRASH_POINTS: dict[str, tuple[str, ...]] = {
    "submit": ("after_journal_commit", "after_forward_ack"),
    "process": ("mid_batch", "after_version_put", "before_process_reply", "during_broadcast"),
}
"""The crash points each worker passes (see the calls in the workers' `_worker.py`)."""

READY = {"submit": "submit_order worker ready", "process": "process_order worker ready"}
ORDER_DEADLINE = 120.0
"""Seconds one order may take to be acknowledged, retries included: beyond, a hang."""
BACKLOG = 48
"""Orders acknowledged but not yet applied beyond which the clients wait a little."""
SETTLE_DEADLINE = 120.0
"""Seconds the matcher and every replica may take to reach the journal's head."""
LAGGARD_SECONDS = 0.25
"""How long a subscriber served by the harness takes to answer ``orderbook_updated``:
every ``map`` lasts that long at least, longer than the delay of a ``during_broadcast``
kill (1-40 ms), so the kill lands while the map is in flight (the matcher's log shows it)."""
MAP_STARTED = "orderbook_updated: map of "
"""How the matcher's debug lines about a map begin (``... started`` / ``... ended``)."""


def profile() -> str:
    """``CHAOS_PROFILE``: ``short`` (unset, in ``make test``) or ``long`` (``make chaos``)."""
    value = os.environ.get("CHAOS_PROFILE", "short") or "short"
    if value not in ("short", "long"):
        raise ValueError(f"CHAOS_PROFILE must be short or long, not {value!r}")
    return value


# ---------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Kill:
    """Arm `point` in the next `role` worker: SIGKILL on pass `count` (+`delay_ms`)."""

    role: str
    point: str
    count: int
    delay_ms: int = 0

    def env(self) -> str:
        return f"{self.point}:{self.count}" + (f"+{self.delay_ms}" if self.delay_ms else "")


@dataclass(frozen=True)
class Plan:
    """What one seeded run does."""

    seed: int
    orders: int
    """Orders sent at least (more while planned kills are still pending)."""
    kills: tuple[Kill, ...]
    grape_faults: tuple[tuple[int, int], ...] = ()
    """(grape index, after how many acknowledged orders): kill -9 it and start it again."""
    senders: int = 6
    grapes: int = 2
    """Grapes in the DHT; the workers use the first two (a third one is never killed)."""


def report_failover_totals(
    request: pytest.FixtureRequest, label: str, figures: list[dict[str, Any]]
) -> None:
    """Print a failover chaos module's totals: faults, lost, duplicated (acknowledged when
    the runs counted it), the worst recovery by fault kind."""
    if not figures:
        return
    recovery: dict[str, list[float]] = {}
    for run in figures:
        for kind, seconds in run["recovery_s"]:
            recovery.setdefault(kind, []).append(seconds)
    totals: dict[str, Any] = {
        "runs": len(figures),
        "faults": sum(len(run["recovery_s"]) for run in figures),
        "lost": sum(run["lost"] for run in figures),
        "duplicated": sum(run["duplicated"] for run in figures),
    }
    if all("journaled" in run for run in figures):
        totals["acknowledged"] = sum(run["journaled"] for run in figures)
    totals["recovery_max_s"] = {kind: round(max(v), 2) for kind, v in sorted(recovery.items())}
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\n{label} totals: {json.dumps(totals)}")


def plan_for(seed: int, *, rounds: int, orders: int, grape_faults: int) -> Plan:
    """Every crash point `rounds` times, in a seeded order, each on a seeded pass."""
    rng = random.Random(seed)
    kills: list[Kill] = []
    for _ in range(rounds):
        points = [(role, point) for role, names in CRASH_POINTS.items() for point in names]
        rng.shuffle(points)
        for role, point in points:
            delay = rng.randint(1, 40) if point == "during_broadcast" else 0
            kills.append(Kill(role, point, rng.randint(1, 6), delay))
    faults = tuple(
        sorted(((rng.randint(0, 1), rng.randint(orders // 5, orders * 4 // 5))
                for _ in range(grape_faults)), key=lambda f: f[1])
    )  # fmt: skip
    # With grape faults, a third grape that stays up: with two, one restart was seen to
    # leave the other grape with no DHT peer for minutes ("No nodes to query"), a grape
    # limitation that would fail every worker start through it.
    return Plan(seed, orders, tuple(kills), faults, grapes=3 if faults else 2)


# ---------------------------------------------------------------------- the processes


class Rig:
    """Two grapes, both workers (restartable), and live watchers, in `workdir`."""

    def __init__(self, grapes: list[Grape], workdir: Path, stack: ExitStack) -> None:
        self.grapes = grapes
        self.workdir = workdir
        self.journal = workdir / "submit_journal.db"
        self.process_db = workdir / "process_state.db"
        self.procs: list[Proc] = []
        self.workers: dict[str, Proc] = {}
        self.armed: dict[str, Kill | None] = {"submit": None, "process": None}
        self.watchers: list[Proc] = []
        self.announce_gave_up = 0
        """Worker starts that gave up announcing during a grape fault (then restarted)."""
        self.gave_up_procs: set[int] = set()
        """Their PIDs: each logged its one ``ERROR ... could not announce`` line, by design."""
        self.grape_heals = 0
        """Grapes restarted again because they stayed cut off from the DHT."""
        self._stack = stack
        self._count = 0

    def spawn(
        self,
        name: str,
        argv: list[str],
        crash: Kill | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Proc:
        self._count += 1
        log = self.workdir / f"{self._count:03d}-{name}.log"
        out = log.open("wb")
        env = _env()
        env.pop("DEX_CRASH_AT", None)
        env.pop(PUSH_ONLY_ENV, None)
        env.update(extra_env or {})
        if crash is not None:
            env["DEX_CRASH_AT"] = crash.env()
        popen = subprocess.Popen(
            [PYTHON, *argv], cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        proc = Proc(name, argv, popen, log, out)
        self.procs.append(proc)
        return proc

    async def start_worker(self, role: str, crash: Kill | None) -> Proc:
        """Start the `role` worker (armed with `crash`) and wait until it is ready."""
        if role == "submit":
            argv = ["bin/submitOrderWorker.py", f"grape={self.grapes[0].url}"]
            argv += ["--db", str(self.journal)]
        else:
            argv = ["bin/processOrderWorker.py", f"grape={self.grapes[1].url}"]
            # --verbose: the debug lines around each map, read after a during_broadcast kill.
            argv += ["--db", str(self.process_db), "--verbose"]
        with anyio.fail_after(120):
            while True:
                proc = self.spawn(role, argv, crash)
                self.workers[role], self.armed[role] = proc, crash
                await until(partial(_ready_or_dead, role, proc))
                if proc.alive() or not self.gave_up(proc):
                    return proc  # ready, or killed at its point already: `_supervise` checks
                await anyio.sleep(0.5)  # its grape is not in a DHT yet: start it again

    def gave_up(self, proc: Proc) -> bool:
        """Whether `proc` exited because it could not announce (its grape was down or
        had no DHT peer for 10 s): what a supervisor restarts, as `_supervise` does."""
        if proc.alive() or proc.popen.returncode != 1 or "could not announce" not in proc.text():
            return False
        self.announce_gave_up += 1
        self.gave_up_procs.add(proc.pid)
        return True

    def start_watcher(self, grape: int, *, push_only: bool = False) -> Proc:
        """A watcher through grape `grape`: long polls and pushes, or pushes only."""
        name = f"push{grape}" if push_only else f"watch{grape}"
        argv = ["bin/client.py", f"clientId={name}", f"grape={self.grapes[grape].url}"]
        extra = {PUSH_ONLY_ENV: "1"} if push_only else None
        proc = self.spawn(name, [*argv, "--json"], extra_env=extra)
        self.watchers.append(proc)
        return proc

    async def restart_grape(self, index: int) -> None:
        """kill -9 grape `index`, start it again on its ports; wait for one DHT again.

        One fault at a time, as an operator would: the grapes must form one DHT again (a
        value put through each is read through another) before anything else happens.
        A grape that stays cut off for 20 s (no other grape reads what is put through
        it: ``No nodes to query``) gets what an operator would do, a restart, counted in
        `grape_heals`; after 2 minutes the run fails.
        """
        await self._kill_and_start(index)
        with anyio.fail_after(120):
            while True:
                with anyio.move_on_after(20):
                    await until(partial(_dht_joined, self.grapes))
                    return
                for cut_off in _cut_off(self.grapes):
                    self.grape_heals += 1
                    await self._kill_and_start(cut_off)

    async def _kill_and_start(self, index: int) -> None:
        dead = self.grapes[index]
        os.kill(dead.pid, signal.SIGKILL)
        await anyio.sleep(1.0)
        peers = [g for i, g in enumerate(self.grapes) if i != index]
        # Started from this (the main) thread, blocking the loop for a moment: a grape
        # asks for SIGTERM when the *thread* that started it ends (PR_SET_PDEATHSIG), so
        # one started from a worker thread dies when anyio retires that thread.
        self.grapes[index] = self._stack.enter_context(restarted_grape(dead, peers))

    def close(self) -> None:
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception:
                if proc.alive():
                    os.kill(proc.pid, signal.SIGKILL)


@contextmanager
def running_rig(workdir: Path, grapes: int = 2) -> Iterator[Rig]:
    """Fresh private grapes (they remember dead peers for ever); every process stopped."""
    with ExitStack() as stack:
        started = stack.enter_context(running_grapes(grapes))
        rig = Rig(list(started), workdir, stack)
        try:
            yield rig
        finally:
            rig.close()


def records(proc: Proc) -> list[dict[str, Any]]:
    """The JSON objects a client printed, one per line (other lines skipped)."""
    found = []
    for line in proc.text().splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


# ---------------------------------------------------------------------- the run


@dataclass
class Outcome:
    """What a run did, for the model check and the figures."""

    seed: int
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The command's key (`journal_key`) -> the payload sent (every attempt sends this
    same payload)."""
    acks: dict[str, SubmitReply] = field(default_factory=dict)
    attempts: Counter[str] = field(default_factory=Counter)
    unknown: set[str] = field(default_factory=set)
    """orderIds of which an attempt failed without a reply: applied or not, unknown."""
    kinds: Counter[str] = field(default_factory=Counter)
    """Commands sent, by kind (`Load.WEIGHTS`)."""
    kills: Counter[str] = field(default_factory=Counter)
    broadcast_kills_in_map: int = 0
    """``during_broadcast`` kills that landed while a map was in flight (the matcher's
    log has a ``map of ... started`` line after its last ``... ended``)."""
    grape_faults: int = 0
    announce_gave_up: int = 0
    grape_heals: int = 0
    lost: int = -1
    """Orders sent but not in the journal (-1: not checked yet)."""
    duplicated: int = -1
    """Orders in the journal more than once (-1: not checked yet)."""
    head: int = 0
    replica_books: int = 0
    push_only_books: int = 0
    """Of `replica_books`, those shown by the push-only watchers."""
    oracle: Counter[str] = field(default_factory=Counter)
    """What the reference book did with the journal: trades, cancels by reason, rejects."""
    applied: int = 0
    """The matcher's applied head, as last read from its database during the run."""
    highest_ack: int = 0

    def figures(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "orders": len(self.sent),
            "acknowledged": len(self.acks),
            "retried": sum(1 for n in self.attempts.values() if n > 1),
            "modifies_retried": sum(
                1 for k, n in self.attempts.items() if n > 1 and self.sent[k].get("op") == "modify"
            ),
            "outcome_unknown": len(self.unknown),
            "kinds": dict(sorted(self.kinds.items())),
            "kills": dict(self.kills),
            "broadcast_kills_in_map": self.broadcast_kills_in_map,
            "grape_faults": self.grape_faults,
            "worker_restarts_after_announce_gave_up": self.announce_gave_up,
            "grapes_restarted_again_cut_off": self.grape_heals,
            "head": self.head,
            "replica_books_checked": self.replica_books,
            "push_only_books_checked": self.push_only_books,
            "oracle": dict(sorted(self.oracle.items())),
            "lost": self.lost,
            "duplicated": self.duplicated,
        }


CLIENTS = 10
"""Client ids in the load (``c0``..``c9``), each with its own signing key."""
MID_TICKS = 10_000
"""100.00 in ticks of 0.01: bids are drawn in mid-30..mid+6, asks in mid-6..mid+30."""
SPREAD_TICKS = (30, 6)
"""(how far from the mid an order may rest, how far past the mid it may cross)."""
AMOUNT_LOTS = (10, 1000)
"""Amounts from 0.010 to 1.000 (lots of 0.001), log-uniform: two orders of magnitude."""


class Load:
    """Seeded commands from `CLIENTS` clients that look like a market.

    Each command is one of the kinds of `WEIGHTS`, drawn with those weights, each built by
    the method of the same name, keyed as `journal_key` keys it once journaled.
    """

    WEIGHTS: ClassVar[dict[str, int]] = {
        "limit": 38,
        "post_only": 10,
        "ioc": 10,
        "fok": 8,
        "market": 7,
        "self_trade": 9,
        "cancel": 18,
        "modify": 12,
    }

    def __init__(self, plan: Plan, outcome: Outcome) -> None:
        self.plan = plan
        self.outcome = outcome
        self._rng = random.Random(plan.seed * 7919 + 1)
        self._n = 0
        self._resting: list[tuple[str, str, str, int, int]] = []
        """(client, orderId, side, price in ticks, amount in lots) of the GTC orders sent
        (as last modified): maybe resting."""
        self._keys = {
            f"c{i}": Ed25519PrivateKey.from_private_bytes(
                hashlib.sha256(f"chaos:{plan.seed}:c{i}".encode()).digest()
            )
            for i in range(CLIENTS)
        }
        self._builders: dict[str, Callable[[], tuple[str, dict[str, Any]] | None]] = {
            kind: getattr(self, kind) for kind in self.WEIGHTS
        }

    def next_order(self) -> dict[str, Any]:
        self._n += 1
        while True:
            kind = self._rng.choices(list(self.WEIGHTS), weights=list(self.WEIGHTS.values()))[0]
            built = self._builders[kind]()
            if built is not None:  # a cancel, modify or self-trade needs a GTC order before
                break
        key, payload = built
        self.outcome.kinds[kind] += 1
        self.outcome.sent[key] = payload
        # Signed once: every retry sends these very bytes, as a client retrying would.
        return {"key": key, "payload": sign_order(payload, self._keys[payload["clientId"]])}

    # ------------------------------------------------------------ the kinds

    def limit(self) -> tuple[str, dict[str, Any]]:
        return self._new(self._client(), self._side(), tif=None, post_only=False)

    def post_only(self) -> tuple[str, dict[str, Any]]:
        # Often at or through the other side: some rest, some are refused (would cross).
        return self._new(self._client(), self._side(), tif=None, post_only=True)

    def ioc(self) -> tuple[str, dict[str, Any]]:
        return self._new(self._client(), self._side(), tif="IOC", post_only=False)

    def fok(self) -> tuple[str, dict[str, Any]]:
        return self._new(self._client(), self._side(), tif="FOK", post_only=False)

    def market(self) -> tuple[str, dict[str, Any]]:
        order_id = self._order_id()
        payload = {
            "clientId": self._client(),
            "orderId": order_id,
            "side": self._side(),
            "ordType": "market",
            "amount": self._amount(),
        }
        return order_id, payload

    def self_trade(self) -> tuple[str, dict[str, Any]] | None:
        """An order at the price of one of the sender's own GTC orders, on the other side:
        if that order still rests, the market's self-trade prevention cancels it."""
        if not self._resting:
            return None
        client, _, side, price, _ = self._rng.choice(self._resting)
        other = "sell" if side == "buy" else "buy"
        tif = self._rng.choice((None, "IOC"))
        return self._new(client, other, tif=tif, post_only=False, price=price)

    def cancel(self) -> tuple[str, dict[str, Any]] | None:
        if not self._resting:
            return None
        client, target, _, _, _ = self._resting.pop(self._rng.randrange(len(self._resting)))
        return f"cancel:{target}", {"clientId": client, "op": "cancel", "orderId": target}

    def modify(self) -> tuple[str, dict[str, Any]] | None:
        """A modify of one of the sender's GTC orders, under a fresh ``requestId``: a pure
        decrease (keeps priority), a new amount, a new price (may cross), or both."""
        if not self._resting:
            return None
        index = self._rng.randrange(len(self._resting))
        client, target, side, price, lots = self._resting[index]
        request_id = f"s{self.plan.seed}-m{self._n}"
        payload: dict[str, Any] = {
            "clientId": client,
            "op": "modify",
            "orderId": target,
            "requestId": request_id,
        }
        how = self._rng.choice(("decrease", "amount", "price", "both"))
        if how == "decrease" and lots > 1:
            lots = self._rng.randint(max(1, lots // 4), lots - 1)
            payload["amount"] = self._lots_text(lots)
        elif how in ("amount", "both") or how == "decrease":
            lots = self._other(lots, self._lots)
            payload["amount"] = self._lots_text(lots)
        if how in ("price", "both"):
            price = self._other(price, partial(self._price, side))
            payload["price"] = self._price_text(price)
        self._resting[index] = (client, target, side, price, lots)
        return journal_key_of_modify(client, request_id), payload

    # ------------------------------------------------------------ the fields

    def _new(
        self, client: str, side: str, *, tif: str | None, post_only: bool, price: int | None = None
    ) -> tuple[str, dict[str, Any]]:
        order_id = self._order_id()
        if price is None:
            price = self._price(side)
        lots = self._lots()
        payload: dict[str, Any] = {
            "clientId": client,
            "orderId": order_id,
            "side": side,
            "price": self._price_text(price),
            "amount": self._lots_text(lots),
        }
        if tif is not None:
            payload["tif"] = tif
        if post_only:
            payload["postOnly"] = True
        if tif is None:
            self._resting.append((client, order_id, side, price, lots))
        return order_id, payload

    def _order_id(self) -> str:
        return f"s{self.plan.seed}-{self._n}"

    def _client(self) -> str:
        return f"c{self._rng.randrange(CLIENTS)}"

    def _side(self) -> str:
        return self._rng.choice(("buy", "sell"))

    def _other(self, current: int, draw: Callable[[], int]) -> int:
        """A value of `draw` other than `current` (a modify that changes nothing is
        rejected; the load believes `current`, the order may have been filled since)."""
        while (value := draw()) == current:
            pass
        return value

    def _price(self, side: str) -> int:
        away, through = SPREAD_TICKS
        offset = self._rng.randint(-away, through)
        return MID_TICKS + offset if side == "buy" else MID_TICKS - offset

    def _amount(self) -> str:
        return self._lots_text(self._lots())

    def _lots(self) -> int:
        low, high = AMOUNT_LOTS
        return round(10 ** self._rng.uniform(math.log10(low), math.log10(high)))

    @staticmethod
    def _price_text(ticks: int) -> str:
        return f"{Decimal(ticks) * DEFAULT_SPEC.tick_size:.2f}"

    @staticmethod
    def _lots_text(lots: int) -> str:
        return f"{Decimal(lots) * DEFAULT_SPEC.lot_size:.3f}"


async def submit_until_acked(
    transport: Transport, key: str, payload: dict[str, Any], outcome: Outcome
) -> None:
    """Send `payload` until the sequencer acknowledges it; the same payload every time.

    Raises:
        AssertionError: refused for good (a non-retryable code), or no ack within
            `ORDER_DEADLINE` seconds (a client that hangs).
    """
    with anyio.fail_after(ORDER_DEADLINE):
        while True:
            outcome.attempts[key] += 1
            try:
                reply = await transport.request(SUBMIT_ORDER, payload, timeout=5)
            except RemoteError as exc:
                if exc.message.partition(":")[0] not in RETRYABLE_CODES:
                    raise AssertionError(f"{key} refused: {exc.message}") from exc
            except TransportError:
                outcome.unknown.add(key)  # it may have been journaled: the retry must dedupe
            else:
                outcome.acks[key] = SubmitReply.from_wire(reply)
                return
            await anyio.sleep(0.1)


async def _supervise(rig: Rig, plan: Plan, outcome: Outcome, stop: anyio.Event) -> None:
    """Restart each worker that died, after checking it died where it was armed to."""
    queues = {role: [k for k in plan.kills if k.role == role] for role in CRASH_POINTS}
    while not stop.is_set():
        for role in CRASH_POINTS:
            proc = rig.workers[role]
            if proc.alive():
                continue
            armed = rig.armed[role]
            if rig.gave_up(proc):
                await rig.start_worker(role, armed)
                continue
            text = proc.text()
            assert armed is not None, f"{role} died unarmed:\n{text}"
            assert proc.popen.returncode == -signal.SIGKILL, text
            assert f"crash point {armed.point} pass {armed.count}: SIGKILL" in text, text
            outcome.kills[armed.point] += 1
            if armed.point == "during_broadcast" and map_in_flight(text):
                outcome.broadcast_kills_in_map += 1
            nxt = queues[role].pop(0) if queues[role] else None
            await rig.start_worker(role, nxt)
        await anyio.sleep(0.05)


def map_in_flight(log: str) -> bool:
    """Whether the matcher that wrote `log` died in a ``map``: its last line about a map
    says one started (the broadcaster runs one map at a time)."""
    lines = [line for line in log.splitlines() if MAP_STARTED in line]
    return bool(lines) and lines[-1].endswith(" started")


async def _laggard(payload: JSON) -> JSON:
    """A subscriber that answers late (`LAGGARD_SECONDS`), well within the map's timeout."""
    await anyio.sleep(LAGGARD_SECONDS)
    return None


async def until(condition: Callable[[], bool]) -> None:
    """Poll `condition`: it reads logs, files and counters, which no event signals."""
    while not condition():  # noqa: ASYNC110
        await anyio.sleep(0.05)


def _ready_or_dead(role: str, proc: Proc) -> bool:
    return READY[role] in proc.text() or not proc.alive()


def _started(watcher: Proc) -> bool:
    assert watcher.alive(), f"{watcher.name} exited:\n{watcher.text()}"
    return any(r.get("event") == "started" for r in records(watcher))


def _dht_joined(grapes: Sequence[Grape]) -> bool:
    """One try: a value put through each grape is read through every other."""
    try:
        for grape in grapes:
            key = grape_call(grape.url, "put", {"v": f"chaos-{time.monotonic_ns()}"})
            others = [g for g in grapes if g is not grape]
            if not isinstance(key, str) or not all(
                isinstance(grape_call(g.url, "get", key), dict) for g in others
            ):
                return False
    except (OSError, ValueError):
        return False
    return True


def _cut_off(grapes: Sequence[Grape]) -> list[int]:
    """The grapes through which a put is read through no other grape."""
    found = []
    for index, grape in enumerate(grapes):
        try:
            key = grape_call(grape.url, "put", {"v": f"chaos-{time.monotonic_ns()}"})
            seen = isinstance(key, str) and any(
                isinstance(grape_call(g.url, "get", key), dict) for g in grapes if g is not grape
            )
        except (OSError, ValueError):
            seen = False
        if not seen:
            found.append(index)
    return found


def _acked_at_least(outcome: Outcome, count: int) -> bool:
    return len(outcome.acks) >= count


def _kills_pending(rig: Rig) -> bool:
    return any(k is not None for k in rig.armed.values())


async def _drive(rig: Rig, plan: Plan, outcome: Outcome) -> None:
    queues = {role: [k for k in plan.kills if k.role == role] for role in CRASH_POINTS}
    await rig.start_worker("process", queues["process"][0] if queues["process"] else None)
    await rig.start_worker("submit", queues["submit"][0] if queues["submit"] else None)
    watchers = [rig.start_watcher(i, push_only=push) for push in (False, True) for i in (0, 1)]
    for watcher in watchers:
        with anyio.fail_after(60):
            await until(partial(_started, watcher))
    later = Plan(
        plan.seed, plan.orders, tuple(k for role in CRASH_POINTS for k in queues[role][1:])
    )
    load = Load(plan, outcome)
    faults = list(plan.grape_faults)
    max_orders = plan.orders * 20
    async with (
        open_transport("grenache", grape=rig.grapes[0].url) as first,
        open_transport("grenache", grape=rig.grapes[1].url) as second,
        # Through the grape that is never killed (the last one): every map waits for it.
        open_transport("grenache", grape=rig.grapes[-1].url) as laggard,
        anyio.create_task_group() as tg,
    ):
        await tg.start(laggard.serve, {ORDERBOOK_UPDATED: _laggard})
        stop = anyio.Event()
        tg.start_soon(_supervise, rig, later, outcome, stop)

        async def sender(index: int) -> None:
            transport = (first, second)[index % 2]
            while len(outcome.sent) < plan.orders or (
                _kills_pending(rig) and len(outcome.sent) < max_orders
            ):
                # Back pressure: a bounded backlog, so the matcher's crash points are
                # passed while orders still come in (the sequencer is far faster).
                await until(lambda: outcome.highest_ack - outcome.applied <= BACKLOG)
                order = load.next_order()
                await submit_until_acked(transport, order["key"], order["payload"], outcome)
                outcome.highest_ack = max(outcome.highest_ack, outcome.acks[order["key"]].seq)

        async def follow_applied() -> None:
            while True:
                outcome.applied = await anyio.to_thread.run_sync(_applied_head, rig)
                await anyio.sleep(0.1)

        tg.start_soon(follow_applied)

        async def grape_faults() -> None:
            for index, after in faults:
                await until(partial(_acked_at_least, outcome, after))
                await rig.restart_grape(index)
                outcome.grape_faults += 1

        async with anyio.create_task_group() as senders:
            for index in range(plan.senders):
                senders.start_soon(sender, index)
            senders.start_soon(grape_faults)
        assert not _kills_pending(rig), f"planned kills never happened: {rig.armed}"
        stop.set()
        tg.cancel_scope.cancel()


def _applied_head(rig: Rig) -> int:
    """The highest seq in the matcher's applied log (its documented table), read-only."""
    if not rig.process_db.exists():
        return 0
    db = sqlite3.connect(f"file:{rig.process_db}?mode=ro", uri=True, timeout=5)
    try:
        (head,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM applied").fetchone()
    except sqlite3.OperationalError:  # the table is not made yet
        return 0
    finally:
        db.close()
    return int(head)


def chaos_run(plan: Plan, workdir: Path) -> Outcome:
    """Run `plan` on fresh grapes and workers; check the model; return the figures.

    Raises:
        AssertionError: the model does not hold (see the module doc), or a hang.
    """
    outcome = Outcome(plan.seed)
    with running_rig(workdir, plan.grapes) as rig:
        anyio.run(_drive, rig, plan, outcome)
        outcome.announce_gave_up = rig.announce_gave_up
        outcome.grape_heals = rig.grape_heals
        head = _settle(rig)
        outcome.head = head
        check_model(rig, outcome)
    return outcome


def _settle(rig: Rig) -> int:
    """Wait until the matcher and every watcher hold the journal's head; return it."""
    with Journal(rig.journal) as journal:
        head = journal.head()
    deadline = time.monotonic() + SETTLE_DEADLINE
    while True:
        applied = _applied_head(rig)
        seqs = [max((r["seq"] for r in records(w) if r.get("event") == "book"), default=0)
                for w in rig.watchers]  # fmt: skip
        if applied == head and all(s == head for s in seqs):
            return head
        assert time.monotonic() < deadline, (
            f"not settled: journal head {head}, applied {applied}, replicas {seqs}"
        )
        for proc in [*rig.watchers, *rig.workers.values()]:
            assert proc.alive(), f"{proc.name} exited:\n{proc.text()}"
        time.sleep(0.2)


# ---------------------------------------------------------------------- the model


def journal_key_of_modify(client_id: str, request_id: str) -> str:
    """The key of a modify: its ``(clientId, "modify", requestId)``, as the sequencer
    deduplicates it."""
    return f"{client_id}:modify:{request_id}"


def journal_key(wire: dict[str, Any], request_id: str | None = None) -> str:
    """The load's key of a journaled command (the keys `Load` gives what it sends): its
    orderId for a new order, ``cancel:`` and the orderId for a cancel, and for a modify
    its ``(clientId, requestId)`` (`journal_key_of_modify`), `request_id` being what the
    journal's ``modify_requests`` holds for its seq (the journaled command has none)."""
    if wire["op"] == "new":
        return str(wire["orderId"])
    if wire["op"] == "cancel":
        return f"cancel:{wire['orderId']}"
    if wire["op"] == "modify":
        assert request_id is not None, f"a journaled modify without a requestId: {wire}"
        return journal_key_of_modify(str(wire["clientId"]), request_id)
    raise AssertionError(f"the load sends no {wire['op']!r} command: {wire}")


def modify_requests(journal: Path) -> dict[int, str]:
    """seq -> requestId of each journaled modify (the journal's ``modify_requests``)."""
    with closing(sqlite3.connect(journal)) as db:
        rows = db.execute("SELECT seq, request_id FROM modify_requests").fetchall()
    return {int(seq): str(request_id) for seq, request_id in rows}


def _same_command(sent: dict[str, Any], journaled: dict[str, Any]) -> bool:
    """Whether the journal holds the command sent (normalized: explicit defaults)."""
    if sent.get("op") == "cancel":
        return (journaled["op"], journaled["clientId"], journaled["orderId"]) == (
            "cancel", sent["clientId"], sent["orderId"])  # fmt: skip
    if sent.get("op") == "modify":
        return (
            (journaled["op"], journaled["clientId"], journaled["orderId"])
            == ("modify", sent["clientId"], sent["orderId"])
            and "requestId" not in journaled
            and all(
                (name in journaled) == (name in sent)
                and (name not in sent or Decimal(journaled[name]) == Decimal(sent[name]))
                for name in ("price", "amount")
            )
        )
    price = sent.get("price")
    return (
        journaled["op"] == "new"
        and (journaled["clientId"], journaled["orderId"], journaled["side"])
        == (sent["clientId"], sent["orderId"], sent["side"])
        and journaled["ordType"] == sent.get("ordType", "limit")
        and (price is None) == ("price" not in journaled)
        and (price is None or Decimal(journaled["price"]) == Decimal(price))
        and Decimal(journaled["amount"]) == Decimal(sent["amount"])
        and journaled["tif"] == sent.get("tif", "GTC")
        and journaled["postOnly"] is sent.get("postOnly", False)
    )


def _units(text: str, size: Decimal) -> int:
    units = Decimal(text) / size
    assert units == units.to_integral_value(), f"{text} is not a multiple of {size}"
    return int(units)


def reference_command(seq: int, ts: int, wire: dict[str, Any]) -> Command:
    """The oracle's own reading of a journaled command (decimal strings to ticks and lots
    of `DEFAULT_SPEC`, the workers' market): no parser of the code under test."""
    client, order_id = str(wire["clientId"]), str(wire["orderId"])
    tick, lot = DEFAULT_SPEC.tick_size, DEFAULT_SPEC.lot_size
    if wire["op"] == "cancel":
        return CancelOrder(seq, ts, client, order_id)
    if wire["op"] == "modify":
        price = _units(wire["price"], tick) if "price" in wire else None
        amount = _units(wire["amount"], lot) if "amount" in wire else None
        return ModifyOrder(seq, ts, client, order_id, price, amount)
    assert wire["op"] == "new", wire
    return NewOrder(
        seq, ts, client, order_id, Side(wire["side"]),
        None if wire["ordType"] == "market" else _units(wire["price"], tick),
        _units(wire["amount"], lot), TimeInForce(wire["tif"]), wire["postOnly"] is True,
    )  # fmt: skip


def reference_books(
    entries: Sequence[tuple[int, int, dict[str, Any]]], seqs: set[int], tally: Counter[str]
) -> dict[int, str | None]:
    """The oracle's book hash at each seq of `seqs` (0: the empty book), `ReferenceBook`
    fed ``(seq, ts, command)`` in seq order; what it did is added to `tally`."""
    reference = ReferenceBook(DEFAULT_SPEC)
    hashes: dict[int, str | None] = {}
    if 0 in seqs:
        hashes[0] = book_hash(reference.to_book())
    for seq, ts, wire in entries:
        for event in reference.apply(reference_command(seq, ts, wire)):
            if isinstance(event, Trade):
                tally["trades"] += 1
            elif isinstance(event, OrderCancelled) and event.reason is not CancelReason.USER:
                tally[f"cancelled_{event.reason.value}"] += 1
            elif isinstance(event, OrderCancelled):
                tally["cancelled_user"] += 1
            elif isinstance(event, OrderRejected):
                tally[f"rejected_{event.reason.value}"] += 1
        if seq in seqs:
            hashes[seq] = book_hash(reference.to_book())
    tally["resting_at_head"] = len(reference)
    return hashes


def check_model(rig: Rig, outcome: Outcome) -> None:
    """Hold the journal, the applied log and every replica to the clients' model."""
    # A restart must be clean: no worker says something went wrong (e.g. a republished
    # head whose root is not the recorded one: the chain of versions would fork).
    for proc in rig.procs:
        if proc.name in CRASH_POINTS and proc.pid not in rig.gave_up_procs:
            bad = [line for line in proc.text().splitlines() if " ERROR " in line
                   or " CRITICAL " in line or line.startswith("Traceback")]  # fmt: skip
            assert not bad, f"{proc.log.name}: {bad}"
    with Journal(rig.journal) as journal:
        entries = list(journal.entries())
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1)), "a gap in the journal"
    requests = modify_requests(rig.journal)
    by_key: dict[str, list[int]] = {}
    for entry in entries:
        by_key.setdefault(journal_key(entry.wire, requests.get(entry.seq)), []).append(entry.seq)
    duplicated = {k: s for k, s in by_key.items() if len(s) > 1}
    outcome.duplicated = len(duplicated)
    outcome.lost = len(set(outcome.sent) - set(by_key))
    assert not duplicated, f"journaled twice: {duplicated}"
    assert set(by_key) == set(outcome.sent), (
        f"lost: {set(outcome.sent) - set(by_key)}; unknown: {set(by_key) - set(outcome.sent)}"
    )
    for key, ack in outcome.acks.items():
        (seq,) = by_key[key]
        assert ack.seq == seq, f"{key} acknowledged as seq {ack.seq}, journaled as {seq}"
        assert _same_command(outcome.sent[key], entries[seq - 1].wire), key
    assert set(outcome.acks) == set(outcome.sent)

    # Applied exactly once, in seq order: the matcher's log is the journal.
    with closing(AppliedLog(rig.process_db)) as log:
        applied = list(log.entries())
    assert [a.entry.seq for a in applied] == [e.seq for e in entries]
    for a, e in zip(applied, entries, strict=True):
        assert (a.entry.ts, canonical_json(a.entry.wire)) == (e.ts, canonical_json(e.wire)), (
            a.entry.seq
        )

    # Every book every replica showed is the oracle's at its seq; so is `dex replay`'s.
    shown = [
        (watcher, int(record["seq"]), record["book"])
        for watcher in rig.watchers
        for record in records(watcher)
        if record.get("event") == "book"
    ]
    hashes = reference_books(
        [(e.seq, e.ts, dict(e.wire)) for e in entries],
        {seq for _, seq, _ in shown} | {len(entries)},
        outcome.oracle,
    )
    for watcher, seq, book in shown:
        assert book == hashes[seq], f"{watcher.name} at seq {seq}: {book}, oracle {hashes[seq]}"
        outcome.replica_books += 1
        outcome.push_only_books += watcher.name.startswith("push")
    for watcher in rig.watchers:  # each was settled at the head: its last book is the head's
        last = max((seq for w, seq, _ in shown if w is watcher), default=0)
        assert last == len(entries), f"{watcher.name} ended at seq {last}, not {len(entries)}"
    dex = subprocess.run(
        [PYTHON, "-m", "exchange.tools", "replay", "--db", str(rig.journal), "--json"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    final = json.loads(dex.stdout)
    assert (final["seq"], final["book"]) == (len(entries), hashes[len(entries)]), final


def report(figures: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The totals of many runs' `Outcome.figures`."""
    kills: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    oracle: Counter[str] = Counter()
    for f in figures:
        kills.update(f["kills"])
        kinds.update(f["kinds"])
        oracle.update(f["oracle"])
    return {
        "runs": len(figures),
        "orders": sum(f["orders"] for f in figures),
        "retried": sum(f["retried"] for f in figures),
        "modifies_retried": sum(f["modifies_retried"] for f in figures),
        "outcome_unknown": sum(f["outcome_unknown"] for f in figures),
        "kinds": dict(sorted(kinds.items())),
        "kills": dict(sorted(kills.items())),
        "broadcast_kills_in_map": sum(f["broadcast_kills_in_map"] for f in figures),
        "grape_faults": sum(f["grape_faults"] for f in figures),
        "worker_restarts_after_announce_gave_up": sum(
            f["worker_restarts_after_announce_gave_up"] for f in figures
        ),
        "grapes_restarted_again_cut_off": sum(f["grapes_restarted_again_cut_off"] for f in figures),
        "replica_books_checked": sum(f["replica_books_checked"] for f in figures),
        "push_only_books_checked": sum(f["push_only_books_checked"] for f in figures),
        "oracle": dict(sorted(oracle.items())),
        "lost": sum(f["lost"] for f in figures),
        "duplicated": sum(f["duplicated"] for f in figures),
    }
