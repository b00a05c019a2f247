"""Your own adapter behind the `Transport` interface: metering any transport.

Run: `.venv/bin/python examples/custom_transport.py`

An application that wants numbers about its traffic (calls, failures by kind, time
spent) should not have to fork an adapter. `MeteredTransport` wraps *any* transport,
memory, loopback, Grenache or one of yours, and counts and times every call, including
the requests its handlers serve. Because it implements `transports.Transport` and keeps
every promise of it (the project's contract suite runs against it, see
tests/transports/transport_adapters.py), code written against the interface, such as the
exchange's services, takes it unchanged:

    transport = MeteredTransport(open_transport("grenache", grape="http://127.0.0.1:30001"))

The pattern for any wrapper: delegate each method, add your behaviour around the call,
never change what is returned or raised (exceptions pass through as they are), and let
`aclose` close what you wrap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

from transports import (
    DEFAULT_TIMEOUT,
    JSON,
    Handler,
    MemoryNetwork,
    NoPeersError,
    PeerResult,
    RemoteError,
    Transport,
    open_transport,
)

__all__ = ["CallStats", "MeteredTransport"]


@dataclass
class CallStats:
    """What one kind of call cost so far."""

    calls: int = 0
    seconds: float = 0.0
    """Total time spent in the calls (the event loop's clock)."""
    errors: Counter[str] = field(default_factory=Counter)
    """Calls that raised, by exception class name (cancellation is not an error)."""

    @property
    def mean_ms(self) -> float:
        """Mean duration of a call, in milliseconds (0 before the first call)."""
        return 1000 * self.seconds / self.calls if self.calls else 0.0


Observer = Callable[[str, float, BaseException | None], None]
"""Called after every call with (what, seconds, exception or None): export to your
metrics system here."""


class MeteredTransport(Transport):
    """Counts and times every call of the transport it wraps.

    ``stats`` has one `CallStats` per method (``"request"``, ``"map"``, ``"put"``,
    ``"get"``, ``"serve"``) and one per served name (``"handle:<name>"``: the requests
    this peer answered). It never changes a result or an exception.

    Args:
        inner: the transport to meter; closed by `aclose`.
        observer: also called after every call, e.g. to export metrics.
    """

    def __init__(self, inner: Transport, *, observer: Observer | None = None) -> None:
        self.inner = inner
        self.stats: dict[str, CallStats] = {}
        self._observer = observer

    @contextmanager
    def _metered(self, what: str) -> Iterator[None]:
        stats = self.stats.setdefault(what, CallStats())
        started = anyio.current_time()
        failure: BaseException | None = None
        try:
            yield
        except anyio.get_cancelled_exc_class():
            raise  # stopping a call (or `serve`) is how it ends, not how it fails
        except BaseException as exc:
            failure = exc
            stats.errors[type(exc).__name__] += 1
            raise
        finally:
            elapsed = anyio.current_time() - started
            stats.calls += 1
            stats.seconds += elapsed
            if self._observer is not None:
                self._observer(what, elapsed, failure)

    def _meter_handler(self, name: str, handler: Handler) -> Handler:
        async def metered(payload: JSON) -> JSON:
            with self._metered(f"handle:{name}"):
                return await handler(payload)

        return metered

    async def serve(
        self,
        handlers: Mapping[str, Handler],
        *,
        port: int = 0,
        wait_announced: bool = True,
        task_status: TaskStatus[int] = TASK_STATUS_IGNORED,
    ) -> None:
        """Serve through the inner transport, metering every request answered."""
        wrapped = {name: self._meter_handler(name, h) for name, h in handlers.items()}
        with self._metered("serve"):
            await self.inner.serve(
                wrapped, port=port, wait_announced=wait_announced, task_status=task_status
            )

    async def request(self, name: str, payload: JSON, *, timeout: float = DEFAULT_TIMEOUT) -> JSON:
        """`Transport.request`, metered."""
        with self._metered("request"):
            return await self.inner.request(name, payload, timeout=timeout)

    async def map(
        self, name: str, payload: JSON, *, timeout: float = DEFAULT_TIMEOUT
    ) -> list[PeerResult]:
        """`Transport.map`, metered (one call, however many peers answer)."""
        with self._metered("map"):
            return await self.inner.map(name, payload, timeout=timeout)

    async def put(self, value: str) -> str:
        """`Transport.put`, metered."""
        with self._metered("put"):
            return await self.inner.put(value)

    async def get(self, key: str) -> str | None:
        """`Transport.get`, metered."""
        with self._metered("get"):
            return await self.inner.get(key)

    async def aclose(self) -> None:
        """Close the wrapped transport (idempotent, as it is)."""
        await self.inner.aclose()

    def report(self) -> str:
        """One line per kind of call: count, errors, mean time."""
        lines = []
        for what, s in sorted(self.stats.items()):
            errors = ", ".join(f"{n} {kind}" for kind, n in sorted(s.errors.items())) or "none"
            lines.append(f"{what:>14}: {s.calls} calls, errors: {errors}, mean {s.mean_ms:.2f} ms")
        return "\n".join(lines)


async def main() -> None:
    """A server and a client, both metered, on one in-memory network."""
    network = MemoryNetwork()

    async def quote(payload: JSON) -> JSON:
        if payload == "DOGE-EUR":
            raise RemoteError("ERR_UNKNOWN_MARKET: DOGE-EUR")
        return {"market": payload, "bid": "100.00", "ask": "100.50"}

    async with (
        MeteredTransport(open_transport("memory", network=network)) as server,
        MeteredTransport(open_transport("memory", network=network)) as client,
        anyio.create_task_group() as tg,
    ):
        await tg.start(partial(server.serve, {"quote": quote}))
        for _ in range(3):
            await client.request("quote", "BTC-USD", timeout=5)
        await client.map("quote", "BTC-USD", timeout=5)
        try:
            await client.request("quote", "DOGE-EUR", timeout=5)
        except RemoteError as exc:
            print("refused:", exc.message)
        try:
            await client.request("nobody-serves-this", None, timeout=5)
        except NoPeersError:
            print("nobody serves nobody-serves-this")
        key = await client.put("a metered value")
        assert await client.get(key) == "a metered value"
        tg.cancel_scope.cancel()
    assert isinstance(client, Transport)  # what the exchange's services ask for
    print("client:")
    print(client.report())
    print("server:")
    print(server.report())


if __name__ == "__main__":
    anyio.run(main)
