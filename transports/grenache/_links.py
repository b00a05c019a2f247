"""`GrapeLinks`: the Grape API through several grapes, going on when one stops answering.

A lookup, put or get goes to one grape at a time, in the order `GrapeChoice` gives (the
order the grapes were given; a grape that did not answer is set aside for a while, then
asked first again). When a grape fails at once (connection refused: it died), the next
one is asked at once. When a grape is silent for `failover_after` seconds, the next one
is asked too, and the first answer wins: the slow call is cancelled, and its grape set
aside if it was overtaken (asked before the winner: one stopped never answers; but when
every grape is slow, as when a DHT node died, the first asked wins and none is set
aside). Asking twice is safe: lookups and gets read, and a put stores an immutable
item under the hash of its value.

An empty lookup, or a get that finds nothing, is asked of the next grape too (a grape
restarted empty, or one that has not yet seen an announce), and stands when no grape
does better. An announce goes through every grape: a service must be found through any.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio

from transports._dht import check_key, check_value
from transports._exceptions import (
    ConnectionFailed,
    RemoteError,
    RequestTimeout,
    TransportError,
)
from transports.grenache._failover import GrapeChoice
from transports.grenache._http import ConnectionPool
from transports.grenache._link import GrapeLink

__all__ = ["GrapeLinks"]

log = logging.getLogger("transports.grenache")

_T = TypeVar("_T")


class GrapeLinks:
    """Client of several grapes' HTTP APIs, with the methods of `GrapeLink`.

    Args:
        grapes: the grapes' API URLs, the preferred (local) one first; at least one.
        timeout: seconds allowed for each call to one grape.
        failover_after: seconds a grape may stay silent before the next one is asked too.
        lookup_ttl: seconds a non-empty lookup result is reused.
        pool: connection pool to use (not closed by `aclose` when given).
        choice: the health of the grapes and their order (default: `GrapeChoice` with
            its default pauses, 1 s doubling up to 30 s).
    """

    def __init__(
        self,
        grapes: Sequence[str],
        *,
        timeout: float = 5.0,
        failover_after: float = 1.0,
        lookup_ttl: float = 1.0,
        pool: ConnectionPool | None = None,
        choice: GrapeChoice | None = None,
    ) -> None:
        if isinstance(grapes, str):
            raise TypeError("grapes: a sequence of URLs, not one string")
        if not grapes:
            raise ValueError("at least one grape URL")
        if len(set(grapes)) != len(grapes):
            raise ValueError(f"a grape is given twice: {list(grapes)}")
        if not failover_after > 0:
            raise ValueError(f"failover_after must be positive, not {failover_after!r}")
        self._own_pool = pool is None
        self._pool = pool if pool is not None else ConnectionPool()
        self.links = tuple(
            GrapeLink(url, timeout=timeout, lookup_ttl=lookup_ttl, pool=self._pool)
            for url in grapes
        )
        self.urls = tuple(link.url for link in self.links)
        self.url = ",".join(self.urls)
        self._choice = choice if choice is not None else GrapeChoice(len(self.links))
        if self._choice.count != len(self.links):
            raise ValueError("choice: not made for this many grapes")
        self._failover_after = failover_after

    @property
    def choice(self) -> GrapeChoice:
        """The grapes' health, as this link sees it."""
        return self._choice

    # -- health -------------------------------------------------------------------------

    def _failed(self, index: int, exc: BaseException | str) -> None:
        if self._choice.failed(index) and len(self.links) > 1:
            log.warning(
                "grape %s does not answer (%s): asking the other grapes (logged again once"
                " it answers)",
                self.urls[index],
                exc,
            )

    def _answered(self, index: int) -> None:
        if self._choice.answered(index) and len(self.links) > 1:
            log.info("grape %s answers again", self.urls[index])

    # -- the race -----------------------------------------------------------------------

    async def _ask(
        self, call: Callable[[GrapeLink], Awaitable[_T]], good: Callable[[_T], bool]
    ) -> _T:
        """`call` on the grapes in turn (see the module docstring); the first good
        result, else the first answer, else the first grape's error string, else a
        transport error naming every grape's failure."""
        if len(self.links) == 1:
            result = await call(self.links[0])
            return result
        order = self._choice.order()
        found: list[_T] = []
        won_after = 0.0  # how long the winner had been asked when it answered
        answers: list[_T] = []
        refusals: list[RemoteError] = []
        errors: list[tuple[str, TransportError]] = []
        started: dict[int, float] = {}

        async def attempt(index: int, ended: anyio.Event, race: anyio.CancelScope) -> None:
            nonlocal won_after
            try:
                result = await call(self.links[index])
            except RemoteError as exc:
                self._answered(index)
                refusals.append(exc)
            except TransportError as exc:
                self._failed(index, exc)
                errors.append((self.urls[index], exc))
            else:
                self._answered(index)
                if good(result):
                    found.append(result)
                    won_after = anyio.current_time() - started[index]
                    race.cancel()
                else:
                    answers.append(result)
            del started[index]
            ended.set()

        async with anyio.create_task_group() as tg:
            for position, index in enumerate(order):
                ended = anyio.Event()
                started[index] = anyio.current_time()
                tg.start_soon(attempt, index, ended, tg.cancel_scope)
                if position + 1 < len(order):
                    with anyio.move_on_after(self._failover_after):
                        await ended.wait()
        now = anyio.current_time()
        for index, since in started.items():  # still running when another grape won
            if now - since > won_after:  # overtaken: asked first, silent for longer
                self._failed(index, f"no answer in {now - since:.1f} s")
        if found:
            return found[0]
        if answers:
            return answers[0]
        if refusals:
            raise refusals[0]
        raise _combined(errors)

    # -- the Grape API ------------------------------------------------------------------

    async def announce(self, name: str, port: int) -> int:
        """Announce `name` on `port` of this host through every grape at once; return
        the most DHT nodes any grape stored it on.

        Raises:
            RemoteError: every grape refused it, one with this error string.
            TransportError: no grape could be asked.
        """
        if not 0 < port < 65536:
            raise ValueError(f"port out of range: {port}")
        stored: list[int] = []
        refusals: list[RemoteError] = []
        errors: list[tuple[str, TransportError]] = []

        async def one(index: int) -> None:
            try:
                stored.append(await self.links[index].announce(name, port))
            except RemoteError as exc:
                self._answered(index)
                refusals.append(exc)
            except TransportError as exc:
                self._failed(index, exc)
                errors.append((self.urls[index], exc))
            else:
                self._answered(index)

        async with anyio.create_task_group() as tg:
            for index in range(len(self.links)):
                tg.start_soon(one, index)
        if stored:
            return max(stored)
        if refusals:
            raise refusals[0]
        raise _combined(errors)

    async def lookup(self, name: str, *, fresh: bool = False) -> list[str]:
        """The announced peers of `name` (maybe []), through the first grape that
        answers with some; see `GrapeLink.lookup`.

        Raises:
            RemoteError: no grape answered with a list; the first one's error string.
            TransportError: no grape could be asked.
        """
        if not fresh:
            cached = self.links[self._choice.first()].cached(name)
            if cached is not None:
                return cached

        async def call(link: GrapeLink) -> list[str]:
            return await link.lookup(name, fresh=fresh)

        return await self._ask(call, bool)

    def cached(self, name: str) -> list[str] | None:
        """The preferred grape's cached lookup of `name`, or None."""
        return self.links[self._choice.first()].cached(name)

    def drop_peer(self, name: str, peer: str) -> None:
        """Forget `peer` in every grape's cached lookup of `name`."""
        for link in self.links:
            link.drop_peer(name, peer)

    async def put(self, value: str) -> str:
        """Store the immutable item `value` through the first grape that takes it;
        return its key. See `GrapeLink.put`.

        Raises:
            PayloadTooLarge: `value` is 1000 UTF-8 bytes or more (nothing is sent).
            RemoteError: no grape stored it; the first one's error string.
            TransportError: no grape could be asked.
        """
        check_value(value)

        async def call(link: GrapeLink) -> str:
            return await link.put(value)

        return await self._ask(call, bool)

    async def get(self, key: str) -> str | None:
        """The immutable item `key` from the first grape that has it; None when none
        does. See `GrapeLink.get`.

        Raises:
            ValueError: `key` is not 40 lowercase hex characters.
            RemoteError: no grape answered; the first one's error string.
            TransportError: no grape could be asked.
        """
        check_key(key)

        async def call(link: GrapeLink) -> str | None:
            return await link.get(key)

        return await self._ask(call, _is_found)

    async def aclose(self) -> None:
        """Close every grape's connections (unless the pool was given by the caller)."""
        for link in self.links:
            await link.aclose()
        if self._own_pool:
            await self._pool.aclose()


def _is_found(value: str | None) -> bool:
    return value is not None


def _combined(errors: list[tuple[str, TransportError]]) -> TransportError:
    """One error for every grape's failure: a timeout if any grape timed out (a grape
    is there, maybe), else of the first grape's kind (a refused connection, when every
    grape refused: `ConnectRefused`)."""
    if not errors:
        return ConnectionFailed("no grape was asked")
    message = "; ".join(f"grape {url}: {exc}" for url, exc in errors)
    if any(isinstance(exc, RequestTimeout) for _, exc in errors):
        return RequestTimeout(message)
    kinds = {type(exc) for _, exc in errors}
    kind = kinds.pop() if len(kinds) == 1 else ConnectionFailed
    return kind(message)
