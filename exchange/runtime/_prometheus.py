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


class _Common(NullMetrics):
    """What every serving role exports: its refusals."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._refused = Counter(
            "dex_requests_refused",
            "Requests answered with an error, by service and ERR_* code.",
            ["service", "code"],
            registry=registry,
        )

    def refused(self, service: str, code: str) -> None:
        self._refused.labels(service, _label(code)).inc()


class _Sequencer(_Common):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self._accepted = Counter(
            "dex_commands_accepted",
            "Commands journaled (fsynced) and acknowledged by the sequencer.",
            registry=registry,
        )
        self._head = Gauge(
            "dex_journal_head", "Highest sequence number in the journal.", registry=registry
        )
        self._acked = Gauge(
            "dex_journal_acked",
            "Highest sequence number the matcher acknowledged.",
            registry=registry,
        )
        self._backlog = Gauge(
            "dex_backlog",
            "Commands journaled but not yet acknowledged by the matcher (head - acked).",
            registry=registry,
        )
        self._head_seq = self._acked_seq = 0
        self._commit_seconds = Histogram(
            "dex_journal_commit_seconds",
            "Time of one journal transaction, fsync included.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self._commit_size = Histogram(
            "dex_journal_commit_batch_size",
            "Commands stored by one journal transaction (group commit).",
            buckets=_SIZE_BUCKETS,
            registry=registry,
        )
        self._commit_failures = Counter(
            "dex_journal_commit_failures",
            "Journal transactions that failed (their commands were refused).",
            registry=registry,
        )
        self._forward_failures = Counter(
            "dex_forward_failures",
            "process_order requests that failed and will be retried, by reason.",
            ["reason"],
            registry=registry,
        )
        self._step_downs = Counter(
            "dex_sequencer_step_downs",
            "Times the sequencer stopped writing (lost its lease, or found another writer).",
            registry=registry,
        )
        self._active = Gauge(
            "dex_sequencer_active",
            "1 while this sequencer is the active one (holds the journal), 0 on standby.",
            registry=registry,
        )

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
        self._forward_failures.labels(_label(reason)).inc()

    def stepped_down(self) -> None:
        self._step_downs.inc()

    def sequencer_active(self, active: bool) -> None:
        self._active.set(1 if active else 0)


class _Matcher(_Common):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self._head = Gauge(
            "dex_matcher_head",
            "Highest sequence number applied and published by the matcher.",
            registry=registry,
        )
        self._applied = Counter(
            "dex_commands_applied", "Commands applied by the matcher.", registry=registry
        )
        self._versions = Counter(
            "dex_versions_published", "Versions of the book published.", registry=registry
        )
        self._version_commands = Histogram(
            "dex_version_commands",
            "Commands covered by one version (one process_order batch).",
            buckets=_SIZE_BUCKETS,
            registry=registry,
        )
        self._version_seconds = Histogram(
            "dex_version_seconds",
            "Time to apply a batch, publish its version to the DHT and record it.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self._put_seconds = Histogram(
            "dex_dht_put_seconds",
            "Time of one DHT put (a page or a root), failed ones included.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self._put_failures = Counter(
            "dex_dht_put_failures", "DHT puts that raised.", registry=registry
        )
        self._broadcasts = Counter(
            "dex_broadcasts",
            "orderbook_updated maps sent (one per version, or fewer: coalesced).",
            registry=registry,
        )
        self._broadcast_failures = Counter(
            "dex_broadcast_failures",
            "orderbook_updated maps that failed as a whole (the lookup).",
            registry=registry,
        )
        self._peers = Counter(
            "dex_broadcast_peers",
            "Peers an orderbook_updated map reached (ok) or did not (failed).",
            ["result"],
            registry=registry,
        )
        self._last_peers = Gauge(
            "dex_broadcast_last_peers",
            "Peers the last orderbook_updated map reached (ok) or did not (failed).",
            ["result"],
            registry=registry,
        )
        for result in ("ok", "failed"):  # both series from the start, at 0
            self._peers.labels(result)
            self._last_peers.labels(result)

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
        self._peers.labels("ok").inc(ok)
        self._peers.labels("failed").inc(failed)
        self._last_peers.labels("ok").set(ok)
        self._last_peers.labels("failed").set(failed)

    def broadcast_failed(self) -> None:
        self._broadcast_failures.inc()


class _Client(NullMetrics):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._read: Callable[[], tuple[int, int]] = lambda: (0, 0)
        seq = Gauge("dex_replica_seq", "Sequence number of the replica's version.",
                    registry=registry)  # fmt: skip
        head = Gauge("dex_replica_head", "The matcher's head, as this client last heard it.",
                     registry=registry)  # fmt: skip
        lag = Gauge("dex_replica_lag", "Commands the replica is behind the head it knows.",
                    registry=registry)  # fmt: skip
        seq.set_function(lambda: self._read()[0])
        head.set_function(lambda: self._read()[1])
        lag.set_function(lambda: max(0, self._read()[1] - self._read()[0]))

    def follow_replica(self, read: Callable[[], tuple[int, int]]) -> None:
        self._read = read


_ROLES: dict[Role, Callable[[CollectorRegistry], Metrics]] = {
    "sequencer": _Sequencer,
    "matcher": _Matcher,
    "client": _Client,
}


def metrics_for(role: Role, registry: CollectorRegistry) -> Metrics:
    """`role`'s metrics, registered on `registry` (for tests: no server)."""
    return _ROLES[role](registry)


@contextmanager
def serving(port: int, role: Role, *, host: str = "127.0.0.1") -> Iterator[tuple[Metrics, int]]:
    """Serve `role`'s metrics on `host`:`port` until the block ends; yield them and the
    port (see `exchange.runtime.serve_prometheus`)."""
    # No `*_created` series: they would double the page, and Prometheus ignores them
    # unless told otherwise. A setting of the library's, for this process: it serves one.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    metrics = metrics_for(role, registry)
    server, thread = start_http_server(port, addr=host, registry=registry)
    try:
        yield metrics, server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
