"""The `dex` commands that talk to the Grenache network through a grape.

`head`, `book` and `status` ask the exchange's own services (and read versions from the
DHT with the verifying `VersionReader`, so `dex book` prints only a book whose every
page hashed right, `dex head` only a root signed by the head's key, and `dex status`
says whether the head it shows is signed by the key it names), each of one market;
`markets` maps over every matcher's ``markets``; `lookup`, `request` and `get` are the
Grenache basics, for any peer at all. Each returns a value (`Outcome`) and prints
nothing: `exchange.tools._dex` prints it, as text or JSON. Every call is bounded by the
command's timeout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchange.client.view import Ladder, ladder_of
from exchange.protocol import (
    MARKETS,
    AuthFailed,
    BadMessage,
    Head,
    InvalidVersion,
    MarketInfo,
    market_names,
    verify_head,
)
from exchange.versions import VersionReader
from orderbook_core import DEFAULT_SPEC, MarketSpec, OrderBook
from transports import JSON, RemoteError, Transport, TransportError

if TYPE_CHECKING:  # the adapter (httptools) is imported only by the commands that use it
    from transports.grenache import GrapeLink, GrapeLinks, GrenacheTransport

__all__ = [
    "PROBE_NAME",
    "BookView",
    "MarketsFound",
    "ServiceStatus",
    "Status",
    "VerifiedHead",
    "fetch_book",
    "fetch_head",
    "fetch_verified_head",
    "grenache_get",
    "grenache_lookup",
    "grenache_request",
    "list_markets",
    "network_status",
    "now_ms",
]


async def fetch_head(transport: Transport, timeout: float, spec: MarketSpec = DEFAULT_SPEC) -> Head:
    """The matcher's latest version, from `spec`'s market's ``orderbook_head``.

    Raises:
        transports.TransportError: no process worker answered.
        BadMessage: the reply is not a head.
    """
    name = market_names(spec.market).orderbook_head
    return Head.from_wire(await transport.request(name, None, timeout=timeout))


async def _signed_head(
    transport: Transport, timeout: float, spec: MarketSpec
) -> tuple[Head, Ed25519PublicKey]:
    """The head and the matcher key that signed it (the signature checked).

    Raises:
        InvalidVersion: the head is not signed by the key it names.
    """
    head = await fetch_head(transport, timeout, spec)
    try:
        return head, verify_head(head, None)
    except AuthFailed as exc:
        raise InvalidVersion(f"orderbook_head: {exc}") from None


@dataclass(frozen=True, slots=True)
class VerifiedHead:
    """The matcher's head, its signature checked, and the book hash of its root."""

    head: Head
    book: str | None

    def to_json(self) -> dict[str, Any]:
        return {**self.head.to_wire_object(), "book": self.book}


async def fetch_verified_head(
    transport: Transport, timeout: float, spec: MarketSpec = DEFAULT_SPEC
) -> VerifiedHead:
    """The head, and its root document read from the DHT for its ``book`` field.

    Both are verified: the head is signed by the key it names, the root hashes to the
    head's ``root``, is signed by that same key and has the head's seq.

    Raises:
        InvalidVersion: the head or the root does not verify, or the root is missing.
        transports.TransportError, BadMessage: the head could not be asked.
        TimeoutError: the DHT did not answer within `timeout`.
    """
    head, key = await _signed_head(transport, timeout, spec)
    if head.root is None:
        return VerifiedHead(head, None)
    with anyio.fail_after(timeout):
        root = await VersionReader(transport, spec, matcher_key=key).fetch_root(head.root)
    if root.seq != head.seq:
        raise InvalidVersion(f"the head says seq {head.seq}, its root says seq {root.seq}")
    return VerifiedHead(head, root.book)


@dataclass(frozen=True, slots=True)
class BookView:
    """A verified version: where it is, and its ladder."""

    seq: int
    root: str | None
    book_hash: str | None
    ladder: Ladder

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "root": self.root,
            "book": self.book_hash,
            "orders": self.ladder.orders,
            **self.ladder.to_json(),
        }


async def fetch_book(
    transport: Transport,
    *,
    root: str | None,
    depth: int,
    timeout: float,
    spec: MarketSpec = DEFAULT_SPEC,
) -> BookView:
    """The version `root` (default: the head's), read from the DHT and verified.

    The head's: its signature is checked, and the version's root must be signed by the
    same matcher key (an explicit `root` is checked against its hashes only: there is
    no head to name the key).

    Raises:
        InvalidVersion: the version is missing, incomplete or does not verify, or the
            head or the root is not signed by the matcher.
        transports.TransportError, BadMessage: the head could not be asked.
        TimeoutError: the DHT did not answer within `timeout`.
    """
    matcher_key: Ed25519PublicKey | None = None
    if root is None:
        head, matcher_key = await _signed_head(transport, timeout, spec)
        if head.root is None:
            return BookView(0, None, None, ladder_of(OrderBook(spec), spec, depth))
        root = head.root
    with anyio.fail_after(timeout):
        version = await VersionReader(transport, spec, matcher_key=matcher_key).fetch(root)
    return BookView(version.root.seq, root, version.root.book, ladder_of(version.book, spec, depth))


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """One service name: the peers announced for it, and which of them answered."""

    name: str
    announced: list[str]
    answering: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    probed: bool = True
    shared: dict[str, str] = field(default_factory=dict)
    """Answering peers whose address is also announced for another name (peer -> that
    name): a dead peer's port may now be another process's, and the probe cannot tell."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "announced": self.announced}
        if self.probed:
            out.update(answering=self.answering, errors=self.errors)
        if self.shared:
            out["alsoAnnouncedAs"] = self.shared
        return out


@dataclass(frozen=True, slots=True)
class Status:
    """What `dex status` found on the network (the journal half is added by the caller)."""

    grape: str
    services: list[ServiceStatus]
    head: Head | None
    head_error: str | None
    head_problem: str | None = None
    """Why `head` does not verify (unsigned, or not by the key it names); None when its
    signature was checked (or there is no head)."""


_NOT_ANSWERING = (
    "ERR_CLOSED",
    "ERR_TIMEOUT",
    "ERR_CONNECTION",
    "ERR_PROTOCOL",
    "ERR_TRANSPORT",
    "ERR_SERVICE_UNKNOWN",  # a dead peer's port, now taken by another service
)
"""`PeerResult.error` prefixes that mean the peer did not answer as the service."""


def _answered(error: str | None) -> bool:
    """A peer that replied, even with the service's own error string, is alive and
    serves the name; one that could not be reached, timed out or is another service is
    not."""
    return error is None or not error.startswith(_NOT_ANSWERING)


async def _probe(
    transport: Transport, name: str, peers: list[str], timeout: float
) -> ServiceStatus:
    # orderbook_head answers a null payload with the head: a request like any client's.
    results = await transport.map(name, None, timeout=timeout)
    answering = sorted(r.peer for r in results if _answered(r.error))
    errors = {r.peer: r.error for r in results if not _answered(r.error) and r.error}
    return ServiceStatus(name, peers, answering, errors)


PROBE_NAME = "dex_status_probe"
"""The name `dex status` asks the sequencer's and the matcher's peers for. No worker
serves it, so the peer's Grenache server answers ``ERR_SERVICE_UNKNOWN`` itself: no
handler runs, nothing is logged, nothing changes. (Asking ``submit_order`` or
``process_order`` anything they would refuse writes a refusal into the worker's log.)"""


async def _probe_quietly(
    transport: GrenacheTransport,
    name: str,
    peers: list[str],
    elsewhere: dict[str, str],
    timeout: float,
) -> ServiceStatus:
    """Which of `peers` (announced for `name`) a live Grenache server answers at, asking
    `PROBE_NAME`. An answering address also announced for another name (`elsewhere`:
    peer -> that name) is noted: one of the two is a dead peer's, and whether the server
    there serves `name` is not something a probe that runs no handler can tell."""
    answering: list[str] = []
    errors: dict[str, str] = {}

    async def one(peer: str) -> None:
        try:
            await transport.request_peer(peer, PROBE_NAME, None, timeout=timeout)
        except RemoteError as exc:
            if exc.message.startswith("ERR_SERVICE_UNKNOWN"):
                answering.append(peer)
            else:
                errors[peer] = exc.message
        except (TransportError, TimeoutError) as exc:
            errors[peer] = f"ERR_CONNECTION: {exc}"
        else:
            answering.append(peer)

    async with anyio.create_task_group() as tg:
        for peer in peers:
            tg.start_soon(one, peer)
    shared = {peer: elsewhere[peer] for peer in answering if peer in elsewhere}
    return ServiceStatus(name, peers, sorted(answering), errors, shared=shared)


async def network_status(
    link: GrapeLink | GrapeLinks,
    transport: Transport,
    timeout: float,
    spec: MarketSpec = DEFAULT_SPEC,
) -> Status:
    """Who is announced for each service of `spec`'s market, who answers, and the
    matcher's head.

    Raises:
        transports.TransportError: the grape itself could not be asked.
    """
    from transports.grenache import GrenacheTransport

    market = market_names(spec.market)
    head_name, process_name, updated_name = (
        market.orderbook_head,
        market.process_order,
        market.orderbook_updated,
    )
    names = (market.submit_order, process_name, head_name, updated_name)
    announced = {name: sorted(await link.lookup(name, fresh=True)) for name in names}
    services = []
    for name in names[:3]:
        peers = announced[name]
        if not peers:
            services.append(ServiceStatus(name, peers))
        elif name == head_name or not isinstance(transport, GrenacheTransport):
            services.append(await _probe(transport, name, peers, timeout))
        else:
            # The matcher serves process_order and orderbook_head on one address.
            same = {process_name, head_name} if name == process_name else {name}
            elsewhere = {
                peer: other for other in names if other not in same for peer in announced[other]
            }
            services.append(await _probe_quietly(transport, name, peers, elsewhere, timeout))
    services.append(ServiceStatus(updated_name, announced[updated_name], probed=False))
    head: Head | None = None
    head_error = head_problem = None
    try:
        head = await fetch_head(transport, timeout, spec)
    except Exception as exc:  # reported, not raised: status shows what it can
        head_error = f"{type(exc).__name__}: {exc}"
    else:
        try:
            verify_head(head, None)  # shown with what was found: status reports, not refuses
        except AuthFailed as exc:
            head_problem = f"orderbook_head: {exc}"
    return Status(link.url, services, head, head_error, head_problem)


@dataclass(frozen=True, slots=True)
class MarketsFound:
    """What a ``map`` over ``markets`` found: each market's answer, and the peers that
    answered something else (an error, or not a market)."""

    markets: list[tuple[str, MarketInfo]]
    problems: dict[str, str]


async def list_markets(transport: Transport, timeout: float) -> MarketsFound:
    """Every matcher announced as ``markets`` (a Grenache ``map``): its market, spec and
    head, sorted by market; a head whose signature does not verify is a problem.

    Raises:
        transports.TransportError: nobody is announced as ``markets``.
    """
    results = await transport.map(MARKETS, None, timeout=timeout)
    found: list[tuple[str, MarketInfo]] = []
    problems: dict[str, str] = {}
    for result in results:
        if not result.ok:
            problems[result.peer] = str(result.error)
            continue
        try:
            info = MarketInfo.from_wire(result.data)
            verify_head(info.head, None)
        except (BadMessage, AuthFailed) as exc:
            problems[result.peer] = str(exc)
            continue
        found.append((result.peer, info))
    found.sort(key=lambda item: (item[1].market, item[0]))
    return MarketsFound(found, problems)


async def grenache_lookup(link: GrapeLink | GrapeLinks, name: str) -> list[str]:
    """The peers announced for `name` (fresh, not cached)."""
    return sorted(await link.lookup(name, fresh=True))


async def grenache_request(transport: Transport, name: str, payload: JSON, timeout: float) -> JSON:
    """One request to a peer of `name`; its reply data (errors raise, see `Transport`)."""
    return await transport.request(name, payload, timeout=timeout)


async def grenache_get(transport: Transport, key: str) -> str | None:
    """The DHT item `key` (verified against its key by the link), or None."""
    return await transport.get(key)


def now_ms() -> int:
    """Wall-clock milliseconds, as the sequencer stamps entries."""
    return time.time_ns() // 1_000_000
