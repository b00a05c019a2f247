"""Matcher failover runs: a three-node NATS cluster, two grapes, the sequencer (journal on
JetStream), an active matcher and a standby, each on its own grape with its own --db
(two "machines"), the same key file, and a load that retries until acknowledged.

```python
with matcher_failover_rig(tmp_path) as rig:
    with rig.load() as load:
        load.wait_acked(50)
        recovery_s = rig.kill_active_matcher()   # kill -9 to the next published version
    rig.check(load)                              # acknowledged = journaled = applied = replay
```
Every process is started here and stopped by its PID.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from support.grapes import running_grapes
from support.nats import running_nats

from e2e.failover import FailoverRig, Load, open_when_ready
from e2e.harness import Exchange, Proc
from exchange.protocol import ORDERBOOK_HEAD, Head
from transports import RemoteError, TransportError, open_transport

__all__ = ["MatcherRig", "matcher_failover_rig"]

STREAM = "DEX_BTC-USD"


@dataclass
class MatcherRig:
    """The processes of a matcher failover run; `base` is the sequencer's rig."""

    base: FailoverRig
    lease_ttl: float
    matchers: list[Proc] = field(default_factory=list)
    db_of: dict[int, Path] = field(default_factory=dict)
    grape_of: dict[int, int] = field(default_factory=dict)
    recoveries: list[float] = field(default_factory=list)
    """Seconds from each fault to the next version a matcher published."""

    @property
    def exchange(self) -> Exchange:
        return self.base.exchange

    def start_matcher(self, grape: int, *, wait: str, db: Path | None = None) -> Proc:
        """A matcher on its own grape and --db (a new one, or `db`): active if the lease
        is free, else a standby; returns once its log says `wait`."""
        n = len(self.matchers)
        if db is None:
            workdir = self.exchange.workdir / f"matcher{n}"
            workdir.mkdir(exist_ok=True)
            db = workdir / "process_state.db"
        argv = [
            "bin/processOrderWorker.py",
            f"grape={self.exchange.grapes[grape]}",
            "--db",
            str(db),
            "--journal",
            self.base.urls,
            "--lease-ttl",
            str(self.lease_ttl),
            "--key-file",
            str(self.exchange.workdir / "matcher.key"),
            "--sequencer-key",
            str(self.exchange.workdir / "sequencer.pub"),
        ]
        proc = self.exchange.spawn(f"process{n}", argv)
        self.matchers.append(proc)
        self.db_of[proc.pid], self.grape_of[proc.pid] = db, grape
        proc.wait_for_text(wait, 60)
        return proc

    def start_standby(self, grape: int, db: Path | None = None) -> Proc:
        return self.start_matcher(grape, wait="holds the matcher's lease; following", db=db)

    def restart(self, proc: Proc) -> Proc:
        """`proc` again, on its machine (grape) and --db, as a standby."""
        return self.start_standby(self.grape_of[proc.pid], self.db_of[proc.pid])

    def active_matcher(self, timeout: float = 30.0) -> Proc:
        """The live matcher named by the lease (its PID is in the holder's name)."""
        deadline = time.monotonic() + timeout
        while True:
            pid = None
            with suppress(RuntimeError, KeyError, ValueError):
                reply = self.base._ask(
                    f"$JS.API.STREAM.MSG.GET.KV_{STREAM}",
                    {"last_by_subj": f"$KV.{STREAM}.matcher.lease"},
                )
                data = base64.b64decode(reply["message"].get("data", ""))
                pid = int(json.loads(data)["holder"].split(":")[1]) if data else None
            for proc in self.matchers:
                if proc.pid == pid and proc.alive():
                    return proc
            assert time.monotonic() < deadline, "no live matcher holds the lease"
            time.sleep(0.1)

    def head_seq(self, timeout: float = 1.0) -> int | None:
        """The published head's seq, as a client asks for it (None: no answer)."""

        async def ask() -> int:
            grape = self.exchange.grapes
            async with open_transport("grenache", grape=grape) as transport:
                reply = await transport.request(ORDERBOOK_HEAD, None, timeout=timeout)
                return Head.from_wire(reply).seq

        with suppress(TransportError, RemoteError, OSError):
            return anyio.run(ask)
        return None

    def wait_next_version(self, after: int, since: float, timeout: float = 60.0) -> float:
        """Seconds from `since` (time.monotonic()) until a version beyond seq `after`
        is published (a head beyond it answered)."""
        deadline = time.monotonic() + timeout
        while True:
            seq = self.head_seq()
            if seq is not None and seq > after:
                recovery = time.monotonic() - since
                self.recoveries.append(recovery)
                return recovery
            assert time.monotonic() < deadline, f"no version beyond {after} in {timeout} s"
            time.sleep(0.02)

    def market_head(self) -> int:
        """The seq of ``matcher.head`` in the market's KV bucket (0: none yet)."""
        reply = self.base._ask(
            f"$JS.API.STREAM.MSG.GET.KV_{STREAM}",
            {"last_by_subj": f"$KV.{STREAM}.matcher.head"},
        )
        data = base64.b64decode(reply["message"].get("data", ""))
        return int(json.loads(data)["seq"]) if data else 0

    def kill_active_matcher(self) -> float:
        """SIGKILL the active matcher under load; seconds to the next published version."""
        active = self.active_matcher()
        since = time.monotonic()
        active.kill9()
        return self.wait_next_version(self.market_head(), since)

    def stop_active_matcher(self) -> float:
        """SIGSTOP the active matcher (alive, silent) until a standby took the lease over,
        then SIGCONT it: it must find itself deposed and exit having published nothing
        after the takeover. Seconds from the stop to the next published version (with
        the stopped one resumed at the takeover: one that stays stopped costs the
        sequencer's forwarder a request timeout each time it picks it)."""
        stopped = self.active_matcher()
        offset = len(stopped.log.read_bytes())
        since = time.monotonic()
        os.kill(stopped.pid, signal.SIGSTOP)
        try:
            after = self.market_head()
            deadline = time.monotonic() + 30
            while (taker := self.active_matcher()) is stopped:
                assert time.monotonic() < deadline, "no standby took the lease over"
                time.sleep(0.05)
            taker.wait_for_text("took the matcher's lease", 30)
            took = re.findall(r"took the matcher's lease at seq (\d+)", taker.text())
        finally:
            os.kill(stopped.pid, signal.SIGCONT)
        recovery = self.wait_next_version(after, since)
        stopped.popen.wait(timeout=30)
        late = stopped.log.read_bytes()[offset:].decode(errors="replace")
        assert "deposed" in late, late
        assert stopped.popen.returncode == 1, late
        # What it logged as applied after it resumed had its head written before the
        # takeover (stopped between the head write and the log line): nothing since.
        applied = [int(seq) for seq in re.findall(r"applied seq=\d+\.\.(\d+)", late)]
        assert all(seq <= int(took[-1]) for seq in applied), (took, late)
        return recovery

    @contextmanager
    def load(self, *, clients: int = 4, seed: int = 0) -> Iterator[Load]:
        with self.base.load(clients=clients, seed=seed) as load:
            yield load

    def check(self, load: Load) -> dict[str, int]:
        """acknowledged = journaled = applied once, the replica = `dex replay`, and every
        matcher's applied log (the dead and deposed ones' too) the same chain: at each
        seq that two of them recorded, the same root (the same versions, no fork)."""
        counts = self.base.check(load)
        roots: dict[int, str] = {}
        for db in sorted(set(self.db_of.values())):
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                for seq, root in conn.execute("SELECT seq, root FROM applied"):
                    assert roots.setdefault(seq, root) == root, f"{db}: seq {seq} forked"
        assert roots, "no matcher recorded anything"
        return counts


@contextmanager
def matcher_failover_rig(workdir: Path, *, lease_ttl: float = 3.0) -> Iterator[MatcherRig]:
    """Three NATS servers, two grapes, the sequencer (grape 0), matcher A (active, grape
    1), matcher B (standby, grape 0)."""
    with ExitStack() as stack:
        servers = stack.enter_context(running_nats(3, workdir / "nats"))
        grapes = stack.enter_context(running_grapes(2))
        exchange = Exchange([g.url for g in grapes], workdir)
        stack.callback(exchange.close)
        base = FailoverRig(servers, exchange, lease_ttl)
        open_when_ready(base.urls, 60).close()
        base.start_sequencer(0).wait_for_text("submit_order worker ready", 60)
        rig = MatcherRig(base, lease_ttl)
        rig.start_matcher(1, wait="process_order worker ready")
        rig.start_standby(0)
        yield rig
