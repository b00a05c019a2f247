"""What the workers tell an observer: the few numbers an operator watches.

The workers know nothing of Prometheus. Each takes a `Metrics` (default `NO_METRICS`,
which does nothing) and calls it at the points that matter: a commit of the journal, a
refusal, an acknowledgement from the matcher, a version published, a DHT put, a
broadcast. The calls are synchronous, cheap and never raise, so the default costs a
method call and a timer read per event, and a worker cannot fail because of its
observer.

`serve_prometheus` (in `_exporter.py`) is the one place that brings in
``prometheus-client`` (the ``metrics`` extra): `--metrics-port` on a worker,
`bin/client.py` or `dex watch` calls it, and only then is the library imported. Every
metric it exports is listed in docs/operations.md ("Metrics"). This module does not
import the exporter; the exporter imports it.

```python
from exchange.runtime import NullMetrics

class Commits(NullMetrics):            # override only what you need
    def committed(self, head: int, count: int, seconds: float) -> None:
        print(f"journal at {head}: {count} commands in {seconds * 1000:.1f} ms")
```
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Literal, Protocol

from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

from exchange.protocol import error_string
from transports import DEFAULT_TIMEOUT, JSON, Handler, PeerResult, Transport

__all__ = [
    "METRICS_EXTRA",
    "NO_METRICS",
    "Metrics",
    "NullMetrics",
    "Role",
    "TimedPuts",
    "observe_refusals",
]

Role = Literal["sequencer", "matcher", "client"]
"""Which program's metrics to export: each has its own set (docs/operations.md)."""

METRICS_EXTRA = "pip install 'distributed-exchange[metrics]'"
"""How to get ``prometheus-client``: said when `--metrics-port` is given without it."""


class Metrics(Protocol):
    """The observer the workers call. Every method returns at once and never raises."""

    def refused(self, service: str, code: str) -> None:
        """A request to `service` was answered with the error `code` (``ERR_*``)."""

    def journal_head(self, head: int, acked: int) -> None:
        """The sequencer opened its journal at `head`, `acked` by the matcher."""

    def committed(self, head: int, count: int, seconds: float) -> None:
        """One journal transaction stored `count` commands up to `head` in `seconds`
        (the fsync included)."""

    def commit_failed(self, count: int) -> None:
        """A journal transaction failed: `count` queued commands were refused."""

    def forwarded(self, acked: int) -> None:
        """The matcher acknowledged every entry up to `acked`."""

    def forward_failed(self, reason: str) -> None:
        """A ``process_order`` request failed: the peer's ``ERR_*`` code, ``transport``
        (no answer) or ``bad_reply``; the forwarder will retry."""

    def stepped_down(self) -> None:
        """The sequencer stopped writing: it lost its writer's lease, or another writer
        appended to its journal."""

    def sequencer_active(self, active: bool) -> None:
        """The sequencer became the active one (serves and writes), or a standby."""

    def matcher_head(self, head: int) -> None:
        """The matcher restored its state at `head`."""

    def version_published(self, head: int, commands: int, seconds: float) -> None:
        """The matcher applied, published and recorded one version of `commands`
        commands, up to `head`, in `seconds`."""

    def dht_put(self, seconds: float, ok: bool) -> None:
        """One DHT put took `seconds`; `ok` is False when it raised."""

    def broadcast(self, ok: int, failed: int) -> None:
        """One ``orderbook_updated`` map reached `ok` peers and failed at `failed`."""

    def broadcast_failed(self) -> None:
        """An ``orderbook_updated`` map failed as a whole (the lookup)."""

    def follow_replica(self, read: Callable[[], tuple[int, int]]) -> None:
        """A client's replica: `read()` returns (the replica's seq, the head it knows),
        called when the metrics are read, from any thread."""

    def for_market(self, market: str) -> Metrics:
        """The observer of `market`'s events, in a process serving several markets
        (Prometheus: the same metrics, their `market` label `market`)."""


class NullMetrics:
    """A `Metrics` that does nothing: the workers' default. Subclass it to observe a
    few events without writing the others."""

    def refused(self, service: str, code: str) -> None:
        """Ignored."""

    def journal_head(self, head: int, acked: int) -> None:
        """Ignored."""

    def committed(self, head: int, count: int, seconds: float) -> None:
        """Ignored."""

    def commit_failed(self, count: int) -> None:
        """Ignored."""

    def forwarded(self, acked: int) -> None:
        """Ignored."""

    def forward_failed(self, reason: str) -> None:
        """Ignored."""

    def stepped_down(self) -> None:
        """Ignored."""

    def sequencer_active(self, active: bool) -> None:
        """Ignored."""

    def matcher_head(self, head: int) -> None:
        """Ignored."""

    def version_published(self, head: int, commands: int, seconds: float) -> None:
        """Ignored."""

    def dht_put(self, seconds: float, ok: bool) -> None:
        """Ignored."""

    def broadcast(self, ok: int, failed: int) -> None:
        """Ignored."""

    def broadcast_failed(self) -> None:
        """Ignored."""

    def follow_replica(self, read: Callable[[], tuple[int, int]]) -> None:
        """Ignored."""

    def for_market(self, market: str) -> Metrics:
        """Itself: it tells no market from another."""
        return self


NO_METRICS: Metrics = NullMetrics()
"""The default observer of every worker: observes nothing."""


def observe_refusals(service: str, handler: Handler, metrics: Metrics) -> Handler:
    """Wrap a service's logic so that each refusal is counted by its ``ERR_*`` code.

    The code is the one `exchange.protocol.service_handler` will reply with (the same
    `error_string`); the exception itself passes through unchanged, for that wrapper.
    """

    async def observed(payload: JSON) -> JSON:
        try:
            return await handler(payload)
        except Exception as exc:
            metrics.refused(service, error_string(exc).partition(":")[0])
            raise

    return observed


class TimedPuts(Transport):
    """A transport that times every `put` for `metrics`; everything else is passed on.

    The matcher's publishers put through it, so each DHT put is one `Metrics.dht_put`.
    It does not own `inner`: `aclose` leaves it open.
    """

    def __init__(self, inner: Transport, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def put(self, value: str) -> str:
        """`Transport.put` on the inner transport, timed."""
        started = time.perf_counter()
        try:
            key = await self.inner.put(value)
        except Exception:
            self.metrics.dht_put(time.perf_counter() - started, False)
            raise
        self.metrics.dht_put(time.perf_counter() - started, True)
        return key

    async def serve(
        self,
        handlers: Mapping[str, Handler],
        *,
        port: int = 0,
        wait_announced: bool = True,
        task_status: TaskStatus[int] = TASK_STATUS_IGNORED,
    ) -> None:
        """`Transport.serve` on the inner transport."""
        await self.inner.serve(
            handlers, port=port, wait_announced=wait_announced, task_status=task_status
        )

    async def request(self, name: str, payload: JSON, *, timeout: float = DEFAULT_TIMEOUT) -> JSON:
        """`Transport.request` on the inner transport."""
        return await self.inner.request(name, payload, timeout=timeout)

    async def map(
        self, name: str, payload: JSON, *, timeout: float = DEFAULT_TIMEOUT
    ) -> list[PeerResult]:
        """`Transport.map` on the inner transport."""
        return await self.inner.map(name, payload, timeout=timeout)

    async def get(self, key: str) -> str | None:
        """`Transport.get` on the inner transport."""
        return await self.inner.get(key)

    async def aclose(self) -> None:
        """Nothing: the inner transport belongs to whoever opened it."""
