"""The `dex` commands that talk to the Grenache network through a grape.

`head`, `book` and `status` ask the exchange's own services (and read versions from the
DHT with the verifying `VersionReader`, so `dex book` prints only a book whose every
page hashed right); `lookup`, `request` and `get` are the Grenache basics, for any peer
at all. Each returns a value (`Outcome`) and prints nothing: `exchange.tools._dex`
prints it, as text or JSON. Every call is bounded by the command's timeout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchange.client.view import Ladder, ladder_of
from exchange.protocol import (
    ORDERBOOK_HEAD,
    ORDERBOOK_UPDATED,
    PROCESS_ORDER,
    SUBMIT_ORDER,
    AuthFailed,
    Head,
    InvalidVersion,
    verify_head,
)
from exchange.versions import VersionReader
from orderbook_core import DEFAULT_SPEC, MarketSpec, OrderBook
from transports import JSON, Transport
from transports.grenache import GrapeLink

__all__ = [
    "BookView",
    "ServiceStatus",
    "Status",
    "fetch_book",
    "fetch_head",
    "grenache_get",
    "grenache_lookup",
    "grenache_request",
    "network_status",
    "now_ms",
]


async def fetch_head(transport: Transport, timeout: float) -> Head:
    """The matcher's latest version, from ``orderbook_head``.

    Raises:
        transports.TransportError: no process worker answered.
        BadMessage: the reply is not a head.
    """
    return Head.from_wire(await transport.request(ORDERBOOK_HEAD, None, timeout=timeout))


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
        head = await fetch_head(transport, timeout)
        try:
            matcher_key = verify_head(head, None)
        except AuthFailed as exc:
            raise InvalidVersion(f"orderbook_head: {exc}") from None
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

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "announced": self.announced}
        if self.probed:
            out.update(answering=self.answering, errors=self.errors)
        return out


@dataclass(frozen=True, slots=True)
class Status:
    """What `dex status` found on the network (the journal half is added by the caller)."""

    grape: str
    services: list[ServiceStatus]
    head: Head | None
    head_error: str | None


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
    # The probe payload is null: orderbook_head answers it with the head, submit_order
    # and process_order refuse it (ERR_BAD_REQUEST / ERR_VALIDATION) without changing
    # anything; either way the peer answered.
    results = await transport.map(name, None, timeout=timeout)
    answering = sorted(r.peer for r in results if _answered(r.error))
    errors = {r.peer: r.error for r in results if not _answered(r.error) and r.error}
    return ServiceStatus(name, peers, answering, errors)


async def network_status(link: GrapeLink, transport: Transport, timeout: float) -> Status:
    """Who is announced for each service, who answers, and the matcher's head.

    Raises:
        transports.TransportError: the grape itself could not be asked.
    """
    services = []
    for name in (SUBMIT_ORDER, PROCESS_ORDER, ORDERBOOK_HEAD):
        peers = sorted(await link.lookup(name, fresh=True))
        services.append(await _probe(transport, name, peers, timeout) if peers else
                        ServiceStatus(name, peers))  # fmt: skip
    clients = sorted(await link.lookup(ORDERBOOK_UPDATED, fresh=True))
    services.append(ServiceStatus(ORDERBOOK_UPDATED, clients, probed=False))
    head: Head | None = None
    head_error = None
    try:
        head = await fetch_head(transport, timeout)
    except Exception as exc:  # reported, not raised: status shows what it can
        head_error = f"{type(exc).__name__}: {exc}"
    return Status(link.url, services, head, head_error)


async def grenache_lookup(link: GrapeLink, name: str) -> list[str]:
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
