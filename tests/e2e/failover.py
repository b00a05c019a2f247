"""Failover runs: a three-node NATS cluster, two grapes, an active and a standby sequencer
on the same JetStream journal, the matcher, and a load that retries until acknowledged.

```python
with failover_rig(tmp_path) as rig:
    with rig.load() as load:            # clients submitting, each retrying its order
        load.wait_acked(50)
        fault = rig.kill_active_sequencer()
        load.wait_recovered(fault)      # seconds from the kill to the next accepted order
    rig.check(load)                     # acknowledged = journaled = applied = replay
```
Every process is started here and stopped by its PID (the harness's `Exchange` and
`running_nats`). The load is this process's own clients (the project's Grenache
transport), each sending signed orders with explicit orderIds and re-sending the *same*
payload after any transport error or ``ERR_UNAVAILABLE``, as `bin/client.py` would: an
order is sent until acknowledged, so every order sent must be in the journal exactly
once, at the seq of its acknowledgement. `bench/failover_bench.py` drives the same rig.

The matcher fault (`MATCHER_FAULT`) needs a rig made with ``standby_matcher=True``: the
matcher is then an active one and a ``--standby`` one (`e2e.standby.MatcherPair`), the
fault is ``kill -9`` of the active one, and its recovery is from the kill to the first
``orderbook_head`` answer of a version beyond the dead one's head (`e2e.standby`).
`sqlite_rig` is the same rig on the SQLite journal (one sequencer; that fault only).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import nats
from support.grapes import running_grapes
from support.keys import signed
from support.nats import NatsServer, running_nats

from e2e.harness import Exchange, Proc
from e2e.standby import HeadWatch, MatcherPair
from exchange.protocol import ORDERBOOK_HEAD, SUBMIT_ORDER, Head, StorageUnavailable
from exchange.sequencer import Journal, JournalBackend, open_journal
from transports import RemoteError, TransportError, open_transport

__all__ = [
    "FAULTS",
    "MATCHER_FAULT",
    "FailoverRig",
    "Fault",
    "Load",
    "failover_rig",
    "open_when_ready",
    "sqlite_rig",
]

STREAM = "DEX_BTC-USD"
FAULTS = ("stream_leader", "sequencer", "both", "sequencer_stopped")
"""The faults of the journal and the sequencers that `FailoverRig.inject` knows."""
MATCHER_FAULT = "matcher"
"""kill -9 of the active matcher (a rig with ``standby_matcher=True``)."""
_RETRYABLE = ("ERR_UNAVAILABLE", "ERR_TIMEOUT")


async def _quiet(exc: Exception) -> None:
    """nats-py logs every connection error with its traceback unless told otherwise."""


def open_when_ready(urls: str, timeout: float = 30.0) -> JournalBackend:
    """The journal on `urls`, once the cluster has a JetStream leader (retrying)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return open_journal(urls, timeout=2.0)
        except StorageUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@dataclass
class Fault:
    """One fault: what was done, when (time.time()), and when the next order was
    accepted after it."""

    kind: str
    at: float
    recovered_at: float | None = None

    @property
    def recovery_s(self) -> float | None:
        return None if self.recovered_at is None else self.recovered_at - self.at


@dataclass
class _Ack:
    order_id: str
    client_id: str
    seq: int
    sent: float  # when the attempt that was acknowledged was sent
    acked: float


class Load:
    """`clients` clients submitting orders through both grapes until stopped; every order
    is re-sent (same payload) until it is acknowledged."""

    def __init__(self, grapes: list[str], *, clients: int = 4, seed: int = 0) -> None:
        self.grapes = grapes
        self.clients = clients
        self.seed = seed
        self.acks: list[_Ack] = []
        self.retries = 0
        self.refusals: Counter[str] = Counter()
        """The retried refusals, by code (``ERR_UNAVAILABLE``...)."""
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="load", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop after each client's current order is acknowledged."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), "a client's order was never acknowledged"
        if self.errors:
            raise self.errors[0]

    def _main(self) -> None:
        try:
            anyio.run(self._run)
        except BaseException as exc:
            self.errors.append(exc)

    async def _run(self) -> None:
        async with anyio.create_task_group() as tg:
            for i in range(self.clients):
                tg.start_soon(self._client, i)

    async def _client(self, index: int) -> None:
        rng = random.Random(f"{self.seed}:{index}")
        client_id = f"load{index}"
        grape = self.grapes[index % len(self.grapes)]
        async with open_transport("grenache", grape=grape) as transport:
            n = 0
            while not self._stop.is_set():
                side = rng.choice(("buy", "sell"))
                cents = rng.randint(9950, 10050)
                order = signed(
                    {
                        "clientId": client_id,
                        "orderId": f"{client_id}-{n}",
                        "side": side,
                        "price": f"{cents // 100}.{cents % 100:02d}",
                        "amount": f"{rng.randint(1, 40) / 8:.3f}",
                    }
                )
                reply, sent = await self._until_acked(transport, order)
                assert reply["orderId"] == order["orderId"], reply
                with self._lock:
                    self.acks.append(
                        _Ack(order["orderId"], client_id, int(reply["seq"]), sent, time.time())
                    )
                n += 1

    async def _until_acked(self, transport: Any, order: dict[str, Any]) -> tuple[Any, float]:
        deadline = time.monotonic() + 90
        while True:
            sent = time.time()
            try:
                return await transport.request(SUBMIT_ORDER, order, timeout=2), sent
            except RemoteError as exc:
                if not exc.message.startswith(_RETRYABLE):
                    raise
                self.refusals[exc.message.partition(":")[0]] += 1
            except TransportError:
                pass
            self.retries += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"{order['orderId']}: not acknowledged in 90 s")
            await anyio.sleep(0.05)

    # -------------------------------------------------------------- observing

    def acked(self) -> int:
        return len(self.acks)

    def wait_acked(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.acked() < count:
            if self.errors:
                raise self.errors[0]
            assert time.monotonic() < deadline, f"only {self.acked()} of {count} acknowledged"
            time.sleep(0.05)

    def wait_recovered(self, fault: Fault, timeout: float = 60.0) -> float:
        """Wait for an order sent after `fault` to be accepted; its recovery time."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                after = [a.acked for a in self.acks if a.sent >= fault.at]
            if after:
                fault.recovered_at = min(after)
                assert fault.recovery_s is not None
                return fault.recovery_s
            if self.errors:
                raise self.errors[0]
            assert time.monotonic() < deadline, f"no order accepted {timeout} s after {fault}"
            time.sleep(0.02)


@dataclass
class FailoverRig:
    """The processes of a failover run; see the module's docstring."""

    servers: list[NatsServer]
    """Empty: the journal is SQLite (`sqlite_rig`)."""
    exchange: Exchange
    lease_ttl: float
    matchers: MatcherPair | None = None
    heads: HeadWatch | None = None
    """A client asking ``orderbook_head`` all along (with `matchers`)."""
    sequencers: list[Proc] = field(default_factory=list)
    grape_of: dict[int, int] = field(default_factory=dict)
    """Each sequencer's grape, by PID."""
    faults: list[Fault] = field(default_factory=list)

    @property
    def urls(self) -> str:
        return ",".join(server.url for server in self.servers)

    def start_sequencer(self, grape: int) -> Proc:
        """A sequencer through grape `grape`: active if nobody holds the lease, else a
        standby (it logs that it waits)."""
        argv = [
            "bin/submitOrderWorker.py",
            f"grape={self.exchange.grapes[grape % len(self.exchange.grapes)]}",
            "--journal",
            self.urls,
            "--db",
            str(self.exchange.journal),
            "--lease-ttl",
            str(self.lease_ttl),
        ]
        proc = self.exchange.spawn(f"submit{len(self.sequencers)}", argv)
        self.sequencers.append(proc)
        self.grape_of[proc.pid] = grape
        return proc

    @contextmanager
    def load(self, *, clients: int = 4, seed: int = 0) -> Iterator[Load]:
        load = Load(self.exchange.grapes, clients=clients, seed=seed)
        load.start()
        try:
            yield load
        except BaseException as exc:
            # The block's failure is the one to see; the load's (its clients time out
            # later, since the block did not finish) would hide it.
            try:
                load.stop()
            except BaseException as late:
                exc.add_note(f"and stopping the load: {type(late).__name__}: {late}")
            raise
        load.stop()

    # -------------------------------------------------------------- who is who

    def _ask(self, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = b"" if body is None else json.dumps(body).encode()

        async def ask() -> dict[str, Any]:
            for server in self.servers:
                if server.process is None or server.process.poll() is not None:
                    continue
                try:
                    nc = await nats.connect(
                        server.url,
                        connect_timeout=1,
                        allow_reconnect=False,
                        max_reconnect_attempts=0,
                        error_cb=_quiet,
                    )
                except Exception:
                    continue
                try:
                    reply = await nc.request(subject, data, timeout=2)
                    answer: dict[str, Any] = json.loads(reply.data)
                    if "error" not in answer:
                        return answer
                except Exception:
                    continue
                finally:
                    await nc.close()
            raise RuntimeError(f"no server answered {subject}")

        return asyncio.run(ask())

    def stream_leader(self) -> NatsServer:
        name = self._ask(f"$JS.API.STREAM.INFO.{STREAM}")["cluster"]["leader"]
        return next(server for server in self.servers if server.name == name)

    def wait_whole(self, timeout: float = 60.0) -> None:
        """Wait until the stream's leader sees both other replicas current (a restarted
        server has caught up), so the next fault starts from a whole cluster."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                cluster = self._ask(f"$JS.API.STREAM.INFO.{STREAM}")["cluster"]
                replicas = cluster.get("replicas", [])
                if len(replicas) == len(self.servers) - 1 and all(
                    r.get("current") and not r.get("offline") for r in replicas
                ):
                    return
            except RuntimeError:
                pass
            assert time.monotonic() < deadline, "the cluster did not become whole again"
            time.sleep(0.2)

    def start_standby(self, grape: int, timeout: float = 60.0) -> Proc:
        """`start_sequencer`, waiting until it stands by."""
        proc = self.start_sequencer(grape)
        proc.wait_for_text("holds the writer's lease; waiting", timeout)
        return proc

    def active_sequencer(self, timeout: float = 30.0) -> Proc:
        """The sequencer holding the lease (its PID is in the holder's name)."""
        deadline = time.monotonic() + timeout
        while True:
            pid = None
            try:
                reply = self._ask(
                    f"$JS.API.STREAM.MSG.GET.KV_{STREAM}_LEASE",
                    {"last_by_subj": f"$KV.{STREAM}_LEASE.holder"},
                )
                data = base64.b64decode(reply["message"].get("data", ""))
                pid = int(json.loads(data)["holder"].split(":")[1]) if data else None
            except RuntimeError:
                pass
            for proc in self.sequencers:
                if proc.pid == pid and proc.alive():
                    return proc
            assert time.monotonic() < deadline, "no live sequencer holds the lease"
            time.sleep(0.1)

    # -------------------------------------------------------------- faults

    def mark_fault(self, kind: str) -> Fault:
        """Note that a fault of `kind` happens now (its recovery is measured from here)."""
        fault = Fault(kind, time.time())
        self.faults.append(fault)
        return fault

    def kill_stream_leader(self) -> tuple[Fault, NatsServer]:
        """SIGKILL the stream leader's server (start it again with `.start()`)."""
        leader = self.stream_leader()
        fault = self.mark_fault("stream_leader")
        leader.kill()
        return fault, leader

    def kill_active_sequencer(self) -> tuple[Fault, Proc]:
        """SIGKILL the active sequencer (the standby takes over)."""
        active = self.active_sequencer()
        fault = self.mark_fault("sequencer")
        active.kill9()
        return fault, active

    def kill_both(self) -> tuple[Fault, NatsServer, Proc]:
        """The stream leader's server and the active sequencer at once."""
        leader, active = self.stream_leader(), self.active_sequencer()
        fault = self.mark_fault("both")
        os.kill(active.pid, signal.SIGKILL)
        leader.kill()
        active.kill9()
        return fault, leader, active

    def inject(self, kind: str, load: Load) -> Fault:
        """One fault of `kind` (`FAULTS`) under `load`: wait for the next accepted order,
        then make the rig whole again (the server started again, a new standby)."""
        if kind == "stream_leader":
            fault, server = self.kill_stream_leader()
            load.wait_recovered(fault)
            server.start()
            self.wait_whole()
        elif kind == "sequencer":
            fault, dead = self.kill_active_sequencer()
            load.wait_recovered(fault)
            self.start_standby(self.grape_of[dead.pid])
        elif kind == "both":
            fault, server, dead = self.kill_both()
            load.wait_recovered(fault)
            server.start()
            self.wait_whole()
            self.start_standby(self.grape_of[dead.pid])
        elif kind == "sequencer_stopped":
            fault = self.stop_active_sequencer(load)
        elif kind == MATCHER_FAULT:
            fault = self.kill_active_matcher()
        else:
            raise ValueError(f"no fault {kind!r}")
        return fault

    def kill_active_matcher(self, timeout: float = 60.0) -> Fault:
        """kill -9 the active matcher; wait for the next version (the standby took over),
        then start a new standby. Recovery: from the kill to that version's head."""
        assert self.matchers is not None, "a rig without a standby matcher"
        assert self.heads is not None
        killed_at, head = self.matchers.kill_active()
        fault = Fault(MATCHER_FAULT, killed_at)
        self.faults.append(fault)
        fault.recovered_at = self.heads.first_beyond(head, killed_at, timeout)
        self.matchers.wait_taken_over(timeout)
        self.matchers.start_standby()
        return fault

    def stop_active_sequencer(self, load: Load) -> Fault:
        """SIGSTOP the active sequencer (partitioned: alive, silent) until an order is
        accepted without it, then SIGCONT it: it must step down and, since the standby
        took over, have written nothing."""
        stopped = self.active_sequencer()
        offset = len(stopped.log.read_bytes())
        os.kill(stopped.pid, signal.SIGSTOP)
        fault = self.mark_fault("sequencer_stopped")
        try:
            load.wait_recovered(fault)
            taker = self.active_sequencer()
            assert taker is not stopped
            took = re.findall(r"took the writer's lease of .* at seq (\d+)", taker.text())
            took_at = int(took[-1])
        finally:
            os.kill(stopped.pid, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while "stepping down" not in stopped.log.read_bytes()[offset:].decode(errors="replace"):
            assert stopped.alive(), stopped.text()
            assert time.monotonic() < deadline, "the resumed sequencer did not step down"
            time.sleep(0.05)
        # What it logged as accepted after it resumed was stored before the standby took
        # over: nothing written since.
        late = [last for last in self.accepted_after(stopped, offset) if last > took_at]
        assert late == [], f"the resumed sequencer wrote seq {late} after seq {took_at}"
        return fault

    # -------------------------------------------------------------- checking

    def copy_journal(self) -> list[Any]:
        """The stream's entries, copied into the SQLite journal `dex replay` reads."""
        with open_when_ready(self.urls) as stream:
            entries = list(stream.entries())
        self.exchange.journal.unlink(missing_ok=True)
        with Journal(self.exchange.journal) as copy:
            for start in range(0, len(entries), 500):
                copy.append(entries[start : start + 500])
        return entries

    def check(self, load: Load, *, timeout: float = 60.0) -> dict[str, int]:
        """acknowledged = journaled = applied, no duplicate, the replica = `dex replay`.

        Returns the counts: ``lost`` (acknowledged, not at its seq in the journal) and
        ``duplicated`` (a key journaled more than once): both asserted 0.
        """
        if self.servers:
            entries = self.copy_journal()
        else:
            with Journal(self.exchange.journal) as journal:
                entries = list(journal.entries())
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1)), "a gap"
        keys = Counter((e.wire["clientId"], e.wire["orderId"]) for e in entries)
        duplicated = sum(n - 1 for n in keys.values())
        by_seq = {e.seq: e for e in entries}
        lost = sum(
            1
            for a in load.acks
            if a.seq not in by_seq
            or (by_seq[a.seq].wire["clientId"], by_seq[a.seq].wire["orderId"])
            != (a.client_id, a.order_id)
        )
        acked_keys = {(a.client_id, a.order_id) for a in load.acks}
        assert lost == 0, f"{lost} acknowledged orders are not in the journal at their seq"
        assert duplicated == 0, f"{duplicated} journaled twice"
        assert len(load.acks) == len(acked_keys), "an order was acknowledged twice"
        assert set(keys) == acked_keys, "journaled but never acknowledged (or the reverse)"
        head = len(entries)
        self.wait_applied(head, timeout)
        watched = self.exchange.watch_once("auditor")
        assert watched.done["seq"] == head, watched.done
        assert watched.done["book"] == self.exchange.replay()["book"]
        return {"lost": lost, "duplicated": duplicated, "journaled": head}

    def wait_applied(self, head: int, timeout: float) -> None:
        async def matcher_head() -> int:
            # Through grape 0, which no fault kills (the matcher's may be gone).
            async with open_transport("grenache", grape=self.exchange.grapes[0]) as transport:
                return Head.from_wire(await transport.request(ORDERBOOK_HEAD, None, timeout=5)).seq

        deadline = time.monotonic() + timeout
        seen = -1
        while seen != head:
            with suppress(TransportError, RemoteError):
                seen = anyio.run(matcher_head)
            assert time.monotonic() < deadline, f"the matcher is at {seen}, the journal at {head}"
            time.sleep(0.1)

    def accepted_after(self, proc: Proc, offset: int) -> list[int]:
        """The last seqs of the commits `proc` logged after byte `offset` of its log."""
        text = proc.log.read_bytes()[offset:].decode(errors="replace")
        return [int(m.group(2)) for m in re.finditer(r"accepted seq=(\d+)\.\.(\d+)", text)]


@contextmanager
def failover_rig(
    workdir: Path, *, lease_ttl: float = 3.0, standby_matcher: bool = False
) -> Iterator[FailoverRig]:
    """Three NATS servers, two grapes, sequencer A (active, grape 0), the matcher
    (grape 1; with `standby_matcher`, an active one and a standby), sequencer B
    (standby, grape 1)."""
    with ExitStack() as stack:
        servers = stack.enter_context(running_nats(3, workdir / "nats"))
        grapes = stack.enter_context(running_grapes(2))
        exchange = Exchange([g.url for g in grapes], workdir)
        stack.callback(exchange.close)
        rig = FailoverRig(servers, exchange, lease_ttl)
        open_when_ready(rig.urls, 60).close()  # the stream, before two sequencers race
        rig.start_sequencer(0).wait_for_text("submit_order worker ready", 60)
        if standby_matcher:
            _start_matchers(rig, stack)
        else:
            exchange.start_process(timeout=60)
        rig.start_standby(1)
        yield rig


@contextmanager
def sqlite_rig(workdir: Path) -> Iterator[FailoverRig]:
    """The SQLite journal (the default): two grapes, the sequencer (grape 0), an active
    and a standby matcher (grape 1). Only `MATCHER_FAULT` applies."""
    with ExitStack() as stack:
        grapes = stack.enter_context(running_grapes(2))
        exchange = Exchange([g.url for g in grapes], workdir)
        stack.callback(exchange.close)
        rig = FailoverRig([], exchange, 0.0)
        _start_matchers(rig, stack)
        exchange.start_submit(timeout=60)
        yield rig


def _start_matchers(rig: FailoverRig, stack: ExitStack) -> None:
    rig.matchers = MatcherPair(rig.exchange, grapes=(1, 1))
    rig.matchers.start()
    rig.heads = stack.enter_context(HeadWatch(rig.exchange.grapes[0]))
