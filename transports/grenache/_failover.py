"""Which grape to ask first: the choice policy of a link over several grapes.

Theory of operation. The grapes are ranked in the order given (the first is the local
grape, where announces belong). A grape that does not answer (its connection refused or
broken, a malformed reply, or no reply in time) is *set aside* for a pause that starts at
`first_pause` and doubles with each failure, up to `max_pause`. Calls ask the grapes that
are not set aside first, in rank order, then the set-aside ones, the one due back soonest
first: so no call fails without every grape having been tried, and a grape that comes
back is asked again, first, as soon as its pause ends (and is kept if it answers).

Sans-I/O: it holds no connection and never sleeps; the clock is given (tests pass their
own). Many calls may see the same failure at once: a grape already set aside is not set
aside again (its pause does not double) until the pause ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["GrapeChoice"]


class GrapeChoice:
    """The health of `count` grapes, and the order to ask them in.

    Args:
        count: how many grapes (at least 1).
        first_pause: seconds a grape is set aside after its first failure.
        max_pause: the longest pause (the pause doubles per failure in a row).
        clock: seconds, monotonic.
    """

    __slots__ = ("_back_at", "_clock", "_failures", "_first_pause", "_max_pause", "count")

    def __init__(
        self,
        count: int,
        *,
        first_pause: float = 1.0,
        max_pause: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if count < 1:
            raise ValueError("at least one grape")
        if not 0 < first_pause <= max_pause:
            raise ValueError(f"need 0 < first_pause <= max_pause, not {first_pause}, {max_pause}")
        self.count = count
        self._first_pause = first_pause
        self._max_pause = max_pause
        self._clock = clock
        self._failures = [0] * count
        self._back_at = [0.0] * count

    def order(self) -> list[int]:
        """The grapes' indexes, best first: those not set aside in rank order, then the
        set-aside ones by the end of their pause. O(n log n), n the number of grapes."""
        now = self._clock()
        back_at = self._back_at
        up = [i for i in range(self.count) if back_at[i] <= now]
        if len(up) == self.count:
            return up
        aside = sorted((i for i in range(self.count) if back_at[i] > now), key=back_at.__getitem__)
        return up + aside

    def first(self) -> int:
        """The grape to ask first (``order()[0]``, cheaper: it runs on every cached lookup)."""
        back_at = self._back_at
        if not any(back_at):
            return 0
        return self.order()[0]

    def is_aside(self, index: int) -> bool:
        """Whether grape `index` is set aside now."""
        return self._back_at[index] > self._clock()

    def failed(self, index: int) -> bool:
        """Grape `index` did not answer: set it aside. Returns True when this is news
        (it was not failing before), for a caller that logs state changes only."""
        now = self._clock()
        if self._back_at[index] > now:
            return False  # already set aside: the same outage, seen by another call
        failures = self._failures[index]
        pause = min(self._max_pause, self._first_pause * 2 ** min(failures, 32))
        self._failures[index] = failures + 1
        self._back_at[index] = now + pause
        return failures == 0

    def answered(self, index: int) -> bool:
        """Grape `index` answered (even with an error string: it is there). Returns True
        when it had been failing (news for the log)."""
        was_failing = self._failures[index] > 0
        self._failures[index] = 0
        self._back_at[index] = 0.0
        return was_failing
