"""Run many DHT calls concurrently, a bounded number at a time, failing as one.

The publisher puts hundreds of pages at once and the reader gets as many; one at a time
would take minutes against real grapes (~1 ms each, plus latency), all at once would
open hundreds of connections. A fixed pool of worker tasks pulling from one shared
iterator gives the bound without a task per item (cheaper than a `CapacityLimiter`
gate in front of thousands of tasks).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio

__all__ = ["DEFAULT_CONCURRENCY", "run_bounded"]

T = TypeVar("T")

DEFAULT_CONCURRENCY = 16
"""DHT calls in flight at once, per publish or fetch."""


async def run_bounded(
    items: Sequence[T], call: Callable[[T], Awaitable[None]], limit: int = DEFAULT_CONCURRENCY
) -> None:
    """Await ``call(item)`` for every item, at most `limit` at a time.

    The first exception cancels the calls still running and is raised *as itself*, not
    wrapped in an ExceptionGroup, so callers can promise plain exception types (e.g.
    `TransportError`, `InvalidVersion`). Structured: every call has ended on return.

    Args:
        items: what to call `call` with; each item once, in order of start.
        call: the async function.
        limit: the most calls in flight (>= 1).

    Raises:
        Exception: the first exception a call raised.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, not {limit}")
    failures: list[Exception] = []
    pending = iter(items)

    async def worker(tg: anyio.abc.TaskGroup) -> None:
        for item in pending:
            try:
                await call(item)
            except Exception as exc:
                failures.append(exc)
                tg.cancel_scope.cancel()
                return

    async with anyio.create_task_group() as tg:
        for _ in range(min(limit, len(items))):
            tg.start_soon(worker, tg)
    if failures:
        raise failures[0]
