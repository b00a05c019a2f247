"""Put a publisher's owed book pages in the background: `BookFlusher`.

The matcher publishes each version with ``book_later`` (its list pages and root only:
what a following replica reads), announces it, and kicks the flusher, which puts the
owed book pages (and the refreshes due) in a task of its own, a few at a time, while
the matcher goes on with the next version: the book pages are off the path from a
command to the replicas. One flush at a time: the versions published while one runs
are covered by the next, whose changed pages overlap theirs (a hot leaf is put once,
not once per version), and `interval` can space flushes further. A flush that fails
is logged and tried again: the version is recorded already, and its book pages are
what only a cold reader needs (`VersionReader.fetch` waits a little for them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from exchange.versions._publisher import VersionPublisher
from transports import TransportError

__all__ = ["DEFAULT_BOOK_INTERVAL", "DEFAULT_FLUSH_CONCURRENCY", "BookFlusher"]

_log = logging.getLogger("exchange.versions")

DEFAULT_BOOK_INTERVAL = 0.0
"""Seconds from the start of one flush to the start of the next, at least."""

DEFAULT_FLUSH_CONCURRENCY = 4
"""Puts in flight per flush: few, so a version's own puts wait behind few of them."""

_RETRY_PAUSE = 0.5
"""Seconds before a failed flush is tried again."""


class BookFlusher:
    """Flushes the owed book pages of the current publisher, one flush at a time.

    Args:
        publisher: returns the publisher in use (its owner may replace it).
        interval: seconds between the starts of two flushes, at least.
        concurrency: puts in flight per flush.

    Attributes:
        flushes: flushes that put something.
        failures: flushes that failed (tried again).
    """

    def __init__(
        self,
        publisher: Callable[[], VersionPublisher],
        *,
        interval: float = DEFAULT_BOOK_INTERVAL,
        concurrency: int = DEFAULT_FLUSH_CONCURRENCY,
    ) -> None:
        if interval < 0 or concurrency < 1:
            raise ValueError("need interval >= 0 and concurrency >= 1")
        self._publisher = publisher
        self.interval = interval
        self.concurrency = concurrency
        self._owed = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self.flushes = 0
        self.failures = 0

    def kick(self) -> None:
        """A version was published with ``book_later``: flush soon. Never waits."""
        self._owed.set()

    async def wait_idle(self) -> None:
        """Return once nothing is owed (for tests and a clean stop)."""
        while self._publisher().owed or not self._idle.is_set():
            self._owed.set()
            await anyio.sleep(0.01)

    async def run(self) -> None:
        """Flush whatever is owed whenever kicked, until cancelled."""
        while True:
            await self._owed.wait()
            self._owed = anyio.Event()
            publisher = self._publisher()
            if not publisher.owed:
                continue
            started = anyio.current_time()
            self._idle = anyio.Event()
            try:
                puts = await publisher.flush(concurrency=self.concurrency)
            except TransportError as exc:
                self.failures += 1
                _log.warning("putting %d book pages failed (tried again): %s", publisher.owed, exc)
                self._owed.set()
                await anyio.sleep(_RETRY_PAUSE)
                continue
            finally:
                self._idle.set()
            self.flushes += 1
            _log.info(
                "flushed book pages: puts=%d refreshes=%d", puts, publisher.last_refresh_count
            )
            await anyio.sleep(max(0.0, started + self.interval - anyio.current_time()))
