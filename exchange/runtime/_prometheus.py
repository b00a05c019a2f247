"""The `exchange.runtime.Metrics` of each program, kept in prometheus-client metrics.

Imported only by `exchange.runtime.serve_prometheus`, so the base install never needs
``prometheus-client``. Each role registers its own metrics on a registry of its own
(plus the process collector: CPU, memory, open files), so a sequencer does not export a
matcher head that would stay 0. docs/operations.md ("Metrics") lists every name.

The workers call these methods from the event loop; the HTTP server reads the values
from its own thread. prometheus-client's metrics are thread-safe, and the client's
replica gauges read two ints when scraped, which needs no lock.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)

from exchange.protocol import DEFAULT_MARKET
from exchange.runtime._metrics import Metrics, NullMetrics, Role

__all__ = ["metrics_for", "serving"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Seconds: an fsync or a DHT put on loopback takes about a millisecond, a slow disk or a
restarted grape hundreds."""

_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""Commands per commit or per version: the batches grow with the load (256 per
``process_order`` by default)."""

_CODE = re.compile(r"ERR_[A-Z_]{1,40}")


def _label(code: str) -> str:
    """A label value from a code a peer chose: the ``ERR_*`` words, or ``other``, so a
    misbehaving peer cannot grow the number of series."""
    return code if _CODE.fullmatch(code) or code in ("transport", "bad_reply") else "other"


class _View(NullMetrics):
    """One market's view of a role's metrics. The instance made with the registry
    registers the families; `for_market` gives a shallow copy (the same families, the
    same views) bound to another market."""

    def __init__(self, market: str) -> None:
        self._market = market
        self._views: dict[str, _View] = {market: self}

    def _bind(self) -> None:
        """Make this view's own children and state (each role its own)."""

    def for_market(self, market: str) -> Metrics:
        """The same metrics, their `market` label `market` (one view per market)."""
        view = self._views.get(market)
        if view is None:
            view = copy.copy(self)
            view._market = market
            view._bind()
            self._views[market] = view
        return view


class _Common(_View):
    """What every serving role exports: its refusals."""

    def __init__(self, registry: CollectorRegistry, market: str) -> None:
        super().__init__(market)
        self._refused = Counter(
            "dex_requests_refused",
            "Requests answered with an error, by service and ERR_* code.",
            ["market", "service", "code"],
            registry=registry,
        )

    def refused(self, service: str, code: str) -> None:
        self._refused.labels(self._market, service, _label(code)).inc()


class _Sequencer(_Common):
    def __init__(self, registry: CollectorRegistry, market: str) -> None:
        super().__init__(registry, market)
        self._accepted_f = Counter(
            "dex_commands_accepted",
            "Commands journaled (fsynced) and acknowledged by the sequencer.",
            ["market"],
            registry=registry,
        )
        self._head_f = Gauge(
            "dex_journal_head",
            "Highest sequence number in the journal.",
            ["market"],
            registry=registry,
        )
        self._acked_f = Gauge(
            "dex_journal_acked",
            "Highest sequence number the matcher acknowledged.",
            ["market"],
            registry=registry,
        )
        self._backlog_f = Gauge(
            "dex_backlog",
            "Commands journaled but not yet acknowledged by the matcher (head - acked).",
            ["market"],
            registry=registry,
        )
        self._commit_seconds_f = Histogram(
            "dex_journal_commit_seconds",
            "Time of one journal transaction, fsync included.",
            ["market"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self._commit_size_f = Histogram(
            "dex_journal_commit_batch_size",
            "Commands stored by one journal transaction (group commit).",
            ["market"],
            buckets=_SIZE_BUCKETS,
            registry=registry,
        )
        self._commit_failures_f = Counter(
            "dex_journal_commit_failures",
            "Journal transactions that failed (their commands were refused).",
            ["market"],
            registry=registry,
        )
        self._forward_failures = Counter(
            "dex_forward_failures",
            "process_order requests that failed and will be retried, by reason.",
            ["market", "reason"],
            registry=registry,
        )
        self._step_downs_f = Counter(
            "dex_sequencer_step_downs",
            "Times the sequencer stopped writing (lost its lease, or found another writer).",
            ["market"],
            registry=registry,
        )
        self._active_f = Gauge(
            "dex_sequencer_active",
            "1 while this sequencer is the active one (holds the journal), 0 on standby.",
            ["market"],
            registry=registry,
        )
        self._bind()

    def _bind(self) -> None:
        market = self._market
        self._accepted = self._accepted_f.labels(market)
        self._head = self._head_f.labels(market)
        self._acked = self._acked_f.labels(market)
        self._backlog = self._backlog_f.labels(market)
        self._head_seq = self._acked_seq = 0
        self._commit_seconds = self._commit_seconds_f.labels(market)
        self._commit_size = self._commit_size_f.labels(market)
        self._commit_failures = self._commit_failures_f.labels(market)
        self._step_downs = self._step_downs_f.labels(market)
        self._active = self._active_f.labels(market)

    def _set(self, head: int, acked: int) -> None:
        self._head_seq, self._acked_seq = head, acked
        self._head.set(head)
        self._acked.set(acked)
        self._backlog.set(head - acked)

    def journal_head(self, head: int, acked: int) -> None:
        self._set(head, acked)

    def committed(self, head: int, count: int, seconds: float) -> None:
        self._accepted.inc(count)
        self._set(head, self._acked_seq)
        self._commit_seconds.observe(seconds)
        self._commit_size.observe(count)

    def commit_failed(self, count: int) -> None:
        self._commit_failures.inc()

    def forwarded(self, acked: int) -> None:
        self._set(self._head_seq, acked)

    def forward_failed(self, reason: str) -> None:
        self._forward_failures.labels(self._market, _label(reason)).inc()

    def stepped_down(self) -> None:
        self._step_downs.inc()

    def sequencer_active(self, active: bool) -> None:
        self._active.set(1 if active else 0)


class _Matcher(_Common):
    def __init__(self, registry: CollectorRegistry, market: str) -> None:
        super().__init__(registry, market)
        self._head_f = Gauge(
            "dex_matcher_head",
            "Highest sequence number applied and published by the matcher.",
            ["market"],
            registry=registry,
        )
        self._applied_f = Counter(
            "dex_commands_applied",
            "Commands applied by the matcher.",
            ["market"],
            registry=registry,
        )
        self._versions_f = Counter(
            "dex_versions_published",
            "Versions of the book published.",
            ["market"],
            registry=registry,
        )
        self._version_commands_f = Histogram(
            "dex_version_commands",
            "Commands covered by one version (one process_order batch).",
            ["market"],
            buckets=_SIZE_BUCKETS,
            registry=registry,
        )
        self._version_seconds_f = Histogram(
            "dex_version_seconds",
            "Time to apply a batch, publish its version to the DHT and record it.",
            ["market"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self._put_seconds_f = Histogram(
            "dex_dht_put_seconds",
            "Time of one DHT put (a page or a root), failed ones included.",
            ["market"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self._put_failures_f = Counter(
            "dex_dht_put_failures", "DHT puts that raised.", ["market"], registry=registry
        )
        self._broadcasts_f = Counter(
            "dex_broadcasts",
            "orderbook_updated maps sent (one per version, or fewer: coalesced).",
            ["market"],
            registry=registry,
        )
        self._broadcast_failures_f = Counter(
            "dex_broadcast_failures",
            "orderbook_updated maps that failed as a whole (the lookup).",
            ["market"],
            registry=registry,
        )
        self._peers_f = Counter(
            "dex_broadcast_peers",
            "Peers an orderbook_updated map reached (ok) or did not (failed).",
            ["market", "result"],
            registry=registry,
        )
        self._last_peers_f = Gauge(
            "dex_broadcast_last_peers",
            "Peers the last orderbook_updated map reached (ok) or did not (failed).",
            ["market", "result"],
            registry=registry,
        )
        self._bind()

    def _bind(self) -> None:
        market = self._market
        self._head = self._head_f.labels(market)
        self._applied = self._applied_f.labels(market)
        self._versions = self._versions_f.labels(market)
        self._version_commands = self._version_commands_f.labels(market)
        self._version_seconds = self._version_seconds_f.labels(market)
        self._put_seconds = self._put_seconds_f.labels(market)
        self._put_failures = self._put_failures_f.labels(market)
        self._broadcasts = self._broadcasts_f.labels(market)
        self._broadcast_failures = self._broadcast_failures_f.labels(market)
        # both results' series from the start, at 0
        self._peers_ok, self._peers_failed = (
            self._peers_f.labels(market, result) for result in ("ok", "failed")
        )
        self._last_ok, self._last_failed = (
            self._last_peers_f.labels(market, result) for result in ("ok", "failed")
        )

    def matcher_head(self, head: int) -> None:
        self._head.set(head)

    def version_published(self, head: int, commands: int, seconds: float) -> None:
        self._head.set(head)
        self._applied.inc(commands)
        self._versions.inc()
        self._version_commands.observe(commands)
        self._version_seconds.observe(seconds)

    def dht_put(self, seconds: float, ok: bool) -> None:
        self._put_seconds.observe(seconds)
        if not ok:
            self._put_failures.inc()

    def broadcast(self, ok: int, failed: int) -> None:
        self._broadcasts.inc()
        self._peers_ok.inc(ok)
        self._peers_failed.inc(failed)
        self._last_ok.set(ok)
        self._last_failed.set(failed)

    def broadcast_failed(self) -> None:
        self._broadcast_failures.inc()


class _Client(_View):
    """A client's replica of its market (no refusals: it serves nothing)."""

    def __init__(self, registry: CollectorRegistry, market: str) -> None:
        super().__init__(market)
        self._seq_f = Gauge("dex_replica_seq", "Sequence number of the replica's version.",
                            ["market"], registry=registry)  # fmt: skip
        self._head_f = Gauge("dex_replica_head", "The matcher's head, as this client last "
                             "heard it.", ["market"], registry=registry)  # fmt: skip
        self._lag_f = Gauge("dex_replica_lag", "Commands the replica is behind the head it "
                            "knows.", ["market"], registry=registry)  # fmt: skip
        self._bind()

    def _bind(self) -> None:
        self._read: Callable[[], tuple[int, int]] = lambda: (0, 0)
        self._seq_f.labels(self._market).set_function(lambda: self._read()[0])
        self._head_f.labels(self._market).set_function(lambda: self._read()[1])
        self._lag_f.labels(self._market).set_function(
            lambda: max(0, self._read()[1] - self._read()[0])
        )

    def follow_replica(self, read: Callable[[], tuple[int, int]]) -> None:
        self._read = read


_ROLES: dict[Role, Callable[[CollectorRegistry, str], _View]] = {
    "sequencer": _Sequencer,
    "matcher": _Matcher,
    "client": _Client,
}


def metrics_for(role: Role, registry: CollectorRegistry, market: str = DEFAULT_MARKET) -> Metrics:
    """`role`'s metrics for `market`, registered on `registry` (for tests: no server);
    `for_market` on it gives another market's."""
    return _ROLES[role](registry, market)


@contextmanager
def serving(
    port: int, role: Role, *, host: str = "127.0.0.1", market: str = DEFAULT_MARKET
) -> Iterator[tuple[Metrics, int]]:
    """Serve `role`'s metrics on `host`:`port` until the block ends; yield them and the
    port (see `exchange.runtime.serve_prometheus`)."""
    # No `*_created` series: they would double the page, and Prometheus ignores them
    # unless told otherwise. A setting of the library's, for this process: it serves one.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    metrics = metrics_for(role, registry, market)
    server, thread = start_http_server(port, addr=host, registry=registry)
    try:
        yield metrics, server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
