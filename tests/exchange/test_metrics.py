"""The workers tell their observer the right numbers; the Prometheus side exports them.

The sequencer and the matcher run on the memory (or loopback, for failing puts)
transport with a `Recorder` observer; then each role's Prometheus metrics are checked
on a registry of their own, without a server. A real scrape of worker processes is in
tests/exchange/pipeline/test_workers_metrics.py.
"""

from __future__ import annotations

import logging
import re
import socket
import sqlite3
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry
from support.exchange_rig import wait_until
from support.keys import MATCHER_KEY, SEQUENCER_KEY, SEQUENCER_PUBLIC, by_sequencer, signed

import exchange.runtime
from exchange.client import parse_client_args
from exchange.matcher import ProcessWorker
from exchange.protocol import (
    DEFAULT_MARKET,
    ORDERBOOK_UPDATED,
    PROCESS_ORDER,
    SUBMIT_ORDER,
    ArgumentError,
)
from exchange.runtime import NO_METRICS, Metrics, NullMetrics, TimedPuts, serve_prometheus
from exchange.runtime._prometheus import metrics_for
from exchange.sequencer import Journal, SubmitWorker
from exchange.sequencer import main as sequencer_main
from transports import JSON, LoopbackNetwork, MemoryNetwork, RemoteError, open_transport

pytestmark = pytest.mark.anyio


class Recorder(NullMetrics):
    """Every call, in order, as (method, args)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def of(self, method: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.calls if name == method]

    def __getattribute__(self, name: str) -> Any:
        if name in Metrics.__dict__ and not name.startswith("_"):
            return lambda *args: self.calls.append((name, args))
        return super().__getattribute__(name)


def order(i: int, **extra: Any) -> dict[str, Any]:
    return {"clientId": f"c{i % 3}", "orderId": f"o{i}", "side": "buy", "price": "100",
            "amount": "1", **extra}  # fmt: skip


class FailingJournal(Journal):
    """Fails the next `fail` appends, as a full disk would."""

    fail = 0

    def append(self, entries: Any, bindings: Any = None, requests: Any = None) -> None:
        if self.fail:
            self.fail -= 1
            raise sqlite3.OperationalError("disk I/O error")
        super().append(entries, bindings, requests)


def test_the_null_metrics_is_a_metrics_and_ignores_everything() -> None:
    metrics: Metrics = NullMetrics()
    metrics.committed(1, 1, 0.1)
    metrics.follow_replica(lambda: (0, 0))
    assert isinstance(NO_METRICS, NullMetrics)
    protocol = {n for n in vars(Metrics) if not n.startswith("_")}
    assert protocol == {n for n in vars(NullMetrics) if not n.startswith("_")}


# ----------------------------------------------------------------------------- sequencer


async def test_the_sequencer_reports_commits_refusals_and_acks(tmp_path: Path) -> None:
    network = MemoryNetwork()
    recorder = Recorder()
    with FailingJournal(tmp_path / "j.db") as journal:
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            open_transport("memory", network=network) as fake_matcher,
            anyio.create_task_group() as tg,
        ):
            worker = SubmitWorker(
                server, journal, clock=lambda: 5, backoff=0.01, max_backoff=0.02,
                metrics=recorder, signing_key=SEQUENCER_KEY,
            )  # fmt: skip
            await tg.start(worker.run)
            # Nobody serves process_order yet: the forwarder's first attempt fails.
            await client.request(SUBMIT_ORDER, signed(order(0)), timeout=5)
            await wait_until(lambda: ("transport",) in recorder.of("forward_failed"))

            async with anyio.create_task_group() as submits:
                for i in range(1, 41):
                    submits.start_soon(
                        lambda i: client.request(SUBMIT_ORDER, signed(order(i)), timeout=5), i
                    )
            for bad, code in (({"clientId": "x"}, "ERR_VALIDATION"),
                              (order(99, orderId="_7"), "ERR_VALIDATION")):  # fmt: skip
                with pytest.raises(RemoteError, match=code):
                    await client.request(SUBMIT_ORDER, signed(bad), timeout=5)
            journal.fail = 1
            with pytest.raises(RemoteError, match="ERR_UNAVAILABLE"):
                await client.request(SUBMIT_ORDER, signed(order(41)), timeout=5)
            await client.request(SUBMIT_ORDER, signed(order(41)), timeout=5)  # the retry commits

            async def matcher(payload: JSON) -> JSON:
                entries = payload.get("entries", [payload])
                return {"seq": entries[-1]["seq"], "root": "ab" * 20}

            await tg.start(fake_matcher.serve, {PROCESS_ORDER: matcher})
            await wait_until(lambda: worker.forwarded == 42)
            tg.cancel_scope.cancel()

    assert recorder.calls[0] == ("journal_head", (0, 0))
    committed = recorder.of("committed")
    assert sum(count for _, count, _ in committed) == 42
    assert [head for head, _, _ in committed] == sorted({head for head, _, _ in committed})
    assert committed[-1][0] == 42
    assert len(committed) < 42  # group commit: several commands per transaction
    assert all(0 < seconds < 5 for _, _, seconds in committed)
    assert recorder.of("commit_failed") == [(1,)]
    assert sorted(recorder.of("refused")) == [
        (SUBMIT_ORDER, "ERR_UNAVAILABLE"),
        (SUBMIT_ORDER, "ERR_VALIDATION"),
        (SUBMIT_ORDER, "ERR_VALIDATION"),
    ]
    acked = [a for (a,) in recorder.of("forwarded")]
    assert acked == sorted(acked)
    assert acked[-1] == 42


async def test_a_matcher_refusal_is_reported_by_its_code(tmp_path: Path) -> None:
    network = MemoryNetwork()
    recorder = Recorder()
    with Journal(tmp_path / "j.db") as journal:
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            open_transport("memory", network=network) as fake_matcher,
            anyio.create_task_group() as tg,
        ):
            worker = SubmitWorker(server, journal, backoff=0.01, max_backoff=0.02,
                                  metrics=recorder, signing_key=SEQUENCER_KEY)  # fmt: skip
            await tg.start(worker.run)
            await client.request(SUBMIT_ORDER, signed(order(0)), timeout=5)
            refusals = iter(["ERR_UNAVAILABLE: DHT down", "not a code at all"])

            async def matcher(payload: JSON) -> JSON:
                refusal = next(refusals, None)
                if refusal is not None:
                    raise RemoteError(refusal)
                entries = payload.get("entries", [payload])
                return {"seq": entries[-1]["seq"], "root": "ab" * 20}

            await tg.start(fake_matcher.serve, {PROCESS_ORDER: matcher})
            await wait_until(lambda: worker.forwarded == 1)
            tg.cancel_scope.cancel()
    assert recorder.of("forward_failed")[-2:] == [("ERR_UNAVAILABLE",), ("not a code at all",)]


# ----------------------------------------------------------------------------- matcher


def batch(first: int, last: int) -> JSON:
    return {
        "entries": [{"seq": s, "ts": 1_000, "command": order(s)} for s in range(first, last + 1)]
    }


async def test_the_matcher_reports_versions_puts_refusals_and_broadcasts(tmp_path: Path) -> None:
    network = MemoryNetwork()
    recorder = Recorder()
    async with (
        open_transport("memory", network=network) as server,
        open_transport("memory", network=network) as client,
        open_transport("memory", network=network) as good,
        open_transport("memory", network=network) as bad,
        anyio.create_task_group() as tg,
    ):

        async def refuse(payload: JSON) -> JSON:
            raise RemoteError("ERR_BAD_REQUEST: no thanks")

        async def take(payload: JSON) -> JSON:
            return None

        await tg.start(good.serve, {ORDERBOOK_UPDATED: take})
        await tg.start(bad.serve, {ORDERBOOK_UPDATED: refuse})
        worker = ProcessWorker(
            server,
            tmp_path / "p.db",
            broadcast_timeout=1,
            metrics=recorder,
            sequencer_key=SEQUENCER_PUBLIC,
            signing_key=MATCHER_KEY,
        )
        await tg.start(worker.run)
        await client.request(PROCESS_ORDER, by_sequencer(batch(1, 1)), timeout=5)
        await client.request(PROCESS_ORDER, by_sequencer(batch(2, 5)), timeout=5)
        with pytest.raises(RemoteError, match="ERR_SEQ_GAP"):
            await client.request(PROCESS_ORDER, by_sequencer(batch(9, 9)), timeout=5)
        await wait_until(lambda: (1, 1) in recorder.of("broadcast") and worker.head_seq == 5)
        await wait_until(lambda: recorder.of("broadcast")[-1] == (1, 1))
        tg.cancel_scope.cancel()

    assert recorder.calls[0] == ("matcher_head", (0,))
    versions = recorder.of("version_published")
    assert [(head, commands) for head, commands, _ in versions] == [(1, 1), (5, 4)]
    assert all(0 < seconds < 5 for _, _, seconds in versions)
    puts = recorder.of("dht_put")
    assert len(puts) >= 4  # at least a book page and a root per version
    assert all(ok and 0 <= seconds < 5 for seconds, ok in puts)
    assert recorder.of("refused") == [(PROCESS_ORDER, "ERR_SEQ_GAP")]
    assert set(recorder.of("broadcast")) == {(1, 1)}  # one peer answers, one refuses


async def test_a_failed_put_and_a_restart_are_reported(tmp_path: Path) -> None:
    network = LoopbackNetwork(seed=5)
    recorder = Recorder()
    async with (
        open_transport("loopback", network=network) as server,
        open_transport("loopback", network=network) as client,
        anyio.create_task_group() as tg,
    ):
        worker = ProcessWorker(
            server,
            tmp_path / "p.db",
            metrics=recorder,
            sequencer_key=SEQUENCER_PUBLIC,
            signing_key=MATCHER_KEY,
        )
        await tg.start(worker.run)
        await client.request(PROCESS_ORDER, by_sequencer(batch(1, 2)), timeout=5)
        network.with_faults(put_fail=1.0)
        with pytest.raises(RemoteError, match="ERR_UNAVAILABLE"):
            await client.request(PROCESS_ORDER, by_sequencer(batch(3, 3)), timeout=5)
        network.with_faults(put_fail=0.0)
        tg.cancel_scope.cancel()
    assert (PROCESS_ORDER, "ERR_UNAVAILABLE") in recorder.of("refused")
    assert any(not ok for _, ok in recorder.of("dht_put"))
    assert [head for head, _, _ in recorder.of("version_published")] == [2]

    restarted = Recorder()
    async with (
        open_transport("loopback", network=network) as server,
        anyio.create_task_group() as tg,
    ):
        worker = ProcessWorker(
            server,
            tmp_path / "p.db",
            metrics=restarted,
            sequencer_key=SEQUENCER_PUBLIC,
            signing_key=MATCHER_KEY,
        )
        await tg.start(worker.run)
        tg.cancel_scope.cancel()
    assert restarted.calls[0] == ("matcher_head", (2,))


async def test_timed_puts_pass_everything_else_through() -> None:
    network = MemoryNetwork()
    recorder = Recorder()
    async with open_transport("memory", network=network) as inner:
        timed = TimedPuts(inner, recorder)
        key = await timed.put("hello")
        assert await timed.get(key) == "hello"
        assert await timed.map(ORDERBOOK_UPDATED, None, timeout=1) == []
        await timed.aclose()  # not the inner one's
        assert await inner.get(key) == "hello"
    assert [ok for _, ok in recorder.of("dht_put")] == [True]


# ----------------------------------------------------------------------------- prometheus


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    """A sample of the default market (every series has a `market` label)."""
    return registry.get_sample_value(name, {"market": DEFAULT_MARKET, **labels})


def test_the_sequencers_prometheus_metrics() -> None:
    registry = CollectorRegistry()
    metrics = metrics_for("sequencer", registry)
    metrics.journal_head(10, 4)
    assert sample(registry, "dex_backlog") == 6
    metrics.committed(13, 3, 0.002)
    metrics.committed(14, 1, 0.004)
    metrics.forwarded(12)
    metrics.commit_failed(5)
    metrics.refused(SUBMIT_ORDER, "ERR_VALIDATION")
    metrics.forward_failed("transport")
    metrics.forward_failed("a peer's free text")
    assert sample(registry, "dex_commands_accepted_total") == 4
    assert sample(registry, "dex_journal_head") == 14
    assert sample(registry, "dex_journal_acked") == 12
    assert sample(registry, "dex_backlog") == 2
    assert sample(registry, "dex_journal_commit_seconds_count") == 2
    assert sample(registry, "dex_journal_commit_seconds_sum") == pytest.approx(0.006)
    assert sample(registry, "dex_journal_commit_batch_size_bucket", le="2.0") == 1
    assert sample(registry, "dex_journal_commit_batch_size_sum") == 4
    assert sample(registry, "dex_journal_commit_failures_total") == 1
    assert sample(registry, "dex_requests_refused_total", service=SUBMIT_ORDER,
                  code="ERR_VALIDATION") == 1  # fmt: skip
    assert sample(registry, "dex_forward_failures_total", reason="transport") == 1
    assert sample(registry, "dex_forward_failures_total", reason="other") == 1
    assert sample(registry, "dex_matcher_head") is None  # the matcher's, not here


def test_the_matchers_prometheus_metrics() -> None:
    registry = CollectorRegistry()
    metrics = metrics_for("matcher", registry)
    metrics.matcher_head(7)
    assert sample(registry, "dex_matcher_head") == 7
    assert sample(registry, "dex_broadcast_peers_total", result="failed") == 0
    metrics.version_published(10, 3, 0.01)
    metrics.dht_put(0.001, True)
    metrics.dht_put(0.5, False)
    metrics.broadcast(3, 1)
    metrics.broadcast(2, 0)
    metrics.broadcast_failed()
    metrics.refused(PROCESS_ORDER, "ERR_SEQ_GAP")
    assert sample(registry, "dex_matcher_head") == 10
    assert sample(registry, "dex_commands_applied_total") == 3
    assert sample(registry, "dex_versions_published_total") == 1
    assert sample(registry, "dex_version_commands_sum") == 3
    assert sample(registry, "dex_version_seconds_count") == 1
    assert sample(registry, "dex_dht_put_seconds_count") == 2
    assert sample(registry, "dex_dht_put_seconds_bucket", le="0.001") == 1
    assert sample(registry, "dex_dht_put_failures_total") == 1
    assert sample(registry, "dex_broadcasts_total") == 2
    assert sample(registry, "dex_broadcast_failures_total") == 1
    assert sample(registry, "dex_broadcast_peers_total", result="ok") == 5
    assert sample(registry, "dex_broadcast_peers_total", result="failed") == 1
    assert sample(registry, "dex_broadcast_last_peers", result="ok") == 2
    assert sample(registry, "dex_broadcast_last_peers", result="failed") == 0
    assert sample(registry, "dex_requests_refused_total", service=PROCESS_ORDER,
                  code="ERR_SEQ_GAP") == 1  # fmt: skip
    assert sample(registry, "dex_journal_head") is None


def test_the_clients_prometheus_metrics_are_read_when_scraped() -> None:
    registry = CollectorRegistry()
    metrics = metrics_for("client", registry)
    state = {"seq": 3, "head": 8}
    metrics.follow_replica(lambda: (state["seq"], state["head"]))
    assert sample(registry, "dex_replica_lag") == 5
    state["seq"] = 8
    assert (sample(registry, "dex_replica_seq"), sample(registry, "dex_replica_head"),
            sample(registry, "dex_replica_lag")) == (8, 8, 0)  # fmt: skip


# ----------------------------------------------------------------------------- serving


def test_serve_prometheus_binds_loopback_and_stops() -> None:
    import urllib.request

    with serve_prometheus(0, "matcher") as (metrics, port):
        metrics.matcher_head(42)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        assert 'dex_matcher_head{market="BTC-USD"} 42.0' in text
        assert "process_cpu_seconds_total" in text
    with pytest.raises(ConnectionRefusedError):  # the server is gone
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_without_prometheus_client_the_message_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "exchange.runtime._prometheus", raising=False)
    monkeypatch.delattr(exchange.runtime, "_prometheus", raising=False)
    with pytest.raises(ImportError, match=r"distributed-exchange\[metrics\]"):
        serve_prometheus(0, "sequencer")


@pytest.mark.parametrize("missing", [True, False], ids=["no-extra", "port-taken"])
def test_a_worker_that_cannot_serve_metrics_exits_2(
    missing: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if missing:
        monkeypatch.setitem(sys.modules, "prometheus_client", None)
        monkeypatch.delitem(sys.modules, "exchange.runtime._prometheus", raising=False)
        monkeypatch.delattr(exchange.runtime, "_prometheus", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [
            "grape=http://127.0.0.1:1",
            "--db",
            str(tmp_path / "j.db"),
            "--metrics-port",
            str(port),
        ]
        with caplog.at_level(logging.ERROR):
            assert sequencer_main(argv) == 2
    expected = "distributed-exchange[metrics]" if missing else "Address already in use"
    assert expected in caplog.text
    assert not (tmp_path / "j.db").exists()  # refused before opening anything


@pytest.mark.parametrize(
    ("words", "port"),
    [(["--metrics-port=9464"], 9464), (["--metrics-port", "0"], 0), ([], None)],
)
def test_the_client_takes_a_metrics_port(words: list[str], port: int | None) -> None:
    assert parse_client_args(words).metrics_port == port


@pytest.mark.parametrize("word", ["--metrics-port=x", "--metrics-port=70000", "--metrics-port=-1"])
def test_the_client_refuses_a_bad_metrics_port(word: str) -> None:
    with pytest.raises(ArgumentError, match="--metrics-port: expected a TCP port"):
        parse_client_args([word])


def test_the_modules_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert exchange.runtime.__doc__ is not None
    found = re.search(r"```python\n(.*?)```", exchange.runtime.__doc__, re.S)
    assert found is not None
    namespace: dict[str, Any] = {}
    exec(compile(found.group(1), "exchange/runtime/__init__.py", "exec"), namespace)
    namespace["Commits"]().committed(5, 2, 0.0015)
    assert capsys.readouterr().out == "journal at 5: 2 commands in 1.5 ms\n"
