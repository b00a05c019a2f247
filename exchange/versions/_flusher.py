"""Put a publisher's owed book pages after the version is announced: `BookFlusher`.

The matcher's default (`background`): it publishes each version with ``book_later``
(its list pages and root only: what a following replica reads), records and announces
it, then calls `after_version`, which kicks `run`: a task of its own puts the owed book
pages and the refreshes due, at most one flush per `interval` (a few puts in flight),
while the matcher goes on with the next versions. Everything the versions of one
interval changed is put once by the next flush (a hot leaf changed by ten versions: one
put), and each flush stores one version's book whole (`VersionPublisher.flush`): a cold
reader of a later version reads that one and follows by commands (`VersionReader.fetch`).
Measured at 1,000 orders/s: docs/benchmarks.md, "Book pages at a bounded cadence".
Without `background` (the matcher's ``--book-pages-first``) the matcher publishes as
before (book pages, then the root) and `after_version` has nothing to put.

`flush_now` puts what is owed at once (the publisher's concurrency). A failed flush is
logged once while it lasts and tried again in the background: the version is recorded
already, and its book pages are what only a cold reader needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio

from exchange.protocol import Entry
from exchange.versions._publisher import VersionPublisher
from orderbook_core import Event, OrderBook
from transports import TransportError

__all__ = ["DEFAULT_BOOK_INTERVAL", "DEFAULT_FLUSH_CONCURRENCY", "BookFlusher"]

_log = logging.getLogger("exchange.versions")

DEFAULT_BOOK_INTERVAL = 0.5
"""Seconds from the start of one flush to the start of the next, at least: the pages the
versions of one interval changed are put once, and a cold reader follows by commands
from the last flushed version. 0.1, 0.25 and 0.5 s halved the replicas' p99 alike; 0.5
s put the fewest pages (half of main's per order at 1,000 orders/s), which paid for the
versions being more (docs/benchmarks.md)."""

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
        background: the owner publishes with ``book_later`` and `after_version` kicks
            `run`; else `after_version` flushes what is owed at once (nothing, when
            the owner publishes plainly).

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
        background: bool = True,
    ) -> None:
        if interval < 0 or concurrency < 1:
            raise ValueError("need interval >= 0 and concurrency >= 1")
        self._publisher = publisher
        self.interval = interval
        self.concurrency = concurrency
        self.background = background
        self._owed = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self.flushes = 0
        self.failures = 0
        self._failing = False

    async def publish(
        self,
        book: OrderBook,
        events: Sequence[Event],
        *,
        seq: int,
        first: int,
        commands: Sequence[Entry] = (),
    ) -> str:
        """`VersionPublisher.publish` on the current publisher, with ``book_later`` when
        in the `background`; then announce the version, and call `after_version`."""
        return await self._publisher().publish(
            book, events, seq=seq, first=first, commands=commands, book_later=self.background
        )

    async def after_version(self) -> int:
        """Call after each ``book_later`` publish is announced; the items put now (0 in
        the background)."""
        if self.background:
            self.kick()
            return 0
        return await self.flush_now()

    def kick(self) -> None:
        """A version was published with ``book_later``: flush soon. Never waits."""
        self._owed.set()

    async def flush_now(self) -> int:
        """Flush what is owed now, all puts at once (the publisher's concurrency).

        For an owner that wants one flush per version, after announcing it (the
        matcher: its next version then starts after the flush, so versions cover as
        many commands as when the book pages came first). A failure is logged (once
        while it lasts) and left to `run`, which tries again; it is never raised.

        Returns:
            How many items were put (0 when it failed).
        """
        publisher = self._publisher()
        if not publisher.owed:
            return 0
        await self._idle.wait()  # one flush at a time
        try:
            puts = await publisher.flush()
        except TransportError as exc:
            self._failed(publisher, exc)
            self.kick()
            return 0
        self._worked()
        return puts

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
                self._failed(publisher, exc)
                self._owed.set()
                await anyio.sleep(_RETRY_PAUSE)
                continue
            finally:
                self._idle.set()
            self._worked()
            # One line per version at most (the root names it): never a repeated line.
            _log.info("flushed book pages of %s: puts=%d", publisher.last_root, puts)
            await anyio.sleep(max(0.0, started + self.interval - anyio.current_time()))

    def _failed(self, publisher: VersionPublisher, exc: TransportError) -> None:
        self.failures += 1
        if not self._failing:  # once per outage: it is tried again and again
            _log.warning("putting book pages fails (%d owed; tried again): %s", publisher.owed, exc)
        self._failing = True

    def _worked(self) -> None:
        self.flushes += 1
        if self._failing:
            _log.info("putting book pages works again")
        self._failing = False
