"""One log line when something starts failing and one when it works again.

The workers retry what fails (a forward to the matcher, a DHT put, a broadcast) for as
long as it fails, and a grape can be down for an hour: a line per attempt buried one
process log under thousands of identical warnings. An `Outage` turns the attempts into
state changes: the first failure of a streak is a warning, the rest are debug lines,
and the first success after it says how long it lasted and how many attempts failed.
"""

from __future__ import annotations

import logging
import time

__all__ = ["Outage"]


class Outage:
    """The failing/working state of one retried activity, logged on change only.

    Args:
        logger: where the two lines go.
        what: the activity, as the subject of "... fails: <detail>".
    """

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._logger = logger
        self.what = what
        self.failures = 0
        """Failed attempts since the last success (0: working)."""
        self._since = 0.0
        self._last = ""

    @property
    def failing(self) -> bool:
        """Whether the last attempt failed."""
        return self.failures > 0

    def failed(self, detail: str) -> None:
        """Record a failed attempt: a warning if it is the first of a streak."""
        if not self.failures:
            self._since = time.monotonic()
            self._logger.warning(
                "%s fails: %s (retrying; logged again once it works)", self.what, detail
            )
        else:
            self._logger.debug("%s failed again (%d): %s", self.what, self.failures + 1, detail)
        self.failures += 1
        self._last = detail

    def worked(self) -> None:
        """Record a successful attempt: an info line if it ends a streak of failures."""
        if not self.failures:
            return
        self._logger.info(
            "%s works again, after %d failed attempts over %.0f s (the last: %s)",
            self.what,
            self.failures,
            time.monotonic() - self._since,
            self._last,
        )
        self.failures = 0
