"""Serving a program's metrics for Prometheus: the one door to ``prometheus-client``.

It imports the exporter (`_prometheus`, which needs the ``metrics`` extra) only when
called, so the base install never needs the library, and the observer interface
(`_metrics`) knows nothing of either.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from exchange.protocol import DEFAULT_MARKET
from exchange.runtime._metrics import METRICS_EXTRA, Metrics, Role

__all__ = ["serve_prometheus"]


def serve_prometheus(
    port: int, role: Role, *, host: str = "127.0.0.1", market: str = DEFAULT_MARKET
) -> AbstractContextManager[tuple[Metrics, int]]:
    """Serve `role`'s metrics for Prometheus on ``http://<host>:<port>/metrics``.

    The server runs in a thread of its own (prometheus-client's) from entering the
    returned context to leaving it, which stops it. It binds `host` only, 127.0.0.1 by
    default: the metrics are for a scraper on the same machine or behind a proxy.

    Args:
        port: the TCP port; 0 picks a free one.
        role: which program's metrics to export.
        host: the address to bind.
        market: the `market` label of the yielded metrics' series (`Metrics.for_market`
            gives another market's, served on the same page).

    Returns:
        A context manager that yields the `Metrics` to give the worker, and the port.

    Raises:
        ImportError: prometheus-client is not installed (the message says how to).
        OSError: on entering, the port cannot be bound.
    """
    try:
        from exchange.runtime import _prometheus
    except ImportError as exc:
        if exc.name is None or not exc.name.startswith("prometheus_client"):
            raise
        raise ImportError(f"metrics need prometheus-client: {METRICS_EXTRA}") from exc
    return _prometheus.serving(port, role, host=host, market=market)
