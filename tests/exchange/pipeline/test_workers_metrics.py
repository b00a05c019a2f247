"""`--metrics-port` on real processes: both workers and a watching client on real grapes,
scraped over HTTP as Prometheus would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.grapes import running_grapes
from support.keys import signed
from support.ports import free_port

from exchange.protocol import DEFAULT_MARKET, SUBMIT_ORDER
from transports import RemoteError, open_transport

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample at ``http://127.0.0.1:<port>/metrics``, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """A sample; the default market's for the exchange's own (`dex_*`: every series
    has a `market` label)."""
    if name.startswith("dex_"):
        labels.setdefault("market", DEFAULT_MARKET)
    return samples.get((name, tuple(sorted(labels.items()))))


def eventually(port: int, check: Callable[[Samples], bool], timeout: float = 30) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, samples
        time.sleep(0.1)


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, *argv], cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def wait_for(log: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while needle not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


async def submit_all(grape: str, payloads: list[dict[str, Any]]) -> list[str]:
    outcomes: list[str] = []
    async with open_transport("grenache", grape=grape) as transport:
        for payload in payloads:
            try:
                reply = await transport.request(SUBMIT_ORDER, signed(payload), timeout=10)
                outcomes.append(f"seq {reply['seq']}")
            except RemoteError as exc:
                outcomes.append(exc.message.partition(":")[0])
    return outcomes


def test_workers_and_a_client_serve_their_metrics(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    seq_port, match_port, client_port = free_port(), free_port(), free_port()
    with running_grapes(2) as grapes:
        g0, g1 = grapes[0].url, grapes[1].url
        for script, grape, db, port, needle in (
            ("processOrderWorker.py", g1, "p.db", match_port, "process_order worker ready"),
            ("submitOrderWorker.py", g0, "j.db", seq_port, "submit_order worker ready"),
        ):
            log = tmp_path / f"{script}.log"
            argv = [f"bin/{script}", f"grape={grape}", "--db", str(tmp_path / db),
                    "--metrics-port", str(port)]  # fmt: skip
            procs.append(start(argv, log))
            wait_for(log, needle, procs[-1])
            assert f"metrics on http://127.0.0.1:{port}/metrics" in log.read_text()
        client_log = tmp_path / "client.log"
        procs.append(start(["bin/client.py", f"grape={g1}", "--json",
                            f"--metrics-port={client_port}"], client_log))  # fmt: skip
        wait_for(client_log, '"event":"started"', procs[-1])

        orders = [
            {"clientId": "a", "orderId": "a1", "side": "sell", "price": "100", "amount": "2"},
            {"clientId": "b", "orderId": "b1", "side": "buy", "price": "101", "amount": "1"},
            {"clientId": "b", "side": "buy", "price": "1.005", "amount": "1"},  # off tick
        ]
        assert anyio.run(submit_all, g0, orders) == ["seq 1", "seq 2", "ERR_VALIDATION"]

        matcher = eventually(match_port, lambda s: value(s, "dex_matcher_head") == 2)
        assert value(matcher, "dex_commands_applied_total") == 2
        versions = value(matcher, "dex_versions_published_total")
        assert versions is not None
        assert 1 <= versions <= 2
        assert value(matcher, "dex_version_commands_sum") == 2
        puts = value(matcher, "dex_dht_put_seconds_count")
        assert puts is not None
        assert puts >= 2 * versions
        assert value(matcher, "dex_dht_put_failures_total") == 0
        assert value(matcher, "dex_journal_head") is None  # the sequencer's, not here

        sequencer = eventually(seq_port, lambda s: value(s, "dex_backlog") == 0)
        assert value(sequencer, "dex_commands_accepted_total") == 2
        assert value(sequencer, "dex_journal_head") == 2
        assert value(sequencer, "dex_journal_acked") == 2
        commits = value(sequencer, "dex_journal_commit_seconds_count")
        assert commits is not None
        assert 1 <= commits <= 2
        assert value(sequencer, "dex_journal_commit_batch_size_sum") == 2
        refused = value(sequencer, "dex_requests_refused_total", code="ERR_VALIDATION",
                        service=SUBMIT_ORDER)  # fmt: skip
        assert refused == 1
        assert value(sequencer, "process_resident_memory_bytes")  # the process collector

        client = eventually(client_port, lambda s: value(s, "dex_replica_seq") == 2)
        assert value(client, "dex_replica_head") == 2
        assert value(client, "dex_replica_lag") == 0
        # The matcher's broadcasts reached the client (every version, or coalesced).
        matcher = eventually(
            match_port, lambda s: (value(s, "dex_broadcast_peers_total", result="ok") or 0) >= 1
        )
        assert (value(matcher, "dex_broadcasts_total") or 0) >= 1
