"""Telling clients a new version exists: a `map` of the head's root to every peer that
serves ``orderbook_updated``.

Apart from the worker because it is a loop of its own: it follows the head, never holds
it up (a slow or dead client costs a broadcast its timeout, never a version), and skips
roots that were replaced while a map ran (clients fetch the head, not every version).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

import anyio

from exchange.runtime import Metrics, Outage, crash_point
from transports import Transport, TransportError

__all__ = ["Broadcaster"]

_log = logging.getLogger("exchange.matcher")

_FAILING_PEERS_KEPT = 10_000


class Broadcaster:
    """Maps the latest root to `name` whenever it changes.

    Args:
        transport: where the map goes.
        name: the market's ``orderbook_updated`` name.
        metrics: counts each broadcast's answers and failures.
        timeout: seconds each peer may take.
        root: the head's root now (None before the first version).
        changed: the event set at the next change of the head (a fresh one each time).
    """

    def __init__(
        self,
        transport: Transport,
        name: str,
        metrics: Metrics,
        *,
        timeout: float,
        root: Callable[[], str | None],
        changed: Callable[[], anyio.Event],
    ) -> None:
        self.transport = transport
        self.name = name
        self.metrics = metrics
        self.timeout = timeout
        self._root = root
        self._changed = changed
        self.broadcasts = 0
        """How many maps were sent (for tests and operators)."""
        self.failing_peers: OrderedDict[str, None] = OrderedDict()
        """Peers whose last broadcast failed, least recently failed first (bounded)."""
        self._outage = Outage(_log, "broadcasting orderbook_updated")

    async def run(self, ready: anyio.Event) -> None:
        """From when `ready` is set (the restored head is in the DHT again), for ever."""
        await ready.wait()
        sent: str | None = None
        while True:
            changed = self._changed()  # taken before reading the root: no missed update
            root = self._root()
            if root is None or root == sent:
                await changed.wait()
                continue
            sent = root
            await self._broadcast(root)

    async def _broadcast(self, root: str) -> None:
        crash_point("during_broadcast")  # test hook: with a delay, while the map runs
        # The pair of debug lines tells a log read after a kill whether a map was in flight.
        _log.debug("orderbook_updated: map of %s started", root)
        try:
            results = await self.transport.map(self.name, root, timeout=self.timeout)
        except TransportError as exc:
            _log.debug("orderbook_updated: map of %s ended", root)
            self._outage.failed(f"{root}: {exc}")
            self.metrics.broadcast_failed()
            return
        _log.debug("orderbook_updated: map of %s ended", root)
        self.broadcasts += 1
        self._outage.worked()
        ok = sum(1 for result in results if result.ok)
        self.metrics.broadcast(ok, len(results) - ok)
        failing = self.failing_peers
        for result in results:
            if result.ok:
                if result.peer in failing:
                    del failing[result.peer]
                    _log.info("orderbook_updated: %s answers again", result.peer)
            elif result.peer in failing:
                failing.move_to_end(result.peer)
            else:
                # Dead peers stay announced: say so once per peer, not once per version.
                failing[result.peer] = None
                _log.warning("orderbook_updated: %s failed: %s", result.peer, result.error)
        # A lookup returns a random 100 of the peers announced, so a dead peer missing from
        # one map is back in a later one: it is remembered until it answers (forgetting it
        # logged one dead peer again and again), within a bound.
        while len(failing) > _FAILING_PEERS_KEPT:
            failing.popitem(last=False)
