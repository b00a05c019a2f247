"""A DHT that misbehaves on demand, for the versions tests (memory DHT underneath)."""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import anyio.lowlevel
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

from transports import JSON, ConnectionFailed, Handler, PeerResult, Transport


class FaultyDht(Transport):
    """Wraps a transport's DHT: tamper with gets, hide keys, fail puts on demand.

    A put that fails, and every put of the same `publish` attempt before it, can be
    "lost" (hidden from gets) to model a DHT that did not keep them.
    """

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.tampered: dict[str, str] = {}
        self.hidden: set[str] = set()
        self.fail_puts_after: int | None = None
        self.lose_failed_attempt = False
        self.puts = 0
        self.gets = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.blocked: anyio.Event | None = None  # puts wait for it while set
        self._attempt: list[str] = []

    async def serve(
        self,
        handlers: Mapping[str, Handler],
        *,
        port: int = 0,
        wait_announced: bool = True,
        task_status: TaskStatus[int] = TASK_STATUS_IGNORED,
    ) -> None:
        raise NotImplementedError

    async def request(self, name: str, payload: JSON, *, timeout: float = 10.0) -> JSON:
        raise NotImplementedError

    async def map(self, name: str, payload: JSON, *, timeout: float = 10.0) -> list[PeerResult]:
        raise NotImplementedError

    def begin_attempt(self) -> None:
        """From now on, a failing put hides only the puts made after this call."""
        self._attempt = []

    async def put(self, value: str) -> str:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await anyio.lowlevel.checkpoint()  # let the other workers start, to measure concurrency
            if self.blocked is not None:
                await self.blocked.wait()
            if self.fail_puts_after is not None and self.puts >= self.fail_puts_after:
                if self.lose_failed_attempt:
                    self.hidden.update(self._attempt)
                raise ConnectionFailed("injected put failure")
            self.puts += 1
            key = await self.inner.put(value)
            self.hidden.discard(key)
            self._attempt.append(key)
            return key
        finally:
            self.in_flight -= 1

    async def get(self, key: str) -> str | None:
        self.gets += 1
        if key in self.hidden:
            return None
        if key in self.tampered:
            return self.tampered[key]
        return await self.inner.get(key)

    async def aclose(self) -> None:
        await self.inner.aclose()
